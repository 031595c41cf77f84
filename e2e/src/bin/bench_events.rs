//! Drives N work orders through the whole saga, 16 at a time, and prints throughput, the
//! latency from completion to INVOICED (p50/p99) and its four hops; then 30 more one at a
//! time, the same figures with nothing queued in front of each saga; and how fast the outbox
//! relays publish.
//!
//! `just bench-events` (N defaults to 200; `BENCH_WORK_ORDERS=1000 just bench-events`).
//!
//! Last, the relay against two private `nats-server`s side by side, one open and one with
//! per-tenant credentials (decentralized JWT auth, the tenant's permissions checked on every
//! publish): what signing in and the permission checks cost the relay.

use std::time::{Duration, Instant};

use carerp_e2e::{Broker, BrokerAuth, Platform, eventually};
use carerp_kit::TenantSettings;
use carerp_kit::messaging::BrokerIdentity;
use carerp_proto::common::v1::Money;
use carerp_proto::customer::v1 as customer;
use carerp_proto::inventory::v1 as inventory;
use carerp_proto::workorder::v1 as wo;
use carerp_proto::workorder::v1::{ReservationState, WorkOrderStatus};

const PARALLEL: usize = 16;

/// Work orders driven one at a time after the loaded run: the saga's latency with nothing
/// queued in front of it, the floor under the loaded figure.
const ALONE: usize = 30;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("BENCH_WORK_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let settings = TenantSettings {
        tax_rate_bp: 1900,
        labor_rate_minor: 8000,
        ..Default::default()
    };
    let mut p = Platform::start(settings).await?;
    let c = p
        .customers
        .create_customer(customer::CreateCustomerRequest {
            name: "Fleet Customer".into(),
            email: "fleet@example.com".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let v = p
        .customers
        .add_vehicle(customer::AddVehicleRequest {
            customer_id: c.id.clone(),
            vin: "WVWZZZ1KZAW999999".into(),
            make: "Ford".into(),
            model: "Transit".into(),
            year: 2022,
            ..Default::default()
        })
        .await?
        .into_inner();
    let eur = |amount_minor| {
        Some(Money {
            amount_minor,
            currency: "EUR".into(),
        })
    };
    let part = p
        .inventory
        .create_part(inventory::CreatePartRequest {
            sku: "BENCH-1".into(),
            name: "Oil filter".into(),
            unit_cost: eur(400),
            unit_price: eur(900),
            initial_quantity: i32::try_from((n + ALONE) * 2)?,
            ..Default::default()
        })
        .await?
        .into_inner();

    let loaded = drive(&p, (&c.id, &v.id, &part.id), n, PARALLEL).await?;
    let alone = drive(&p, (&c.id, &v.id, &part.id), ALONE, 1).await?;

    let mut published = 0i64;
    for pool in &p.pools {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(pool)
            .await?;
        published += count;
    }
    println!("events published:            {published}");

    // The relay on its own: a backlog written while no relay ran, drained in one go.
    p.stop_services().await?;
    let backlog: i64 = std::env::var("BENCH_RELAY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let pool = &p.pools[0];
    write_backlog(pool, backlog).await?;
    let relay = carerp_kit::relay::Relay::new(
        pool.clone(),
        p.jetstream.clone(),
        "bench",
        &p.tenant,
        &carerp_kit::Metrics::new(),
    );
    let started = Instant::now();
    let relayed = relay.drain().await?;
    let seconds = started.elapsed().as_secs_f64();
    println!("relay backlog drained:       {relayed} events in {seconds:.2} s");
    println!(
        "relay throughput:            {:.0} events/s",
        relayed as f64 / seconds
    );
    let (open_rate, auth_rate) = match relay_open_and_authenticated(pool, &p.tenant, backlog)
        .await?
    {
        Some((open, auth)) => {
            println!("relay, private NATS open:    {open:.0} events/s");
            println!(
                "relay, private NATS auth:    {auth:.0} events/s ({:+.1}% with per-tenant credentials)",
                (auth / open - 1.0) * 100.0
            );
            (Some(open), Some(auth))
        }
        None => {
            println!("relay with and without NATS auth: skipped (nats-server is not installed)");
            (None, None)
        }
    };
    let file = carerp_e2e::bench::record(
        "events",
        serde_json::json!({
            "work_orders": n,
            "seconds": loaded.elapsed.as_secs_f64(),
            "work_orders_per_second": loaded.per_second(),
            "completed_to_invoiced_p50_ms": loaded.p50_ms,
            "completed_to_invoiced_p99_ms": loaded.p99_ms,
            "hops_ms": loaded.hops_json(),
            "alone": alone.json(),
            "events_published": published,
            "relay_events": relayed,
            "relay_events_per_second": relayed as f64 / seconds,
            "relay_open_nats_events_per_second": open_rate,
            "relay_authenticated_nats_events_per_second": auth_rate,
        }),
    )?;
    println!("figures written to {}", file.display());
    p.stop().await?;
    Ok(())
}

/// `n` work orders driven through the saga, `at_once` at a time (each client starts its
/// next when its last one is INVOICED).
struct SagaRun {
    at_once: usize,
    orders: usize,
    elapsed: Duration,
    p50_ms: f64,
    p99_ms: f64,
    hops: Vec<(&'static str, (f64, f64))>,
}

async fn drive(
    p: &Platform,
    (customer, vehicle, part): (&str, &str, &str),
    n: usize,
    at_once: usize,
) -> anyhow::Result<SagaRun> {
    println!("driving {n} work orders through the saga, {at_once} at a time");
    let started = Instant::now();
    let mut invoiced = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(at_once) {
        let runs = chunk.iter().map(|_| {
            let mut orders = p.work_orders.clone();
            async move { one_work_order(&mut orders, customer, vehicle, part).await }
        });
        for id in futures::future::join_all(runs).await {
            invoiced.push(id?);
        }
    }
    let elapsed = started.elapsed();
    let mut latencies = invoiced_after_completion(&p.pools[1], &invoiced).await?;
    latencies.sort();
    let ms = |q: f64| {
        latencies[((latencies.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0
    };
    let run = SagaRun {
        at_once,
        orders: n,
        elapsed,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        hops: saga_hops(&p.pools[1], &p.pools[3], &invoiced).await?,
    };
    run.print();
    Ok(run)
}

impl SagaRun {
    fn per_second(&self) -> f64 {
        self.orders as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self) {
        println!(
            "work orders:                 {} ({} at a time)",
            self.orders, self.at_once
        );
        println!(
            "total time:                  {:.2} s",
            self.elapsed.as_secs_f64()
        );
        println!(
            "throughput:                  {:.1} work orders/s",
            self.per_second()
        );
        println!("completed -> INVOICED p50:   {:.1} ms", self.p50_ms);
        println!("completed -> INVOICED p99:   {:.1} ms", self.p99_ms);
        for (hop, (p50, p99)) in &self.hops {
            println!("  {hop:<38} p50 {p50:>6.1} ms   p99 {p99:>6.1} ms");
        }
    }

    fn hops_json(&self) -> serde_json::Value {
        self.hops
            .iter()
            .map(|(hop, (p50, p99))| (hop.to_string(), serde_json::json!({"p50": p50, "p99": p99})))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "work_orders": self.orders,
            "at_once": self.at_once,
            "work_orders_per_second": self.per_second(),
            "completed_to_invoiced_p50_ms": self.p50_ms,
            "completed_to_invoiced_p99_ms": self.p99_ms,
            "hops_ms": self.hops_json(),
        })
    }
}

/// Where each saga's time went, from the timestamps the services keep (outbox `created_at`
/// is the writing transaction's start, `published_at` the relay's mark after JetStream's ack,
/// inbox `handled_at` the handler's transaction start), p50 and p99 of each stretch in ms.
/// A completion and the invoice it led to share a correlation id. Only `orders`' sagas count.
async fn saga_hops(
    workorder: &sqlx::PgPool,
    billing: &sqlx::PgPool,
    orders: &[String],
) -> anyhow::Result<Vec<(&'static str, (f64, f64))>> {
    use std::collections::HashMap;
    type Moment = chrono::DateTime<chrono::Utc>;
    let completed: Vec<(uuid::Uuid, String, Moment, Option<Moment>)> = sqlx::query_as(
        "SELECT id, correlation_id, created_at, published_at FROM outbox
         WHERE topic = 'workorder.completed' AND aggregate_id = ANY($1)",
    )
    .bind(orders)
    .fetch_all(workorder)
    .await?;
    let billing_handled: HashMap<uuid::Uuid, Moment> = sqlx::query_as(
        "SELECT event_id, handled_at FROM inbox WHERE topic = 'workorder.completed'",
    )
    .fetch_all(billing)
    .await?
    .into_iter()
    .collect();
    let invoiced: HashMap<String, (uuid::Uuid, Option<Moment>)> = sqlx::query_as(
        "SELECT correlation_id, id, published_at FROM outbox WHERE topic = 'invoice.created'",
    )
    .fetch_all(billing)
    .await?
    .into_iter()
    .map(
        |(correlation, id, published): (String, uuid::Uuid, Option<Moment>)| {
            (correlation, (id, published))
        },
    )
    .collect();
    let workorder_handled: HashMap<uuid::Uuid, Moment> =
        sqlx::query_as("SELECT event_id, handled_at FROM inbox WHERE topic = 'invoice.created'")
            .fetch_all(workorder)
            .await?
            .into_iter()
            .collect();
    let mut stretches: [Vec<f64>; 4] = Default::default();
    let ms = |from: Moment, to: Moment| (to - from).num_microseconds().unwrap_or(0) as f64 / 1000.0;
    for (id, correlation, created, published) in completed {
        let (Some(published), Some(handled), Some((invoice, Some(invoice_published)))) = (
            published,
            billing_handled.get(&id),
            invoiced.get(&correlation),
        ) else {
            continue;
        };
        let Some(recorded) = workorder_handled.get(invoice) else {
            continue;
        };
        stretches[0].push(ms(created, published));
        stretches[1].push(ms(published, *handled));
        stretches[2].push(ms(*handled, *invoice_published));
        stretches[3].push(ms(*invoice_published, *recorded));
    }
    let names = [
        "completion -> relayed (workorder)",
        "relayed -> billing's handler starts",
        "billing's handler -> invoice relayed",
        "relayed -> workorder's handler starts",
    ];
    Ok(names
        .into_iter()
        .zip(stretches)
        .map(|(name, mut values)| {
            values.sort_by(f64::total_cmp);
            let at = |q: f64| {
                values
                    .get(((values.len() as f64 - 1.0) * q).round() as usize)
                    .map_or(0.0, |v| (v * 10.0).round() / 10.0)
            };
            (name, (at(0.5), at(0.99)))
        })
        .collect())
}

/// `n` events in the outbox of `pool`, as a relay that was away would find them.
async fn write_backlog(pool: &sqlx::PgPool, n: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO outbox (id, topic, aggregate_id, data, correlation_id, traceparent)
         SELECT gen_random_uuid(), 'bench.relayed', 'agg-' || (n % 100), jsonb_build_object('n', n),
                'bench', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
         FROM generate_series(1, $1) AS n",
    )
    .bind(n)
    .execute(pool)
    .await?;
    Ok(())
}

/// The relay's rate (events/s) draining `backlog` events into a private open broker and into
/// a private one with auth on, as the tenant's user; best of two alternating rounds each, so
/// neither is measured only cold. `None` without nats-server.
async fn relay_open_and_authenticated(
    pool: &sqlx::PgPool,
    tenant: &str,
    backlog: i64,
) -> anyhow::Result<Option<(f64, f64)>> {
    use carerp_operator::private::{PrivateNats, find_binary};
    let Some(binary) = find_binary("nats-server") else {
        return Ok(None);
    };
    let dir = tempfile::tempdir()?;
    let trust = carerp_operator::nats_auth::Trust::generate();
    let open = PrivateNats::start(&binary, &dir.path().join("open"))?;
    let auth =
        PrivateNats::start_with_auth(&binary, &dir.path().join("auth"), &trust.server_config()?)?;
    let brokers = [
        Broker::open(&open.url),
        Broker {
            url: auth.url.clone(),
            auth: Some(BrokerAuth {
                issuer: std::sync::Arc::new(trust.issuer()?),
                dir: dir.path().to_path_buf(),
            }),
        },
    ];
    let mut best = [0f64; 2];
    for _round in 0..2 {
        for (broker, best) in brokers.iter().zip(best.iter_mut()) {
            let operator = broker.connect_operator().await?;
            carerp_kit::stream::ensure_stream(&operator, tenant, &Default::default()).await?;
            let identity = match broker.tenant_credentials(tenant)? {
                Some(path) => Some(BrokerIdentity::from_file(&path, tenant).await?),
                None => None,
            };
            let js = carerp_kit::messaging::connect_as(&broker.url, identity.as_ref()).await?;
            write_backlog(pool, backlog).await?;
            let relay = carerp_kit::relay::Relay::new(
                pool.clone(),
                js,
                "bench",
                tenant,
                &carerp_kit::Metrics::new(),
            );
            let started = Instant::now();
            let relayed = relay.drain().await?;
            *best = best.max(relayed as f64 / started.elapsed().as_secs_f64());
        }
    }
    Ok(Some((best[0], best[1])))
}

/// Creates, reserves and completes one work order; returns its id once it is INVOICED.
async fn one_work_order(
    orders: &mut wo::work_order_service_client::WorkOrderServiceClient<
        carerp_kit::auth::AuthedChannel,
    >,
    customer_id: &str,
    vehicle_id: &str,
    part_id: &str,
) -> anyhow::Result<String> {
    let order = orders
        .create_work_order(wo::CreateWorkOrderRequest {
            customer_id: customer_id.into(),
            vehicle_id: vehicle_id.into(),
            complaint: "service".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let status = |status: WorkOrderStatus| wo::ChangeStatusRequest {
        id: order.id.clone(),
        status: status as i32,
        reason: String::new(),
        expected_version: 0,
    };
    orders
        .change_status(status(WorkOrderStatus::InProgress))
        .await?;
    orders
        .add_part_line(wo::AddPartLineRequest {
            work_order_id: order.id.clone(),
            part_id: part_id.into(),
            quantity: 1,
            expected_version: 0,
            idempotency_key: String::new(),
            job_id: String::new(),
        })
        .await?;
    let get = wo::GetWorkOrderRequest {
        id: order.id.clone(),
    };
    eventually("reserved", Duration::from_secs(60), async || {
        let o = orders.get_work_order(get.clone()).await.ok()?.into_inner();
        (o.part_lines.first()?.reservation_state == ReservationState::Reserved as i32).then_some(())
    })
    .await?;
    orders
        .change_status(status(WorkOrderStatus::Completed))
        .await?;
    let completed = Instant::now();
    // Asked every 20 ms only to know when it is done: the figure comes from the work order's
    // own timestamps. (Sixteen clients asking every 2 ms were most of the work order
    // service's load, and the figure was theirs as much as the saga's.)
    loop {
        let o = orders.get_work_order(get.clone()).await?.into_inner();
        if o.status == WorkOrderStatus::Invoiced as i32 {
            return Ok(order.id.clone());
        }
        anyhow::ensure!(
            completed.elapsed() < Duration::from_secs(60),
            "not invoiced within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Completion -> INVOICED of each work order, from its `completed_at` and `invoiced_at`
/// (each the start of the transaction that set the status, so the completion's commit is
/// counted and the INVOICED commit, about a millisecond, is not).
async fn invoiced_after_completion(
    workorder: &sqlx::PgPool,
    ids: &[String],
) -> anyhow::Result<Vec<Duration>> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.parse()).collect::<Result<_, _>>()?;
    let micros: Vec<i64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM invoiced_at - completed_at) * 1000000)::bigint
         FROM work_orders WHERE id = ANY($1) AND invoiced_at IS NOT NULL",
    )
    .bind(&ids)
    .fetch_all(workorder)
    .await?;
    anyhow::ensure!(
        micros.len() == ids.len(),
        "some work orders are not INVOICED"
    );
    Ok(micros
        .into_iter()
        .map(|us| Duration::from_micros(us.max(0).unsigned_abs()))
        .collect())
}
