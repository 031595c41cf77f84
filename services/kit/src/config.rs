//! Typed configuration, read from the environment in one place.
//!
//! A service that is missing a variable, or has one it cannot parse, must not start half
//! configured: [`ConfigError`] names the variable, and `main` prints it as one line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::auth::VerifyingKeys;
use crate::db::PoolSettings;

/// The variable holding the tenant's public token keys.
pub const TOKEN_PUBLIC_KEYS: &str = "CARERP_TOKEN_PUBLIC_KEYS";

/// A variable that is missing or malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name} is not set ({meaning})")]
    Missing {
        name: &'static str,
        meaning: &'static str,
    },
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

/// How log lines are written: one JSON object per line, or human-readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Settings of the garage, from the tenant's settings ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSettings {
    /// ISO 4217 code of every amount in the tenant.
    pub currency: String,
    /// Tax rate in basis points (2000 = 20%).
    pub tax_rate_bp: i32,
    /// Default hourly labour rate in minor units.
    pub labor_rate_minor: i64,
    pub payment_terms_days: i32,
    /// IANA time zone name; dates such as an invoice's issue date are taken in it.
    pub timezone: String,
    /// Who the garage is on what it prints (invoices, job cards): its name, its postal
    /// address (lines separated by newlines) and its tax number; empty when not given.
    pub garage: GarageIdentity,
}

/// The garage as printed documents name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GarageIdentity {
    pub name: String,
    pub address: String,
    pub tax_id: String,
}

impl GarageIdentity {
    pub const MAX_NAME: usize = 100;
    pub const MAX_ADDRESS: usize = 300;
    pub const MAX_TAX_ID: usize = 40;

    /// The address's lines, as they are printed.
    pub fn address_lines(&self) -> Vec<&str> {
        self.address
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect()
    }
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            currency: "EUR".into(),
            tax_rate_bp: 0,
            labor_rate_minor: 0,
            payment_terms_days: 14,
            timezone: "UTC".into(),
            garage: GarageIdentity::default(),
        }
    }
}

/// Everything a service process needs to know at start.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Service name, as it appears in logs, traces and event sources (`customer`).
    pub service: &'static str,
    /// Tenant id: a DNS label of at most 40 characters.
    pub tenant: String,
    /// The service's own database; `None` only for services without one (the BFF).
    pub database_url: Option<String>,
    pub nats_url: String,
    /// The tenant's NATS credentials (`NATS_CREDENTIALS_FILE`, a `.creds` file: user JWT and
    /// nkey seed); `None` connects without authenticating, as `cargo dev` does.
    pub nats_credentials: Option<PathBuf>,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub otlp_endpoint: Option<String>,
    pub log_format: LogFormat,
    pub settings: TenantSettings,
    /// The tenant's public token keys (`CARERP_TOKEN_PUBLIC_KEYS`): every call is checked
    /// against them.
    pub verifying_keys: VerifyingKeys,
    /// The database pool's size and idle timeout.
    pub pool: PoolSettings,
}

/// Whether the service owns a database, so `DATABASE_URL` is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Required,
    None,
}

