//! The binary refuses to start half configured, naming what is missing.

use std::process::Command;

#[test]
fn starting_without_database_url_exits_non_zero_naming_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_carerp-customer"))
        .env_remove("DATABASE_URL")
        .env("CARERP_TENANT", "acme-motors")
        .env(
            "CARERP_TOKEN_PUBLIC_KEYS",
            carerp_kit::auth::testing::signing_key().public_entry(),
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("DATABASE_URL is not set"), "{stderr}");
}

#[test]
fn starting_with_a_malformed_address_names_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_carerp-customer"))
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .env("CARERP_TENANT", "acme-motors")
        .env(
            "CARERP_TOKEN_PUBLIC_KEYS",
            carerp_kit::auth::testing::signing_key().public_entry(),
        )
        .env("GRPC_ADDR", "not-an-address")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("GRPC_ADDR=\"not-an-address\" is invalid"),
        "{stderr}"
    );
}
