//! The BFF's configuration: the kit's service configuration plus where the domain services
//! are and how the HTTP edge behaves (CORS, rate limit, timeouts).

use std::time::Duration;

use carerp_kit::config::{ConfigError, Database, ServiceConfig};

use crate::email::{EmailConfig, PUBLIC_URL};

/// Everything the BFF needs at start.
#[derive(Debug, Clone)]
pub struct BffConfig {
    /// `HTTP_ADDR`, `ADMIN_ADDR`, tenant, logging.
    pub service: ServiceConfig,
    pub customer_url: String,
    pub workorder_url: String,
    pub inventory_url: String,
    pub billing_url: String,
    pub identity_url: String,
    /// Origins allowed to call from a browser (`BFF_CORS_ORIGINS`, comma separated, `*` for
    /// any); empty: no CORS headers, same-origin use only.
    pub cors_origins: Vec<String>,
    /// Sustained requests per second per client (`BFF_RATE_LIMIT_PER_SECOND`); 0 disables.
    pub rate_limit_per_second: u32,
    /// Requests a client may send at once before being limited (`BFF_RATE_LIMIT_BURST`).
    pub rate_limit_burst: u32,
    /// Key clients by the last `X-Forwarded-For` address (`BFF_TRUST_FORWARDED_FOR`), for
    /// when the BFF sits behind an ingress controller that appends it.
    pub trust_forwarded_for: bool,
    /// Whole-request limit (`BFF_REQUEST_TIMEOUT_MS`).
    pub request_timeout: Duration,
    /// Deadline of every gRPC call (`BFF_CALL_TIMEOUT_MS`).
    pub call_timeout: Duration,
    /// Where customers reach this BFF (`CARERP_PUBLIC_URL`, `https://garage.example`): the
    /// links that emails carry start with it. `None`: the origin the request came to (as
    /// the web app's pages show the link).
    pub public_url: Option<String>,
    /// The mail server estimates are emailed through (`CARERP_SMTP_URL`,
    /// `CARERP_SMTP_FROM`); `None`: emailing is off, the link is copied by hand.
    pub email: Option<EmailConfig>,
}

