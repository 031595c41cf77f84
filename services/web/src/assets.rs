//! The stylesheet (ours), htmx and its server-sent-events extension (from their npm packages,
//! see `build.rs`), embedded in the binary and served under URLs that carry a hash of their
//! bytes, cached for a year.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

pub fn css_url() -> String {
    format!("/assets/app-{}.css", embedded::APP_CSS_HASH)
}

pub fn htmx_url() -> String {
    format!("/assets/htmx-{}.js", embedded::HTMX_HASH)
}

pub fn htmx_sse_url() -> String {
    format!("/assets/htmx-sse-{}.js", embedded::HTMX_SSE_HASH)
}

/// `/assets/{file}`: an asset under its current URL, for good; anything else 404.
pub async fn serve(Path(file): Path<String>) -> Response {
    const JS: &str = "text/javascript; charset=utf-8";
    let path = format!("/assets/{file}");
    let served = [
        (css_url(), embedded::APP_CSS, "text/css; charset=utf-8"),
        (htmx_url(), embedded::HTMX, JS),
        (htmx_sse_url(), embedded::HTMX_SSE, JS),
    ];
    let Some((_, bytes, content_type)) = served.into_iter().find(|(url, ..)| *url == path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        bytes,
    )
        .into_response()
}
