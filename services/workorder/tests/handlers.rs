//! The handlers of consumed events, over the real store: each applied twice has the effect
//! of once, and events that contradict what the service knows are refused.

use carerp_kit::RequestContext;
use carerp_kit::events::{
    FailedLine, InvoiceCreated, InvoiceVoided, Money, PartsReserved, ReservationFailed,
    ReservedLine, WorkOrderCompleted,
};
use carerp_workorder::domain::{Intake, ReservationState, Status};
use carerp_workorder::error::Error;
use carerp_workorder::events::{
    on_invoice_created, on_invoice_voided, on_parts_reserved, on_reservation_failed,
};
use carerp_workorder::store::{self, NewWorkOrder, WorkOrder};
use sqlx::PgPool;
use uuid::Uuid;

fn context() -> RequestContext {
    RequestContext::new_root()
}

/// A work order with two PENDING part lines, created through the store.
async fn order_with_parts(pool: &PgPool) -> WorkOrder {
    let new = NewWorkOrder {
        customer_id: Uuid::now_v7(),
        vehicle_id: Uuid::now_v7(),
        intake: Intake::validate("Engine light on", 100_000, "").unwrap(),
        currency: "EUR".into(),
        timezone: "Europe/Berlin".into(),
    };
    let order = store::create_work_order(pool, &context(), &new, None)
        .await
        .unwrap();
    store::add_part_line(
        pool,
        &context(),
        order.id(),
        &store::NewPartLine {
            part_id: Uuid::now_v7(),
            quantity: 2,
            job_id: None,
            quote: None,
        },
        0,
        None,
    )
    .await
    .unwrap();
    store::add_part_line(
        pool,
        &context(),
        order.id(),
        &store::NewPartLine {
            part_id: Uuid::now_v7(),
            quantity: 1,
            job_id: None,
            quote: None,
        },
        0,
        None,
    )
    .await
    .unwrap()
}

fn reserved(order: &WorkOrder, price: i64, currency: &str) -> PartsReserved {
    PartsReserved {
        work_order_id: order.id(),
        lines: order
            .part_lines
            .iter()
            .map(|line| ReservedLine {
                line_id: line.id,
                part_id: line.part_id,
                quantity: line.quantity,
                sku: "OIL-5W30".into(),
                name: "Engine oil 5W-30".into(),
                unit_price: Money::new(price, currency),
            })
            .collect(),
    }
}

fn failed(order: &WorkOrder) -> ReservationFailed {
    ReservationFailed {
        work_order_id: order.id(),
        lines: order
            .part_lines
            .iter()
            .map(|line| FailedLine {
                line_id: line.id,
                part_id: line.part_id,
                reason: "out of stock".into(),
            })
            .collect(),
    }
}

fn invoice(order: &WorkOrder, invoice_id: Uuid) -> InvoiceCreated {
    InvoiceCreated {
        invoice_id,
        number: "INV-2026-000001".into(),
        work_order_id: order.id(),
        customer_id: order.header.customer_id,
        total: Money::new(order.totals().estimated_minor, "EUR"),
        corrects_invoice_id: None,
    }
}

