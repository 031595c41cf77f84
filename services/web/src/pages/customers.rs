//! Customers: search as you type (htmx asks for the results only), the create and edit forms
//! with each field's error next to it (from the service's BadRequest details), the detail
//! with its vehicles and the form to add one, and a vehicle's whole service history: its work
//! orders with their odometer readings, and the invoices of those work orders.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use carerp_proto::common::v1::PageRequest;
use carerp_proto::customer::v1 as pb;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::history::{RecommendationRow, VisitRow};
use crate::Web;
use crate::messages::EN;
use crate::page::{FieldErrors, PageError, Shell, is_refusal, method, missing, render};
use crate::session::Caller;

const SERVICE: &str = "customer";
const SHOWN: i32 = 50;

pub struct Row {
    pub id: String,
    pub name: String,
    pub phone: String,
    pub email: String,
    pub vehicles: String,
}

#[derive(Template)]
#[template(path = "customer_results.html")]
struct Results {
    shell: Shell,
    rows: Vec<Row>,
    missing: Vec<&'static str>,
}

#[derive(Template)]
#[template(path = "customers.html")]
struct ListPage {
    shell: Shell,
    query: String,
    can_create: bool,
    created: bool,
    results: String,
}

#[derive(Deserialize)]
pub struct Search {
    #[serde(default)]
    q: String,
    #[serde(default)]
    created: bool,
}

pub async fn list(
    State(web): State<Web>,
    caller: Caller,
    headers: HeaderMap,
    Query(search): Query<Search>,
) -> Response {
    let t = &EN;
    let clients = &web.clients;
    let answer = clients
        .customer
        .clone()
        .list_customers(clients.request(
            &caller.ctx,
            pb::ListCustomersRequest {
                page: Some(PageRequest {
                    page_size: SHOWN,
                    page_token: String::new(),
                }),
                query: search.q.trim().to_string(),
                include_archived: false,
            },
        ))
        .await;
    let (rows, missing) = match answer {
        Ok(response) => (
            response
                .into_inner()
                .customers
                .into_iter()
                .map(|c| Row {
                    vehicles: c
                        .vehicles
                        .iter()
                        .map(|v| format!("{} {} {}", v.license_plate, v.make, v.model))
                        .collect::<Vec<_>>()
                        .join(", "),
                    id: c.id,
                    name: c.name,
                    phone: c.phone,
                    email: c.email,
                })
                .collect(),
            Vec::new(),
        ),
        Err(status) => match PageError::from_status(SERVICE, &status) {
            PageError::Unavailable(service) => (Vec::new(), vec![missing(t, service)]),
            other => return other.into_response(),
        },
    };
    let results = Results {
        shell: Shell::new(Some(&caller), t.customers_title, "customers"),
        rows,
        missing,
    };
    if headers.contains_key("hx-request") {
        return render(StatusCode::OK, &results);
    }
    let results = match results.render() {
        Ok(html) => html,
        Err(err) => return PageError::Internal(err.to_string()).into_response(),
    };
    render(
        StatusCode::OK,
        &ListPage {
            shell: Shell::new(Some(&caller), t.customers_title, "customers"),
            query: search.q,
            can_create: caller.can(method::CREATE_CUSTOMER),
            created: search.created,
            results,
        },
    )
}

#[derive(Default, Deserialize)]
pub struct NewCustomer {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    notes: String,
    /// One per form, so a form sent twice creates one customer.
    #[serde(default)]
    idempotency_key: String,
}

#[derive(Template)]
#[template(path = "customer_new.html")]
struct NewPage {
    shell: Shell,
    form: NewCustomer,
    errors: FieldErrors,
    others: Vec<String>,
}

const FIELDS: &[&str] = &["name", "email", "phone", "notes"];

fn new_page(caller: &Caller, form: NewCustomer, errors: FieldErrors) -> NewPage {
    NewPage {
        shell: Shell::new(Some(caller), EN.new_customer, "customers"),
        others: errors.others(FIELDS),
        form,
        errors,
    }
}

