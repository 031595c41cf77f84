//! Parts, the stock ledger and reservations in PostgreSQL.
//!
//! Every change of a part's quantities happens with the part's row locked
//! (`SELECT ... FOR UPDATE`, several parts always in id order so two transactions never wait
//! for each other in a circle), writes one movement per change, and updates the part in the
//! same transaction. The database, not the process, serialises concurrent writers: several
//! replicas may run at once. Check constraints on `parts` back this up: a writer that got it
//! wrong fails instead of overselling.

use std::collections::HashMap;

use carerp_kit::RequestContext;
use carerp_kit::Violations;
use carerp_kit::events::{self, topic};
use carerp_kit::outbox;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{
    Adjustment, MovementKind, PartChanges, PartFields, Stock, StockChange, StockRefusal,
    low_stock_after,
};

/// Everything a store call or an event handler can fail with; the API maps it to a status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(Violations),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Aborted(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl carerp_kit::consumer::EventFailure for Error {
    /// An event whose lines cannot be valid never will be; a missing part or a refused
    /// reservation is answered with `reservation-failed`, not with an error.
    fn is_permanent(&self) -> bool {
        matches!(self, Error::Invalid(_))
    }
}

impl From<Violations> for Error {
    fn from(violations: Violations) -> Self {
        Self::Invalid(violations)
    }
}

impl From<StockRefusal> for Error {
    fn from(refusal: StockRefusal) -> Self {
        Self::FailedPrecondition(refusal.to_string())
    }
}

/// A part as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Part {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub unit_cost_minor: i64,
    pub unit_price_minor: i64,
    pub currency: String,
    pub location: String,
    pub reorder_point: i32,
    pub reorder_quantity: i32,
    pub active: bool,
    pub quantity_on_hand: i32,
    pub quantity_reserved: i32,
    pub low_stock_raised: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl Part {
    pub fn stock(&self) -> Stock {
        Stock {
            on_hand: self.quantity_on_hand,
            reserved: self.quantity_reserved,
        }
    }

    pub fn fields(&self) -> PartFields {
        PartFields {
            sku: self.sku.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            category: self.category.clone(),
            unit_cost_minor: self.unit_cost_minor,
            unit_price_minor: self.unit_price_minor,
            location: self.location.clone(),
            reorder_point: self.reorder_point,
            reorder_quantity: self.reorder_quantity,
        }
    }
}

/// The columns of [`Part`], as a literal so that queries stay `&'static str`.
macro_rules! part_columns {
    () => {
        "id, sku, name, description, category, unit_cost_minor, unit_price_minor, currency, \
         location, reorder_point, reorder_quantity, active, quantity_on_hand, quantity_reserved, \
         low_stock_raised, created_at, updated_at, version"
    };
}

/// A row of the stock ledger.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Movement {
    pub seq: i64,
    pub id: Uuid,
    pub part_id: Uuid,
    pub kind: String,
    pub on_hand_delta: i32,
    pub reserved_delta: i32,
    pub work_order_id: Option<Uuid>,
    pub line_id: Option<Uuid>,
    pub reason: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// One movement to record.
#[derive(Debug, Clone)]
pub struct NewMovement<'a> {
    pub part_id: Uuid,
    pub kind: MovementKind,
    pub on_hand_delta: i32,
    pub reserved_delta: i32,
    pub work_order_id: Option<Uuid>,
    pub line_id: Option<Uuid>,
    pub reason: &'a str,
    pub actor: &'a str,
    pub idempotency_key: Option<&'a str>,
}

impl<'a> NewMovement<'a> {
    pub fn new(part_id: Uuid, kind: MovementKind, on_hand_delta: i32, reserved_delta: i32) -> Self {
        Self {
            part_id,
            kind,
            on_hand_delta,
            reserved_delta,
            work_order_id: None,
            line_id: None,
            reason: "",
            actor: "",
            idempotency_key: None,
        }
    }
}

