//! The saga under faults: a private PostgreSQL cluster (`initdb` and `pg_ctl` in a temporary
//! directory, on a free port) or a private `nats-server`, stopped while events are in flight
//! and started again, 50 reservations at once for 10 in stock, and payments retried many times
//! at once. Every completed work order ends INVOICED exactly once, the stock ledger adds up,
//! each payment is recorded once, nothing is dead-lettered (issue 14, items 2 and 9). Billing
//! killed between committing an invoice and acknowledging its event invoices once.

use std::time::Duration;

use carerp_e2e::{Platform, eventually};
use carerp_kit::TenantSettings;
use carerp_operator::private::{PrivateNats, PrivatePostgres, find_binary};
use carerp_proto::billing::v1 as billing;
use carerp_proto::common::v1::Money;
use carerp_proto::customer::v1 as customer;
use carerp_proto::inventory::v1 as inventory;
use carerp_proto::workorder::v1 as wo;
use carerp_proto::workorder::v1::{ReservationState, WorkOrderStatus};
use tonic::Code;

/// Long enough for the consumers' retries after the database is back (capped at 12.8 s) and
/// the relay's backoff.
const WAIT: Duration = Duration::from_secs(90);

/// Longer than five deliveries of a failing event take (0.4 + 0.8 + 1.6 + 3.2 s between them,
/// plus a 1 s connection wait each): an outage counted as ordinary failures would dead-letter.
const OUTAGE: Duration = Duration::from_secs(13);

fn settings() -> TenantSettings {
    TenantSettings {
        currency: "EUR".into(),
        tax_rate_bp: 2000,
        labor_rate_minor: 9000,
        payment_terms_days: 14,
        timezone: "UTC".into(),
        ..Default::default()
    }
}

fn private_postgres(dir: &std::path::Path) -> PrivatePostgres {
    let (Some(initdb), Some(pg_ctl)) = (find_binary("initdb"), find_binary("pg_ctl")) else {
        panic!(
            "this test needs the PostgreSQL server binaries (initdb, pg_ctl; apt-get install postgresql)"
        );
    };
    PrivatePostgres::start(&initdb, &pg_ctl, dir).expect("a private PostgreSQL starts")
}

