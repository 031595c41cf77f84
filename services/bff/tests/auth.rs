//! Sign-in, sessions and permissions through the BFF, with the real identity service and
//! domain services behind it: every `/api` route needs a valid token of this tenant, and a
//! role without the permission is refused with 403 naming it.

mod common;

use std::time::Duration;

use carerp_kit::auth::{Claims, Role, SigningKey, testing};
use common::{Garage, OWNER_PASSWORD, Reply};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

/// Polls until `path` answers 401 for `token`: revocations reach the BFF as events.
async fn refused_soon(garage: &Garage, token: &str, path: &str) -> Value {
    for _ in 0..100 {
        let reply = garage.call_as(Some(token), Method::GET, path, None).await;
        if reply.status == StatusCode::UNAUTHORIZED {
            return reply.problem(StatusCode::UNAUTHORIZED);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} still accepts the token after 10 s");
}

fn login(email: &str, password: &str) -> Option<Value> {
    Some(json!({"email": email, "password": password}))
}

#[sqlx::test]
async fn sign_in_refresh_and_sign_out(pool: PgPool) {
    let garage = Garage::start(pool).await;
    let session = garage
        .call_as(
            None,
            Method::POST,
            "/api/auth/login",
            login(&garage.owner_email, OWNER_PASSWORD),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(session["tokenType"], "Bearer");
    assert_eq!(session["user"]["role"], "OWNER");
    assert!(
        session["user"]["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "carerp.identity.v1.IdentityService/CreateUser"),
        "{session}"
    );
    let access = session["accessToken"].as_str().unwrap().to_string();
    let me = garage
        .call_as(Some(&access), Method::GET, "/api/auth/me", None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(me["email"], garage.owner_email.as_str());

    // A refresh token works once; the new one works in its turn.
    let first = session["refreshToken"].as_str().unwrap().to_string();
    let refresh = |token: &str| Some(json!({"refreshToken": token}));
    let rotated = garage
        .call_as(None, Method::POST, "/api/auth/refresh", refresh(&first))
        .await
        .expect(StatusCode::OK);
    let second = rotated["refreshToken"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    let rotated_access = rotated["accessToken"].as_str().unwrap().to_string();

    // Presenting the used one again ends the session: both refresh tokens and its access
    // tokens are refused from then on.
    let reused = garage
        .call_as(None, Method::POST, "/api/auth/refresh", refresh(&first))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    assert!(reused["detail"].is_string(), "{reused}");
    garage
        .call_as(None, Method::POST, "/api/auth/refresh", refresh(&second))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    refused_soon(&garage, &rotated_access, "/api/customers").await;
    refused_soon(&garage, &access, "/api/customers").await;

    // Signing out ends the session of the token that asked.
    let other = garage.sign_in(&garage.owner_email, OWNER_PASSWORD).await;
    garage
        .call_as(Some(&other), Method::POST, "/api/auth/logout", None)
        .await
        .expect(StatusCode::NO_CONTENT);
    let ended = refused_soon(&garage, &other, "/api/auth/me").await;
    assert!(
        ended["detail"].as_str().unwrap().contains("session"),
        "{ended}"
    );
    // The harness's own session is untouched.
    garage.get("/api/auth/me").await.expect(StatusCode::OK);
    garage.stop().await;
}

#[sqlx::test]
async fn wrong_passwords_and_unknown_emails_get_the_same_answer_and_are_throttled(pool: PgPool) {
    let garage = Garage::start(pool).await;
    let wrong = garage
        .call_as(
            None,
            Method::POST,
            "/api/auth/login",
            login(&garage.owner_email, "not the password"),
        )
        .await
        .problem(StatusCode::UNAUTHORIZED);
    let unknown = garage
        .call_as(
            None,
            Method::POST,
            "/api/auth/login",
            login("nobody@example.com", "not the password"),
        )
        .await
        .problem(StatusCode::UNAUTHORIZED);
    assert_eq!(wrong["detail"], unknown["detail"]);
    assert_eq!(wrong["type"], unknown["type"]);

    // Enough failures lock the account: even the right password waits, told for how long.
    let mut throttled = None;
    for _ in 0..10 {
        let reply = garage
            .call_as(
                None,
                Method::POST,
                "/api/auth/login",
                login(&garage.owner_email, "still wrong"),
            )
            .await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(reply);
            break;
        }
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    }
    let throttled = throttled.expect("never throttled");
    let retry_after: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    garage
        .call_as(
            None,
            Method::POST,
            "/api/auth/login",
            login(&garage.owner_email, OWNER_PASSWORD),
        )
        .await
        .problem(StatusCode::TOO_MANY_REQUESTS);
    garage.stop().await;
}

/// Missing, malformed, expired, foreign, tampered, unsigned and unknown-key tokens: each is
/// 401 with a challenge, and nothing is read or written.
#[sqlx::test]
async fn bad_tokens_are_refused_with_a_challenge(pool: PgPool) {
    let garage = Garage::start(pool).await;
    let missing = garage
        .call_as(None, Method::GET, "/api/customers", None)
        .await;
    assert_eq!(
        missing.header("www-authenticate"),
        Some(r#"Bearer realm="carerp""#)
    );
    missing.problem(StatusCode::UNAUTHORIZED);

    let key = testing::signing_key();
    let now = chrono::Utc::now().timestamp();
    let claims = |tenant: &str, exp: i64| Claims {
        sub: uuid::Uuid::now_v7(),
        tenant: tenant.into(),
        role: Role::Owner,
        sid: uuid::Uuid::now_v7(),
        iat: now - 60,
        exp,
        kid: key.kid().into(),
    };
    let expired = key.sign(&claims(&garage.tenant, now - 30)).unwrap();
    let foreign = key.sign(&claims("another-garage", now + 600)).unwrap();
    let stranger = SigningKey::generate("other-kid");
    let unknown_kid = stranger.sign(&claims(&garage.tenant, now + 600)).unwrap();
    let impostor = SigningKey::generate(key.kid());
    let forged = impostor.sign(&claims(&garage.tenant, now + 600)).unwrap();
    let valid = key.sign(&claims(&garage.tenant, now + 600)).unwrap();
    let parts: Vec<&str> = valid.expose().split('.').collect();
    let unsigned = format!(
        "{}.{}.",
        base64_url(r#"{"alg":"none","typ":"JWT","kid":"test"}"#),
        parts[1]
    );
    let tampered = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);
    for (case, header, detail) in [
        ("basic", "Basic b3duZXI6cHc=".to_string(), "not `Bearer"),
        ("empty bearer", "Bearer ".to_string(), "not `Bearer"),
        ("garbage", "Bearer not-a-token".to_string(), "not a valid"),
        ("expired", format!("Bearer {}", expired.expose()), "expired"),
        (
            "other tenant",
            format!("Bearer {}", foreign.expose()),
            "another tenant",
        ),
        (
            "unknown kid",
            format!("Bearer {}", unknown_kid.expose()),
            "unknown key",
        ),
        (
            "forged",
            format!("Bearer {}", forged.expose()),
            "not a valid",
        ),
        ("alg none", format!("Bearer {unsigned}"), "not a valid"),
        ("tampered", format!("Bearer {tampered}"), "not a valid"),
    ] {
        let reply = Reply::from(
            garage
                .http
                .post(garage.url("/api/customers"))
                .header("authorization", header)
                .header("content-type", "application/json")
                .body(json!({"name": "Mallory", "phone": "+4930123456"}).to_string())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|c| c.starts_with("Bearer")),
            "{case}"
        );
        let problem = reply.problem(StatusCode::UNAUTHORIZED);
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{case}: {problem}"
        );
    }
    let customers = garage.get("/api/customers").await.expect(StatusCode::OK);
    assert_eq!(customers["items"].as_array().unwrap().len(), 0);
    // The docs stay public.
    let docs = garage
        .call_as(None, Method::GET, "/docs/openapi.json", None)
        .await;
    assert_eq!(docs.status, StatusCode::OK);
    garage.stop().await;
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

const OWNER: &str = "OWNER";
const ADVISOR: &str = "SERVICE_ADVISOR";
const TECHNICIAN: &str = "TECHNICIAN";
const PARTS: &str = "PARTS_MANAGER";
const ACCOUNTANT: &str = "ACCOUNTANT";
const EVERYONE: &[&str] = &[OWNER, ADVISOR, TECHNICIAN, PARTS, ACCOUNTANT];

/// Each role on each route, against what a garage expects of the roles (written here from
/// the roles' descriptions, not from the permission table it checks): allowed calls may
/// fail for other reasons (404, 409, 422), refused ones are 403 naming the permission.
#[sqlx::test]
async fn every_role_on_every_route(pool: PgPool) {
    let garage = Garage::start(pool).await;
    let (customer, vehicle) = garage
        .customer_with_vehicle("Rolf Roles", "WVWZZZ1KZAW000777")
        .await;
    let part = garage.part("RT-1", 10, 0).await;
    let part = part["id"].as_str().unwrap().to_string();
    let order = garage
        .post(
            "/api/work-orders",
            json!({"customerId": customer, "vehicleId": vehicle, "complaint": "Noise"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let order = order["id"].as_str().unwrap().to_string();
    let other = garage
        .post(
            "/api/work-orders",
            json!({"customerId": customer, "vehicleId": vehicle, "complaint": "Brakes"}),
        )
        .await
        .expect(StatusCode::CREATED);
    for status in ["IN_PROGRESS", "COMPLETED"] {
        garage
            .put(
                &format!("/api/work-orders/{}/status", other["id"].as_str().unwrap()),
                json!({"status": status}),
            )
            .await
            .expect(StatusCode::OK);
    }
    let completed = garage
        .get(&format!(
            "/api/work-orders/{}",
            other["id"].as_str().unwrap()
        ))
        .await
        .expect(StatusCode::OK);
    garage.invoice(&completed).await;
    let invoices = garage.get("/api/invoices").await.expect(StatusCode::OK);
    let invoice = invoices["items"][0]["id"].as_str().unwrap().to_string();
    let nobody = "0192f0c1-0000-7000-8000-000000000000";

    let money = json!({"amountMinor": 100, "currency": "EUR"});
    let routes: Vec<(Method, String, Option<Value>, &[&str])> = vec![
        (Method::GET, "/api/customers".into(), None, EVERYONE),
        (
            Method::POST,
            "/api/customers".into(),
            Some(json!({"name": "New One", "phone": "+4930123456"})),
            &[OWNER, ADVISOR],
        ),
        (
            Method::GET,
            format!("/api/customers/{customer}"),
            None,
            EVERYONE,
        ),
        (
            Method::PUT,
            format!("/api/customers/{customer}"),
            Some(json!({"name": "Rolf Roles", "phone": "+4930123456"})),
            &[OWNER, ADVISOR],
        ),
        (
            Method::GET,
            format!("/api/customers/{customer}/vehicles"),
            None,
            EVERYONE,
        ),
        (
            Method::POST,
            format!("/api/customers/{customer}/vehicles"),
            Some(json!({"vin": "WVWZZZ1KZAW000778", "make": "VW", "model": "Polo", "year": 2020})),
            &[OWNER, ADVISOR],
        ),
        (Method::GET, "/api/vehicles".into(), None, EVERYONE),
        (
            Method::GET,
            format!("/api/vehicles/{vehicle}"),
            None,
            EVERYONE,
        ),
        (
            Method::PUT,
            format!("/api/vehicles/{vehicle}"),
            Some(
                json!({"make": "VW", "model": "Golf", "year": 2019, "licensePlate": "B-XY 123", "mileage": 42000}),
            ),
            &[OWNER, ADVISOR],
        ),
        (Method::GET, "/api/work-orders".into(), None, EVERYONE),
        (
            Method::POST,
            "/api/work-orders".into(),
            Some(json!({"customerId": customer, "vehicleId": vehicle, "complaint": "Rattle"})),
            &[OWNER, ADVISOR],
        ),
        (
            Method::GET,
            format!("/api/work-orders/{order}"),
            None,
            EVERYONE,
        ),
        (
            Method::PUT,
            format!("/api/work-orders/{order}/notes"),
            Some(json!({"notes": "checked"})),
            &[OWNER, ADVISOR, TECHNICIAN],
        ),
        (
            Method::POST,
            format!("/api/work-orders/{order}/line-items"),
            Some(json!({"partId": part, "quantity": 1})),
            &[OWNER, ADVISOR, TECHNICIAN],
        ),
        (
            Method::DELETE,
            format!("/api/work-orders/{order}/line-items/{nobody}"),
            None,
            &[OWNER, ADVISOR, TECHNICIAN],
        ),
        (
            Method::POST,
            format!("/api/work-orders/{order}/labor"),
            Some(json!({"description": "Diagnosis", "minutes": 30})),
            &[OWNER, ADVISOR, TECHNICIAN],
        ),
        (
            Method::POST,
            format!("/api/work-orders/{order}/labor"),
            Some(json!({"description": "Diagnosis", "minutes": 30, "hourlyRate": money})),
            &[OWNER, ADVISOR],
        ),
        (
            Method::DELETE,
            format!("/api/work-orders/{order}/labor/{nobody}"),
            None,
            &[OWNER, ADVISOR, TECHNICIAN],
        ),
        (
            Method::POST,
            format!("/api/work-orders/{order}/retry-reservation"),
            None,
            &[OWNER, ADVISOR, PARTS],
        ),
        (
            Method::PUT,
            format!("/api/work-orders/{order}/status"),
            Some(json!({"status": "IN_PROGRESS"})),
            &[OWNER, ADVISOR, TECHNICIAN],
        ),
        (
            Method::PUT,
            format!("/api/work-orders/{order}/status"),
            Some(json!({"status": "CANCELLED", "reason": "declined"})),
            &[OWNER, ADVISOR],
        ),
        (Method::GET, "/api/parts".into(), None, EVERYONE),
        (
            Method::POST,
            "/api/parts".into(),
            Some(json!({"sku": "RT-2", "name": "Bulb", "unitCost": money, "unitPrice": money})),
            &[OWNER, PARTS],
        ),
        (Method::GET, "/api/parts/low-stock".into(), None, EVERYONE),
        (Method::GET, format!("/api/parts/{part}"), None, EVERYONE),
        (
            Method::PUT,
            format!("/api/parts/{part}"),
            Some(json!({"location": "B-2"})),
            &[OWNER, PARTS],
        ),
        (
            Method::POST,
            format!("/api/parts/{part}/stock-adjustments"),
            Some(json!({"kind": "RECEIPT", "delta": 1, "reason": "delivery"})),
            &[OWNER, PARTS],
        ),
        (
            Method::GET,
            format!("/api/parts/{part}/movements"),
            None,
            EVERYONE,
        ),
        (
            Method::GET,
            "/api/invoices".into(),
            None,
            &[OWNER, ADVISOR, ACCOUNTANT],
        ),
        (
            Method::GET,
            format!("/api/invoices/{invoice}"),
            None,
            &[OWNER, ADVISOR, ACCOUNTANT],
        ),
        (
            Method::POST,
            format!("/api/invoices/{invoice}/payments"),
            Some(json!({"amount": money, "method": "CASH"})),
            &[OWNER, ACCOUNTANT],
        ),
        (
            Method::POST,
            format!("/api/invoices/{invoice}/void"),
            Some(json!({"reason": "wrong customer"})),
            &[OWNER, ACCOUNTANT],
        ),
        (
            Method::PUT,
            format!("/api/invoices/{invoice}/status"),
            Some(json!({"status": "VOID", "reason": "wrong customer"})),
            &[OWNER, ACCOUNTANT],
        ),
        (Method::GET, "/api/auth/me".into(), None, EVERYONE),
        (
            Method::PUT,
            "/api/auth/password".into(),
            Some(json!({"currentPassword": "wrong", "newPassword": "Zq8!vN3#tY6w-new"})),
            EVERYONE,
        ),
        (Method::GET, "/api/users".into(), None, &[OWNER]),
        (
            Method::POST,
            "/api/users".into(),
            Some(json!({"email": "x@example.com", "displayName": "X", "role": "TECHNICIAN"})),
            &[OWNER],
        ),
        (Method::GET, format!("/api/users/{nobody}"), None, &[OWNER]),
        (
            Method::PUT,
            format!("/api/users/{nobody}"),
            Some(json!({"displayName": "Y"})),
            &[OWNER],
        ),
        (
            Method::POST,
            format!("/api/users/{nobody}/password-reset"),
            None,
            &[OWNER],
        ),
        (Method::GET, "/api/api-tokens".into(), None, &[OWNER]),
        (
            Method::POST,
            "/api/api-tokens".into(),
            Some(
                json!({"name": "shop", "role": "ACCOUNTANT", "expiresAt": "2000-01-01T00:00:00Z"}),
            ),
            &[OWNER],
        ),
        (
            Method::DELETE,
            format!("/api/api-tokens/{nobody}"),
            None,
            &[OWNER],
        ),
        (Method::GET, "/api/audit".into(), None, &[OWNER]),
    ];
    let mut people = vec![(OWNER, garage.token.clone())];
    for role in [ADVISOR, TECHNICIAN, PARTS, ACCOUNTANT] {
        people.push((role, garage.person(role).await.1));
    }
    // The dashboard answers every role, leaving out what the role may not see.
    for (role, token) in &people {
        let dashboard = garage
            .call_as(Some(token), Method::GET, "/api/dashboard", None)
            .await
            .expect(StatusCode::OK);
        assert_eq!(
            dashboard["complete"],
            *role != TECHNICIAN && *role != PARTS,
            "{role}: {dashboard}"
        );
    }
    let mut wrong = Vec::new();
    for (method, path, body, allowed) in &routes {
        for (role, token) in &people {
            let key = uuid::Uuid::now_v7().to_string();
            let reply = garage
                .request(Some(token), method.clone(), path, body.clone(), Some(&key))
                .await;
            let refused = reply.status == StatusCode::FORBIDDEN;
            if reply.status == StatusCode::UNAUTHORIZED || refused == allowed.contains(role) {
                wrong.push(format!(
                    "{role} {method} {path}: {} {}",
                    reply.status, reply.text
                ));
            } else if refused {
                let problem = reply.problem(StatusCode::FORBIDDEN);
                let detail = problem["detail"].as_str().unwrap();
                assert!(
                    detail.contains(role) && detail.contains("lacks the permission"),
                    "{detail}"
                );
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    garage.stop().await;
}

/// People management: a deactivated person's tokens stop working at once, and owners read
/// who did what in the audit trail.
#[sqlx::test]
async fn deactivation_ends_sessions_and_the_audit_trail_says_who(pool: PgPool) {
    let garage = Garage::start(pool).await;
    let (technician, token) = garage.person(TECHNICIAN).await;
    garage
        .call_as(Some(&token), Method::GET, "/api/work-orders", None)
        .await
        .expect(StatusCode::OK);
    let updated = garage
        .put(
            &format!("/api/users/{technician}"),
            json!({"active": false}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(updated["active"], false);
    refused_soon(&garage, &token, "/api/work-orders").await;
    // Signing in again is refused like a wrong password.
    garage
        .call_as(
            None,
            Method::POST,
            "/api/auth/login",
            login(updated["email"].as_str().unwrap(), common::STAFF_PASSWORD),
        )
        .await
        .problem(StatusCode::UNAUTHORIZED);

    // The stock ledger and the audit trail name the token's user.
    let part = garage.part("AU-1", 1, 0).await;
    garage
        .post(
            &format!(
                "/api/parts/{}/stock-adjustments",
                part["id"].as_str().unwrap()
            ),
            json!({"kind": "ADJUSTMENT", "delta": -1, "reason": "broken"}),
        )
        .await
        .expect(StatusCode::OK);
    let me = garage.get("/api/auth/me").await.expect(StatusCode::OK);
    let mut found = Value::Null;
    for _ in 0..100 {
        found = garage
            .get(&format!(
                "/api/audit?action=stock.adjusted&actorId={}",
                me["id"].as_str().unwrap()
            ))
            .await
            .expect(StatusCode::OK);
        if !found["items"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let entry = &found["items"][0];
    assert_eq!(entry["service"], "inventory", "{found}");
    assert_eq!(entry["details"]["delta"], -1, "{found}");
    let changes = garage
        .get("/api/audit?action=user.updated")
        .await
        .expect(StatusCode::OK);
    assert_eq!(changes["items"][0]["actorId"], me["id"], "{changes}");
    garage.stop().await;
}

/// An integration's API token works as a bearer token with its role until revoked.
#[sqlx::test]
async fn api_tokens_act_with_their_role_until_revoked(pool: PgPool) {
    let garage = Garage::start(pool).await;
    let expires = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let created = garage
        .post(
            "/api/api-tokens",
            json!({"name": "accounting export", "role": "ACCOUNTANT", "expiresAt": expires}),
        )
        .await
        .expect(StatusCode::CREATED);
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("cet_"), "{created}");
    let listed = garage.get("/api/api-tokens").await.expect(StatusCode::OK);
    assert!(
        !listed.to_string().contains(&token),
        "the token is shown once only"
    );

    garage
        .call_as(Some(&token), Method::GET, "/api/invoices", None)
        .await
        .expect(StatusCode::OK);
    let denied = garage
        .call_as(
            Some(&token),
            Method::POST,
            "/api/customers",
            Some(json!({"name": "Via Token", "phone": "+4930123456"})),
        )
        .await
        .problem(StatusCode::FORBIDDEN);
    assert!(
        denied["detail"].as_str().unwrap().contains("ACCOUNTANT"),
        "{denied}"
    );
    let id = created["apiToken"]["id"].as_str().unwrap();
    garage
        .delete(&format!("/api/api-tokens/{id}"))
        .await
        .expect(StatusCode::OK);
    refused_soon(&garage, &token, "/api/invoices").await;
    let unknown = format!("{token}x");
    garage
        .call_as(Some(&unknown), Method::GET, "/api/invoices", None)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    garage.stop().await;
}
