//! Estimates emailed to the customer (`docs/estimates.md`, "By email"): a whole garage (real
//! services, PostgreSQL and NATS) sending through a real SMTP server started by the test,
//! the link taken from the received message and opened over HTTP.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

/// A work order with one PROPOSED job "Front brakes grinding" (90 min labour) for a new
/// customer with `email` (none: a phone number only): the order's JSON.
async fn estimated(g: &Garage, email: Option<&str>) -> Value {
    let mut customer = json!({"name": "Wanda Web", "phone": "+4930123456"});
    if let Some(email) = email {
        customer["email"] = email.into();
    }
    let customer = g
        .post("/api/customers", customer)
        .await
        .expect(StatusCode::CREATED);
    let id = customer["id"].as_str().unwrap();
    let vin = format!(
        "WVWZZZ1JZ3W{}",
        &uuid::Uuid::now_v7().simple().to_string()[26..]
    );
    let vehicle = g
        .post(
            &format!("/api/customers/{id}/vehicles"),
            json!({"vin": vin, "make": "VW", "model": "Golf", "year": 2019, "licensePlate": "B-XY 123", "mileage": 42000}),
        )
        .await
        .expect(StatusCode::CREATED);
    let order = g
        .post(
            "/api/work-orders",
            json!({"customerId": id, "vehicleId": vehicle["id"], "complaint": "Brakes squeal", "odometerKm": 42100}),
        )
        .await
        .expect(StatusCode::CREATED);
    let order_id = order["id"].as_str().unwrap();
    let order = g
        .post(
            &format!("/api/work-orders/{order_id}/jobs"),
            json!({"title": "Front brakes grinding"}),
        )
        .await
        .expect(StatusCode::OK);
    let job = order["jobs"][1]["id"].as_str().unwrap();
    g.post(
        &format!("/api/work-orders/{order_id}/labor"),
        json!({"description": "Replace pads", "minutes": 90, "jobId": job}),
    )
    .await
    .expect(StatusCode::OK)
}

