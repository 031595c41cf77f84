//! Invoices as the garage's books know them: lines, tax, totals, numbers, dates, and the
//! status machine of payments. Pure: no I/O, so every rule is unit-tested directly.

use carerp_kit::FieldViolation;
use carerp_kit::events::WorkOrderCompleted;
use chrono::{Days, NaiveDate};
use uuid::Uuid;

/// Basis points in a whole (10000 bp = 100%).
const BP_PER_UNIT: i128 = 10_000;
pub const MAX_REFERENCE: usize = 200;
pub const MAX_REASON: usize = 500;

// ---- tax and totals ----

/// The tax of one invoice line: `line_total × rate_bp / 10000`, rounded half-up to the minor
/// unit (0.5 cent and more rounds up, less rounds down; a negative amount mirrors this away
/// from zero).
///
/// This is the only place where tax is rounded. It is applied once per line, and the
/// invoice's tax is the sum of the rounded line taxes, so every line shown on the invoice adds
/// up to the total printed below it. Computed in `i128`: no intermediate product can overflow,
/// and the result is never larger than `line_total` for rates up to 100%, so it fits in `i64`.
pub fn line_tax(line_total_minor: i64, rate_bp: i32) -> i64 {
    let product = i128::from(line_total_minor) * i128::from(rate_bp);
    let magnitude = (product.abs() + BP_PER_UNIT / 2) / BP_PER_UNIT;
    let rounded = if product < 0 { -magnitude } else { magnitude };
    // Rates are 0..=10000 bp (checked at configuration), so |rounded| <= |line_total|.
    i64::try_from(rounded).unwrap_or(if rounded < 0 { i64::MIN } else { i64::MAX })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Part,
    Labor,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Part => "PART",
            LineKind::Labor => "LABOR",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "PART" => Some(LineKind::Part),
            "LABOR" => Some(LineKind::Labor),
            _ => None,
        }
    }
}

/// A line as copied from the completed work order, before tax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineDraft {
    pub kind: LineKind,
    pub source_line_id: Uuid,
    pub part_id: Option<Uuid>,
    pub description: String,
    /// Parts: pieces. Labour: minutes.
    pub quantity: i32,
    /// Parts: price per piece. Labour: hourly rate.
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

/// A line with its tax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub line: LineDraft,
    pub tax_minor: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub subtotal_minor: i64,
    pub tax_minor: i64,
    pub total_minor: i64,
}

/// The sums do not fit in 64 bits: no real garage bills this much, so it is a broken event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the invoice total does not fit in 64-bit minor units")]
pub struct AmountOverflow;

/// Taxes every line with [`line_tax`] and sums: subtotal = Σ line totals, tax = Σ line taxes,
/// total = subtotal + tax.
pub fn price_lines(
    lines: &[LineDraft],
    rate_bp: i32,
) -> Result<(Vec<PricedLine>, Totals), AmountOverflow> {
    let mut subtotal: i64 = 0;
    let mut tax: i64 = 0;
    let mut priced = Vec::with_capacity(lines.len());
    for line in lines {
        let line_tax = line_tax(line.line_total_minor, rate_bp);
        subtotal = subtotal
            .checked_add(line.line_total_minor)
            .ok_or(AmountOverflow)?;
        tax = tax.checked_add(line_tax).ok_or(AmountOverflow)?;
        priced.push(PricedLine {
            line: line.clone(),
            tax_minor: line_tax,
        });
    }
    let total = subtotal.checked_add(tax).ok_or(AmountOverflow)?;
    Ok((
        priced,
        Totals {
            subtotal_minor: subtotal,
            tax_minor: tax,
            total_minor: total,
        },
    ))
}

// ---- the completed work order ----

/// Why a `workorder.completed` event cannot be invoiced. Such an event is broken at its
/// source; retrying it cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("work order {work_order_id} cannot be invoiced: {reason}")]
pub struct InvalidEvent {
    pub work_order_id: Uuid,
    pub reason: String,
}

