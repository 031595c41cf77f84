//! Reconcile against a mocked API server (tower-test, as kube-rs' controller-rs does): each
//! test runs reconciles and asserts the calls they made, as a script (`get secrets/...`,
//! `apply deployments/...`, `list ingresses`, `delete ...`). The mock keeps what is applied, so
//! a scenario can run several reconciles against the same cluster. Provisioners are a fake
//! here; the real ones are tested against PostgreSQL and NATS in `provision.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carerp_operator::config::OperatorConfig;
use carerp_operator::controller::{self, Context, Provisioner};
use carerp_operator::crd::{CarErpTenant, DeletionPolicy, MessagingSpec, Plan, Service};
use carerp_operator::desired::{self, SECRET_HASH_ANNOTATION};
use carerp_operator::metrics::Metrics;
use carerp_operator::nats_auth::{self, Issuer, Trust};
use carerp_operator::provision::{self, ProvisionError};
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

mod common;
use common::fixtures::demo;

const DATABASE_SERVICES: [&str; 5] = ["customer", "workorder", "inventory", "billing", "identity"];

/// Records what was asked of it; keeps the passwords it is given, like the real one, and gives
/// `password` to a database whose Secret is missing; fails on request.
struct FakeProvisioner {
    calls: Mutex<Vec<String>>,
    password: &'static str,
    fail_databases: bool,
    fail_delete_stream: bool,
}

impl Default for FakeProvisioner {
    fn default() -> Self {
        Self {
            calls: Mutex::default(),
            password: "pw",
            fail_databases: false,
            fail_delete_stream: false,
        }
    }
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
        passwords: &'a BTreeMap<Service, String>,
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
                Service::Identity,
            ]
            .into_iter()
            .map(|s| {
                let password = passwords.get(&s).cloned();
                (s, password.unwrap_or_else(|| self.password.to_string()))
            })
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
        let fail = self.fail_delete_stream;
        Box::pin(async move {
            if fail {
                return Err(ProvisionError::Nats {
                    action: "delete stream TENANT_demo".into(),
                    message: "timed out".into(),
                });
            }
            Ok(())
        })
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

    fn is_list(&self) -> bool {
        self.method == "GET" && self.query.contains("labelSelector=")
    }

    /// `get secrets/customer-database`, `apply namespaces/carerp-demo`, `list ingresses`,
    /// `delete poddisruptionbudgets/bff`, `apply carerptenants/demo/status`, `create events`.
    fn step(&self) -> String {
        let segments: Vec<&str> = self.path.split('/').collect();
        let tail = |n: usize| segments[segments.len() - n..].join("/");
        let verb = if self.is_list() {
            "list"
        } else if self.is_apply() {
            "apply"
        } else {
            match self.method.as_str() {
                "GET" => "get",
                "PATCH" => "patch",
                "DELETE" => "delete",
                "POST" => "create",
                other => other,
            }
        };
        let target = if self.is_list() || self.method == "POST" {
            tail(1)
        } else if self.path.ends_with("/status") {
            tail(3)
        } else {
            tail(2)
        };
        format!("{verb} {target}")
    }
}

/// Every call as a [`Call::step`].
fn script(calls: &[Call]) -> Vec<String> {
    calls.iter().map(Call::step).collect()
}

/// The path segment of a kind, as in the API paths.
fn plural(kind: &str) -> String {
    match kind {
        "Ingress" => "ingresses".into(),
        "NetworkPolicy" => "networkpolicies".into(),
        other => format!("{}s", other.to_lowercase()),
    }
}

/// `apply <plural>/<name>` for one desired object.
fn apply_step(object: &desired::Object) -> String {
    let value = serde_json::to_value(object).unwrap();
    format!(
        "apply {}/{}",
        plural(value["kind"].as_str().unwrap()),
        value["metadata"]["name"].as_str().unwrap()
    )
}

