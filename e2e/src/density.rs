//! Many garages on one database server: N tenants under `carerp-operator local`, all on one
//! private PostgreSQL (`max_connections = 100`, as a small managed server allows) behind one
//! PgBouncer in transaction mode, and one NATS. First every tenant idles; then, one tenant
//! at a time while the others go on idling, each runs one repair through its BFF, from
//! intake to INVOICED. What it reports: the processes' resident memory, the server's
//! connections while idle and at the busiest moment, and completion -> INVOICED per saga.
//!
//! The density test (`e2e/tests/density.rs`, 10 tenants) and `just bench-density` (50) both
//! call [`run`]. PgBouncer must be 1.21 or later (named prepared statements in transaction
//! mode); `.ci/pgbouncer` prints the path of one, building Debian's source package when the
//! installed release is older.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use carerp_operator::private::{PrivatePostgres, answers, find_binary};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::local::{LocalTenant, OWNER_PASSWORD};

/// PgBouncer 1.21+: `CARERP_PGBOUNCER`, else what `.ci/pgbouncer` installed, else `PATH`.
pub fn find_pgbouncer() -> Option<PathBuf> {
    let candidates = std::env::var_os("CARERP_PGBOUNCER")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/var/cache/carerp/pgbouncer/pgbouncer")])
        .chain(find_binary("pgbouncer"));
    candidates
        .filter(|path| path.is_file())
        .find(|path| version_at_least(path, (1, 21)))
}

fn version_at_least(binary: &Path, wanted: (u32, u32)) -> bool {
    let Ok(output) = Command::new(binary).arg("--version").output() else {
        return false;
    };
    // "PgBouncer 1.24.1" on the first line.
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= wanted
}

