//! Every RPC and every bad input, through gRPC against the real service (in-process, on an
//! ephemeral port) and a real PostgreSQL database of the test's own.

mod common;

use carerp_kit::events::topic;
use carerp_kit::status::field_violations;
use carerp_proto::billing::v1 as pb;
use carerp_proto::common::v1::PageRequest;
use chrono::{Datelike, Duration, Utc};
use common::*;
use sqlx::PgPool;
use tonic::Code;
use uuid::Uuid;

/// The fields named in an InvalidArgument status, in order.
fn fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    field_violations(status)
        .into_iter()
        .map(|v| v.field)
        .collect()
}

async fn payments_in_db(pool: &PgPool, invoice_id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM payments WHERE invoice_id = $1")
        .bind(Uuid::parse_str(invoice_id).unwrap())
        .fetch_one(pool)
        .await
        .unwrap()
}

// ---- get ----

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn get_invoice_and_by_work_order(pool: PgPool) {
    let mut h = Harness::start(pool, settings(2000)).await;
    let event = oil_change();
    let by_work_order = h.invoice(&event).await;
    let by_id = h
        .client
        .get_invoice(pb::GetInvoiceRequest {
            id: by_work_order.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id, by_work_order);
    assert_eq!(by_id.audit.as_ref().unwrap().version, 1);
    assert!(by_id.number.starts_with("INV-"));
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn get_refuses_bad_and_unknown_ids(pool: PgPool) {
    let mut h = Harness::start(pool, settings(2000)).await;
    for (id, expected) in [
        ("", "is required"),
        ("INV-2026-000001", "is not a valid id"),
    ] {
        let status = h
            .client
            .get_invoice(pb::GetInvoiceRequest { id: id.into() })
            .await
            .unwrap_err();
        assert_eq!(fields(&status), vec!["id"]);
        assert!(status.message().contains(expected), "{status:?}");
    }
    let unknown = Uuid::now_v7();
    let status = h
        .client
        .get_invoice(pb::GetInvoiceRequest {
            id: unknown.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), format!("invoice {unknown} not found"));

    let status = h
        .client
        .get_invoice_by_work_order(pb::GetInvoiceByWorkOrderRequest {
            work_order_id: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&status), vec!["work_order_id"]);
    let status = h
        .client
        .get_invoice_by_work_order(pb::GetInvoiceByWorkOrderRequest {
            work_order_id: unknown.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        status.message(),
        format!("no invoice for work order {unknown}")
    );
}

// ---- list ----

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn list_filters_and_pages(pool: PgPool) {
    let mut h = Harness::start(pool, settings(2000)).await;
    let mut invoices = Vec::new();
    for _ in 0..5 {
        invoices.push(h.invoice(&oil_change()).await);
    }
    // One partially paid, one paid, one void, one overdue, one just issued.
    h.pay(&invoices[0].id, 100).await.unwrap();
    h.pay(&invoices[1].id, amount(&invoices[1].total))
        .await
        .unwrap();
    h.client
        .void_invoice(pb::VoidInvoiceRequest {
            id: invoices[2].id.clone(),
            reason: "duplicate".into(),
            expected_version: 0,
        })
        .await
        .unwrap();
    h.age(&invoices[3].id, 30).await;

    // Everything, newest first, two at a time.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let response = h
            .client
            .list_invoices(pb::ListInvoicesRequest {
                page: Some(PageRequest {
                    page_size: 2,
                    page_token: token.clone(),
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(response.invoices.len() <= 2);
        seen.extend(response.invoices.into_iter().map(|i| i.id));
        token = response.page.unwrap().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 3);
    let mut expected: Vec<String> = invoices.iter().map(|i| i.id.clone()).collect();
    expected.reverse();
    assert_eq!(seen, expected);

    let ids = |response: pb::ListInvoicesResponse| -> Vec<String> {
        response.invoices.into_iter().map(|i| i.id).collect()
    };
    let by_status = h
        .client
        .list_invoices(pb::ListInvoicesRequest {
            statuses: vec![
                pb::InvoiceStatus::Paid.into(),
                pb::InvoiceStatus::Void.into(),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ids(by_status),
        vec![invoices[2].id.clone(), invoices[1].id.clone()]
    );

    let overdue = h
        .client
        .list_invoices(pb::ListInvoicesRequest {
            overdue_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overdue.invoices.len(), 1);
    assert_eq!(overdue.invoices[0].id, invoices[3].id);
    assert!(overdue.invoices[0].overdue);

    let customer = h
        .client
        .list_invoices(pb::ListInvoicesRequest {
            customer_id: invoices[4].customer_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(customer), vec![invoices[4].id.clone()]);

    // Issue-date range: the aged invoice was issued 30 days before the others.
    let aged_issue = chrono::NaiveDate::parse_from_str(&invoices[4].issue_date, "%Y-%m-%d")
        .unwrap()
        - Duration::days(30);
    let range = h
        .client
        .list_invoices(pb::ListInvoicesRequest {
            issued_from: (aged_issue - Duration::days(1)).to_string(),
            issued_to: (aged_issue + Duration::days(1)).to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(range), vec![invoices[3].id.clone()]);
    let from_today = h
        .client
        .list_invoices(pb::ListInvoicesRequest {
            issued_from: invoices[4].issue_date.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(from_today.invoices.len(), 4);
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn list_refuses_bad_filters(pool: PgPool) {
    let mut h = Harness::start(pool, settings(2000)).await;
    let cases: Vec<(pb::ListInvoicesRequest, Vec<&str>)> = vec![
        (
            pb::ListInvoicesRequest {
                page: Some(PageRequest {
                    page_size: -1,
                    page_token: String::new(),
                }),
                ..Default::default()
            },
            vec!["page.page_size"],
        ),
        (
            pb::ListInvoicesRequest {
                page: Some(PageRequest {
                    page_size: 10,
                    page_token: "not-a-token".into(),
                }),
                ..Default::default()
            },
            vec!["page.page_token"],
        ),
        (
            pb::ListInvoicesRequest {
                statuses: vec![pb::InvoiceStatus::Paid.into(), 0, 99],
                ..Default::default()
            },
            vec!["statuses[1]", "statuses[2]"],
        ),
        (
            pb::ListInvoicesRequest {
                customer_id: "bob".into(),
                ..Default::default()
            },
            vec!["customer_id"],
        ),
        (
            pb::ListInvoicesRequest {
                issued_from: "2026-02-30".into(),
                issued_to: "25.11.2026".into(),
                ..Default::default()
            },
            vec!["issued_from", "issued_to"],
        ),
        (
            pb::ListInvoicesRequest {
                issued_from: "2026-12-01".into(),
                issued_to: "2026-11-30".into(),
                ..Default::default()
            },
            vec!["issued_to"],
        ),
    ];
    for (request, expected) in cases {
        let status = h.client.list_invoices(request.clone()).await.unwrap_err();
        assert_eq!(fields(&status), expected, "{request:?}: {status:?}");
    }
}

// ---- payments ----

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn payments_move_the_invoice_to_partially_paid_and_paid(pool: PgPool) {
    let mut h = Harness::start(pool.clone(), settings(2000)).await;
    let invoice = h.invoice(&oil_change()).await;
    let total = amount(&invoice.total);

    let received_at = Utc::now() - Duration::hours(2);
    let partly = h
        .client
        .record_payment(pb::RecordPaymentRequest {
            method: pb::PaymentMethod::Cash.into(),
            reference: "  receipt 17  ".into(),
            received_at: Some(prost_types::Timestamp {
                seconds: received_at.timestamp(),
                nanos: 0,
            }),
            ..payment(&invoice.id, 5_000)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(partly.status(), pb::InvoiceStatus::PartiallyPaid);
    assert_eq!(amount(&partly.paid), 5_000);
    assert_eq!(amount(&partly.balance), total - 5_000);
    assert_eq!(partly.payments.len(), 1);
    assert_eq!(partly.payments[0].method(), pb::PaymentMethod::Cash);
    assert_eq!(partly.payments[0].reference, "receipt 17");
    assert_eq!(
        partly.payments[0].received_at.as_ref().unwrap().seconds,
        received_at.timestamp()
    );
    assert_eq!(amount(&partly.payments[0].amount), 5_000);
    assert_eq!(partly.audit.as_ref().unwrap().version, 2);
    assert_eq!(
        h.outbox_topics(&invoice.id).await,
        vec![topic::INVOICE_CREATED]
    );

    let paid = h.pay(&invoice.id, total - 5_000).await.unwrap();
    assert_eq!(paid.status(), pb::InvoiceStatus::Paid);
    assert_eq!(amount(&paid.balance), 0);
    assert_eq!(amount(&paid.paid), total);
    assert_eq!(paid.payments.len(), 2);
    assert_eq!(
        h.outbox_topics(&invoice.id).await,
        vec![topic::INVOICE_CREATED, topic::INVOICE_PAID]
    );
    let data: carerp_kit::events::InvoicePaid = {
        let mut conn = pool.acquire().await.unwrap();
        let rows = carerp_kit::outbox::rows_for(&mut conn, &invoice.id)
            .await
            .unwrap();
        serde_json::from_value(rows[1].data.clone()).unwrap()
    };
    assert_eq!(data.work_order_id.to_string(), invoice.work_order_id);
    assert_eq!(data.total.amount_minor, total);

    // Nothing more can be paid.
    let status = h.pay(&invoice.id, 1).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("already paid in full"),
        "{status:?}"
    );
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn an_overpayment_is_refused_with_the_balance(pool: PgPool) {
    let mut h = Harness::start(pool.clone(), settings(2000)).await;
    let invoice = h.invoice(&oil_change()).await; // total 131.95
    h.pay(&invoice.id, 3_195).await.unwrap();
    let status = h.pay(&invoice.id, 10_001).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        format!(
            "cannot record the payment on invoice {}: a payment of 10001 exceeds the invoice's balance of 10000 \
             (EUR minor units); pay at most 10000",
            invoice.number
        )
    );
    assert_eq!(payments_in_db(&pool, &invoice.id).await, 1);
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn concurrent_payments_never_overpay(pool: PgPool) {
    let mut h = Harness::start(pool.clone(), settings(2000)).await;
    for _ in 0..3 {
        let invoice = h.invoice(&oil_change()).await;
        let total = amount(&invoice.total); // 13195
        // Six payments of 4000 would make 24000: only three fit (12000), the rest are refused.
        let attempts: Vec<_> = (0..6)
            .map(|_| {
                let mut client = h.client.clone();
                let request = payment(&invoice.id, 4_000);
                tokio::spawn(async move { client.record_payment(request).await })
            })
            .collect();
        let results: Vec<_> = futures::future::join_all(attempts)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(accepted, 3);
        for refused in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(refused.code(), Code::FailedPrecondition);
            assert!(refused.message().contains("balance of 1195"), "{refused:?}");
        }
        let now = h
            .client
            .get_invoice(pb::GetInvoiceRequest {
                id: invoice.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(amount(&now.paid), 12_000);
        assert_eq!(amount(&now.balance), total - 12_000);
        assert!(amount(&now.balance) >= 0);
        assert_eq!(now.status(), pb::InvoiceStatus::PartiallyPaid);
        assert_eq!(payments_in_db(&pool, &invoice.id).await, 3);
    }
    // Two payments that each pay the balance: exactly one wins, one invoice.paid.
    let invoice = h.invoice(&oil_change()).await;
    let total = amount(&invoice.total);
    let attempts: Vec<_> = (0..2)
        .map(|_| {
            let mut client = h.client.clone();
            let request = payment(&invoice.id, total);
            tokio::spawn(async move { client.record_payment(request).await })
        })
        .collect();
    let ok = futures::future::join_all(attempts)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().is_ok())
        .count();
    assert_eq!(ok, 1);
    assert_eq!(
        h.outbox_topics(&invoice.id).await,
        vec![topic::INVOICE_CREATED, topic::INVOICE_PAID]
    );
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn a_payment_with_an_idempotency_key_is_recorded_once(pool: PgPool) {
    let mut h = Harness::start(pool.clone(), settings(2000)).await;
    let invoice = h.invoice(&oil_change()).await;
    let request = pb::RecordPaymentRequest {
        idempotency_key: "till-7-4711".into(),
        ..payment(&invoice.id, 2_000)
    };
    let first = h
        .client
        .record_payment(request.clone())
        .await
        .unwrap()
        .into_inner();
    let again = h
        .client
        .record_payment(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    assert_eq!(payments_in_db(&pool, &invoice.id).await, 1);

    // At the same time, repeatedly: still one.
    let repeats: Vec<_> = (0..5)
        .map(|_| {
            let mut client = h.client.clone();
            let request = pb::RecordPaymentRequest {
                idempotency_key: "till-7-4712".into(),
                ..payment(&invoice.id, 1_000)
            };
            tokio::spawn(async move { client.record_payment(request).await })
        })
        .collect();
    for repeat in futures::future::join_all(repeats).await {
        repeat.unwrap().unwrap();
    }
    assert_eq!(payments_in_db(&pool, &invoice.id).await, 2);

    // The same key for a different payment is refused, naming the key, on its field.
    let status = h
        .client
        .record_payment(pb::RecordPaymentRequest {
            idempotency_key: "till-7-4711".into(),
            ..payment(&invoice.id, 2_001)
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let violations = carerp_kit::status::field_violations(&status);
    assert_eq!(violations[0].field, "idempotency_key", "{status:?}");
    assert!(
        status
            .message()
            .contains("\"till-7-4711\" was already used"),
        "{status:?}"
    );
    let other = h.invoice(&oil_change()).await;
    let status = h
        .client
        .record_payment(pb::RecordPaymentRequest {
            idempotency_key: "till-7-4711".into(),
            ..payment(&other.id, 2_000)
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(payments_in_db(&pool, &other.id).await, 0);
}

/// "Pay the balance" is worked out under the invoice's lock; retried under its key it repeats
/// the first payment rather than paying the (now zero) balance again.
#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn paying_the_balance_pays_what_is_left_once(pool: PgPool) {
    let mut h = Harness::start(pool.clone(), settings(2000)).await;
    let invoice = h.invoice(&oil_change()).await;
    let total = amount(&invoice.total);
    h.client
        .record_payment(payment(&invoice.id, 5_000))
        .await
        .unwrap();
    let pay_the_rest = pb::RecordPaymentRequest {
        amount: None,
        pay_balance: true,
        idempotency_key: "counter-9".into(),
        ..payment(&invoice.id, 0)
    };
    let paid = h
        .client
        .record_payment(pay_the_rest.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid.status(), pb::InvoiceStatus::Paid);
    assert_eq!(amount(&paid.balance), 0);
    let rest: i64 =
        sqlx::query_scalar("SELECT amount_minor FROM payments WHERE idempotency_key = 'counter-9'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(rest, total - 5_000);

    let again = h
        .client
        .record_payment(pay_the_rest)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, paid);
    assert_eq!(payments_in_db(&pool, &invoice.id).await, 2);

    // Under a new key it is a new payment: a paid invoice takes no more.
    let refused = h
        .client
        .record_payment(pb::RecordPaymentRequest {
            amount: None,
            pay_balance: true,
            ..payment(&invoice.id, 0)
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("already paid"), "{refused:?}");
    assert_eq!(payments_in_db(&pool, &invoice.id).await, 2);
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn record_payment_refuses_bad_input(pool: PgPool) {
    let mut h = Harness::start(pool.clone(), settings(2000)).await;
    let invoice = h.invoice(&oil_change()).await;
    let id = invoice.id.as_str();
    let future = Utc::now() + Duration::hours(1);
    let cases: Vec<(pb::RecordPaymentRequest, Vec<&str>, &str)> = vec![
        (payment("", 100), vec!["invoice_id"], "is required"),
        (
            payment("INV-1", 100),
            vec!["invoice_id"],
            "is not a valid id",
        ),
        (
            pb::RecordPaymentRequest {
                amount: None,
                ..payment(id, 100)
            },
            vec!["amount"],
            "is required",
        ),
        (
            pb::RecordPaymentRequest {
                pay_balance: true,
                ..payment(id, 100)
            },
            vec!["amount"],
            "must be unset when pay_balance is set",
        ),
        (
            payment(id, 0),
            vec!["amount.amount_minor"],
            "must be positive, is 0",
        ),
        (
            payment(id, -500),
            vec!["amount.amount_minor"],
            "must be positive, is -500",
        ),
        (
            pb::RecordPaymentRequest {
                amount: Some(carerp_proto::common::v1::Money {
                    amount_minor: 100,
                    currency: "euro".into(),
                }),
                ..payment(id, 100)
            },
            vec!["amount.currency"],
            "is not an ISO 4217 code",
        ),
        (
            pb::RecordPaymentRequest {
                method: pb::PaymentMethod::Unspecified.into(),
                ..payment(id, 100)
            },
            vec!["method"],
            "is required",
        ),
        (
            pb::RecordPaymentRequest {
                method: 42,
                ..payment(id, 100)
            },
            vec!["method"],
            "42 is not a payment method",
        ),
        (
            pb::RecordPaymentRequest {
                reference: "x".repeat(201),
                ..payment(id, 100)
            },
            vec!["reference"],
            "at most 200 characters",
        ),
        (
            pb::RecordPaymentRequest {
                received_at: Some(prost_types::Timestamp {
                    seconds: future.timestamp(),
                    nanos: 0,
                }),
                ..payment(id, 100)
            },
            vec!["received_at"],
            "is in the future",
        ),
        (
            pb::RecordPaymentRequest {
                received_at: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                }),
                ..payment(id, 100)
            },
            vec!["received_at"],
            "is not a valid timestamp",
        ),
        (
            pb::RecordPaymentRequest {
                idempotency_key: String::new(),
                ..payment(id, 100)
            },
            vec!["idempotency_key"],
            "is required: a retried request must not have its effect twice",
        ),
        (
            pb::RecordPaymentRequest {
                idempotency_key: "till 7".into(),
                ..payment(id, 100)
            },
            vec!["idempotency_key"],
            "must be visible ASCII",
        ),
        (
            pb::RecordPaymentRequest {
                idempotency_key: "k".repeat(201),
                ..payment(id, 100)
            },
            vec!["idempotency_key"],
            "at most 200 characters",
        ),
        (
            pb::RecordPaymentRequest {
                invoice_id: String::new(),
                amount: Some(carerp_proto::common::v1::Money {
                    amount_minor: 0,
                    currency: String::new(),
                }),
                method: 0,
                ..payment(id, 100)
            },
            vec!["invoice_id", "amount.amount_minor", "method"],
            "invalid request",
        ),
    ];
    for (request, expected, message) in cases {
        let status = h.client.record_payment(request.clone()).await.unwrap_err();
        assert_eq!(fields(&status), expected, "{request:?}");
        assert!(status.message().contains(message), "{status:?}");
    }

    // The invoice's currency is the only one it takes; an empty currency means it.
    let status = h
        .client
        .record_payment(pb::RecordPaymentRequest {
            amount: Some(carerp_proto::common::v1::Money {
                amount_minor: 100,
                currency: "USD".into(),
            }),
            ..payment(id, 100)
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&status), vec!["amount.currency"]);
    assert!(
        status.message().contains("the invoice is in \"EUR\""),
        "{status:?}"
    );
    assert_eq!(payments_in_db(&pool, id).await, 0);
    let ok = h
        .client
        .record_payment(pb::RecordPaymentRequest {
            amount: Some(carerp_proto::common::v1::Money {
                amount_minor: 100,
                currency: String::new(),
            }),
            ..payment(id, 100)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.payments[0].amount.as_ref().unwrap().currency, "EUR");

    let unknown = Uuid::now_v7().to_string();
    let status = h.pay(&unknown, 100).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), format!("invoice {unknown} not found"));
}

// ---- void ----

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn void_an_invoice_without_payments(pool: PgPool) {
    let mut h = Harness::start(pool.clone(), settings(2000)).await;
    let invoice = h.invoice(&oil_change()).await;
    let voided = h
        .client
        .void_invoice(pb::VoidInvoiceRequest {
            id: invoice.id.clone(),
            reason: "  Customer was quoted a fixed price  ".into(),
            expected_version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(voided.status(), pb::InvoiceStatus::Void);
    assert_eq!(voided.void_reason, "Customer was quoted a fixed price");
    assert_eq!(amount(&voided.balance), 0);
    assert_eq!(amount(&voided.total), amount(&invoice.total));
    assert_eq!(voided.audit.as_ref().unwrap().version, 2);
    assert!(!voided.overdue);
    assert_eq!(
        h.outbox_topics(&invoice.id).await,
        vec![topic::INVOICE_CREATED, topic::INVOICE_VOIDED]
    );
    let data: carerp_kit::events::InvoiceVoided = {
        let mut conn = pool.acquire().await.unwrap();
        let rows = carerp_kit::outbox::rows_for(&mut conn, &invoice.id)
            .await
            .unwrap();
        serde_json::from_value(rows[1].data.clone()).unwrap()
    };
    assert_eq!(data.reason, "Customer was quoted a fixed price");
    assert_eq!(data.number, invoice.number);

    // The same void retried (its answer lost) is done already: same invoice, one event.
    let retried = h
        .client
        .void_invoice(pb::VoidInvoiceRequest {
            id: invoice.id.clone(),
            reason: "Customer was quoted a fixed price".into(),
            expected_version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, voided);
    assert_eq!(
        h.outbox_topics(&invoice.id).await,
        vec![topic::INVOICE_CREATED, topic::INVOICE_VOIDED]
    );

    // A void invoice takes no payment and is not voided twice for another reason.
    let status = h.pay(&invoice.id, 100).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("is void"), "{status:?}");
    let status = h
        .client
        .void_invoice(pb::VoidInvoiceRequest {
            id: invoice.id.clone(),
            reason: "again".into(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("already void"), "{status:?}");
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn void_after_a_payment_is_refused(pool: PgPool) {
    let mut h = Harness::start(pool.clone(), settings(2000)).await;
    for paid in [1, 13_195] {
        let invoice = h.invoice(&oil_change()).await;
        h.pay(&invoice.id, paid).await.unwrap();
        let status = h
            .client
            .void_invoice(pb::VoidInvoiceRequest {
                id: invoice.id.clone(),
                reason: "mistake".into(),
                expected_version: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(
            status.message(),
            format!(
                "cannot void invoice {}: the invoice has payments of {paid} (EUR minor units): only an invoice \
                 without payments can be voided",
                invoice.number
            )
        );
        let still = h
            .client
            .get_invoice(pb::GetInvoiceRequest {
                id: invoice.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_ne!(still.status(), pb::InvoiceStatus::Void);
        assert!(
            !h.outbox_topics(&invoice.id)
                .await
                .contains(&topic::INVOICE_VOIDED.to_string())
        );
    }
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn void_refuses_bad_input_and_stale_versions(pool: PgPool) {
    let mut h = Harness::start(pool, settings(2000)).await;
    let invoice = h.invoice(&oil_change()).await;
    let void = |id: &str, reason: &str, expected_version: i64| pb::VoidInvoiceRequest {
        id: id.into(),
        reason: reason.into(),
        expected_version,
    };
    let cases = vec![
        (void("", "typo", 0), vec!["id"]),
        (void("nope", "typo", 0), vec!["id"]),
        (void(&invoice.id, "   ", 0), vec!["reason"]),
        (void(&invoice.id, &"r".repeat(501), 0), vec!["reason"]),
        (void(&invoice.id, "typo", -1), vec!["expected_version"]),
        (void("", "", -1), vec!["id", "reason", "expected_version"]),
    ];
    for (request, expected) in cases {
        let status = h.client.void_invoice(request.clone()).await.unwrap_err();
        assert_eq!(fields(&status), expected, "{request:?}");
    }
    let status = h
        .client
        .void_invoice(void(&invoice.id, "typo", 7))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert!(
        status
            .message()
            .contains("expected version 7, current version 1"),
        "{status:?}"
    );
    let unknown = Uuid::now_v7().to_string();
    let status = h
        .client
        .void_invoice(void(&unknown, "typo", 0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // Nothing was voided by any of it.
    let still = h
        .client
        .get_invoice(pb::GetInvoiceRequest {
            id: invoice.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still.status(), pb::InvoiceStatus::Issued);
}

// ---- overdue and summary ----

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn overdue_is_shown_once_the_due_date_has_passed_with_a_balance(pool: PgPool) {
    let mut h = Harness::start(pool, settings(2000)).await;
    let open = h.invoice(&oil_change()).await;
    let paid = h.invoice(&oil_change()).await;
    h.pay(&paid.id, amount(&paid.total)).await.unwrap();
    // Due today is not overdue yet; due yesterday is.
    h.age(&open.id, 14).await;
    h.age(&paid.id, 15).await;
    let get = |client: &mut pb::billing_service_client::BillingServiceClient<_>, id: String| {
        let mut client = client.clone();
        async move {
            client
                .get_invoice(pb::GetInvoiceRequest { id })
                .await
                .unwrap()
                .into_inner()
        }
    };
    assert!(!get(&mut h.client, open.id.clone()).await.overdue);
    h.age(&open.id, 1).await;
    let now_overdue = get(&mut h.client, open.id.clone()).await;
    assert!(now_overdue.overdue);
    assert_eq!(now_overdue.status(), pb::InvoiceStatus::Issued);
    assert!(!get(&mut h.client, paid.id.clone()).await.overdue);
    // A partial payment leaves it overdue.
    h.pay(&open.id, 100).await.unwrap();
    assert!(get(&mut h.client, open.id.clone()).await.overdue);
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn summary_for_the_dashboard(pool: PgPool) {
    let mut h = Harness::start(pool, settings(2000)).await;
    // Each oil change: net 10996, total 13195.
    let a = h.invoice(&oil_change()).await; // open
    let b = h.invoice(&oil_change()).await; // partly paid, overdue
    let c = h.invoice(&oil_change()).await; // paid
    let d = h.invoice(&oil_change()).await; // void
    let e = h.invoice(&oil_change()).await; // issued 40 days ago, open, overdue
    h.pay(&b.id, 3_195).await.unwrap();
    h.pay(&c.id, 13_195).await.unwrap();
    h.client
        .void_invoice(pb::VoidInvoiceRequest {
            id: d.id.clone(),
            reason: "duplicate".into(),
            expected_version: 0,
        })
        .await
        .unwrap();
    h.age(&e.id, 40).await;
    h.age(&b.id, 15).await; // due yesterday

    let today = chrono::NaiveDate::parse_from_str(&a.issue_date, "%Y-%m-%d").unwrap();
    let summary = h
        .client
        .get_summary(pb::GetSummaryRequest {
            period_from: (today - Duration::days(20)).to_string(),
            period_to: today.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(amount(&summary.unpaid_total), 13_195 + 10_000 + 13_195);
    assert_eq!(summary.unpaid_count, 3);
    assert_eq!(amount(&summary.overdue_total), 10_000 + 13_195);
    assert_eq!(summary.overdue_count, 2);
    // a, b and c were issued in the period (d is void, e is older): net revenue.
    assert_eq!(amount(&summary.revenue), 3 * 10_996);
    assert_eq!(summary.revenue.as_ref().unwrap().currency, "EUR");
    assert_eq!(summary.period_to, today.to_string());

    let older = h
        .client
        .get_summary(pb::GetSummaryRequest {
            period_from: (today - Duration::days(45)).to_string(),
            period_to: (today - Duration::days(35)).to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(amount(&older.revenue), 10_996);

    // Without a period: the current month of the tenant.
    let month = h
        .client
        .get_summary(pb::GetSummaryRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = today.with_day0(0).unwrap();
    assert_eq!(month.period_from, first.to_string());
    assert!(month.period_to.as_str() >= today.to_string().as_str());
    assert_eq!(amount(&month.unpaid_total), amount(&summary.unpaid_total));
    let b_in_month = today - Duration::days(15) >= first;
    assert_eq!(
        amount(&month.revenue),
        if b_in_month { 3 } else { 2 } * 10_996
    );
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn summary_refuses_bad_periods(pool: PgPool) {
    let mut h = Harness::start(pool, settings(2000)).await;
    let period = |from: &str, to: &str| pb::GetSummaryRequest {
        period_from: from.into(),
        period_to: to.into(),
    };
    let cases = vec![
        (period("2026-13-01", "2026-12-31"), vec!["period_from"]),
        (period("2026-01-01", "soon"), vec!["period_to"]),
        (period("x", "y"), vec!["period_from", "period_to"]),
        (period("2026-02-01", "2026-01-31"), vec!["period_to"]),
        (period("2026-01-01", ""), vec!["period_to"]),
        (period("", "2026-01-31"), vec!["period_from"]),
    ];
    for (request, expected) in cases {
        let status = h.client.get_summary(request.clone()).await.unwrap_err();
        assert_eq!(fields(&status), expected, "{request:?}");
    }
}

#[sqlx::test(migrator = "carerp_billing::MIGRATOR")]
async fn the_service_answers_health_checks(pool: PgPool) {
    let h = Harness::start(pool, settings(0)).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", h.service.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let response = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: carerp_billing::SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    h.service.stop().await.unwrap();
}