impl ServiceConfig {
    /// Reads the process environment.
    pub fn from_env(service: &'static str, database: Database) -> Result<Self, ConfigError> {
        Self::from_lookup(service, database, |name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(
        service: &'static str,
        database: Database,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let tenant = env.required("CARERP_TENANT", "tenant id")?;
        validate_tenant(&tenant).map_err(|reason| ConfigError::Invalid {
            name: "CARERP_TENANT",
            value: tenant.clone(),
            reason,
        })?;
        let database_url = match database {
            Database::Required => {
                Some(env.required("DATABASE_URL", "the service's PostgreSQL connection URL")?)
            }
            Database::None => None,
        };
        if let Some(url) = &database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid {
                name: "DATABASE_URL",
                value: redact_url(url),
                reason: "expected a postgres:// URL".into(),
            });
        }
        let log_format = match env.optional("LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "LOG_FORMAT",
                    value: other.into(),
                    reason: "expected json or pretty".into(),
                });
            }
        };
        let settings = TenantSettings {
            currency: env.parse_or("CARERP_CURRENCY", "EUR".to_string())?,
            tax_rate_bp: env.parse_or("CARERP_TAX_RATE_BP", 0)?,
            labor_rate_minor: env.parse_or("CARERP_LABOR_RATE_MINOR", 0)?,
            payment_terms_days: env.parse_or("CARERP_PAYMENT_TERMS_DAYS", 14)?,
            timezone: env.parse_or("CARERP_TIMEZONE", "UTC".to_string())?,
            garage: GarageIdentity {
                name: env.optional("CARERP_GARAGE_NAME").unwrap_or_default(),
                address: env.optional("CARERP_GARAGE_ADDRESS").unwrap_or_default(),
                tax_id: env.optional("CARERP_GARAGE_TAX_ID").unwrap_or_default(),
            },
        };
        validate_settings(&settings)?;
        let keys = env.required(
            TOKEN_PUBLIC_KEYS,
            "the tenant's public token keys, <kid>:<base64url key>[,...]",
        )?;
        let verifying_keys =
            VerifyingKeys::parse(&tenant, &keys).map_err(|err| ConfigError::Invalid {
                name: TOKEN_PUBLIC_KEYS,
                value: keys.clone(),
                reason: err.to_string(),
            })?;
        let pool = pool_settings(&env)?;
        let nats_credentials = env.optional("NATS_CREDENTIALS_FILE").map(PathBuf::from);
        Ok(Self {
            service,
            tenant,
            database_url,
            nats_url: env.parse_or("NATS_URL", "nats://127.0.0.1:4222".to_string())?,
            nats_credentials,
            grpc_addr: env.parse_or("GRPC_ADDR", ([0, 0, 0, 0], 50051).into())?,
            http_addr: env.parse_or("HTTP_ADDR", ([0, 0, 0, 0], 8080).into())?,
            admin_addr: env.parse_or("ADMIN_ADDR", ([0, 0, 0, 0], 9090).into())?,
            otlp_endpoint: env.optional("OTEL_EXPORTER_OTLP_ENDPOINT"),
            log_format,
            settings,
            verifying_keys,
            pool,
        })
    }

    /// A configuration for tests: ephemeral loopback ports, pretty logs, default settings.
    pub fn for_tests(service: &'static str, tenant: &str, database_url: Option<String>) -> Self {
        Self {
            service,
            tenant: tenant.into(),
            database_url,
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_credentials: None,
            grpc_addr: ([127, 0, 0, 1], 0).into(),
            http_addr: ([127, 0, 0, 1], 0).into(),
            admin_addr: ([127, 0, 0, 1], 0).into(),
            otlp_endpoint: None,
            log_format: LogFormat::Pretty,
            settings: TenantSettings::default(),
            verifying_keys: crate::auth::testing::verifying_keys(tenant),
            pool: PoolSettings::default(),
        }
    }

    /// The URL of another service's gRPC endpoint, e.g. `CUSTOMER_GRPC_URL`.
    pub fn service_url(name: &'static str) -> Result<String, ConfigError> {
        let value = std::env::var(name).map_err(|_| ConfigError::Missing {
            name,
            meaning: "gRPC URL of a service this one calls",
        })?;
        if !(value.starts_with("http://") || value.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                name,
                value,
                reason: "expected an http:// or https:// URL".into(),
            });
        }
        Ok(value)
    }
}

