//! A tenant on a real control plane (`e2e/src/cluster.rs`), reconciled by the operator running
//! as a process with the token of the chart's ServiceAccount, so with exactly the chart's RBAC:
//! a permission the chart lacks fails this suite. Pods are admitted under the namespace's
//! `restricted` PodSecurity level and made Ready by kwok; databases and the stream are the
//! real PostgreSQL and NATS.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use carerp_e2e::cluster::{ControlPlane, Operator, tail};
use carerp_operator::crd::{CarErpTenant, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Pod, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

fn tenant(name: &str, plan: &str, deletion: &str) -> CarErpTenant {
    serde_json::from_value(json!({
        "apiVersion": "carerp.io/v1alpha1",
        "kind": "CarErpTenant",
        "metadata": { "name": name },
        "spec": {
            "displayName": format!("{name} garage"),
            "plan": plan,
            "settings": { "currency": "EUR", "taxRateBasisPoints": 2000 },
            "database": { "deletionPolicy": deletion }
        }
    }))
    .unwrap()
}

/// Whether the API server's RBAC authorizer refused the operator something: `... is forbidden:
/// User "system:serviceaccount:..." cannot <verb> ...`. Other 403s are not about the chart's
/// grants (a write into a namespace that is being terminated is refused with a 403 too).
fn refused_by_rbac(log: &str) -> bool {
    log.lines()
        .any(|line| line.contains("is forbidden: User \"") && line.contains(" cannot "))
}

async fn wait_until<T>(
    operator: &mut Operator,
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        let log = operator.process.log();
        if refused_by_rbac(&log) {
            panic!(
                "the chart's RBAC refused the operator something while waiting until {what}:\n{}",
                tail(&log, 20)
            );
        }
        if let Some(status) = operator.process.exited() {
            panic!(
                "the operator exited ({status}) while waiting until {what}:\n{}",
                tail(&operator.process.log(), 60)
            );
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting until {what}; operator log:\n{}",
                tail(&operator.process.log(), 60)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn phase(api: &Api<CarErpTenant>, name: &str) -> Option<Phase> {
    api.get(name).await.ok()?.status?.phase
}

/// `Kind/name -> resourceVersion` of every object the operator keeps in `namespace` that has no
/// status of its own, and `Kind/name -> generation` of Deployments and PodDisruptionBudgets
/// (their status changes as pods do).
async fn versions(client: &Client, namespace: &str) -> BTreeMap<String, String> {
    async fn rv<K>(client: &Client, namespace: &str, out: &mut BTreeMap<String, String>)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        let selector = "app.kubernetes.io/managed-by=carerp-operator";
        for o in api
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap()
        {
            out.insert(
                format!("{}/{}", K::kind(&()), o.name_any()),
                o.resource_version().unwrap_or_default(),
            );
        }
    }
    let mut out = BTreeMap::new();
    rv::<ConfigMap>(client, namespace, &mut out).await;
    rv::<Secret>(client, namespace, &mut out).await;
    rv::<ServiceAccount>(client, namespace, &mut out).await;
    rv::<Service>(client, namespace, &mut out).await;
    rv::<NetworkPolicy>(client, namespace, &mut out).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    for d in deployments.list(&ListParams::default()).await.unwrap() {
        out.insert(
            format!("Deployment/{}", d.name_any()),
            format!("generation {}", d.metadata.generation.unwrap_or_default()),
        );
    }
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), namespace);
    for p in pdbs.list(&ListParams::default()).await.unwrap() {
        out.insert(
            format!("PodDisruptionBudget/{}", p.name_any()),
            format!("generation {}", p.metadata.generation.unwrap_or_default()),
        );
    }
    out
}

