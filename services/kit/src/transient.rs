//! Which failures say nothing about the request or the event that met them.
//!
//! The database was away, full, shutting down, or chose this transaction as the loser of a
//! conflict: the same work succeeds once it is back or tried again. One classification, used
//! at both boundaries so they cannot disagree: the gRPC error mapping answers UNAVAILABLE
//! (retry later, [`crate::status::database_error`]), and the consumer runtime retries the
//! event without limit and never dead-letters it ([`crate::consumer`]).
//!
//! Transient:
//! - connection loss and I/O errors, protocol errors (a connection cut mid-message), a pool
//!   that timed out or closed, a crashed connection worker;
//! - SQLSTATE classes `08` (connection exception), `53` (insufficient resources), `57P`
//!   (operator intervention: shutdown, crash, cannot connect now) and `58` (system error);
//! - `40001` serialization failure, `40P01` deadlock, `25006` read-only transaction (a
//!   standby during fail-over), `57014` statement cancelled (timeout), `55P03` lock not
//!   available (lock timeout).
//!
//! Everything else (constraint violations, bad text, a missing row, a type mismatch) is about
//! the work itself and is not retried as if the database were at fault.

use std::error::Error;

/// SQLSTATE classes (prefixes) that are transient as a whole.
const TRANSIENT_CLASSES: [&str; 4] = ["08", "53", "57P", "58"];

/// Single SQLSTATE codes outside those classes that are transient.
const TRANSIENT_CODES: [&str; 5] = ["40001", "40P01", "25006", "57014", "55P03"];

/// True when a PostgreSQL error with this SQLSTATE may succeed if tried again unchanged.
pub fn is_transient_sqlstate(code: &str) -> bool {
    TRANSIENT_CLASSES
        .iter()
        .any(|class| code.starts_with(class))
        || TRANSIENT_CODES.contains(&code)
}

/// True when the database failure is the database's (or the connection's), not the work's.
pub fn is_transient_database(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_sqlstate(&code)),
        _ => false,
    }
}

/// True when `err`, or what it wraps, is transient. Services wrap database errors in their
/// own error types, so the chain of sources is followed to the first database or I/O error,
/// which decides; an error with neither in its chain is not transient.
pub fn is_transient(err: &(dyn Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(db) = e.downcast_ref::<sqlx::Error>() {
            return is_transient_database(db);
        }
        if e.is::<std::io::Error>() {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("database error: {0}")]
    struct ServiceError(#[from] sqlx::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("handling failed: {0}")]
    struct Outer(#[source] ServiceError);

    #[test]
    fn transient_sqlstates_are_the_listed_classes_and_codes() {
        let transient = [
            "08000", "08003", "08006", "08P01", // connection exceptions
            "53000", "53100", "53200", "53300", // insufficient resources
            "57P01", "57P02", "57P03", "57P04", "57P05", // shutdown, crash, cannot connect
            "58000", "58030", "58P01", // system errors
            "40001", "40P01", "25006", "57014", "55P03",
        ];
        for code in transient {
            assert!(is_transient_sqlstate(code), "{code} is transient");
        }
        let permanent = [
            "23505", // unique violation
            "23503", // foreign key
            "22021", // bad text
            "22P02", // invalid text representation
            "42P01", // undefined table
            "40002", // integrity constraint at commit: a real violation
            "25001", // active transaction: a bug, not an outage
            "57000", // operator intervention, but not one of 57P
            "55000", // object not in prerequisite state
            "P0001", // raise exception
        ];
        for code in permanent {
            assert!(!is_transient_sqlstate(code), "{code} is not transient");
        }
    }

    #[test]
    fn lost_connections_and_exhausted_pools_are_transient() {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(is_transient_database(&sqlx::Error::Io(io())));
        assert!(is_transient_database(&sqlx::Error::Protocol(
            "unexpected end of message".into()
        )));
        assert!(is_transient_database(&sqlx::Error::PoolTimedOut));
        assert!(is_transient_database(&sqlx::Error::PoolClosed));
        assert!(is_transient_database(&sqlx::Error::WorkerCrashed));
        assert!(!is_transient_database(&sqlx::Error::RowNotFound));
        assert!(!is_transient_database(&sqlx::Error::ColumnNotFound(
            "x".into()
        )));
        assert!(!is_transient_database(&sqlx::Error::InvalidArgument(
            "x".into()
        )));
    }

    #[test]
    fn the_first_database_error_in_the_chain_decides() {
        let wrapped = Outer(ServiceError(sqlx::Error::PoolTimedOut));
        assert!(is_transient(&wrapped));
        let missing = Outer(ServiceError(sqlx::Error::RowNotFound));
        assert!(!is_transient(&missing));
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe");
        assert!(is_transient(&io));
        let plain: Box<dyn Error + Send + Sync> = "the event makes no sense".into();
        assert!(!is_transient(plain.as_ref()));
    }

    /// Real errors of a real server, not only constructed ones.
    #[sqlx::test(migrations = false)]
    async fn a_real_lock_timeout_is_transient_and_a_real_unique_violation_is_not(
        pool: sqlx::PgPool,
    ) {
        sqlx::query("CREATE TABLE t (id INT PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&pool)
            .await
            .unwrap();
        let duplicate = sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(!is_transient_database(&duplicate), "{duplicate}");

        let mut holder = pool.begin().await.unwrap();
        sqlx::query("SELECT * FROM t FOR UPDATE")
            .execute(&mut *holder)
            .await
            .unwrap();
        let mut waiter = pool.begin().await.unwrap();
        sqlx::query("SET LOCAL lock_timeout = '50ms'")
            .execute(&mut *waiter)
            .await
            .unwrap();
        let timed_out = sqlx::query("SELECT * FROM t FOR UPDATE")
            .execute(&mut *waiter)
            .await
            .unwrap_err();
        assert!(is_transient_database(&timed_out), "{timed_out}");
        let mut slow = pool.begin().await.unwrap();
        sqlx::query("SET LOCAL statement_timeout = '10ms'")
            .execute(&mut *slow)
            .await
            .unwrap();
        let cancelled = sqlx::query("SELECT pg_sleep(1)")
            .execute(&mut *slow)
            .await
            .unwrap_err();
        assert!(is_transient_database(&cancelled), "{cancelled}");
    }
}
