//! The REST mix against a real tenant, beside PostgreSQL's own speed in the same run.
//!
//! `carerp-operator local` starts a tenant of this run's own from the binaries next to this
//! one (release builds under `just bench-rest`), as `cargo dev` does; 16 clients then drive
//! `POST /api/customers`, `GET /api/customers/{id}` and `GET /api/dashboard` through its BFF,
//! signed in as the owner, each path for `BENCH_SECONDS` (default 10). pgbench runs a
//! single-row INSERT and a SELECT by key at the same concurrency on the same server, and each
//! path is printed with its rate, p50/p99 and its ratio to that yardstick. Before and after
//! the load the tenant idles for `BENCH_IDLE_SECONDS` (default 30): its PostgreSQL
//! connections (`pg_stat_activity`) and the resident memory of its processes are taken then.
//! Every figure also goes to `target/bench/bench.json` (key `rest`), so two runs compare.
//!
//! Latencies are exact percentiles of every request's time, not sampled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use carerp_e2e::bench;
use carerp_e2e::local::{LocalTenant, OWNER_PASSWORD};
use carerp_operator::crd::Service;
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;

const CLIENTS: usize = 16;
const DATABASE_SERVICES: [Service; 5] = [
    Service::Customer,
    Service::Workorder,
    Service::Inventory,
    Service::Billing,
    Service::Identity,
];

fn seconds(var: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let run_for = seconds("BENCH_SECONDS", 10);
    let idle_for = seconds("BENCH_IDLE_SECONDS", 30);
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin = sqlx::PgPool::connect(&admin_url).await?;

    // First, while the server has connections to spare: a tenant under load may hold many.
    let yardstick = Yardstick::run(&admin, &admin_url, run_for).await?;
    yardstick.insert.print("pgbench single-row INSERT");
    yardstick.select.print("pgbench SELECT by key");

    let tenant = LocalTenant::start("Bench Garage", &[])?;
    let databases: Vec<String> = DATABASE_SERVICES
        .iter()
        .map(|s| carerp_operator::provision::database_name(&tenant.name, *s))
        .collect();
    println!(
        "tenant {} up (bff {}); idling {} s",
        tenant.name,
        tenant.bff,
        idle_for.as_secs()
    );
    tokio::time::sleep(idle_for).await;
    let idle_before = Idle::measure(&admin, &databases, tenant.child.id()).await?;
    idle_before.print("idle after start");

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    let base = tenant.bff.clone();
    let session: Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": tenant.owner_email, "password": OWNER_PASSWORD}))
        .send()
        .await?
        .error_for_status()
        .context("signing in as the owner")?
        .json()
        .await?;
    let token = session["accessToken"]
        .as_str()
        .context("no accessToken in the sign-in answer")?
        .to_string();

    let mut paths = BTreeMap::new();
    let counted = Transactions::count(&admin, &databases).await?;
    let (mut create, ids) = load(run_for, {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        move |client, n| {
            http.post(format!("{base}/api/customers"))
                .bearer_auth(&token)
                .json(&json!({
                    "name": format!("Bench Customer {client}-{n}"),
                    "email": format!("bench-{client}-{n}@example.com"),
                }))
        }
    })
    .await?;
    counted.record(&mut create).await?;
    create.print("POST /api/customers");
    anyhow::ensure!(!ids.is_empty(), "no customer was created");
    let counted = Transactions::count(&admin, &databases).await?;
    let (mut read, _) = load(run_for, {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        move |client, n| {
            let id = &ids[(client * 7919 + n) % ids.len()];
            http.get(format!("{base}/api/customers/{id}"))
                .bearer_auth(&token)
        }
    })
    .await?;
    counted.record(&mut read).await?;
    read.print("GET /api/customers/{id}");
    let counted = Transactions::count(&admin, &databases).await?;
    let (mut dashboard, _) = load(run_for, {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        move |_, _| {
            http.get(format!("{base}/api/dashboard"))
                .bearer_auth(&token)
        }
    })
    .await?;
    counted.record(&mut dashboard).await?;
    dashboard.print("GET /api/dashboard");
    let connections_after_load = connections(&admin, &databases).await?;
    println!("PostgreSQL connections of the tenant right after the load: {connections_after_load}");

    let ratio = |path: &Figures, to: &Figures| path.rate / to.rate.max(f64::MIN_POSITIVE);
    println!(
        "ratio to the yardstick: POST /api/customers {:.2} of INSERT, GET /api/customers/{{id}} {:.2} of SELECT",
        ratio(&create, &yardstick.insert),
        ratio(&read, &yardstick.select)
    );

    println!("idling {} s", idle_for.as_secs());
    tokio::time::sleep(idle_for).await;
    let idle_after = Idle::measure(&admin, &databases, tenant.child.id()).await?;
    idle_after.print("idle after the load");

    paths.insert(
        "post_customers",
        create.json(Some(ratio(&create, &yardstick.insert))),
    );
    paths.insert(
        "get_customer",
        read.json(Some(ratio(&read, &yardstick.select))),
    );
    paths.insert("get_dashboard", dashboard.json(None));
    let figures = json!({
        "clients": CLIENTS,
        "seconds_per_path": run_for.as_secs(),
        "paths": paths,
        "pgbench_insert": yardstick.insert.json(None),
        "pgbench_select": yardstick.select.json(None),
        "connections_after_load": connections_after_load,
        "idle_after_start": idle_before.json(),
        "idle_after_load": idle_after.json(),
    });
    let file = bench::record("rest", figures)?;
    println!("figures written to {}", file.display());

    let name = tenant.name.clone();
    tenant.stop()?;
    cleanup(&admin, &databases, &name).await?;
    Ok(())
}

