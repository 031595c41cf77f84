//! Helpers shared by the integration tests: a part in the store, work order events, and
//! the outbox rows they wrote.
#![allow(dead_code)]

use carerp_inventory::domain::NewPart;
use carerp_inventory::events::{
    on_parts_added, on_parts_removed, on_work_order_cancelled, on_work_order_completed,
};
use carerp_inventory::store::{self, Part};
use carerp_kit::RequestContext;
use carerp_kit::events::{
    CompletedPartLine, RemovedPart, RequestedPart, WorkOrderCancelled, WorkOrderCompleted,
    WorkOrderPartsAdded, WorkOrderPartsRemoved,
};
use sqlx::PgPool;
use uuid::Uuid;

pub async fn part(pool: &PgPool, sku: &str, on_hand: i32, reorder_point: i32) -> Part {
    let (fields, initial) = NewPart {
        sku: sku.into(),
        name: format!("Part {sku}"),
        category: "filters".into(),
        unit_price: Some(carerp_inventory::domain::RawMoney {
            amount_minor: 1250,
            currency: "EUR".into(),
        }),
        reorder_point,
        reorder_quantity: 10,
        initial_quantity: on_hand,
        ..NewPart::default()
    }
    .validate("EUR")
    .unwrap();
    store::create_part(
        pool,
        &RequestContext::new_root(),
        &fields,
        initial,
        "EUR",
        None,
    )
    .await
    .unwrap()
}

pub async fn get(pool: &PgPool, id: Uuid) -> Part {
    store::get_part(&mut pool.acquire().await.unwrap(), id)
        .await
        .unwrap()
}

pub fn line(part_id: Uuid, quantity: i32) -> RequestedPart {
    RequestedPart {
        line_id: Uuid::now_v7(),
        part_id,
        quantity,
    }
}

pub fn parts_added(work_order_id: Uuid, lines: Vec<RequestedPart>) -> WorkOrderPartsAdded {
    WorkOrderPartsAdded {
        work_order_id,
        lines,
    }
}

/// Handles a `parts-added` event in a transaction of its own, as the consumer would.
pub async fn reserve(pool: &PgPool, event_id: Uuid, data: &WorkOrderPartsAdded) {
    let mut tx = pool.begin().await.unwrap();
    on_parts_added(&mut tx, &RequestContext::new_root(), event_id, data)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Handles a `parts-removed` event for the given lines in a transaction of its own.
pub async fn remove(pool: &PgPool, work_order_id: Uuid, lines: &[RequestedPart]) {
    let data = WorkOrderPartsRemoved {
        work_order_id,
        lines: lines
            .iter()
            .map(|line| RemovedPart {
                line_id: line.line_id,
                part_id: line.part_id,
                quantity: line.quantity,
            })
            .collect(),
    };
    let mut tx = pool.begin().await.unwrap();
    on_parts_removed(&mut tx, &RequestContext::new_root(), Uuid::now_v7(), &data)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

pub async fn cancel(pool: &PgPool, work_order_id: Uuid) {
    let mut tx = pool.begin().await.unwrap();
    let data = WorkOrderCancelled {
        work_order_id,
        reason: "customer withdrew".into(),
    };
    on_work_order_cancelled(&mut tx, &RequestContext::new_root(), Uuid::now_v7(), &data)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

pub fn completed(work_order_id: Uuid, lines: &[RequestedPart]) -> WorkOrderCompleted {
    let part_lines: Vec<CompletedPartLine> = lines
        .iter()
        .map(|line| CompletedPartLine {
            line_id: line.line_id,
            part_id: line.part_id,
            sku: String::new(),
            name: String::new(),
            quantity: line.quantity,
            unit_price_minor: 1250,
            line_total_minor: 1250 * i64::from(line.quantity),
        })
        .collect();
    let total = part_lines.iter().map(|line| line.line_total_minor).sum();
    WorkOrderCompleted {
        work_order_id,
        number: "WO-2026-000001".into(),
        customer_id: Uuid::now_v7(),
        vehicle_id: Uuid::now_v7(),
        currency: "EUR".into(),
        part_lines,
        labor_lines: vec![],
        parts_total_minor: total,
        labor_total_minor: 0,
        total_minor: total,
        completed_at: chrono::Utc::now(),
        corrects_invoice_id: None,
    }
}

pub async fn complete(pool: &PgPool, data: &WorkOrderCompleted) {
    let mut tx = pool.begin().await.unwrap();
    on_work_order_completed(&mut tx, &RequestContext::new_root(), Uuid::now_v7(), data)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// The `data` of every outbox event of `topic` about `aggregate`, oldest first.
pub async fn events(pool: &PgPool, aggregate: Uuid, topic: &str) -> Vec<serde_json::Value> {
    let mut conn = pool.acquire().await.unwrap();
    carerp_kit::outbox::rows_for(&mut conn, &aggregate.to_string())
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.topic == topic)
        .map(|row| row.data)
        .collect()
}

/// Number of movements of a part of the given kind.
pub async fn movement_count(pool: &PgPool, part_id: Uuid, kind: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM movements WHERE part_id = $1 AND kind = $2")
        .bind(part_id)
        .bind(kind)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Asserts that every part's quantities equal the sums of its movements.
pub async fn assert_ledger_consistent(pool: &PgPool) {
    for row in store::reconcile(pool, None).await.unwrap() {
        assert!(row.consistent(), "ledger differs: {row:?}");
    }
}
