//! `carerp-operator`: wiring only; each subcommand lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use carerp_operator::config::OperatorArgs;
use carerp_operator::crd::CarErpTenant;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "carerp-operator",
    version,
    about = "Runs Car ERP tenants, in a cluster or on this machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CarErpTenant CustomResourceDefinition as YAML.
    Crd,
    /// Print every manifest the operator would apply for a tenant, as YAML documents.
    Render(Box<RenderArgs>),
    /// Run a tenant on this machine: provision it, start its services, stop them on Ctrl-C.
    Local(LocalArgs),
    /// Run the controller in the cluster.
    Run(Box<RunArgs>),
    /// A tenant's dead letters: list them, show one, replay some.
    Dlq(DlqArgs),
    /// Per-tenant NATS credentials: set up the broker's side of the trust.
    NatsAuth(NatsAuthArgs),
}

#[derive(Args)]
struct NatsAuthArgs {
    #[command(subcommand)]
    action: NatsAuthAction,
}

#[derive(Subcommand)]
enum NatsAuthAction {
    /// Generate an operator, a system account and the CARERP account with a signing key;
    /// write the broker's configuration (nats-server.conf include: operator JWT, memory
    /// resolver) and the signing key seed the Car ERP operator is given, into DIR.
    Init {
        /// Where to write `carerp-auth.conf` (public) and `account-signing-key.nk` (secret).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Args)]
struct DlqArgs {
    /// The tenant id (its metadata.name).
    #[arg(short = 't', long)]
    tenant: String,
    /// JetStream server of the tenant's streams.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// A `.creds` file to sign in with (a broker with per-tenant credentials).
    #[arg(long, env = "NATS_CREDENTIALS_FILE")]
    nats_credentials_file: Option<PathBuf>,
    #[command(subcommand)]
    action: DlqAction,
}

#[derive(Subcommand)]
enum DlqAction {
    /// The dead letters, oldest first: sequence, consumer, topic, attempts, when, event, error.
    List {
        /// Only this consuming service's (billing, inventory, workorder, identity).
        #[arg(long)]
        consumer: Option<String>,
        /// Only those after this sequence (the last of the previous page).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (1-200).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=200))]
        limit: u16,
    },
    /// One dead letter as JSON: the event as it arrived, the error, consumer and attempts.
    Show { sequence: u64 },
    /// Publish the events again to their subjects, through the consumers as any event (the
    /// inbox of a consumer that handled one already turns it away), and remove them here.
    Replay {
        #[arg(required = true)]
        sequences: Vec<u64>,
    },
}

#[derive(Args)]
struct RenderArgs {
    /// The tenant file (a CarErpTenant in YAML).
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    #[command(flatten)]
    operator: OperatorArgs,
}

#[derive(Args)]
struct LocalArgs {
    /// The tenant file (a CarErpTenant in YAML).
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Admin connection that creates the tenant's roles and databases.
    #[arg(
        long,
        env = "CARERP_ADMIN_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    admin_database_url: String,
    /// PgBouncer (transaction mode) in front of that server, `host:port`: the services'
    /// pools connect through it, their migrations to the server.
    #[arg(long, env = "CARERP_DATABASE_POOLER")]
    database_pooler: Option<carerp_operator::config::DatabasePooler>,
    /// JetStream server of the tenant's stream.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Seconds each service gets to answer /readyz.
    #[arg(long, default_value_t = 60)]
    ready_timeout: u64,
    /// Load a believable garage: customers, vehicles, parts with stock, work orders.
    #[arg(long)]
    seed_demo: bool,
    /// Build the service binaries first (`cargo build --bin carerp-customer ...`); `cargo dev` uses it.
    #[arg(long)]
    build: bool,
    /// The first owner's password, kept (not to be changed at first sign-in): for scripts and
    /// CI. Without it the owner gets a one-time password, printed under the URL table.
    #[arg(long, env = "CARERP_OWNER_PASSWORD", hide_env_values = true)]
    owner_password: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    operator: OperatorArgs,
    /// Admin connection of the tenants' PostgreSQL.
    #[arg(
        long,
        env = "CARERP_ADMIN_DATABASE_URL",
        conflicts_with = "admin_database_url_file"
    )]
    admin_database_url: Option<String>,
    /// File holding the admin URL (a mounted Secret), read again on every use. Missing:
    /// tenants report DatabaseNotConfigured until it appears.
    #[arg(long, env = "CARERP_ADMIN_DATABASE_URL_FILE")]
    admin_database_url_file: Option<PathBuf>,
    /// JetStream server the operator creates tenant streams on.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Where `/metrics`, `/healthz` and `/readyz` listen.
    #[arg(long, env = "ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    admin_addr: std::net::SocketAddr,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "carerp-system")]
    lease_namespace: String,
    /// This replica's pod name; its identity in the Lease and in Events is this name (or
    /// the host's) plus a random suffix, unique per process.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// How long the leader's Lease lasts; it renews every 2/15 of it and gives up after 2/3.
    #[arg(long, env = "CARERP_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// OTLP/gRPC collector of the operator's own traces.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// json (in a cluster) or pretty.
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    log_format: String,
}