/// Rate and latency of one path (or of pgbench).
struct Figures {
    requests: usize,
    errors: usize,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU time per request by process, µs ([`CpuTimes`]).
    cpu_us: BTreeMap<String, f64>,
    /// Database transactions per request ([`Transactions`]), once counted.
    transactions: Option<f64>,
}

impl Figures {
    fn from_latencies(mut latencies: Vec<Duration>, errors: usize, elapsed: Duration) -> Self {
        latencies.sort_unstable();
        let at = |p: f64| {
            if latencies.is_empty() {
                return 0.0;
            }
            let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            latencies[i.min(latencies.len() - 1)].as_secs_f64() * 1000.0
        };
        Self {
            requests: latencies.len(),
            errors,
            rate: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            cpu_us: BTreeMap::new(),
            transactions: None,
        }
    }

    fn print(&self, what: &str) {
        println!(
            "{what}: {CLIENTS} clients, {} requests, {:.0} /s, p50 {:.2} ms, p99 {:.2} ms{}",
            self.requests,
            self.rate,
            self.p50_ms,
            self.p99_ms,
            if self.errors > 0 {
                format!(", {} errors", self.errors)
            } else {
                String::new()
            }
        );
        if !self.cpu_us.is_empty() {
            let each: Vec<String> = self
                .cpu_us
                .iter()
                .map(|(name, us)| format!("{name} {us:.0}"))
                .collect();
            println!(
                "  CPU per request: {:.0} µs ({})",
                self.cpu_us.values().sum::<f64>(),
                each.join(", ")
            );
        }
        if let Some(each) = self.transactions {
            println!("  {each:.2} database transactions per request");
        }
    }

    fn json(&self, ratio: Option<f64>) -> Value {
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "rate_per_second": self.rate,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "ratio_to_yardstick": ratio,
            "database_transactions_per_request": self.transactions,
            "cpu_us_per_request": self.cpu_us,
            "cpu_us_per_request_total": self.cpu_us.values().sum::<f64>(),
        })
    }
}

/// The database transactions run in `databases` (`pg_stat_database`, committed and rolled
/// back) during one load, per request: for a path, over the tenant's five databases, with the
/// relay's passes and the consumers' work that its requests set off; for pgbench, over its
/// own database (one transaction of one statement each, which checks the counting).
struct Transactions<'a> {
    admin: &'a sqlx::PgPool,
    databases: &'a [String],
    before: i64,
}

