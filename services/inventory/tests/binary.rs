//! The binary refuses to start half configured, with one line naming what is wrong.

use std::process::Command;

fn run(vars: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_carerp-inventory"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("CARERP_TENANT");
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    (output.status.code().unwrap_or(-1), stderr)
}

#[test]
fn without_database_url_it_exits_2_naming_the_variable() {
    let (code, stderr) = run(&[("CARERP_TENANT", "acme-motors")]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("carerp-inventory: configuration error: DATABASE_URL is not set"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_variable_is_named_with_its_value() {
    let (code, stderr) = run(&[
        ("CARERP_TENANT", "acme-motors"),
        (
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
        ("CARERP_CURRENCY", "euro"),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("CARERP_CURRENCY=\"euro\" is invalid"),
        "{stderr}"
    );
}
