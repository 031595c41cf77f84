//! Every error class of the edge, each as application/problem+json with the correlation id.

mod common;

use std::time::Duration;

use carerp_bff::BffConfig;
use common::{Garage, Reply, field_errors};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

async fn raw(
    garage: &Garage,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut request = garage
        .http
        .request(method, garage.url(path))
        .header("authorization", format!("Bearer {}", garage.token))
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    Reply::from(request.send().await.unwrap()).await
}

#[sqlx::test]
async fn bodies_that_cannot_be_read_are_refused_with_the_reason(pool: PgPool) {
    let garage = Garage::start(pool).await;
    let json_type = Some("application/json");

    let malformed = raw(
        &garage,
        Method::POST,
        "/api/customers",
        json_type,
        b"{\"name\": ".to_vec(),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    assert!(
        malformed["type"]
            .as_str()
            .unwrap()
            .ends_with("/malformed-json"),
        "{malformed}"
    );
    assert_eq!(malformed["instance"], "/api/customers");

    let unknown = garage
        .post(
            "/api/customers",
            json!({"name": "X", "phone": "+4930123456", "nmae": "typo"}),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        field_errors(&unknown),
        [("nmae".to_string(), "unknown field".to_string())]
    );
    let nested = garage
        .post(
            "/api/customers",
            json!({"name": "X", "phone": "+4930123456", "address": {"zip": "10115"}}),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&nested)[0].0, "address.zip");
    let missing = garage
        .post("/api/customers", json!({"phone": "+4930123456"}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        field_errors(&missing),
        [("name".to_string(), "is required".to_string())]
    );
    let wrong_type = garage
        .post("/api/customers", json!({"name": 42}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&wrong_type)[0].0, "name");

    let too_large = vec![b' '; 1024 * 1024 + 1];
    raw(
        &garage,
        Method::POST,
        "/api/customers",
        json_type,
        too_large,
    )
    .await
    .problem(StatusCode::PAYLOAD_TOO_LARGE);
    // Just under the limit is read (and then found not to be JSON).
    let mut almost = vec![b' '; 1024 * 1024 - 2];
    almost.extend_from_slice(b"{");
    raw(&garage, Method::POST, "/api/customers", json_type, almost)
        .await
        .problem(StatusCode::BAD_REQUEST);

    raw(
        &garage,
        Method::POST,
        "/api/customers",
        Some("text/plain"),
        b"{}".to_vec(),
    )
    .await
    .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    raw(
        &garage,
        Method::POST,
        "/api/customers",
        None,
        b"{}".to_vec(),
    )
    .await
    .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Nothing was created by any of these.
    let listed = garage.get("/api/customers").await.expect(StatusCode::OK);
    assert!(listed["items"].as_array().unwrap().is_empty(), "{listed}");
    garage.stop().await;
}

#[sqlx::test]
async fn unknown_routes_methods_and_parameters(pool: PgPool) {
    let garage = Garage::start(pool).await;
    for path in ["/api/nothing", "/", "/api/customers/x/y/z"] {
        let problem = garage.get(path).await.problem(StatusCode::NOT_FOUND);
        assert_eq!(problem["instance"], path);
    }
    let wrong_method = garage
        .call(Method::PATCH, "/api/customers", Some(json!({})))
        .await;
    let allow = wrong_method.header("allow").unwrap_or_default().to_string();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    wrong_method.problem(StatusCode::METHOD_NOT_ALLOWED);
    garage
        .delete("/api/parts")
        .await
        .problem(StatusCode::METHOD_NOT_ALLOWED);

    let unknown = garage
        .get("/api/customers?colour=red")
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    let (field, message) = &field_errors(&unknown)[0];
    assert_eq!(field, "colour");
    assert!(
        message.starts_with("unknown query parameter; expected one of `limit`"),
        "{message}"
    );
    let bad_number = garage
        .get("/api/customers?limit=ten")
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&bad_number)[0].0, "limit", "{bad_number}");
    garage.stop().await;
}

