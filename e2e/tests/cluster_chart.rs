//! The operator chart (`charts/carerp-operator`) on a real control plane: `helm lint`,
//! `install`, `upgrade` and `uninstall` work, and its RBAC grants exactly the verbs the
//! operator's code uses, resource by resource (that they are enough is proven by
//! `cluster_tenant.rs`, which runs the operator with this very account).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use carerp_e2e::cluster::ControlPlane;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::Api;

/// What the operator calls, per `group/resource`: read this off the code when it changes.
/// - the controller lists and watches tenants and the Deployments they own; the finalizer is
///   a patch; the status an apply (patch) of the status subresource;
/// - blockOwnerDeletion on owner references needs `update` of `carerptenants/finalizers`;
/// - every object is written with server-side apply: `patch`, and `create` for an object that
///   does not exist yet (the API server authorizes both);
/// - the namespace and the database Secrets are read one by one (get) before use;
/// - pruning lists and deletes ConfigMaps, PodDisruptionBudgets and Ingresses;
/// - the Events recorder creates and patches events;
/// - leader election gets, creates and updates its Lease (a Role in the release namespace).
fn needed() -> BTreeMap<String, BTreeSet<String>> {
    let table: &[(&str, &[&str])] = &[
        (
            "carerp.io/carerptenants",
            &["get", "list", "watch", "patch"],
        ),
        ("carerp.io/carerptenants/status", &["patch"]),
        ("carerp.io/carerptenants/finalizers", &["update"]),
        ("/namespaces", &["get", "create", "patch"]),
        ("/secrets", &["get", "create", "patch"]),
        ("/serviceaccounts", &["create", "patch"]),
        ("/services", &["create", "patch"]),
        ("/resourcequotas", &["create", "patch"]),
        ("/configmaps", &["list", "create", "patch", "delete"]),
        ("apps/deployments", &["list", "watch", "create", "patch"]),
        (
            "policy/poddisruptionbudgets",
            &["list", "create", "patch", "delete"],
        ),
        ("networking.k8s.io/networkpolicies", &["create", "patch"]),
        (
            "networking.k8s.io/ingresses",
            &["list", "create", "patch", "delete"],
        ),
        ("events.k8s.io/events", &["create", "patch"]),
        ("coordination.k8s.io/leases", &["get", "create", "update"]),
    ];
    table
        .iter()
        .map(|(r, verbs)| (r.to_string(), verbs.iter().map(|v| v.to_string()).collect()))
        .collect()
}

fn granted(
    rules: &[k8s_openapi::api::rbac::v1::PolicyRule],
    out: &mut BTreeMap<String, BTreeSet<String>>,
) {
    for rule in rules {
        for group in rule.api_groups.clone().unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                out.entry(format!("{group}/{resource}"))
                    .or_default()
                    .extend(rule.verbs.iter().cloned());
            }
        }
    }
}

