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

/// Connects and brings the schema up to date.
pub async fn connect_and_migrate(url: &str, migrator: &Migrator) -> Result<PgPool, StartError> {
    let pool = PgPoolOptions::new()
        .max_connections(16)
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
