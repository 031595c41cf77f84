//! The outbox relay: publishes committed outbox rows to JetStream and marks them published.
//!
//! It wakes when a transaction of this process that enqueued an event commits
//! ([`crate::outbox::wakes`]) and passes once: wakes that come during a pass make one more
//! pass, so under load each pass takes every event committed meanwhile. A poll every 30 s
//! (plus up to 5 s of jitter, so a tenant's services do not poll together and its pools can
//! close their idle connections in between) finds what no wake announced: rows of a replica
//! that stopped before relaying them.
//!
//! Each pass takes, per aggregate, only the oldest pending row (`FOR UPDATE SKIP LOCKED`), so
//! several replicas can relay at once without reordering the events of one aggregate. A publish counts only once JetStream acknowledged it; `Nats-Msg-Id`
//! makes a retry after a lost ack a no-op inside the stream's duplicate window.
//!
//! An event that can never be published (larger than the broker's max payload, or not
//! serialisable) is parked: `parked_at` set, its error kept, `carerp_outbox_parked_total`
//! counted (the chart alerts on it), and it no longer stands in front of its aggregate's later
//! events, which go out without it. Retrying it on every pass would block them forever.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::envelope::{CloudEvent, subject};
use crate::metrics::Metrics;
use crate::outbox::OutboxRow;

const BATCH: i64 = 200;
/// The fallback poll: 30 s plus up to `POLL_JITTER_MS`.
const POLL_INTERVAL: Duration = Duration::from_secs(30);
const POLL_JITTER_MS: u64 = 5_000;
/// The backlog gauges are refreshed at most this often (they cost a query).
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("publishing event {id} to {subject}: {reason}")]
    Publish {
        id: uuid::Uuid,
        subject: String,
        reason: String,
    },
}

pub struct Relay {
    pool: PgPool,
    jetstream: jetstream::Context,
    service: String,
    tenant: String,
    backlog: Gauge,
    oldest_age: Gauge<f64, AtomicU64>,
    parked: Counter,
}

