//! Users, sessions, tokens, the sign-in throttle and the audit trail in PostgreSQL. Each
//! function is one use case: its SQL, its transaction, its audit entry and the events it
//! writes to the outbox in that transaction.

use carerp_kit::RequestContext;
use carerp_kit::auth::{Role, Secret};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::config::OwnerBootstrap;
use crate::domain::{self, FailureRecord};
use crate::error::Error;
use crate::events::{self, RevokeReason};

/// Serialises owner bootstrap and every change that could leave the tenant without an
/// active owner, across replicas (`pg_advisory_xact_lock`).
const OWNERS_LOCK: i64 = 0x6361_7265_7270_0001;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub active: bool,
    pub must_change_password: bool,
    pub last_sign_in_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl UserRow {
    /// The role; the table's CHECK allows only known names, and anything else would get the
    /// narrowest role rather than a wider one.
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Technician)
    }

    pub fn is_active_owner(&self) -> bool {
        self.active && self.role() == Role::Owner
    }
}

/// A user with their password hash, for the few places that check a password.
pub struct Credentials {
    pub user: UserRow,
    pub password_hash: Secret,
}

#[derive(sqlx::FromRow)]
struct CredentialsRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
}

impl From<CredentialsRow> for Credentials {
    fn from(row: CredentialsRow) -> Self {
        Self {
            user: row.user,
            password_hash: Secret::new(row.password_hash),
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiTokenRow {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiTokenRow {
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Technician)
    }
}

/// One entry of the audit trail, as written and as read.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor_id: String,
    pub action: String,
    pub target: String,
    pub service: String,
    pub details: serde_json::Value,
    pub client_address: String,
}

impl AuditRecord {
    /// An entry of identity's own, now.
    pub fn new(actor: &str, action: &str, target: String, details: serde_json::Value) -> Self {
        Self {
            id: Uuid::now_v7(),
            at: Utc::now(),
            actor_id: actor.to_string(),
            action: action.to_string(),
            target,
            service: "identity".into(),
            details,
            client_address: String::new(),
        }
    }

    pub fn from_address(mut self, client_address: &str) -> Self {
        self.client_address = client_address.trim().chars().take(100).collect();
        self
    }
}

pub fn user_target(id: Uuid) -> String {
    format!("user/{id}")
}

pub fn api_token_target(id: Uuid) -> String {
    format!("api-token/{id}")
}

macro_rules! user_columns {
    () => {
        "id, email, display_name, role, active, must_change_password, last_sign_in_at, \
         created_at, updated_at, version"
    };
}
macro_rules! api_token_columns {
    () => {
        "id, name, role, created_by, created_at, expires_at, revoked_at, last_used_at"
    };
}

pub async fn record_audit(conn: &mut PgConnection, entry: &AuditRecord) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor_id, action, target, service, details, client_address)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(entry.id)
    .bind(entry.at)
    .bind(&entry.actor_id)
    .bind(&entry.action)
    .bind(&entry.target)
    .bind(&entry.service)
    .bind(&entry.details)
    .bind(&entry.client_address)
    .execute(conn)
    .await?;
    Ok(())
}

// ---- owner bootstrap ----

pub async fn has_owner(pool: &PgPool) -> Result<bool, Error> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'OWNER')")
            .fetch_one(pool)
            .await?,
    )
}

/// Creates the tenant's first owner unless there is an owner already; replicas starting
/// together create one between them. `None` when nothing was created.
pub async fn bootstrap_owner(
    pool: &PgPool,
    owner: &OwnerBootstrap,
    password_hash: &Secret,
) -> Result<Option<UserRow>, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(OWNERS_LOCK)
        .execute(&mut *tx)
        .await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'OWNER')")
            .fetch_one(&mut *tx)
            .await?;
    if exists {
        tx.rollback().await?;
        return Ok(None);
    }
    let inserted = sqlx::query_as::<_, UserRow>(concat!(
        "INSERT INTO users (id, email, display_name, role, password_hash, must_change_password)
         VALUES ($1, $2, $3, 'OWNER', $4, $5) RETURNING ",
        user_columns!()
    ))
    .bind(Uuid::now_v7())
    .bind(&owner.email)
    .bind(&owner.display_name)
    .bind(password_hash.expose())
    .bind(owner.temporary)
    .fetch_one(&mut *tx)
    .await;
    let user = match inserted {
        Err(err) if carerp_kit::status::is_unique_violation(&err, "users_email_unique") => {
            return Err(Error::DuplicateEmail(owner.email.clone()));
        }
        other => other?,
    };
    let entry = AuditRecord::new(
        carerp_kit::context::SYSTEM_ACTOR,
        "user.created",
        user_target(user.id),
        serde_json::json!({ "email": user.email, "role": "OWNER", "bootstrap": true }),
    );
    record_audit(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(Some(user))
}

