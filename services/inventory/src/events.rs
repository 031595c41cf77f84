//! What inventory does when work orders change: reserve, release and consume stock.
//!
//! Each handler works in the caller's transaction (which also records the event in the
//! inbox) and is idempotent by domain keys: a work order line is reserved at most once,
//! released or consumed at most once, so handling an event twice has the effect of once.
//! What inventory publishes goes through the outbox in the same transaction.

use std::collections::{BTreeMap, HashMap, HashSet};

use carerp_kit::RequestContext;
use carerp_kit::consumer::{EventHandler, HandlerError, handler_error};
use carerp_kit::envelope::CloudEvent;
use carerp_kit::events::{
    self, FailedLine, PartsReserved, ReservationFailed, ReservedLine, WorkOrderCancelled,
    WorkOrderCompleted, WorkOrderPartsAdded, WorkOrderPartsRemoved, topic,
};
use carerp_kit::outbox;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{
    ClosedOutcome, ExistingLine, LineRequest, LineStatus, MovementKind, ReservablePart,
    ReservationPlan, Stock, StockChange, plan_reservation,
};
use crate::store::{self, Error, NewMovement};

/// Reserves every line of `data` or none, and answers with `inventory.parts-reserved` or
/// `inventory.reservation-failed`.
///
/// Lines reserved by an earlier request stay as they are and are reported again; the same
/// event handled twice (same `event_id`) answers once. The parts are locked in id order,
/// so concurrent requests for the same parts queue on the rows and each sees what the
/// previous one left: available stock never goes negative.
pub async fn on_parts_added(
    tx: &mut PgConnection,
    ctx: &RequestContext,
    event_id: Uuid,
    data: &WorkOrderPartsAdded,
) -> Result<(), Error> {
    let first_time = sqlx::query(
        "INSERT INTO reservation_requests (event_id, work_order_id, succeeded)
         VALUES ($1, $2, false) ON CONFLICT DO NOTHING",
    )
    .bind(event_id)
    .bind(data.work_order_id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !first_time {
        return Ok(());
    }
    lock_work_order(tx, data.work_order_id).await?;
    let mut part_ids: Vec<Uuid> = data.lines.iter().map(|line| line.part_id).collect();
    part_ids.sort();
    part_ids.dedup();
    let parts = store::lock_parts(tx, &part_ids).await?;
    let closed = closed_outcome(tx, data.work_order_id).await?;
    let line_ids: Vec<Uuid> = data.lines.iter().map(|line| line.line_id).collect();
    let existing = reservations_of(tx, data.work_order_id, Some(&line_ids)).await?;
    let mut existing_lines: HashMap<Uuid, ExistingLine> = existing
        .iter()
        .map(|row| (row.line_id, row.existing_line()))
        .collect();
    // A line removed before this request was handled (the request redelivered or late) is
    // refused like a released one: nothing may stay reserved for a line that is gone.
    let removed: Vec<Uuid> = sqlx::query_scalar(
        "SELECT line_id FROM removed_part_lines WHERE work_order_id = $1 AND line_id = ANY($2)",
    )
    .bind(data.work_order_id)
    .bind(&line_ids)
    .fetch_all(&mut *tx)
    .await?;
    for line in data.lines.iter().filter(|l| removed.contains(&l.line_id)) {
        existing_lines
            .entry(line.line_id)
            .or_insert_with(|| ExistingLine {
                part_id: line.part_id,
                quantity: line.quantity,
                status: LineStatus::Released,
            });
    }
    let reservable: HashMap<Uuid, ReservablePart> = parts
        .values()
        .map(|part| {
            let reservable = ReservablePart {
                id: part.id,
                sku: part.sku.clone(),
                active: part.active,
                stock: part.stock(),
            };
            (part.id, reservable)
        })
        .collect();
    let requests: Vec<LineRequest> = data
        .lines
        .iter()
        .map(|line| LineRequest {
            line_id: line.line_id,
            part_id: line.part_id,
            quantity: line.quantity,
        })
        .collect();

    match plan_reservation(&requests, &reservable, &existing_lines, closed) {
        ReservationPlan::Refuse(refused) => {
            let failed = ReservationFailed {
                work_order_id: data.work_order_id,
                lines: refused
                    .into_iter()
                    .map(|(line, reason)| FailedLine {
                        line_id: line.line_id,
                        part_id: line.part_id,
                        reason,
                    })
                    .collect(),
            };
            tracing::info!(
                work_order_id = %data.work_order_id,
                lines = failed.lines.len(),
                "reservation refused"
            );
            let aggregate = data.work_order_id.to_string();
            outbox::enqueue(
                tx,
                ctx,
                topic::INVENTORY_RESERVATION_FAILED,
                &aggregate,
                &failed,
            )
            .await?;
        }
        ReservationPlan::Reserve(new_lines) => {
            let mut added: BTreeMap<Uuid, i32> = BTreeMap::new();
            for line in &new_lines {
                // The plan only reserves lines of parts that were found and locked.
                let Some(part) = parts.get(&line.part_id) else {
                    continue;
                };
                sqlx::query(
                    "INSERT INTO reservations (work_order_id, line_id, part_id, quantity, status,
                         sku, name, unit_price_minor, currency)
                     VALUES ($1, $2, $3, $4, 'reserved', $5, $6, $7, $8)",
                )
                .bind(data.work_order_id)
                .bind(line.line_id)
                .bind(line.part_id)
                .bind(line.quantity)
                .bind(&part.sku)
                .bind(&part.name)
                .bind(part.unit_price_minor)
                .bind(&part.currency)
                .execute(&mut *tx)
                .await?;
                store::insert_movement(
                    tx,
                    &NewMovement {
                        work_order_id: Some(data.work_order_id),
                        line_id: Some(line.line_id),
                        actor: &event_actor(topic::WORKORDER_PARTS_ADDED, event_id),
                        ..NewMovement::new(
                            line.part_id,
                            MovementKind::Reservation,
                            0,
                            line.quantity,
                        )
                    },
                )
                .await?;
                *added.entry(line.part_id).or_default() += line.quantity;
            }
            for (part_id, quantity) in added {
                if let Some(part) = parts.get(&part_id) {
                    let stock = Stock {
                        on_hand: part.quantity_on_hand,
                        reserved: part.quantity_reserved + quantity,
                    };
                    store::set_stock(tx, ctx, part, stock, StockChange::Other).await?;
                }
            }
            sqlx::query("UPDATE reservation_requests SET succeeded = true WHERE event_id = $1")
                .bind(event_id)
                .execute(&mut *tx)
                .await?;
            let reserved = reservations_of(tx, data.work_order_id, Some(&line_ids)).await?;
            let by_line: HashMap<Uuid, &ReservationRow> =
                reserved.iter().map(|row| (row.line_id, row)).collect();
            let answer = PartsReserved {
                work_order_id: data.work_order_id,
                lines: data
                    .lines
                    .iter()
                    .filter_map(|line| by_line.get(&line.line_id))
                    .map(|row| ReservedLine {
                        line_id: row.line_id,
                        part_id: row.part_id,
                        quantity: row.quantity,
                        sku: row.sku.clone(),
                        name: row.name.clone(),
                        unit_price: events::Money::new(row.unit_price_minor, row.currency.clone()),
                    })
                    .collect(),
            };
            tracing::info!(
                work_order_id = %data.work_order_id,
                lines = answer.lines.len(),
                "parts reserved"
            );
            let aggregate = data.work_order_id.to_string();
            outbox::enqueue(
                tx,
                ctx,
                topic::INVENTORY_PARTS_RESERVED,
                &aggregate,
                &answer,
            )
            .await?;
        }
    }
    Ok(())
}

