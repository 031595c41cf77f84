//! Estimates sent to the customer by email (`docs/estimates.md`, "By email").
//!
//! The BFF sends them: it alone holds the approval token (answered once by the work order
//! service, never stored), the garage's public address and the customer client, so the link
//! never travels further than from the BFF to the mail server. SMTP is `lettre` over tokio
//! with rustls; `CARERP_SMTP_URL` is a secret (it may carry a password) and only appears
//! redacted, in the start-up line and in [`EmailConfig`]'s `Debug`. Neither the link nor the
//! token is ever logged: a failed delivery is reported with the mail server's error only.

use std::fmt;
use std::time::Duration;

use askama::Template;
use carerp_kit::config::{ConfigError, redact_url};
use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// The variables of email delivery.
pub const SMTP_URL: &str = "CARERP_SMTP_URL";
pub const SMTP_FROM: &str = "CARERP_SMTP_FROM";
pub const PUBLIC_URL: &str = "CARERP_PUBLIC_URL";

/// How long one delivery may take, below the BFF's whole-request limit, so the answer can
/// still say what happened.
const SMTP_TIMEOUT: Duration = Duration::from_secs(8);

/// Where mail goes out: `CARERP_SMTP_URL` (`smtp://` or `smtps://`, optional credentials,
/// lettre's `?tls=required|opportunistic`) and the sender, `CARERP_SMTP_FROM`.
#[derive(Clone)]
pub struct EmailConfig {
    smtp_url: String,
    pub from: Mailbox,
}

impl fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailConfig")
            .field("smtp_url", &self.redacted_url())
            .field("from", &self.from.to_string())
            .finish()
    }
}

impl EmailConfig {
    /// Checks both values; the error names the variable, never the password.
    pub fn new(smtp_url: &str, from: &str) -> Result<Self, ConfigError> {
        let smtp_url = smtp_url.trim().to_string();
        let invalid = |reason: String| ConfigError::Invalid {
            name: SMTP_URL,
            value: redact_url(&smtp_url),
            reason,
        };
        if !(smtp_url.starts_with("smtp://") || smtp_url.starts_with("smtps://")) {
            return Err(invalid("expected an smtp:// or smtps:// URL".into()));
        }
        AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtp_url)
            .map_err(|err| invalid(err.to_string()))?;
        let from = from
            .trim()
            .parse::<Mailbox>()
            .map_err(|err| ConfigError::Invalid {
                name: SMTP_FROM,
                value: from.to_string(),
                reason: format!(
                    "expected an address such as Garage <estimates@garage.example>: {err}"
                ),
            })?;
        Ok(Self { smtp_url, from })
    }

    /// Both variables or neither: one alone is a mistake, not "off".
    pub fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let get = |name| lookup(name).filter(|v| !v.trim().is_empty());
        match (get(SMTP_URL), get(SMTP_FROM)) {
            (None, None) => Ok(None),
            (Some(url), Some(from)) => Self::new(&url, &from).map(Some),
            (Some(_), None) => Err(ConfigError::Missing {
                name: SMTP_FROM,
                meaning: "the sender of estimate emails; needed with CARERP_SMTP_URL",
            }),
            (None, Some(_)) => Err(ConfigError::Missing {
                name: SMTP_URL,
                meaning: "the mail server estimate emails go through; needed with CARERP_SMTP_FROM",
            }),
        }
    }

    /// The URL without its password, for logs.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.smtp_url)
    }
}

/// Sends estimates; cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// What an estimate email says: the garage, the order, the link and until when it works.
pub struct EstimateEmail<'a> {
    pub garage: &'a str,
    pub customer_name: &'a str,
    pub number: &'a str,
    pub version: i32,
    pub link: &'a str,
    /// When the link stops working, as the garage's clock reads it.
    pub expires: &'a str,
}

#[derive(Template)]
#[template(path = "estimate_email.txt")]
struct PlainBody<'a> {
    mail: &'a EstimateEmail<'a>,
}

#[derive(Template)]
#[template(path = "estimate_email.html")]
struct HtmlBody<'a> {
    mail: &'a EstimateEmail<'a>,
}

impl EstimateEmail<'_> {
    pub fn subject(&self) -> String {
        if self.garage.is_empty() {
            format!("Estimate for {}", self.number)
        } else {
            format!("{}: estimate for {}", self.garage, self.number)
        }
    }
}

/// Why a delivery failed, in words fit for the advisor (no secret, no link).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotDelivered(pub String);

