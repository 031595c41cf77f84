//! The move of the service's own idempotency keys onto the kit's table: a key used in the
//! last 24 hours before the upgrade still recognises its retry after it.

use carerp_kit::RequestContext;
use carerp_kit::idempotency::Key;
use carerp_workorder::store;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use uuid::Uuid;

const KIT_IDEMPOTENCY: i64 = 20261202000001;

#[sqlx::test(migrations = false)]
async fn a_line_key_from_before_the_upgrade_still_recognises_its_retry(pool: PgPool) {
    let before = Migrator::with_migrations(
        carerp_workorder::MIGRATOR
            .iter()
            .filter(|m| m.version < KIT_IDEMPOTENCY)
            .cloned()
            .collect(),
    );
    before.run(&pool).await.unwrap();
    let context = RequestContext::new_root();
    // A work order as the service wrote it before jobs existed (the store writes its intake
    // job now, a table this schema does not have yet).
    let order_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO work_orders (id, number, customer_id, vehicle_id, complaint, odometer_km,
                                  status, currency)
         VALUES ($1, 'WO-2026-000001', $2, $3, 'Oil change', 50000, 'OPEN', 'EUR')",
    )
    .bind(order_id)
    .bind(Uuid::now_v7())
    .bind(Uuid::now_v7())
    .execute(&pool)
    .await
    .unwrap();
    let part_id = Uuid::now_v7();
    // How the service recorded a keyed "add part line" before the upgrade.
    sqlx::query(
        "INSERT INTO part_lines (id, work_order_id, part_id, quantity, reservation_state, idempotency_key)
         VALUES ($1, $2, $3, 2, 'PENDING', 'legacy-add-1')",
    )
    .bind(Uuid::now_v7())
    .bind(order_id)
    .bind(part_id)
    .execute(&pool)
    .await
    .unwrap();

    carerp_workorder::MIGRATOR.run(&pool).await.unwrap();
    let key = Key::required("idempotency_key", "legacy-add-1").unwrap();
    let retried = store::add_part_line(
        &pool,
        &context,
        order_id,
        &store::NewPartLine {
            part_id,
            quantity: 2,
            job_id: None,
            quote: None,
        },
        0,
        Some(&key),
    )
    .await
    .unwrap();
    assert_eq!(retried.part_lines.len(), 1, "the retry added nothing");
    // A new key adds a line, and its own retry is recognised as well.
    let fresh = Key::required("idempotency_key", "new-add-2").unwrap();
    for _ in 0..2 {
        store::add_part_line(
            &pool,
            &context,
            order_id,
            &store::NewPartLine {
                part_id,
                quantity: 1,
                job_id: None,
                quote: None,
            },
            0,
            Some(&fresh),
        )
        .await
        .unwrap();
    }
    let lines: i64 = sqlx::query_scalar("SELECT count(*) FROM part_lines")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(lines, 2);
}
