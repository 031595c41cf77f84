//! Size limits where data enters: a work order holds at most 100 part lines and 100 labour
//! lines, so its `workorder.completed` stays far below the broker's max payload even with every
//! text at its maximum (issue 14, item 4).

use carerp_kit::RequestContext;
use carerp_kit::events::{Money, PartsReserved, ReservedLine};
use carerp_workorder::domain::{Intake, MAX_LABOR_LINES, MAX_PART_LINES, NewLabor, Status};
use carerp_workorder::error::Error;
use carerp_workorder::events::{completed_event, on_parts_reserved};
use carerp_workorder::store::{self, NewWorkOrder, WorkOrder};
use sqlx::PgPool;
use uuid::Uuid;

async fn order(pool: &PgPool) -> WorkOrder {
    let new = NewWorkOrder {
        customer_id: Uuid::now_v7(),
        vehicle_id: Uuid::now_v7(),
        intake: Intake::validate("Full service", 90_000, "").unwrap(),
        currency: "EUR".into(),
        timezone: "UTC".into(),
    };
    store::create_work_order(pool, &RequestContext::new_root(), &new, None)
        .await
        .unwrap()
}

/// The longest description and technician a labour line may have, in 3-byte characters.
fn longest_labor() -> NewLabor {
    NewLabor::validate(&"€".repeat(500), &"€".repeat(200), 60, None, 9000, "EUR").unwrap()
}

async fn add_part(pool: &PgPool, order: &WorkOrder) -> Result<WorkOrder, Error> {
    let context = RequestContext::new_root();
    let line = store::NewPartLine {
        part_id: Uuid::now_v7(),
        quantity: 1,
        job_id: None,
        quote: None,
    };
    store::add_part_line(pool, &context, order.id(), &line, 0, None).await
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn the_101st_part_line_is_refused_and_adds_nothing(pool: PgPool) {
    let order = order(&pool).await;
    for _ in 0..MAX_PART_LINES {
        add_part(&pool, &order).await.unwrap();
    }
    let err = add_part(&pool, &order).await.unwrap_err();
    assert!(matches!(err, Error::TooManyLines { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "work order {} has 100 part lines, the most one work order may have; remove one first, or open another work order",
            order.id()
        )
    );
    assert_eq!(
        tonic::Status::from(err).code(),
        tonic::Code::FailedPrecondition
    );
    let after = store::get_work_order(&pool, order.id()).await.unwrap();
    assert_eq!(after.part_lines.len(), MAX_PART_LINES);
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn the_101st_labour_line_is_refused(pool: PgPool) {
    let order = order(&pool).await;
    let labor = longest_labor();
    for _ in 0..MAX_LABOR_LINES {
        store::add_labor_line(&pool, order.id(), None, &labor, "EUR", 0, None)
            .await
            .unwrap();
    }
    let err = store::add_labor_line(&pool, order.id(), None, &labor, "EUR", 0, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has 100 labour lines"), "{err}");
}

/// At every maximum (lines, texts of 3-byte characters) the completion event is under half
/// the broker's default 1 MiB max payload.
#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn a_completion_at_every_limit_fits_the_broker_with_room_to_spare(pool: PgPool) {
    let order = order(&pool).await;
    for _ in 0..MAX_PART_LINES {
        add_part(&pool, &order).await.unwrap();
    }
    let labor = longest_labor();
    for _ in 0..MAX_LABOR_LINES {
        store::add_labor_line(&pool, order.id(), None, &labor, "EUR", 0, None)
            .await
            .unwrap();
    }
    let full = store::get_work_order(&pool, order.id()).await.unwrap();
    let reserved = PartsReserved {
        work_order_id: full.id(),
        lines: full
            .part_lines
            .iter()
            .map(|line| ReservedLine {
                line_id: line.id,
                part_id: line.part_id,
                quantity: line.quantity,
                sku: "€".repeat(200),
                name: "€".repeat(200),
                unit_price: Money::new(1_000_000, "EUR"),
            })
            .collect(),
    };
    let mut tx = pool.begin().await.unwrap();
    on_parts_reserved(
        &mut tx,
        &RequestContext::new_root(),
        Uuid::now_v7(),
        &reserved,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let context = RequestContext::new_root();
    store::change_status(&pool, &context, full.id(), Status::InProgress, "", 0)
        .await
        .unwrap();
    let completed = store::change_status(&pool, &context, full.id(), Status::Completed, "", 0)
        .await
        .unwrap();
    let size = serde_json::to_vec(&completed_event(&completed))
        .unwrap()
        .len();
    assert!(size < 512 * 1024, "workorder.completed is {size} bytes");
}
