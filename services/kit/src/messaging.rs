//! Starting a service's event traffic: its outbox relay and, if it consumes, its consumer.

use std::time::Duration;

use async_nats::jetstream;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::ServiceConfig;
use crate::consumer::{Consumer, ConsumerMetrics, EventHandler, Timing};
use crate::grpc::RunningService;
use crate::metrics::Metrics;
use crate::relay::Relay;

/// Connects to NATS. A broker that is down at start is retried in the background: the
/// service serves meanwhile and its outbox keeps what it writes.
pub async fn connect(nats_url: &str) -> Result<jetstream::Context, async_nats::ConnectError> {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(nats_url)
        .await?;
    Ok(jetstream::new(client))
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
            jetstream: connect(&config.nats_url).await?,
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
