//! The dashboard, whole and with services stopped, and the aggregates when a service is down.

mod common;

use common::Garage;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test]
async fn the_dashboard_sums_up_every_service_and_degrades_when_one_is_stopped(pool: PgPool) {
    let mut garage = Garage::start(pool).await;
    let (customer, vehicle) = garage
        .customer_with_vehicle("Dash Dora", "WVWZZZ1JZXW000030")
        .await;
    garage.part("BRK-1", 10, 2).await;
    garage.part("BRK-2", 1, 3).await;
    let new_order = || {
        garage.post(
            "/api/work-orders",
            json!({"customerId": customer, "vehicleId": vehicle, "complaint": "check"}),
        )
    };
    new_order().await.expect(StatusCode::CREATED);
    let started = new_order().await.expect(StatusCode::CREATED);
    let started_id = started["id"].as_str().unwrap();
    garage
        .put(
            &format!("/api/work-orders/{started_id}/status"),
            json!({"status": "IN_PROGRESS"}),
        )
        .await
        .expect(StatusCode::OK);
    let done = new_order().await.expect(StatusCode::CREATED);
    let done_id = done["id"].as_str().unwrap().to_string();
    garage
        .put(
            &format!("/api/work-orders/{done_id}/status"),
            json!({"status": "IN_PROGRESS"}),
        )
        .await
        .expect(StatusCode::OK);
    garage
        .post(
            &format!("/api/work-orders/{done_id}/labor"),
            json!({"description": "inspection", "minutes": 60}),
        )
        .await
        .expect(StatusCode::OK);
    let completed = garage
        .put(
            &format!("/api/work-orders/{done_id}/status"),
            json!({"status": "COMPLETED"}),
        )
        .await
        .expect(StatusCode::OK);
    garage.invoice(&completed).await;

    let dashboard = garage.get("/api/dashboard").await.expect(StatusCode::OK);
    assert_eq!(dashboard["complete"], true, "{dashboard}");
    assert_eq!(dashboard["missing"], json!([]));
    let counts = &dashboard["workOrdersByStatus"];
    assert_eq!(counts["open"], 1, "{dashboard}");
    assert_eq!(counts["inProgress"], 1);
    // Billing's invoice.created event may already have moved it on.
    assert_eq!(
        counts["completed"].as_u64().unwrap() + counts["invoiced"].as_u64().unwrap(),
        1
    );
    assert_eq!(counts["cancelled"], 0);
    assert_eq!(dashboard["lowStock"]["count"], 1);
    assert_eq!(dashboard["lowStock"]["parts"][0]["sku"], "BRK-2");
    let invoices = &dashboard["invoices"];
    assert_eq!(invoices["unpaidCount"], 1);
    // One hour at the garage's rate, plus 20% tax.
    let gross = common::LABOR_RATE * 12 / 10;
    assert_eq!(
        invoices["unpaidTotal"],
        json!({"amountMinor": gross, "currency": "EUR"})
    );
    assert_eq!(invoices["overdueCount"], 0);
    assert_eq!(
        invoices["revenueThisMonth"],
        json!({"amountMinor": common::LABOR_RATE, "currency": "EUR"})
    );
    assert!(invoices["periodFrom"].as_str().unwrap().ends_with("-01"));

    // Billing stops: the dashboard still answers, without invoice totals, and says so.
    garage.billing.take().unwrap().stop().await.unwrap();
    let dashboard = garage.get("/api/dashboard").await.expect(StatusCode::OK);
    assert_eq!(dashboard["complete"], false);
    assert!(dashboard["invoices"].is_null());
    assert_eq!(
        dashboard["missing"].as_array().unwrap().len(),
        1,
        "{dashboard}"
    );
    assert_eq!(dashboard["missing"][0]["service"], "billing");
    assert!(
        dashboard["missing"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("unavailable"),
        "{dashboard}"
    );
    assert_eq!(dashboard["workOrdersByStatus"]["open"], 1);
    assert_eq!(dashboard["lowStock"]["count"], 1);

    // The work order view degrades the same way; invoice calls themselves are 503.
    let view = garage
        .get(&format!("/api/work-orders/{done_id}"))
        .await
        .expect(StatusCode::OK);
    assert!(view["invoice"].is_null());
    assert_eq!(view["customer"]["name"], "Dash Dora");
    assert_eq!(view["missing"][0]["service"], "billing", "{view}");
    garage
        .get("/api/invoices")
        .await
        .problem(StatusCode::SERVICE_UNAVAILABLE);

    // The customer service stops too: the work order is still shown, without its people.
    garage.customer.take().unwrap().stop().await.unwrap();
    let view = garage
        .get(&format!("/api/work-orders/{done_id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(view["id"], done_id.as_str());
    assert!(view["customer"].is_null() && view["vehicle"].is_null());
    let services: Vec<_> = view["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["service"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(services, ["customer", "customer", "billing"], "{view}");

    // Inventory stops: two sections missing, the work order counts still there.
    garage.inventory.take().unwrap().stop().await.unwrap();
    let dashboard = garage.get("/api/dashboard").await.expect(StatusCode::OK);
    assert!(dashboard["lowStock"].is_null());
    assert_eq!(
        dashboard["missing"].as_array().unwrap().len(),
        2,
        "{dashboard}"
    );
    assert_eq!(dashboard["workOrdersByStatus"]["inProgress"], 1);

    garage.stop().await;
}
