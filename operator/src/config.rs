//! The operator's own configuration: what is the same for every tenant of one installation.

use std::time::Duration;

/// Installation-wide settings, from flags or environment (see `main.rs`), validated at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorConfig {
    /// Registry and path the service images live under: `<registry>/carerp-<service>:<version>`.
    pub image_registry: String,
    /// Image tag for tenants that do not pin `spec.version`.
    pub default_version: String,
    /// Prefix of every tenant namespace: `<prefix><tenant>`.
    pub namespace_prefix: String,
    /// Host and port of PostgreSQL as the tenant's pods reach it (goes into each `DATABASE_URL`).
    pub database_host: String,
    pub database_port: u16,
    /// A PgBouncer in transaction mode in front of that server, as the pods reach it: when
    /// set, each `DATABASE_URL` names it and `DATABASE_MIGRATION_URL` the server itself.
    pub database_pooler: Option<DatabasePooler>,
    /// JetStream as the tenant's pods reach it.
    pub nats_url: String,
    pub nats_port: u16,
    /// Where the broker is, for the egress NetworkPolicy: the only peer the tenants' pods may
    /// reach on `nats_port`.
    pub nats_broker: NatsBroker,
    /// Whether each tenant gets NATS credentials (the operator holds the account signing
    /// key): its pods then mount them and sign in; otherwise they connect unauthenticated.
    pub nats_credentials: bool,
    /// Collector for tenants that name none; `None` = no export.
    pub default_otlp_endpoint: Option<String>,
    /// Image of the OpenTelemetry Collector sidecar.
    pub collector_image: String,
    /// Namespace of the ingress controller, the only one allowed to reach the BFF.
    pub ingress_controller_namespace: String,
    /// Namespace of the metrics scraper (Prometheus), let in to every pod's admin port.
    pub monitoring_namespace: String,
}

impl OperatorConfig {
    /// A fixed configuration for tests and golden files.
    pub fn example() -> Self {
        Self {
            image_registry: "ghcr.io/carerp".into(),
            default_version: "0.1.0".into(),
            namespace_prefix: "carerp-".into(),
            database_host: "postgres.carerp-system.svc".into(),
            database_port: 5432,
            database_pooler: None,
            nats_url: "nats://nats.carerp-system.svc:4222".into(),
            nats_port: 4222,
            nats_broker: NatsBroker::default(),
            nats_credentials: false,
            default_otlp_endpoint: None,
            collector_image: "otel/opentelemetry-collector:0.120.0".into(),
            ingress_controller_namespace: "ingress-nginx".into(),
            monitoring_namespace: "monitoring".into(),
        }
    }

    /// Checks what would otherwise surface as broken manifests on every tenant.
    pub fn validate(&self) -> Result<(), String> {
        if self.image_registry.is_empty() || self.image_registry.ends_with('/') {
            return Err(format!(
                "image registry {:?} must be non-empty without a trailing '/'",
                self.image_registry
            ));
        }
        if self.default_version.is_empty() {
            return Err("default version must not be empty".into());
        }
        if self.namespace_prefix.is_empty() {
            // Without one, a tenant named kube-system would be given the namespace kube-system.
            return Err(
                "namespace prefix must not be empty: tenant names would be namespace names (a tenant named kube-system)".into(),
            );
        }
        if self.namespace_prefix.len() > 22
            || !self
                .namespace_prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(format!(
                "namespace prefix {:?} must be at most 22 lower-case letters, digits or '-' (a tenant name adds up to 40)",
                self.namespace_prefix
            ));
        }
        if self.database_host.is_empty() {
            return Err("database host must not be empty".into());
        }
        if !self.nats_url.starts_with("nats://") && !self.nats_url.starts_with("tls://") {
            return Err(format!(
                "NATS URL {:?} must start with nats:// or tls://",
                self.nats_url
            ));
        }
        self.nats_broker.validate()?;
        for (what, namespace) in [
            ("ingress controller", &self.ingress_controller_namespace),
            ("monitoring", &self.monitoring_namespace),
        ] {
            if !is_dns_label(namespace) {
                return Err(format!(
                    "{what} namespace {namespace:?} must be a namespace name (at most 63 lower-case letters, digits or '-')"
                ));
            }
        }
        if let Some(endpoint) = &self.default_otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(format!(
                "OTLP endpoint {endpoint:?} must be an http:// or https:// URL"
            ));
        }
        Ok(())
    }
}