/// Copies the work order's lines (parts first, then labour, each in the work order's order)
/// and checks that the event is consistent: its currency is an ISO 4217 code (the work order's, which the invoice takes), quantities are
/// positive, amounts are not negative, and its totals are the sums of its lines.
///
/// Line totals are taken as the work order computed them: the work order is where prices and
/// labour time are agreed, and the invoice must show the same amounts.
pub fn lines_from_event(event: &WorkOrderCompleted) -> Result<Vec<LineDraft>, InvalidEvent> {
    let invalid = |reason: String| InvalidEvent {
        work_order_id: event.work_order_id,
        reason,
    };
    // The order's own currency is the invoice's; it only has to be one.
    let currency = &event.currency;
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(invalid(format!(
            "its currency {currency:?} is not an ISO 4217 code such as EUR"
        )));
    }
    let mut lines = Vec::with_capacity(event.part_lines.len() + event.labor_lines.len());
    let mut parts_total: i64 = 0;
    for part in &event.part_lines {
        if part.quantity <= 0 {
            return Err(invalid(format!(
                "part line {} has quantity {}",
                part.line_id, part.quantity
            )));
        }
        if part.unit_price_minor < 0 || part.line_total_minor < 0 {
            return Err(invalid(format!(
                "part line {} has a negative amount",
                part.line_id
            )));
        }
        parts_total = parts_total
            .checked_add(part.line_total_minor)
            .ok_or_else(|| invalid(AmountOverflow.to_string()))?;
        let name = part.name.trim();
        let sku = part.sku.trim();
        let description = match (name.is_empty(), sku.is_empty()) {
            (false, false) => format!("{name} ({sku})"),
            (false, true) => name.to_string(),
            (true, false) => sku.to_string(),
            (true, true) => "Part".to_string(),
        };
        lines.push(LineDraft {
            kind: LineKind::Part,
            source_line_id: part.line_id,
            part_id: Some(part.part_id),
            description,
            quantity: part.quantity,
            unit_price_minor: part.unit_price_minor,
            line_total_minor: part.line_total_minor,
        });
    }
    let mut labor_total: i64 = 0;
    for labor in &event.labor_lines {
        if labor.minutes <= 0 {
            return Err(invalid(format!(
                "labour line {} has {} minutes",
                labor.line_id, labor.minutes
            )));
        }
        if labor.hourly_rate_minor < 0 || labor.line_total_minor < 0 {
            return Err(invalid(format!(
                "labour line {} has a negative amount",
                labor.line_id
            )));
        }
        labor_total = labor_total
            .checked_add(labor.line_total_minor)
            .ok_or_else(|| invalid(AmountOverflow.to_string()))?;
        let description = match labor.description.trim() {
            "" => "Labour".to_string(),
            text => text.to_string(),
        };
        lines.push(LineDraft {
            kind: LineKind::Labor,
            source_line_id: labor.line_id,
            part_id: None,
            description,
            quantity: labor.minutes,
            unit_price_minor: labor.hourly_rate_minor,
            line_total_minor: labor.line_total_minor,
        });
    }
    if parts_total != event.parts_total_minor {
        return Err(invalid(format!(
            "parts total {} is not the sum of its part lines {parts_total}",
            event.parts_total_minor
        )));
    }
    if labor_total != event.labor_total_minor {
        return Err(invalid(format!(
            "labour total {} is not the sum of its labour lines {labor_total}",
            event.labor_total_minor
        )));
    }
    if parts_total.checked_add(labor_total) != Some(event.total_minor) {
        return Err(invalid(format!(
            "total {} is not parts {parts_total} plus labour {labor_total}",
            event.total_minor
        )));
    }
    Ok(lines)
}

// ---- numbers and dates ----

/// `INV-2026-000017`: the year of the issue date and the invoice's place in that year.
/// Past 999999 invoices a year the number simply grows a digit and stays unique.
pub fn invoice_number(year: i32, sequence: i32) -> String {
    format!("INV-{year}-{sequence:06}")
}

/// The issue date plus the tenant's payment terms.
pub fn due_date(issue_date: NaiveDate, payment_terms_days: i32) -> NaiveDate {
    let days = u64::try_from(payment_terms_days).unwrap_or(0);
    issue_date
        .checked_add_days(Days::new(days))
        .unwrap_or(NaiveDate::MAX)
}

/// Overdue is derived, never stored: the due date has passed in the tenant's calendar and a
/// balance remains (which is what ISSUED and PARTIALLY_PAID mean).
pub fn is_overdue(status: InvoiceStatus, due_date: NaiveDate, today: NaiveDate) -> bool {
    status.is_open() && due_date < today
}

