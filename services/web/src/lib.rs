//! The garage's web app: server-rendered pages served by the tenant's BFF process at `/`,
//! beside the REST API at `/api` (same origin, one cookie).
//!
//! Pages call the BFF's own gRPC clients ([`carerp_bff::Clients`]), whose channel checks the
//! permission table before every call, and ask the same table ([`session::Caller::can`]) to
//! leave out what the caller's role may not do. Templates are askama's, checked at compile
//! time; they escape everything they print. htmx (an npm package, embedded at build time)
//! does the partial updates; there is no inline script, and pages send
//! [`page::CONTENT_SECURITY_POLICY`].
//!
//! # Layout
//!
//! - [`session`]: the session cookie, its refresh, and the same-origin check of forms.
//! - [`page`]: the layout's data, rendering, error pages, field errors.
//! - [`pages`]: one module per area (sign-in, today, customers, work orders, parts, invoices, people).
//! - [`messages`]: every text, one catalogue per language; [`format`]: money and dates.
//! - [`assets`]: the stylesheet and htmx, cached for good under hashed URLs.

pub mod assets;
pub mod format;
pub mod messages;
pub mod page;
pub mod pages;
pub mod session;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use carerp_bff::auth::Authenticator;
use carerp_bff::{BffConfig, Clients, PagesContext, RunningBff};
use carerp_kit::RequestContext;
use carerp_kit::config::TenantSettings;
use carerp_kit::context::{CORRELATION_HEADER, TRACEPARENT_HEADER};
use http::HeaderValue;
use tracing::Instrument;

/// What the page handlers share; cheap to clone.
#[derive(Clone)]
pub struct Web {
    pub clients: Clients,
    pub authenticator: Authenticator,
    pub settings: std::sync::Arc<TenantSettings>,
    pub zone: jiff::tz::TimeZone,
    pub live: carerp_bff::tenant_events::LiveFeed,
    pub shutdown: tokio_util::sync::CancellationToken,
    /// How estimates are emailed; `None`: not configured for this garage.
    pub delivery: Option<carerp_bff::api::estimates::EstimateMailer>,
}

impl Web {
    pub fn new(context: &PagesContext<'_>) -> Self {
        let settings = context.config.service.settings.clone();
        Self {
            clients: context.state.clients.clone(),
            delivery: context.state.delivery.clone(),
            authenticator: context.authenticator.clone(),
            live: context.live.clone(),
            shutdown: context.shutdown.clone(),
            zone: format::zone(&settings.timezone),
            settings: std::sync::Arc::new(settings),
        }
    }
}

