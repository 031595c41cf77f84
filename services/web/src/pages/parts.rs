//! Parts: search the catalogue (as you type), low stock with the reorder quantity, create and
//! edit a part with each field's error next to it, receive stock, adjust it with a reason,
//! and the part's movement ledger.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use carerp_proto::common::v1::{Money, PageRequest};
use carerp_proto::inventory::v1 as pb;
use http::StatusCode;
use serde::Deserialize;

use crate::Web;
use crate::format;
use crate::messages::{EN, Messages};
use crate::page::{FieldErrors, PageError, Shell, is_refusal, method, missing, render};
use crate::session::Caller;

const SERVICE: &str = "inventory";
const SHOWN: i32 = 100;

pub struct Row {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub location: String,
    pub on_hand: i32,
    pub available: i32,
    pub reorder_point: i32,
    pub reorder_quantity: i32,
    pub price: String,
    pub low: bool,
}

fn row(t: &Messages, p: pb::Part) -> Row {
    Row {
        low: p.quantity_available <= p.reorder_point,
        price: format::money_of(t, p.unit_price.as_ref()),
        on_hand: p.quantity_on_hand,
        available: p.quantity_available,
        reorder_point: p.reorder_point,
        reorder_quantity: p.reorder_quantity,
        id: p.id,
        sku: p.sku,
        name: p.name,
        location: p.location,
    }
}

#[derive(Template)]
#[template(path = "parts.html")]
struct ListPage {
    shell: Shell,
    query: String,
    low: bool,
    can_create: bool,
    rows: Vec<Row>,
    missing: Vec<&'static str>,
}

#[derive(Deserialize)]
pub struct Search {
    #[serde(default)]
    q: String,
    #[serde(default)]
    low: String,
}

pub async fn list(
    State(web): State<Web>,
    caller: Caller,
    Query(search): Query<Search>,
) -> Response {
    let t = &EN;
    let low = !search.low.is_empty();
    let clients = &web.clients;
    let page = Some(PageRequest {
        page_size: SHOWN,
        page_token: String::new(),
    });
    let mut inventory = clients.inventory.clone();
    let answer = if low {
        inventory
            .list_low_stock(clients.request(&caller.ctx, pb::ListLowStockRequest { page }))
            .await
    } else {
        inventory
            .list_parts(clients.request(
                &caller.ctx,
                pb::ListPartsRequest {
                    page,
                    query: search.q.trim().to_string(),
                    active: pb::ActiveFilter::All as i32,
                    ..Default::default()
                },
            ))
            .await
    };
    let (rows, absent) = match answer {
        Ok(list) => (
            list.into_inner()
                .parts
                .into_iter()
                .map(|p| row(t, p))
                .collect(),
            Vec::new(),
        ),
        Err(status) => match PageError::from_status(SERVICE, &status) {
            PageError::Unavailable(service) => (Vec::new(), vec![missing(t, service)]),
            other => return other.into_response(),
        },
    };
    render(
        StatusCode::OK,
        &ListPage {
            shell: Shell::new(
                Some(&caller),
                if low { t.low_stock } else { t.parts_title },
                "parts",
            ),
            query: search.q,
            low,
            can_create: caller.can(method::CREATE_PART),
            rows,
            missing: absent,
        },
    )
}

/// The part form as typed: create and edit share it (SKU and the first stock only on create).
#[derive(Default, Deserialize)]
pub struct PartForm {
    #[serde(default)]
    sku: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    unit_cost: String,
    #[serde(default)]
    unit_price: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    reorder_point: String,
    #[serde(default)]
    reorder_quantity: String,
    #[serde(default)]
    initial_quantity: String,
    #[serde(default)]
    active: String,
    #[serde(default)]
    expected_version: i64,
    #[serde(default)]
    idempotency_key: String,
}

#[derive(Template)]
#[template(path = "part_form.html")]
struct FormPage {
    shell: Shell,
    /// `None` when creating.
    id: Option<String>,
    form: PartForm,
    errors: FieldErrors,
    others: Vec<String>,
}

const FIELDS: &[&str] = &[
    "sku",
    "name",
    "description",
    "category",
    "unit_cost",
    "unit_price",
    "location",
    "reorder_point",
    "reorder_quantity",
    "initial_quantity",
];