/// Where a connection pooler listens (`host:port`), reaching the same databases, roles and
/// passwords as the server behind it (PgBouncer 1.21+, `pool_mode = transaction`,
/// `max_prepared_statements` > 0, `ignore_startup_parameters = extra_float_digits`, and an
/// `auth_query` so the operator's roles need no entry of their own; see the README).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabasePooler {
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for DatabasePooler {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (host, port) = value
            .rsplit_once(':')
            .ok_or_else(|| format!("database pooler {value:?} must be host:port"))?;
        let port = port
            .parse()
            .map_err(|_| format!("database pooler {value:?}: port must be 1 to 65535"))?;
        if host.is_empty() || port == 0 {
            return Err(format!("database pooler {value:?} must be host:port"));
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

/// Where the NATS broker runs, as a NetworkPolicy peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsBroker {
    /// Pods with these labels in this namespace (the broker runs in the cluster).
    Pods {
        namespace: String,
        labels: std::collections::BTreeMap<String, String>,
    },
    /// An address range (a broker outside the cluster), e.g. `10.0.12.0/28`.
    Cidr(String),
}

impl Default for NatsBroker {
    /// The official NATS Helm chart's pods in `carerp-system`.
    fn default() -> Self {
        Self::Pods {
            namespace: "carerp-system".into(),
            labels: [("app.kubernetes.io/name".to_string(), "nats".to_string())].into(),
        }
    }
}

impl NatsBroker {
    /// `key=value[,key=value...]`, as `--nats-pod-labels` takes them.
    pub fn parse_labels(value: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                pair.split_once('=')
                    .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| format!("NATS pod label {pair:?} must be key=value"))
            })
            .collect()
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            Self::Pods { namespace, labels } => {
                if !is_dns_label(namespace) {
                    return Err(format!(
                        "NATS namespace {namespace:?} must be a namespace name (at most 63 lower-case letters, digits or '-')"
                    ));
                }
                if labels.is_empty() {
                    // An empty selector would be every pod of the namespace.
                    return Err(
                        "NATS pod labels must name the broker's pods (key=value[,...])".into(),
                    );
                }
                Ok(())
            }
            Self::Cidr(cidr) => {
                let valid = cidr.split_once('/').is_some_and(|(addr, bits)| {
                    addr.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
                });
                if valid {
                    Ok(())
                } else {
                    Err(format!(
                        "NATS CIDR {cidr:?} must be an address range such as 10.0.12.0/28"
                    ))
                }
            }
        }
    }
}

/// A Kubernetes namespace name (RFC 1123 label).
fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// How long the controller waits before looking at a healthy tenant again.
pub const RESYNC: Duration = Duration::from_secs(300);

/// Flags and environment variables of the installation-wide settings, shared by `run`,
/// `render` and `local`.
#[derive(Debug, Clone, clap::Args)]
pub struct OperatorArgs {
    /// Registry path of the service images.
    #[arg(long, env = "CARERP_IMAGE_REGISTRY", default_value = "ghcr.io/carerp")]
    pub image_registry: String,
    /// Image tag of tenants without `spec.version`.
    #[arg(long, env = "CARERP_DEFAULT_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    pub default_version: String,
    /// Prefix of tenant namespaces.
    #[arg(long, env = "CARERP_NAMESPACE_PREFIX", default_value = "carerp-")]
    pub namespace_prefix: String,
    /// PostgreSQL host as the tenants' pods reach it.
    #[arg(
        long,
        env = "CARERP_DATABASE_HOST",
        default_value = "postgres.carerp-system.svc"
    )]
    pub database_host: String,
    #[arg(long, env = "CARERP_DATABASE_PORT", default_value_t = 5432)]
    pub database_port: u16,
    /// PgBouncer (transaction mode) in front of that server, `host:port`, as the tenants'
    /// pods reach it; unset: the pods connect to the server.
    #[arg(long, env = "CARERP_DATABASE_POOLER")]
    pub database_pooler: Option<DatabasePooler>,
    /// JetStream URL as the tenants' pods reach it.
    #[arg(
        long,
        env = "CARERP_TENANT_NATS_URL",
        default_value = "nats://nats.carerp-system.svc:4222"
    )]
    pub tenant_nats_url: String,
    /// Namespace of the NATS broker's pods: the tenants' pods may reach NATS there and
    /// nowhere else.
    #[arg(long, env = "CARERP_NATS_NAMESPACE", default_value = "carerp-system")]
    pub nats_namespace: String,
    /// Labels of the NATS broker's pods, `key=value[,key=value]`.
    #[arg(
        long,
        env = "CARERP_NATS_POD_LABELS",
        default_value = "app.kubernetes.io/name=nats"
    )]
    pub nats_pod_labels: String,
    /// The broker's address range instead (a broker outside the cluster), e.g. 10.0.12.0/28.
    #[arg(long, env = "CARERP_NATS_CIDR")]
    pub nats_cidr: Option<String>,
    /// File holding a signing key seed (SA...) of the NATS account the tenants' users belong
    /// to: each tenant then gets its own NATS credentials, limited to its subjects and
    /// streams. Unset: tenants connect unauthenticated.
    #[arg(long, env = "CARERP_NATS_ACCOUNT_SIGNING_KEY_FILE")]
    pub nats_account_signing_key_file: Option<std::path::PathBuf>,
    /// The account's public key (A...), when the seed is one of its signing keys rather than
    /// the account's own key.
    #[arg(long, env = "CARERP_NATS_ACCOUNT")]
    pub nats_account: Option<String>,
    /// OTLP/gRPC collector of tenants that name none.
    #[arg(long, env = "CARERP_DEFAULT_OTLP_ENDPOINT")]
    pub default_otlp_endpoint: Option<String>,
    /// Image of the OpenTelemetry Collector sidecar.
    #[arg(
        long,
        env = "CARERP_COLLECTOR_IMAGE",
        default_value = "otel/opentelemetry-collector:0.120.0"
    )]
    pub collector_image: String,
    /// Namespace of the ingress controller allowed to reach each BFF.
    #[arg(
        long,
        env = "CARERP_INGRESS_NAMESPACE",
        default_value = "ingress-nginx"
    )]
    pub ingress_namespace: String,
    /// Namespace of the Prometheus that scrapes every tenant pod's admin port (9090).
    #[arg(
        long,
        env = "CARERP_MONITORING_NAMESPACE",
        default_value = "monitoring"
    )]
    pub monitoring_namespace: String,
}

