//! What every request passes through: correlation and trace context, one error format,
//! per-client rate limiting, security headers.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use carerp_kit::RequestContext;
use carerp_kit::context::{CORRELATION_HEADER, TRACEPARENT_HEADER};
use governor::Quota;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use tracing::Instrument;

use crate::metrics::{HttpMetrics, MatchedRoute};
use crate::problem::{PROBLEM_CONTENT_TYPE, Problem, problem_response};

/// The request's context, put there by [`context`].
pub struct Ctx(pub RequestContext);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Ctx(parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_else(RequestContext::new_root)))
    }
}

/// The client's address as the rate limiter keyed it (behind a trusted proxy, the address
/// the proxy saw), for sign-in throttling and the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

impl Default for ClientAddress {
    fn default() -> Self {
        Self(IpAddr::from([0, 0, 0, 0]))
    }
}

impl std::fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientAddress>()
            .copied()
            .unwrap_or_default())
    }
}

/// Problem bodies larger than this are passed through untouched rather than buffered.
const MAX_PROBLEM_BYTES: usize = 64 * 1024;

/// Accepts or makes the correlation id, continues the caller's trace, logs the request, and
/// gives every error the problem+json shape with the correlation id and path in it.
pub async fn context(
    State(metrics): State<HttpMetrics>,
    mut request: Request,
    next: Next,
) -> Response {
    let ctx = {
        let headers = request.headers();
        let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        RequestContext::from_headers(
            header_str(CORRELATION_HEADER),
            header_str(TRACEPARENT_HEADER),
        )
    };
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let logged = loggable_path(&path);
    // The span continues the caller's trace (exported when OTLP is on); its ids are the ones
    // forwarded to the services.
    let (span, ctx) = carerp_kit::telemetry::request_span(&format!("{method} {logged}"), ctx);
    request.extensions_mut().insert(ctx.clone());
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let route = match response.extensions().get::<MatchedRoute>() {
        Some(MatchedRoute(route)) => route.clone(),
        None if path.starts_with(crate::DOCS_PATH) => crate::DOCS_PATH.to_string(),
        None => "unmatched".to_string(),
    };
    let mut response = finish_problem(response, &ctx, &path).await;
    if let Ok(value) = HeaderValue::from_str(&ctx.correlation_id) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    let status = response.status();
    let elapsed = started.elapsed();
    metrics.observe(method.as_str(), &route, status.as_u16(), elapsed);
    let elapsed_ms = elapsed.as_millis() as u64;
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::error!(
                elapsed_ms,
                status = status.as_u16(),
                "{method} {logged} failed"
            );
        } else if status.is_client_error() {
            tracing::warn!(
                elapsed_ms,
                status = status.as_u16(),
                "{method} {logged} refused"
            );
        } else {
            tracing::info!(elapsed_ms, status = status.as_u16(), "{method} {logged}");
        }
    });
    response
}

/// Paths whose next segment is a secret (an approval link's token): logs and spans show
/// `{token}` instead.
const SECRET_SEGMENT_AFTER: &[&str] = &["/api/approvals/", "/approve/"];

/// The request path as it may be logged: without the secret a link carries.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    for prefix in SECRET_SEGMENT_AFTER {
        if let Some(rest) = path.strip_prefix(prefix) {
            let after = rest.find('/').map_or("", |at| &rest[at..]);
            return format!("{prefix}{{token}}{after}").into();
        }
    }
    path.into()
}

async fn finish_problem(response: Response, ctx: &RequestContext, path: &str) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_CONTENT_TYPE.as_bytes()));
    let (parts, body) = response.into_parts();
    let mut problem = if is_problem {
        match axum::body::to_bytes(body, MAX_PROBLEM_BYTES).await {
            Ok(bytes) => serde_json::from_slice::<Problem>(&bytes)
                .unwrap_or_else(|_| default_problem(status)),
            Err(_) => default_problem(status),
        }
    } else {
        // 404 and 405 from the router, 413 from the body limit, 504 from the timeout:
        // plain-text bodies, replaced by the same problem shape as everything else.
        default_problem(status)
    };
    problem.instance.get_or_insert_with(|| path.to_string());
    problem.correlation_id = Some(ctx.correlation_id.clone());
    let mut rebuilt = problem_response(problem);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rebuilt.headers_mut().append(name.clone(), value.clone());
        }
    }
    rebuilt
}

fn default_problem(status: StatusCode) -> Problem {
    let detail = match status {
        StatusCode::NOT_FOUND => "no such resource or route".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => {
            "this method is not allowed on this route; the Allow header lists the ones that are"
                .to_string()
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!(
                "the body is larger than this route takes: {} bytes, {} for a photo",
                crate::body::MAX_BODY_BYTES,
                crate::body::MAX_UPLOAD_BYTES
            )
        }
        StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => {
            "the request took too long".to_string()
        }
        other => other
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string(),
    };
    Problem::new(status, detail)
}

/// Per-client rate limiting (GCRA, as a token bucket: `burst` requests at once, refilled
/// at `per_second`), keyed by the client's address.
#[derive(Clone)]
pub struct RateLimiter<C: Clock + Clone = DefaultClock> {
    /// `None` when the rate is 0: limiting is off.
    limiter: Option<Arc<KeyedLimiter<C>>>,
    clock: C,
    trust_forwarded_for: bool,
    last_sweep: Arc<Mutex<C::Instant>>,
}