#[sqlx::test]
async fn service_refusals_map_to_http_statuses_with_field_details(pool: PgPool) {
    let garage = Garage::start(pool).await;
    // NotFound -> 404.
    let id = uuid::Uuid::now_v7();
    let not_found = garage
        .get(&format!("/api/customers/{id}"))
        .await
        .problem(StatusCode::NOT_FOUND);
    assert!(not_found["type"].as_str().unwrap().ends_with("/not-found"));
    garage
        .get(&format!("/api/work-orders/{id}"))
        .await
        .problem(StatusCode::NOT_FOUND);
    garage
        .get(&format!("/api/parts/{id}"))
        .await
        .problem(StatusCode::NOT_FOUND);
    garage
        .get(&format!("/api/invoices/{id}"))
        .await
        .problem(StatusCode::NOT_FOUND);

    // InvalidArgument -> 422 with each field, in camelCase.
    let invalid_id = garage
        .get("/api/customers/not-an-id")
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&invalid_id)[0].0, "id");
    let invalid = garage
        .post(
            "/api/customers",
            json!({"name": "", "email": "not-an-email", "address": {"country": "Germany"}}),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<String> = field_errors(&invalid).into_iter().map(|(f, _)| f).collect();
    assert!(fields.contains(&"name".to_string()), "{invalid}");
    assert!(fields.contains(&"email".to_string()), "{invalid}");
    assert!(fields.contains(&"address.country".to_string()), "{invalid}");

    // AlreadyExists -> 409.
    let (customer, vehicle) = garage
        .customer_with_vehicle("Dup Dan", "WVWZZZ1JZXW000020")
        .await;
    let duplicate = garage
        .post(
            &format!("/api/customers/{customer}/vehicles"),
            json!({"vin": "WVWZZZ1JZXW000020", "make": "VW", "model": "Golf", "year": 2019}),
        )
        .await
        .problem(StatusCode::CONFLICT);
    assert!(
        duplicate["type"]
            .as_str()
            .unwrap()
            .ends_with("/already-exists"),
        "{duplicate}"
    );

    // FailedPrecondition -> 409.
    let order = garage
        .post(
            "/api/work-orders",
            json!({"customerId": customer, "vehicleId": vehicle, "complaint": "noise"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let order_id = order["id"].as_str().unwrap();
    let refused = garage
        .put(
            &format!("/api/work-orders/{order_id}/status"),
            json!({"status": "COMPLETED"}),
        )
        .await
        .problem(StatusCode::CONFLICT);
    assert!(
        refused["type"]
            .as_str()
            .unwrap()
            .ends_with("/precondition-failed"),
        "{refused}"
    );

    // Aborted (stale version) -> 409.
    let stale = garage
        .put(
            &format!("/api/work-orders/{order_id}/notes"),
            json!({"notes": "x", "expectedVersion": 99}),
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
    garage.stop().await;
}

#[sqlx::test]
async fn correlation_ids_are_kept_returned_and_forwarded_with_the_trace(pool: PgPool) {
    let garage = Garage::start(pool).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = garage
        .http
        .post(garage.url("/api/customers"))
        .header("authorization", format!("Bearer {}", garage.token))
        .header("content-type", "application/json")
        .header("x-correlation-id", "order-form-42")
        .header("traceparent", traceparent)
        .body(json!({"name": "Traced Tina", "phone": "+4930123456"}).to_string())
        .send()
        .await
        .unwrap();
    let reply = Reply::from(response).await;
    assert_eq!(reply.header("x-correlation-id"), Some("order-form-42"));
    reply.expect(StatusCode::CREATED);
    // The customer service recorded its event with our correlation id and trace.
    let (correlation, parent): (String, String) = sqlx::query_as(
        "SELECT correlation_id, traceparent FROM outbox WHERE topic = 'customer.created'",
    )
    .fetch_one(&garage.customer_pool)
    .await
    .unwrap();
    assert_eq!(correlation, "order-form-42");
    assert!(
        parent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{parent}"
    );

    // Absent: one is made and returned, on errors too.
    let generated = garage.get("/api/nothing").await;
    let id = generated.header("x-correlation-id").unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(
        generated.problem(StatusCode::NOT_FOUND)["correlationId"],
        id.as_str()
    );
    garage.stop().await;
}

#[sqlx::test]
async fn security_headers_admin_endpoints_and_stop(pool: PgPool) {
    let mut garage = Garage::start(pool).await;
    let reply = garage.get("/api/customers").await;
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
    assert!(
        reply
            .header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    // No CORS unless configured.
    assert!(reply.header("access-control-allow-origin").is_none());

    let bff = garage.bff.take().unwrap();
    let admin = format!("http://{}", bff.admin_addr);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = garage
            .http
            .get(format!("{admin}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    garage
        .get("/api/nothing")
        .await
        .problem(StatusCode::NOT_FOUND);
    let metrics = garage
        .http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // By route template, not by concrete path.
    assert!(
        metrics.contains(
            r#"carerp_http_server_requests_total{method="GET",route="/api/customers",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"carerp_http_server_requests_total{method="GET",route="unmatched",status="404"} 1"#
        ),
        "{metrics}"
    );
    bff.stop().await.unwrap();
    assert!(
        garage
            .http
            .get(garage.url("/api/customers"))
            .send()
            .await
            .is_err()
    );
    garage.stop().await;
}

#[sqlx::test]
async fn cors_follows_the_configured_origins(pool: PgPool) {
    let garage = Garage::start_with(pool, |config| {
        config.cors_origins = vec!["https://shop.example".into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        garage
            .http
            .request(Method::OPTIONS, garage.url("/api/customers"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://shop.example").await.unwrap();
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .unwrap(),
        "https://shop.example"
    );
    // Integrations send their token from the browser too.
    let headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(headers.contains("authorization"), "{headers}");
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    garage.stop().await;
}

#[sqlx::test]
async fn clients_over_their_rate_get_429_with_retry_after(pool: PgPool) {
    let garage = Garage::start_with(pool, |config| {
        config.rate_limit_per_second = 1;
        config.rate_limit_burst = 3;
    })
    .await;
    // The burst passes (the owner's sign-in was its first request); a token comes back each
    // second, so on a slow machine one or two more may pass before the limit shows.
    let mut passed = 1;
    let limited = loop {
        let reply = garage.get("/api/customers").await;
        if reply.status != StatusCode::OK {
            break reply;
        }
        passed += 1;
        assert!(passed <= 6, "never limited");
    };
    assert!(passed >= 3, "limited after {passed}");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    limited.problem(StatusCode::TOO_MANY_REQUESTS);
    garage.stop().await;
}

/// A service that is down answers 503; one that accepts and never answers hits the deadline
/// and answers 504.
#[tokio::test]
async fn unavailable_and_slow_services_are_503_and_504() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let closed = carerp_kit::config::ClosedPort::bind().unwrap();
    let closed_url = closed.url();

    let mut config = BffConfig::for_tests(
        "bff-down",
        closed_url.clone(),
        silent_url.clone(),
        closed_url.clone(),
        closed_url.clone(),
        closed_url,
    );
    config.call_timeout = Duration::from_millis(300);
    let bff = carerp_bff::start(config).await.unwrap();
    let http = reqwest::Client::new();
    // Access tokens verify without the identity service: it may be down too.
    let token = carerp_kit::auth::testing::token("bff-down", carerp_kit::auth::Role::Owner);
    let bearer = format!("Bearer {}", token.expose());
    let get = |path: &str| {
        http.get(format!("http://{}{path}", bff.http_addr))
            .header("authorization", &bearer)
            .send()
    };

    let down = Reply::from(get("/api/customers").await.unwrap())
        .await
        .problem(StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        down["detail"]
            .as_str()
            .unwrap()
            .contains("customer service"),
        "{down}"
    );
    let slow = Reply::from(get("/api/work-orders").await.unwrap())
        .await
        .problem(StatusCode::GATEWAY_TIMEOUT);
    assert!(
        slow["type"].as_str().unwrap().ends_with("/timeout"),
        "{slow}"
    );

    // The dashboard still answers, saying what is missing.
    let dashboard = Reply::from(get("/api/dashboard").await.unwrap())
        .await
        .expect(StatusCode::OK);
    assert_eq!(dashboard["complete"], false);
    assert_eq!(
        dashboard["missing"].as_array().unwrap().len(),
        3,
        "{dashboard}"
    );

    bff.stop().await.unwrap();

    // The whole request has a limit of its own, shorter here than the call's deadline.
    let mut config = BffConfig::for_tests(
        "bff-slow",
        silent_url.clone(),
        silent_url.clone(),
        silent_url.clone(),
        silent_url.clone(),
        silent_url,
    );
    config.request_timeout = Duration::from_millis(200);
    let bff = carerp_bff::start(config).await.unwrap();
    let token = carerp_kit::auth::testing::token("bff-slow", carerp_kit::auth::Role::Owner);
    let response = http
        .get(format!("http://{}/api/customers", bff.http_addr))
        .header("authorization", format!("Bearer {}", token.expose()))
        .send()
        .await
        .unwrap();
    let slow = Reply::from(response)
        .await
        .problem(StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(slow["detail"], "the request took too long", "{slow}");
    bff.stop().await.unwrap();
    holder.abort();
}

/// A body that is JSON but not an object is refused before any field is read: serde would
/// otherwise fill a request from an array by position (`["Name", "e@x"]` made a customer).
#[sqlx::test]
async fn bodies_that_are_not_objects_are_refused_and_change_nothing(pool: PgPool) {
    let garage = Garage::start(pool).await;
    let json_type = Some("application/json");
    let array = raw(
        &garage,
        Method::POST,
        "/api/customers",
        json_type,
        br#"["Name", "e@example.com"]"#.to_vec(),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        array
            .to_string()
            .contains("must be a JSON object, not an array"),
        "{array}"
    );
    let customers = garage.get("/api/customers").await.expect(StatusCode::OK);
    assert_eq!(customers["items"].as_array().unwrap().len(), 0);

    let part = garage.part("OBJ-1", 3, 0).await;
    let id = part["id"].as_str().unwrap();
    for body in [&b"[null]"[..], b"null", br#""text""#] {
        raw(
            &garage,
            Method::PUT,
            &format!("/api/parts/{id}"),
            json_type,
            body.to_vec(),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    }
    let unchanged = garage
        .get(&format!("/api/parts/{id}"))
        .await
        .expect(StatusCode::OK);
    assert!(part["audit"]["version"].as_i64().unwrap() > 0, "{part}");
    assert_eq!(unchanged["audit"], part["audit"], "{unchanged}");
    garage.stop().await;
}

#[sqlx::test(migrator = "carerp_identity::MIGRATOR")]
async fn a_body_wrong_in_many_places_is_refused_with_the_first_twenty_reasons(pool: PgPool) {
    // Eighty times the same item: seventy-nine reasons, more than a status carries in its
    // trailers (this answered 500 before the service reported at most twenty).
    let garage = Garage::start(pool).await;
    let items: Vec<_> = (0..80)
        .map(|_| json!({"section": "Brakes", "label": "Front pads"}))
        .collect();
    let refused = garage
        .post(
            "/api/inspection-templates",
            json!({"name": "Twice over", "items": items}),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&refused).len(), 20, "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains("and 59 more"),
        "{refused}"
    );
    let listed = garage
        .get("/api/inspection-templates")
        .await
        .expect(StatusCode::OK);
    assert!(
        !listed.to_string().contains("Twice over"),
        "nothing saved: {listed}"
    );
    garage.stop().await;
}
