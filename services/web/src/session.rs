//! The signed-in person of a page: a session cookie holding the identity service's tokens,
//! checked on every page like a bearer token (signature, expiry, tenant, revoked sessions),
//! and refreshed transparently once the access token has expired.
//!
//! The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page
//! sends it), `Path=/`, and `Secure` when the request came over TLS (`X-Forwarded-Proto:
//! https` from the ingress). Forms are protected against cross-site requests by
//! [`same_origin`]: a state-changing request must come from this origin, as the browser's
//! `Sec-Fetch-Site` or `Origin` header says; neither, or another site, is refused. That is
//! the OWASP "verify origin with standard headers" defence, and with `SameSite=Strict` no
//! CSRF token is needed.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use carerp_bff::auth::AuthError;
use carerp_bff::edge::ClientAddress;
use carerp_kit::RequestContext;
use carerp_kit::auth::{Principal, Role, TokenError};
use carerp_kit::permissions;
use carerp_proto::identity::v1 as pb;
use cookie::{Cookie, SameSite};
use http::{HeaderMap, HeaderValue, Method, header};

use crate::Web;
use crate::page::PageError;

pub const COOKIE: &str = "carerp_session";
const SEPARATOR: char = '~';
/// Marks a session whose one-time password must be changed before anything else.
const MUST_CHANGE: &str = "p";

/// The tokens a session cookie holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub must_change_password: bool,
}

impl Tokens {
    pub fn from_session(session: &pb::Session, must_change_password: bool) -> Self {
        Self {
            access: session.access_token.clone(),
            refresh: session.refresh_token.clone(),
            must_change_password,
        }
    }

    fn encode(&self) -> String {
        let flag = if self.must_change_password {
            MUST_CHANGE
        } else {
            ""
        };
        format!(
            "{}{SEPARATOR}{}{SEPARATOR}{flag}",
            self.access, self.refresh
        )
    }

    fn decode(value: &str) -> Option<Self> {
        let mut parts = value.split(SEPARATOR);
        let access = parts.next().filter(|s| !s.is_empty())?.to_string();
        let refresh = parts.next().filter(|s| !s.is_empty())?.to_string();
        let must_change_password = parts.next() == Some(MUST_CHANGE);
        Some(Self {
            access,
            refresh,
            must_change_password,
        })
    }

    /// The tokens of a request's session cookie.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == COOKIE)
            .and_then(|c| Self::decode(c.value()))
    }
}

