//! Parts, stock quantities and reservations as the garage knows them, and the rules they
//! follow. Pure: no I/O, so every rule is unit-tested directly.

use std::collections::{BTreeMap, HashMap, HashSet};

use carerp_kit::events::MAX_UNIT_PRICE_MINOR;
use carerp_kit::{FieldViolation, Violations};
use uuid::Uuid;

const MAX_SKU: usize = 64;
const MAX_NAME: usize = 200;
const MAX_TEXT: usize = 200;
const MAX_DESCRIPTION: usize = 4000;
const MAX_REASON: usize = 500;
/// No shelf holds more; it keeps sums of quantities far from `i32` overflow.
pub const MAX_QUANTITY: i32 = 1_000_000;

/// An amount as it arrives in a request: minor units and an ISO 4217 code (may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMoney {
    pub amount_minor: i64,
    pub currency: String,
}

/// A part's descriptive and pricing fields, validated and normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartFields {
    /// Upper case.
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub unit_cost_minor: i64,
    pub unit_price_minor: i64,
    pub location: String,
    pub reorder_point: i32,
    pub reorder_quantity: i32,
}

/// A create request's fields before validation.
#[derive(Debug, Clone, Default)]
pub struct NewPart {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub unit_cost: Option<RawMoney>,
    pub unit_price: Option<RawMoney>,
    pub location: String,
    pub reorder_point: i32,
    pub reorder_quantity: i32,
    pub initial_quantity: i32,
}

impl NewPart {
    /// Checks every rule and reports all violations at once. Amounts may leave the currency
    /// empty (the tenant's is meant) but may not name another one: a part is priced in the
    /// garage's currency.
    pub fn validate(self, currency: &str) -> Result<(PartFields, i32), Violations> {
        let mut v = Violations::new();
        let sku = normalise_sku(&mut v, &self.sku);
        let name = v.required_text("name", &self.name, MAX_NAME);
        let description = v.optional_text("description", &self.description, MAX_DESCRIPTION);
        let category = v.optional_text("category", &self.category, MAX_TEXT);
        let unit_cost_minor = money(&mut v, "unit_cost", self.unit_cost.as_ref(), currency);
        let unit_price_minor = money(&mut v, "unit_price", self.unit_price.as_ref(), currency);
        let location = v.optional_text("location", &self.location, MAX_TEXT);
        v.check(check_quantity("reorder_point", self.reorder_point));
        v.check(check_quantity("reorder_quantity", self.reorder_quantity));
        v.check(check_quantity("initial_quantity", self.initial_quantity));
        v.into_result((
            PartFields {
                sku,
                name,
                description,
                category,
                unit_cost_minor,
                unit_price_minor,
                location,
                reorder_point: self.reorder_point,
                reorder_quantity: self.reorder_quantity,
            },
            self.initial_quantity,
        ))
    }
}

/// An update request: only the fields that are `Some` change.
#[derive(Debug, Clone, Default)]
pub struct PartChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub unit_cost: Option<RawMoney>,
    pub unit_price: Option<RawMoney>,
    pub location: Option<String>,
    pub reorder_point: Option<i32>,
    pub reorder_quantity: Option<i32>,
    pub active: Option<bool>,
}