/// The pages, for [`carerp_bff::start_with_pages`].
pub fn router(bff: PagesContext<'_>) -> Router {
    let web = Web::new(&bff);
    let signed_in = Router::new()
        .route("/", get(pages::today::today))
        .route(
            pages::auth::PASSWORD_PATH,
            get(pages::auth::password_form).post(pages::auth::change_password),
        )
        .route("/sign-out", post(pages::auth::sign_out))
        .route(
            "/customers",
            get(pages::customers::list).post(pages::customers::create),
        )
        .route("/customers/new", get(pages::customers::new_form))
        .route(
            "/customers/{id}",
            get(pages::customers::detail).post(pages::customers::update),
        )
        .route("/customers/{id}/edit", get(pages::customers::edit_form))
        .route(
            "/customers/{id}/vehicles",
            post(pages::customers::add_vehicle),
        )
        .route("/vehicles/{id}", get(pages::customers::vehicle))
        .route(
            "/vehicles/{id}/work-orders",
            post(pages::customers::open_work_order),
        )
        .route("/work-orders", get(pages::workorders::list))
        .route("/work-orders/{id}", get(pages::workorders::detail))
        .route("/work-orders/{id}/lines", get(pages::workorders::lines))
        .route(pages::live::PATH, get(pages::live::work_orders))
        .route("/work-orders/{id}/parts", post(pages::workorders::add_part))
        .route(
            "/work-orders/{id}/labor",
            post(pages::workorders::add_labor),
        )
        .route(
            "/work-orders/{id}/status",
            get(pages::workorders::confirm_status).post(pages::workorders::change_status),
        )
        .route(
            "/work-orders/{id}/parts/{line}/remove",
            post(pages::workorders::remove_part),
        )
        .route(
            "/work-orders/{id}/labor/{line}/remove",
            post(pages::workorders::remove_labor),
        )
        .route(
            "/work-orders/{id}/notes",
            post(pages::workorders::update_notes),
        )
        .route(
            "/work-orders/{id}/retry",
            post(pages::workorders::retry_reservation),
        )
        .route("/work-orders/{id}/jobs", post(pages::workorders::add_job))
        .route(
            "/work-orders/{id}/canned-jobs",
            post(pages::workorders::add_canned_job),
        )
        .route(
            "/work-orders/{id}/recommended-jobs",
            post(pages::history::offer_again),
        )
        .route("/recommended-work", get(pages::history::recommended_work))
        .route(
            "/canned-jobs",
            get(pages::canned_jobs::list).post(pages::canned_jobs::create),
        )
        .route("/canned-jobs/{id}", post(pages::canned_jobs::update))
        .route("/canned-jobs/{id}/remove", post(pages::canned_jobs::remove))
        .route(
            "/work-orders/{id}/jobs/{job}/remove",
            post(pages::workorders::remove_job),
        )
        .route(
            "/work-orders/{id}/jobs/{job}/decision",
            post(pages::workorders::decide_job),
        )
        .route(
            "/work-orders/{id}/estimate",
            post(pages::workorders::send_estimate),
        )
        .route("/work-orders/{id}/print", get(pages::workorders::job_card))
        .route(
            "/work-orders/{id}/inspection",
            get(pages::inspections::show).post(pages::inspections::start),
        )
        .route(
            "/work-orders/{id}/inspection/items/{item}",
            post(pages::inspections::rate),
        )
        .route(
            "/work-orders/{id}/inspection/items/{item}/photos",
            post(pages::inspections::add_photo).layer(DefaultBodyLimit::max(
                carerp_bff::api::inspections::MAX_PHOTO_BODY_BYTES,
            )),
        )
        .route(
            "/work-orders/{id}/inspection/photos/{photo}",
            get(pages::inspections::photo),
        )
        .route(
            "/work-orders/{id}/inspection/photos/{photo}/remove",
            post(pages::inspections::remove_photo),
        )
        .route(
            "/work-orders/{id}/inspection/complete",
            post(pages::inspections::complete),
        )
        .route(
            "/work-orders/{id}/inspection/jobs",
            post(pages::inspections::propose_jobs),
        )
        .route(
            "/inspection-templates",
            get(pages::inspections::templates).post(pages::inspections::create_template),
        )
        .route(
            "/inspection-templates/{id}",
            post(pages::inspections::update_template),
        )
        .route("/parts", get(pages::parts::list).post(pages::parts::create))
        .route("/parts/new", get(pages::parts::new_form))
        .route(
            "/parts/{id}",
            get(pages::parts::detail).post(pages::parts::update),
        )
        .route("/parts/{id}/edit", get(pages::parts::edit_form))
        .route("/parts/{id}/stock", post(pages::parts::adjust_stock))
        .route(
            "/people",
            get(pages::people::list).post(pages::people::create),
        )
        .route(
            "/people/{id}",
            get(pages::people::person).post(pages::people::update),
        )
        .route("/people/{id}/password", post(pages::people::reset_password))
        .route("/audit", get(pages::people::audit))
        .route(
            "/api-tokens",
            get(pages::api_tokens::list).post(pages::api_tokens::create),
        )
        .route("/api-tokens/{id}/revoke", post(pages::api_tokens::revoke))
        .route("/invoices", get(pages::invoices::list))
        .route("/invoices/{id}", get(pages::invoices::detail))
        .route("/invoices/{id}/print", get(pages::invoices::print))
        .route(
            "/invoices/{id}/payments",
            post(pages::invoices::record_payment),
        )
        .route("/invoices/{id}/void", post(pages::invoices::void_invoice))
        .route_layer(middleware::from_fn_with_state(
            web.clone(),
            session::require_session,
        ));
    Router::new()
        .route(
            pages::auth::SIGN_IN_PATH,
            get(pages::auth::sign_in_form).post(pages::auth::sign_in),
        )
        .route("/assets/{file}", get(assets::serve))
        // The customer's page: the link's token is its authorisation, no sign-in.
        .route("/approve/{token}", get(pages::approval::show))
        .route("/approve/{token}/jobs/{job}", post(pages::approval::decide))
        .route(
            "/approve/{token}/photos/{photo}",
            get(pages::approval::photo),
        )
        .merge(signed_in)
        .with_state(web)
        .layer(middleware::from_fn(session::same_origin))
        .layer(middleware::from_fn(request_context))
}

/// The BFF with the web app: what the `carerp-bff` binary runs.
pub async fn start(config: BffConfig) -> anyhow::Result<RunningBff> {
    carerp_bff::start_with_pages(config, router).await
}

/// Correlation id and trace context for a page, as the API's edge gives its requests, and
/// one log line per page; the answer stays HTML (the API's edge makes errors problem+json).
async fn request_context(mut request: Request, next: Next) -> Response {
    let ctx = {
        let headers = request.headers();
        let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        RequestContext::from_headers(
            header_str(CORRELATION_HEADER),
            header_str(TRACEPARENT_HEADER),
        )
    };
    let method = request.method().clone();
    // Without the approval link's token.
    let path = carerp_bff::edge::loggable_path(request.uri().path()).into_owned();
    let (span, ctx) = carerp_kit::telemetry::request_span(&format!("{method} {path}"), ctx);
    request.extensions_mut().insert(ctx.clone());
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&ctx.correlation_id) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    let status = response.status().as_u16();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(elapsed_ms, status, "{method} {path} failed");
        } else {
            tracing::info!(elapsed_ms, status, "{method} {path}");
        }
    });
    response
}
