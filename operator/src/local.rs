//! `carerp-operator local`: the same tenant on this machine.
//!
//! Same validation, same provisioners, and the environment each Deployment would give its
//! container; the workloads become child processes on free loopback ports. Ctrl-C (or any
//! service dying) stops them all.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use carerp_kit::auth::{Secret, SigningKey};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::crd::{CarErpTenant, SERVICES, Service};
use crate::desired::{owner_email, settings_env, tenant_name};
use crate::private::{PrivateNats, PrivatePostgres, answers, find_binary};
use crate::provision;

/// Where the local instance finds PostgreSQL and NATS.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Admin connection used to create the tenant's roles and databases.
    pub admin_database_url: String,
    /// A PgBouncer in front of that server (`--database-pooler`): the services' pools go
    /// through it, their migrations to the server.
    pub database_pooler: Option<crate::config::DatabasePooler>,
    pub nats_url: String,
    /// Folder holding the service binaries (`carerp-customer`, ...).
    pub bin_dir: PathBuf,
    /// How long every service gets to answer `/readyz`.
    pub ready_timeout: Duration,
    /// The first owner's password, not to be changed at first sign-in (`--owner-password`,
    /// for scripts and CI); `None`: a one-time password kept under `.carerp/`.
    pub owner_password: Option<Secret>,
}

/// How to sign in to the local tenant as its first owner.
#[derive(Debug, Clone)]
pub struct OwnerAccess {
    pub email: String,
    pub password: Secret,
    /// The owner must change the password at first sign-in.
    pub temporary: bool,
}

/// The tenant's token keys and first owner, as the operator would put them in Secrets.
#[derive(Debug, Clone)]
pub struct Identity {
    pub signing_key: SigningKey,
    pub owner: OwnerAccess,
}

impl Identity {
    /// A fresh signing key (tokens of an earlier run stop working, as after a rotation) and
    /// the owner's password: the given one, or the one-time password of an earlier run of this
    /// tenant, kept in `.carerp/<tenant>/owner-password` because the owner is created once,
    /// with the first run's password.
    pub fn for_run(tenant: &CarErpTenant, owner_password: Option<&Secret>) -> anyhow::Result<Self> {
        let owner = match owner_password {
            Some(password) => OwnerAccess {
                email: owner_email(tenant),
                password: password.clone(),
                temporary: false,
            },
            None => {
                let dir = PathBuf::from(".carerp").join(tenant_name(tenant));
                let file = dir.join("owner-password");
                let password = match std::fs::read_to_string(&file) {
                    Ok(password) if !password.trim().is_empty() => Secret::new(password.trim()),
                    _ => {
                        let password = carerp_kit::auth::one_time_password();
                        std::fs::create_dir_all(&dir)
                            .with_context(|| format!("creating {}", dir.display()))?;
                        write_private(&file, password.expose())?;
                        password
                    }
                };
                OwnerAccess {
                    email: owner_email(tenant),
                    password,
                    temporary: true,
                }
            }
        };
        Ok(Self {
            signing_key: SigningKey::generate("local"),
            owner,
        })
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// One service process as started.
#[derive(Debug, Clone)]
pub struct Planned {
    pub service: Service,
    pub binary: PathBuf,
    pub main_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub database: Option<String>,
    pub env: BTreeMap<String, String>,
}

impl Planned {
    /// The URL other programs use: gRPC for services, HTTP for the BFF.
    pub fn url(&self) -> String {
        format!("http://{}", self.main_addr)
    }
}

/// Ports nobody listens on right now, for the children to take a moment later. Every
/// listener is held until the last port is picked, so no port is handed out twice.
#[derive(Default)]
struct FreePorts(Vec<TcpListener>);

impl FreePorts {
    fn pick(&mut self) -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        let addr = listener.local_addr()?;
        self.0.push(listener);
        Ok(addr)
    }
}

/// Host and port of a `postgres://` URL, so service URLs point at the same server.
fn host_port(url: &str) -> (String, u16) {
    let after_scheme = url.split("://").nth(1).unwrap_or(url);
    let authority = after_scheme.split('/').next().unwrap_or(after_scheme);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    match host_port.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.parse().unwrap_or(5432)),
        None => (host_port.to_string(), 5432),
    }
}