pub async fn new_form(caller: Caller) -> Response {
    if let Err(refused) = caller.require(method::CREATE_CUSTOMER) {
        return refused.into_response();
    }
    let form = NewCustomer {
        idempotency_key: uuid::Uuid::now_v7().to_string(),
        ..NewCustomer::default()
    };
    render(
        StatusCode::OK,
        &new_page(&caller, form, FieldErrors::default()),
    )
}

pub async fn create(
    State(web): State<Web>,
    caller: Caller,
    Form(form): Form<NewCustomer>,
) -> Response {
    if let Err(refused) = caller.require(method::CREATE_CUSTOMER) {
        return refused.into_response();
    }
    let clients = &web.clients;
    let answer = clients
        .customer
        .clone()
        .create_customer(clients.request(
            &caller.ctx,
            pb::CreateCustomerRequest {
                name: form.name.clone(),
                email: form.email.clone(),
                phone: form.phone.clone(),
                address: None,
                notes: form.notes.clone(),
                idempotency_key: form.idempotency_key.clone(),
            },
        ))
        .await;
    match answer {
        Ok(created) => {
            let name = created.into_inner().name;
            let query: String = url_encode(&name);
            Redirect::to(&format!("/customers?created=true&q={query}")).into_response()
        }
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            let errors = FieldErrors::from_status(&status);
            render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &new_page(&caller, form, errors),
            )
        }
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn fetch(web: &Web, caller: &Caller, id: &str) -> Result<pb::Customer, PageError> {
    let clients = &web.clients;
    Ok(clients
        .customer
        .clone()
        .get_customer(clients.request(&caller.ctx, pb::GetCustomerRequest { id: id.to_string() }))
        .await
        .map_err(PageError::grpc(SERVICE))?
        .into_inner())
}

/// The service's field errors; its message under `field` when it named none, and a stale
/// write under `version`, so the page offers a reload.
fn refusal_errors(status: &tonic::Status, field: &str) -> FieldErrors {
    let mut errors = FieldErrors::from_status(status);
    if status.code() == tonic::Code::Aborted {
        errors.add("version", EN.stale_write_customer);
    } else if errors.is_empty() {
        errors.add(field, status.message());
    }
    errors
}

/// A vehicle as typed into the add-vehicle form.
#[derive(Default, Deserialize)]
pub struct NewVehicle {
    #[serde(default)]
    vin: String,
    #[serde(default)]
    make: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    year: String,
    #[serde(default)]
    license_plate: String,
    #[serde(default)]
    mileage: String,
    #[serde(default)]
    idempotency_key: String,
}

pub struct VehicleRow {
    pub id: String,
    pub plate: String,
    pub car: String,
    pub vin: String,
    pub mileage: String,
}

/// Kilometres with the catalogue's grouping.
pub fn km(t: &crate::messages::Messages, km: i64) -> String {
    format!("{} {}", crate::format::integer(t, km), t.km)
}

#[derive(Template)]
#[template(path = "customer.html")]
struct DetailPage {
    shell: Shell,
    customer: pb::Customer,
    address: Vec<String>,
    vehicles: Vec<VehicleRow>,
    saved: bool,
    can_edit: bool,
    can_add_vehicle: bool,
    vehicle: NewVehicle,
    errors: FieldErrors,
    others: Vec<String>,
}

const VEHICLE_FIELDS: &[&str] = &["vin", "make", "model", "year", "license_plate", "mileage"];

#[derive(Deserialize)]
pub struct Saved {
    #[serde(default)]
    saved: String,
}

pub async fn detail(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<Saved>,
) -> Response {
    let vehicle = NewVehicle {
        idempotency_key: uuid::Uuid::now_v7().to_string(),
        ..NewVehicle::default()
    };
    detail_page(
        &web,
        &caller,
        &id,
        !query.saved.is_empty(),
        vehicle,
        FieldErrors::default(),
        StatusCode::OK,
    )
    .await
}

