//! Parts, a stock ledger, and reservations that never oversell.
//!
//! `domain` holds the rules, `store` the SQL, `api` the gRPC handlers and `events` the
//! handlers of the work order events inventory consumes. [`start`] is what `main`, the
//! tests and the e2e harness call.

pub mod api;
pub mod domain;
pub mod events;
pub mod store;

use std::sync::LazyLock;

use carerp_kit::db::{StartError, connect_and_migrate, migrator_with};
use carerp_kit::grpc::{GrpcService, ServeError};
use carerp_kit::messaging::Messaging;
use carerp_kit::{Metrics, RunningService, ServiceConfig};
use carerp_proto::inventory::v1::inventory_service_server::InventoryServiceServer;
use sqlx::PgPool;
use sqlx::migrate::Migrator;

pub use store::Error;

static SERVICE_MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The kit's tables (outbox, inbox) and the service's, in order.
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| migrator_with(&SERVICE_MIGRATOR));

/// The gRPC service name, as reported by `grpc.health.v1`.
pub const SERVICE_NAME: &str = "carerp.inventory.v1.InventoryService";

#[derive(Debug, thiserror::Error)]
pub enum StartFailure {
    #[error("DATABASE_URL is required")]
    NoDatabase,
    #[error(transparent)]
    Database(#[from] StartError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("cannot connect to NATS: {0}")]
    Messaging(String),
}

/// Connects to the service's database, migrates it, and serves.
pub async fn start(config: ServiceConfig) -> Result<RunningService, StartFailure> {
    let url = config
        .database_url
        .as_deref()
        .ok_or(StartFailure::NoDatabase)?;
    let pool = connect_and_migrate(url, &MIGRATOR, &config.pool).await?;
    start_with_pool(config, pool).await
}

/// Serves with a pool whose schema is already migrated (tests hand in theirs).
pub async fn start_with_pool(
    config: ServiceConfig,
    pool: PgPool,
) -> Result<RunningService, StartFailure> {
    let api = api::InventoryApi::new(pool.clone(), config.settings.clone());
    let routes = tonic::service::Routes::new(InventoryServiceServer::new(api));
    let metrics = Metrics::new();
    let mut running = carerp_kit::grpc::start(
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
    let messaging = Messaging::connect(&config, pool, metrics)
        .await
        .map_err(|err| StartFailure::Messaging(err.to_string()))?;
    messaging.relay(&mut running);
    messaging.consume(&mut running, events::InventoryEvents);
    Ok(running)
}