/// What each existing binary will be started with: the same variables as its Deployment.
pub fn plan(
    tenant: &CarErpTenant,
    options: &LocalOptions,
    passwords: &BTreeMap<Service, String>,
    identity: &Identity,
) -> anyhow::Result<Vec<Planned>> {
    let name = tenant_name(tenant);
    let (db_host, db_port) = host_port(&options.admin_database_url);
    let mut planned = Vec::new();
    let mut ports = FreePorts::default();
    for service in SERVICES {
        let binary = options.bin_dir.join(format!("carerp-{}", service.name()));
        if !binary.is_file() {
            continue;
        }
        planned.push(Planned {
            service,
            binary,
            main_addr: ports.pick()?,
            admin_addr: ports.pick()?,
            database: service
                .has_database()
                .then(|| provision::database_name(name, service)),
            env: BTreeMap::new(),
        });
    }
    let urls: Vec<(Service, String)> = planned
        .iter()
        .filter(|p| p.service.has_database())
        .map(|p| (p.service, p.url()))
        .collect();
    for p in &mut planned {
        let mut env = settings_env(tenant);
        env.insert("CARERP_TENANT".into(), name.to_string());
        env.insert("NATS_URL".into(), options.nats_url.clone());
        env.insert("ADMIN_ADDR".into(), p.admin_addr.to_string());
        env.insert("LOG_FORMAT".into(), "pretty".into());
        env.insert(
            "CARERP_TOKEN_PUBLIC_KEYS".into(),
            identity.signing_key.public_entry(),
        );
        if p.service == Service::Identity {
            env.insert(
                "CARERP_TOKEN_SIGNING_KEY".into(),
                identity.signing_key.to_secret_value(),
            );
            env.insert("CARERP_OWNER_EMAIL".into(), identity.owner.email.clone());
            if let Some(name) = tenant
                .spec
                .owner
                .as_ref()
                .and_then(|o| o.display_name.clone())
            {
                env.insert("CARERP_OWNER_NAME".into(), name);
            }
            env.insert(
                "CARERP_OWNER_PASSWORD".into(),
                identity.owner.password.expose().to_string(),
            );
            env.insert(
                "CARERP_OWNER_PASSWORD_TEMPORARY".into(),
                identity.owner.temporary.to_string(),
            );
        }
        if p.service.has_database() {
            env.insert("GRPC_ADDR".into(), p.main_addr.to_string());
            let password = passwords
                .get(&p.service)
                .with_context(|| format!("no password for {}", p.service.name()))?;
            let server = provision::database_url(&db_host, db_port, name, p.service, password);
            match &options.database_pooler {
                Some(pooler) => {
                    env.insert(
                        "DATABASE_URL".into(),
                        provision::database_url(
                            &pooler.host,
                            pooler.port,
                            name,
                            p.service,
                            password,
                        ),
                    );
                    env.insert("DATABASE_MIGRATION_URL".into(), server);
                }
                None => {
                    env.insert("DATABASE_URL".into(), server);
                }
            }
        } else {
            env.insert("HTTP_ADDR".into(), p.main_addr.to_string());
        }
        for (other, url) in &urls {
            if *other != p.service
                && let Some(var) = other.grpc_url_variable()
            {
                env.insert(var.into(), url.clone());
            }
        }
        // Locally there is no sidecar: services export straight to the tenant's collector.
        if let Some(otlp) = &tenant.spec.telemetry.otlp_endpoint {
            env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), otlp.clone());
        }
        p.env = env;
    }
    Ok(planned)
}

/// Host and port of a `nats://` URL.
fn nats_host_port(url: &str) -> (String, u16) {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    match authority.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.parse().unwrap_or(4222)),
        None => (authority.to_string(), 4222),
    }
}

fn loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]")
}

