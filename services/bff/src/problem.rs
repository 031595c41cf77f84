//! Errors as RFC 9457 `application/problem+json`, and the gRPC-to-HTTP status mapping.
//!
//! Handlers return [`ApiError`]; the edge middleware (see `edge.rs`) adds the correlation id
//! and the request path, and turns every other error response (unknown route, wrong method,
//! body too large, timeout) into the same shape, so a client parses one error format.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use tonic::Code;
use utoipa::ToSchema;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP reason phrase or a short summary of the kind.
    pub title: String,
    pub status: u16,
    /// What went wrong with this request, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The path of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The request's correlation id, also in the `x-correlation-id` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// One entry per invalid field, when the problem is about the request's content.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One invalid field: its JSON path in the request (`address.country`) and what is wrong.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: Some(detail.into()),
            instance: None,
            correlation_id: None,
            errors: Vec::new(),
        }
    }

    pub fn with_kind(mut self, slug: &str, title: &str) -> Self {
        self.kind = format!("https://carerp.io/problems/{slug}");
        self.title = title.into();
        self
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A domain service refused or failed the call.
    #[error("{service} service: {status}")]
    Grpc {
        service: &'static str,
        status: tonic::Status,
    },
    /// The body is not JSON at all (syntax error, truncated).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The JSON does not fit the request's shape (unknown or missing field, wrong type).
    #[error("invalid request body")]
    InvalidBody(Vec<FieldError>),
    /// A path or query parameter, or a field checked by the BFF itself.
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// Anything with a ready status (413 from the body limit, ...).
    #[error("{1}")]
    Status(StatusCode, String),
}

impl ApiError {
    pub fn grpc(service: &'static str) -> impl FnOnce(tonic::Status) -> Self {
        move |status| Self::Grpc { service, status }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    pub fn problem(&self) -> Problem {
        match self {
            ApiError::Grpc { service, status } => grpc_problem(service, status),
            ApiError::MalformedJson(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not valid JSON: {detail}"),
            )
            .with_kind("malformed-json", "Malformed JSON"),
            ApiError::InvalidBody(errors) => {
                let mut problem = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    describe("the body does not match the request's schema", errors),
                )
                .with_kind("invalid-body", "Invalid request body");
                problem.errors = errors.clone();
                problem
            }
            ApiError::Invalid(errors) => {
                let mut problem = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    describe("invalid", errors),
                )
                .with_kind("validation", "Validation failed");
                problem.errors = errors.clone();
                problem
            }
            ApiError::UnsupportedMediaType(detail) => {
                Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, detail.clone())
            }
            ApiError::Status(status, detail) => Problem::new(*status, detail.clone()),
        }
    }
}

fn describe(lead: &str, errors: &[FieldError]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    format!("{lead}: {}", parts.join("; "))
}

/// The HTTP status of a gRPC code (ARCHITECTURE.md, "Runtime contracts").
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::UNPROCESSABLE_ENTITY,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable | Code::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The problem type slug of a gRPC code, so clients can tell a stale version (`conflict`)
/// from a duplicate (`already-exists`) though both are 409.
fn grpc_kind(code: Code) -> (&'static str, &'static str) {
    match code {
        Code::InvalidArgument | Code::OutOfRange => ("validation", "Validation failed"),
        Code::NotFound => ("not-found", "Not found"),
        Code::AlreadyExists => ("already-exists", "Already exists"),
        Code::FailedPrecondition => ("precondition-failed", "Not allowed in this state"),
        Code::Aborted => ("version-conflict", "Changed by someone else"),
        Code::Unauthenticated => ("unauthenticated", "Unauthenticated"),
        Code::PermissionDenied => ("forbidden", "Forbidden"),
        Code::ResourceExhausted => ("exhausted", "Too many requests"),
        Code::Unavailable | Code::Cancelled => ("unavailable", "Service unavailable"),
        Code::DeadlineExceeded => ("timeout", "Service timed out"),
        Code::Unimplemented => ("not-implemented", "Not implemented"),
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => {
            ("internal", "Internal error")
        }
    }
}