/// What the fake API server holds between reconciles, and what it refuses.
#[derive(Default)]
struct Cluster {
    /// Objects by path (`/api/v1/namespaces/carerp-demo/secrets/customer-database`).
    objects: BTreeMap<String, Value>,
    /// Paths whose writes are refused with 403, as RBAC would.
    forbidden: Vec<String>,
}

type SharedCluster = Arc<Mutex<Cluster>>;

impl Cluster {
    fn shared(self) -> SharedCluster {
        Arc::new(Mutex::new(self))
    }

    /// Objects of a collection path whose labels match a `k=v,k=v` selector.
    fn list(&self, collection: &str, selector: &str) -> Vec<Value> {
        let prefix = format!("{collection}/");
        self.objects
            .iter()
            .filter(|(path, _)| {
                path.strip_prefix(&prefix)
                    .is_some_and(|name| !name.contains('/'))
            })
            .map(|(_, object)| object)
            .filter(|object| {
                selector.split(',').all(|pair| {
                    let (key, value) = pair.split_once('=').unwrap();
                    object["metadata"]["labels"][key] == value
                })
            })
            .cloned()
            .collect()
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

/// What the API server answers when the operator's role lacks a verb.
fn forbidden(path: &str) -> Response<Body> {
    let segments: Vec<&str> = path.split('/').collect();
    let (resource, name) = (segments[segments.len() - 2], segments[segments.len() - 1]);
    json_response(
        StatusCode::FORBIDDEN,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                "code": 403, "message": format!(
                    "{resource} \"{name}\" is forbidden: User \"system:serviceaccount:carerp-system:carerp-operator\" cannot patch resource \"{resource}\" in the namespace \"carerp-demo\"")}),
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
        .map(percent_decode)
}

/// What the API server stores for an applied object: Secrets' `stringData` become `data`,
/// Deployments report every replica ready.
fn stored(mut object: Value) -> Value {
    if object["kind"] == "Secret"
        && let Some(string_data) = object.as_object_mut().and_then(|o| o.remove("stringData"))
    {
        let data: serde_json::Map<String, Value> = string_data
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, value)| {
                let bytes = k8s_openapi::ByteString(value.as_str().unwrap().as_bytes().to_vec());
                (key.clone(), serde_json::to_value(bytes).unwrap())
            })
            .collect();
        object["data"] = Value::Object(data);
    }
    if object["kind"] == "Deployment" {
        let replicas = object["spec"]["replicas"].clone();
        object["status"] = json!({"replicas": replicas, "readyReplicas": replicas});
    }
    object
}

/// A fake API server that answers like a real one would for what reconcile does: server-side
/// apply stores and returns the object, GET and list read what is stored, DELETE removes it,
/// patches of the tenant return the tenant, paths in `forbidden` refuse writes. Returns every
/// call once the client is gone.
fn mock_api(tenant: Value, cluster: SharedCluster) -> (Client, tokio::task::JoinHandle<Vec<Call>>) {
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
            let response = {
                let mut cluster = cluster.lock().unwrap();
                if call.method != "GET" && cluster.forbidden.contains(&call.path) {
                    forbidden(&call.path)
                } else if call.is_list() {
                    let selector = query_param(&call.query, "labelSelector").unwrap();
                    let items = cluster.list(&call.path, &selector);
                    json_response(
                        StatusCode::OK,
                        &json!({"apiVersion": "v1", "kind": "List",
                                "metadata": {"resourceVersion": "1"}, "items": items}),
                    )
                } else if call.method == "GET" && call.path.starts_with("/apis/carerp.io/") {
                    json_response(StatusCode::OK, &tenant)
                } else if call.method == "GET" {
                    match cluster.objects.get(&call.path) {
                        Some(object) => json_response(StatusCode::OK, object),
                        None => not_found(),
                    }
                } else if call.path.starts_with("/apis/carerp.io/") {
                    if call.path.ends_with("/status") {
                        tenant["status"] = call.body["status"].clone();
                    } else if call.content_type == "application/json-patch+json" {
                        for op in call.body.as_array().unwrap() {
                            match op["op"].as_str() {
                                Some("add") => {
                                    tenant["metadata"]["finalizers"] =
                                        json!([controller::FINALIZER])
                                }
                                Some("remove") => tenant["metadata"]["finalizers"] = json!([]),
                                _ => {}
                            }
                        }
                    }
                    json_response(StatusCode::OK, &tenant)
                } else if call.is_apply() {
                    let object = stored(call.body.clone());
                    cluster.objects.insert(call.path.clone(), object.clone());
                    json_response(StatusCode::OK, &object)
                } else if call.method == "DELETE" {
                    match cluster.objects.remove(&call.path) {
                        Some(_) => json_response(
                            StatusCode::OK,
                            &json!({"kind": "Status", "apiVersion": "v1", "status": "Success",
                                    "code": 200}),
                        ),
                        None => not_found(),
                    }
                } else if call.method == "POST" {
                    json_response(StatusCode::CREATED, &call.body)
                } else {
                    not_found()
                }
            };
            calls.push(call);
            respond.send_response(response);
        }
        calls
    });
    (Client::new(service, "default"), server)
}