/// Releases everything still reserved for a cancelled work order, and refuses later
/// reservation requests for it.
pub async fn on_work_order_cancelled(
    tx: &mut PgConnection,
    ctx: &RequestContext,
    event_id: Uuid,
    data: &WorkOrderCancelled,
) -> Result<(), Error> {
    lock_work_order(tx, data.work_order_id).await?;
    close(tx, data.work_order_id, ClosedOutcome::Cancelled).await?;
    let open = open_reservations(tx, data.work_order_id, None).await?;
    let actor = event_actor(topic::WORKORDER_CANCELLED, event_id);
    settle(tx, ctx, &actor, data.work_order_id, &open, &HashSet::new()).await
}

/// Releases the reservations of part lines removed from a work order, and remembers the
/// lines so that a reservation request for one arriving later (redelivered or late) is
/// refused. Only the named (work order, line) pairs are touched; a line already released,
/// consumed or never reserved changes nothing, so the event applied twice, even under two
/// ids, has the effect of once.
pub async fn on_parts_removed(
    tx: &mut PgConnection,
    ctx: &RequestContext,
    event_id: Uuid,
    data: &WorkOrderPartsRemoved,
) -> Result<(), Error> {
    lock_work_order(tx, data.work_order_id).await?;
    let line_ids: Vec<Uuid> = data.lines.iter().map(|line| line.line_id).collect();
    sqlx::query(
        "INSERT INTO removed_part_lines (work_order_id, line_id)
         SELECT $1, line_id FROM unnest($2::uuid[]) AS line_id
         ON CONFLICT DO NOTHING",
    )
    .bind(data.work_order_id)
    .bind(&line_ids)
    .execute(&mut *tx)
    .await?;
    let open = open_reservations(tx, data.work_order_id, Some(&line_ids)).await?;
    for row in &open {
        let announced = data.lines.iter().find(|line| line.line_id == row.line_id);
        if let Some(line) =
            announced.filter(|line| line.part_id != row.part_id || line.quantity != row.quantity)
        {
            // The reservation is what is held: release it as reserved.
            tracing::warn!(%event_id, work_order_id = %data.work_order_id, line_id = %row.line_id,
                "removed line announced as {} of part {}, reserved as {} of part {}: releasing the reservation",
                line.quantity, line.part_id, row.quantity, row.part_id);
        }
    }
    let actor = event_actor(topic::WORKORDER_PARTS_REMOVED, event_id);
    settle(tx, ctx, &actor, data.work_order_id, &open, &HashSet::new()).await
}

