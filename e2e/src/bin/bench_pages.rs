//! The web app's pages with the demo garage: each page's server time (p50/p99) and what a
//! first and a repeat visit transfer.
//!
//! `carerp-operator local --seed-demo` starts a tenant of this run's own from the release
//! binaries next to this one; the benchmark signs in through the sign-in form (the session
//! cookie) and asks for every page `BENCH_PAGE_REQUESTS` times (default 200) after 10 to warm
//! up, one request at a time on one kept-alive connection over loopback, so a request's time
//! is the server's time plus a loopback round trip (tens of microseconds). A first visit
//! transfers the page and every asset it links; a repeat visit only the page, since assets
//! are served under hashed URLs with `Cache-Control: immutable` (checked here). Bodies are
//! counted as sent (no compression), headers not. Figures also go to
//! `target/bench/bench.json` (key `pages`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use carerp_e2e::bench;
use carerp_e2e::local::{LocalTenant, OWNER_PASSWORD};
use serde_json::json;

const WARM_UP: usize = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let requests: usize = std::env::var("BENCH_PAGE_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let tenant = LocalTenant::start("Bench Garage", &["--seed-demo"])?;
    // The seed's summary comes once the demo garage is loaded.
    tenant.wait_for_line("carerp-operator: ", Duration::from_secs(120))?;
    let base = tenant.bff.clone();
    let mut origin = reqwest::header::HeaderMap::new();
    origin.insert("origin", base.parse()?);
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(origin)
        .build()?;
    let signed_in = http
        .post(format!("{base}/sign-in"))
        .form(&[
            ("email", tenant.owner_email.as_str()),
            ("password", OWNER_PASSWORD),
        ])
        .send()
        .await?;
    ensure!(
        signed_in.status() == reqwest::StatusCode::SEE_OTHER,
        "signing in answered {}",
        signed_in.status()
    );

    let pages = pages(&http, &base).await?;
    let mut figures = BTreeMap::new();
    let mut assets_seen = BTreeMap::new();
    println!(
        "{:<34} {:>9} {:>9} {:>11} {:>12}",
        "page", "p50 ms", "p99 ms", "first KiB", "repeat KiB"
    );
    for path in &pages {
        let page = Page::measure(&http, &base, path, requests).await?;
        let mut first = page.bytes;
        for asset in &page.assets {
            if !assets_seen.contains_key(asset) {
                assets_seen.insert(asset.clone(), asset_bytes(&http, &base, asset).await?);
            }
            first += assets_seen[asset];
        }
        println!(
            "{:<34} {:>9.2} {:>9.2} {:>11.1} {:>12.1}",
            path,
            page.p50_ms,
            page.p99_ms,
            first as f64 / 1024.0,
            page.bytes as f64 / 1024.0
        );
        figures.insert(
            path.clone(),
            json!({
                "p50_ms": page.p50_ms,
                "p99_ms": page.p99_ms,
                "first_visit_bytes": first,
                "repeat_visit_bytes": page.bytes,
            }),
        );
    }
    let worst = figures
        .values()
        .filter_map(|f| f["p99_ms"].as_f64())
        .fold(0.0, f64::max);
    println!("slowest page p99: {worst:.2} ms (target under 30 ms)");
    let file = bench::record(
        "pages",
        json!({
            "requests_per_page": requests,
            "pages": figures,
            "assets_bytes": assets_seen,
            "slowest_p99_ms": worst,
        }),
    )?;
    println!("figures written to {}", file.display());
    tenant.stop()?;
    Ok(())
}

