//! What billing consumes (`workorder.completed`) and publishes (`invoice.created`,
//! `invoice.paid`, `invoice.voided`, always through the outbox).

use carerp_kit::consumer::{EventHandler, HandlerError, handler_error};
use carerp_kit::envelope::CloudEvent;
use carerp_kit::events::{
    InvoiceCreated, InvoicePaid, InvoiceVoided, Money, WorkOrderCompleted, topic,
};
use carerp_kit::{RequestContext, outbox};
use chrono::Datelike;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{self, InvalidEvent, InvoiceStatus};
use crate::error::Error;
use crate::store::{self, InvoiceRow, NewInvoice};

/// Creates the invoice of a completed work order, in the caller's transaction.
///
/// Idempotent per work order, not only per event id: a redelivered, duplicated or re-sent
/// event finds the invoice already there and changes nothing, and two deliveries handled
/// at the same moment are serialised on the work order, so there is exactly one invoice with
/// one number. The number is taken in this transaction, so an invoice that is rolled back
/// does not use one up. The transaction must be READ COMMITTED (PostgreSQL's default), so
/// that a delivery that waited for the work order's lock sees the invoice the other one
/// committed; the unique work order constraint backs this up.
///
/// Tax rate, payment terms and time zone are the tenant's settings as the service stored them
/// at start; the issue date is today in the tenant's time zone.
pub async fn on_workorder_completed(
    tx: &mut PgConnection,
    context: &RequestContext,
    event_id: Uuid,
    data: &WorkOrderCompleted,
) -> Result<(), Error> {
    store::lock_work_order(tx, data.work_order_id).await?;
    if let Some(existing) = store::invoice_for_work_order(tx, data.work_order_id).await? {
        tracing::info!(
            %event_id,
            work_order_id = %data.work_order_id,
            invoice = %existing.number,
            "work order already invoiced; nothing to do"
        );
        return Ok(());
    }
    if let Some(voided) =
        store::voided_invoice_of_completion(tx, data.work_order_id, data.completed_at).await?
    {
        tracing::info!(
            %event_id,
            work_order_id = %data.work_order_id,
            invoice = %voided,
            "this completion was invoiced and the invoice voided since; only a newer completion is invoiced again"
        );
        return Ok(());
    }
    let settings = store::load_settings(tx).await?;
    // The work order's currency, not the tenant's current one: every amount of the order is
    // in it, and a setting changed while the order was open must not strand it.
    let lines = domain::lines_from_event(data)?;
    let (priced, totals) =
        domain::price_lines(&lines, settings.tax_rate_bp).map_err(|overflow| InvalidEvent {
            work_order_id: data.work_order_id,
            reason: overflow.to_string(),
        })?;
    let issue_date = store::today(&mut *tx, &settings.timezone).await?;
    let due_date = domain::due_date(issue_date, settings.payment_terms_days);
    let number = store::next_invoice_number(tx, issue_date.year()).await?;
    let invoice = store::insert_invoice(
        tx,
        &NewInvoice {
            number,
            work_order_id: data.work_order_id,
            work_order_number: &data.number,
            customer_id: data.customer_id,
            vehicle_id: data.vehicle_id,
            currency: &data.currency,
            tax_rate_bp: settings.tax_rate_bp,
            lines: &priced,
            totals,
            issue_date,
            due_date,
            work_order_completed_at: data.completed_at,
            corrects_invoice_id: data.corrects_invoice_id,
        },
    )
    .await?;
    invoice_created(tx, context, &invoice, data.corrects_invoice_id).await?;
    // A work order with nothing to bill is settled the moment it is invoiced.
    if invoice.status() == InvoiceStatus::Paid {
        invoice_paid(tx, context, &invoice).await?;
    }
    tracing::info!(
        %event_id,
        work_order_id = %data.work_order_id,
        invoice = %invoice.number,
        total_minor = invoice.total_minor,
        "invoice created"
    );
    Ok(())
}

pub async fn invoice_created(
    tx: &mut PgConnection,
    context: &RequestContext,
    invoice: &InvoiceRow,
    corrects_invoice_id: Option<Uuid>,
) -> Result<(), Error> {
    let data = InvoiceCreated {
        invoice_id: invoice.id,
        number: invoice.number.clone(),
        work_order_id: invoice.work_order_id,
        customer_id: invoice.customer_id,
        total: Money::new(invoice.total_minor, &invoice.currency),
        corrects_invoice_id,
    };
    outbox::enqueue(
        tx,
        context,
        topic::INVOICE_CREATED,
        &invoice.id.to_string(),
        &data,
    )
    .await?;
    Ok(())
}

pub async fn invoice_paid(
    tx: &mut PgConnection,
    context: &RequestContext,
    invoice: &InvoiceRow,
) -> Result<(), Error> {
    let data = InvoicePaid {
        invoice_id: invoice.id,
        number: invoice.number.clone(),
        work_order_id: invoice.work_order_id,
        total: Money::new(invoice.total_minor, &invoice.currency),
    };
    outbox::enqueue(
        tx,
        context,
        topic::INVOICE_PAID,
        &invoice.id.to_string(),
        &data,
    )
    .await?;
    Ok(())
}

pub async fn invoice_voided(
    tx: &mut PgConnection,
    context: &RequestContext,
    invoice: &InvoiceRow,
) -> Result<(), Error> {
    let data = InvoiceVoided {
        invoice_id: invoice.id,
        number: invoice.number.clone(),
        work_order_id: invoice.work_order_id,
        reason: invoice.void_reason.clone(),
    };
    outbox::enqueue(
        tx,
        context,
        topic::INVOICE_VOIDED,
        &invoice.id.to_string(),
        &data,
    )
    .await?;
    Ok(())
}

/// Routes the events billing consumes to their handlers, for the kit's consumer runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct BillingEvents;

impl EventHandler for BillingEvents {
    fn topics(&self) -> &'static [&'static str] {
        &[topic::WORKORDER_COMPLETED]
    }

    async fn handle(
        &self,
        tx: &mut PgConnection,
        context: &RequestContext,
        event: &CloudEvent,
    ) -> Result<(), HandlerError> {
        match event.event_type.as_str() {
            topic::WORKORDER_COMPLETED => {
                on_workorder_completed(tx, context, event.id, &event.data_as()?)
                    .await
                    .map_err(handler_error)?
            }
            other => return Err(format!("billing does not consume {other}").into()),
        }
        Ok(())
    }
}