/// Applies a handler in a transaction of its own, as the consumer will; rolls back on error.
macro_rules! apply {
    ($pool:expr, $handler:ident, $data:expr) => {{
        let mut tx = $pool.begin().await.unwrap();
        let result = $handler(&mut tx, &context(), Uuid::now_v7(), $data).await;
        if result.is_ok() {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
        result
    }};
}

async fn reload(pool: &PgPool, order: &WorkOrder) -> WorkOrder {
    store::get_work_order(pool, order.id()).await.unwrap()
}

async fn outbox_len(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn parts_reserved_twice_is_parts_reserved_once(pool: PgPool) {
    let order = order_with_parts(&pool).await;
    let events_before = outbox_len(&pool).await;
    let data = reserved(&order, 1500, "EUR");
    apply!(pool, on_parts_reserved, &data).unwrap();
    let once = reload(&pool, &order).await;
    for line in &once.part_lines {
        assert_eq!(line.state, ReservationState::Reserved);
        assert_eq!(line.unit_price_minor, Some(1500));
        assert_eq!(line.sku, "OIL-5W30");
        assert_eq!(line.name, "Engine oil 5W-30");
    }
    assert_eq!(once.totals().parts_minor, 4500);
    assert_eq!(once.header.version, order.header.version + 1);
    apply!(pool, on_parts_reserved, &data).unwrap();
    let twice = reload(&pool, &order).await;
    assert_eq!(twice.part_lines, once.part_lines);
    assert_eq!(twice.header.version, once.header.version);
    assert_eq!(twice.header.updated_at, once.header.updated_at);
    assert_eq!(
        outbox_len(&pool).await,
        events_before,
        "handlers publish nothing"
    );
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn parts_reserved_that_contradicts_the_lines_is_refused_and_changes_nothing(pool: PgPool) {
    let order = order_with_parts(&pool).await;
    let err = apply!(pool, on_parts_reserved, &reserved(&order, 1500, "USD")).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains("USD"), "{err}");
    let err = apply!(pool, on_parts_reserved, &reserved(&order, -1, "EUR")).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    let mut other_quantity = reserved(&order, 100, "EUR");
    other_quantity.lines[1].quantity = 7;
    let err = apply!(pool, on_parts_reserved, &other_quantity).unwrap_err();
    assert!(
        err.to_string().contains("but the line is 1 of part"),
        "{err}"
    );
    let after = reload(&pool, &order).await;
    assert_eq!(after.part_lines, order.part_lines);
    assert_eq!(after.header.version, order.header.version);
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn parts_reserved_for_a_removed_line_or_an_unknown_order(pool: PgPool) {
    let order = order_with_parts(&pool).await;
    let removed = order.part_lines[0].id;
    store::remove_part_line(&pool, &context(), order.id(), removed, 0)
        .await
        .unwrap();
    apply!(pool, on_parts_reserved, &reserved(&order, 100, "EUR")).unwrap();
    let after = reload(&pool, &order).await;
    assert_eq!(after.part_lines.len(), 1);
    assert_eq!(after.part_lines[0].state, ReservationState::Reserved);

    let unknown = PartsReserved {
        work_order_id: Uuid::now_v7(),
        lines: vec![],
    };
    let err = apply!(pool, on_parts_reserved, &unknown).unwrap_err();
    assert!(matches!(err, Error::WorkOrderNotFound(_)), "{err:?}");
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn reservation_failed_twice_is_reservation_failed_once(pool: PgPool) {
    let order = order_with_parts(&pool).await;
    store::change_status(&pool, &context(), order.id(), Status::InProgress, "", 0)
        .await
        .unwrap();
    let data = failed(&order);
    apply!(pool, on_reservation_failed, &data).unwrap();
    let once = reload(&pool, &order).await;
    assert_eq!(once.status, Status::AwaitingParts);
    for line in &once.part_lines {
        assert_eq!(line.state, ReservationState::Failed);
        assert_eq!(line.failure_reason, "out of stock");
    }
    apply!(pool, on_reservation_failed, &data).unwrap();
    let twice = reload(&pool, &order).await;
    assert_eq!(twice.status, once.status);
    assert_eq!(twice.part_lines, once.part_lines);
    assert_eq!(twice.header.version, once.header.version);

    // Someone resumed the work; the same event delivered again must not pull it back.
    store::change_status(&pool, &context(), order.id(), Status::InProgress, "", 0)
        .await
        .unwrap();
    apply!(pool, on_reservation_failed, &data).unwrap();
    assert_eq!(reload(&pool, &order).await.status, Status::InProgress);
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn reservation_failed_on_an_open_order_awaits_parts_and_leaves_reserved_lines(pool: PgPool) {
    let order = order_with_parts(&pool).await;
    let first_only = WorkOrder {
        part_lines: vec![order.part_lines[0].clone()],
        ..order.clone()
    };
    apply!(pool, on_parts_reserved, &reserved(&first_only, 100, "EUR")).unwrap();
    apply!(pool, on_reservation_failed, &failed(&order)).unwrap();
    let after = reload(&pool, &order).await;
    assert_eq!(after.status, Status::AwaitingParts);
    assert_eq!(after.part_lines[0].state, ReservationState::Reserved);
    assert_eq!(after.part_lines[1].state, ReservationState::Failed);
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn reservation_events_after_cancellation_are_ignored(pool: PgPool) {
    let order = order_with_parts(&pool).await;
    store::change_status(
        &pool,
        &context(),
        order.id(),
        Status::Cancelled,
        "no parts",
        0,
    )
    .await
    .unwrap();
    let cancelled = reload(&pool, &order).await;
    apply!(pool, on_parts_reserved, &reserved(&order, 100, "EUR")).unwrap();
    apply!(pool, on_reservation_failed, &failed(&order)).unwrap();
    let after = reload(&pool, &order).await;
    assert_eq!(after.status, Status::Cancelled);
    assert_eq!(after.part_lines, cancelled.part_lines);
    assert_eq!(after.header.version, cancelled.header.version);
}

async fn completed_order(pool: &PgPool) -> WorkOrder {
    let order = order_with_parts(pool).await;
    apply!(pool, on_parts_reserved, &reserved(&order, 1000, "EUR")).unwrap();
    store::change_status(pool, &context(), order.id(), Status::InProgress, "", 0)
        .await
        .unwrap();
    store::change_status(pool, &context(), order.id(), Status::Completed, "", 0)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn invoice_created_twice_is_invoice_created_once(pool: PgPool) {
    let order = completed_order(&pool).await;
    let invoice_id = Uuid::now_v7();
    let data = invoice(&order, invoice_id);
    apply!(pool, on_invoice_created, &data).unwrap();
    let once = reload(&pool, &order).await;
    assert_eq!(once.status, Status::Invoiced);
    assert_eq!(once.header.invoice_id, Some(invoice_id));
    assert!(once.header.invoiced_at.is_some());
    assert_eq!(once.header.version, order.header.version + 1);
    apply!(pool, on_invoice_created, &data).unwrap();
    let twice = reload(&pool, &order).await;
    assert_eq!(twice.header.version, once.header.version);
    assert_eq!(twice.header.invoiced_at, once.header.invoiced_at);

    // A second, different invoice for the same order is a contradiction, not a repeat.
    let err = apply!(pool, on_invoice_created, &invoice(&order, Uuid::now_v7())).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert_eq!(
        reload(&pool, &order).await.header.invoice_id,
        Some(invoice_id)
    );
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn invoice_created_for_an_unfinished_or_unknown_order_is_refused(pool: PgPool) {
    let order = order_with_parts(&pool).await;
    let err = apply!(pool, on_invoice_created, &invoice(&order, Uuid::now_v7())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot change status from OPEN to INVOICED: only a COMPLETED work order can be invoiced"
    );
    let after = reload(&pool, &order).await;
    assert_eq!(after.status, Status::Open);
    assert_eq!(after.header.invoice_id, None);

    let completed = completed_order(&pool).await;
    let mut wrong_customer = invoice(&completed, Uuid::now_v7());
    wrong_customer.customer_id = Uuid::now_v7();
    let err = apply!(pool, on_invoice_created, &wrong_customer).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");

    let mut unknown = invoice(&order, Uuid::now_v7());
    unknown.work_order_id = Uuid::now_v7();
    let err = apply!(pool, on_invoice_created, &unknown).unwrap_err();
    assert!(matches!(err, Error::WorkOrderNotFound(_)), "{err:?}");
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn numbers_take_the_year_in_the_tenant_time_zone(pool: PgPool) {
    assert_eq!(
        store::usable_timezone(&pool, "Pacific/Kiritimati").await,
        "Pacific/Kiritimati"
    );
    assert_eq!(
        store::usable_timezone(&pool, "Mars/Olympus_Mons").await,
        "UTC"
    );
    for zone in ["Pacific/Kiritimati", "Pacific/Pago_Pago"] {
        let (year,): (i32,) =
            sqlx::query_as("SELECT EXTRACT(YEAR FROM now() AT TIME ZONE $1)::int")
                .bind(zone)
                .fetch_one(&pool)
                .await
                .unwrap();
        let new = NewWorkOrder {
            customer_id: Uuid::now_v7(),
            vehicle_id: Uuid::now_v7(),
            intake: Intake::validate("Noise", 1, "").unwrap(),
            currency: "EUR".into(),
            timezone: zone.into(),
        };
        let order = store::create_work_order(&pool, &context(), &new, None)
            .await
            .unwrap();
        assert!(
            order.header.number.starts_with(&format!("WO-{year}-")),
            "{zone}: {}",
            order.header.number
        );
    }
}

fn voided(order: &WorkOrder, invoice_id: Uuid) -> InvoiceVoided {
    InvoiceVoided {
        invoice_id,
        number: "INV-2026-000001".into(),
        work_order_id: order.id(),
        reason: "wrong address".into(),
    }
}

/// The `workorder.completed` events in the outbox, oldest first.
async fn completions(pool: &PgPool) -> Vec<WorkOrderCompleted> {
    let rows: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT data FROM outbox WHERE topic = 'workorder.completed' ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|data| serde_json::from_value(data).unwrap())
        .collect()
}

/// A voided invoice returns the order to COMPLETED and announces the completion again, naming
/// the voided invoice; the corrected invoice then moves it to INVOICED (issue 14, item 6).
#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn a_voided_invoice_reopens_the_order_for_a_corrected_one(pool: PgPool) {
    let order = completed_order(&pool).await;
    let first = Uuid::now_v7();
    apply!(pool, on_invoice_created, &invoice(&order, first)).unwrap();
    let invoiced = reload(&pool, &order).await;

    apply!(pool, on_invoice_voided, &voided(&order, first)).unwrap();
    let reopened = reload(&pool, &order).await;
    assert_eq!(reopened.status, Status::Completed);
    assert_eq!(reopened.header.invoice_id, None);
    assert_eq!(reopened.header.invoiced_at, None);
    assert!(reopened.header.version > invoiced.header.version);
    let announced = completions(&pool).await;
    assert_eq!(announced.len(), 2, "{announced:?}");
    assert_eq!(announced[0].corrects_invoice_id, None);
    assert_eq!(announced[1].corrects_invoice_id, Some(first));
    assert!(announced[1].completed_at > announced[0].completed_at);
    assert_eq!(announced[1].part_lines, announced[0].part_lines);

    // Redelivered, the void changes nothing more.
    apply!(pool, on_invoice_voided, &voided(&order, first)).unwrap();
    assert_eq!(completions(&pool).await.len(), 2);
    assert_eq!(
        reload(&pool, &order).await.header.version,
        reopened.header.version
    );

    let corrected = Uuid::now_v7();
    apply!(pool, on_invoice_created, &invoice(&order, corrected)).unwrap();
    let done = reload(&pool, &order).await;
    assert_eq!(done.status, Status::Invoiced);
    assert_eq!(done.header.invoice_id, Some(corrected));
    // The old invoice's void, arriving late, leaves the corrected invoice alone.
    apply!(pool, on_invoice_voided, &voided(&order, first)).unwrap();
    assert_eq!(
        reload(&pool, &order).await.header.invoice_id,
        Some(corrected)
    );
}
