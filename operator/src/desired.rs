//! What a tenant becomes in the cluster: a pure function of the tenant and the operator's
//! configuration, so the controller, `render` and the golden tests see the same objects.
//!
//! The database Secrets are not here: their passwords come from the PostgreSQL provisioner, so
//! the controller builds them with [`database_secret`] after provisioning. Deployments only
//! refer to them, and carry a hash of each Secret's content (given to [`desired`] as input) on
//! their pod template, so a new password rolls the pods that read it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, ConfigMapVolumeSource,
    Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, Namespace, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceQuota, ResourceQuotaSpec, ResourceRequirements, SeccompProfile, Secret,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, IPBlock, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, NetworkPolicy, NetworkPolicyEgressRule,
    NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
    ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{NatsBroker, OperatorConfig};
use crate::crd::{CarErpTenant, CollectorMode, Plan, SERVICES, Service as Svc};
use crate::nats_auth::{CREDENTIALS_DIR, CREDENTIALS_ENV, CREDENTIALS_KEY, CREDENTIALS_SECRET};

/// Port of the domain services' gRPC listener.
pub const GRPC_PORT: i32 = 50051;
/// Port of the BFF's HTTP listener.
pub const HTTP_PORT: i32 = 8080;
/// Port of `/healthz`, `/readyz` and `/metrics` in every service.
pub const ADMIN_PORT: i32 = 9090;
/// Where the collector sidecar listens for the services of its pod.
const SIDECAR_OTLP: &str = "http://127.0.0.1:4317";
/// Name of the tenant's settings ConfigMap.
pub const SETTINGS_CONFIGMAP: &str = "carerp-settings";
/// The tenant's public token keys (`<kid>:<key>[,...]`, key `public-keys`), read by every
/// service to verify access tokens. Public, so a ConfigMap.
pub const TOKEN_KEYS_CONFIGMAP: &str = "carerp-token-keys";
/// The tenant's private signing key (key `signing-key`) and the public keys in force (key
/// `public-keys`): read by the identity service alone.
pub const SIGNING_KEY_SECRET: &str = "carerp-signing-key";
pub const SIGNING_KEY: &str = "signing-key";
pub const PUBLIC_KEYS: &str = "public-keys";
/// Annotation on every pod template: a hash of the public keys, so a rotation restarts the
/// services with the new key list.
pub const TOKEN_KEYS_HASH_ANNOTATION: &str = "carerp.io/token-keys-hash";
const COLLECTOR_CONFIGMAP: &str = "otel-collector";
/// Pod-template annotation holding [`secret_hash`] of the service's database Secret: a new
/// password (a reset after the Secret was lost) changes the template, so Kubernetes rolls the
/// pods, which read the Secret only when they start.
pub const SECRET_HASH_ANNOTATION: &str = "carerp.io/database-secret-hash";
/// Pod-template annotation holding a hash of the tenant's NATS credentials: reissued
/// credentials (a new account signing key) restart the pods, which read them at start.
pub const NATS_CREDENTIALS_HASH_ANNOTATION: &str = "carerp.io/nats-credentials-hash";
/// UID and GID the services run as (the distroless `nonroot` user).
const RUN_AS: i64 = 65532;

/// One object the operator applies, typed.
// A tenant has a few dozen of these, built once per reconcile: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    Namespace(Namespace),
    ConfigMap(ConfigMap),
    ServiceAccount(ServiceAccount),
    Service(Service),
    Deployment(Deployment),
    PodDisruptionBudget(PodDisruptionBudget),
    NetworkPolicy(NetworkPolicy),
    ResourceQuota(ResourceQuota),
    Ingress(Ingress),
}

impl Object {
    /// `Kind/name`, for logs and events.
    pub fn describe(&self) -> String {
        let (kind, meta) = match self {
            Object::Namespace(o) => ("Namespace", &o.metadata),
            Object::ConfigMap(o) => ("ConfigMap", &o.metadata),
            Object::ServiceAccount(o) => ("ServiceAccount", &o.metadata),
            Object::Service(o) => ("Service", &o.metadata),
            Object::Deployment(o) => ("Deployment", &o.metadata),
            Object::PodDisruptionBudget(o) => ("PodDisruptionBudget", &o.metadata),
            Object::NetworkPolicy(o) => ("NetworkPolicy", &o.metadata),
            Object::ResourceQuota(o) => ("ResourceQuota", &o.metadata),
            Object::Ingress(o) => ("Ingress", &o.metadata),
        };
        format!("{kind}/{}", meta.name.as_deref().unwrap_or_default())
    }
}

/// Replicas and resources a plan gives each service, and the namespace quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanSize {
    pub replicas: i32,
    pub cpu_request: &'static str,
    pub memory_request: &'static str,
    pub memory_limit: &'static str,
    pub quota_cpu: &'static str,
    pub quota_memory: &'static str,
    pub quota_pods: &'static str,
    /// Each replica's database pool (`DATABASE_MAX_CONNECTIONS`): with five services, a tenant
    /// holds at most `5 * replicas * db_connections` connections under load, none idle.
    pub db_connections: u32,
}

pub fn plan_size(plan: Plan) -> PlanSize {
    match plan {
        Plan::Starter => PlanSize {
            replicas: 1,
            cpu_request: "50m",
            memory_request: "128Mi",
            memory_limit: "256Mi",
            quota_cpu: "2",
            quota_memory: "4Gi",
            quota_pods: "20",
            db_connections: 2,
        },
        Plan::Standard => PlanSize {
            replicas: 2,
            cpu_request: "100m",
            memory_request: "256Mi",
            memory_limit: "512Mi",
            quota_cpu: "4",
            quota_memory: "8Gi",
            quota_pods: "40",
            db_connections: 4,
        },
        Plan::Enterprise => PlanSize {
            replicas: 3,
            cpu_request: "250m",
            memory_request: "512Mi",
            memory_limit: "1Gi",
            quota_cpu: "16",
            quota_memory: "32Gi",
            quota_pods: "100",
            db_connections: 8,
        },
    }
}

/// The tenant's id (its object name).
pub fn tenant_name(tenant: &CarErpTenant) -> &str {
    tenant.metadata.name.as_deref().unwrap_or_default()
}

/// `carerp-<tenant>` with the configured prefix.
pub fn namespace_name(tenant: &CarErpTenant, config: &OperatorConfig) -> String {
    format!("{}{}", config.namespace_prefix, tenant_name(tenant))
}

/// The image tag the tenant runs.
pub fn version<'a>(tenant: &'a CarErpTenant, config: &'a OperatorConfig) -> &'a str {
    tenant
        .spec
        .version
        .as_deref()
        .unwrap_or(&config.default_version)
}

pub fn image(tenant: &CarErpTenant, config: &OperatorConfig, service: Svc) -> String {
    format!(
        "{}/carerp-{}:{}",
        config.image_registry,
        service.name(),
        version(tenant, config)
    )
}

/// Pods the service should run: zero when suspended, else the override, else the plan.
pub fn replicas(tenant: &CarErpTenant, service: Svc) -> i32 {
    if tenant.spec.suspend {
        return 0;
    }
    tenant
        .spec
        .services
        .get(service)
        .and_then(|o| o.replicas)
        .unwrap_or_else(|| plan_size(tenant.spec.plan).replicas)
}

/// Where garage staff reach the tenant: the Ingress host, else the BFF's cluster address.
pub fn endpoint(tenant: &CarErpTenant, config: &OperatorConfig) -> String {
    match &tenant.spec.ingress {
        Some(ingress) if ingress.tls_secret_name.is_some() => format!("https://{}", ingress.host),
        Some(ingress) => format!("http://{}", ingress.host),
        None => format!(
            "http://bff.{}.svc:{HTTP_PORT}",
            namespace_name(tenant, config)
        ),
    }
}

/// Name of the Secret holding a service's `DATABASE_URL`.
/// The Secret holding the first owner's email and one-time password:
/// `carerp-<tenant>-owner`, in the tenant's namespace.
pub fn owner_secret_name(tenant: &CarErpTenant) -> String {
    format!("carerp-{}-owner", tenant_name(tenant))
}

