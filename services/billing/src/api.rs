//! The gRPC handlers: decode and validate the request, call the store, map the result.

use carerp_kit::idempotency::{self, Key};
use carerp_kit::status::parse_id;
use carerp_kit::{TenantSettings, Violations, grpc, page};
use carerp_proto::billing::v1 as pb;
use carerp_proto::billing::v1::billing_service_server::BillingService;
use carerp_proto::common::v1::{Audit, Money, PageResponse};
use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{self, InvoiceStatus, LineKind, MAX_REASON, MAX_REFERENCE, PaymentMethod};
use crate::error::Error;
use crate::store::{self, Invoice, ListFilter, NewPayment};

/// How far in the future a payment's receipt time may lie: clocks of tills and phones drift.
const CLOCK_SKEW_SECONDS: i64 = 300;

pub struct BillingApi {
    pool: PgPool,
    settings: TenantSettings,
}

impl BillingApi {
    pub fn new(pool: PgPool, settings: TenantSettings) -> Self {
        Self { pool, settings }
    }

    async fn today(&self) -> Result<NaiveDate, Error> {
        store::today(&self.pool, &self.settings.timezone).await
    }
}

#[tonic::async_trait]
impl BillingService for BillingApi {
    async fn get_invoice(
        &self,
        request: Request<pb::GetInvoiceRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let id = parse_id("id", &request.get_ref().id).map_err(Error::from)?;
        let invoice = store::get_invoice(&self.pool, id).await?;
        Ok(Response::new(invoice_to_proto(
            &invoice,
            self.today().await?,
        )))
    }

    async fn get_invoice_by_work_order(
        &self,
        request: Request<pb::GetInvoiceByWorkOrderRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let id =
            parse_id("work_order_id", &request.get_ref().work_order_id).map_err(Error::from)?;
        let invoice = store::get_invoice_by_work_order(&self.pool, id).await?;
        Ok(Response::new(invoice_to_proto(
            &invoice,
            self.today().await?,
        )))
    }

    async fn list_invoices(
        &self,
        request: Request<pb::ListInvoicesRequest>,
    ) -> Result<Response<pb::ListInvoicesResponse>, Status> {
        let today = self.today().await?;
        let (filter, after, limit) = decode_list(request.get_ref(), today)?;
        let invoices = store::list_invoices(&self.pool, &filter, after, limit + 1).await?;
        let (invoices, next_page_token) =
            page::split_page(invoices, limit, |invoice| invoice.row.id);
        Ok(Response::new(pb::ListInvoicesResponse {
            invoices: invoices
                .iter()
                .map(|invoice| invoice_to_proto(invoice, today))
                .collect(),
            page: Some(PageResponse { next_page_token }),
        }))
    }

    async fn record_payment(
        &self,
        request: Request<pb::RecordPaymentRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let context = grpc::request_context(&request);
        let payment = decode_payment(request.get_ref(), Utc::now())?;
        store::record_payment(&self.pool, &context, &payment).await?;
        let invoice = store::get_invoice(&self.pool, payment.invoice_id).await?;
        Ok(Response::new(invoice_to_proto(
            &invoice,
            self.today().await?,
        )))
    }

    async fn void_invoice(
        &self,
        request: Request<pb::VoidInvoiceRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let context = grpc::request_context(&request);
        let message = request.get_ref();
        let mut v = Violations::new();
        let id = parse_id("id", &message.id)
            .map_err(|violation| v.check(Err(violation)))
            .ok();
        let reason = carerp_kit::status::text("reason", &message.reason, MAX_REASON, true)
            .map_err(|violation| v.check(Err(violation)))
            .ok();
        if message.expected_version < 0 {
            v.add(
                "expected_version",
                format!("must not be negative, is {}", message.expected_version),
            );
        }
        let (Some(id), Some(reason), true) = (id, reason, v.is_empty()) else {
            return Err(Error::Invalid(v).into());
        };
        store::void_invoice(&self.pool, &context, id, &reason, message.expected_version).await?;
        let invoice = store::get_invoice(&self.pool, id).await?;
        Ok(Response::new(invoice_to_proto(
            &invoice,
            self.today().await?,
        )))
    }

