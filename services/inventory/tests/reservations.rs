//! The work order handlers against the real PostgreSQL: reserve all or nothing, release,
//! consume, low stock once per crossing, idempotency, and no overselling under load.

mod common;

use std::sync::{Arc, Barrier};

use carerp_inventory::events::on_parts_added;
use carerp_kit::RequestContext;
use carerp_kit::events::topic;
use common::*;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn all_lines_are_reserved_with_prices_and_snapshots(pool: PgPool) {
    let filter = part(&pool, "OF-1", 10, 2).await;
    let pads = part(&pool, "BP-1", 4, 1).await;
    let wo = Uuid::now_v7();
    let lines = vec![line(filter.id, 3), line(pads.id, 4)];
    reserve(&pool, Uuid::now_v7(), &parts_added(wo, lines.clone())).await;

    let filter_now = get(&pool, filter.id).await;
    assert_eq!(
        (filter_now.quantity_on_hand, filter_now.quantity_reserved),
        (10, 3)
    );
    let pads_now = get(&pool, pads.id).await;
    assert_eq!(
        (pads_now.quantity_on_hand, pads_now.quantity_reserved),
        (4, 4)
    );

    let answers = events(&pool, wo, topic::INVENTORY_PARTS_RESERVED).await;
    assert_eq!(answers.len(), 1);
    let reserved = &answers[0]["lines"];
    assert_eq!(reserved.as_array().unwrap().len(), 2);
    assert_eq!(reserved[0]["lineId"], lines[0].line_id.to_string());
    assert_eq!(reserved[0]["quantity"], 3);
    assert_eq!(reserved[0]["sku"], "OF-1");
    assert_eq!(reserved[0]["name"], "Part OF-1");
    assert_eq!(reserved[0]["unitPrice"]["amountMinor"], 1250);
    assert_eq!(reserved[0]["unitPrice"]["currency"], "EUR");
    assert_eq!(reserved[1]["partId"], pads.id.to_string());
    assert!(
        events(&pool, wo, topic::INVENTORY_RESERVATION_FAILED)
            .await
            .is_empty()
    );
    assert_eq!(movement_count(&pool, filter.id, "reservation").await, 1);
    assert_ledger_consistent(&pool).await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn one_line_short_reserves_nothing_and_names_every_line(pool: PgPool) {
    let filter = part(&pool, "OF-1", 10, 2).await;
    let pads = part(&pool, "BP-1", 3, 1).await;
    let inactive = part(&pool, "OLD-1", 5, 0).await;
    sqlx::query("UPDATE parts SET active = false WHERE id = $1")
        .bind(inactive.id)
        .execute(&pool)
        .await
        .unwrap();
    let unknown = Uuid::now_v7();
    let wo = Uuid::now_v7();
    let lines = vec![
        line(filter.id, 2),
        line(pads.id, 5),
        line(unknown, 1),
        line(inactive.id, 1),
    ];
    reserve(&pool, Uuid::now_v7(), &parts_added(wo, lines.clone())).await;

    for id in [filter.id, pads.id, inactive.id] {
        assert_eq!(get(&pool, id).await.quantity_reserved, 0);
    }
    assert!(
        events(&pool, wo, topic::INVENTORY_PARTS_RESERVED)
            .await
            .is_empty()
    );
    let failed = events(&pool, wo, topic::INVENTORY_RESERVATION_FAILED).await;
    assert_eq!(failed.len(), 1);
    let failed_lines = failed[0]["lines"].as_array().unwrap();
    assert_eq!(failed_lines.len(), 4);
    for (sent, reported) in lines.iter().zip(failed_lines) {
        assert_eq!(reported["lineId"], sent.line_id.to_string());
        assert_eq!(reported["partId"], sent.part_id.to_string());
    }
    assert_eq!(
        failed_lines[0]["reason"],
        "not reserved: another line of the request could not be reserved"
    );
    assert_eq!(failed_lines[1]["reason"], "only 3 available, 5 requested");
    assert_eq!(failed_lines[2]["reason"], format!("unknown part {unknown}"));
    assert_eq!(failed_lines[3]["reason"], "part OLD-1 is inactive");
    let reservations: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(reservations, 0);
    assert_ledger_consistent(&pool).await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn reserving_twice_has_the_effect_of_once(pool: PgPool) {
    let filter = part(&pool, "OF-1", 10, 2).await;
    let wo = Uuid::now_v7();
    let request = parts_added(wo, vec![line(filter.id, 4)]);
    let event_id = Uuid::now_v7();
    reserve(&pool, event_id, &request).await;
    // The same event delivered again: nothing changes, no second answer.
    reserve(&pool, event_id, &request).await;
    assert_eq!(get(&pool, filter.id).await.quantity_reserved, 4);
    assert_eq!(
        events(&pool, wo, topic::INVENTORY_PARTS_RESERVED)
            .await
            .len(),
        1
    );
    // The same lines announced again under a new event id: still reserved once, and the
    // request is answered with the reservation that exists.
    reserve(&pool, Uuid::now_v7(), &request).await;
    assert_eq!(get(&pool, filter.id).await.quantity_reserved, 4);
    assert_eq!(movement_count(&pool, filter.id, "reservation").await, 1);
    let answers = events(&pool, wo, topic::INVENTORY_PARTS_RESERVED).await;
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[1]["lines"][0]["quantity"], 4);
    assert_ledger_consistent(&pool).await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn a_failed_request_succeeds_when_announced_again_after_a_receipt(pool: PgPool) {
    let filter = part(&pool, "OF-1", 1, 0).await;
    let wo = Uuid::now_v7();
    let request = parts_added(wo, vec![line(filter.id, 3)]);
    reserve(&pool, Uuid::now_v7(), &request).await;
    assert_eq!(
        events(&pool, wo, topic::INVENTORY_RESERVATION_FAILED)
            .await
            .len(),
        1
    );
    receipt(&pool, filter.id, 4).await;
    reserve(&pool, Uuid::now_v7(), &request).await;
    assert_eq!(get(&pool, filter.id).await.quantity_reserved, 3);
    assert_eq!(
        events(&pool, wo, topic::INVENTORY_PARTS_RESERVED)
            .await
            .len(),
        1
    );
    assert_ledger_consistent(&pool).await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn cancelling_releases_once_and_refuses_later_reservations(pool: PgPool) {
    let filter = part(&pool, "OF-1", 10, 2).await;
    let wo = Uuid::now_v7();
    reserve(
        &pool,
        Uuid::now_v7(),
        &parts_added(wo, vec![line(filter.id, 4), line(filter.id, 2)]),
    )
    .await;
    assert_eq!(get(&pool, filter.id).await.quantity_reserved, 6);

    cancel(&pool, wo).await;
    cancel(&pool, wo).await;
    let after = get(&pool, filter.id).await;
    assert_eq!((after.quantity_on_hand, after.quantity_reserved), (10, 0));
    assert_eq!(movement_count(&pool, filter.id, "release").await, 2);

    // A late request for the cancelled work order must not lock stock forever.
    reserve(
        &pool,
        Uuid::now_v7(),
        &parts_added(wo, vec![line(filter.id, 1)]),
    )
    .await;
    assert_eq!(get(&pool, filter.id).await.quantity_reserved, 0);
    let failed = events(&pool, wo, topic::INVENTORY_RESERVATION_FAILED).await;
    assert_eq!(
        failed[0]["lines"][0]["reason"],
        "the work order was cancelled"
    );
    assert_ledger_consistent(&pool).await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn removing_a_reserved_line_releases_exactly_that_line_once(pool: PgPool) {
    let filter = part(&pool, "OF-1", 10, 0).await;
    let wo = Uuid::now_v7();
    let other_wo = Uuid::now_v7();
    let removed = line(filter.id, 4);
    let kept = line(filter.id, 1);
    reserve(
        &pool,
        Uuid::now_v7(),
        &parts_added(wo, vec![removed.clone(), kept.clone()]),
    )
    .await;
    let elsewhere = line(filter.id, 2);
    reserve(
        &pool,
        Uuid::now_v7(),
        &parts_added(other_wo, vec![elsewhere.clone()]),
    )
    .await;
    let before = get(&pool, filter.id).await;
    assert_eq!((before.quantity_on_hand, before.quantity_reserved), (10, 7));
    assert_eq!(before.stock().available(), 3);

    remove(&pool, wo, std::slice::from_ref(&removed)).await;
    remove(&pool, wo, std::slice::from_ref(&removed)).await;
    let after = get(&pool, filter.id).await;
    assert_eq!((after.quantity_on_hand, after.quantity_reserved), (10, 3));
    assert_eq!(after.stock().available(), 7);
    assert_eq!(movement_count(&pool, filter.id, "release").await, 1);
    let status = |line_id: Uuid| {
        sqlx::query_scalar::<_, String>("SELECT status FROM reservations WHERE line_id = $1")
            .bind(line_id)
            .fetch_one(&pool)
    };
    assert_eq!(status(removed.line_id).await.unwrap(), "released");
    assert_eq!(status(kept.line_id).await.unwrap(), "reserved");
    assert_eq!(status(elsewhere.line_id).await.unwrap(), "reserved");
    // The line id of one work order does not release another order's line.
    remove(&pool, other_wo, std::slice::from_ref(&kept)).await;
    assert_eq!(status(kept.line_id).await.unwrap(), "reserved");
    assert_eq!(get(&pool, filter.id).await.quantity_reserved, 3);

    // The rest of the order settles as before: only the kept line is consumed.
    complete(&pool, &completed(wo, std::slice::from_ref(&kept))).await;
    let done = get(&pool, filter.id).await;
    assert_eq!((done.quantity_on_hand, done.quantity_reserved), (9, 2));
    assert_eq!(movement_count(&pool, filter.id, "release").await, 1);
    assert_ledger_consistent(&pool).await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn a_line_removed_before_its_reservation_request_is_never_reserved(pool: PgPool) {
    let filter = part(&pool, "OF-1", 10, 0).await;
    let wo = Uuid::now_v7();
    let pending = line(filter.id, 3);
    // The removal overtakes the (redelivered) request to reserve the line.
    remove(&pool, wo, std::slice::from_ref(&pending)).await;
    assert_eq!(movement_count(&pool, filter.id, "release").await, 0);
    reserve(
        &pool,
        Uuid::now_v7(),
        &parts_added(wo, vec![pending.clone()]),
    )
    .await;
    assert_eq!(get(&pool, filter.id).await.quantity_reserved, 0);
    let failed = events(&pool, wo, topic::INVENTORY_RESERVATION_FAILED).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["lines"][0]["lineId"], pending.line_id.to_string());
    assert!(
        events(&pool, wo, topic::INVENTORY_PARTS_RESERVED)
            .await
            .is_empty()
    );
    // Other lines of the order are still reserved.
    let later = line(filter.id, 2);
    reserve(&pool, Uuid::now_v7(), &parts_added(wo, vec![later])).await;
    assert_eq!(get(&pool, filter.id).await.quantity_reserved, 2);
    assert_ledger_consistent(&pool).await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn completing_consumes_once_and_releases_lines_no_longer_used(pool: PgPool) {
    let filter = part(&pool, "OF-1", 10, 0).await;
    let pads = part(&pool, "BP-1", 8, 0).await;
    let wo = Uuid::now_v7();
    let used = line(filter.id, 3);
    let removed = line(pads.id, 2);
    reserve(
        &pool,
        Uuid::now_v7(),
        &parts_added(wo, vec![used.clone(), removed]),
    )
    .await;

    // The pads line was removed from the work order before completion.
    let done = completed(wo, std::slice::from_ref(&used));
    complete(&pool, &done).await;
    complete(&pool, &done).await;

    let filter_now = get(&pool, filter.id).await;
    assert_eq!(
        (filter_now.quantity_on_hand, filter_now.quantity_reserved),
        (7, 0)
    );
    let pads_now = get(&pool, pads.id).await;
    assert_eq!(
        (pads_now.quantity_on_hand, pads_now.quantity_reserved),
        (8, 0)
    );
    assert_eq!(movement_count(&pool, filter.id, "consumption").await, 1);
    assert_eq!(movement_count(&pool, pads.id, "release").await, 1);
    let status: String = sqlx::query_scalar("SELECT status FROM reservations WHERE line_id = $1")
        .bind(used.line_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "consumed");
    // Who moved the stock: the events that caused each movement.
    let actors: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, actor FROM movements WHERE work_order_id = $1 ORDER BY seq")
            .bind(wo)
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut kinds_and_topics: Vec<(&str, &str)> = actors
        .iter()
        .map(|(kind, actor)| (kind.as_str(), actor.split(" event ").next().unwrap_or("")))
        .collect();
    kinds_and_topics.sort();
    assert_eq!(
        kinds_and_topics,
        [
            ("consumption", "workorder.completed"),
            ("release", "workorder.completed"),
            ("reservation", "workorder.parts-added"),
            ("reservation", "workorder.parts-added"),
        ],
        "{actors:?}"
    );
    assert_ledger_consistent(&pool).await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn low_stock_is_raised_exactly_once_per_crossing(pool: PgPool) {
    // Reorder point 5: low when available <= 5.
    let filter = part(&pool, "OF-1", 10, 5).await;
    let use_parts = |quantity: i32| {
        let pool = pool.clone();
        async move {
            let wo = Uuid::now_v7();
            let l = line(filter.id, quantity);
            reserve(&pool, Uuid::now_v7(), &parts_added(wo, vec![l.clone()])).await;
            complete(&pool, &completed(wo, &[l])).await;
        }
    };
    let raised = || events(&pool, filter.id, topic::INVENTORY_LOW_STOCK);

    use_parts(3).await; // 7 left: above the point
    assert!(raised().await.is_empty());

    // A reservation that makes the part low raises nothing: it may still be released.
    let wo = Uuid::now_v7();
    reserve(
        &pool,
        Uuid::now_v7(),
        &parts_added(wo, vec![line(filter.id, 3)]),
    )
    .await;
    assert!(raised().await.is_empty());
    cancel(&pool, wo).await;

    use_parts(3).await; // 4 left: crossed
    let low = raised().await;
    assert_eq!(low.len(), 1);
    assert_eq!(low[0]["quantityAvailable"], 4);
    assert_eq!(low[0]["reorderPoint"], 5);
    assert_eq!(low[0]["reorderQuantity"], 10);
    assert_eq!(low[0]["sku"], "OF-1");

    use_parts(1).await; // 3 left: still low, no second alert
    use_parts(1).await; // 2 left
    assert_eq!(raised().await.len(), 1);

    // A receipt that stays at the point keeps the alert raised.
    receipt(&pool, filter.id, 3).await; // 5 left
    use_parts(1).await; // 4 left
    assert_eq!(raised().await.len(), 1);

    // Rising above the point, then dipping again, is a new crossing.
    receipt(&pool, filter.id, 10).await; // 14
    use_parts(9).await; // 5: at the point is low
    assert_eq!(raised().await.len(), 2);
    use_parts(1).await;
    assert_eq!(raised().await.len(), 2);

    // Writing stock down is usage too.
    receipt(&pool, filter.id, 10).await; // 14
    let damaged = carerp_inventory::domain::Adjustment::validate(
        Some(carerp_inventory::domain::MovementKind::Adjustment),
        -10,
        "water damage",
        "anna",
    )
    .unwrap();
    carerp_inventory::store::adjust_stock(
        &pool,
        &RequestContext::new_root(),
        filter.id,
        &damaged,
        None,
    )
    .await
    .unwrap(); // 4
    assert_eq!(raised().await.len(), 3);
    assert_ledger_consistent(&pool).await;
}

async fn receipt(pool: &PgPool, part_id: Uuid, quantity: i32) {
    let adjustment = carerp_inventory::domain::Adjustment::validate(
        Some(carerp_inventory::domain::MovementKind::Receipt),
        quantity,
        "delivery",
        "goods-in",
    )
    .unwrap();
    carerp_inventory::store::adjust_stock(
        pool,
        &RequestContext::new_root(),
        part_id,
        &adjustment,
        None,
    )
    .await
    .unwrap();
}

/// With 10 in stock, 50 work orders each reserve 1 at the same moment, each on its own
/// connection driven by its own OS thread: exactly 10 get one, 40 are refused, and the part
/// never shows more reserved than on hand.
#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn fifty_concurrent_reservations_of_ten_in_stock_never_oversell(
    pool_options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    const CONTENDERS: usize = 50;
    let pool = pool_options
        .max_connections(4)
        .connect_with(connect.clone())
        .await
        .unwrap();
    let filter = part(&pool, "OF-1", 10, 0).await;
    let work_orders: Vec<Uuid> = (0..CONTENDERS).map(|_| Uuid::now_v7()).collect();

    let barrier = Arc::new(Barrier::new(CONTENDERS));
    let part_id = filter.id;
    let orders = work_orders.clone();
    tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            for work_order_id in orders {
                let barrier = barrier.clone();
                let connect = connect.clone();
                scope.spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    let mut conn: PgConnection = runtime
                        .block_on(PgConnection::connect_with(&connect))
                        .unwrap();
                    // Everyone holds an open connection before anyone starts.
                    barrier.wait();
                    runtime.block_on(async {
                        let mut tx = conn.begin().await.unwrap();
                        let request = parts_added(work_order_id, vec![line(part_id, 1)]);
                        on_parts_added(
                            &mut tx,
                            &RequestContext::new_root(),
                            Uuid::now_v7(),
                            &request,
                        )
                        .await
                        .unwrap();
                        tx.commit().await.unwrap();
                    });
                });
            }
        });
    })
    .await
    .unwrap();

    let after = get(&pool, filter.id).await;
    assert_eq!(after.quantity_on_hand, 10);
    assert_eq!(after.quantity_reserved, 10);
    assert_eq!(after.stock().available(), 0);

    let (mut reserved, mut refused) = (0, 0);
    for wo in &work_orders {
        let ok = events(&pool, *wo, topic::INVENTORY_PARTS_RESERVED).await;
        let failed = events(&pool, *wo, topic::INVENTORY_RESERVATION_FAILED).await;
        assert_eq!(ok.len() + failed.len(), 1, "work order {wo} got one answer");
        if let Some(failure) = failed.first() {
            assert_eq!(
                failure["lines"][0]["reason"],
                "only 0 available, 1 requested"
            );
        }
        reserved += ok.len();
        refused += failed.len();
    }
    assert_eq!((reserved, refused), (10, 40));
    assert_eq!(movement_count(&pool, filter.id, "reservation").await, 10);
    // Every intermediate state of the ledger: the running sums never exceed what is on hand.
    let worst: i64 = sqlx::query_scalar(
        "SELECT max(reserved) FROM (
             SELECT sum(reserved_delta) OVER (ORDER BY seq) AS reserved FROM movements WHERE part_id = $1
         ) running",
    )
    .bind(filter.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(worst, 10);
    assert_ledger_consistent(&pool).await;
    pool.close().await;
}

/// Compile-time check, never called: the consumer runs handlers on a multi-threaded
/// runtime, so their futures must be `Send`; this file stops compiling if one is not.
#[allow(dead_code)]
fn handler_futures_are_send(conn: &mut PgConnection, ctx: &RequestContext) {
    fn assert_send<T: Send>(_: T) {}
    let parts = parts_added(Uuid::now_v7(), vec![]);
    assert_send(on_parts_added(conn, ctx, Uuid::now_v7(), &parts));
    let cancelled = carerp_kit::events::WorkOrderCancelled {
        work_order_id: Uuid::now_v7(),
        reason: String::new(),
    };
    assert_send(carerp_inventory::events::on_work_order_cancelled(
        conn,
        ctx,
        Uuid::now_v7(),
        &cancelled,
    ));
    let done = completed(Uuid::now_v7(), &[]);
    assert_send(carerp_inventory::events::on_work_order_completed(
        conn,
        ctx,
        Uuid::now_v7(),
        &done,
    ));
}
