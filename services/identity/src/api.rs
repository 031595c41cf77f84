//! The gRPC handlers: decode and validate the request, call the store, encode the answer.
//!
//! Passwords and tokens are wrapped in [`Secret`] the moment they leave the request, and
//! requests are never logged (their generated `Debug` would show the password).

use carerp_kit::auth::{Role, Secret, SigningKey};
use carerp_kit::convert::{audit, from_timestamp, timestamp};
use carerp_kit::grpc::{principal, request_context};
use carerp_kit::status::parse_id;
use carerp_kit::{Violations, page};
use carerp_proto::common::v1::{PageRequest, PageResponse};
use carerp_proto::identity::v1 as pb;
use carerp_proto::identity::v1::identity_service_server::IdentityService;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{
    self, MAX_API_TOKEN_NAME, MAX_DISPLAY_NAME, REFRESH_TOKEN_LIFETIME, account_key, address_key,
    check_email, check_new_password, remaining_lock,
};
use crate::error::Error;
use crate::secrets::{self, HashError};
use crate::store::{self, ApiTokenRow, AuditRecord, UserRow};

// The kit's bound on idempotency keys, one for every service.
use carerp_kit::idempotency::MAX_KEY as MAX_IDEMPOTENCY_KEY;

pub struct IdentityApi {
    pool: PgPool,
    signing_key: SigningKey,
    tenant: String,
    /// Verified against when the email is unknown, so that answer takes as long.
    dummy_hash: Secret,
}

impl IdentityApi {
    pub async fn new(pool: PgPool, signing_key: SigningKey, tenant: String) -> Result<Self, Error> {
        let dummy_hash = blocking(secrets::dummy_hash).await??;
        Ok(Self {
            pool,
            signing_key,
            tenant,
            dummy_hash,
        })
    }

    /// A session's answer: a fresh access token for `user` and the refresh token given.
    fn session(
        &self,
        user: UserRow,
        session_id: Uuid,
        refresh_token: Secret,
        refresh_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<pb::Session, Error> {
        let (access, expires_at) =
            self.signing_key
                .issue(&self.tenant, user.id, user.role(), session_id, now)?;
        Ok(pb::Session {
            access_token: access.expose().to_string(),
            access_token_expires_at: Some(timestamp(expires_at)),
            refresh_token: refresh_token.expose().to_string(),
            refresh_token_expires_at: Some(timestamp(refresh_expires_at)),
            session_id: session_id.to_string(),
            user: Some(user_to_pb(user)),
        })
    }

    /// Counts a failed sign-in and gives the one answer every failure gets.
    async fn sign_in_failed(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
        user: Option<&UserRow>,
        email: &str,
        reason: &str,
        client_address: &str,
    ) -> Error {
        let actor = user.map(|u| u.id.to_string()).unwrap_or_default();
        let target = user.map(|u| store::user_target(u.id)).unwrap_or_default();
        let entry = AuditRecord::new(
            &actor,
            "auth.sign-in-failed",
            target,
            serde_json::json!({ "email": email, "reason": reason }),
        )
        .from_address(client_address);
        match store::record_sign_in_failure(&self.pool, keys, now, &entry).await {
            Ok(()) => Error::WrongCredentials,
            Err(err) => err,
        }
    }

    async fn hash(&self, password: &Secret) -> Result<Secret, Error> {
        let password = password.clone();
        Ok(blocking(move || secrets::hash_password(&password)).await??)
    }
}

/// Runs CPU-heavy work (Argon2) on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HashError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| HashError::new(err.to_string()))
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn login(&self, request: Request<pb::LoginRequest>) -> Reply<pb::Session> {
        let req = request.into_inner();
        let password = Secret::new(req.password);
        let email = req.email.trim().to_string();
        let mut v = Violations::new();
        if email.is_empty() {
            v.add("email", "is required");
        }
        if password.expose().is_empty() {
            v.add("password", "is required");
        }
        v.into_result(()).map_err(Error::from)?;
        let now = Utc::now();
        let mut keys = vec![account_key(&email)];
        keys.extend(address_key(&req.client_address));
        if let Some(until) = store::throttled_until(&self.pool, &keys, now).await?
            && let Some(retry_after) = remaining_lock(until, now)
        {
            return Err(Error::Throttled { retry_after }.into());
        }
        let credentials = store::credentials_by_email(&self.pool, &email).await?;
        let hash = credentials
            .as_ref()
            .map_or_else(|| self.dummy_hash.clone(), |c| c.password_hash.clone());
        let matches = blocking(move || secrets::verify_password(&password, &hash))
            .await
            .map_err(Error::from)?;
        let user = match credentials {
            Some(c) if matches && c.user.active => c.user,
            other => {
                let user = other.map(|c| c.user);
                let reason = match &user {
                    None => "unknown-email",
                    Some(u) if !u.active => "inactive",
                    Some(_) => "wrong-password",
                };
                // The lock starts when the failure is known, not when the request came in.
                let err = self
                    .sign_in_failed(
                        &keys,
                        Utc::now(),
                        user.as_ref(),
                        &email,
                        reason,
                        &req.client_address,
                    )
                    .await;
                return Err(err.into());
            }
        };
        let refresh = secrets::random_token();
        let refresh_expires_at = now + domain::to_delta(REFRESH_TOKEN_LIFETIME);
        let session = store::NewSession {
            session_id: Uuid::now_v7(),
            refresh_hash: secrets::token_hash(refresh.expose()),
            refresh_expires_at,
            client_address: req.client_address.trim(),
        };
        let user = store::sign_in(&self.pool, user.id, &session, &keys[0]).await?;
        let answer = self.session(user, session.session_id, refresh, refresh_expires_at, now)?;
        Ok(Response::new(answer))
    }

