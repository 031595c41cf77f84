//! The binary refuses to start half configured, naming what is missing and never printing a
//! key or a password.

use std::process::{Command, Output};

fn run(vars: &[(&str, &str)]) -> Output {
    let key = carerp_kit::auth::testing::signing_key();
    let mut command = Command::new(env!("CARGO_BIN_EXE_carerp-identity"));
    command
        .env_clear()
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .env("CARERP_TENANT", "acme-motors")
        .env("CARERP_TOKEN_PUBLIC_KEYS", key.public_entry())
        .env("GRPC_ADDR", "127.0.0.1:0")
        .env("ADMIN_ADDR", "127.0.0.1:0");
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().unwrap()
}

#[test]
fn starting_without_a_signing_key_exits_naming_it() {
    let output = run(&[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("CARERP_TOKEN_SIGNING_KEY is not set"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_signing_key_is_named_but_never_printed() {
    let value = "k1:c2VjcmV0LWtleS1tYXRlcmlhbA==";
    let output = run(&[("CARERP_TOKEN_SIGNING_KEY", value)]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("CARERP_TOKEN_SIGNING_KEY=\"<redacted>\" is invalid"),
        "{stderr}"
    );
    assert!(!stderr.contains("c2VjcmV0"), "{stderr}");
}

#[test]
fn a_weak_owner_password_is_refused_without_printing_it() {
    let key = carerp_kit::auth::testing::signing_key().to_secret_value();
    let output = run(&[
        ("CARERP_TOKEN_SIGNING_KEY", &key),
        ("CARERP_OWNER_PASSWORD", "password1234"),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CARERP_OWNER_PASSWORD="), "{stderr}");
    assert!(!stderr.contains("password1234"), "{stderr}");
    assert!(!stderr.contains(&key[key.len() - 12..]), "{stderr}");
}
