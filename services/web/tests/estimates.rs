//! Jobs, estimates and the customer's approval page, through the pages and the REST API of a
//! whole garage (real services, PostgreSQL and NATS).

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

/// The token of the approval link a page shows.
fn token_in(html: &str) -> String {
    let start = html.find("/approve/").expect("an approval link") + "/approve/".len();
    html[start..start + 43].to_string()
}

/// A work order with a PROPOSED job "Front brakes grinding" (2 pads, 1.5 h) and one
/// "Wiper blades" (one blade set), built through the REST API.
async fn estimated(g: &Garage) -> (Value, String, String) {
    let order = g.work_order().await;
    let id = order["id"].as_str().unwrap().to_string();
    let pads = g.part(&format!("BP-{}", &id[30..]), 10, 1).await;
    let order = g
        .post(
            &format!("/api/work-orders/{id}/jobs"),
            json!({"title": "Front brakes grinding"}),
        )
        .await
        .expect(StatusCode::OK);
    let brakes = order["jobs"][1]["id"].as_str().unwrap().to_string();
    let order = g
        .post(
            &format!("/api/work-orders/{id}/jobs"),
            json!({"title": "Wiper blades"}),
        )
        .await
        .expect(StatusCode::OK);
    let wipers = order["jobs"][2]["id"].as_str().unwrap().to_string();
    let line = g
        .post(
            &format!("/api/work-orders/{id}/line-items"),
            json!({"partId": pads["id"], "quantity": 2, "jobId": brakes}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(line["partLines"][0]["reservationState"], "QUOTED");
    assert_eq!(line["partLines"][0]["jobId"], brakes);
    for (job, description, minutes) in [(&brakes, "Replace pads", 90), (&wipers, "Fit blades", 10)]
    {
        g.post(
            &format!("/api/work-orders/{id}/labor"),
            json!({"description": description, "minutes": minutes, "jobId": job}),
        )
        .await
        .expect(StatusCode::OK);
    }
    let order = g
        .get(&format!("/api/work-orders/{id}"))
        .await
        .expect(StatusCode::OK);
    (order, brakes, wipers)
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn the_front_desk_sends_an_estimate_and_the_customer_decides_on_its_page(pool: PgPool) {
    let g = Garage::with_pages(pool).await;
    let (order, brakes, wipers) = estimated(&g).await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(order["totals"]["estimatedTotal"]["amountMinor"], 0);
    assert!(order["totals"]["proposed"]["amountMinor"].as_i64().unwrap() > 0);

    let owner = g.owner_browser().await;
    let detail = owner.get(&format!("/work-orders/{id}")).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(
        detail.html.contains("Front brakes grinding"),
        "{}",
        detail.html
    );
    assert!(detail.html.contains("Quoted"), "{}", detail.html);
    assert!(
        detail.html.contains("id=\"send-estimate\""),
        "{}",
        detail.html
    );

    let sent = owner
        .post(
            &format!("/work-orders/{id}/estimate"),
            &[("expected_version", "0")],
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.html);
    let token = token_in(&sent.html);
    assert!(
        sent.html.contains(&format!("{}/approve/{token}", g.base)),
        "{}",
        sent.html
    );

    // The customer has no session: the link alone opens the estimate, and nothing else.
    let customer = Browser::new(&g.base);
    let page = customer.get(&format!("/approve/{token}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(
        page.html.contains("Hopper &#38; Sons Motors"),
        "{}",
        page.html
    );
    assert!(page.html.contains("Front brakes grinding"));
    assert!(page.html.contains("2 × Part BP-"), "{}", page.html);
    assert!(page.html.contains("Replace pads (1.5 h)"), "{}", page.html);
    assert!(
        !page.html.contains("Wanda Web"),
        "the customer's record is not shown"
    );
    assert!(
        !page.html.contains("/work-orders"),
        "no way into the garage's app"
    );
    let elsewhere = customer.get(&format!("/work-orders/{id}")).await;
    assert_eq!(elsewhere.status, StatusCode::SEE_OTHER);

    let approved = customer
        .post(
            &format!("/approve/{token}/jobs/{brakes}"),
            &[("decision", "APPROVED")],
        )
        .await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.html);
    customer
        .post(
            &format!("/approve/{token}/jobs/{wipers}"),
            &[("decision", "DECLINED")],
        )
        .await;
    let page = customer.get(&format!("/approve/{token}")).await;
    assert!(page.html.contains("id=\"approval-done\""), "{}", page.html);
    assert!(!page.html.contains(&format!("approve-{brakes}")));
    // Approving twice is refused with the reason, on the customer's page.
    let twice = customer
        .post(
            &format!("/approve/{token}/jobs/{brakes}"),
            &[("decision", "APPROVED")],
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert!(twice.html.contains("already APPROVED"), "{}", twice.html);

    // The garage sees the decisions, by link, and the approved job in the totals.
    let order = g
        .get(&format!("/api/work-orders/{id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(order["jobs"][1]["state"], "APPROVED");
    assert_eq!(order["jobs"][1]["decision"]["channel"], "LINK");
    assert_eq!(order["jobs"][2]["state"], "DECLINED");
    assert_eq!(order["status"], "ESTIMATE");
    assert_eq!(
        order["totals"]["estimatedTotal"]["amountMinor"],
        2 * 1250 + 13500
    );
    let detail = owner.get(&format!("/work-orders/{id}")).await;
    assert!(
        detail
            .html
            .contains(&format!("id=\"job-state-{brakes}\">Approved")),
        "{}",
        detail.html
    );
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn a_forged_expired_or_outdated_link_opens_nothing(pool: PgPool) {
    let g = Garage::with_pages(pool).await;
    let (order, brakes, wipers) = estimated(&g).await;
    let id = order["id"].as_str().unwrap();
    let sent = g
        .post(&format!("/api/work-orders/{id}/estimates"), json!({}))
        .await
        .expect(StatusCode::CREATED);
    let token = sent["approvalToken"].as_str().unwrap().to_string();
    assert_eq!(sent["approvalPath"], format!("/approve/{token}"));
    assert_eq!(sent["estimate"]["version"], 1);

    // The REST routes of the link need no token; the garage's do.
    let public = g
        .call_as(None, Method::GET, &format!("/api/approvals/{token}"), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(public["workOrderNumber"], order["number"]);
    let anonymous = g
        .call_as(
            None,
            Method::POST,
            &format!("/api/work-orders/{id}/jobs"),
            Some(json!({"title": "x"})),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let customer = Browser::new(&g.base);
    let mut forged = token.clone().into_bytes();
    forged[5] = if forged[5] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).unwrap();
    for bad in [forged.as_str(), "short"] {
        let page = customer.get(&format!("/approve/{bad}")).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{bad}");
        assert!(page.html.contains("not valid"), "{}", page.html);
        g.call_as(None, Method::GET, &format!("/api/approvals/{bad}"), None)
            .await
            .problem(StatusCode::NOT_FOUND);
    }

    // A technician neither sends estimates nor takes decisions.
    let (_, technician) = g.person("TECHNICIAN").await;
    let refused = g
        .call_as(
            Some(&technician),
            Method::PUT,
            &format!("/api/work-orders/{id}/jobs/{brakes}/decision"),
            Some(json!({"decision": "APPROVED", "channel": "PHONE"})),
        )
        .await
        .problem(StatusCode::FORBIDDEN);
    assert!(
        refused["detail"].as_str().unwrap().contains("DecideJob"),
        "{refused}"
    );

    // The estimate changes: the link says so and decides nothing.
    g.post(
        &format!("/api/work-orders/{id}/labor"),
        json!({"description": "Check arms", "minutes": 5, "jobId": wipers}),
    )
    .await
    .expect(StatusCode::OK);
    let page = customer
        .post(
            &format!("/approve/{token}/jobs/{brakes}"),
            &[("decision", "APPROVED")],
        )
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(page.html.contains("estimate changed"), "{}", page.html);
    let outdated = g
        .call_as(
            None,
            Method::PUT,
            &format!("/api/approvals/{token}/jobs/{brakes}"),
            Some(json!({"decision": "APPROVED"})),
        )
        .await
        .problem(StatusCode::CONFLICT);
    assert!(
        outdated["detail"]
            .as_str()
            .unwrap()
            .contains("estimate changed")
    );
    let order = g
        .get(&format!("/api/work-orders/{id}"))
        .await
        .expect(StatusCode::OK);
    assert!(order["estimateOutdated"].as_bool().unwrap());
    assert_eq!(order["jobs"][1]["state"], "PROPOSED");
    // Versions as sent.
    let list = g
        .get(&format!("/api/work-orders/{id}/estimates"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(list["items"][0]["outdated"], true);
    g.stop().await;
}
