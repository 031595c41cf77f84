//! The platform of one tenant, in this process: each domain service on a database of its
//! own, talking over gRPC and the tenant's JetStream stream, exactly as deployed.

pub mod cluster;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use carerp_kit::{RunningService, ServiceConfig, TenantSettings};
use carerp_operator::crd::Service;
use carerp_proto::billing::v1::billing_service_client::BillingServiceClient;
use carerp_proto::customer::v1::customer_service_client::CustomerServiceClient;
use carerp_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use carerp_proto::workorder::v1::work_order_service_client::WorkOrderServiceClient;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::transport::Channel;

pub const SERVICES: [&str; 4] = ["customer", "workorder", "inventory", "billing"];

pub struct Platform {
    pub tenant: String,
    pub customers: CustomerServiceClient<Channel>,
    pub work_orders: WorkOrderServiceClient<Channel>,
    pub inventory: InventoryServiceClient<Channel>,
    pub billing: BillingServiceClient<Channel>,
    /// Pools of each service's database, in the order of [`SERVICES`].
    pub pools: Vec<PgPool>,
    pub jetstream: async_nats::jetstream::Context,
    running: Vec<RunningService>,
    admin: PgPool,
    databases: Vec<String>,
}

impl Platform {
    /// Starts a fresh tenant: a stream, four databases, four services.
    pub async fn start(settings: TenantSettings) -> anyhow::Result<Self> {
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let tenant = format!("e2e-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let jetstream = carerp_kit::messaging::connect(&nats_url).await?;
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
                    .connect_with(options)
                    .await?,
            );
        }

        let config = |service: &'static str| {
            let mut config = ServiceConfig::for_tests(service, &tenant, None);
            config.nats_url = nats_url.clone();
            config.settings = settings.clone();
            config
        };
        carerp_customer::MIGRATOR.run(&pools[0]).await?;
        carerp_workorder::MIGRATOR.run(&pools[1]).await?;
        carerp_inventory::MIGRATOR.run(&pools[2]).await?;
        carerp_billing::MIGRATOR.run(&pools[3]).await?;

        let customer =
            carerp_customer::start_with_pool(config("customer"), pools[0].clone()).await?;
        let directory = carerp_workorder::CustomerDirectory::connect_lazy(
            &format!("http://{}", customer.grpc_addr),
            Duration::from_secs(2),
        )?;
        let workorder =
            carerp_workorder::start_with_pool(config("workorder"), pools[1].clone(), directory)
                .await?;
        let inventory =
            carerp_inventory::start_with_pool(config("inventory"), pools[2].clone()).await?;
        let billing = carerp_billing::start_with_pool(config("billing"), pools[3].clone()).await?;

        let channel = |service: &RunningService| {
            Channel::from_shared(format!("http://{}", service.grpc_addr)).map(|e| e.connect_lazy())
        };
        Ok(Self {
            customers: CustomerServiceClient::new(channel(&customer)?),
            work_orders: WorkOrderServiceClient::new(channel(&workorder)?),
            inventory: InventoryServiceClient::new(channel(&inventory)?),
            billing: BillingServiceClient::new(channel(&billing)?),
            running: vec![customer, workorder, inventory, billing],
            tenant,
            pools,
            jetstream,
            admin,
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
        ]
        .into_iter()
        .zip(&self.running)
        .map(|(name, service)| (name, format!("http://{}", service.grpc_addr)))
        .collect()
    }

    /// Stops the services; their databases and the stream stay until [`Platform::stop`].
    pub async fn stop_services(&mut self) -> anyhow::Result<()> {
        for service in self.running.drain(..) {
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
        self.jetstream
            .delete_stream(carerp_kit::envelope::stream_name(&self.tenant))
            .await?;
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