// ---- signing in ----

pub async fn credentials_by_email(
    pool: &PgPool,
    email: &str,
) -> Result<Option<Credentials>, Error> {
    let row: Option<CredentialsRow> = sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        ", password_hash FROM users WHERE lower(email) = lower($1)"
    ))
    .bind(email.trim())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Credentials::from))
}

pub async fn credentials_of(pool: &PgPool, id: Uuid) -> Result<Credentials, Error> {
    let row: Option<CredentialsRow> = sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        ", password_hash FROM users WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(Credentials::from).ok_or(Error::UserNotFound(id))
}

/// The latest lock of any of `keys` that is still ahead of `now`.
pub async fn throttled_until(
    pool: &PgPool,
    keys: &[String],
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, Error> {
    Ok(sqlx::query_scalar(
        "SELECT max(locked_until) FROM sign_in_throttle WHERE key = ANY($1) AND locked_until > $2",
    )
    .bind(keys)
    .bind(now)
    .fetch_one(pool)
    .await?)
}

/// Counts one failed sign-in against every key and records it in the audit trail.
pub async fn record_sign_in_failure(
    pool: &PgPool,
    keys: &[String],
    now: DateTime<Utc>,
    entry: &AuditRecord,
) -> Result<(), Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    for key in keys {
        // The row exists (with no failures) before it is locked, so that two replicas
        // counting the first failure of a key count two.
        sqlx::query(
            "INSERT INTO sign_in_throttle (key, failures, last_failure_at, locked_until)
             VALUES ($1, 0, $2, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let (failures, last_failure_at): (i32, DateTime<Utc>) = sqlx::query_as(
            "SELECT failures, last_failure_at FROM sign_in_throttle WHERE key = $1 FOR UPDATE",
        )
        .bind(key)
        .fetch_one(&mut *tx)
        .await?;
        let previous = (failures > 0).then_some(FailureRecord {
            failures,
            last_failure_at,
        });
        let (record, locked_until) = domain::record_failure(previous, now);
        sqlx::query(
            "UPDATE sign_in_throttle SET failures = $2, last_failure_at = $3, locked_until = $4
             WHERE key = $1",
        )
        .bind(key)
        .bind(record.failures)
        .bind(record.last_failure_at)
        .bind(locked_until)
        .execute(&mut *tx)
        .await?;
    }
    record_audit(&mut tx, entry).await?;
    tx.commit().await?;
    Ok(())
}

/// A new session with its first refresh token; the account's failures are forgotten.
pub struct NewSession<'a> {
    pub session_id: Uuid,
    pub refresh_hash: Vec<u8>,
    pub refresh_expires_at: DateTime<Utc>,
    pub client_address: &'a str,
}

pub async fn sign_in(
    pool: &PgPool,
    user_id: Uuid,
    session: &NewSession<'_>,
    account_key: &str,
) -> Result<UserRow, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    sqlx::query("INSERT INTO sessions (id, user_id, client_address) VALUES ($1, $2, $3)")
        .bind(session.session_id)
        .bind(user_id)
        .bind(session.client_address)
        .execute(&mut *tx)
        .await?;
    insert_refresh_token(
        &mut tx,
        session.session_id,
        &session.refresh_hash,
        session.refresh_expires_at,
    )
    .await?;
    let user: UserRow = sqlx::query_as(concat!(
        "UPDATE users SET last_sign_in_at = now() WHERE id = $1 RETURNING ",
        user_columns!()
    ))
    .bind(user_id)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM sign_in_throttle WHERE key = $1")
        .bind(account_key)
        .execute(&mut *tx)
        .await?;
    let entry = AuditRecord::new(
        &user_id.to_string(),
        "auth.sign-in",
        user_target(user_id),
        serde_json::json!({ "sessionId": session.session_id }),
    )
    .from_address(session.client_address);
    record_audit(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(user)
}

async fn insert_refresh_token(
    tx: &mut PgConnection,
    session_id: Uuid,
    hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO refresh_tokens (hash, session_id, expires_at) VALUES ($1, $2, $3)")
        .bind(hash)
        .bind(session_id)
        .bind(expires_at)
        .execute(tx)
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct PresentedToken {
    session_id: Uuid,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    user_id: Uuid,
    revoked_at: Option<DateTime<Utc>>,
}

/// The refresh token that replaces a presented one.
pub struct NextToken<'a> {
    pub hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
    pub client_address: &'a str,
}

/// Rotates the refresh token hashed `presented`: it is marked used and `next` (for the same
/// session) replaces it; returns the user and the session. A token used before revokes its whole session, committed
/// before the refusal is returned, so neither it nor the newest one works again.
pub async fn rotate_refresh_token(
    pool: &PgPool,
    context: &RequestContext,
    presented: &[u8],
    next: &NextToken<'_>,
    now: DateTime<Utc>,
) -> Result<(UserRow, Uuid), Error> {
    const REFUSED: &str = "the refresh token is not valid: sign in again";
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let token: Option<PresentedToken> = sqlx::query_as(
        "SELECT r.session_id, r.expires_at, r.used_at, s.user_id, s.revoked_at
         FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id
         WHERE r.hash = $1 FOR UPDATE OF r, s",
    )
    .bind(presented)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(token) = token else {
        return Err(Error::TokenRefused(REFUSED));
    };
    if token.revoked_at.is_some() {
        return Err(Error::TokenRefused("the session has ended: sign in again"));
    }
    if token.used_at.is_some() {
        revoke_session(
            &mut tx,
            context,
            token.session_id,
            token.user_id,
            RevokeReason::RefreshTokenReused,
            now,
        )
        .await?;
        let entry = AuditRecord::new(
            &token.user_id.to_string(),
            "auth.refresh-reused",
            user_target(token.user_id),
            serde_json::json!({ "sessionId": token.session_id }),
        )
        .from_address(next.client_address);
        record_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        tracing::warn!(session_id = %token.session_id, user_id = %token.user_id, "a used refresh token was presented again; session revoked");
        return Err(Error::TokenRefused(
            "the refresh token was already used: the session has ended, sign in again",
        ));
    }
    if token.expires_at <= now {
        return Err(Error::TokenRefused(
            "the refresh token has expired: sign in again",
        ));
    }
    let user: UserRow = sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = $1"
    ))
    .bind(token.user_id)
    .fetch_one(&mut *tx)
    .await?;
    if !user.active {
        return Err(Error::TokenRefused("the user is deactivated"));
    }
    sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE hash = $1")
        .bind(presented)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    insert_refresh_token(&mut tx, token.session_id, &next.hash, next.expires_at).await?;
    tx.commit().await?;
    Ok((user, token.session_id))
}