/// Reads and validates a tenant file, printing why it is refused.
fn load_tenant(path: &Path) -> Result<CarErpTenant, ExitCode> {
    let yaml = std::fs::read_to_string(path).map_err(|err| {
        eprintln!("carerp-operator: cannot read {}: {err}", path.display());
        ExitCode::from(2)
    })?;
    carerp_operator::validate::parse_tenant(&yaml).map_err(|err| {
        eprintln!("carerp-operator: {}: invalid tenant: {err}", path.display());
        ExitCode::from(2)
    })
}

fn config_error(err: impl std::fmt::Display) -> ExitCode {
    eprintln!("carerp-operator: configuration error: {err}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match carerp_operator::crd::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("carerp-operator: cannot write the CRD: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Render(args) => render(&args),
        Command::Local(args) => runtime().block_on(local(args)),
        Command::Run(args) => runtime().block_on(run(*args)),
        Command::Dlq(args) => runtime().block_on(dlq(args)),
        Command::NatsAuth(args) => nats_auth(args),
    }
}

fn nats_auth(args: NatsAuthArgs) -> ExitCode {
    let NatsAuthAction::Init { dir } = args.action;
    let trust = carerp_operator::nats_auth::Trust::generate();
    let (config, seed) = match (trust.server_config(), trust.signing_seed()) {
        (Ok(config), Ok(seed)) => (config, seed),
        (Err(err), _) | (_, Err(err)) => {
            eprintln!("carerp-operator: {err}");
            return ExitCode::FAILURE;
        }
    };
    let conf = dir.join("carerp-auth.conf");
    let key = dir.join("account-signing-key.nk");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&conf, config))
        .and_then(|()| write_private(&key, seed.expose()));
    if let Err(err) = written {
        eprintln!(
            "carerp-operator: cannot write into {}: {err}",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    println!(
        "wrote {} (include it in nats-server.conf) and {} (the operator's Secret)\nCARERP_NATS_ACCOUNT={}",
        conf.display(),
        key.display(),
        trust.account()
    );
    ExitCode::SUCCESS
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(contents.as_bytes())
}

async fn dlq(args: DlqArgs) -> ExitCode {
    use carerp_operator::dlq::Action;
    let action = match args.action {
        DlqAction::List {
            consumer,
            after,
            limit,
        } => Action::List(carerp_kit::dead_letter::Filter {
            consumer,
            after,
            limit: usize::from(limit),
        }),
        DlqAction::Show { sequence } => Action::Show(sequence),
        DlqAction::Replay { sequences } => Action::Replay(sequences),
    };
    let mut options = async_nats::ConnectOptions::new();
    if let Some(path) = &args.nats_credentials_file {
        options = match options.credentials_file(path).await {
            Ok(options) => options,
            Err(err) => return config_error(err),
        };
    }
    let js = match options.connect(&args.nats_url).await {
        Ok(client) => async_nats::jetstream::new(client),
        Err(err) => {
            eprintln!(
                "carerp-operator: cannot reach NATS at {}: {err}",
                args.nats_url
            );
            return ExitCode::FAILURE;
        }
    };
    match carerp_operator::dlq::execute(&js, &args.tenant, &action).await {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("carerp-operator: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn render(args: &RenderArgs) -> ExitCode {
    let config = match args.operator.config() {
        Ok(config) => config,
        Err(err) => return config_error(err),
    };
    let tenant = match load_tenant(&args.file) {
        Ok(tenant) => tenant,
        Err(code) => return code,
    };
    // No passwords here: the pod templates go without the database Secret hashes the
    // controller adds once it has provisioned.
    let objects = carerp_operator::desired::desired(&tenant, &config, &Default::default(), None);
    match carerp_operator::desired::render_yaml(&objects) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("carerp-operator: cannot write YAML: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn local(args: LocalArgs) -> ExitCode {
    let tenant = match load_tenant(&args.file) {
        Ok(tenant) => tenant,
        Err(code) => return code,
    };
    if args.build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        println!("carerp-operator: building the service binaries");
        // `--bin` per service and no `-p`: cargo resolves features for the whole workspace,
        // as `cargo dev` (`run --bin`) and `cargo test --workspace` do, so what they built is
        // reused; the e2e and benchmark binaries are not built.
        let bins = carerp_operator::crd::SERVICES
            .iter()
            .flat_map(|service| ["--bin".to_string(), format!("carerp-{}", service.name())]);
        let mut build = std::process::Command::new(cargo);
        build.arg("build").args(bins);
        // What `cargo run` set for this binary is no setting for the build: a build script
        // that reads one (ring's reads CARGO_MANIFEST_DIR) would rerun, and everything above
        // it would rebuild, for `cargo dev` and again for the next `cargo test`.
        for (name, _) in std::env::vars_os() {
            if let Some(name) = name.to_str()
                && (name.starts_with("CARGO_PKG_")
                    || name.starts_with("CARGO_MANIFEST_")
                    || [
                        "CARGO_CRATE_NAME",
                        "CARGO_BIN_NAME",
                        "CARGO_PRIMARY_PACKAGE",
                    ]
                    .contains(&name))
            {
                build.env_remove(name);
            }
        }
        match build.status() {
            Ok(status) if status.success() => {}
            Ok(status) => {
                eprintln!("carerp-operator: building the services failed ({status})");
                return ExitCode::FAILURE;
            }
            Err(err) => {
                eprintln!("carerp-operator: cannot run cargo: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    let bin_dir = match carerp_operator::local::bin_dir() {
        Ok(dir) => dir,
        Err(err) => return config_error(format!("{err:#}")),
    };
    let options = carerp_operator::local::LocalOptions {
        admin_database_url: args.admin_database_url,
        database_pooler: args.database_pooler,
        nats_url: args.nats_url,
        bin_dir,
        ready_timeout: Duration::from_secs(args.ready_timeout),
        owner_password: args.owner_password.map(carerp_kit::auth::Secret::new),
    };
    let seed = args.seed_demo;
    let currency = tenant.spec.settings.currency.clone();
    let after_ready = move |planned: Vec<carerp_operator::local::Planned>,
                            owner: carerp_operator::local::OwnerAccess| async move {
        if seed {
            let urls = planned.iter().map(|p| (p.service, p.url())).collect();
            let summary = carerp_operator::seed::seed_demo(&urls, &owner, &currency).await?;
            println!("carerp-operator: {summary}");
        }
        Ok(())
    };
    match carerp_operator::local::run(&tenant, &options, after_ready).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("carerp-operator: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> ExitCode {
    use carerp_operator::controller::{self, Context};
    use carerp_operator::infrastructure::{AdminSource, Infrastructure};

    let config = match args.operator.config() {
        Ok(config) => config,
        Err(err) => return config_error(err),
    };
    let mut telemetry =
        carerp_kit::config::ServiceConfig::for_tests("operator", "carerp-system", None);
    telemetry.otlp_endpoint = args.otlp_endpoint.clone();
    telemetry.log_format = match args.log_format.as_str() {
        "json" => carerp_kit::config::LogFormat::Json,
        "pretty" => carerp_kit::config::LogFormat::Pretty,
        other => {
            return config_error(format!(
                "LOG_FORMAT={other:?} is invalid: expected json or pretty"
            ));
        }
    };
    let _telemetry = match carerp_kit::telemetry::init(&telemetry) {
        Ok(guard) => guard,
        Err(err) => return config_error(err),
    };
    let admin_source = match (&args.admin_database_url, &args.admin_database_url_file) {
        (Some(url), _) => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return config_error("CARERP_ADMIN_DATABASE_URL must be a postgres:// URL");
            }
            AdminSource::Url(url.clone())
        }
        (None, Some(path)) => AdminSource::File(path.clone()),
        (None, None) => {
            tracing::warn!(
                "no PostgreSQL admin connection (CARERP_ADMIN_DATABASE_URL or CARERP_ADMIN_DATABASE_URL_FILE): tenants will report DatabaseNotConfigured"
            );
            AdminSource::Missing
        }
    };
    let mut infrastructure = Infrastructure::new(admin_source, &args.nats_url);
    let mut nats_issuer = None;
    if let Some(path) = &args.operator.nats_account_signing_key_file {
        let issuer = match carerp_operator::nats_auth::Issuer::load(
            path,
            args.operator.nats_account.as_deref(),
        ) {
            Ok(issuer) => issuer,
            Err(err) => return config_error(err),
        };
        // The operator signs itself a user of the same account, without limits inside it:
        // it creates and deletes the tenants' streams.
        match issuer.operator_credentials() {
            Ok(own) => infrastructure = infrastructure.with_nats_credentials(own.creds_file()),
            Err(err) => return config_error(err),
        }
        tracing::info!(
            account = issuer.account(),
            "tenants get their own NATS credentials"
        );
        nats_issuer = Some(Arc::new(issuer));
    }
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(err) => {
            eprintln!("carerp-operator: cannot reach the Kubernetes API: {err}");
            return ExitCode::FAILURE;
        }
    };
    let timing = carerp_operator::leader::Timing::with_lease(Duration::from_secs(
        args.lease_duration_seconds,
    ));
    if let Err(err) = timing.validate() {
        return config_error(err);
    }
    let identity = carerp_operator::leader::identity(args.pod_name.as_deref());
    let metrics = carerp_operator::metrics::Metrics::default();
    let mut ctx = Context::new(
        client.clone(),
        config,
        Arc::new(infrastructure),
        metrics.clone(),
        Some(identity.clone()),
    );
    if let Some(issuer) = nats_issuer {
        ctx = ctx.with_nats_issuer(issuer);
    }
    let ctx = Arc::new(ctx);

    let admin = match carerp_operator::admin::serve(args.admin_addr, metrics).await {
        Ok(admin) => admin,
        Err(err) => {
            eprintln!(
                "carerp-operator: cannot listen on {}: {err}",
                args.admin_addr
            );
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(admin = %admin.addr, "admin endpoints listening");

    let lease = carerp_operator::leader::LeaseLock::new(
        client,
        &args.lease_namespace,
        "carerp-operator",
        &identity,
        timing,
    );
    let renewed = tokio::select! {
        renewed = lease.acquire() => renewed,
        _ = carerp_kit::grpc::shutdown_signal() => return ExitCode::SUCCESS,
    };
    tracing::info!(identity = %identity, "leading; starting the controller");
    admin.set_leading(true);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(controller::run(ctx, async move {
        let _ = stop_rx.await;
    }));
    tokio::select! {
        lost = lease.keep(renewed) => {
            // At once, not gracefully: another replica may be about to reconcile.
            tracing::error!(identity = %identity, reason = %lost, "lost the lease; stopping now");
            eprintln!("carerp-operator: lost the lease ({lost}); exiting so a fresh replica takes over");
            std::process::exit(1);
        }
        _ = carerp_kit::grpc::shutdown_signal() => {
            let _ = stop_tx.send(());
            let _ = controller.await;
        }
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
