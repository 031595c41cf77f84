//! The one error type of the customer API; it maps itself to gRPC statuses.

use carerp_kit::Violations;
use carerp_kit::status;
use tonic::Status;
use uuid::Uuid;

use crate::domain::MileageDecrease;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Violations),
    #[error("customer {0} not found")]
    CustomerNotFound(Uuid),
    #[error("vehicle {0} not found")]
    VehicleNotFound(Uuid),
    #[error("a vehicle with VIN {0} already exists")]
    DuplicateVin(String),
    #[error("customer {0} is archived: vehicles cannot be added")]
    CustomerArchived(Uuid),
    #[error(transparent)]
    MileageDecrease(#[from] MileageDecrease),
    #[error(
        "{what} {id} was changed by someone else: expected version {expected}, current version {actual}; reload and retry"
    )]
    VersionConflict {
        what: &'static str,
        id: Uuid,
        expected: i64,
        actual: i64,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match &err {
            Error::Invalid(violations) => status::invalid_argument(violations),
            Error::CustomerNotFound(_) | Error::VehicleNotFound(_) => {
                Status::not_found(err.to_string())
            }
            Error::DuplicateVin(_) => Status::already_exists(err.to_string()),
            Error::CustomerArchived(_) | Error::MileageDecrease(_) => {
                Status::failed_precondition(err.to_string())
            }
            Error::VersionConflict { .. } => Status::aborted(err.to_string()),
            Error::Database(db) => status::database_error(db),
        }
    }
}

impl From<carerp_kit::FieldViolation> for Error {
    fn from(violation: carerp_kit::FieldViolation) -> Self {
        Error::Invalid(violation.into())
    }
}
