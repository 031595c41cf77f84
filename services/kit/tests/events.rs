//! The outbox relay and the consumer runtime against the real PostgreSQL and NATS.
//! Each test uses a tenant (so a stream and subjects) of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use carerp_kit::consumer::{Consumer, EventHandler, HandlerError, MAX_DELIVERIES, Timing};
use carerp_kit::dead_letter::{self, DeadLetter};
use carerp_kit::envelope::{CloudEvent, stream_name, subject};
use carerp_kit::relay::Relay;
use carerp_kit::stream::{StreamSettings, ensure_stream};
use carerp_kit::{Metrics, RequestContext, outbox};
use futures::StreamExt;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn unique_tenant() -> String {
    format!("t{}", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

async fn jetstream_for(tenant: &str) -> jetstream::Context {
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = jetstream::new(client);
    ensure_stream(&js, tenant, &StreamSettings::default())
        .await
        .unwrap();
    js
}

async fn enqueue(
    pool: &PgPool,
    context: &RequestContext,
    topic: &str,
    aggregate: &str,
    n: i64,
) -> uuid::Uuid {
    let mut tx = outbox::begin(pool).await.unwrap();
    let id = outbox::enqueue(
        &mut tx,
        context,
        topic,
        aggregate,
        &serde_json::json!({ "n": n }),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

/// The tenant's dead letters, oldest first.
async fn dead_letters(js: &jetstream::Context, tenant: &str) -> Vec<DeadLetter> {
    dead_letter::list(js, tenant, &dead_letter::Filter::default())
        .await
        .unwrap()
}

/// Every message of the stream on `subject`, in stream order.
async fn stored(
    js: &jetstream::Context,
    tenant: &str,
    subject: &str,
) -> Vec<async_nats::jetstream::Message> {
    let stream = js.get_stream(stream_name(tenant)).await.unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            filter_subject: subject.to_string(),
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(1000)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .unwrap();
    let mut messages = Vec::new();
    while let Some(Ok(message)) = batch.next().await {
        messages.push(message);
    }
    messages
}

#[sqlx::test(migrator = "carerp_kit::db::KIT_MIGRATOR")]
async fn the_relay_publishes_committed_events_in_order_once(pool: PgPool) {
    let tenant = unique_tenant();
    let js = jetstream_for(&tenant).await;
    let context = RequestContext::new_root();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(enqueue(&pool, &context, "customer.created", "agg-1", n).await);
    }
    // A rolled-back change leaves no event.
    let mut tx = pool.begin().await.unwrap();
    outbox::enqueue(
        &mut tx,
        &context,
        "customer.created",
        "agg-1",
        &serde_json::json!({"n": 99}),
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();

    let relay = Relay::new(
        pool.clone(),
        js.clone(),
        "customer",
        &tenant,
        &Metrics::new(),
    );
    assert_eq!(relay.drain().await.unwrap(), 5);
    assert_eq!(relay.drain().await.unwrap(), 0);
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(pending, 0);

    let messages = stored(&js, &tenant, &subject(&tenant, "customer.created")).await;
    let events: Vec<CloudEvent> = messages
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect();
    assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(
        events
            .iter()
            .map(|e| e.data["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    let first = &events[0];
    assert_eq!(first.specversion, "1.0");
    assert_eq!(first.source, "customer");
    assert_eq!(first.tenant, tenant);
    assert_eq!(first.subject, "agg-1");
    assert_eq!(first.correlationid, context.correlation_id);
    assert_eq!(first.traceparent, context.traceparent());
    let msg_id = messages[0]
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .unwrap()
        .as_str()
        .to_string();
    assert_eq!(msg_id, ids[0].to_string());

    // Marking a row unpublished again (a crash after publish, before commit) republishes it,
    // and the stream's duplicate window drops the copy.
    sqlx::query("UPDATE outbox SET published_at = NULL WHERE id = $1")
        .bind(ids[0])
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(relay.drain().await.unwrap(), 1);
    assert_eq!(
        stored(&js, &tenant, &subject(&tenant, "customer.created"))
            .await
            .len(),
        5
    );
    carerp_kit::stream::delete_streams(&js, &tenant)
        .await
        .unwrap();
}

/// Counts what it applies; fails on `{"poison": true}`.
#[derive(Clone, Default)]
struct Counting {
    applied: Arc<AtomicUsize>,
}

impl EventHandler for Counting {
    fn topics(&self) -> &'static [&'static str] {
        &["test.happened"]
    }

    async fn handle(
        &self,
        tx: &mut PgConnection,
        _: &RequestContext,
        event: &CloudEvent,
    ) -> Result<(), HandlerError> {
        if event.data["poison"] == true {
            return Err("this event can never be handled".into());
        }
        if event.data["poison"] == "permanent" {
            return Err(Box::new(carerp_kit::consumer::Permanent(
                "contradicts itself".into(),
            )));
        }
        sqlx::query("SELECT 1").execute(&mut *tx).await?;
        self.applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// `handler` consuming `tenant`'s events as the service `service`, with the default timing.
fn consumer_of<H: EventHandler>(
    pool: &PgPool,
    js: &jetstream::Context,
    tenant: &str,
    service: &str,
    handler: H,
) -> Consumer<H> {
    Consumer {
        pool: pool.clone(),
        jetstream: js.clone(),
        service: service.into(),
        tenant: tenant.into(),
        handler,
        timing: Timing::default(),
        metrics: Default::default(),
    }
}

async fn publish_raw(js: &jetstream::Context, tenant: &str, event: &CloudEvent, msg_id: &str) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    js.publish_with_headers(
        subject(tenant, &event.event_type),
        headers,
        serde_json::to_vec(event).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

fn event(tenant: &str, data: serde_json::Value) -> CloudEvent {
    let context = RequestContext::new_root();
    CloudEvent {
        specversion: "1.0".into(),
        id: uuid::Uuid::now_v7(),
        source: "test".into(),
        event_type: "test.happened".into(),
        subject: "agg".into(),
        time: chrono::Utc::now(),
        datacontenttype: "application/json".into(),
        data,
        tenant: tenant.into(),
        correlationid: context.correlation_id.clone(),
        traceparent: context.traceparent(),
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..150 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

#[sqlx::test(migrator = "carerp_kit::db::KIT_MIGRATOR")]
async fn a_duplicated_event_has_one_effect_and_a_poison_event_is_dead_lettered(pool: PgPool) {
    let tenant = unique_tenant();
    let js = jetstream_for(&tenant).await;
    let handler = Counting::default();
    let shutdown = CancellationToken::new();
    let consumer = consumer_of(&pool, &js, &tenant, "tester", handler.clone());
    let running = tokio::spawn(consumer.run(shutdown.clone()));

    let poison = event(&tenant, serde_json::json!({ "poison": true }));
    publish_raw(&js, &tenant, &poison, "poison").await;
    let good = event(&tenant, serde_json::json!({ "poison": false }));
    // The same event twice, under different message ids so the stream keeps both copies.
    publish_raw(&js, &tenant, &good, "copy-1").await;
    publish_raw(&js, &tenant, &good, "copy-2").await;

    // The good event is not held up behind the poison one.
    eventually("the good event is applied", async || {
        handler.applied.load(Ordering::SeqCst) == 1
    })
    .await;
    eventually("the poison event is dead-lettered", async || {
        !dead_letters(&js, &tenant).await.is_empty()
    })
    .await;
    let dead = dead_letters(&js, &tenant).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error, "this event can never be handled");
    assert_eq!(dead[0].consumer, "tester");
    assert_eq!(dead[0].topic, "test.happened");
    assert_eq!(
        dead[0].attempts, MAX_DELIVERIES,
        "given up after the last delivery"
    );
    assert_eq!(dead[0].event_id, Some(poison.id));
    let dead_event: CloudEvent = serde_json::from_value(dead[0].event.clone()).unwrap();
    assert_eq!(dead_event, poison);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handler.applied.load(Ordering::SeqCst), 1);
    let inbox: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(inbox, 1);
    shutdown.cancel();
    running.await.unwrap().unwrap();
    carerp_kit::stream::delete_streams(&js, &tenant)
        .await
        .unwrap();
}

/// A NATS server of the test's own, so it can be stopped without disturbing anyone else.
struct PrivateNats {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateNats {
    fn binary() -> Option<String> {
        [
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_string)
    }

    async fn start(port: u16, dir: tempfile::TempDir) -> Self {
        let binary = Self::binary().expect("nats-server is installed (.ci/run installs it)");
        let child = std::process::Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = Self { child, port, dir };
        eventually("the private NATS answers", async || {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        server
    }

    fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir
    }
}

/// A running relay is woken by the commit of a transaction that enqueued, not by its
/// 30-second poll (`eventually` gives up after 15 s): each event goes out once its
/// transaction commits, and once only.
#[sqlx::test(migrator = "carerp_kit::db::KIT_MIGRATOR")]
async fn a_committed_event_wakes_the_running_relay(pool: PgPool) {
    let tenant = unique_tenant();
    let js = jetstream_for(&tenant).await;
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(
        Relay::new(
            pool.clone(),
            js.clone(),
            "customer",
            &tenant,
            &Metrics::new(),
        )
        .run(shutdown.clone()),
    );
    let published = async || -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let context = RequestContext::new_root();
    for n in 1..=3 {
        // Each after the relay went back to waiting: only a wake gets it out in time.
        let mut tx = outbox::begin(&pool).await.unwrap();
        outbox::enqueue(
            &mut tx,
            &context,
            "customer.created",
            &format!("c-{n}"),
            &serde_json::json!({ "n": n }),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            published().await,
            n - 1,
            "nothing goes out before the commit"
        );
        tx.commit().await.unwrap();
        eventually("the committed event is published", async || {
            published().await == n
        })
        .await;
    }
    assert_eq!(
        stored(&js, &tenant, &subject(&tenant, "customer.created"))
            .await
            .len(),
        3
    );
    shutdown.cancel();
    relay.await.unwrap();
}

#[sqlx::test(migrator = "carerp_kit::db::KIT_MIGRATOR")]
async fn events_written_while_nats_is_down_arrive_once_it_is_back(pool: PgPool) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let tenant = unique_tenant();
    let nats = PrivateNats::start(port, tempfile::tempdir().unwrap()).await;
    let url = format!("nats://127.0.0.1:{}", nats.port);
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(&url)
        .await
        .unwrap();
    let js = jetstream::new(client);
    ensure_stream(&js, &tenant, &StreamSettings::default())
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(
        Relay::new(
            pool.clone(),
            js.clone(),
            "workorder",
            &tenant,
            &Metrics::new(),
        )
        .run(shutdown.clone()),
    );

    let context = RequestContext::new_root();
    enqueue(&pool, &context, "workorder.completed", "wo-0", 0).await;
    let published = async || -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    eventually("the first event is published", async || {
        published().await == 1
    })
    .await;

    let dir = nats.stop();
    for n in 1..=20 {
        enqueue(
            &pool,
            &context,
            "workorder.completed",
            &format!("wo-{n}"),
            n,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        published().await,
        1,
        "nothing can be published while NATS is down"
    );

    let nats = PrivateNats::start(port, dir).await;
    eventually("every event is published after NATS returns", async || {
        published().await == 21
    })
    .await;
    let messages = stored(&js, &tenant, &subject(&tenant, "workorder.completed")).await;
    let mut ns: Vec<i64> = messages
        .iter()
        .map(|m| {
            serde_json::from_slice::<CloudEvent>(&m.payload)
                .unwrap()
                .data["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ns.sort();
    assert_eq!(
        ns,
        (0..=20).collect::<Vec<_>>(),
        "every event once, none lost or doubled"
    );
    shutdown.cancel();
    relay.await.unwrap();
    nats.stop();
}

/// Fails with a lost connection `failures` times, then applies; slow on its first call if asked.
#[derive(Clone)]
struct Flaky {
    calls: Arc<AtomicUsize>,
    failures: usize,
    first_call_takes: Duration,
}

impl EventHandler for Flaky {
    fn topics(&self) -> &'static [&'static str] {
        &["test.happened"]
    }

    async fn handle(
        &self,
        tx: &mut PgConnection,
        _: &RequestContext,
        event: &CloudEvent,
    ) -> Result<(), HandlerError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call == 0 {
            tokio::time::sleep(self.first_call_takes).await;
        }
        if call < self.failures {
            return Err(Box::new(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by the database",
            ))));
        }
        sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
            .bind(event.id)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

async fn run_flaky(
    pool: &PgPool,
    handler: Flaky,
    timing: Timing,
) -> (
    String,
    jetstream::Context,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), carerp_kit::consumer::ConsumerError>>,
) {
    sqlx::query("CREATE TABLE effects (event_id UUID NOT NULL)")
        .execute(pool)
        .await
        .unwrap();
    let tenant = unique_tenant();
    let js = jetstream_for(&tenant).await;
    let shutdown = CancellationToken::new();
    let consumer = Consumer {
        timing,
        ..consumer_of(pool, &js, &tenant, "flaky", handler)
    };
    let running = tokio::spawn(consumer.run(shutdown.clone()));
    (tenant, js, shutdown, running)
}

async fn effects(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "carerp_kit::db::KIT_MIGRATOR")]
async fn a_database_outage_is_retried_past_the_delivery_limit_and_never_dead_lettered(
    pool: PgPool,
) {
    let failures = usize::try_from(MAX_DELIVERIES).unwrap() + 3;
    let handler = Flaky {
        calls: Arc::default(),
        failures,
        first_call_takes: Duration::ZERO,
    };
    let timing = Timing {
        ack_wait: Duration::from_secs(30),
        retry_base: Duration::from_millis(5),
        ..Timing::default()
    };
    let (tenant, js, shutdown, running) = run_flaky(&pool, handler.clone(), timing).await;
    publish_raw(
        &js,
        &tenant,
        &event(&tenant, serde_json::json!({})),
        "outage",
    )
    .await;

    eventually(
        "the event is applied once the database is back",
        async || effects(&pool).await == 1,
    )
    .await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), failures + 1);
    assert!(dead_letters(&js, &tenant).await.is_empty());
    shutdown.cancel();
    running.await.unwrap().unwrap();
    carerp_kit::stream::delete_streams(&js, &tenant)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "carerp_kit::db::KIT_MIGRATOR")]
async fn an_event_redelivered_before_its_ack_arrived_has_one_effect(pool: PgPool) {
    // The first attempt outlives the ack wait without a word, as a consumer that hangs or
    // crashed before acking would: the server delivers the event again, and the inbox turns
    // the copy away.
    let handler = Flaky {
        calls: Arc::default(),
        failures: 0,
        first_call_takes: Duration::from_millis(2500),
    };
    let timing = Timing {
        ack_wait: Duration::from_secs(1),
        retry_base: Duration::from_millis(5),
        keep_alive: false,
    };
    let (tenant, js, shutdown, running) = run_flaky(&pool, handler.clone(), timing).await;
    let sent = event(&tenant, serde_json::json!({}));
    publish_raw(&js, &tenant, &sent, "slow").await;

    eventually("the event is applied", async || effects(&pool).await == 1).await;
    let stream = js.get_stream(stream_name(&tenant)).await.unwrap();
    eventually(
        "the event was delivered again and acknowledged",
        async || {
            let mut consumer: jetstream::consumer::PullConsumer =
                stream.get_consumer("flaky").await.unwrap();
            let info = consumer.info().await.unwrap();
            info.delivered.consumer_sequence >= 2
                && info.num_ack_pending == 0
                && info.num_pending == 0
        },
    )
    .await;
    assert_eq!(effects(&pool).await, 1);
    assert_eq!(
        handler.calls.load(Ordering::SeqCst),
        1,
        "the copy never reached the handler"
    );
    shutdown.cancel();
    running.await.unwrap().unwrap();
    carerp_kit::stream::delete_streams(&js, &tenant)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "carerp_kit::db::KIT_MIGRATOR")]
async fn a_slow_handler_keeps_its_event_past_the_ack_wait_with_in_progress_acks(pool: PgPool) {
    // The same slow first attempt, but the consumer says it is working on it: the server
    // waits instead of delivering it again.
    let handler = Flaky {
        calls: Arc::default(),
        failures: 0,
        first_call_takes: Duration::from_millis(3500),
    };
    let timing = Timing {
        ack_wait: Duration::from_secs(1),
        retry_base: Duration::from_millis(5),
        keep_alive: true,
    };
    let (tenant, js, shutdown, running) = run_flaky(&pool, handler.clone(), timing).await;
    publish_raw(&js, &tenant, &event(&tenant, serde_json::json!({})), "slow").await;
    eventually("the event is applied", async || effects(&pool).await == 1).await;
    let stream = js.get_stream(stream_name(&tenant)).await.unwrap();
    eventually("the event is acknowledged", async || {
        let mut consumer: jetstream::consumer::PullConsumer =
            stream.get_consumer("flaky").await.unwrap();
        consumer.info().await.unwrap().num_ack_pending == 0
    })
    .await;
    let mut consumer: jetstream::consumer::PullConsumer =
        stream.get_consumer("flaky").await.unwrap();
    assert_eq!(
        consumer.info().await.unwrap().delivered.consumer_sequence,
        1,
        "delivered once, though it took more than three ack waits"
    );
    shutdown.cancel();
    running.await.unwrap().unwrap();
    carerp_kit::stream::delete_streams(&js, &tenant)
        .await
        .unwrap();
}

/// An event too large for the broker is parked with its error and counted, once: it is not
/// retried on every pass, and its aggregate's later events go out (issue 14, item 4).
#[sqlx::test(migrator = "carerp_kit::db::KIT_MIGRATOR")]
async fn an_event_too_large_to_publish_is_parked_and_blocks_nothing(pool: PgPool) {
    let tenant = unique_tenant();
    let js = jetstream_for(&tenant).await;
    let context = RequestContext::new_root();
    let mut tx = pool.begin().await.unwrap();
    let huge = "x".repeat(2 * 1024 * 1024);
    outbox::enqueue(
        &mut tx,
        &context,
        "customer.created",
        "big",
        &serde_json::json!({ "blob": huge }),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    enqueue(&pool, &context, "customer.created", "big", 1).await;
    enqueue(&pool, &context, "customer.created", "small", 2).await;

    let metrics = Metrics::new();
    let relay = Relay::new(pool.clone(), js.clone(), "customer", &tenant, &metrics);
    relay.drain().await.unwrap();
    relay.drain().await.unwrap();
    let published = stored(&js, &tenant, &subject(&tenant, "customer.created")).await;
    let mut ns: Vec<(String, i64)> = published
        .iter()
        .map(|m| {
            let event = serde_json::from_slice::<CloudEvent>(&m.payload).unwrap();
            (event.subject, event.data["n"].as_i64().unwrap())
        })
        .collect();
    // Order holds within an aggregate, not across aggregates.
    ns.sort();
    assert_eq!(
        ns,
        [("big".to_string(), 1), ("small".to_string(), 2)],
        "the big aggregate's later event is not held up"
    );
    let (attempts, error, parked): (i32, Option<String>, bool) = sqlx::query_as(
        "SELECT attempts, last_error, parked_at IS NOT NULL FROM outbox WHERE aggregate_id = 'big' ORDER BY seq LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        attempts, 1,
        "parked on the first try, not retried on every pass"
    );
    assert!(parked);
    assert!(error.unwrap().to_lowercase().contains("payload"));
    let exposed = metrics.encode();
    assert!(
        exposed.contains("carerp_outbox_parked_total 1"),
        "{exposed}"
    );
    carerp_kit::stream::delete_streams(&js, &tenant)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "carerp_kit::db::KIT_MIGRATOR")]
async fn a_permanently_wrong_event_is_dead_lettered_on_its_first_delivery(pool: PgPool) {
    let tenant = unique_tenant();
    let js = jetstream_for(&tenant).await;
    let shutdown = CancellationToken::new();
    let registry = carerp_kit::Metrics::new();
    let metrics = carerp_kit::consumer::ConsumerMetrics::register(&registry);
    let consumer = Consumer {
        timing: Timing {
            ack_wait: Duration::from_secs(30),
            retry_base: Duration::from_secs(10),
            ..Timing::default()
        },
        metrics: metrics.clone(),
        ..consumer_of(&pool, &js, &tenant, "tester", Counting::default())
    };
    let running = tokio::spawn(consumer.run(shutdown.clone()));
    let wrong = event(&tenant, serde_json::json!({ "poison": "permanent" }));
    publish_raw(&js, &tenant, &wrong, "wrong").await;
    // With 10 s between retries, only a first-delivery dead letter arrives within the wait.
    eventually("the event is dead-lettered", async || {
        !dead_letters(&js, &tenant).await.is_empty()
    })
    .await;
    let dead = dead_letters(&js, &tenant).await;
    assert_eq!(dead[0].error, "contradicts itself");
    assert_eq!(dead[0].attempts, 1, "dead-lettered on its first delivery");
    // Counted by service and topic, and exposed on /metrics with the consumer's lag.
    assert_eq!(metrics.dead_letters("tester", "test.happened"), 1);
    let exposed = registry.encode();
    assert!(
        exposed.contains("carerp_consumer_pending_events"),
        "{exposed}"
    );
    assert!(
        exposed.contains(
            r#"carerp_consumer_dead_letters_total{service="tester",topic="test.happened"} 1"#
        ),
        "{}",
        registry.encode()
    );
    shutdown.cancel();
    running.await.unwrap().unwrap();
    carerp_kit::stream::delete_streams(&js, &tenant)
        .await
        .unwrap();
}

/// Refuses every event as permanently wrong until `fixed`, then counts what it applies (a
/// handler whose bug was fixed by a new release).
#[derive(Clone, Default)]
struct FixedLater {
    fixed: Arc<std::sync::atomic::AtomicBool>,
    applied: Arc<AtomicUsize>,
}

impl EventHandler for FixedLater {
    fn topics(&self) -> &'static [&'static str] {
        &["test.happened"]
    }

    async fn handle(
        &self,
        tx: &mut PgConnection,
        _: &RequestContext,
        _: &CloudEvent,
    ) -> Result<(), HandlerError> {
        if !self.fixed.load(Ordering::SeqCst) {
            return Err(Box::new(carerp_kit::consumer::Permanent(
                "a bug refuses it".into(),
            )));
        }
        sqlx::query("SELECT 1").execute(&mut *tx).await?;
        self.applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[sqlx::test(migrator = "carerp_kit::db::KIT_MIGRATOR")]
async fn a_replayed_dead_letter_goes_through_the_consumer_once_and_leaves_the_dead_letters(
    pool: PgPool,
) {
    let tenant = unique_tenant();
    let js = jetstream_for(&tenant).await;
    let handler = FixedLater::default();
    let shutdown = CancellationToken::new();
    let consumer = consumer_of(&pool, &js, &tenant, "tester", handler.clone());
    let running = tokio::spawn(consumer.run(shutdown.clone()));
    let refused = event(&tenant, serde_json::json!({ "n": 1 }));
    publish_raw(&js, &tenant, &refused, "refused").await;
    eventually("the event is dead-lettered", async || {
        !dead_letters(&js, &tenant).await.is_empty()
    })
    .await;
    let dead = dead_letters(&js, &tenant).await;
    assert_eq!(dead.len(), 1);
    let sequence = dead[0].sequence;
    assert_eq!(
        dead_letter::get(&js, &tenant, sequence).await.unwrap(),
        Some(dead[0].clone())
    );
    // Filtered by consumer: another service has none.
    let others = dead_letter::list(
        &js,
        &tenant,
        &dead_letter::Filter {
            consumer: Some("someone-else".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(others.is_empty());

    // Fixed; the replay reaches the same consumer, which applies it once.
    handler.fixed.store(true, Ordering::SeqCst);
    let replayed = dead_letter::replay(&js, &tenant, sequence)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replayed.event_id, Some(refused.id));
    eventually("the replayed event is applied", async || {
        handler.applied.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(
        dead_letters(&js, &tenant).await.is_empty(),
        "replayed, so gone"
    );
    assert_eq!(
        dead_letter::get(&js, &tenant, sequence).await.unwrap(),
        None
    );
    assert_eq!(
        dead_letter::replay(&js, &tenant, sequence).await.unwrap(),
        None,
        "a second replay finds nothing"
    );

    // A dead letter of an event the consumer has applied already (say another consumer of the
    // topic gave up on it) is replayed to every consumer; this one's inbox turns it away.
    dead_letter::store(
        &js,
        &tenant,
        dead_letter::Failed {
            consumer: "another",
            topic: "test.happened",
            original_subject: &subject(&tenant, "test.happened"),
            payload: serde_json::to_vec(&refused).unwrap().into(),
            error: "another consumer's failure",
            attempts: 5,
        },
    )
    .await
    .unwrap();
    let other = dead_letters(&js, &tenant).await;
    assert_eq!(other[0].consumer, "another");
    dead_letter::replay(&js, &tenant, other[0].sequence)
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(handler.applied.load(Ordering::SeqCst), 1, "one effect");
    let inbox: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(inbox, 1);
    shutdown.cancel();
    running.await.unwrap().unwrap();
    carerp_kit::stream::delete_streams(&js, &tenant)
        .await
        .unwrap();
}

/// A dead letter is data: one naming a subject outside the tenant's events is not replayed
/// there.
#[tokio::test]
async fn a_dead_letter_is_replayed_only_into_its_own_tenants_events() {
    let tenant = unique_tenant();
    let js = jetstream_for(&tenant).await;
    dead_letter::store(
        &js,
        &tenant,
        dead_letter::Failed {
            consumer: "tester",
            topic: "test.happened",
            original_subject: "carerp.someone-else.workorder.completed",
            payload: Default::default(),
            error: "x",
            attempts: 1,
        },
    )
    .await
    .unwrap();
    let dead = dead_letters(&js, &tenant).await;
    let err = dead_letter::replay(&js, &tenant, dead[0].sequence)
        .await
        .unwrap_err();
    assert!(
        matches!(err, dead_letter::DeadLetterError::NotReplayable { .. }),
        "{err}"
    );
    assert_eq!(dead_letters(&js, &tenant).await.len(), 1, "kept");
    carerp_kit::stream::delete_streams(&js, &tenant)
        .await
        .unwrap();
}

/// Records the order it handles events in; an event with `"waitFor": X` holds until X's
/// event (another aggregate's, published after it) has been handled, and gives up after 5 s.
#[derive(Clone, Default)]
struct Ordered {
    handled: Arc<std::sync::Mutex<Vec<(String, i64)>>>,
    gave_up: Arc<AtomicUsize>,
}

impl Ordered {
    fn saw(&self, aggregate: &str) -> bool {
        self.handled
            .lock()
            .unwrap()
            .iter()
            .any(|(seen, _)| seen == aggregate)
    }

    fn of(&self, aggregate: &str) -> Vec<i64> {
        self.handled
            .lock()
            .unwrap()
            .iter()
            .filter(|(seen, _)| seen == aggregate)
            .map(|(_, n)| *n)
            .collect()
    }
}

impl EventHandler for Ordered {
    fn topics(&self) -> &'static [&'static str] {
        &["test.happened"]
    }

    async fn handle(
        &self,
        _: &mut PgConnection,
        _: &RequestContext,
        event: &CloudEvent,
    ) -> Result<(), HandlerError> {
        if let Some(other) = event.data["waitFor"].as_str() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while !self.saw(other) {
                if tokio::time::Instant::now() > deadline {
                    self.gave_up.fetch_add(1, Ordering::SeqCst);
                    return Err(
                        format!("{other} was not handled while {} waited", event.subject).into(),
                    );
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if let Some(pause) = event.data["pauseMs"].as_u64() {
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        let n = event.data["n"].as_i64().unwrap_or_default();
        self.handled
            .lock()
            .unwrap()
            .push((event.subject.clone(), n));
        Ok(())
    }
}

/// One consumer takes every aggregate's events: a slow one does not hold up another's (here
/// the first waits for the second, which a consumer handling one event at a time would
/// never reach), while one aggregate's events still apply one at a time, in stream order,
/// even when the first of them is the slowest.
#[sqlx::test(migrator = "carerp_kit::db::KIT_MIGRATOR")]
async fn aggregates_are_handled_side_by_side_and_each_in_order(pool: PgPool) {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    let tenant = unique_tenant();
    let js = jetstream_for(&tenant).await;
    let handler = Ordered::default();
    let shutdown = CancellationToken::new();
    let consumer = consumer_of(&pool, &js, &tenant, "ordered", handler.clone());
    let running = tokio::spawn(consumer.run(shutdown.clone()));

    let of = |aggregate: &str, data: serde_json::Value| CloudEvent {
        subject: aggregate.into(),
        ..event(&tenant, data)
    };
    let waiting = of(
        "waiting",
        serde_json::json!({ "waitFor": "awaited", "n": 1 }),
    );
    publish_raw(&js, &tenant, &waiting, "waiting").await;
    let awaited = of("awaited", serde_json::json!({ "n": 1 }));
    publish_raw(&js, &tenant, &awaited, "awaited").await;
    for n in 1..=4 {
        let pause = if n == 1 { 300 } else { 0 };
        let step = of("steps", serde_json::json!({ "n": n, "pauseMs": pause }));
        publish_raw(&js, &tenant, &step, &format!("step-{n}")).await;
    }

    eventually("every event is handled", async || {
        handler.of("waiting").len() == 1 && handler.of("steps").len() == 4
    })
    .await;
    assert_eq!(
        handler.gave_up.load(Ordering::SeqCst),
        0,
        "the waiting event saw the later one handled"
    );
    assert_eq!(handler.of("awaited"), vec![1]);
    assert_eq!(
        handler.of("steps"),
        vec![1, 2, 3, 4],
        "one aggregate, in order"
    );
    assert!(dead_letters(&js, &tenant).await.is_empty());
    shutdown.cancel();
    running.await.unwrap().unwrap();
    carerp_kit::stream::delete_streams(&js, &tenant)
        .await
        .unwrap();
}