fn form_page(
    caller: &Caller,
    id: Option<String>,
    form: PartForm,
    errors: FieldErrors,
    code: StatusCode,
) -> Response {
    let t = &EN;
    render(
        code,
        &FormPage {
            shell: Shell::new(
                Some(caller),
                if id.is_some() {
                    t.edit_part
                } else {
                    t.new_part
                },
                "parts",
            ),
            others: errors.others(FIELDS),
            id,
            form,
            errors,
        },
    )
}

pub async fn new_form(caller: Caller) -> Response {
    if let Err(refused) = caller.require(method::CREATE_PART) {
        return refused.into_response();
    }
    let form = PartForm {
        idempotency_key: uuid::Uuid::now_v7().to_string(),
        reorder_point: "0".into(),
        reorder_quantity: "0".into(),
        initial_quantity: "0".into(),
        active: "on".into(),
        ..PartForm::default()
    };
    form_page(&caller, None, form, FieldErrors::default(), StatusCode::OK)
}

/// What a form's numbers and amounts are, or the errors of those that are not.
struct Parsed {
    unit_cost: Money,
    unit_price: Money,
    reorder_point: i32,
    reorder_quantity: i32,
    initial_quantity: i32,
}

fn parse(web: &Web, form: &PartForm, creating: bool) -> Result<Parsed, FieldErrors> {
    let t = &EN;
    let currency = &web.settings.currency;
    let mut errors = FieldErrors::default();
    let mut amount = |field: &str, typed: &str| match format::parse_amount(t, typed, currency) {
        Some(minor) => Money {
            amount_minor: minor,
            currency: currency.clone(),
        },
        None => {
            errors.add(field, t.amount_invalid);
            Money::default()
        }
    };
    let unit_cost = amount("unit_cost", &form.unit_cost);
    let unit_price = amount("unit_price", &form.unit_price);
    let mut number = |field: &str, typed: &str| match typed.trim().parse::<i32>() {
        Ok(n) => n,
        Err(_) => {
            errors.add(field, t.number_invalid);
            0
        }
    };
    let reorder_point = number("reorder_point", &form.reorder_point);
    let reorder_quantity = number("reorder_quantity", &form.reorder_quantity);
    let initial_quantity = if creating {
        number("initial_quantity", &form.initial_quantity)
    } else {
        0
    };
    if errors.is_empty() {
        Ok(Parsed {
            unit_cost,
            unit_price,
            reorder_point,
            reorder_quantity,
            initial_quantity,
        })
    } else {
        Err(errors)
    }
}