fn changed(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

/// Applies a merge patch to the spec and waits until the operator has reconciled that
/// generation (the status is written last, after every object).
async fn change_spec(
    operator: &mut Operator,
    tenants: &Api<CarErpTenant>,
    name: &str,
    spec: serde_json::Value,
) {
    let patched = tenants
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap();
    let generation = patched.metadata.generation;
    wait_until(
        operator,
        "the new generation is reconciled",
        Duration::from_secs(60),
        async || {
            let t = tenants.get(name).await.ok()?;
            (t.status?.observed_generation == generation).then_some(())
        },
    )
    .await;
}

/// Waits for one more reconcile than `after` (the operator's own counter).
async fn reconciled_since(operator: &mut Operator, after: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if operator.reconciliations().await.unwrap_or(0) > after {
            // The writes of that reconcile are done once the counter moves.
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no reconcile after {after}:\n{}",
        tail(&operator.process.log(), 40)
    );
}

async fn databases(tenant: &str) -> Vec<String> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let prefix = format!("t_{}_%", tenant.replace('-', "_"));
    sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE $1 ORDER BY 1")
        .bind(prefix)
        .fetch_all(&pool)
        .await
        .unwrap()
}

async fn stream_exists(tenant: &str) -> bool {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
    js.get_stream(carerp_operator::provision::stream_name(tenant))
        .await
        .is_ok()
}

