//! The REST API of a tenant: one entry point over the domain services' gRPC APIs, with
//! aggregated views, one error format, and an OpenAPI document.
//!
//! [`start`] is what `main`, the tests and the operator's local mode call.

pub mod api;
pub mod auth;
pub mod body;
pub mod clients;
pub mod config;
pub mod edge;
pub mod email;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod problem;
pub mod tenant_events;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use carerp_kit::Metrics;
use carerp_kit::admin::AdminState;
use http::{HeaderValue, Method, StatusCode, header};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub use api::AppState;
pub use clients::Clients;
pub use config::BffConfig;

/// Where the OpenAPI document and the interactive page are served.
pub const OPENAPI_PATH: &str = "/docs/openapi.json";
pub const DOCS_PATH: &str = "/docs";

/// The whole HTTP application: API routes, docs, the web app's `pages` (an empty router for
/// none), and the edge layers. Pages pass the same rate limit, timeout, body limit and
/// security headers, but not the API's bearer check and problem+json bodies: they check
/// their own session cookie and answer HTML.
pub fn router(
    config: &BffConfig,
    state: AppState,
    authenticator: auth::Authenticator,
    metrics: metrics::HttpMetrics,
    pages: Router,
) -> Router {
    let mut routes = Router::new();
    for route in api::routes() {
        routes = routes.route(route.path, route.handler);
    }
    let docs = swagger_ui_dist::generate_routes(swagger_ui_dist::ApiDefinition {
        uri_prefix: DOCS_PATH,
        api_definition: swagger_ui_dist::OpenApiSource::Uri(OPENAPI_PATH),
        title: Some("Car ERP API"),
    });
    let limiter = edge::RateLimiter::new(
        config.rate_limit_per_second,
        config.rate_limit_burst,
        config.trust_forwarded_for,
    );
    let api = routes
        .route(OPENAPI_PATH, get(openapi_json))
        .route_layer(middleware::from_fn(edge::record_route))
        .with_state(state)
        .merge(docs)
        .fallback(edge::not_found)
        // Innermost first: the last layer sees the request first.
        .layer(middleware::from_fn_with_state(
            authenticator,
            auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(body::MAX_UPLOAD_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            config.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            limiter.clone(),
            edge::rate_limit,
        ))
        .layer(middleware::from_fn_with_state(metrics, edge::context))
        .layer(cors(&config.cors_origins));
    let pages = pages
        .layer(DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(body::MAX_UPLOAD_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            config.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(limiter, edge::rate_limit));
    api.merge(pages)
        .layer(middleware::from_fn(edge::security_headers))
}

/// What the web app builds its pages from: the API handlers' clients and the authenticator
/// that knows revoked sessions.
pub struct PagesContext<'a> {
    pub config: &'a BffConfig,
    pub state: &'a AppState,
    pub authenticator: &'a auth::Authenticator,
    /// The tenant's changes as they happen, for pages that update themselves.
    pub live: &'a tenant_events::LiveFeed,
    /// Cancelled when the BFF stops: long-lived answers (server-sent events) end then, or
    /// the graceful shutdown would wait for them.
    pub shutdown: &'a CancellationToken,
}

async fn openapi_json() -> impl IntoResponse {
    match openapi::document().to_json() {
        Ok(json) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response(),
        Err(err) => problem::ApiError::Status(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render the OpenAPI document: {err}"),
        )
        .into_response(),
    }
}

/// CORS from `BFF_CORS_ORIGINS`: none configured, no CORS headers (same origin only).
fn cors(origins: &[String]) -> CorsLayer {
    if origins.is_empty() {
        return CorsLayer::new();
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("x-correlation-id"),
            header::HeaderName::from_static("traceparent"),
        ])
        .expose_headers([
            header::HeaderName::from_static("x-correlation-id"),
            header::RETRY_AFTER,
            header::LOCATION,
            header::WWW_AUTHENTICATE,
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// A BFF that is serving; [`RunningBff::stop`] drains it.
pub struct RunningBff {
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningBff {
    /// Stops accepting requests, lets the ones in flight finish, and waits for the servers.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the servers end (after [`RunningBff::stop`] or a failure).
    pub async fn wait(self) -> anyhow::Result<()> {
        for task in self.tasks {
            task.await??;
        }
        Ok(())
    }
}

/// Binds the HTTP and admin listeners and serves until stopped. The services need not be up:
/// their channels connect on first use.
pub async fn start(config: BffConfig) -> anyhow::Result<RunningBff> {
    start_with_pages(config, |_| Router::new()).await
}

/// [`start`] with the pages `pages` builds mounted beside the API (the web app's `start`).
pub async fn start_with_pages(
    config: BffConfig,
    pages: impl FnOnce(PagesContext<'_>) -> Router,
) -> anyhow::Result<RunningBff> {
    let clients = Clients::new(&config)?;
    let registry = Metrics::new();
    let http_metrics = metrics::HttpMetrics::register(&registry);
    let authenticator =
        auth::Authenticator::new(config.service.verifying_keys.clone(), clients.clone());
    let delivery = match &config.email {
        Some(email) => {
            tracing::info!(smtp = %email.redacted_url(), from = %email.from,
                "estimates can be emailed to customers");
            Some(api::estimates::EstimateMailer::new(&config, email)?)
        }
        None => {
            tracing::info!("emailing estimates is off (CARERP_SMTP_URL is not set)");
            None
        }
    };
    let state = AppState { clients, delivery };
    let live = tenant_events::LiveFeed::new();
    let shutdown = CancellationToken::new();
    let pages = pages(PagesContext {
        config: &config,
        state: &state,
        authenticator: &authenticator,
        live: &live,
        shutdown: &shutdown,
    });
    // Connecting returns at once; a broker that is down is retried in the background.
    let jetstream = carerp_kit::messaging::connect_for(&config.service).await?;
    let app = router(&config, state, authenticator.clone(), http_metrics, pages).layer(
        axum::Extension(api::dead_letters::DeadLetterStore {
            jetstream: jetstream.clone(),
            tenant: config.service.tenant.clone(),
        }),
    );
    let http_listener = bind(config.service.http_addr).await?;
    let admin_listener = bind(config.service.admin_addr).await?;
    let http_addr = http_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    let http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(
            carerp_kit::admin::without_delay(http_listener),
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
        .await
    });
    let revocations = tokio::spawn(auth::watch_revocations(
        jetstream.clone(),
        config.service.tenant.clone(),
        authenticator,
        shutdown.clone(),
    ));
    let revocations = tokio::spawn(async move { revocations.await.map_err(std::io::Error::other) });
    let live = tokio::spawn(live.run(jetstream, config.service.tenant.clone(), shutdown.clone()));
    let live = tokio::spawn(async move { live.await.map_err(std::io::Error::other) });
    let admin_shutdown = shutdown.clone();
    let admin_task = tokio::spawn(async move {
        carerp_kit::admin::serve(
            admin_listener,
            AdminState {
                metrics: registry,
                pool: None,
            },
            admin_shutdown,
        )
        .await
        .map_err(std::io::Error::other)
    });
    tracing::info!(%http_addr, %admin_addr, "serving the REST API");
    Ok(RunningBff {
        http_addr,
        admin_addr,
        shutdown,
        tasks: vec![http_task, admin_task, revocations, live],
    })
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {addr}: {err}"))
}