fn grpc_problem(service: &str, status: &tonic::Status) -> Problem {
    let code = status.code();
    let http = http_status(code);
    let (slug, title) = grpc_kind(code);
    let detail = match code {
        // Internals stay in the logs.
        Code::Unknown | Code::Internal | Code::DataLoss => {
            tracing::error!(service, code = ?code, message = status.message(), "service failed");
            format!(
                "the {service} service failed; the correlation id identifies the request in the logs"
            )
        }
        Code::Unavailable | Code::Cancelled => {
            tracing::warn!(service, message = status.message(), "service unavailable");
            format!("the {service} service is unavailable, retry later")
        }
        Code::DeadlineExceeded => format!("the {service} service did not answer in time"),
        _ => status.message().to_string(),
    };
    let mut problem = Problem::new(http, detail).with_kind(slug, title);
    problem.errors = carerp_kit::status::field_violations(status)
        .into_iter()
        .map(|v| FieldError {
            field: json_field_path(&v.field),
            message: v.description,
        })
        .collect();
    problem
}

/// A proto field path as the client knows it: camelCase segments, and the page request's
/// fields under their query parameter names.
pub fn json_field_path(proto_path: &str) -> String {
    match proto_path {
        "page.page_size" => return "limit".into(),
        "page.page_token" => return "cursor".into(),
        _ => {}
    }
    proto_path
        .split('.')
        .map(camel_case)
        .collect::<Vec<_>>()
        .join(".")
}

fn camel_case(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    let mut upper = false;
    for c in segment.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

pub fn problem_response(problem: Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(problem)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = problem_response(self.problem());
        if let ApiError::Grpc { status, .. } = &self {
            match status.code() {
                // A client told 429 by a service learns when to come back, like from our
                // limiter: the service's RetryInfo, else a second.
                Code::ResourceExhausted => {
                    let seconds = retry_after_seconds(status).unwrap_or(1);
                    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                        response.headers_mut().insert(header::RETRY_AFTER, value);
                    }
                }
                Code::Unauthenticated => {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(r#"Bearer realm="carerp""#),
                    );
                }
                _ => {}
            }
        }
        response
    }
}

/// Whole seconds (at least 1) of a status's `google.rpc.RetryInfo`, when it has one.
fn retry_after_seconds(status: &tonic::Status) -> Option<u64> {
    use tonic_types::StatusExt;
    let delay = status.get_details_retry_info()?.retry_delay?;
    Some(delay.as_secs_f64().ceil().max(1.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use carerp_kit::status::{Violations, invalid_argument};

    #[test]
    fn every_grpc_code_maps_to_its_http_status() {
        let expected = [
            (Code::Ok, 200),
            (Code::Cancelled, 503),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 422),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 409),
            (Code::Aborted, 409),
            (Code::OutOfRange, 422),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
            (Code::Unauthenticated, 401),
        ];
        for (code, status) in expected {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
        // Every one of the 17 codes is covered above.
        assert_eq!(expected.len(), 17);
        for n in 0..17 {
            assert!(expected.iter().any(|(c, _)| *c == Code::from_i32(n)));
        }
    }

    #[test]
    fn field_violations_become_camel_case_field_errors() {
        let mut v = Violations::new();
        v.add("address.postal_code", "is required");
        v.add("page.page_size", "must not be negative, is -1");
        let problem = ApiError::Grpc {
            service: "customer",
            status: invalid_argument(&v),
        }
        .problem();
        assert_eq!(problem.status, 422);
        assert_eq!(
            problem.errors,
            vec![
                FieldError {
                    field: "address.postalCode".into(),
                    message: "is required".into()
                },
                FieldError {
                    field: "limit".into(),
                    message: "must not be negative, is -1".into()
                },
            ]
        );
    }

    #[test]
    fn internal_messages_are_not_shown_to_clients() {
        let problem = ApiError::Grpc {
            service: "billing",
            status: tonic::Status::internal("relation \"invoices\" does not exist"),
        }
        .problem();
        assert_eq!(problem.status, 500);
        assert!(
            !problem
                .detail
                .unwrap_or_default()
                .contains("does not exist")
        );
    }

    #[test]
    fn conflicts_tell_their_kind() {
        let aborted = ApiError::Grpc {
            service: "workorder",
            status: tonic::Status::aborted("version 3 expected, is 4"),
        }
        .problem();
        assert_eq!(aborted.status, 409);
        assert!(aborted.kind.ends_with("/version-conflict"));
        assert_eq!(aborted.detail.as_deref(), Some("version 3 expected, is 4"));
    }
}
