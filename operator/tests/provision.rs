//! The provisioners against the real PostgreSQL (`DATABASE_URL`, an admin connection) and NATS
//! (`NATS_URL`). Each test uses its own tenant name and removes what it created.
//!
//! The local server trusts every connection, so passwords are checked through the SCRAM
//! verifier PostgreSQL stores (`pg_authid.rolpassword`), and access through `CONNECT`.

use std::collections::BTreeMap;
use std::time::Duration;

use carerp_operator::crd::{MessagingSpec, Service};
use carerp_operator::provision::{self, database_name};
use carerp_operator::scram::{Verifier, stored_verifies};
use sqlx::{Connection, PgConnection, PgPool};

mod common;
use common::scram_server::ScramServer;

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn admin() -> PgPool {
    PgPool::connect(&admin_url())
        .await
        .expect("PostgreSQL answers")
}

fn unique_tenant(prefix: &str) -> String {
    let suffix: String = provision::new_password()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase())
        .take(8)
        .collect();
    format!("{prefix}-{suffix}")
}

/// Drops the tenant's databases even when the test failed half way. It runs on its own
/// thread and runtime with its own connection: the test's runtime is blocked meanwhile.
struct Cleanup {
    tenant: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let tenant = self.tenant.clone();
        let result = std::thread::spawn(move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                let pool = admin().await;
                provision::drop_databases(&pool, &tenant).await
            })
        })
        .join();
        if let Ok(Err(err)) = result {
            eprintln!("cleanup failed: {err}");
        }
    }
}

async fn verifier(pool: &PgPool, role: &str) -> Option<String> {
    sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(role)
        .fetch_optional(pool)
        .await
        .unwrap()
        .flatten()
}

async fn owner(pool: &PgPool, db: &str) -> Option<String> {
    sqlx::query_scalar("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1")
        .bind(db)
        .fetch_optional(pool)
        .await
        .unwrap()
}

async fn connect_as(role: &str, db: &str) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect(&format!("postgres://{role}:x@127.0.0.1:5432/{db}")).await
}

