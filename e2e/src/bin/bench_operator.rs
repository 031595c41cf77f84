//! `cargo run -p carerp-e2e --bin bench-operator` (`just bench-operator`): the operator on the
//! real test control plane (`e2e/src/cluster.rs`), with the chart's RBAC and the real
//! PostgreSQL and NATS. Prints the time from apply to Ready of one tenant and of 50 applied at
//! once, the reconciles per second once they have settled, and the operator's resident memory
//! with the 50. Bounded: every wait has a deadline, and the tenants, their databases and streams
//! are removed at the end whatever happened.
//!
//! The operator is the binary the cluster suites run (`CARERP_OPERATOR_BIN`, or
//! target/debug/carerp-operator): build it first (`cargo build -p carerp-operator --bins`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use carerp_e2e::cluster::{ControlPlane, Operator, tail};
use carerp_operator::crd::{CarErpTenant, Phase};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

/// How many tenants the second measurement applies at once.
const MANY: usize = 50;
/// How long the reconcile rate is sampled once everything is Ready.
const STEADY: Duration = Duration::from_secs(30);

fn tenant(name: &str) -> anyhow::Result<CarErpTenant> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "carerp.io/v1alpha1",
        "kind": "CarErpTenant",
        "metadata": { "name": name },
        "spec": {
            "displayName": format!("{name} garage"),
            "plan": "Starter",
            "database": { "deletionPolicy": "Delete" }
        }
    }))?)
}

/// Creates `names` at once and waits until every one is Ready; the time that took.
async fn apply_until_ready(
    api: &Api<CarErpTenant>,
    operator: &mut Operator,
    names: &[String],
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let creates = names.iter().map(|name| async move {
        api.create(&PostParams::default(), &tenant(name)?)
            .await
            .with_context(|| format!("create tenant {name}"))
    });
    futures::future::try_join_all(creates).await?;
    let deadline = started + timeout;
    loop {
        let list = api.list(&Default::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|t| {
                names
                    .iter()
                    .any(|n| t.metadata.name.as_deref() == Some(n.as_str()))
            })
            .filter(|t| t.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready))
            .count();
        if ready == names.len() {
            return Ok(started.elapsed());
        }
        if let Some(status) = operator.process.exited() {
            bail!(
                "the operator exited ({status}):\n{}",
                tail(&operator.process.log(), 40)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{ready}/{} tenants Ready after {timeout:?}; operator log:\n{}",
                names.len(),
                tail(&operator.process.log(), 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Resident memory of a process, from `/proc/<pid>/status`, in MiB.
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")?;
    Ok(kib / 1024.0)
}

/// Deletes the tenants, waits (bounded) for the operator to let them go, then drops whatever
/// is left of their databases and streams directly.
async fn clean_up(api: &Api<CarErpTenant>, names: &[String]) {
    for name in names {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        match api.list(&Default::default()).await {
            Ok(list)
                if !list
                    .items
                    .iter()
                    .any(|t| names.iter().any(|n| t.metadata.name.as_deref() == Some(n))) =>
            {
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let (Ok(pool), Ok(client)) = (
        sqlx::PgPool::connect(&url).await,
        async_nats::connect(nats).await,
    ) else {
        eprintln!("bench-operator: cannot reach PostgreSQL or NATS to clean up");
        return;
    };
    let js = async_nats::jetstream::new(client);
    for name in names {
        if let Err(err) = carerp_operator::provision::drop_databases(&pool, name).await {
            eprintln!("bench-operator: drop databases of {name}: {err}");
        }
        if let Err(err) = carerp_operator::provision::delete_stream(&js, name).await {
            eprintln!("bench-operator: delete stream of {name}: {err}");
        }
    }
}

/// Starts the operator with the chart's RBAC.
async fn start_operator(plane: &ControlPlane) -> anyhow::Result<Operator> {
    plane.install_chart(&[])?;
    let kubeconfig = plane
        .service_account_kubeconfig("carerp-system", "carerp-operator", None)
        .await?;
    Operator::start(plane, "bench-0", &kubeconfig, &[("RUST_LOG", "info")])
}

async fn bench(
    api: &Api<CarErpTenant>,
    operator: &mut Operator,
    names: &mut Vec<String>,
) -> anyhow::Result<()> {
    let suffix = &uuid::Uuid::now_v7().simple().to_string()[24..];

    let one = vec![format!("bench-{suffix}-one")];
    names.extend(one.iter().cloned());
    let took = apply_until_ready(api, operator, &one, Duration::from_secs(180)).await?;
    println!("1 tenant: apply to Ready in {:.1} s", took.as_secs_f64());
    let mut figures = serde_json::Map::new();
    figures.insert("one_tenant_ready_seconds".into(), took.as_secs_f64().into());

    let many: Vec<String> = (0..MANY)
        .map(|i| format!("bench-{suffix}-{i:02}"))
        .collect();
    names.extend(many.iter().cloned());
    let took = apply_until_ready(api, operator, &many, Duration::from_secs(900)).await?;
    println!(
        "{MANY} tenants at once: apply to all Ready in {:.1} s",
        took.as_secs_f64()
    );
    figures.insert("tenants_at_once".into(), MANY.into());
    figures.insert("all_ready_seconds".into(), took.as_secs_f64().into());

    // Steady state: the reconciles the roll-out's last Deployment status changes set off die
    // down over the first window; the second is the steady rate (the resync is 5 minutes).
    let mut last = operator
        .reconciliations()
        .await
        .context("the operator's /metrics")?;
    for (window, key) in [
        ("settling", "settling_reconciles_per_second"),
        ("steady state", "steady_reconciles_per_second"),
    ] {
        tokio::time::sleep(STEADY).await;
        let now = operator
            .reconciliations()
            .await
            .context("the operator's /metrics")?;
        println!(
            "{window} with {} tenants: {:.2} reconciles/s ({} in {} s)",
            MANY + 1,
            now.saturating_sub(last) as f64 / STEADY.as_secs_f64(),
            now.saturating_sub(last),
            STEADY.as_secs()
        );
        figures.insert(
            key.into(),
            (now.saturating_sub(last) as f64 / STEADY.as_secs_f64()).into(),
        );
        last = now;
    }
    println!(
        "(a settled tenant is looked at again every {} s, on a change of its own or of its Deployments: {:.2} reconciles/s on average)",
        carerp_operator::config::RESYNC.as_secs(),
        (MANY + 1) as f64 / carerp_operator::config::RESYNC.as_secs_f64()
    );
    let rss = rss_mib(operator.process.pid())?;
    println!("operator RSS with {} tenants: {rss:.1} MiB", MANY + 1);
    figures.insert("operator_rss_mib".into(), rss.into());
    let file = carerp_e2e::bench::record("operator", figures.into())?;
    println!("figures written to {}", file.display());
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let plane = match ControlPlane::start().await {
        Ok(Some(plane)) => plane,
        Ok(None) => return ExitCode::FAILURE,
        Err(err) => {
            eprintln!("bench-operator: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut names = Vec::new();
    let result: anyhow::Result<()> = async {
        let mut operator = start_operator(&plane).await?;
        let api: Api<CarErpTenant> = Api::all(plane.client().await?);
        let result = bench(&api, &mut operator, &mut names).await;
        // The operator still runs: it removes the tenants' finalizers, dropping what they had.
        clean_up(&api, &names).await;
        result
    }
    .await;
    drop(plane);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-operator: {err:#}");
            ExitCode::FAILURE
        }
    }
}
