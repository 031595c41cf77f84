//! Reconcile against a mocked API server (tower-test, as kube-rs' controller-rs does): each
//! test runs one reconcile and asserts the calls it made. Provisioners are a fake here; the
//! real ones are tested against PostgreSQL and NATS in `provision.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carerp_operator::config::OperatorConfig;
use carerp_operator::controller::{self, Context, Provisioner};
use carerp_operator::crd::{CarErpTenant, MessagingSpec, Service};
use carerp_operator::metrics::Metrics;
use carerp_operator::provision::ProvisionError;
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

/// Records what was asked of it; fails the databases on request.
#[derive(Default)]
struct FakeProvisioner {
    calls: Mutex<Vec<String>>,
    fail_databases: bool,
}

impl FakeProvisioner {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Provisioner for FakeProvisioner {
    fn ensure_databases<'a>(
        &'a self,
        tenant: &'a str,
        _passwords: &'a BTreeMap<Service, String>,
    ) -> BoxFuture<'a, Result<BTreeMap<Service, String>, ProvisionError>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("ensure_databases {tenant}"));
        let fail = self.fail_databases;
        Box::pin(async move {
            if fail {
                return Err(ProvisionError::Database {
                    action: "connect".into(),
                    source: sqlx::Error::PoolTimedOut,
                });
            }
            Ok([
                Service::Customer,
                Service::Workorder,
                Service::Inventory,
                Service::Billing,
            ]
            .into_iter()
            .map(|s| (s, "pw".to_string()))
            .collect())
        })
    }

    fn drop_databases<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<(), ProvisionError>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("drop_databases {tenant}"));
        Box::pin(async { Ok(()) })
    }

    fn ensure_stream<'a>(
        &'a self,
        tenant: &'a str,
        _spec: &'a MessagingSpec,
    ) -> BoxFuture<'a, Result<(), ProvisionError>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("ensure_stream {tenant}"));
        Box::pin(async { Ok(()) })
    }

    fn delete_stream<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<(), ProvisionError>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("delete_stream {tenant}"));
        Box::pin(async { Ok(()) })
    }
}

/// One request the API server received.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

impl Call {
    fn is_apply(&self) -> bool {
        self.method == "PATCH" && self.content_type == "application/apply-patch+yaml"
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn not_found() -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

/// A fake API server that answers like a real one would for what reconcile does: server-side
/// apply returns the object (Deployments with every replica ready), Secrets do not exist yet,
/// patches of the tenant return the tenant. Returns every call once the client is gone.
fn mock_api(tenant: Value) -> (Client, tokio::task::JoinHandle<Vec<Call>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let mut calls = Vec::new();
        let mut tenant = tenant;
        while let Some((request, respond)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            let query = request.uri().query().unwrap_or_default().to_string();
            let content_type = request
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let call = Call {
                method,
                path,
                query,
                content_type,
                body,
            };
            let response = if call.method == "GET" {
                not_found()
            } else if call.path.starts_with("/apis/carerp.io/") {
                if call.path.ends_with("/status") {
                    tenant["status"] = call.body["status"].clone();
                } else if call.content_type == "application/json-patch+json" {
                    for op in call.body.as_array().unwrap() {
                        match op["op"].as_str() {
                            Some("add") => {
                                tenant["metadata"]["finalizers"] = json!(["carerp.io/cleanup"])
                            }
                            Some("remove") => tenant["metadata"]["finalizers"] = json!([]),
                            _ => {}
                        }
                    }
                }
                json_response(StatusCode::OK, &tenant)
            } else if call.is_apply() {
                let mut object = call.body.clone();
                if object["kind"] == "Deployment" {
                    let replicas = object["spec"]["replicas"].clone();
                    object["status"] = json!({"replicas": replicas, "readyReplicas": replicas});
                }
                json_response(StatusCode::OK, &object)
            } else if call.method == "POST" {
                json_response(StatusCode::CREATED, &call.body)
            } else {
                not_found()
            };
            calls.push(call);
            respond.send_response(response);
        }
        calls
    });
    (Client::new(service, "default"), server)
}

fn tenant(finalizers: &[&str], extra_spec: Value) -> Value {
    let mut spec = json!({"displayName": "Demo Garage"});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    json!({
        "apiVersion": "carerp.io/v1alpha1",
        "kind": "CarErpTenant",
        "metadata": {
            "name": "demo",
            "uid": "5b9c3f0e-0000-4000-8000-000000000042",
            "generation": 3,
            "resourceVersion": "100",
            "finalizers": finalizers,
        },
        "spec": spec,
    })
}

struct Run {
    result: Result<Action, controller::Error>,
    calls: Vec<Call>,
    provisioner: Arc<FakeProvisioner>,
    ctx_action_after_error: Option<(Action, Action)>,
}

