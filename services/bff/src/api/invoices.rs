//! Invoices: lists, the aggregated view with the customer, payments and voiding.

use axum::Json;
use axum::extract::{Path, State};
use carerp_kit::RequestContext;
use serde::Deserialize;
use utoipa::IntoParams;

use carerp_proto::billing::v1 as pb;
use carerp_proto::customer::v1 as customer;

use super::workorders::keep;
use super::{AppState, Created, IdempotencyKey, created, page};
use crate::body::{JsonBody, QueryParams};
use crate::edge::Ctx;
use crate::models::{
    ChangeInvoiceStatus, Invoice, InvoiceAction, InvoicePage, InvoiceStatus, InvoiceStatusChanged,
    InvoiceView, PaymentMethod, RecordPayment, RequestedInvoiceStatus, VoidInvoice,
};
use crate::problem::ApiError;

const SERVICE: &str = "billing";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvoiceQuery {
    /// Page size: default 50, at most 500.
    #[param(minimum = 0, maximum = 500)]
    pub limit: Option<i32>,
    /// `nextCursor` of the previous page.
    #[param(max_length = 1024, pattern = r"^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
    /// Comma-separated statuses, e.g. `ISSUED,PARTIALLY_PAID`; absent: any.
    #[param(
        max_length = 200,
        pattern = r"^(ISSUED|PARTIALLY_PAID|PAID|VOID)(,(ISSUED|PARTIALLY_PAID|PAID|VOID))*$"
    )]
    pub status: Option<String>,
    #[param(format = Uuid)]
    pub customer_id: Option<String>,
    /// Only invoices past their due date with a balance.
    pub overdue_only: Option<bool>,
    /// Issued on or after this ISO date.
    #[param(format = Date)]
    pub issued_from: Option<String>,
    /// Issued on or before this ISO date.
    #[param(format = Date)]
    pub issued_to: Option<String>,
}

fn statuses(param: Option<String>) -> Result<Vec<i32>, ApiError> {
    super::status_filter(
        param,
        "ISSUED, PARTIALLY_PAID, PAID or VOID",
        |s: InvoiceStatus| s.to_proto() as i32,
    )
}

/// List invoices, filtered by status, customer, overdue or issue date.
#[utoipa::path(get, path = "/api/invoices", tag = "invoices", params(InvoiceQuery),
    responses((status = 200, description = "A page of invoices", body = InvoicePage)))]
pub async fn list_invoices(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    QueryParams(query): QueryParams<InvoiceQuery>,
) -> Result<Json<InvoicePage>, ApiError> {
    let clients = &state.clients;
    let response = clients
        .billing
        .clone()
        .list_invoices(clients.request(
            &ctx,
            pb::ListInvoicesRequest {
                page: page(query.limit, query.cursor),
                statuses: statuses(query.status)?,
                customer_id: query.customer_id.unwrap_or_default(),
                overdue_only: query.overdue_only.unwrap_or(false),
                issued_from: query.issued_from.unwrap_or_default(),
                issued_to: query.issued_to.unwrap_or_default(),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(InvoicePage::new(
        response.invoices.into_iter().map(Invoice::from).collect(),
        response.page,
    )))
}

/// An invoice with the customer it is addressed to; when the customer service does not
/// answer, `customer` is null and `missing` says so.
#[utoipa::path(get, path = "/api/invoices/{id}", tag = "invoices",
    params(("id" = String, Path, format = Uuid, description = "Invoice id")),
    responses((status = 200, description = "The invoice, aggregated", body = InvoiceView)))]
