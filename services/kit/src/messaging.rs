//! Starting a service's event traffic: its outbox relay and, if it consumes, its consumer.
//!
//! The connection is unauthenticated unless the service is given the tenant's credentials
//! (`NATS_CREDENTIALS_FILE`, [`ServiceConfig::nats_credentials`]): then it signs in as the
//! tenant's NATS user, whose permissions the operator limits to the tenant's subjects and
//! streams (see `docs/nats-auth.md`), and its reply subjects start with
//! [`inbox_prefix`], the only inboxes that user may subscribe to.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::ServiceConfig;
use crate::consumer::{Consumer, ConsumerMetrics, EventHandler, Timing};
use crate::grpc::RunningService;
use crate::metrics::Metrics;
use crate::relay::Relay;

/// The prefix of a tenant's reply subjects (`_CARERP_INBOX.<tenant>`): its NATS user may
/// subscribe to these and to no other inbox, so it cannot read another tenant's replies (the
/// default `_INBOX.>` is shared by every connection of the account).
pub fn inbox_prefix(tenant: &str) -> String {
    format!("_CARERP_INBOX.{tenant}")
}

/// Who a connection signs in as: a `.creds` file's content (user JWT and nkey seed) and
/// the inbox prefix its permissions allow.
#[derive(Clone)]
pub struct BrokerIdentity {
    pub credentials: String,
    pub inbox_prefix: String,
}

impl std::fmt::Debug for BrokerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerIdentity")
            .field("credentials", &"<redacted>")
            .field("inbox_prefix", &self.inbox_prefix)
            .finish()
    }
}

impl BrokerIdentity {
    /// The tenant's identity from its `.creds` file.
    pub async fn from_file(path: &Path, tenant: &str) -> std::io::Result<Self> {
        let credentials = tokio::fs::read_to_string(path).await.map_err(|err| {
            std::io::Error::new(
                err.kind(),
                format!("cannot read NATS credentials {}: {err}", path.display()),
            )
        })?;
        Ok(Self {
            credentials,
            inbox_prefix: inbox_prefix(tenant),
        })
    }
}

/// Connects to NATS without authenticating. A broker that is down at start is retried in
/// the background: the service serves meanwhile and its outbox keeps what it writes.
pub async fn connect(nats_url: &str) -> Result<jetstream::Context, async_nats::ConnectError> {
    connect_as(nats_url, None).await
}

/// [`connect`], signed in as `identity` when there is one. Credentials that cannot be parsed
/// fail here, at start; a server that refuses them is retried like one that is down (and says
/// why in its log and the client's).
pub async fn connect_as(
    nats_url: &str,
    identity: Option<&BrokerIdentity>,
) -> Result<jetstream::Context, async_nats::ConnectError> {
    let mut options = async_nats::ConnectOptions::new().retry_on_initial_connect();
    if let Some(identity) = identity {
        options = options
            .credentials(&identity.credentials)
            .map_err(|err| {
                async_nats::ConnectError::with_source(
                    async_nats::ConnectErrorKind::Authentication,
                    std::io::Error::new(
                        err.kind(),
                        "the NATS credentials are not a .creds file (user JWT and nkey seed)",
                    ),
                )
            })?
            .custom_inbox_prefix(&identity.inbox_prefix);
    }
    let client = options.connect(nats_url).await?;
    Ok(jetstream::new(client))
}

/// Connects as `config` says: with the tenant's credentials when `NATS_CREDENTIALS_FILE` is
/// set, without otherwise.
pub async fn connect_for(
    config: &ServiceConfig,
) -> Result<jetstream::Context, async_nats::ConnectError> {
    let identity = match &config.nats_credentials {
        Some(path) => Some(
            BrokerIdentity::from_file(path, &config.tenant)
                .await
                .map_err(|err| {
                    async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::Io, err)
                })?,
        ),
        None => None,
    };
    connect_as(&config.nats_url, identity.as_ref()).await
}

/// What a service's event traffic needs.
pub struct Messaging {
    pub jetstream: jetstream::Context,
    pub pool: PgPool,
    pub service: &'static str,
    pub tenant: String,
    pub metrics: Metrics,
}

impl Messaging {
    /// Connects for `config`'s service and tenant.
    pub async fn connect(
        config: &ServiceConfig,
        pool: PgPool,
        metrics: Metrics,
    ) -> Result<Self, async_nats::ConnectError> {
        Ok(Self {
            jetstream: connect_for(config).await?,
            pool,
            service: config.service,
            tenant: config.tenant.clone(),
            metrics,
        })
    }

    /// Runs the outbox relay alongside `service`, until it stops, and the pruner of the kit's
    /// bookkeeping (published outbox rows after 7 days, inbox rows after 30, expired
    /// idempotency keys; hourly, [`crate::idempotency::prune_until`]).
    pub fn relay(&self, service: &mut RunningService) {
        let pool = self.pool.clone();
        service.run_alongside(|shutdown| {
            crate::idempotency::prune_until(shutdown, pool, Default::default())
        });
        let relay = Relay::new(
            self.pool.clone(),
            self.jetstream.clone(),
            self.service,
            &self.tenant,
            &self.metrics,
        );
        service.run_alongside(|shutdown| relay.run(shutdown));
    }

    /// Runs the durable consumer alongside `service`. Until the tenant's stream exists (the
    /// operator creates it) the consumer keeps retrying.
    pub fn consume<H: EventHandler + Clone>(&self, service: &mut RunningService, handler: H) {
        let (pool, jetstream, name, tenant) = (
            self.pool.clone(),
            self.jetstream.clone(),
            self.service.to_string(),
            self.tenant.clone(),
        );
        let metrics = ConsumerMetrics::register(&self.metrics);
        service.run_alongside(|shutdown| {
            consume_until(shutdown, pool, jetstream, name, tenant, handler, metrics)
        });
    }
}

async fn consume_until<H: EventHandler + Clone>(
    shutdown: CancellationToken,
    pool: PgPool,
    jetstream: jetstream::Context,
    service: String,
    tenant: String,
    handler: H,
    metrics: ConsumerMetrics,
) {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        let consumer = Consumer {
            pool: pool.clone(),
            jetstream: jetstream.clone(),
            service: service.clone(),
            tenant: tenant.clone(),
            handler: handler.clone(),
            timing: Timing::default(),
            metrics: metrics.clone(),
        };
        match consumer.run(shutdown.clone()).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(action = "consumer.start", error = %err, retry_in_ms = backoff.as_millis() as u64, "consumer not running; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unusable credentials stop the service at start with a reason that quotes nothing of
    /// the file; an unreadable file names its path.
    #[tokio::test]
    async fn unusable_credentials_fail_at_start_without_echoing_them() {
        let identity = BrokerIdentity {
            credentials: "SUSECRETSEEDTHATISNOTACREDSFILE".into(),
            inbox_prefix: inbox_prefix("acme"),
        };
        let err = connect_as("nats://127.0.0.1:1", Some(&identity))
            .await
            .unwrap_err();
        let message = format!("{err} {err:?} {identity:?}");
        assert!(!message.contains("SUSECRET"), "{message}");
        let err = BrokerIdentity::from_file(Path::new("/nonexistent/nats.creds"), "acme")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/nats.creds"), "{err}");
    }

    #[test]
    fn each_tenant_has_its_own_inbox_prefix_outside_the_shared_one() {
        assert_eq!(inbox_prefix("acme"), "_CARERP_INBOX.acme");
        assert!(!inbox_prefix("acme").starts_with("_INBOX"));
    }
}