#[tokio::test]
async fn the_chart_installs_upgrades_and_uninstalls_with_least_privilege() {
    let Some(plane) = ControlPlane::start().await.unwrap() else {
        return;
    };
    let lint = plane
        .helm(&["lint", "--strict", "charts/carerp-operator"])
        .unwrap();
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    let installed = plane.install_chart(&[]).unwrap();
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    let client = plane.client().await.unwrap();

    let mut rbac = BTreeMap::new();
    let role = Api::<ClusterRole>::all(client.clone())
        .get("carerp-operator")
        .await
        .unwrap();
    granted(&role.rules.unwrap_or_default(), &mut rbac);
    let leader = Api::<Role>::namespaced(client.clone(), "carerp-system")
        .get("carerp-operator-leader")
        .await
        .unwrap();
    granted(&leader.rules.unwrap_or_default(), &mut rbac);
    assert_eq!(
        rbac,
        needed(),
        "the chart's RBAC differs from what the code uses"
    );
    let secrets = &rbac["/secrets"];
    for verb in ["list", "watch", "delete", "*"] {
        assert!(!secrets.contains(verb), "cluster-wide {verb} of Secrets");
    }

    // kubectl auth can-i, as the API server's RBAC authorizer answers it.
    let sa = "system:serviceaccount:carerp-system:carerp-operator";
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i", "--as", sa];
        all.extend_from_slice(args);
        let (yes, answer) = plane.kubectl_status(&all).unwrap();
        assert_eq!(yes, answer == "yes", "{answer}");
        yes
    };
    assert!(can(&["patch", "deployments", "-n", "carerp-anything"]));
    assert!(can(&["get", "secrets", "-n", "carerp-anything"]));
    assert!(!can(&["list", "secrets", "--all-namespaces"]));
    assert!(!can(&["watch", "secrets", "-n", "carerp-anything"]));
    assert!(!can(&["delete", "secrets", "-n", "carerp-anything"]));
    assert!(!can(&["delete", "namespaces"]));
    assert!(!can(&["update", "leases", "-n", "kube-system"]));
    assert!(can(&["update", "leases", "-n", "carerp-system"]));

    // The Deployment is admitted and made Ready (kwok runs its pods).
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "carerp-system");
    let operator = deployments.get("carerp-operator").await.unwrap();
    assert_eq!(operator.status.and_then(|s| s.ready_replicas), Some(2));

    let upgraded = plane
        .helm(&[
            "upgrade",
            "carerp",
            "charts/carerp-operator",
            "--namespace",
            "carerp-system",
            "--set",
            "replicaCount=1",
            "--set",
            "tenants.ingressNamespace=ingress-system",
            "--wait",
            "--timeout",
            "120s",
        ])
        .unwrap();
    assert!(upgraded.contains("REVISION: 2"), "{upgraded}");
    let operator = deployments.get("carerp-operator").await.unwrap();
    let spec = operator.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    let env = spec.template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let ingress = env
        .iter()
        .find(|e| e.name == "CARERP_INGRESS_NAMESPACE")
        .unwrap();
    assert_eq!(ingress.value.as_deref(), Some("ingress-system"));

    plane
        .helm(&[
            "uninstall",
            "carerp",
            "--namespace",
            "carerp-system",
            "--wait",
        ])
        .unwrap();
    assert!(
        deployments
            .get_opt("carerp-operator")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt("carerp-operator")
            .await
            .unwrap()
            .is_none()
    );
    // Helm keeps CRDs (and so the tenants) on uninstall, by design.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client);
    assert!(
        crds.get_opt("carerptenants.carerp.io")
            .await
            .unwrap()
            .is_some()
    );
}

/// The chart rendered by `helm template` (no cluster needed), as JSON documents.
fn render(args: &[&str]) -> Option<Vec<serde_json::Value>> {
    let mut all = vec!["template", "carerp", "charts/carerp-operator"];
    all.extend_from_slice(args);
    let yaml = carerp_e2e::cluster::helm_offline(&all).unwrap()?;
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    Some(documents.into_iter().filter(|d| !d.is_null()).collect())
}

fn kinds(documents: &[serde_json::Value]) -> BTreeSet<String> {
    documents
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

fn find<'a>(documents: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} rendered"))
}

const MONITORING_OBJECTS: [&str; 3] = [
    "PodMonitor/carerp-operator",
    "PodMonitor/carerp-tenants",
    "PrometheusRule/carerp",
];

/// PodMonitors and alerts only where the Prometheus Operator's CRDs exist (a cluster without
/// them would refuse the whole release); the dashboard ConfigMap and the monitoring
/// namespace of the tenants' NetworkPolicies everywhere.
#[test]
fn the_monitoring_objects_render_only_with_the_prometheus_operator() {
    let Some(without) = render(&[]) else {
        return;
    };
    let lint = carerp_e2e::cluster::helm_offline(&["lint", "--strict", "charts/carerp-operator"])
        .unwrap()
        .unwrap();
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    let rendered = kinds(&without);
    for object in MONITORING_OBJECTS {
        assert!(!rendered.contains(object), "{object} without its CRD");
    }
    assert!(
        rendered.contains("ConfigMap/carerp-dashboard"),
        "{rendered:?}"
    );

    let with = render(&["--api-versions", "monitoring.coreos.com/v1"]).unwrap();
    let rendered = kinds(&with);
    for object in MONITORING_OBJECTS {
        assert!(rendered.contains(object), "{object} missing: {rendered:?}");
    }
    let tenants = find(&with, "PodMonitor", "carerp-tenants");
    assert_eq!(tenants["spec"]["namespaceSelector"]["any"], true);
    assert_eq!(
        tenants["spec"]["selector"]["matchLabels"]["app.kubernetes.io/managed-by"],
        "carerp-operator"
    );
    assert_eq!(tenants["spec"]["podMetricsEndpoints"][0]["port"], "admin");

    let switched_off = render(&[
        "--api-versions",
        "monitoring.coreos.com/v1",
        "--set",
        "monitoring.podMonitor.enabled=false",
        "--set",
        "monitoring.rules.enabled=false",
        "--set",
        "monitoring.dashboard.enabled=false",
        "--set",
        "monitoring.namespace=prometheus",
    ])
    .unwrap();
    let rendered = kinds(&switched_off);
    for object in MONITORING_OBJECTS
        .iter()
        .chain(&["ConfigMap/carerp-dashboard"])
    {
        assert!(!rendered.contains(*object), "{object} switched off");
    }
    let env = &find(&switched_off, "Deployment", "carerp-operator")["spec"]["template"]["spec"]["containers"]
        [0]["env"];
    let monitoring = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "CARERP_MONITORING_NAMESPACE")
        .expect("the operator is told the monitoring namespace");
    assert_eq!(monitoring["value"], "prometheus");
}

