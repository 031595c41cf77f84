//! The CarErpTenant CRD on a real API server (`e2e/src/cluster.rs`): it is accepted as
//! generated, `kubectl explain` and `kubectl get` show its descriptions and printer columns,
//! and the API server itself refuses invalid tenants with the schema's own messages.

use carerp_e2e::cluster::ControlPlane;
use carerp_operator::crd::CarErpTenant;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

fn tenant(name: &str) -> CarErpTenant {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "carerp.io/v1alpha1",
        "kind": "CarErpTenant",
        "metadata": { "name": name },
        "spec": { "displayName": "Schema Motors", "plan": "Starter" }
    }))
    .unwrap()
}

async fn explain(plane: &ControlPlane, what: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match plane.kubectl(&["explain", what]) {
            Ok(text) => return text,
            Err(err) if std::time::Instant::now() > deadline => panic!("{err}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}

/// The message of the API server's refusal of `tenant`.
async fn refusal(api: &Api<CarErpTenant>, tenant: &CarErpTenant) -> String {
    match api.create(&PostParams::default(), tenant).await {
        Ok(created) => panic!("the API server accepted {created:?}"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            status.message
        }
        Err(err) => panic!("unexpected error {err}"),
    }
}

#[tokio::test]
async fn the_api_server_accepts_the_crd_and_enforces_its_rules() {
    let Some(plane) = ControlPlane::start().await.unwrap() else {
        return;
    };
    plane
        .kubectl(&[
            "apply",
            "--server-side",
            "-f",
            "crds/carerp.io_carerptenants.yaml",
        ])
        .unwrap();
    plane
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/carerptenants.carerp.io",
        ])
        .unwrap();

    // kubectl explain reads the descriptions of the Rust doc comments (from the OpenAPI
    // document, which the API server publishes a moment after the CRD is established).
    let spec = explain(&plane, "carerptenants.spec").await;
    for field in [
        "displayName",
        "plan",
        "suspend",
        "settings",
        "database",
        "messaging",
    ] {
        assert!(spec.contains(field), "{field} missing in:\n{spec}");
    }
    assert!(spec.contains("Size of the tenant"), "{spec}");
    let currency = explain(&plane, "garage.spec.settings.currency").await;
    assert!(currency.contains("ISO 4217"), "{currency}");

    let client = plane.client().await.unwrap();
    let api: Api<CarErpTenant> = Api::all(client);
    api.create(&PostParams::default(), &tenant("schema-motors"))
        .await
        .unwrap();

    // The printer columns, by plural, short name and category.
    for resource in ["carerptenants", "garages", "cet", "carerp"] {
        let table = plane.kubectl(&["get", resource]).unwrap();
        let header = table.lines().next().unwrap_or_default();
        for column in [
            "NAME",
            "DISPLAY NAME",
            "PLAN",
            "PHASE",
            "READY",
            "ENDPOINT",
            "AGE",
        ] {
            assert!(
                header.contains(column),
                "{column} missing in {resource}:\n{table}"
            );
        }
        assert!(table.contains("Schema Motors"), "{table}");
        assert!(table.contains("Starter"), "{table}");
    }

    // Refused by the API server itself, each with its rule's message.
    let long = "a".repeat(41);
    let message = refusal(&api, &tenant(&long)).await;
    assert!(message.contains("at most 40 characters"), "{message}");

    let mut bad_currency = tenant("bad-currency");
    bad_currency.spec.settings.currency = "eur".into();
    let message = refusal(&api, &bad_currency).await;
    assert!(message.contains("spec.settings.currency"), "{message}");
    assert!(message.contains("^[A-Z]{3}$"), "{message}");

    let mut negative = tenant("negative-replicas");
    negative.spec.services.workorder = Some(carerp_operator::crd::ServiceOverride {
        replicas: Some(-1),
        resources: None,
    });
    let message = refusal(&api, &negative).await;
    assert!(
        message.contains("spec.services.workorder.replicas"),
        "{message}"
    );
    assert!(message.contains("greater than or equal to 0"), "{message}");

    // The currency of an existing tenant cannot change; its other settings can.
    let patch = |currency: &str| {
        Patch::Merge(serde_json::json!({
            "spec": { "settings": { "currency": currency, "taxRateBasisPoints": 1900 } }
        }))
    };
    let params = PatchParams::default();
    match api.patch("schema-motors", &params, &patch("USD")).await {
        Ok(_) => panic!("the currency of an existing tenant changed"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains("currency is immutable"),
                "{}",
                status.message
            );
        }
        Err(err) => panic!("unexpected error {err}"),
    }
    let same = api
        .patch("schema-motors", &params, &patch("EUR"))
        .await
        .unwrap();
    assert_eq!(same.spec.settings.tax_rate_basis_points, 1900);
    assert_eq!(same.spec.settings.currency, "EUR");
}
