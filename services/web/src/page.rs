//! What every page shares: the layout's data (navigation for the caller's role, the message
//! catalogue, the asset URLs), rendering, the error pages, and the note of what a page lacks
//! when a service does not answer.

use askama::Template;
use axum::response::{Html, IntoResponse, Redirect, Response};
use carerp_kit::status::field_violations;
use http::{HeaderValue, StatusCode, header};

use crate::assets;
use crate::messages::{EN, Messages};
use crate::session::Caller;

pub mod method {
    //! The gRPC methods pages ask the permission table about.
    pub const GET_SUMMARY: &str = "/carerp.billing.v1.BillingService/GetSummary";
    pub const LIST_INVOICES: &str = "/carerp.billing.v1.BillingService/ListInvoices";
    pub const GET_INVOICE_BY_WORK_ORDER: &str =
        "/carerp.billing.v1.BillingService/GetInvoiceByWorkOrder";
    pub const RECORD_PAYMENT: &str = "/carerp.billing.v1.BillingService/RecordPayment";
    pub const CREATE_CUSTOMER: &str = "/carerp.customer.v1.CustomerService/CreateCustomer";
    pub const CHANGE_STATUS: &str = "/carerp.workorder.v1.WorkOrderService/ChangeStatus";
    pub const ADD_PART_LINE: &str = "/carerp.workorder.v1.WorkOrderService/AddPartLine";
    pub const ADD_LABOR_LINE: &str = "/carerp.workorder.v1.WorkOrderService/AddLaborLine";
    pub const REMOVE_PART_LINE: &str = "/carerp.workorder.v1.WorkOrderService/RemovePartLine";
    pub const REMOVE_LABOR_LINE: &str = "/carerp.workorder.v1.WorkOrderService/RemoveLaborLine";
    pub const RETRY_RESERVATION: &str = "/carerp.workorder.v1.WorkOrderService/RetryReservation";
    pub const ADD_JOB: &str = "/carerp.workorder.v1.WorkOrderService/AddJob";
    pub const REMOVE_JOB: &str = "/carerp.workorder.v1.WorkOrderService/RemoveJob";
    pub const DECIDE_JOB: &str = "/carerp.workorder.v1.WorkOrderService/DecideJob";
    pub const SEND_ESTIMATE: &str = "/carerp.workorder.v1.WorkOrderService/SendEstimate";
    pub const CREATE_PART: &str = "/carerp.inventory.v1.InventoryService/CreatePart";
    pub const UPDATE_PART: &str = "/carerp.inventory.v1.InventoryService/UpdatePart";
    pub const ADJUST_STOCK: &str = "/carerp.inventory.v1.InventoryService/AdjustStock";
    pub const UPDATE_CUSTOMER: &str = "/carerp.customer.v1.CustomerService/UpdateCustomer";
    pub const ADD_VEHICLE: &str = "/carerp.customer.v1.CustomerService/AddVehicle";
    pub const VOID_INVOICE: &str = "/carerp.billing.v1.BillingService/VoidInvoice";
    pub const LIST_USERS: &str = "/carerp.identity.v1.IdentityService/ListUsers";
    pub const CREATE_USER: &str = "/carerp.identity.v1.IdentityService/CreateUser";
    pub const UPDATE_USER: &str = "/carerp.identity.v1.IdentityService/UpdateUser";
    pub const RESET_PASSWORD: &str = "/carerp.identity.v1.IdentityService/ResetPassword";
    pub const LIST_AUDIT: &str = "/carerp.identity.v1.IdentityService/ListAudit";
    pub const GET_WORK_ORDER: &str = "/carerp.workorder.v1.WorkOrderService/GetWorkOrder";
    pub const CREATE_WORK_ORDER: &str = "/carerp.workorder.v1.WorkOrderService/CreateWorkOrder";
    pub const UPDATE_NOTES: &str = "/carerp.workorder.v1.WorkOrderService/UpdateNotes";
    pub const LIST_API_TOKENS: &str = "/carerp.identity.v1.IdentityService/ListApiTokens";
    pub const CREATE_API_TOKEN: &str = "/carerp.identity.v1.IdentityService/CreateApiToken";
    pub const REVOKE_API_TOKEN: &str = "/carerp.identity.v1.IdentityService/RevokeApiToken";
    pub const START_INSPECTION: &str = "/carerp.workorder.v1.InspectionService/StartInspection";
    pub const RATE_ITEM: &str = "/carerp.workorder.v1.InspectionService/RateItem";
    pub const ADD_PHOTO: &str = "/carerp.workorder.v1.InspectionService/AddPhoto";
    pub const REMOVE_PHOTO: &str = "/carerp.workorder.v1.InspectionService/RemovePhoto";
    pub const COMPLETE_INSPECTION: &str =
        "/carerp.workorder.v1.InspectionService/CompleteInspection";
    pub const PROPOSE_JOBS: &str = "/carerp.workorder.v1.InspectionService/ProposeJobs";
    pub const ADD_CANNED_JOB: &str = "/carerp.workorder.v1.CannedJobService/AddCannedJob";
    pub const SAVE_CANNED_JOB: &str = "/carerp.workorder.v1.CannedJobService/SaveCannedJob";
    pub const SAVE_TEMPLATE: &str = "/carerp.workorder.v1.InspectionService/SaveTemplate";
    pub const OFFER_AGAIN: &str = "/carerp.workorder.v1.HistoryService/OfferAgain";
    pub const LIST_RECOMMENDED_WORK: &str =
        "/carerp.workorder.v1.HistoryService/ListRecommendedWork";
    pub const ALL: &[&str] = &[
        OFFER_AGAIN,
        LIST_RECOMMENDED_WORK,
        ADD_CANNED_JOB,
        SAVE_CANNED_JOB,
        START_INSPECTION,
        RATE_ITEM,
        ADD_PHOTO,
        REMOVE_PHOTO,
        COMPLETE_INSPECTION,
        PROPOSE_JOBS,
        SAVE_TEMPLATE,
        ADD_JOB,
        REMOVE_JOB,
        DECIDE_JOB,
        SEND_ESTIMATE,
        LIST_API_TOKENS,
        CREATE_API_TOKEN,
        REVOKE_API_TOKEN,
        UPDATE_NOTES,
        CREATE_WORK_ORDER,
        GET_WORK_ORDER,
        LIST_USERS,
        CREATE_USER,
        UPDATE_USER,
        RESET_PASSWORD,
        LIST_AUDIT,
        VOID_INVOICE,
        UPDATE_CUSTOMER,
        ADD_VEHICLE,
        CREATE_PART,
        UPDATE_PART,
        ADJUST_STOCK,
        REMOVE_PART_LINE,
        REMOVE_LABOR_LINE,
        RETRY_RESERVATION,
        GET_SUMMARY,
        LIST_INVOICES,
        GET_INVOICE_BY_WORK_ORDER,
        RECORD_PAYMENT,
        CREATE_CUSTOMER,
        CHANGE_STATUS,
        ADD_PART_LINE,
        ADD_LABOR_LINE,
    ];
}

