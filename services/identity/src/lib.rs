//! Identity: the tenant's people and their roles, sessions (access and refresh tokens),
//! integrations' API tokens, and the audit trail of every service.
//!
//! # Layout
//!
//! - [`config`]: [`IdentityConfig`], the kit's configuration plus the signing key and the
//!   first owner.
//! - [`domain`]: pure rules (passwords, throttling, API token format); [`secrets`]: hashing
//!   and generating passwords and tokens.
//! - [`store`]: one function per use case, with its audit entry and outbox events.
//! - [`api`]: the gRPC handlers; [`error`]: their one error type.
//! - [`events`]: publishes `identity.session-revoked`, consumes `audit.recorded`.

pub mod api;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod secrets;
pub mod store;

use std::sync::LazyLock;

use carerp_kit::db::{self, StartError};
use carerp_kit::grpc::{self, ServeError};
use carerp_kit::messaging::Messaging;
use carerp_kit::{GrpcService, Metrics, RunningService};
use carerp_proto::identity::v1::identity_service_server::IdentityServiceServer;
use sqlx::PgPool;
use sqlx::migrate::Migrator;

pub use config::{IdentityConfig, OwnerBootstrap};
pub use error::Error;

/// The fully-qualified gRPC service name, as health checks report it.
pub const SERVICE_NAME: &str = "carerp.identity.v1.IdentityService";

static SERVICE_MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The kit's tables (outbox, inbox) followed by identity's own.
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| db::migrator_with(&SERVICE_MIGRATOR));

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartFailure {
    #[error("DATABASE_URL is not set")]
    NoDatabase,
    #[error(transparent)]
    Database(#[from] StartError),
    #[error("cannot create the first owner: {0}")]
    Bootstrap(Error),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("cannot connect to NATS: {0}")]
    Messaging(String),
}

/// Connects to the database, migrates it, and serves.
pub async fn start(config: IdentityConfig) -> Result<RunningService, StartFailure> {
    let url = config
        .service
        .database_url
        .clone()
        .ok_or(StartFailure::NoDatabase)?;
    let pool = db::connect_and_migrate(&url, &MIGRATOR, &config.service.pool).await?;
    start_with_pool(config, pool).await
}

/// Serves on an already migrated pool (tests hand in their own database): creates the first
/// owner if the tenant has none, relays the outbox and consumes `audit.recorded`.
pub async fn start_with_pool(
    config: IdentityConfig,
    pool: PgPool,
) -> Result<RunningService, StartFailure> {
    bootstrap_owner(&pool, config.owner.as_ref())
        .await
        .map_err(StartFailure::Bootstrap)?;
    let api = api::IdentityApi::new(
        pool.clone(),
        config.signing_key.clone(),
        config.service.tenant.clone(),
    )
    .await
    .map_err(StartFailure::Bootstrap)?;
    let routes = tonic::service::Routes::new(IdentityServiceServer::new(api));
    let metrics = Metrics::new();
    let service = GrpcService {
        name: SERVICE_NAME,
        routes,
        metrics: metrics.clone(),
        pool: Some(pool.clone()),
        verifying_keys: config.service.verifying_keys.clone(),
    };
    let mut running =
        grpc::start(config.service.grpc_addr, config.service.admin_addr, service).await?;
    let messaging = Messaging::connect(&config.service, pool, metrics)
        .await
        .map_err(|err| StartFailure::Messaging(err.to_string()))?;
    messaging.relay(&mut running);
    messaging.consume(&mut running, events::AuditEvents);
    Ok(running)
}

/// Creates the configured owner when the tenant has no owner yet; safe to run on every
/// start of every replica. Returns the owner created, if any.
pub async fn bootstrap_owner(
    pool: &PgPool,
    owner: Option<&OwnerBootstrap>,
) -> Result<Option<store::UserRow>, Error> {
    if store::has_owner(pool).await? {
        return Ok(None);
    }
    let Some(owner) = owner else {
        tracing::warn!(
            action = "bootstrap",
            "the tenant has no owner and {} is not set: nobody can sign in",
            config::OWNER_PASSWORD
        );
        return Ok(None);
    };
    let password = owner.password.clone();
    let hash = api::blocking(move || secrets::hash_password(&password)).await??;
    let created = store::bootstrap_owner(pool, owner, &hash).await?;
    if let Some(user) = &created {
        tracing::info!(action = "bootstrap", user_id = %user.id, email = %user.email, "created the tenant's first owner");
    }
    Ok(created)
}