/// A PgBouncer of this run's own, in transaction mode in front of `server_port`.
///
/// Clients sign in with their own role and password, checked against the server's SCRAM
/// verifiers (`auth_query` as `postgres`, through one pool in the `postgres` database rather
/// than one per tenant database), as a pooler in front of the operator's roles must.
///
/// Sized for many small garages: PgBouncer pools per database, and a garage has five, so the
/// server's connections are about (garages active within the last `server_idle_timeout`) x 5
/// x `default_pool_size`. With a pool of 2 and 2 s, the ten garages whose sagas ran in the
/// last two seconds held all 97 of the server's ordinary slots and the next login was refused;
/// with 1 and 1 s about three garages' worth are held. `server_login_retry = 1`: after a
/// refused login PgBouncer refuses that pool's clients for this long (15 s by default).
pub struct Pgbouncer {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Pgbouncer {
    pub fn start(binary: &Path, dir: &Path, server_port: u16) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = crate::cluster::free_port()?;
        let ini = format!(
            "[databases]\n\
             * = host=127.0.0.1 port={server_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = scram-sha-256\n\
             auth_file = {dir}/userlist.txt\n\
             auth_user = postgres\n\
             auth_dbname = postgres\n\
             auth_query = SELECT usename, passwd FROM pg_shadow WHERE usename = $1\n\
             pool_mode = transaction\n\
             max_prepared_statements = 200\n\
             ignore_startup_parameters = extra_float_digits\n\
             max_client_conn = 5000\n\
             default_pool_size = 1\n\
             max_db_connections = 2\n\
             server_idle_timeout = 1\n\
             server_login_retry = 1\n\
             logfile = {dir}/pgbouncer.log\n\
             log_connections = 0\n\
             log_disconnections = 0\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini)?;
        std::fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n")?;
        let mut command = Command::new(binary);
        if is_root() {
            // PgBouncer refuses to run as root; the files become the postgres user's and the
            // process is spawned as that user itself (not through `runuser`, whose child would
            // outlive a kill of the wrapper).
            use std::os::unix::{fs::MetadataExt, process::CommandExt};
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()?;
            anyhow::ensure!(
                status.success(),
                "cannot hand {} to postgres",
                dir.display()
            );
            let owner = std::fs::metadata(dir)?;
            command.uid(owner.uid()).gid(owner.gid());
        }
        let child = command
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let bouncer = Self {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !answers("127.0.0.1", port) {
            if Instant::now() > deadline {
                bail!(
                    "PgBouncer did not answer on {port}: {}",
                    std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(bouncer)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// What a density run measured.
#[derive(Debug)]
pub struct Report {
    pub tenants: usize,
    /// The server's `max_connections`.
    pub max_connections: i64,
    /// From the first `carerp-operator local` to the last tenant's sign-in line.
    pub startup: Duration,
    /// Resident memory of every tenant's processes (the `local` runner and its six
    /// services), all idle.
    pub idle_rss_kib: u64,
    /// Server connections (client backends, PgBouncer's included) with every tenant idle.
    pub idle_connections: i64,
    /// The most server connections seen while the sagas ran.
    pub busiest_connections: i64,
    /// Completion -> INVOICED of each tenant's saga, in order.
    pub sagas: Vec<Duration>,
    /// Where each saga's time went, from the services' own tables.
    pub hops: Vec<Hops>,
}

/// The stretches of completion -> INVOICED, in milliseconds, from the timestamps the
/// services keep: outbox `created_at` (the writing transaction's start) and `published_at`
/// (the relay's update after JetStream's ack), inbox `handled_at` (the handler's
/// transaction start).
#[derive(Debug, Clone, Copy, Default)]
pub struct Hops {
    /// Work order's completion transaction to `workorder.completed` acked by JetStream.
    pub completed_relayed: f64,
    /// Acked to billing's handler starting.
    pub to_billing: f64,
    /// Billing's handler starting to `invoice.created` acked.
    pub invoiced_relayed: f64,
    /// Acked to the work order's handler starting (it then sets INVOICED).
    pub to_workorder: f64,
}

/// Reads [`Hops`] of the tenant's last saga from its workorder and billing databases.
async fn saga_hops(admin_url: &str, tenant: &str) -> anyhow::Result<Hops> {
    use carerp_operator::crd::Service;
    let on = |service| {
        let db = carerp_operator::provision::database_name(tenant, service);
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url, |(base, _)| base);
        format!("{base}/{db}")
    };
    let workorder = PgPool::connect(&on(Service::Workorder)).await?;
    let billing = PgPool::connect(&on(Service::Billing)).await?;
    let ms = |sql: &'static str, pool: PgPool| async move {
        sqlx::query_scalar::<_, f64>(sql)
            .fetch_one(&pool)
            .await
            .map_err(anyhow::Error::from)
    };
    // Epoch milliseconds of each moment, so the stretches are differences.
    let completed_created = ms("SELECT extract(epoch FROM created_at)::float8 * 1000 FROM outbox WHERE topic = 'workorder.completed' ORDER BY seq DESC LIMIT 1", workorder.clone()).await?;
    let completed_published = ms("SELECT extract(epoch FROM published_at)::float8 * 1000 FROM outbox WHERE topic = 'workorder.completed' ORDER BY seq DESC LIMIT 1", workorder.clone()).await?;
    let billing_handled = ms("SELECT extract(epoch FROM handled_at)::float8 * 1000 FROM inbox WHERE topic = 'workorder.completed' ORDER BY handled_at DESC LIMIT 1", billing.clone()).await?;
    let invoice_published = ms("SELECT extract(epoch FROM published_at)::float8 * 1000 FROM outbox WHERE topic = 'invoice.created' ORDER BY seq DESC LIMIT 1", billing.clone()).await?;
    let workorder_handled = ms("SELECT extract(epoch FROM handled_at)::float8 * 1000 FROM inbox WHERE topic = 'invoice.created' ORDER BY handled_at DESC LIMIT 1", workorder.clone()).await?;
    workorder.close().await;
    billing.close().await;
    Ok(Hops {
        completed_relayed: completed_published - completed_created,
        to_billing: billing_handled - completed_published,
        invoiced_relayed: invoice_published - billing_handled,
        to_workorder: workorder_handled - invoice_published,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2] * 10.0).round() / 10.0
}

impl Report {
    pub fn saga_percentile(&self, p: f64) -> Duration {
        let mut sorted = self.sagas.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    pub fn to_json(&self) -> Value {
        let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        json!({
            "tenants": self.tenants,
            "max_connections": self.max_connections,
            "startup_s": (self.startup.as_secs_f64() * 10.0).round() / 10.0,
            "idle_rss_mib_total": self.idle_rss_kib / 1024,
            "idle_rss_mib_per_tenant": self.idle_rss_kib / 1024 / self.tenants.max(1) as u64,
            "idle_pg_connections": self.idle_connections,
            "busiest_pg_connections": self.busiest_connections,
            "saga_invoiced_p50_ms": ms(self.saga_percentile(50.0)),
            "saga_invoiced_p99_ms": ms(self.saga_percentile(99.0)),
            "saga_invoiced_max_ms": ms(self.saga_percentile(100.0)),
            "saga_hops_median_ms": {
                "completed_relayed": median(self.hops.iter().map(|h| h.completed_relayed).collect()),
                "to_billing": median(self.hops.iter().map(|h| h.to_billing).collect()),
                "invoiced_relayed": median(self.hops.iter().map(|h| h.invoiced_relayed).collect()),
                "to_workorder": median(self.hops.iter().map(|h| h.to_workorder).collect()),
            },
        })
    }
}

/// Starts `tenants` tenants from the binaries in `bin_dir` on a private PostgreSQL behind
/// PgBouncer, lets them idle for `idle` (longer than the pools' and PgBouncer's idle
/// timeouts of 10 s), measures, then runs one saga per tenant, one tenant at a time.
pub async fn run(
    tenants: usize,
    bin_dir: &Path,
    pgbouncer: &Path,
    idle: Duration,
) -> anyhow::Result<Report> {
    let (Some(initdb), Some(pg_ctl)) = (find_binary("initdb"), find_binary("pg_ctl")) else {
        bail!("the density run needs the PostgreSQL server binaries (initdb, pg_ctl)");
    };
    let dir = tempfile::tempdir()?;
    // The server and PgBouncer run as the postgres user when this runs as root.
    std::fs::set_permissions(
        dir.path(),
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )?;
    let pg = PrivatePostgres::start(&initdb, &pg_ctl, &dir.path().join("pg"))?;
    let admin = PgPool::connect(&pg.url).await?;
    let max_connections: i64 = sqlx::query_scalar(
        "SELECT setting::bigint FROM pg_settings WHERE name = 'max_connections'",
    )
    .fetch_one(&admin)
    .await?;
    let server_port = pg
        .url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .context("no port in the private server's URL")?;
    let bouncer = Pgbouncer::start(pgbouncer, &dir.path().join("pgbouncer"), server_port)?;
    let pooler = format!("127.0.0.1:{}", bouncer.port);

    let started = Instant::now();
    let mut running: Vec<LocalTenant> = Vec::with_capacity(tenants);
    // One at a time: `carerp-operator local` picks free ports by binding and releasing
    // them, so two starting together can pick the same one.
    const AT_ONCE: usize = 1;
    while running.len() < tenants {
        let batch = AT_ONCE.min(tenants - running.len());
        let handles: Vec<_> = (0..batch)
            .map(|i| {
                let bin_dir = bin_dir.to_path_buf();
                let admin_url = pg.url.clone();
                let pooler = pooler.clone();
                let name = format!("Density Garage {}", running.len() + i + 1);
                std::thread::spawn(move || {
                    LocalTenant::start_in(
                        &bin_dir,
                        &name,
                        &[
                            "--admin-database-url",
                            &admin_url,
                            "--database-pooler",
                            &pooler,
                            "--ready-timeout",
                            "300",
                        ],
                    )
                })
            })
            .collect();
        for handle in handles {
            let tenant = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a tenant's start panicked"))?
                .with_context(|| format!("PgBouncer's log:\n{}", tail(&bouncer.log())))?;
            running.push(tenant);
        }
    }
    let startup = started.elapsed();

    tokio::time::sleep(idle).await;
    let idle_connections = connections(&admin).await?;
    let idle_rss_kib = running.iter().map(|t| tree_rss_kib(t.child.id())).sum();

    let http = reqwest::Client::new();
    let mut sagas = Vec::with_capacity(tenants);
    let mut busiest = idle_connections;
    for tenant in &running {
        let watch = tokio::spawn(watch_connections(admin.clone()));
        let took = saga(&http, tenant).await.with_context(|| {
            format!(
                "the saga of {}; its last log lines:\n{}\nPgBouncer's log:\n{}",
                tenant.name,
                tenant.unread_tail(40),
                tail(&bouncer.log())
            )
        })?;
        watch.abort();
        busiest = busiest.max(watch.await.unwrap_or(0));
        busiest = busiest.max(connections(&admin).await?);
        sagas.push(took);
    }

    let names: Vec<String> = running.iter().map(|t| t.name.clone()).collect();
    let mut hops = Vec::with_capacity(tenants);
    for name in &names {
        hops.push(saga_hops(&pg.url, name).await?);
    }
    for tenant in running {
        tenant.stop()?;
    }
    delete_streams(&names).await;
    admin.close().await;
    drop(bouncer);
    drop(pg);
    Ok(Report {
        tenants,
        max_connections,
        startup,
        idle_rss_kib,
        idle_connections,
        busiest_connections: busiest,
        sagas,
        hops,
    })
}

/// Client backends on the server, this connection's own left out.
async fn connections(admin: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )
    .fetch_one(admin)
    .await?)
}

/// The most connections seen until aborted; the value is lost on abort, so it is also
/// returned when a look fails.
async fn watch_connections(admin: PgPool) -> i64 {
    let mut most = 0;
    loop {
        match connections(&admin).await {
            Ok(n) => most = most.max(n),
            Err(_) => return most,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Resident memory of `pid` and its children, from `/proc`.
fn tree_rss_kib(pid: u32) -> u64 {
    let mut total = rss_kib(pid);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if parent_of(child) == Some(pid) {
                total += rss_kib(child);
            }
        }
    }
    total
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// One repair through the tenant's BFF, signed in as its owner: customer, vehicle, a part
/// in stock, a work order with the part reserved, completed; returns completion -> INVOICED.
pub async fn saga(http: &reqwest::Client, tenant: &LocalTenant) -> anyhow::Result<Duration> {
    let api = Api {
        http,
        base: &tenant.bff,
        token: None,
    };
    let session = api
        .call(
            reqwest::Method::POST,
            "/api/auth/login",
            json!({"email": tenant.owner_email, "password": OWNER_PASSWORD}),
        )
        .await?;
    let token = session["accessToken"]
        .as_str()
        .context("no access token")?
        .to_string();
    let api = Api {
        token: Some(&token),
        ..api
    };
    use reqwest::Method as M;
    let customer = api
        .call(
            M::POST,
            "/api/customers",
            json!({"name": "Grace Hopper", "email": "grace@example.com"}),
        )
        .await?;
    let customer_id = customer["id"].as_str().context("no customer id")?;
    let vehicle = api
        .call(
            M::POST,
            &format!("/api/customers/{customer_id}/vehicles"),
            json!({"vin": "WVWZZZ1KZAW000042", "make": "VW", "model": "Golf", "year": 2015}),
        )
        .await?;
    let part = api
        .call(
            M::POST,
            "/api/parts",
            json!({"sku": "OIL-1", "name": "Oil filter", "category": "engine",
                   "unitCost": {"amountMinor": 500, "currency": "EUR"},
                   "unitPrice": {"amountMinor": 1200, "currency": "EUR"},
                   "location": "A-1", "reorderPoint": 1, "reorderQuantity": 5, "initialQuantity": 4}),
        )
        .await?;
    let order = api
        .call(
            M::POST,
            "/api/work-orders",
            json!({"customerId": customer_id, "vehicleId": vehicle["id"], "complaint": "service", "odometerKm": 90000}),
        )
        .await?;
    let id = order["id"].as_str().context("no work order id")?;
    api.call(
        M::PUT,
        &format!("/api/work-orders/{id}/status"),
        json!({"status": "IN_PROGRESS"}),
    )
    .await?;
    api.call(
        M::POST,
        &format!("/api/work-orders/{id}/line-items"),
        json!({"partId": part["id"], "quantity": 1}),
    )
    .await?;
    api.until(id, Duration::from_millis(20), |o| {
        o["partLines"][0]["reservationState"] == "RESERVED"
    })
    .await?;
    api.call(
        M::PUT,
        &format!("/api/work-orders/{id}/status"),
        json!({"status": "COMPLETED"}),
    )
    .await?;
    let completed = Instant::now();
    api.until(id, Duration::from_millis(2), |o| o["status"] == "INVOICED")
        .await?;
    Ok(completed.elapsed())
}

struct Api<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    token: Option<&'a str>,
}

impl Api<'_> {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "{path}: {status} {body}");
        Ok(body)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        self.send(method, path, Some(body)).await
    }

    /// Reads the work order every `every` until `done`, for at most 60 s.
    async fn until(
        &self,
        id: &str,
        every: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let order = self
                .send(
                    reqwest::Method::GET,
                    &format!("/api/work-orders/{id}"),
                    None,
                )
                .await?;
            if done(&order) {
                return Ok(order);
            }
            if Instant::now() > deadline {
                bail!("gave up waiting: {order}");
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// The tenants' streams on the shared NATS go with them.
async fn delete_streams(tenants: &[String]) {
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    if let Ok(js) = carerp_kit::messaging::connect(&nats).await {
        for tenant in tenants {
            let _ = js
                .delete_stream(carerp_kit::envelope::stream_name(tenant))
                .await;
        }
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