type KeyedLimiter<C> = governor::RateLimiter<
    IpAddr,
    DefaultKeyedStateStore<IpAddr>,
    C,
    NoOpMiddleware<<C as Clock>::Instant>,
>;

/// Clients unseen this long have full buckets again and are forgotten, so memory stays bounded
/// by the clients of the last minute.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl RateLimiter {
    pub fn new(per_second: u32, burst: u32, trust_forwarded_for: bool) -> Self {
        Self::with_clock(
            per_second,
            burst,
            trust_forwarded_for,
            DefaultClock::default(),
        )
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    pub fn with_clock(per_second: u32, burst: u32, trust_forwarded_for: bool, clock: C) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            let quota = Quota::per_second(rate).allow_burst(burst);
            Arc::new(governor::RateLimiter::new(
                quota,
                DefaultKeyedStateStore::default(),
                clock.clone(),
            ))
        });
        Self {
            limiter,
            last_sweep: Arc::new(Mutex::new(clock.now())),
            clock,
            trust_forwarded_for,
        }
    }

    /// `Ok` to go ahead, or how long to wait until the client may send again.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let now = self.clock.now();
        self.sweep(limiter, now);
        limiter
            .check_key(&client)
            .map_err(|not_until| not_until.wait_time_from(now))
    }

    fn sweep(&self, limiter: &KeyedLimiter<C>, now: C::Instant) {
        // Only one request sweeps; the others do not wait for it.
        let Ok(mut last_sweep) = self.last_sweep.try_lock() else {
            return;
        };
        if now.duration_since(*last_sweep) >= SWEEP_EVERY.into() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            *last_sweep = now;
        }
    }

    /// The client's address. Behind a trusted proxy it is the last `X-Forwarded-For` entry,
    /// the address the proxy itself saw: earlier entries are whatever the client sent.
    fn client(&self, request: &Request) -> IpAddr {
        if self.trust_forwarded_for
            && let Some(ip) = request
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse().ok())
        {
            return ip;
        }
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }
}

/// Refuses a client over its rate with 429 and `Retry-After` (whole seconds, at least 1).
pub async fn rate_limit(
    State(limiter): State<RateLimiter>,
    mut request: Request,
    next: Next,
) -> Response {
    let client = limiter.client(&request);
    request.extensions_mut().insert(ClientAddress(client));
    match limiter.check(client) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut response = problem_response(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many requests from {client}; retry in {seconds} s"),
            ));
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}

/// Security headers on every response; the API page needs its inline start-up script.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let is_docs = request.uri().path().starts_with("/docs");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut http::HeaderMap, name: &'static str, value: &'static str| {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    };
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(headers, "cross-origin-resource-policy", "same-origin");
    if is_docs {
        set(
            headers,
            "content-security-policy",
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        );
    } else {
        set(
            headers,
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        );
        set(headers, "cache-control", "no-store");
    }
    response
}

/// Notes the route template the router matched, for the metrics.
pub async fn record_route(
    matched: Option<axum::extract::MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response
            .extensions_mut()
            .insert(MatchedRoute(matched.as_str().to_string()));
    }
    response
}

/// 404 for everything the router does not know.
pub async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, Body::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn a_client_gets_its_burst_then_waits_for_tokens() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(2, 3, false, clock.clone());
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another client is not affected.
        assert!(limiter.check(b).is_ok());
        // Half a second later one token is back.
        clock.advance(Duration::from_millis(500));
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(a).is_err());
    }

    #[test]
    fn idle_clients_are_forgotten() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(1, 1, false, clock.clone());
        for last in 0..50u8 {
            assert!(limiter.check([10, 0, 0, last].into()).is_ok());
        }
        let remembered = || limiter.limiter.as_ref().map_or(0, |l| l.len());
        assert_eq!(remembered(), 50);
        clock.advance(SWEEP_EVERY);
        assert!(limiter.check([10, 0, 1, 0].into()).is_ok());
        assert_eq!(remembered(), 1);
    }

    #[test]
    fn clients_are_keyed_by_peer_address_or_trusted_forwarded_for() {
        let request = |forwarded: Option<&str>| {
            let mut builder = http::Request::builder().uri("/api/customers");
            if let Some(value) = forwarded {
                builder = builder.header("x-forwarded-for", value);
            }
            let mut request = builder.body(Body::empty()).unwrap();
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([10, 1, 1, 1], 4000))));
            request
        };
        let peer: IpAddr = [10, 1, 1, 1].into();
        let untrusting = RateLimiter::new(1, 1, false);
        assert_eq!(untrusting.client(&request(Some("203.0.113.7"))), peer);
        let trusting = RateLimiter::new(1, 1, true);
        assert_eq!(
            trusting.client(&request(Some("203.0.113.7"))),
            IpAddr::from([203, 0, 113, 7])
        );
        // A client that sends its own header cannot choose its bucket: the proxy appends the
        // address it saw, and that one counts.
        assert_eq!(
            trusting.client(&request(Some("198.51.100.1, 203.0.113.7"))),
            IpAddr::from([203, 0, 113, 7])
        );
        assert_eq!(trusting.client(&request(Some("garbage"))), peer);
        assert_eq!(trusting.client(&request(None)), peer);
    }

    #[test]
    fn zero_rate_disables_the_limit() {
        let limiter = RateLimiter::new(0, 1, false);
        let a: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..100 {
            assert!(limiter.check(a).is_ok());
        }
    }
}