struct Run {
    result: Result<Action, controller::Error>,
    calls: Vec<Call>,
    provisioner: Arc<FakeProvisioner>,
    ctx_action_after_error: Option<(Action, Action)>,
}

impl Run {
    /// The body of the `n`th status patch (0: the first).
    fn status(&self, n: usize) -> &Value {
        &self
            .calls
            .iter()
            .filter(|c| c.path.ends_with("/status"))
            .nth(n)
            .expect("status patched")
            .body["status"]
    }

    fn condition(&self, n: usize, type_: &str) -> &Value {
        self.status(n)["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .unwrap_or_else(|| panic!("no {type_} condition"))
    }

    /// The body of the apply of `deployments/<name>`.
    fn deployment(&self, name: &str) -> &Value {
        let step = format!("apply deployments/{name}");
        &self
            .calls
            .iter()
            .find(|c| c.step() == step)
            .unwrap_or_else(|| panic!("{step} not called"))
            .body
    }
}

/// One reconcile against a new, empty cluster.
async fn reconcile_once(tenant: CarErpTenant, provisioner: FakeProvisioner) -> Run {
    reconcile_in(&Cluster::default().shared(), tenant, provisioner).await
}

/// One reconcile against `cluster`, which keeps what it applies for the next.
async fn reconcile_in(
    cluster: &SharedCluster,
    tenant: CarErpTenant,
    provisioner: FakeProvisioner,
) -> Run {
    reconcile_with(cluster, tenant, provisioner, None).await
}

/// [`reconcile_in`], the installation giving tenants NATS credentials signed by `issuer`.
async fn reconcile_with(
    cluster: &SharedCluster,
    tenant: CarErpTenant,
    provisioner: FakeProvisioner,
    issuer: Option<Arc<Issuer>>,
) -> Run {
    let (client, server) = mock_api(serde_json::to_value(&tenant).unwrap(), cluster.clone());
    let provisioner = Arc::new(provisioner);
    let mut config = OperatorConfig::example();
    config.nats_credentials = issuer.is_some();
    let mut ctx = Context::new(
        client,
        config,
        provisioner.clone(),
        Metrics::default(),
        Some("test".into()),
    );
    if let Some(issuer) = issuer {
        ctx = ctx.with_nats_issuer(issuer);
    }
    let ctx = Arc::new(ctx);
    let object = Arc::new(tenant);
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
    let run = reconcile_once(demo().build(), FakeProvisioner::default()).await;
    assert_eq!(run.result.unwrap(), Action::await_change());
    assert_eq!(script(&run.calls), ["patch carerptenants/demo"]);
    let call = &run.calls[0];
    assert_eq!(call.method, "PATCH");
    assert_eq!(call.path, "/apis/carerp.io/v1alpha1/carerptenants/demo");
    assert_eq!(call.content_type, "application/json-patch+json");
    assert!(
        call.body.to_string().contains(controller::FINALIZER),
        "{}",
        call.body
    );
    assert!(
        run.provisioner.calls().is_empty(),
        "nothing provisioned before the finalizer"
    );
}

/// The operator may not even add its finalizer (a role without `patch` on tenants): that,
/// too, is in the tenant's status and an Event, and nothing is provisioned.
#[tokio::test]
async fn a_refused_finalizer_shows_in_the_ready_condition() {
    let cluster = Cluster {
        forbidden: vec!["/apis/carerp.io/v1alpha1/carerptenants/demo".into()],
        ..Cluster::default()
    }
    .shared();
    let run = reconcile_in(&cluster, demo().build(), FakeProvisioner::default()).await;
    assert_eq!(run.result.as_ref().unwrap_err().reason(), "FinalizerError");
    assert_eq!(
        script(&run.calls),
        [
            "patch carerptenants/demo",
            "apply carerptenants/demo/status",
            "create events"
        ]
    );
    let ready = run.condition(0, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "FinalizerError");
    let message = ready["message"].as_str().unwrap();
    assert!(message.contains("forbidden"), "{message}");
    assert!(run.provisioner.calls().is_empty());
}

/// The first converge of a finalized tenant with an Ingress, against an empty cluster.
async fn first_converge() -> (CarErpTenant, Run) {
    let tenant = demo().finalized().ingress("demo.example.com").build();
    let run = reconcile_once(tenant.clone(), FakeProvisioner::default()).await;
    assert_eq!(
        *run.result.as_ref().unwrap(),
        Action::requeue(carerp_operator::config::RESYNC)
    );
    assert_eq!(
        run.provisioner.calls(),
        ["ensure_databases demo", "ensure_stream demo"]
    );
    (tenant, run)
}

#[tokio::test]
async fn a_first_converge_calls_the_api_in_order() {
    let (tenant, run) = first_converge().await;
    let objects = desired::desired(
        &tenant,
        &OperatorConfig::example(),
        &BTreeMap::new(),
        Some("k1:the-public-key"),
    );
    // The tenant is read fresh (the cache may hold one deleted since), then the namespace:
    // one that exists and is not the tenant's is never adopted.
    let mut expected = vec![
        "get carerptenants/demo".to_string(),
        "get namespaces/carerp-demo".to_string(),
    ];
    // The passwords in force, from the Secrets that exist (none yet).
    for service in DATABASE_SERVICES {
        expected.push(format!("get secrets/{service}-database"));
    }
    // The namespace, the Secrets with the provisioned passwords, then every other object, so
    // that pods find the password their template was rolled for.
    expected.push("apply namespaces/carerp-demo".to_string());
    // The signing key and the first owner's password are made once, never overwritten.
    for secret in ["carerp-signing-key", "carerp-demo-owner"] {
        expected.push(format!("get secrets/{secret}"));
        expected.push("create secrets".to_string());
    }
    for service in DATABASE_SERVICES {
        expected.push(format!("apply secrets/{service}-database"));
    }
    expected.extend(objects[1..].iter().map(apply_step));
    // What the tenant holds only under conditions is looked up, to delete what is not
    // desired any more (nothing here).
    for kind in ["configmaps", "poddisruptionbudgets", "ingresses"] {
        expected.push(format!("list {kind}"));
    }
    // Status, and the Event of the transition to Ready.
    expected.push("apply carerptenants/demo/status".to_string());
    expected.push("create events".to_string());
    assert_eq!(script(&run.calls), expected);
}

#[tokio::test]
async fn writes_are_forced_server_side_applies_and_prune_sees_only_the_tenants_objects() {
    let (_, run) = first_converge().await;
    for call in run.calls.iter().filter(|c| c.is_apply()) {
        assert!(
            call.query.contains("fieldManager=carerp-operator")
                && call.query.contains("force=true"),
            "server-side apply as carerp-operator: {} {}",
            call.path,
            call.query
        );
    }
    for call in run.calls.iter().filter(|c| c.is_list()) {
        assert_eq!(
            query_param(&call.query, "labelSelector").as_deref(),
            Some("app.kubernetes.io/managed-by=carerp-operator,carerp.io/tenant=demo"),
            "only the tenant's own objects are candidates for deletion"
        );
    }
}

#[tokio::test]
async fn the_database_secret_and_the_pod_template_agree_on_the_password() {
    let (_, run) = first_converge().await;
    let secret = run
        .calls
        .iter()
        .find(|c| c.is_apply() && c.path.ends_with("/secrets/customer-database"))
        .unwrap();
    let url = "postgres://t_demo_customer:pw@postgres.carerp-system.svc:5432/t_demo_customer";
    assert_eq!(secret.body["stringData"]["DATABASE_URL"], url);
    assert_eq!(
        run.deployment("customer")["spec"]["template"]["metadata"]["annotations"]
            [SECRET_HASH_ANNOTATION],
        desired::secret_hash(url),
        "the pod template carries the hash of the Secret it reads"
    );
}

#[tokio::test]
async fn a_converged_tenant_is_ready_with_every_condition_and_an_event() {
    let (_, run) = first_converge().await;
    let s = run.status(0);
    assert_eq!(s["phase"], "Ready");
    assert_eq!(s["observedGeneration"], 3);
    assert_eq!(s["readyServices"], "6/6");
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

/// The ingress removed, the plan down to one replica, the collector sidecar turned off: the
/// next reconcile deletes the Ingress, the PodDisruptionBudgets (which would block node
/// drains) and the collector ConfigMap, and nothing the operator does not manage.
#[tokio::test]
async fn objects_no_longer_desired_are_deleted() {
    let mut cluster = Cluster::default();
    // Kubernetes puts this in every namespace; it is not the operator's.
    cluster.objects.insert(
        "/api/v1/namespaces/carerp-demo/configmaps/kube-root-ca.crt".into(),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "kube-root-ca.crt", "namespace": "carerp-demo"}}),
    );
    let cluster = cluster.shared();
    let everything = demo()
        .finalized()
        .plan(Plan::Standard)
        .ingress("demo.example.com")
        .sidecar("http://otel.observability:4317")
        .build();
    let first = reconcile_in(&cluster, everything, FakeProvisioner::default()).await;
    first.result.unwrap();
    assert!(!script(&first.calls).iter().any(|s| s.starts_with("delete")));
    let optional = |cluster: &SharedCluster| -> Vec<String> {
        let cluster = cluster.lock().unwrap();
        cluster
            .objects
            .keys()
            .filter(|path| {
                path.contains("/poddisruptionbudgets/")
                    || path.contains("/ingresses/")
                    || path.contains("/configmaps/")
            })
            .map(|path| path.rsplit('/').take(2).collect::<Vec<_>>().join("<"))
            .collect()
    };
    assert_eq!(optional(&cluster).len(), 11, "{:?}", optional(&cluster));

    let minimal = demo().finalized().plan(Plan::Starter).build();
    let second = reconcile_in(&cluster, minimal.clone(), FakeProvisioner::default()).await;
    second.result.unwrap();
    let deletes: Vec<String> = script(&second.calls)
        .into_iter()
        .filter(|s| s.starts_with("delete"))
        .collect();
    assert_eq!(
        deletes,
        [
            "delete configmaps/otel-collector",
            "delete poddisruptionbudgets/bff",
            "delete poddisruptionbudgets/billing",
            "delete poddisruptionbudgets/customer",
            "delete poddisruptionbudgets/identity",
            "delete poddisruptionbudgets/inventory",
            "delete poddisruptionbudgets/workorder",
            "delete ingresses/carerp",
        ]
    );
    let steps = script(&second.calls);
    let last_apply = steps
        .iter()
        .rposition(|s| s.starts_with("apply") && !s.ends_with("/status"))
        .unwrap();
    let first_delete = steps.iter().position(|s| s.starts_with("delete")).unwrap();
    assert!(
        last_apply < first_delete,
        "deleted after applying: {steps:#?}"
    );
    assert_eq!(
        optional(&cluster),
        [
            "carerp-settings<configmaps",
            "carerp-token-keys<configmaps",
            "kube-root-ca.crt<configmaps"
        ],
        "the settings and token keys stay, and what the operator does not manage"
    );

    let third = reconcile_in(&cluster, minimal, FakeProvisioner::default()).await;
    third.result.unwrap();
    assert!(
        !script(&third.calls).iter().any(|s| s.starts_with("delete")),
        "nothing left to delete"
    );
}

