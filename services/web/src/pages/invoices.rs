//! Invoices: the filtered list, the detail with its payments and the record-payment form
//! (only for roles that may record one; the server refuses the others anyway), and a print
//! view laid out for A4.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use carerp_kit::config::GarageIdentity;
use carerp_proto::billing::v1 as pb;
use carerp_proto::common::v1::{Money, PageRequest};
use carerp_proto::customer::v1 as customer;
use http::StatusCode;
use serde::Deserialize;

use crate::Web;
use crate::format;
use crate::messages::{EN, Messages};
use crate::page::{FieldErrors, PageError, Shell, method, missing, render};
use crate::session::Caller;

const SERVICE: &str = "billing";

pub fn status_label(t: &'static Messages, status: i32) -> &'static str {
    match pb::InvoiceStatus::try_from(status) {
        Ok(pb::InvoiceStatus::Issued) => t.invoice_issued,
        Ok(pb::InvoiceStatus::PartiallyPaid) => t.invoice_partially_paid,
        Ok(pb::InvoiceStatus::Paid) => t.invoice_paid,
        Ok(pb::InvoiceStatus::Void) => t.invoice_void,
        _ => "",
    }
}

pub struct Row {
    pub id: String,
    pub number: String,
    pub status: &'static str,
    pub overdue: bool,
    pub issue_date: String,
    pub due_date: String,
    pub total: String,
    pub balance: String,
}

#[derive(Template)]
#[template(path = "invoices.html")]
struct ListPage {
    shell: Shell,
    filters: Vec<(&'static str, &'static str, bool)>,
    rows: Vec<Row>,
    missing: Vec<&'static str>,
}

#[derive(Deserialize)]
pub struct Filter {
    #[serde(default)]
    filter: String,
}

pub async fn list(
    State(web): State<Web>,
    caller: Caller,
    Query(filter): Query<Filter>,
) -> Response {
    let t = &EN;
    if let Err(refused) = caller.require(method::LIST_INVOICES) {
        return refused.into_response();
    }
    use pb::InvoiceStatus as S;
    let (statuses, overdue_only) = match filter.filter.as_str() {
        "unpaid" => (vec![S::Issued as i32, S::PartiallyPaid as i32], false),
        "overdue" => (Vec::new(), true),
        "paid" => (vec![S::Paid as i32], false),
        "void" => (vec![S::Void as i32], false),
        _ => (Vec::new(), false),
    };
    let clients = &web.clients;
    let answer = clients
        .billing
        .clone()
        .list_invoices(clients.request(
            &caller.ctx,
            pb::ListInvoicesRequest {
                page: Some(PageRequest {
                    page_size: 100,
                    page_token: String::new(),
                }),
                statuses,
                overdue_only,
                ..Default::default()
            },
        ))
        .await;
    let (rows, missing) = match answer {
        Ok(list) => (
            list.into_inner()
                .invoices
                .into_iter()
                .map(|i| Row {
                    status: status_label(t, i.status),
                    issue_date: format::date(t, &i.issue_date),
                    due_date: format::date(t, &i.due_date),
                    total: format::money_of(t, i.total.as_ref()),
                    balance: format::money_of(t, i.balance.as_ref()),
                    overdue: i.overdue,
                    id: i.id,
                    number: i.number,
                })
                .collect(),
            Vec::new(),
        ),
        Err(status) => match PageError::from_status(SERVICE, &status) {
            PageError::Unavailable(service) => (Vec::new(), vec![missing(t, service)]),
            other => return other.into_response(),
        },
    };
    let current = filter.filter.as_str();
    let filters = [
        ("", t.filter_all),
        ("unpaid", t.filter_unpaid),
        ("overdue", t.filter_overdue),
        ("paid", t.filter_paid),
        ("void", t.filter_void),
    ]
    .into_iter()
    .map(|(key, label)| (key, label, key == current))
    .collect();
    render(
        StatusCode::OK,
        &ListPage {
            shell: Shell::new(Some(&caller), t.invoices_title, "invoices"),
            filters,
            rows,
            missing,
        },
    )
}

pub struct Line {
    pub description: String,
    pub quantity: String,
    pub unit_price: String,
    pub total: String,
}

pub struct PaymentRow {
    pub amount: String,
    pub method: &'static str,
    pub reference: String,
    pub received_at: String,
}

pub struct InvoiceView {
    pub id: String,
    pub number: String,
    pub work_order_id: String,
    pub work_order_number: String,
    pub status: &'static str,
    pub overdue: bool,
    pub issue_date: String,
    pub due_date: String,
    pub lines: Vec<Line>,
    pub subtotal: String,
    pub tax: String,
    pub tax_rate: String,
    pub total: String,
    pub paid: String,
    pub balance: String,
    pub has_balance: bool,
    pub payments: Vec<PaymentRow>,
    pub customer: Option<String>,
    pub version: i64,
    /// Neither void nor paid any part of: what billing lets be voided.
    pub voidable: bool,
    pub void_reason: String,
}

fn method_label(t: &'static Messages, method: i32) -> &'static str {
    match pb::PaymentMethod::try_from(method) {
        Ok(pb::PaymentMethod::Cash) => t.method_cash,
        Ok(pb::PaymentMethod::Card) => t.method_card,
        Ok(pb::PaymentMethod::BankTransfer) => t.method_bank_transfer,
        _ => t.method_other,
    }
}

#[derive(Template)]
#[template(path = "invoice.html")]
struct DetailPage {
    shell: Shell,
    invoice: InvoiceView,
    can_pay: bool,
    can_void: bool,
    paid_now: bool,
    voided_now: bool,
    form: PaymentForm,
    errors: FieldErrors,
    void_form: VoidForm,
    void_errors: FieldErrors,
    missing: Vec<&'static str>,
}

#[derive(Template)]
#[template(path = "invoice_print.html")]
struct PrintPage {
    shell: Shell,
    garage: GarageIdentity,
    invoice: InvoiceView,
    missing: Vec<&'static str>,
}

/// The invoice and its customer's name (when the customer service answers).
async fn view(
    web: &Web,
    caller: &Caller,
    id: String,
) -> Result<(InvoiceView, Vec<&'static str>), PageError> {
    let t = &EN;
    let clients = &web.clients;
    let invoice = clients
        .billing
        .clone()
        .get_invoice(clients.request(&caller.ctx, pb::GetInvoiceRequest { id }))
        .await
        .map_err(PageError::grpc(SERVICE))?
        .into_inner();
    let found = clients
        .customer
        .clone()
        .get_customer(clients.request(
            &caller.ctx,
            customer::GetCustomerRequest {
                id: invoice.customer_id.clone(),
            },
        ))
        .await;
    let mut absent = Vec::new();
    let customer = match found {
        Ok(c) => Some(c.into_inner().name),
        Err(_) => {
            absent.push(missing(t, "customer"));
            None
        }
    };
    let has_balance = invoice.balance.as_ref().is_some_and(|b| b.amount_minor > 0)
        && invoice.status != pb::InvoiceStatus::Void as i32;
    let view = InvoiceView {
        status: status_label(t, invoice.status),
        overdue: invoice.overdue,
        issue_date: format::date(t, &invoice.issue_date),
        due_date: format::date(t, &invoice.due_date),
        lines: invoice
            .lines
            .iter()
            .map(|l| Line {
                description: l.description.clone(),
                // Labour is counted in minutes and priced by the hour.
                quantity: if l.kind == pb::LineKind::Labor as i32 {
                    format::hours(t, l.quantity)
                } else {
                    format::integer(t, i64::from(l.quantity))
                },
                unit_price: format::money_of(t, l.unit_price.as_ref()),
                total: format::money_of(t, l.line_total.as_ref()),
            })
            .collect(),
        subtotal: format::money_of(t, invoice.subtotal.as_ref()),
        tax: format::money_of(t, invoice.tax.as_ref()),
        tax_rate: format!("{}%", f64::from(invoice.tax_rate_basis_points) / 100.0),
        total: format::money_of(t, invoice.total.as_ref()),
        paid: format::money_of(t, invoice.paid.as_ref()),
        balance: format::money_of(t, invoice.balance.as_ref()),
        has_balance,
        payments: invoice
            .payments
            .iter()
            .map(|p| PaymentRow {
                amount: format::money_of(t, p.amount.as_ref()),
                method: method_label(t, p.method),
                reference: p.reference.clone(),
                received_at: format::date_time(t, &web.zone, p.received_at.as_ref()),
            })
            .collect(),
        customer,
        version: invoice
            .audit
            .as_ref()
            .map(|a| a.version)
            .unwrap_or_default(),
        voidable: invoice.status != pb::InvoiceStatus::Void as i32 && invoice.payments.is_empty(),
        void_reason: invoice.void_reason,
        id: invoice.id,
        number: invoice.number,
        work_order_id: invoice.work_order_id,
        work_order_number: invoice.work_order_number,
    };
    Ok((view, absent))
}

#[derive(Deserialize)]
pub struct Shown {
    #[serde(default)]
    paid: bool,
    #[serde(default)]
    voided: bool,
}

pub async fn detail(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Query(shown): Query<Shown>,
) -> Response {
    let form = PaymentForm {
        idempotency_key: uuid::Uuid::now_v7().to_string(),
        ..PaymentForm::default()
    };
    detail_page(
        &web,
        &caller,
        id,
        Notice {
            paid: shown.paid,
            voided: shown.voided,
        },
        form,
        FieldErrors::default(),
        None,
        StatusCode::OK,
    )
    .await
}

/// What the page confirms it just did.
#[derive(Default)]
struct Notice {
    paid: bool,
    voided: bool,
}

#[allow(clippy::too_many_arguments)]
async fn detail_page(
    web: &Web,
    caller: &Caller,
    id: String,
    shown: Notice,
    form: PaymentForm,
    errors: FieldErrors,
    void: Option<(VoidForm, FieldErrors)>,
    status: StatusCode,
) -> Response {
    let (void_form, void_errors) = void.unwrap_or_default();
    match view(web, caller, id).await {
        Ok((invoice, missing)) => render(
            status,
            &DetailPage {
                shell: Shell::new(
                    Some(caller),
                    format!("{} {}", EN.invoice, invoice.number),
                    "invoices",
                ),
                can_pay: caller.can(method::RECORD_PAYMENT) && invoice.has_balance,
                can_void: caller.can(method::VOID_INVOICE) && invoice.voidable,
                invoice,
                paid_now: shown.paid,
                voided_now: shown.voided,
                form,
                errors,
                void_form,
                void_errors,
                missing,
            },
        ),
        Err(err) => err.into_response(),
    }
}

pub async fn print(State(web): State<Web>, caller: Caller, Path(id): Path<String>) -> Response {
    match view(&web, &caller, id).await {
        Ok((invoice, missing)) => render(
            StatusCode::OK,
            &PrintPage {
                shell: Shell::new(
                    Some(&caller),
                    format!("{} {}", EN.invoice, invoice.number),
                    "invoices",
                ),
                garage: web.settings.garage.clone(),
                invoice,
                missing,
            },
        ),
        Err(err) => err.into_response(),
    }
}

#[derive(Default, Deserialize)]
pub struct PaymentForm {
    #[serde(default)]
    amount: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    idempotency_key: String,
}

pub async fn record_payment(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<PaymentForm>,
) -> Response {
    let t = &EN;
    if let Err(refused) = caller.require(method::RECORD_PAYMENT) {
        return refused.into_response();
    }
    let currency = web.settings.currency.clone();
    let Some(amount_minor) = format::parse_amount(t, &form.amount, &currency) else {
        let mut errors = FieldErrors::default();
        errors.add("amount", t.amount_invalid);
        return detail_page(
            &web,
            &caller,
            id,
            Notice::default(),
            form,
            errors,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let method = match form.method.as_str() {
        "CASH" => pb::PaymentMethod::Cash,
        "CARD" => pb::PaymentMethod::Card,
        "BANK_TRANSFER" => pb::PaymentMethod::BankTransfer,
        _ => pb::PaymentMethod::Other,
    };
    let clients = &web.clients;
    let answer = clients
        .billing
        .clone()
        .record_payment(clients.request(
            &caller.ctx,
            pb::RecordPaymentRequest {
                invoice_id: id.clone(),
                amount: Some(Money {
                    amount_minor,
                    currency,
                }),
                method: method as i32,
                reference: form.reference.clone(),
                received_at: None,
                idempotency_key: form.idempotency_key.clone(),
                pay_balance: false,
            },
        ))
        .await;
    match answer {
        Ok(_) => Redirect::to(&format!("/invoices/{id}?paid=true")).into_response(),
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition
            ) =>
        {
            let mut errors = FieldErrors::from_status(&status);
            if errors.is_empty() {
                errors.add("amount", status.message());
            }
            detail_page(
                &web,
                &caller,
                id,
                Notice::default(),
                form,
                errors,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

#[derive(Default, Deserialize)]
pub struct VoidForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    expected_version: i64,
}

/// Voids an invoice that has no payments, with the reason people will read on it.
pub async fn void_invoice(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<VoidForm>,
) -> Response {
    if let Err(refused) = caller.require(method::VOID_INVOICE) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .billing
        .clone()
        .void_invoice(clients.request(
            &caller.ctx,
            pb::VoidInvoiceRequest {
                id: id.clone(),
                reason: form.reason.clone(),
                expected_version: form.expected_version,
            },
        ))
        .await;
    match answer {
        Ok(_) => Redirect::to(&format!("/invoices/{id}?voided=true")).into_response(),
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::InvalidArgument
                    | tonic::Code::FailedPrecondition
                    | tonic::Code::Aborted
            ) =>
        {
            let mut errors = FieldErrors::from_status(&status);
            if status.code() == tonic::Code::Aborted {
                errors.add("version", EN.stale_write_invoice);
            } else if errors.is_empty() {
                errors.add("reason", status.message());
            }
            let payment = PaymentForm {
                idempotency_key: uuid::Uuid::now_v7().to_string(),
                ..PaymentForm::default()
            };
            detail_page(
                &web,
                &caller,
                id,
                Notice::default(),
                payment,
                FieldErrors::default(),
                Some((form, errors)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}