async fn reconcile_once(tenant: Value, provisioner: FakeProvisioner) -> Run {
    let (client, server) = mock_api(tenant.clone());
    let provisioner = Arc::new(provisioner);
    let ctx = Arc::new(Context::new(
        client,
        OperatorConfig::example(),
        provisioner.clone(),
        Metrics::default(),
        Some("test".into()),
    ));
    let object: Arc<CarErpTenant> = Arc::new(serde_json::from_value(tenant).unwrap());
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        controller::reconcile(object.clone(), ctx.clone()),
    )
    .await
    .expect("reconcile finished");
    let ctx_action_after_error = result.as_ref().err().map(|err| {
        (
            controller::error_policy(object.clone(), err, ctx.clone()),
            controller::error_policy(object.clone(), err, ctx.clone()),
        )
    });
    drop(ctx);
    let calls = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("mock server stopped")
        .unwrap();
    Run {
        result,
        calls,
        provisioner,
        ctx_action_after_error,
    }
}

#[tokio::test]
async fn first_reconcile_adds_the_finalizer_and_nothing_else() {
    let run = reconcile_once(tenant(&[], json!({})), FakeProvisioner::default()).await;
    assert_eq!(run.result.unwrap(), Action::await_change());
    assert_eq!(run.calls.len(), 1, "{:#?}", run.calls);
    let call = &run.calls[0];
    assert_eq!(call.method, "PATCH");
    assert_eq!(call.path, "/apis/carerp.io/v1alpha1/carerptenants/demo");
    assert_eq!(call.content_type, "application/json-patch+json");
    assert!(
        call.body.to_string().contains("carerp.io/cleanup"),
        "{}",
        call.body
    );
    assert!(
        run.provisioner.calls().is_empty(),
        "nothing provisioned before the finalizer"
    );
}