#[tokio::test]
async fn databases_are_created_once_and_reused() {
    let pool = admin().await;
    let tenant = unique_tenant("pg-twice");
    let _cleanup = Cleanup {
        tenant: tenant.clone(),
    };

    let first = provision::ensure_databases(&pool, &tenant, &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(first.len(), 5, "one database per domain service");
    let name = database_name(&tenant, Service::Customer);
    assert_eq!(owner(&pool, &name).await.as_deref(), Some(name.as_str()));
    let stored = verifier(&pool, &name).await.expect("role has a password");
    assert!(stored.starts_with("SCRAM-SHA-256$"));

    // Second run with the passwords read back from the Secrets: nothing changes.
    let second = provision::ensure_databases(&pool, &tenant, &first)
        .await
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(owner(&pool, &name).await.as_deref(), Some(name.as_str()));

    // The owner can connect and create tables; another tenant role and PUBLIC cannot connect.
    let mut conn = connect_as(&name, &name).await.unwrap();
    sqlx::query("CREATE TABLE t (id int)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let other = database_name(&tenant, Service::Billing);
    let err = connect_as(&other, &name).await.unwrap_err();
    assert!(
        err.to_string().contains("permission denied"),
        "another service's role must not reach this database: {err}"
    );
    let public_connect: bool =
        sqlx::query_scalar("SELECT has_database_privilege('public', $1, 'CONNECT')")
            .bind(&name)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!public_connect);
}

#[tokio::test]
async fn lost_secret_resets_the_password() {
    let pool = admin().await;
    let tenant = unique_tenant("pg-reset");
    let _cleanup = Cleanup {
        tenant: tenant.clone(),
    };
    let name = database_name(&tenant, Service::Inventory);
    let first = provision::ensure_database(&pool, &tenant, Service::Inventory, None)
        .await
        .unwrap();
    let v1 = verifier(&pool, &name).await.unwrap();
    let second = provision::ensure_database(&pool, &tenant, Service::Inventory, None)
        .await
        .unwrap();
    assert_ne!(first, second, "a new password is generated");
    let v2 = verifier(&pool, &name).await.unwrap();
    assert_ne!(v1, v2, "and set on the role");
    let kept = provision::ensure_database(&pool, &tenant, Service::Inventory, Some(&second))
        .await
        .unwrap();
    assert_eq!(kept, second, "an existing Secret's password is kept");
}

/// A second run with the same password sends nothing: a new `ALTER ROLE ... PASSWORD` would
/// store a verifier with a fresh salt.
#[tokio::test]
async fn an_unchanged_password_is_not_sent_again() {
    let pool = admin().await;
    let tenant = unique_tenant("pg-same");
    let _cleanup = Cleanup {
        tenant: tenant.clone(),
    };
    let name = database_name(&tenant, Service::Customer);
    let password = provision::ensure_database(&pool, &tenant, Service::Customer, None)
        .await
        .unwrap();
    let first = verifier(&pool, &name).await.unwrap();
    assert!(stored_verifies(Some(&first), &password));
    assert_eq!(Verifier::parse(&first).unwrap().iterations, 4096);

    for _ in 0..2 {
        provision::ensure_database(&pool, &tenant, Service::Customer, Some(&password))
            .await
            .unwrap();
        assert_eq!(verifier(&pool, &name).await.unwrap(), first);
    }
}

/// A password changed in the Secret (or on the role by hand) is applied, as a verifier.
#[tokio::test]
async fn a_changed_password_is_applied() {
    let pool = admin().await;
    let tenant = unique_tenant("pg-change");
    let _cleanup = Cleanup {
        tenant: tenant.clone(),
    };
    let name = database_name(&tenant, Service::Billing);
    let old = provision::ensure_database(&pool, &tenant, Service::Billing, None)
        .await
        .unwrap();
    let new = provision::new_password();
    provision::ensure_database(&pool, &tenant, Service::Billing, Some(&new))
        .await
        .unwrap();
    let stored = verifier(&pool, &name).await.unwrap();
    assert!(stored_verifies(Some(&stored), &new));
    assert!(!stored_verifies(Some(&stored), &old));

    // Changed behind the operator's back (PostgreSQL hashing it): set back on the next run.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE \"{name}\" PASSWORD 'by-hand' CREATEDB"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let by_hand = verifier(&pool, &name).await.unwrap();
    assert!(
        stored_verifies(Some(&by_hand), "by-hand"),
        "our derivation agrees with PostgreSQL's"
    );
    provision::ensure_database(&pool, &tenant, Service::Billing, Some(&new))
        .await
        .unwrap();
    assert!(stored_verifies(
        verifier(&pool, &name).await.as_deref(),
        &new
    ));
    let createdb: bool = sqlx::query_scalar("SELECT rolcreatedb FROM pg_roles WHERE rolname = $1")
        .bind(&name)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!createdb, "the role's attributes are put back too");
}

/// On a server that asks for passwords, the role logs in with the password in force and with
/// no other: the verifier computed here is one PostgreSQL's SCRAM exchange accepts.
#[tokio::test]
async fn the_role_logs_in_with_its_password() {
    let server = ScramServer::start();
    let pool = server.admin().await;
    let tenant = "pg-login";
    let name = database_name(tenant, Service::Workorder);
    let password = provision::ensure_database(&pool, tenant, Service::Workorder, None)
        .await
        .unwrap();
    let mut conn = PgConnection::connect_with(&server.over_tcp(&name, &password, &name))
        .await
        .expect("the role logs in with its password");
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(user, name);
    conn.close().await.unwrap();

    let err = PgConnection::connect_with(&server.over_tcp(&name, "wrong", &name))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );

    // A changed password: the new one logs in, the old one no longer does.
    let new = provision::new_password();
    provision::ensure_database(&pool, tenant, Service::Workorder, Some(&new))
        .await
        .unwrap();
    PgConnection::connect_with(&server.over_tcp(&name, &new, &name))
        .await
        .expect("the new password logs in")
        .close()
        .await
        .unwrap();
    assert!(
        PgConnection::connect_with(&server.over_tcp(&name, &password, &name))
            .await
            .is_err()
    );
    pool.close().await;
}