    async fn refresh(&self, request: Request<pb::RefreshRequest>) -> Reply<pb::Session> {
        let context = request_context(&request);
        let req = request.into_inner();
        let presented = Secret::new(req.refresh_token);
        if presented.expose().trim().is_empty() {
            return Err(Error::from(carerp_kit::FieldViolation::new(
                "refresh_token",
                "is required",
            ))
            .into());
        }
        let now = Utc::now();
        let refresh = secrets::random_token();
        let next = store::NextToken {
            hash: secrets::token_hash(refresh.expose()),
            expires_at: now + domain::to_delta(REFRESH_TOKEN_LIFETIME),
            client_address: req.client_address.trim(),
        };
        let presented = secrets::token_hash(presented.expose().trim());
        let (user, session_id) =
            store::rotate_refresh_token(&self.pool, &context, &presented, &next, now).await?;
        let answer = self.session(user, session_id, refresh, next.expires_at, now)?;
        Ok(Response::new(answer))
    }

    async fn authenticate_api_token(
        &self,
        request: Request<pb::AuthenticateApiTokenRequest>,
    ) -> Reply<pb::AccessToken> {
        const INVALID: &str = "the API token is not valid";
        let presented = Secret::new(request.into_inner().token);
        let (id, secret) =
            domain::parse_api_token(presented.expose()).ok_or(Error::TokenRefused(INVALID))?;
        let (token, stored) = store::api_token_with_hash(&self.pool, id)
            .await?
            .ok_or(Error::TokenRefused(INVALID))?;
        if !secrets::hashes_match(&secrets::token_hash(secret), &stored) {
            return Err(Error::TokenRefused(INVALID).into());
        }
        let now = Utc::now();
        if token.revoked_at.is_some() {
            return Err(Error::TokenRefused("the API token has been revoked").into());
        }
        if token.expires_at <= now {
            return Err(Error::TokenRefused("the API token has expired").into());
        }
        store::touch_api_token(&self.pool, id).await?;
        let (access, expires_at) = self
            .signing_key
            .issue(&self.tenant, id, token.role(), id, now)
            .map_err(Error::from)?;
        Ok(Response::new(pb::AccessToken {
            access_token: access.expose().to_string(),
            expires_at: Some(timestamp(expires_at)),
            role: token.role().to_proto().into(),
            subject: id.to_string(),
        }))
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Reply<pb::LogoutResponse> {
        let caller = principal(&request)?;
        let context = request_context(&request);
        store::sign_out(&self.pool, &context, caller.subject, caller.session_id).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn get_me(&self, request: Request<pb::GetMeRequest>) -> Reply<pb::User> {
        let caller = principal(&request)?;
        let user = store::get_user(&self.pool, caller.subject).await?;
        Ok(Response::new(user_to_pb(user)))
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Reply<pb::User> {
        let caller = principal(&request)?;
        let context = request_context(&request);
        let req = request.into_inner();
        let (current, new) = (
            Secret::new(req.current_password),
            Secret::new(req.new_password),
        );
        let credentials = store::credentials_of(&self.pool, caller.subject).await?;
        let user = &credentials.user;
        let mut v = Violations::new();
        v.check(check_new_password(
            "new_password",
            new.expose(),
            &[&user.email, &user.display_name],
        ));
        if current.expose().is_empty() {
            v.add("current_password", "is required");
        } else {
            let hash = credentials.password_hash.clone();
            let given = current.clone();
            let matches = blocking(move || secrets::verify_password(&given, &hash))
                .await
                .map_err(Error::from)?;
            if !matches {
                v.add("current_password", "is not your current password");
            }
        }
        if current == new && v.is_empty() {
            v.add("new_password", "must differ from the current password");
        }
        v.into_result(()).map_err(Error::from)?;
        let hash = self.hash(&new).await?;
        let user = store::change_password(
            &self.pool,
            &context,
            caller.subject,
            caller.session_id,
            &hash,
        )
        .await?;
        Ok(Response::new(user_to_pb(user)))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Reply<pb::ListUsersResponse> {
        let req = request.into_inner();
        let (limit, after) = page_of::<Uuid>(req.page.as_ref())?;
        let rows = store::list_users(&self.pool, req.include_inactive, after, limit + 1).await?;
        let (rows, next_page_token) = page::split_page(rows, limit, |row| row.id);
        Ok(Response::new(pb::ListUsersResponse {
            users: rows.into_iter().map(user_to_pb).collect(),
            page: Some(PageResponse { next_page_token }),
        }))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Reply<pb::User> {
        let id = parse_id("id", &request.get_ref().id).map_err(Error::from)?;
        Ok(Response::new(user_to_pb(
            store::get_user(&self.pool, id).await?,
        )))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Reply<pb::CreateUserResponse> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let email = req.email.trim().to_string();
        v.check(check_email("email", &email));
        let display_name = v.required_text("display_name", &req.display_name, MAX_DISPLAY_NAME);
        let role = required_role(&mut v, "role", req.role);
        let key = non_empty(&req.idempotency_key);
        if key.is_some_and(|k| k.chars().count() > MAX_IDEMPOTENCY_KEY) {
            v.add(
                "idempotency_key",
                format!("must be at most {MAX_IDEMPOTENCY_KEY} characters"),
            );
        }
        let role = v.into_result(role).map_err(Error::from)?;
        let repeated = |user: UserRow| {
            Response::new(pb::CreateUserResponse {
                user: Some(user_to_pb(user)),
                one_time_password: String::new(),
            })
        };
        if let Some(existing) = store::user_by_key(&self.pool, key).await? {
            return Ok(repeated(existing));
        }
        let password = secrets::one_time_password();
        let hash = self.hash(&password).await?;
        let new = store::NewUser {
            email,
            display_name,
            role: role.unwrap_or(Role::Technician),
        };
        let created = match store::create_user(&self.pool, &caller.actor(), &new, &hash, key).await
        {
            // A concurrent call with the same key may have created this very user.
            Err(Error::DuplicateEmail(email)) => match store::user_by_key(&self.pool, key).await? {
                Some(existing) => return Ok(repeated(existing)),
                None => return Err(Error::DuplicateEmail(email).into()),
            },
            other => other?,
        };
        let Some(user) = created else {
            return match store::user_by_key(&self.pool, key).await? {
                Some(existing) => Ok(repeated(existing)),
                None => Err(Error::Database(sqlx::Error::RowNotFound).into()),
            };
        };
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(user_to_pb(user)),
            one_time_password: password.expose().to_string(),
        }))
    }

    async fn update_user(&self, request: Request<pb::UpdateUserRequest>) -> Reply<pb::User> {
        let caller = principal(&request)?;
        let context = request_context(&request);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = parse_id("id", &req.id).map_err(|e| v.check(Err(e))).ok();
        let display_name = req
            .display_name
            .map(|name| v.required_text("display_name", &name, MAX_DISPLAY_NAME));
        let role = req
            .role
            .and_then(|value| required_role(&mut v, "role", value));
        let id = v.into_result(id).map_err(Error::from)?;
        let changes = store::UserChanges {
            display_name,
            role,
            active: req.active,
        };
        let user = store::update_user(
            &self.pool,
            &context,
            caller.subject,
            id.unwrap_or_default(),
            &changes,
            req.expected_version,
        )
        .await?;
        Ok(Response::new(user_to_pb(user)))
    }

    async fn reset_password(
        &self,
        request: Request<pb::ResetPasswordRequest>,
    ) -> Reply<pb::ResetPasswordResponse> {
        let caller = principal(&request)?;
        let context = request_context(&request);
        let id = parse_id("id", &request.get_ref().id).map_err(Error::from)?;
        store::get_user(&self.pool, id).await?;
        let password = secrets::one_time_password();
        let hash = self.hash(&password).await?;
        let user = store::reset_password(&self.pool, &context, caller.subject, id, &hash).await?;
        Ok(Response::new(pb::ResetPasswordResponse {
            user: Some(user_to_pb(user)),
            one_time_password: password.expose().to_string(),
        }))
    }

    async fn create_api_token(
        &self,
        request: Request<pb::CreateApiTokenRequest>,
    ) -> Reply<pb::CreateApiTokenResponse> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let name = v.required_text("name", &req.name, MAX_API_TOKEN_NAME);
        let role = required_role(&mut v, "role", req.role);
        let expires_at = match req.expires_at.as_ref().map(from_timestamp) {
            Some(None) => {
                v.add("expires_at", "is not a valid timestamp");
                None
            }
            given => domain::check_api_token_expiry(given.flatten(), Utc::now())
                .map_err(|e| v.check(Err(e)))
                .ok(),
        };
        let (role, expires_at) = v.into_result((role, expires_at)).map_err(Error::from)?;
        let secret = secrets::random_token();
        let token = store::NewApiToken {
            id: Uuid::now_v7(),
            name,
            role: role.unwrap_or(Role::Technician),
            secret_hash: secrets::token_hash(secret.expose()),
            expires_at: expires_at.unwrap_or_else(Utc::now),
        };
        let row = store::create_api_token(&self.pool, caller.subject, &token).await?;
        Ok(Response::new(pb::CreateApiTokenResponse {
            token: domain::format_api_token(row.id, secret.expose()),
            api_token: Some(api_token_to_pb(row)),
        }))
    }

    async fn list_api_tokens(
        &self,
        request: Request<pb::ListApiTokensRequest>,
    ) -> Reply<pb::ListApiTokensResponse> {
        let rows = store::list_api_tokens(&self.pool, request.get_ref().include_revoked).await?;
        Ok(Response::new(pb::ListApiTokensResponse {
            api_tokens: rows.into_iter().map(api_token_to_pb).collect(),
        }))
    }

    async fn revoke_api_token(
        &self,
        request: Request<pb::RevokeApiTokenRequest>,
    ) -> Reply<pb::ApiToken> {
        let caller = principal(&request)?;
        let context = request_context(&request);
        let id = parse_id("id", &request.get_ref().id).map_err(Error::from)?;
        let row = store::revoke_api_token(&self.pool, &context, caller.subject, id).await?;
        Ok(Response::new(api_token_to_pb(row)))
    }

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Reply<pb::ListAuditResponse> {
        let req = request.into_inner();
        let (limit, after) = page_of::<(DateTime<Utc>, Uuid)>(req.page.as_ref())?;
        let mut v = Violations::new();
        let mut time = |field: &str, value: Option<prost_types::Timestamp>| {
            value.and_then(|at| {
                let parsed = from_timestamp(&at);
                if parsed.is_none() {
                    v.add(field, "is not a valid timestamp");
                }
                parsed
            })
        };
        let (from, to) = (time("from", req.from), time("to", req.to));
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            v.add("to", "must not be before from");
        }
        v.into_result(()).map_err(Error::from)?;
        let filter = store::AuditFilter {
            actor_id: non_empty(&req.actor_id).map(str::to_string),
            action: non_empty(&req.action).map(str::to_string),
            from,
            to,
        };
        let rows = store::list_audit(&self.pool, &filter, after, limit + 1).await?;
        let (rows, next_page_token) = page::split_page(rows, limit, |row| (row.at, row.id));
        Ok(Response::new(pb::ListAuditResponse {
            entries: rows.into_iter().map(audit_to_pb).collect(),
            page: Some(PageResponse { next_page_token }),
        }))
    }
}

