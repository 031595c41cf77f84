//! The whole platform as it runs on a developer's machine: `carerp-operator local` starts the
//! six service processes for a tenant of this test's own, and the saga is driven through
//! the BFF's REST API, signed in as the tenant's owner, as garage staff would.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

/// `target/<profile>/`, where cargo put the workspace's binaries for this test run.
fn binaries_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf()
}

/// The owner's password, set as scripts set it (`--owner-password`).
const OWNER_PASSWORD: &str = "Vq7#mZ2!pL9x-garage";

struct Local {
    child: Child,
    tenant: String,
    bff: String,
    /// The address of the "sign in as" line under the table.
    owner_email: String,
}

impl Local {
    fn start() -> Self {
        let dir = binaries_dir();
        for binary in [
            "carerp-operator",
            "carerp-customer",
            "carerp-workorder",
            "carerp-inventory",
            "carerp-billing",
            "carerp-identity",
            "carerp-bff",
        ] {
            assert!(
                dir.join(binary).exists(),
                "{binary} is not built in {}; `cargo test --workspace` builds every service binary",
                dir.display()
            );
        }
        let tenant = format!("local-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let file = std::env::temp_dir().join(format!("{tenant}.yaml"));
        std::fs::write(
            &file,
            format!(
                "apiVersion: carerp.io/v1alpha1\nkind: CarErpTenant\nmetadata:\n  name: {tenant}\nspec:\n  displayName: Local Test Garage\n  settings:\n    currency: EUR\n    taxRateBasisPoints: 1900\n    laborRateCents: 6000\n"
            ),
        )
        .unwrap();
        let mut child = Command::new(dir.join("carerp-operator"))
            .args(["local", "--owner-password", OWNER_PASSWORD, "-f"])
            .arg(&file)
            .env("LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Read the table of URLs from its output, then keep draining so it never blocks.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let next = || {
            rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                .expect("carerp-operator local printed no bff line and sign-in within 90 s")
        };
        let bff = loop {
            let line = next();
            // The table's row, not a log line prefixed `bff |`.
            let columns: Vec<&str> = line.split_whitespace().collect();
            if let ["bff", url, ..] = columns.as_slice()
                && url.starts_with("http://")
            {
                break url.to_string();
            }
        };
        let owner_email = loop {
            let line = next();
            if let Some(rest) = line.strip_prefix("sign in as ") {
                assert!(rest.contains(OWNER_PASSWORD), "{line}");
                assert!(
                    !rest.contains("one-time"),
                    "a given password is kept: {line}"
                );
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        Self {
            child,
            tenant,
            bff,
            owner_email,
        }
    }

    /// Ctrl-C, as a developer stops it: every process ends and the operator exits 0.
    fn stop(mut self) {
        let exit = self
            .interrupt()
            .expect("local did not stop within 30 s of Ctrl-C");
        assert!(exit.success(), "carerp-operator local exited with {exit}");
    }

    fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().ok()?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Some(exit) = self.child.try_wait().ok()? {
                return Some(exit);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

/// A failed test still stops the processes it started.
impl Drop for Local {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) && self.interrupt().is_none() {
            let _ = self.child.kill();
        }
    }
}

async fn cleanup(tenant: &str) {
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    let prefix = format!("t_{}", tenant.replace('-', "_"));
    for service in ["customer", "workorder", "inventory", "billing", "identity"] {
        let name = format!("{prefix}_{service}");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await
        .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {name}")))
            .execute(&admin)
            .await
            .unwrap();
    }
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let js = carerp_kit::messaging::connect(&nats).await.unwrap();
    let _ = js
        .delete_stream(carerp_kit::envelope::stream_name(tenant))
        .await;
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let (got, body) = self.send(method, path, body).await;
        assert_eq!(got, status, "{path}: {body}");
        body
    }

    async fn order_until(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let order = self
                .expect(
                    reqwest::Method::GET,
                    &format!("/api/work-orders/{id}"),
                    None,
                    200,
                )
                .await;
            if done(&order) {
                return order;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gave up waiting: {order}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn a_repair_from_intake_to_invoice_through_the_bff_of_a_local_tenant() {
    let local = Local::start();
    let tenant = local.tenant.clone();
    let mut api = Api {
        http: reqwest::Client::new(),
        base: local.bff.clone(),
        token: None,
    };
    use reqwest::Method as M;

    // Nothing without signing in; the owner signs in with the password the script set. The
    // tenant's URL opens the web app, at its sign-in page.
    api.expect(M::GET, "/api/customers", None, 401).await;
    let page = api.http.get(format!("{}/", api.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        page.headers()
    );
    assert!(page.text().await.unwrap().contains("password"));
    let session = api
        .expect(
            M::POST,
            "/api/auth/login",
            Some(json!({"email": local.owner_email, "password": OWNER_PASSWORD})),
            200,
        )
        .await;
    assert_eq!(session["user"]["role"], "OWNER", "{session}");
    assert_eq!(session["user"]["mustChangePassword"], false, "{session}");
    api.token = Some(session["accessToken"].as_str().unwrap().to_string());

    let customer = api
        .expect(M::POST, "/api/customers", Some(json!({"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+441234567890"})), 201)
        .await;
    let customer_id = customer["id"].as_str().unwrap().to_string();
    let vehicle = api
        .expect(
            M::POST,
            &format!("/api/customers/{customer_id}/vehicles"),
            Some(json!({"vin": "SAJAA01A0XB000001", "make": "Jaguar", "model": "XJ", "year": 1999, "licensePlate": "AL 1815", "mileage": 120000})),
            201,
        )
        .await;
    let part = api
        .expect(
            M::POST,
            "/api/parts",
            Some(json!({"sku": "BLT-7", "name": "Timing belt", "category": "engine",
                        "unitCost": {"amountMinor": 4000, "currency": "EUR"},
                        "unitPrice": {"amountMinor": 8900, "currency": "EUR"},
                        "location": "C-2", "reorderPoint": 1, "reorderQuantity": 5, "initialQuantity": 3})),
            201,
        )
        .await;
    let order = api
        .expect(
            M::POST,
            "/api/work-orders",
            Some(json!({"customerId": customer_id, "vehicleId": vehicle["id"], "complaint": "engine ticks", "odometerKm": 120100})),
            201,
        )
        .await;
    let id = order["id"].as_str().unwrap().to_string();
    api.expect(
        M::PUT,
        &format!("/api/work-orders/{id}/status"),
        Some(json!({"status": "IN_PROGRESS"})),
        200,
    )
    .await;
    api.expect(
        M::POST,
        &format!("/api/work-orders/{id}/line-items"),
        Some(json!({"partId": part["id"], "quantity": 1})),
        200,
    )
    .await;
    api.expect(
        M::POST,
        &format!("/api/work-orders/{id}/labor"),
        Some(json!({"description": "replace timing belt", "technician": "Sam", "minutes": 120})),
        200,
    )
    .await;
    api.order_until(&id, |o| o["partLines"][0]["reservationState"] == "RESERVED")
        .await;
    api.expect(
        M::PUT,
        &format!("/api/work-orders/{id}/status"),
        Some(json!({"status": "COMPLETED"})),
        200,
    )
    .await;
    let invoiced = api.order_until(&id, |o| o["status"] == "INVOICED").await;

    // 89.00 + 2 h x 60.00 = 209.00 net, 19% tax per line: 16.91 + 22.80.
    let invoice = &invoiced["invoice"];
    assert!(
        invoice["number"].as_str().unwrap().starts_with("INV-"),
        "{invoiced}"
    );
    let invoice = api
        .expect(
            M::GET,
            &format!("/api/invoices/{}", invoice["id"].as_str().unwrap()),
            None,
            200,
        )
        .await;
    assert_eq!(
        invoice["total"]["amountMinor"],
        20_900 + 1_691 + 2_280,
        "{invoice}"
    );
    let stock = api
        .expect(
            M::GET,
            &format!("/api/parts/{}", part["id"].as_str().unwrap()),
            None,
            200,
        )
        .await;
    assert_eq!(
        (
            stock["quantityOnHand"].as_i64(),
            stock["quantityReserved"].as_i64()
        ),
        (Some(2), Some(0)),
        "{stock}"
    );

    local.stop();
    cleanup(&tenant).await;
}
