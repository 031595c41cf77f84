//! Per-tenant broker isolation on a real `nats-server` with decentralized JWT auth: a private
//! server of the test's own (own port, own store in a temp dir, operator mode with the trust
//! `carerp-operator nats-auth init` writes), stopped when the test ends.
//!
//! Tenant A signs in with the credentials the operator would put in A's Secret. It can use its
//! own subjects and streams, and the server refuses it B's: publishing to
//! `carerp.b.workorder.completed`, subscribing to B's subjects or inboxes, reading B's stream
//! (info, consumer, message get) and deleting it. Then the whole saga runs with every service
//! signed in as its tenant's user, and the work order is invoiced.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use carerp_e2e::{Broker, BrokerAuth, Platform, eventually};
use carerp_kit::TenantSettings;
use carerp_kit::envelope::{dlq_stream_name, stream_name};
use carerp_kit::messaging::inbox_prefix;
use carerp_kit::stream::{StreamSettings, ensure_stream};
use carerp_operator::nats_auth::Trust;
use carerp_operator::private::{PrivateNats, find_binary};
use carerp_proto::common::v1::Money;
use carerp_proto::customer::v1 as customer;
use carerp_proto::inventory::v1 as inventory;
use carerp_proto::workorder::v1 as wo;
use carerp_proto::workorder::v1::{ReservationState, WorkOrderStatus};
use futures::StreamExt as _;

const WAIT: Duration = Duration::from_secs(30);

/// A private broker with auth on, and the trust it was configured with.
struct AuthBroker {
    nats: PrivateNats,
    trust: Trust,
    _dir: tempfile::TempDir,
}

impl AuthBroker {
    /// `None` (skipped, with a message) where nats-server is not installed, except under CI.
    fn start() -> Option<Self> {
        let Some(binary) = find_binary("nats-server") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "this test needs nats-server (.ci/services installs it)"
            );
            eprintln!("skipped: nats-server is not installed");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let trust = Trust::generate();
        let nats =
            PrivateNats::start_with_auth(&binary, dir.path(), &trust.server_config().unwrap())
                .unwrap();
        Some(Self {
            nats,
            trust,
            _dir: dir,
        })
    }

    /// The operator's own connection (no limits inside the account).
    async fn operator(&self) -> jetstream::Context {
        let own = self.trust.issuer().unwrap().operator_credentials().unwrap();
        let client = async_nats::ConnectOptions::with_credentials(own.creds_file().expose())
            .unwrap()
            .connect(&self.nats.url)
            .await
            .unwrap();
        jetstream::new(client)
    }

    /// `tenant`'s connection, as its services make it, with what the server says recorded.
    async fn tenant(&self, tenant: &str) -> (jetstream::Context, Arc<Mutex<Vec<String>>>) {
        let creds = self
            .trust
            .issuer()
            .unwrap()
            .tenant_credentials(tenant)
            .unwrap()
            .creds_file();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let seen = errors.clone();
        let client = async_nats::ConnectOptions::with_credentials(creds.expose())
            .unwrap()
            .custom_inbox_prefix(inbox_prefix(tenant))
            .event_callback(move |event| {
                let seen = seen.clone();
                async move {
                    if let async_nats::Event::ServerError(err) = event {
                        seen.lock().unwrap().push(err.to_string());
                    }
                }
            })
            .connect(&self.nats.url)
            .await
            .unwrap();
        let mut js = jetstream::new(client);
        // A refused request gets no answer: it times out, so keep the wait short.
        js.set_timeout(Duration::from_secs(2));
        (js, errors)
    }
}

