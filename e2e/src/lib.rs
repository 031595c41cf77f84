//! The platform of one tenant, in this process: each domain service and the identity service
//! on a database of its own, talking over gRPC and the tenant's JetStream stream, exactly as
//! deployed. The clients act as the tenant's first owner, signed in for real.

pub mod ack_gate;
pub mod bench;
pub mod cluster;
pub mod density;
pub mod local;

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use carerp_kit::auth::{AuthedChannel, Secret, with_token};
use carerp_kit::{RunningService, ServiceConfig, TenantSettings};
use carerp_operator::crd::Service;
use carerp_operator::local::OwnerAccess;
use carerp_proto::billing::v1::billing_service_client::BillingServiceClient;
use carerp_proto::customer::v1::customer_service_client::CustomerServiceClient;
use carerp_proto::identity::v1::LoginRequest;
use carerp_proto::identity::v1::identity_service_client::IdentityServiceClient;
use carerp_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use carerp_proto::workorder::v1::work_order_service_client::WorkOrderServiceClient;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::transport::Channel;

pub const SERVICES: [&str; 5] = ["customer", "workorder", "inventory", "billing", "identity"];

/// The JetStream server a platform uses, and who signs its NATS users when the server
/// requires them.
pub struct Broker {
    pub url: String,
    pub auth: Option<BrokerAuth>,
}

/// Per-tenant credentials, as the operator issues them in a cluster: the services sign in as
/// the tenant's user (its `.creds` file written into `dir`), the platform's own connection
/// (streams, checks) as the operator's.
pub struct BrokerAuth {
    pub issuer: Arc<carerp_operator::nats_auth::Issuer>,
    pub dir: PathBuf,
}

impl Broker {
    /// An unauthenticated broker at `url`.
    pub fn open(url: &str) -> Self {
        Self {
            url: url.into(),
            auth: None,
        }
    }

    /// The operator's connection: unauthenticated, or as the operator's own user.
    pub async fn connect_operator(&self) -> anyhow::Result<async_nats::jetstream::Context> {
        let identity = match &self.auth {
            Some(auth) => Some(carerp_kit::messaging::BrokerIdentity {
                credentials: auth
                    .issuer
                    .operator_credentials()?
                    .creds_file()
                    .expose()
                    .to_string(),
                inbox_prefix: "_INBOX".into(),
            }),
            None => None,
        };
        Ok(carerp_kit::messaging::connect_as(&self.url, identity.as_ref()).await?)
    }

    /// Writes the tenant's `.creds` file and answers its path; `None` without auth.
    pub fn tenant_credentials(&self, tenant: &str) -> anyhow::Result<Option<PathBuf>> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        let path = auth.dir.join(format!("{tenant}.creds"));
        let creds = auth.issuer.tenant_credentials(tenant)?.creds_file();
        std::fs::write(&path, creds.expose())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Some(path))
    }
}

/// The first owner's password in every e2e tenant (kept, as `--owner-password` keeps it).
pub const OWNER_PASSWORD: &str = "Vq7#mZ2!pL9x-garage";

pub struct Platform {
    pub tenant: String,
    pub owner: OwnerAccess,
    pub customers: CustomerServiceClient<AuthedChannel>,
    pub work_orders: WorkOrderServiceClient<AuthedChannel>,
    pub inventory: InventoryServiceClient<AuthedChannel>,
    pub billing: BillingServiceClient<AuthedChannel>,
    /// Pools of each service's database, in the order of [`SERVICES`].
    pub pools: Vec<PgPool>,
    pub jetstream: async_nats::jetstream::Context,
    /// In the order of [`SERVICES`]; `None` once [`Platform::stop_service`] stopped it.
    running: Vec<Option<RunningService>>,
    admin: PgPool,
    admin_url: String,
    settings: TenantSettings,
    databases: Vec<String>,
}

impl Platform {
    /// Starts a fresh tenant: a stream, four databases, four services.
    pub async fn start(settings: TenantSettings) -> anyhow::Result<Self> {
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        // sqlx's default wait for a connection: generous, for tests that load the machine.
        Self::start_on(settings, &admin_url, Duration::from_secs(30)).await
    }