/// Backends report their counters at most once a second while busy, and within 10 s of
/// going idle.
const COUNTERS_REPORTED_WITHIN: Duration = Duration::from_secs(11);

impl<'a> Transactions<'a> {
    /// Starts counting; what ran before must have been reported by now (the tenant idled, or
    /// the last load's [`Self::record`] waited).
    async fn count(admin: &'a sqlx::PgPool, databases: &'a [String]) -> anyhow::Result<Self> {
        let before = Self::total(admin, databases).await?;
        Ok(Self {
            admin,
            databases,
            before,
        })
    }

    async fn total(admin: &sqlx::PgPool, databases: &[String]) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT coalesce(sum(xact_commit + xact_rollback), 0)::bigint
             FROM pg_stat_database WHERE datname = ANY($1)",
        )
        .bind(databases)
        .fetch_one(admin)
        .await?)
    }

    /// Records in `load` its transactions per request, counted since [`Self::count`]
    /// (none when no request was answered).
    async fn record(self, load: &mut Figures) -> anyhow::Result<()> {
        tokio::time::sleep(COUNTERS_REPORTED_WITHIN).await;
        let ran = Self::total(self.admin, self.databases).await? - self.before;
        let requests = load.requests + load.errors;
        load.transactions = (requests > 0).then(|| ran as f64 / requests as f64);
        Ok(())
    }
}

/// `CLIENTS` clients, each sending the next request when the previous one answered, for
/// `duration`. Returns the figures and the `id` of every JSON object answered (what a
/// create made).
async fn load<F>(duration: Duration, request: F) -> anyhow::Result<(Figures, Vec<String>)>
where
    F: Fn(usize, usize) -> reqwest::RequestBuilder + Clone + Send + 'static,
{
    let cpu_before = CpuTimes::now()?;
    let started = Instant::now();
    let deadline = started + duration;
    let clients = (0..CLIENTS).map(|client| {
        let request = request.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut ids = Vec::new();
            let mut errors = 0;
            let mut n = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let response = request(client, n).send().await;
                n += 1;
                let Ok(response) = response else {
                    errors += 1;
                    continue;
                };
                let ok = response.status().is_success();
                let body = response.bytes().await;
                let elapsed = sent.elapsed();
                match body {
                    Ok(body) if ok => {
                        latencies.push(elapsed);
                        if ids.len() < 1000
                            && let Ok(Value::Object(object)) = serde_json::from_slice(&body)
                            && let Some(Value::String(id)) = object.get("id")
                        {
                            ids.push(id.clone());
                        }
                    }
                    _ => errors += 1,
                }
            }
            (latencies, ids, errors)
        })
    });
    let mut latencies = Vec::new();
    let mut ids = Vec::new();
    let mut errors = 0;
    for client in futures::future::join_all(clients).await {
        let (l, i, e) = client?;
        latencies.extend(l);
        ids.extend(i);
        errors += e;
    }
    let mut figures = Figures::from_latencies(latencies, errors, started.elapsed());
    figures.cpu_us = cpu_before.per_request(&CpuTimes::now()?, figures.requests + errors);
    if figures.requests == 0 {
        bail!("every request failed ({errors} errors)");
    }
    Ok((figures, ids))
}

/// What an idle tenant holds: connections to its databases and the memory of its processes.
struct Idle {
    connections: i64,
    rss_kib: BTreeMap<String, u64>,
}

impl Idle {
    async fn measure(
        admin: &sqlx::PgPool,
        databases: &[String],
        operator: u32,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            connections: connections(admin, databases).await?,
            rss_kib: children_rss(operator)?,
        })
    }

    fn print(&self, when: &str) {
        let total: u64 = self.rss_kib.values().sum();
        let each: Vec<String> = self
            .rss_kib
            .iter()
            .map(|(name, kib)| format!("{name} {:.1}", *kib as f64 / 1024.0))
            .collect();
        println!(
            "{when}: {} PostgreSQL connections; RSS of the tenant's processes {:.1} MiB ({})",
            self.connections,
            total as f64 / 1024.0,
            each.join(", ")
        );
    }

    fn json(&self) -> Value {
        json!({
            "postgres_connections": self.connections,
            "rss_kib_total": self.rss_kib.values().sum::<u64>(),
            "rss_kib": self.rss_kib,
        })
    }
}

