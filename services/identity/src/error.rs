//! The one error type of the identity API; it maps itself to gRPC statuses. No variant holds
//! a password, token or hash, so neither its `Display` nor its `Debug` can leak one.

use std::time::Duration;

use carerp_kit::Violations;
use carerp_kit::status;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use uuid::Uuid;

use crate::secrets::HashError;

/// The one answer to every failed sign-in: unknown email, wrong password, inactive user.
pub const WRONG_CREDENTIALS: &str = "email or password is wrong";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Violations),
    #[error("{WRONG_CREDENTIALS}")]
    WrongCredentials,
    #[error("too many failed sign-ins: try again in {} seconds", retry_after.as_secs())]
    Throttled { retry_after: Duration },
    /// A refresh or API token that is unknown, used, expired, revoked or of a deactivated
    /// user; the reason is safe to show (it never repeats the token).
    #[error("{0}")]
    TokenRefused(&'static str),
    #[error("user {0} not found")]
    UserNotFound(Uuid),
    #[error("API token {0} not found")]
    ApiTokenNotFound(Uuid),
    #[error("a user with email {0:?} already exists")]
    DuplicateEmail(String),
    #[error(
        "user {id} was changed by someone else: expected version {expected}, current version {actual}; reload and retry"
    )]
    VersionConflict {
        id: Uuid,
        expected: i64,
        actual: i64,
    },
    #[error("{0}")]
    Refused(&'static str),
    #[error(transparent)]
    Hashing(#[from] HashError),
    #[error("cannot sign the access token: {0}")]
    Signing(#[from] carerp_kit::auth::KeyError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl carerp_kit::consumer::EventFailure for Error {
    /// An audit entry the store refuses as invalid will be refused every time.
    fn is_permanent(&self) -> bool {
        matches!(self, Error::Invalid(_))
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match &err {
            Error::Invalid(violations) => status::invalid_argument(violations),
            Error::WrongCredentials | Error::TokenRefused(_) => {
                Status::unauthenticated(err.to_string())
            }
            Error::Throttled { retry_after } => Status::with_error_details(
                Code::ResourceExhausted,
                err.to_string(),
                ErrorDetails::with_retry_info(Some(*retry_after)),
            ),
            Error::UserNotFound(_) | Error::ApiTokenNotFound(_) => {
                Status::not_found(err.to_string())
            }
            Error::DuplicateEmail(_) => Status::already_exists(err.to_string()),
            Error::VersionConflict { .. } => Status::aborted(err.to_string()),
            Error::Refused(_) => Status::failed_precondition(err.to_string()),
            Error::Hashing(_) | Error::Signing(_) => {
                tracing::error!(error = %err, "identity failure");
                Status::internal("internal error")
            }
            Error::Database(db) => status::database_error(db),
        }
    }
}

impl From<carerp_kit::FieldViolation> for Error {
    fn from(violation: carerp_kit::FieldViolation) -> Self {
        Error::Invalid(violation.into())
    }
}