impl PartChanges {
    /// Applies the changes to `current`, validating each changed field.
    pub fn apply(
        self,
        current: &PartFields,
        current_active: bool,
        currency: &str,
    ) -> Result<(PartFields, bool), Violations> {
        let mut v = Violations::new();
        let mut next = current.clone();
        if let Some(name) = &self.name {
            next.name = v.required_text("name", name, MAX_NAME);
        }
        if let Some(description) = &self.description {
            next.description = v.optional_text("description", description, MAX_DESCRIPTION);
        }
        if let Some(category) = &self.category {
            next.category = v.optional_text("category", category, MAX_TEXT);
        }
        if let Some(cost) = &self.unit_cost {
            next.unit_cost_minor = money(&mut v, "unit_cost", Some(cost), currency);
        }
        if let Some(price) = &self.unit_price {
            next.unit_price_minor = money(&mut v, "unit_price", Some(price), currency);
        }
        if let Some(location) = &self.location {
            next.location = v.optional_text("location", location, MAX_TEXT);
        }
        if let Some(point) = self.reorder_point {
            v.check(check_quantity("reorder_point", point));
            next.reorder_point = point;
        }
        if let Some(quantity) = self.reorder_quantity {
            v.check(check_quantity("reorder_quantity", quantity));
            next.reorder_quantity = quantity;
        }
        v.into_result((next, self.active.unwrap_or(current_active)))
    }
}

/// What kind of change a movement records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MovementKind {
    Receipt,
    Adjustment,
    Reservation,
    Release,
    Consumption,
}

impl MovementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receipt => "receipt",
            Self::Adjustment => "adjustment",
            Self::Reservation => "reservation",
            Self::Release => "release",
            Self::Consumption => "consumption",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Receipt,
            Self::Adjustment,
            Self::Reservation,
            Self::Release,
            Self::Consumption,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == value)
    }
}

/// A stock change someone asked for: goods received, or a correction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    /// `Receipt` or `Adjustment`.
    pub kind: MovementKind,
    pub delta: i32,
    pub reason: String,
    pub actor: String,
}

impl Adjustment {
    /// A receipt adds stock; an adjustment may go either way but must change something.
    /// Both need a reason: the ledger must say why stock changed.
    pub fn validate(
        kind: Option<MovementKind>,
        delta: i32,
        reason: &str,
        actor: &str,
    ) -> Result<Self, Violations> {
        let mut v = Violations::new();
        match kind {
            Some(MovementKind::Receipt) if delta <= 0 => v.add(
                "delta",
                format!("a receipt must add stock (delta > 0), is {delta}"),
            ),
            Some(MovementKind::Adjustment) if delta == 0 => {
                v.add("delta", "an adjustment must change the quantity, is 0")
            }
            Some(MovementKind::Receipt | MovementKind::Adjustment) => {}
            _ => v.add(
                "kind",
                "must be ADJUSTMENT_KIND_RECEIPT or ADJUSTMENT_KIND_ADJUSTMENT",
            ),
        }
        if delta.unsigned_abs() > MAX_QUANTITY.unsigned_abs() {
            v.add(
                "delta",
                format!("must be at most {MAX_QUANTITY} in size, is {delta}"),
            );
        }
        let reason = v.required_text("reason", reason, MAX_REASON);
        // The ledger says who changed stock: a person for receipts and adjustments.
        let actor = v.required_text("actor", actor, MAX_TEXT);
        v.into_result(Self {
            kind: kind.unwrap_or(MovementKind::Adjustment),
            delta,
            reason,
            actor,
        })
    }
}

/// The quantities of one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock {
    pub on_hand: i32,
    pub reserved: i32,
}

impl Stock {
    pub fn available(self) -> i32 {
        self.on_hand - self.reserved
    }

    /// Stock after an adjustment of `delta`: never below zero, never below what is reserved
    /// (reserved parts are promised to work orders), never above [`MAX_QUANTITY`].
    pub fn adjust(self, delta: i32) -> Result<Stock, StockRefusal> {
        let on_hand = i64::from(self.on_hand) + i64::from(delta);
        if on_hand < 0 {
            return Err(StockRefusal::BelowZero {
                on_hand: self.on_hand,
                delta,
            });
        }
        if on_hand < i64::from(self.reserved) {
            return Err(StockRefusal::BelowReserved {
                on_hand: self.on_hand,
                reserved: self.reserved,
                delta,
            });
        }
        if on_hand > i64::from(MAX_QUANTITY) {
            return Err(StockRefusal::AboveMaximum {
                on_hand: self.on_hand,
                delta,
            });
        }
        Ok(Stock {
            on_hand: on_hand as i32,
            reserved: self.reserved,
        })
    }
}

