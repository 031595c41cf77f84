//! Customers: search as you type (htmx asks for the results only), and the create form with
//! each field's error next to it, from the service's BadRequest details.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use carerp_proto::common::v1::PageRequest;
use carerp_proto::customer::v1 as pb;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::Web;
use crate::messages::EN;
use crate::page::{FieldErrors, PageError, Shell, method, missing, render};
use crate::session::Caller;

const SERVICE: &str = "customer";
const SHOWN: i32 = 50;

pub struct Row {
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