async fn get(p: &mut Platform, id: &str) -> wo::WorkOrder {
    p.work_orders
        .get_work_order(wo::GetWorkOrderRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

fn complete(id: &str) -> wo::ChangeStatusRequest {
    wo::ChangeStatusRequest {
        id: id.into(),
        status: WorkOrderStatus::Completed as i32,
        reason: String::new(),
        expected_version: 0,
    }
}

/// A work order in progress with `quantity` of `part_id` reserved.
async fn reserved_order(
    p: &mut Platform,
    customer_id: &str,
    vehicle_id: &str,
    part_id: &str,
    quantity: i32,
) -> String {
    let order = p
        .work_orders
        .create_work_order(wo::CreateWorkOrderRequest {
            customer_id: customer_id.into(),
            vehicle_id: vehicle_id.into(),
            complaint: "brakes grind".into(),
            odometer_km: 120_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    p.work_orders
        .change_status(wo::ChangeStatusRequest {
            id: order.id.clone(),
            status: WorkOrderStatus::InProgress as i32,
            reason: String::new(),
            expected_version: 0,
        })
        .await
        .unwrap();
    p.work_orders
        .add_part_line(wo::AddPartLineRequest {
            work_order_id: order.id.clone(),
            part_id: part_id.into(),
            quantity,
            expected_version: 0,
            idempotency_key: String::new(),
            job_id: String::new(),
        })
        .await
        .unwrap();
    eventually("the part line is reserved", WAIT, async || {
        let order = get(p, &order.id).await;
        (order.part_lines[0].reservation_state == ReservationState::Reserved as i32).then_some(())
    })
    .await
    .unwrap();
    order.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_saga_loses_nothing_and_dead_letters_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut pg = private_postgres(dir.path());
    let mut p = Platform::start_on(settings(), &pg.url, Duration::from_secs(1))
        .await
        .unwrap();

    let c = p
        .customers
        .create_customer(customer::CreateCustomerRequest {
            name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let v = p
        .customers
        .add_vehicle(customer::AddVehicleRequest {
            customer_id: c.id.clone(),
            vin: "WVWZZZ1KZAW654321".into(),
            make: "Volkswagen".into(),
            model: "Passat".into(),
            year: 2016,
            license_plate: "B-AL 1".into(),
            mileage: 120_000,
            idempotency_key: String::new(),
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
    let pads = p
        .inventory
        .create_part(inventory::CreatePartRequest {
            sku: "PAD-100".into(),
            name: "Brake pads".into(),
            category: "brakes".into(),
            unit_cost: eur(1000),
            unit_price: eur(2500),
            location: "B-02".into(),
            reorder_point: 1,
            reorder_quantity: 10,
            initial_quantity: 20,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(reserved_order(&mut p, &c.id, &v.id, &pads.id, 2).await);
    }

    // Two completions go out, and the database goes away while their events are relayed
    // and consumed (inventory deducting, billing invoicing, work orders recording invoices).
    for id in &orders[..2] {
        p.work_orders.change_status(complete(id)).await.unwrap();
    }
    tokio::task::block_in_place(|| pg.stop());
    // A call during the outage is UNAVAILABLE (retry later), not an internal error.
    let refused = p
        .work_orders
        .change_status(complete(&orders[2]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    tokio::time::sleep(OUTAGE).await;
    tokio::task::block_in_place(|| pg.start_again()).unwrap();
    let back = std::time::Instant::now();
    // The client retries the refused call, as UNAVAILABLE invites it to.
    p.work_orders
        .change_status(complete(&orders[2]))
        .await
        .unwrap();

    for id in &orders {
        eventually("the work order is invoiced", WAIT, async || {
            let order = get(&mut p, id).await;
            (order.status == WorkOrderStatus::Invoiced as i32).then_some(())
        })
        .await
        .unwrap();
    }
    carerp_e2e::bench::recovery(
        "postgres_restarted",
        "PostgreSQL was restarted (every work order INVOICED, counted from its return)",
        back.elapsed(),
    );
    let invoices = p
        .billing
        .list_invoices(billing::ListInvoicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .invoices;
    let mut invoiced: Vec<&str> = invoices.iter().map(|i| i.work_order_id.as_str()).collect();
    invoiced.sort();
    let mut expected: Vec<&str> = orders.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(invoiced, expected, "one invoice per completed work order");
    let stock = eventually("the stock of all three is consumed", WAIT, async || {
        let part = p
            .inventory
            .get_part(inventory::GetPartRequest {
                id: pads.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        (part.quantity_reserved == 0).then_some(part)
    })
    .await
    .unwrap();
    assert_eq!(
        (stock.quantity_on_hand, stock.quantity_reserved),
        (14, 0),
        "20 in stock, 3 x 2 consumed, none still reserved"
    );
    assert_eq!(p.dead_letters().await.unwrap(), 0, "nothing dead-lettered");
    p.stop().await.unwrap();
    pg.stop();
}

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A customer with a vehicle, and a part with `stock` in stock: (customer, vehicle, part).
async fn garage(p: &mut Platform, stock: i32) -> (String, String, String) {
    let c = p
        .customers
        .create_customer(customer::CreateCustomerRequest {
            name: "Grace Hopper".into(),
            email: "grace@example.com".into(),
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
            license_plate: "B-GH 2".into(),
            mileage: 80_000,
            idempotency_key: String::new(),
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
            sku: "FLT-300".into(),
            name: "Oil filter".into(),
            category: "engine".into(),
            unit_cost: eur(400),
            unit_price: eur(1200),
            location: "A-01".into(),
            reorder_point: 0,
            reorder_quantity: 10,
            initial_quantity: stock,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (c.id, v.id, part.id)
}

/// Every one of `orders` INVOICED, with one invoice each and no other invoice.
async fn all_invoiced_once(p: &mut Platform, orders: &[String]) {
    for id in orders {
        eventually("the work order is invoiced", WAIT, async || {
            let order = get(&mut *p, id).await;
            (order.status == WorkOrderStatus::Invoiced as i32).then_some(())
        })
        .await
        .unwrap();
    }
    let invoices = p
        .billing
        .list_invoices(billing::ListInvoicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .invoices;
    let mut invoiced: Vec<&str> = invoices.iter().map(|i| i.work_order_id.as_str()).collect();
    invoiced.sort();
    let mut expected: Vec<&str> = orders.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(invoiced, expected, "one invoice per completed work order");
}

async fn stock(p: &mut Platform, part_id: &str) -> (i32, i32) {
    let part = p
        .inventory
        .get_part(inventory::GetPartRequest { id: part_id.into() })
        .await
        .unwrap()
        .into_inner();
    (part.quantity_on_hand, part.quantity_reserved)
}

fn nats_server() -> std::path::PathBuf {
    find_binary("nats-server")
        .or_else(|| {
            ["/usr/sbin/nats-server", "/usr/local/bin/nats-server"]
                .into_iter()
                .map(std::path::PathBuf::from)
                .find(|p| p.exists())
        })
        .expect("this test needs nats-server (.ci/services installs it)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stopped_for_ten_seconds_mid_saga_loses_nothing_and_dead_letters_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = PrivateNats::start(&nats_server(), dir.path()).unwrap();
    let mut p = Platform::start_with(settings(), &admin_url(), &nats.url, Duration::from_secs(30))
        .await
        .unwrap();
    let (c, v, part) = garage(&mut p, 20).await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(reserved_order(&mut p, &c, &v, &part, 2).await);
    }

    // Two completions go out and the broker goes away while their events are relayed and
    // consumed; the third completion is written during the outage, into the outbox only.
    for id in &orders[..2] {
        p.work_orders.change_status(complete(id)).await.unwrap();
    }
    nats.stop();
    p.work_orders
        .change_status(complete(&orders[2]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    nats.start_again().unwrap();
    let back = std::time::Instant::now();

    all_invoiced_once(&mut p, &orders).await;
    carerp_e2e::bench::recovery(
        "nats_stopped_10s",
        "NATS was stopped for 10 s (every work order INVOICED, counted from its return)",
        back.elapsed(),
    );
    let ledger = eventually("the stock of all three is consumed", WAIT, async || {
        let s = stock(&mut p, &part).await;
        (s.1 == 0).then_some(s)
    })
    .await
    .unwrap();
    assert_eq!(
        ledger,
        (14, 0),
        "20 in stock, 3 x 2 consumed, none reserved"
    );
    assert_eq!(p.dead_letters().await.unwrap(), 0, "nothing dead-lettered");
    p.stop().await.unwrap();
    nats.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reservations_at_once_for_ten_in_stock_reserve_exactly_ten() {
    let mut p = Platform::start(settings()).await.unwrap();
    let (c, v, part) = garage(&mut p, 10).await;
    let mut orders = Vec::new();
    for _ in 0..50 {
        let order = p
            .work_orders
            .create_work_order(wo::CreateWorkOrderRequest {
                customer_id: c.clone(),
                vehicle_id: v.clone(),
                complaint: "oil change".into(),
                odometer_km: 80_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        p.work_orders
            .change_status(wo::ChangeStatusRequest {
                id: order.id.clone(),
                status: WorkOrderStatus::InProgress as i32,
                reason: String::new(),
                expected_version: 0,
            })
            .await
            .unwrap();
        orders.push(order.id);
    }
    // All 50 lines at once: 50 reservation requests race for 10 filters.
    let burst = std::time::Instant::now();
    let mut adds = tokio::task::JoinSet::new();
    for id in &orders {
        let mut client = p.work_orders.clone();
        let id = id.clone();
        let part = part.clone();
        adds.spawn(async move {
            client
                .add_part_line(wo::AddPartLineRequest {
                    work_order_id: id,
                    part_id: part,
                    quantity: 1,
                    expected_version: 0,
                    idempotency_key: String::new(),
                    job_id: String::new(),
                })
                .await
                .map(|_| ())
        });
    }
    while let Some(added) = adds.join_next().await {
        added.unwrap().unwrap();
    }
    let mut reserved = Vec::new();
    let mut failed = 0;
    for id in &orders {
        let state = eventually("the reservation is settled", WAIT, async || {
            let state = get(&mut p, id).await.part_lines[0].reservation_state;
            (state != ReservationState::Pending as i32).then_some(state)
        })
        .await
        .unwrap();
        if state == ReservationState::Reserved as i32 {
            reserved.push(id.clone());
        } else {
            assert_eq!(state, ReservationState::Failed as i32);
            failed += 1;
        }
    }
    carerp_e2e::bench::recovery(
        "reservation_burst",
        "50 reservations at once for 10 in stock (every line reserved or failed)",
        burst.elapsed(),
    );
    assert_eq!(
        (reserved.len(), failed),
        (10, 40),
        "exactly the stock is reserved"
    );
    assert_eq!(stock(&mut p, &part).await, (10, 10));

    for id in &reserved {
        p.work_orders.change_status(complete(id)).await.unwrap();
    }
    all_invoiced_once(&mut p, &reserved).await;
    let ledger = eventually("the reserved stock is consumed", WAIT, async || {
        let s = stock(&mut p, &part).await;
        (s.1 == 0).then_some(s)
    })
    .await
    .unwrap();
    assert_eq!(
        ledger,
        (0, 0),
        "all ten consumed, nothing reserved, nothing below zero"
    );
    assert_eq!(p.dead_letters().await.unwrap(), 0, "nothing dead-lettered");
    p.stop().await.unwrap();
}

/// A payment sent `RETRIES` times at once under one key, as a till whose answers are lost
/// would: every attempt ends with the one payment (a racing attempt told to retry, retries).
fn pay_with_retries(
    p: &Platform,
    request: billing::RecordPaymentRequest,
    retries: usize,
) -> tokio::task::JoinSet<String> {
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..retries {
        let (mut billing, request) = (p.billing.clone(), request.clone());
        attempts.spawn(async move {
            loop {
                match billing.record_payment(request.clone()).await {
                    Ok(invoice) => {
                        let invoice = invoice.into_inner();
                        // The answer of the key: the invoice with this key's payment in it.
                        return format!("{}:{}", invoice.id, invoice.payments.len());
                    }
                    Err(status) if matches!(status.code(), Code::Aborted | Code::Unavailable) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(status) => panic!("a retried payment was refused: {status:?}"),
                }
            }
        });
    }
    attempts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_payments_under_load_are_recorded_once_each() {
    const RETRIES: usize = 8;
    let mut p = Platform::start(settings()).await.unwrap();
    let (c, v, part) = garage(&mut p, 20).await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        let id = reserved_order(&mut p, &c, &v, &part, 2).await;
        p.work_orders.change_status(complete(&id)).await.unwrap();
        orders.push(id);
    }
    all_invoiced_once(&mut p, &orders).await;
    let invoices = p
        .billing
        .list_invoices(billing::ListInvoicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .invoices;

    // Three partial payments per invoice, each sent RETRIES times at once, all invoices at
    // once: 72 requests racing for 9 payments.
    let load = std::time::Instant::now();
    let mut racing = Vec::new();
    for invoice in &invoices {
        let total = invoice.total.as_ref().unwrap().amount_minor;
        for n in 0..3 {
            racing.push(pay_with_retries(
                &p,
                billing::RecordPaymentRequest {
                    invoice_id: invoice.id.clone(),
                    amount: Some(Money {
                        amount_minor: total / 4,
                        currency: "EUR".into(),
                    }),
                    method: billing::PaymentMethod::Card as i32,
                    reference: format!("till {n}"),
                    idempotency_key: format!("{}-part-{n}", invoice.id),
                    ..Default::default()
                },
                RETRIES,
            ));
        }
    }
    let mut answered = 0;
    for attempts in racing {
        let answers = attempts.join_all().await;
        assert!(
            answers.iter().all(|a| a == &answers[0]),
            "every retry of one key answers alike: {answers:?}"
        );
        answered += answers.len();
    }
    assert_eq!(answered, invoices.len() * 3 * RETRIES);

    // The rest, "pay the balance", retried the same way: one more payment each, not eight.
    let mut rest = Vec::new();
    for invoice in &invoices {
        rest.push(pay_with_retries(
            &p,
            billing::RecordPaymentRequest {
                invoice_id: invoice.id.clone(),
                method: billing::PaymentMethod::Cash as i32,
                reference: "the rest".into(),
                idempotency_key: format!("{}-rest", invoice.id),
                pay_balance: true,
                ..Default::default()
            },
            RETRIES,
        ));
    }
    for attempts in rest {
        let answers = attempts.join_all().await;
        assert!(
            answers.iter().all(|a| a == &answers[0]),
            "every retry of one key answers alike: {answers:?}"
        );
    }
    carerp_e2e::bench::recovery(
        "retried_payments",
        "payments retried under load (every attempt answered)",
        load.elapsed(),
    );

    for invoice in &invoices {
        let after = p
            .billing
            .get_invoice(billing::GetInvoiceRequest {
                id: invoice.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let total = invoice.total.as_ref().unwrap().amount_minor;
        let paid: Vec<i64> = after
            .payments
            .iter()
            .map(|payment| payment.amount.as_ref().unwrap().amount_minor)
            .collect();
        assert_eq!(
            paid.len(),
            4,
            "three parts and the rest, once each: {paid:?}"
        );
        assert_eq!(paid.iter().sum::<i64>(), total, "{paid:?}");
        assert_eq!(after.balance.as_ref().unwrap().amount_minor, 0);
        assert_eq!(after.status, billing::InvoiceStatus::Paid as i32);
    }
    assert_eq!(p.dead_letters().await.unwrap(), 0, "nothing dead-lettered");
    p.stop().await.unwrap();
}

/// `target/<profile>/`, where `cargo test --workspace` put the service binaries.
fn binaries_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf()
}

/// The billing binary for `p`'s tenant, reaching the broker at `nats_url`.
fn billing_process(p: &Platform, nats_url: &str) -> std::process::Child {
    let binary = binaries_dir().join("carerp-billing");
    assert!(
        binary.exists(),
        "{} is not built; `cargo test --workspace` builds every service binary",
        binary.display()
    );
    std::process::Command::new(binary)
        .env_clear()
        .envs(p.process_env("billing", nats_url).unwrap())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("carerp-billing starts")
}

async fn invoices_of(p: &Platform, work_order_id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM invoices WHERE work_order_id = $1::uuid")
        .bind(work_order_id)
        .fetch_one(&p.pools[3])
        .await
        .unwrap()
}

/// Billing's durable consumer: (delivered, unacknowledged, waiting).
async fn billing_consumer(p: &Platform) -> (u64, usize, u64) {
    let stream = p
        .jetstream
        .get_stream(carerp_kit::envelope::stream_name(&p.tenant))
        .await
        .unwrap();
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer("billing").await.unwrap();
    let info = consumer.info().await.unwrap();
    (
        info.delivered.consumer_sequence,
        info.num_ack_pending,
        info.num_pending,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_process_killed_between_commit_and_ack_invoices_once() {
    // Billing runs as its own process, its broker connection through a gate that holds back
    // its first acknowledgement once armed: the invoice of the completion is committed, the
    // broker has not heard of it, and then the process is killed (SIGKILL, no shutdown).
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let mut p = Platform::start(settings()).await.unwrap();
    let (c, v, part) = garage(&mut p, 10).await;
    let order = reserved_order(&mut p, &c, &v, &part, 2).await;
    p.stop_service("billing").await.unwrap();
    let mut gate = carerp_e2e::ack_gate::AckGate::start(nats_url.trim_start_matches("nats://"))
        .await
        .unwrap();
    let mut billing = billing_process(&p, &gate.url);
    eventually("billing has caught up with the stream", WAIT, async || {
        let (_, unacknowledged, waiting) = billing_consumer(&p).await;
        (unacknowledged == 0 && waiting == 0).then_some(())
    })
    .await
    .unwrap();

    gate.arm();
    p.work_orders.change_status(complete(&order)).await.unwrap();
    gate.held(WAIT).await.unwrap();
    assert_eq!(
        invoices_of(&p, &order).await,
        1,
        "the invoice is committed before the acknowledgement goes out"
    );
    billing.kill().unwrap();
    billing.wait().unwrap();
    let killed = std::time::Instant::now();
    let (delivered, unacknowledged, _) = billing_consumer(&p).await;
    assert_eq!(
        unacknowledged, 1,
        "the broker still waits for the completion's ack"
    );

    // A new process: the broker delivers the completion again and the inbox turns it away.
    let mut billing = billing_process(&p, &nats_url);
    eventually(
        "the completion is delivered again and acknowledged",
        WAIT,
        async || {
            let (now_delivered, unacknowledged, waiting) = billing_consumer(&p).await;
            (now_delivered > delivered && unacknowledged == 0 && waiting == 0).then_some(())
        },
    )
    .await
    .unwrap();
    carerp_e2e::bench::recovery(
        "consumer_killed",
        "billing was killed between commit and ack (the completion acknowledged, counted from the kill)",
        killed.elapsed(),
    );
    eventually("the work order is invoiced", WAIT, async || {
        let order = get(&mut p, &order).await;
        (order.status == WorkOrderStatus::Invoiced as i32).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(invoices_of(&p, &order).await, 1, "invoiced exactly once");
    let ledger = eventually("the stock is consumed once", WAIT, async || {
        let s = stock(&mut p, &part).await;
        (s.1 == 0).then_some(s)
    })
    .await
    .unwrap();
    assert_eq!(ledger, (8, 0), "10 in stock, 2 consumed, none reserved");
    assert_eq!(p.dead_letters().await.unwrap(), 0, "nothing dead-lettered");
    billing.kill().unwrap();
    billing.wait().unwrap();
    p.stop().await.unwrap();
}