/// Consumes what is reserved for the completed work order's part lines: on hand and
/// reserved both go down by the reserved quantity. Reservations of lines the work order no
/// longer has are released. A part left at or below its reorder point raises
/// `inventory.low-stock`, once per dip.
pub async fn on_work_order_completed(
    tx: &mut PgConnection,
    ctx: &RequestContext,
    event_id: Uuid,
    data: &WorkOrderCompleted,
) -> Result<(), Error> {
    lock_work_order(tx, data.work_order_id).await?;
    close(tx, data.work_order_id, ClosedOutcome::Completed).await?;
    let open = open_reservations(tx, data.work_order_id, None).await?;
    let used: HashSet<Uuid> = data.part_lines.iter().map(|line| line.line_id).collect();
    let reserved: HashSet<Uuid> = open.iter().map(|row| row.line_id).collect();
    for line in data
        .part_lines
        .iter()
        .filter(|line| !reserved.contains(&line.line_id))
    {
        // Either consumed by an earlier delivery of this event, or never reserved.
        tracing::debug!(
            work_order_id = %data.work_order_id,
            line_id = %line.line_id,
            "no open reservation for a completed part line"
        );
    }
    let actor = event_actor(topic::WORKORDER_COMPLETED, event_id);
    settle(tx, ctx, &actor, data.work_order_id, &open, &used).await
}