    /// The same on the PostgreSQL server at `admin_url` (a private one, for fault tests), the
    /// services' pools giving up waiting for a connection after `acquire_timeout` (short in
    /// fault tests, so an outage shows as UNAVAILABLE quickly instead of holding calls).
    pub async fn start_on(
        settings: TenantSettings,
        admin_url: &str,
        acquire_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        Self::start_with(settings, admin_url, &nats_url, acquire_timeout).await
    }

    /// [`Platform::start_on`] with the JetStream server at `nats_url` (a private one, for
    /// fault tests that stop it).
    pub async fn start_with(
        settings: TenantSettings,
        admin_url: &str,
        nats_url: &str,
        acquire_timeout: Duration,
    ) -> anyhow::Result<Self> {
        Self::start_on_broker(
            settings,
            admin_url,
            &Broker::open(nats_url),
            acquire_timeout,
        )
        .await
    }

    /// [`Platform::start_with`] on `broker`: with its auth, every service signs in as the
    /// tenant's NATS user, limited to the tenant's subjects and streams.
    pub async fn start_on_broker(
        settings: TenantSettings,
        admin_url: &str,
        broker: &Broker,
        acquire_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let admin_url = admin_url.to_string();
        let nats_url = broker.url.clone();
        let tenant = format!("e2e-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let nats_credentials = broker.tenant_credentials(&tenant)?;
        let jetstream = broker.connect_operator().await?;
        carerp_kit::stream::ensure_stream(&jetstream, &tenant, &Default::default()).await?;

        let admin = PgPoolOptions::new()
            .max_connections(2)
            .connect(&admin_url)
            .await?;
        let mut databases = Vec::new();
        let mut pools = Vec::new();
        for service in SERVICES {
            let name = format!("{}_{service}", tenant.replace('-', "_"));
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .with_context(|| format!("creating database {name}"))?;
            databases.push(name.clone());
            let options = PgConnectOptions::from_str(&admin_url)?.database(&name);
            pools.push(
                PgPoolOptions::new()
                    .max_connections(10)
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options)
                    .await?,
            );
        }

        let config = |service: &'static str| {
            let mut config = ServiceConfig::for_tests(service, &tenant, None);
            config.nats_url = nats_url.clone();
            config.nats_credentials = nats_credentials.clone();
            config.settings = settings.clone();
            config
        };
        carerp_customer::MIGRATOR.run(&pools[0]).await?;
        carerp_workorder::MIGRATOR.run(&pools[1]).await?;
        carerp_inventory::MIGRATOR.run(&pools[2]).await?;
        carerp_billing::MIGRATOR.run(&pools[3]).await?;
        carerp_identity::MIGRATOR.run(&pools[4]).await?;

        let customer =
            carerp_customer::start_with_pool(config("customer"), pools[0].clone()).await?;
        let inventory =
            carerp_inventory::start_with_pool(config("inventory"), pools[2].clone()).await?;
        let peers = carerp_workorder::Peers::connect_lazy(
            &format!("http://{}", customer.grpc_addr),
            &format!("http://{}", inventory.grpc_addr),
            Duration::from_secs(2),
        )?;
        let workorder =
            carerp_workorder::start_with_pool(config("workorder"), pools[1].clone(), peers).await?;
        let billing = carerp_billing::start_with_pool(config("billing"), pools[3].clone()).await?;
        let owner = OwnerAccess {
            email: format!("owner@{tenant}.local"),
            password: Secret::new(OWNER_PASSWORD),
            temporary: false,
        };
        let identity = carerp_identity::start_with_pool(
            carerp_identity::IdentityConfig {
                service: config("identity"),
                signing_key: carerp_kit::auth::testing::signing_key().clone(),
                owner: Some(carerp_identity::OwnerBootstrap {
                    email: owner.email.clone(),
                    display_name: "Olivia Owner".into(),
                    password: owner.password.clone(),
                    temporary: false,
                }),
            },
            pools[4].clone(),
        )
        .await?;

