//! A whole garage for the web app's tests: the BFF's own harness
//! (`services/bff/tests/common`, included below rather than copied), started with the web
//! app's pages in front of the services; [`Browser`] is a cookie-keeping HTTP client for the
//! pages. The harness's JSON helpers carry the owner's access token (for setting up data
//! through the REST API).

#![allow(dead_code)]

#[path = "../../../bff/tests/common/mod.rs"]
mod garage;

pub use garage::*;

use carerp_bff::BffConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

impl Garage {
    /// The whole garage, its HTTP entry serving the pages beside `/api`.
    /// A garage with the pages, named and addressed as its printouts show it.
    pub async fn with_pages(pool: PgPool) -> Self {
        Self::with_pages_and(pool, |config| {
            config.service.settings.garage = carerp_kit::config::GarageIdentity {
                name: "Hopper & Sons Motors".into(),
                address: "12 Harbour Road\nPortsmouth PO1 3AB".into(),
                tax_id: "GB 123 4567 89".into(),
            }
        })
        .await
    }

    /// [`Garage::with_pages`]; `adjust` may change the BFF's configuration first.
    pub async fn with_pages_and(pool: PgPool, adjust: impl FnOnce(&mut BffConfig)) -> Self {
        Self::start_serving(pool, adjust, carerp_web::start).await
    }
}

/// A cookie-keeping client for the pages that sends `Origin` like a browser on this site;
/// redirects are not followed, so a test sees them.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub html: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    pub fn set_cookie(&self) -> Option<&str> {
        self.headers.get("set-cookie").and_then(|v| v.to_str().ok())
    }
}

impl Browser {
    pub fn new(base: &str) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("origin", base.parse().unwrap());
        Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .default_headers(headers)
                .build()
                .unwrap(),
            base: base.to_string(),
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        Self::page(
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        Self::page(
            self.http
                .post(format!("{}{path}", self.base))
                .form(form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn page(response: reqwest::Response) -> Page {
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            html: response.text().await.unwrap(),
        }
    }

    /// Signs in through the sign-in form; the cookie is kept.
    pub async fn sign_in(&self, email: &str, password: &str) -> Page {
        let page = self
            .post("/sign-in", &[("email", email), ("password", password)])
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
        page
    }
}

impl Garage {
    /// A browser signed in as the owner.
    pub async fn owner_browser(&self) -> Browser {
        let browser = Browser::new(&self.base);
        browser
            .sign_in(&self.owner_email.clone(), OWNER_PASSWORD)
            .await;
        browser
    }

    /// A browser signed in as a new person of `role` (their password already changed).
    pub async fn browser_as(&self, role: &str) -> Browser {
        let email = format!(
            "{}-{}@example.com",
            role.to_lowercase(),
            &uuid::Uuid::now_v7().simple().to_string()[24..]
        );
        let created = self
            .post(
                "/api/users",
                json!({"email": email, "displayName": format!("A {role}"), "role": role}),
            )
            .await
            .expect(StatusCode::CREATED);
        let one_time = created["oneTimePassword"].as_str().unwrap().to_string();
        let first = self.sign_in(&email, &one_time).await;
        self.call_as(
            Some(&first),
            Method::PUT,
            "/api/auth/password",
            Some(json!({"currentPassword": one_time, "newPassword": STAFF_PASSWORD})),
        )
        .await
        .expect(StatusCode::OK);
        let browser = Browser::new(&self.base);
        browser.sign_in(&email, STAFF_PASSWORD).await;
        browser
    }

    /// A work order for a new customer and vehicle, through the REST API: its JSON.
    pub async fn work_order(&self) -> Value {
        let vin = format!("WVWZZZ1JZ3W{:06}", rand_digits());
        let (customer, vehicle) = self.customer_with_vehicle("Wanda Web", &vin).await;
        self.post(
            "/api/work-orders",
            json!({"customerId": customer, "vehicleId": vehicle, "complaint": "Brakes squeal", "odometerKm": 42100}),
        )
        .await
        .expect(StatusCode::CREATED)
    }
}

fn rand_digits() -> u32 {
    (uuid::Uuid::now_v7().as_u128() % 1_000_000) as u32
}
