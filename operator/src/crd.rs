//! The `CarErpTenant` resource: one garage.
//!
//! These types are the source of the CRD in `crds/` (`carerp-operator crd`). Every field's doc
//! comment becomes its description, so `kubectl explain carerptenant.spec` reads it. Rules the
//! API server can check are in the schema (ranges, patterns, CEL rules); [`crate::validate`]
//! checks the same rules again for `render`, `local` and the controller, with the field path.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, ValidationRule,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The services every tenant runs, in start order (the BFF last: it calls the others).
pub const SERVICES: [Service; 6] = [
    Service::Customer,
    Service::Workorder,
    Service::Inventory,
    Service::Billing,
    Service::Identity,
    Service::Bff,
];

/// One of the tenant's workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Customer,
    Workorder,
    Inventory,
    Billing,
    Identity,
    Bff,
}

impl Service {
    /// The name used in object names, databases, env variables and binaries (`carerp-<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Service::Customer => "customer",
            Service::Workorder => "workorder",
            Service::Inventory => "inventory",
            Service::Billing => "billing",
            Service::Identity => "identity",
            Service::Bff => "bff",
        }
    }

    /// Domain services own a database and serve gRPC; the BFF serves HTTP and has no database.
    pub fn has_database(self) -> bool {
        self != Service::Bff
    }

    /// `CUSTOMER_GRPC_URL` and so on; `None` for the BFF, which nobody calls over gRPC.
    pub fn grpc_url_variable(self) -> Option<&'static str> {
        match self {
            Service::Customer => Some("CUSTOMER_GRPC_URL"),
            Service::Workorder => Some("WORKORDER_GRPC_URL"),
            Service::Inventory => Some("INVENTORY_GRPC_URL"),
            Service::Billing => Some("BILLING_GRPC_URL"),
            Service::Identity => Some("IDENTITY_GRPC_URL"),
            Service::Bff => None,
        }
    }

    /// The services this one calls, so the variables it is given name only those.
    pub fn calls(self) -> &'static [Service] {
        match self {
            Service::Workorder => &[Service::Customer, Service::Inventory],
            Service::Bff => &[
                Service::Customer,
                Service::Workorder,
                Service::Inventory,
                Service::Billing,
                Service::Identity,
            ],
            _ => &[],
        }
    }
}

/// A garage: one isolated Car ERP with its own namespace, databases and event stream.
// kube's `printcolumn(...)` and `shortname` repeat by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "carerp.io",
    version = "v1alpha1",
    kind = "CarErpTenant",
    plural = "carerptenants",
    singular = "carerptenant",
    shortname = "cet",
    shortname = "garage",
    // `kubectl get garages`, as platform engineers type it; kubectl matches short names exactly.
    shortname = "garages",
    category = "carerp",
    status = "CarErpTenantStatus",
    derive = "PartialEq",
    doc = "A garage: one isolated Car ERP. The name is the tenant id (a DNS label of at most 40 characters).",
    printcolumn(
        name = "Display Name",
        type_ = "string",
        json_path = ".spec.displayName"
    ),
    printcolumn(name = "Plan", type_ = "string", json_path = ".spec.plan"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        description = "Services ready out of services desired",
        json_path = ".status.readyServices"
    ),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CarErpTenantSpec {
    /// Name of the garage as its staff see it, e.g. "ACME Motors".
    #[schemars(length(min = 1, max = 100))]
    pub display_name: String,
    /// Size of the tenant: Starter, Standard or Enterprise. Sets replicas, resources and quota.
    #[serde(default)]
    pub plan: Plan,
    /// Image tag of the Car ERP services; default: the operator's own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), pattern(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"))]
    pub version: Option<String>,
    /// true scales every workload to zero and keeps the data.
    #[serde(default)]
    pub suspend: bool,
    /// Settings of the garage: currency, tax, labour rate, payment terms, time zone.
    #[serde(default)]
    pub settings: Settings,
    /// Per-service overrides of what the plan sets; an override wins.
    #[serde(default)]
    pub services: ServiceOverrides,
    /// The tenant's PostgreSQL databases (the server comes from the operator's configuration).
    #[serde(default)]
    pub database: DatabaseSpec,
    /// The tenant's JetStream stream.
    #[serde(default)]
    pub messaging: MessagingSpec,
    /// Traces: where they go, how many, and whether each pod gets a collector sidecar.
    #[serde(default)]
    pub telemetry: TelemetrySpec,
    /// Public HTTP(S) entry to the tenant's BFF; no Ingress when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// The garage's first owner, created with a one-time password kept in the Secret
    /// `carerp-<tenant>-owner` of the tenant's namespace; default `owner@<tenant>.local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<OwnerSpec>,
    /// Estimates emailed to customers through the garage's mail server; when absent the
    /// approval link is passed on by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailSpec>,
}

