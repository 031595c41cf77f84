//! The real PostgreSQL and NATS behind the controller's [`Provisioner`]: where the admin
//! connection comes from, and the lazily made, retried connections. What is done with them is
//! `provision.rs`; the controller sees only the trait, so its tests fail provisioning on purpose.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use futures::future::BoxFuture;
use sqlx::PgPool;
use tokio::sync::Mutex as AsyncMutex;

use crate::controller::Provisioner;
use crate::crd::{MessagingSpec, Service};
use crate::provision::{self, ProvisionError};

/// How often deleting a tenant's stream looks again that none came back, and how long apart.
const STREAM_DELETE_ATTEMPTS: usize = 10;
const STREAM_DELETE_RECHECK: Duration = Duration::from_millis(300);

/// Where the PostgreSQL admin URL comes from.
#[derive(Debug, Clone)]
pub enum AdminSource {
    /// Given at start.
    Url(String),
    /// A file (a mounted Secret), read again on every use: a Secret created or rotated later
    /// is picked up without a restart.
    File(std::path::PathBuf),
    /// Not given at all: the operator still starts and every tenant reports
    /// `DatabaseNotConfigured`, so a platform engineer sees what is missing where they look.
    Missing,
}

/// The real PostgreSQL and NATS. Both connect lazily, so the operator starts while either is
/// down or not configured, reports it on each tenant, and recovers when it returns.
pub struct Infrastructure {
    admin_source: AdminSource,
    admin: AsyncMutex<Option<(String, PgPool)>>,
    nats_url: String,
    /// The operator's own NATS user (a `.creds` file's content), when tenants get theirs.
    nats_credentials: Option<carerp_kit::auth::Secret>,
    jetstream: AsyncMutex<Option<jetstream::Context>>,
}

impl Infrastructure {
    pub fn new(admin_source: AdminSource, nats_url: &str) -> Self {
        Self {
            admin_source,
            admin: AsyncMutex::new(None),
            nats_url: nats_url.into(),
            nats_credentials: None,
            jetstream: AsyncMutex::new(None),
        }
    }

    /// Connects to NATS as the user of `credentials` (a `.creds` file's content).
    pub fn with_nats_credentials(mut self, credentials: carerp_kit::auth::Secret) -> Self {
        self.nats_credentials = Some(credentials);
        self
    }

    /// The admin pool for the URL in force now.
    async fn admin(&self) -> Result<PgPool, ProvisionError> {
        let url = match &self.admin_source {
            AdminSource::Url(url) => url.trim().to_string(),
            AdminSource::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .map_err(|err| {
                    ProvisionError::NotConfigured(format!(
                        "cannot read the PostgreSQL admin URL from {}: {err}",
                        path.display()
                    ))
                })?,
            AdminSource::Missing => {
                return Err(ProvisionError::NotConfigured(
                    "no PostgreSQL admin connection: set CARERP_ADMIN_DATABASE_URL or CARERP_ADMIN_DATABASE_URL_FILE on the operator".into(),
                ));
            }
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ProvisionError::NotConfigured(
                "the PostgreSQL admin URL is empty or not a postgres:// URL".into(),
            ));
        }
        let mut guard = self.admin.lock().await;
        if let Some((current, pool)) = guard.as_ref()
            && *current == url
        {
            return Ok(pool.clone());
        }
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(&url)
            .map_err(|err| {
                ProvisionError::NotConfigured(format!("invalid PostgreSQL admin URL: {err}"))
            })?;
        *guard = Some((url, pool.clone()));
        Ok(pool)
    }

    async fn js(&self) -> Result<jetstream::Context, ProvisionError> {
        let mut guard = self.jetstream.lock().await;
        if let Some(js) = guard.as_ref() {
            return Ok(js.clone());
        }
        let connect_failed = |message: String| ProvisionError::Nats {
            action: format!("connect to {}", self.nats_url),
            message,
        };
        let mut options = async_nats::ConnectOptions::new();
        if let Some(credentials) = &self.nats_credentials {
            options = options.credentials(credentials.expose()).map_err(|_| {
                connect_failed("the operator's NATS credentials are unusable".into())
            })?;
        }
        let client = options
            .connect(&self.nats_url)
            .await
            .map_err(|err| connect_failed(err.to_string()))?;
        let js = jetstream::new(client);
        *guard = Some(js.clone());
        Ok(js)
    }
}

