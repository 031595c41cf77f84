//! What signing in and checking tokens cost: sign-in latency through the BFF (Argon2id
//! dominates it), the cost of verifying one access token (the BFF and every service each do it
//! once per call), and the throughput of an authenticated read, with the share of its time
//! that the two verifications take.
//!
//! `just bench-auth` (release build; `BENCH_SIGN_INS`, `BENCH_READS` change the counts).

use std::time::{Duration, Instant};

use carerp_e2e::{OWNER_PASSWORD, Platform};
use carerp_kit::auth::{Role, testing};
use carerp_operator::crd::Service;
use carerp_proto::customer::v1 as customer;
use serde_json::json;

const CLIENTS: usize = 16;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sign_ins = count("BENCH_SIGN_INS", 50);
    let reads = count("BENCH_READS", 8000);
    let mut p = Platform::start(Default::default()).await?;
    let urls = p.grpc_urls();
    let url = |s: Service| urls.get(&s).cloned().unwrap_or_default();
    let mut config = carerp_bff::BffConfig::for_tests(
        &p.tenant,
        url(Service::Customer),
        url(Service::Workorder),
        url(Service::Inventory),
        url(Service::Billing),
        url(Service::Identity),
    );
    config.rate_limit_per_second = 0;
    let bff = carerp_bff::start(config).await?;
    let base = format!("http://{}", bff.http_addr);
    let http = reqwest::Client::new();

    // Sign-in, one at a time, as people do.
    let mut latencies = Vec::with_capacity(sign_ins);
    let mut token = String::new();
    for _ in 0..sign_ins {
        let started = Instant::now();
        let response = http
            .post(format!("{base}/api/auth/login"))
            .json(&json!({"email": p.owner.email, "password": OWNER_PASSWORD}))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 200, "sign-in: {}", response.status());
        let session: serde_json::Value = response.json().await?;
        latencies.push(started.elapsed());
        token = session["accessToken"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
    latencies.sort();
    println!(
        "sign-in through the BFF: {sign_ins} sign-ins, p50 {:.1} ms, p99 {:.1} ms (Argon2id m={} KiB, t={}, p={})",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        carerp_identity::secrets::ARGON2_M_COST_KIB,
        carerp_identity::secrets::ARGON2_T_COST,
        carerp_identity::secrets::ARGON2_P_COST,
    );

    // Verifying an access token: what the BFF and each service do per call. A token seen for
    // the first time has its Ed25519 signature checked; one seen before (a client sends the
    // same one for 15 minutes) only its expiry.
    let keys = testing::verifying_keys(&p.tenant);
    let rounds = 5_000;
    let fresh: Vec<_> = (0..rounds)
        .map(|_| testing::token(&p.tenant, Role::Technician))
        .collect();
    let started = Instant::now();
    for token in &fresh {
        std::hint::black_box(keys.verify(std::hint::black_box(token.expose()))?);
    }
    let first = started.elapsed() / rounds;
    let started = Instant::now();
    for _ in 0..4 {
        for token in &fresh {
            std::hint::black_box(keys.verify(std::hint::black_box(token.expose()))?);
        }
    }
    let verify = started.elapsed() / (4 * rounds);
    println!(
        "token verification: {:.1} µs for a token seen the first time (EdDSA signature, kid, expiry, tenant), {:.2} µs per call after (target under 50 µs)",
        first.as_secs_f64() * 1e6,
        verify.as_secs_f64() * 1e6
    );

    // An authenticated read under load.
    let created = p
        .customers
        .create_customer(customer::CreateCustomerRequest {
            name: "Bench Reader".into(),
            email: "reader@example.com".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let path = format!("{base}/api/customers/{}", created.id);
    let started = Instant::now();
    let per_client = reads / CLIENTS;
    let runs = (0..CLIENTS).map(|_| {
        let (http, path, token) = (http.clone(), path.clone(), token.clone());
        tokio::spawn(async move {
            let mut times = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let t = Instant::now();
                let response = http.get(&path).bearer_auth(&token).send().await?;
                anyhow::ensure!(response.status() == 200, "read: {}", response.status());
                response.bytes().await?;
                times.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(times)
        })
    });
    let mut times = Vec::with_capacity(reads);
    for run in futures::future::join_all(runs).await {
        times.extend(run??);
    }
    let elapsed = started.elapsed();
    times.sort();
    let mean = times.iter().sum::<Duration>() / u32::try_from(times.len().max(1))?;
    println!(
        "authenticated GET /api/customers/{{id}}: {} reads, {CLIENTS} clients, {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
        times.len(),
        times.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
    );
    println!(
        "  two verifications per read (BFF, customer service) take {:.1} µs of a {:.0} µs mean: {:.2}% of a read (target: within 10%)",
        2.0 * verify.as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6,
        200.0 * verify.as_secs_f64() / mean.as_secs_f64()
    );
    let file = carerp_e2e::bench::record(
        "auth",
        serde_json::json!({
            "sign_ins": sign_ins,
            "sign_in_p50_ms": ms(percentile(&latencies, 0.5)),
            "sign_in_p99_ms": ms(percentile(&latencies, 0.99)),
            "token_first_verification_us": first.as_secs_f64() * 1e6,
            "token_verification_us": verify.as_secs_f64() * 1e6,
            "authenticated_reads": times.len(),
            "authenticated_reads_per_second": times.len() as f64 / elapsed.as_secs_f64(),
            "authenticated_read_p50_ms": ms(percentile(&times, 0.5)),
            "authenticated_read_p99_ms": ms(percentile(&times, 0.99)),
            "verification_share_of_read": 2.0 * verify.as_secs_f64() / mean.as_secs_f64(),
        }),
    )?;
    println!("figures written to {}", file.display());
    bff.stop().await?;
    p.stop().await?;
    Ok(())
}