/// The layout's data.
pub struct Shell {
    pub t: &'static Messages,
    pub title: String,
    pub css: String,
    pub htmx: String,
    pub htmx_sse: String,
    /// `None` on the sign-in page.
    pub user: Option<NavUser>,
    /// Which navigation entry is the current page.
    pub current: &'static str,
}

pub struct NavUser {
    pub role: &'static str,
    pub invoices: bool,
    /// The follow-up list of recommended work.
    pub recommended: bool,
    pub people: bool,
    pub audit: bool,
    pub api_tokens: bool,
}

impl Shell {
    pub fn new(caller: Option<&Caller>, title: impl Into<String>, current: &'static str) -> Self {
        Self {
            t: &EN,
            title: title.into(),
            css: assets::css_url(),
            htmx: assets::htmx_url(),
            htmx_sse: assets::htmx_sse_url(),
            user: caller.map(|caller| NavUser {
                role: caller.role.as_str(),
                invoices: caller.can(method::LIST_INVOICES),
                recommended: caller.can(method::LIST_RECOMMENDED_WORK),
                people: caller.can(method::LIST_USERS),
                audit: caller.can(method::LIST_AUDIT),
                api_tokens: caller.can(method::LIST_API_TOKENS),
            }),
            current,
        }
    }
}

/// A page, or a fragment, rendered to HTML with the page headers.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, html_headers(), Html(html)).into_response(),
        Err(err) => {
            tracing::error!("a template failed to render: {err}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                html_headers(),
                Html(String::from(
                    "<!doctype html><title>Error</title><p>This page could not be shown.</p>",
                )),
            )
                .into_response()
        }
    }
}

/// Pages may load what this origin serves and nothing else; no inline script or style.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

