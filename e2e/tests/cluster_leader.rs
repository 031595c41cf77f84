//! Leader election between operator processes on a real control plane: only the holder of the
//! Lease reconciles; `kill -9` of the holder and another takes over within the lease; a holder
//! cut off from the API server stops before its lease could be taken; a Lease whose holder's
//! clock is far behind is not taken early (expiry is judged by local observation).
//! Leases of 6 s here (renewal deadline 4 s), to keep the suite short.

use std::time::{Duration, Instant};

use carerp_e2e::cluster::{ControlPlane, Operator, Proxy, tail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

const LEASE: Duration = Duration::from_secs(6);
const ENV: &[(&str, &str)] = &[("CARERP_LEASE_DURATION_SECONDS", "6")];

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("carerp-operator")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

/// Polls every 50 ms until the Lease holder starts with `name_`; when that was seen.
async fn wait_for_holder(leases: &Api<Lease>, name: &str, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        if holder(leases)
            .await
            .is_some_and(|h| h.starts_with(&format!("{name}_")))
        {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not take the lease within {timeout:?} (holder: {:?})",
            holder(leases).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_reconciles_and_another_takes_over_safely() {
    let Some(plane) = ControlPlane::start().await.unwrap() else {
        return;
    };
    plane.install_chart(&["--set", "replicaCount=0"]).unwrap();
    let client = plane.client().await.unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "carerp-system");
    let direct = plane
        .service_account_kubeconfig("carerp-system", "carerp-operator", None)
        .await
        .unwrap();

    // A Lease held by a replica whose clock is an hour behind: by its renewTime it expired
    // long ago, but it was renewed just now for all we can tell. Not taken before a whole
    // lease of local observation.
    let stale = json!({
        "metadata": { "name": "carerp-operator" },
        "spec": {
            "holderIdentity": "ghost_0",
            "leaseDurationSeconds": 6,
            "renewTime": "2000-01-01T00:00:00.000000Z",
            "acquireTime": "2000-01-01T00:00:00.000000Z",
            "leaseTransitions": 3
        }
    });
    leases
        .create(
            &PostParams::default(),
            &serde_json::from_value(stale).unwrap(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut a = Operator::start(&plane, "op-a", &direct, ENV).unwrap();
    let took = wait_for_holder(&leases, "op-a", LEASE * 3).await;
    assert!(
        took.duration_since(started) >= LEASE,
        "a lease that looked expired by the holder's clock was taken after {:?}",
        took.duration_since(started)
    );

    // Only the holder reconciles: the second replica waits and never starts the controller.
    let proxy = Proxy::start(plane.api_addr().unwrap()).await.unwrap();
    let via_proxy = plane
        .service_account_kubeconfig("carerp-system", "carerp-operator", Some(&proxy.url()))
        .await
        .unwrap();
    let mut b = Operator::start(&plane, "op-b", &via_proxy, ENV).unwrap();
    let tenants: Api<carerp_operator::crd::CarErpTenant> = Api::all(client.clone());
    tenants
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "carerp.io/v1alpha1",
                "kind": "CarErpTenant",
                "metadata": { "name": "leader-motors" },
                "spec": { "displayName": "Leader Motors", "plan": "Starter", "database": { "deletionPolicy": "Delete" } }
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.reconciliations().await.unwrap_or(0) == 0 {
        assert!(
            Instant::now() < deadline,
            "op-a never reconciled:\n{}",
            tail(&a.process.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        b.reconciliations().await,
        Some(0),
        "op-b reconciled while op-a leads"
    );
    assert!(!b.process.log().contains("starting the controller"));
    let events: Api<Event> = Api::all(client.clone());
    let events = events
        .list(&ListParams::default().fields("regarding.name=leader-motors"))
        .await
        .unwrap();
    assert!(!events.items.is_empty());
    for event in &events {
        let instance = event.reporting_instance.clone().unwrap_or_default();
        assert!(instance.starts_with("op-a_"), "an Event from {instance}");
    }

    // kill -9 of the holder: the other takes over within the lease (plus one retry period).
    a.process.kill9();
    let killed = Instant::now();
    let took = wait_for_holder(&leases, "op-b", LEASE * 3).await;
    let after = took.duration_since(killed);
    assert!(
        after <= LEASE + Duration::from_secs(2),
        "op-b took over {after:?} after the leader was killed"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.reconciliations().await.unwrap_or(0) == 0 {
        assert!(
            Instant::now() < deadline,
            "op-b never reconciled:\n{}",
            tail(&b.process.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A holder cut off from the API server stops (exits) before anyone could take its lease.
    let mut c = Operator::start(&plane, "op-c", &direct, ENV).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.cut();
    let cut = Instant::now();
    let mut b_stopped = None;
    let deadline = cut + LEASE * 4;
    let c_took = loop {
        if b_stopped.is_none() && b.process.exited().is_some() {
            b_stopped = Some(Instant::now());
        }
        if holder(&leases)
            .await
            .is_some_and(|h| h.starts_with("op-c_"))
        {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "op-c never took over:\n{}",
            tail(&c.process.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let b_stopped = b_stopped.unwrap_or_else(|| {
        panic!(
            "op-b still ran when op-c took the lease:\n{}",
            tail(&b.process.log(), 40)
        )
    });
    assert!(b_stopped < c_took);
    assert!(
        b_stopped.duration_since(cut) < LEASE,
        "op-b stopped {:?} after the cut",
        b_stopped.duration_since(cut)
    );
    assert!(
        b.process.log().contains("lost the lease"),
        "{}",
        tail(&b.process.log(), 20)
    );
    assert!(c.process.is_running());
}
