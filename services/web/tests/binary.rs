//! The binary refuses to start half configured, naming the variable.

use std::process::Command;

fn run(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let keys = carerp_kit::auth::testing::signing_key().public_entry();
    let mut command = Command::new(env!("CARGO_BIN_EXE_carerp-bff"));
    command.env_clear().envs(vars.iter().copied());
    // Past the tenant, the keys are there: the other variables are what is checked.
    if !vars.is_empty() {
        command.env("CARERP_TOKEN_PUBLIC_KEYS", &keys);
    }
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_missing_or_malformed_variable_is_named_and_exits_2() {
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("carerp-bff: configuration error: CARERP_TENANT is not set"),
        "{stderr}"
    );

    let (code, stderr) = run(&[("CARERP_TENANT", "acme")]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("CUSTOMER_GRPC_URL is not set"), "{stderr}");

    let urls = [
        ("CARERP_TENANT", "acme"),
        ("CUSTOMER_GRPC_URL", "http://127.0.0.1:1"),
        ("WORKORDER_GRPC_URL", "http://127.0.0.1:1"),
        ("INVENTORY_GRPC_URL", "http://127.0.0.1:1"),
        ("BILLING_GRPC_URL", "127.0.0.1:1"),
    ];
    let (code, stderr) = run(&urls);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("BILLING_GRPC_URL=\"127.0.0.1:1\" is invalid"),
        "{stderr}"
    );

    let mut bad_addr = urls.to_vec();
    bad_addr[4] = ("BILLING_GRPC_URL", "http://127.0.0.1:1");
    bad_addr.push(("HTTP_ADDR", "localhost"));
    let (code, stderr) = run(&bad_addr);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("HTTP_ADDR=\"localhost\" is invalid"),
        "{stderr}"
    );
}
