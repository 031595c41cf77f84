//! The tenant's dead letters through the REST API: owners list, show and replay them, other
//! roles are refused. The dead letters are made by the real consumers, from an event that can
//! never be handled.

mod common;

use std::time::Duration;

use common::Garage;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::PgPool;

/// Publishes what no consumer can read on `workorder.completed` (inventory and billing
/// consume it).
async fn publish_unreadable(tenant: &str) {
    let js = carerp_kit::messaging::connect("nats://127.0.0.1:4222")
        .await
        .unwrap();
    js.publish(
        carerp_kit::envelope::subject(tenant, "workorder.completed"),
        "not a CloudEvent".into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

async fn dead_letters(garage: &Garage, query: &str, expected: usize) -> Vec<Value> {
    for _ in 0..100 {
        let listed = garage
            .get(&format!("/api/dead-letters{query}"))
            .await
            .expect(StatusCode::OK);
        let listed = listed.as_array().unwrap().clone();
        if listed.len() >= expected {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {expected} dead letters{query}");
}

#[sqlx::test]
async fn owners_list_show_and_replay_dead_letters_through_the_consumers(pool: PgPool) {
    let garage = Garage::start(pool).await;
    assert!(dead_letters(&garage, "", 0).await.is_empty());
    publish_unreadable(&garage.tenant).await;

    let all = dead_letters(&garage, "", 2).await;
    let mut consumers: Vec<&str> = all
        .iter()
        .map(|l| l["consumer"].as_str().unwrap())
        .collect();
    consumers.sort();
    assert_eq!(consumers, ["billing", "inventory"]);
    for letter in &all {
        assert_eq!(letter["topic"], "workorder.completed");
        assert_eq!(letter["attempts"], 1, "unreadable: given up at once");
        assert!(
            letter["error"]
                .as_str()
                .unwrap()
                .starts_with("malformed CloudEvent"),
            "{letter}"
        );
        assert!(letter.get("event").is_none(), "lists leave the events out");
    }
    let billing = dead_letters(&garage, "?consumer=billing", 1).await;
    assert_eq!(billing.len(), 1);
    let sequence = billing[0]["sequence"].as_u64().unwrap();

    let shown = garage
        .get(&format!("/api/dead-letters/{sequence}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(shown["event"], "not a CloudEvent");
    assert_eq!(
        shown["originalSubject"],
        format!("carerp.{}.workorder.completed", garage.tenant)
    );

    // Other roles may not read them, let alone replay them; the refusal names the rule.
    let (_, technician) = garage.person("TECHNICIAN").await;
    for (method, path) in [
        (Method::GET, "/api/dead-letters".to_string()),
        (Method::GET, format!("/api/dead-letters/{sequence}")),
        (Method::POST, format!("/api/dead-letters/{sequence}/replay")),
    ] {
        let refused = garage
            .call_as(Some(&technician), method, &path, None)
            .await
            .expect(StatusCode::FORBIDDEN);
        assert!(
            refused["detail"]
                .as_str()
                .unwrap()
                .contains("bff.DeadLetters:"),
            "{refused}"
        );
    }
    for bad in [
        "/api/dead-letters?consumer=a.b",
        "/api/dead-letters?limit=0",
        "/api/dead-letters/0",
        "/api/dead-letters/seventeen",
    ] {
        garage
            .get(bad)
            .await
            .expect(StatusCode::UNPROCESSABLE_ENTITY);
    }

    // Replayed, it leaves the dead letters and goes through both consumers again: still
    // unreadable, each gives up on it once more (new dead letters, new sequences).
    let replayed = garage
        .call_as(
            Some(&garage.token),
            Method::POST,
            &format!("/api/dead-letters/{sequence}/replay"),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(replayed["consumer"], "billing");
    garage
        .get(&format!("/api/dead-letters/{sequence}"))
        .await
        .expect(StatusCode::NOT_FOUND);
    garage
        .call_as(
            Some(&garage.token),
            Method::POST,
            &format!("/api/dead-letters/{sequence}/replay"),
            None,
        )
        .await
        .expect(StatusCode::NOT_FOUND);
    // After the first two (inventory's is still there, not replayed).
    let last = all
        .iter()
        .map(|l| l["sequence"].as_u64().unwrap())
        .max()
        .unwrap();
    let after = dead_letters(&garage, &format!("?after={last}"), 2).await;
    assert!(after.iter().all(|l| l["sequence"].as_u64().unwrap() > last));
    let mut consumers: Vec<&str> = after
        .iter()
        .map(|l| l["consumer"].as_str().unwrap())
        .collect();
    consumers.sort();
    assert_eq!(consumers, ["billing", "inventory"]);
    garage.stop().await;
}