/// The customer database's Secret is lost; the provisioner resets that role's password and
/// the Secret is rewritten. The customer pods read the old one at start, so their template
/// must change (and roll them) after the new Secret is in place; the other services, whose
/// passwords were kept, are left alone.
#[tokio::test]
async fn a_reset_password_rolls_the_pods_that_read_it() {
    let cluster = Cluster::default().shared();
    let first = reconcile_in(
        &cluster,
        demo().finalized().build(),
        FakeProvisioner {
            password: "first",
            ..FakeProvisioner::default()
        },
    )
    .await;
    first.result.as_ref().unwrap();
    let hash = |run: &Run, name: &str| {
        run.deployment(name)["spec"]["template"]["metadata"]["annotations"][SECRET_HASH_ANNOTATION]
            .clone()
    };
    let config = OperatorConfig::example();
    let url = |service: Service, password: &str| {
        provision::database_url(
            &config.database_host,
            config.database_port,
            "demo",
            service,
            password,
        )
    };
    assert_eq!(
        hash(&first, "customer"),
        desired::secret_hash(&url(Service::Customer, "first"))
    );
    assert_eq!(hash(&first, "bff"), Value::Null, "the BFF has no database");

    cluster
        .lock()
        .unwrap()
        .objects
        .remove("/api/v1/namespaces/carerp-demo/secrets/customer-database")
        .expect("the first reconcile wrote the Secret");
    let second = reconcile_in(
        &cluster,
        demo().finalized().build(),
        FakeProvisioner {
            password: "second",
            ..FakeProvisioner::default()
        },
    )
    .await;
    second.result.as_ref().unwrap();
    assert_eq!(
        hash(&second, "customer"),
        desired::secret_hash(&url(Service::Customer, "second")),
        "the customer pods roll for the new password"
    );
    assert_eq!(
        hash(&second, "workorder"),
        hash(&first, "workorder"),
        "a kept password rolls nothing"
    );
    let steps = script(&second.calls);
    let position = |step: &str| steps.iter().position(|s| s == step).unwrap();
    assert!(
        position("apply secrets/customer-database") < position("apply deployments/customer"),
        "the new Secret is in place before the pods roll: {steps:#?}"
    );
    let secret = &cluster.lock().unwrap().objects["/api/v1/namespaces/carerp-demo/secrets/customer-database"];
    assert_eq!(
        secret["stringData"],
        Value::Null,
        "stored as data, like the API server does"
    );
    assert!(secret["data"]["DATABASE_URL"].is_string());
}

