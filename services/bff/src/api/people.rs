//! The garage's people, its integrations' API tokens and the audit trail: owners only (the
//! permission table says so, and the identity service checks it again).

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use carerp_kit::auth::Role as KitRole;
use carerp_proto::identity::v1 as pb;

use super::{AppState, Created, IdempotencyKey, created, page};
use crate::body::{JsonBody, QueryParams};
use crate::edge::Ctx;
use crate::models::{Audit, audit, non_empty, time};
use crate::problem::ApiError;

const SERVICE: &str = "identity";

/// A person's role; one each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Owner,
    ServiceAdvisor,
    Technician,
    PartsManager,
    Accountant,
}

impl Role {
    fn kit(self) -> KitRole {
        match self {
            Role::Owner => KitRole::Owner,
            Role::ServiceAdvisor => KitRole::ServiceAdvisor,
            Role::Technician => KitRole::Technician,
            Role::PartsManager => KitRole::PartsManager,
            Role::Accountant => KitRole::Accountant,
        }
    }

    fn from_kit(role: KitRole) -> Self {
        match role {
            KitRole::Owner => Role::Owner,
            KitRole::ServiceAdvisor => Role::ServiceAdvisor,
            KitRole::Technician => Role::Technician,
            KitRole::PartsManager => Role::PartsManager,
            KitRole::Accountant => Role::Accountant,
        }
    }

    pub fn to_proto(self) -> i32 {
        self.kit().to_proto() as i32
    }

    pub fn from_proto(value: i32) -> Option<Self> {
        KitRole::from_proto(value).map(Role::from_kit)
    }
}

/// The gRPC methods a role may call: what the web app shows and hides. The server checks
/// them on every call anyway.
fn permissions_of(role: Option<Role>) -> Vec<String> {
    let Some(role) = role else {
        return Vec::new();
    };
    carerp_kit::permissions::TABLE
        .iter()
        .chain(carerp_kit::permissions::rule::RULES)
        .filter(|(method, _)| carerp_kit::permissions::allows(role.kit(), method))
        .map(|(method, _)| method.trim_start_matches('/').to_string())
        .collect()
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub role: Option<Role>,
    pub active: bool,
    /// Signed in with a one-time password: change it (`PUT /api/auth/password`) first.
    pub must_change_password: bool,
    pub last_sign_in_at: Option<DateTime<Utc>>,
    /// What the role may do, as permission names (`carerp.billing.v1.BillingService/RecordPayment`).
    pub permissions: Vec<String>,
    #[serde(flatten)]
    pub audit: Audit,
}