async fn estimates_of(g: &Garage, id: &str) -> Vec<Value> {
    g.get(&format!("/api/work-orders/{id}/estimates"))
        .await
        .expect(StatusCode::OK)["items"]
        .as_array()
        .unwrap()
        .clone()
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn the_emailed_estimate_arrives_with_a_link_that_opens_it(pool: PgPool) {
    let smtp = MailServer::start();
    let g = Garage::with_email(pool, &smtp.url()).await;
    let order = estimated(&g, Some("wanda@customer.example")).await;
    let id = order["id"].as_str().unwrap();

    let owner = g.owner_browser().await;
    let detail = owner.get(&format!("/work-orders/{id}")).await;
    assert!(
        detail.html.contains("id=\"send-estimate-email\""),
        "{}",
        detail.html
    );
    let key = uuid::Uuid::now_v7().to_string();
    let sent = owner
        .post(
            &format!("/work-orders/{id}/estimate"),
            &[
                ("expected_version", "0"),
                ("deliver", "EMAIL"),
                ("idempotency_key", &key),
            ],
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.html);
    assert!(
        sent.html
            .contains("Emailed to <strong>wanda@customer.example</strong>"),
        "{}",
        sent.html
    );

    let mail = smtp.received().pop().expect("the email arrived");
    assert_eq!(mail.to, ["wanda@customer.example"]);
    assert!(mail.from.contains("estimates@hopper.example"), "{mail:?}");
    let text = mail.text();
    assert!(text.contains("Hopper & Sons Motors"), "{text}");
    assert!(text.contains(order["number"].as_str().unwrap()), "{text}");
    // The link the customer got opens the estimate, with no session.
    let link = mail.link(&format!("{}/approve/", g.base));
    let customer = reqwest::Client::new();
    let page = customer.get(&link).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "{link}");
    let html = page.text().await.unwrap();
    assert!(html.contains("Front brakes grinding"), "{html}");
    assert!(html.contains("Hopper &#38; Sons Motors"), "{html}");
    // And it is the link the page showed: one token for one sending.
    assert!(sent.html.contains(&link), "{}", sent.html);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn a_customer_without_an_email_address_is_refused_and_nothing_is_sent(pool: PgPool) {
    let smtp = MailServer::start();
    let g = Garage::with_email(pool, &smtp.url()).await;
    let order = estimated(&g, None).await;
    let id = order["id"].as_str().unwrap();
    let refused = g
        .post(
            &format!("/api/work-orders/{id}/estimates"),
            json!({"deliver": "EMAIL"}),
        )
        .await
        .problem(StatusCode::CONFLICT);
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("Wanda Web has no email address"),
        "{refused}"
    );
    assert!(smtp.received().is_empty());
    assert!(estimates_of(&g, id).await.is_empty(), "no version was sent");
    let order = g
        .get(&format!("/api/work-orders/{id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(order["status"], "OPEN");

    // The page says the same, on the work order.
    let owner = g.owner_browser().await;
    let page = owner
        .post(
            &format!("/work-orders/{id}/estimate"),
            &[("expected_version", "0"), ("deliver", "EMAIL")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.html.contains("has no email address"), "{}", page.html);
    assert!(smtp.received().is_empty());
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn email_not_configured_is_refused_and_the_button_is_hidden(pool: PgPool) {
    let g = Garage::with_pages(pool).await;
    let order = estimated(&g, Some("wanda@customer.example")).await;
    let id = order["id"].as_str().unwrap();
    let refused = g
        .post(
            &format!("/api/work-orders/{id}/estimates"),
            json!({"deliver": "EMAIL"}),
        )
        .await
        .problem(StatusCode::CONFLICT);
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("email is not configured"),
        "{refused}"
    );
    assert!(estimates_of(&g, id).await.is_empty());
    let detail = g
        .owner_browser()
        .await
        .get(&format!("/work-orders/{id}"))
        .await;
    assert!(
        !detail.html.contains("send-estimate-email"),
        "{}",
        detail.html
    );
    assert!(detail.html.contains("id=\"email-off\""), "{}", detail.html);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn a_failing_mail_server_is_reported_and_the_retry_emails_the_same_version(pool: PgPool) {
    let smtp = MailServer::start();
    smtp.refuse(true);
    let g = Garage::with_email(pool, &smtp.url()).await;
    let order = estimated(&g, Some("wanda@customer.example")).await;
    let id = order["id"].as_str().unwrap();
    let path = format!("/api/work-orders/{id}/estimates");
    let failed = g
        .call_with_key(
            reqwest::Method::POST,
            &path,
            json!({"deliver": "EMAIL"}),
            "send-1",
        )
        .await
        .problem(StatusCode::BAD_GATEWAY);
    let detail = failed["detail"].as_str().unwrap();
    assert!(detail.contains("estimate 1 of WO-"), "{detail}");
    assert!(detail.contains("not delivered"), "{detail}");
    assert!(detail.contains("550"), "the mail server's answer: {detail}");
    assert!(detail.contains("same Idempotency-Key"), "{detail}");
    assert!(smtp.received().is_empty());
    assert_eq!(estimates_of(&g, id).await.len(), 1, "the version is saved");

    // The retry with the key emails version 1 again: no second version.
    smtp.refuse(false);
    let sent = g
        .call_with_key(
            reqwest::Method::POST,
            &path,
            json!({"deliver": "EMAIL"}),
            "send-1",
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(sent["estimate"]["version"], 1);
    assert_eq!(sent["email"]["to"], "wanda@customer.example");
    assert_eq!(estimates_of(&g, id).await.len(), 1);
    let mail = smtp.received().pop().expect("the email arrived");
    let link = mail.link(&format!("{}/approve/", g.base));
    assert!(link.ends_with(sent["approvalToken"].as_str().unwrap()));
    let page = reqwest::get(&link).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn with_no_mail_server_the_page_says_so_and_offers_the_same_version_again(pool: PgPool) {
    let g = Garage::with_email(pool, &no_mail_server()).await;
    let order = estimated(&g, Some("wanda@customer.example")).await;
    let id = order["id"].as_str().unwrap();
    let owner = g.owner_browser().await;
    let key = uuid::Uuid::now_v7().to_string();
    let page = owner
        .post(
            &format!("/work-orders/{id}/estimate"),
            &[
                ("expected_version", "0"),
                ("deliver", "EMAIL"),
                ("idempotency_key", &key),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY, "{}", page.html);
    assert!(page.html.contains("id=\"email-failed\""), "{}", page.html);
    assert!(page.html.contains("could not be reached"), "{}", page.html);
    assert!(page.html.contains(&key), "the retry carries the key");
    assert!(!page.html.contains("/approve/"), "{}", page.html);
    // "Show the link instead": the same version, its link.
    let link = owner
        .post(
            &format!("/work-orders/{id}/estimate"),
            &[
                ("expected_version", "0"),
                ("deliver", "LINK"),
                ("idempotency_key", &key),
            ],
        )
        .await;
    assert_eq!(link.status, StatusCode::OK, "{}", link.html);
    assert!(link.html.contains("Estimate 1 "), "{}", link.html);
    assert!(link.html.contains("/approve/"), "{}", link.html);
    assert_eq!(estimates_of(&g, id).await.len(), 1);
    g.stop().await;
}

/// A `tracing` writer into a shared buffer: what the test binary logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn the_smtp_password_shows_in_no_log_debug_or_answer(pool: PgPool) {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    // Other tests of this binary may log here too: more lines, the same check.
    let _ = tracing::subscriber::set_global_default(subscriber);

    let password = format!("pw-{}", uuid::Uuid::now_v7().simple());
    let smtp = MailServer::start();
    let url = format!("smtp://mailer:{password}@{}", smtp.addr);
    let g = Garage::with_email(pool, &url).await;
    let config = carerp_bff::email::EmailConfig::new(&url, "a@b.example").unwrap();
    assert!(!format!("{config:?}").contains(&password));
    // The test server offers no AUTH over plain SMTP, so the send fails after the version is
    // saved: the failure's answer, page and log lines name no password either.
    let order = estimated(&g, Some("wanda@customer.example")).await;
    let id = order["id"].as_str().unwrap();
    let failed = g
        .post(
            &format!("/api/work-orders/{id}/estimates"),
            json!({"deliver": "EMAIL"}),
        )
        .await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "{}", failed.text);
    assert!(!failed.text.contains(&password), "{}", failed.text);
    let page = g
        .owner_browser()
        .await
        .post(
            &format!("/work-orders/{id}/estimate"),
            &[("expected_version", "0"), ("deliver", "EMAIL")],
        )
        .await;
    assert!(!page.html.contains(&password));
    g.stop().await;
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        logged.contains(&format!("smtp://mailer@{}", smtp.addr)),
        "the start-up line names the server, redacted: {logged}"
    );
    assert!(!logged.contains(&password), "{logged}");
}
