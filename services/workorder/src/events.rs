//! What the work order service tells the others (written to the outbox in the transaction of
//! the change), and what it does when they tell it something.
//!
//! The handlers are functions over the store: the caller owns the transaction (and records
//! the event in the inbox in it). Each handler is idempotent by domain keys as well, so an
//! event applied twice, even under two ids, has the effect of once.

use carerp_kit::consumer::{EventHandler, HandlerError, handler_error};
use carerp_kit::envelope::CloudEvent;
use carerp_kit::events::{
    CompletedLaborLine, CompletedPartLine, InvoiceCreated, InvoiceVoided, PartsReserved,
    RemovedPart, RequestedPart, ReservationFailed, WorkOrderCancelled, WorkOrderCompleted,
    WorkOrderCreated, WorkOrderPartsAdded, WorkOrderPartsRemoved, topic,
};
use carerp_kit::{RequestContext, outbox};
use chrono::Utc;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{self, Cause, PartLine, ReservationState, Status};
use crate::error::Error;
use crate::store::{self, WorkOrder};

pub(crate) async fn work_order_created(
    tx: &mut PgConnection,
    context: &RequestContext,
    order: &WorkOrder,
) -> Result<(), Error> {
    let data = WorkOrderCreated {
        work_order_id: order.id(),
        number: order.header.number.clone(),
        customer_id: order.header.customer_id,
        vehicle_id: order.header.vehicle_id,
    };
    outbox::enqueue(
        tx,
        context,
        topic::WORKORDER_CREATED,
        &order.id().to_string(),
        &data,
    )
    .await?;
    Ok(())
}

/// New part lines, or FAILED lines announced again: inventory reserves all or none of them.
pub(crate) async fn parts_added(
    tx: &mut PgConnection,
    context: &RequestContext,
    work_order_id: Uuid,
    lines: &[&PartLine],
) -> Result<(), Error> {
    let data = WorkOrderPartsAdded {
        work_order_id,
        lines: lines
            .iter()
            .map(|line| RequestedPart {
                line_id: line.id,
                part_id: line.part_id,
                quantity: line.quantity,
            })
            .collect(),
    };
    outbox::enqueue(
        tx,
        context,
        topic::WORKORDER_PARTS_ADDED,
        &work_order_id.to_string(),
        &data,
    )
    .await?;
    Ok(())
}

/// Part lines removed while reserved or pending: inventory releases their stock.
pub(crate) async fn parts_removed(
    tx: &mut PgConnection,
    context: &RequestContext,
    work_order_id: Uuid,
    lines: &[&PartLine],
) -> Result<(), Error> {
    let data = WorkOrderPartsRemoved {
        work_order_id,
        lines: lines
            .iter()
            .map(|line| RemovedPart {
                line_id: line.id,
                part_id: line.part_id,
                quantity: line.quantity,
            })
            .collect(),
    };
    outbox::enqueue(
        tx,
        context,
        topic::WORKORDER_PARTS_REMOVED,
        &work_order_id.to_string(),
        &data,
    )
    .await?;
    Ok(())
}

/// Everything billing needs to invoice the order and inventory needs to consume the stock.
pub fn completed_event(order: &WorkOrder) -> WorkOrderCompleted {
    let totals = order.totals();
    WorkOrderCompleted {
        work_order_id: order.id(),
        number: order.header.number.clone(),
        customer_id: order.header.customer_id,
        vehicle_id: order.header.vehicle_id,
        currency: order.header.currency.clone(),
        // Only what the customer approved is invoiced and consumed.
        part_lines: domain::approved_lines(&order.jobs, &order.part_lines)
            .map(|line| CompletedPartLine {
                line_id: line.id,
                part_id: line.part_id,
                sku: line.sku.clone(),
                name: line.name.clone(),
                quantity: line.quantity,
                unit_price_minor: line.unit_price_minor.unwrap_or(0),
                line_total_minor: line.line_total_minor().unwrap_or(0),
            })
            .collect(),
        labor_lines: order
            .labor_lines
            .iter()
            .filter(|line| domain::is_approved(&order.jobs, line.job_id))
            .map(|line| CompletedLaborLine {
                line_id: line.id,
                description: line.description.clone(),
                technician: line.technician.clone(),
                minutes: line.minutes,
                hourly_rate_minor: line.hourly_rate_minor,
                line_total_minor: line.line_total_minor(),
            })
            .collect(),
        parts_total_minor: totals.parts_minor,
        labor_total_minor: totals.labor_minor,
        total_minor: totals.estimated_minor,
        completed_at: order.header.completed_at.unwrap_or_else(Utc::now),
        corrects_invoice_id: None,
    }
}