/// Why a stock adjustment was refused, with the numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StockRefusal {
    #[error("stock cannot go below zero: {on_hand} on hand, delta {delta}")]
    BelowZero { on_hand: i32, delta: i32 },
    #[error(
        "stock cannot go below what is reserved: {on_hand} on hand, {reserved} reserved, delta {delta} would leave {}",
        on_hand + delta
    )]
    BelowReserved {
        on_hand: i32,
        reserved: i32,
        delta: i32,
    },
    #[error("stock cannot exceed {MAX_QUANTITY}: {on_hand} on hand, delta {delta}")]
    AboveMaximum { on_hand: i32, delta: i32 },
}

/// Low stock: the available quantity is at or below the reorder point.
pub fn is_low(stock: Stock, reorder_point: i32) -> bool {
    stock.available() <= reorder_point
}

/// Why the stock of a part changed, as far as low-stock alerts care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockChange {
    /// Stock left the shelf or was written down: consumption, a negative adjustment.
    Usage,
    /// Anything else: receipts, reservations, releases, a changed reorder point.
    Other,
}

/// Decides whether `inventory.low-stock` is raised now, and the part's new flag.
///
/// The alert is raised when stock is used (consumed by a completed work order, or written
/// down) and leaves the part low, once per dip: `raised` stays set until the available
/// quantity rises above the reorder point again. Reservations alone never raise it: they
/// may be released when a work order is cancelled, and nothing left the shelf.
pub fn low_stock_after(
    raised: bool,
    stock: Stock,
    reorder_point: i32,
    change: StockChange,
) -> LowStockDecision {
    if !is_low(stock, reorder_point) {
        return LowStockDecision {
            raised: false,
            raise_now: false,
        };
    }
    let raise_now = !raised && change == StockChange::Usage;
    LowStockDecision {
        raised: raised || raise_now,
        raise_now,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowStockDecision {
    /// The flag to store.
    pub raised: bool,
    /// Enqueue `inventory.low-stock` in this transaction.
    pub raise_now: bool,
}

/// A part as the reservation rules see it, read under a row lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservablePart {
    pub id: Uuid,
    pub sku: String,
    pub active: bool,
    pub stock: Stock,
}

/// One line of a reservation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRequest {
    pub line_id: Uuid,
    pub part_id: Uuid,
    pub quantity: i32,
}

/// What is already reserved for a line of the work order (from an earlier request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExistingLine {
    pub part_id: Uuid,
    pub quantity: i32,
    pub status: LineStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineStatus {
    Reserved,
    Released,
    Consumed,
}

impl LineStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Released => "released",
            Self::Consumed => "consumed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Reserved, Self::Released, Self::Consumed]
            .into_iter()
            .find(|status| status.as_str() == value)
    }
}

/// The outcome of planning a reservation request: everything or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReservationPlan {
    /// Lines to reserve now (in request order); the other lines of the request were
    /// reserved before and stay as they are.
    Reserve(Vec<LineRequest>),
    /// Nothing is reserved; every line of the request with the reason it was not.
    Refuse(Vec<(LineRequest, String)>),
}

/// Why a work order takes no more reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedOutcome {
    Completed,
    Cancelled,
}