/// Whether the request reached the ingress over TLS.
pub fn is_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// `Set-Cookie` of a session; `None` clears it.
pub fn set_cookie(tokens: Option<&Tokens>, secure: bool) -> HeaderValue {
    let mut cookie = Cookie::build((COOKIE, tokens.map(Tokens::encode).unwrap_or_default()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .build();
    if tokens.is_none() {
        cookie.make_removal();
    }
    // Tokens are base64url and dots: always a valid header value.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Who is asking, for the page handlers: the request context carrying the principal (what
/// the clients forward) and the role, to hide what it may not do.
#[derive(Clone)]
pub struct Caller {
    pub ctx: RequestContext,
    pub role: Role,
    pub tokens: Tokens,
}

impl Caller {
    /// Whether the role may call a gRPC method (a full path) or a finer [`permissions::rule`].
    pub fn can(&self, method: &str) -> bool {
        permissions::allows(self.role, method)
    }

    /// A page refusal naming the permission, before a call the server would refuse anyway.
    pub fn require(&self, method: &str) -> Result<(), PageError> {
        if self.can(method) {
            Ok(())
        } else {
            Err(PageError::Forbidden(method.to_string()))
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(PageError::SignIn)
    }
}

/// Requires a session on every page it wraps: no cookie, or one whose session has ended,
/// goes to the sign-in page; an expired access token is refreshed and the new cookie sent
/// with the page; a one-time password must be changed first.
pub async fn require_session(State(web): State<Web>, mut request: Request, next: Next) -> Response {
    let secure = is_tls(request.headers());
    let Some(tokens) = Tokens::from_headers(request.headers()) else {
        return PageError::SignIn.into_response();
    };
    let mut ctx = request
        .extensions()
        .get::<RequestContext>()
        .cloned()
        .unwrap_or_else(RequestContext::new_root);
    let client = request
        .extensions()
        .get::<ClientAddress>()
        .copied()
        .unwrap_or_default();
    let (principal, refreshed) = match resolve(&web, &tokens, &ctx, &client).await {
        Ok(resolved) => resolved,
        Err(Resolve::Unavailable) => return PageError::Unavailable("identity").into_response(),
        Err(Resolve::Ended) => {
            let mut response = PageError::SignIn.into_response();
            response
                .headers_mut()
                .append(header::SET_COOKIE, set_cookie(None, secure));
            return response;
        }
    };
    let tokens = refreshed.clone().unwrap_or(tokens);
    let path = request.uri().path();
    if tokens.must_change_password && path != crate::pages::auth::PASSWORD_PATH {
        return Redirect::to(crate::pages::auth::PASSWORD_PATH).into_response();
    }
    let role = principal.role;
    ctx.principal = Some(principal);
    request.extensions_mut().insert(Caller {
        ctx: ctx.clone(),
        role,
        tokens,
    });
    request.extensions_mut().insert(ctx);
    let mut response = next.run(request).await;
    if let Some(tokens) = refreshed
        && !response.headers().contains_key(header::SET_COOKIE)
    {
        response
            .headers_mut()
            .append(header::SET_COOKIE, set_cookie(Some(&tokens), secure));
    }
    response
}

enum Resolve {
    /// Signed out, revoked, or not ours: sign in again.
    Ended,
    Unavailable,
}

/// The principal of a session, refreshing its tokens when the access token has expired.
async fn resolve(
    web: &Web,
    tokens: &Tokens,
    ctx: &RequestContext,
    client: &ClientAddress,
) -> Result<(Principal, Option<Tokens>), Resolve> {
    let bearer = format!("Bearer {}", tokens.access);
    match web
        .authenticator
        .principal(Some(&bearer), ctx, client)
        .await
    {
        Ok(principal) => return Ok((principal, None)),
        Err(AuthError::Token(TokenError::Expired)) => {}
        Err(AuthError::Unavailable(_)) => return Err(Resolve::Unavailable),
        Err(_) => return Err(Resolve::Ended),
    }
    let clients = &web.clients;
    let session = clients
        .identity
        .clone()
        .refresh(clients.request(
            ctx,
            pb::RefreshRequest {
                refresh_token: tokens.refresh.clone(),
                client_address: client.to_string(),
            },
        ))
        .await
        .map_err(|status| match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => Resolve::Unavailable,
            _ => Resolve::Ended,
        })?
        .into_inner();
    let fresh = Tokens::from_session(&session, tokens.must_change_password);
    let bearer = format!("Bearer {}", fresh.access);
    let principal = web
        .authenticator
        .principal(Some(&bearer), ctx, client)
        .await
        .map_err(|_| Resolve::Ended)?;
    Ok((principal, Some(fresh)))
}

/// Refuses a state-changing request that did not come from a page of this origin.
pub async fn same_origin(request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) || is_same_origin(request.headers())
    {
        next.run(request).await
    } else {
        PageError::CrossSite.into_response()
    }
}

/// `Sec-Fetch-Site: same-origin` where the browser sends it; otherwise an `Origin` equal to
/// this request's own (scheme from `X-Forwarded-Proto`, host from `Host`).
pub fn is_same_origin(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return site == "same-origin";
    }
    match (get("origin"), own_origin(headers)) {
        (Some(origin), Some(own)) => origin == own,
        _ => false,
    }
}

/// This request's own origin, `https://garage.example` (scheme from `X-Forwarded-Proto`,
/// host from `Host`): where a link handed to someone else must point.
pub fn own_origin(headers: &HeaderMap) -> Option<String> {
    carerp_bff::email::origin_of(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_cookie_holds_both_tokens_and_the_password_flag() {
        let tokens = Tokens {
            access: "a.b.c".into(),
            refresh: "r_123".into(),
            must_change_password: true,
        };
        let set = set_cookie(Some(&tokens), true);
        let set = set.to_str().unwrap();
        for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(set.contains(attribute), "{set}");
        }
        let value = set.split(';').next().unwrap().to_string();
        let back = Tokens::from_headers(&{
            let mut map = HeaderMap::new();
            map.insert(
                header::COOKIE,
                HeaderValue::from_str(&format!("x=1; {value}")).unwrap(),
            );
            map
        });
        assert_eq!(back, Some(tokens));
        assert!(!set_cookie(None, false).to_str().unwrap().contains("Secure"));
    }

    #[test]
    fn only_requests_from_this_origin_may_change_things() {
        let cases = [
            (vec![("sec-fetch-site", "same-origin")], true),
            (
                vec![
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "http://g.test"),
                    ("host", "g.test"),
                ],
                false,
            ),
            (vec![("sec-fetch-site", "same-site")], false),
            (vec![("origin", "http://g.test"), ("host", "g.test")], true),
            (
                vec![
                    ("origin", "https://g.test"),
                    ("host", "g.test"),
                    ("x-forwarded-proto", "https"),
                ],
                true,
            ),
            (
                vec![
                    ("origin", "http://g.test"),
                    ("host", "g.test"),
                    ("x-forwarded-proto", "https"),
                ],
                false,
            ),
            (
                vec![("origin", "https://evil.test"), ("host", "g.test")],
                false,
            ),
            (vec![("origin", "null"), ("host", "g.test")], false),
            (vec![("host", "g.test")], false),
        ];
        for (pairs, allowed) in cases {
            assert_eq!(is_same_origin(&headers(&pairs)), allowed, "{pairs:?}");
        }
    }
}
