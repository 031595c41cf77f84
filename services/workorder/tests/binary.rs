//! The binary refuses to start half configured, naming what is missing.

use std::process::Command;

fn run(vars: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_carerp-workorder"));
    command
        .env_remove("CUSTOMER_GRPC_URL")
        .env("CARERP_TENANT", "acme-motors")
        .env(
            "CARERP_TOKEN_PUBLIC_KEYS",
            carerp_kit::auth::testing::signing_key().public_entry(),
        )
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        );
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    (output.status.code().unwrap_or(-1), stderr)
}

#[test]
fn starting_without_the_customer_service_url_names_it() {
    let (code, stderr) = run(&[]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("carerp-workorder: configuration error: CUSTOMER_GRPC_URL is not set"),
        "{stderr}"
    );
}

#[test]
fn starting_with_a_malformed_customer_service_url_names_it() {
    let (code, stderr) = run(&[("CUSTOMER_GRPC_URL", "customer:50051")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("CUSTOMER_GRPC_URL=\"customer:50051\" is invalid"),
        "{stderr}"
    );
}
