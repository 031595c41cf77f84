//! Parts and stock through the REST API.

mod common;

use common::Garage;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test]
async fn parts_stock_movements_and_low_stock(pool: PgPool) {
    let garage = Garage::start(pool).await;
    let part = garage.part("FLT-100", 10, 3).await;
    let id = part["id"].as_str().unwrap();
    assert_eq!(
        part["unitPrice"],
        json!({"amountMinor": 1250, "currency": "EUR"})
    );
    assert_eq!(part["quantityAvailable"], 10);
    let scarce = garage.part("FLT-200", 2, 5).await;

    let fetched = garage
        .get(&format!("/api/parts/{id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(fetched["sku"], "FLT-100");

    let found = garage
        .get("/api/parts?q=flt-1")
        .await
        .expect(StatusCode::OK);
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    let in_category = garage
        .get("/api/parts?category=filters&limit=1")
        .await
        .expect(StatusCode::OK);
    assert!(in_category["nextCursor"].is_string(), "{in_category}");
    let low_only = garage
        .get("/api/parts?lowStockOnly=true")
        .await
        .expect(StatusCode::OK);
    assert_eq!(low_only["items"][0]["id"], scarce["id"]);

    let low = garage
        .get("/api/parts/low-stock")
        .await
        .expect(StatusCode::OK);
    let low = low["items"].as_array().unwrap();
    assert_eq!(low.len(), 1);
    assert_eq!(low[0]["sku"], "FLT-200");

    let updated = garage
        .put(
            &format!("/api/parts/{id}"),
            json!({"name": "Oil filter", "unitPrice": {"amountMinor": 1400, "currency": "EUR"}, "expectedVersion": 1}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(updated["name"], "Oil filter");
    assert_eq!(updated["unitPrice"]["amountMinor"], 1400);
    // Fields not sent are kept.
    assert_eq!(updated["location"], "A-01-1");

    let received = garage
        .post(
            &format!("/api/parts/{id}/stock-adjustments"),
            json!({"kind": "RECEIPT", "delta": 5, "reason": "delivery"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(received["quantityOnHand"], 15);
    let refused = garage
        .post(
            &format!("/api/parts/{id}/stock-adjustments"),
            json!({"kind": "ADJUSTMENT", "delta": -100, "reason": "count"}),
        )
        .await;
    assert!(
        refused.status == StatusCode::CONFLICT
            || refused.status == StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    // Who made a change is the token's user: a name in the body is refused, not believed.
    let claimed = garage
        .post(
            &format!("/api/parts/{id}/stock-adjustments"),
            json!({"kind": "RECEIPT", "delta": 1, "reason": "delivery", "actor": "Tom"}),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        claimed["detail"].as_str().unwrap().contains("actor"),
        "{claimed}"
    );
    let bad_kind = garage
        .post(
            &format!("/api/parts/{id}/stock-adjustments"),
            json!({"kind": "GIFT", "delta": 1, "reason": "x"}),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(common::field_errors(&bad_kind)[0].0, "kind", "{bad_kind}");

    let movements = garage
        .get(&format!("/api/parts/{id}/movements"))
        .await
        .expect(StatusCode::OK);
    let kinds: Vec<_> = movements["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds.len(), 2, "{movements}");
    assert!(kinds.iter().all(|k| k == "RECEIPT"), "{kinds:?}");
    let me = garage.get("/api/auth/me").await.expect(StatusCode::OK);
    for movement in movements["items"].as_array().unwrap() {
        assert_eq!(movement["actor"], me["id"], "{movement}");
    }
    assert!(movements["items"][0]["at"].is_string());

    let inactive = garage
        .put(&format!("/api/parts/{id}"), json!({"active": false}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(inactive["active"], false);
    let active = garage.get("/api/parts").await.expect(StatusCode::OK);
    assert_eq!(active["items"].as_array().unwrap().len(), 1);
    let all = garage
        .get("/api/parts?active=all")
        .await
        .expect(StatusCode::OK);
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let bad = garage
        .get("/api/parts?active=maybe")
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(common::field_errors(&bad)[0].0, "active", "{bad}");

    garage.stop().await;
}