/// The operator's role may not patch Deployments: the reconcile stops there, the `Ready`
/// condition names the call and the API server's reason (the other conditions are kept), a
/// Warning Event says the same, and the tenant is retried with backoff.
#[tokio::test]
async fn a_refused_apply_shows_in_the_ready_condition() {
    let cluster = Cluster {
        forbidden: vec!["/apis/apps/v1/namespaces/carerp-demo/deployments/workorder".into()],
        ..Cluster::default()
    }
    .shared();
    let object = demo().finalized().was_ready(2).build();
    let run = reconcile_in(&cluster, object, FakeProvisioner::default()).await;

    let err = run.result.as_ref().unwrap_err();
    assert_eq!(err.reason(), "KubernetesError");
    let (first, second) = run.ctx_action_after_error.clone().unwrap();
    assert_eq!(first, Action::requeue(Duration::from_secs(5)));
    assert_eq!(second, Action::requeue(Duration::from_secs(10)));

    let steps = script(&run.calls);
    let refused = steps
        .iter()
        .position(|s| s == "apply deployments/workorder")
        .unwrap();
    assert_eq!(
        &steps[refused + 1..],
        ["apply carerptenants/demo/status", "create events"],
        "nothing applied after the refusal; status, then the Event"
    );
    assert_eq!(
        run.provisioner.calls(),
        ["ensure_databases demo"],
        "the stream waits for the next attempt"
    );

    let s = run.status(0);
    assert_eq!(s["phase"], "Degraded");
    let ready = run.condition(0, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "KubernetesError");
    assert_eq!(ready["observedGeneration"], 3);
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.starts_with("apply Deployment/workorder: deployments \"workorder\" is forbidden")
            && message.ends_with("(Forbidden, 403)"),
        "{message}"
    );
    assert_eq!(
        run.condition(0, "DatabasesReady")["status"],
        "True",
        "the other conditions are kept"
    );
    assert_eq!(s["conditions"].as_array().unwrap().len(), 4);

    let event = run
        .calls
        .iter()
        .find(|c| c.method == "POST" && c.path.contains("/events"))
        .unwrap();
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "KubernetesError");
    assert_eq!(event.body["note"], message);
}

