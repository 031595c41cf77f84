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

/// A real SMTP server (`mailin-embedded`) on an ephemeral port of this machine, keeping every
/// message it accepts. [`MailServer::refuse`] makes it answer 550 to each recipient, as a
/// mail server that fails; it then keeps nothing. Its threads live as long as the test
/// binary (the crate has no shutdown), which is harmless for a test.
#[derive(Clone)]
pub struct MailServer {
    pub addr: std::net::SocketAddr,
    received: std::sync::Arc<std::sync::Mutex<Vec<Mail>>>,
    refusing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// One message as the SMTP server received it.
#[derive(Clone, Debug, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The whole message, headers and body, as sent (MIME encoded).
    pub data: String,
}

impl Mail {
    /// The message with quoted-printable soft breaks and escapes undone: the text parts
    /// readable, whichever of 7bit or quoted-printable the sender chose.
    pub fn text(&self) -> String {
        let bytes = self.data.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' {
                if bytes[i + 1..].starts_with(b"\r\n") {
                    i += 3;
                    continue;
                }
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The first link in the message that starts with `prefix`, up to the next space, quote
    /// or line end.
    pub fn link(&self, prefix: &str) -> String {
        let text = self.text();
        let start = text
            .find(prefix)
            .unwrap_or_else(|| panic!("a link {prefix}... in {text}"));
        text[start..]
            .split(|c: char| c.is_whitespace() || c == '"' || c == '<')
            .next()
            .unwrap()
            .to_string()
    }
}

#[derive(Clone)]
struct Inbox {
    received: std::sync::Arc<std::sync::Mutex<Vec<Mail>>>,
    refusing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The message of this connection (the server clones the handler per connection).
    current: Mail,
}

impl mailin_embedded::Handler for Inbox {
    // Refused at RCPT: mailin keeps its DATA state after an error at the end of DATA, so the
    // client's QUIT would never be answered there.
    fn rcpt(&mut self, _to: &str) -> mailin_embedded::Response {
        if self.refusing.load(std::sync::atomic::Ordering::SeqCst) {
            return mailin_embedded::response::NO_MAILBOX;
        }
        mailin_embedded::response::OK
    }

    fn data_start(
        &mut self,
        _domain: &str,
        from: &str,
        _is8bit: bool,
        to: &[String],
    ) -> mailin_embedded::Response {
        self.current = Mail {
            from: from.to_string(),
            to: to.to_vec(),
            data: String::new(),
        };
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.push_str(&String::from_utf8_lossy(buf));
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let mail = std::mem::take(&mut self.current);
        self.received.lock().unwrap().push(mail);
        mailin_embedded::response::OK
    }
}

impl MailServer {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = std::sync::Arc::default();
        let refusing = std::sync::Arc::default();
        let mut server = mailin_embedded::Server::new(Inbox {
            received: std::sync::Arc::clone(&received),
            refusing: std::sync::Arc::clone(&refusing),
            current: Mail::default(),
        });
        server
            .with_name("mail.test")
            .with_ssl(mailin_embedded::SslConfig::None)
            .unwrap()
            .with_num_threads(2)
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            // It serves until the test binary ends; an error there has no one to tell.
            let _ = server.serve();
        });
        Self {
            addr,
            received,
            refusing,
        }
    }

    /// `smtp://host:port` of this server (plain SMTP, no TLS, as on a test machine).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Mail> {
        self.received.lock().unwrap().clone()
    }

    pub fn refuse(&self, refusing: bool) {
        self.refusing
            .store(refusing, std::sync::atomic::Ordering::SeqCst);
    }
}

/// An address where no SMTP server answers: a port this machine just freed.
pub fn no_mail_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("smtp://{addr}")
}

impl Garage {
    /// [`Garage::with_pages`] emailing estimates through `smtp_url` from
    /// `Hopper & Sons <estimates@hopper.example>`.
    pub async fn with_email(pool: PgPool, smtp_url: &str) -> Self {
        let email = carerp_bff::email::EmailConfig::new(
            smtp_url,
            "Hopper & Sons <estimates@hopper.example>",
        )
        .unwrap();
        Self::with_pages_and(pool, move |config| {
            config.service.settings.garage = carerp_kit::config::GarageIdentity {
                name: "Hopper & Sons Motors".into(),
                address: "12 Harbour Road\nPortsmouth PO1 3AB".into(),
                tax_id: "GB 123 4567 89".into(),
            };
            config.email = Some(email);
        })
        .await
    }
}
