//! `just bench-operator`: renders the desired state of 1,000 tenants (the acme-motors example
//! under 1,000 names) and prints the time per tenant and the process's peak memory; the
//! figures also go to `target/bench/bench.json` (key `render`).

use std::time::Instant;

use anyhow::Context as _;

use carerp_operator::config::OperatorConfig;
use carerp_operator::desired::{desired, render_yaml};

const TENANTS: usize = 1_000;

/// Peak resident set size from /proc (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/examples/acme-motors.yaml"
    );
    let yaml = std::fs::read_to_string(path).context("crds/examples/acme-motors.yaml")?;
    let template = carerp_operator::validate::parse_tenant(&yaml)
        .map_err(|err| anyhow::anyhow!("crds/examples/acme-motors.yaml: {err}"))?;
    let config = OperatorConfig::example();
    let tenants: Vec<_> = (0..TENANTS)
        .map(|i| {
            let mut t = template.clone();
            t.metadata.name = Some(format!("garage-{i:04}"));
            t.metadata.uid = Some(format!("00000000-0000-4000-8000-{i:012}"));
            t
        })
        .collect();

    let started = Instant::now();
    let mut objects = 0;
    for t in &tenants {
        objects += desired(t, &config, &Default::default(), None).len();
    }
    let build = started.elapsed();

    let started = Instant::now();
    let mut bytes = 0;
    for t in &tenants {
        bytes += render_yaml(&desired(t, &config, &Default::default(), None))?.len();
    }
    let render = started.elapsed();

    println!("tenants:               {TENANTS}");
    println!(
        "objects:               {objects} ({} per tenant)",
        objects / TENANTS
    );
    println!(
        "desired state:         {:.1} µs per tenant",
        build.as_secs_f64() * 1e6 / TENANTS as f64
    );
    println!(
        "desired state + YAML:  {:.1} µs per tenant ({} KiB per tenant)",
        render.as_secs_f64() * 1e6 / TENANTS as f64,
        bytes / TENANTS / 1024
    );
    let peak = peak_rss_mib();
    match peak {
        Some(mib) => println!("peak memory:           {mib:.1} MiB"),
        None => println!("peak memory:           unknown (no /proc/self/status)"),
    }
    let file = carerp_e2e::bench::record(
        "render",
        serde_json::json!({
            "tenants": TENANTS,
            "objects_per_tenant": objects / TENANTS,
            "desired_state_us_per_tenant": build.as_secs_f64() * 1e6 / TENANTS as f64,
            "desired_state_and_yaml_us_per_tenant": render.as_secs_f64() * 1e6 / TENANTS as f64,
            "yaml_bytes_per_tenant": bytes / TENANTS,
            "peak_rss_mib": peak,
        }),
    )?;
    println!("figures written to {}", file.display());
    Ok(())
}