#[tokio::test]
async fn reconcile_applies_every_object_provisions_and_patches_status() {
    let run = reconcile_once(
        tenant(
            &["carerp.io/cleanup"],
            json!({"ingress": {"host": "demo.example.com"}}),
        ),
        FakeProvisioner::default(),
    )
    .await;
    let action = run.result.unwrap();
    assert_eq!(action, Action::requeue(carerp_operator::config::RESYNC));
    assert_eq!(
        run.provisioner.calls(),
        ["ensure_databases demo", "ensure_stream demo"]
    );

    let applies: Vec<&Call> = run.calls.iter().filter(|c| c.is_apply()).collect();
    for call in &applies {
        assert!(
            call.query.contains("fieldManager=carerp-operator")
                && call.query.contains("force=true"),
            "server-side apply as carerp-operator: {} {}",
            call.path,
            call.query
        );
    }
    let applied: Vec<String> = applies
        .iter()
        .filter(|c| !c.path.ends_with("/status"))
        .map(|c| {
            format!(
                "{}/{}",
                c.body["kind"].as_str().unwrap(),
                c.body["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    let tenant_object: CarErpTenant = serde_json::from_value(tenant(
        &[],
        json!({"ingress": {"host": "demo.example.com"}}),
    ))
    .unwrap();
    let mut expected: Vec<String> =
        carerp_operator::desired::desired(&tenant_object, &OperatorConfig::example())
            .iter()
            .map(|o| o.describe())
            .collect();
    for service in ["customer", "workorder", "inventory", "billing"] {
        expected.push(format!("Secret/{service}-database"));
    }
    assert_eq!(
        applied, expected,
        "every desired object, then the database Secrets"
    );
    assert!(
        applies
            .iter()
            .any(|c| c.path == "/api/v1/namespaces/carerp-demo")
    );
    assert!(
        applies
            .iter()
            .any(|c| c.path == "/apis/apps/v1/namespaces/carerp-demo/deployments/workorder")
    );
    let secret = applies
        .iter()
        .find(|c| c.path.ends_with("/secrets/customer-database"))
        .unwrap();
    assert_eq!(
        secret.body["stringData"]["DATABASE_URL"],
        "postgres://t_demo_customer:pw@postgres.carerp-system.svc:5432/t_demo_customer"
    );

    let secret_reads = run
        .calls
        .iter()
        .filter(|c| c.method == "GET" && c.path.contains("/secrets/"))
        .count();
    assert_eq!(secret_reads, 4, "existing passwords are looked up first");

    let status = run
        .calls
        .iter()
        .find(|c| c.path == "/apis/carerp.io/v1alpha1/carerptenants/demo/status")
        .expect("status patched");
    assert!(status.is_apply());
    let s = &status.body["status"];
    assert_eq!(s["phase"], "Ready");
    assert_eq!(s["observedGeneration"], 3);
    assert_eq!(s["readyServices"], "5/5");
    assert_eq!(s["endpoint"], "http://demo.example.com");
    assert_eq!(s["namespace"], "carerp-demo");
    assert_eq!(s["services"]["workorder"]["desired"], 2);
    let conditions: Vec<(&str, &str)> = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        conditions,
        [
            ("DatabasesReady", "True"),
            ("MessagingReady", "True"),
            ("WorkloadsReady", "True"),
            ("Ready", "True")
        ]
    );

    let event = run
        .calls
        .iter()
        .find(|c| c.method == "POST" && c.path.ends_with("/events"))
        .expect("an Event for the transition to Ready");
    assert_eq!(event.body["reason"], "Ready");
    assert_eq!(event.body["regarding"]["name"], "demo");
}

#[tokio::test]
async fn deletion_runs_cleanup_then_removes_the_finalizer() {
    let mut object = tenant(
        &["carerp.io/cleanup"],
        json!({"database": {"deletionPolicy": "Delete"}}),
    );
    object["metadata"]["deletionTimestamp"] = json!("2026-11-25T12:00:00Z");
    let run = reconcile_once(object, FakeProvisioner::default()).await;
    assert_eq!(run.result.unwrap(), Action::await_change());
    assert_eq!(
        run.provisioner.calls(),
        ["delete_stream demo", "drop_databases demo"]
    );
    assert!(
        run.calls
            .iter()
            .all(|c| !c.is_apply() || c.path.ends_with("/status")),
        "no object is applied while deleting"
    );
    let last = run.calls.last().unwrap();
    assert_eq!(last.method, "PATCH");
    assert_eq!(last.path, "/apis/carerp.io/v1alpha1/carerptenants/demo");
    assert_eq!(last.content_type, "application/json-patch+json");
    assert!(
        last.body.to_string().contains("\"remove\""),
        "{}",
        last.body
    );
    let deleting = run
        .calls
        .iter()
        .find(|c| c.path.ends_with("/status"))
        .unwrap();
    assert_eq!(deleting.body["status"]["phase"], "Deleting");
}

#[tokio::test]
async fn retain_keeps_the_databases() {
    let mut object = tenant(&["carerp.io/cleanup"], json!({}));
    object["metadata"]["deletionTimestamp"] = json!("2026-11-25T12:00:00Z");
    let run = reconcile_once(object, FakeProvisioner::default()).await;
    run.result.unwrap();
    assert_eq!(run.provisioner.calls(), ["delete_stream demo"]);
}

#[tokio::test]
async fn failing_provisioner_sets_the_condition_and_requeues_with_backoff() {
    let run = reconcile_once(
        tenant(&["carerp.io/cleanup"], json!({})),
        FakeProvisioner {
            fail_databases: true,
            ..FakeProvisioner::default()
        },
    )
    .await;
    let err = run.result.unwrap_err();
    assert_eq!(err.reason(), "DatabaseError");
    let (first, second) = run.ctx_action_after_error.unwrap();
    assert_eq!(first, Action::requeue(Duration::from_secs(5)));
    assert_eq!(second, Action::requeue(Duration::from_secs(10)));

    assert!(
        !run.calls
            .iter()
            .any(|c| c.path.contains("/secrets/") && c.is_apply()),
        "no Secret without a database"
    );
    let status = run
        .calls
        .iter()
        .find(|c| c.path.ends_with("/status"))
        .expect("status patched despite the failure");
    let s = &status.body["status"];
    assert_eq!(s["phase"], "Provisioning");
    let db = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DatabasesReady")
        .unwrap();
    assert_eq!(db["status"], "False");
    assert_eq!(db["reason"], "DatabaseError");
    assert!(
        db["message"]
            .as_str()
            .unwrap()
            .contains("PostgreSQL: connect"),
        "{db}"
    );
    let ready = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "False");
    assert!(
        run.calls
            .iter()
            .any(|c| c.method == "POST" && c.body["reason"] == "DatabaseError"),
        "a Warning event names the failure"
    );
}

#[tokio::test]
async fn invalid_spec_is_reported_not_retried() {
    let run = reconcile_once(
        tenant(
            &["carerp.io/cleanup"],
            json!({"settings": {"currency": "euro"}}),
        ),
        FakeProvisioner::default(),
    )
    .await;
    assert_eq!(run.result.unwrap(), Action::await_change());
    assert!(run.provisioner.calls().is_empty());
    let status = run
        .calls
        .iter()
        .find(|c| c.path.ends_with("/status"))
        .unwrap();
    let s = &status.body["status"];
    assert_eq!(s["phase"], "Failed");
    let ready = &s["conditions"][0];
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.settings.currency: expected a 3-letter ISO 4217 code"),
        "{ready}"
    );
    assert_eq!(
        run.calls
            .iter()
            .filter(|c| c.is_apply() && !c.path.ends_with("/status"))
            .count(),
        0,
        "nothing applied for an invalid tenant"
    );
}
