//! A garage for tests: the real customer, inventory and work order services, served
//! in-process on ephemeral ports, on one real PostgreSQL database per test (the customer and
//! inventory services in schemas of their own, as if they had their own databases).

#![allow(dead_code)]

use std::time::Duration;

use carerp_kit::auth::Role;
use carerp_kit::auth::testing::{self, AuthedChannel};
use carerp_kit::{RunningService, ServiceConfig};
use carerp_proto::customer::v1 as cpb;
use carerp_proto::customer::v1::customer_service_client::CustomerServiceClient;
use carerp_proto::inventory::v1 as ipb;
use carerp_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use carerp_proto::workorder::v1 as pb;
use carerp_proto::workorder::v1::canned_job_service_client::CannedJobServiceClient;
use carerp_proto::workorder::v1::history_service_client::HistoryServiceClient;
use carerp_proto::workorder::v1::inspection_service_client::InspectionServiceClient;
use carerp_proto::workorder::v1::work_order_service_client::WorkOrderServiceClient;
use carerp_workorder::Peers;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub const LABOR_RATE: i64 = 9000;

pub struct Garage {
    pub workorder: RunningService,
    pub customer_service: Option<RunningService>,
    pub inventory_service: Option<RunningService>,
    pub client: WorkOrderServiceClient<AuthedChannel>,
    pub customers: Option<CustomerServiceClient<AuthedChannel>>,
    pub parts: Option<InventoryServiceClient<AuthedChannel>>,
    pub tenant: String,
    pub pool: PgPool,
}

fn workorder_config(tenant: &str) -> ServiceConfig {
    let mut config = ServiceConfig::for_tests("workorder", tenant, None);
    config.settings.labor_rate_minor = LABOR_RATE;
    config.settings.currency = "EUR".into();
    config
}

/// A schema of its own in the test database, for another service's tables.
async fn schema_pool(pool: &PgPool, schema: &str) -> PgPool {
    let create = match schema {
        "customer_service" => "CREATE SCHEMA customer_service",
        _ => "CREATE SCHEMA inventory_service",
    };
    sqlx::query(create).execute(pool).await.unwrap();
    let options = (*pool.connect_options())
        .clone()
        .options([("search_path", schema)]);
    PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap()
}

impl Garage {
    /// All three services, the work order service pointing at the other two.
    pub async fn start(pool: PgPool) -> Self {
        let tenant = carerp_kit::config::test_tenant();
        let customer_pool = schema_pool(&pool, "customer_service").await;
        carerp_customer::MIGRATOR.run(&customer_pool).await.unwrap();
        let customer_config = ServiceConfig::for_tests("customer", &tenant, None);
        let customer_service = carerp_customer::start_with_pool(customer_config, customer_pool)
            .await
            .unwrap();
        let inventory_pool = schema_pool(&pool, "inventory_service").await;
        carerp_inventory::MIGRATOR
            .run(&inventory_pool)
            .await
            .unwrap();
        let mut inventory_config = ServiceConfig::for_tests("inventory", &tenant, None);
        inventory_config.settings.currency = "EUR".into();
        let inventory_service = carerp_inventory::start_with_pool(inventory_config, inventory_pool)
            .await
            .unwrap();
        let customer_url = format!("http://{}", customer_service.grpc_addr);
        let inventory_url = format!("http://{}", inventory_service.grpc_addr);
        let customers = CustomerServiceClient::new(
            testing::connect(customer_url.clone(), &tenant, Role::Owner).await,
        );
        let parts = InventoryServiceClient::new(
            testing::connect(inventory_url.clone(), &tenant, Role::Owner).await,
        );
        let peers =
            Peers::connect_lazy(&customer_url, &inventory_url, Duration::from_secs(2)).unwrap();
        let mut garage = Self::start_with_peers_for(pool, &tenant, peers).await;
        garage.customer_service = Some(customer_service);
        garage.inventory_service = Some(inventory_service);
        garage.customers = Some(customers);
        garage.parts = Some(parts);
        garage
    }

    /// The work order service alone, with its clients of the others pointing at `url`.
    pub async fn start_pointing_at(pool: PgPool, url: &str) -> Self {
        let peers = Peers::connect_lazy(url, url, Duration::from_secs(2)).unwrap();
        Self::start_with_peers(pool, peers).await
    }

    pub async fn start_with_peers(pool: PgPool, peers: Peers) -> Self {
        Self::start_with_peers_for(pool, &carerp_kit::config::test_tenant(), peers).await
    }

    async fn start_with_peers_for(pool: PgPool, tenant: &str, peers: Peers) -> Self {
        let workorder =
            carerp_workorder::start_with_pool(workorder_config(tenant), pool.clone(), peers)
                .await
                .unwrap();
        let client = WorkOrderServiceClient::new(
            testing::connect(
                format!("http://{}", workorder.grpc_addr),
                tenant,
                Role::Owner,
            )
            .await,
        );
        Self {
            workorder,
            customer_service: None,
            inventory_service: None,
            client,
            customers: None,
            parts: None,
            tenant: tenant.to_string(),
            pool,
        }
    }