impl Relay {
    pub fn new(
        pool: PgPool,
        jetstream: jetstream::Context,
        service: &str,
        tenant: &str,
        metrics: &Metrics,
    ) -> Self {
        let backlog = Gauge::default();
        let oldest_age = Gauge::<f64, AtomicU64>::default();
        metrics.register(
            "outbox_backlog",
            "Outbox events not yet published",
            backlog.clone(),
        );
        metrics.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest outbox event not yet published",
            oldest_age.clone(),
        );
        let parked = Counter::default();
        metrics.register(
            "outbox_parked",
            "Outbox events that can never be published (too large), set aside with their error",
            parked.clone(),
        );
        Self {
            pool,
            jetstream,
            service: service.into(),
            tenant: tenant.into(),
            backlog,
            oldest_age,
            parked,
        }
    }

    /// Relays until `shutdown`; broker or database failures are retried with backoff.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut wakes = crate::outbox::wakes();
        let mut backoff = Duration::from_millis(100);
        let mut gauges_at: Option<tokio::time::Instant> = None;
        loop {
            // Dropping a pass midway rolls its transaction back; anything it had already
            // published is deduplicated by the stream when the next relay sends it again.
            let drained = tokio::select! {
                _ = shutdown.cancelled() => return,
                drained = self.drain() => drained,
            };
            match drained {
                Ok(_) => backoff = Duration::from_millis(100),
                Err(err) => {
                    self.update_gauges().await;
                    tracing::warn!(action = "outbox.relay", error = %err, retry_in_ms = backoff.as_millis() as u64, "relay failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            if gauges_at.is_none_or(|at| at.elapsed() >= GAUGE_INTERVAL) {
                self.update_gauges().await;
                gauges_at = Some(tokio::time::Instant::now());
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wakes.changed() => {}
                _ = tokio::time::sleep(poll_interval()) => {}
            }
        }
    }

    /// Publishes until nothing is pending; returns how many events went out.
    pub async fn drain(&self) -> Result<usize, RelayError> {
        let mut total = 0;
        loop {
            let published = self.publish_pending().await?;
            total += published;
            if published == 0 {
                return Ok(total);
            }
        }
    }

    /// One pass: the oldest pending event of up to `BATCH` aggregates.
    ///
    /// The heads are found in one sort of the pending rows (`DISTINCT ON`), not by asking of
    /// each pending row whether an older one of its aggregate exists: after a burst (a broker
    /// outage's backlog) the table's statistics still say it is nearly empty, and the planner
    /// then runs that question as a nested loop, quadratic in the backlog (381 ms against
    /// 9 ms a pass at 5,000 events). A head locked by another relay is skipped, and its
    /// aggregate's later events wait for it.
    pub async fn publish_pending(&self) -> Result<usize, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "WITH heads AS (
                 SELECT DISTINCT ON (aggregate_id) seq FROM outbox
                 WHERE published_at IS NULL AND parked_at IS NULL
                 ORDER BY aggregate_id, seq)
             SELECT o.seq, o.id, o.topic, o.aggregate_id, o.data, o.correlation_id, o.traceparent,
                    o.created_at, o.published_at
             FROM outbox o
             WHERE o.seq IN (SELECT seq FROM heads)
             ORDER BY o.seq
             LIMIT $1
             FOR UPDATE OF o SKIP LOCKED",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Send all, then wait for the acks: one round trip per batch, not per event. An event
        // that can never be published (too large) is parked, so it holds up nothing; a broker
        // failure stops the pass.
        let mut pending = Vec::with_capacity(rows.len());
        let mut failure = None;
        for row in &rows {
            match self.send(row).await {
                Ok(ack) => pending.push((row, ack)),
                Err(SendFailure::Event(reason)) => {
                    tracing::error!(action = "outbox.relay", event_id = %row.id, topic = %row.topic, aggregate_id = %row.aggregate_id, error = %reason, "event can never be published; parked, its aggregate's later events go on");
                    park(&mut tx, row, &reason).await?;
                    self.parked.inc();
                }
                Err(SendFailure::Broker(reason)) => {
                    failure = Some((row, reason));
                    break;
                }
            }
        }
        let mut published = Vec::with_capacity(pending.len());
        for (row, ack) in pending {
            match ack.await {
                Ok(_) => published.push(row.seq),
                Err(err) => {
                    failure.get_or_insert((row, err.to_string()));
                    break;
                }
            }
        }
        sqlx::query("UPDATE outbox SET published_at = now() WHERE seq = ANY($1)")
            .bind(&published)
            .execute(&mut *tx)
            .await?;
        if let Some((row, reason)) = &failure {
            record_failure(&mut tx, row, reason).await?;
        }
        tx.commit().await?;
        match failure {
            None => Ok(published.len()),
            Some((row, reason)) => Err(RelayError::Publish {
                id: row.id,
                subject: subject(&self.tenant, &row.topic),
                reason,
            }),
        }
    }

    async fn send(
        &self,
        row: &OutboxRow,
    ) -> Result<jetstream::context::PublishAckFuture, SendFailure> {
        let event = CloudEvent::from_outbox(row, &self.service, &self.tenant);
        let payload =
            serde_json::to_vec(&event).map_err(|err| SendFailure::Event(err.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", row.id.to_string().as_str());
        headers.insert("Content-Type", "application/cloudevents+json");
        self.jetstream
            .publish_with_headers(subject(&self.tenant, &row.topic), headers, payload.into())
            .await
            .map_err(|err| match err.kind() {
                PublishErrorKind::MaxPayloadExceeded => SendFailure::Event(err.to_string()),
                _ => SendFailure::Broker(err.to_string()),
            })
    }

    async fn update_gauges(&self) {
        let stats: Result<(i64, Option<f64>), _> = sqlx::query_as(
            "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at))::float8
             FROM outbox WHERE published_at IS NULL AND parked_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await;
        if let Ok((count, age)) = stats {
            self.backlog.set(count);
            self.oldest_age.set(age.unwrap_or(0.0));
        }
    }
}

enum SendFailure {
    /// This event cannot be published, whatever the broker's state.
    Event(String),
    /// The broker did not take it; the next attempt may succeed.
    Broker(String),
}

/// Sets an event that can never be published aside, with its error.
async fn park(
    tx: &mut sqlx::PgConnection,
    row: &OutboxRow,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2, parked_at = now() WHERE seq = $1",
    )
    .bind(row.seq)
    .bind(reason)
    .execute(tx)
    .await?;
    Ok(())
}

async fn record_failure(
    tx: &mut sqlx::PgConnection,
    row: &OutboxRow,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE seq = $1")
        .bind(row.seq)
        .bind(reason)
        .execute(tx)
        .await?;
    Ok(())
}

/// The fallback poll's interval, with jitter.
fn poll_interval() -> Duration {
    POLL_INTERVAL + Duration::from_millis(rand::random_range(0..POLL_JITTER_MS))
}
