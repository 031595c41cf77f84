//! The repair saga across the four services, over real PostgreSQL and NATS JetStream:
//! parts reserved or refused, work completed, stock consumed, exactly one invoice.

use std::time::Duration;

use carerp_e2e::{Platform, eventually};
use carerp_kit::TenantSettings;
use carerp_proto::billing::v1 as billing;
use carerp_proto::common::v1::Money;
use carerp_proto::customer::v1 as customer;
use carerp_proto::inventory::v1 as inventory;
use carerp_proto::workorder::v1 as wo;
use carerp_proto::workorder::v1::{ReservationState, WorkOrderStatus};

const WAIT: Duration = Duration::from_secs(20);

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

fn eur(amount_minor: i64) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: "EUR".into(),
    })
}

/// A customer with one vehicle: (customer id, vehicle id).
async fn customer_with_vehicle(p: &mut Platform) -> (String, String) {
    let c = p
        .customers
        .create_customer(customer::CreateCustomerRequest {
            name: "Erika Mustermann".into(),
            email: "erika@example.com".into(),
            phone: "+49 30 9876543".into(),
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
            license_plate: "B-EM 1".into(),
            mileage: 80_000,
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    (c.id, v.id)
}

async fn part(p: &mut Platform, sku: &str, price: i64, stock: i32) -> inventory::Part {
    p.inventory
        .create_part(inventory::CreatePartRequest {
            sku: sku.into(),
            name: format!("Part {sku}"),
            category: "brakes".into(),
            unit_cost: eur(price / 2),
            unit_price: eur(price),
            location: "A-01".into(),
            reorder_point: 2,
            reorder_quantity: 10,
            initial_quantity: stock,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn work_order(p: &mut Platform, customer_id: &str, vehicle_id: &str) -> wo::WorkOrder {
    p.work_orders
        .create_work_order(wo::CreateWorkOrderRequest {
            customer_id: customer_id.into(),
            vehicle_id: vehicle_id.into(),
            complaint: "squeaking brakes".into(),
            odometer_km: 80_500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn get(p: &mut Platform, id: &str) -> wo::WorkOrder {
    p.work_orders
        .get_work_order(wo::GetWorkOrderRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

async fn set_status(p: &mut Platform, id: &str, status: WorkOrderStatus) -> wo::WorkOrder {
    p.work_orders
        .change_status(wo::ChangeStatusRequest {
            id: id.into(),
            status: status as i32,
            reason: if status == WorkOrderStatus::Cancelled {
                "customer withdrew".into()
            } else {
                String::new()
            },
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn add_part(p: &mut Platform, id: &str, part_id: &str, quantity: i32) -> wo::WorkOrder {
    p.work_orders
        .add_part_line(wo::AddPartLineRequest {
            work_order_id: id.into(),
            part_id: part_id.into(),
            quantity,
            expected_version: 0,
            idempotency_key: String::new(),
            job_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn part_state(p: &mut Platform, id: &str) -> inventory::Part {
    p.inventory
        .get_part(inventory::GetPartRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

/// Waits until every part line of the work order has left PENDING.
async fn reservations_settled(p: &mut Platform, id: &str) -> wo::WorkOrder {
    eventually("the reservation is answered", WAIT, async || {
        let order = get(p, id).await;
        let settled = order
            .part_lines
            .iter()
            .all(|line| line.reservation_state != ReservationState::Pending as i32);
        settled.then_some(order)
    })
    .await
    .unwrap()
}

async fn invoiced(p: &mut Platform, id: &str) -> wo::WorkOrder {
    eventually("the work order is invoiced", WAIT, async || {
        let order = get(p, id).await;
        (order.status == WorkOrderStatus::Invoiced as i32).then_some(order)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn happy_path_from_parts_to_invoice() {
    let mut p = Platform::start(settings()).await.unwrap();
    let (customer_id, vehicle_id) = customer_with_vehicle(&mut p).await;
    let pads = part(&mut p, "PAD-001", 1500, 10).await;
    let disc = part(&mut p, "DSC-002", 800, 5).await;
    let order = work_order(&mut p, &customer_id, &vehicle_id).await;
    set_status(&mut p, &order.id, WorkOrderStatus::InProgress).await;

    add_part(&mut p, &order.id, &pads.id, 2).await;
    add_part(&mut p, &order.id, &disc.id, 1).await;
    let reserved = reservations_settled(&mut p, &order.id).await;
    for line in &reserved.part_lines {
        assert_eq!(
            line.reservation_state,
            ReservationState::Reserved as i32,
            "{line:?}"
        );
    }
    let pad_line = reserved
        .part_lines
        .iter()
        .find(|l| l.part_id == pads.id)
        .unwrap();
    assert_eq!(pad_line.unit_price, eur(1500));
    assert_eq!(pad_line.sku, "PAD-001");
    assert_eq!(part_state(&mut p, &pads.id).await.quantity_reserved, 2);

    p.work_orders
        .add_labor_line(wo::AddLaborLineRequest {
            work_order_id: order.id.clone(),
            description: "replace pads and disc".into(),
            technician: "Kim".into(),
            minutes: 90,
            hourly_rate: None,
            expected_version: 0,
            idempotency_key: String::new(),
            job_id: String::new(),
        })
        .await
        .unwrap();
    set_status(&mut p, &order.id, WorkOrderStatus::Completed).await;
    let done = invoiced(&mut p, &order.id).await;

    let pads_after = part_state(&mut p, &pads.id).await;
    assert_eq!(
        (pads_after.quantity_on_hand, pads_after.quantity_reserved),
        (8, 0)
    );
    let disc_after = part_state(&mut p, &disc.id).await;
    assert_eq!(
        (disc_after.quantity_on_hand, disc_after.quantity_reserved),
        (4, 0)
    );

    let invoice = p
        .billing
        .get_invoice_by_work_order(billing::GetInvoiceByWorkOrderRequest {
            work_order_id: order.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    // 2 x 15.00 + 8.00 + 1.5 h x 90.00 = 173.00 net; 20% tax per line: 6.00 + 1.60 + 27.00.
    assert_eq!(invoice.subtotal, eur(17_300));
    assert_eq!(invoice.tax, eur(3_460));
    assert_eq!(invoice.total, eur(20_760));
    assert_eq!(done.invoice_id, invoice.id);
    let all = p
        .billing
        .list_invoices(billing::ListInvoicesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.invoices.len(), 1, "exactly one invoice");
    p.stop().await.unwrap();
}

#[tokio::test]
async fn missing_stock_waits_for_parts_then_completes() {
    let mut p = Platform::start(settings()).await.unwrap();
    let (customer_id, vehicle_id) = customer_with_vehicle(&mut p).await;
    let filter = part(&mut p, "FLT-010", 1200, 1).await;
    let order = work_order(&mut p, &customer_id, &vehicle_id).await;
    set_status(&mut p, &order.id, WorkOrderStatus::InProgress).await;

    add_part(&mut p, &order.id, &filter.id, 3).await;
    let waiting = reservations_settled(&mut p, &order.id).await;
    assert_eq!(waiting.status, WorkOrderStatus::AwaitingParts as i32);
    let line = &waiting.part_lines[0];
    assert_eq!(line.reservation_state, ReservationState::Failed as i32);
    assert!(
        line.failure_reason.contains('1') && line.failure_reason.contains('3'),
        "{}",
        line.failure_reason
    );
    assert_eq!(part_state(&mut p, &filter.id).await.quantity_reserved, 0);

    p.inventory
        .adjust_stock(inventory::AdjustStockRequest {
            part_id: filter.id.clone(),
            kind: inventory::AdjustmentKind::Receipt as i32,
            delta: 5,
            reason: "delivery from supplier".into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    p.work_orders
        .retry_reservation(wo::RetryReservationRequest {
            id: order.id.clone(),
            expected_version: 0,
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    let reserved = eventually("the retried line is reserved", WAIT, async || {
        let order = get(&mut p, &order.id).await;
        (order.part_lines[0].reservation_state == ReservationState::Reserved as i32)
            .then_some(order)
    })
    .await
    .unwrap();
    if reserved.status == WorkOrderStatus::AwaitingParts as i32 {
        set_status(&mut p, &order.id, WorkOrderStatus::InProgress).await;
    }
    set_status(&mut p, &order.id, WorkOrderStatus::Completed).await;
    invoiced(&mut p, &order.id).await;
    let after = part_state(&mut p, &filter.id).await;
    assert_eq!((after.quantity_on_hand, after.quantity_reserved), (3, 0));
    p.stop().await.unwrap();
}

#[tokio::test]
async fn cancelling_releases_the_reservations() {
    let mut p = Platform::start(settings()).await.unwrap();
    let (customer_id, vehicle_id) = customer_with_vehicle(&mut p).await;
    let plug = part(&mut p, "SPK-004", 600, 8).await;
    let order = work_order(&mut p, &customer_id, &vehicle_id).await;
    add_part(&mut p, &order.id, &plug.id, 4).await;
    reservations_settled(&mut p, &order.id).await;
    let held = part_state(&mut p, &plug.id).await;
    assert_eq!((held.quantity_reserved, held.quantity_available), (4, 4));

    set_status(&mut p, &order.id, WorkOrderStatus::Cancelled).await;
    eventually("the reservation is released", WAIT, async || {
        let part = part_state(&mut p, &plug.id).await;
        (part.quantity_reserved == 0 && part.quantity_available == 8).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(part_state(&mut p, &plug.id).await.quantity_on_hand, 8);
    p.stop().await.unwrap();
}

#[tokio::test]
async fn removing_a_reserved_line_releases_its_stock() {
    let mut p = Platform::start(settings()).await.unwrap();
    let (customer_id, vehicle_id) = customer_with_vehicle(&mut p).await;
    let filter = part(&mut p, "OIL-005", 900, 6).await;
    let order = work_order(&mut p, &customer_id, &vehicle_id).await;
    add_part(&mut p, &order.id, &filter.id, 2).await;
    let reserved = reservations_settled(&mut p, &order.id).await;
    assert_eq!(
        reserved.part_lines[0].reservation_state,
        ReservationState::Reserved as i32
    );
    let held = part_state(&mut p, &filter.id).await;
    assert_eq!((held.quantity_reserved, held.quantity_available), (2, 4));

    let removed = p
        .work_orders
        .remove_part_line(wo::RemovePartLineRequest {
            work_order_id: order.id.clone(),
            line_id: reserved.part_lines[0].id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(removed.part_lines.is_empty());
    // Released while the order is still open, not only when it completes or is cancelled.
    eventually(
        "the removed line's reservation is released",
        WAIT,
        async || {
            let part = part_state(&mut p, &filter.id).await;
            (part.quantity_reserved == 0 && part.quantity_available == 6).then_some(())
        },
    )
    .await
    .unwrap();
    assert_eq!(
        get(&mut p, &order.id).await.status,
        WorkOrderStatus::Open as i32
    );
    assert_eq!(part_state(&mut p, &filter.id).await.quantity_on_hand, 6);
    p.stop().await.unwrap();
}

#[tokio::test]
async fn a_completion_published_twice_invoices_and_consumes_once() {
    let mut p = Platform::start(settings()).await.unwrap();
    let (customer_id, vehicle_id) = customer_with_vehicle(&mut p).await;
    let oil = part(&mut p, "OIL-5W30", 900, 10).await;
    let order = work_order(&mut p, &customer_id, &vehicle_id).await;
    set_status(&mut p, &order.id, WorkOrderStatus::InProgress).await;
    add_part(&mut p, &order.id, &oil.id, 5).await;
    reservations_settled(&mut p, &order.id).await;
    set_status(&mut p, &order.id, WorkOrderStatus::Completed).await;
    invoiced(&mut p, &order.id).await;

    // Publish the stored completion again under another message id, as a duplicate that
    // slipped past the stream's deduplication would arrive.
    let completed: serde_json::Value = sqlx::query_scalar(
        "SELECT to_jsonb(o) FROM outbox o WHERE topic = 'workorder.completed' AND aggregate_id = $1",
    )
    .bind(&order.id)
    .fetch_one(&p.pools[1])
    .await
    .unwrap();
    let row = carerp_kit::outbox::OutboxRow {
        seq: completed["seq"].as_i64().unwrap(),
        id: completed["id"].as_str().unwrap().parse().unwrap(),
        topic: "workorder.completed".into(),
        aggregate_id: order.id.clone(),
        data: completed["data"].clone(),
        correlation_id: completed["correlation_id"].as_str().unwrap().into(),
        traceparent: completed["traceparent"].as_str().unwrap().into(),
        created_at: chrono_now(),
        published_at: None,
    };
    // Once with the same event id (the inbox drops it), once with a new one (the handlers'
    // own idempotency per work order must hold).
    let mut copies = vec![row.clone()];
    copies.push(carerp_kit::outbox::OutboxRow {
        id: uuid::Uuid::now_v7(),
        ..row.clone()
    });
    for (n, copy) in copies.iter().enumerate() {
        let envelope = carerp_kit::envelope::CloudEvent::from_outbox(copy, "workorder", &p.tenant);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("copy-{n}").as_str());
        p.jetstream
            .publish_with_headers(
                carerp_kit::envelope::subject(&p.tenant, "workorder.completed"),
                headers,
                serde_json::to_vec(&envelope).unwrap().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Both consumers have taken and acknowledged everything, the copies included.
    let stream = p
        .jetstream
        .get_stream(carerp_kit::envelope::stream_name(&p.tenant))
        .await
        .unwrap();
    for durable in ["inventory", "billing"] {
        eventually("the copies are consumed", WAIT, async || {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                stream.get_consumer(durable).await.unwrap();
            let info = consumer.info().await.unwrap();
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        })
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let invoices = p
        .billing
        .list_invoices(billing::ListInvoicesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(invoices.invoices.len(), 1);
    let after = part_state(&mut p, &oil.id).await;
    assert_eq!((after.quantity_on_hand, after.quantity_reserved), (5, 0));
    p.stop().await.unwrap();
}

/// Corrections (issue 14, item 6): voiding the invoice returns the work order to COMPLETED,
/// billing issues a corrected invoice with a new number, the order is INVOICED by it, and the
/// stock is consumed once.
#[tokio::test]
async fn a_voided_invoice_is_replaced_by_a_corrected_one() {
    let mut p = Platform::start(settings()).await.unwrap();
    let (customer_id, vehicle_id) = customer_with_vehicle(&mut p).await;
    let belt = part(&mut p, "BLT-007", 4000, 3).await;
    let order = work_order(&mut p, &customer_id, &vehicle_id).await;
    set_status(&mut p, &order.id, WorkOrderStatus::InProgress).await;
    add_part(&mut p, &order.id, &belt.id, 1).await;
    reservations_settled(&mut p, &order.id).await;
    set_status(&mut p, &order.id, WorkOrderStatus::Completed).await;
    let first = invoiced(&mut p, &order.id).await.invoice_id;

    let voided = p
        .billing
        .void_invoice(billing::VoidInvoiceRequest {
            id: first.clone(),
            reason: "issued to the wrong company".into(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(voided.status, billing::InvoiceStatus::Void as i32);
    let corrected = eventually("the corrected invoice is issued", WAIT, async || {
        let order = get(&mut p, &order.id).await;
        (order.status == WorkOrderStatus::Invoiced as i32 && order.invoice_id != first)
            .then_some(order.invoice_id)
    })
    .await
    .unwrap();
    let current = p
        .billing
        .get_invoice_by_work_order(billing::GetInvoiceByWorkOrderRequest {
            work_order_id: order.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.id, corrected);
    assert_eq!(current.status, billing::InvoiceStatus::Issued as i32);
    assert_ne!(current.number, voided.number);
    assert_eq!(current.total, voided.total);
    let all = p
        .billing
        .list_invoices(billing::ListInvoicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .invoices;
    assert_eq!(all.len(), 2, "the void invoice and its correction");
    let after = part_state(&mut p, &belt.id).await;
    assert_eq!(
        (after.quantity_on_hand, after.quantity_reserved),
        (2, 0),
        "the stock is consumed once, not again for the correction"
    );
    assert_eq!(p.dead_letters().await.unwrap(), 0);
    p.stop().await.unwrap();
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
