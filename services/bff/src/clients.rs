//! The gRPC clients of the domain services, over lazily connected channels.
//!
//! Lazy channels let the BFF start (and answer `/healthz`) while a service is still coming up
//! or down: a call to a service that is not there fails with `Unavailable`, which becomes 503
//! or, on the dashboard, a note of what is missing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use carerp_kit::RequestContext;
use carerp_kit::auth::Principal;
use carerp_kit::permissions;
use carerp_proto::billing::v1::billing_service_client::BillingServiceClient;
use carerp_proto::customer::v1::customer_service_client::CustomerServiceClient;
use carerp_proto::identity::v1::identity_service_client::IdentityServiceClient;
use carerp_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use carerp_proto::workorder::v1::canned_job_service_client::CannedJobServiceClient;
use carerp_proto::workorder::v1::history_service_client::HistoryServiceClient;
use carerp_proto::workorder::v1::inspection_service_client::InspectionServiceClient;
use carerp_proto::workorder::v1::work_order_service_client::WorkOrderServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::config::BffConfig;

/// How long establishing a connection may take, so a service that is down is noticed fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Clients {
    pub customer: CustomerServiceClient<DeadlineChannel>,
    pub workorder: WorkOrderServiceClient<DeadlineChannel>,
    /// Served by the work order service, over the same channel.
    pub inspection: InspectionServiceClient<DeadlineChannel>,
    pub canned: CannedJobServiceClient<DeadlineChannel>,
    pub history: HistoryServiceClient<DeadlineChannel>,
    pub inventory: InventoryServiceClient<DeadlineChannel>,
    pub billing: BillingServiceClient<DeadlineChannel>,
    pub identity: IdentityServiceClient<DeadlineChannel>,
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

/// A channel whose calls end with `DEADLINE_EXCEEDED` after the deadline, including the time
/// spent waiting for a connection: tonic's own timeout starts only once connected, so a
/// service that accepts connections and never answers would otherwise hold a request for the
/// whole connect timeout and come back as `UNAVAILABLE`.
#[derive(Clone)]
pub struct DeadlineChannel {
    inner: Channel,
    deadline: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Request<tonic::body::Body>> for DeadlineChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // Authorised twice: here, before the call leaves the BFF, and again by the service.
        if let Some(principal) = request.extensions().get::<Principal>() {
            let method = request.uri().path();
            if !permissions::allows(principal.role, method) {
                let denied = permissions::denied(principal.role, method);
                return Box::pin(async move { Err(Box::new(denied) as BoxError) });
            }
        }
        let deadline = self.deadline;
        let call = tower::Service::call(&mut self.inner, request);
        Box::pin(async move {
            // tonic finds a Status in the error and hands it to the caller as is.
            let exceeded = || {
                Box::new(tonic::Status::deadline_exceeded(format!(
                    "no answer within {} ms",
                    deadline.as_millis()
                ))) as BoxError
            };
            match tokio::time::timeout(deadline, call).await {
                Ok(Ok(response)) => Ok(response),
                // The channel enforces the `grpc-timeout` we send too, and reports it as
                // CANCELLED; it is the same deadline.
                Ok(Err(err)) if is_timeout(&err) => Err(exceeded()),
                Ok(Err(err)) => Err(err.into()),
                Err(_) => Err(exceeded()),
            }
        })
    }
}

fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = source {
        if err.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = err.source();
    }
    false
}

fn channel(
    name: &'static str,
    url: &str,
    deadline: Duration,
) -> Result<DeadlineChannel, InvalidUrl> {
    let endpoint = Endpoint::from_shared(url.to_string()).map_err(|source| InvalidUrl {
        name,
        url: url.to_string(),
        source,
    })?;
    Ok(DeadlineChannel {
        inner: endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy(),
        deadline,
    })
}

impl Clients {
    pub fn new(config: &BffConfig) -> Result<Self, InvalidUrl> {
        let deadline = config.call_timeout;
        let workorder = channel("WORKORDER_GRPC_URL", &config.workorder_url, deadline)?;
        Ok(Self {
            customer: CustomerServiceClient::new(channel(
                "CUSTOMER_GRPC_URL",
                &config.customer_url,
                deadline,
            )?),
            workorder: WorkOrderServiceClient::new(workorder.clone()),
            inspection: InspectionServiceClient::new(workorder.clone()),
            canned: CannedJobServiceClient::new(workorder.clone()),
            history: HistoryServiceClient::new(workorder),
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
            identity: IdentityServiceClient::new(channel(
                "IDENTITY_GRPC_URL",
                &config.identity_url,
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