    async fn get_summary(
        &self,
        request: Request<pb::GetSummaryRequest>,
    ) -> Result<Response<pb::Summary>, Status> {
        let today = self.today().await?;
        let (from, to) = decode_period(request.get_ref(), today)?;
        let row = store::summary(&self.pool, today, from, to).await?;
        let currency = &self.settings.currency;
        Ok(Response::new(pb::Summary {
            unpaid_total: Some(money(row.unpaid_minor, currency)),
            overdue_total: Some(money(row.overdue_minor, currency)),
            revenue: Some(money(row.revenue_minor, currency)),
            unpaid_count: i32::try_from(row.unpaid_count).unwrap_or(i32::MAX),
            overdue_count: i32::try_from(row.overdue_count).unwrap_or(i32::MAX),
            period_from: from.to_string(),
            period_to: to.to_string(),
        }))
    }
}

// ---- decoding ----

fn decode_list(
    request: &pb::ListInvoicesRequest,
    today: NaiveDate,
) -> Result<(ListFilter, Option<Uuid>, i64), Error> {
    let mut v = Violations::new();
    let page_request = request.page.clone().unwrap_or_default();
    let limit = page::page_size(page_request.page_size)
        .map_err(|violation| v.check(Err(violation)))
        .unwrap_or(page::DEFAULT_PAGE_SIZE);
    let after: Option<Uuid> = page::decode_token(&page_request.page_token)
        .map_err(|violation| v.check(Err(violation)))
        .unwrap_or(None);
    let mut statuses = Vec::new();
    for (i, raw) in request.statuses.iter().enumerate() {
        match status_from_proto(*raw) {
            Some(status) => statuses.push(status),
            None => v.add(
                format!("statuses[{i}]"),
                format!("{raw} is not an invoice status (ISSUED, PARTIALLY_PAID, PAID or VOID)"),
            ),
        }
    }
    let customer_id = if request.customer_id.trim().is_empty() {
        None
    } else {
        parse_id("customer_id", &request.customer_id)
            .map_err(|violation| v.check(Err(violation)))
            .ok()
    };
    let issued_from = domain::parse_date("issued_from", &request.issued_from)
        .map_err(|violation| v.check(Err(violation)))
        .unwrap_or(None);
    let issued_to = domain::parse_date("issued_to", &request.issued_to)
        .map_err(|violation| v.check(Err(violation)))
        .unwrap_or(None);
    if let (Some(from), Some(to)) = (issued_from, issued_to)
        && from > to
    {
        v.add("issued_to", format!("{to} is before issued_from {from}"));
    }
    let filter = ListFilter {
        statuses,
        customer_id,
        overdue_before: request.overdue_only.then_some(today),
        issued_from,
        issued_to,
    };
    Ok(v.into_result((filter, after, limit))?)
}