async fn detail_page(
    web: &Web,
    caller: &Caller,
    id: &str,
    saved: bool,
    vehicle: NewVehicle,
    errors: FieldErrors,
    code: StatusCode,
) -> Response {
    let t = &EN;
    let customer = match fetch(web, caller, id).await {
        Ok(customer) => customer,
        Err(err) => return err.into_response(),
    };
    let address = customer
        .address
        .as_ref()
        .map(|a| {
            [
                a.line1.clone(),
                a.line2.clone(),
                format!("{} {}", a.postal_code, a.city).trim().to_string(),
                a.country.clone(),
            ]
            .into_iter()
            .filter(|line| !line.is_empty())
            .collect()
        })
        .unwrap_or_default();
    let vehicles = customer
        .vehicles
        .iter()
        .map(|v| VehicleRow {
            id: v.id.clone(),
            plate: v.license_plate.clone(),
            car: format!("{} {} {}", v.make, v.model, v.year),
            vin: v.vin.clone(),
            mileage: km(t, v.mileage),
        })
        .collect();
    render(
        code,
        &DetailPage {
            shell: Shell::new(Some(caller), customer.name.clone(), "customers"),
            address,
            vehicles,
            saved,
            can_edit: caller.can(method::UPDATE_CUSTOMER),
            can_add_vehicle: caller.can(method::ADD_VEHICLE),
            vehicle,
            others: errors.others(VEHICLE_FIELDS),
            errors,
            customer,
        },
    )
}

