//! One idempotency mechanism for every service: a retried request has the effect of once, and
//! a key reused for another request is refused instead of silently answering the first.
//!
//! A client sends a key with a request that changes something. The service calls [`begin`] in
//! the transaction of the change, with the key and the request's [`fingerprint`] (the operation
//! and the fields that decide the effect). The first time, [`Claimed::First`]: the service does
//! the work and stores what identifies the result with [`finish`], in the same transaction, so
//! key and effect commit together or not at all. Again with the same request,
//! [`Claimed::Replay`] hands back the stored result and the service answers it without doing
//! anything. With a different request, [`IdempotencyError::Reused`]: INVALID_ARGUMENT on the
//! field `idempotency_key`, naming the key (422 from the BFF).
//!
//! Two calls with one key at the same moment are serialised on the key's row: the second waits
//! for the first's transaction and then replays it. A key expires [`EXPIRY`] after first use;
//! then it may name a new request, and the pruner ([`prune`]) deletes it.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use crate::status::FieldViolation;

/// The longest key accepted, in characters.
pub const MAX_KEY: usize = 200;

/// How long a key names its request.
pub const EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// A client's idempotency key: visible ASCII, 1 to [`MAX_KEY`] characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// The key of a request where it is optional: `None` when empty.
    pub fn optional(field: &str, raw: &str) -> Result<Option<Key>, FieldViolation> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(None);
        }
        let len = raw.chars().count();
        if len > MAX_KEY {
            return Err(FieldViolation::new(
                field,
                format!("must be at most {MAX_KEY} characters, is {len}"),
            ));
        }
        if !raw.chars().all(|c| c.is_ascii_graphic()) {
            return Err(FieldViolation::new(
                field,
                "must be visible ASCII characters (no spaces or control characters)",
            ));
        }
        Ok(Some(Key(raw.to_string())))
    }

    /// The key of a request that must carry one (a payment): refused when missing.
    pub fn required(field: &str, raw: &str) -> Result<Key, FieldViolation> {
        Self::optional(field, raw)?.ok_or_else(|| {
            FieldViolation::new(
                field,
                "is required: a retried request must not have its effect twice",
            )
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// What identifies a request: SHA-256 (hex) of the operation and the request's fields as JSON.
/// Give it the fields as the client sent them (before defaults such as "now" are filled in),
/// without the key itself and without what does not change the effect.
pub fn fingerprint(operation: &str, request: &impl Serialize) -> String {
    let mut hash = Sha256::new();
    hash.update(operation.as_bytes());
    hash.update(b"\n");
    // Serialising plain request fields cannot fail; an error would hash as the empty body,
    // which still differs from every real request's.
    hash.update(serde_json::to_vec(request).unwrap_or_default());
    hash.finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// What [`begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed<T> {
    /// The key is new (or expired): do the work, then [`finish`].
    First,
    /// The same request was done before: answer with what it produced.
    Replay(T),
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error(
        "idempotency key {key} was already used for a different request ({operation}); send a new key with a new request"
    )]
    Reused { key: Key, operation: String },
    #[error("the stored result of idempotency key {key} cannot be read: {reason}")]
    Unreadable { key: Key, reason: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl IdempotencyError {
    /// The refusal as a field error on `field`, for [`crate::status::invalid_argument`].
    pub fn violation(&self, field: &str) -> Option<FieldViolation> {
        match self {
            IdempotencyError::Reused { .. } => Some(FieldViolation::new(field, self.to_string())),
            _ => None,
        }
    }
}

/// Claims `key` for the request with `fingerprint`, in the caller's transaction.
pub async fn begin<T: DeserializeOwned>(
    tx: &mut PgConnection,
    key: &Key,
    operation: &str,
    fingerprint: &str,
) -> Result<Claimed<T>, IdempotencyError> {
    // Waits for a concurrent transaction holding the same key, then sees its outcome.
    let claimed: Option<bool> = sqlx::query_scalar(
        "INSERT INTO idempotency (key, operation, fingerprint, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))
         ON CONFLICT (key) DO UPDATE SET
             operation = EXCLUDED.operation, fingerprint = EXCLUDED.fingerprint, result = NULL,
             created_at = now(), expires_at = EXCLUDED.expires_at
         WHERE idempotency.expires_at <= now()
         RETURNING true",
    )
    .bind(key.as_str())
    .bind(operation)
    .bind(fingerprint)
    .bind(EXPIRY.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    if claimed.is_some() {
        return Ok(Claimed::First);
    }
    let (stored_operation, stored_fingerprint, result): (
        String,
        Option<String>,
        Option<serde_json::Value>,
    ) = sqlx::query_as("SELECT operation, fingerprint, result FROM idempotency WHERE key = $1")
        .bind(key.as_str())
        .fetch_one(&mut *tx)
        .await?;
    let same = stored_operation == operation
        && stored_fingerprint
            .as_deref()
            .is_none_or(|stored| stored == fingerprint);
    if !same {
        return Err(IdempotencyError::Reused {
            key: key.clone(),
            operation: stored_operation,
        });
    }
    let unreadable = |reason: String| IdempotencyError::Unreadable {
        key: key.clone(),
        reason,
    };
    let result = result.ok_or_else(|| unreadable("no result was stored".into()))?;
    serde_json::from_value(result)
        .map(Claimed::Replay)
        .map_err(|err| unreadable(err.to_string()))
}

/// Stores what the request produced, in the transaction that [`begin`] claimed the key in.
pub async fn finish(
    tx: &mut PgConnection,
    key: &Key,
    result: &impl Serialize,
) -> Result<(), IdempotencyError> {
    let result = serde_json::to_value(result).map_err(|err| IdempotencyError::Unreadable {
        key: key.clone(),
        reason: err.to_string(),
    })?;
    sqlx::query("UPDATE idempotency SET result = $2 WHERE key = $1")
        .bind(key.as_str())
        .bind(result)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// How long the kit's bookkeeping rows are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Published outbox rows: kept a while for diagnosis; the stream holds the events.
    pub outbox: Duration,
    /// Inbox rows: longer than any stream's max age is expected to be, so an event still in
    /// the stream is always recognised if delivered again.
    pub inbox: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            outbox: Duration::from_secs(7 * 24 * 3600),
            inbox: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Rows deleted by one [`prune`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub outbox: u64,
    pub inbox: u64,
    pub idempotency: u64,
}

/// Deletes published outbox rows and inbox rows older than `retention`, and expired keys.
/// Unpublished outbox rows are never deleted.
pub async fn prune(pool: &PgPool, retention: Retention) -> Result<Pruned, sqlx::Error> {
    let secs = |d: Duration| d.as_secs_f64();
    let outbox = sqlx::query(
        "DELETE FROM outbox WHERE published_at IS NOT NULL
           AND published_at < now() - make_interval(secs => $1)",
    )
    .bind(secs(retention.outbox))
    .execute(pool)
    .await?
    .rows_affected();
    let inbox =
        sqlx::query("DELETE FROM inbox WHERE handled_at < now() - make_interval(secs => $1)")
            .bind(secs(retention.inbox))
            .execute(pool)
            .await?
            .rows_affected();
    let idempotency = sqlx::query("DELETE FROM idempotency WHERE expires_at <= now()")
        .execute(pool)
        .await?
        .rows_affected();
    Ok(Pruned {
        outbox,
        inbox,
        idempotency,
    })
}

/// How often the pruner runs.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Prunes every [`PRUNE_EVERY`] (the first time right away) until `shutdown`. Several replicas
/// may prune at once: deleting what is already gone is harmless.
pub async fn prune_until(
    shutdown: tokio_util::sync::CancellationToken,
    pool: PgPool,
    retention: Retention,
) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match prune(&pool, retention).await {
            Ok(pruned) => tracing::info!(
                action = "kit.prune",
                outbox = pruned.outbox,
                inbox = pruned.inbox,
                idempotency = pruned.idempotency,
                "old outbox, inbox and idempotency rows pruned"
            ),
            Err(err) => {
                tracing::warn!(action = "kit.prune", error = %err, "pruning failed; next try in an hour")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> Key {
        Key::required("idempotency_key", raw).unwrap()
    }

    async fn claim(
        pool: &PgPool,
        key: &Key,
        request: &str,
    ) -> Result<Claimed<String>, IdempotencyError> {
        let mut tx = pool.begin().await.unwrap();
        let fp = fingerprint("test.pay", &request);
        let claimed = begin::<String>(&mut tx, key, "test.pay", &fp).await;
        if let Ok(Claimed::First) = claimed {
            finish(&mut tx, key, &format!("result of {request}"))
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        claimed
    }

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert_eq!(Key::optional("k", "  ").unwrap(), None);
        assert_eq!(key(" abc-123 ").as_str(), "abc-123");
        let long = "k".repeat(MAX_KEY + 1);
        assert_eq!(
            Key::optional("k", &long).unwrap_err().description,
            "must be at most 200 characters, is 201"
        );
        assert!(Key::optional("k", "a b").is_err());
        assert!(Key::optional("k", "ключ").is_err());
        let missing = Key::required("idempotency_key", "").unwrap_err();
        assert_eq!(missing.field, "idempotency_key");
        assert!(missing.description.starts_with("is required"), "{missing}");
    }

    #[test]
    fn the_fingerprint_depends_on_operation_and_every_field() {
        let a = fingerprint("billing.record-payment", &("inv-1", 500));
        assert_eq!(a, fingerprint("billing.record-payment", &("inv-1", 500)));
        assert_ne!(a, fingerprint("billing.record-payment", &("inv-1", 501)));
        assert_ne!(a, fingerprint("billing.record-payment", &("inv-2", 500)));
        assert_ne!(a, fingerprint("workorder.add-part-line", &("inv-1", 500)));
        assert_eq!(a.len(), 64);
    }

    #[sqlx::test(migrator = "crate::db::KIT_MIGRATOR")]
    async fn the_same_request_replays_and_a_different_one_is_refused_naming_the_key(pool: PgPool) {
        let k = key("pay-42");
        assert_eq!(claim(&pool, &k, "50 EUR").await.unwrap(), Claimed::First);
        assert_eq!(
            claim(&pool, &k, "50 EUR").await.unwrap(),
            Claimed::Replay("result of 50 EUR".to_string())
        );
        let err = claim(&pool, &k, "60 EUR").await.unwrap_err();
        assert!(matches!(err, IdempotencyError::Reused { .. }), "{err}");
        let violation = err.violation("idempotency_key").unwrap();
        assert_eq!(violation.field, "idempotency_key");
        assert!(violation.description.contains("\"pay-42\""), "{violation}");
        assert!(
            violation.description.contains("different request"),
            "{violation}"
        );
    }

    #[sqlx::test(migrator = "crate::db::KIT_MIGRATOR")]
    async fn a_rolled_back_request_leaves_its_key_free(pool: PgPool) {
        let k = key("pay-43");
        let mut tx = pool.begin().await.unwrap();
        let fp = fingerprint("test.pay", &"50 EUR");
        assert_eq!(
            begin::<String>(&mut tx, &k, "test.pay", &fp).await.unwrap(),
            Claimed::First
        );
        tx.rollback().await.unwrap();
        assert_eq!(claim(&pool, &k, "60 EUR").await.unwrap(), Claimed::First);
    }

    #[sqlx::test(migrator = "crate::db::KIT_MIGRATOR")]
    async fn an_expired_key_names_a_new_request_and_is_pruned(pool: PgPool) {
        let k = key("pay-44");
        claim(&pool, &k, "50 EUR").await.unwrap();
        sqlx::query("UPDATE idempotency SET expires_at = now() - interval '1 second'")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(claim(&pool, &k, "60 EUR").await.unwrap(), Claimed::First);
        assert_eq!(
            claim(&pool, &k, "60 EUR").await.unwrap(),
            Claimed::Replay("result of 60 EUR".to_string())
        );
        sqlx::query("UPDATE idempotency SET expires_at = now() - interval '1 second'")
            .execute(&pool)
            .await
            .unwrap();
        let pruned = prune(&pool, Retention::default()).await.unwrap();
        assert_eq!(pruned.idempotency, 1);
    }

    /// Two calls with one key at once: the second waits for the first and replays it.
    #[sqlx::test(migrator = "crate::db::KIT_MIGRATOR")]
    async fn concurrent_calls_with_one_key_have_one_effect(pool: PgPool) {
        let k = key("pay-45");
        let mut first = pool.begin().await.unwrap();
        let fp = fingerprint("test.pay", &"50 EUR");
        assert_eq!(
            begin::<String>(&mut first, &k, "test.pay", &fp)
                .await
                .unwrap(),
            Claimed::First
        );
        let second = tokio::spawn({
            let (pool, k) = (pool.clone(), k.clone());
            async move { claim(&pool, &k, "50 EUR").await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!second.is_finished(), "the second call waits for the first");
        finish(&mut first, &k, &"the one payment").await.unwrap();
        first.commit().await.unwrap();
        assert_eq!(
            second.await.unwrap(),
            Claimed::Replay("the one payment".to_string())
        );
    }

    /// The scheduled pruner runs at once when started (then hourly) and stops on shutdown.
    #[sqlx::test(migrator = "crate::db::KIT_MIGRATOR")]
    async fn the_scheduled_pruner_prunes_at_start_and_stops_on_shutdown(pool: PgPool) {
        claim(&pool, &key("pay-46"), "50 EUR").await.unwrap();
        sqlx::query("UPDATE idempotency SET expires_at = now() - interval '1 second'")
            .execute(&pool)
            .await
            .unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let pruner = tokio::spawn(prune_until(
            shutdown.clone(),
            pool.clone(),
            Retention::default(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency")
                .fetch_one(&pool)
                .await
                .unwrap();
            if left == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the expired key is still there"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), pruner)
            .await
            .expect("the pruner stops on shutdown")
            .unwrap();
    }

    #[sqlx::test(migrator = "crate::db::KIT_MIGRATOR")]
    async fn pruning_keeps_unpublished_and_recent_rows(pool: PgPool) {
        for (id, published) in [
            ("0192f0c1-6b2a-7c3d-8e4f-000000000001", Some("10 days")),
            ("0192f0c1-6b2a-7c3d-8e4f-000000000002", Some("1 day")),
            ("0192f0c1-6b2a-7c3d-8e4f-000000000003", None),
        ] {
            sqlx::query(
                "INSERT INTO outbox (id, topic, aggregate_id, data, correlation_id, traceparent, created_at, published_at)
                 VALUES ($1::uuid, 't', 'a', '{}', '', '', now() - interval '20 days',
                         now() - $2::interval)",
            )
            .bind(id)
            .bind(published)
            .execute(&pool)
            .await
            .unwrap();
        }
        for (id, age) in [
            ("0192f0c1-6b2a-7c3d-8e4f-000000000011", "31 days"),
            ("0192f0c1-6b2a-7c3d-8e4f-000000000012", "2 days"),
        ] {
            sqlx::query(
                "INSERT INTO inbox (event_id, topic, handled_at) VALUES ($1::uuid, 't', now() - $2::interval)",
            )
            .bind(id)
            .bind(age)
            .execute(&pool)
            .await
            .unwrap();
        }
        let pruned = prune(&pool, Retention::default()).await.unwrap();
        assert_eq!(
            pruned,
            Pruned {
                outbox: 1,
                inbox: 1,
                idempotency: 0
            }
        );
        let left: Vec<String> = sqlx::query_scalar("SELECT id::text FROM outbox ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(
            left,
            [
                "0192f0c1-6b2a-7c3d-8e4f-000000000002",
                "0192f0c1-6b2a-7c3d-8e4f-000000000003"
            ],
            "the unpublished row stays however old"
        );
    }
}