    /// A work order client acting as a user with `role`.
    pub async fn client_as(&self, role: Role) -> WorkOrderServiceClient<AuthedChannel> {
        WorkOrderServiceClient::new(
            testing::connect(
                format!("http://{}", self.workorder.grpc_addr),
                &self.tenant,
                role,
            )
            .await,
        )
    }

    /// An inspection client (served by the work order service) acting as `role`.
    pub async fn inspections_as(&self, role: Role) -> InspectionServiceClient<AuthedChannel> {
        InspectionServiceClient::new(
            testing::connect(
                format!("http://{}", self.workorder.grpc_addr),
                &self.tenant,
                role,
            )
            .await,
        )
        .max_decoding_message_size(16 * 1024 * 1024)
    }

    /// A canned job client (served by the work order service) acting as `role`.
    pub async fn canned_jobs_as(&self, role: Role) -> CannedJobServiceClient<AuthedChannel> {
        CannedJobServiceClient::new(
            testing::connect(
                format!("http://{}", self.workorder.grpc_addr),
                &self.tenant,
                role,
            )
            .await,
        )
    }

    /// A history client (served by the work order service) acting as `role`.
    pub async fn history_as(&self, role: Role) -> HistoryServiceClient<AuthedChannel> {
        HistoryServiceClient::new(
            testing::connect(
                format!("http://{}", self.workorder.grpc_addr),
                &self.tenant,
                role,
            )
            .await,
        )
    }

    pub async fn stop(self) {
        self.workorder.stop().await.unwrap();
        for service in [self.customer_service, self.inventory_service]
            .into_iter()
            .flatten()
        {
            service.stop().await.unwrap();
        }
    }