fn decode_payment(
    request: &pb::RecordPaymentRequest,
    now: DateTime<Utc>,
) -> Result<NewPayment, Error> {
    let mut v = Violations::new();
    let invoice_id = parse_id("invoice_id", &request.invoice_id)
        .map_err(|violation| v.check(Err(violation)))
        .ok();
    let (amount_minor, currency) = match &request.amount {
        None if request.pay_balance => (None, String::new()),
        None => {
            v.add(
                "amount",
                "is required (or set pay_balance to pay the balance)",
            );
            (None, String::new())
        }
        Some(_) if request.pay_balance => {
            v.add("amount", "must be unset when pay_balance is set");
            (None, String::new())
        }
        Some(amount) => {
            if amount.amount_minor <= 0 {
                v.add(
                    "amount.amount_minor",
                    format!("must be positive, is {}", amount.amount_minor),
                );
            }
            let currency = amount.currency.trim().to_string();
            let is_code = currency.len() == 3 && currency.chars().all(|c| c.is_ascii_uppercase());
            if !currency.is_empty() && !is_code {
                v.add(
                    "amount.currency",
                    format!("{:?} is not an ISO 4217 code such as EUR", amount.currency),
                );
            }
            (Some(amount.amount_minor), currency)
        }
    };
    let method = match pb::PaymentMethod::try_from(request.method) {
        Ok(pb::PaymentMethod::Cash) => Some(PaymentMethod::Cash),
        Ok(pb::PaymentMethod::Card) => Some(PaymentMethod::Card),
        Ok(pb::PaymentMethod::BankTransfer) => Some(PaymentMethod::BankTransfer),
        Ok(pb::PaymentMethod::Other) => Some(PaymentMethod::Other),
        Ok(pb::PaymentMethod::Unspecified) => {
            v.add("method", "is required: CASH, CARD, BANK_TRANSFER or OTHER");
            None
        }
        Err(_) => {
            v.add(
                "method",
                format!(
                    "{} is not a payment method (CASH, CARD, BANK_TRANSFER or OTHER)",
                    request.method
                ),
            );
            None
        }
    };
    let reference = carerp_kit::status::text("reference", &request.reference, MAX_REFERENCE, false)
        .map_err(|violation| v.check(Err(violation)))
        .unwrap_or_default();
    let received_at = match &request.received_at {
        None => now,
        Some(at) => {
            match DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).unwrap_or(u32::MAX))
            {
                None => {
                    v.add("received_at", "is not a valid timestamp");
                    now
                }
                Some(at) if (at - now).num_seconds() > CLOCK_SKEW_SECONDS => {
                    v.add(
                        "received_at",
                        format!("{} is in the future", at.to_rfc3339()),
                    );
                    now
                }
                Some(at) => at,
            }
        }
    };
    // A payment is retried when its answer is lost: without a key it could be paid twice.
    let idempotency_key = Key::required("idempotency_key", &request.idempotency_key)
        .map_err(|violation| v.check(Err(violation)))
        .ok();
    let (Some(invoice_id), Some(method), Some(idempotency_key), true) =
        (invoice_id, method, idempotency_key, v.is_empty())
    else {
        return Err(Error::Invalid(v));
    };
    // The request as the client sent it (before "now" and "the balance" are filled in).
    let fingerprint = idempotency::fingerprint(
        crate::store::PAYMENT_OPERATION,
        &(
            invoice_id,
            request
                .amount
                .as_ref()
                .map(|a| (a.amount_minor, &a.currency)),
            request.pay_balance,
            request.method,
            &request.reference,
            request
                .received_at
                .as_ref()
                .map(|at| (at.seconds, at.nanos)),
        ),
    );
    Ok(NewPayment {
        invoice_id,
        amount_minor,
        currency,
        method,
        reference,
        received_at,
        idempotency_key,
        fingerprint,
    })
}

/// The revenue period: both dates, or neither for the current month of the tenant.
fn decode_period(
    request: &pb::GetSummaryRequest,
    today: NaiveDate,
) -> Result<(NaiveDate, NaiveDate), Error> {
    let mut v = Violations::new();
    let from = domain::parse_date("period_from", &request.period_from)
        .map_err(|violation| v.check(Err(violation)))
        .unwrap_or(None);
    let to = domain::parse_date("period_to", &request.period_to)
        .map_err(|violation| v.check(Err(violation)))
        .unwrap_or(None);
    if !v.is_empty() {
        return Err(Error::Invalid(v));
    }
    match (from, to) {
        (None, None) => Ok(month_of(today)),
        (Some(from), Some(to)) if from <= to => Ok((from, to)),
        (Some(from), Some(to)) => {
            v.add("period_to", format!("{to} is before period_from {from}"));
            Err(Error::Invalid(v))
        }
        (Some(_), None) => {
            v.add("period_to", "is required when period_from is set");
            Err(Error::Invalid(v))
        }
        (None, Some(_)) => {
            v.add("period_from", "is required when period_to is set");
            Err(Error::Invalid(v))
        }
    }
}

/// First and last day of the month `day` is in.
fn month_of(day: NaiveDate) -> (NaiveDate, NaiveDate) {
    let first = day.with_day(1).unwrap_or(day);
    let last = first
        .checked_add_months(chrono::Months::new(1))
        .and_then(|next| next.checked_sub_days(Days::new(1)))
        .unwrap_or(day);
    (first, last)
}

