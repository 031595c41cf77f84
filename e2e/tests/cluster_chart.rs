//! The operator chart (`charts/carerp-operator`) on a real control plane: `helm lint`,
//! `install`, `upgrade` and `uninstall` work, and its RBAC grants exactly the verbs the
//! operator's code uses, resource by resource (that they are enough is proven by
//! `cluster_tenant.rs`, which runs the operator with this very account).

use std::collections::{BTreeMap, BTreeSet};

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