/// Whether the server reported a permissions violation naming `what` (eventually: the
/// error comes asynchronously).
async fn refused(errors: &Mutex<Vec<String>>, what: &str) -> bool {
    for _ in 0..40 {
        if errors
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("Permissions Violation") && e.contains(what))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn messages(js: &jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

#[tokio::test]
async fn a_tenants_credentials_reach_its_own_subjects_and_streams_and_none_of_anothers() {
    let Some(broker) = AuthBroker::start() else {
        return;
    };
    let operator = broker.operator().await;
    for tenant in ["a", "b"] {
        ensure_stream(&operator, tenant, &StreamSettings::default())
            .await
            .unwrap();
    }
    operator
        .publish("carerp.b.workorder.completed", "b's own".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let (a, errors) = broker.tenant("a").await;

    // Its own: publish with an ack, stream info, a consumer, a message, a dead letter.
    a.publish("carerp.a.workorder.completed", "a's own".into())
        .await
        .unwrap()
        .await
        .expect("A publishes on its own subjects");
    a.publish("carerp-dlq.a.billing.workorder.completed", "dead".into())
        .await
        .unwrap()
        .await
        .expect("A dead-letters into its own dead-letter stream");
    let own = a
        .get_stream(stream_name("a"))
        .await
        .expect("A's stream info");
    let consumer = own
        .create_consumer(pull::Config {
            durable_name: Some("billing".into()),
            ..Default::default()
        })
        .await
        .expect("A creates a durable consumer on its stream");
    let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
    let message = batch.next().await.unwrap().unwrap();
    assert_eq!(&message.payload[..], b"a's own");
    message.ack().await.expect("A acks its own message");
    own.get_raw_message(1)
        .await
        .expect("A reads its own stream");
    let dead = a.get_stream(dlq_stream_name("a")).await.unwrap();
    assert!(
        dead.delete_message(1).await.unwrap(),
        "A removes a replayed dead letter"
    );
    assert!(errors.lock().unwrap().is_empty(), "{:?}", errors.lock());

    // B's subject: the publish is dropped by the server, never stored in B's stream.
    let ack = a
        .publish("carerp.b.workorder.completed", "forged".into())
        .await
        .unwrap()
        .await;
    assert!(ack.is_err(), "no ack for a refused publish");
    assert!(
        refused(&errors, "Publish to \"carerp.b.workorder.completed\"").await,
        "{:?}",
        errors.lock()
    );
    assert_eq!(messages(&operator, &stream_name("b")).await, 1);

    // B's stream: no info, no consumer, no message, no direct get.
    let b = stream_name("b");
    assert!(a.get_stream(&b).await.is_err(), "A reads B's stream info");
    assert!(refused(&errors, &format!("$JS.API.STREAM.INFO.{b}")).await);
    assert!(
        a.create_consumer_on_stream(
            pull::Config {
                durable_name: Some("spy".into()),
                ..Default::default()
            },
            &b
        )
        .await
        .is_err(),
        "A creates a consumer on B's stream"
    );
    // `CONSUMER.CREATE.<stream>.<name>` (2.9+) or `CONSUMER.DURABLE.CREATE.<stream>.<name>`.
    assert!(
        refused(&errors, &format!("CREATE.{b}.spy")).await,
        "{:?}",
        errors.lock()
    );
    let unchecked = a.get_stream_no_info(&b).await.unwrap();
    assert!(unchecked.get_raw_message(1).await.is_err());
    assert!(
        refused(&errors, &format!("$JS.API.STREAM.MSG.GET.{b}")).await,
        "{:?}",
        errors.lock()
    );
    assert!(unchecked.direct_get(1).await.is_err());

    // B's stream cannot be deleted or purged, nor can A's own: that is the operator's.
    assert!(a.delete_stream(&b).await.is_err(), "A deletes B's stream");
    assert!(
        refused(&errors, &format!("$JS.API.STREAM.DELETE.{b}")).await,
        "{:?}",
        errors.lock()
    );
    assert!(unchecked.purge().await.is_err(), "A purges B's stream");
    assert!(a.delete_stream(stream_name("a")).await.is_err());
    assert!(
        a.get_stream_no_info(stream_name("a"))
            .await
            .unwrap()
            .delete_message(1)
            .await
            .is_err(),
        "A deletes events from its own stream"
    );

    // B's subjects and replies cannot be listened to.
    let client = a.client();
    let mut spy = client.subscribe("carerp.b.>").await.unwrap();
    let mut inbox_spy = client
        .subscribe(format!("{}.>", inbox_prefix("b")))
        .await
        .unwrap();
    let mut default_inbox_spy = client.subscribe("_INBOX.>").await.unwrap();
    assert!(refused(&errors, "Subscription to \"carerp.b.>\"").await);
    assert!(refused(&errors, "Subscription to \"_INBOX.>\"").await);
    operator
        .publish("carerp.b.workorder.completed", "b's second".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let (b_js, _) = broker.tenant("b").await;
    b_js.get_stream(&b).await.expect("B reads its own stream");
    let heard = tokio::time::timeout(Duration::from_millis(500), async {
        tokio::select! {
            m = spy.next() => m,
            m = inbox_spy.next() => m,
            m = default_inbox_spy.next() => m,
        }
    })
    .await;
    assert!(
        !matches!(heard, Ok(Some(_))),
        "A heard B's traffic: {heard:?}"
    );

    // All of B is still there.
    assert_eq!(messages(&operator, &b).await, 2);
}

/// The whole saga with every service signed in as its tenant's NATS user: relays publish,
/// consumers consume and acknowledge, the work order is invoiced, nothing is dead-lettered.
#[tokio::test]
async fn the_saga_runs_with_tenant_credentials() {
    let Some(broker) = AuthBroker::start() else {
        return;
    };
    let credentials = tempfile::tempdir().unwrap();
    let access = Broker {
        url: broker.nats.url.clone(),
        auth: Some(BrokerAuth {
            issuer: Arc::new(broker.trust.issuer().unwrap()),
            dir: credentials.path().to_path_buf(),
        }),
    };
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut platform = Platform::start_on_broker(
        TenantSettings::default(),
        &admin_url,
        &access,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let order = invoiced_work_order(&mut platform).await;
    assert_eq!(order.status, WorkOrderStatus::Invoiced as i32);
    assert_eq!(platform.dead_letters().await.unwrap(), 0);
    platform.stop().await.unwrap();
}

/// A customer, a vehicle, a part in stock, a work order with it: reserved (inventory's
/// consumer and relay), completed, invoiced (billing's, then the work order's).
async fn invoiced_work_order(p: &mut Platform) -> wo::WorkOrder {
    let c = p
        .customers
        .create_customer(customer::CreateCustomerRequest {
            name: "Erika Mustermann".into(),
            email: "erika@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let v = p
        .customers
        .add_vehicle(customer::AddVehicleRequest {
            customer_id: c.id.clone(),
            vin: "WVWZZZ1KZAW123456".into(),
            make: "Volkswagen".into(),
            model: "Golf".into(),
            year: 2018,
            ..Default::default()
        })
        .await
        .unwrap()
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
            sku: "PAD-001".into(),
            name: "Brake pads".into(),
            unit_cost: eur(700),
            unit_price: eur(1500),
            initial_quantity: 4,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let order = p
        .work_orders
        .create_work_order(wo::CreateWorkOrderRequest {
            customer_id: c.id,
            vehicle_id: v.id,
            complaint: "squeaking brakes".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let status = |status: WorkOrderStatus| wo::ChangeStatusRequest {
        id: order.id.clone(),
        status: status as i32,
        ..Default::default()
    };
    p.work_orders
        .change_status(status(WorkOrderStatus::InProgress))
        .await
        .unwrap();
    p.work_orders
        .add_part_line(wo::AddPartLineRequest {
            work_order_id: order.id.clone(),
            part_id: part.id,
            quantity: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let get = wo::GetWorkOrderRequest {
        id: order.id.clone(),
    };
    let orders = &mut p.work_orders;
    eventually("the parts are reserved", WAIT, async || {
        let o = orders.get_work_order(get.clone()).await.ok()?.into_inner();
        (o.part_lines.first()?.reservation_state == ReservationState::Reserved as i32).then_some(())
    })
    .await
    .unwrap();
    orders
        .change_status(status(WorkOrderStatus::Completed))
        .await
        .unwrap();
    eventually("the work order is invoiced", WAIT, async || {
        let o = orders.get_work_order(get.clone()).await.ok()?.into_inner();
        (o.status == WorkOrderStatus::Invoiced as i32).then_some(o)
    })
    .await
    .unwrap()
}
