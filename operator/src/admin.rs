//! `/metrics`, `/healthz` and `/readyz` of the operator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

#[derive(Clone)]
struct AdminState {
    metrics: Metrics,
    leading: Arc<AtomicBool>,
}

/// The running admin server.
pub struct Admin {
    pub addr: SocketAddr,
    leading: Arc<AtomicBool>,
}

impl Admin {
    /// Shown by `/readyz`; a standby replica is ready too (it is waiting for the Lease).
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
    }
}

pub fn router(metrics: Metrics, leading: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(state): State<AdminState>| async move {
                if state.leading.load(Ordering::SeqCst) {
                    "ready: leading"
                } else {
                    "ready: standby"
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(state): State<AdminState>| async move {
                (
                    [(
                        CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    state.metrics.encode(),
                )
                    .into_response()
            }),
        )
        .with_state(AdminState { metrics, leading })
}

/// Binds `addr` and serves in the background.
pub async fn serve(addr: SocketAddr, metrics: Metrics) -> std::io::Result<Admin> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let leading = Arc::new(AtomicBool::new(false));
    let app = router(metrics, leading.clone());
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "admin server stopped");
        }
    });
    Ok(Admin { addr, leading })
}
