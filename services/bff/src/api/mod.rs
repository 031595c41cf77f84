//! The REST handlers, one module per resource, and the route table the router and the
//! OpenAPI document are both built from.

pub mod auth;
pub mod canned_jobs;
pub mod customers;
pub mod dashboard;
pub mod dead_letters;
pub mod estimates;
pub mod history;
pub mod inspections;
pub mod invoices;
pub mod parts;
pub mod people;
pub mod workorders;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::routing::{MethodRouter, delete, get, post, put};
use carerp_proto::common::v1::PageRequest;
use http::request::Parts;

use crate::clients::Clients;
use crate::problem::ApiError;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub clients: Clients,
    /// How estimates reach customers by email (`None`: not configured for this garage).
    pub delivery: Option<estimates::EstimateMailer>,
}

/// A comma-separated `status` filter (`OPEN,IN_PROGRESS`) as proto enum values; absent or
/// empty means any status. A name that is not a status is refused, listing `expected`.
pub fn status_filter<S: serde::de::DeserializeOwned>(
    param: Option<String>,
    expected: &str,
    to_proto: impl Fn(S) -> i32,
) -> Result<Vec<i32>, ApiError> {
    let Some(param) = param else {
        return Ok(Vec::new());
    };
    param
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| {
            serde_json::from_value::<S>(serde_json::Value::String(name.into()))
                .map(&to_proto)
                .map_err(|_| {
                    ApiError::field(
                        "status",
                        format!("{name:?} is not a status; expected {expected}"),
                    )
                })
        })
        .collect()
}

/// The page request of a list call; `limit` 0 or absent means the service's default.
pub fn page(limit: Option<i32>, cursor: Option<String>) -> Option<PageRequest> {
    Some(PageRequest {
        page_size: limit.unwrap_or(0),
        page_token: cursor.unwrap_or_default(),
    })
}

/// The `Idempotency-Key` header, handed to the service as the create's idempotency key:
/// repeating a POST with the same key returns the first result and creates nothing.
pub struct IdempotencyKey(pub String);

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_HEADER) else {
            return Ok(IdempotencyKey(String::new()));
        };
        let key = value
            .to_str()
            .map_err(|_| ApiError::field("Idempotency-Key", "must be visible ASCII"))?
            .trim();
        if key.is_empty() || key.len() > 200 {
            return Err(ApiError::field(
                "Idempotency-Key",
                format!("must be 1 to 200 characters, is {}", key.len()),
            ));
        }
        Ok(IdempotencyKey(key.to_string()))
    }
}

/// A 201 answer: where the new record lives, and the record.
pub type Created<T> = (
    http::StatusCode,
    [(http::HeaderName, String); 1],
    axum::Json<T>,
);

pub fn created<T>(location: String, body: T) -> Created<T> {
    (
        http::StatusCode::CREATED,
        [(http::header::LOCATION, location)],
        axum::Json(body),
    )
}

/// One route: method, path (OpenAPI and axum 0.8 share the `{param}` syntax) and handler.
pub struct Route {
    pub method: http::Method,
    pub path: &'static str,
    pub handler: MethodRouter<AppState>,
}

fn route(method: http::Method, path: &'static str, handler: MethodRouter<AppState>) -> Route {
    Route {
        method,
        path,
        handler,
    }
}

