//! `just bench-density`: 50 tenants (`BENCH_TENANTS`) from the release binaries on one private
//! PostgreSQL (`max_connections = 100`) behind PgBouncer, one NATS: start-up, total idle RSS,
//! the server's connections idle and at the busiest, and completion -> INVOICED p50/p99 of
//! one saga per tenant while the others idle. Figures also in bench.json (`density`).

use std::time::Duration;

use anyhow::Context as _;
use carerp_e2e::{bench, density};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tenants: usize = std::env::var("BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let pgbouncer = density::find_pgbouncer()
        .context("no PgBouncer 1.21+: run `bash .ci/pgbouncer` (it installs one)")?;
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("no folder of the binary")?;
    let report = density::run(tenants, dir, &pgbouncer, Duration::from_secs(20)).await?;
    let figures = report.to_json();
    println!("{}", serde_json::to_string_pretty(&figures)?);
    let path = bench::record("density", figures)?;
    println!("figures in {}", path.display());
    Ok(())
}