impl BffConfig {
    /// Reads the process environment; the error names the variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        let service = ServiceConfig::from_env("bff", Database::None)?;
        Self::from_parts(service, |name| std::env::var(name).ok())
    }

    /// Builds the BFF part from `lookup` (the service URLs through
    /// [`ServiceConfig::service_url`] when reading the real environment).
    pub fn from_parts(
        service: ServiceConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let url = |name: &'static str| -> Result<String, ConfigError> {
            match lookup(name) {
                Some(value) if !value.trim().is_empty() => {
                    let value = value.trim().to_string();
                    if value.starts_with("http://") || value.starts_with("https://") {
                        Ok(value)
                    } else {
                        Err(ConfigError::Invalid {
                            name,
                            value,
                            reason: "expected an http:// or https:// URL".into(),
                        })
                    }
                }
                _ => ServiceConfig::service_url(name),
            }
        };
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match lookup(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(default),
                Some(value) => value
                    .trim()
                    .parse()
                    .map_err(|err: std::num::ParseIntError| ConfigError::Invalid {
                        name,
                        value,
                        reason: err.to_string(),
                    }),
            }
        };
        let small = |name: &'static str, default: u64| -> Result<u32, ConfigError> {
            let value = number(name, default)?;
            u32::try_from(value).map_err(|_| ConfigError::Invalid {
                name,
                value: value.to_string(),
                reason: "too large".into(),
            })
        };
        let millis = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            match number(name, default)? {
                0 => Err(ConfigError::Invalid {
                    name,
                    value: "0".into(),
                    reason: "must be at least 1 millisecond".into(),
                }),
                ms => Ok(Duration::from_millis(ms)),
            }
        };
        let trust_forwarded_for = match lookup("BFF_TRUST_FORWARDED_FOR").as_deref().map(str::trim)
        {
            None | Some("") | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "BFF_TRUST_FORWARDED_FOR",
                    value: other.into(),
                    reason: "expected true or false".into(),
                });
            }
        };
        let cors_origins = lookup("BFF_CORS_ORIGINS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>();
        for origin in &cors_origins {
            if origin != "*" && http::HeaderValue::from_str(origin).is_err() {
                return Err(ConfigError::Invalid {
                    name: "BFF_CORS_ORIGINS",
                    value: origin.clone(),
                    reason: "not a valid origin".into(),
                });
            }
        }
        let public_url = match lookup(PUBLIC_URL).filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(value) => {
                let trimmed = value.trim().trim_end_matches('/');
                let host = trimmed
                    .strip_prefix("https://")
                    .or_else(|| trimmed.strip_prefix("http://"));
                match host {
                    Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', '@']) => {
                        Some(trimmed.to_string())
                    }
                    _ => {
                        return Err(ConfigError::Invalid {
                            name: PUBLIC_URL,
                            value,
                            reason: "expected an origin such as https://garage.example".into(),
                        });
                    }
                }
            }
        };
        Ok(Self {
            email: EmailConfig::from_lookup(&lookup)?,
            public_url,
            service,
            customer_url: url("CUSTOMER_GRPC_URL")?,
            workorder_url: url("WORKORDER_GRPC_URL")?,
            inventory_url: url("INVENTORY_GRPC_URL")?,
            billing_url: url("BILLING_GRPC_URL")?,
            identity_url: url("IDENTITY_GRPC_URL")?,
            cors_origins,
            rate_limit_per_second: small("BFF_RATE_LIMIT_PER_SECOND", 50)?,
            rate_limit_burst: small("BFF_RATE_LIMIT_BURST", 100)?,
            trust_forwarded_for,
            request_timeout: millis("BFF_REQUEST_TIMEOUT_MS", 15_000)?,
            call_timeout: millis("BFF_CALL_TIMEOUT_MS", 5_000)?,
        })
    }

    /// A configuration for tests: ephemeral loopback ports and the given service URLs.
    pub fn for_tests(
        tenant: &str,
        customer_url: String,
        workorder_url: String,
        inventory_url: String,
        billing_url: String,
        identity_url: String,
    ) -> Self {
        Self {
            service: ServiceConfig::for_tests("bff", tenant, None),
            customer_url,
            workorder_url,
            inventory_url,
            billing_url,
            identity_url,
            cors_origins: Vec::new(),
            rate_limit_per_second: 1000,
            rate_limit_burst: 1000,
            trust_forwarded_for: false,
            request_timeout: Duration::from_secs(15),
            call_timeout: Duration::from_secs(5),
            public_url: None,
            email: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<BffConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let service = ServiceConfig::for_tests("bff", "acme", None);
        BffConfig::from_parts(service, |name| vars.get(name).cloned())
    }

    const URLS: &[(&str, &str)] = &[
        ("CUSTOMER_GRPC_URL", "http://customer:50051"),
        ("WORKORDER_GRPC_URL", "http://workorder:50051"),
        ("INVENTORY_GRPC_URL", "http://inventory:50051"),
        ("BILLING_GRPC_URL", "http://billing:50051"),
        ("IDENTITY_GRPC_URL", "http://identity:50051"),
    ];

    #[test]
    fn defaults_apply() {
        let config = load(URLS).unwrap();
        assert_eq!(config.billing_url, "http://billing:50051");
        assert!(config.cors_origins.is_empty());
        assert_eq!(config.rate_limit_per_second, 50);
        assert_eq!(config.call_timeout, Duration::from_secs(5));
        assert!(!config.trust_forwarded_for);
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for (name, value) in [
            ("BILLING_GRPC_URL", "billing:50051"),
            ("BFF_RATE_LIMIT_PER_SECOND", "many"),
            ("BFF_CALL_TIMEOUT_MS", "0"),
            ("BFF_TRUST_FORWARDED_FOR", "yes"),
            ("BFF_CORS_ORIGINS", "http://a.example,\u{7f}"),
            ("CARERP_PUBLIC_URL", "garage.example"),
            ("CARERP_PUBLIC_URL", "https://garage.example/app"),
        ] {
            let mut vars = URLS.to_vec();
            vars.retain(|(k, _)| *k != name);
            vars.push((name, value));
            let err = load(&vars).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{name}=")), "{err}");
        }
    }

    #[test]
    fn email_is_off_unless_configured_and_the_public_url_is_an_origin() {
        let config = load(URLS).unwrap();
        assert!(config.email.is_none());
        assert!(config.public_url.is_none());
        let mut vars = URLS.to_vec();
        vars.extend([
            ("CARERP_PUBLIC_URL", "https://acme.garages.example/"),
            ("CARERP_SMTP_URL", "smtps://mailer:pw@smtp.example.com"),
            ("CARERP_SMTP_FROM", "ACME <estimates@acme.example>"),
        ]);
        let config = load(&vars).unwrap();
        assert_eq!(
            config.public_url.as_deref(),
            Some("https://acme.garages.example")
        );
        assert!(!format!("{config:?}").contains(":pw@"));
    }

    #[test]
    fn cors_origins_are_a_comma_separated_list() {
        let mut vars = URLS.to_vec();
        vars.push((
            "BFF_CORS_ORIGINS",
            " https://a.example , https://b.example ,",
        ));
        let config = load(&vars).unwrap();
        assert_eq!(
            config.cors_origins,
            vec!["https://a.example", "https://b.example"]
        );
    }
}