/// Ends one session, if it is still open, and tells the BFF. True when it was open.
pub async fn revoke_session(
    tx: &mut PgConnection,
    context: &RequestContext,
    session_id: Uuid,
    user_id: Uuid,
    reason: RevokeReason,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let revoked = sqlx::query(
        "UPDATE sessions SET revoked_at = $3, revoke_reason = $4
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(session_id)
    .bind(user_id)
    .bind(now)
    .bind(reason.as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if revoked {
        events::session_revoked(tx, context, session_id, user_id, reason, now).await?;
    }
    Ok(revoked)
}

/// Ends every open session of a user but `except`.
pub async fn revoke_user_sessions(
    tx: &mut PgConnection,
    context: &RequestContext,
    user_id: Uuid,
    reason: RevokeReason,
    except: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<usize, sqlx::Error> {
    let ended: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = $2, revoke_reason = $3
         WHERE user_id = $1 AND revoked_at IS NULL AND ($4::uuid IS NULL OR id <> $4)
         RETURNING id",
    )
    .bind(user_id)
    .bind(now)
    .bind(reason.as_str())
    .bind(except)
    .fetch_all(&mut *tx)
    .await?;
    for session_id in &ended {
        events::session_revoked(tx, context, *session_id, user_id, reason, now).await?;
    }
    Ok(ended.len())
}

/// Ends the caller's session. A token of no open session (an API token's) changes nothing.
pub async fn sign_out(
    pool: &PgPool,
    context: &RequestContext,
    user_id: Uuid,
    session_id: Uuid,
) -> Result<(), Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    if revoke_session(
        &mut tx,
        context,
        session_id,
        user_id,
        RevokeReason::SignOut,
        Utc::now(),
    )
    .await?
    {
        let entry = AuditRecord::new(
            &user_id.to_string(),
            "auth.sign-out",
            user_target(user_id),
            serde_json::json!({ "sessionId": session_id }),
        );
        record_audit(&mut tx, &entry).await?;
    }
    tx.commit().await?;
    Ok(())
}

// ---- people ----

pub async fn get_user(pool: &PgPool, id: Uuid) -> Result<UserRow, Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(Error::UserNotFound(id))
}

