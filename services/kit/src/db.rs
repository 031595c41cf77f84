//! The service's PostgreSQL pool and its schema.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// The tables every service has: the outbox and the inbox.
pub static KIT_MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The kit's migrations followed by the service's, as one migrator.
///
/// Kit migrations use small version numbers and services use timestamps, so the two never
/// collide and the kit's tables always exist before a service's migrations run.
pub fn migrator_with(service: &Migrator) -> Migrator {
    let migrations = KIT_MIGRATOR.iter().chain(service.iter()).cloned().collect();
    Migrator::with_migrations(migrations)
}

/// How many connections the service's pool may open (`DATABASE_MAX_CONNECTIONS`), and how
/// long one may stay unused before it is closed (`DATABASE_IDLE_TIMEOUT_SECONDS`).
///
/// Nothing is opened ahead of need, and an unused connection closes after the idle timeout:
/// an idle service holds none, except for a moment when its relay polls (see
/// [`crate::relay`]), so one PostgreSQL server can hold many idle tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub idle_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 8,
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Connects and brings the schema up to date.
pub async fn connect_and_migrate(
    url: &str,
    migrator: &Migrator,
    settings: PoolSettings,
) -> Result<PgPool, StartError> {
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(0)
        .idle_timeout(settings.idle_timeout)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|err| StartError::Connect(err.to_string()))?;
    migrator
        .run(&pool)
        .await
        .map_err(|err| StartError::Migrate(err.to_string()))?;
    Ok(pool)
}

/// Start-up failures of the database, with the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("cannot migrate the database: {0}")]
    Migrate(String),
}