pub(crate) async fn work_order_completed(
    tx: &mut PgConnection,
    context: &RequestContext,
    order: &WorkOrder,
) -> Result<(), Error> {
    let data = completed_event(order);
    outbox::enqueue(
        tx,
        context,
        topic::WORKORDER_COMPLETED,
        &order.id().to_string(),
        &data,
    )
    .await?;
    Ok(())
}

pub(crate) async fn work_order_cancelled(
    tx: &mut PgConnection,
    context: &RequestContext,
    order: &WorkOrder,
) -> Result<(), Error> {
    let data = WorkOrderCancelled {
        work_order_id: order.id(),
        reason: order.header.cancellation_reason.clone(),
    };
    outbox::enqueue(
        tx,
        context,
        topic::WORKORDER_CANCELLED,
        &order.id().to_string(),
        &data,
    )
    .await?;
    Ok(())
}

/// `inventory.parts-reserved`: records SKU, name and price of each line and marks it
/// RESERVED. Lines already RESERVED, removed meanwhile, or of an order whose lines can no
/// longer change are left alone.
pub async fn on_parts_reserved(
    tx: &mut PgConnection,
    context: &RequestContext,
    event_id: Uuid,
    data: &PartsReserved,
) -> Result<(), Error> {
    let order = store::lock(tx, data.work_order_id, 0).await?;
    if !order.status.allows_line_changes() {
        tracing::warn!(%event_id, correlation_id = %context.correlation_id, work_order_id = %order.id(),
            status = %order.status, "parts reserved for a work order that is {}: ignored", order.status);
        return Ok(());
    }
    let mut changed = false;
    for reserved in &data.lines {
        let Some(line) = order.part_lines.iter().find(|l| l.id == reserved.line_id) else {
            tracing::warn!(%event_id, line_id = %reserved.line_id, "reserved part line no longer exists: ignored");
            continue;
        };
        if line.state == ReservationState::Reserved {
            continue;
        }
        if reserved.part_id != line.part_id || reserved.quantity != line.quantity {
            return Err(Error::Conflict(format!(
                "inventory reserved {} of part {} for part line {}, but the line is {} of part {}",
                reserved.quantity, reserved.part_id, line.id, line.quantity, line.part_id
            )));
        }
        if reserved.unit_price.currency != order.header.currency {
            return Err(Error::Conflict(format!(
                "inventory priced part line {} in {}, but work order {} is kept in {}",
                line.id,
                reserved.unit_price.currency,
                order.id(),
                order.header.currency
            )));
        }
        domain::check_unit_price(reserved.unit_price.amount_minor).map_err(|why| {
            Error::Conflict(format!("inventory priced part line {}: {why}", line.id))
        })?;
        store::mark_reserved(
            tx,
            line.id,
            &reserved.sku,
            &reserved.name,
            reserved.unit_price.amount_minor,
        )
        .await?;
        changed = true;
    }
    if changed {
        store::touch(tx, order.id()).await?;
    }
    Ok(())
}

/// `inventory.reservation-failed`: marks the PENDING lines of the request FAILED with their
/// reason, and moves an order that is not waiting yet to AWAITING_PARTS.
///
/// The status moves only when a line actually turned FAILED, so a redelivered event cannot
/// pull an order back to AWAITING_PARTS after someone moved it on.
pub async fn on_reservation_failed(
    tx: &mut PgConnection,
    context: &RequestContext,
    event_id: Uuid,
    data: &ReservationFailed,
) -> Result<(), Error> {
    let order = store::lock(tx, data.work_order_id, 0).await?;
    if !order.status.allows_line_changes() {
        tracing::warn!(%event_id, correlation_id = %context.correlation_id, work_order_id = %order.id(),
            "reservation failed for a work order that is {}: ignored", order.status);
        return Ok(());
    }
    let mut changed = false;
    for failed in &data.lines {
        let pending = order
            .part_lines
            .iter()
            .any(|l| l.id == failed.line_id && l.state == ReservationState::Pending);
        if pending {
            store::mark_failed(tx, failed.line_id, &failed.reason).await?;
            changed = true;
        }
    }
    if !changed {
        return Ok(());
    }
    if domain::check_transition(
        order.status,
        Status::AwaitingParts,
        Cause::ReservationFailed,
        order.header.started_at.is_some(),
        &order.jobs,
        &order.part_lines,
    )
    .is_ok()
    {
        store::set_status(tx, context, order.id(), Status::AwaitingParts, "").await?;
    }
    store::touch(tx, order.id()).await?;
    Ok(())
}