pub fn parse_date(field: &str, value: &str) -> Result<Option<NaiveDate>, FieldViolation> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| {
            FieldViolation::new(field, format!("{value:?} is not an ISO date (YYYY-MM-DD)"))
        })
}

// ---- status machine ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceStatus {
    Issued,
    PartiallyPaid,
    Paid,
    Void,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Issued => "ISSUED",
            InvoiceStatus::PartiallyPaid => "PARTIALLY_PAID",
            InvoiceStatus::Paid => "PAID",
            InvoiceStatus::Void => "VOID",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "ISSUED" => Some(InvoiceStatus::Issued),
            "PARTIALLY_PAID" => Some(InvoiceStatus::PartiallyPaid),
            "PAID" => Some(InvoiceStatus::Paid),
            "VOID" => Some(InvoiceStatus::Void),
            _ => None,
        }
    }

    /// A balance remains to be paid.
    pub fn is_open(self) -> bool {
        matches!(self, InvoiceStatus::Issued | InvoiceStatus::PartiallyPaid)
    }
}

/// The status an invoice that is not void has, given what was paid of its total. An invoice
/// of nothing (a work order without billable lines) is paid from the start.
pub fn status_for(total_minor: i64, paid_minor: i64) -> InvoiceStatus {
    if paid_minor >= total_minor {
        InvoiceStatus::Paid
    } else if paid_minor == 0 {
        InvoiceStatus::Issued
    } else {
        InvoiceStatus::PartiallyPaid
    }
}

/// Why a payment cannot be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentRefused {
    #[error("a payment must be positive, is {0}")]
    NotPositive(i64),
    #[error("the invoice is void: it takes no payments")]
    InvoiceVoid,
    #[error("the invoice is already paid in full")]
    AlreadyPaid,
    #[error(
        "a payment of {amount} exceeds the invoice's balance of {balance} ({currency} minor units); pay at most {balance}"
    )]
    ExceedsBalance {
        amount: i64,
        balance: i64,
        currency: String,
    },
}

/// The invoice after a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterPayment {
    pub status: InvoiceStatus,
    pub paid_minor: i64,
}

/// ISSUED or PARTIALLY_PAID take payments up to the balance; paying the balance makes the
/// invoice PAID. VOID and PAID take none.
pub fn apply_payment(
    status: InvoiceStatus,
    total_minor: i64,
    paid_minor: i64,
    amount_minor: i64,
    currency: &str,
) -> Result<AfterPayment, PaymentRefused> {
    // The invoice's state first: "pay the balance" of a paid invoice is an amount of 0, and
    // the caller should hear that the invoice is paid, not that 0 is not positive.
    match status {
        InvoiceStatus::Void => return Err(PaymentRefused::InvoiceVoid),
        InvoiceStatus::Paid => return Err(PaymentRefused::AlreadyPaid),
        InvoiceStatus::Issued | InvoiceStatus::PartiallyPaid => {}
    }
    if amount_minor <= 0 {
        return Err(PaymentRefused::NotPositive(amount_minor));
    }
    let balance = total_minor - paid_minor;
    if amount_minor > balance {
        return Err(PaymentRefused::ExceedsBalance {
            amount: amount_minor,
            balance,
            currency: currency.to_string(),
        });
    }
    let paid = paid_minor + amount_minor;
    Ok(AfterPayment {
        status: status_for(total_minor, paid),
        paid_minor: paid,
    })
}

/// Why an invoice cannot be voided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoidRefused {
    #[error("the invoice is already void")]
    AlreadyVoid,
    #[error(
        "the invoice has payments of {paid} ({currency} minor units): only an invoice without payments can be voided"
    )]
    HasPayments { paid: i64, currency: String },
}

/// Only an invoice without any payment can be voided (a paid-from-the-start invoice of
/// nothing has no payments, so it can).
pub fn check_void(
    status: InvoiceStatus,
    paid_minor: i64,
    currency: &str,
) -> Result<(), VoidRefused> {
    if status == InvoiceStatus::Void {
        return Err(VoidRefused::AlreadyVoid);
    }
    if paid_minor > 0 {
        return Err(VoidRefused::HasPayments {
            paid: paid_minor,
            currency: currency.to_string(),
        });
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentMethod {
    Cash,
    Card,
    BankTransfer,
    Other,
}

impl PaymentMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Cash => "CASH",
            PaymentMethod::Card => "CARD",
            PaymentMethod::BankTransfer => "BANK_TRANSFER",
            PaymentMethod::Other => "OTHER",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "CASH" => Some(PaymentMethod::Cash),
            "CARD" => Some(PaymentMethod::Card),
            "BANK_TRANSFER" => Some(PaymentMethod::BankTransfer),
            "OTHER" => Some(PaymentMethod::Other),
            _ => None,
        }
    }
}

