//! A whole garage for tests: the four real domain services and the identity service
//! in-process on ephemeral ports, each on its own schema of the test's database (as if each
//! had its own database), their tenant's JetStream stream, and the BFF in front of them,
//! driven over real HTTP. Requests carry the owner's access token, from a real sign-in,
//! unless a test sends its own.

#![allow(dead_code)]

use std::time::Duration;

use carerp_bff::{BffConfig, RunningBff};
use carerp_kit::{RequestContext, RunningService, ServiceConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub const LABOR_RATE: i64 = 9000;
/// The bootstrapped owner's password (not temporary, as for scripts).
pub const OWNER_PASSWORD: &str = "Vq7#mZ2!pL9x-garage";
/// What people created by tests change their one-time password to.
pub const STAFF_PASSWORD: &str = "Hz4$kW8!nR2q-workshop";

pub struct Garage {
    pub tenant: String,
    pub bff: Option<RunningBff>,
    pub base: String,
    pub http: reqwest::Client,
    pub customer: Option<RunningService>,
    pub workorder: Option<RunningService>,
    pub inventory: Option<RunningService>,
    pub billing: Option<RunningService>,
    pub identity: Option<RunningService>,
    /// The owner's access token, sent by [`Garage::call`] and friends.
    pub token: String,
    pub owner_email: String,
    pub billing_pool: PgPool,
    pub customer_pool: PgPool,
    pub urls: [String; 4],
}

/// A pool on a schema of its own in the test database, migrated with `migrator`.
async fn schema_pool(pool: &PgPool, schema: &str, migrator: &sqlx::migrate::Migrator) -> PgPool {
    // `schema` is one of our fixed names.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(pool)
        .await
        .unwrap();
    let options = (*pool.connect_options())
        .clone()
        .options([("search_path", schema)]);
    let schema_pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap();
    migrator.run(&schema_pool).await.unwrap();
    schema_pool
}

fn service_config(service: &'static str, tenant: &str) -> ServiceConfig {
    let mut config = ServiceConfig::for_tests(service, tenant, None);
    config.settings.labor_rate_minor = LABOR_RATE;
    config.settings.tax_rate_bp = 2000;
    config
}

fn url(service: &RunningService) -> String {
    format!("http://{}", service.grpc_addr)
}

impl Garage {
    pub async fn start(pool: PgPool) -> Self {
        Self::start_with(pool, |_| {}).await
    }

    /// Starts everything; `adjust` may change the BFF's configuration first.
    pub async fn start_with(pool: PgPool, adjust: impl FnOnce(&mut BffConfig)) -> Self {
        Self::start_serving(pool, adjust, carerp_bff::start).await
    }

    /// Starts everything with `serve` as the HTTP entry: the BFF alone, or with the web
    /// app's pages (whose tests share this harness).
    pub async fn start_serving<F, Fut>(
        pool: PgPool,
        adjust: impl FnOnce(&mut BffConfig),
        serve: F,
    ) -> Self
    where
        F: FnOnce(BffConfig) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<RunningBff>>,
    {
        let tenant = format!("bff-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let jetstream = carerp_kit::messaging::connect("nats://127.0.0.1:4222")
            .await
            .unwrap();
        carerp_kit::stream::ensure_stream(&jetstream, &tenant, &Default::default())
            .await
            .unwrap();

        let customer_pool = schema_pool(&pool, "customer_svc", &carerp_customer::MIGRATOR).await;
        let workorder_pool = schema_pool(&pool, "workorder_svc", &carerp_workorder::MIGRATOR).await;
        let inventory_pool = schema_pool(&pool, "inventory_svc", &carerp_inventory::MIGRATOR).await;
        let billing_pool = schema_pool(&pool, "billing_svc", &carerp_billing::MIGRATOR).await;
        let identity_pool = schema_pool(&pool, "identity_svc", &carerp_identity::MIGRATOR).await;
        let owner_email = format!("owner@{tenant}.local");
        let identity = carerp_identity::start_with_pool(
            carerp_identity::IdentityConfig {
                service: service_config("identity", &tenant),
                signing_key: carerp_kit::auth::testing::signing_key().clone(),
                owner: Some(carerp_identity::OwnerBootstrap {
                    email: owner_email.clone(),
                    display_name: "Olivia Owner".into(),
                    password: carerp_kit::auth::Secret::new(OWNER_PASSWORD),
                    temporary: false,
                }),
            },
            identity_pool,
        )
        .await
        .expect("identity service starts");

        let customer = carerp_customer::start_with_pool(
            service_config("customer", &tenant),
            customer_pool.clone(),
        )
        .await
        .expect("customer service starts");
        let inventory =
            carerp_inventory::start_with_pool(service_config("inventory", &tenant), inventory_pool)
                .await
                .expect("inventory service starts");
        let peers = carerp_workorder::Peers::connect_lazy(
            &url(&customer),
            &url(&inventory),
            Duration::from_secs(2),
        )
        .unwrap();
        let workorder = carerp_workorder::start_with_pool(
            service_config("workorder", &tenant),
            workorder_pool,
            peers,
        )
        .await
        .expect("work order service starts");
        let billing = carerp_billing::start_with_pool(
            service_config("billing", &tenant),
            billing_pool.clone(),
        )
        .await
        .expect("billing service starts");
        let urls = [
            url(&customer),
            url(&workorder),
            url(&inventory),
            url(&billing),
        ];
        let mut config = BffConfig::for_tests(
            &tenant,
            urls[0].clone(),
            urls[1].clone(),
            urls[2].clone(),
            urls[3].clone(),
            url(&identity),
        );
        adjust(&mut config);
        let bff = serve(config).await.unwrap();
        let mut garage = Self {
            base: format!("http://{}", bff.http_addr),
            tenant,
            bff: Some(bff),
            http: reqwest::Client::new(),
            customer: Some(customer),
            workorder: Some(workorder),
            inventory: Some(inventory),
            billing: Some(billing),
            identity: Some(identity),
            token: String::new(),
            owner_email,
            billing_pool,
            customer_pool,
            urls,
        };
        garage.token = garage
            .sign_in(&garage.owner_email.clone(), OWNER_PASSWORD)
            .await;
        garage
    }

    /// Signs in through the BFF and answers the access token.
    pub async fn sign_in(&self, email: &str, password: &str) -> String {
        let session = self
            .call_as(
                None,
                Method::POST,
                "/api/auth/login",
                Some(json!({"email": email, "password": password})),
            )
            .await
            .expect(StatusCode::OK);
        session["accessToken"].as_str().unwrap().to_string()
    }

    /// A new person with `role`, signed in with their own password: (user id, access token).
    pub async fn person(&self, role: &str) -> (String, String) {
        let email = format!(
            "{}-{}@example.com",
            role.to_lowercase(),
            &uuid::Uuid::now_v7().simple().to_string()[24..]
        );
        let created = self
            .post(
                "/api/users",
                json!({"email": email, "displayName": format!("A {role}"), "role": role}),
            )
            .await
            .expect(StatusCode::CREATED);
        let id = created["user"]["id"].as_str().unwrap().to_string();
        let one_time = created["oneTimePassword"].as_str().unwrap().to_string();
        let first = self.sign_in(&email, &one_time).await;
        self.call_as(
            Some(&first),
            Method::PUT,
            "/api/auth/password",
            Some(json!({"currentPassword": one_time, "newPassword": STAFF_PASSWORD})),
        )
        .await
        .expect(StatusCode::OK);
        (id, self.sign_in(&email, STAFF_PASSWORD).await)
    }

    pub async fn stop(mut self) {
        if let Some(bff) = self.bff.take() {
            bff.stop().await.unwrap();
        }
        for service in [
            self.customer.take(),
            self.workorder.take(),
            self.inventory.take(),
            self.billing.take(),
            self.identity.take(),
        ]
        .into_iter()
        .flatten()
        {
            service.stop().await.unwrap();
        }
        if let Ok(jetstream) = carerp_kit::messaging::connect("nats://127.0.0.1:4222").await {
            let _ = carerp_kit::stream::delete_streams(&jetstream, &self.tenant).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with a JSON body (or none), answering status, headers and JSON body
    /// (`Value::Null` when the body is not JSON).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send(method, path, body, None).await
    }

    /// A request carrying `token` (none: no `Authorization` header at all).
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        self.request(token, method, path, body, None).await
    }

    /// [`Garage::call`] with an `Idempotency-Key` header.
    pub async fn call_with_key(
        &self,
        method: Method,
        path: impl Into<String>,
        body: Value,
        key: &str,
    ) -> Reply {
        self.send(method, &path.into(), Some(body), Some(key)).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> Reply {
        self.request(Some(&self.token), method, path, body, key)
            .await
    }

    /// A request with `token` and an optional `Idempotency-Key`.
    pub async fn request(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> Reply {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        Reply::from(request.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// A customer with one vehicle: (customer id, vehicle id).
    pub async fn customer_with_vehicle(&self, name: &str, vin: &str) -> (String, String) {
        let customer = self
            .post(
                "/api/customers",
                json!({"name": name, "email": format!("{}@example.com", name.to_lowercase().replace(' ', ".")), "phone": "+4930123456"}),
            )
            .await
            .expect(StatusCode::CREATED);
        let id = customer["id"].as_str().unwrap().to_string();
        let vehicle = self
            .post(
                &format!("/api/customers/{id}/vehicles"),
                json!({"vin": vin, "make": "VW", "model": "Golf", "year": 2019, "licensePlate": "B-XY 123", "mileage": 42000}),
            )
            .await
            .expect(StatusCode::CREATED);
        (id, vehicle["id"].as_str().unwrap().to_string())
    }

    pub async fn part(&self, sku: &str, quantity: i32, reorder_point: i32) -> Value {
        self.post(
            "/api/parts",
            json!({
                "sku": sku, "name": format!("Part {sku}"), "category": "filters",
                "unitCost": {"amountMinor": 500, "currency": "EUR"},
                "unitPrice": {"amountMinor": 1250, "currency": "EUR"},
                "location": "A-01-1", "reorderPoint": reorder_point, "reorderQuantity": 10,
                "initialQuantity": quantity
            }),
        )
        .await
        .expect(StatusCode::CREATED)
    }

    /// Creates the invoice of a completed work order the way billing does on
    /// `workorder.completed`, by calling its event handler on its database.
    pub async fn invoice(&self, work_order: &Value) {
        let id = |key: &str| uuid::Uuid::parse_str(work_order[key].as_str().unwrap()).unwrap();
        let labor_lines = work_order["laborLines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|line| carerp_kit::events::CompletedLaborLine {
                line_id: uuid::Uuid::parse_str(line["id"].as_str().unwrap()).unwrap(),
                description: line["description"].as_str().unwrap().into(),
                technician: line["technician"].as_str().unwrap().into(),
                minutes: line["minutes"].as_i64().unwrap() as i32,
                hourly_rate_minor: line["hourlyRate"]["amountMinor"].as_i64().unwrap(),
                line_total_minor: line["lineTotal"]["amountMinor"].as_i64().unwrap(),
            })
            .collect::<Vec<_>>();
        let total: i64 = labor_lines.iter().map(|l| l.line_total_minor).sum();
        let data = carerp_kit::events::WorkOrderCompleted {
            work_order_id: id("id"),
            number: work_order["number"].as_str().unwrap().into(),
            customer_id: id("customerId"),
            vehicle_id: id("vehicleId"),
            currency: "EUR".into(),
            part_lines: Vec::new(),
            labor_lines,
            parts_total_minor: 0,
            labor_total_minor: total,
            total_minor: total,
            completed_at: chrono::Utc::now(),
            corrects_invoice_id: None,
        };
        let mut tx = self.billing_pool.begin().await.unwrap();
        carerp_billing::events::on_workorder_completed(
            &mut tx,
            &RequestContext::new_root(),
            uuid::Uuid::now_v7(),
            &data,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub async fn from(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            json,
        }
    }

    /// The body, after checking the status.
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        self.json
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Checks that this is a problem document of `status` and returns it.
    #[track_caller]
    pub fn problem(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        assert_eq!(self.json["status"], status.as_u16(), "{}", self.text);
        assert!(self.json["title"].is_string(), "{}", self.text);
        assert!(self.json["type"].is_string(), "{}", self.text);
        let correlation = self.header("x-correlation-id").unwrap().to_string();
        assert_eq!(
            self.json["correlationId"],
            correlation.as_str(),
            "{}",
            self.text
        );
        self.json
    }
}

/// The field errors of a problem as (field, message) pairs.
pub fn field_errors(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap_or_default().to_string(),
                        e["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