/// The first owner's email: `spec.owner.email`, or `owner@<tenant>.local`.
pub fn owner_email(tenant: &CarErpTenant) -> String {
    match &tenant.spec.owner {
        Some(owner) => owner.email.clone(),
        None => format!("owner@{}.local", tenant_name(tenant)),
    }
}

pub fn secret_name(service: Svc) -> String {
    format!("{}-database", service.name())
}

/// Settings the services read as `CARERP_*` variables.
pub fn settings_env(tenant: &CarErpTenant) -> BTreeMap<String, String> {
    let s = &tenant.spec.settings;
    let mut env = BTreeMap::from([
        ("CARERP_CURRENCY".into(), s.currency.clone()),
        (
            "CARERP_TAX_RATE_BP".into(),
            s.tax_rate_basis_points.to_string(),
        ),
        (
            "CARERP_LABOR_RATE_MINOR".into(),
            s.labor_rate_cents.to_string(),
        ),
        (
            "CARERP_PAYMENT_TERMS_DAYS".into(),
            s.payment_terms_days.to_string(),
        ),
        ("CARERP_TIMEZONE".into(), s.timezone.clone()),
        (
            "CARERP_GARAGE_NAME".into(),
            tenant.spec.display_name.clone(),
        ),
    ]);
    for (name, value) in [
        ("CARERP_GARAGE_ADDRESS", &s.address),
        ("CARERP_GARAGE_TAX_ID", &s.tax_id),
    ] {
        if let Some(value) = value {
            env.insert(name.into(), value.clone());
        }
    }
    env
}

/// The OTLP endpoint the services' traces go to, if any (before the sidecar rewrites it).
pub fn otlp_endpoint<'a>(tenant: &'a CarErpTenant, config: &'a OperatorConfig) -> Option<&'a str> {
    tenant
        .spec
        .telemetry
        .otlp_endpoint
        .as_deref()
        .or(config.default_otlp_endpoint.as_deref())
}

fn sidecar_enabled(tenant: &CarErpTenant, config: &OperatorConfig) -> bool {
    tenant.spec.telemetry.collector == CollectorMode::Sidecar
        && otlp_endpoint(tenant, config).is_some()
}

/// Label selector of every object the operator made for the tenant (each carries these labels).
pub fn managed_selector(tenant: &CarErpTenant) -> String {
    format!(
        "app.kubernetes.io/managed-by=carerp-operator,carerp.io/tenant={}",
        tenant_name(tenant)
    )
}

/// Hash of a database Secret's content (its `DATABASE_URL`), for [`SECRET_HASH_ANNOTATION`].
/// Readable by whoever can read Deployments: 64 bits of a URL holding a 32-character random
/// password say nothing usable about the password.
pub fn secret_hash(database_url: &str) -> String {
    content_hash(database_url)
}

/// What a service's database Secret holds, from its URL on the server: `DATABASE_URL`
/// alone, or with a pooler configured, `DATABASE_URL` through the pooler (same role,
/// password and database) and `DATABASE_MIGRATION_URL` on the server.
pub fn database_secret_data(config: &OperatorConfig, server_url: &str) -> BTreeMap<String, String> {
    let mut data = BTreeMap::new();
    match &config.database_pooler {
        Some(pooler) => {
            let server = format!("@{}:{}/", config.database_host, config.database_port);
            let through = format!("@{}:{}/", pooler.host, pooler.port);
            data.insert(
                "DATABASE_URL".to_string(),
                server_url.replacen(&server, &through, 1),
            );
            data.insert("DATABASE_MIGRATION_URL".to_string(), server_url.to_string());
        }
        None => {
            data.insert("DATABASE_URL".to_string(), server_url.to_string());
        }
    }
    data
}

/// [`secret_hash`] of what [`database_secret_data`] puts in the Secret, so pointing the
/// tenants at a pooler (or another one) restarts their pods too.
pub fn database_secret_hash(config: &OperatorConfig, server_url: &str) -> String {
    match &config.database_pooler {
        Some(_) => {
            let data = database_secret_data(config, server_url);
            secret_hash(&data.values().cloned().collect::<Vec<_>>().join("\n"))
        }
        None => secret_hash(server_url),
    }
}

/// Every object the tenant's namespace should hold, in apply order.
///
/// `secret_hashes` holds [`secret_hash`] of each service's database Secret as it is (or is
/// about to be) in the cluster; a service without an entry gets no annotation (`render`, which
/// knows no passwords, passes none).
///
/// The collector ConfigMap, the PodDisruptionBudgets and the Ingress are here only under
/// conditions; the controller deletes those the tenant no longer wants.
/// `public_keys` are the tenant's public token keys as its signing-key Secret holds them;
/// `None` (`render`, which generates no keys) leaves out their ConfigMap and annotation.
pub fn desired(
    tenant: &CarErpTenant,
    config: &OperatorConfig,
    secret_hashes: &BTreeMap<Svc, String>,
    public_keys: Option<&str>,
) -> Vec<Object> {
    desired_with_nats(tenant, config, secret_hashes, public_keys, None)
}

/// [`desired`], with [`nats_credentials_hash`] of the tenant's NATS credentials as they are in
/// the cluster (the controller knows it; `render` does not). With `config.nats_credentials`
/// every pod mounts the credentials Secret either way.
pub fn desired_with_nats(
    tenant: &CarErpTenant,
    config: &OperatorConfig,
    secret_hashes: &BTreeMap<Svc, String>,
    public_keys: Option<&str>,
    nats_credentials_hash: Option<&str>,
) -> Vec<Object> {
    let ctx = Ctx::new(tenant, config);
    let mut objects = vec![
        Object::Namespace(ctx.namespace()),
        Object::ConfigMap(ctx.settings_configmap()),
    ];
    if let Some(keys) = public_keys {
        objects.push(Object::ConfigMap(ctx.token_keys_configmap(keys)));
    }
    let keys_hash = public_keys.map(content_hash);
    if sidecar_enabled(tenant, config) {
        objects.push(Object::ConfigMap(ctx.collector_configmap()));
    }
    for service in SERVICES {
        objects.push(Object::ServiceAccount(ctx.service_account(service)));
        objects.push(Object::Service(ctx.service(service)));
        objects.push(Object::Deployment(ctx.deployment(
            service,
            secret_hashes.get(&service),
            keys_hash.as_ref(),
            nats_credentials_hash,
        )));
        if replicas(tenant, service) > 1 {
            objects.push(Object::PodDisruptionBudget(ctx.pdb(service)));
        }
    }
    objects.extend(
        ctx.network_policies()
            .into_iter()
            .map(Object::NetworkPolicy),
    );
    objects.push(Object::ResourceQuota(ctx.quota()));
    if let Some(ingress) = ctx.ingress() {
        objects.push(Object::Ingress(ingress));
    }
    objects
}

/// Every object as YAML documents separated by `---`, for review and GitOps.
pub fn render_yaml(objects: &[Object]) -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(object)?);
    }
    Ok(out)
}