pub async fn add_vehicle(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<NewVehicle>,
) -> Response {
    let t = &EN;
    if let Err(refused) = caller.require(method::ADD_VEHICLE) {
        return refused.into_response();
    }
    let mut errors = FieldErrors::default();
    let year = form.year.trim().parse::<i32>().unwrap_or_else(|_| {
        errors.add("year", t.number_invalid);
        0
    });
    let mileage = match form.mileage.trim() {
        "" => 0,
        typed => typed.parse::<i64>().unwrap_or_else(|_| {
            errors.add("mileage", t.number_invalid);
            0
        }),
    };
    if !errors.is_empty() {
        return detail_page(
            &web,
            &caller,
            &id,
            false,
            form,
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let clients = &web.clients;
    let answer = clients
        .customer
        .clone()
        .add_vehicle(clients.request(
            &caller.ctx,
            pb::AddVehicleRequest {
                customer_id: id.clone(),
                vin: form.vin.trim().to_uppercase(),
                make: form.make.clone(),
                model: form.model.clone(),
                year,
                license_plate: form.license_plate.clone(),
                mileage,
                idempotency_key: form.idempotency_key.clone(),
            },
        ))
        .await;
    match answer {
        Ok(vehicle) => {
            Redirect::to(&format!("/vehicles/{}", vehicle.into_inner().id)).into_response()
        }
        Err(status) if is_refusal(&status) => {
            detail_page(
                &web,
                &caller,
                &id,
                false,
                form,
                refusal_errors(&status, "vin"),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

/// The edit form as typed.
#[derive(Default, Deserialize)]
pub struct EditCustomer {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    line1: String,
    #[serde(default)]
    line2: String,
    #[serde(default)]
    postal_code: String,
    #[serde(default)]
    city: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    expected_version: i64,
}

#[derive(Template)]
#[template(path = "customer_edit.html")]
struct EditPage {
    shell: Shell,
    id: String,
    form: EditCustomer,
    errors: FieldErrors,
    others: Vec<String>,
}

const EDIT_FIELDS: &[&str] = &[
    "name",
    "email",
    "phone",
    "address.line1",
    "address.line2",
    "address.postal_code",
    "address.city",
    "address.country",
    "notes",
    "version",
];

fn edit_page(caller: &Caller, id: String, form: EditCustomer, errors: FieldErrors) -> EditPage {
    EditPage {
        shell: Shell::new(Some(caller), EN.edit_customer, "customers"),
        others: errors.others(EDIT_FIELDS),
        id,
        form,
        errors,
    }
}

pub async fn edit_form(State(web): State<Web>, caller: Caller, Path(id): Path<String>) -> Response {
    if let Err(refused) = caller.require(method::UPDATE_CUSTOMER) {
        return refused.into_response();
    }
    let c = match fetch(&web, &caller, &id).await {
        Ok(customer) => customer,
        Err(err) => return err.into_response(),
    };
    let a = c.address.unwrap_or_default();
    let form = EditCustomer {
        name: c.name,
        email: c.email,
        phone: c.phone,
        line1: a.line1,
        line2: a.line2,
        postal_code: a.postal_code,
        city: a.city,
        country: a.country,
        notes: c.notes,
        expected_version: c.audit.map(|a| a.version).unwrap_or_default(),
    };
    render(
        StatusCode::OK,
        &edit_page(&caller, id, form, FieldErrors::default()),
    )
}

pub async fn update(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<EditCustomer>,
) -> Response {
    if let Err(refused) = caller.require(method::UPDATE_CUSTOMER) {
        return refused.into_response();
    }
    let any_address = [
        &form.line1,
        &form.line2,
        &form.postal_code,
        &form.city,
        &form.country,
    ]
    .iter()
    .any(|f| !f.trim().is_empty());
    let clients = &web.clients;
    let answer = clients
        .customer
        .clone()
        .update_customer(clients.request(
            &caller.ctx,
            pb::UpdateCustomerRequest {
                id: id.clone(),
                name: form.name.clone(),
                email: form.email.clone(),
                phone: form.phone.clone(),
                address: any_address.then(|| pb::Address {
                    line1: form.line1.clone(),
                    line2: form.line2.clone(),
                    postal_code: form.postal_code.clone(),
                    city: form.city.clone(),
                    country: form.country.trim().to_uppercase(),
                }),
                notes: form.notes.clone(),
                expected_version: form.expected_version,
            },
        ))
        .await;
    match answer {
        Ok(_) => Redirect::to(&format!("/customers/{id}?saved=1")).into_response(),
        Err(status) if is_refusal(&status) => render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &edit_page(&caller, id, form, refusal_errors(&status, "name")),
        ),
        Err(status) => PageError::from_status(SERVICE, &status).into_response(),
    }
}

pub struct InvoiceCell {
    pub id: String,
    pub number: String,
    pub status: &'static str,
    pub total: String,
}

/// What the VIN decodes to, as the vehicle page shows it beside what was typed:
/// "Volkswagen · 2019 (from VIN)", and what of the typed make and year disagrees.
pub struct VinFacts {
    pub summary: String,
    pub differs: Option<String>,
    pub check_digit_invalid: bool,
}

/// `None` when the VIN decodes to nothing the page could show.
fn vin_facts(t: &crate::messages::Messages, vehicle: &pb::Vehicle) -> Option<VinFacts> {
    let d = vehicle.vin_decoding.as_ref()?;
    let year = match (d.model_year, d.model_year_certain) {
        (0, _) => None,
        (year, true) => Some(year.to_string()),
        (year, false) => Some(format!("{} {year}", t.vin_year_uncertain)),
    };
    let parts: Vec<String> = [non_blank(&d.manufacturer), year]
        .into_iter()
        .flatten()
        .collect();
    let check_digit_invalid = d.check_digit() == pb::CheckDigit::Invalid;
    if parts.is_empty() && !check_digit_invalid {
        return None;
    }
    let mut typed = Vec::new();
    if d.make_differs {
        typed.push(format!("{} {}", t.make.to_lowercase(), vehicle.make));
    }
    if d.year_differs {
        typed.push(format!("{} {}", t.year.to_lowercase(), vehicle.year));
    }
    Some(VinFacts {
        summary: if parts.is_empty() {
            String::new()
        } else {
            format!("{} {}", parts.join(" · "), t.from_vin_note)
        },
        differs: (!typed.is_empty()).then(|| format!("{} {}", t.vin_differs, typed.join(", "))),
        check_digit_invalid,
    })
}

fn non_blank(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

#[derive(Template)]
#[template(path = "vehicle.html")]
struct VehiclePage {
    shell: Shell,
    vehicle: pb::Vehicle,
    from_vin: Option<VinFacts>,
    mileage: String,
    owner: Option<(String, String)>,
    history: Vec<VisitRow>,
    /// Declined or deferred at earlier visits, not offered again yet.
    recommended: Vec<RecommendationRow>,
    reads_money: bool,
    missing: Vec<&'static str>,
    /// The form that opens a work order for the vehicle, when the role may.
    can_open: bool,
    form: NewWorkOrder,
    errors: FieldErrors,
}

/// A work order as typed into the vehicle page's form.
#[derive(Default, Deserialize)]
pub struct NewWorkOrder {
    #[serde(default)]
    complaint: String,
    #[serde(default)]
    odometer_km: String,
    #[serde(default)]
    idempotency_key: String,
}

/// A vehicle and its whole service history: every work order (newest first, as the service
/// lists them) with the odometer at intake, and the invoice each one led to.
pub async fn vehicle(State(web): State<Web>, caller: Caller, Path(id): Path<String>) -> Response {
    let form = NewWorkOrder {
        idempotency_key: uuid::Uuid::now_v7().to_string(),
        ..NewWorkOrder::default()
    };
    vehicle_page(
        &web,
        &caller,
        id,
        form,
        FieldErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// Opens a work order for the vehicle (and its owner) and goes to it; refused fields are
/// shown beside them on the vehicle page, with what was typed.
pub async fn open_work_order(
    State(web): State<Web>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<NewWorkOrder>,
) -> Response {
    use carerp_proto::workorder::v1 as workorder;
    let t = &EN;
    if let Err(refused) = caller.require(method::CREATE_WORK_ORDER) {
        return refused.into_response();
    }
    let odometer_km = match form.odometer_km.trim() {
        "" => Ok(0),
        typed => typed.parse::<i64>(),
    };
    let Ok(odometer_km) = odometer_km else {
        let mut errors = FieldErrors::default();
        errors.add("odometer_km", t.number_invalid);
        return vehicle_page(
            &web,
            &caller,
            id,
            form,
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let clients = &web.clients;
    let vehicle = match clients
        .customer
        .clone()
        .get_vehicle(clients.request(&caller.ctx, pb::GetVehicleRequest { id: id.clone() }))
        .await
    {
        Ok(vehicle) => vehicle.into_inner(),
        Err(status) => return PageError::from_status(SERVICE, &status).into_response(),
    };
    let answer = clients
        .workorder
        .clone()
        .create_work_order(clients.request(
            &caller.ctx,
            workorder::CreateWorkOrderRequest {
                customer_id: vehicle.customer_id,
                vehicle_id: id.clone(),
                complaint: form.complaint.trim().to_string(),
                odometer_km,
                notes: String::new(),
                idempotency_key: form.idempotency_key.clone(),
            },
        ))
        .await;
    match answer {
        Ok(order) => {
            Redirect::to(&format!("/work-orders/{}", order.into_inner().id)).into_response()
        }
        Err(status) if is_refusal(&status) => {
            let errors = refusal_errors(&status, "complaint");
            vehicle_page(
                &web,
                &caller,
                id,
                form,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(status) => PageError::from_status("workorder", &status).into_response(),
    }
}

async fn vehicle_page(
    web: &Web,
    caller: &Caller,
    id: String,
    form: NewWorkOrder,
    errors: FieldErrors,
    code: StatusCode,
) -> Response {
    let t = &EN;
    let clients = &web.clients;
    let mut vehicles = clients.customer.clone();
    let (vehicle, visits) = tokio::join!(
        vehicles
            .get_vehicle(clients.request(&caller.ctx, pb::GetVehicleRequest { id: id.clone() })),
        super::history::visits_of(web, caller, &id),
    );
    let vehicle = match vehicle {
        Ok(vehicle) => vehicle.into_inner(),
        Err(status) => return PageError::from_status(SERVICE, &status).into_response(),
    };
    let owner = fetch(web, caller, &vehicle.customer_id).await;
    render(
        code,
        &VehiclePage {
            shell: Shell::new(
                Some(caller),
                format!(
                    "{} {} {}",
                    vehicle.license_plate, vehicle.make, vehicle.model
                ),
                "customers",
            ),
            mileage: km(t, vehicle.mileage),
            from_vin: vin_facts(t, &vehicle),
            owner: owner.ok().map(|c| (c.id, c.name)),
            history: visits.visits,
            recommended: visits.recommended,
            reads_money: caller.can(method::LIST_INVOICES),
            missing: visits.missing,
            vehicle,
            can_open: caller.can(method::CREATE_WORK_ORDER),
            form,
            errors,
        },
    )
}
