//! Signing in and out: the session of a person, as tokens. Login and refresh are the only
//! routes without a token (see [`crate::auth::PUBLIC_ROUTES`]); everything else about
//! people is in [`super::people`].

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use carerp_proto::identity::v1 as pb;

use super::AppState;
use super::people::User;
use crate::body::JsonBody;
use crate::edge::{ClientAddress, Ctx};
use crate::models::time;
use crate::problem::ApiError;

const SERVICE: &str = "identity";

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Login {
    #[schema(min_length = 1, max_length = 254, pattern = r"\S")]
    pub email: String,
    #[schema(format = Password, min_length = 1)]
    pub password: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Refresh {
    #[schema(min_length = 1, max_length = 512, pattern = r"\S")]
    pub refresh_token: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangePassword {
    #[schema(format = Password, min_length = 1)]
    pub current_password: String,
    /// At least 12 characters, and not a common or easily guessed one.
    #[schema(format = Password, min_length = 12)]
    pub new_password: String,
}

/// A signed-in session: send `Authorization: Bearer <accessToken>`; before it expires, trade
/// the refresh token for new ones (each refresh token works once).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub token_type: &'static str,
    pub access_token: String,
    pub access_token_expires_at: Option<DateTime<Utc>>,
    pub refresh_token: String,
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    pub session_id: String,
    pub user: Option<User>,
}

impl From<pb::Session> for Session {
    fn from(s: pb::Session) -> Self {
        Self {
            token_type: "Bearer",
            access_token: s.access_token,
            access_token_expires_at: time(s.access_token_expires_at),
            refresh_token: s.refresh_token,
            refresh_token_expires_at: time(s.refresh_token_expires_at),
            session_id: s.session_id,
            user: s.user.map(User::from),
        }
    }
}

/// Sign in with email and password. A wrong password and an unknown email get the same 401;
/// too many failures for the account or the address are 429 with Retry-After.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = Login,
    security(()),
    responses((status = 200, description = "Signed in", body = Session),
        (status = 401, description = "Email or password is wrong, or the user is inactive")))]
pub async fn login(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    client: ClientAddress,
    JsonBody(body): JsonBody<Login>,
) -> Result<Json<Session>, ApiError> {
    let clients = &state.clients;
    let session = clients
        .identity
        .clone()
        .login(clients.request(
            &ctx,
            pb::LoginRequest {
                email: body.email,
                password: body.password,
                client_address: client.to_string(),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(session.into()))
}

/// Trade a refresh token for a new access and refresh token. Presenting a refresh token
/// that was already used ends its whole session (someone else may hold it).
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = Refresh,
    security(()),
    responses((status = 200, description = "New tokens", body = Session),
        (status = 401, description = "Unknown, used, expired or revoked refresh token")))]
pub async fn refresh(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    client: ClientAddress,
    JsonBody(body): JsonBody<Refresh>,
) -> Result<Json<Session>, ApiError> {
    let clients = &state.clients;
    let session = clients
        .identity
        .clone()
        .refresh(clients.request(
            &ctx,
            pb::RefreshRequest {
                refresh_token: body.refresh_token,
                client_address: client.to_string(),
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(session.into()))
}

/// Sign out: the session ends, and its access and refresh tokens are refused from now on.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    responses((status = 204, description = "Signed out")))]
pub async fn logout(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
) -> Result<http::StatusCode, ApiError> {
    let clients = &state.clients;
    clients
        .identity
        .clone()
        .logout(clients.request(&ctx, pb::LogoutRequest {}))
        .await
        .map_err(ApiError::grpc(SERVICE))?;
    Ok(http::StatusCode::NO_CONTENT)
}

/// Who is signed in, with the permissions of their role.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth",
    responses((status = 200, description = "The caller", body = User)))]
pub async fn me(State(state): State<AppState>, Ctx(ctx): Ctx) -> Result<Json<User>, ApiError> {
    let clients = &state.clients;
    let user = clients
        .identity
        .clone()
        .get_me(clients.request(&ctx, pb::GetMeRequest {}))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(user.into()))
}

/// Change your own password (also the first sign-in's required change).
#[utoipa::path(put, path = "/api/auth/password", tag = "auth", request_body = ChangePassword,
    responses((status = 200, description = "Changed", body = User)))]
pub async fn change_password(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<ChangePassword>,
) -> Result<Json<User>, ApiError> {
    let clients = &state.clients;
    let user = clients
        .identity
        .clone()
        .change_password(clients.request(
            &ctx,
            pb::ChangePasswordRequest {
                current_password: body.current_password,
                new_password: body.new_password,
            },
        ))
        .await
        .map_err(ApiError::grpc(SERVICE))?
        .into_inner();
    Ok(Json(user.into()))
}