        let lazy = |service: &RunningService| {
            Channel::from_shared(format!("http://{}", service.grpc_addr)).map(|e| e.connect_lazy())
        };
        let session = IdentityServiceClient::new(lazy(&identity)?)
            .login(LoginRequest {
                email: owner.email.clone(),
                password: OWNER_PASSWORD.into(),
                client_address: "127.0.0.1".into(),
            })
            .await
            .context("signing in as the owner")?
            .into_inner();
        let token = Secret::new(session.access_token);
        let channel = |service: &RunningService| -> anyhow::Result<AuthedChannel> {
            Ok(with_token(lazy(service)?, &token)?)
        };
        Ok(Self {
            customers: CustomerServiceClient::new(channel(&customer)?),
            work_orders: WorkOrderServiceClient::new(channel(&workorder)?),
            inventory: InventoryServiceClient::new(channel(&inventory)?),
            billing: BillingServiceClient::new(channel(&billing)?),
            owner,
            running: vec![customer, workorder, inventory, billing, identity]
                .into_iter()
                .map(Some)
                .collect(),
            tenant,
            pools,
            jetstream,
            admin,
            admin_url,
            settings,
            databases,
        })
    }

    /// The gRPC URL of each running service, as the operator's `local` mode knows them.
    pub fn grpc_urls(&self) -> HashMap<Service, String> {
        [
            Service::Customer,
            Service::Workorder,
            Service::Inventory,
            Service::Billing,
            Service::Identity,
        ]
        .into_iter()
        .zip(&self.running)
        .filter_map(|(name, service)| {
            let service = service.as_ref()?;
            Some((name, format!("http://{}", service.grpc_addr)))
        })
        .collect()
    }

    /// Stops one in-process service as a deployment would stop a pod: its database, its
    /// durable consumer and the events it has not acknowledged stay. A fault test then runs the
    /// service's binary in its place ([`Platform::process_env`]).
    pub async fn stop_service(&mut self, service: &str) -> anyhow::Result<()> {
        let index = SERVICES
            .iter()
            .position(|s| *s == service)
            .with_context(|| format!("no service {service}"))?;
        if let Some(running) = self.running[index].take() {
            running.stop().await?;
        }
        Ok(())
    }

    /// The environment of `service`'s binary for this tenant, as its Deployment sets it: the
    /// tenant, its settings, its database, the broker at `nats_url`, the token keys, and
    /// addresses on free ports (`GRPC_ADDR` is the one to call it at).
    pub fn process_env(
        &self,
        service: &str,
        nats_url: &str,
    ) -> anyhow::Result<Vec<(&'static str, String)>> {
        let index = SERVICES
            .iter()
            .position(|s| *s == service)
            .with_context(|| format!("no service {service}"))?;
        let mut database = reqwest::Url::parse(&self.admin_url)?;
        database.set_path(&self.databases[index]);
        let free_port = || -> anyhow::Result<String> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .to_string())
        };
        let settings = &self.settings;
        Ok(vec![
            ("CARERP_TENANT", self.tenant.clone()),
            ("DATABASE_URL", database.to_string()),
            ("NATS_URL", nats_url.to_string()),
            ("GRPC_ADDR", free_port()?),
            ("ADMIN_ADDR", free_port()?),
            ("LOG_FORMAT", "json".into()),
            (
                carerp_kit::config::TOKEN_PUBLIC_KEYS,
                carerp_kit::auth::testing::signing_key().public_entry(),
            ),
            ("CARERP_CURRENCY", settings.currency.clone()),
            ("CARERP_TAX_RATE_BP", settings.tax_rate_bp.to_string()),
            (
                "CARERP_LABOR_RATE_MINOR",
                settings.labor_rate_minor.to_string(),
            ),
            (
                "CARERP_PAYMENT_TERMS_DAYS",
                settings.payment_terms_days.to_string(),
            ),
            ("CARERP_TIMEZONE", settings.timezone.clone()),
        ])
    }

    /// How many events the consumers have dead-lettered so far (the tenant's dead-letter
    /// stream).
    pub async fn dead_letters(&self) -> anyhow::Result<u64> {
        let mut stream = self
            .jetstream
            .get_stream(carerp_kit::envelope::dlq_stream_name(&self.tenant))
            .await?;
        Ok(stream.info().await?.state.messages)
    }

    /// Stops the services; their databases and the stream stay until [`Platform::stop`].
    pub async fn stop_services(&mut self) -> anyhow::Result<()> {
        for service in self.running.drain(..).flatten() {
            service.stop().await?;
        }
        Ok(())
    }

    /// Stops the services and removes the tenant's databases and stream.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop_services().await?;
        for pool in &self.pools {
            pool.close().await;
        }
        for name in &self.databases {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&self.admin)
            .await?;
        }
        carerp_kit::stream::delete_streams(&self.jetstream, &self.tenant).await?;
        Ok(())
    }
}

/// Polls `check` every 50 ms until it yields a value, for up to `timeout`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
