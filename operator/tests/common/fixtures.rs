//! Tenants for tests, built over the real `CarErpTenant` type (as controller-rs'
//! `Document::test().finalized()`): `demo().finalized().plan(Plan::Starter).build()`.

use carerp_operator::controller::FINALIZER;
use carerp_operator::crd::{
    CarErpTenant, CarErpTenantSpec, CarErpTenantStatus, CollectorMode, DeletionPolicy, IngressSpec,
    Phase, Plan,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// A builder of one tenant.
#[derive(Clone)]
pub struct TenantFixture(CarErpTenant);

/// `demo`, generation 3, no finalizer yet, the spec's defaults but a display name.
pub fn demo() -> TenantFixture {
    // The spec's defaults are the CRD's serde defaults: read them the way the API server's
    // objects are read.
    let spec: CarErpTenantSpec =
        serde_json::from_value(serde_json::json!({"displayName": "Demo Garage"}))
            .expect("a minimal spec");
    let mut tenant = CarErpTenant::new("demo", spec);
    tenant.metadata.uid = Some("5b9c3f0e-0000-4000-8000-000000000042".into());
    tenant.metadata.generation = Some(3);
    tenant.metadata.resource_version = Some("100".into());
    tenant.metadata.finalizers = Some(Vec::new());
    TenantFixture(tenant)
}

/// A point in time, from RFC 3339.
pub fn time(rfc3339: &str) -> Time {
    Time(rfc3339.parse::<Timestamp>().expect("an RFC 3339 time"))
}

impl TenantFixture {
    /// Carries the operator's cleanup finalizer, as after its first reconcile.
    pub fn finalized(mut self) -> Self {
        self.0.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
        self
    }

    /// Being deleted.
    pub fn deleting(mut self) -> Self {
        self.0.metadata.deletion_timestamp = Some(time("2026-11-25T12:00:00Z"));
        self
    }

    pub fn plan(mut self, plan: Plan) -> Self {
        self.0.spec.plan = plan;
        self
    }

    pub fn ingress(mut self, host: &str) -> Self {
        self.0.spec.ingress = Some(IngressSpec {
            host: host.into(),
            class_name: None,
            tls_secret_name: None,
        });
        self
    }

    /// Exports traces through a collector sidecar.
    pub fn sidecar(mut self, otlp_endpoint: &str) -> Self {
        self.0.spec.telemetry.otlp_endpoint = Some(otlp_endpoint.into());
        self.0.spec.telemetry.collector = CollectorMode::Sidecar;
        self
    }

    pub fn deletion_policy(mut self, policy: DeletionPolicy) -> Self {
        self.0.spec.database.deletion_policy = policy;
        self
    }

    pub fn currency(mut self, currency: &str) -> Self {
        self.0.spec.settings.currency = currency.into();
        self
    }

    /// Was Ready at `observed_generation`, every condition True since 2026-11-24.
    pub fn was_ready(mut self, observed_generation: i64) -> Self {
        let conditions = [
            "DatabasesReady",
            "MessagingReady",
            "WorkloadsReady",
            "Ready",
        ]
        .into_iter()
        .map(|type_| Condition {
            type_: type_.into(),
            status: "True".into(),
            reason: "Ready".into(),
            message: "ok".into(),
            observed_generation: None,
            last_transition_time: time("2026-11-24T08:00:00Z"),
        })
        .collect();
        self.0.status = Some(CarErpTenantStatus {
            phase: Some(Phase::Ready),
            observed_generation: Some(observed_generation),
            conditions,
            ..CarErpTenantStatus::default()
        });
        self
    }

    pub fn build(self) -> CarErpTenant {
        self.0
    }
}