impl Mailer {
    pub fn new(config: &EmailConfig) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.smtp_url)
            .map_err(|err| anyhow::anyhow!("{SMTP_URL}: {err}"))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(Self {
            transport,
            from: config.from.clone(),
        })
    }

    /// Sends one estimate email, plain text and HTML, to `to`.
    pub async fn send_estimate(
        &self,
        to: &Address,
        mail: &EstimateEmail<'_>,
    ) -> Result<(), NotDelivered> {
        let render = |err: askama::Error| NotDelivered(format!("the email was not written: {err}"));
        let plain = PlainBody { mail }.render().map_err(render)?;
        let html = HtmlBody { mail }.render().map_err(render)?;
        let recipient = Mailbox::new(
            Some(mail.customer_name.to_string()).filter(|n| !n.trim().is_empty()),
            to.clone(),
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(recipient)
            .subject(mail.subject())
            .multipart(MultiPart::alternative_plain_html(plain, html))
            .map_err(|err| NotDelivered(format!("the email was not written: {err}")))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|err| NotDelivered(describe(&err)))
    }
}

/// The mail server's answer, without the URL (lettre's errors never carry it).
fn describe(err: &lettre::transport::smtp::Error) -> String {
    if err.is_permanent() || err.is_transient() {
        format!("the mail server refused the message: {err}")
    } else if err.is_timeout() {
        "the mail server did not answer in time".into()
    } else if err.is_client() || err.is_response() {
        format!("the mail server could not be used: {err}")
    } else {
        format!("the mail server could not be reached: {err}")
    }
}

/// The origin a request came to (`Host`, and `X-Forwarded-Proto: https` behind the
/// ingress): where links point when `CARERP_PUBLIC_URL` is not set. `None` for a host that
/// is not a plain `name[:port]`.
pub fn origin_of(headers: &http::HeaderMap) -> Option<String> {
    let host = headers.get(http::header::HOST)?.to_str().ok()?;
    let plain = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !plain {
        return None;
    }
    let tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    Some(format!("{}://{host}", if tls { "https" } else { "http" }))
}

/// A customer's stored email as an address mail can go to.
pub fn recipient(email: &str) -> Option<Address> {
    email.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        let config = EmailConfig::new(
            "smtps://mailer:s3cret@smtp.example.com:465",
            "ACME Motors <estimates@acme.example>",
        )
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("smtps://mailer@smtp.example.com:465"),
            "{shown}"
        );
        let err = EmailConfig::new("http://mailer:s3cret@smtp.example.com", "a@b.example")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("CARERP_SMTP_URL="), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (url, from, name) in [
            ("smtp.example.com", "a@b.example", SMTP_URL),
            ("smtp://", "a@b.example", SMTP_URL),
            ("smtp://smtp.example.com", "not an address", SMTP_FROM),
        ] {
            let err = EmailConfig::new(url, from).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{name}=")), "{err}");
        }
    }

    #[test]
    fn both_variables_or_neither() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(EmailConfig::from_lookup(&vars(&[])).unwrap().is_none());
        let only_url = EmailConfig::from_lookup(&vars(&[(SMTP_URL, "smtp://localhost:25")]));
        assert!(only_url.unwrap_err().to_string().starts_with(SMTP_FROM));
        let only_from = EmailConfig::from_lookup(&vars(&[(SMTP_FROM, "a@b.example")]));
        assert!(only_from.unwrap_err().to_string().starts_with(SMTP_URL));
        let both = EmailConfig::from_lookup(&vars(&[
            (SMTP_URL, "smtp://localhost:2525"),
            (SMTP_FROM, "Garage <a@b.example>"),
        ]));
        assert_eq!(
            both.unwrap().unwrap().from.to_string(),
            "Garage <a@b.example>"
        );
    }

    #[test]
    fn the_email_escapes_what_it_prints() {
        let mail = EstimateEmail {
            garage: "Hopper & Sons <Motors>",
            customer_name: "Wanda",
            number: "WO-2026-000001",
            version: 1,
            link: "https://garage.example/approve/abc",
            expires: "8 May 2026, 10:00 BST",
        };
        let html = HtmlBody { mail: &mail }.render().unwrap();
        assert!(
            html.contains("Hopper &#38; Sons &#60;Motors&#62;"),
            "{html}"
        );
        let plain = PlainBody { mail: &mail }.render().unwrap();
        assert!(plain.contains("Hopper & Sons <Motors>"), "{plain}");
        assert!(
            plain.contains("https://garage.example/approve/abc"),
            "{plain}"
        );
        assert!(plain.contains("8 May 2026, 10:00 BST"), "{plain}");
        assert_eq!(
            mail.subject(),
            "Hopper & Sons <Motors>: estimate for WO-2026-000001"
        );
    }
}