pub async fn create(
    State(web): State<Web>,
    caller: Caller,
    Form(form): Form<PartForm>,
) -> Response {
    if let Err(refused) = caller.require(method::CREATE_PART) {
        return refused.into_response();
    }
    let parsed = match parse(&web, &form, true) {
        Ok(parsed) => parsed,
        Err(errors) => {
            return form_page(
                &caller,
                None,
                form,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            );
        }
    };
    let clients = &web.clients;
    let answer = clients
        .inventory
        .clone()
        .create_part(clients.request(
            &caller.ctx,
            pb::CreatePartRequest {
                sku: form.sku.trim().to_string(),
                name: form.name.clone(),
                description: form.description.clone(),
                category: form.category.clone(),
                unit_cost: Some(parsed.unit_cost),
                unit_price: Some(parsed.unit_price),
                location: form.location.clone(),
                reorder_point: parsed.reorder_point,
                reorder_quantity: parsed.reorder_quantity,
                initial_quantity: parsed.initial_quantity,
                idempotency_key: form.idempotency_key.clone(),
            },
        ))
        .await;
    match answer {
        Ok(part) => {
            Redirect::to(&format!("/parts/{}?saved=1", part.into_inner().id)).into_response()
        }
        Err(status) if is_refusal(&status) => form_page(
            &caller,
            None,
            form,
            refusal_errors(&status, "sku"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

/// The service's field errors; its message under `field` when it named none (a SKU taken,
/// a stale version).
fn refusal_errors(status: &tonic::Status, field: &str) -> FieldErrors {
    let mut errors = FieldErrors::from_status(status);
    if status.code() == tonic::Code::Aborted {
        errors.add("version", EN.stale_write_part);
    } else if errors.is_empty() {
        errors.add(field, status.message());
    }
    errors
}

async fn fetch(web: &Web, caller: &Caller, id: &str) -> Result<pb::Part, PageError> {
    let clients = &web.clients;
    Ok(clients
        .inventory
        .clone()
        .get_part(clients.request(&caller.ctx, pb::GetPartRequest { id: id.to_string() }))
        .await
        .map_err(PageError::grpc(SERVICE))?
        .into_inner())
}

/// An amount as a form shows it: the catalogue's decimal separator, no symbol or grouping.
fn typed_amount(t: &Messages, money: Option<&Money>) -> String {
    let Some(money) = money else {
        return String::new();
    };
    let digits = format::decimals(&money.currency);
    if digits == 0 {
        return money.amount_minor.to_string();
    }
    let scale = 10i64.pow(digits);
    let sign = if money.amount_minor < 0 { "-" } else { "" };
    let abs = money.amount_minor.unsigned_abs();
    format!(
        "{sign}{}{}{:0width$}",
        abs / scale as u64,
        t.decimal_separator,
        abs % scale as u64,
        width = digits as usize
    )
}

pub async fn edit_form(State(web): State<Web>, caller: Caller, Path(id): Path<String>) -> Response {
    let t = &EN;
    if let Err(refused) = caller.require(method::UPDATE_PART) {
        return refused.into_response();
    }
    let part = match fetch(&web, &caller, &id).await {
        Ok(part) => part,
        Err(err) => return err.into_response(),
    };
    let form = PartForm {
        unit_cost: typed_amount(t, part.unit_cost.as_ref()),
        unit_price: typed_amount(t, part.unit_price.as_ref()),
        reorder_point: part.reorder_point.to_string(),
        reorder_quantity: part.reorder_quantity.to_string(),
        active: if part.active {
            "on".into()
        } else {
            String::new()
        },
        expected_version: part.audit.as_ref().map(|a| a.version).unwrap_or_default(),
        sku: part.sku,
        name: part.name,
        description: part.description,
        category: part.category,
        location: part.location,
        ..PartForm::default()
    };
    form_page(
        &caller,
        Some(id),
        form,
        FieldErrors::default(),
        StatusCode::OK,
    )
}

pub async fn update(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<PartForm>,
) -> Response {
    if let Err(refused) = caller.require(method::UPDATE_PART) {
        return refused.into_response();
    }
    let parsed = match parse(&web, &form, false) {
        Ok(parsed) => parsed,
        Err(errors) => {
            return form_page(
                &caller,
                Some(id),
                form,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            );
        }
    };
    let clients = &web.clients;
    let answer = clients
        .inventory
        .clone()
        .update_part(clients.request(
            &caller.ctx,
            pb::UpdatePartRequest {
                id: id.clone(),
                name: Some(form.name.clone()),
                description: Some(form.description.clone()),
                category: Some(form.category.clone()),
                unit_cost: Some(parsed.unit_cost),
                unit_price: Some(parsed.unit_price),
                location: Some(form.location.clone()),
                reorder_point: Some(parsed.reorder_point),
                reorder_quantity: Some(parsed.reorder_quantity),
                active: Some(!form.active.is_empty()),
                expected_version: form.expected_version,
            },
        ))
        .await;
    match answer {
        Ok(_) => Redirect::to(&format!("/parts/{id}?saved=1")).into_response(),
        Err(status) if is_refusal(&status) => form_page(
            &caller,
            Some(id),
            form,
            refusal_errors(&status, "name"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

pub struct MovementRow {
    pub at: String,
    pub kind: &'static str,
    pub on_hand: String,
    pub reserved: String,
    pub reason: String,
    pub work_order_id: String,
    pub actor: String,
}

fn kind_label(t: &'static Messages, kind: i32) -> &'static str {
    match pb::MovementKind::try_from(kind) {
        Ok(pb::MovementKind::Receipt) => t.movement_receipt,
        Ok(pb::MovementKind::Adjustment) => t.movement_adjustment,
        Ok(pb::MovementKind::Reservation) => t.movement_reservation,
        Ok(pb::MovementKind::Release) => t.movement_release,
        Ok(pb::MovementKind::Consumption) => t.movement_consumption,
        _ => "",
    }
}

fn signed(n: i32) -> String {
    match n {
        0 => String::new(),
        n if n > 0 => format!("+{n}"),
        n => n.to_string(),
    }
}

/// What was typed into a stock form, to show it again beside its errors.
#[derive(Default, Deserialize)]
pub struct StockForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    delta: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    idempotency_key: String,
}

#[derive(Template)]
#[template(path = "part.html")]
struct DetailPage {
    shell: Shell,
    part: Row,
    description: String,
    category: String,
    cost: String,
    reserved: i32,
    active: bool,
    saved: bool,
    can_edit: bool,
    can_adjust: bool,
    receive: StockForm,
    receive_errors: FieldErrors,
    adjust: StockForm,
    adjust_errors: FieldErrors,
    movements: Vec<MovementRow>,
    missing: Vec<&'static str>,
}

#[derive(Deserialize)]
pub struct DetailQuery {
    #[serde(default)]
    saved: String,
}

pub async fn detail(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> Response {
    detail_page(
        &web,
        &caller,
        &id,
        !query.saved.is_empty(),
        None,
        StatusCode::OK,
    )
    .await
}

async fn detail_page(
    web: &Web,
    caller: &Caller,
    id: &str,
    saved: bool,
    refused: Option<(StockForm, FieldErrors)>,
    code: StatusCode,
) -> Response {
    let t = &EN;
    let clients = &web.clients;
    let mut inventory = clients.inventory.clone();
    let (part, movements) = tokio::join!(
        fetch(web, caller, id),
        inventory.list_movements(clients.request(
            &caller.ctx,
            pb::ListMovementsRequest {
                part_id: id.to_string(),
                page: Some(PageRequest {
                    page_size: SHOWN,
                    page_token: String::new(),
                }),
            },
        )),
    );
    let part = match part {
        Ok(part) => part,
        Err(err) => return err.into_response(),
    };
    let mut absent = Vec::new();
    let movements = match movements {
        Ok(list) => list
            .into_inner()
            .movements
            .into_iter()
            .map(|m| MovementRow {
                at: format::date_time(t, &web.zone, m.at.as_ref()),
                kind: kind_label(t, m.kind),
                on_hand: signed(m.on_hand_delta),
                reserved: signed(m.reserved_delta),
                reason: m.reason,
                work_order_id: m.work_order_id,
                actor: m.actor,
            })
            .collect(),
        Err(_) => {
            absent.push(missing(t, SERVICE));
            Vec::new()
        }
    };
    let fresh = || StockForm {
        idempotency_key: uuid::Uuid::now_v7().to_string(),
        ..StockForm::default()
    };
    let (mut receive, mut receive_errors) = (fresh(), FieldErrors::default());
    let (mut adjust, mut adjust_errors) = (fresh(), FieldErrors::default());
    if let Some((form, errors)) = refused {
        if form.kind == "RECEIPT" {
            (receive, receive_errors) = (form, errors);
        } else {
            (adjust, adjust_errors) = (form, errors);
        }
    }
    render(
        code,
        &DetailPage {
            shell: Shell::new(Some(caller), format!("{} {}", part.sku, part.name), "parts"),
            description: part.description.clone(),
            category: part.category.clone(),
            cost: format::money_of(t, part.unit_cost.as_ref()),
            reserved: part.quantity_reserved,
            active: part.active,
            saved,
            can_edit: caller.can(method::UPDATE_PART),
            can_adjust: caller.can(method::ADJUST_STOCK),
            receive,
            receive_errors,
            adjust,
            adjust_errors,
            movements,
            missing: absent,
            part: row(t, part),
        },
    )
}

/// Receiving goods (`RECEIPT`, a positive quantity) or correcting a count (`ADJUSTMENT`, any
/// non-zero change); both need a reason, and both land in the ledger.
pub async fn adjust_stock(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<StockForm>,
) -> Response {
    let t = &EN;
    if let Err(refused) = caller.require(method::ADJUST_STOCK) {
        return refused.into_response();
    }
    let kind = if form.kind == "RECEIPT" {
        pb::AdjustmentKind::Receipt
    } else {
        pb::AdjustmentKind::Adjustment
    };
    let Ok(delta) = form.delta.trim().parse::<i32>() else {
        let mut errors = FieldErrors::default();
        errors.add("delta", t.number_invalid);
        return detail_page(
            &web,
            &caller,
            &id,
            false,
            Some((form, errors)),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let clients = &web.clients;
    let answer = clients
        .inventory
        .clone()
        .adjust_stock(clients.request(
            &caller.ctx,
            pb::AdjustStockRequest {
                part_id: id.clone(),
                kind: kind as i32,
                delta,
                reason: form.reason.clone(),
                idempotency_key: form.idempotency_key.clone(),
            },
        ))
        .await;
    match answer {
        Ok(_) => Redirect::to(&format!("/parts/{id}?saved=1")).into_response(),
        Err(status) if is_refusal(&status) => {
            let errors = refusal_errors(&status, "delta");
            detail_page(
                &web,
                &caller,
                &id,
                false,
                Some((form, errors)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}
