//! Work orders: the list by status, and the detail with its part lines (reservation state
//! and failure reason), labour lines and totals; add a part from the catalogue, add labour,
//! change the status. The saga is asynchronous: the page listens to the order's changes
//! ([`super::live`]) and fetches its lines section again on each, so a line turns RESERVED
//! and a completed order shows its invoice without a reload. The event can arrive before the
//! work-order service has applied it (both hear it at once), so while a line is pending or
//! an invoice awaited the section also looks again a second after each answer.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use carerp_bff::api::estimates::{self, Sent};
use carerp_bff::models::{Delivery, EmailSent};
use carerp_bff::problem::ApiError;
use carerp_kit::config::GarageIdentity;
use carerp_kit::permissions::rule;
use carerp_proto::billing::v1 as billing;
use carerp_proto::common::v1::PageRequest;
use carerp_proto::customer::v1 as customer;
use carerp_proto::inventory::v1 as inventory;
use carerp_proto::workorder::v1 as pb;
use http::StatusCode;
use serde::Deserialize;

use crate::Web;
use crate::format;
use crate::messages::{EN, Messages};
use crate::page::{FieldErrors, PageError, Shell, is_refusal, method, missing, render};
use crate::session::Caller;

const SERVICE: &str = "workorder";
/// The field a stale write's refusal is filed under, so the page offers a reload.
const STALE: &str = "version";
use pb::WorkOrderStatus as S;

pub fn status_label(t: &'static Messages, status: i32) -> &'static str {
    match S::try_from(status) {
        Ok(S::Open) => t.status_open,
        Ok(S::Estimate) => t.status_estimate,
        Ok(S::InProgress) => t.status_in_progress,
        Ok(S::AwaitingParts) => t.status_awaiting_parts,
        Ok(S::Completed) => t.status_completed,
        Ok(S::Invoiced) => t.status_invoiced,
        Ok(S::Cancelled) => t.status_cancelled,
        _ => "",
    }
}

fn status_name(status: S) -> &'static str {
    match status {
        S::Open => "OPEN",
        S::Estimate => "ESTIMATE",
        S::InProgress => "IN_PROGRESS",
        S::AwaitingParts => "AWAITING_PARTS",
        S::Completed => "COMPLETED",
        S::Invoiced => "INVOICED",
        S::Cancelled => "CANCELLED",
        S::Unspecified => "",
    }
}

fn parse_status(name: &str) -> Option<S> {
    [
        S::Open,
        S::Estimate,
        S::InProgress,
        S::AwaitingParts,
        S::Completed,
        S::Invoiced,
        S::Cancelled,
    ]
    .into_iter()
    .find(|s| status_name(*s) == name)
}

/// Where a person may move a work order from `status`; the service has the last word (and
/// its message is shown when it refuses).
fn next_statuses(status: S) -> &'static [S] {
    match status {
        S::Open | S::Estimate => &[S::InProgress, S::Cancelled],
        S::InProgress => &[S::Completed, S::AwaitingParts, S::Cancelled],
        S::AwaitingParts => &[S::InProgress, S::Cancelled],
        S::Completed | S::Invoiced | S::Cancelled | S::Unspecified => &[],
    }
}

/// A card on the board: the order, who and what it is for, how long it has been open, and
/// the moves the caller may make from its column.
pub struct Card {
    pub id: String,
    pub number: String,
    pub customer: String,
    pub vehicle: String,
    pub age: String,
    pub version: i64,
    pub moves: Vec<(&'static str, &'static str)>,
}

pub struct Column {
    pub name: &'static str,
    pub label: &'static str,
    pub cards: Vec<Card>,
}

/// The board's columns, in the order of the life cycle; cancelled ones behind the filter.
const BOARD: &[S] = &[
    S::Open,
    S::Estimate,
    S::InProgress,
    S::AwaitingParts,
    S::Completed,
    S::Invoiced,
];

#[derive(Template)]
#[template(path = "work_orders.html")]
struct BoardPage {
    shell: Shell,
    columns: Vec<Column>,
    show_cancelled: bool,
    /// The service's refusal of a move made from the board.
    refused: Option<String>,
    /// The refusal was a stale write: someone else changed the order first.
    stale: bool,
    missing: Vec<&'static str>,
    /// Where the board hears of changes (`sse-connect`).
    live: String,
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    cancelled: String,
}

/// The moves a caller may make from `status` on a button: the life cycle's, less what the
/// role may not (cancelling needs a reason, so it is offered on the detail page).
fn moves_for(caller: &Caller, status: S) -> Vec<(&'static str, &'static str)> {
    let t = &EN;
    let any_status = caller.can(rule::WORK_ORDER_ANY_STATUS);
    let may_move = caller.can(method::CHANGE_STATUS);
    next_statuses(status)
        .iter()
        .filter(|s| **s != S::Cancelled)
        .filter(|s| may_move && (any_status || matches!(s, S::InProgress | S::Completed)))
        .map(|s| (status_name(*s), status_label(t, *s as i32)))
        .collect()
}

