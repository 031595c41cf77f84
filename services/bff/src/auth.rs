//! Who is calling: every `/api` request but sign-in and refresh carries a bearer token, checked
//! here before any handler runs. A user's access token (a JWT) is verified with the tenant's
//! public keys; an integration's API token (`cet_...`) is exchanged with the identity service
//! for a short access token, cached until shortly before it expires. Either way the caller
//! becomes the request context's principal, which the clients forward to the services (they
//! verify it again) and the BFF's channel checks against the permission table.
//!
//! Access tokens are stateless, so ending a session (sign-out, a reused refresh token, a user
//! deactivated) must reach the BFF at once: the identity service publishes
//! `identity.session-revoked`, and [`watch_revocations`] keeps the revoked sessions whose
//! tokens have not yet expired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_nats::jetstream;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use carerp_kit::RequestContext;
use carerp_kit::auth::{Principal, TokenError, VerifyingKeys, bearer_token};
use carerp_kit::events::{SessionRevoked, topic};
use carerp_proto::identity::v1 as pb;
use chrono::{DateTime, Utc};
use http::{HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::clients::Clients;
use crate::edge::ClientAddress;
use crate::problem::{Problem, problem_response};
use crate::tenant_events::{Following, follow};

/// The routes that need no token: how a token is had in the first place.
pub const PUBLIC_ROUTES: &[&str] = &["/api/auth/login", "/api/auth/refresh"];

/// Routes under these need no token either: the approval link's token in the path is their
/// authorisation (checked by the work order service).
pub const PUBLIC_PREFIXES: &[&str] = &["/api/approvals/"];

/// Whether `path` (a request path, or a route template) needs no token.
pub fn is_public(path: &str) -> bool {
    PUBLIC_ROUTES.contains(&path)
        || PUBLIC_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix))
}

/// The prefix of an integration's API token.
pub const API_TOKEN_PREFIX: &str = "cet_";

/// How long before its access token expires a cached API-token exchange is renewed.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(60);

/// Checks bearer tokens; cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    keys: VerifyingKeys,
    clients: Clients,
    revoked: RwLock<HashMap<Uuid, DateTime<Utc>>>,
    /// API tokens by the SHA-256 of the token, so the cache never holds one in clear.
    exchanged: Mutex<HashMap<[u8; 32], Principal>>,
}

/// Why a request is not authenticated; its message is safe to show.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the session has ended; sign in again")]
    Revoked,
    #[error("the API token is unknown, revoked or expired")]
    ApiToken,
    #[error("the identity service is unavailable: {0}")]
    Unavailable(String),
}