/// `invoice.created`: records the invoice and moves the completed order to INVOICED. The same
/// invoice again changes nothing; a different invoice for the same order is refused.
pub async fn on_invoice_created(
    tx: &mut PgConnection,
    context: &RequestContext,
    event_id: Uuid,
    data: &InvoiceCreated,
) -> Result<(), Error> {
    let order = store::lock(tx, data.work_order_id, 0).await?;
    match order.header.invoice_id {
        Some(existing) if existing == data.invoice_id => return Ok(()),
        Some(existing) => {
            return Err(Error::Conflict(format!(
                "work order {} is already invoiced by invoice {existing}, not {} (event {event_id})",
                order.id(),
                data.invoice_id
            )));
        }
        None => {}
    }
    if data.customer_id != order.header.customer_id {
        return Err(Error::Conflict(format!(
            "invoice {} names customer {}, but work order {} is for customer {}",
            data.invoice_id,
            data.customer_id,
            order.id(),
            order.header.customer_id
        )));
    }
    domain::check_transition(
        order.status,
        Status::Invoiced,
        Cause::InvoiceCreated,
        order.header.started_at.is_some(),
        &order.jobs,
        &order.part_lines,
    )?;
    store::set_invoice(tx, order.id(), data.invoice_id).await?;
    store::set_status(tx, context, order.id(), Status::Invoiced, "").await?;
    store::touch(tx, order.id()).await?;
    Ok(())
}

/// `invoice.voided`: the order's invoice is void, so the order is COMPLETED again and
/// `workorder.completed` goes out once more, naming the voided invoice: billing issues the
/// corrected one (and `invoice.created` moves the order to INVOICED as the first time did).
/// A void of an invoice the order no longer carries (a redelivery, or an older invoice) changes
/// nothing.
pub async fn on_invoice_voided(
    tx: &mut PgConnection,
    context: &RequestContext,
    event_id: Uuid,
    data: &InvoiceVoided,
) -> Result<(), Error> {
    let order = store::lock(tx, data.work_order_id, 0).await?;
    if order.header.invoice_id != Some(data.invoice_id) {
        tracing::info!(%event_id, work_order_id = %order.id(), invoice_id = %data.invoice_id,
            "voided invoice is not the work order's current one: nothing to do");
        return Ok(());
    }
    domain::check_transition(
        order.status,
        Status::Completed,
        Cause::InvoiceVoided,
        order.header.started_at.is_some(),
        &order.jobs,
        &order.part_lines,
    )?;
    store::clear_invoice(tx, order.id()).await?;
    store::set_status(tx, context, order.id(), Status::Completed, "").await?;
    store::touch(tx, order.id()).await?;
    let reopened = store::load(tx, order.id()).await?;
    let data = WorkOrderCompleted {
        corrects_invoice_id: Some(data.invoice_id),
        ..completed_event(&reopened)
    };
    outbox::enqueue(
        tx,
        context,
        topic::WORKORDER_COMPLETED,
        &order.id().to_string(),
        &data,
    )
    .await?;
    Ok(())
}

/// Routes the events the work order service consumes to their handlers, for the kit's
/// consumer runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkOrderEvents;

impl EventHandler for WorkOrderEvents {
    fn topics(&self) -> &'static [&'static str] {
        &[
            topic::INVENTORY_PARTS_RESERVED,
            topic::INVENTORY_RESERVATION_FAILED,
            topic::INVOICE_CREATED,
            topic::INVOICE_VOIDED,
        ]
    }

    async fn handle(
        &self,
        tx: &mut PgConnection,
        context: &RequestContext,
        event: &CloudEvent,
    ) -> Result<(), HandlerError> {
        match event.event_type.as_str() {
            topic::INVENTORY_PARTS_RESERVED => {
                on_parts_reserved(tx, context, event.id, &event.data_as()?)
                    .await
                    .map_err(handler_error)?
            }
            topic::INVENTORY_RESERVATION_FAILED => {
                on_reservation_failed(tx, context, event.id, &event.data_as()?)
                    .await
                    .map_err(handler_error)?
            }
            topic::INVOICE_CREATED => on_invoice_created(tx, context, event.id, &event.data_as()?)
                .await
                .map_err(handler_error)?,
            topic::INVOICE_VOIDED => on_invoice_voided(tx, context, event.id, &event.data_as()?)
                .await
                .map_err(handler_error)?,
            other => return Err(format!("the work order service does not consume {other}").into()),
        }
        Ok(())
    }
}
