//! What a tenant needs outside Kubernetes: one PostgreSQL role and database per service, and
//! the tenant's JetStream stream. The controller and `local` call the same functions.
//!
//! Every step is idempotent and checks what exists rather than remembering what it did, so a
//! run that died half way (role created, database not; database left owned by someone else)
//! is finished by the next one.

use std::collections::BTreeMap;

use async_nats::jetstream;
use carerp_kit::stream::StreamSettings;
use rand::Rng;
use rand::distr::Alphanumeric;
use sqlx::PgPool;

use crate::crd::{MessagingSpec, SERVICES, Service};
use crate::scram::{Verifier, stored_verifies};
use crate::validate::parse_duration;

/// Why provisioning failed; the text goes into the tenant's condition.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("PostgreSQL: {action}: {source}")]
    Database {
        action: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("NATS: {action}: {message}")]
    Nats { action: String, message: String },
    #[error("invalid messaging spec: {0}")]
    Spec(String),
    #[error("{0}")]
    NotConfigured(String),
}

impl ProvisionError {
    /// A short CamelCase reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ProvisionError::Database { .. } => "DatabaseError",
            ProvisionError::Nats { .. } => "MessagingError",
            ProvisionError::Spec(_) => "InvalidSpec",
            ProvisionError::NotConfigured(_) => "DatabaseNotConfigured",
        }
    }
}

fn db_err(action: impl Into<String>) -> impl FnOnce(sqlx::Error) -> ProvisionError {
    let action = action.into();
    move |source| ProvisionError::Database { action, source }
}

/// `t_<tenant>_<service>` with `-` turned into `_`: a plain identifier that needs no quoting
/// by people typing it, and cannot collide because tenant ids have no `_`.
pub fn database_name(tenant: &str, service: Service) -> String {
    format!("t_{}_{}", tenant.replace('-', "_"), service.name())
}

/// A new random password: alphanumeric, so it needs no escaping in URLs.
pub fn new_password() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// The URL a service connects with.
pub fn database_url(
    host: &str,
    port: u16,
    tenant: &str,
    service: Service,
    password: &str,
) -> String {
    let name = database_name(tenant, service);
    format!("postgres://{name}:{password}@{host}:{port}/{name}")
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Runs one statement with the simple protocol: `CREATE DATABASE` and friends refuse to run
/// inside the implicit transaction of a prepared statement. Safe to build as text: names are
/// `[a-z0-9_]` from a validated tenant id, and literals go through [`quote_literal`].
async fn exec(pool: &PgPool, sql: &str, action: &str) -> Result<(), ProvisionError> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(db_err(action))
}

fn is_code(err: &ProvisionError, code: &str) -> bool {
    matches!(err, ProvisionError::Database { source: sqlx::Error::Database(db), .. } if db.code().as_deref() == Some(code))
}

/// What PostgreSQL holds about a tenant role.
struct RoleState {
    /// `LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE`, as the operator creates it.
    attributes_ok: bool,
    /// `pg_authid.rolpassword`: `None` when it has none, or when the admin may not read it.
    stored: Option<String>,
}

/// The role's attributes and stored verifier; `None` when there is no such role.
/// `pg_authid` is readable by superusers only: an admin that is not one gets the attributes
/// from `pg_roles`, and the password is then set on every run, as a verifier all the same.
async fn role_state(admin: &PgPool, name: &str) -> Result<Option<RoleState>, ProvisionError> {
    let authid = sqlx::query_as::<_, (bool, Option<String>)>(
        "SELECT rolcanlogin AND NOT rolsuper AND NOT rolcreatedb AND NOT rolcreaterole, rolpassword \
         FROM pg_authid WHERE rolname = $1",
    )
    .bind(name)
    .fetch_optional(admin)
    .await;
    let row = match authid {
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42501") => {
            sqlx::query_scalar::<_, bool>(
                "SELECT rolcanlogin AND NOT rolsuper AND NOT rolcreatedb AND NOT rolcreaterole \
                 FROM pg_roles WHERE rolname = $1",
            )
            .bind(name)
            .fetch_optional(admin)
            .await
            .map(|found| found.map(|ok| (ok, None)))
        }
        other => other,
    }
    .map_err(db_err(format!("look up role {name}")))?;
    Ok(row.map(|(attributes_ok, stored)| RoleState {
        attributes_ok,
        stored,
    }))
}

