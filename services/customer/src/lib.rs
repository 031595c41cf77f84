//! Customers and their vehicles: the first service a garage fills, and the one every work
//! order points into.

pub mod api;
pub mod domain;
pub mod error;
pub mod events;
pub mod store;

use std::sync::LazyLock;

use carerp_kit::grpc::{self, GrpcService, RunningService};
use carerp_kit::messaging::Messaging;
use carerp_kit::{Metrics, ServiceConfig};
use carerp_proto::customer::v1::customer_service_server::CustomerServiceServer;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tonic::service::Routes;

/// The kit's tables and ours, for start-up and `#[sqlx::test(migrator = ...)]`.
pub static MIGRATOR: LazyLock<Migrator> =
    LazyLock::new(|| carerp_kit::db::migrator_with(&sqlx::migrate!("./migrations")));

pub const SERVICE_NAME: &str = "carerp.customer.v1.CustomerService";

/// Connects to the database, migrates it, and serves until stopped.
pub async fn start(config: ServiceConfig) -> anyhow::Result<RunningService> {
    let url = config
        .database_url
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL is not set"))?;
    let pool = carerp_kit::db::connect_and_migrate(url, &MIGRATOR, &config.pool).await?;
    start_with_pool(config, pool).await
}

/// Serves on an existing, migrated pool (what tests use), relaying its outbox to NATS.
pub async fn start_with_pool(
    config: ServiceConfig,
    pool: PgPool,
) -> anyhow::Result<RunningService> {
    let routes = Routes::new(CustomerServiceServer::new(api::CustomerApi::new(
        pool.clone(),
    )));
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
    Messaging::connect(&config, pool, metrics)
        .await?
        .relay(&mut service);
    Ok(service)
}
