//! The identity service's configuration: the kit's, plus the tenant's private signing key and
//! the first owner to create. Read from the environment in one place; an error names the
//! variable and never repeats a key or a password.

use carerp_kit::auth::{Secret, SigningKey};
use carerp_kit::{ConfigError, Database, ServiceConfig};

use crate::domain::{check_email, check_new_password};

pub const SIGNING_KEY: &str = "CARERP_TOKEN_SIGNING_KEY";
pub const OWNER_EMAIL: &str = "CARERP_OWNER_EMAIL";
pub const OWNER_NAME: &str = "CARERP_OWNER_NAME";
pub const OWNER_PASSWORD: &str = "CARERP_OWNER_PASSWORD";
pub const OWNER_PASSWORD_TEMPORARY: &str = "CARERP_OWNER_PASSWORD_TEMPORARY";

/// Shown instead of a value that must never be printed.
const REDACTED: &str = "<redacted>";

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub service: ServiceConfig,
    /// `CARERP_TOKEN_SIGNING_KEY`: signs every access token (its `Debug` shows the kid only).
    pub signing_key: SigningKey,
    /// The owner created at start when the tenant has none; `None` when
    /// `CARERP_OWNER_PASSWORD` is unset.
    pub owner: Option<OwnerBootstrap>,
}

/// The tenant's first owner.
#[derive(Debug, Clone)]
pub struct OwnerBootstrap {
    /// `CARERP_OWNER_EMAIL`, default `owner@<tenant>.local`.
    pub email: String,
    /// `CARERP_OWNER_NAME`, default `Owner`.
    pub display_name: String,
    /// `CARERP_OWNER_PASSWORD`.
    pub password: Secret,
    /// `CARERP_OWNER_PASSWORD_TEMPORARY` (default `true`): the owner must change the
    /// password at first sign-in; `false` for scripts and CI.
    pub temporary: bool,
}

impl IdentityConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let service = ServiceConfig::from_lookup("identity", Database::Required, &lookup)?;
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let invalid = |name: &'static str, value: &str, reason: String| ConfigError::Invalid {
            name,
            value: value.to_string(),
            reason,
        };
        let key = get(SIGNING_KEY).ok_or(ConfigError::Missing {
            name: SIGNING_KEY,
            meaning: "the tenant's private token key, <kid>:<base64 PKCS#8 DER>",
        })?;
        let signing_key = SigningKey::parse(&key)
            .map_err(|err| invalid(SIGNING_KEY, REDACTED, err.to_string()))?;
        check_key_pair(&service, &signing_key)?;

        let owner = match get(OWNER_PASSWORD) {
            None => None,
            Some(password) => {
                let email = get(OWNER_EMAIL)
                    .map(|email| email.trim().to_string())
                    .unwrap_or_else(|| format!("owner@{}.local", service.tenant));
                check_email(OWNER_EMAIL, &email)
                    .map_err(|v| invalid(OWNER_EMAIL, &email, v.description))?;
                let display_name = match get(OWNER_NAME) {
                    None => "Owner".to_string(),
                    Some(name) => carerp_kit::status::text(OWNER_NAME, &name, 200, true)
                        .map_err(|v| invalid(OWNER_NAME, &name, v.description))?,
                };
                check_new_password(OWNER_PASSWORD, &password, &[&email, &display_name])
                    .map_err(|v| invalid(OWNER_PASSWORD, REDACTED, v.description))?;
                let temporary = match get(OWNER_PASSWORD_TEMPORARY).as_deref().map(str::trim) {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(other) => {
                        return Err(invalid(
                            OWNER_PASSWORD_TEMPORARY,
                            other,
                            "expected true or false".into(),
                        ));
                    }
                };
                Some(OwnerBootstrap {
                    email,
                    display_name,
                    password: Secret::new(password),
                    temporary,
                })
            }
        };
        Ok(Self {
            service,
            signing_key,
            owner,
        })
    }
}

