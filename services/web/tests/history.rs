//! Vehicle history and recommended work through the REST API and the pages of a whole garage
//! (real services, PostgreSQL and NATS): what the customer declined or deferred at one visit
//! is listed for follow-up and offered again, priced anew, at the next.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

/// A first visit: the intake job approved and worked (one hour, completed, invoiced), "Wiper
/// blades" (a part and 10 minutes) declined, "Front tyres" deferred to `remind_after`.
/// Answers the order and the ids of the wiper and tyre jobs.
async fn first_visit(g: &Garage, remind_after: &str) -> (Value, String, String) {
    let order = g.work_order().await;
    let id = order["id"].as_str().unwrap().to_string();
    let blades = g.part(&format!("WB-{}", &id[30..]), 10, 1).await;
    let mut jobs = Vec::new();
    for title in ["Wiper blades", "Front tyres"] {
        let order = g
            .post(
                &format!("/api/work-orders/{id}/jobs"),
                json!({"title": title}),
            )
            .await
            .expect(StatusCode::OK);
        jobs.push(
            order["jobs"][jobs.len() + 1]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let (wipers, tyres) = (jobs[0].clone(), jobs[1].clone());
    g.post(
        &format!("/api/work-orders/{id}/line-items"),
        json!({"partId": blades["id"], "quantity": 1, "jobId": wipers}),
    )
    .await
    .expect(StatusCode::OK);
    g.post(
        &format!("/api/work-orders/{id}/labor"),
        json!({"description": "Fit blades", "minutes": 10, "jobId": wipers}),
    )
    .await
    .expect(StatusCode::OK);
    g.post(
        &format!("/api/work-orders/{id}/labor"),
        json!({"description": "Brake pads", "technician": "Tom", "minutes": 60}),
    )
    .await
    .expect(StatusCode::OK);
    g.put(
        &format!("/api/work-orders/{id}/jobs/{wipers}/decision"),
        json!({"decision": "DECLINED", "channel": "PHONE", "reason": "Does them himself"}),
    )
    .await
    .expect(StatusCode::OK);
    g.put(
        &format!("/api/work-orders/{id}/jobs/{tyres}/decision"),
        json!({"decision": "DEFERRED", "channel": "IN_PERSON", "reason": "After winter", "remindAfter": remind_after}),
    )
    .await
    .expect(StatusCode::OK);
    let mut order = order;
    for status in ["IN_PROGRESS", "COMPLETED"] {
        order = g
            .put(
                &format!("/api/work-orders/{id}/status"),
                json!({"status": status}),
            )
            .await
            .expect(StatusCode::OK);
    }
    g.invoice(&order).await;
    (order, wipers, tyres)
}

fn in_days(days: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(days)).to_string()
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn declined_work_is_followed_up_and_offered_again_at_the_next_visit_over_rest(pool: PgPool) {
    let g = Garage::with_pages(pool).await;
    let remind_after = in_days(60);
    let (first, wipers, tyres) = first_visit(&g, &remind_after).await;
    let vehicle = first["vehicleId"].as_str().unwrap();
    let first_id = first["id"].as_str().unwrap();

    let history = g
        .get(&format!("/api/vehicles/{vehicle}/history"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(history["missing"], json!([]), "{history}");
    let visits = history["visits"].as_array().unwrap();
    assert_eq!(visits.len(), 1);
    let visit = &visits[0];
    assert_eq!(visit["workOrder"]["id"], first_id);
    let states: Vec<(&str, &str)> = visit["workOrder"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["title"].as_str().unwrap(), j["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("Brakes squeal", "APPROVED"),
            ("Wiper blades", "DECLINED"),
            ("Front tyres", "DEFERRED")
        ]
    );
    assert!(
        visit["invoice"]["number"]
            .as_str()
            .is_some_and(|n| n.starts_with("INV-")),
        "the visit's invoice, from billing: {visit}"
    );
    assert_eq!(visit["inspection"], Value::Null);
    assert_eq!(history["odometer"][0]["odometerKm"], 42100);
    let recommended: Vec<&str> = history["recommended"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(recommended, [wipers.as_str(), tyres.as_str()]);
    assert_eq!(history["recommended"][1]["remindAfter"], remind_after);
    assert_eq!(history["recommended"][0]["reason"], "Does them himself");

    // Unknown and malformed vehicles are refused, not answered with an empty history.
    let unknown = g
        .get(&format!("/api/vehicles/{}/history", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    let malformed = g.get("/api/vehicles/not-a-uuid/history").await;
    assert_eq!(
        malformed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        malformed.text
    );

    // Follow-up: the declined job is due now, the deferred one from its day.
    let due = g.get("/api/recommended-work").await.expect(StatusCode::OK);
    let due_ids: Vec<&str> = due["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(due_ids, [wipers.as_str()], "{due}");
    let later = g
        .get(&format!("/api/recommended-work?dueBy={}", in_days(61)))
        .await
        .expect(StatusCode::OK);
    assert_eq!(later["items"].as_array().unwrap().len(), 2, "{later}");
    let bad_day = g.get("/api/recommended-work?dueBy=next-week").await;
    assert_eq!(
        bad_day.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        bad_day.text
    );
    assert!(
        bad_day.text.to_lowercase().contains("due"),
        "{}",
        bad_day.text
    );
    let unknown_param = g.get("/api/recommended-work?due=2030-01-01").await;
    assert_eq!(
        unknown_param.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        unknown_param.text
    );
    assert!(
        unknown_param.text.contains("dueBy"),
        "{}",
        unknown_param.text
    );
    let (_, technician) = g.person("TECHNICIAN").await;
    let not_theirs = g
        .call_as(
            Some(&technician),
            Method::GET,
            "/api/recommended-work",
            None,
        )
        .await;
    assert_eq!(
        not_theirs.status,
        StatusCode::FORBIDDEN,
        "{}",
        not_theirs.text
    );

    // The next visit offers the declined job again, priced anew; a retry adds it once.
    let second = g
        .post(
            "/api/work-orders",
            json!({"customerId": first["customerId"], "vehicleId": vehicle, "complaint": "Service", "odometerKm": 51000}),
        )
        .await
        .expect(StatusCode::CREATED);
    let second_id = second["id"].as_str().unwrap();
    let offer = |key: &'static str, job: &str| {
        g.call_with_key(
            Method::POST,
            format!("/api/work-orders/{second_id}/recommended-jobs"),
            json!({"jobId": job}),
            key,
        )
    };
    let offered = offer("offer-1", &wipers).await.expect(StatusCode::OK);
    let job = offered["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["title"] == "Wiper blades")
        .expect("the declined job is a job of the next visit")
        .clone();
    assert_eq!(job["state"], "PROPOSED");
    let lines: Vec<&Value> = offered["partLines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["jobId"] == job["id"])
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["reservationState"], "QUOTED");
    let retried = offer("offer-1", &wipers).await.expect(StatusCode::OK);
    assert_eq!(
        retried["jobs"], offered["jobs"],
        "a retry adds the job once"
    );
    let twice = offer("offer-2", &wipers).await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{}", twice.text);
    let unknown_job = offer("offer-3", &uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(
        unknown_job.status,
        StatusCode::NOT_FOUND,
        "{}",
        unknown_job.text
    );
    let approved = first["jobs"][0]["id"].as_str().unwrap().to_string();
    let not_recommended = offer("offer-4", &approved).await;
    assert_eq!(
        not_recommended.status,
        StatusCode::CONFLICT,
        "{}",
        not_recommended.text
    );
    assert!(
        not_recommended.text.contains("APPROVED"),
        "{}",
        not_recommended.text
    );
    let same_order = g
        .post(
            &format!("/api/work-orders/{first_id}/recommended-jobs"),
            json!({"jobId": tyres}),
        )
        .await;
    assert_eq!(
        same_order.status,
        StatusCode::CONFLICT,
        "{}",
        same_order.text
    );
    let misspelt = g
        .post(
            &format!("/api/work-orders/{second_id}/recommended-jobs"),
            json!({"job": tyres}),
        )
        .await;
    assert!(misspelt.status.is_client_error(), "{}", misspelt.text);
    assert!(misspelt.text.contains("job"), "{}", misspelt.text);

    // The history says where the declined job went; only the deferred one is still open.
    let history = g
        .get(&format!("/api/vehicles/{vehicle}/history"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(history["visits"][0]["workOrder"]["id"], second_id);
    assert_eq!(
        history["visits"][1]["offeredAgainIn"][&wipers],
        second["number"]
    );
    assert_eq!(history["recommended"].as_array().unwrap().len(), 1);
    assert_eq!(history["recommended"][0]["jobId"], tyres.as_str());
    let odometer: Vec<i64> = history["odometer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["odometerKm"].as_i64().unwrap())
        .collect();
    assert_eq!(odometer, [42100, 51000]);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn the_vehicle_page_shows_decisions_and_the_next_work_order_offers_them_again(pool: PgPool) {
    let g = Garage::with_pages(pool).await;
    let (first, wipers, tyres) = first_visit(&g, &in_days(30)).await;
    let vehicle = first["vehicleId"].as_str().unwrap();
    let owner = g.owner_browser().await;

    let page = owner.get(&format!("/vehicles/{vehicle}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let recommended = &page.html[page.html.find("id=\"recommended\"").unwrap()..];
    assert!(recommended.contains(&format!("id=\"rec-{wipers}\"")));
    assert!(recommended.contains(&format!("id=\"rec-{tyres}\"")));
    assert!(recommended.contains("Does them himself"));
    let history = &page.html[page.html.find("id=\"history\"").unwrap()..];
    assert!(history.contains("Declined"), "{history}");
    assert!(history.contains("Deferred"), "{history}");
    assert!(history.contains("After winter"), "{history}");
    assert!(
        history.contains("INV-"),
        "the invoice of the visit: {history}"
    );

    let technician = g.browser_as("TECHNICIAN").await;
    let theirs = technician.get(&format!("/vehicles/{vehicle}")).await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert!(theirs.html.contains("Wiper blades"));
    assert!(!theirs.html.contains('€'), "technicians read no money");
    assert!(
        !theirs.html.contains("href=\"/recommended-work\""),
        "the follow-up list is the front desk's"
    );
    let forbidden = technician.get("/recommended-work").await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

    // The follow-up list: the declined job is due, the deferred one not yet.
    let follow_up = owner.get("/recommended-work").await;
    assert_eq!(follow_up.status, StatusCode::OK, "{}", follow_up.html);
    assert!(follow_up.html.contains(&format!("id=\"rec-{wipers}\"")));
    assert!(!follow_up.html.contains(&format!("id=\"rec-{tyres}\"")));
    assert!(follow_up.html.contains("Wanda Web"), "{}", follow_up.html);
    let later = owner
        .get(&format!("/recommended-work?due_by={}", in_days(31)))
        .await;
    assert!(later.html.contains(&format!("id=\"rec-{tyres}\"")));
    let refused = owner.get("/recommended-work?due_by=soon").await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.html.contains("id=\"refused\""), "{}", refused.html);

    // The next work order offers both; taking one adds it as a job to approve.
    let second = g
        .post(
            "/api/work-orders",
            json!({"customerId": first["customerId"], "vehicleId": vehicle, "complaint": "Service"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let second_id = second["id"].as_str().unwrap();
    let detail = owner.get(&format!("/work-orders/{second_id}")).await;
    assert!(
        detail
            .html
            .contains(&format!("id=\"offer-again-{wipers}\"")),
        "{}",
        detail.html
    );
    assert!(detail.html.contains(&format!("id=\"offer-again-{tyres}\"")));
    let first_page = owner
        .get(&format!("/work-orders/{}", first["id"].as_str().unwrap()))
        .await;
    assert!(
        !first_page.html.contains("id=\"offers\""),
        "a completed order takes no more jobs"
    );
    let offered = owner
        .post(
            &format!("/work-orders/{second_id}/recommended-jobs"),
            &[
                ("job_id", wipers.as_str()),
                ("idempotency_key", "offer-page-1"),
            ],
        )
        .await;
    assert!(offered.status.is_redirection(), "{}", offered.html);
    let after = owner.get(&format!("/work-orders/{second_id}")).await;
    assert!(!after.html.contains(&format!("id=\"offer-again-{wipers}\"")));
    assert!(after.html.contains(&format!("id=\"offer-again-{tyres}\"")));
    let again = owner
        .post(
            &format!("/work-orders/{second_id}/recommended-jobs"),
            &[
                ("job_id", wipers.as_str()),
                ("idempotency_key", "offer-page-2"),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(again.html.contains("role=\"alert\""), "{}", again.html);
    let order = g
        .get(&format!("/api/work-orders/{second_id}"))
        .await
        .expect(StatusCode::OK);
    let titles: Vec<&str> = order["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Service", "Wiper blades"], "offered once");

    let vehicle_page = owner.get(&format!("/vehicles/{vehicle}")).await;
    assert!(
        vehicle_page.html.contains(&format!(
            "offered again in {}",
            second["number"].as_str().unwrap()
        )),
        "{}",
        vehicle_page.html
    );
    g.stop().await;
}
