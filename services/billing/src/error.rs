//! The one error type of the billing service; it maps itself to gRPC statuses.

use carerp_kit::status;
use carerp_kit::{FieldViolation, Violations};
use tonic::Status;
use uuid::Uuid;

use crate::domain::{InvalidEvent, PaymentRefused, VoidRefused};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Violations),
    #[error("invoice {0} not found")]
    InvoiceNotFound(Uuid),
    #[error("no invoice for work order {0}")]
    NoInvoiceForWorkOrder(Uuid),
    #[error("cannot record the payment on invoice {number}: {reason}")]
    PaymentRefused {
        number: String,
        reason: PaymentRefused,
    },
    #[error("cannot void invoice {number}: {reason}")]
    VoidRefused { number: String, reason: VoidRefused },
    #[error(
        "invoice {id} was changed by someone else: expected version {expected}, current version {actual}; reload and retry"
    )]
    VersionConflict {
        id: Uuid,
        expected: i64,
        actual: i64,
    },
    /// The kit's idempotency: a key reused for a different request, or its database.
    #[error(transparent)]
    Idempotency(#[from] carerp_kit::idempotency::IdempotencyError),
    /// A `workorder.completed` event that cannot be invoiced; retrying cannot help.
    #[error(transparent)]
    InvalidEvent(#[from] InvalidEvent),
    #[error("the billing settings are missing: the service writes them at start")]
    NotConfigured,
    #[error(
        "CARERP_TIMEZONE={0:?} is not a time zone the database knows (expected an IANA name such as Europe/Berlin)"
    )]
    InvalidTimezone(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl carerp_kit::consumer::EventFailure for Error {
    /// A `workorder.completed` that cannot be invoiced never will be.
    fn is_permanent(&self) -> bool {
        matches!(self, Error::InvalidEvent(_) | Error::Invalid(_))
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match &err {
            Error::Invalid(violations) => status::invalid_argument(violations),
            Error::InvoiceNotFound(_) | Error::NoInvoiceForWorkOrder(_) => {
                Status::not_found(err.to_string())
            }
            Error::PaymentRefused { .. } | Error::VoidRefused { .. } => {
                Status::failed_precondition(err.to_string())
            }
            Error::VersionConflict { .. } => Status::aborted(err.to_string()),
            Error::Idempotency(idempotency) => status::idempotency_error(idempotency),
            Error::InvalidEvent(_) => Status::invalid_argument(err.to_string()),
            Error::NotConfigured | Error::InvalidTimezone(_) => {
                tracing::error!(error = %err, "billing misconfigured");
                Status::internal(err.to_string())
            }
            Error::Database(db) => status::database_error(db),
        }
    }
}

impl From<FieldViolation> for Error {
    fn from(violation: FieldViolation) -> Self {
        Error::Invalid(violation.into())
    }
}
