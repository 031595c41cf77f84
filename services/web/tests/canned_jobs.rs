//! Canned jobs through the REST API and the pages of a whole garage (real services,
//! PostgreSQL and NATS): kept by the front desk, refused by the workshop, added to a work
//! order in one action at the day's prices.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

fn oil_service(filter: &Value, oil: &Value) -> Value {
    json!({
        "name": "Oil service 5W-30",
        "parts": [
            {"partId": filter["id"], "quantity": 1},
            {"partId": oil["id"], "quantity": 5},
        ],
        "labor": [{"description": "Drain, refill, reset service light", "minutes": 30}],
    })
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn canned_jobs_over_rest_are_kept_by_the_desk_and_added_in_one_call(pool: PgPool) {
    let g = Garage::with_pages(pool).await;
    let (filter, oil) = (
        g.part("OF-100", 10, 1).await,
        g.part("OIL-5W30", 50, 5).await,
    );

    let reply = g.post("/api/canned-jobs", oil_service(&filter, &oil)).await;
    let location = reply.headers["location"].to_str().unwrap().to_string();
    let saved = reply.expect(StatusCode::CREATED);
    let id = saved["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/canned-jobs/{id}"));
    assert_eq!(saved["parts"].as_array().unwrap().len(), 2);

    let twice = g.post("/api/canned-jobs", oil_service(&filter, &oil)).await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{}", twice.text);

    let (_, technician) = g.person("TECHNICIAN").await;
    let refused = g
        .call_as(
            Some(&technician),
            Method::POST,
            "/api/canned-jobs",
            Some(json!({"name": "Wipers", "parts": [], "labor": [{"description": "Fit", "minutes": 5}]})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);

    let not_an_object = g.post("/api/canned-jobs", json!(["Oil", []])).await;
    assert!(
        not_an_object.status.is_client_error(),
        "{}",
        not_an_object.text
    );
    let empty = g
        .post(
            "/api/canned-jobs",
            json!({"name": "Nothing", "parts": [], "labor": []}),
        )
        .await;
    assert_eq!(
        empty.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        empty.text
    );

    let order = g.work_order().await;
    let order_id = order["id"].as_str().unwrap();
    let added = g
        .call_with_key(
            Method::POST,
            format!("/api/work-orders/{order_id}/canned-jobs"),
            json!({"cannedJobId": id}),
            "canned-1",
        )
        .await
        .expect(StatusCode::OK);
    let jobs = added["jobs"].as_array().unwrap();
    let job = jobs
        .iter()
        .find(|job| job["title"] == "Oil service 5W-30")
        .expect("the canned job became a job");
    assert_eq!(job["state"], "PROPOSED");
    let retried = g
        .call_with_key(
            Method::POST,
            format!("/api/work-orders/{order_id}/canned-jobs"),
            json!({"cannedJobId": id}),
            "canned-1",
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        retried["jobs"].as_array().unwrap().len(),
        jobs.len(),
        "a retry adds the job once"
    );

    let unknown = uuid::Uuid::now_v7().to_string();
    let missing = g
        .post(
            &format!("/api/work-orders/{order_id}/canned-jobs"),
            json!({"cannedJobId": unknown}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);

    g.put(
        &format!("/api/parts/{}", oil["id"].as_str().unwrap()),
        json!({"active": false}),
    )
    .await
    .expect(StatusCode::OK);
    let inactive = g
        .post(
            &format!("/api/work-orders/{order_id}/canned-jobs"),
            json!({"cannedJobId": id}),
        )
        .await;
    assert_eq!(inactive.status, StatusCode::CONFLICT, "{}", inactive.text);
    assert!(
        inactive.text.contains("OIL-5W30"),
        "the inactive part is named: {:?}",
        inactive.text
    );

    let renamed = g
        .put(
            &format!("/api/canned-jobs/{id}"),
            json!({"name": "Oil service", "parts": [{"partId": filter["id"], "quantity": 1}], "labor": []}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(renamed["name"], "Oil service");
    let listed = g.get("/api/canned-jobs").await.expect(StatusCode::OK);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    assert_eq!(
        g.delete(&format!("/api/canned-jobs/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    let gone = g.delete(&format!("/api/canned-jobs/{id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.text);
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn the_desk_keeps_canned_jobs_on_a_page_and_adds_one_to_a_work_order(pool: PgPool) {
    let g = Garage::with_pages(pool).await;
    let (filter, oil) = (
        g.part("OF-200", 10, 1).await,
        g.part("OIL-0W20", 50, 5).await,
    );
    let owner = g.owner_browser().await;

    let empty = owner.get("/canned-jobs").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(
        empty.html.contains("id=\"new-canned-job\""),
        "{}",
        empty.html
    );

    let filter_id = filter["id"].as_str().unwrap();
    let oil_id = oil["id"].as_str().unwrap();
    let refused = owner
        .post(
            "/canned-jobs",
            &[
                ("name", "Oil service 0W-20"),
                ("part_id", filter_id),
                ("quantity", "0"),
                ("labor_description", "Oil change"),
                ("labor_minutes", "30"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.html.contains("value=\"Oil service 0W-20\""),
        "the typed form comes back: {}",
        refused.html
    );
    assert!(refused.html.contains("role=\"alert\""), "{}", refused.html);

    let created = owner
        .post(
            "/canned-jobs",
            &[
                ("name", "Oil service 0W-20"),
                ("part_id", filter_id),
                ("quantity", "1"),
                ("part_id", oil_id),
                ("quantity", "4"),
                ("part_id", ""),
                ("quantity", ""),
                ("labor_description", "Oil change"),
                ("labor_minutes", "30"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.html);
    let listed = g.get("/api/canned-jobs").await.expect(StatusCode::OK);
    let canned = &listed["items"][0];
    assert_eq!(canned["name"], "Oil service 0W-20");
    assert_eq!(canned["parts"].as_array().unwrap().len(), 2);
    let canned_id = canned["id"].as_str().unwrap();

    let technician = g.browser_as("TECHNICIAN").await;
    let read_only = technician.get("/canned-jobs").await;
    assert_eq!(read_only.status, StatusCode::OK);
    assert!(read_only.html.contains("Oil service 0W-20"));
    assert!(!read_only.html.contains("id=\"new-canned-job\""));
    let forbidden = technician
        .post(&format!("/canned-jobs/{canned_id}/remove"), &[])
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

    let order = g.work_order().await;
    let order_id = order["id"].as_str().unwrap();
    let detail = owner.get(&format!("/work-orders/{order_id}")).await;
    assert!(
        detail
            .html
            .contains(&format!("<option value=\"{canned_id}\">")),
        "{}",
        detail.html
    );
    let added = owner
        .post(
            &format!("/work-orders/{order_id}/canned-jobs"),
            &[("canned_job_id", canned_id), ("idempotency_key", "k-1")],
        )
        .await;
    assert!(added.status.is_redirection(), "{}", added.html);
    let after = g
        .get(&format!("/api/work-orders/{order_id}"))
        .await
        .expect(StatusCode::OK);
    assert!(
        after["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|job| job["title"] == "Oil service 0W-20" && job["state"] == "PROPOSED"),
        "{after}"
    );

    let removed = owner
        .post(&format!("/canned-jobs/{canned_id}/remove"), &[])
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    let listed = g.get("/api/canned-jobs").await.expect(StatusCode::OK);
    assert!(listed["items"].as_array().unwrap().is_empty());
}