/// Decides a reservation request against the locked parts: all lines or none.
///
/// A line reserved before with the same part and quantity is already done (the request is
/// idempotent per work order line); anything else about it is a conflict. Lines of one
/// part are checked together against its available quantity.
pub fn plan_reservation(
    lines: &[LineRequest],
    parts: &HashMap<Uuid, ReservablePart>,
    existing: &HashMap<Uuid, ExistingLine>,
    closed: Option<ClosedOutcome>,
) -> ReservationPlan {
    let mut reasons: Vec<Option<String>> = vec![None; lines.len()];
    let mut seen = HashSet::new();
    let mut to_reserve = Vec::new();
    // Per part: the quantity this request newly reserves and how many of its lines ask.
    let mut wanted: BTreeMap<Uuid, (i64, usize)> = BTreeMap::new();
    for (index, line) in lines.iter().enumerate() {
        if let Some(outcome) = closed {
            reasons[index] = Some(match outcome {
                ClosedOutcome::Completed => "the work order is already completed".to_string(),
                ClosedOutcome::Cancelled => "the work order was cancelled".to_string(),
            });
            continue;
        }
        if !seen.insert(line.line_id) {
            reasons[index] = Some("the line appears more than once in the request".into());
            continue;
        }
        if line.quantity <= 0 || line.quantity > MAX_QUANTITY {
            reasons[index] = Some(format!(
                "quantity must be from 1 to {MAX_QUANTITY}, is {}",
                line.quantity
            ));
            continue;
        }
        if let Some(before) = existing.get(&line.line_id) {
            reasons[index] = match before.status {
                LineStatus::Reserved | LineStatus::Consumed
                    if before.part_id == line.part_id && before.quantity == line.quantity =>
                {
                    None
                }
                LineStatus::Released => Some("the line's reservation was released".into()),
                _ => Some(format!(
                    "the line is already reserved as {} of part {}; a reserved line cannot change",
                    before.quantity, before.part_id
                )),
            };
            continue;
        }
        match parts.get(&line.part_id) {
            None => reasons[index] = Some(format!("unknown part {}", line.part_id)),
            Some(part) if !part.active => {
                reasons[index] = Some(format!("part {} is inactive", part.sku))
            }
            Some(_) => {
                let entry = wanted.entry(line.part_id).or_default();
                entry.0 += i64::from(line.quantity);
                entry.1 += 1;
                to_reserve.push(*line);
            }
        }
    }
    for (index, line) in lines.iter().enumerate() {
        if reasons[index].is_some() || existing.contains_key(&line.line_id) {
            continue;
        }
        let Some(part) = parts.get(&line.part_id) else {
            continue;
        };
        let (requested, line_count) = wanted.get(&line.part_id).copied().unwrap_or_default();
        let available = part.stock.available();
        if requested > i64::from(available) {
            reasons[index] = Some(if line_count > 1 {
                format!(
                    "only {available} available, {requested} requested by {line_count} lines of this request"
                )
            } else {
                format!("only {available} available, {requested} requested")
            });
        }
    }
    if reasons.iter().all(Option::is_none) {
        return ReservationPlan::Reserve(to_reserve);
    }
    ReservationPlan::Refuse(
        lines
            .iter()
            .zip(reasons)
            .map(|(line, reason)| {
                let reason = reason.unwrap_or_else(|| {
                    "not reserved: another line of the request could not be reserved".into()
                });
                (*line, reason)
            })
            .collect(),
    )
}

fn normalise_sku(v: &mut Violations, raw: &str) -> String {
    let sku = raw.trim().to_ascii_uppercase();
    if sku.is_empty() {
        v.add("sku", "is required");
    } else if sku.chars().count() > MAX_SKU {
        v.add(
            "sku",
            format!(
                "must be at most {MAX_SKU} characters, is {}",
                sku.chars().count()
            ),
        );
    } else if let Some(bad) = sku
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        v.add(
            "sku",
            format!("{bad:?} is not allowed: only letters, digits, '-', '_', '.' and '/'"),
        );
    }
    sku
}

/// Minor units of an amount in the tenant's currency; an absent amount is zero.
fn money(v: &mut Violations, field: &str, value: Option<&RawMoney>, currency: &str) -> i64 {
    let Some(value) = value else {
        return 0;
    };
    let given = value.currency.trim();
    if !given.is_empty() && !given.eq_ignore_ascii_case(currency) {
        v.add(
            format!("{field}.currency"),
            format!("must be the garage's currency {currency}, is {given:?}"),
        );
    }
    if !(0..=MAX_UNIT_PRICE_MINOR).contains(&value.amount_minor) {
        v.add(
            format!("{field}.amount_minor"),
            format!(
                "must be 0 to {MAX_UNIT_PRICE_MINOR}, is {}",
                value.amount_minor
            ),
        );
    }
    value.amount_minor
}

