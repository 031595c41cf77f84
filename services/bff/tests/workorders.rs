//! Work orders and invoices through the REST API, including the aggregated views.

mod common;

use common::Garage;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

/// Opens a work order, starts it, adds labour, completes it; returns the completed order.
async fn completed_order(garage: &Garage, customer: &str, vehicle: &str, minutes: i32) -> Value {
    let order = garage
        .post(
            "/api/work-orders",
            json!({"customerId": customer, "vehicleId": vehicle, "complaint": "brakes squeal", "odometerKm": 42100}),
        )
        .await
        .expect(StatusCode::CREATED);
    let id = order["id"].as_str().unwrap().to_string();
    garage
        .put(
            &format!("/api/work-orders/{id}/status"),
            json!({"status": "IN_PROGRESS"}),
        )
        .await
        .expect(StatusCode::OK);
    garage
        .post(
            &format!("/api/work-orders/{id}/labor"),
            json!({"description": "replace pads", "technician": "Tom", "minutes": minutes}),
        )
        .await
        .expect(StatusCode::OK);
    garage
        .put(
            &format!("/api/work-orders/{id}/status"),
            json!({"status": "COMPLETED"}),
        )
        .await
        .expect(StatusCode::OK)
}

#[sqlx::test]
async fn work_orders_from_intake_to_invoice(pool: PgPool) {
    let garage = Garage::start(pool).await;
    let (customer, vehicle) = garage
        .customer_with_vehicle("Grace Hopper", "WVWZZZ1JZXW000010")
        .await;
    let part = garage.part("PAD-1", 10, 2).await;
    let part_id = part["id"].as_str().unwrap();

    let order = garage
        .post(
            "/api/work-orders",
            json!({"customerId": customer, "vehicleId": vehicle, "complaint": "brakes squeal",
                   "odometerKm": 42100, "notes": "call before"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let id = order["id"].as_str().unwrap().to_string();
    assert_eq!(order["status"], "OPEN");
    assert!(
        order["number"].as_str().unwrap().starts_with("WO-"),
        "{order}"
    );

    // The aggregated view: the order with its customer and vehicle, nothing missing.
    let view = garage
        .get(&format!("/api/work-orders/{id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(view["id"], id.as_str());
    assert_eq!(view["customer"]["name"], "Grace Hopper");
    assert_eq!(view["vehicle"]["vin"], "WVWZZZ1JZXW000010");
    assert!(view["invoice"].is_null());
    assert_eq!(view["missing"], json!([]));

    let listed = garage
        .get(&format!(
            "/api/work-orders?status=OPEN&customerId={customer}"
        ))
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let none = garage
        .get("/api/work-orders?status=CANCELLED,COMPLETED")
        .await
        .expect(StatusCode::OK);
    assert!(none["items"].as_array().unwrap().is_empty());
    let bad = garage
        .get("/api/work-orders?status=DONE")
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(common::field_errors(&bad)[0].0, "status");

    let started = garage
        .put(
            &format!("/api/work-orders/{id}/status"),
            json!({"status": "IN_PROGRESS", "expectedVersion": 1}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(started["status"], "IN_PROGRESS");
    assert!(started["startedAt"].is_string());

    let noted = garage
        .put(
            &format!("/api/work-orders/{id}/notes"),
            json!({"notes": "customer waits"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(noted["notes"], "customer waits");

    let with_part = garage
        .post(
            &format!("/api/work-orders/{id}/line-items"),
            json!({"partId": part_id, "quantity": 2}),
        )
        .await
        .expect(StatusCode::OK);
    let line = &with_part["partLines"][0];
    assert_eq!(line["partId"], part_id);
    assert_eq!(line["quantity"], 2);
    let line_id = line["id"].as_str().unwrap();
    let without_part = garage
        .delete(&format!("/api/work-orders/{id}/line-items/{line_id}"))
        .await
        .expect(StatusCode::OK);
    assert!(without_part["partLines"].as_array().unwrap().is_empty());

    let with_labor = garage
        .post(
            &format!("/api/work-orders/{id}/labor"),
            json!({"description": "diagnose", "technician": "Tom", "minutes": 30}),
        )
        .await
        .expect(StatusCode::OK);
    let labor = &with_labor["laborLines"][0];
    // The garage's rate when none is given.
    assert_eq!(
        labor["hourlyRate"],
        json!({"amountMinor": common::LABOR_RATE, "currency": "EUR"})
    );
    assert_eq!(labor["lineTotal"]["amountMinor"], common::LABOR_RATE / 2);
    let labor_id = labor["id"].as_str().unwrap();
    garage
        .delete(&format!("/api/work-orders/{id}/labor/{labor_id}"))
        .await
        .expect(StatusCode::OK);
    garage
        .post(
            &format!("/api/work-orders/{id}/labor"),
            json!({"description": "replace pads", "technician": "Tom", "minutes": 60,
                   "hourlyRate": {"amountMinor": 12000, "currency": "EUR"}}),
        )
        .await
        .expect(StatusCode::OK);

    // No failed reservation to retry: refused by the service, as a conflict.
    let retry = garage
        .call(
            reqwest::Method::POST,
            &format!("/api/work-orders/{id}/retry-reservation"),
            None,
        )
        .await
        .problem(StatusCode::CONFLICT);
    assert!(
        retry["type"]
            .as_str()
            .unwrap()
            .ends_with("/precondition-failed"),
        "{retry}"
    );

    // INVOICED is billing's to set.
    let refused = garage
        .put(
            &format!("/api/work-orders/{id}/status"),
            json!({"status": "INVOICED"}),
        )
        .await
        .problem(StatusCode::CONFLICT);
    assert!(
        refused["detail"].as_str().unwrap().contains("INVOICED"),
        "{refused}"
    );

    let completed = garage
        .put(
            &format!("/api/work-orders/{id}/status"),
            json!({"status": "COMPLETED"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(completed["status"], "COMPLETED");

    garage.invoice(&completed).await;
    let view = garage
        .get(&format!("/api/work-orders/{id}"))
        .await
        .expect(StatusCode::OK);
    let invoice = &view["invoice"];
    assert!(
        invoice["number"].as_str().unwrap().starts_with("INV-"),
        "{view}"
    );
    assert_eq!(invoice["status"], "ISSUED");
    // 60 minutes at 120.00 plus 20% tax.
    assert_eq!(
        invoice["total"],
        json!({"amountMinor": 14400, "currency": "EUR"})
    );
    assert_eq!(view["missing"], json!([]));

    garage.stop().await;
}

/// Completes a work order, invoices it, and answers the id of its invoice.
async fn issued_invoice(garage: &Garage, customer: &str, vehicle: &str, minutes: i32) -> String {
    let order = completed_order(garage, customer, vehicle, minutes).await;
    garage.invoice(&order).await;
    let view = garage
        .get(&format!(
            "/api/work-orders/{}",
            order["id"].as_str().unwrap()
        ))
        .await
        .expect(StatusCode::OK);
    view["invoice"]["id"].as_str().unwrap().to_string()
}

#[sqlx::test]
async fn invoices_are_listed_aggregated_paid_and_voided(pool: PgPool) {
    let garage = Garage::start(pool).await;
    let (customer, vehicle) = garage
        .customer_with_vehicle("Katherine Johnson", "WVWZZZ1JZXW000011")
        .await;
    let first = completed_order(&garage, &customer, &vehicle, 60).await;
    let second = completed_order(&garage, &customer, &vehicle, 30).await;
    garage.invoice(&first).await;
    garage.invoice(&second).await;

    let listed = garage
        .get(&format!(
            "/api/invoices?customerId={customer}&status=ISSUED"
        ))
        .await
        .expect(StatusCode::OK);
    let invoices = listed["items"].as_array().unwrap();
    assert_eq!(invoices.len(), 2, "{listed}");
    let by_order = |order: &Value| {
        invoices
            .iter()
            .find(|i| i["workOrderId"] == order["id"])
            .unwrap()
            .clone()
    };
    let first_invoice = by_order(&first);
    let second_invoice = by_order(&second);
    let first_id = first_invoice["id"].as_str().unwrap();
    let second_id = second_invoice["id"].as_str().unwrap();
    assert_eq!(first_invoice["total"]["amountMinor"], 10800);
    assert!(
        chrono::NaiveDate::parse_from_str(first_invoice["issueDate"].as_str().unwrap(), "%Y-%m-%d")
            .is_ok()
    );
    let paged = garage
        .get("/api/invoices?limit=1")
        .await
        .expect(StatusCode::OK);
    assert!(paged["nextCursor"].is_string(), "{paged}");
    let overdue = garage
        .get("/api/invoices?overdueOnly=true")
        .await
        .expect(StatusCode::OK);
    assert!(overdue["items"].as_array().unwrap().is_empty());

    // Aggregated with the customer.
    let view = garage
        .get(&format!("/api/invoices/{first_id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(view["number"], first_invoice["number"]);
    assert_eq!(view["customer"]["name"], "Katherine Johnson");
    assert_eq!(view["missing"], json!([]));

    // The seed's status change: PAID with an amount records that payment, once however often
    // the PUT is sent, so it needs an Idempotency-Key.
    let pay_800 = json!({"status": "PAID", "amount": {"amountMinor": 800, "currency": "EUR"}, "method": "CARD"});
    let keyless = garage
        .put(&format!("/api/invoices/{first_id}/status"), pay_800.clone())
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(keyless.to_string().contains("Idempotency-Key"), "{keyless}");
    let put_with_key = || {
        garage.call_with_key(
            Method::PUT,
            format!("/api/invoices/{first_id}/status"),
            pay_800.clone(),
            "till-3-0815",
        )
    };
    let paid = put_with_key().await.expect(StatusCode::OK);
    assert_eq!(paid["action"], "PAYMENT_RECORDED");
    assert_eq!(paid["invoice"]["status"], "PARTIALLY_PAID");
    assert_eq!(paid["invoice"]["balance"]["amountMinor"], 10000);
    let repeated = put_with_key().await.expect(StatusCode::OK);
    assert_eq!(repeated["invoice"]["balance"]["amountMinor"], 10000);

    // A payment without a key is refused before anything is paid.
    let keyless = garage
        .post(
            &format!("/api/invoices/{first_id}/payments"),
            json!({"amount": {"amountMinor": 100, "currency": "EUR"}, "method": "CASH"}),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(keyless.to_string().contains("Idempotency-Key"), "{keyless}");
    // A payment larger than the balance is refused.
    let too_much = garage
        .call_with_key(
            Method::POST,
            format!("/api/invoices/{first_id}/payments"),
            json!({"amount": {"amountMinor": 10001, "currency": "EUR"}, "method": "CASH"}),
            "till-3-0816",
        )
        .await;
    assert!(too_much.status.is_client_error(), "{}", too_much.text);
    let settle = json!({"amount": {"amountMinor": 10000, "currency": "EUR"}, "method": "BANK_TRANSFER",
                   "reference": "SEPA-1", "receivedAt": "2026-11-20T10:00:00Z"});
    let settled = garage
        .call_with_key(
            Method::POST,
            format!("/api/invoices/{first_id}/payments"),
            settle.clone(),
            "sepa-1",
        )
        .await
        .expect(StatusCode::CREATED);
    // The same key with a different payment is refused, naming the key.
    let reused = garage
        .call_with_key(
            Method::POST,
            format!("/api/invoices/{first_id}/payments"),
            json!({"amount": {"amountMinor": 1, "currency": "EUR"}, "method": "CASH"}),
            "sepa-1",
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    let detail = reused["errors"][0]["message"].as_str().unwrap_or_default();
    assert_eq!(reused["errors"][0]["field"], "idempotencyKey", "{reused}");
    assert!(detail.contains("\"sepa-1\" was already used"), "{reused}");
    assert_eq!(settled["status"], "PAID");
    let transfer = settled["payments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["reference"] == "SEPA-1")
        .unwrap();
    assert_eq!(transfer["receivedAt"], "2026-11-20T10:00:00Z");
    assert_eq!(transfer["method"], "BANK_TRANSFER");

    // A paid invoice cannot be voided.
    garage
        .post(
            &format!("/api/invoices/{first_id}/void"),
            json!({"reason": "mistake"}),
        )
        .await
        .problem(StatusCode::CONFLICT);

    // VOID through the status route says so; without a reason the service refuses.
    let no_reason = garage
        .put(
            &format!("/api/invoices/{second_id}/status"),
            json!({"status": "VOID"}),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        common::field_errors(&no_reason)[0].0,
        "reason",
        "{no_reason}"
    );
    let voided = garage
        .put(
            &format!("/api/invoices/{second_id}/status"),
            json!({"status": "VOID", "reason": "duplicate job"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(voided["action"], "VOIDED");
    assert_eq!(voided["invoice"]["status"], "VOID");
    assert_eq!(voided["invoice"]["voidReason"], "duplicate job");

    // PAID without an amount pays the balance; a retry under its key repeats that payment.
    let third_id = issued_invoice(&garage, &customer, &vehicle, 15).await;
    let pay_the_balance = || {
        garage.call_with_key(
            Method::PUT,
            format!("/api/invoices/{third_id}/status"),
            json!({"status": "PAID"}),
            "front-desk-77",
        )
    };
    let paid = pay_the_balance().await.expect(StatusCode::OK);
    assert_eq!(paid["invoice"]["status"], "PAID", "{paid}");
    assert_eq!(paid["invoice"]["payments"][0]["method"], "OTHER");
    let retried = pay_the_balance().await.expect(StatusCode::OK);
    assert_eq!(retried["invoice"], paid["invoice"]);
    assert_eq!(
        retried["invoice"]["payments"].as_array().unwrap().len(),
        1,
        "{retried}"
    );
    // Without a key, "make it PAID" is the same request every time: paid once.
    let fourth_id = issued_invoice(&garage, &customer, &vehicle, 20).await;
    for _ in 0..2 {
        let paid = garage
            .put(
                &format!("/api/invoices/{fourth_id}/status"),
                json!({"status": "PAID"}),
            )
            .await
            .expect(StatusCode::OK);
        assert_eq!(paid["invoice"]["status"], "PAID", "{paid}");
        assert_eq!(paid["invoice"]["payments"].as_array().unwrap().len(), 1);
    }
    // Another method is another request: the invoice is paid already (409), not a reuse of a
    // key this client never sent (422).
    let by_card = garage
        .put(
            &format!("/api/invoices/{fourth_id}/status"),
            json!({"status": "PAID", "method": "CARD"}),
        )
        .await
        .problem(StatusCode::CONFLICT);
    assert!(by_card.to_string().contains("already paid"), "{by_card}");
    // Fields of the other action are refused by name.
    let versioned = garage
        .put(
            &format!("/api/invoices/{fourth_id}/status"),
            json!({"status": "PAID", "expectedVersion": 3}),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        common::field_errors(&versioned)[0].0,
        "expectedVersion",
        "{versioned}"
    );
    let mixed = garage
        .put(
            &format!("/api/invoices/{fourth_id}/status"),
            json!({"status": "VOID", "reason": "typo", "reference": "R-1"}),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(mixed.to_string().contains("reference"), "{mixed}");

    // Voiding the void one again through the dedicated route.
    let again = garage
        .post(
            &format!("/api/invoices/{second_id}/void"),
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);

    garage.stop().await;
}

/// Polls the aggregated work order until `done` holds (events travel through NATS).
async fn wait_for(garage: &Garage, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let view = garage
            .get(&format!("/api/work-orders/{id}"))
            .await
            .expect(StatusCode::OK);
        if done(&view) {
            return view;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting: {view}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The saga through the API: a reservation fails for lack of stock, the order waits for
/// parts, stock arrives, the retry reserves the line with its price.
#[sqlx::test]
async fn a_failed_reservation_is_retried_once_stock_arrives(pool: PgPool) {
    let garage = Garage::start(pool).await;
    let (customer, vehicle) = garage
        .customer_with_vehicle("Saga Sam", "WVWZZZ1JZXW000012")
        .await;
    let part = garage.part("SCARCE-1", 1, 0).await;
    let part_id = part["id"].as_str().unwrap();
    let order = garage
        .post(
            "/api/work-orders",
            json!({"customerId": customer, "vehicleId": vehicle, "complaint": "clutch"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let id = order["id"].as_str().unwrap().to_string();
    garage
        .put(
            &format!("/api/work-orders/{id}/status"),
            json!({"status": "IN_PROGRESS"}),
        )
        .await
        .expect(StatusCode::OK);
    garage
        .post(
            &format!("/api/work-orders/{id}/line-items"),
            json!({"partId": part_id, "quantity": 3}),
        )
        .await
        .expect(StatusCode::OK);

    let failed = wait_for(&garage, &id, |view| {
        view["partLines"][0]["reservationState"] == "FAILED"
    })
    .await;
    assert!(
        failed["partLines"][0]["failureReason"].is_string(),
        "{failed}"
    );
    let waiting = wait_for(&garage, &id, |view| view["status"] == "AWAITING_PARTS").await;
    assert_eq!(waiting["customer"]["name"], "Saga Sam");

    garage
        .post(
            &format!("/api/parts/{part_id}/stock-adjustments"),
            json!({"kind": "RECEIPT", "delta": 5, "reason": "delivery"}),
        )
        .await
        .expect(StatusCode::OK);
    let retried = garage
        .call(
            reqwest::Method::POST,
            &format!("/api/work-orders/{id}/retry-reservation"),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(retried["partLines"][0]["reservationState"], "PENDING");

    let reserved = wait_for(&garage, &id, |view| {
        view["partLines"][0]["reservationState"] == "RESERVED"
    })
    .await;
    let line = &reserved["partLines"][0];
    assert_eq!(line["sku"], "SCARCE-1");
    assert_eq!(
        line["unitPrice"],
        json!({"amountMinor": 1250, "currency": "EUR"})
    );
    assert_eq!(line["lineTotal"]["amountMinor"], 3750);
    let part = garage
        .get(&format!("/api/parts/{part_id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(part["quantityReserved"], 3);

    // Completing it: billing invoices it from the event, and the order becomes INVOICED.
    garage
        .put(
            &format!("/api/work-orders/{id}/status"),
            json!({"status": "IN_PROGRESS"}),
        )
        .await
        .expect(StatusCode::OK);
    garage
        .put(
            &format!("/api/work-orders/{id}/status"),
            json!({"status": "COMPLETED"}),
        )
        .await
        .expect(StatusCode::OK);
    let invoiced = wait_for(&garage, &id, |view| {
        view["status"] == "INVOICED" && view["invoice"].is_object()
    })
    .await;
    assert_eq!(invoiced["invoice"]["status"], "ISSUED");
    // 3 x 12.50 plus 20% tax.
    assert_eq!(
        invoiced["invoice"]["total"]["amountMinor"], 4500,
        "{invoiced}"
    );
    assert_eq!(invoiced["invoiceId"], invoiced["invoice"]["id"]);
    garage.stop().await;
}

#[sqlx::test]
async fn retried_line_additions_with_the_same_idempotency_key_add_one_line(pool: PgPool) {
    let garage = Garage::start(pool).await;
    let (customer, vehicle) = garage
        .customer_with_vehicle("Ada Lovelace", "WVWZZZ1JZXW000077")
        .await;
    let part = garage.part("PAD-7", 10, 2).await;
    let part_id = part["id"].as_str().unwrap();
    let order = garage
        .post(
            "/api/work-orders",
            json!({"customerId": customer, "vehicleId": vehicle, "complaint": "brakes squeal", "odometerKm": 42100}),
        )
        .await
        .expect(StatusCode::CREATED);
    let id = order["id"].as_str().unwrap().to_string();
    let send = |path: &str, key: &'static str, body: Value| {
        garage.call_with_key(
            Method::POST,
            format!("/api/work-orders/{id}/{path}"),
            body,
            key,
        )
    };
    let part_line = json!({"partId": part_id, "quantity": 1});
    let first = send("line-items", "pad-1", part_line.clone())
        .await
        .expect(StatusCode::OK);
    let retried = send("line-items", "pad-1", part_line.clone())
        .await
        .expect(StatusCode::OK);
    assert_eq!(first["partLines"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(
        retried["partLines"].as_array().unwrap().len(),
        1,
        "{retried}"
    );
    assert_eq!(retried["partLines"][0]["id"], first["partLines"][0]["id"]);

    let labor = json!({"description": "replace pads", "technician": "Tom", "minutes": 30});
    let first = send("labor", "pads-labour", labor.clone())
        .await
        .expect(StatusCode::OK);
    let retried = send("labor", "pads-labour", labor.clone())
        .await
        .expect(StatusCode::OK);
    assert_eq!(first["laborLines"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(
        retried["laborLines"].as_array().unwrap().len(),
        1,
        "{retried}"
    );

    // Another key is another line; without a key every call adds one.
    let other = send("labor", "more-labour", labor.clone())
        .await
        .expect(StatusCode::OK);
    assert_eq!(other["laborLines"].as_array().unwrap().len(), 2, "{other}");
    let unkeyed = garage
        .post(&format!("/api/work-orders/{id}/labor"), labor)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        unkeyed["laborLines"].as_array().unwrap().len(),
        3,
        "{unkeyed}"
    );
    let stored = garage
        .get(&format!("/api/work-orders/{id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(stored["partLines"].as_array().unwrap().len(), 1, "{stored}");
    assert_eq!(
        stored["laborLines"].as_array().unwrap().len(),
        3,
        "{stored}"
    );
    garage.stop().await;
}