pub async fn create_part(
    pool: &PgPool,
    ctx: &RequestContext,
    fields: &PartFields,
    initial_quantity: i32,
    currency: &str,
    idempotency_key: Option<&str>,
) -> Result<Part, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let stock = Stock {
        on_hand: initial_quantity,
        reserved: 0,
    };
    // A part created below its reorder point never crossed it: no alert until it has been
    // above the point and dips again.
    let raised = crate::domain::is_low(stock, fields.reorder_point);
    let inserted: Result<Option<Part>, sqlx::Error> = sqlx::query_as(concat!(
        "INSERT INTO parts (id, sku, name, description, category, unit_cost_minor, unit_price_minor,
             currency, location, reorder_point, reorder_quantity, quantity_on_hand, low_stock_raised,
             idempotency_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING ",
        part_columns!(),
        ""
    ))
    .bind(Uuid::now_v7())
    .bind(&fields.sku)
    .bind(&fields.name)
    .bind(&fields.description)
    .bind(&fields.category)
    .bind(fields.unit_cost_minor)
    .bind(fields.unit_price_minor)
    .bind(currency)
    .bind(&fields.location)
    .bind(fields.reorder_point)
    .bind(fields.reorder_quantity)
    .bind(initial_quantity)
    .bind(raised)
    .bind(idempotency_key)
    .fetch_optional(&mut *tx)
    .await;
    let part = match inserted {
        Ok(Some(part)) => part,
        Ok(None) => {
            // The same request was made before: answer with what it created.
            let existing: Part = sqlx::query_as(concat!(
                "SELECT ",
                part_columns!(),
                " FROM parts WHERE idempotency_key = $1"
            ))
            .bind(idempotency_key)
            .fetch_one(&mut *tx)
            .await?;
            return Ok(existing);
        }
        Err(err) if carerp_kit::status::is_unique_violation(&err, "parts_sku_unique") => {
            return Err(Error::AlreadyExists(format!(
                "a part with SKU {} already exists",
                fields.sku
            )));
        }
        Err(err) => return Err(err.into()),
    };
    if initial_quantity > 0 {
        let reason = "opening stock";
        insert_movement(
            &mut tx,
            &NewMovement {
                reason,
                actor: &ctx.actor(),
                ..NewMovement::new(part.id, MovementKind::Receipt, initial_quantity, 0)
            },
        )
        .await?;
        stock_adjusted(
            &mut tx,
            ctx,
            &part,
            MovementKind::Receipt,
            initial_quantity,
            reason,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(part)
}

pub async fn get_part(conn: &mut PgConnection, id: Uuid) -> Result<Part, Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        part_columns!(),
        " FROM parts WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| not_found(id))
}

fn not_found(id: Uuid) -> Error {
    Error::NotFound(format!("part {id} not found"))
}

/// Which parts a list shows.
#[derive(Debug, Clone, Default)]
pub struct PartFilter {
    /// Case-insensitive substring of SKU or name; empty: any.
    pub query: String,
    /// Case-insensitive; empty: any.
    pub category: String,
    pub low_stock_only: bool,
    /// `None`: active and inactive.
    pub active: Option<bool>,
}