pub async fn get_invoice(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<InvoiceView>, ApiError> {
    let clients = &state.clients;
    let invoice = fetch(&state, &ctx, id).await?;
    let customer = clients
        .customer
        .clone()
        .get_customer(clients.request(
            &ctx,
            customer::GetCustomerRequest {
                id: invoice.customer_id.clone(),
            },
        ))
        .await;
    let mut missing = Vec::new();
    let customer = keep(customer, "customer", "customer", &mut missing);
    Ok(Json(InvoiceView {
        invoice: invoice.into(),
        customer: customer.map(Into::into),
        missing,
    }))
}

async fn fetch(
    state: &AppState,
    ctx: &RequestContext,
    id: String,
) -> Result<pb::Invoice, ApiError> {
    let clients = &state.clients;
    Ok(clients
        .billing
        .clone()
        .get_invoice(clients.request(ctx, pb::GetInvoiceRequest { id }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner())
}

/// The seed's status change: `PAID` records a payment (of `amount`, or of the balance) and
/// `VOID` voids the invoice; `action` says which happened.
#[utoipa::path(put, path = "/api/invoices/{id}/status", tag = "invoices",
    request_body = ChangeInvoiceStatus,
    params(("id" = String, Path, format = Uuid, description = "Invoice id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, pattern = r"^[!-~]+$", description = "For PAID: required with an amount, so a repeated PUT pays once; without an amount the balance is paid once anyway")),
    responses((status = 200, description = "What was done, and the invoice", body = InvoiceStatusChanged)))]
pub async fn change_status(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<ChangeInvoiceStatus>,
) -> Result<Json<InvoiceStatusChanged>, ApiError> {
    match body.status {
        RequestedInvoiceStatus::Paid => {
            if !body.reason.is_empty() {
                return Err(ApiError::field("reason", "only for VOID"));
            }
            if body.expected_version != 0 {
                return Err(ApiError::field("expectedVersion", "only for VOID"));
            }
            // A PUT may be sent again (by the client or a proxy), and must not pay twice.
            let key = match (key.is_empty(), &body.amount) {
                (false, _) => key,
                // Paying the balance is "make it PAID": the same every time. The key is derived
                // from what the body says, so a PUT with another method or reference is another
                // request (refused as already paid), not a reuse of a key the client never sent.
                (true, None) => format!(
                    "put-status-paid:{id}:{}",
                    &carerp_kit::idempotency::fingerprint(
                        "bff.put-invoice-status-paid",
                        &(body.method.map(|m| m.to_proto() as i32), &body.reference),
                    )[..16]
                ),
                (true, Some(_)) => {
                    return Err(ApiError::field(
                        "amount",
                        "a PUT may be repeated, so paying an amount needs an Idempotency-Key header (or use POST /api/invoices/{id}/payments)",
                    ));
                }
            };
            let invoice = pay(
                &state,
                &ctx,
                pb::RecordPaymentRequest {
                    invoice_id: id,
                    pay_balance: body.amount.is_none(),
                    amount: body.amount.map(Into::into),
                    method: body.method.unwrap_or(PaymentMethod::Other).to_proto() as i32,
                    reference: body.reference,
                    received_at: None,
                    idempotency_key: key,
                },
            )
            .await?;
            Ok(Json(InvoiceStatusChanged {
                action: InvoiceAction::PaymentRecorded,
                invoice,
            }))
        }
        RequestedInvoiceStatus::Void => {
            let paid_only = [
                ("amount", body.amount.is_some()),
                ("method", body.method.is_some()),
                ("reference", !body.reference.is_empty()),
            ];
            if let Some((field, _)) = paid_only.into_iter().find(|(_, given)| *given) {
                return Err(ApiError::field(field, "only for PAID"));
            }
            let invoice = void(
                &state,
                &ctx,
                pb::VoidInvoiceRequest {
                    id,
                    reason: body.reason,
                    expected_version: body.expected_version,
                },
            )
            .await?;
            Ok(Json(InvoiceStatusChanged {
                action: InvoiceAction::Voided,
                invoice,
            }))
        }
    }
}

async fn pay(
    state: &AppState,
    ctx: &RequestContext,
    request: pb::RecordPaymentRequest,
) -> Result<Invoice, ApiError> {
    let clients = &state.clients;
    Ok(clients
        .billing
        .clone()
        .record_payment(clients.request(ctx, request))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner()
        .into())
}

async fn void(
    state: &AppState,
    ctx: &RequestContext,
    request: pb::VoidInvoiceRequest,
) -> Result<Invoice, ApiError> {
    let clients = &state.clients;
    Ok(clients
        .billing
        .clone()
        .void_invoice(clients.request(ctx, request))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner()
        .into())
}

/// Record a payment; more than the balance is refused, the balance pays the invoice. The
/// `Idempotency-Key` header is required: a retry under it answers the first payment, and the
/// same key with a different payment is refused (422, naming the key).
#[utoipa::path(post, path = "/api/invoices/{id}/payments", tag = "invoices",
    request_body = RecordPayment,
    params(("id" = String, Path, format = Uuid, description = "Invoice id"),
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 200, pattern = r"^[!-~]+$", description = "Required: names this payment for 24 hours, so a retry pays once; reused for a different payment it is refused with 422")),
    responses((status = 201, description = "The invoice with the payment", body = Invoice, headers(("Location" = String, description = "The invoice")))))]
pub async fn record_payment(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<RecordPayment>,
) -> Result<Created<Invoice>, ApiError> {
    if key.is_empty() {
        return Err(ApiError::field(
            "Idempotency-Key",
            "is required: a retried payment must not be paid twice",
        ));
    }
    let invoice = pay(
        &state,
        &ctx,
        pb::RecordPaymentRequest {
            invoice_id: id,
            amount: Some(body.amount.into()),
            pay_balance: false,
            method: body.method.to_proto() as i32,
            reference: body.reference,
            received_at: body.received_at.map(carerp_kit::convert::timestamp),
            idempotency_key: key,
        },
    )
    .await?;
    Ok(created(format!("/api/invoices/{}", invoice.id), invoice))
}

/// Void an invoice that has no payment; a reason is required.
#[utoipa::path(post, path = "/api/invoices/{id}/void", tag = "invoices",
    request_body = VoidInvoice,
    params(("id" = String, Path, format = Uuid, description = "Invoice id")),
    responses((status = 200, description = "The voided invoice", body = Invoice)))]
pub async fn void_invoice(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<VoidInvoice>,
) -> Result<Json<Invoice>, ApiError> {
    let invoice = void(
        &state,
        &ctx,
        pb::VoidInvoiceRequest {
            id,
            reason: body.reason,
            expected_version: body.expected_version,
        },
    )
    .await?;
    Ok(Json(invoice))
}