pub async fn list(
    State(web): State<Web>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Response {
    let only = parse_status(&query.status);
    let show_cancelled = !query.cancelled.is_empty() || only == Some(S::Cancelled);
    board(&web, &caller, only, show_cancelled, None, StatusCode::OK).await
}

async fn board(
    web: &Web,
    caller: &Caller,
    only: Option<S>,
    show_cancelled: bool,
    refused: Option<tonic::Status>,
    code: StatusCode,
) -> Response {
    let t = &EN;
    // Before the list is read: a change after it reaches the page.
    let live = super::live::connect_url(web, None);
    let mut shown: Vec<S> = match only {
        Some(status) => vec![status],
        None => BOARD.to_vec(),
    };
    if show_cancelled && !shown.contains(&S::Cancelled) {
        shown.push(S::Cancelled);
    }
    let clients = &web.clients;
    let answer = clients
        .workorder
        .clone()
        .list_work_orders(clients.request(
            &caller.ctx,
            pb::ListWorkOrdersRequest {
                page: Some(PageRequest {
                    page_size: 500,
                    page_token: String::new(),
                }),
                statuses: shown.iter().map(|s| *s as i32).collect(),
                ..Default::default()
            },
        ))
        .await;
    let mut absent = Vec::new();
    let orders = match answer {
        Ok(list) => list.into_inner().work_orders,
        Err(status) => match PageError::from_status(SERVICE, &status) {
            PageError::Unavailable(service) => {
                absent.push(missing(t, service));
                Vec::new()
            }
            other => return other.into_response(),
        },
    };
    let (names, plates, customers_down) = parties(
        web,
        caller,
        orders
            .iter()
            .map(|o| (o.customer_id.as_str(), o.vehicle_id.as_str())),
    )
    .await;
    if customers_down {
        absent.push(missing(t, "customer"));
    }
    let now = jiff::Timestamp::now();
    let mut columns: Vec<Column> = shown
        .iter()
        .map(|s| Column {
            name: status_name(*s),
            label: status_label(t, *s as i32),
            cards: Vec::new(),
        })
        .collect();
    for order in orders {
        let status = S::try_from(order.status).unwrap_or(S::Unspecified);
        let Some(column) = columns.iter_mut().find(|c| c.name == status_name(status)) else {
            continue;
        };
        let audit = order.audit.as_ref();
        column.cards.push(Card {
            customer: names.get(&order.customer_id).cloned().unwrap_or_default(),
            vehicle: plates.get(&order.vehicle_id).cloned().unwrap_or_default(),
            age: format::age(t, now, audit.and_then(|a| a.created_at.as_ref())),
            version: audit.map(|a| a.version).unwrap_or_default(),
            moves: moves_for(caller, status),
            id: order.id,
            number: order.number,
        });
    }
    let stale = refused
        .as_ref()
        .is_some_and(|s| s.code() == tonic::Code::Aborted);
    render(
        code,
        &BoardPage {
            shell: Shell::new(Some(caller), t.work_orders_title, "work-orders"),
            columns,
            show_cancelled,
            refused: refused.map(|s| refusal(&s)),
            stale,
            missing: absent,
            live,
        },
    )
}

/// The service's words for a refused write, its field violations included.
pub fn refusal(status: &tonic::Status) -> String {
    let errors = FieldErrors::from_status(status);
    if errors.is_empty() {
        status.message().to_string()
    } else {
        errors
            .0
            .iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

type Names = std::collections::HashMap<String, String>;

/// The customers' names and the vehicles' plates of (customer id, vehicle id) pairs, each
/// asked once and all at once; whether the customer service failed to answer any of them.
pub async fn parties<'a>(
    web: &Web,
    caller: &Caller,
    of: impl Iterator<Item = (&'a str, &'a str)>,
) -> (Names, Names, bool) {
    let (customer_ids, vehicle_ids): (
        std::collections::BTreeSet<&str>,
        std::collections::BTreeSet<&str>,
    ) = of.unzip();
    let mut asks = tokio::task::JoinSet::new();
    for id in customer_ids {
        let (clients, ctx, id) = (web.clients.clone(), caller.ctx.clone(), id.to_string());
        asks.spawn(async move {
            let answer = clients
                .customer
                .clone()
                .get_customer(
                    clients.request(&ctx, customer::GetCustomerRequest { id: id.clone() }),
                )
                .await
                .map(|c| c.into_inner().name);
            (true, id, answer)
        });
    }
    for id in vehicle_ids {
        let (clients, ctx, id) = (web.clients.clone(), caller.ctx.clone(), id.to_string());
        asks.spawn(async move {
            let answer = clients
                .customer
                .clone()
                .get_vehicle(clients.request(&ctx, customer::GetVehicleRequest { id: id.clone() }))
                .await
                .map(|v| {
                    let v = v.into_inner();
                    format!("{} · {} {}", v.license_plate, v.make, v.model)
                });
            (false, id, answer)
        });
    }
    let (mut names, mut plates, mut down) = (Names::new(), Names::new(), false);
    while let Some(done) = asks.join_next().await {
        match done {
            Ok((true, id, Ok(name))) => {
                names.insert(id, name);
            }
            Ok((false, id, Ok(plate))) => {
                plates.insert(id, plate);
            }
            Ok((_, _, Err(status))) if status.code() == tonic::Code::NotFound => {}
            _ => down = true,
        }
    }
    (names, plates, down)
}

pub struct PartRow {
    pub id: String,
    pub job: String,
    pub label: String,
    pub quantity: i32,
    pub state: &'static str,
    pub state_class: &'static str,
    pub failure: String,
    pub unit_price: String,
    pub total: String,
}

pub struct LaborRow {
    pub id: String,
    pub job: String,
    pub description: String,
    pub technician: String,
    pub minutes: i32,
    pub rate: String,
    pub total: String,
}

/// The part of the page that changes by itself: lines, totals, status and invoice link.
#[derive(Template)]
#[template(path = "work_order_lines.html")]
struct Lines {
    shell: Shell,
    id: String,
    version: i64,
    /// A line waits for inventory, or the completed order for its invoice.
    settling: bool,
    status: &'static str,
    can_remove_parts: bool,
    can_remove_labor: bool,
    can_retry: bool,
    jobs: Vec<JobRow>,
    /// The front desk records the customer's decisions and sends the estimate.
    can_decide: bool,
    can_remove_jobs: bool,
    can_send_estimate: bool,
    /// Emailing is configured: "Send by email" beside "Send estimate".
    can_email_estimate: bool,
    /// The send form's idempotency key, new with every rendering.
    send_key: String,
    /// "Estimate 2 sent" / "... changed since it was sent".
    estimate_note: Option<String>,
    parts: Vec<PartRow>,
    labor: Vec<LaborRow>,
    parts_total: String,
    labor_total: String,
    estimated_total: String,
    proposed_total: String,
    invoice_id: Option<String>,
}

/// A job as the lines section shows it: its state, total and decision.
pub struct JobRow {
    pub id: String,
    pub title: String,
    pub state: &'static str,
    pub state_class: &'static str,
    pub proposed: bool,
    pub intake: bool,
    pub total: String,
    /// "Approved by link, 2 Dec 2026" and the reason or reminder day.
    pub decision: String,
}

/// A job's state as a badge: its label and class.
pub fn job_state_label(t: &'static Messages, state: i32) -> (&'static str, &'static str) {
    match pb::JobState::try_from(state) {
        Ok(pb::JobState::Approved) => (t.job_approved, "ok"),
        Ok(pb::JobState::Declined) => (t.job_declined, "bad"),
        Ok(pb::JobState::Deferred) => (t.job_deferred, "wait"),
        _ => (t.job_proposed, "wait"),
    }
}

fn channel_label(t: &'static Messages, channel: i32) -> &'static str {
    match pb::DecisionChannel::try_from(channel) {
        Ok(pb::DecisionChannel::InPerson) => t.channel_in_person,
        Ok(pb::DecisionChannel::Phone) => t.channel_phone,
        Ok(pb::DecisionChannel::Email) => t.channel_email,
        Ok(pb::DecisionChannel::Link) => t.channel_link,
        Ok(pb::DecisionChannel::Intake) => t.channel_intake,
        _ => "",
    }
}

fn job_rows(zone: &jiff::tz::TimeZone, order: &pb::WorkOrder) -> Vec<JobRow> {
    let t = &EN;
    order
        .jobs
        .iter()
        .map(|job| {
            let (state, state_class) = job_state_label(t, job.state);
            let decision = job
                .decision
                .as_ref()
                .map(|d| {
                    let mut text = format!(
                        "{} · {}",
                        channel_label(t, d.channel),
                        format::date_time(t, zone, d.decided_at.as_ref())
                    );
                    if !d.reason.is_empty() {
                        text.push_str(&format!(" · {}", d.reason));
                    }
                    if !d.remind_after.is_empty() {
                        text.push_str(&format!(" · {} {}", t.remind_after, d.remind_after));
                    }
                    text
                })
                .unwrap_or_default();
            JobRow {
                id: job.id.clone(),
                title: job.title.clone(),
                state,
                state_class,
                proposed: job.state == pb::JobState::Proposed as i32,
                intake: job.intake,
                total: format::money_of(t, job.total.as_ref()),
                decision,
            }
        })
        .collect()
}

/// The job a line belongs to, by title.
fn job_title(order: &pb::WorkOrder, job_id: &str) -> String {
    order
        .jobs
        .iter()
        .find(|job| job.id == job_id)
        .map(|job| job.title.clone())
        .unwrap_or_default()
}

pub struct PartChoice {
    pub id: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "work_order.html")]
struct DetailPage {
    shell: Shell,
    id: String,
    number: String,
    version: i64,
    complaint: String,
    notes: String,
    can_edit_notes: bool,
    customer: Option<String>,
    vehicle: Option<String>,
    lines: String,
    can_add_part: bool,
    can_add_labor: bool,
    can_add_job: bool,
    parts: Vec<PartChoice>,
    /// The garage's canned jobs, when the caller may add one.
    canned_jobs: Vec<PartChoice>,
    /// The vehicle's work recommended at its other visits, when the caller may offer it.
    offers: Vec<super::history::RecommendationRow>,
    /// The jobs a line may go to (PROPOSED and APPROVED), the intake job first.
    job_choices: Vec<PartChoice>,
    moves: Vec<(&'static str, &'static str)>,
    can_cancel: bool,
    errors: FieldErrors,
    /// The refused write was a stale one: someone else changed the order first.
    stale: bool,
    missing: Vec<&'static str>,
    /// Where the page hears of the order's changes (`sse-connect`).
    live: String,
}

/// The order as pages show it. Billing issues the invoice before the work-order service
/// hears of it: a completed order without one asks billing, so the page that heard
/// `invoice.created` links the invoice at once (billing down: no link yet, nothing else lost).
async fn fetch(web: &Web, caller: &Caller, id: &str) -> Result<pb::WorkOrder, PageError> {
    let clients = &web.clients;
    let mut order = clients
        .workorder
        .clone()
        .get_work_order(
            clients.request(&caller.ctx, pb::GetWorkOrderRequest { id: id.to_string() }),
        )
        .await
        .map_err(PageError::grpc(SERVICE))?
        .into_inner();
    if order.status == S::Completed as i32
        && order.invoice_id.is_empty()
        && caller.can(method::GET_INVOICE_BY_WORK_ORDER)
        && let Ok(invoice) = clients
            .billing
            .clone()
            .get_invoice_by_work_order(clients.request(
                &caller.ctx,
                billing::GetInvoiceByWorkOrderRequest {
                    work_order_id: order.id.clone(),
                },
            ))
            .await
    {
        order.invoice_id = invoice.into_inner().id;
    }
    Ok(order)
}

fn lines_of(web: &Web, caller: &Caller, order: &pb::WorkOrder) -> Lines {
    let t = &EN;
    let parts: Vec<PartRow> = order
        .part_lines
        .iter()
        .map(|l| {
            let (state, class) = match pb::ReservationState::try_from(l.reservation_state) {
                Ok(pb::ReservationState::Reserved) => (t.reservation_reserved, "ok"),
                Ok(pb::ReservationState::Failed) => (t.reservation_failed, "bad"),
                Ok(pb::ReservationState::Quoted) => (t.reservation_quoted, "wait"),
                _ => (t.reservation_pending, "wait"),
            };
            PartRow {
                id: l.id.clone(),
                job: job_title(order, &l.job_id),
                label: if l.sku.is_empty() {
                    l.part_id.clone()
                } else {
                    format!("{} · {}", l.sku, l.name)
                },
                quantity: l.quantity,
                state,
                state_class: class,
                failure: l.failure_reason.clone(),
                unit_price: format::money_of(t, l.unit_price.as_ref()),
                total: format::money_of(t, l.line_total.as_ref()),
            }
        })
        .collect();
    let pending = order
        .part_lines
        .iter()
        .any(|l| l.reservation_state == pb::ReservationState::Pending as i32);
    let awaiting_invoice = order.status == S::Completed as i32 && order.invoice_id.is_empty();
    let failed = order
        .part_lines
        .iter()
        .any(|l| l.reservation_state == pb::ReservationState::Failed as i32);
    let editable = matches!(
        S::try_from(order.status),
        Ok(S::Open | S::Estimate | S::InProgress | S::AwaitingParts)
    );
    let totals = order.totals.as_ref();
    let jobs = job_rows(&web.zone, order);
    let any_proposed = jobs.iter().any(|job| job.proposed);
    let estimate_note = (order.estimate_version > 0).then(|| {
        if order.estimate_outdated {
            format!(
                "{} {} · {}",
                t.estimate, order.estimate_version, t.estimate_outdated
            )
        } else {
            format!(
                "{} {} {}",
                t.estimate, order.estimate_version, t.estimate_sent
            )
        }
    });
    Lines {
        shell: Shell::new(Some(caller), "", "work-orders"),
        id: order.id.clone(),
        version: order.audit.as_ref().map(|a| a.version).unwrap_or_default(),
        settling: pending || awaiting_invoice,
        status: status_label(t, order.status),
        can_remove_parts: editable && caller.can(method::REMOVE_PART_LINE),
        can_remove_labor: editable && caller.can(method::REMOVE_LABOR_LINE),
        can_retry: editable && failed && caller.can(method::RETRY_RESERVATION),
        can_decide: editable && caller.can(method::DECIDE_JOB),
        can_remove_jobs: editable && caller.can(method::REMOVE_JOB),
        can_send_estimate: editable && any_proposed && caller.can(method::SEND_ESTIMATE),
        can_email_estimate: web.delivery.is_some(),
        send_key: uuid::Uuid::now_v7().to_string(),
        estimate_note,
        jobs,
        parts,
        labor: order
            .labor_lines
            .iter()
            .map(|l| LaborRow {
                id: l.id.clone(),
                job: job_title(order, &l.job_id),
                description: l.description.clone(),
                technician: l.technician.clone(),
                minutes: l.minutes,
                rate: format::money_of(t, l.hourly_rate.as_ref()),
                total: format::money_of(t, l.line_total.as_ref()),
            })
            .collect(),
        parts_total: format::money_of(t, totals.and_then(|t| t.parts.as_ref())),
        labor_total: format::money_of(t, totals.and_then(|t| t.labor.as_ref())),
        estimated_total: format::money_of(t, totals.and_then(|t| t.estimated_total.as_ref())),
        proposed_total: format::money_of(t, totals.and_then(|t| t.proposed.as_ref())),
        invoice_id: (!order.invoice_id.is_empty() && caller.can(method::LIST_INVOICES))
            .then(|| order.invoice_id.clone()),
    }
}

/// The lines section alone, fetched again when the order changes.
pub async fn lines(State(web): State<Web>, caller: Caller, Path(id): Path<String>) -> Response {
    match fetch(&web, &caller, &id).await {
        Ok(order) => render(StatusCode::OK, &lines_of(&web, &caller, &order)),
        Err(err) => err.into_response(),
    }
}

pub async fn detail(State(web): State<Web>, caller: Caller, Path(id): Path<String>) -> Response {
    detail_page(&web, &caller, &id, FieldErrors::default(), StatusCode::OK).await
}

async fn detail_page(
    web: &Web,
    caller: &Caller,
    id: &str,
    errors: FieldErrors,
    code: StatusCode,
) -> Response {
    detail_page_with_notes(web, caller, id, errors, code, None).await
}

/// [`detail_page`], its notes field holding `typed_notes` (a refused edit keeps what was
/// typed) instead of the order's.
async fn detail_page_with_notes(
    web: &Web,
    caller: &Caller,
    id: &str,
    errors: FieldErrors,
    code: StatusCode,
    typed_notes: Option<String>,
) -> Response {
    let t = &EN;
    // Before the order is read: a change after it reaches the page.
    let live = super::live::connect_url(web, Some(id));
    let order = match fetch(web, caller, id).await {
        Ok(order) => order,
        Err(err) => return err.into_response(),
    };
    let clients = &web.clients;
    let status = S::try_from(order.status).unwrap_or(S::Unspecified);
    let editable = matches!(
        status,
        S::Open | S::Estimate | S::InProgress | S::AwaitingParts
    );
    let can_add_part = editable && caller.can(method::ADD_PART_LINE);
    let job_choices: Vec<PartChoice> = order
        .jobs
        .iter()
        .filter(|job| {
            matches!(
                pb::JobState::try_from(job.state),
                Ok(pb::JobState::Proposed | pb::JobState::Approved)
            )
        })
        .map(|job| PartChoice {
            id: job.id.clone(),
            label: format!("{} ({})", job.title, job_state_label(t, job.state).0),
        })
        .collect();
    let (mut customers, mut vehicles) = (clients.customer.clone(), clients.customer.clone());
    let can_add_canned = editable && caller.can(method::ADD_CANNED_JOB);
    let (found_customer, found_vehicle, catalogue, canned, offers) = tokio::join!(
        customers.get_customer(clients.request(
            &caller.ctx,
            customer::GetCustomerRequest {
                id: order.customer_id.clone()
            },
        )),
        vehicles.get_vehicle(clients.request(
            &caller.ctx,
            customer::GetVehicleRequest {
                id: order.vehicle_id.clone()
            },
        )),
        async {
            if !can_add_part {
                return Ok(None);
            }
            clients
                .inventory
                .clone()
                .list_parts(clients.request(
                    &caller.ctx,
                    inventory::ListPartsRequest {
                        page: Some(PageRequest {
                            page_size: 500,
                            page_token: String::new(),
                        }),
                        active: inventory::ActiveFilter::Active as i32,
                        ..Default::default()
                    },
                ))
                .await
                .map(|r| Some(r.into_inner().parts))
        },
        async {
            if !can_add_canned {
                return Vec::new();
            }
            let listed = clients
                .canned
                .clone()
                .list_canned_jobs(clients.request(&caller.ctx, pb::ListCannedJobsRequest {}))
                .await;
            // Without the list the page offers no canned job; the rest of it stands.
            listed
                .map(|r| r.into_inner().canned_jobs)
                .unwrap_or_default()
                .into_iter()
                .map(|c| PartChoice {
                    id: c.id,
                    label: c.name,
                })
                .collect()
        },
        async {
            if !editable {
                return Vec::new();
            }
            super::history::offers_for(web, caller, &order).await
        },
    );
    let mut absent = Vec::new();
    let customer = found_customer.map(|c| c.into_inner().name).ok();
    let vehicle = found_vehicle
        .map(|v| {
            let v = v.into_inner();
            format!(
                "{} · {} {} {} · {}",
                v.license_plate, v.make, v.model, v.year, v.vin
            )
        })
        .ok();
    if customer.is_none() || vehicle.is_none() {
        absent.push(missing(t, "customer"));
    }
    let parts = match catalogue {
        Ok(parts) => parts
            .unwrap_or_default()
            .into_iter()
            .map(|p| PartChoice {
                label: format!(
                    "{} · {} ({} · {})",
                    p.sku,
                    p.name,
                    format::money_of(t, p.unit_price.as_ref()),
                    p.quantity_available
                ),
                id: p.id,
            })
            .collect(),
        Err(_) => {
            absent.push(missing(t, "inventory"));
            Vec::new()
        }
    };
    let moves = moves_for(caller, status);
    let may_move = caller.can(method::CHANGE_STATUS);
    let any_status = caller.can(rule::WORK_ORDER_ANY_STATUS);
    let can_cancel = may_move && any_status && next_statuses(status).contains(&S::Cancelled);
    let lines = match lines_of(web, caller, &order).render() {
        Ok(html) => html,
        Err(err) => return PageError::Internal(err.to_string()).into_response(),
    };
    render(
        code,
        &DetailPage {
            shell: Shell::new(
                Some(caller),
                format!("{} {}", t.work_order, order.number),
                "work-orders",
            ),
            id: order.id.clone(),
            number: order.number.clone(),
            version: order.audit.as_ref().map(|a| a.version).unwrap_or_default(),
            complaint: order.complaint.clone(),
            notes: typed_notes.unwrap_or_else(|| order.notes.clone()),
            can_edit_notes: caller.can(method::UPDATE_NOTES)
                && !matches!(status, S::Invoiced | S::Cancelled),
            customer,
            vehicle,
            lines,
            can_add_part: can_add_part && !parts.is_empty(),
            can_add_labor: editable && caller.can(method::ADD_LABOR_LINE),
            can_add_job: editable && caller.can(method::ADD_JOB),
            parts,
            canned_jobs: canned,
            offers,
            job_choices,
            moves,
            can_cancel,
            stale: errors.0.iter().any(|(field, _)| field == STALE),
            errors,
            missing: absent,
            live,
        },
    )
}

/// A write's answer: back to the page, or the page again with the service's field errors.
pub async fn after_write(
    web: &Web,
    caller: &Caller,
    id: &str,
    answer: Result<tonic::Response<pb::WorkOrder>, tonic::Status>,
) -> Response {
    match answer {
        Ok(_) => Redirect::to(&format!("/work-orders/{id}")).into_response(),
        Err(status) if is_refusal(&status) => {
            let mut errors = FieldErrors::from_status(&status);
            if status.code() == tonic::Code::Aborted {
                errors.add(STALE, status.message());
            } else if errors.is_empty() {
                errors.add("status", status.message());
            }
            detail_page(web, caller, id, errors, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

#[derive(Deserialize)]
pub struct AddPart {
    #[serde(default)]
    part_id: String,
    #[serde(default)]
    job_id: String,
    #[serde(default)]
    quantity: String,
    #[serde(default)]
    idempotency_key: String,
}

pub async fn add_part(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<AddPart>,
) -> Response {
    if let Err(refused) = caller.require(method::ADD_PART_LINE) {
        return refused.into_response();
    }
    let Ok(quantity) = form.quantity.trim().parse::<i32>() else {
        let mut errors = FieldErrors::default();
        errors.add("quantity", EN.number_invalid);
        return detail_page(&web, &caller, &id, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let clients = &web.clients;
    let answer = clients
        .workorder
        .clone()
        .add_part_line(clients.request(
            &caller.ctx,
            pb::AddPartLineRequest {
                work_order_id: id.clone(),
                part_id: form.part_id,
                quantity,
                expected_version: 0,
                idempotency_key: form.idempotency_key,
                job_id: form.job_id,
            },
        ))
        .await;
    after_write(&web, &caller, &id, answer).await
}

#[derive(Deserialize)]
pub struct AddLabor {
    #[serde(default)]
    job_id: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    technician: String,
    #[serde(default)]
    minutes: String,
    #[serde(default)]
    idempotency_key: String,
}

pub async fn add_labor(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<AddLabor>,
) -> Response {
    if let Err(refused) = caller.require(method::ADD_LABOR_LINE) {
        return refused.into_response();
    }
    let Ok(minutes) = form.minutes.trim().parse::<i32>() else {
        let mut errors = FieldErrors::default();
        errors.add("minutes", EN.number_invalid);
        return detail_page(&web, &caller, &id, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let clients = &web.clients;
    let answer = clients
        .workorder
        .clone()
        .add_labor_line(clients.request(
            &caller.ctx,
            pb::AddLaborLineRequest {
                work_order_id: id.clone(),
                description: form.description,
                technician: form.technician,
                minutes,
                hourly_rate: None,
                expected_version: 0,
                idempotency_key: form.idempotency_key,
                job_id: form.job_id,
            },
        ))
        .await;
    after_write(&web, &caller, &id, answer).await
}

#[derive(Deserialize)]
pub struct ChangeStatus {
    #[serde(default)]
    status: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    expected_version: i64,
    /// `board` when the move was made on the board, which is where the answer goes.
    #[serde(default)]
    back: String,
}

pub async fn change_status(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<ChangeStatus>,
) -> Response {
    if let Err(refused) = caller.require(method::CHANGE_STATUS) {
        return refused.into_response();
    }
    let Some(status) = parse_status(&form.status) else {
        let mut errors = FieldErrors::default();
        errors.add("status", format!("{:?} is not a status", form.status));
        return detail_page(&web, &caller, &id, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let clients = &web.clients;
    let answer = clients
        .workorder
        .clone()
        .change_status(clients.request(
            &caller.ctx,
            pb::ChangeStatusRequest {
                id: id.clone(),
                status: status as i32,
                reason: form.reason,
                expected_version: form.expected_version,
            },
        ))
        .await;
    if form.back != "board" {
        return after_write(&web, &caller, &id, answer).await;
    }
    match answer {
        Ok(_) => Redirect::to(&format!("/work-orders#card-{id}")).into_response(),
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::InvalidArgument
                    | tonic::Code::FailedPrecondition
                    | tonic::Code::Aborted
            ) =>
        {
            board(
                &web,
                &caller,
                None,
                false,
                Some(status),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

#[derive(Deserialize)]
pub struct Versioned {
    #[serde(default)]
    expected_version: i64,
}

pub async fn remove_part(
    State(web): State<Web>,
    caller: Caller,
    Path((id, line)): Path<(String, String)>,
    Form(form): Form<Versioned>,
) -> Response {
    if let Err(refused) = caller.require(method::REMOVE_PART_LINE) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .workorder
        .clone()
        .remove_part_line(clients.request(
            &caller.ctx,
            pb::RemovePartLineRequest {
                work_order_id: id.clone(),
                line_id: line,
                expected_version: form.expected_version,
            },
        ))
        .await;
    after_write(&web, &caller, &id, answer).await
}

pub async fn remove_labor(
    State(web): State<Web>,
    caller: Caller,
    Path((id, line)): Path<(String, String)>,
    Form(form): Form<Versioned>,
) -> Response {
    if let Err(refused) = caller.require(method::REMOVE_LABOR_LINE) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .workorder
        .clone()
        .remove_labor_line(clients.request(
            &caller.ctx,
            pb::RemoveLaborLineRequest {
                work_order_id: id.clone(),
                line_id: line,
                expected_version: form.expected_version,
            },
        ))
        .await;
    after_write(&web, &caller, &id, answer).await
}

/// Asks inventory again for the lines whose reservation failed (once stock has arrived).
#[derive(Deserialize)]
pub struct NotesForm {
    #[serde(default)]
    notes: String,
    #[serde(default)]
    expected_version: i64,
}

/// The order's notes (what the technician found, what the customer said on the phone).
pub async fn update_notes(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<NotesForm>,
) -> Response {
    if let Err(refused) = caller.require(method::UPDATE_NOTES) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .workorder
        .clone()
        .update_notes(clients.request(
            &caller.ctx,
            pb::UpdateNotesRequest {
                id: id.clone(),
                notes: form.notes.clone(),
                expected_version: form.expected_version,
            },
        ))
        .await;
    match answer {
        Ok(_) => Redirect::to(&format!("/work-orders/{id}")).into_response(),
        Err(status) if is_refusal(&status) => {
            let mut errors = FieldErrors::from_status(&status);
            if status.code() == tonic::Code::Aborted {
                errors.add(STALE, status.message());
            } else if errors.is_empty() {
                errors.add("notes", status.message());
            }
            let code = StatusCode::UNPROCESSABLE_ENTITY;
            detail_page_with_notes(&web, &caller, &id, errors, code, Some(form.notes)).await
        }
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

pub async fn retry_reservation(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<Versioned>,
) -> Response {
    if let Err(refused) = caller.require(method::RETRY_RESERVATION) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .workorder
        .clone()
        .retry_reservation(clients.request(
            &caller.ctx,
            pb::RetryReservationRequest {
                id: id.clone(),
                expected_version: form.expected_version,
                idempotency_key: format!("{id}-{}-retry", form.expected_version),
            },
        ))
        .await;
    after_write(&web, &caller, &id, answer).await
}

#[derive(Deserialize)]
pub struct AddJob {
    #[serde(default)]
    title: String,
    #[serde(default)]
    idempotency_key: String,
}

pub async fn add_job(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<AddJob>,
) -> Response {
    if let Err(refused) = caller.require(method::ADD_JOB) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .workorder
        .clone()
        .add_job(clients.request(
            &caller.ctx,
            pb::AddJobRequest {
                work_order_id: id.clone(),
                title: form.title,
                expected_version: 0,
                idempotency_key: form.idempotency_key,
            },
        ))
        .await;
    after_write(&web, &caller, &id, answer).await
}

#[derive(Deserialize)]
pub struct AddCannedJob {
    #[serde(default)]
    canned_job_id: String,
    #[serde(default)]
    idempotency_key: String,
}

pub async fn add_canned_job(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<AddCannedJob>,
) -> Response {
    if let Err(refused) = caller.require(method::ADD_CANNED_JOB) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .canned
        .clone()
        .add_canned_job(clients.request(
            &caller.ctx,
            pb::AddCannedJobRequest {
                work_order_id: id.clone(),
                canned_job_id: form.canned_job_id,
                expected_version: 0,
                idempotency_key: form.idempotency_key,
            },
        ))
        .await;
    after_write(&web, &caller, &id, answer).await
}

pub async fn remove_job(
    State(web): State<Web>,
    caller: Caller,
    Path((id, job_id)): Path<(String, String)>,
    Form(form): Form<Versioned>,
) -> Response {
    if let Err(refused) = caller.require(method::REMOVE_JOB) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .workorder
        .clone()
        .remove_job(clients.request(
            &caller.ctx,
            pb::RemoveJobRequest {
                work_order_id: id.clone(),
                job_id,
                expected_version: form.expected_version,
            },
        ))
        .await;
    after_write(&web, &caller, &id, answer).await
}

#[derive(Deserialize)]
pub struct DecideJob {
    #[serde(default)]
    decision: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    remind_after: String,
    #[serde(default)]
    expected_version: i64,
}

/// The customer's decision as told to the front desk; the service checks every field.
pub async fn decide_job(
    State(web): State<Web>,
    caller: Caller,
    Path((id, job_id)): Path<(String, String)>,
    Form(form): Form<DecideJob>,
) -> Response {
    if let Err(refused) = caller.require(method::DECIDE_JOB) {
        return refused.into_response();
    }
    let decision = pb::JobState::from_str_name(&format!("JOB_STATE_{}", form.decision))
        .map_or(0, |state| state as i32);
    let channel = pb::DecisionChannel::from_str_name(&format!("DECISION_CHANNEL_{}", form.channel))
        .map_or(0, |channel| channel as i32);
    let clients = &web.clients;
    let answer = clients
        .workorder
        .clone()
        .decide_job(clients.request(
            &caller.ctx,
            pb::DecideJobRequest {
                work_order_id: id.clone(),
                job_id,
                decision,
                channel,
                reason: form.reason,
                remind_after: form.remind_after,
                expected_version: form.expected_version,
            },
        ))
        .await;
    after_write(&web, &caller, &id, answer).await
}

#[derive(Template)]
#[template(path = "estimate_sent.html")]
struct EstimateSentPage {
    shell: Shell,
    id: String,
    number: String,
    version: i32,
    total: String,
    link: String,
    /// Sent by email: to whom, and the mail server's error when it was not delivered.
    email: Option<EmailSent>,
    /// What "Email again" and "Show the link instead" post after a failed email: the same
    /// request and key, so neither sends a new version.
    retry: Option<SendEstimateForm>,
}

#[derive(Deserialize)]
pub struct SendEstimateForm {
    #[serde(default)]
    expected_version: i64,
    /// `EMAIL` from the "Send by email" button; absent from "Send estimate".
    #[serde(default)]
    deliver: String,
    /// New with every rendering of the form: a second submit (or the retry after a failed
    /// email) sends no second version.
    #[serde(default)]
    idempotency_key: String,
}

/// Sends the estimate (by email too, from "Send by email") and shows its approval link,
/// once: only its digest is kept.
pub async fn send_estimate(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    headers: http::HeaderMap,
    Form(form): Form<SendEstimateForm>,
) -> Response {
    if let Err(refused) = caller.require(method::SEND_ESTIMATE) {
        return refused.into_response();
    }
    let t = &EN;
    let deliver = match form.deliver.as_str() {
        "" | "LINK" => Delivery::Link,
        "EMAIL" => Delivery::Email,
        _ => {
            let mut errors = FieldErrors::default();
            errors.add("estimate", "deliver must be LINK or EMAIL");
            return detail_page(&web, &caller, &id, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let origin = crate::session::own_origin(&headers);
    let answer = estimates::send(
        &web.clients,
        web.delivery.as_ref(),
        &caller.ctx,
        estimates::SendRequest {
            work_order_id: id.clone(),
            expected_version: form.expected_version,
            idempotency_key: form.idempotency_key.clone(),
            deliver,
            origin: origin.clone(),
        },
    )
    .await;
    let Sent { sent, email } = match answer {
        Ok(sent) => sent,
        Err(ApiError::Grpc { status, .. }) if is_refusal(&status) => {
            let mut errors = FieldErrors::from_status(&status);
            if status.code() == tonic::Code::Aborted {
                errors.add(STALE, status.message());
            } else if errors.is_empty() {
                errors.add("estimate", status.message());
            }
            return detail_page(&web, &caller, &id, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(ApiError::Grpc { service, status }) => {
            return PageError::from_status(service, &status).into_response();
        }
        // The email's own refusals (not configured, no address): nothing was sent.
        Err(refusal) => {
            let mut errors = FieldErrors::default();
            errors.add("estimate", refusal.to_string());
            return detail_page(&web, &caller, &id, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let estimate = sent.estimate.unwrap_or_default();
    let number = sent.work_order.map(|o| o.number).unwrap_or_default();
    let path = estimates::approval_path(&sent.approval_token);
    // The mail server failed after the version was saved: say so (502, as the REST route),
    // and offer the same request again rather than the link, which a retry replaces.
    let failed = email.as_ref().is_some_and(|e| !e.delivered);
    let (status, retry) = if failed {
        (StatusCode::BAD_GATEWAY, Some(form))
    } else {
        (StatusCode::OK, None)
    };
    render(
        status,
        &EstimateSentPage {
            shell: Shell::new(
                Some(&caller),
                format!("{} {number}", t.estimate),
                "work-orders",
            ),
            id,
            number,
            version: estimate.version,
            total: format::money_of(t, estimate.total.as_ref()),
            link: origin.unwrap_or_default() + &path,
            email,
            retry,
        },
    )
}

#[derive(Template)]
#[template(path = "work_order_confirm.html")]
struct ConfirmPage {
    shell: Shell,
    id: String,
    number: String,
    version: i64,
    from: &'static str,
    to_name: &'static str,
    to: &'static str,
}

#[derive(Deserialize)]
pub struct ConfirmQuery {
    #[serde(default)]
    status: String,
}

/// The confirmation step of a status change from the detail page: what it becomes, and
/// one button that makes it so (the version read here travels with it).
pub async fn confirm_status(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ConfirmQuery>,
) -> Response {
    let t = &EN;
    if let Err(refused) = caller.require(method::CHANGE_STATUS) {
        return refused.into_response();
    }
    let Some(to) = parse_status(&query.status) else {
        return PageError::NotFound.into_response();
    };
    let order = match fetch(&web, &caller, &id).await {
        Ok(order) => order,
        Err(err) => return err.into_response(),
    };
    render(
        StatusCode::OK,
        &ConfirmPage {
            shell: Shell::new(
                Some(&caller),
                format!("{} {}", t.work_order, order.number),
                "work-orders",
            ),
            version: order.audit.as_ref().map(|a| a.version).unwrap_or_default(),
            from: status_label(t, order.status),
            to_name: status_name(to),
            to: status_label(t, to as i32),
            id: order.id,
            number: order.number,
        },
    )
}

#[derive(Template)]
#[template(path = "work_order_print.html")]
struct JobCard {
    shell: Shell,
    garage: GarageIdentity,
    id: String,
    opened: String,
    status: &'static str,
    customer: String,
    phone: String,
    vehicle: String,
    odometer: String,
    complaint: String,
    notes: String,
    parts: Vec<PartRow>,
    labor: Vec<LaborRow>,
    missing: Vec<&'static str>,
}

/// The job card for the workshop: who, what car, the complaint and the lines, with room to
/// sign; laid out for A4 and printed from the browser.
pub async fn job_card(State(web): State<Web>, caller: Caller, Path(id): Path<String>) -> Response {
    let t = &EN;
    let order = match fetch(&web, &caller, &id).await {
        Ok(order) => order,
        Err(err) => return err.into_response(),
    };
    let clients = &web.clients;
    let (mut customers, mut vehicles) = (clients.customer.clone(), clients.customer.clone());
    let (found_customer, found_vehicle) = tokio::join!(
        customers.get_customer(clients.request(
            &caller.ctx,
            customer::GetCustomerRequest {
                id: order.customer_id.clone()
            },
        )),
        vehicles.get_vehicle(clients.request(
            &caller.ctx,
            customer::GetVehicleRequest {
                id: order.vehicle_id.clone()
            },
        )),
    );
    let mut absent = Vec::new();
    let (customer, phone) = match found_customer {
        Ok(c) => {
            let c = c.into_inner();
            (c.name, c.phone)
        }
        Err(_) => {
            absent.push(missing(t, "customer"));
            (String::new(), String::new())
        }
    };
    let vehicle = match found_vehicle {
        Ok(v) => {
            let v = v.into_inner();
            format!(
                "{} · {} {} {} · {}",
                v.license_plate, v.make, v.model, v.year, v.vin
            )
        }
        Err(_) => {
            if absent.is_empty() {
                absent.push(missing(t, "customer"));
            }
            String::new()
        }
    };
    let lines = lines_of(&web, &caller, &order);
    render(
        StatusCode::OK,
        &JobCard {
            shell: Shell::new(
                Some(&caller),
                format!("{} {}", t.job_card, order.number),
                "work-orders",
            ),
            garage: web.settings.garage.clone(),
            opened: format::date_time(
                t,
                &web.zone,
                order.audit.as_ref().and_then(|a| a.created_at.as_ref()),
            ),
            status: status_label(t, order.status),
            odometer: format!("{} km", order.odometer_km),
            customer,
            phone,
            vehicle,
            complaint: order.complaint.clone(),
            notes: order.notes.clone(),
            parts: lines.parts,
            labor: lines.labor,
            missing: absent,
            id: order.id,
        },
    )
}
