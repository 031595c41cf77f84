//! The binary refuses to start half configured, with one line naming what is wrong.

use std::process::Command;

use sqlx::PgPool;

fn billing() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_carerp-billing"));
    command
        .env("CARERP_TENANT", "acme-motors")
        .env(
            "CARERP_TOKEN_PUBLIC_KEYS",
            carerp_kit::auth::testing::signing_key().public_entry(),
        )
        .env("GRPC_ADDR", "127.0.0.1:0")
        .env("ADMIN_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "pretty");
    command
}

#[test]
fn starting_without_database_url_exits_2_naming_it() {
    let output = billing().env_remove("DATABASE_URL").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("carerp-billing: configuration error: DATABASE_URL is not set"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_tax_rate_is_named() {
    let output = billing()
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .env("CARERP_TAX_RATE_BP", "19%")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("CARERP_TAX_RATE_BP=\"19%\" is invalid"),
        "{stderr}"
    );
}

/// Runs against the test's own (already migrated) database, so nothing lands elsewhere.
#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn an_unknown_time_zone_stops_the_start(pool: PgPool) {
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let output = billing()
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:5432/{database}"),
        )
        .env("CARERP_TIMEZONE", "Europe/Atlantis")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("CARERP_TIMEZONE=\"Europe/Atlantis\" is not a time zone"),
        "{stderr}"
    );
}