/// A role field that must name one of the five roles.
fn required_role(v: &mut Violations, field: &str, value: i32) -> Option<Role> {
    let role = Role::from_proto(value);
    if role.is_none() {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        v.add(field, format!("is required: one of {}", names.join(", ")));
    }
    role
}

/// Page size and the cursor after which the page starts.
fn page_of<C: Serialize + DeserializeOwned>(
    page: Option<&PageRequest>,
) -> Result<(i64, Option<C>), Error> {
    let mut v = Violations::new();
    let (size, token) = page.map_or((0, ""), |p| (p.page_size, p.page_token.as_str()));
    let limit = page::page_size(size)
        .map_err(|e| v.check(Err(e)))
        .unwrap_or(0);
    let after = page::decode_token::<C>(token)
        .map_err(|e| v.check(Err(e)))
        .unwrap_or(None);
    Ok(v.into_result((limit, after))?)
}

fn non_empty(value: &str) -> Option<&str> {
    let value = value.trim();
    (!value.is_empty()).then_some(value)
}

pub fn user_to_pb(row: UserRow) -> pb::User {
    pb::User {
        id: row.id.to_string(),
        role: row.role().to_proto().into(),
        email: row.email,
        display_name: row.display_name,
        active: row.active,
        must_change_password: row.must_change_password,
        last_sign_in_at: row.last_sign_in_at.map(timestamp),
        audit: Some(audit(row.created_at, row.updated_at, row.version)),
    }
}

fn api_token_to_pb(row: ApiTokenRow) -> pb::ApiToken {
    pb::ApiToken {
        id: row.id.to_string(),
        role: row.role().to_proto().into(),
        name: row.name,
        created_by: row.created_by.to_string(),
        created_at: Some(timestamp(row.created_at)),
        expires_at: Some(timestamp(row.expires_at)),
        revoked_at: row.revoked_at.map(timestamp),
        last_used_at: row.last_used_at.map(timestamp),
    }
}

fn audit_to_pb(row: AuditRecord) -> pb::AuditEntry {
    pb::AuditEntry {
        id: row.id.to_string(),
        at: Some(timestamp(row.at)),
        actor_id: row.actor_id,
        action: row.action,
        target: row.target,
        service: row.service,
        details_json: row.details.to_string(),
        client_address: row.client_address,
    }
}