// ---- free text ----

#[cfg(test)]
mod tests {
    use super::*;
    use carerp_kit::events::{CompletedLaborLine, CompletedPartLine};
    use chrono::{DateTime, Utc};

    fn part(total: i64) -> LineDraft {
        LineDraft {
            kind: LineKind::Part,
            source_line_id: Uuid::now_v7(),
            part_id: Some(Uuid::now_v7()),
            description: "part".into(),
            quantity: 1,
            unit_price_minor: total,
            line_total_minor: total,
        }
    }

    // ---- tax and rounding, expectations computed by hand ----

    #[test]
    fn line_tax_rounds_half_up_to_the_minor_unit() {
        // (amount, bp, exact tax, expected)
        let cases: &[(i64, i32, &str, i64)] = &[
            (1, 2500, "0.25", 0),
            (2, 2500, "0.50", 1),
            (3, 2500, "0.75", 1),
            (1, 5000, "0.5", 1),
            (3, 1650, "0.495", 0),
            (1999, 1900, "379.81", 380),
            (1234, 2000, "246.8", 247),
            (50, 700, "3.5", 4),
            (149, 1000, "14.9", 15),
            (145, 1000, "14.5", 15),
            (144, 1000, "14.4", 14),
            (1, 1, "0.0001", 0),
            (5000, 1, "0.5", 1),
            (4999, 1, "0.4999", 0),
            (12_345, 10_000, "12345", 12_345),
            (0, 2500, "0", 0),
            (99_999, 0, "0", 0),
        ];
        for &(amount, bp, exact, expected) in cases {
            assert_eq!(
                line_tax(amount, bp),
                expected,
                "{amount} at {bp} bp = {exact}"
            );
        }
    }

    #[test]
    fn negative_amounts_round_symmetrically() {
        assert_eq!(line_tax(-2, 2500), -1);
        assert_eq!(line_tax(-1, 2500), 0);
        assert_eq!(line_tax(-1999, 1900), -380);
    }

    #[test]
    fn many_small_lines_are_rounded_each_on_its_own() {
        // 100 lines of 0.02 at 25%: each line's tax is 0.005 -> 0.01, so the tax is 1.00
        // (rounding the sum once would give 0.50): rounding is per line, and the invoice
        // tax is the sum of what the lines show.
        let lines: Vec<LineDraft> = (0..100).map(|_| part(2)).collect();
        let (priced, totals) = price_lines(&lines, 2500).unwrap();
        assert!(priced.iter().all(|p| p.tax_minor == 1));
        assert_eq!(
            totals,
            Totals {
                subtotal_minor: 200,
                tax_minor: 100,
                total_minor: 300
            }
        );
        // 7 lines of 0.01 at 20%: 0.002 each rounds to 0.
        let lines: Vec<LineDraft> = (0..7).map(|_| part(1)).collect();
        let (_, totals) = price_lines(&lines, 2000).unwrap();
        assert_eq!(
            (totals.subtotal_minor, totals.tax_minor, totals.total_minor),
            (7, 0, 7)
        );
    }

    #[test]
    fn zero_rate_has_no_tax() {
        let lines = vec![part(1999), part(1), part(123_456_789)];
        let (priced, totals) = price_lines(&lines, 0).unwrap();
        assert!(priced.iter().all(|p| p.tax_minor == 0));
        assert_eq!(totals.subtotal_minor, 123_458_789);
        assert_eq!(totals.tax_minor, 0);
        assert_eq!(totals.total_minor, 123_458_789);
    }

