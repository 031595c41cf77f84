//! The gRPC clients of the domain services, over lazily connected channels.
//!
//! Lazy channels let the BFF start (and answer `/healthz`) while a service is still coming up
//! or down: a call to a service that is not there fails with `Unavailable`, which becomes 503
//! or, on the dashboard, a note of what is missing.

use std::time::Duration;

use carerp_kit::RequestContext;
use carerp_proto::billing::v1::billing_service_client::BillingServiceClient;
use carerp_proto::customer::v1::customer_service_client::CustomerServiceClient;
use carerp_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use carerp_proto::workorder::v1::work_order_service_client::WorkOrderServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::config::BffConfig;

/// How long establishing a connection may take, so a service that is down is noticed fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Clients {
    pub customer: CustomerServiceClient<Channel>,
    pub workorder: WorkOrderServiceClient<Channel>,
    pub inventory: InventoryServiceClient<Channel>,
    pub billing: BillingServiceClient<Channel>,
    /// Deadline of every call.
    pub deadline: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("{name}={url:?} is invalid: {source}")]
pub struct InvalidUrl {
    pub name: &'static str,
    pub url: String,
    source: tonic::transport::Error,
}

fn channel(name: &'static str, url: &str, deadline: Duration) -> Result<Channel, InvalidUrl> {
    let endpoint = Endpoint::from_shared(url.to_string()).map_err(|source| InvalidUrl {
        name,
        url: url.to_string(),
        source,
    })?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(deadline)
        .tcp_nodelay(true)
        .connect_lazy())
}

impl Clients {
    pub fn new(config: &BffConfig) -> Result<Self, InvalidUrl> {
        let deadline = config.call_timeout;
        Ok(Self {
            customer: CustomerServiceClient::new(channel(
                "CUSTOMER_GRPC_URL",
                &config.customer_url,
                deadline,
            )?),
            workorder: WorkOrderServiceClient::new(channel(
                "WORKORDER_GRPC_URL",
                &config.workorder_url,
                deadline,
            )?),
            inventory: InventoryServiceClient::new(channel(
                "INVENTORY_GRPC_URL",
                &config.inventory_url,
                deadline,
            )?),
            billing: BillingServiceClient::new(channel(
                "BILLING_GRPC_URL",
                &config.billing_url,
                deadline,
            )?),
            deadline,
        })
    }

    /// A call carrying the caller's correlation id and trace context, with the deadline
    /// (sent as `grpc-timeout`, so the service stops working on it too).
    pub fn request<T>(&self, ctx: &RequestContext, message: T) -> tonic::Request<T> {
        let mut request = carerp_kit::grpc::propagate(ctx, tonic::Request::new(message));
        request.set_timeout(self.deadline);
        request
    }
}