/// Where the BFF sends estimate emails.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailSpec {
    /// Secret in the tenant's namespace with the keys `url` (the mail server,
    /// `smtps://user:password@smtp.example.com` or `smtp://...:587?tls=required`) and `from`
    /// (the sender, e.g. `ACME Motors <estimates@acme.example>`). The BFF reads both from the
    /// Secret (`CARERP_SMTP_URL`, `CARERP_SMTP_FROM`); the operator never reads or copies them.
    pub smtp_secret_ref: SecretRef,
    /// Ports the BFF may open to the mail server (a NetworkPolicy egress rule); must hold the
    /// port of the Secret's `url`. Default 465 and 587.
    #[serde(default = "default_smtp_ports")]
    #[schemars(length(min = 1, max = 8))]
    pub ports: Vec<u16>,
}

/// A Secret in the tenant's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// The Secret's name.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

fn default_smtp_ports() -> Vec<u16> {
    vec![465, 587]
}

/// The first owner of a garage.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerSpec {
    /// The owner's email, used to sign in.
    #[schemars(length(min = 3, max = 254), pattern(r"^[^@\s]+@[^@\s]+$"))]
    pub email: String,
    /// The owner's name as shown in the app; default "Owner".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub display_name: Option<String>,
}

/// How big a tenant is.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Plan {
    /// One replica per service, small requests: a single garage.
    Starter,
    /// Two replicas per service: a busy garage.
    #[default]
    Standard,
    /// Three replicas per service and larger resources: a chain of garages.
    Enterprise,
}

/// Settings of the garage, given to every service as `CARERP_*` variables.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// ISO 4217 code of every amount in the tenant, e.g. EUR. Immutable once set: every
    /// amount already recorded is in it.
    #[serde(default = "default_currency")]
    #[schemars(
        pattern(r"^[A-Z]{3}$"),
        extend("x-kubernetes-validations" = [{
            "rule": "self == oldSelf",
            "message": "currency is immutable: the amounts already recorded are in it"
        }])
    )]
    pub currency: String,
    /// Tax rate in basis points: 2000 is 20%.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10000))]
    pub tax_rate_basis_points: i32,
    /// Default hourly labour rate in minor units of the currency (cents).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub labor_rate_cents: i64,
    /// Days between an invoice's issue and its due date.
    #[serde(default = "default_payment_terms_days")]
    #[schemars(range(min = 0, max = 365))]
    pub payment_terms_days: i32,
    /// IANA time zone of the garage, e.g. Europe/Berlin; dates are taken in it.
    #[serde(default = "default_timezone")]
    #[schemars(length(min = 1, max = 64))]
    pub timezone: String,
    /// The garage's postal address as invoices and job cards print it, lines separated by
    /// newlines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 300))]
    pub address: Option<String>,
    /// The garage's tax (VAT) number, printed on invoices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 40))]
    pub tax_id: Option<String>,
}

fn default_currency() -> String {
    "EUR".into()
}
fn default_payment_terms_days() -> i32 {
    14
}
fn default_timezone() -> String {
    "UTC".into()
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            currency: default_currency(),
            tax_rate_basis_points: 0,
            labor_rate_cents: 0,
            payment_terms_days: default_payment_terms_days(),
            timezone: default_timezone(),
            address: None,
            tax_id: None,
        }
    }
}