    #[test]
    fn mixed_lines_at_25_percent() {
        // 19.99 -> 4.9975 -> 5.00; 0.10 -> 0.025 -> 0.03; 87.50 -> 21.875 -> 21.88;
        // 0.01 -> 0.0025 -> 0.00. Subtotal 107.60, tax 26.91, total 134.51.
        let lines = vec![part(1999), part(10), part(8750), part(1)];
        let (priced, totals) = price_lines(&lines, 2500).unwrap();
        let taxes: Vec<i64> = priced.iter().map(|p| p.tax_minor).collect();
        assert_eq!(taxes, vec![500, 3, 2188, 0]);
        assert_eq!(
            totals,
            Totals {
                subtotal_minor: 10_760,
                tax_minor: 2691,
                total_minor: 13_451
            }
        );
    }

    #[test]
    fn large_totals_are_exact() {
        // 36,028,797,018,963.97 at 25%: 9,007,199,254,740.9925 -> 9,007,199,254,740.99.
        let lines = vec![part(3_602_879_701_896_397)];
        let (_, totals) = price_lines(&lines, 2500).unwrap();
        assert_eq!(totals.tax_minor, 900_719_925_474_099);
        assert_eq!(totals.total_minor, 4_503_599_627_370_496);
        // Near the top of i64 the product needs 128 bits; the tax is still exact:
        // 9,223,372,036,854,775,807 × 0.1999 = 1,843,752,070,167,269,683.8193 -> ...684.
        assert_eq!(line_tax(i64::MAX, 1999), 1_843_752_070_167_269_684);
        // ...but a total that does not fit is refused rather than wrapped.
        assert_eq!(price_lines(&[part(i64::MAX)], 2500), Err(AmountOverflow));
        assert_eq!(
            price_lines(&[part(i64::MAX), part(1)], 0),
            Err(AmountOverflow)
        );
    }

    #[test]
    fn totals_are_always_the_sum_of_their_parts() {
        // A deterministic spread of awkward amounts and rates.
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..500 {
            let rate = i32::try_from(next() % 10_001).unwrap();
            let count = usize::try_from(next() % 40).unwrap();
            let lines: Vec<LineDraft> = (0..count)
                .map(|_| part(i64::try_from(next() % 1_000_000).unwrap()))
                .collect();
            let (priced, totals) = price_lines(&lines, rate).unwrap();
            let subtotal: i64 = priced.iter().map(|p| p.line.line_total_minor).sum();
            let tax: i64 = priced.iter().map(|p| p.tax_minor).sum();
            assert_eq!(totals.subtotal_minor, subtotal);
            assert_eq!(totals.tax_minor, tax);
            assert_eq!(totals.total_minor, subtotal + tax);
            for p in &priced {
                // Within half a minor unit of the exact tax.
                let exact_times_2 = i128::from(p.line.line_total_minor) * i128::from(rate) * 2;
                let diff = i128::from(p.tax_minor) * 20_000 - exact_times_2;
                assert!(diff > -10_000 && diff <= 10_000, "{p:?} at {rate}");
            }
        }
    }

    // ---- the event ----

    fn event() -> WorkOrderCompleted {
        WorkOrderCompleted {
            work_order_id: Uuid::now_v7(),
            number: "WO-2026-000001".into(),
            customer_id: Uuid::now_v7(),
            vehicle_id: Uuid::now_v7(),
            currency: "EUR".into(),
            part_lines: vec![CompletedPartLine {
                line_id: Uuid::now_v7(),
                part_id: Uuid::now_v7(),
                sku: "OF-1".into(),
                name: "Oil filter".into(),
                quantity: 2,
                unit_price_minor: 1250,
                line_total_minor: 2500,
            }],
            labor_lines: vec![CompletedLaborLine {
                line_id: Uuid::now_v7(),
                description: "Oil change".into(),
                technician: "Sam".into(),
                minutes: 30,
                hourly_rate_minor: 9000,
                line_total_minor: 4500,
            }],
            parts_total_minor: 2500,
            labor_total_minor: 4500,
            total_minor: 7000,
            completed_at: DateTime::<Utc>::from_timestamp(1_764_000_000, 0).unwrap(),
            corrects_invoice_id: None,
        }
    }