#[tokio::test]
async fn half_finished_runs_are_completed() {
    let pool = admin().await;
    let tenant = unique_tenant("pg-half");
    let _cleanup = Cleanup {
        tenant: tenant.clone(),
    };
    // A run that died after creating the role.
    let customer = database_name(&tenant, Service::Customer);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE \"{customer}\" LOGIN"
    )))
    .execute(&pool)
    .await
    .unwrap();
    // A database created by hand, owned by the admin, with no role.
    let billing = database_name(&tenant, Service::Billing);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{billing}\""
    )))
    .execute(&pool)
    .await
    .unwrap();

    provision::ensure_databases(&pool, &tenant, &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        owner(&pool, &customer).await.as_deref(),
        Some(customer.as_str())
    );
    assert_eq!(
        owner(&pool, &billing).await.as_deref(),
        Some(billing.as_str())
    );
    assert!(verifier(&pool, &customer).await.is_some());
}

#[tokio::test]
async fn delete_forces_connections_out_and_drops_everything() {
    let pool = admin().await;
    let tenant = unique_tenant("pg-drop");
    let _cleanup = Cleanup {
        tenant: tenant.clone(),
    };
    provision::ensure_databases(&pool, &tenant, &BTreeMap::new())
        .await
        .unwrap();
    let name = database_name(&tenant, Service::Workorder);
    let mut held = connect_as(&name, &name).await.unwrap();

    provision::drop_databases(&pool, &tenant).await.unwrap();
    assert_eq!(owner(&pool, &name).await, None, "database dropped");
    let role: Option<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname = $1")
            .bind(&name)
            .fetch_optional(&pool)
            .await
            .unwrap();
    assert_eq!(role, None, "role dropped");
    assert!(
        sqlx::query("SELECT 1").execute(&mut held).await.is_err(),
        "the open connection was terminated"
    );
    // Dropping what is gone is fine.
    provision::drop_databases(&pool, &tenant).await.unwrap();
}

async fn jetstream() -> async_nats::jetstream::Context {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = async_nats::connect(url).await.expect("NATS answers");
    async_nats::jetstream::new(client)
}

#[tokio::test]
async fn stream_is_created_updated_and_deleted() {
    let js = jetstream().await;
    let tenant = unique_tenant("js");
    let name = provision::stream_name(&tenant);

    let spec = MessagingSpec::default();
    let info = provision::ensure_stream(&js, &tenant, &spec).await.unwrap();
    assert_eq!(info.config.name, name);
    assert_eq!(info.config.subjects, [format!("carerp.{tenant}.>")]);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    assert_eq!(
        info.config.storage,
        async_nats::jetstream::stream::StorageType::File
    );

    // Running twice is fine; a changed spec updates the stream in place.
    provision::ensure_stream(&js, &tenant, &spec).await.unwrap();
    let shorter = MessagingSpec {
        max_age: "1h".into(),
        dead_letter_max_age: "48h".into(),
        ..MessagingSpec::default()
    };
    let info = provision::ensure_stream(&js, &tenant, &shorter)
        .await
        .unwrap();
    assert_eq!(info.config.max_age, Duration::from_secs(3600));
    let dead_letters = carerp_kit::envelope::dlq_stream_name(&tenant);
    let mut dlq = js.get_stream(&dead_letters).await.unwrap();
    assert_eq!(
        dlq.info().await.unwrap().config.max_age,
        Duration::from_secs(48 * 3600),
        "the dead letters are kept as the spec says"
    );

    // The duplicate window drops a message published twice with the same id.
    let subject = format!("carerp.{tenant}.customer.created");
    for _ in 0..2 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", "event-1");
        js.publish_with_headers(subject.clone(), headers, "{}".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut stream = js.get_stream(&name).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);

    assert!(provision::delete_stream(&js, &tenant).await.unwrap());
    assert!(js.get_stream(&name).await.is_err(), "stream is gone");
    assert!(
        js.get_stream(&dead_letters).await.is_err(),
        "and so are the dead letters"
    );
    assert!(
        !provision::delete_stream(&js, &tenant).await.unwrap(),
        "deleting again reports there was nothing"
    );
}