/// Overrides per service; a service not listed gets what the plan sets.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceOverrides {
    /// Customers and vehicles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<ServiceOverride>,
    /// Work orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workorder: Option<ServiceOverride>,
    /// Parts inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<ServiceOverride>,
    /// Invoices and payments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing: Option<ServiceOverride>,
    /// People, sessions, tokens and the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ServiceOverride>,
    /// The REST API and web UI in front of the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bff: Option<ServiceOverride>,
}

impl ServiceOverrides {
    /// The override of one service, if any.
    pub fn get(&self, service: Service) -> Option<&ServiceOverride> {
        match service {
            Service::Customer => self.customer.as_ref(),
            Service::Workorder => self.workorder.as_ref(),
            Service::Inventory => self.inventory.as_ref(),
            Service::Billing => self.billing.as_ref(),
            Service::Identity => self.identity.as_ref(),
            Service::Bff => self.bff.as_ref(),
        }
    }
}

/// What one service gets instead of the plan's values.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceOverride {
    /// Number of pods (0 to 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 50))]
    pub replicas: Option<i32>,
    /// CPU and memory requests and limits of the service's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// The tenant's databases.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseSpec {
    /// What happens to the databases when the tenant is deleted: Retain keeps them, Delete drops them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Whether deleting a tenant deletes its data.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Databases and roles stay after the tenant is gone.
    #[default]
    Retain,
    /// Databases (connections forced out) and roles are dropped with the tenant.
    Delete,
}

/// The tenant's JetStream streams: its events, `CARERP_<TENANT>`, and its dead letters,
/// `CARERP_<TENANT>-DLQ`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessagingSpec {
    /// How long events are kept, as a duration such as 168h or 36h; at least 1h, so events
    /// outlive an outage of their consumers and the 2-minute duplicate window fits inside.
    #[serde(default = "default_max_age")]
    #[schemars(pattern(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub max_age: String,
    /// Copies of the stream kept by the JetStream cluster (1 to 5).
    #[serde(default = "default_stream_replicas")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i32,
    /// How long dead letters (events a consumer gave up on, with the error) are kept for
    /// someone to look at and replay, as a duration such as 720h; at least 24h.
    #[serde(default = "default_dead_letter_max_age")]
    #[schemars(pattern(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub dead_letter_max_age: String,
}

fn default_max_age() -> String {
    "168h".into()
}
fn default_dead_letter_max_age() -> String {
    "720h".into()
}
fn default_stream_replicas() -> i32 {
    1
}

impl Default for MessagingSpec {
    fn default() -> Self {
        Self {
            max_age: default_max_age(),
            replicas: default_stream_replicas(),
            dead_letter_max_age: default_dead_letter_max_age(),
        }
    }
}

/// Traces of the tenant's services.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelemetrySpec {
    /// OTLP/gRPC collector the services (or their sidecar) export to; default: the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^https?://"))]
    pub otlp_endpoint: Option<String>,
    /// Share of traces kept, from 0 (none) to 1 (all).
    #[serde(default = "default_sampling_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sampling_ratio: f64,
    /// None: services export directly. Sidecar: an OpenTelemetry Collector runs in every pod.
    #[serde(default)]
    pub collector: CollectorMode,
}

fn default_sampling_ratio() -> f64 {
    1.0
}

impl Default for TelemetrySpec {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sampling_ratio: default_sampling_ratio(),
            collector: CollectorMode::default(),
        }
    }
}

/// Where traces leave the pod.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CollectorMode {
    /// Services export straight to the OTLP endpoint.
    #[default]
    None,
    /// An OpenTelemetry Collector native sidecar in every pod batches and forwards.
    Sidecar,
}

/// Public entry to the tenant's BFF.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressSpec {
    /// Host name garage staff use, e.g. acme.garages.example.com.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub host: String,
    /// IngressClass to use; default: the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Secret in the tenant's namespace with the TLS certificate; plain HTTP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
}

/// What the operator last saw of the tenant.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CarErpTenantStatus {
    /// Pending, Provisioning, Ready, Degraded, Suspended, Deleting or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// DatabasesReady, MessagingReady, WorkloadsReady and Ready, each with a reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The namespace holding the tenant's workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Where garage staff reach the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Ready services out of desired services, e.g. 6/6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_services: Option<String>,
    /// Per service: ready and desired replicas and the image running.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceStatus>,
}