/// The Secret a service's Deployment reads its `DATABASE_URL` from.
pub fn database_secret(
    tenant: &CarErpTenant,
    config: &OperatorConfig,
    service: Svc,
    database_url: &str,
) -> Secret {
    let ctx = Ctx::new(tenant, config);
    Secret {
        metadata: ctx.meta(&secret_name(service), ctx.service_labels(service)),
        string_data: Some(database_secret_data(config, database_url)),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// Hash of a `.creds` file, for [`NATS_CREDENTIALS_HASH_ANNOTATION`] (SHA-256, as it holds a
/// seed).
pub fn nats_credentials_hash(creds: &str) -> String {
    content_hash(creds)
}

/// The Secret every service of the tenant reads its NATS credentials from: the `.creds`
/// file under [`CREDENTIALS_KEY`], annotated with the issuer's fingerprint.
pub fn nats_credentials_secret(
    tenant: &CarErpTenant,
    config: &OperatorConfig,
    creds: &str,
    fingerprint: &str,
) -> Secret {
    let ctx = Ctx::new(tenant, config);
    let mut metadata = ctx.meta(CREDENTIALS_SECRET, ctx.tenant_labels());
    metadata.annotations = Some(BTreeMap::from([(
        crate::nats_auth::ISSUER_ANNOTATION.to_string(),
        fingerprint.to_string(),
    )]));
    Secret {
        metadata,
        string_data: Some(BTreeMap::from([(
            CREDENTIALS_KEY.to_string(),
            creds.to_string(),
        )])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// The Secret of the tenant's signing key; see [`SIGNING_KEY_SECRET`].
pub fn signing_key_secret(
    tenant: &CarErpTenant,
    config: &OperatorConfig,
    signing_key: &str,
    public_keys: &str,
) -> Secret {
    let ctx = Ctx::new(tenant, config);
    Secret {
        metadata: ctx.meta(SIGNING_KEY_SECRET, ctx.service_labels(Svc::Identity)),
        string_data: Some(BTreeMap::from([
            (SIGNING_KEY.to_string(), signing_key.to_string()),
            (PUBLIC_KEYS.to_string(), public_keys.to_string()),
        ])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// The Secret of the first owner's sign-in: `email` and a one-time `password`.
pub fn owner_secret(tenant: &CarErpTenant, config: &OperatorConfig, password: &str) -> Secret {
    let ctx = Ctx::new(tenant, config);
    Secret {
        metadata: ctx.meta(
            &owner_secret_name(tenant),
            ctx.service_labels(Svc::Identity),
        ),
        string_data: Some(BTreeMap::from([
            ("email".to_string(), owner_email(tenant)),
            ("password".to_string(), password.to_string()),
        ])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

struct Ctx<'a> {
    tenant: &'a CarErpTenant,
    config: &'a OperatorConfig,
    name: &'a str,
    namespace: String,
    owner: Option<OwnerReference>,
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn selector(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels(pairs)),
        ..LabelSelector::default()
    }
}

fn port(number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(number)),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

/// A pod-template annotation that changes when `data` does, so the change rolls the pods.
/// SHA-256, because `data` can hold a password and annotations are readable by many.
fn content_hash(data: &str) -> String {
    Sha256::digest(data.as_bytes())
        .iter()
        .take(16)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

impl<'a> Ctx<'a> {
    fn new(tenant: &'a CarErpTenant, config: &'a OperatorConfig) -> Self {
        // Without a uid (a file given to `render`) there is no owner to point at; applying an
        // owner reference with a made-up uid would get the objects garbage-collected.
        let owner = tenant.controller_owner_ref(&());
        Self {
            tenant,
            config,
            name: tenant_name(tenant),
            namespace: namespace_name(tenant, config),
            owner,
        }
    }

    fn common_labels(&self, component: &str) -> BTreeMap<String, String> {
        labels(&[
            ("app.kubernetes.io/part-of", "carerp"),
            ("app.kubernetes.io/managed-by", "carerp-operator"),
            ("app.kubernetes.io/instance", self.name),
            ("app.kubernetes.io/component", component),
            (
                "app.kubernetes.io/version",
                version(self.tenant, self.config),
            ),
            ("carerp.io/tenant", self.name),
        ])
    }

    fn tenant_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.common_labels("tenant");
        l.insert("app.kubernetes.io/name".into(), "carerp".into());
        l
    }

    fn service_labels(&self, service: Svc) -> BTreeMap<String, String> {
        let mut l = self.common_labels(service.name());
        l.insert(
            "app.kubernetes.io/name".into(),
            format!("carerp-{}", service.name()),
        );
        l
    }

    fn pod_selector(&self, service: Svc) -> LabelSelector {
        selector(&[
            ("app.kubernetes.io/component", service.name()),
            ("carerp.io/tenant", self.name),
        ])
    }

    fn meta(&self, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            owner_references: self.owner.clone().map(|o| vec![o]),
            ..ObjectMeta::default()
        }
    }

    fn namespace(&self) -> Namespace {
        let mut l = self.tenant_labels();
        for mode in ["enforce", "audit", "warn"] {
            l.insert(
                format!("pod-security.kubernetes.io/{mode}"),
                "restricted".into(),
            );
        }
        let mut metadata = self.meta(&self.namespace, l);
        metadata.namespace = None;
        Namespace {
            metadata,
            ..Namespace::default()
        }
    }

    fn settings_configmap(&self) -> ConfigMap {
        ConfigMap {
            metadata: self.meta(SETTINGS_CONFIGMAP, self.tenant_labels()),
            data: Some(settings_env(self.tenant)),
            ..ConfigMap::default()
        }
    }

    fn token_keys_configmap(&self, public_keys: &str) -> ConfigMap {
        ConfigMap {
            metadata: self.meta(TOKEN_KEYS_CONFIGMAP, self.tenant_labels()),
            data: Some(BTreeMap::from([(
                PUBLIC_KEYS.to_string(),
                public_keys.to_string(),
            )])),
            ..ConfigMap::default()
        }
    }

    fn collector_configmap(&self) -> ConfigMap {
        let endpoint = otlp_endpoint(self.tenant, self.config).unwrap_or_default();
        let insecure = endpoint.starts_with("http://");
        let config = format!(
            "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: 100
  batch: {{}}
exporters:
  otlp:
    endpoint: {endpoint}
    tls:
      insecure: {insecure}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [otlp]
"
        );
        ConfigMap {
            metadata: self.meta(COLLECTOR_CONFIGMAP, self.tenant_labels()),
            data: Some(BTreeMap::from([("config.yaml".to_string(), config)])),
            ..ConfigMap::default()
        }
    }

    fn service_account(&self, service: Svc) -> ServiceAccount {
        ServiceAccount {
            metadata: self.meta(
                &format!("carerp-{}", service.name()),
                self.service_labels(service),
            ),
            // The services never call the Kubernetes API.
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        }
    }

    fn main_port(service: Svc) -> (&'static str, i32) {
        if service.has_database() {
            ("grpc", GRPC_PORT)
        } else {
            ("http", HTTP_PORT)
        }
    }

    fn service(&self, service: Svc) -> Service {
        let (port_name, port_number) = Self::main_port(service);
        let ports = [(port_name, port_number), ("admin", ADMIN_PORT)]
            .into_iter()
            .map(|(name, number)| ServicePort {
                name: Some(name.into()),
                port: number,
                target_port: Some(IntOrString::String(name.into())),
                protocol: Some("TCP".into()),
                app_protocol: (name == "grpc").then(|| "kubernetes.io/h2c".to_string()),
                ..ServicePort::default()
            })
            .collect();
        Service {
            metadata: self.meta(service.name(), self.service_labels(service)),
            spec: Some(ServiceSpec {
                selector: self.pod_selector(service).match_labels,
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn resources(&self, service: Svc) -> ResourceRequirements {
        if let Some(resources) = self
            .tenant
            .spec
            .services
            .get(service)
            .and_then(|o| o.resources.clone())
        {
            return resources;
        }
        let size = plan_size(self.tenant.spec.plan);
        ResourceRequirements {
            requests: Some(quantities(&[
                ("cpu", size.cpu_request),
                ("memory", size.memory_request),
            ])),
            limits: Some(quantities(&[("memory", size.memory_limit)])),
            ..ResourceRequirements::default()
        }
    }

    fn env(&self, service: Svc) -> Vec<EnvVar> {
        let plain = |name: &str, value: String| EnvVar {
            name: name.into(),
            value: Some(value),
            ..EnvVar::default()
        };
        let from = |name: &str, source: EnvVarSource| EnvVar {
            name: name.into(),
            value_from: Some(source),
            ..EnvVar::default()
        };
        let secret = |secret: String, key: &str| EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret,
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        };
        let mut env = vec![
            plain("CARERP_TENANT", self.name.to_string()),
            from(
                "CARERP_TOKEN_PUBLIC_KEYS",
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: TOKEN_KEYS_CONFIGMAP.into(),
                        key: PUBLIC_KEYS.into(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                },
            ),
        ];
        // Only identity signs: only its pods get the private key and the owner's password.
        if service == Svc::Identity {
            env.push(from(
                "CARERP_TOKEN_SIGNING_KEY",
                secret(SIGNING_KEY_SECRET.into(), SIGNING_KEY),
            ));
            env.push(plain("CARERP_OWNER_EMAIL", owner_email(self.tenant)));
            if let Some(name) = self
                .tenant
                .spec
                .owner
                .as_ref()
                .and_then(|o| o.display_name.clone())
            {
                env.push(plain("CARERP_OWNER_NAME", name));
            }
            env.push(from(
                "CARERP_OWNER_PASSWORD",
                secret(owner_secret_name(self.tenant), "password"),
            ));
            env.push(plain("CARERP_OWNER_PASSWORD_TEMPORARY", "true".into()));
        }
        if service.has_database() {
            env.push(EnvVar {
                name: "DATABASE_URL".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret_name(service),
                        key: "DATABASE_URL".into(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            });
            if self.config.database_pooler.is_some() {
                env.push(EnvVar {
                    name: "DATABASE_MIGRATION_URL".into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: secret_name(service),
                            key: "DATABASE_MIGRATION_URL".into(),
                            optional: Some(false),
                        }),
                        ..EnvVarSource::default()
                    }),
                    ..EnvVar::default()
                });
            }
            env.push(plain("GRPC_ADDR", format!("0.0.0.0:{GRPC_PORT}")));
            env.push(plain(
                "DATABASE_MAX_CONNECTIONS",
                plan_size(self.tenant.spec.plan).db_connections.to_string(),
            ));
        } else {
            env.push(plain("HTTP_ADDR", format!("0.0.0.0:{HTTP_PORT}")));
        }
        // Behind the Ingress every request comes from the ingress controller's pods (the only
        // peers the NetworkPolicy lets in): the BFF keys its rate limit on the client address
        // the controller forwards, or every user would share one bucket.
        if service == Svc::Bff && self.tenant.spec.ingress.is_some() {
            env.push(plain("BFF_TRUST_FORWARDED_FOR", "true".into()));
        }
        // Emailed estimates: the mail server and sender stay in the garage's Secret (the pod
        // reads them from there); the links they carry start at the public entry.
        if let (Svc::Bff, Some(email)) = (service, &self.tenant.spec.email) {
            let name = &email.smtp_secret_ref.name;
            env.push(from("CARERP_SMTP_URL", secret(name.clone(), "url")));
            env.push(from("CARERP_SMTP_FROM", secret(name.clone(), "from")));
            if let Some(ingress) = &self.tenant.spec.ingress {
                let scheme = if ingress.tls_secret_name.is_some() {
                    "https"
                } else {
                    "http"
                };
                env.push(plain(
                    "CARERP_PUBLIC_URL",
                    format!("{scheme}://{}", ingress.host),
                ));
            }
        }
        env.push(plain("ADMIN_ADDR", format!("0.0.0.0:{ADMIN_PORT}")));
        env.push(plain("NATS_URL", self.config.nats_url.clone()));
        if self.config.nats_credentials {
            env.push(plain(
                CREDENTIALS_ENV,
                format!("{CREDENTIALS_DIR}/{CREDENTIALS_KEY}"),
            ));
        }
        env.push(plain("LOG_FORMAT", "json".into()));
        for callee in service.calls() {
            if let Some(var) = callee.grpc_url_variable() {
                env.push(plain(var, format!("http://{}:{GRPC_PORT}", callee.name())));
            }
        }
        let otlp = if sidecar_enabled(self.tenant, self.config) {
            Some(SIDECAR_OTLP)
        } else {
            otlp_endpoint(self.tenant, self.config)
        };
        if let Some(otlp) = otlp {
            env.push(plain("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.into()));
            env.push(plain(
                "OTEL_TRACES_SAMPLER",
                "parentbased_traceidratio".into(),
            ));
            env.push(plain(
                "OTEL_TRACES_SAMPLER_ARG",
                self.tenant.spec.telemetry.sampling_ratio.to_string(),
            ));
        }
        env
    }

    fn container_security() -> SecurityContext {
        SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }
    }

    fn probe(path: &str, period: i32, failures: i32) -> Probe {
        Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.into()),
                port: IntOrString::String("admin".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(period),
            failure_threshold: Some(failures),
            ..Probe::default()
        }
    }

    fn collector_sidecar(&self) -> Container {
        Container {
            name: "otel-collector".into(),
            image: Some(self.config.collector_image.clone()),
            args: Some(vec!["--config=/etc/otelcol/config.yaml".into()]),
            // A native sidecar: an init container that keeps running for the pod's life,
            // started before and stopped after the service, so no span is lost at shutdown.
            restart_policy: Some("Always".into()),
            resources: Some(ResourceRequirements {
                requests: Some(quantities(&[("cpu", "20m"), ("memory", "64Mi")])),
                limits: Some(quantities(&[("memory", "128Mi")])),
                ..ResourceRequirements::default()
            }),
            security_context: Some(Self::container_security()),
            volume_mounts: Some(vec![VolumeMount {
                name: "otel-collector-config".into(),
                mount_path: "/etc/otelcol".into(),
                read_only: Some(true),
                ..VolumeMount::default()
            }]),
            ..Container::default()
        }
    }

    fn deployment(
        &self,
        service: Svc,
        secret_hash: Option<&String>,
        keys_hash: Option<&String>,
        nats_credentials_hash: Option<&str>,
    ) -> Deployment {
        let labels = self.service_labels(service);
        let (port_name, port_number) = Self::main_port(service);
        let sidecar = sidecar_enabled(self.tenant, self.config);
        let mut volumes = vec![Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("64Mi".into())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        }];
        if sidecar {
            volumes.push(Volume {
                name: "otel-collector-config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: COLLECTOR_CONFIGMAP.into(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            });
        }
        let mut mounts = vec![VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        }];
        if self.config.nats_credentials {
            volumes.push(Volume {
                name: "nats-credentials".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(CREDENTIALS_SECRET.into()),
                    items: Some(vec![KeyToPath {
                        key: CREDENTIALS_KEY.into(),
                        path: CREDENTIALS_KEY.into(),
                        mode: None,
                    }]),
                    // Read by the service's group (fsGroup), by nobody else.
                    default_mode: Some(0o440),
                    optional: Some(false),
                }),
                ..Volume::default()
            });
            mounts.push(VolumeMount {
                name: "nats-credentials".into(),
                mount_path: CREDENTIALS_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
        let container = Container {
            name: service.name().into(),
            image: Some(image(self.tenant, self.config, service)),
            env: Some(self.env(service)),
            env_from: Some(vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: SETTINGS_CONFIGMAP.into(),
                    optional: Some(false),
                }),
                ..EnvFromSource::default()
            }]),
            ports: Some(vec![
                ContainerPort {
                    name: Some(port_name.into()),
                    container_port: port_number,
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                },
                ContainerPort {
                    name: Some("admin".into()),
                    container_port: ADMIN_PORT,
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                },
            ]),
            readiness_probe: Some(Self::probe("/readyz", 5, 3)),
            liveness_probe: Some(Self::probe("/healthz", 10, 3)),
            startup_probe: Some(Self::probe("/healthz", 2, 30)),
            resources: Some(self.resources(service)),
            security_context: Some(Self::container_security()),
            volume_mounts: Some(mounts),
            ..Container::default()
        };
        let mut annotations = BTreeMap::from([(
            "carerp.io/settings-hash".to_string(),
            content_hash(&format!("{:?}", settings_env(self.tenant))),
        )]);
        if let Some(hash) = secret_hash.filter(|_| service.has_database()) {
            annotations.insert(SECRET_HASH_ANNOTATION.to_string(), hash.clone());
        }
        if let Some(hash) = keys_hash {
            annotations.insert(TOKEN_KEYS_HASH_ANNOTATION.to_string(), hash.clone());
        }
        if let Some(hash) = nats_credentials_hash.filter(|_| self.config.nats_credentials) {
            annotations.insert(
                NATS_CREDENTIALS_HASH_ANNOTATION.to_string(),
                hash.to_string(),
            );
        }
        Deployment {
            metadata: self.meta(service.name(), labels.clone()),
            spec: Some(DeploymentSpec {
                replicas: Some(replicas(self.tenant, service)),
                selector: self.pod_selector(service),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    ..DeploymentStrategy::default()
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        annotations: Some(annotations),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        service_account_name: Some(format!("carerp-{}", service.name())),
                        automount_service_account_token: Some(false),
                        security_context: Some(PodSecurityContext {
                            run_as_non_root: Some(true),
                            run_as_user: Some(RUN_AS),
                            run_as_group: Some(RUN_AS),
                            fs_group: Some(RUN_AS),
                            seccomp_profile: Some(SeccompProfile {
                                type_: "RuntimeDefault".into(),
                                ..SeccompProfile::default()
                            }),
                            ..PodSecurityContext::default()
                        }),
                        init_containers: sidecar.then(|| vec![self.collector_sidecar()]),
                        containers: vec![container],
                        volumes: Some(volumes),
                        termination_grace_period_seconds: Some(30),
                        ..PodSpec::default()
                    }),
                },
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }
    }

    fn pdb(&self, service: Svc) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: self.meta(service.name(), self.service_labels(service)),
            spec: Some(PodDisruptionBudgetSpec {
                min_available: Some(IntOrString::Int(1)),
                selector: Some(self.pod_selector(service)),
                ..PodDisruptionBudgetSpec::default()
            }),
            ..PodDisruptionBudget::default()
        }
    }

    fn policy(&self, name: &str, spec: NetworkPolicySpec) -> NetworkPolicy {
        NetworkPolicy {
            metadata: self.meta(name, self.tenant_labels()),
            spec: Some(spec),
        }
    }

    fn network_policies(&self) -> Vec<NetworkPolicy> {
        let mut policies = vec![self.policy(
            "default-deny",
            NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ..NetworkPolicySpec::default()
            },
        )];
        // Each domain service accepts gRPC only from the services that call it.
        for service in SERVICES.into_iter().filter(|s| s.has_database()) {
            let callers: Vec<String> = SERVICES
                .into_iter()
                .filter(|caller| caller.calls().contains(&service))
                .map(|caller| caller.name().to_string())
                .collect();
            policies.push(self.policy(
                &format!("allow-grpc-to-{}", service.name()),
                NetworkPolicySpec {
                    pod_selector: Some(self.pod_selector(service)),
                    policy_types: Some(vec!["Ingress".into()]),
                    ingress: Some(vec![NetworkPolicyIngressRule {
                        from: Some(vec![NetworkPolicyPeer {
                            pod_selector: Some(LabelSelector {
                                match_expressions: Some(vec![LabelSelectorRequirement {
                                    key: "app.kubernetes.io/component".into(),
                                    operator: "In".into(),
                                    values: Some(callers),
                                }]),
                                ..LabelSelector::default()
                            }),
                            ..NetworkPolicyPeer::default()
                        }]),
                        ports: Some(vec![port(GRPC_PORT)]),
                    }]),
                    ..NetworkPolicySpec::default()
                },
            ));
        }
        policies.push(self.policy(
            "allow-ingress-controller-to-bff",
            NetworkPolicySpec {
                pod_selector: Some(self.pod_selector(Svc::Bff)),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(selector(&[(
                            "kubernetes.io/metadata.name",
                            &self.config.ingress_controller_namespace,
                        )])),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: Some(vec![port(HTTP_PORT)]),
                }]),
                ..NetworkPolicySpec::default()
            },
        ));
        // Prometheus scrapes every pod's `/metrics` on the admin port, and nothing else there.
        policies.push(self.policy(
            "allow-monitoring-to-admin",
            NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(selector(&[(
                            "kubernetes.io/metadata.name",
                            &self.config.monitoring_namespace,
                        )])),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: Some(vec![port(ADMIN_PORT)]),
                }]),
                ..NetworkPolicySpec::default()
            },
        ));
        let dns = |protocol: &str| NetworkPolicyPort {
            port: Some(IntOrString::Int(53)),
            protocol: Some(protocol.into()),
            ..NetworkPolicyPort::default()
        };
        let mut outside_ports = vec![port(i32::from(self.config.database_port))];
        if let Some(pooler) = &self.config.database_pooler {
            outside_ports.push(port(i32::from(pooler.port)));
        }
        if otlp_endpoint(self.tenant, self.config).is_some() {
            outside_ports.push(port(4317));
        }
        // Only the BFF talks to the garage's mail server, and only on the ports given.
        if let Some(email) = &self.tenant.spec.email {
            policies.push(self.policy(
                "allow-bff-smtp",
                NetworkPolicySpec {
                    pod_selector: Some(self.pod_selector(Svc::Bff)),
                    policy_types: Some(vec!["Egress".into()]),
                    egress: Some(vec![NetworkPolicyEgressRule {
                        to: None,
                        ports: Some(email.ports.iter().map(|&p| port(i32::from(p))).collect()),
                    }]),
                    ..NetworkPolicySpec::default()
                },
            ));
        }
        policies.push(self.policy(
            "allow-egress",
            NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                policy_types: Some(vec!["Egress".into()]),
                egress: Some(vec![
                    NetworkPolicyEgressRule {
                        to: Some(vec![NetworkPolicyPeer {
                            namespace_selector: Some(LabelSelector::default()),
                            pod_selector: Some(selector(&[("k8s-app", "kube-dns")])),
                            ..NetworkPolicyPeer::default()
                        }]),
                        ports: Some(vec![dns("UDP"), dns("TCP")]),
                    },
                    NetworkPolicyEgressRule {
                        to: Some(vec![NetworkPolicyPeer {
                            pod_selector: Some(LabelSelector::default()),
                            ..NetworkPolicyPeer::default()
                        }]),
                        ports: Some(vec![port(GRPC_PORT)]),
                    },
                    // NATS: the broker's pods (or address range) alone, on its port.
                    NetworkPolicyEgressRule {
                        to: Some(vec![self.nats_peer()]),
                        ports: Some(vec![port(i32::from(self.config.nats_port))]),
                    },
                    // Database and collector live outside the namespace, possibly outside
                    // the cluster: allowed by port.
                    NetworkPolicyEgressRule {
                        to: None,
                        ports: Some(outside_ports),
                    },
                ]),
                ..NetworkPolicySpec::default()
            },
        ));
        policies
    }

    /// The NATS broker as a NetworkPolicy peer.
    fn nats_peer(&self) -> NetworkPolicyPeer {
        match &self.config.nats_broker {
            NatsBroker::Pods { namespace, labels } => NetworkPolicyPeer {
                namespace_selector: Some(selector(&[("kubernetes.io/metadata.name", namespace)])),
                pod_selector: Some(LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..LabelSelector::default()
                }),
                ..NetworkPolicyPeer::default()
            },
            NatsBroker::Cidr(cidr) => NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: cidr.clone(),
                    except: None,
                }),
                ..NetworkPolicyPeer::default()
            },
        }
    }

    fn quota(&self) -> ResourceQuota {
        let size = plan_size(self.tenant.spec.plan);
        ResourceQuota {
            metadata: self.meta("carerp-quota", self.tenant_labels()),
            spec: Some(ResourceQuotaSpec {
                hard: Some(quantities(&[
                    ("requests.cpu", size.quota_cpu),
                    ("requests.memory", size.quota_memory),
                    ("pods", size.quota_pods),
                ])),
                ..ResourceQuotaSpec::default()
            }),
            ..ResourceQuota::default()
        }
    }

    fn ingress(&self) -> Option<Ingress> {
        let spec = self.tenant.spec.ingress.as_ref()?;
        Some(Ingress {
            metadata: self.meta("carerp", self.service_labels(Svc::Bff)),
            spec: Some(IngressSpec {
                ingress_class_name: spec.class_name.clone(),
                tls: spec.tls_secret_name.as_ref().map(|secret| {
                    vec![IngressTLS {
                        hosts: Some(vec![spec.host.clone()]),
                        secret_name: Some(secret.clone()),
                    }]
                }),
                rules: Some(vec![IngressRule {
                    host: Some(spec.host.clone()),
                    http: Some(HTTPIngressRuleValue {
                        paths: vec![HTTPIngressPath {
                            path: Some("/".into()),
                            path_type: "Prefix".into(),
                            backend: IngressBackend {
                                service: Some(IngressServiceBackend {
                                    name: "bff".into(),
                                    port: Some(ServiceBackendPort {
                                        name: Some("http".into()),
                                        ..ServiceBackendPort::default()
                                    }),
                                }),
                                ..IngressBackend::default()
                            },
                        }],
                    }),
                }]),
                ..IngressSpec::default()
            }),
            ..Ingress::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::CarErpTenantSpec;

    fn tenant(spec_yaml: &str) -> CarErpTenant {
        let yaml = format!(
            "apiVersion: carerp.io/v1alpha1\nkind: CarErpTenant\nmetadata:\n  name: t1\n  uid: 0193-test\nspec:\n  displayName: T1\n{spec_yaml}"
        );
        crate::validate::parse_tenant(&yaml).unwrap()
    }

    fn deployments(objects: &[Object]) -> Vec<&Deployment> {
        objects
            .iter()
            .filter_map(|o| match o {
                Object::Deployment(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn plan_sets_replicas_and_override_wins() {
        let t = tenant("  plan: Enterprise\n  services:\n    workorder:\n      replicas: 5\n");
        assert_eq!(replicas(&t, Svc::Customer), 3);
        assert_eq!(replicas(&t, Svc::Workorder), 5);
        let objects = desired(&t, &OperatorConfig::example(), &BTreeMap::new(), None);
        let wo = deployments(&objects)
            .into_iter()
            .find(|d| d.metadata.name.as_deref() == Some("workorder"))
            .unwrap();
        assert_eq!(wo.spec.as_ref().unwrap().replicas, Some(5));
    }

    #[test]
    fn the_plan_sizes_each_database_pool() {
        for (plan, connections) in [("Starter", "2"), ("Standard", "4"), ("Enterprise", "8")] {
            let t = tenant(&format!("  plan: {plan}\n"));
            let objects = desired(&t, &OperatorConfig::example(), &BTreeMap::new(), None);
            for service in ["customer", "workorder", "inventory", "billing", "identity"] {
                let env = env_of(&objects, service);
                assert_eq!(
                    env.get("DATABASE_MAX_CONNECTIONS").map(String::as_str),
                    Some(connections),
                    "{plan} {service}"
                );
            }
            assert!(!env_of(&objects, "bff").contains_key("DATABASE_MAX_CONNECTIONS"));
        }
    }

    #[test]
    fn suspend_scales_everything_to_zero_and_drops_pdbs() {
        let t = tenant("  suspend: true\n");
        let objects = desired(&t, &OperatorConfig::example(), &BTreeMap::new(), None);
        for d in deployments(&objects) {
            assert_eq!(d.spec.as_ref().unwrap().replicas, Some(0));
        }
        assert!(
            !objects
                .iter()
                .any(|o| matches!(o, Object::PodDisruptionBudget(_)))
        );
    }

    #[test]
    fn every_object_is_owned_and_labelled() {
        let t = tenant("  ingress:\n    host: t1.example.com\n");
        for object in desired(&t, &OperatorConfig::example(), &BTreeMap::new(), None) {
            let value = serde_json::to_value(&object).unwrap();
            let meta = &value["metadata"];
            assert_eq!(
                meta["labels"]["carerp.io/tenant"],
                "t1",
                "{}",
                object.describe()
            );
            assert_eq!(
                meta["labels"]["app.kubernetes.io/managed-by"],
                "carerp-operator",
                "{}",
                object.describe()
            );
            for pair in managed_selector(&t).split(',') {
                let (key, value) = pair.split_once('=').unwrap();
                assert_eq!(meta["labels"][key], value, "{}", object.describe());
            }
            assert_eq!(meta["ownerReferences"][0]["uid"], "0193-test");
            assert_eq!(meta["ownerReferences"][0]["kind"], "CarErpTenant");
            assert_eq!(meta["ownerReferences"][0]["controller"], true);
        }
    }

    #[test]
    fn without_uid_no_owner_reference_is_invented() {
        let t = CarErpTenant::new(
            "t2",
            CarErpTenantSpec {
                display_name: "T2".into(),
                plan: Plan::Starter,
                version: None,
                suspend: false,
                settings: Default::default(),
                services: Default::default(),
                database: Default::default(),
                messaging: Default::default(),
                telemetry: Default::default(),
                ingress: None,
                owner: None,
                email: None,
            },
        );
        for object in desired(&t, &OperatorConfig::example(), &BTreeMap::new(), None) {
            let value = serde_json::to_value(&object).unwrap();
            assert!(value["metadata"].get("ownerReferences").is_none());
        }
    }

    #[test]
    fn pods_are_restricted_and_probed_on_the_admin_port() {
        let t = tenant("");
        let objects = desired(&t, &OperatorConfig::example(), &BTreeMap::new(), None);
        for d in deployments(&objects) {
            let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            assert_eq!(
                pod.security_context.as_ref().unwrap().run_as_non_root,
                Some(true)
            );
            let c = &pod.containers[0];
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            let probe = c
                .readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap();
            assert_eq!(probe.port, IntOrString::String("admin".into()));
            assert_eq!(probe.path.as_deref(), Some("/readyz"));
        }
    }

    #[test]
    fn sidecar_only_when_asked_and_an_endpoint_exists() {
        let with =
            tenant("  telemetry:\n    otlpEndpoint: http://otel:4317\n    collector: Sidecar\n");
        let objects = desired(&with, &OperatorConfig::example(), &BTreeMap::new(), None);
        let d = deployments(&objects)[0];
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let init = &pod.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.restart_policy.as_deref(), Some("Always"));
        let env = pod.containers[0].env.as_ref().unwrap();
        assert!(
            env.iter().any(|e| e.name == "OTEL_EXPORTER_OTLP_ENDPOINT"
                && e.value.as_deref() == Some(SIDECAR_OTLP))
        );
        assert!(
            objects
                .iter()
                .any(|o| o.describe() == "ConfigMap/otel-collector")
        );

        let without = tenant("");
        let objects = desired(&without, &OperatorConfig::example(), &BTreeMap::new(), None);
        assert!(
            !objects
                .iter()
                .any(|o| o.describe() == "ConfigMap/otel-collector")
        );
    }

    #[test]
    fn ingress_only_with_a_host() {
        let none = desired(
            &tenant(""),
            &OperatorConfig::example(),
            &BTreeMap::new(),
            None,
        );
        assert!(!none.iter().any(|o| matches!(o, Object::Ingress(_))));
        let t = tenant("  ingress:\n    host: t1.example.com\n    tlsSecretName: t1-tls\n");
        assert_eq!(
            endpoint(&t, &OperatorConfig::example()),
            "https://t1.example.com"
        );
        let some = desired(&t, &OperatorConfig::example(), &BTreeMap::new(), None);
        assert!(some.iter().any(|o| matches!(o, Object::Ingress(_))));
    }

    #[test]
    fn resources_override_replaces_the_plans() {
        let t = tenant(
            "  services:\n    bff:\n      resources:\n        requests:\n          cpu: 1\n",
        );
        let objects = desired(&t, &OperatorConfig::example(), &BTreeMap::new(), None);
        let bff = deployments(&objects)
            .into_iter()
            .find(|d| d.metadata.name.as_deref() == Some("bff"))
            .unwrap();
        let res = bff
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .resources
            .clone()
            .unwrap();
        assert_eq!(res.requests.unwrap()["cpu"], Quantity("1".into()));
        assert!(res.limits.is_none());
    }

    fn pod_annotations(objects: &[Object], name: &str) -> BTreeMap<String, String> {
        deployments(objects)
            .into_iter()
            .find(|d| d.metadata.name.as_deref() == Some(name))
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .clone()
            .unwrap()
    }

    #[test]
    fn a_new_database_password_changes_the_pod_template() {
        let t = tenant("");
        let config = OperatorConfig::example();
        let url =
            |password: &str| format!("postgres://t_t1_customer:{password}@db:5432/t_t1_customer");
        let before = BTreeMap::from([(Svc::Customer, secret_hash(&url("old")))]);
        let after = BTreeMap::from([(Svc::Customer, secret_hash(&url("new")))]);

        let old = pod_annotations(&desired(&t, &config, &before, None), "customer");
        let new = pod_annotations(&desired(&t, &config, &after, None), "customer");
        assert_eq!(old[SECRET_HASH_ANNOTATION], secret_hash(&url("old")));
        assert_ne!(
            old[SECRET_HASH_ANNOTATION], new[SECRET_HASH_ANNOTATION],
            "a reset password rolls the pods"
        );
        assert_eq!(
            pod_annotations(&desired(&t, &config, &before, None), "customer"),
            old,
            "the same Secret leaves the pods alone"
        );

        // Nothing known (render), or no database (the BFF): no annotation.
        let none = desired(&t, &config, &BTreeMap::new(), None);
        assert!(!pod_annotations(&none, "customer").contains_key(SECRET_HASH_ANNOTATION));
        let bff_hash = BTreeMap::from([(Svc::Bff, "0".to_string())]);
        assert!(
            !pod_annotations(&desired(&t, &config, &bff_hash, None), "bff")
                .contains_key(SECRET_HASH_ANNOTATION)
        );
    }

    #[test]
    fn with_a_pooler_services_connect_through_it_and_migrate_on_the_server() {
        let t = tenant("");
        let mut config = OperatorConfig::example();
        let server = "postgres://t_t1_customer:pw@postgres.carerp-system.svc:5432/t_t1_customer";
        assert_eq!(
            database_secret_data(&config, server),
            BTreeMap::from([("DATABASE_URL".to_string(), server.to_string())])
        );
        let direct_hash = database_secret_hash(&config, server);
        config.database_pooler = Some("pgbouncer.carerp-system.svc:6432".parse().unwrap());
        assert_eq!(
            database_secret_data(&config, server),
            BTreeMap::from([
                (
                    "DATABASE_URL".to_string(),
                    "postgres://t_t1_customer:pw@pgbouncer.carerp-system.svc:6432/t_t1_customer"
                        .to_string()
                ),
                ("DATABASE_MIGRATION_URL".to_string(), server.to_string()),
            ])
        );
        assert_ne!(database_secret_hash(&config, server), direct_hash);
        let objects = desired(&t, &config, &BTreeMap::new(), None);
        let env = env_vars(&objects, "customer");
        let migration = env
            .iter()
            .find(|e| e.name == "DATABASE_MIGRATION_URL")
            .and_then(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
            .unwrap();
        assert_eq!(migration.key, "DATABASE_MIGRATION_URL");
        let egress = objects
            .iter()
            .find_map(|o| match o {
                Object::NetworkPolicy(p) if p.metadata.name.as_deref() == Some("allow-egress") => {
                    Some(p)
                }
                _ => None,
            })
            .unwrap();
        let yaml = serde_saphyr::to_string(egress).unwrap();
        assert!(yaml.contains("6432"), "{yaml}");
        assert!(
            "pgbouncer:0"
                .parse::<crate::config::DatabasePooler>()
                .is_err()
                && "pgbouncer"
                    .parse::<crate::config::DatabasePooler>()
                    .is_err()
        );
    }

    fn allow_egress(objects: &[Object]) -> &NetworkPolicy {
        objects
            .iter()
            .find_map(|o| match o {
                Object::NetworkPolicy(p) if p.metadata.name.as_deref() == Some("allow-egress") => {
                    Some(p)
                }
                _ => None,
            })
            .unwrap()
    }

    /// The NATS port goes to the broker alone: its pods by label in its namespace, or its
    /// address range; never to any address.
    #[test]
    fn nats_egress_names_the_broker() {
        let t = tenant("");
        let mut config = OperatorConfig::example();
        config.nats_port = 4333;
        let rules_to_nats = |config: &OperatorConfig| {
            let objects = desired(&t, config, &BTreeMap::new(), None);
            let policy = allow_egress(&objects).clone();
            policy
                .spec
                .unwrap()
                .egress
                .unwrap()
                .into_iter()
                .filter(|rule| {
                    rule.ports
                        .iter()
                        .flatten()
                        .any(|p| p.port == Some(IntOrString::Int(4333)))
                })
                .collect::<Vec<_>>()
        };
        let rules = rules_to_nats(&config);
        assert_eq!(rules.len(), 1, "{rules:?}");
        let peer = &rules[0].to.as_ref().unwrap()[0];
        assert_eq!(
            peer.namespace_selector.as_ref().unwrap().match_labels,
            Some(labels(&[("kubernetes.io/metadata.name", "carerp-system")]))
        );
        assert_eq!(
            peer.pod_selector.as_ref().unwrap().match_labels,
            Some(labels(&[("app.kubernetes.io/name", "nats")]))
        );
        assert_eq!(rules[0].ports.as_ref().unwrap().len(), 1);

        config.nats_broker = NatsBroker::Cidr("10.0.12.0/28".into());
        let rules = rules_to_nats(&config);
        let peer = &rules[0].to.as_ref().unwrap()[0];
        assert_eq!(peer.ip_block.as_ref().unwrap().cidr, "10.0.12.0/28");
        assert!(peer.pod_selector.is_none() && peer.namespace_selector.is_none());
    }

    /// With credentials on, every service mounts the tenant's credentials Secret and is told
    /// where; the hash of the credentials in force is on the pod template. Off, nothing.
    #[test]
    fn with_nats_credentials_every_pod_mounts_the_tenants_creds() {
        let t = tenant("");
        let mut config = OperatorConfig::example();
        let plain = desired_with_nats(&t, &config, &BTreeMap::new(), None, Some("h1"));
        for service in SERVICES {
            assert!(!env_of(&plain, service.name()).contains_key(CREDENTIALS_ENV));
        }
        assert!(!pod_annotations(&plain, "billing").contains_key(NATS_CREDENTIALS_HASH_ANNOTATION));

        config.nats_credentials = true;
        let objects = desired_with_nats(&t, &config, &BTreeMap::new(), None, Some("h1"));
        for service in SERVICES {
            assert_eq!(
                env_of(&objects, service.name())[CREDENTIALS_ENV],
                "/var/run/secrets/carerp/nats/nats.creds"
            );
            let deployment = deployments(&objects)
                .into_iter()
                .find(|d| d.metadata.name.as_deref() == Some(service.name()))
                .unwrap();
            let pod = deployment
                .spec
                .as_ref()
                .unwrap()
                .template
                .spec
                .as_ref()
                .unwrap();
            let volume = pod
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == "nats-credentials")
                .unwrap();
            let secret = volume.secret.as_ref().unwrap();
            assert_eq!(secret.secret_name.as_deref(), Some(CREDENTIALS_SECRET));
            assert_eq!(secret.default_mode, Some(0o440));
            let mount = pod.containers[0]
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| m.name == "nats-credentials")
                .unwrap();
            assert_eq!(mount.read_only, Some(true));
            assert_eq!(
                pod_annotations(&objects, service.name())[NATS_CREDENTIALS_HASH_ANNOTATION],
                "h1"
            );
        }
        let secret = nats_credentials_secret(&t, &config, "creds", "fp");
        assert_eq!(secret.metadata.name.as_deref(), Some(CREDENTIALS_SECRET));
        assert_eq!(secret.metadata.namespace.as_deref(), Some("carerp-t1"));
        assert_eq!(
            secret.metadata.annotations.unwrap()[crate::nats_auth::ISSUER_ANNOTATION],
            "fp"
        );
        assert_ne!(nats_credentials_hash("a"), nats_credentials_hash("b"));
    }

    /// The environment of deployment `name`'s container, references included.
    fn env_vars(objects: &[Object], name: &str) -> Vec<EnvVar> {
        deployments(objects)
            .into_iter()
            .find(|d| d.metadata.name.as_deref() == Some(name))
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .env
            .clone()
            .unwrap_or_default()
    }

    /// The plain values of deployment `name`'s environment.
    fn env_of(objects: &[Object], name: &str) -> BTreeMap<String, String> {
        env_vars(objects, name)
            .into_iter()
            .filter_map(|e| Some((e.name, e.value?)))
            .collect()
    }

    #[test]
    fn the_bff_reads_the_smtp_secret_by_reference_and_may_reach_its_ports() {
        let config = OperatorConfig::example();
        let objects = desired(
            &tenant(
                "  ingress:\n    host: t1.example.com\n    tlsSecretName: t1-tls\n  email:\n    smtpSecretRef:\n      name: t1-smtp\n",
            ),
            &config,
            &BTreeMap::new(),
            None,
        );
        let env = env_vars(&objects, "bff");
        for (name, key) in [("CARERP_SMTP_URL", "url"), ("CARERP_SMTP_FROM", "from")] {
            let var = env.iter().find(|e| e.name == name).unwrap();
            assert_eq!(
                var.value, None,
                "{name} is never copied into the Deployment"
            );
            let selector = var
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap();
            assert_eq!(
                (selector.name.as_str(), selector.key.as_str()),
                ("t1-smtp", key)
            );
        }
        assert_eq!(
            env_of(&objects, "bff")
                .get("CARERP_PUBLIC_URL")
                .map(String::as_str),
            Some("https://t1.example.com")
        );
        // No other service gets the mail server.
        for other in ["customer", "workorder", "identity"] {
            assert!(!env_of(&objects, other).contains_key("CARERP_PUBLIC_URL"));
            let all = deployments(&objects)
                .into_iter()
                .find(|d| d.metadata.name.as_deref() == Some(other))
                .unwrap();
            let yaml = serde_saphyr::to_string(all).unwrap();
            assert!(!yaml.contains("t1-smtp"), "{other}: {yaml}");
        }
        let smtp = objects
            .iter()
            .find_map(|o| match o {
                Object::NetworkPolicy(p)
                    if p.metadata.name.as_deref() == Some("allow-bff-smtp") =>
                {
                    Some(p)
                }
                _ => None,
            })
            .expect("an egress rule to the mail server");
        let yaml = serde_saphyr::to_string(smtp).unwrap();
        assert!(yaml.contains("465") && yaml.contains("587"), "{yaml}");
        assert!(yaml.contains("bff"), "{yaml}");

        // Without email: no variables, no rule.
        let plain = desired(&tenant(""), &config, &BTreeMap::new(), None);
        assert!(!env_of(&plain, "bff").contains_key("CARERP_PUBLIC_URL"));
        let bff_yaml = serde_saphyr::to_string(
            deployments(&plain)
                .into_iter()
                .find(|d| d.metadata.name.as_deref() == Some("bff"))
                .unwrap(),
        )
        .unwrap();
        assert!(!bff_yaml.contains("CARERP_SMTP"), "{bff_yaml}");
        assert!(!plain.iter().any(|o| matches!(o, Object::NetworkPolicy(p)
            if p.metadata.name.as_deref() == Some("allow-bff-smtp"))));
    }

    #[test]
    fn bff_trusts_forwarded_for_only_behind_the_ingress() {
        let config = OperatorConfig::example();
        let behind = desired(
            &tenant("  ingress:\n    host: t1.example.com\n"),
            &config,
            &BTreeMap::new(),
            None,
        );
        assert_eq!(
            env_of(&behind, "bff")
                .get("BFF_TRUST_FORWARDED_FOR")
                .map(String::as_str),
            Some("true")
        );
        assert!(!env_of(&behind, "customer").contains_key("BFF_TRUST_FORWARDED_FOR"));

        let direct = desired(&tenant(""), &config, &BTreeMap::new(), None);
        assert!(!env_of(&direct, "bff").contains_key("BFF_TRUST_FORWARDED_FOR"));
    }

    /// The configured monitoring namespace, and only it, reaches every pod, on the admin port
    /// only; another namespace picks up the change.
    #[test]
    fn the_monitoring_namespace_may_scrape_every_admin_port() {
        let mut config = OperatorConfig::example();
        config.monitoring_namespace = "observability".into();
        let objects = desired(&tenant(""), &config, &BTreeMap::new(), None);
        let policy = objects
            .iter()
            .find_map(|o| match o {
                Object::NetworkPolicy(p)
                    if p.metadata.name.as_deref() == Some("allow-monitoring-to-admin") =>
                {
                    Some(p)
                }
                _ => None,
            })
            .expect("a policy for the scraper");
        let spec = policy.spec.as_ref().unwrap();
        assert_eq!(
            spec.pod_selector,
            Some(LabelSelector::default()),
            "every pod"
        );
        assert_eq!(
            spec.policy_types.as_deref(),
            Some(&["Ingress".to_string()][..])
        );
        let rules = spec.ingress.as_ref().unwrap();
        assert_eq!(rules.len(), 1);
        let from = rules[0].from.as_ref().unwrap();
        assert_eq!(from.len(), 1);
        assert_eq!(from[0].pod_selector, None);
        assert_eq!(
            from[0]
                .namespace_selector
                .as_ref()
                .and_then(|s| s.match_labels.clone()),
            Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                "observability".to_string()
            )]))
        );
        let ports: Vec<_> = rules[0]
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.port.clone(), p.protocol.clone()))
            .collect();
        assert_eq!(ports, [(Some(IntOrString::Int(9090)), Some("TCP".into()))]);
    }

    #[test]
    fn only_identity_gets_the_signing_key_and_every_service_the_public_keys() {
        let t = tenant("");
        let objects = desired(
            &t,
            &OperatorConfig::example(),
            &BTreeMap::new(),
            Some("k1:abc"),
        );
        for service in SERVICES {
            let deployment = deployments(&objects)
                .into_iter()
                .find(|d| d.metadata.name.as_deref() == Some(service.name()))
                .unwrap();
            let spec = deployment
                .spec
                .as_ref()
                .unwrap()
                .template
                .spec
                .as_ref()
                .unwrap();
            let env = spec.containers[0].env.as_ref().unwrap();
            let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
            assert!(names.contains(&"CARERP_TOKEN_PUBLIC_KEYS"), "{service:?}");
            assert_eq!(
                names.contains(&"CARERP_TOKEN_SIGNING_KEY"),
                service == Svc::Identity,
                "{service:?}"
            );
            assert_eq!(
                names.contains(&"CARERP_OWNER_PASSWORD"),
                service == Svc::Identity,
                "{service:?}"
            );
            // Keys are referenced, never inlined into the pod spec.
            assert!(env.iter().all(|e| e.value.as_deref() != Some("k1:abc")));
        }
        let keys = objects.iter().find_map(|o| match o {
            Object::ConfigMap(c) if c.metadata.name.as_deref() == Some(TOKEN_KEYS_CONFIGMAP) => {
                c.data.clone()
            }
            _ => None,
        });
        assert_eq!(keys.unwrap()[PUBLIC_KEYS], "k1:abc");
        let identity_env = env_of(&objects, "identity");
        assert_eq!(identity_env["CARERP_OWNER_EMAIL"], "owner@t1.local");
    }

    #[test]
    fn a_new_key_list_restarts_every_service() {
        let t = tenant("");
        let config = OperatorConfig::example();
        for service in SERVICES {
            let before = pod_annotations(
                &desired(&t, &config, &BTreeMap::new(), Some("k1:abc")),
                service.name(),
            );
            let after = pod_annotations(
                &desired(&t, &config, &BTreeMap::new(), Some("k2:def,k1:abc")),
                service.name(),
            );
            assert_ne!(
                before[TOKEN_KEYS_HASH_ANNOTATION], after[TOKEN_KEYS_HASH_ANNOTATION],
                "{service:?}"
            );
        }
    }

    #[test]
    fn the_owner_comes_from_the_spec_or_defaults_to_the_tenant() {
        let t = tenant("  owner:\n    email: anna@acme.example\n    displayName: Anna\n");
        assert_eq!(owner_email(&t), "anna@acme.example");
        assert_eq!(owner_secret_name(&t), "carerp-t1-owner");
        let env = env_of(
            &desired(&t, &OperatorConfig::example(), &BTreeMap::new(), None),
            "identity",
        );
        assert_eq!(env["CARERP_OWNER_NAME"], "Anna");
        assert_eq!(env["CARERP_OWNER_PASSWORD_TEMPORARY"], "true");
    }
}