/// Users in creation order (UUIDv7) after `after`; `limit` rows (callers ask one more).
pub async fn list_users(
    pool: &PgPool,
    include_inactive: bool,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<UserRow>, Error> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE ($1 OR active) AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(include_inactive)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Sets the caller's own password and clears `must_change_password`; the user's other
/// sessions end (whoever knew the old password is signed out).
pub async fn change_password(
    pool: &PgPool,
    context: &RequestContext,
    user_id: Uuid,
    current_session: Uuid,
    password_hash: &Secret,
) -> Result<UserRow, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let user: UserRow = sqlx::query_as(concat!(
        "UPDATE users SET password_hash = $2, must_change_password = false,
                updated_at = now(), version = version + 1
         WHERE id = $1 RETURNING ",
        user_columns!()
    ))
    .bind(user_id)
    .bind(password_hash.expose())
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::UserNotFound(user_id))?;
    revoke_user_sessions(
        &mut tx,
        context,
        user_id,
        RevokeReason::PasswordChanged,
        Some(current_session),
        Utc::now(),
    )
    .await?;
    let entry = AuditRecord::new(
        &user_id.to_string(),
        "user.password-changed",
        user_target(user_id),
        serde_json::json!({}),
    );
    record_audit(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(user)
}

pub struct NewUser {
    pub email: String,
    pub display_name: String,
    pub role: Role,
}

/// The user created earlier under `idempotency_key`, if any.
pub async fn user_by_key(pool: &PgPool, key: Option<&str>) -> Result<Option<UserRow>, Error> {
    let Some(key) = key else {
        return Ok(None);
    };
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE idempotency_key = $1"
    ))
    .bind(key)
    .fetch_optional(pool)
    .await?)
}

/// Creates a user who must change the one-time password at first sign-in. `None` when a
/// concurrent call with the same idempotency key committed first (the caller reads it).
pub async fn create_user(
    pool: &PgPool,
    actor: &str,
    user: &NewUser,
    password_hash: &Secret,
    idempotency_key: Option<&str>,
) -> Result<Option<UserRow>, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let inserted: Result<Option<UserRow>, sqlx::Error> = sqlx::query_as(concat!(
        "INSERT INTO users (id, email, display_name, role, password_hash, must_change_password,
                            idempotency_key)
         VALUES ($1, $2, $3, $4, $5, true, $6)
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING ",
        user_columns!()
    ))
    .bind(Uuid::now_v7())
    .bind(&user.email)
    .bind(&user.display_name)
    .bind(user.role.as_str())
    .bind(password_hash.expose())
    .bind(idempotency_key)
    .fetch_optional(&mut *tx)
    .await;
    let created = match inserted {
        Err(err) if carerp_kit::status::is_unique_violation(&err, "users_email_unique") => {
            return Err(Error::DuplicateEmail(user.email.clone()));
        }
        other => other?,
    };
    let Some(created) = created else {
        tx.rollback().await?;
        return Ok(None);
    };
    let entry = AuditRecord::new(
        actor,
        "user.created",
        user_target(created.id),
        serde_json::json!({ "email": created.email, "role": created.role }),
    );
    record_audit(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(Some(created))
}