/// Lifecycle phase of a tenant.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// Seen, nothing done yet.
    Pending,
    /// Databases, stream or workloads are being created.
    Provisioning,
    /// Every service is ready.
    Ready,
    /// Was ready, some service is not.
    Degraded,
    /// Scaled to zero on request.
    Suspended,
    /// Cleanup is running.
    Deleting,
    /// The spec is invalid or a provisioner keeps failing; see the conditions.
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Pending,
        Phase::Provisioning,
        Phase::Ready,
        Phase::Degraded,
        Phase::Suspended,
        Phase::Deleting,
        Phase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Provisioning => "Provisioning",
            Phase::Ready => "Ready",
            Phase::Degraded => "Degraded",
            Phase::Suspended => "Suspended",
            Phase::Deleting => "Deleting",
            Phase::Failed => "Failed",
        }
    }
}

/// One service's rollout.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// Pods ready.
    pub ready: i32,
    /// Pods wanted.
    pub desired: i32,
    /// Image of the Deployment.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
}

/// The CRD, with the rule on the object's name that the derive cannot express: a tenant id
/// becomes part of namespace, database and stream names, so it must be a short DNS label.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = CarErpTenant::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema.x_kubernetes_validations = Some(vec![ValidationRule {
                rule: "self.metadata.name.size() <= 40 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')".into(),
                message: Some(
                    "metadata.name must be a DNS label (lower-case letters, digits, '-') of at most 40 characters".into(),
                ),
                ..ValidationRule::default()
            }]);
        }
    }
    crd
}

/// The CRD as YAML, exactly what `crds/carerp.io_carerptenants.yaml` holds.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(&crd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_is_cluster_scoped_with_short_names_and_status() {
        let crd = crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("carerptenants.carerp.io")
        );
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(
            crd.spec.names.short_names,
            Some(vec![
                "cet".to_string(),
                "garage".to_string(),
                "garages".to_string()
            ])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            ["Display Name", "Plan", "Phase", "Ready", "Endpoint", "Age"]
        );
    }

    #[test]
    fn every_spec_field_has_a_description() {
        let crd = serde_json::to_value(crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let mut missing = Vec::new();
        collect_undescribed("spec", spec, &mut missing);
        assert!(
            missing.is_empty(),
            "fields without description: {missing:?}"
        );
    }

    fn collect_undescribed(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, field) in props {
                let field_path = format!("{path}.{name}");
                if field.get("description").is_none() {
                    missing.push(field_path.clone());
                }
                // k8s-openapi types describe themselves; only our own types are checked deeper.
                if name != "resources" {
                    collect_undescribed(&field_path, field, missing);
                }
            }
        }
        if let Some(items) = schema.get("items") {
            collect_undescribed(path, items, missing);
        }
        if let Some(values) = schema.get("additionalProperties") {
            collect_undescribed(path, values, missing);
        }
    }

    #[test]
    fn schema_carries_ranges_patterns_and_enums() {
        let crd = serde_json::to_value(crd()).unwrap();
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let spec = &root["properties"]["spec"]["properties"];
        assert_eq!(
            spec["settings"]["properties"]["currency"]["pattern"],
            "^[A-Z]{3}$"
        );
        assert_eq!(
            spec["settings"]["properties"]["taxRateBasisPoints"]["maximum"],
            10000.0
        );
        assert_eq!(
            spec["plan"]["enum"],
            serde_json::json!(["Starter", "Standard", "Enterprise"])
        );
        assert_eq!(spec["plan"]["default"], "Standard");
        assert_eq!(
            spec["services"]["properties"]["workorder"]["properties"]["replicas"]["minimum"],
            0.0
        );
        assert!(
            root["x-kubernetes-validations"][0]["rule"]
                .as_str()
                .unwrap()
                .contains("size() <= 40")
        );
        assert_eq!(
            root["properties"]["status"]["properties"]["conditions"]["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"])
        );
    }
}
