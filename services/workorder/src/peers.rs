//! The services the work order service asks synchronously: the customer service (does this
//! vehicle exist and belong to this customer?) and inventory (what does this part cost, for an
//! estimate?). Built from `CUSTOMER_GRPC_URL` and `INVENTORY_GRPC_URL` and injected, so tests
//! can point them at real services in-process, or at a closed port.

use std::time::Duration;

use carerp_kit::grpc::propagate;
use carerp_kit::status::FieldViolation;
use carerp_kit::{ConfigError, RequestContext, ServiceConfig};
use carerp_proto::customer::v1::customer_service_client::CustomerServiceClient;
use carerp_proto::customer::v1::{GetCustomerRequest, GetVehicleRequest};
use carerp_proto::inventory::v1::GetPartRequest;
use carerp_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use crate::error::Error;

/// How long a request waits for another service before giving up.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(2);

/// Who the work order service calls.
#[derive(Clone, Debug)]
pub struct Peers {
    pub customers: CustomerDirectory,
    pub parts: PartCatalogue,
}

impl Peers {
    /// From `CUSTOMER_GRPC_URL` and `INVENTORY_GRPC_URL`, with [`DEFAULT_DEADLINE`].
    pub fn from_env() -> Result<Self, DirectoryError> {
        Ok(Self {
            customers: CustomerDirectory::connect_lazy(
                &ServiceConfig::service_url("CUSTOMER_GRPC_URL")?,
                DEFAULT_DEADLINE,
            )?,
            parts: PartCatalogue::connect_lazy(
                &ServiceConfig::service_url("INVENTORY_GRPC_URL")?,
                DEFAULT_DEADLINE,
            )?,
        })
    }

    /// Both at the given URLs.
    pub fn connect_lazy(
        customer_url: &str,
        inventory_url: &str,
        deadline: Duration,
    ) -> Result<Self, InvalidUrl> {
        Ok(Self {
            customers: CustomerDirectory::connect_lazy(customer_url, deadline)?,
            parts: PartCatalogue::connect_lazy(inventory_url, deadline)?,
        })
    }
}

/// Connects on first use, so the work order service starts (and serves what needs no other
/// service) while the others are still coming up.
fn lazy_channel(url: &str, deadline: Duration) -> Result<Channel, InvalidUrl> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|err| InvalidUrl {
            url: url.to_string(),
            reason: err.to_string(),
        })?
        .connect_timeout(deadline)
        .timeout(deadline);
    Ok(endpoint.connect_lazy())
}

fn request<T>(context: &RequestContext, deadline: Duration, message: T) -> tonic::Request<T> {
    let mut request = propagate(context, tonic::Request::new(message));
    request.set_timeout(deadline);
    request
}

#[derive(Clone, Debug)]
pub struct CustomerDirectory {
    client: CustomerServiceClient<Channel>,
    deadline: Duration,
}

/// A URL the channel cannot be built from.
#[derive(Debug, thiserror::Error)]
#[error("invalid service URL {url:?}: {reason}")]
pub struct InvalidUrl {
    pub url: String,
    pub reason: String,
}

/// Why a service's address cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Url(#[from] InvalidUrl),
}

impl CustomerDirectory {
    pub fn connect_lazy(url: &str, deadline: Duration) -> Result<Self, InvalidUrl> {
        Ok(Self {
            client: CustomerServiceClient::new(lazy_channel(url, deadline)?),
            deadline,
        })
    }

    /// Checks that the customer exists and is not archived, and that the vehicle exists and
    /// is theirs. Any failure to get an answer is [`Error::PeerUnavailable`].
    pub async fn check_vehicle_of(
        &self,
        context: &RequestContext,
        customer_id: Uuid,
        vehicle_id: Uuid,
    ) -> Result<(), Error> {
        let mut customers = self.client.clone();
        let mut vehicles = self.client.clone();
        let customer_request = request(
            context,
            self.deadline,
            GetCustomerRequest {
                id: customer_id.to_string(),
            },
        );
        let vehicle_request = request(
            context,
            self.deadline,
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
        let (customer, vehicle) = tokio::time::timeout(self.deadline, both)
            .await
            .map_err(|_| no_answer(CUSTOMER, self.deadline))?;
        let customer = customer.map_err(|status| {
            answer_error(CUSTOMER, status, || Error::CustomerNotFound(customer_id))
        })?;
        let vehicle = vehicle.map_err(|status| {
            answer_error(CUSTOMER, status, || Error::VehicleNotFound(vehicle_id))
        })?;
        let customer = customer.into_inner();
        let vehicle = vehicle.into_inner();
        let owner = Uuid::parse_str(&vehicle.customer_id).map_err(|_| Error::PeerFailed {
            service: CUSTOMER,
            reason: format!(
                "vehicle {vehicle_id} has an owner id that is not a UUID: {:?}",
                vehicle.customer_id
            ),
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
}

const CUSTOMER: &str = "customer";
const INVENTORY: &str = "inventory";

/// A part's name and current price, as an estimate quotes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub sku: String,
    pub name: String,
    pub unit_price_minor: i64,
    pub currency: String,
}

/// Inventory, asked for the current price of a part to quote on an estimate.
#[derive(Clone, Debug)]
pub struct PartCatalogue {
    client: InventoryServiceClient<Channel>,
    deadline: Duration,
}

impl PartCatalogue {
    pub fn connect_lazy(url: &str, deadline: Duration) -> Result<Self, InvalidUrl> {
        Ok(Self {
            client: InventoryServiceClient::new(lazy_channel(url, deadline)?),
            deadline,
        })
    }

    /// The part's SKU, name and price now; an inactive part is not offered to a customer.
    pub async fn quote(&self, context: &RequestContext, part_id: Uuid) -> Result<Quote, Error> {
        let mut client = self.client.clone();
        let ask = client.get_part(request(
            context,
            self.deadline,
            GetPartRequest {
                id: part_id.to_string(),
            },
        ));
        let part = tokio::time::timeout(self.deadline, ask)
            .await
            .map_err(|_| no_answer(INVENTORY, self.deadline))?
            .map_err(|status| answer_error(INVENTORY, status, || Error::PartNotFound(part_id)))?
            .into_inner();
        if !part.active {
            return Err(Error::PartInactive {
                id: part_id,
                sku: part.sku,
            });
        }
        let price = part.unit_price.unwrap_or_default();
        Ok(Quote {
            sku: part.sku,
            name: part.name,
            unit_price_minor: price.amount_minor,
            currency: price.currency,
        })
    }

    /// A quote per part, in order; the first part that cannot be quoted refuses them all.
    pub async fn quote_all(
        &self,
        context: &RequestContext,
        part_ids: &[Uuid],
    ) -> Result<Vec<Quote>, Error> {
        let mut quotes = Vec::with_capacity(part_ids.len());
        for part_id in part_ids {
            quotes.push(self.quote(context, *part_id).await?);
        }
        Ok(quotes)
    }
}

fn no_answer(service: &'static str, deadline: Duration) -> Error {
    Error::PeerUnavailable {
        service,
        reason: format!("no answer within {} ms", deadline.as_millis()),
    }
}

/// NotFound is an answer about the caller's ids; anything else means the other service could
/// not tell, and nothing must be written.
fn answer_error(
    service: &'static str,
    status: tonic::Status,
    not_found: impl FnOnce() -> Error,
) -> Error {
    let reason = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::NotFound => not_found(),
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown
        | Code::ResourceExhausted => Error::PeerUnavailable { service, reason },
        _ => Error::PeerFailed { service, reason },
    }
}