/// A connection URL without its password, for messages and logs:
/// `postgres://user:secret@host/db` becomes `postgres://user@host/db`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{}@{}", &url[..scheme + 3], user, &url[at + 1..])
        }
        // No scheme: whatever precedes an `@` may be a password.
        (None, Some(at)) => format!("<redacted>@{}", &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// A tenant id of its own for one test, so that tests never share subjects, streams or
/// durable consumers (events left in one test's stream must not reach another's services).
pub fn test_tenant() -> String {
    format!("test-{}", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

/// A local address that refuses every connection for as long as this value lives.
///
/// The port is bound but never listened on: connecting gets an immediate refusal, and no
/// other process can take the port meanwhile. (Dropping a listener and reusing its port lets
/// a parallel test's server answer there instead.)
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    addr: std::net::SocketAddr,
}

impl ClosedPort {
    pub fn bind() -> std::io::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = socket.local_addr()?;
        Ok(Self {
            _socket: socket,
            addr,
        })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, as a gRPC endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// `DATABASE_MAX_CONNECTIONS` (1 to 100), `DATABASE_IDLE_TIMEOUT_SECONDS` (1 to 3600) and
/// `DATABASE_MIGRATION_URL` (a postgres:// URL, optional).
fn pool_settings<F: Fn(&str) -> Option<String>>(
    env: &Env<'_, F>,
) -> Result<PoolSettings, ConfigError> {
    let defaults = PoolSettings::default();
    let max_connections: u32 =
        env.parse_or("DATABASE_MAX_CONNECTIONS", defaults.max_connections)?;
    let idle_seconds: u64 = env.parse_or(
        "DATABASE_IDLE_TIMEOUT_SECONDS",
        defaults.idle_timeout.as_secs(),
    )?;
    for (name, value, max) in [
        ("DATABASE_MAX_CONNECTIONS", u64::from(max_connections), 100),
        ("DATABASE_IDLE_TIMEOUT_SECONDS", idle_seconds, 3600),
    ] {
        if !(1..=max).contains(&value) {
            return Err(ConfigError::Invalid {
                name,
                value: value.to_string(),
                reason: format!("expected 1 to {max}"),
            });
        }
    }
    let migration_url = env.optional("DATABASE_MIGRATION_URL");
    if let Some(url) = &migration_url
        && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        return Err(ConfigError::Invalid {
            name: "DATABASE_MIGRATION_URL",
            value: redact_url(url),
            reason: "expected a postgres:// URL".into(),
        });
    }
    Ok(PoolSettings {
        max_connections,
        idle_timeout: std::time::Duration::from_secs(idle_seconds),
        migration_url,
    })
}

/// A tenant id is a DNS label of at most 40 characters: it becomes part of namespace,
/// database and stream names.
pub fn validate_tenant(tenant: &str) -> Result<(), String> {
    if tenant.is_empty() || tenant.len() > 40 {
        return Err(format!("must be 1 to 40 characters, is {}", tenant.len()));
    }
    let valid_chars = tenant
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid_chars || tenant.starts_with('-') || tenant.ends_with('-') {
        return Err(
            "must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

fn validate_settings(settings: &TenantSettings) -> Result<(), ConfigError> {
    let invalid = |name: &'static str, value: String, reason: &str| ConfigError::Invalid {
        name,
        value,
        reason: reason.into(),
    };
    let garage = &settings.garage;
    for (name, value, max) in [
        ("CARERP_GARAGE_NAME", &garage.name, GarageIdentity::MAX_NAME),
        (
            "CARERP_GARAGE_ADDRESS",
            &garage.address,
            GarageIdentity::MAX_ADDRESS,
        ),
        (
            "CARERP_GARAGE_TAX_ID",
            &garage.tax_id,
            GarageIdentity::MAX_TAX_ID,
        ),
    ] {
        if value.chars().count() > max {
            return Err(invalid(
                name,
                value.clone(),
                &format!("at most {max} characters"),
            ));
        }
    }
    if settings.currency.len() != 3 || !settings.currency.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(invalid(
            "CARERP_CURRENCY",
            settings.currency.clone(),
            "expected a 3-letter ISO 4217 code such as EUR",
        ));
    }
    if !(0..=10_000).contains(&settings.tax_rate_bp) {
        return Err(invalid(
            "CARERP_TAX_RATE_BP",
            settings.tax_rate_bp.to_string(),
            "expected 0 to 10000 basis points",
        ));
    }
    if settings.labor_rate_minor < 0 {
        return Err(invalid(
            "CARERP_LABOR_RATE_MINOR",
            settings.labor_rate_minor.to_string(),
            "must not be negative",
        ));
    }
    if !(0..=365).contains(&settings.payment_terms_days) {
        return Err(invalid(
            "CARERP_PAYMENT_TERMS_DAYS",
            settings.payment_terms_days.to_string(),
            "expected 0 to 365 days",
        ));
    }
    Ok(())
}

struct Env<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> Env<'_, F> {
    fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.trim().is_empty())
    }

    fn required(&self, name: &'static str, meaning: &'static str) -> Result<String, ConfigError> {
        self.optional(name)
            .ok_or(ConfigError::Missing { name, meaning })
    }

    fn parse_or<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(value) => value
                .trim()
                .parse()
                .map_err(|err: T::Err| ConfigError::Invalid {
                    name,
                    reason: err.to_string(),
                    value,
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Loads `vars`, with a valid `CARERP_TOKEN_PUBLIC_KEYS` unless `vars` sets it.
    fn load(vars: &[(&str, &str)], database: Database) -> Result<ServiceConfig, ConfigError> {
        let mut vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vars.entry(TOKEN_PUBLIC_KEYS.into())
            .or_insert_with(|| crate::auth::testing::signing_key().public_entry());
        ServiceConfig::from_lookup("customer", database, |name| vars.get(name).cloned())
    }

    #[test]
    fn a_malformed_database_url_is_named_without_its_password() {
        for url in ["mysql://app:s3cret@db/x", "app:s3cret@db:5432/x"] {
            let mut vars = BASE.to_vec();
            vars[1] = ("DATABASE_URL", url);
            let err = load(&vars, Database::Required).unwrap_err().to_string();
            assert!(err.starts_with("DATABASE_URL="), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
        assert_eq!(redact_url("postgres://u:p@h/d"), "postgres://u@h/d");
        assert_eq!(redact_url("postgres://h/d"), "postgres://h/d");
    }

    #[test]
    fn token_keys_are_required_and_checked() {
        let mut vars: HashMap<&str, &str> = BASE.iter().copied().collect();
        vars.insert(TOKEN_PUBLIC_KEYS, "k1:not-a-key");
        let err = ServiceConfig::from_lookup("customer", Database::Required, |name| {
            vars.get(name).map(|v| v.to_string())
        })
        .unwrap_err();
        assert!(
            err.to_string().starts_with("CARERP_TOKEN_PUBLIC_KEYS="),
            "{err}"
        );
        vars.remove(TOKEN_PUBLIC_KEYS);
        let err = ServiceConfig::from_lookup("customer", Database::Required, |name| {
            vars.get(name).map(|v| v.to_string())
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("CARERP_TOKEN_PUBLIC_KEYS is not set"),
            "{err}"
        );
    }

    const BASE: &[(&str, &str)] = &[
        ("CARERP_TENANT", "acme-motors"),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1/x"),
    ];

    #[tokio::test]
    async fn a_closed_port_refuses_connections_and_cannot_be_taken() {
        let closed = ClosedPort::bind().unwrap();
        let err = tokio::net::TcpStream::connect(closed.addr())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(tokio::net::TcpListener::bind(closed.addr()).await.is_err());
    }

    #[test]
    fn defaults_apply_when_only_required_variables_are_set() {
        let config = load(BASE, Database::Required).unwrap();
        assert_eq!(config.tenant, "acme-motors");
        assert_eq!(config.grpc_addr.port(), 50051);
        assert_eq!(config.admin_addr.port(), 9090);
        assert_eq!(config.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(config.nats_credentials, None, "unauthenticated unless told");
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.settings, TenantSettings::default());
        assert_eq!(config.otlp_endpoint, None);
    }

    #[test]
    fn nats_credentials_come_from_a_file_named_by_a_variable() {
        let mut vars = BASE.to_vec();
        vars.push((
            "NATS_CREDENTIALS_FILE",
            "/var/run/secrets/carerp/nats/nats.creds",
        ));
        assert_eq!(
            load(&vars, Database::Required).unwrap().nats_credentials,
            Some(PathBuf::from("/var/run/secrets/carerp/nats/nats.creds"))
        );
        let mut vars = BASE.to_vec();
        vars.push(("NATS_CREDENTIALS_FILE", " "));
        assert_eq!(
            load(&vars, Database::Required).unwrap().nats_credentials,
            None,
            "blank is unset, as for every optional variable"
        );
    }

    #[test]
    fn the_pool_is_sized_and_timed_by_variables_within_bounds() {
        assert_eq!(
            load(BASE, Database::Required).unwrap().pool,
            PoolSettings::default()
        );
        let mut vars = BASE.to_vec();
        vars.extend([
            ("DATABASE_MAX_CONNECTIONS", "3"),
            ("DATABASE_IDLE_TIMEOUT_SECONDS", "2"),
        ]);
        let pool = load(&vars, Database::Required).unwrap().pool;
        assert_eq!(pool.max_connections, 3);
        assert_eq!(pool.idle_timeout, std::time::Duration::from_secs(2));
        assert_eq!(pool.migration_url, None);
        for (name, bad) in [
            ("DATABASE_MAX_CONNECTIONS", "0"),
            ("DATABASE_MAX_CONNECTIONS", "101"),
            ("DATABASE_MAX_CONNECTIONS", "many"),
            ("DATABASE_IDLE_TIMEOUT_SECONDS", "0"),
        ] {
            let mut vars = BASE.to_vec();
            vars.push((name, bad));
            let err = load(&vars, Database::Required).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{name}=")), "{name}={bad}: {err}");
        }
    }

    #[test]
    fn migrations_may_run_over_a_url_of_their_own_named_without_its_password() {
        let mut vars = BASE.to_vec();
        vars.push(("DATABASE_MIGRATION_URL", "postgres://u:pw@db:5432/x"));
        let pool = load(&vars, Database::Required).unwrap().pool;
        assert_eq!(
            pool.migration_url.as_deref(),
            Some("postgres://u:pw@db:5432/x")
        );
        vars.pop();
        vars.push(("DATABASE_MIGRATION_URL", "mysql://u:secret@db/x"));
        let err = load(&vars, Database::Required).unwrap_err().to_string();
        assert!(err.starts_with("DATABASE_MIGRATION_URL="), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn missing_database_url_names_the_variable() {
        let err = load(&[("CARERP_TENANT", "acme")], Database::Required).unwrap_err();
        assert!(
            err.to_string().starts_with("DATABASE_URL is not set"),
            "{err}"
        );
    }

    #[test]
    fn database_url_is_not_needed_without_a_database() {
        let config = load(&[("CARERP_TENANT", "acme")], Database::None).unwrap();
        assert_eq!(config.database_url, None);
    }

    #[test]
    fn missing_tenant_names_the_variable() {
        let err = load(&[], Database::None).unwrap_err();
        assert!(
            err.to_string().starts_with("CARERP_TENANT is not set"),
            "{err}"
        );
    }

    #[test]
    fn tenant_must_be_a_short_dns_label() {
        for bad in ["Acme", "-acme", "acme-", "acme_motors", &"a".repeat(41)] {
            let err = load(&[("CARERP_TENANT", bad)], Database::None).unwrap_err();
            assert!(
                err.to_string().starts_with("CARERP_TENANT="),
                "{bad}: {err}"
            );
        }
        assert!(load(&[("CARERP_TENANT", &"a".repeat(40))], Database::None).is_ok());
    }

    #[test]
    fn malformed_values_name_the_variable_and_value() {
        let cases = [
            ("GRPC_ADDR", "localhost"),
            ("ADMIN_ADDR", "1.2.3.4"),
            ("LOG_FORMAT", "xml"),
            ("CARERP_TAX_RATE_BP", "twenty"),
            ("CARERP_TAX_RATE_BP", "10001"),
            ("CARERP_CURRENCY", "euro"),
            ("CARERP_LABOR_RATE_MINOR", "-1"),
            ("CARERP_PAYMENT_TERMS_DAYS", "400"),
            ("DATABASE_URL", "mysql://x"),
            ("CARERP_GARAGE_NAME", &"G".repeat(101)),
            ("CARERP_GARAGE_ADDRESS", &"A".repeat(301)),
            ("CARERP_GARAGE_TAX_ID", &"1".repeat(41)),
        ];
        for (name, value) in cases {
            let mut vars = BASE.to_vec();
            vars.retain(|(k, _)| *k != name);
            vars.push((name, value));
            let err = load(&vars, Database::Required).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("{name}=\"{value}\" is invalid")),
                "{text}"
            );
        }
    }

    #[test]
    fn settings_are_read() {
        let mut vars = BASE.to_vec();
        vars.extend([
            ("CARERP_CURRENCY", "GBP"),
            ("CARERP_TAX_RATE_BP", "2000"),
            ("CARERP_LABOR_RATE_MINOR", "9000"),
            ("CARERP_PAYMENT_TERMS_DAYS", "30"),
            ("CARERP_TIMEZONE", "Europe/London"),
            ("CARERP_GARAGE_NAME", "ACME Motors"),
            ("CARERP_GARAGE_ADDRESS", "1 High Street\n\n  Leeds LS1 1AA "),
            ("CARERP_GARAGE_TAX_ID", "GB123456789"),
            ("LOG_FORMAT", "pretty"),
        ]);
        let config = load(&vars, Database::Required).unwrap();
        assert_eq!(config.settings.garage.name, "ACME Motors");
        assert_eq!(
            config.settings.garage.address_lines(),
            ["1 High Street", "Leeds LS1 1AA"]
        );
        assert_eq!(config.settings.garage.tax_id, "GB123456789");
        assert_eq!(config.settings.currency, "GBP");
        assert_eq!(config.settings.tax_rate_bp, 2000);
        assert_eq!(config.settings.labor_rate_minor, 9000);
        assert_eq!(config.settings.payment_terms_days, 30);
        assert_eq!(config.settings.timezone, "Europe/London");
        assert_eq!(config.log_format, LogFormat::Pretty);
    }
}
