//! The `workorder.completed` handler over the real database: one invoice per work order,
//! numbered without gaps, whatever the deliveries do.

mod common;

use std::collections::HashSet;

use carerp_billing::Error;
use carerp_billing::store;
use carerp_kit::consumer::EventFailure;
use carerp_kit::events::{InvoiceCreated, WorkOrderCompleted, topic};
use carerp_proto::billing::v1 as pb;
use chrono::{Datelike, Duration, Utc};
use common::*;
use sqlx::PgPool;
use uuid::Uuid;

async fn invoice_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM invoices")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn numbers(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT number FROM invoices ORDER BY number")
        .fetch_all(pool)
        .await
        .unwrap()
}

fn number(year: i32, n: i32) -> String {
    format!("INV-{year}-{n:06}")
}

/// The year of today's date in Europe/Berlin, unless the test runs across New Year.
fn this_year() -> i32 {
    (Utc::now() + Duration::hours(1)).year()
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn creates_the_invoice_with_lines_tax_dates_and_event(pool: PgPool) {
    let mut h = Harness::start(pool.clone(), settings(2000)).await;
    let event = oil_change();
    let invoice = h.invoice(&event).await;

    assert_eq!(invoice.number, number(this_year(), 1));
    assert_eq!(invoice.work_order_id, event.work_order_id.to_string());
    assert_eq!(invoice.work_order_number, "WO-2026-000042");
    assert_eq!(invoice.customer_id, event.customer_id.to_string());
    assert_eq!(invoice.vehicle_id, event.vehicle_id.to_string());
    assert_eq!(invoice.status(), pb::InvoiceStatus::Issued);
    assert_eq!(invoice.tax_rate_basis_points, 2000);
    // Lines: 25.00 -> tax 5.00; 39.96 -> 7.992 -> 7.99; 45.00 -> 9.00.
    let lines: Vec<(pb::LineKind, &str, i32, i64, i64, i64)> = invoice
        .lines
        .iter()
        .map(|l| {
            (
                l.kind(),
                l.description.as_str(),
                l.quantity,
                amount(&l.unit_price),
                amount(&l.line_total),
                amount(&l.tax),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (
                pb::LineKind::Part,
                "Oil filter (SKU-10)",
                2,
                1250,
                2500,
                500
            ),
            (
                pb::LineKind::Part,
                "Engine oil 1l (SKU-13)",
                4,
                999,
                3996,
                799
            ),
            (pb::LineKind::Labor, "Oil change", 30, 9000, 4500, 900),
        ]
    );
    assert_eq!(amount(&invoice.subtotal), 10_996);
    assert_eq!(amount(&invoice.tax), 2_199);
    assert_eq!(amount(&invoice.total), 13_195);
    assert_eq!(amount(&invoice.paid), 0);
    assert_eq!(amount(&invoice.balance), 13_195);
    assert_eq!(invoice.total.as_ref().unwrap().currency, "EUR");
    assert!(!invoice.overdue);

    let issue = chrono::NaiveDate::parse_from_str(&invoice.issue_date, "%Y-%m-%d").unwrap();
    let due = chrono::NaiveDate::parse_from_str(&invoice.due_date, "%Y-%m-%d").unwrap();
    assert_eq!(due - issue, Duration::days(14));

    let rows = {
        let mut conn = pool.acquire().await.unwrap();
        carerp_kit::outbox::rows_for(&mut conn, &invoice.id)
            .await
            .unwrap()
    };
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].topic, topic::INVOICE_CREATED);
    let data: InvoiceCreated = serde_json::from_value(rows[0].data.clone()).unwrap();
    assert_eq!(data.work_order_id, event.work_order_id);
    assert_eq!(data.number, invoice.number);
    assert_eq!(data.customer_id, event.customer_id);
    assert_eq!(data.total.amount_minor, 13_195);
    assert_eq!(data.total.currency, "EUR");
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn applied_twice_yields_one_invoice_with_one_number(pool: PgPool) {
    let h = Harness::start(pool.clone(), settings(2000)).await;
    let event = oil_change();
    h.complete(&event).await.unwrap();
    h.complete(&event).await.unwrap();
    assert_eq!(invoice_count(&pool).await, 1);
    let id: Uuid = sqlx::query_scalar("SELECT id FROM invoices")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        h.outbox_topics(&id.to_string()).await,
        vec![topic::INVOICE_CREATED]
    );

    // The next work order takes the next number: the repeat consumed none.
    h.complete(&oil_change()).await.unwrap();
    assert_eq!(
        numbers(&pool).await,
        vec![number(this_year(), 1), number(this_year(), 2)]
    );
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn applied_concurrently_yields_one_invoice_with_one_number(pool: PgPool) {
    let _h = Harness::start(pool.clone(), settings(2000)).await;
    for round in 0..3 {
        let event = oil_change();
        let deliveries: Vec<_> = (0..8)
            .map(|_| {
                let pool = pool.clone();
                let event = event.clone();
                tokio::spawn(async move { apply(&pool, &event).await })
            })
            .collect();
        for delivery in futures::future::join_all(deliveries).await {
            delivery.unwrap().unwrap();
        }
        let per_work_order: i64 =
            sqlx::query_scalar("SELECT count(*) FROM invoices WHERE work_order_id = $1")
                .bind(event.work_order_id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(per_work_order, 1, "round {round}");
    }
    let year = this_year();
    assert_eq!(
        numbers(&pool).await,
        (1..=3).map(|n| number(year, n)).collect::<Vec<_>>()
    );
    let created: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE topic = 'invoice.created'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(created, 3);
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn concurrent_work_orders_get_consecutive_numbers(pool: PgPool) {
    let _h = Harness::start(pool.clone(), settings(2000)).await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { apply(&pool, &oil_change()).await })
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        task.unwrap().unwrap();
    }
    let year = this_year();
    let expected: HashSet<String> = (1..=10).map(|n| number(year, n)).collect();
    assert_eq!(
        numbers(&pool).await.into_iter().collect::<HashSet<_>>(),
        expected
    );
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn a_rolled_back_invoice_gives_its_number_back(pool: PgPool) {
    let h = Harness::start(pool.clone(), settings(2000)).await;
    let first = oil_change();
    {
        let mut tx = pool.begin().await.unwrap();
        carerp_billing::events::on_workorder_completed(
            &mut tx,
            &carerp_kit::RequestContext::new_root(),
            Uuid::now_v7(),
            &first,
        )
        .await
        .unwrap();
        // The consumer fails after the handler (say, the inbox write) and rolls back.
        tx.rollback().await.unwrap();
    }
    assert_eq!(invoice_count(&pool).await, 0);
    h.complete(&oil_change()).await.unwrap();
    h.complete(&first).await.unwrap();
    assert_eq!(
        numbers(&pool).await,
        vec![number(this_year(), 1), number(this_year(), 2)]
    );
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(outbox, 2);
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn every_year_counts_from_one(pool: PgPool) {
    let _h = Harness::start(pool.clone(), settings(0)).await;
    let mut tx = pool.begin().await.unwrap();
    assert_eq!(
        store::next_invoice_number(&mut tx, 2026).await.unwrap(),
        "INV-2026-000001"
    );
    assert_eq!(
        store::next_invoice_number(&mut tx, 2026).await.unwrap(),
        "INV-2026-000002"
    );
    assert_eq!(
        store::next_invoice_number(&mut tx, 2027).await.unwrap(),
        "INV-2027-000001"
    );
    assert_eq!(
        store::next_invoice_number(&mut tx, 2026).await.unwrap(),
        "INV-2026-000003"
    );
    tx.rollback().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    assert_eq!(
        store::next_invoice_number(&mut tx, 2026).await.unwrap(),
        "INV-2026-000001"
    );
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn an_inconsistent_event_is_refused_and_leaves_nothing(pool: PgPool) {
    let h = Harness::start(pool.clone(), settings(2000)).await;
    let mut event = oil_change();
    event.total_minor += 1;
    let err = h.complete(&event).await.unwrap_err();
    assert!(err.is_permanent());
    assert!(err.to_string().contains("is not parts"), "{err}");

    let mut event = oil_change();
    event.currency = "usd".into();
    let err = h.complete(&event).await.unwrap_err();
    assert!(matches!(err, Error::InvalidEvent(_)), "{err}");
    assert!(err.is_permanent(), "{err}");

    assert_eq!(invoice_count(&pool).await, 0);
    // Nothing was numbered either.
    h.complete(&oil_change()).await.unwrap();
    assert_eq!(numbers(&pool).await, vec![number(this_year(), 1)]);
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn a_work_order_with_nothing_to_bill_is_paid_at_once(pool: PgPool) {
    let mut h = Harness::start(pool.clone(), settings(2000)).await;
    let invoice = h.invoice(&completed(vec![], vec![])).await;
    assert_eq!(invoice.status(), pb::InvoiceStatus::Paid);
    assert_eq!(amount(&invoice.total), 0);
    assert_eq!(amount(&invoice.balance), 0);
    assert!(invoice.lines.is_empty());
    assert_eq!(
        h.outbox_topics(&invoice.id).await,
        vec![topic::INVOICE_CREATED, topic::INVOICE_PAID]
    );
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn tax_and_rounding_on_awkward_amounts(pool: PgPool) {
    // 25%: forty lines of 0.02 (0.005 -> 0.01 each) and one of 19.99 (4.9975 -> 5.00).
    let mut h = Harness::start(pool.clone(), settings(2500)).await;
    let mut parts: Vec<_> = (0..40)
        .map(|i| part(&format!("Washer {i}"), 1, 2))
        .collect();
    parts.push(part("Wiper blade", 1, 1999));
    let invoice = h.invoice(&completed(parts, vec![])).await;
    assert_eq!(invoice.lines.len(), 41);
    assert!(invoice.lines[..40].iter().all(|l| amount(&l.tax) == 1));
    assert_eq!(amount(&invoice.lines[40].tax), 500);
    assert_eq!(amount(&invoice.subtotal), 80 + 1999);
    assert_eq!(amount(&invoice.tax), 40 + 500);
    assert_eq!(amount(&invoice.total), 80 + 1999 + 40 + 500);
    let line_taxes: i64 = invoice.lines.iter().map(|l| amount(&l.tax)).sum();
    let line_totals: i64 = invoice.lines.iter().map(|l| amount(&l.line_total)).sum();
    assert_eq!(
        (line_totals, line_taxes),
        (amount(&invoice.subtotal), amount(&invoice.tax))
    );
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn zero_rate_and_large_totals(pool: PgPool) {
    let mut h = Harness::start(pool.clone(), settings(0)).await;
    // 2 × 4,999,999,999.99 + 1,000 h at 1,234.56/h: no tax at 0%.
    let invoice = h
        .invoice(&completed(
            vec![part("Engine", 2, 499_999_999_999)],
            vec![labor("Rebuild", 60_000, 123_456)],
        ))
        .await;
    assert_eq!(amount(&invoice.subtotal), 999_999_999_998 + 123_456_000);
    assert_eq!(amount(&invoice.tax), 0);
    assert_eq!(amount(&invoice.total), 1_000_123_455_998);
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn the_issue_date_is_today_in_the_tenants_time_zone(pool: PgPool) {
    // UTC+14 and UTC-12 (neither has summer time) are always a day or two apart.
    for (timezone, offset_hours) in [("Pacific/Kiritimati", 14), ("Etc/GMT+12", -12)] {
        let mut tenant = settings(0);
        tenant.timezone = timezone.into();
        tenant.payment_terms_days = 30;
        store::save_settings(&pool, &tenant).await.unwrap();
        let before = (Utc::now() + Duration::hours(offset_hours)).date_naive();
        let event = oil_change();
        apply(&pool, &event).await.unwrap();
        let after = (Utc::now() + Duration::hours(offset_hours)).date_naive();
        let (issue, due): (chrono::NaiveDate, chrono::NaiveDate) =
            sqlx::query_as("SELECT issue_date, due_date FROM invoices WHERE work_order_id = $1")
                .bind(event.work_order_id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(
            issue == before || issue == after,
            "{timezone}: {issue} not {before}"
        );
        assert_eq!(due - issue, Duration::days(30));
    }
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn an_unknown_time_zone_stops_the_start(pool: PgPool) {
    let mut config =
        carerp_kit::ServiceConfig::for_tests("billing", &carerp_kit::config::test_tenant(), None);
    config.settings.timezone = "Mars/Olympus_Mons".into();
    let err = carerp_billing::start_with_pool(config, pool)
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("CARERP_TIMEZONE=\"Mars/Olympus_Mons\""),
        "{err}"
    );
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn without_stored_settings_the_handler_refuses(pool: PgPool) {
    let err = apply(&pool, &oil_change()).await.unwrap_err();
    assert!(matches!(err, Error::NotConfigured), "{err}");
    assert_eq!(invoice_count(&pool).await, 0);
}

/// A work order opened before the tenant's currency changed (or in another one) is invoiced
/// in its own currency: the setting cannot strand it (issue 14, item 5).
#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn the_invoice_takes_the_work_orders_currency_not_the_tenants(pool: PgPool) {
    let mut h = Harness::start(pool.clone(), settings(2000)).await;
    let mut event = oil_change();
    event.currency = "CHF".into();
    let invoice = h.invoice(&event).await;
    assert_eq!(invoice.total.as_ref().unwrap().currency, "CHF");
    assert_eq!(invoice.subtotal.as_ref().unwrap().currency, "CHF");
    let created: serde_json::Value = sqlx::query_scalar(
        "SELECT data FROM outbox WHERE topic = 'invoice.created' AND aggregate_id = $1",
    )
    .bind(&invoice.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(created["total"]["currency"], "CHF");
}

async fn void(h: &mut Harness, invoice_id: &str) {
    h.client
        .void_invoice(pb::VoidInvoiceRequest {
            id: invoice_id.into(),
            reason: "wrong customer address".into(),
            expected_version: 0,
        })
        .await
        .unwrap();
}

/// A voided invoice is replaced when the work order is completed again: a new invoice with a
/// new number, naming the one it corrects, while the void one stays (issue 14, item 6).
#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn a_completion_after_the_void_issues_a_corrected_invoice(pool: PgPool) {
    let mut h = Harness::start(pool.clone(), settings(2000)).await;
    let first = oil_change();
    let voided = h.invoice(&first).await;
    void(&mut h, &voided.id).await;

    let again = WorkOrderCompleted {
        completed_at: first.completed_at + chrono::Duration::seconds(5),
        corrects_invoice_id: Some(voided.id.parse().unwrap()),
        ..first.clone()
    };
    let corrected = h.invoice(&again).await;
    assert_ne!(corrected.id, voided.id);
    assert_eq!(corrected.status(), pb::InvoiceStatus::Issued);
    assert_eq!(
        numbers(&pool).await,
        vec![number(this_year(), 1), number(this_year(), 2)]
    );
    let created: serde_json::Value = sqlx::query_scalar(
        "SELECT data FROM outbox WHERE topic = 'invoice.created' AND aggregate_id = $1",
    )
    .bind(&corrected.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(created["correctsInvoiceId"], voided.id.as_str());

    // Delivered again, the correction changes nothing; the void invoice is still there.
    h.complete(&again).await.unwrap();
    assert_eq!(invoice_count(&pool).await, 2);
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM invoices ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(statuses, ["VOID", "ISSUED"]);
}

/// A late copy of the completion that was invoiced and voided is not a request to invoice
/// again: only a newer completion is.
#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn an_old_completion_arriving_after_the_void_invoices_nothing(pool: PgPool) {
    let mut h = Harness::start(pool.clone(), settings(2000)).await;
    let first = oil_change();
    let voided = h.invoice(&first).await;
    void(&mut h, &voided.id).await;
    h.complete(&first).await.unwrap();
    assert_eq!(invoice_count(&pool).await, 1);
    assert_eq!(numbers(&pool).await, vec![number(this_year(), 1)]);
}

/// The database keeps one invoice per work order that is not void, whatever the code does.
#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn two_current_invoices_for_one_work_order_are_refused_by_the_database(pool: PgPool) {
    let mut h = Harness::start(pool.clone(), settings(2000)).await;
    let first = oil_change();
    h.invoice(&first).await;
    let copy = sqlx::query(
        "INSERT INTO invoices (id, number, work_order_id, customer_id, vehicle_id, currency, tax_rate_bp,
                               subtotal_minor, tax_minor, total_minor, issue_date, due_date, status)
         SELECT $1, 'INV-COPY', work_order_id, customer_id, vehicle_id, currency, tax_rate_bp,
                subtotal_minor, tax_minor, total_minor, issue_date, due_date, 'ISSUED'
         FROM invoices",
    )
    .bind(Uuid::now_v7())
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(
        carerp_kit::status::is_unique_violation(&copy, "invoices_work_order_current"),
        "{copy}"
    );
}
