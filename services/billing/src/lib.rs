//! Invoices, tax and payments: exactly one invoice per completed work order, numbered
//! gap-free per year, and the payments that settle it.
//!
//! Invoices are created by [`events::on_workorder_completed`] (the `workorder.completed`
//! event), never by a call; the gRPC API reads them, records payments, voids, and sums up.

pub mod api;
pub mod domain;
pub mod error;
pub mod events;
pub mod store;

use std::sync::LazyLock;

use carerp_kit::db::{self, StartError};
use carerp_kit::grpc::{self, ServeError};
use carerp_kit::messaging::Messaging;
use carerp_kit::{GrpcService, Metrics, RunningService, ServiceConfig};
use carerp_proto::billing::v1::billing_service_server::BillingServiceServer;
use sqlx::PgPool;
use sqlx::migrate::Migrator;

pub use error::Error;

/// The fully-qualified gRPC service name, as health checks report it.
pub const SERVICE_NAME: &str = "carerp.billing.v1.BillingService";

static SERVICE_MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The kit's tables (outbox, inbox) followed by billing's own.
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| db::migrator_with(&SERVICE_MIGRATOR));

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartFailure {
    #[error("DATABASE_URL is not set")]
    NoDatabase,
    #[error(transparent)]
    Database(#[from] StartError),
    #[error("cannot store the tenant settings: {0}")]
    Settings(Error),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("cannot connect to NATS: {0}")]
    Messaging(String),
}

/// Connects to the database, migrates it, and serves.
pub async fn start(config: ServiceConfig) -> Result<RunningService, StartFailure> {
    let url = config
        .database_url
        .clone()
        .ok_or(StartFailure::NoDatabase)?;
    let pool = db::connect_and_migrate(&url, &MIGRATOR, &config.pool).await?;
    start_with_pool(config, pool).await
}

/// Serves on an already migrated pool (tests hand in their own database). Stores the tenant
/// settings first, so the event handler applies the same tax rate, terms and time zone.
pub async fn start_with_pool(
    config: ServiceConfig,
    pool: PgPool,
) -> Result<RunningService, StartFailure> {
    store::save_settings(&pool, &config.settings)
        .await
        .map_err(StartFailure::Settings)?;
    let api = api::BillingApi::new(pool.clone(), config.settings.clone());
    let routes = tonic::service::Routes::new(BillingServiceServer::new(api));
    let metrics = Metrics::new();
    let service = GrpcService {
        name: SERVICE_NAME,
        routes,
        metrics: metrics.clone(),
        pool: Some(pool.clone()),
        verifying_keys: config.verifying_keys.clone(),
    };
    let mut running = grpc::start(config.grpc_addr, config.admin_addr, service).await?;
    let messaging = Messaging::connect(&config, pool, metrics)
        .await
        .map_err(|err| StartFailure::Messaging(err.to_string()))?;
    messaging.relay(&mut running);
    messaging.consume(&mut running, events::BillingEvents);
    Ok(running)
}