impl Authenticator {
    pub fn new(keys: VerifyingKeys, clients: Clients) -> Self {
        Self {
            inner: Arc::new(Inner {
                keys,
                clients,
                revoked: RwLock::new(HashMap::new()),
                exchanged: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The caller of an `authorization` header value.
    pub async fn principal(
        &self,
        header: Option<&str>,
        ctx: &RequestContext,
        client: &ClientAddress,
    ) -> Result<Principal, AuthError> {
        let header = header.ok_or(TokenError::Missing)?;
        let token = bearer_token(header).ok_or(TokenError::Malformed)?;
        let principal = if token.starts_with(API_TOKEN_PREFIX) {
            self.exchange(token, ctx, client).await?
        } else {
            self.inner.keys.verify(token)?
        };
        if self.is_revoked(principal.session_id) {
            return Err(AuthError::Revoked);
        }
        Ok(principal)
    }

    /// An API token's access token: from the cache, or from the identity service.
    async fn exchange(
        &self,
        token: &str,
        ctx: &RequestContext,
        client: &ClientAddress,
    ) -> Result<Principal, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let fresh = |principal: &Principal| {
            let renew = chrono::Duration::from_std(RENEW_BEFORE_EXPIRY).unwrap_or_default();
            principal.expires_at - renew > Utc::now()
        };
        if let Some(principal) = self
            .exchanged()
            .get(&digest)
            .filter(|principal| fresh(principal))
            .cloned()
        {
            return Ok(principal);
        }
        let clients = &self.inner.clients;
        let answer = clients
            .identity
            .clone()
            .authenticate_api_token(clients.request(
                ctx,
                pb::AuthenticateApiTokenRequest {
                    token: token.to_string(),
                    client_address: client.to_string(),
                },
            ))
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Unauthenticated
                | tonic::Code::InvalidArgument
                | tonic::Code::NotFound => AuthError::ApiToken,
                _ => AuthError::Unavailable(status.message().to_string()),
            })?
            .into_inner();
        let principal = self.inner.keys.verify(&answer.access_token)?;
        let mut cache = self.exchanged();
        // Expired exchanges go; the cache holds at most one entry per live API token.
        cache.retain(|_, principal| fresh(principal));
        cache.insert(digest, principal.clone());
        Ok(principal)
    }

    fn exchanged(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Principal>> {
        // A panic while holding the lock leaves a cache that is still consistent.
        self.inner
            .exchanged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn is_revoked(&self, session: Uuid) -> bool {
        self.inner
            .revoked
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains_key(&session)
    }

    /// Refuses `session`'s tokens from now until `until`, when the last of them expires.
    pub fn revoke(&self, session: Uuid, until: DateTime<Utc>) {
        let now = Utc::now();
        let mut revoked = self
            .inner
            .revoked
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        revoked.retain(|_, expires| *expires > now);
        if until > now {
            revoked.insert(session, until);
        }
    }
}

/// Requires a valid token on every `/api` route but the public ones ([`is_public`]).
pub async fn authenticate(
    State(auth): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if !(path.starts_with("/api/") || path == "/api") || is_public(path) {
        return next.run(request).await;
    }
    let header = match request.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(value) => match value.to_str() {
            Ok(value) => Some(value),
            Err(_) => return unauthorized(&AuthError::Token(TokenError::Malformed)),
        },
    };
    let mut ctx = request
        .extensions()
        .get::<RequestContext>()
        .cloned()
        .unwrap_or_else(RequestContext::new_root);
    let client = request
        .extensions()
        .get::<ClientAddress>()
        .cloned()
        .unwrap_or_default();
    match auth.principal(header, &ctx, &client).await {
        Ok(principal) => {
            ctx.principal = Some(principal);
            request.extensions_mut().insert(ctx);
            next.run(request).await
        }
        Err(AuthError::Unavailable(reason)) => problem_response(
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the identity service is unavailable, retry later ({reason})"),
            )
            .with_kind("unavailable", "Service unavailable"),
        ),
        Err(err) => unauthorized(&err),
    }
}

/// 401 with the challenge RFC 6750 asks for.
pub fn unauthorized(err: &AuthError) -> Response {
    let mut response = problem_response(
        Problem::new(StatusCode::UNAUTHORIZED, err.to_string())
            .with_kind("unauthenticated", "Unauthenticated"),
    );
    let challenge = match err {
        AuthError::Token(TokenError::Missing) => r#"Bearer realm="carerp""#,
        _ => r#"Bearer realm="carerp", error="invalid_token""#,
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response.into_response()
}

/// Feeds `auth` the tenant's revoked sessions from its stream until `shutdown`, from the
/// stream's beginning (revocations are few, and each is forgotten once its tokens expired).
pub async fn watch_revocations(
    jetstream: jetstream::Context,
    tenant: String,
    auth: Authenticator,
    shutdown: CancellationToken,
) {
    let following = Following {
        purpose: "revoked sessions",
        subject: carerp_kit::envelope::subject(&tenant, topic::SESSION_REVOKED),
        from: jetstream::consumer::DeliverPolicy::All,
    };
    follow(
        jetstream,
        &tenant,
        following,
        shutdown,
        |event, _| match event.data_as::<SessionRevoked>() {
            Ok(revoked) => auth.revoke(revoked.session_id, revoked.tokens_expire_by),
            Err(err) => tracing::error!("unreadable session-revoked event: {err}"),
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_hold_until_the_tokens_expire_and_are_forgotten_after() {
        let config = crate::BffConfig::for_tests(
            "acme",
            "http://127.0.0.1:1".into(),
            "http://127.0.0.1:1".into(),
            "http://127.0.0.1:1".into(),
            "http://127.0.0.1:1".into(),
            "http://127.0.0.1:1".into(),
        );
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _guard = rt.enter();
        let auth = Authenticator::new(
            config.service.verifying_keys.clone(),
            Clients::new(&config).unwrap(),
        );
        let (live, past) = (Uuid::now_v7(), Uuid::now_v7());
        auth.revoke(live, Utc::now() + chrono::Duration::minutes(15));
        auth.revoke(past, Utc::now() - chrono::Duration::seconds(1));
        assert!(auth.is_revoked(live));
        assert!(!auth.is_revoked(past));
        assert_eq!(auth.inner.revoked.read().unwrap().len(), 1);
    }
}
