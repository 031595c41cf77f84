//! Schemathesis (from PyPI; `.ci/schemathesis` installs it) over the whole OpenAPI document
//! of a real garage: the services, PostgreSQL and NATS behind the BFF, signed in as the
//! owner. Two runs: every request it generates from the document, conforming or not, must
//! answer without a server error, with a status and a body the document declares; and every
//! request that conforms must be accepted (`tests/schemathesis.toml` says how, and which
//! operations' rules no schema can say; `docs/openapi.md` explains both).

mod common;

use common::*;
use sqlx::PgPool;

/// Where `.ci/schemathesis` installs it; `SCHEMATHESIS` names another.
fn schemathesis() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("SCHEMATHESIS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/cache/carerp/schemathesis/bin/schemathesis".into());
    path.exists().then_some(path)
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn schemathesis_finds_no_server_error_no_undeclared_answer_and_no_refused_conforming_request(
    pool: PgPool,
) {
    let Some(schemathesis) = schemathesis() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs this test: install Schemathesis with .ci/schemathesis"
        );
        eprintln!("skipped: no Schemathesis (bash .ci/schemathesis installs it)");
        return;
    };
    let g = Garage::start(pool).await;
    // Something to find: a customer with a vehicle, a part, a work order.
    let (customer, vehicle) = g
        .customer_with_vehicle("Ada Fuzz", "WVWZZZ1JZ3W386752")
        .await;
    g.part("FUZZ-1", 10, 1).await;
    g.post(
        "/api/work-orders",
        serde_json::json!({"customerId": customer, "vehicleId": vehicle, "complaint": "Noise"}),
    )
    .await
    .expect(reqwest::StatusCode::CREATED);

    // An owner's API token, as an integration would use: the run resets passwords and
    // changes roles, which end sessions but not API tokens.
    let expires = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let created = g
        .post(
            "/api/api-tokens",
            serde_json::json!({"name": "Schemathesis", "role": "OWNER", "expiresAt": expires}),
        )
        .await
        .expect(reqwest::StatusCode::CREATED);
    let token = created["token"].as_str().unwrap().to_string();

    let examples = std::env::var("SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "15".into());
    // `--config-file` is an option of `schemathesis` itself, so it comes before `run`.
    let run = |config: &[&str]| {
        let mut command = tokio::process::Command::new(&schemathesis);
        command
            .args(config)
            .arg("run")
            .arg(g.url("/docs/openapi.json"))
            .args([
                "--max-examples",
                &examples,
                "--seed",
                "20261203",
                "--workers",
                "2",
            ])
            .args(["--phases", "examples,coverage,fuzzing"])
            // Revoking an API token could end the run's own.
            .args(["--exclude-path", "/api/api-tokens/{id}"])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["--request-timeout", "10", "--no-color"]);
        command
    };
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
    // Every request, conforming or not: no server error, and every answer as declared.
    let mut answers = run(&["--config-file", config]);
    answers.args([
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
    ]);
    // Every request the document allows is accepted: tests/schemathesis.toml turns on
    // positive_data_acceptance alone, supplies the state the document cannot know, and names
    // the operations whose rules no schema can say.
    let mut accepted = run(&["--config-file", config]);
    accepted
        .args(["--mode", "positive"])
        .env(
            "SCHEMATHESIS_HOOKS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis_hooks.py"),
        )
        .env("CARERP_FUZZ_CUSTOMER", &customer)
        .env("CARERP_FUZZ_VEHICLE", &vehicle);

    // The two runs at once: they touch different records (the second creates its own), and
    // the test takes as long as the longer of them.
    let (answers, accepted) = tokio::join!(answers.output(), accepted.output());
    let mut failed = Vec::new();
    for (name, output) in [
        ("every answer as declared", answers),
        ("conforming requests accepted", accepted),
    ] {
        let output = output.expect("schemathesis runs");
        let report = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        println!("=== Schemathesis: {name}\n{report}");
        if !output.status.success() {
            failed.push(format!("{name}:\n{report}"));
        }
    }
    assert!(
        failed.is_empty(),
        "Schemathesis found failures:\n{}",
        failed.join("\n")
    );
    g.stop().await;
}