/// The dashboard Grafana's sidecar loads: JSON, labelled for the sidecar, a query in every panel.
#[test]
fn the_dashboard_is_json_with_a_query_in_every_panel() {
    let Some(documents) = render(&[]) else {
        return;
    };
    let config_map = find(&documents, "ConfigMap", "carerp-dashboard");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    let text = config_map["data"]["carerp.json"].as_str().unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(text).expect("the dashboard parses");
    assert_eq!(dashboard["uid"], "carerp-overview");
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8, "{} panels", panels.len());
    for panel in panels {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        for target in targets {
            assert!(!target["expr"].as_str().unwrap().is_empty());
        }
    }
}

/// Every series the exporters produce, from their `# TYPE` lines: a counter `x` is sampled as
/// `x_total`, a histogram as `x_bucket`, `x_sum` and `x_count`.
fn series(exposition: &str, out: &mut BTreeSet<String>) {
    for line in exposition.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("#") || words.next() != Some("TYPE") {
            continue;
        }
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        match kind {
            "counter" => drop(out.insert(format!("{name}_total"))),
            "histogram" => {
                for suffix in ["bucket", "sum", "count"] {
                    out.insert(format!("{name}_{suffix}"));
                }
            }
            _ => drop(out.insert(name.to_string())),
        }
    }
}

/// `carerp_...` names in a PromQL expression, less the label the PodMonitor adds
/// (`carerp.io/tenant` as `carerp_io_tenant`).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if expr[i..].starts_with("carerp_") && (i == 0 || !word(bytes[i - 1])) {
            let end = (i..bytes.len())
                .find(|&j| !word(bytes[j]))
                .unwrap_or(bytes.len());
            if &expr[i..end] != "carerp_io_tenant" {
                names.push(expr[i..end].to_string());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// An alert or a panel on a metric nobody exports never fires or stays empty: every name the
/// rules and the dashboard use is one the operator or the services register.
#[tokio::test]
async fn alerts_and_dashboard_name_only_exported_metrics() {
    let Some(documents) = render(&["--api-versions", "monitoring.coreos.com/v1"]) else {
        return;
    };
    // A labelled family is exposed once it has a series: one of each.
    let mut exported = BTreeSet::new();
    let operator = carerp_operator::metrics::Metrics::default();
    operator.observe(Duration::from_millis(5), Some("DatabaseError"));
    operator.set_phase("t", Some(carerp_operator::crd::Phase::Ready));
    series(&operator.encode(), &mut exported);
    let services = carerp_kit::Metrics::new();
    services.observe_grpc("/m", tonic::Code::NotFound, Duration::from_millis(5));
    carerp_bff::metrics::HttpMetrics::register(&services).observe(
        "GET",
        "/r",
        200,
        Duration::from_millis(5),
    );
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let jetstream = async_nats::jetstream::new(async_nats::connect(nats).await.unwrap());
    let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
    let _relay = carerp_kit::relay::Relay::new(pool, jetstream, "customer", "t", &services);
    let consumer = carerp_kit::consumer::ConsumerMetrics::register(&services);
    consumer.dead_lettered("billing", "workorder.completed");
    consumer.set_pending(3);
    series(&services.encode(), &mut exported);
    assert!(
        exported.contains("carerp_outbox_oldest_age_seconds"),
        "{exported:?}"
    );

    let mut used = Vec::new();
    let rule = find(&documents, "PrometheusRule", "carerp");
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            used.push((rule["alert"].to_string(), metric_names(expr)));
        }
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        find(&documents, "ConfigMap", "carerp-dashboard")["data"]["carerp.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            used.push((
                panel["title"].to_string(),
                metric_names(target["expr"].as_str().unwrap()),
            ));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            used.push((variable["name"].to_string(), metric_names(query)));
        }
    }
    assert_eq!(
        used.len(),
        6 + 12 + 1,
        "every rule, panel query and variable: {used:?}"
    );
    for (place, names) in used {
        assert!(!names.is_empty(), "{place} names no metric");
        for name in names {
            assert!(
                exported.contains(&name),
                "{place}: {name} is not exported: {exported:?}"
            );
        }
    }
}
