//! The customer service, as the work order service asks it: does this vehicle exist and
//! belong to this customer? Built from `CUSTOMER_GRPC_URL` and injected, so tests can point
//! it at a real customer service in-process, or at a closed port.

use std::time::Duration;

use carerp_kit::grpc::propagate;
use carerp_kit::status::FieldViolation;
use carerp_kit::{ConfigError, RequestContext, ServiceConfig};
use carerp_proto::customer::v1::customer_service_client::CustomerServiceClient;
use carerp_proto::customer::v1::{GetCustomerRequest, GetVehicleRequest};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use crate::error::Error;

/// How long creating a work order waits for the customer service before giving up.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct CustomerDirectory {
    client: CustomerServiceClient<Channel>,
    deadline: Duration,
}

/// A URL the channel cannot be built from.
#[derive(Debug, thiserror::Error)]
#[error("invalid customer service URL {url:?}: {reason}")]
pub struct InvalidUrl {
    pub url: String,
    pub reason: String,
}

/// Why the customer service's address cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Url(#[from] InvalidUrl),
}

impl CustomerDirectory {
    /// The customer service at `CUSTOMER_GRPC_URL`, with [`DEFAULT_DEADLINE`].
    pub fn from_env() -> Result<Self, DirectoryError> {
        let url = ServiceConfig::service_url("CUSTOMER_GRPC_URL")?;
        Ok(Self::connect_lazy(&url, DEFAULT_DEADLINE)?)
    }

    /// Connects on first use, so the work order service starts (and serves everything but
    /// creation) while the customer service is still coming up.
    pub fn connect_lazy(url: &str, deadline: Duration) -> Result<Self, InvalidUrl> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|err| InvalidUrl {
                url: url.to_string(),
                reason: err.to_string(),
            })?
            .connect_timeout(deadline)
            .timeout(deadline);
        Ok(Self {
            client: CustomerServiceClient::new(endpoint.connect_lazy()),
            deadline,
        })
    }

    /// Checks that the customer exists and is not archived, and that the vehicle exists and
    /// is theirs. Any failure to get an answer is [`Error::CustomerServiceUnavailable`].
    pub async fn check_vehicle_of(
        &self,
        context: &RequestContext,
        customer_id: Uuid,
        vehicle_id: Uuid,
    ) -> Result<(), Error> {
        let mut customers = self.client.clone();
        let mut vehicles = self.client.clone();
        let customer_request = self.request(
            context,
            GetCustomerRequest {
                id: customer_id.to_string(),
            },
        );
        let vehicle_request = self.request(
            context,
            GetVehicleRequest {
                id: vehicle_id.to_string(),
            },
        );
        let both = async {
            tokio::join!(
                customers.get_customer(customer_request),
                vehicles.get_vehicle(vehicle_request)
            )
        };
        let (customer, vehicle) =
            tokio::time::timeout(self.deadline, both)
                .await
                .map_err(|_| {
                    Error::CustomerServiceUnavailable(format!(
                        "no answer within {} ms",
                        self.deadline.as_millis()
                    ))
                })?;
        let customer = customer
            .map_err(|status| answer_error(status, || Error::CustomerNotFound(customer_id)))?;
        let vehicle = vehicle
            .map_err(|status| answer_error(status, || Error::VehicleNotFound(vehicle_id)))?;
        let customer = customer.into_inner();
        let vehicle = vehicle.into_inner();
        let owner = Uuid::parse_str(&vehicle.customer_id).map_err(|_| {
            Error::CustomerService(format!(
                "vehicle {vehicle_id} has an owner id that is not a UUID: {:?}",
                vehicle.customer_id
            ))
        })?;
        if owner != customer_id {
            return Err(FieldViolation::new(
                "vehicle_id",
                format!(
                    "vehicle {vehicle_id} belongs to another customer ({}), not to customer {customer_id}",
                    vehicle.customer_id
                ),
            )
            .into());
        }
        if customer.archived {
            return Err(Error::CustomerArchived(customer_id));
        }
        Ok(())
    }

    fn request<T>(&self, context: &RequestContext, message: T) -> tonic::Request<T> {
        let mut request = propagate(context, tonic::Request::new(message));
        request.set_timeout(self.deadline);
        request
    }
}

/// NotFound is an answer about the caller's ids; anything else means the customer service
/// could not tell, and the work order must not be written.
fn answer_error(status: tonic::Status, not_found: impl FnOnce() -> Error) -> Error {
    match status.code() {
        Code::NotFound => not_found(),
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown
        | Code::ResourceExhausted => {
            Error::CustomerServiceUnavailable(format!("{:?}: {}", status.code(), status.message()))
        }
        code => Error::CustomerService(format!("{code:?}: {}", status.message())),
    }
}