impl Provisioner for Infrastructure {
    fn ensure_databases<'a>(
        &'a self,
        tenant: &'a str,
        passwords: &'a BTreeMap<Service, String>,
    ) -> BoxFuture<'a, Result<BTreeMap<Service, String>, ProvisionError>> {
        Box::pin(async move {
            let admin = self.admin().await?;
            provision::ensure_databases(&admin, tenant, passwords).await
        })
    }

    fn drop_databases<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async move {
            let admin = self.admin().await?;
            provision::drop_databases(&admin, tenant).await
        })
    }

    fn ensure_stream<'a>(
        &'a self,
        tenant: &'a str,
        spec: &'a MessagingSpec,
    ) -> BoxFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async move {
            let js = self.js().await?;
            provision::ensure_stream(&js, tenant, spec)
                .await
                .map(|_| ())
        })
    }

    fn delete_stream<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async move {
            let js = self.js().await?;
            // A create sent by an earlier converge whose answer timed out can still be queued
            // on a busy server and land after the delete: delete until the server has none.
            for _ in 0..STREAM_DELETE_ATTEMPTS {
                if !provision::delete_stream(&js, tenant).await? {
                    return Ok(());
                }
                tokio::time::sleep(STREAM_DELETE_RECHECK).await;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operator starts without PostgreSQL or NATS; each reconcile reports why it cannot
    /// provision, and a later one succeeds once they answer (nothing is cached as broken).
    #[tokio::test]
    async fn unreachable_servers_are_reported_not_fatal() {
        let infra = Infrastructure::new(
            AdminSource::Url("postgres://postgres@127.0.0.1:1/postgres".into()),
            "nats://127.0.0.1:1",
        );
        let err = infra
            .ensure_databases("unreachable", &BTreeMap::new())
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "DatabaseError");
        let err = infra
            .ensure_stream("unreachable", &MessagingSpec::default())
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "MessagingError");
        assert!(
            err.to_string().contains("connect to nats://127.0.0.1:1"),
            "{err}"
        );
        assert!(
            infra.jetstream.lock().await.is_none(),
            "a failed connection is retried next time"
        );
    }

    /// No admin connection configured at all: the operator runs and says what to set.
    #[tokio::test]
    async fn a_missing_admin_connection_is_reported_not_fatal() {
        let infra = Infrastructure::new(AdminSource::Missing, "nats://127.0.0.1:1");
        let err = infra
            .ensure_databases("unconfigured", &BTreeMap::new())
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "DatabaseNotConfigured");
        assert!(
            err.to_string().contains("CARERP_ADMIN_DATABASE_URL"),
            "{err}"
        );
    }

    /// No Secret yet: reported on each tenant; once the file appears, the next reconcile
    /// provisions without a restart.
    #[tokio::test]
    async fn admin_url_file_is_read_on_every_use() {
        let path = std::env::temp_dir().join(format!("carerp-admin-url-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let infra = Infrastructure::new(AdminSource::File(path.clone()), "nats://127.0.0.1:1");
        let err = infra.admin().await.unwrap_err();
        assert_eq!(err.reason(), "DatabaseNotConfigured");
        assert!(
            err.to_string()
                .contains("cannot read the PostgreSQL admin URL"),
            "{err}"
        );

        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        std::fs::write(&path, format!("{url}\n")).unwrap();
        let pool = infra.admin().await.unwrap();
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(one, 1);
        std::fs::remove_file(&path).unwrap();
    }
}