/// Every page of the app, with ids of the demo garage taken from the lists' links.
async fn pages(http: &reqwest::Client, base: &str) -> anyhow::Result<Vec<String>> {
    let html = |path: String| async move {
        let page = http.get(format!("{base}{path}")).send().await?;
        ensure!(
            page.status().is_success(),
            "{path} answered {}",
            page.status()
        );
        Ok::<_, anyhow::Error>(page.text().await?)
    };
    let customers = html("/customers".into()).await?;
    let customer = first_link(&customers, "/customers/").context("no customer in the demo")?;
    let customer_page = html(customer.clone()).await?;
    let vehicle = first_link(&customer_page, "/vehicles/").context("no vehicle in the demo")?;
    let board = html("/work-orders".into()).await?;
    let order = first_link(&board, "/work-orders/").context("no work order in the demo")?;
    let parts = html("/parts".into()).await?;
    let part = first_link(&parts, "/parts/").context("no part in the demo")?;
    let invoices = html("/invoices".into()).await?;
    let invoice = first_link(&invoices, "/invoices/").context("no invoice in the demo")?;
    let mut pages: Vec<String> = ["/", "/customers", "/work-orders", "/parts", "/invoices"]
        .map(String::from)
        .to_vec();
    pages.extend([
        "/customers/new".into(),
        customer,
        vehicle,
        format!("{order}/print"),
        order,
        "/parts/new".into(),
        part,
        format!("{invoice}/print"),
        invoice,
        "/people".into(),
        "/audit".into(),
        "/password".into(),
    ]);
    Ok(pages)
}

/// The first `href="<prefix><uuid>"` in `html`.
fn first_link(html: &str, prefix: &str) -> Option<String> {
    let needle = format!("href=\"{prefix}");
    html.match_indices(&needle).find_map(|(at, _)| {
        let start = at + "href=\"".len();
        let id = html.get(start + prefix.len()..start + prefix.len() + 36)?;
        uuid::Uuid::parse_str(id)
            .ok()
            .map(|_| format!("{prefix}{id}"))
    })
}

struct Page {
    p50_ms: f64,
    p99_ms: f64,
    bytes: usize,
    /// The `/assets/...` URLs it links.
    assets: Vec<String>,
}

impl Page {
    async fn measure(
        http: &reqwest::Client,
        base: &str,
        path: &str,
        requests: usize,
    ) -> anyhow::Result<Self> {
        let mut times = Vec::with_capacity(requests);
        let mut last = String::new();
        for n in 0..WARM_UP + requests {
            let started = Instant::now();
            let page = http.get(format!("{base}{path}")).send().await?;
            let status = page.status();
            let body = page.text().await?;
            let elapsed = started.elapsed();
            ensure!(status.is_success(), "{path} answered {status}: {body}");
            if n >= WARM_UP {
                times.push(elapsed);
            }
            last = body;
        }
        times.sort();
        let at = |q: f64| {
            let index = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
            times[index].as_secs_f64() * 1000.0
        };
        Ok(Self {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            bytes: last.len(),
            assets: last
                .match_indices("\"/assets/")
                .filter_map(|(at, _)| {
                    let rest = &last[at + 1..];
                    rest.find('"').map(|end| rest[..end].to_string())
                })
                .collect(),
        })
    }
}

/// An asset's size, after checking that a browser keeps it for good.
async fn asset_bytes(http: &reqwest::Client, base: &str, asset: &str) -> anyhow::Result<usize> {
    let answer = http.get(format!("{base}{asset}")).send().await?;
    ensure!(
        answer.status().is_success(),
        "{asset} answered {}",
        answer.status()
    );
    let caching = answer
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    ensure!(
        caching.contains("immutable"),
        "{asset} is not cached for good: Cache-Control {caching:?}"
    );
    Ok(answer.bytes().await?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_link_to_an_id_is_found() {
        let html = r#"<a href="/customers/new">New</a><a href="/customers/01a23575-a8e3-77d6-9af9-5662dcb4461a">A</a>"#;
        assert_eq!(
            first_link(html, "/customers/").as_deref(),
            Some("/customers/01a23575-a8e3-77d6-9af9-5662dcb4461a")
        );
        assert_eq!(first_link(html, "/parts/"), None);
    }
}
