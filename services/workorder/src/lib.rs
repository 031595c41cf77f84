//! Work orders: the repair order from intake to invoice.
//!
//! A work order records the customer's complaint, the parts and labour the job needs, and
//! moves through a strict life cycle (see [`domain::check_transition`]) until billing has
//! invoiced it.

pub mod api;
pub mod approval;
pub mod canned;
pub mod domain;
pub mod error;
pub mod events;
pub mod history;
pub mod inspection;
pub mod jobs;
pub mod peers;
pub mod store;

use std::sync::LazyLock;

use carerp_kit::grpc::{self, GrpcService, RunningService};
use carerp_kit::messaging::Messaging;
use carerp_kit::{Metrics, ServiceConfig};
use carerp_proto::workorder::v1::canned_job_service_server::CannedJobServiceServer;
use carerp_proto::workorder::v1::history_service_server::HistoryServiceServer;
use carerp_proto::workorder::v1::inspection_service_server::InspectionServiceServer;
use carerp_proto::workorder::v1::work_order_service_server::WorkOrderServiceServer;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tonic::service::Routes;

pub use peers::{CustomerDirectory, PartCatalogue, Peers};

/// The kit's tables and ours, for start-up and `#[sqlx::test(migrator = ...)]`.
pub static MIGRATOR: LazyLock<Migrator> =
    LazyLock::new(|| carerp_kit::db::migrator_with(&sqlx::migrate!("./migrations")));

pub const SERVICE_NAME: &str = "carerp.workorder.v1.WorkOrderService";

/// Connects to the database, migrates it, and serves until stopped. `peers` is how the
/// service reaches the customer service and inventory (from `CUSTOMER_GRPC_URL` and
/// `INVENTORY_GRPC_URL` in production).
pub async fn start(config: ServiceConfig, peers: Peers) -> anyhow::Result<RunningService> {
    let url = config
        .database_url
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL is not set"))?;
    let pool = carerp_kit::db::connect_and_migrate(url, &MIGRATOR, &config.pool).await?;
    start_with_pool(config, pool, peers).await
}

/// Serves on an existing, migrated pool (what tests use), relaying its outbox and
/// consuming the events of inventory and billing.
pub async fn start_with_pool(
    config: ServiceConfig,
    pool: PgPool,
    peers: Peers,
) -> anyhow::Result<RunningService> {
    let mut settings = config.settings.clone();
    settings.timezone = store::usable_timezone(&pool, &settings.timezone).await;
    let canned = CannedJobServiceServer::new(canned::api::CannedJobApi::new(
        pool.clone(),
        settings.clone(),
        peers.parts.clone(),
    ));
    let history = HistoryServiceServer::new(history::api::HistoryApi::new(
        pool.clone(),
        settings.clone(),
        peers.parts.clone(),
    ));
    let api = api::WorkOrderApi::new(pool.clone(), settings, peers);
    let inspections =
        InspectionServiceServer::new(inspection::api::InspectionApi::new(pool.clone()))
            .max_decoding_message_size(inspection::api::MAX_REQUEST_BYTES);
    let routes = Routes::new(WorkOrderServiceServer::new(api))
        .add_service(inspections)
        .add_service(canned)
        .add_service(history);
    let metrics = Metrics::new();
    let mut service = grpc::start(
        config.grpc_addr,
        config.admin_addr,
        GrpcService {
            name: SERVICE_NAME,
            routes,
            metrics: metrics.clone(),
            pool: Some(pool.clone()),
            verifying_keys: config.verifying_keys.clone(),
        },
    )
    .await?;
    let messaging = Messaging::connect(&config, pool, metrics).await?;
    messaging.relay(&mut service);
    messaging.consume(&mut service, events::WorkOrderEvents);
    Ok(service)
}