    #[test]
    fn lines_are_copied_parts_first() {
        let e = event();
        let lines = lines_from_event(&e).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].kind, LineKind::Part);
        assert_eq!(lines[0].description, "Oil filter (OF-1)");
        assert_eq!(
            (
                lines[0].quantity,
                lines[0].unit_price_minor,
                lines[0].line_total_minor
            ),
            (2, 1250, 2500)
        );
        assert_eq!(lines[0].part_id, Some(e.part_lines[0].part_id));
        assert_eq!(lines[1].kind, LineKind::Labor);
        assert_eq!(lines[1].description, "Oil change");
        assert_eq!(
            (
                lines[1].quantity,
                lines[1].unit_price_minor,
                lines[1].line_total_minor
            ),
            (30, 9000, 4500)
        );
        assert_eq!(lines[1].source_line_id, e.labor_lines[0].line_id);
    }

    type Mutation = Box<dyn Fn(&mut WorkOrderCompleted)>;

    #[test]
    fn inconsistent_events_are_refused_with_the_reason() {
        let cases: Vec<(&str, Mutation)> = vec![
            ("currency \"eur\"", Box::new(|e| e.currency = "eur".into())),
            ("currency \"\"", Box::new(|e| e.currency = String::new())),
            ("quantity 0", Box::new(|e| e.part_lines[0].quantity = 0)),
            (
                "negative amount",
                Box::new(|e| e.part_lines[0].unit_price_minor = -1),
            ),
            ("0 minutes", Box::new(|e| e.labor_lines[0].minutes = 0)),
            (
                "negative amount",
                Box::new(|e| e.labor_lines[0].line_total_minor = -1),
            ),
            ("parts total 2501", Box::new(|e| e.parts_total_minor = 2501)),
            ("labour total 1", Box::new(|e| e.labor_total_minor = 1)),
            ("total 7001", Box::new(|e| e.total_minor = 7001)),
        ];
        for (reason, mutate) in cases {
            let mut e = event();
            mutate(&mut e);
            let err = lines_from_event(&e).unwrap_err();
            assert!(err.to_string().contains(reason), "{reason}: {err}");
            assert_eq!(err.work_order_id, e.work_order_id);
        }
    }

    #[test]
    fn an_empty_work_order_has_no_lines() {
        let mut e = event();
        e.part_lines.clear();
        e.labor_lines.clear();
        e.parts_total_minor = 0;
        e.labor_total_minor = 0;
        e.total_minor = 0;
        assert!(lines_from_event(&e).unwrap().is_empty());
    }

    // ---- numbers and dates ----

    #[test]
    fn numbers_have_the_year_and_six_digits() {
        assert_eq!(invoice_number(2026, 17), "INV-2026-000017");
        assert_eq!(invoice_number(2027, 1), "INV-2027-000001");
        assert_eq!(invoice_number(2026, 999_999), "INV-2026-999999");
        assert_eq!(invoice_number(2026, 1_000_000), "INV-2026-1000000");
    }

    #[test]
    fn due_date_adds_the_payment_terms() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(due_date(d("2026-11-25"), 14), d("2026-12-09"));
        assert_eq!(due_date(d("2026-12-25"), 14), d("2027-01-08"));
        assert_eq!(due_date(d("2028-02-15"), 14), d("2028-02-29"));
        assert_eq!(due_date(d("2026-11-25"), 0), d("2026-11-25"));
    }

    #[test]
    fn overdue_means_open_and_past_due() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let due = d("2026-12-09");
        assert!(!is_overdue(InvoiceStatus::Issued, due, d("2026-12-09")));
        assert!(is_overdue(InvoiceStatus::Issued, due, d("2026-12-10")));
        assert!(is_overdue(
            InvoiceStatus::PartiallyPaid,
            due,
            d("2026-12-10")
        ));
        assert!(!is_overdue(InvoiceStatus::Paid, due, d("2027-01-01")));
        assert!(!is_overdue(InvoiceStatus::Void, due, d("2027-01-01")));
    }

    #[test]
    fn dates_are_iso() {
        assert_eq!(parse_date("f", "").unwrap(), None);
        assert_eq!(
            parse_date("f", "2026-02-28").unwrap(),
            NaiveDate::from_ymd_opt(2026, 2, 28)
        );
        for bad in ["2026-02-30", "28.02.2026", "2026-2-3x", "yesterday"] {
            let err = parse_date("issued_from", bad).unwrap_err();
            assert_eq!(err.field, "issued_from");
            assert!(err.description.contains("ISO date"), "{bad}: {err}");
        }
    }

    // ---- the status machine, as a table ----

    /// (status, total, paid, amount, outcome)
    type Row = (
        InvoiceStatus,
        i64,
        i64,
        i64,
        Result<(InvoiceStatus, i64), PaymentRefused>,
    );

    #[test]
    fn payment_transitions() {
        use InvoiceStatus::*;
        let eur = "EUR";
        let table: &[Row] = &[
            (Issued, 1000, 0, 400, Ok((PartiallyPaid, 400))),
            (Issued, 1000, 0, 1000, Ok((Paid, 1000))),
            (Issued, 1000, 0, 1, Ok((PartiallyPaid, 1))),
            (PartiallyPaid, 1000, 400, 599, Ok((PartiallyPaid, 999))),
            (PartiallyPaid, 1000, 400, 600, Ok((Paid, 1000))),
            (
                Issued,
                1000,
                0,
                1001,
                Err(PaymentRefused::ExceedsBalance {
                    amount: 1001,
                    balance: 1000,
                    currency: eur.into(),
                }),
            ),
            (
                PartiallyPaid,
                1000,
                400,
                601,
                Err(PaymentRefused::ExceedsBalance {
                    amount: 601,
                    balance: 600,
                    currency: eur.into(),
                }),
            ),
            (Paid, 1000, 1000, 1, Err(PaymentRefused::AlreadyPaid)),
            (Void, 1000, 0, 1, Err(PaymentRefused::InvoiceVoid)),
            (Issued, 1000, 0, 0, Err(PaymentRefused::NotPositive(0))),
            (Issued, 1000, 0, -5, Err(PaymentRefused::NotPositive(-5))),
        ];
        for (status, total, paid, amount, expected) in table {
            let got = apply_payment(*status, *total, *paid, *amount, eur)
                .map(|a| (a.status, a.paid_minor));
            assert_eq!(
                &got, expected,
                "{status:?} total {total} paid {paid} + {amount}"
            );
        }
    }

    #[test]
    fn void_transitions() {
        use InvoiceStatus::*;
        let table: &[(InvoiceStatus, i64, Result<(), VoidRefused>)] = &[
            (Issued, 0, Ok(())),
            // A paid-from-the-start invoice of nothing has no payments.
            (Paid, 0, Ok(())),
            (
                PartiallyPaid,
                400,
                Err(VoidRefused::HasPayments {
                    paid: 400,
                    currency: "EUR".into(),
                }),
            ),
            (
                Paid,
                1000,
                Err(VoidRefused::HasPayments {
                    paid: 1000,
                    currency: "EUR".into(),
                }),
            ),
            (Void, 0, Err(VoidRefused::AlreadyVoid)),
        ];
        for (status, paid, expected) in table {
            assert_eq!(
                &check_void(*status, *paid, "EUR"),
                expected,
                "{status:?} paid {paid}"
            );
        }
    }

    #[test]
    fn the_overpay_message_names_the_balance() {
        let err =
            apply_payment(InvoiceStatus::PartiallyPaid, 10_000, 2_500, 9_000, "EUR").unwrap_err();
        assert_eq!(
            err.to_string(),
            "a payment of 9000 exceeds the invoice's balance of 7500 (EUR minor units); pay at most 7500"
        );
    }

    #[test]
    fn status_follows_what_was_paid() {
        assert_eq!(status_for(1000, 0), InvoiceStatus::Issued);
        assert_eq!(status_for(1000, 1), InvoiceStatus::PartiallyPaid);
        assert_eq!(status_for(1000, 1000), InvoiceStatus::Paid);
        assert_eq!(status_for(0, 0), InvoiceStatus::Paid);
    }

    #[test]
    fn enums_round_trip_through_their_names() {
        for s in [
            InvoiceStatus::Issued,
            InvoiceStatus::PartiallyPaid,
            InvoiceStatus::Paid,
            InvoiceStatus::Void,
        ] {
            assert_eq!(InvoiceStatus::parse(s.as_str()), Some(s));
        }
        for m in [
            PaymentMethod::Cash,
            PaymentMethod::Card,
            PaymentMethod::BankTransfer,
            PaymentMethod::Other,
        ] {
            assert_eq!(PaymentMethod::parse(m.as_str()), Some(m));
        }
        for k in [LineKind::Part, LineKind::Labor] {
            assert_eq!(LineKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(InvoiceStatus::parse("paid"), None);
    }
}