/// Who changed stock when no person did: the event that caused it, as the ledger shows it.
fn event_actor(topic: &str, event_id: Uuid) -> String {
    format!("{topic} event {event_id}")
}

/// Consumes the open reservations whose line is in `consume`, releases the others.
/// `actor` is the event that caused it, recorded on each movement as who made the change.
async fn settle(
    tx: &mut PgConnection,
    ctx: &RequestContext,
    actor: &str,
    work_order_id: Uuid,
    open: &[ReservationRow],
    consume: &HashSet<Uuid>,
) -> Result<(), Error> {
    if open.is_empty() {
        return Ok(());
    }
    let mut part_ids: Vec<Uuid> = open.iter().map(|row| row.part_id).collect();
    part_ids.sort();
    part_ids.dedup();
    let parts = store::lock_parts(tx, &part_ids).await?;
    // Per part: the change of (on hand, reserved), and whether stock left the shelf.
    let mut changes: BTreeMap<Uuid, (i32, i32, bool)> = BTreeMap::new();
    for row in open {
        let consumed = consume.contains(&row.line_id);
        let (kind, status, on_hand_delta) = if consumed {
            (
                MovementKind::Consumption,
                LineStatus::Consumed,
                -row.quantity,
            )
        } else {
            (MovementKind::Release, LineStatus::Released, 0)
        };
        sqlx::query(
            "UPDATE reservations SET status = $3, updated_at = now()
             WHERE work_order_id = $1 AND line_id = $2",
        )
        .bind(work_order_id)
        .bind(row.line_id)
        .bind(status.as_str())
        .execute(&mut *tx)
        .await?;
        store::insert_movement(
            tx,
            &NewMovement {
                work_order_id: Some(work_order_id),
                line_id: Some(row.line_id),
                actor,
                ..NewMovement::new(row.part_id, kind, on_hand_delta, -row.quantity)
            },
        )
        .await?;
        let entry = changes.entry(row.part_id).or_insert((0, 0, false));
        entry.0 += on_hand_delta;
        entry.1 -= row.quantity;
        entry.2 |= consumed;
    }
    for (part_id, (on_hand_delta, reserved_delta, used)) in changes {
        let Some(part) = parts.get(&part_id) else {
            continue;
        };
        let stock = Stock {
            on_hand: part.quantity_on_hand + on_hand_delta,
            reserved: part.quantity_reserved + reserved_delta,
        };
        let change = if used {
            StockChange::Usage
        } else {
            StockChange::Other
        };
        store::set_stock(tx, ctx, part, stock, change).await?;
    }
    Ok(())
}

/// Serialises the handlers of one work order (until the transaction ends), so that a
/// reservation and a cancellation of the same work order arriving at once on two replicas
/// cannot interleave and leave stock reserved for a cancelled work order. Always taken
/// before any part lock, so lock order stays acyclic.
async fn lock_work_order(tx: &mut PgConnection, work_order_id: Uuid) -> Result<(), Error> {
    // UUIDv7 ends in random bits: the low 64 bits make a well-spread advisory lock key.
    let key = work_order_id.as_u64_pair().1 as i64;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(tx)
        .await?;
    Ok(())
}

async fn close(
    tx: &mut PgConnection,
    work_order_id: Uuid,
    outcome: ClosedOutcome,
) -> Result<(), Error> {
    let outcome = match outcome {
        ClosedOutcome::Completed => "completed",
        ClosedOutcome::Cancelled => "cancelled",
    };
    sqlx::query(
        "INSERT INTO closed_work_orders (work_order_id, outcome) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(work_order_id)
    .bind(outcome)
    .execute(tx)
    .await?;
    Ok(())
}

async fn closed_outcome(
    tx: &mut PgConnection,
    work_order_id: Uuid,
) -> Result<Option<ClosedOutcome>, Error> {
    let outcome: Option<String> =
        sqlx::query_scalar("SELECT outcome FROM closed_work_orders WHERE work_order_id = $1")
            .bind(work_order_id)
            .fetch_optional(tx)
            .await?;
    Ok(outcome.map(|outcome| {
        if outcome == "cancelled" {
            ClosedOutcome::Cancelled
        } else {
            ClosedOutcome::Completed
        }
    }))
}

/// A reservation as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReservationRow {
    pub line_id: Uuid,
    pub part_id: Uuid,
    pub quantity: i32,
    pub status: String,
    pub sku: String,
    pub name: String,
    pub unit_price_minor: i64,
    pub currency: String,
}