    /// A customer with one vehicle: (customer id, vehicle id).
    pub async fn customer_with_vehicle(&mut self, name: &str, vin: &str) -> (String, String) {
        let customers = self.customers.as_mut().expect("customer service running");
        let customer = customers
            .create_customer(cpb::CreateCustomerRequest {
                name: name.into(),
                email: format!("{}@example.com", name.to_lowercase().replace(' ', ".")),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let vehicle = customers
            .add_vehicle(cpb::AddVehicleRequest {
                customer_id: customer.id.clone(),
                vin: vin.into(),
                make: "Volkswagen".into(),
                model: "Golf".into(),
                year: 2019,
                license_plate: "B-AB 123".into(),
                mileage: 80_000,
                idempotency_key: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        (customer.id, vehicle.id)
    }

    pub async fn create(&mut self, customer_id: &str, vehicle_id: &str) -> pb::WorkOrder {
        self.client
            .create_work_order(new_order(customer_id, vehicle_id))
            .await
            .unwrap()
            .into_inner()
    }

    /// A fresh customer, vehicle and work order.
    pub async fn order(&mut self) -> pb::WorkOrder {
        let n = self.count("work_orders").await + 1;
        let vin = format!("WVWZZZ1KZAW{n:06}");
        let (customer_id, vehicle_id) = self
            .customer_with_vehicle(&format!("Customer {n}"), &vin)
            .await;
        self.create(&customer_id, &vehicle_id).await
    }

    pub async fn status(&mut self, id: &str, status: pb::WorkOrderStatus) -> pb::WorkOrder {
        self.try_status(id, status).await.unwrap()
    }

    /// A status change without a version check; cancelling gives a reason.
    pub async fn try_status(
        &mut self,
        id: &str,
        status: pb::WorkOrderStatus,
    ) -> Result<pb::WorkOrder, tonic::Status> {
        self.client
            .change_status(pb::ChangeStatusRequest {
                id: id.into(),
                status: status as i32,
                reason: "customer declined".into(),
                expected_version: 0,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn add_part(&mut self, id: &str, part_id: &str, quantity: i32) -> pb::WorkOrder {
        self.client
            .add_part_line(pb::AddPartLineRequest {
                work_order_id: id.into(),
                part_id: part_id.into(),
                quantity,
                expected_version: 0,
                idempotency_key: String::new(),
                job_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn add_labor(&mut self, id: &str, minutes: i32, rate: Option<i64>) -> pb::WorkOrder {
        self.client
            .add_labor_line(pb::AddLaborLineRequest {
                work_order_id: id.into(),
                description: "Replace brake pads".into(),
                technician: "Ana".into(),
                minutes,
                hourly_rate: rate.map(|amount_minor| carerp_proto::common::v1::Money {
                    amount_minor,
                    currency: "EUR".into(),
                }),
                expected_version: 0,
                idempotency_key: String::new(),
                job_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn get(&mut self, id: &str) -> pb::WorkOrder {
        self.client
            .get_work_order(pb::GetWorkOrderRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn count(&self, table: &str) -> i64 {
        let sql = match table {
            "work_orders" => "SELECT count(*) FROM public.work_orders",
            "part_lines" => "SELECT count(*) FROM public.part_lines",
            "labor_lines" => "SELECT count(*) FROM public.labor_lines",
            "work_order_counters" => "SELECT count(*) FROM public.work_order_counters",
            "outbox" => "SELECT count(*) FROM public.outbox",
            "inspection_photos" => "SELECT count(*) FROM public.inspection_photos",
            other => panic!("no count for {other}"),
        };
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    /// The events written about one work order: (topic, data), oldest first.
    pub async fn events(&self, id: &str) -> Vec<(String, serde_json::Value)> {
        outbox_events(&self.pool, id).await
    }
}

pub async fn outbox_events(pool: &PgPool, id: &str) -> Vec<(String, serde_json::Value)> {
    let mut conn = pool.acquire().await.unwrap();
    carerp_kit::outbox::rows_for(&mut conn, id)
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.topic, row.data))
        .collect()
}

pub fn new_order(customer_id: &str, vehicle_id: &str) -> pb::CreateWorkOrderRequest {
    pb::CreateWorkOrderRequest {
        customer_id: customer_id.into(),
        vehicle_id: vehicle_id.into(),
        complaint: "Brakes squeal when stopping".into(),
        odometer_km: 81_234,
        notes: "Customer waits".into(),
        idempotency_key: String::new(),
    }
}

/// The fields named in an InvalidArgument status.
pub fn fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    carerp_kit::status::field_violations(status)
        .into_iter()
        .map(|v| v.field)
        .collect()
}

pub fn version(order: &pb::WorkOrder) -> i64 {
    order.audit.as_ref().map(|a| a.version).unwrap_or_default()
}

pub fn totals(order: &pb::WorkOrder) -> (i64, i64, i64) {
    let t = order.totals.as_ref().unwrap();
    (
        t.parts.as_ref().unwrap().amount_minor,
        t.labor.as_ref().unwrap().amount_minor,
        t.estimated_total.as_ref().unwrap().amount_minor,
    )
}

pub fn uuid(value: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(value).unwrap()
}

/// What inventory would answer for the given lines of a work order: every line reserved at
/// `unit_price` (minor units).
pub async fn reserve(pool: &PgPool, order: &pb::WorkOrder, unit_price: i64) {
    use carerp_kit::events::{Money, PartsReserved, ReservedLine};
    let data = PartsReserved {
        work_order_id: uuid(&order.id),
        lines: order
            .part_lines
            .iter()
            .map(|line| ReservedLine {
                line_id: uuid(&line.id),
                part_id: uuid(&line.part_id),
                quantity: line.quantity,
                sku: format!("SKU-{}", &line.part_id[..8]),
                name: "Brake pad set".into(),
                unit_price: Money::new(unit_price, "EUR"),
            })
            .collect(),
    };
    let mut tx = pool.begin().await.unwrap();
    carerp_workorder::events::on_parts_reserved(
        &mut tx,
        &carerp_kit::RequestContext::new_root(),
        uuid::Uuid::now_v7(),
        &data,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// What inventory would answer when it cannot reserve the given lines.
pub async fn fail_reservation(pool: &PgPool, order: &pb::WorkOrder, reason: &str) {
    use carerp_kit::events::{FailedLine, ReservationFailed};
    let data = ReservationFailed {
        work_order_id: uuid(&order.id),
        lines: order
            .part_lines
            .iter()
            .map(|line| FailedLine {
                line_id: uuid(&line.id),
                part_id: uuid(&line.part_id),
                reason: reason.into(),
            })
            .collect(),
    };
    let mut tx = pool.begin().await.unwrap();
    carerp_workorder::events::on_reservation_failed(
        &mut tx,
        &carerp_kit::RequestContext::new_root(),
        uuid::Uuid::now_v7(),
        &data,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

impl Garage {
    /// An active part priced `price_minor` EUR cents, with `stock` on hand: its id.
    pub async fn part(&mut self, sku: &str, price_minor: i64, stock: i32) -> String {
        let parts = self.parts.as_mut().expect("inventory running");
        parts
            .create_part(ipb::CreatePartRequest {
                sku: sku.into(),
                name: format!("Part {sku}"),
                unit_cost: Some(carerp_proto::common::v1::Money {
                    amount_minor: price_minor / 2,
                    currency: "EUR".into(),
                }),
                unit_price: Some(carerp_proto::common::v1::Money {
                    amount_minor: price_minor,
                    currency: "EUR".into(),
                }),
                initial_quantity: stock,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .id
    }
}
