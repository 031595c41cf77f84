//! The transactional outbox: an event is written in the same transaction as the change it
//! describes, so either both happen or neither does. A relay publishes committed rows.

use std::ops::{Deref, DerefMut};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use sqlx::{PgConnection, PgPool, Postgres};
use tokio::sync::watch;
use uuid::Uuid;

use crate::context::RequestContext;
use crate::events::{AuditRecorded, topic};

/// Counts the events enqueued in this process, committed or not.
static ENQUEUED: AtomicU64 = AtomicU64::new(0);

/// Changes when a [`Transaction`] of this process that may have enqueued events commits; the
/// relays of this process watch it.
///
/// Not `pg_notify`: PostgreSQL serialises the commits of notifying transactions on one
/// lock for the whole server (measured on this machine with pgbench, 16 clients: an INSERT
/// plus `pg_notify` commits 1,340 times a second, two INSERTs 4,520), and every relay held a
/// connection to LISTEN. The writer is nearly always a replica of the same service, so it
/// wakes its own relay; rows another replica left behind are found by the relay's poll.
///
/// After the commit, not at the enqueue: woken before, a relay cannot see the row yet, and
/// had to pass again and again until the commit showed (13 passes over 8 s after every wake,
/// which kept each idle garage's databases busy for seconds after its last write).
static COMMITTED: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);

/// What a relay waits on: it changes whenever a transaction of this process that enqueued
/// an event commits.
pub fn wakes() -> watch::Receiver<u64> {
    COMMITTED.subscribe()
}

/// Begins a transaction whose commit wakes this process's relays when events were enqueued
/// in it. Every service writes through one of these; a plain `pool.begin()` that enqueues
/// would leave its events to the relay's poll, half a minute later.
pub async fn begin(pool: &PgPool) -> Result<Transaction, sqlx::Error> {
    // Read before the transaction starts: an event enqueued in it moves the count on.
    let enqueued_before = ENQUEUED.load(Ordering::Acquire);
    Ok(Transaction {
        inner: pool.begin().await?,
        enqueued_before,
    })
}

/// A transaction from [`begin`]: a `PgConnection` for every query, and a commit that wakes
/// the relays.
pub struct Transaction {
    inner: sqlx::Transaction<'static, Postgres>,
    enqueued_before: u64,
}

impl Transaction {
    /// Commits, then wakes this process's relays if any event was enqueued meanwhile (in this
    /// transaction or, rarely, in a concurrent one: then the relay passes once for nothing).
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.inner.commit().await?;
        if ENQUEUED.load(Ordering::Acquire) != self.enqueued_before {
            COMMITTED.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(())
    }

    /// Rolls back now rather than when dropped.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.inner.rollback().await
    }
}

impl Deref for Transaction {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.inner
    }
}

impl DerefMut for Transaction {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.inner
    }
}

/// Appends an event to the outbox within the caller's transaction and returns its id.
///
/// `topic` is the event type without tenant (`customer.created`); `aggregate_id` is what the
/// event is about and becomes the CloudEvents `subject`.
pub async fn enqueue(
    conn: &mut PgConnection,
    context: &RequestContext,
    topic: &str,
    aggregate_id: &str,
    data: &impl Serialize,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    let data = serde_json::to_value(data).map_err(|err| sqlx::Error::Encode(Box::new(err)))?;
    sqlx::query(
        "INSERT INTO outbox (id, topic, aggregate_id, data, correlation_id, traceparent)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(topic)
    .bind(aggregate_id)
    .bind(data)
    .bind(&context.correlation_id)
    .bind(context.traceparent())
    .execute(&mut *conn)
    .await?;
    // The relay is woken when the transaction commits (`Transaction::commit`).
    ENQUEUED.fetch_add(1, Ordering::AcqRel);
    Ok(id)
}

/// Records a sensitive action for the audit trail: an `audit.recorded` event in the caller's
/// transaction, so the action and its audit entry commit together. The actor is the
/// request's caller (or `system`), never a name the client sent.
pub async fn audit(
    conn: &mut PgConnection,
    context: &RequestContext,
    action: &str,
    target: String,
    details: serde_json::Value,
) -> Result<Uuid, sqlx::Error> {
    let event = AuditRecorded::new(context.actor(), action, target, details);
    let aggregate = event.target.clone();
    enqueue(conn, context, topic::AUDIT_RECORDED, &aggregate, &event).await
}

/// An outbox row as stored, for the relay and for tests.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub seq: i64,
    pub id: Uuid,
    pub topic: String,
    pub aggregate_id: String,
    pub data: serde_json::Value,
    pub correlation_id: String,
    pub traceparent: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub published_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every row about one aggregate, oldest first.
pub async fn rows_for(
    conn: &mut PgConnection,
    aggregate_id: &str,
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, id, topic, aggregate_id, data, correlation_id, traceparent, created_at, published_at
         FROM outbox WHERE aggregate_id = $1 ORDER BY seq",
    )
    .bind(aggregate_id)
    .fetch_all(conn)
    .await
}

/// Records that this service handled event `event_id`, in the handler's transaction.
/// Returns false when it was handled before: the caller then rolls back and acks, so a
/// redelivered event has no second effect.
pub async fn record_in_inbox(
    conn: &mut PgConnection,
    event_id: Uuid,
    topic: &str,
) -> Result<bool, sqlx::Error> {
    let inserted =
        sqlx::query("INSERT INTO inbox (event_id, topic) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(event_id)
            .bind(topic)
            .execute(conn)
            .await?;
    Ok(inserted.rows_affected() == 1)
}