impl OperatorArgs {
    /// The validated configuration, or the reason it is unusable.
    pub fn config(&self) -> Result<OperatorConfig, String> {
        let nats_port = self
            .tenant_nats_url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or(4222);
        let config = OperatorConfig {
            image_registry: self.image_registry.clone(),
            default_version: self.default_version.clone(),
            namespace_prefix: self.namespace_prefix.clone(),
            database_host: self.database_host.clone(),
            database_port: self.database_port,
            database_pooler: self.database_pooler.clone(),
            nats_url: self.tenant_nats_url.clone(),
            nats_port,
            nats_broker: match &self.nats_cidr {
                Some(cidr) => NatsBroker::Cidr(cidr.trim().to_string()),
                None => NatsBroker::Pods {
                    namespace: self.nats_namespace.clone(),
                    labels: NatsBroker::parse_labels(&self.nats_pod_labels)?,
                },
            },
            nats_credentials: self.nats_account_signing_key_file.is_some(),
            default_otlp_endpoint: self.default_otlp_endpoint.clone(),
            collector_image: self.collector_image.clone(),
            ingress_controller_namespace: self.ingress_namespace.clone(),
            monitoring_namespace: self.monitoring_namespace.clone(),
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_is_valid() {
        OperatorConfig::example().validate().unwrap();
    }

    #[test]
    fn bad_values_are_named() {
        let mut c = OperatorConfig::example();
        c.nats_url = "http://nats:4222".into();
        assert!(c.validate().unwrap_err().contains("NATS URL"));
        let mut c = OperatorConfig::example();
        c.namespace_prefix = "Carerp_".into();
        assert!(c.validate().unwrap_err().contains("namespace prefix"));
        let mut c = OperatorConfig::example();
        c.image_registry = "ghcr.io/carerp/".into();
        assert!(c.validate().unwrap_err().contains("image registry"));
        let mut c = OperatorConfig::example();
        c.namespace_prefix = String::new();
        assert!(c.validate().unwrap_err().contains("must not be empty"));
        let mut c = OperatorConfig::example();
        c.monitoring_namespace = "Monitoring".into();
        assert!(c.validate().unwrap_err().contains("monitoring namespace"));
        let mut c = OperatorConfig::example();
        c.nats_broker = NatsBroker::Cidr("10.0.0.1".into());
        assert!(c.validate().unwrap_err().contains("NATS CIDR"));
        c.nats_broker = NatsBroker::Cidr("10.0.12.0/28".into());
        c.validate().unwrap();
        c.nats_broker = NatsBroker::Pods {
            namespace: "nats".into(),
            labels: Default::default(),
        };
        assert!(c.validate().unwrap_err().contains("NATS pod labels"));
        assert!(NatsBroker::parse_labels("app=nats,=x").is_err());
        assert_eq!(
            NatsBroker::parse_labels("app=nats, tier=broker")
                .unwrap()
                .len(),
            2
        );
        let mut c = OperatorConfig::example();
        c.ingress_controller_namespace = String::new();
        assert!(
            c.validate()
                .unwrap_err()
                .contains("ingress controller namespace")
        );
    }
}