/// Makes sure the service's role and database exist and the role logs in with `password`
/// (a new random one when `None`: the Secret holding it was lost or never written).
/// Returns the password in force.
///
/// The password is sent only when the role's stored verifier does not accept it (a new role,
/// a lost Secret, a password changed by hand), and then as a SCRAM-SHA-256 verifier computed
/// here ([`crate::scram`]), never as plaintext.
pub async fn ensure_database(
    admin: &PgPool,
    tenant: &str,
    service: Service,
    password: Option<&str>,
) -> Result<String, ProvisionError> {
    let name = database_name(tenant, service);
    let ident = quote_ident(&name);
    let password = password.map_or_else(new_password, str::to_string);

    const ATTRIBUTES: &str = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE";
    let with_password = || {
        format!(
            "{ATTRIBUTES} PASSWORD {}",
            quote_literal(&Verifier::new(&password).to_string())
        )
    };
    match role_state(admin, &name).await? {
        Some(role) => {
            let password_ok = stored_verifies(role.stored.as_deref(), &password);
            if !(role.attributes_ok && password_ok) {
                let set = if password_ok {
                    ATTRIBUTES.to_string()
                } else {
                    with_password()
                };
                exec(
                    admin,
                    &format!("ALTER ROLE {ident} WITH {set}"),
                    &format!("set password of role {name}"),
                )
                .await?;
            }
        }
        None => {
            let create = format!("CREATE ROLE {ident} WITH {}", with_password());
            match exec(admin, &create, &format!("create role {name}")).await {
                Ok(()) => {}
                // Created concurrently since we looked: make sure it has our password.
                Err(err) if is_code(&err, "42710") => {
                    exec(
                        admin,
                        &format!("ALTER ROLE {ident} WITH {}", with_password()),
                        &format!("set password of role {name}"),
                    )
                    .await?
                }
                Err(err) => return Err(err),
            }
        }
    }

    let owner: Option<String> = sqlx::query_scalar(
        "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
    )
    .bind(&name)
    .fetch_optional(admin)
    .await
    .map_err(db_err(format!("look up database {name}")))?;
    match owner {
        None => {
            let create = format!("CREATE DATABASE {ident} OWNER {ident}");
            match exec(admin, &create, &format!("create database {name}")).await {
                Ok(()) => {}
                Err(err) if is_code(&err, "42P04") => {
                    exec(
                        admin,
                        &format!("ALTER DATABASE {ident} OWNER TO {ident}"),
                        &format!("set owner of database {name}"),
                    )
                    .await?
                }
                Err(err) => return Err(err),
            }
        }
        Some(owner) if owner != name => {
            exec(
                admin,
                &format!("ALTER DATABASE {ident} OWNER TO {ident}"),
                &format!("set owner of database {name}"),
            )
            .await?
        }
        Some(_) => {}
    }
    exec(
        admin,
        &format!("REVOKE CONNECT, TEMPORARY ON DATABASE {ident} FROM PUBLIC"),
        &format!("revoke public access to {name}"),
    )
    .await?;
    exec(
        admin,
        &format!("GRANT CONNECT, TEMPORARY ON DATABASE {ident} TO {ident}"),
        &format!("grant access to {name}"),
    )
    .await?;
    Ok(password)
}

/// Every domain service's database; `passwords` holds those read back from existing Secrets.
pub async fn ensure_databases(
    admin: &PgPool,
    tenant: &str,
    passwords: &BTreeMap<Service, String>,
) -> Result<BTreeMap<Service, String>, ProvisionError> {
    let mut out = BTreeMap::new();
    for service in SERVICES.into_iter().filter(|s| s.has_database()) {
        let password = ensure_database(
            admin,
            tenant,
            service,
            passwords.get(&service).map(String::as_str),
        )
        .await?;
        out.insert(service, password);
    }
    Ok(out)
}