/// Parts in SKU order, after the SKU `after` (the cursor); `limit + 1` rows are fetched so
/// the caller knows whether a next page exists.
pub async fn list_parts(
    pool: &PgPool,
    filter: &PartFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Part>, Error> {
    let query = escape_like(filter.query.trim());
    let parts = sqlx::query_as(concat!(
        "SELECT ",
        part_columns!(),
        " FROM parts
         WHERE ($1 = '' OR sku ILIKE '%' || $1 || '%' OR name ILIKE '%' || $1 || '%')
           AND ($2 = '' OR lower(category) = lower($2))
           AND (NOT $3 OR quantity_on_hand - quantity_reserved <= reorder_point)
           AND ($4::boolean IS NULL OR active = $4)
           AND ($5::text IS NULL OR sku > $5)
         ORDER BY sku
         LIMIT $6"
    ))
    .bind(query)
    .bind(filter.category.trim())
    .bind(filter.low_stock_only)
    .bind(filter.active)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(parts)
}

/// `%`, `_` and `\` typed by a user are searched for literally.
fn escape_like(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

pub async fn update_part(
    pool: &PgPool,
    id: Uuid,
    changes: PartChanges,
    expected_version: i64,
) -> Result<Part, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let current = lock_part(&mut tx, id).await?;
    check_version(&current, expected_version)?;
    // Amounts are checked against the part's own currency, the one its prices are in.
    let (next, active) = changes.apply(&current.fields(), current.active, &current.currency)?;
    // A new reorder point may lift the part out of low stock; it never raises an alert by
    // itself: nothing was used.
    let low = low_stock_after(
        current.low_stock_raised,
        current.stock(),
        next.reorder_point,
        StockChange::Other,
    );
    let part: Part = sqlx::query_as(concat!(
        "UPDATE parts SET name = $2, description = $3, category = $4, unit_cost_minor = $5,
             unit_price_minor = $6, location = $7, reorder_point = $8, reorder_quantity = $9,
             active = $10, low_stock_raised = $11, updated_at = now(), version = version + 1
         WHERE id = $1
         RETURNING ",
        part_columns!(),
        ""
    ))
    .bind(id)
    .bind(&next.name)
    .bind(&next.description)
    .bind(&next.category)
    .bind(next.unit_cost_minor)
    .bind(next.unit_price_minor)
    .bind(&next.location)
    .bind(next.reorder_point)
    .bind(next.reorder_quantity)
    .bind(active)
    .bind(low.raised)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(part)
}

fn check_version(part: &Part, expected: i64) -> Result<(), Error> {
    if expected != 0 && expected != part.version {
        return Err(Error::Aborted(format!(
            "part {} has version {}, the request expected version {expected}; reload and retry",
            part.id, part.version
        )));
    }
    Ok(())
}

/// A receipt or an adjustment. With an idempotency key, a repeated request changes nothing
/// and answers with the part as it is now.
pub async fn adjust_stock(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    adjustment: &Adjustment,
    idempotency_key: Option<&str>,
) -> Result<Part, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    // Lock first: a concurrent request with the same key has committed (and is seen below)
    // or waits for this one.
    let part = lock_part(&mut tx, id).await?;
    if let Some(key) = idempotency_key {
        let earlier: Option<Uuid> =
            sqlx::query_scalar("SELECT part_id FROM movements WHERE idempotency_key = $1")
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
        match earlier {
            Some(part_id) if part_id == id => return Ok(part),
            Some(part_id) => {
                return Err(Error::AlreadyExists(format!(
                    "idempotency_key {key:?} was already used for an adjustment of part {part_id}"
                )));
            }
            None => {}
        }
    }
    let stock = part.stock().adjust(adjustment.delta)?;
    let change = if adjustment.delta < 0 {
        StockChange::Usage
    } else {
        StockChange::Other
    };
    insert_movement(
        &mut tx,
        &NewMovement {
            reason: &adjustment.reason,
            actor: &adjustment.actor,
            idempotency_key,
            ..NewMovement::new(id, adjustment.kind, adjustment.delta, 0)
        },
    )
    .await
    .map_err(|err| match err {
        // The same key on another part at the same moment: that part's lock did not hold us.
        Error::Database(db)
            if carerp_kit::status::is_unique_violation(&db, "movements_idempotency_key") =>
        {
            Error::AlreadyExists(format!(
                "idempotency_key {:?} was used at the same moment for an adjustment of another part",
                idempotency_key.unwrap_or_default()
            ))
        }
        other => other,
    })?;
    let part = set_stock(&mut tx, ctx, &part, stock, change).await?;
    stock_adjusted(
        &mut tx,
        ctx,
        &part,
        adjustment.kind,
        adjustment.delta,
        &adjustment.reason,
    )
    .await?;
    carerp_kit::outbox::audit(
        &mut tx,
        ctx,
        "stock.adjusted",
        format!("part/{}", part.id),
        serde_json::json!({
            "sku": part.sku,
            "kind": adjustment.kind.as_str(),
            "delta": adjustment.delta,
            "reason": adjustment.reason,
            "quantityOnHand": part.quantity_on_hand,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(part)
}

async fn stock_adjusted(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    part: &Part,
    kind: MovementKind,
    delta: i32,
    reason: &str,
) -> Result<(), Error> {
    let data = events::StockAdjusted {
        part_id: part.id,
        sku: part.sku.clone(),
        kind: kind.as_str().to_string(),
        delta,
        reason: reason.to_string(),
        quantity_on_hand: part.quantity_on_hand,
        quantity_reserved: part.quantity_reserved,
    };
    outbox::enqueue(
        conn,
        ctx,
        topic::INVENTORY_STOCK_ADJUSTED,
        &part.id.to_string(),
        &data,
    )
    .await?;
    Ok(())
}

/// Locks one part for a change of its quantities or fields.
pub async fn lock_part(conn: &mut PgConnection, id: Uuid) -> Result<Part, Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        part_columns!(),
        " FROM parts WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| not_found(id))
}

/// Locks the given parts in id order (so concurrent transactions cannot deadlock) and
/// returns those that exist.
pub async fn lock_parts(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Part>, Error> {
    let parts: Vec<Part> = sqlx::query_as(concat!(
        "SELECT ",
        part_columns!(),
        " FROM parts WHERE id = ANY($1) ORDER BY id FOR UPDATE"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(parts.into_iter().map(|part| (part.id, part)).collect())
}

pub async fn insert_movement(
    conn: &mut PgConnection,
    movement: &NewMovement<'_>,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO movements (id, part_id, kind, on_hand_delta, reserved_delta, work_order_id,
             line_id, reason, actor, idempotency_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(Uuid::now_v7())
    .bind(movement.part_id)
    .bind(movement.kind.as_str())
    .bind(movement.on_hand_delta)
    .bind(movement.reserved_delta)
    .bind(movement.work_order_id)
    .bind(movement.line_id)
    .bind(movement.reason)
    .bind(movement.actor)
    .bind(movement.idempotency_key)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes a locked part's new quantities (whose movements the caller has recorded), keeps
/// its low-stock flag, and enqueues `inventory.low-stock` when this change raises it.
pub async fn set_stock(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    part: &Part,
    stock: Stock,
    change: StockChange,
) -> Result<Part, Error> {
    let low = low_stock_after(part.low_stock_raised, stock, part.reorder_point, change);
    let updated: Part = sqlx::query_as(concat!(
        "UPDATE parts SET quantity_on_hand = $2, quantity_reserved = $3, low_stock_raised = $4,
             updated_at = now(), version = version + 1
         WHERE id = $1
         RETURNING ",
        part_columns!(),
        ""
    ))
    .bind(part.id)
    .bind(stock.on_hand)
    .bind(stock.reserved)
    .bind(low.raised)
    .fetch_one(&mut *conn)
    .await?;
    if low.raise_now {
        let data = events::LowStock {
            part_id: updated.id,
            sku: updated.sku.clone(),
            name: updated.name.clone(),
            quantity_available: stock.available(),
            reorder_point: updated.reorder_point,
            reorder_quantity: updated.reorder_quantity,
        };
        outbox::enqueue(
            conn,
            ctx,
            topic::INVENTORY_LOW_STOCK,
            &updated.id.to_string(),
            &data,
        )
        .await?;
    }
    Ok(updated)
}

/// The ledger of a part, oldest first, after the movement `after_seq` (the cursor).
pub async fn list_movements(
    pool: &PgPool,
    part_id: Uuid,
    after_seq: Option<i64>,
    limit: i64,
) -> Result<Vec<Movement>, Error> {
    let mut conn = pool.acquire().await?;
    get_part(&mut conn, part_id).await?;
    let movements = sqlx::query_as(
        "SELECT seq, id, part_id, kind, on_hand_delta, reserved_delta, work_order_id, line_id,
                reason, actor, at
         FROM movements
         WHERE part_id = $1 AND ($2::bigint IS NULL OR seq > $2)
         ORDER BY seq
         LIMIT $3",
    )
    .bind(part_id)
    .bind(after_seq)
    .bind(limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    Ok(movements)
}

/// A part's quantities next to the sums of its movements.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Reconciliation {
    pub part_id: Uuid,
    pub sku: String,
    pub quantity_on_hand: i32,
    pub ledger_on_hand: i64,
    pub quantity_reserved: i32,
    pub ledger_reserved: i64,
}

impl Reconciliation {
    pub fn consistent(&self) -> bool {
        i64::from(self.quantity_on_hand) == self.ledger_on_hand
            && i64::from(self.quantity_reserved) == self.ledger_reserved
    }
}

/// Compares every part (or one) with its ledger, in one statement so that it sees one
/// consistent snapshot even while stock moves.
pub async fn reconcile(pool: &PgPool, part_id: Option<Uuid>) -> Result<Vec<Reconciliation>, Error> {
    if let Some(id) = part_id {
        get_part(&mut *pool.acquire().await?, id).await?;
    }
    let rows = sqlx::query_as(
        "SELECT p.id AS part_id, p.sku, p.quantity_on_hand, p.quantity_reserved,
                COALESCE(SUM(m.on_hand_delta), 0)::bigint AS ledger_on_hand,
                COALESCE(SUM(m.reserved_delta), 0)::bigint AS ledger_reserved
         FROM parts p LEFT JOIN movements m ON m.part_id = p.id
         WHERE $1::uuid IS NULL OR p.id = $1
         GROUP BY p.id
         ORDER BY p.sku",
    )
    .bind(part_id)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}
