//! The one error type of the work order service; it maps itself to gRPC statuses.

use carerp_kit::status;
use carerp_kit::{FieldViolation, Violations};
use tonic::Status;
use uuid::Uuid;

use crate::domain::{Status as WorkOrderStatus, TransitionError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Violations),
    #[error("work order {0} not found")]
    WorkOrderNotFound(Uuid),
    #[error("part line {line_id} not found on work order {work_order_id}")]
    PartLineNotFound { work_order_id: Uuid, line_id: Uuid },
    #[error("labour line {line_id} not found on work order {work_order_id}")]
    LaborLineNotFound { work_order_id: Uuid, line_id: Uuid },
    #[error("customer {0} not found")]
    CustomerNotFound(Uuid),
    #[error("vehicle {0} not found")]
    VehicleNotFound(Uuid),
    #[error("customer {0} is archived: no new work orders can be opened for it")]
    CustomerArchived(Uuid),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(
        "lines of work order {id} cannot change: it is {status}; lines change only before COMPLETED"
    )]
    LinesLocked { id: Uuid, status: WorkOrderStatus },
    #[error(
        "work order {id} has {max} {kind} lines, the most one work order may have; remove one first, or open another work order"
    )]
    TooManyLines {
        id: Uuid,
        kind: &'static str,
        max: usize,
    },
    #[error("work order {0} has no FAILED part lines to retry")]
    NothingToRetry(Uuid),
    /// An event that contradicts what this service knows (e.g. a second, different invoice).
    #[error("{0}")]
    Conflict(String),
    #[error(
        "work order {id} was changed by someone else: expected version {expected}, current version {actual}; reload and retry"
    )]
    VersionConflict {
        id: Uuid,
        expected: i64,
        actual: i64,
    },
    /// The customer service could not be asked; nothing was written.
    #[error("customer service unavailable: {0}")]
    CustomerServiceUnavailable(String),
    /// The customer service answered with something this service cannot use.
    #[error("customer service failed: {0}")]
    CustomerService(String),
    /// The kit's idempotency: a key reused for a different request, or its database.
    #[error(transparent)]
    Idempotency(#[from] carerp_kit::idempotency::IdempotencyError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl carerp_kit::consumer::EventFailure for Error {
    /// An event that contradicts what this service knows, or names a work order or line it
    /// never had, cannot be applied however often it arrives.
    fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::Conflict(_)
                | Error::Invalid(_)
                | Error::WorkOrderNotFound(_)
                | Error::PartLineNotFound { .. }
        )
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match &err {
            Error::Invalid(violations) => status::invalid_argument(violations),
            Error::WorkOrderNotFound(_)
            | Error::PartLineNotFound { .. }
            | Error::LaborLineNotFound { .. }
            | Error::CustomerNotFound(_)
            | Error::VehicleNotFound(_) => Status::not_found(err.to_string()),
            Error::CustomerArchived(_)
            | Error::Transition(_)
            | Error::LinesLocked { .. }
            | Error::NothingToRetry(_)
            | Error::TooManyLines { .. }
            | Error::Conflict(_) => Status::failed_precondition(err.to_string()),
            Error::VersionConflict { .. } => Status::aborted(err.to_string()),
            Error::CustomerServiceUnavailable(_) => Status::unavailable(err.to_string()),
            Error::CustomerService(message) => {
                tracing::error!(error = %message, "customer service failed");
                Status::internal(err.to_string())
            }
            Error::Idempotency(idempotency) => status::idempotency_error(idempotency),
            Error::Database(db) => status::database_error(db),
        }
    }
}

impl From<FieldViolation> for Error {
    fn from(violation: FieldViolation) -> Self {
        Error::Invalid(violation.into())
    }
}
