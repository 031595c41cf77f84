//! The cluster suite: a tenant applied to a real Kubernetes cluster (`just kind-up deploy
//! e2e`) becomes Ready with its namespace and workloads, and deleting it cleans up.
//!
//! Where no cluster is reachable, or the operator is not deployed, it says so and skips:
//! the rest of the suite covers everything that runs without one.

use std::time::{Duration, Instant};

use carerp_operator::crd::{CarErpTenant, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};

const CRD: &str = "carerptenants.carerp.io";

/// A client for a cluster that answers and has the CRD installed, or the reason to skip.
async fn cluster() -> Result<Client, String> {
    let client = Client::try_default()
        .await
        .map_err(|err| format!("no Kubernetes configuration ({err})"))?;
    client
        .apiserver_version()
        .await
        .map_err(|err| format!("the API server does not answer ({err})"))?;
    Api::<CustomResourceDefinition>::all(client.clone())
        .get(CRD)
        .await
        .map_err(|err| format!("the {CRD} CRD is not installed: run `just deploy` ({err})"))?;
    Ok(client)
}

async fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn a_tenant_becomes_ready_in_the_cluster_and_is_cleaned_up_on_deletion() {
    let client = match cluster().await {
        Ok(client) => client,
        Err(reason) => {
            eprintln!(
                "skipping the kind-cluster suite: {reason}; `just kind-up deploy e2e` runs it"
            );
            return;
        }
    };
    let name = format!("e2e-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let tenant = carerp_operator::validate::parse_tenant(&format!(
        "apiVersion: carerp.io/v1alpha1\nkind: CarErpTenant\nmetadata:\n  name: {name}\nspec:\n  displayName: Cluster Test Garage\n  plan: Starter\n  database:\n    deletionPolicy: Delete\n"
    ))
    .unwrap();
    let tenants: Api<CarErpTenant> = Api::all(client.clone());
    tenants
        .create(&PostParams::default(), &tenant)
        .await
        .unwrap();

    let ready = wait_until(
        "the tenant is Ready",
        Duration::from_secs(600),
        async || {
            let current = tenants.get(&name).await.ok()?;
            let status = current.status?;
            (status.phase == Some(Phase::Ready)).then_some(status)
        },
    )
    .await;
    let namespace = ready.namespace.clone().unwrap();
    assert_eq!(namespace, format!("carerp-{name}"));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let listed = deployments.list(&ListParams::default()).await.unwrap();
    assert!(
        listed.items.len() >= 5,
        "one Deployment per service and the BFF"
    );
    for deployment in &listed.items {
        let status = deployment.status.clone().unwrap_or_default();
        assert_eq!(
            status.ready_replicas, status.replicas,
            "{:?} is not ready",
            deployment.metadata.name
        );
    }

    tenants
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    wait_until(
        "the tenant and its namespace are gone",
        Duration::from_secs(300),
        async || {
            let tenant_gone = tenants.get_opt(&name).await.ok()?.is_none();
            let namespace_gone = Api::<Namespace>::all(client.clone())
                .get_opt(&namespace)
                .await
                .ok()?
                .is_none_or(|ns| ns.metadata.deletion_timestamp.is_some());
            (tenant_gone && namespace_gone).then_some(())
        },
    )
    .await;
}