impl From<pb::User> for User {
    fn from(u: pb::User) -> Self {
        let role = Role::from_proto(u.role);
        Self {
            id: u.id,
            email: u.email,
            display_name: u.display_name,
            role,
            active: u.active,
            must_change_password: u.must_change_password,
            last_sign_in_at: time(u.last_sign_in_at),
            permissions: permissions_of(role),
            audit: audit(u.audit),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserPage {
    pub items: Vec<User>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Page size: default 50, at most 500.
    #[param(minimum = 0, maximum = 500)]
    pub limit: Option<i32>,
    #[param(max_length = 1024, pattern = r"^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
    /// Also list deactivated people.
    pub include_inactive: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUser {
    #[schema(format = Email)]
    pub email: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub display_name: String,
    pub role: Role,
}

/// The new person and their one-time password, shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedUser {
    pub user: Option<User>,
    /// Empty when the request repeated an earlier one under the same Idempotency-Key.
    pub one_time_password: String,
}

/// Changes to a person; absent fields stay as they are.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateUser {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub display_name: Option<String>,
    pub role: Option<Role>,
    /// `false` deactivates: the person's sessions end at once.
    pub active: Option<bool>,
    #[schema(minimum = 0)]
    pub expected_version: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordReset {
    pub user: Option<User>,
    /// Shown this once; the person must change it at their next sign-in.
    pub one_time_password: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub role: Option<Role>,
    pub created_by: String,
    pub created_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<pb::ApiToken> for ApiToken {
    fn from(t: pb::ApiToken) -> Self {
        Self {
            id: t.id,
            name: t.name,
            role: Role::from_proto(t.role),
            created_by: t.created_by,
            created_at: time(t.created_at),
            expires_at: time(t.expires_at),
            revoked_at: time(t.revoked_at),
            last_used_at: time(t.last_used_at),
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateApiToken {
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: String,
    pub role: Role,
    /// In the future, at most a year away.
    pub expires_at: DateTime<Utc>,
}

/// The new API token, shown this once: send it as `Authorization: Bearer <token>`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiToken {
    pub api_token: Option<ApiToken>,
    pub token: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApiTokenQuery {
    pub include_revoked: Option<bool>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: String,
    pub at: Option<DateTime<Utc>>,
    /// The user or API token id; absent for a failed sign-in of an unknown email.
    pub actor_id: Option<String>,
    pub action: String,
    pub target: String,
    pub service: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub client_address: Option<String>,
}

impl From<pb::AuditEntry> for AuditEntry {
    fn from(e: pb::AuditEntry) -> Self {
        Self {
            id: e.id,
            at: time(e.at),
            actor_id: non_empty(e.actor_id),
            action: e.action,
            target: e.target,
            service: e.service,
            details: serde_json::from_str(&e.details_json).unwrap_or_default(),
            client_address: non_empty(e.client_address),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    #[param(minimum = 0, maximum = 500)]
    pub limit: Option<i32>,
    #[param(max_length = 1024, pattern = r"^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
    /// Only this user's (or API token's) actions.
    #[param(format = Uuid)]
    pub actor_id: Option<String>,
    /// Only this action, e.g. `invoice.payment-recorded`.
    #[param(max_length = 100, pattern = r"^[^\x00]*$")]
    pub action: Option<String>,
    /// From this instant (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Up to this instant (RFC 3339).
    pub to: Option<DateTime<Utc>>,
}

/// The garage's people.
#[utoipa::path(get, path = "/api/users", tag = "people", params(UserQuery),
    responses((status = 200, description = "A page of people", body = UserPage)))]
pub async fn list_users(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    QueryParams(query): QueryParams<UserQuery>,
) -> Result<Json<UserPage>, ApiError> {
    let clients = &state.clients;
    let response = clients
        .identity
        .clone()
        .list_users(clients.request(
            &ctx,
            pb::ListUsersRequest {
                page: page(query.limit, query.cursor),
                include_inactive: query.include_inactive.unwrap_or(false),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(UserPage {
        items: response.users.into_iter().map(User::from).collect(),
        next_cursor: response.page.and_then(|p| non_empty(p.next_page_token)),
    }))
}

/// Add a person with a one-time password (shown once in the answer).
#[utoipa::path(post, path = "/api/users", tag = "people", request_body = CreateUser,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200, pattern = r"^[!-~]+$", description = "Makes retries safe")),
    responses((status = 201, description = "Created", body = CreatedUser)))]
pub async fn create_user(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<CreateUser>,
) -> Result<Created<CreatedUser>, ApiError> {
    let clients = &state.clients;
    let response = clients
        .identity
        .clone()
        .create_user(clients.request(
            &ctx,
            pb::CreateUserRequest {
                email: body.email,
                display_name: body.display_name,
                role: body.role.to_proto(),
                idempotency_key: key,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    let user = response.user.map(User::from);
    let location = format!(
        "/api/users/{}",
        user.as_ref().map(|u| u.id.as_str()).unwrap_or_default()
    );
    Ok(created(
        location,
        CreatedUser {
            user,
            one_time_password: response.one_time_password,
        },
    ))
}

#[utoipa::path(get, path = "/api/users/{id}", tag = "people",
    params(("id" = String, Path, format = Uuid, description = "User id")),
    responses((status = 200, description = "The person", body = User)))]
pub async fn get_user(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<User>, ApiError> {
    let clients = &state.clients;
    let user = clients
        .identity
        .clone()
        .get_user(clients.request(&ctx, pb::GetUserRequest { id }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(user.into()))
}

/// Change a person's name or role, or deactivate them (their sessions end at once). The
/// last active owner cannot be demoted or deactivated.
#[utoipa::path(put, path = "/api/users/{id}", tag = "people", request_body = UpdateUser,
    params(("id" = String, Path, format = Uuid, description = "User id")),
    responses((status = 200, description = "Changed", body = User)))]
pub async fn update_user(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateUser>,
) -> Result<Json<User>, ApiError> {
    let clients = &state.clients;
    let user = clients
        .identity
        .clone()
        .update_user(clients.request(
            &ctx,
            pb::UpdateUserRequest {
                id,
                display_name: body.display_name,
                role: body.role.map(Role::to_proto),
                active: body.active,
                expected_version: body.expected_version,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(user.into()))
}

/// A new one-time password for a person (shown once); their sessions end.
#[utoipa::path(post, path = "/api/users/{id}/password-reset", tag = "people",
    params(("id" = String, Path, format = Uuid, description = "User id")),
    responses((status = 200, description = "Reset", body = PasswordReset)))]
pub async fn reset_password(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<PasswordReset>, ApiError> {
    let clients = &state.clients;
    let response = clients
        .identity
        .clone()
        .reset_password(clients.request(&ctx, pb::ResetPasswordRequest { id }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(PasswordReset {
        user: response.user.map(User::from),
        one_time_password: response.one_time_password,
    }))
}

/// Integrations' API tokens (never the tokens themselves).
#[utoipa::path(get, path = "/api/api-tokens", tag = "people", params(ApiTokenQuery),
    responses((status = 200, description = "API tokens", body = [ApiToken])))]
pub async fn list_api_tokens(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    QueryParams(query): QueryParams<ApiTokenQuery>,
) -> Result<Json<Vec<ApiToken>>, ApiError> {
    let clients = &state.clients;
    let response = clients
        .identity
        .clone()
        .list_api_tokens(clients.request(
            &ctx,
            pb::ListApiTokensRequest {
                include_revoked: query.include_revoked.unwrap_or(false),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(
        response
            .api_tokens
            .into_iter()
            .map(ApiToken::from)
            .collect(),
    ))
}

/// A named API token with a role and an expiry, shown once in the answer.
#[utoipa::path(post, path = "/api/api-tokens", tag = "people", request_body = CreateApiToken,
    responses((status = 201, description = "Created", body = CreatedApiToken)))]
pub async fn create_api_token(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<CreateApiToken>,
) -> Result<Created<CreatedApiToken>, ApiError> {
    let clients = &state.clients;
    let response = clients
        .identity
        .clone()
        .create_api_token(clients.request(
            &ctx,
            pb::CreateApiTokenRequest {
                name: body.name,
                role: body.role.to_proto(),
                expires_at: Some(carerp_kit::convert::timestamp(body.expires_at)),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    let api_token = response.api_token.map(ApiToken::from);
    let location = format!(
        "/api/api-tokens/{}",
        api_token
            .as_ref()
            .map(|t| t.id.as_str())
            .unwrap_or_default()
    );
    Ok(created(
        location,
        CreatedApiToken {
            api_token,
            token: response.token,
        },
    ))
}

/// Revoke an API token: refused from now on.
#[utoipa::path(delete, path = "/api/api-tokens/{id}", tag = "people",
    params(("id" = String, Path, format = Uuid, description = "API token id")),
    responses((status = 200, description = "Revoked", body = ApiToken)))]
pub async fn revoke_api_token(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Json<ApiToken>, ApiError> {
    let clients = &state.clients;
    let token = clients
        .identity
        .clone()
        .revoke_api_token(clients.request(&ctx, pb::RevokeApiTokenRequest { id }))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(token.into()))
}

/// The audit trail of sensitive actions, newest first.
#[utoipa::path(get, path = "/api/audit", tag = "people", params(AuditQuery),
    responses((status = 200, description = "A page of audit entries", body = AuditPage)))]
pub async fn list_audit(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let clients = &state.clients;
    let response = clients
        .identity
        .clone()
        .list_audit(clients.request(
            &ctx,
            pb::ListAuditRequest {
                page: page(query.limit, query.cursor),
                actor_id: query.actor_id.unwrap_or_default(),
                action: query.action.unwrap_or_default(),
                from: query.from.map(carerp_kit::convert::timestamp),
                to: query.to.map(carerp_kit::convert::timestamp),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(AuditPage {
        items: response.entries.into_iter().map(AuditEntry::from).collect(),
        next_cursor: response.page.and_then(|p| non_empty(p.next_page_token)),
    }))
}