fn status_from_proto(raw: i32) -> Option<InvoiceStatus> {
    match pb::InvoiceStatus::try_from(raw).ok()? {
        pb::InvoiceStatus::Issued => Some(InvoiceStatus::Issued),
        pb::InvoiceStatus::PartiallyPaid => Some(InvoiceStatus::PartiallyPaid),
        pb::InvoiceStatus::Paid => Some(InvoiceStatus::Paid),
        pb::InvoiceStatus::Void => Some(InvoiceStatus::Void),
        pb::InvoiceStatus::Unspecified => None,
    }
}

// ---- encoding ----

fn status_to_proto(status: InvoiceStatus) -> pb::InvoiceStatus {
    match status {
        InvoiceStatus::Issued => pb::InvoiceStatus::Issued,
        InvoiceStatus::PartiallyPaid => pb::InvoiceStatus::PartiallyPaid,
        InvoiceStatus::Paid => pb::InvoiceStatus::Paid,
        InvoiceStatus::Void => pb::InvoiceStatus::Void,
    }
}

fn method_to_proto(method: &str) -> pb::PaymentMethod {
    match PaymentMethod::parse(method) {
        Some(PaymentMethod::Cash) => pb::PaymentMethod::Cash,
        Some(PaymentMethod::Card) => pb::PaymentMethod::Card,
        Some(PaymentMethod::BankTransfer) => pb::PaymentMethod::BankTransfer,
        Some(PaymentMethod::Other) => pb::PaymentMethod::Other,
        None => pb::PaymentMethod::Unspecified,
    }
}

fn money(amount_minor: i64, currency: &str) -> Money {
    Money {
        amount_minor,
        currency: currency.to_string(),
    }
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The invoice as callers see it; `today` (the tenant's) decides whether it is overdue.
fn invoice_to_proto(invoice: &Invoice, today: NaiveDate) -> pb::Invoice {
    let row = &invoice.row;
    let currency = row.currency.as_str();
    let status = row.status();
    pb::Invoice {
        id: row.id.to_string(),
        number: row.number.clone(),
        work_order_id: row.work_order_id.to_string(),
        work_order_number: row.work_order_number.clone(),
        customer_id: row.customer_id.to_string(),
        vehicle_id: row.vehicle_id.to_string(),
        lines: invoice
            .lines
            .iter()
            .map(|line| pb::InvoiceLine {
                kind: match LineKind::parse(&line.kind) {
                    Some(LineKind::Part) => pb::LineKind::Part,
                    Some(LineKind::Labor) => pb::LineKind::Labor,
                    None => pb::LineKind::Unspecified,
                }
                .into(),
                description: line.description.clone(),
                quantity: line.quantity,
                unit_price: Some(money(line.unit_price_minor, currency)),
                line_total: Some(money(line.line_total_minor, currency)),
                tax: Some(money(line.tax_minor, currency)),
            })
            .collect(),
        subtotal: Some(money(row.subtotal_minor, currency)),
        tax: Some(money(row.tax_minor, currency)),
        total: Some(money(row.total_minor, currency)),
        tax_rate_basis_points: row.tax_rate_bp,
        issue_date: row.issue_date.to_string(),
        due_date: row.due_date.to_string(),
        status: status_to_proto(status).into(),
        overdue: domain::is_overdue(status, row.due_date, today),
        payments: invoice
            .payments
            .iter()
            .map(|payment| pb::Payment {
                id: payment.id.to_string(),
                amount: Some(money(payment.amount_minor, &payment.currency)),
                method: method_to_proto(&payment.method).into(),
                reference: payment.reference.clone(),
                received_at: Some(timestamp(payment.received_at)),
                recorded_by: payment.recorded_by.clone(),
            })
            .collect(),
        paid: Some(money(row.paid_minor, currency)),
        balance: Some(money(row.balance_minor(), currency)),
        void_reason: row.void_reason.clone(),
        voided_by: row.voided_by.clone(),
        audit: Some(Audit {
            created_at: Some(timestamp(row.created_at)),
            updated_at: Some(timestamp(row.updated_at)),
            version: row.version,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_of_covers_the_whole_month() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            month_of(d("2026-11-25")),
            (d("2026-11-01"), d("2026-11-30"))
        );
        assert_eq!(
            month_of(d("2026-12-31")),
            (d("2026-12-01"), d("2026-12-31"))
        );
        assert_eq!(
            month_of(d("2028-02-01")),
            (d("2028-02-01"), d("2028-02-29"))
        );
    }
}