async fn cleanup_outside(tenant: &str) {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    carerp_operator::provision::drop_databases(&pool, tenant)
        .await
        .unwrap();
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let js = async_nats::jetstream::new(async_nats::connect(nats).await.unwrap());
    carerp_operator::provision::delete_stream(&js, tenant)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_is_reconciled_for_real_with_the_charts_rbac() {
    let Some(plane) = ControlPlane::start().await.unwrap() else {
        return;
    };
    let suffix = &uuid::Uuid::now_v7().simple().to_string()[24..];
    let ready_name = format!("ready-{suffix}");
    let retain_name = format!("retain-{suffix}");
    let squat_name = format!("squat-{suffix}");
    cleanup_outside(&ready_name).await;
    cleanup_outside(&retain_name).await;

    plane.install_chart(&[]).unwrap();
    let kubeconfig = plane
        .service_account_kubeconfig("carerp-system", "carerp-operator", None)
        .await
        .unwrap();
    let mut operator = Operator::start(&plane, "op-0", &kubeconfig, &[]).unwrap();
    let client = plane.client().await.unwrap();
    let tenants: Api<CarErpTenant> = Api::all(client.clone());

    // -- Ready, with every object, pods admitted under `restricted` and Ready by kwok.
    tenants
        .create(
            &PostParams::default(),
            &tenant(&ready_name, "Standard", "Delete"),
        )
        .await
        .unwrap();
    wait_until(
        &mut operator,
        "the tenant is Ready",
        Duration::from_secs(180),
        async || (phase(&tenants, &ready_name).await == Some(Phase::Ready)).then_some(()),
    )
    .await;
    let namespace = format!("carerp-{ready_name}");
    let ns = Api::<Namespace>::all(client.clone())
        .get(&namespace)
        .await
        .unwrap();
    let labels = ns.labels();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    let t = tenants.get(&ready_name).await.unwrap();
    let status = t.status.clone().unwrap();
    assert_eq!(status.observed_generation, t.metadata.generation);
    assert_eq!(status.ready_services.as_deref(), Some("6/6"));
    assert_eq!(status.namespace.as_deref(), Some(namespace.as_str()));
    let conditions: BTreeMap<&str, &str> = status
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(
        conditions,
        BTreeMap::from([
            ("DatabasesReady", "True"),
            ("MessagingReady", "True"),
            ("WorkloadsReady", "True"),
            ("Ready", "True")
        ])
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let pods = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(pods.items.len(), 12, "2 replicas of 6 services");
    for pod in &pods {
        assert_eq!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Running")
        );
    }
    let objects = versions(&client, &namespace).await;
    for service in [
        "customer",
        "workorder",
        "inventory",
        "billing",
        "identity",
        "bff",
    ] {
        for object in [
            format!("Deployment/{service}"),
            format!("Service/{service}"),
            format!("PodDisruptionBudget/{service}"),
            format!("ServiceAccount/carerp-{service}"),
        ] {
            assert!(objects.contains_key(&object), "{object} in {objects:?}");
        }
    }
    let secrets: Vec<&String> = objects
        .keys()
        .filter(|k| k.starts_with("Secret/"))
        .collect();
    assert_eq!(
        secrets.len(),
        7,
        "one database Secret per domain service, the signing key, the owner's: {objects:?}"
    );
    for secret in [
        "Secret/carerp-signing-key",
        &format!("Secret/carerp-{ready_name}-owner"),
    ] {
        assert!(objects.contains_key(secret), "{secret} in {objects:?}");
    }
    assert!(
        objects.contains_key("ConfigMap/carerp-token-keys"),
        "{objects:?}"
    );
    assert!(objects.keys().any(|k| k.starts_with("NetworkPolicy/")));
    assert!(
        objects.contains_key("ConfigMap/carerp-settings"),
        "{objects:?}"
    );
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &namespace);
    assert_eq!(
        quotas
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(databases(&ready_name).await.len(), 5);
    assert!(stream_exists(&ready_name).await);
    let events: Api<Event> = Api::all(client.clone());
    let events = events
        .list(&ListParams::default().fields(&format!("regarding.name={ready_name}")))
        .await
        .unwrap();
    let reasons: Vec<&str> = events.iter().filter_map(|e| e.reason.as_deref()).collect();
    assert!(reasons.contains(&"Ready"), "{reasons:?}");
    for event in &events {
        let note = event.note.clone().unwrap_or_default();
        assert!(!note.contains("postgres://"), "a URL in an Event: {note}");
    }

    // -- A reconcile of a converged tenant writes nothing. Converged: the rollouts that made
    // it Ready have finished reporting (no write to the tenant for 3 s).
    let mut last = tenants.get(&ready_name).await.unwrap().resource_version();
    let mut stable_since = Instant::now();
    while stable_since.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = tenants.get(&ready_name).await.unwrap().resource_version();
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
    }
    let before = versions(&client, &namespace).await;
    let tenant_rv = |t: &CarErpTenant| t.resource_version();
    let count = operator.reconciliations().await.unwrap();
    let touched = tenants
        .patch(
            &ready_name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": { "test/poke": "1" } } })),
        )
        .await
        .unwrap();
    reconciled_since(&mut operator, count).await;
    let after = versions(&client, &namespace).await;
    assert_eq!(changed(&before, &after), Vec::<String>::new());
    assert_eq!(
        tenant_rv(&tenants.get(&ready_name).await.unwrap()),
        tenant_rv(&touched),
        "the status was written again"
    );

    // -- More replicas of one service roll that Deployment and nothing else.
    change_spec(
        &mut operator,
        &tenants,
        &ready_name,
        json!({ "services": { "workorder": { "replicas": 3 } } }),
    )
    .await;
    let scaled = versions(&client, &namespace).await;
    assert_eq!(changed(&after, &scaled), ["Deployment/workorder"]);

    // -- A settings change rewrites the settings and rolls every service that reads them.
    change_spec(
        &mut operator,
        &tenants,
        &ready_name,
        json!({ "settings": { "taxRateBasisPoints": 1900 } }),
    )
    .await;
    let resettled = versions(&client, &namespace).await;
    assert_eq!(
        changed(&scaled, &resettled),
        [
            "ConfigMap/carerp-settings",
            "Deployment/bff",
            "Deployment/billing",
            "Deployment/customer",
            "Deployment/identity",
            "Deployment/inventory",
            "Deployment/workorder"
        ]
    );
    let settings: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let settings = settings.get("carerp-settings").await.unwrap();
    assert_eq!(settings.data.unwrap()["CARERP_TAX_RATE_BP"], "1900");

    // -- Suspended: every Deployment at zero, the PodDisruptionBudgets gone, data kept.
    tenants
        .patch(
            &ready_name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "suspend": true } })),
        )
        .await
        .unwrap();
    wait_until(
        &mut operator,
        "the tenant is Suspended",
        Duration::from_secs(60),
        async || (phase(&tenants, &ready_name).await == Some(Phase::Suspended)).then_some(()),
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    for d in deployments.list(&ListParams::default()).await.unwrap() {
        assert_eq!(
            d.spec.unwrap().replicas,
            Some(0),
            "{}",
            d.metadata.name.unwrap()
        );
    }
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
    assert!(
        pdbs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(databases(&ready_name).await.len(), 5);

    // -- Deleted with `Delete`: databases and stream dropped, the namespace and everything
    // in it gone (garbage collection and the namespace controller).
    tenants
        .delete(&ready_name, &DeleteParams::default())
        .await
        .unwrap();
    wait_until(
        &mut operator,
        "the tenant and its namespace are gone",
        Duration::from_secs(120),
        async || {
            let tenant_gone = tenants.get_opt(&ready_name).await.unwrap().is_none();
            let ns_gone = Api::<Namespace>::all(client.clone())
                .get_opt(&namespace)
                .await
                .unwrap()
                .is_none();
            (tenant_gone && ns_gone).then_some(())
        },
    )
    .await;
    assert_eq!(databases(&ready_name).await, Vec::<String>::new());
    assert!(!stream_exists(&ready_name).await);

    // -- Deleted with `Retain`: databases and stream stay, the namespace goes.
    tenants
        .create(
            &PostParams::default(),
            &tenant(&retain_name, "Starter", "Retain"),
        )
        .await
        .unwrap();
    wait_until(
        &mut operator,
        "the Retain tenant is Ready",
        Duration::from_secs(120),
        async || (phase(&tenants, &retain_name).await == Some(Phase::Ready)).then_some(()),
    )
    .await;
    tenants
        .delete(&retain_name, &DeleteParams::default())
        .await
        .unwrap();
    let retain_ns = format!("carerp-{retain_name}");
    wait_until(
        &mut operator,
        "the Retain tenant's namespace is gone",
        Duration::from_secs(120),
        async || {
            let gone = tenants.get_opt(&retain_name).await.unwrap().is_none()
                && Api::<Namespace>::all(client.clone())
                    .get_opt(&retain_ns)
                    .await
                    .unwrap()
                    .is_none();
            gone.then_some(())
        },
    )
    .await;
    assert_eq!(
        databases(&retain_name).await.len(),
        5,
        "Retain keeps the databases"
    );
    assert!(stream_exists(&retain_name).await, "Retain keeps the stream");
    cleanup_outside(&retain_name).await;

    // -- A namespace of that name that is not the operator's is refused, never adopted.
    let squat_ns = format!("carerp-{squat_name}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": squat_ns } })).unwrap(),
        )
        .await
        .unwrap();
    tenants
        .create(
            &PostParams::default(),
            &tenant(&squat_name, "Starter", "Delete"),
        )
        .await
        .unwrap();
    let refused = wait_until(
        &mut operator,
        "the squatted tenant is refused",
        Duration::from_secs(60),
        async || {
            let t = tenants.get(&squat_name).await.ok()?;
            let ready = t
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.reason == "NamespaceConflict").then_some(ready.message)
        },
    )
    .await;
    assert!(
        refused.contains("not managed by the Car ERP operator"),
        "{refused}"
    );
    assert_eq!(phase(&tenants, &squat_name).await, Some(Phase::Failed));
    let ns = namespaces.get(&squat_ns).await.unwrap();
    assert!(ns.owner_references().is_empty(), "adopted: {ns:?}");
    assert!(!ns.labels().contains_key("app.kubernetes.io/managed-by"));
    tenants
        .delete(&squat_name, &DeleteParams::default())
        .await
        .unwrap();
    wait_until(
        &mut operator,
        "the squatted tenant is gone",
        Duration::from_secs(60),
        async || {
            tenants
                .get_opt(&squat_name)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        namespaces
            .get_opt(&squat_ns)
            .await
            .unwrap()
            .is_some_and(|n| n.metadata.deletion_timestamp.is_none()),
        "the namespace that was not the tenant's is still there"
    );
    cleanup_outside(&squat_name).await;

    // -- A missing permission would have shown as a Forbidden in the operator's log.
    let log = operator.process.log();
    assert!(!refused_by_rbac(&log), "{}", tail(&log, 80));
    assert!(operator.process.is_running());
}