impl ReservationRow {
    fn existing_line(&self) -> ExistingLine {
        ExistingLine {
            part_id: self.part_id,
            quantity: self.quantity,
            // The column's check constraint admits only the three statuses.
            status: LineStatus::parse(&self.status).unwrap_or(LineStatus::Reserved),
        }
    }
}

/// The reservations of a work order (of the given lines only, when given).
pub async fn reservations_of(
    tx: &mut PgConnection,
    work_order_id: Uuid,
    lines: Option<&[Uuid]>,
) -> Result<Vec<ReservationRow>, Error> {
    let rows = sqlx::query_as(
        "SELECT line_id, part_id, quantity, status, sku, name, unit_price_minor, currency
         FROM reservations
         WHERE work_order_id = $1 AND ($2::uuid[] IS NULL OR line_id = ANY($2))
         ORDER BY line_id",
    )
    .bind(work_order_id)
    .bind(lines)
    .fetch_all(tx)
    .await?;
    Ok(rows)
}

/// Open reservations of a work order (of the given lines only, when given), locked: a
/// concurrent release and consumption of the same work order cannot both settle a line.
async fn open_reservations(
    tx: &mut PgConnection,
    work_order_id: Uuid,
    lines: Option<&[Uuid]>,
) -> Result<Vec<ReservationRow>, Error> {
    let rows = sqlx::query_as(
        "SELECT line_id, part_id, quantity, status, sku, name, unit_price_minor, currency
         FROM reservations
         WHERE work_order_id = $1 AND status = 'reserved'
           AND ($2::uuid[] IS NULL OR line_id = ANY($2))
         ORDER BY line_id
         FOR UPDATE",
    )
    .bind(work_order_id)
    .bind(lines)
    .fetch_all(tx)
    .await?;
    Ok(rows)
}

/// Routes the work order events inventory consumes to their handlers, for the kit's
/// consumer runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct InventoryEvents;

impl EventHandler for InventoryEvents {
    fn topics(&self) -> &'static [&'static str] {
        &[
            topic::WORKORDER_PARTS_ADDED,
            topic::WORKORDER_PARTS_REMOVED,
            topic::WORKORDER_COMPLETED,
            topic::WORKORDER_CANCELLED,
        ]
    }

    async fn handle(
        &self,
        tx: &mut PgConnection,
        context: &RequestContext,
        event: &CloudEvent,
    ) -> Result<(), HandlerError> {
        match event.event_type.as_str() {
            topic::WORKORDER_PARTS_ADDED => {
                on_parts_added(tx, context, event.id, &event.data_as()?)
                    .await
                    .map_err(handler_error)?
            }
            topic::WORKORDER_PARTS_REMOVED => {
                on_parts_removed(tx, context, event.id, &event.data_as()?)
                    .await
                    .map_err(handler_error)?
            }
            topic::WORKORDER_COMPLETED => {
                on_work_order_completed(tx, context, event.id, &event.data_as()?)
                    .await
                    .map_err(handler_error)?
            }
            topic::WORKORDER_CANCELLED => {
                on_work_order_cancelled(tx, context, event.id, &event.data_as()?)
                    .await
                    .map_err(handler_error)?
            }
            other => return Err(format!("inventory does not consume {other}").into()),
        }
        Ok(())
    }
}
