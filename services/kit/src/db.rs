//! The service's PostgreSQL pool and its schema.

use std::time::Duration;

use sqlx::Connection as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};

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

/// How many connections the service's pool may open (`DATABASE_MAX_CONNECTIONS`), how long
/// one may stay unused before it is closed (`DATABASE_IDLE_TIMEOUT_SECONDS`), and where the
/// migrations run (`DATABASE_MIGRATION_URL`).
///
/// Nothing is opened ahead of need, and an unused connection closes after the idle timeout:
/// an idle service holds none, except for a moment when its relay polls (see
/// [`crate::relay`]), so one PostgreSQL server can hold many idle tenants.
///
/// # Behind PgBouncer
///
/// `DATABASE_URL` may name a PgBouncer (1.21 or later) in transaction mode with
/// `max_prepared_statements` set: what the services send keeps no session state across
/// transactions. Their statements are sqlx's named prepared statements, which PgBouncer
/// tracks per client and prepares again on whichever server connection runs them; their
/// locks are `pg_advisory_xact_lock` and their `SET`s are `SET LOCAL`, both ending with the
/// transaction; nothing LISTENs (the relay is woken in-process). sqlx's `extra_float_digits`
/// start-up parameter must be let through (`ignore_startup_parameters = extra_float_digits`).
/// The one exception is the migrator, which holds a session-level advisory lock between
/// statements: with `DATABASE_MIGRATION_URL` set (a direct connection to the server), the
/// migrations run over one connection of their own, closed when they are done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub idle_timeout: Duration,
    /// Where the migrations run; `None`: through the pool.
    pub migration_url: Option<String>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 8,
            idle_timeout: Duration::from_secs(10),
            migration_url: None,
        }
    }
}

/// A pooled connection used this recently is handed out as it is; one idle for longer is
/// pinged first, so a connection the server dropped meanwhile (a restart, an idle timeout on
/// the way) is replaced instead of failing its first query. Pinging every acquire, sqlx's
/// default, is one more round trip on each request (a create acquires twice: its own
/// transaction and the relay's pass) under exactly the load where connections are fresh.
const TRUSTED_WHEN_IDLE_UNDER: Duration = Duration::from_secs(1);

/// Connects and brings the schema up to date.
pub async fn connect_and_migrate(
    url: &str,
    migrator: &Migrator,
    settings: &PoolSettings,
) -> Result<PgPool, StartError> {
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(0)
        .idle_timeout(settings.idle_timeout)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= TRUSTED_WHEN_IDLE_UNDER {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect(url)
        .await
        .map_err(|err| StartError::Connect(err.to_string()))?;
    match &settings.migration_url {
        Some(direct) => {
            let mut conn = PgConnection::connect(direct)
                .await
                .map_err(|err| StartError::Connect(format!("DATABASE_MIGRATION_URL: {err}")))?;
            let migrated = migrator.run(&mut conn).await;
            // Closing is best effort: the migrations' outcome is what counts.
            let _ = conn.close().await;
            migrated.map_err(|err| StartError::Migrate(err.to_string()))?;
        }
        None => migrator
            .run(&pool)
            .await
            .map_err(|err| StartError::Migrate(err.to_string()))?,
    }
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

#[cfg(test)]
mod tests {
    use sqlx::ConnectOptions as _;

    use super::*;

    /// A pooled connection the server dropped while it idled (a restart, a proxy's idle
    /// timeout) is replaced by the next acquire, not handed out to fail its request.
    #[sqlx::test(migrations = false)]
    async fn a_connection_dropped_while_idle_is_replaced_on_acquire(admin: PgPool) {
        let url = admin.connect_options().to_url_lossy().to_string();
        let settings = PoolSettings {
            max_connections: 1,
            ..PoolSettings::default()
        };
        let pool = connect_and_migrate(&url, &KIT_MIGRATOR, &settings)
            .await
            .unwrap();
        let backend = "SELECT pg_backend_pid()";
        let first: i32 = sqlx::query_scalar(backend).fetch_one(&pool).await.unwrap();
        let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(first)
            .fetch_one(&admin)
            .await
            .unwrap();
        assert!(terminated);
        tokio::time::sleep(TRUSTED_WHEN_IDLE_UNDER + Duration::from_millis(200)).await;
        let second: i32 = sqlx::query_scalar(backend).fetch_one(&pool).await.unwrap();
        assert_ne!(first, second, "a new connection served the query");
    }
}