fn check_quantity(field: &str, value: i32) -> Result<(), FieldViolation> {
    if !(0..=MAX_QUANTITY).contains(&value) {
        return Err(FieldViolation::new(
            field,
            format!("must be from 0 to {MAX_QUANTITY}, is {value}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_part() -> NewPart {
        NewPart {
            sku: " bosch-0451 ".into(),
            name: " Oil filter ".into(),
            unit_cost: Some(RawMoney {
                amount_minor: 450,
                currency: "EUR".into(),
            }),
            unit_price: Some(RawMoney {
                amount_minor: 990,
                currency: "".into(),
            }),
            reorder_point: 5,
            reorder_quantity: 20,
            initial_quantity: 10,
            ..NewPart::default()
        }
    }

    fn fields(err: Violations) -> Vec<String> {
        err.as_slice().iter().map(|v| v.field.clone()).collect()
    }

    #[test]
    fn a_valid_part_is_trimmed_and_its_sku_upper_cased() {
        let (part, initial) = new_part().validate("EUR").unwrap();
        assert_eq!(part.sku, "BOSCH-0451");
        assert_eq!(part.name, "Oil filter");
        assert_eq!(part.unit_cost_minor, 450);
        assert_eq!(part.unit_price_minor, 990);
        assert_eq!(initial, 10);
    }

    #[test]
    fn every_violation_of_a_new_part_is_reported() {
        let raw = NewPart {
            sku: "a b".into(),
            name: "".into(),
            unit_cost: Some(RawMoney {
                amount_minor: -1,
                currency: "EUR".into(),
            }),
            unit_price: Some(RawMoney {
                amount_minor: 100,
                currency: "USD".into(),
            }),
            reorder_point: -1,
            reorder_quantity: -2,
            initial_quantity: -3,
            ..new_part()
        };
        assert_eq!(
            fields(raw.validate("EUR").unwrap_err()),
            [
                "sku",
                "name",
                "unit_cost.amount_minor",
                "unit_price.currency",
                "reorder_point",
                "reorder_quantity",
                "initial_quantity"
            ]
        );
    }

    #[test]
    fn changes_apply_only_to_given_fields() {
        let (current, _) = new_part().validate("EUR").unwrap();
        let changes = PartChanges {
            unit_price: Some(RawMoney {
                amount_minor: 1200,
                currency: "EUR".into(),
            }),
            reorder_point: Some(8),
            active: Some(false),
            ..PartChanges::default()
        };
        let (next, active) = changes.apply(&current, true, "EUR").unwrap();
        assert_eq!(next.unit_price_minor, 1200);
        assert_eq!(next.reorder_point, 8);
        assert_eq!(next.name, current.name);
        assert!(!active);
        let bad = PartChanges {
            name: Some(" ".into()),
            unit_cost: Some(RawMoney {
                amount_minor: -5,
                currency: "".into(),
            }),
            ..PartChanges::default()
        };
        assert_eq!(
            fields(bad.apply(&current, true, "EUR").unwrap_err()),
            ["name", "unit_cost.amount_minor"]
        );
    }

    #[test]
    fn adjustments_need_a_kind_a_sensible_delta_a_reason_and_who() {
        assert!(Adjustment::validate(Some(MovementKind::Receipt), 5, "delivery", "Tom").is_ok());
        assert!(Adjustment::validate(Some(MovementKind::Adjustment), -2, "damaged", "Tom").is_ok());
        let err = Adjustment::validate(Some(MovementKind::Receipt), -1, " ", "Tom").unwrap_err();
        assert_eq!(fields(err), ["delta", "reason"]);
        let err =
            Adjustment::validate(Some(MovementKind::Adjustment), 0, "count", "Tom").unwrap_err();
        assert_eq!(fields(err), ["delta"]);
        let err = Adjustment::validate(None, 1, "x", "Tom").unwrap_err();
        assert_eq!(fields(err), ["kind"]);
        let err = Adjustment::validate(Some(MovementKind::Reservation), 1, "x", "Tom").unwrap_err();
        assert_eq!(fields(err), ["kind"]);
        let err =
            Adjustment::validate(Some(MovementKind::Receipt), 1, "delivery", " ").unwrap_err();
        assert_eq!(fields(err), ["actor"]);
    }

    #[test]
    fn stock_never_goes_below_zero_or_below_reserved() {
        let stock = Stock {
            on_hand: 10,
            reserved: 4,
        };
        assert_eq!(
            stock.adjust(-6).unwrap(),
            Stock {
                on_hand: 4,
                reserved: 4
            }
        );
        assert_eq!(
            stock.adjust(-7).unwrap_err(),
            StockRefusal::BelowReserved {
                on_hand: 10,
                reserved: 4,
                delta: -7
            }
        );
        let empty = Stock {
            on_hand: 2,
            reserved: 0,
        };
        let err = empty.adjust(-3).unwrap_err();
        assert_eq!(
            err,
            StockRefusal::BelowZero {
                on_hand: 2,
                delta: -3
            }
        );
        assert!(err.to_string().contains("2 on hand, delta -3"), "{err}");
        assert!(
            stock
                .adjust(-7)
                .unwrap_err()
                .to_string()
                .contains("4 reserved")
        );
        assert!(stock.adjust(MAX_QUANTITY).is_err());
    }

    #[test]
    fn low_stock_is_raised_once_per_dip_and_only_by_usage() {
        let low = Stock {
            on_hand: 5,
            reserved: 0,
        };
        let high = Stock {
            on_hand: 6,
            reserved: 0,
        };
        // A reservation that makes the part low raises nothing.
        let reserved_low = Stock {
            on_hand: 10,
            reserved: 6,
        };
        let d = low_stock_after(false, reserved_low, 5, StockChange::Other);
        assert_eq!(
            d,
            LowStockDecision {
                raised: false,
                raise_now: false
            }
        );
        // Usage that leaves the part low raises it, once.
        let d = low_stock_after(false, low, 5, StockChange::Usage);
        assert_eq!(
            d,
            LowStockDecision {
                raised: true,
                raise_now: true
            }
        );
        let d = low_stock_after(true, low, 5, StockChange::Usage);
        assert_eq!(
            d,
            LowStockDecision {
                raised: true,
                raise_now: false
            }
        );
        // Rising above the point clears the flag, so the next dip raises again.
        let d = low_stock_after(true, high, 5, StockChange::Other);
        assert_eq!(
            d,
            LowStockDecision {
                raised: false,
                raise_now: false
            }
        );
        // A receipt that stays low keeps the flag.
        let d = low_stock_after(true, low, 5, StockChange::Other);
        assert_eq!(
            d,
            LowStockDecision {
                raised: true,
                raise_now: false
            }
        );
    }

    fn part(id: Uuid, on_hand: i32, reserved: i32) -> ReservablePart {
        ReservablePart {
            id,
            sku: format!("SKU-{}", &id.to_string()[..4]),
            active: true,
            stock: Stock { on_hand, reserved },
        }
    }

    fn line(part_id: Uuid, quantity: i32) -> LineRequest {
        LineRequest {
            line_id: Uuid::now_v7(),
            part_id,
            quantity,
        }
    }

    #[test]
    fn reservation_takes_all_lines_when_all_fit() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let parts = HashMap::from([(a, part(a, 5, 2)), (b, part(b, 1, 0))]);
        let lines = [line(a, 3), line(b, 1)];
        assert_eq!(
            plan_reservation(&lines, &parts, &HashMap::new(), None),
            ReservationPlan::Reserve(lines.to_vec())
        );
    }

    #[test]
    fn reservation_refuses_every_line_when_one_does_not_fit() {
        let (a, b, unknown) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut inactive = part(b, 10, 0);
        inactive.active = false;
        let parts = HashMap::from([(a, part(a, 5, 2)), (b, inactive)]);
        let lines = [line(a, 5), line(b, 1), line(unknown, 1), line(a, 0)];
        let ReservationPlan::Refuse(refused) =
            plan_reservation(&lines, &parts, &HashMap::new(), None)
        else {
            panic!("expected a refusal");
        };
        let reasons: Vec<&str> = refused.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(reasons[0], "only 3 available, 5 requested");
        assert!(reasons[1].contains("inactive"), "{}", reasons[1]);
        assert_eq!(reasons[2], format!("unknown part {unknown}"));
        assert!(reasons[3].contains("is 0"), "{}", reasons[3]);
        assert_eq!(refused.len(), 4);
    }

    #[test]
    fn lines_of_one_part_are_checked_together() {
        let a = Uuid::now_v7();
        let other = Uuid::now_v7();
        let parts = HashMap::from([(a, part(a, 4, 0)), (other, part(other, 9, 0))]);
        let lines = [line(a, 2), line(a, 3), line(other, 1)];
        let ReservationPlan::Refuse(refused) =
            plan_reservation(&lines, &parts, &HashMap::new(), None)
        else {
            panic!("expected a refusal");
        };
        assert_eq!(
            refused[0].1,
            "only 4 available, 5 requested by 2 lines of this request"
        );
        assert!(refused[2].1.contains("another line"), "{}", refused[2].1);
    }

    #[test]
    fn lines_reserved_before_are_not_reserved_again() {
        let a = Uuid::now_v7();
        let parts = HashMap::from([(a, part(a, 3, 3))]);
        let done = line(a, 3);
        let existing = HashMap::from([(
            done.line_id,
            ExistingLine {
                part_id: a,
                quantity: 3,
                status: LineStatus::Reserved,
            },
        )]);
        assert_eq!(
            plan_reservation(&[done], &parts, &existing, None),
            ReservationPlan::Reserve(vec![])
        );
        let changed = LineRequest {
            quantity: 2,
            ..done
        };
        assert!(matches!(
            plan_reservation(&[changed], &parts, &existing, None),
            ReservationPlan::Refuse(_)
        ));
    }

    #[test]
    fn closed_work_orders_take_no_reservations() {
        let a = Uuid::now_v7();
        let parts = HashMap::from([(a, part(a, 3, 0))]);
        let ReservationPlan::Refuse(refused) = plan_reservation(
            &[line(a, 1)],
            &parts,
            &HashMap::new(),
            Some(ClosedOutcome::Cancelled),
        ) else {
            panic!("expected a refusal");
        };
        assert_eq!(refused[0].1, "the work order was cancelled");
    }

    #[test]
    fn a_line_twice_in_one_request_is_refused() {
        let a = Uuid::now_v7();
        let parts = HashMap::from([(a, part(a, 10, 0))]);
        let first = line(a, 1);
        let plan = plan_reservation(&[first, first], &parts, &HashMap::new(), None);
        let ReservationPlan::Refuse(refused) = plan else {
            panic!("expected a refusal");
        };
        assert!(refused[1].1.contains("more than once"));
    }

    #[test]
    fn kinds_round_trip() {
        for kind in [
            MovementKind::Receipt,
            MovementKind::Adjustment,
            MovementKind::Reservation,
            MovementKind::Release,
            MovementKind::Consumption,
        ] {
            assert_eq!(MovementKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(MovementKind::parse("theft"), None);
        assert_eq!(LineStatus::parse("consumed"), Some(LineStatus::Consumed));
    }
}