/// Drops the service's database (forcing its connections out) and role; nothing there is fine.
pub async fn drop_database(
    admin: &PgPool,
    tenant: &str,
    service: Service,
) -> Result<(), ProvisionError> {
    let name = database_name(tenant, service);
    let ident = quote_ident(&name);
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&name)
    .execute(admin)
    .await
    .map_err(db_err(format!("terminate connections to {name}")))?;
    exec(
        admin,
        &format!("DROP DATABASE IF EXISTS {ident} WITH (FORCE)"),
        &format!("drop database {name}"),
    )
    .await?;
    exec(
        admin,
        &format!("DROP ROLE IF EXISTS {ident}"),
        &format!("drop role {name}"),
    )
    .await
}

/// Drops every database and role of the tenant.
pub async fn drop_databases(admin: &PgPool, tenant: &str) -> Result<(), ProvisionError> {
    for service in SERVICES.into_iter().filter(|s| s.has_database()) {
        drop_database(admin, tenant, service).await?;
    }
    Ok(())
}

pub use carerp_kit::envelope::stream_name;

/// How the tenant's spec wants its stream kept, checked by the kit (max age at least 1h); the
/// rest of the stream's shape (subjects, file storage, the 2-minute duplicate window the outbox
/// relay relies on, never longer than the max age) is the kit's.
pub fn stream_settings(spec: &MessagingSpec) -> Result<StreamSettings, ProvisionError> {
    let settings = StreamSettings {
        max_age: parse_duration(&spec.max_age).map_err(ProvisionError::Spec)?,
        replicas: usize::try_from(spec.replicas.max(1)).unwrap_or(1),
        dead_letter_max_age: parse_duration(&spec.dead_letter_max_age)
            .map_err(|reason| ProvisionError::Spec(format!("deadLetterMaxAge: {reason}")))?,
    };
    settings
        .check()
        .map_err(|err| ProvisionError::Spec(format!("spec.messaging: {err}")))?;
    Ok(settings)
}

/// Creates the stream, or updates it to match the spec.
pub async fn ensure_stream(
    js: &jetstream::Context,
    tenant: &str,
    spec: &MessagingSpec,
) -> Result<jetstream::stream::Info, ProvisionError> {
    carerp_kit::stream::ensure_stream(js, tenant, &stream_settings(spec)?)
        .await
        .map_err(|err| ProvisionError::Nats {
            action: format!("create or update stream {}", stream_name(tenant)),
            message: err.to_string(),
        })
}

/// Deletes the events stream and the dead-letter stream; returns whether there was either.
pub async fn delete_stream(js: &jetstream::Context, tenant: &str) -> Result<bool, ProvisionError> {
    carerp_kit::stream::delete_streams(js, tenant)
        .await
        .map(|deleted| deleted > 0)
        .map_err(|err| ProvisionError::Nats {
            action: format!(
                "delete streams {} and {}",
                stream_name(tenant),
                carerp_kit::envelope::dlq_stream_name(tenant)
            ),
            message: err.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_architecture() {
        assert_eq!(
            database_name("acme-motors", Service::Workorder),
            "t_acme_motors_workorder"
        );
        assert_eq!(stream_name("acme-motors"), "CARERP_ACME_MOTORS");
        let settings = stream_settings(&MessagingSpec::default()).unwrap();
        let c = carerp_kit::stream::stream_config("acme-motors", &settings);
        assert_eq!(c.subjects, ["carerp.acme-motors.>"]);
        assert_eq!(c.duplicate_window, std::time::Duration::from_secs(120));
        assert_eq!(c.max_age, std::time::Duration::from_secs(168 * 3600));
        assert_eq!(c.storage, async_nats::jetstream::stream::StorageType::File);
    }

    #[test]
    fn passwords_are_random_and_url_safe() {
        let a = new_password();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, new_password());
    }

    #[test]
    fn literals_and_identifiers_are_escaped() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