/// Every API route. The router is built from this table and a test compares it with the
/// OpenAPI document, so neither can list a route the other lacks.
pub fn routes() -> Vec<Route> {
    use http::Method as M;
    vec![
        route(M::GET, "/api/customers", get(customers::list_customers)),
        route(M::POST, "/api/customers", post(customers::create_customer)),
        route(M::GET, "/api/customers/{id}", get(customers::get_customer)),
        route(
            M::PUT,
            "/api/customers/{id}",
            put(customers::update_customer),
        ),
        route(
            M::DELETE,
            "/api/customers/{id}",
            delete(customers::archive_customer),
        ),
        route(
            M::GET,
            "/api/customers/{id}/vehicles",
            get(customers::list_customer_vehicles),
        ),
        route(
            M::POST,
            "/api/customers/{id}/vehicles",
            post(customers::add_vehicle),
        ),
        route(M::GET, "/api/vehicles", get(customers::list_vehicles)),
        route(M::GET, "/api/vehicles/{id}", get(customers::get_vehicle)),
        route(M::PUT, "/api/vehicles/{id}", put(customers::update_vehicle)),
        route(
            M::GET,
            "/api/vehicles/{id}/history",
            get(history::vehicle_history),
        ),
        route(
            M::GET,
            "/api/recommended-work",
            get(history::recommended_work),
        ),
        route(
            M::POST,
            "/api/work-orders/{id}/recommended-jobs",
            post(history::offer_again),
        ),
        route(
            M::GET,
            "/api/work-orders",
            get(workorders::list_work_orders),
        ),
        route(
            M::POST,
            "/api/work-orders",
            post(workorders::create_work_order),
        ),
        route(
            M::GET,
            "/api/work-orders/{id}",
            get(workorders::get_work_order),
        ),
        route(
            M::PUT,
            "/api/work-orders/{id}/status",
            put(workorders::change_status),
        ),
        route(
            M::PUT,
            "/api/work-orders/{id}/notes",
            put(workorders::update_notes),
        ),
        route(
            M::POST,
            "/api/work-orders/{id}/line-items",
            post(workorders::add_part_line),
        ),
        route(
            M::DELETE,
            "/api/work-orders/{id}/line-items/{lineId}",
            delete(workorders::remove_part_line),
        ),
        route(
            M::POST,
            "/api/work-orders/{id}/labor",
            post(workorders::add_labor_line),
        ),
        route(
            M::DELETE,
            "/api/work-orders/{id}/labor/{lineId}",
            delete(workorders::remove_labor_line),
        ),
        route(
            M::POST,
            "/api/work-orders/{id}/retry-reservation",
            post(workorders::retry_reservation),
        ),
        route(
            M::POST,
            "/api/work-orders/{id}/jobs",
            post(estimates::add_job),
        ),
        route(
            M::DELETE,
            "/api/work-orders/{id}/jobs/{jobId}",
            delete(estimates::remove_job),
        ),
        route(
            M::PUT,
            "/api/work-orders/{id}/jobs/{jobId}/decision",
            put(estimates::decide_job),
        ),
        route(
            M::POST,
            "/api/work-orders/{id}/estimates",
            post(estimates::send_estimate),
        ),
        route(
            M::GET,
            "/api/work-orders/{id}/estimates",
            get(estimates::list_estimates),
        ),
        route(
            M::GET,
            "/api/approvals/{token}",
            get(estimates::get_approval),
        ),
        route(
            M::PUT,
            "/api/approvals/{token}/jobs/{jobId}",
            put(estimates::decide_by_link),
        ),
        route(
            M::GET,
            "/api/canned-jobs",
            get(canned_jobs::list_canned_jobs),
        ),
        route(
            M::POST,
            "/api/canned-jobs",
            post(canned_jobs::create_canned_job),
        ),
        route(
            M::PUT,
            "/api/canned-jobs/{id}",
            put(canned_jobs::update_canned_job),
        ),
        route(
            M::DELETE,
            "/api/canned-jobs/{id}",
            delete(canned_jobs::remove_canned_job),
        ),
        route(
            M::POST,
            "/api/work-orders/{id}/canned-jobs",
            post(canned_jobs::add_canned_job),
        ),
        route(
            M::GET,
            "/api/inspection-templates",
            get(inspections::list_templates),
        ),
        route(
            M::POST,
            "/api/inspection-templates",
            post(inspections::create_template),
        ),
        route(
            M::PUT,
            "/api/inspection-templates/{id}",
            put(inspections::update_template),
        ),
        route(
            M::POST,
            "/api/work-orders/{id}/inspection",
            post(inspections::start_inspection),
        ),
        route(
            M::GET,
            "/api/work-orders/{id}/inspection",
            get(inspections::get_inspection),
        ),
        route(
            M::PUT,
            "/api/work-orders/{id}/inspection/items/{itemId}",
            put(inspections::rate_item),
        ),
        route(
            M::POST,
            "/api/work-orders/{id}/inspection/items/{itemId}/photos",
            post(inspections::add_photo)
                .layer(DefaultBodyLimit::max(inspections::MAX_PHOTO_BODY_BYTES)),
        ),
        route(
            M::GET,
            "/api/work-orders/{id}/inspection/photos/{photoId}",
            get(inspections::get_photo),
        ),
        route(
            M::DELETE,
            "/api/work-orders/{id}/inspection/photos/{photoId}",
            delete(inspections::remove_photo),
        ),
        route(
            M::POST,
            "/api/work-orders/{id}/inspection/complete",
            post(inspections::complete_inspection),
        ),
        route(
            M::POST,
            "/api/work-orders/{id}/inspection/jobs",
            post(inspections::propose_jobs),
        ),
        route(
            M::GET,
            "/api/approvals/{token}/inspection",
            get(inspections::inspection_by_link),
        ),
        route(
            M::GET,
            "/api/approvals/{token}/photos/{photoId}",
            get(inspections::photo_by_link),
        ),
        route(
            M::GET,
            "/api/dead-letters",
            get(dead_letters::list_dead_letters),
        ),
        route(
            M::GET,
            "/api/dead-letters/{sequence}",
            get(dead_letters::get_dead_letter),
        ),
        route(
            M::POST,
            "/api/dead-letters/{sequence}/replay",
            post(dead_letters::replay_dead_letter),
        ),
        route(M::GET, "/api/parts", get(parts::list_parts)),
        route(M::POST, "/api/parts", post(parts::create_part)),
        route(M::GET, "/api/parts/low-stock", get(parts::low_stock)),
        route(M::GET, "/api/parts/{id}", get(parts::get_part)),
        route(M::PUT, "/api/parts/{id}", put(parts::update_part)),
        route(
            M::POST,
            "/api/parts/{id}/stock-adjustments",
            post(parts::adjust_stock),
        ),
        route(
            M::GET,
            "/api/parts/{id}/movements",
            get(parts::list_movements),
        ),
        route(M::GET, "/api/invoices", get(invoices::list_invoices)),
        route(M::GET, "/api/invoices/{id}", get(invoices::get_invoice)),
        route(
            M::PUT,
            "/api/invoices/{id}/status",
            put(invoices::change_status),
        ),
        route(
            M::POST,
            "/api/invoices/{id}/payments",
            post(invoices::record_payment),
        ),
        route(
            M::POST,
            "/api/invoices/{id}/void",
            post(invoices::void_invoice),
        ),
        route(M::GET, "/api/dashboard", get(dashboard::dashboard)),
        route(M::POST, "/api/auth/login", post(auth::login)),
        route(M::POST, "/api/auth/refresh", post(auth::refresh)),
        route(M::POST, "/api/auth/logout", post(auth::logout)),
        route(M::GET, "/api/auth/me", get(auth::me)),
        route(M::PUT, "/api/auth/password", put(auth::change_password)),
        route(M::GET, "/api/users", get(people::list_users)),
        route(M::POST, "/api/users", post(people::create_user)),
        route(M::GET, "/api/users/{id}", get(people::get_user)),
        route(M::PUT, "/api/users/{id}", put(people::update_user)),
        route(
            M::POST,
            "/api/users/{id}/password-reset",
            post(people::reset_password),
        ),
        route(M::GET, "/api/api-tokens", get(people::list_api_tokens)),
        route(M::POST, "/api/api-tokens", post(people::create_api_token)),
        route(
            M::DELETE,
            "/api/api-tokens/{id}",
            delete(people::revoke_api_token),
        ),
        route(M::GET, "/api/audit", get(people::list_audit)),
    ]
}