/// What an owner changes about a user; `None` keeps the field.
#[derive(Debug, Default)]
pub struct UserChanges {
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub active: Option<bool>,
}

/// Applies `changes` when `expected_version` (if given) still holds. Nobody deactivates or
/// demotes themselves, and the last active owner stays one; deactivating or changing the
/// role ends the user's sessions at once.
pub async fn update_user(
    pool: &PgPool,
    context: &RequestContext,
    actor: Uuid,
    id: Uuid,
    changes: &UserChanges,
    expected_version: Option<i64>,
) -> Result<UserRow, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(OWNERS_LOCK)
        .execute(&mut *tx)
        .await?;
    let current: UserRow = sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::UserNotFound(id))?;
    if let Some(expected) = expected_version
        && expected != current.version
    {
        return Err(Error::VersionConflict {
            id,
            expected,
            actual: current.version,
        });
    }
    let display_name = changes
        .display_name
        .clone()
        .unwrap_or_else(|| current.display_name.clone());
    let role = changes.role.unwrap_or(current.role());
    let active = changes.active.unwrap_or(current.active);
    let role_changed = role != current.role();
    let deactivated = current.active && !active;
    let stays_active_owner = active && role == Role::Owner;
    if current.is_active_owner() && !stays_active_owner {
        if id == actor {
            return Err(Error::Refused(
                "you cannot deactivate or demote yourself: another owner must do it",
            ));
        }
        let other_owners: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM users WHERE role = 'OWNER' AND active AND id <> $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if other_owners == 0 {
            return Err(Error::Refused(
                "the last active owner cannot be deactivated or demoted: make another user an owner first",
            ));
        }
    }
    if display_name == current.display_name && !role_changed && active == current.active {
        tx.rollback().await?;
        return Ok(current);
    }
    let updated: UserRow = sqlx::query_as(concat!(
        "UPDATE users SET display_name = $2, role = $3, active = $4,
                updated_at = now(), version = version + 1
         WHERE id = $1 RETURNING ",
        user_columns!()
    ))
    .bind(id)
    .bind(&display_name)
    .bind(role.as_str())
    .bind(active)
    .fetch_one(&mut *tx)
    .await?;
    let now = Utc::now();
    if deactivated {
        revoke_user_sessions(
            &mut tx,
            context,
            id,
            RevokeReason::UserDeactivated,
            None,
            now,
        )
        .await?;
    } else if role_changed {
        revoke_user_sessions(&mut tx, context, id, RevokeReason::RoleChanged, None, now).await?;
    }
    let mut details = serde_json::Map::new();
    if role_changed {
        details.insert(
            "role".into(),
            serde_json::json!({ "from": current.role, "to": updated.role }),
        );
    }
    if active != current.active {
        details.insert(
            "active".into(),
            serde_json::json!({ "from": current.active, "to": active }),
        );
    }
    if display_name != current.display_name {
        details.insert(
            "displayName".into(),
            serde_json::json!({ "from": current.display_name, "to": display_name }),
        );
    }
    let entry = AuditRecord::new(
        &actor.to_string(),
        "user.updated",
        user_target(id),
        serde_json::Value::Object(details),
    );
    record_audit(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(updated)
}

/// Gives a user a new one-time password and ends their sessions.
pub async fn reset_password(
    pool: &PgPool,
    context: &RequestContext,
    actor: Uuid,
    id: Uuid,
    password_hash: &Secret,
) -> Result<UserRow, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let user: UserRow = sqlx::query_as(concat!(
        "UPDATE users SET password_hash = $2, must_change_password = true,
                updated_at = now(), version = version + 1
         WHERE id = $1 RETURNING ",
        user_columns!()
    ))
    .bind(id)
    .bind(password_hash.expose())
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::UserNotFound(id))?;
    revoke_user_sessions(
        &mut tx,
        context,
        id,
        RevokeReason::PasswordReset,
        None,
        Utc::now(),
    )
    .await?;
    let entry = AuditRecord::new(
        &actor.to_string(),
        "user.password-reset",
        user_target(id),
        serde_json::json!({}),
    );
    record_audit(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(user)
}