/// Starts private PostgreSQL and NATS under `.carerp/` for whichever does not answer at its
/// (local) URL, when its binaries are installed, and points `options` at them.
fn ensure_servers(
    options: &mut LocalOptions,
) -> anyhow::Result<(Option<PrivatePostgres>, Option<PrivateNats>)> {
    let root = PathBuf::from(".carerp");
    let (host, port) = host_port(&options.admin_database_url);
    let postgres = if !answers(&host, port) && loopback(&host) {
        match (find_binary("initdb"), find_binary("pg_ctl")) {
            (Some(initdb), Some(pg_ctl)) => {
                let pg = PrivatePostgres::start(&initdb, &pg_ctl, &root.join("postgres"))?;
                println!(
                    "carerp-operator: PostgreSQL does not answer at {host}:{port}; started a private one under .carerp/postgres ({})",
                    pg.url
                );
                options.admin_database_url = pg.url.clone();
                Some(pg)
            }
            _ => None,
        }
    } else {
        None
    };
    let (host, port) = nats_host_port(&options.nats_url);
    let nats = if !answers(&host, port) && loopback(&host) {
        match find_binary("nats-server") {
            Some(binary) => {
                let nats = PrivateNats::start(&binary, &root.join("nats"))?;
                println!(
                    "carerp-operator: NATS does not answer at {host}:{port}; started a private one under .carerp/nats ({})",
                    nats.url
                );
                options.nats_url = nats.url.clone();
                Some(nats)
            }
            None => None,
        }
    } else {
        None
    };
    Ok((postgres, nats))
}

/// GET `/readyz` on the admin port; true on a 200.
async fn ready(admin: SocketAddr) -> bool {
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(admin)).await
    else {
        return false;
    };
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut head)).await,
        Ok(Ok(_))
    ) && head.starts_with(b"HTTP/1.")
        && &head[9..12] == b"200"
}

/// Copies a child's output line by line, prefixed with its service name.
fn prefix_lines<R>(service: Service, reader: R)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            println!("{:>9} | {line}", service.name());
        }
    });
}

struct Running {
    planned: Planned,
    child: Child,
}

/// Asks every child to stop (SIGTERM, so they drain), then kills those still running.
async fn stop_all(running: &mut [Running]) {
    for r in running.iter() {
        if let Some(pid) = r.child.id() {
            // tokio only offers SIGKILL; `kill` sends the polite signal.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for r in running.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, r.child.wait()).await.is_err() {
            eprintln!(
                "carerp-operator: {} did not stop in time, killing it",
                r.planned.service.name()
            );
            let _ = r.child.kill().await;
        }
    }
}

/// Provisions the tenant, starts its services, waits for them, prints the table and how to
/// sign in, and runs `after_ready` (demo data) before waiting for Ctrl-C.
pub async fn run<F, Fut>(
    tenant: &CarErpTenant,
    options: &LocalOptions,
    after_ready: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Vec<Planned>, OwnerAccess) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let name = tenant_name(tenant);
    let mut options = options.clone();
    // Kept until the end: dropping them stops the private servers.
    let (_private_postgres, _private_nats) = ensure_servers(&mut options)?;
    let options = &options;
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&options.admin_database_url)
        .await
        .with_context(|| {
            format!(
                "PostgreSQL does not answer at {} (set CARERP_ADMIN_DATABASE_URL)",
                carerp_kit::config::redact_url(&options.admin_database_url)
            )
        })?;
    // Locally no Secret survives between runs: every run sets fresh passwords.
    let passwords = provision::ensure_databases(&admin, name, &BTreeMap::new()).await?;
    admin.close().await;
    let nats = async_nats::connect(&options.nats_url)
        .await
        .with_context(|| format!("NATS does not answer at {}", options.nats_url))?;
    let js = async_nats::jetstream::new(nats);
    provision::ensure_stream(&js, name, &tenant.spec.messaging).await?;
    println!(
        "carerp-operator: tenant {name}: databases and stream {} ready",
        provision::stream_name(name)
    );

    let identity = Identity::for_run(tenant, options.owner_password.as_ref())?;
    let planned = plan(tenant, options, &passwords, &identity)?;
    if planned.is_empty() {
        bail!(
            "no service binary (carerp-customer, ...) next to the operator in {}: build them first (cargo build --workspace --bins)",
            options.bin_dir.display()
        );
    }
    let mut running = Vec::new();
    for p in &planned {
        let mut child = Command::new(&p.binary)
            // Only what the Deployment would set, plus what a developer uses to debug and
            // the BFF's per-address rate limit (a load generator on this machine is one address).
            .env_clear()
            .envs(
                [
                    "PATH",
                    "RUST_LOG",
                    "RUST_BACKTRACE",
                    "BFF_RATE_LIMIT_PER_SECOND",
                    "BFF_RATE_LIMIT_BURST",
                ]
                .into_iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k, v))),
            )
            .envs(&p.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", p.binary.display()))?;
        if let Some(out) = child.stdout.take() {
            prefix_lines(p.service, out);
        }
        if let Some(err) = child.stderr.take() {
            prefix_lines(p.service, err);
        }
        running.push(Running {
            planned: p.clone(),
            child,
        });
    }

    if let Err(err) = wait_ready(&mut running, options.ready_timeout).await {
        stop_all(&mut running).await;
        return Err(err);
    }
    print_table(name, &planned);
    print_owner(&identity.owner);
    if let Err(err) = after_ready(planned.clone(), identity.owner.clone()).await {
        stop_all(&mut running).await;
        return Err(err);
    }
    println!("carerp-operator: press Ctrl-C to stop");

    let outcome = tokio::select! {
        // Ctrl-C, or SIGTERM from a supervisor: either way the children must not be orphaned.
        _ = carerp_kit::grpc::shutdown_signal() => Ok(()),
        exited = first_exit(&mut running) => Err(exited),
    };
    println!("carerp-operator: stopping");
    stop_all(&mut running).await;
    outcome
}

