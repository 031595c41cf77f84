//! `just bench-operator`: renders the desired state of 1,000 tenants (the acme-motors example
//! under 1,000 names) and prints the time per tenant and the process's peak memory.

use std::time::Instant;

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

fn main() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/examples/acme-motors.yaml"
    );
    let yaml = std::fs::read_to_string(path).expect("crds/examples/acme-motors.yaml");
    let template = carerp_operator::validate::parse_tenant(&yaml).expect("valid example");
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
        bytes += render_yaml(&desired(t, &config, &Default::default(), None))
            .expect("YAML")
            .len();
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
    match peak_rss_mib() {
        Some(mib) => println!("peak memory:           {mib:.1} MiB"),
        None => println!("peak memory:           unknown (no /proc/self/status)"),
    }
}