fn html_headers() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// A service a page could not ask, said in the catalogue's words.
pub fn missing(t: &'static Messages, service: &str) -> &'static str {
    match service {
        "customer" => t.missing_customers,
        "workorder" => t.missing_work_orders,
        "inventory" => t.missing_inventory,
        "billing" => t.missing_billing,
        _ => t.missing_identity,
    }
}

/// Why a page cannot be shown; each becomes an HTML page with its status (or a redirect).
#[derive(Debug)]
pub enum PageError {
    SignIn,
    /// The permission (method or rule) the role lacks.
    Forbidden(String),
    NotFound,
    /// The service's own words.
    Conflict(String),
    Unavailable(&'static str),
    CrossSite,
    Internal(String),
}

impl PageError {
    /// A failed call to `service` that the page cannot do without.
    pub fn grpc(service: &'static str) -> impl FnOnce(tonic::Status) -> Self {
        move |status| Self::from_status(service, &status)
    }

    pub fn from_status(service: &'static str, status: &tonic::Status) -> Self {
        use tonic::Code;
        match status.code() {
            Code::NotFound => Self::NotFound,
            Code::PermissionDenied => Self::Forbidden(status.message().to_string()),
            Code::Unauthenticated => Self::SignIn,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                Self::Unavailable(service)
            }
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::Aborted
            | Code::AlreadyExists
            | Code::OutOfRange
            | Code::ResourceExhausted => {
                let violations = field_violations(status);
                if violations.is_empty() {
                    Self::Conflict(status.message().to_string())
                } else {
                    Self::Conflict(
                        violations
                            .iter()
                            .map(|v| format!("{}: {}", v.field, v.description))
                            .collect::<Vec<_>>()
                            .join("; "),
                    )
                }
            }
            code => Self::Internal(format!("{service}: {code:?}: {}", status.message())),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    shell: Shell,
    heading: &'static str,
    detail: String,
    reload: bool,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let t = &EN;
        let (status, heading, detail, reload) = match self {
            PageError::SignIn => {
                return Redirect::to(crate::pages::auth::SIGN_IN_PATH).into_response();
            }
            PageError::Forbidden(permission) => {
                (StatusCode::FORBIDDEN, t.forbidden, permission, false)
            }
            PageError::NotFound => (StatusCode::NOT_FOUND, t.not_found, String::new(), false),
            PageError::Conflict(why) => (StatusCode::CONFLICT, t.conflict, why, true),
            PageError::Unavailable(service) => (
                StatusCode::SERVICE_UNAVAILABLE,
                t.unavailable,
                missing(t, service).to_string(),
                true,
            ),
            PageError::CrossSite => (
                StatusCode::FORBIDDEN,
                t.cross_site_refused,
                String::new(),
                false,
            ),
            PageError::Internal(why) => {
                tracing::error!("page failed: {why}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    t.error_title,
                    String::new(),
                    true,
                )
            }
        };
        let mut shell = Shell::new(None, heading, "");
        shell.title = t.error_title.to_string();
        render(
            status,
            &ErrorPage {
                shell,
                heading,
                detail,
                reload,
            },
        )
    }
}

/// The service refused a write for a reason the page shows beside its form: a field, a
/// rule, a duplicate, or a stale version.
pub fn is_refusal(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::InvalidArgument
            | tonic::Code::FailedPrecondition
            | tonic::Code::AlreadyExists
            | tonic::Code::Aborted
    )
}

/// A form's field errors, by the field names the services report (their proto names).
#[derive(Debug, Default, Clone)]
pub struct FieldErrors(pub Vec<(String, String)>);

impl FieldErrors {
    pub fn from_status(status: &tonic::Status) -> Self {
        Self(
            field_violations(status)
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect(),
        )
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push((field.to_string(), message.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The message for `field` (also for its nested fields, `address.city` under `address`).
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == field || name.starts_with(&format!("{field}.")))
            .map(|(_, message)| message.as_str())
    }

    /// Errors of fields the form does not show, so none is lost.
    pub fn others(&self, shown: &[&str]) -> Vec<String> {
        self.0
            .iter()
            .filter(|(name, _)| {
                !shown
                    .iter()
                    .any(|s| name == s || name.starts_with(&format!("{s}.")))
            })
            .map(|(name, message)| format!("{name}: {message}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_pages_ask_about_is_in_the_permission_table() {
        for name in method::ALL {
            assert!(
                carerp_kit::permissions::access(name).is_some(),
                "{name} is not in the permission table"
            );
        }
    }
}