async fn first_exit(running: &mut [Running]) -> anyhow::Error {
    let waits = running.iter_mut().map(|r| {
        Box::pin(async move {
            let status = r.child.wait().await;
            anyhow::anyhow!(
                "{} exited unexpectedly ({status:?})",
                r.planned.service.name()
            )
        })
    });
    futures::future::select_all(waits).await.0
}

async fn wait_ready(running: &mut [Running], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    for r in running.iter_mut() {
        loop {
            if let Ok(Some(status)) = r.child.try_wait() {
                bail!(
                    "{} exited before it was ready ({status}); its log is above",
                    r.planned.service.name()
                );
            }
            if ready(r.planned.admin_addr).await {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready on http://{}/readyz after {:?}",
                    r.planned.service.name(),
                    r.planned.admin_addr,
                    timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

fn print_table(tenant: &str, planned: &[Planned]) {
    println!();
    println!("tenant {tenant} is running:");
    println!("{:<10} {:<24} {:<32} database", "service", "url", "health");
    for p in planned {
        println!(
            "{:<10} {:<24} {:<32} {}",
            p.service.name(),
            p.url(),
            format!("http://{}/readyz", p.admin_addr),
            p.database.as_deref().unwrap_or("-")
        );
    }
    println!();
}

/// The owner's sign-in under the table: on this machine the newcomer needs it to get in.
fn print_owner(owner: &OwnerAccess) {
    let note = if owner.temporary {
        " (one-time: change it at first sign-in; if this tenant's owner existed before, their password stands)"
    } else {
        ""
    };
    println!(
        "sign in as {} with password {}{note}",
        owner.email,
        owner.password.expose()
    );
    println!();
}

/// The folder of the running binary, where cargo puts the service binaries too.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the operator binary")?;
    Ok(exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_host_and_port() {
        assert_eq!(
            nats_host_port("nats://127.0.0.1:4222"),
            ("127.0.0.1".into(), 4222)
        );
        assert_eq!(nats_host_port("nats://nats.svc"), ("nats.svc".into(), 4222));
    }

    #[test]
    fn host_and_port_come_from_the_admin_url() {
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1:5432/postgres"),
            ("127.0.0.1".into(), 5432)
        );
        assert_eq!(
            host_port("postgres://u:p@db.local:6543/x"),
            ("db.local".into(), 6543)
        );
        assert_eq!(host_port("postgres://db/x"), ("db".into(), 5432));
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            carerp_kit::config::redact_url("postgres://u:secret@h:5432/d"),
            "postgres://u@h:5432/d"
        );
        assert_eq!(
            carerp_kit::config::redact_url("postgres://h/d"),
            "postgres://h/d"
        );
    }

    #[test]
    fn services_get_the_deployment_environment() {
        let dir = std::env::temp_dir().join(format!("carerp-local-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for s in ["customer", "workorder", "identity", "bff"] {
            std::fs::write(dir.join(format!("carerp-{s}")), "").unwrap();
        }
        let yaml = "apiVersion: carerp.io/v1alpha1\nkind: CarErpTenant\nmetadata:\n  name: demo\nspec:\n  displayName: Demo\n  settings:\n    currency: USD\n";
        let tenant = crate::validate::parse_tenant(yaml).unwrap();
        let options = LocalOptions {
            admin_database_url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            database_pooler: None,
            nats_url: "nats://127.0.0.1:4222".into(),
            bin_dir: dir.clone(),
            ready_timeout: Duration::from_secs(1),
            owner_password: None,
        };
        let passwords = BTreeMap::from([
            (Service::Customer, "pw1".to_string()),
            (Service::Workorder, "pw2".to_string()),
            (Service::Identity, "pw3".to_string()),
        ]);
        let identity = Identity {
            signing_key: SigningKey::generate("local"),
            owner: OwnerAccess {
                email: "owner@demo.local".into(),
                password: Secret::new("Vq7#mZ2!pL9x-garage"),
                temporary: false,
            },
        };
        let planned = plan(&tenant, &options, &passwords, &identity).unwrap();
        let pooled = LocalOptions {
            database_pooler: Some("127.0.0.1:6432".parse().unwrap()),
            ..options.clone()
        };
        let through_pooler = plan(&tenant, &pooled, &passwords, &identity).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            through_pooler[1].env["DATABASE_URL"],
            "postgres://t_demo_workorder:pw2@127.0.0.1:6432/t_demo_workorder"
        );
        assert_eq!(
            through_pooler[1].env["DATABASE_MIGRATION_URL"],
            "postgres://t_demo_workorder:pw2@127.0.0.1:5432/t_demo_workorder"
        );
        assert!(!planned[1].env.contains_key("DATABASE_MIGRATION_URL"));

        let names: Vec<_> = planned.iter().map(|p| p.service).collect();
        assert_eq!(
            names,
            [
                Service::Customer,
                Service::Workorder,
                Service::Identity,
                Service::Bff
            ]
        );
        // Every service verifies tokens; only identity can sign them.
        for p in &planned {
            assert_eq!(
                p.env["CARERP_TOKEN_PUBLIC_KEYS"],
                identity.signing_key.public_entry()
            );
            assert_eq!(
                p.env.contains_key("CARERP_TOKEN_SIGNING_KEY"),
                p.service == Service::Identity
            );
        }
        let id = &planned[2].env;
        assert_eq!(id["CARERP_OWNER_EMAIL"], "owner@demo.local");
        assert_eq!(id["CARERP_OWNER_PASSWORD_TEMPORARY"], "false");
        let planned: Vec<Planned> = planned
            .into_iter()
            .filter(|p| p.service != Service::Identity)
            .collect();
        let wo = &planned[1].env;
        assert_eq!(wo["CARERP_TENANT"], "demo");
        assert_eq!(wo["CARERP_CURRENCY"], "USD");
        assert_eq!(
            wo["DATABASE_URL"],
            "postgres://t_demo_workorder:pw2@127.0.0.1:5432/t_demo_workorder"
        );
        assert_eq!(wo["CUSTOMER_GRPC_URL"], planned[0].url());
        assert_eq!(wo["GRPC_ADDR"], planned[1].main_addr.to_string());
        let bff = &planned[2].env;
        assert!(!bff.contains_key("DATABASE_URL"));
        assert_eq!(bff["WORKORDER_GRPC_URL"], planned[1].url());
        assert!(!bff.contains_key("INVENTORY_GRPC_URL"), "no binary, no URL");
        assert_eq!(bff["HTTP_ADDR"], planned[2].main_addr.to_string());
        let ports: std::collections::HashSet<_> = planned
            .iter()
            .flat_map(|p| [p.main_addr.port(), p.admin_addr.port()])
            .collect();
        assert_eq!(ports.len(), 2 * planned.len(), "every port is different");
    }
}
