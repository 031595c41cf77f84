//! Density: ten garages, each as six processes under `carerp-operator local`, on one private
//! PostgreSQL (`max_connections = 100`) behind one PgBouncer in transaction mode, and one NATS.
//! All idle, then one repair each, one tenant at a time while the others idle: every work
//! order reaches INVOICED, and the server never needs more connections than it allows. The
//! same run with 50 tenants, and its figures, is `just bench-density`; ten keep the suite's
//! time reasonable on a two-core machine (60 processes; 50 tenants are 350).
//!
//! Needs the workspace's binaries (`cargo build --workspace --bins`, as `cargo test
//! --workspace` builds them), the PostgreSQL server binaries and PgBouncer 1.21+ (`bash
//! .ci/pgbouncer` installs one); without PgBouncer it skips with a message (fails under CI).

use std::path::PathBuf;
use std::time::Duration;

use carerp_e2e::density;

/// `target/<profile>/`, where cargo put the workspace's binaries for this test run.
fn binaries_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_idle_garages_share_one_server_behind_pgbouncer_and_each_invoices_a_repair() {
    let Some(pgbouncer) = density::find_pgbouncer() else {
        // CI installs one (.ci/run), so there a missing one is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "no PgBouncer 1.21+ (bash .ci/pgbouncer installs one)"
        );
        eprintln!("skipped: no PgBouncer 1.21+ (bash .ci/pgbouncer installs one)");
        return;
    };
    let dir = binaries_dir();
    assert!(
        dir.join("carerp-operator").exists() && dir.join("carerp-bff").exists(),
        "the service binaries are not built in {}; `cargo build --workspace --bins` builds them",
        dir.display()
    );
    let tenants = std::env::var("DENSITY_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let report = density::run(tenants, &dir, &pgbouncer, Duration::from_secs(15))
        .await
        .unwrap();
    eprintln!("{}", report.to_json());
    assert_eq!(
        report.sagas.len(),
        tenants,
        "every tenant invoiced its repair"
    );
    assert_eq!(report.max_connections, 100);
    assert!(
        report.busiest_connections < report.max_connections,
        "{report:?}"
    );
}