#[tokio::test]
async fn deletion_runs_cleanup_then_removes_the_finalizer() {
    let object = demo()
        .finalized()
        .deletion_policy(DeletionPolicy::Delete)
        .deleting()
        .build();
    let run = reconcile_once(object, FakeProvisioner::default()).await;
    assert_eq!(run.result.unwrap(), Action::await_change());
    assert_eq!(
        run.provisioner.calls(),
        ["delete_stream demo", "drop_databases demo"]
    );
    assert_eq!(
        script(&run.calls),
        [
            "apply carerptenants/demo/status", // phase Deleting
            "create events",                   // the transition to Deleting
            "create events",                   // stream deleted, databases dropped
            "patch carerptenants/demo",        // the finalizer removed
        ],
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
async fn retain_keeps_the_databases_and_the_stream() {
    let object = demo().finalized().deleting().build();
    let run = reconcile_once(object, FakeProvisioner::default()).await;
    run.result.unwrap();
    assert_eq!(run.provisioner.calls(), Vec::<String>::new());
}

/// The stream cannot be deleted: the tenant stays `Deleting` with the finalizer, and the
/// `Ready` condition and a Warning Event say why.
#[tokio::test]
async fn a_failing_cleanup_shows_in_the_ready_condition_and_keeps_the_finalizer() {
    let object = demo()
        .finalized()
        .deletion_policy(DeletionPolicy::Delete)
        .deleting()
        .build();
    let run = reconcile_once(
        object,
        FakeProvisioner {
            fail_delete_stream: true,
            ..FakeProvisioner::default()
        },
    )
    .await;
    let err = run.result.as_ref().unwrap_err();
    assert_eq!(err.reason(), "MessagingError");
    assert_eq!(
        run.provisioner.calls(),
        ["delete_stream demo"],
        "the databases wait for the stream"
    );
    assert_eq!(
        script(&run.calls),
        [
            "apply carerptenants/demo/status",
            "create events",
            "apply carerptenants/demo/status",
            "create events",
        ],
        "Deleting (and its Event), then the failure (and its Warning); no finalizer removed"
    );
    assert_eq!(run.status(0)["phase"], "Deleting");
    assert_eq!(run.status(1)["phase"], "Deleting");
    let ready = run.condition(1, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "MessagingError");
    assert_eq!(
        ready["message"],
        "cannot finish deleting the tenant: NATS: delete stream TENANT_demo: timed out"
    );
    let warning = &run.calls[3].body;
    assert_eq!(warning["type"], "Warning");
    assert_eq!(warning["reason"], "MessagingError");
}

#[tokio::test]
async fn failing_provisioner_sets_the_condition_and_requeues_with_backoff() {
    let run = reconcile_once(
        demo().finalized().build(),
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
    assert_eq!(
        run.provisioner.calls(),
        ["ensure_databases demo", "ensure_stream demo"],
        "the stream is provisioned despite the databases"
    );

    let steps = script(&run.calls);
    assert!(
        !steps.iter().any(|s| s.starts_with("apply secrets/")),
        "no Secret without a database: {steps:#?}"
    );
    assert!(
        steps.contains(&"apply deployments/customer".to_string()),
        "the workloads are still applied: {steps:#?}"
    );
    assert_eq!(
        &steps[steps.len() - 3..],
        [
            "apply carerptenants/demo/status",
            "create events", // the transition to Provisioning
            "create events", // DatabaseError, a Warning
        ],
        "the status and the Events close the reconcile"
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
        demo().finalized().currency("euro").build(),
        FakeProvisioner::default(),
    )
    .await;
    assert_eq!(run.result.unwrap(), Action::await_change());
    assert!(run.provisioner.calls().is_empty());
    assert_eq!(
        script(&run.calls),
        [
            "get carerptenants/demo",
            "apply carerptenants/demo/status",
            "create events", // the transition to Failed
            "create events", // InvalidSpec, with the field path
        ],
        "nothing applied for an invalid tenant"
    );
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
}

/// With an issuer, the tenant's NATS credentials are in their Secret before any pod that
/// reads them, the pods carry their hash, and the next reconcile keeps them; a new signing
/// key reissues them and rolls the pods.
#[tokio::test]
async fn nats_credentials_are_issued_once_before_the_pods_and_reissued_for_a_new_key() {
    let cluster = Cluster::default().shared();
    let issuer = Arc::new(Trust::generate().issuer().unwrap());
    let run = |issuer: &Arc<Issuer>| {
        reconcile_with(
            &cluster,
            demo().finalized().build(),
            FakeProvisioner::default(),
            Some(issuer.clone()),
        )
    };
    let hash = |run: &Run| {
        run.deployment("billing")["spec"]["template"]["metadata"]["annotations"]
            [desired::NATS_CREDENTIALS_HASH_ANNOTATION]
            .clone()
    };
    let stored = || {
        cluster.lock().unwrap().objects
            ["/api/v1/namespaces/carerp-demo/secrets/carerp-nats-credentials"]
            .clone()
    };
    let first = run(&issuer).await;
    first.result.as_ref().unwrap();
    let steps = script(&first.calls);
    let position = |step: &str| steps.iter().position(|s| s == step).unwrap();
    assert!(
        position("apply secrets/carerp-nats-credentials") < position("apply deployments/customer"),
        "{steps:#?}"
    );
    let secret = stored();
    assert_eq!(
        secret["metadata"]["annotations"][nats_auth::ISSUER_ANNOTATION],
        issuer.fingerprint("demo")
    );
    let creds: k8s_openapi::ByteString =
        serde_json::from_value(secret["data"][nats_auth::CREDENTIALS_KEY].clone()).unwrap();
    let creds = String::from_utf8(creds.0).unwrap();
    assert!(creds.contains("BEGIN NATS USER JWT") && creds.contains("BEGIN USER NKEY SEED"));
    assert_eq!(hash(&first), desired::nats_credentials_hash(&creds));
    for call in &first.calls {
        if !call.path.ends_with("/secrets/carerp-nats-credentials") {
            assert!(
                !call.body.to_string().contains("NKEY SEED"),
                "credentials only in their Secret: {}",
                call.path
            );
        }
    }

    let second = run(&issuer).await;
    second.result.as_ref().unwrap();
    assert!(
        !script(&second.calls).contains(&"apply secrets/carerp-nats-credentials".to_string()),
        "credentials still right are kept"
    );
    assert_eq!(hash(&second), hash(&first), "and roll nothing");

    let rotated = Arc::new(Trust::generate().issuer().unwrap());
    let third = run(&rotated).await;
    third.result.as_ref().unwrap();
    assert_ne!(
        hash(&third),
        hash(&first),
        "a new signing key rolls the pods"
    );
    assert_eq!(
        stored()["metadata"]["annotations"][nats_auth::ISSUER_ANNOTATION],
        rotated.fingerprint("demo")
    );
}
