//! The one error type of the work order service; it maps itself to gRPC statuses.

use carerp_kit::status;
use carerp_kit::{FieldViolation, Violations};
use tonic::Status;
use uuid::Uuid;

use crate::domain::{Status as WorkOrderStatus, TransitionError};
use crate::inspection::InspectionError;

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
    /// Another service (customer, inventory) could not be asked; nothing was written.
    #[error("{service} service unavailable: {reason}")]
    PeerUnavailable {
        service: &'static str,
        reason: String,
    },
    /// Another service answered with something this service cannot use.
    #[error("{service} service failed: {reason}")]
    PeerFailed {
        service: &'static str,
        reason: String,
    },
    #[error("part {0} not found")]
    PartNotFound(Uuid),
    #[error("part {id} ({sku}) is inactive: it cannot be quoted on an estimate")]
    PartInactive { id: Uuid, sku: String },
    #[error("job {job_id} not found on work order {work_order_id}")]
    JobNotFound { work_order_id: Uuid, job_id: Uuid },
    /// A job named without its work order (a recommendation offered again).
    #[error("job {0} not found")]
    EarlierJobNotFound(Uuid),
    #[error(transparent)]
    Job(#[from] crate::jobs::JobError),
    #[error(transparent)]
    Estimate(#[from] crate::jobs::EstimateError),
    #[error("work order {id} has {max} jobs, the most one work order may have")]
    TooManyJobs { id: Uuid, max: usize },
    /// An approval link that is not (or no longer) one: unknown, expired, or of an estimate
    /// that changed since. Unknown tokens all get the same answer.
    #[error("{0}")]
    Link(LinkError),
    #[error(transparent)]
    Inspection(#[from] crate::inspection::InspectionError),
    #[error(transparent)]
    CannedJob(#[from] crate::canned::CannedJobError),
    /// An uploaded photo that is not one the inspection keeps.
    #[error(transparent)]
    Photo(#[from] crate::inspection::photo::PhotoError),
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
            | Error::VehicleNotFound(_)
            | Error::PartNotFound(_)
            | Error::JobNotFound { .. }
            | Error::EarlierJobNotFound(_)
            | Error::Link(LinkError::Unknown) => Status::not_found(err.to_string()),
            Error::CustomerArchived(_)
            | Error::Transition(_)
            | Error::LinesLocked { .. }
            | Error::NothingToRetry(_)
            | Error::TooManyLines { .. }
            | Error::TooManyJobs { .. }
            | Error::PartInactive { .. }
            | Error::Job(_)
            | Error::Estimate(_)
            | Error::Link(_)
            | Error::Conflict(_) => Status::failed_precondition(err.to_string()),
            Error::Inspection(inspection) => inspection_status(inspection),
            Error::CannedJob(crate::canned::CannedJobError::NotFound(_)) => {
                Status::not_found(err.to_string())
            }
            Error::CannedJob(crate::canned::CannedJobError::NameTaken(_)) => {
                Status::already_exists(err.to_string())
            }
            Error::Photo(photo) => status::invalid_field("content", photo.to_string()),
            Error::VersionConflict { .. } => Status::aborted(err.to_string()),
            Error::PeerUnavailable { .. } => Status::unavailable(err.to_string()),
            Error::PeerFailed { service, reason } => {
                tracing::error!(service, error = %reason, "another service failed");
                Status::internal(err.to_string())
            }
            Error::Idempotency(idempotency) => status::idempotency_error(idempotency),
            Error::Database(db) => status::database_error(db),
        }
    }
}

fn inspection_status(err: &InspectionError) -> Status {
    match err {
        InspectionError::NotStarted(_)
        | InspectionError::ItemNotFound { .. }
        | InspectionError::PhotoNotFound { .. }
        | InspectionError::TemplateNotFound(_)
        | InspectionError::NoneForCustomer => Status::not_found(err.to_string()),
        InspectionError::AlreadyStarted(_) | InspectionError::TemplateNameTaken(_) => {
            Status::already_exists(err.to_string())
        }
        InspectionError::Completed(_)
        | InspectionError::OrderClosed { .. }
        | InspectionError::Unrated { .. }
        | InspectionError::TooManyPhotosOnItem { .. }
        | InspectionError::TooManyPhotos { .. }
        | InspectionError::NoDefaultTemplate
        | InspectionError::DefaultRequired => Status::failed_precondition(err.to_string()),
    }
}

impl From<FieldViolation> for Error {
    fn from(violation: FieldViolation) -> Self {
        Error::Invalid(violation.into())
    }
}

/// What is wrong with an approval link, as its holder is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this approval link is not valid")]
    Unknown,
    #[error("this approval link expired on {0}: ask the garage to send the estimate again")]
    Expired(chrono::DateTime<chrono::Utc>),
    #[error("the estimate changed after this link was sent: ask the garage for the new one")]
    Outdated,
    #[error("job {0} is not part of this estimate")]
    JobNotInEstimate(Uuid),
}
