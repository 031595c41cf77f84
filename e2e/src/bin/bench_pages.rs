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

    let mut pages = pages(&http, &base).await?;
    pages.extend(estimate_pages(&http, &base, &tenant.owner_email).await?);
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
        "/canned-jobs".into(),
        "/inspection-templates".into(),
        "/recommended-work".into(),
    ]);
    Ok(pages)
}

/// Photos on the inspection the benchmark renders.
const PHOTOS: usize = 10;

/// A work order of the demo's first vehicle built through the REST API as the owner: an
/// inspection with [`PHOTOS`] findings, each with a photo (1600 × 1200 JPEGs) and turned into
/// a job of half an hour, and the estimate of those jobs sent.
/// Answers its inspection page and the customer's approval page.
async fn estimate_pages(
    http: &reqwest::Client,
    base: &str,
    owner_email: &str,
) -> anyhow::Result<Vec<String>> {
    let login = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": owner_email, "password": OWNER_PASSWORD}))
        .send()
        .await?;
    ensure!(
        login.status().is_success(),
        "login answered {}",
        login.status()
    );
    let token = login.json::<serde_json::Value>().await?["accessToken"]
        .as_str()
        .context("no access token")?
        .to_string();
    let api = |method: reqwest::Method, path: String| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(&token)
    };
    let ok = |answer: reqwest::Response| async move {
        let status = answer.status();
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        ensure!(status.is_success(), "answered {status}: {body}");
        Ok::<_, anyhow::Error>(body)
    };
    let vehicles = ok(api(reqwest::Method::GET, "/api/vehicles?limit=1".into())
        .send()
        .await?)
    .await?;
    let vehicle = &vehicles["items"][0];
    let order = ok(api(reqwest::Method::POST, "/api/work-orders".into())
        .json(&json!({"customerId": vehicle["customerId"], "vehicleId": vehicle["id"], "complaint": "Inspection before a long trip", "odometerKm": 88000}))
        .send()
        .await?)
    .await?;
    let id = order["id"]
        .as_str()
        .context("no work order id")?
        .to_string();
    let inspection = ok(api(
        reqwest::Method::POST,
        format!("/api/work-orders/{id}/inspection"),
    )
    .json(&json!({}))
    .send()
    .await?)
    .await?;
    let items = inspection["items"]
        .as_array()
        .context("no inspection items")?
        .clone();
    for (n, item) in items.iter().take(PHOTOS).enumerate() {
        let item_id = item["id"].as_str().context("no item id")?;
        ok(api(
            reqwest::Method::PUT,
            format!("/api/work-orders/{id}/inspection/items/{item_id}"),
        )
        .json(&json!({"rating": "ADVISE", "note": format!("Finding {n}: worn, see the photo")}))
        .send()
        .await?)
        .await?;
        ok(api(
            reqwest::Method::POST,
            format!("/api/work-orders/{id}/inspection/items/{item_id}/photos"),
        )
        .header("content-type", "image/jpeg")
        .body(photo(n)?)
        .send()
        .await?)
        .await?;
    }
    for item in items.iter().skip(PHOTOS) {
        let item_id = item["id"].as_str().context("no item id")?;
        ok(api(
            reqwest::Method::PUT,
            format!("/api/work-orders/{id}/inspection/items/{item_id}"),
        )
        .json(&json!({"rating": "OK"}))
        .send()
        .await?)
        .await?;
    }
    for step in ["complete", "jobs"] {
        ok(api(
            reqwest::Method::POST,
            format!("/api/work-orders/{id}/inspection/{step}"),
        )
        .json(&json!({}))
        .send()
        .await?)
        .await?;
    }
    // An estimate says what each job costs: half an hour of labour per finding.
    let order = ok(api(reqwest::Method::GET, format!("/api/work-orders/{id}"))
        .send()
        .await?)
    .await?;
    let proposed: Vec<String> = order["jobs"]
        .as_array()
        .context("no jobs")?
        .iter()
        .filter(|job| job["state"] == "PROPOSED")
        .filter_map(|job| job["id"].as_str().map(String::from))
        .collect();
    ensure!(
        proposed.len() == PHOTOS,
        "the findings made {} jobs, not {PHOTOS}",
        proposed.len()
    );
    for job in &proposed {
        ok(api(
            reqwest::Method::POST,
            format!("/api/work-orders/{id}/labor"),
        )
        .json(&json!({"description": "Replace", "minutes": 30, "jobId": job}))
        .send()
        .await?)
        .await?;
    }
    let sent = ok(api(
        reqwest::Method::POST,
        format!("/api/work-orders/{id}/estimates"),
    )
    .json(&json!({}))
    .send()
    .await?)
    .await?;
    let approval = sent["approvalPath"]
        .as_str()
        .context("no approval path")?
        .to_string();
    Ok(vec![format!("/work-orders/{id}/inspection"), approval])
}

/// A 1600 × 1200 JPEG, different for each `n`, as a phone's camera would send after scaling.
fn photo(n: usize) -> anyhow::Result<Vec<u8>> {
    let image = image::RgbImage::from_fn(1600, 1200, |x, y| {
        image::Rgb([(x / 7) as u8, (y / 5) as u8, (n * 20) as u8])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85).encode_image(&image)?;
    Ok(jpeg)
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
