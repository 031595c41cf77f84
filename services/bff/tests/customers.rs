//! Customers and vehicles through the REST API, against the real services.

mod common;

use common::{Garage, field_errors};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test]
async fn customers_and_vehicles_round_trip(pool: PgPool) {
    let garage = Garage::start(pool).await;

    let reply = garage
        .post(
            "/api/customers",
            json!({
                "name": "Ada Lovelace", "email": "ada@example.com", "phone": "+4930123456",
                "address": {"line1": "Main St 1", "postalCode": "10115", "city": "Berlin", "country": "DE"},
                "notes": "prefers mornings"
            }),
        )
        .await;
    let location = reply.header("location").unwrap().to_string();
    let created = reply.expect(StatusCode::CREATED);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/customers/{id}"));
    assert_eq!(created["address"]["postalCode"], "10115");
    assert_eq!(created["archived"], false);
    assert_eq!(created["audit"]["version"], 1);
    // RFC 3339 timestamps.
    let created_at = created["audit"]["createdAt"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created_at).is_ok(),
        "{created_at}"
    );

    let vehicle = garage
        .post(
            &format!("/api/customers/{id}/vehicles"),
            json!({"vin": "WVWZZZ1JZXW000001", "make": "VW", "model": "Golf", "year": 2019,
                   "licensePlate": "B-AL 1", "mileage": 42000}),
        )
        .await
        .expect(StatusCode::CREATED);
    let vehicle_id = vehicle["id"].as_str().unwrap().to_string();
    assert_eq!(vehicle["customerId"], id.as_str());
    assert_eq!(vehicle["licensePlate"], "B-AL 1");

    let fetched = garage
        .get(&format!("/api/customers/{id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(fetched["name"], "Ada Lovelace");
    assert_eq!(fetched["vehicles"][0]["vin"], "WVWZZZ1JZXW000001");

    let vehicles = garage
        .get(&format!("/api/customers/{id}/vehicles"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(vehicles["items"].as_array().unwrap().len(), 1);
    assert!(vehicles["nextCursor"].is_null());
    let all = garage
        .get(&format!("/api/vehicles?customerId={id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(all["items"][0]["id"], vehicle_id.as_str());
    let one = garage
        .get(&format!("/api/vehicles/{vehicle_id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(one["mileage"], 42000);

    // A replacement names every field: a left-out mileage would read as 0 km.
    let partial = garage
        .put(
            &format!("/api/vehicles/{vehicle_id}"),
            json!({"make": "VW", "model": "Golf GTI", "year": 2019, "licensePlate": "B-AL 2"}),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(partial.to_string().contains("mileage"), "{partial}");

    let updated = garage
        .put(
            &format!("/api/vehicles/{vehicle_id}"),
            json!({"make": "VW", "model": "Golf GTI", "year": 2019, "licensePlate": "B-AL 2",
                   "mileage": 43000, "expectedVersion": 1}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(updated["model"], "Golf GTI");
    assert_eq!(updated["audit"]["version"], 2);

    let renamed = garage
        .put(
            &format!("/api/customers/{id}"),
            json!({"name": "Ada King", "email": "ada@example.com", "phone": "+4930123456",
                   "expectedVersion": 1}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(renamed["name"], "Ada King");
    // The version the change was based on is stale now.
    let stale = garage
        .put(
            &format!("/api/customers/{id}"),
            json!({"name": "Ada", "phone": "+4930123456", "expectedVersion": 1}),
        )
        .await
        .problem(StatusCode::CONFLICT);
    assert!(
        stale["type"]
            .as_str()
            .unwrap()
            .ends_with("/version-conflict"),
        "{stale}"
    );

    let found = garage
        .get("/api/customers?q=king")
        .await
        .expect(StatusCode::OK);
    assert_eq!(found["items"].as_array().unwrap().len(), 1);

    let archived = garage
        .delete(&format!("/api/customers/{id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(archived["archived"], true);
    let listed = garage.get("/api/customers").await.expect(StatusCode::OK);
    assert!(listed["items"].as_array().unwrap().is_empty(), "{listed}");
    let listed = garage
        .get("/api/customers?includeArchived=true")
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    garage.stop().await;
}

#[sqlx::test]
async fn customer_lists_page_with_cursors(pool: PgPool) {
    let garage = Garage::start(pool).await;
    for name in ["Anna", "Bert", "Cleo"] {
        garage
            .post(
                "/api/customers",
                json!({"name": name, "phone": "+4930123456"}),
            )
            .await
            .expect(StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut path = "/api/customers?limit=2".to_string();
    loop {
        let page = garage.get(&path).await.expect(StatusCode::OK);
        for item in page["items"].as_array().unwrap() {
            seen.push(item["name"].as_str().unwrap().to_string());
        }
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/customers?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["Anna", "Bert", "Cleo"]);

    let bad = garage
        .get("/api/customers?cursor=garbage")
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&bad)[0].0, "cursor", "{bad}");
    let bad = garage
        .get("/api/customers?limit=-1")
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&bad)[0].0, "limit", "{bad}");
    garage.stop().await;
}

#[sqlx::test]
async fn a_retried_post_with_the_same_idempotency_key_creates_one_record(pool: PgPool) {
    let garage = Garage::start(pool).await;
    let send = |key: &'static str| {
        garage.call_with_key(
            Method::POST,
            "/api/customers",
            json!({"name": "Retry Ruth", "phone": "+4930123456"}),
            key,
        )
    };
    let first = send("create-ruth-1").await.expect(StatusCode::CREATED);
    let again = send("create-ruth-1").await.expect(StatusCode::CREATED);
    assert_eq!(first["id"], again["id"]);
    let listed = garage
        .get("/api/customers?q=ruth")
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");

    // Another key is another customer.
    let other = send("create-ruth-2").await.expect(StatusCode::CREATED);
    assert_ne!(first["id"], other["id"]);

    // The same for vehicles, parts and stock adjustments.
    let id = first["id"].as_str().unwrap();
    let vehicle = || {
        garage.call_with_key(
            Method::POST,
            format!("/api/customers/{id}/vehicles"),
            json!({"vin": "WVWZZZ1JZXW000002", "make": "VW", "model": "Polo", "year": 2020}),
            "vehicle-1",
        )
    };
    let v1 = vehicle().await.expect(StatusCode::CREATED);
    let v2 = vehicle().await.expect(StatusCode::CREATED);
    assert_eq!(v1["id"], v2["id"]);

    let part = garage.part("OIL-1", 5, 1).await;
    let part_id = part["id"].as_str().unwrap();
    let adjust = || {
        garage.call_with_key(
            Method::POST,
            format!("/api/parts/{part_id}/stock-adjustments"),
            json!({"kind": "RECEIPT", "delta": 3, "reason": "delivery 7"}),
            "receipt-7",
        )
    };
    adjust().await.expect(StatusCode::OK);
    let twice = adjust().await.expect(StatusCode::OK);
    assert_eq!(twice["quantityOnHand"], 8, "{twice}");

    // A key that is too long is refused, naming the header.
    let long = "k".repeat(201);
    let refused = garage
        .call_with_key(
            Method::POST,
            "/api/customers",
            json!({"name": "Long Key", "phone": "+4930123456"}),
            &long,
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&refused)[0].0, "Idempotency-Key");
    garage.stop().await;
}

#[sqlx::test]
async fn vehicles_carry_their_vin_decoding_and_are_found_by_plate_as_typed(pool: PgPool) {
    let garage = Garage::start(pool).await;
    let (customer, vehicle) = garage
        .customer_with_vehicle("Vic Vin", "WVWZZZAUZKW000001")
        .await;
    let found = garage
        .get("/api/vehicles?plate=b%20xy-123")
        .await
        .expect(StatusCode::OK);
    let items = found["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{found}");
    assert_eq!(items[0]["id"], vehicle.as_str());
    assert_eq!(items[0]["customerId"], customer.as_str());
    let decoding = &items[0]["vinDecoding"];
    assert_eq!(decoding["manufacturer"], "Volkswagen", "{decoding}");
    assert_eq!(decoding["modelYear"], 2019);
    assert_eq!(decoding["modelYearCertain"], false);
    assert_eq!(decoding["checkDigit"], "NOT_USED");
    assert_eq!(decoding["makeDiffers"], false);
    assert_eq!(decoding["yearDiffers"], false);
    let none = garage
        .get("/api/vehicles?plate=BXY12")
        .await
        .expect(StatusCode::OK);
    assert_eq!(none["items"].as_array().unwrap().len(), 0, "{none}");

    // A North American VIN with a wrong check digit: 422 naming the digit.
    let refused = garage
        .post(
            &format!("/api/customers/{customer}/vehicles"),
            json!({"vin": "1HGCM82633A004353", "make": "Honda", "model": "Accord", "year": 2003}),
        )
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    let errors = field_errors(&refused);
    assert_eq!(errors.len(), 1, "{refused}");
    assert_eq!(errors[0].0, "vin");
    assert!(
        errors[0].1.starts_with("check digit is 5, the VIN says 3"),
        "{refused}"
    );
}