/// The signing key must be one of the public keys: otherwise every token it signs would be
/// refused, by this service too.
fn check_key_pair(service: &ServiceConfig, key: &SigningKey) -> Result<(), ConfigError> {
    let now = chrono::Utc::now();
    let nil = uuid::Uuid::nil();
    let verified = key
        .issue(
            &service.tenant,
            nil,
            carerp_kit::auth::Role::Owner,
            nil,
            now,
        )
        .ok()
        .and_then(|(token, _)| service.verifying_keys.verify(token.expose()).ok());
    match verified {
        Some(_) => Ok(()),
        None => Err(ConfigError::Invalid {
            name: SIGNING_KEY,
            value: REDACTED.into(),
            reason: format!(
                "its public key (kid {:?}) is not among {}",
                key.kid(),
                carerp_kit::config::TOKEN_PUBLIC_KEYS
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(extra: &[(&str, &str)]) -> Result<IdentityConfig, ConfigError> {
        let key = carerp_kit::auth::testing::signing_key();
        let mut vars: HashMap<String, String> = [
            ("CARERP_TENANT", "acme-motors".to_string()),
            (
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1/x".to_string(),
            ),
            ("CARERP_TOKEN_PUBLIC_KEYS", key.public_entry()),
            (SIGNING_KEY, key.to_secret_value()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        IdentityConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn without_an_owner_password_nothing_is_bootstrapped() {
        let config = load(&[]).unwrap();
        assert!(config.owner.is_none());
        assert_eq!(config.signing_key.kid(), "test");
    }

    #[test]
    fn the_owner_defaults_to_the_tenant_address_and_a_temporary_password() {
        let config = load(&[(OWNER_PASSWORD, "Vq7#mZ2!pL9x-garage")]).unwrap();
        let owner = config.owner.unwrap();
        assert_eq!(owner.email, "owner@acme-motors.local");
        assert!(owner.temporary);
        assert!(!format!("{owner:?}").contains("Vq7#mZ2"));
        let config = load(&[
            (OWNER_PASSWORD, "Vq7#mZ2!pL9x-garage"),
            (OWNER_PASSWORD_TEMPORARY, "false"),
            (OWNER_EMAIL, "boss@acme.example"),
        ])
        .unwrap();
        let owner = config.owner.unwrap();
        assert_eq!(owner.email, "boss@acme.example");
        assert!(!owner.temporary);
    }

    #[test]
    fn errors_name_the_variable_and_never_print_secrets() {
        let key = carerp_kit::auth::testing::signing_key().to_secret_value();
        let broken = format!("{}AAAA", &key[..key.len() - 8]);
        let other = SigningKey::generate("other").to_secret_value();
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Vars, &str, &str); 5] = [
            (
                &[(SIGNING_KEY, "")],
                "CARERP_TOKEN_SIGNING_KEY is not set",
                "",
            ),
            (
                &[(SIGNING_KEY, &broken)],
                "CARERP_TOKEN_SIGNING_KEY=",
                &broken,
            ),
            (
                &[(SIGNING_KEY, &other)],
                "is not among CARERP_TOKEN_PUBLIC_KEYS",
                &other,
            ),
            (
                &[(OWNER_PASSWORD, "password1234")],
                "CARERP_OWNER_PASSWORD=",
                "password1234",
            ),
            (
                &[
                    (OWNER_PASSWORD, "Vq7#mZ2!pL9x-garage"),
                    (OWNER_PASSWORD_TEMPORARY, "yes"),
                ],
                "CARERP_OWNER_PASSWORD_TEMPORARY=\"yes\" is invalid",
                "Vq7#mZ2",
            ),
        ];
        for (vars, expected, secret) in cases {
            let text = load(vars).unwrap_err().to_string();
            assert!(text.contains(expected), "{text}");
            if !secret.is_empty() {
                let tail = &secret[secret.len().saturating_sub(12)..];
                assert!(!text.contains(tail), "{text}");
            }
        }
    }
}