async fn connections(admin: &sqlx::PgPool, databases: &[String]) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = ANY($1)")
            .bind(databases)
            .fetch_one(admin)
            .await?,
    )
}

/// Resident memory of each child process of `parent`, by command name.
fn children_rss(parent: u32) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut rss = BTreeMap::new();
    for entry in std::fs::read_dir("/proc")? {
        let path = entry?.path();
        let Ok(status) = std::fs::read_to_string(path.join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        if field("PPid:").and_then(|p| p.parse::<u32>().ok()) != Some(parent) {
            continue;
        }
        let kib = field("VmRSS:")
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0);
        let name = field("Name:").unwrap_or_default();
        *rss.entry(name).or_insert(0) += kib;
    }
    Ok(rss)
}

/// CPU time (user and system) each process has used so far, in clock ticks, by name: the
/// tenant's services (`carerp-*`, and `carerp-operator local`, which carries their logs),
/// PostgreSQL's processes together, NATS, and this benchmark with pgbench as `client`. Taken
/// before and after a load, it says what one request costs each process: the machine's two
/// cores are shared by all of them, so this, not the database alone, bounds the rate.
struct CpuTimes(BTreeMap<String, u64>);

impl CpuTimes {
    fn now() -> anyhow::Result<Self> {
        let own = std::process::id().to_string();
        let mut ticks = BTreeMap::new();
        for entry in std::fs::read_dir("/proc")? {
            let entry = entry?;
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`; the name may hold spaces, so split at the last ')'.
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let name = head.split_once('(').map_or("", |(_, name)| name);
            let fields: Vec<u64> = rest
                .split_whitespace()
                .skip(11)
                .take(4)
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            let [utime, stime, waited_utime, waited_stime] = fields[..] else {
                continue;
            };
            let group = if entry.file_name().to_str() == Some(own.as_str()) {
                "client"
            } else if name.starts_with("carerp-") || name == "postgres" || name == "nats-server" {
                name
            } else {
                continue;
            };
            // With the children it has waited for: the postmaster's hold the backends that
            // ended (pgbench's, and a pool's closed for idling), this process's pgbench.
            *ticks.entry(group.to_string()).or_insert(0) +=
                utime + stime + waited_utime + waited_stime;
        }
        Ok(Self(ticks))
    }

    /// µs of CPU per request of each process between `self` and `later`.
    fn per_request(&self, later: &Self, requests: usize) -> BTreeMap<String, f64> {
        // SAFETY: sysconf has no preconditions.
        let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let requests = requests.max(1) as f64;
        later
            .0
            .iter()
            .map(|(name, after)| {
                let used = after.saturating_sub(self.0.get(name).copied().unwrap_or(0));
                (
                    name.clone(),
                    used as f64 / ticks_per_second * 1e6 / requests,
                )
            })
            .filter(|(_, us)| *us > 0.0)
            .collect()
    }
}

/// pgbench's single-row INSERT and SELECT by key, at the same concurrency, on the same server.
struct Yardstick {
    insert: Figures,
    select: Figures,
}

const YARDSTICK_DB: &str = "carerp_bench_yardstick";

impl Yardstick {
    async fn run(
        admin: &sqlx::PgPool,
        admin_url: &str,
        duration: Duration,
    ) -> anyhow::Result<Self> {
        let pgbench = pgbench()?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {YARDSTICK_DB} WITH (FORCE)"
        )))
        .execute(admin)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {YARDSTICK_DB}"
        )))
        .execute(admin)
        .await?;
        let options = PgConnectOptions::from_str(admin_url)?;
        let db = sqlx::PgPool::connect_with(options.clone().database(YARDSTICK_DB)).await?;
        // About the shape of a customer row: a UUID key, a name, an email, a timestamp.
        for statement in [
            "CREATE TABLE rows (id uuid PRIMARY KEY, name text NOT NULL, email text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
            "CREATE TABLE keyed (k bigint PRIMARY KEY, id uuid NOT NULL, name text NOT NULL, email text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
            "INSERT INTO keyed (k, id, name, email) SELECT g, gen_random_uuid(), 'Bench Customer ' || g, 'bench-' || g || '@example.com' FROM generate_series(1, 10000) g",
            "ANALYZE keyed",
        ] {
            sqlx::query(statement).execute(&db).await?;
        }
        db.close().await;
        let dir = tempfile::tempdir()?;
        let insert = dir.path().join("insert.sql");
        std::fs::write(
            &insert,
            "INSERT INTO rows (id, name, email) VALUES (gen_random_uuid(), 'Bench Customer', 'bench@example.com');\n",
        )?;
        let select = dir.path().join("select.sql");
        std::fs::write(
            &select,
            "\\set k random(1, 10000)\nSELECT id, name, email, created_at FROM keyed WHERE k = :k;\n",
        )?;
        let databases = [YARDSTICK_DB.to_string()];
        let run = async |script: &Path, label: &str| {
            let counted = Transactions::count(admin, &databases).await?;
            let cpu_before = CpuTimes::now()?;
            let mut figures = run_pgbench(
                &pgbench,
                &options,
                script,
                &dir.path().join(label),
                duration,
            )?;
            figures.cpu_us = cpu_before.per_request(&CpuTimes::now()?, figures.requests);
            counted.record(&mut figures).await?;
            anyhow::Ok(figures)
        };
        let insert = run(&insert, "insert").await?;
        let select = run(&select, "select").await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {YARDSTICK_DB} WITH (FORCE)"
        )))
        .execute(admin)
        .await?;
        Ok(Self { insert, select })
    }
}

/// pgbench on PATH, or in the PostgreSQL server's own folder (Debian's postgresql-contrib).
fn pgbench() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("pgbench"))
        .find(|p| p.is_file())
    {
        return Ok(path);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin/pgbench"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
        .pop()
        .context("pgbench is not installed (Debian: apt-get install postgresql-contrib)")
}

/// One pgbench run with prepared statements (as sqlx prepares its own), its per-transaction
/// log read back for exact percentiles.
fn run_pgbench(
    pgbench: &Path,
    options: &PgConnectOptions,
    script: &Path,
    log_prefix: &Path,
    duration: Duration,
) -> anyhow::Result<Figures> {
    let output = Command::new(pgbench)
        .args(["-n", "-M", "prepared", "-j", "2", "-l"])
        .arg(format!("-c{CLIENTS}"))
        .arg(format!("-T{}", duration.as_secs()))
        .arg("-h")
        .arg(options.get_host())
        .arg("-p")
        .arg(options.get_port().to_string())
        .arg("-U")
        .arg(options.get_username())
        .arg("-f")
        .arg(script)
        .arg(format!("--log-prefix={}", log_prefix.display()))
        .arg(YARDSTICK_DB)
        .output()
        .context("running pgbench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let failed = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("number of failed transactions: "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    // Per transaction: client_id transaction_no time_us script_no epoch epoch_us.
    let mut latencies = Vec::new();
    let name = log_prefix
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let dir = log_prefix.parent().context("no log folder")?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("{name}.")))
        {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            if let Some(us) = line.split_whitespace().nth(2).and_then(|v| v.parse().ok()) {
                latencies.push(Duration::from_micros(us));
            }
        }
    }
    Ok(Figures::from_latencies(latencies, failed, duration))
}

async fn cleanup(admin: &sqlx::PgPool, databases: &[String], tenant: &str) -> anyhow::Result<()> {
    for name in databases {
        for statement in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("DROP ROLE IF EXISTS {name}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(admin)
                .await?;
        }
    }
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let js = carerp_kit::messaging::connect(&nats).await?;
    js.delete_stream(carerp_kit::envelope::stream_name(tenant))
        .await?;
    Ok(())
}