// ---- API tokens ----

pub struct NewApiToken {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub secret_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

pub async fn create_api_token(
    pool: &PgPool,
    actor: Uuid,
    token: &NewApiToken,
) -> Result<ApiTokenRow, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let row: ApiTokenRow = sqlx::query_as(concat!(
        "INSERT INTO api_tokens (id, name, role, secret_hash, created_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
        api_token_columns!()
    ))
    .bind(token.id)
    .bind(&token.name)
    .bind(token.role.as_str())
    .bind(&token.secret_hash)
    .bind(actor)
    .bind(token.expires_at)
    .fetch_one(&mut *tx)
    .await?;
    let entry = AuditRecord::new(
        &actor.to_string(),
        "api-token.created",
        api_token_target(row.id),
        serde_json::json!({ "name": row.name, "role": row.role, "expiresAt": row.expires_at }),
    );
    record_audit(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn list_api_tokens(
    pool: &PgPool,
    include_revoked: bool,
) -> Result<Vec<ApiTokenRow>, Error> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        api_token_columns!(),
        " FROM api_tokens WHERE ($1 OR revoked_at IS NULL) ORDER BY id"
    ))
    .bind(include_revoked)
    .fetch_all(pool)
    .await?)
}

/// Revokes an API token (a second time changes nothing) and tells the BFF.
pub async fn revoke_api_token(
    pool: &PgPool,
    context: &RequestContext,
    actor: Uuid,
    id: Uuid,
) -> Result<ApiTokenRow, Error> {
    let mut tx = carerp_kit::outbox::begin(pool).await?;
    let now = Utc::now();
    let revoked: Option<ApiTokenRow> = sqlx::query_as(concat!(
        "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING ",
        api_token_columns!()
    ))
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = revoked else {
        tx.rollback().await?;
        return sqlx::query_as(concat!(
            "SELECT ",
            api_token_columns!(),
            " FROM api_tokens WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(Error::ApiTokenNotFound(id));
    };
    events::session_revoked(&mut tx, context, id, id, RevokeReason::ApiTokenRevoked, now).await?;
    let entry = AuditRecord::new(
        &actor.to_string(),
        "api-token.revoked",
        api_token_target(id),
        serde_json::json!({ "name": row.name }),
    );
    record_audit(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(row)
}

/// An API token with the hash of its secret, to check a presented one.
pub async fn api_token_with_hash(
    pool: &PgPool,
    id: Uuid,
) -> Result<Option<(ApiTokenRow, Vec<u8>)>, Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        token: ApiTokenRow,
        secret_hash: Vec<u8>,
    }
    let row: Option<Row> = sqlx::query_as(concat!(
        "SELECT ",
        api_token_columns!(),
        ", secret_hash FROM api_tokens WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| (row.token, row.secret_hash)))
}

/// Notes that an API token was used, at most once a minute (a busy integration would
/// otherwise write on every call).
pub async fn touch_api_token(pool: &PgPool, id: Uuid) -> Result<(), Error> {
    sqlx::query(
        "UPDATE api_tokens SET last_used_at = now()
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

// ---- audit trail ----

#[derive(Debug, Default)]
pub struct AuditFilter {
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Entries newest first, after the cursor `(at, id)` of the last one served.
pub async fn list_audit(
    pool: &PgPool,
    filter: &AuditFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<AuditRecord>, Error> {
    let (after_at, after_id) = after.unzip();
    Ok(sqlx::query_as(
        "SELECT id, at, actor_id, action, target, service, details, client_address
         FROM audit_log
         WHERE ($1::text IS NULL OR actor_id = $1)
           AND ($2::text IS NULL OR action = $2)
           AND ($3::timestamptz IS NULL OR at >= $3)
           AND ($4::timestamptz IS NULL OR at < $4)
           AND ($5::timestamptz IS NULL OR (at, id) < ($5, $6))
         ORDER BY at DESC, id DESC
         LIMIT $7",
    )
    .bind(&filter.actor_id)
    .bind(&filter.action)
    .bind(filter.from)
    .bind(filter.to)
    .bind(after_at)
    .bind(after_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
