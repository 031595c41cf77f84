//! Turning refusals into gRPC statuses that tell the caller exactly what was wrong.
//!
//! Field errors travel as `google.rpc.BadRequest` details, so the BFF can show each one
//! next to its field; the message repeats them for people reading logs or grpcurl output.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// One invalid field: its path in the request (`address.country`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl std::fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Collects every violation of a request, so the caller learns about all of them at once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Records the error of a check, if any.
    pub fn check(&mut self, result: Result<(), FieldViolation>) {
        if let Err(violation) = result {
            self.0.push(violation);
        }
    }

    /// A trimmed text field that must be present; see [`text`].
    pub fn required_text(&mut self, field: &str, value: &str, max: usize) -> String {
        self.text(field, value, max, true)
    }

    /// A trimmed text field, possibly empty; see [`text`].
    pub fn optional_text(&mut self, field: &str, value: &str, max: usize) -> String {
        self.text(field, value, max, false)
    }

    fn text(&mut self, field: &str, value: &str, max: usize, required: bool) -> String {
        text(field, value, max, required).unwrap_or_else(|violation| {
            self.0.push(violation);
            value.trim().to_string()
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[FieldViolation] {
        &self.0
    }

    /// `Ok(value)` when nothing was recorded.
    pub fn into_result<T>(self, value: T) -> Result<T, Violations> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl From<FieldViolation> for Violations {
    fn from(violation: FieldViolation) -> Self {
        Self(vec![violation])
    }
}

impl std::fmt::Display for Violations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "invalid request: {}", parts.join("; "))
    }
}

impl std::error::Error for Violations {}

/// Violations a status carries at most. It travels in HTTP/2 trailers, message and details
/// both, which the peer bounds (16 KiB by default): a request wrong in a hundred places would
/// otherwise come back as a broken stream instead of a refusal.
pub const MAX_REPORTED_VIOLATIONS: usize = 20;

/// INVALID_ARGUMENT with a `BadRequest` detail per field, the first
/// [`MAX_REPORTED_VIOLATIONS`] of them; the message says how many more there are.
pub fn invalid_argument(violations: &Violations) -> Status {
    let all = violations.as_slice();
    let reported = &all[..all.len().min(MAX_REPORTED_VIOLATIONS)];
    let mut details = ErrorDetails::new();
    for v in reported {
        details.add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    let parts: Vec<String> = reported.iter().map(ToString::to_string).collect();
    let mut message = format!("invalid request: {}", parts.join("; "));
    if all.len() > reported.len() {
        message.push_str(&format!(
            "; and {} more (fix these first)",
            all.len() - reported.len()
        ));
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// INVALID_ARGUMENT for a single field.
pub fn invalid_field(field: &str, description: impl Into<String>) -> Status {
    invalid_argument(&FieldViolation::new(field, description).into())
}

/// Reads the field violations back from a status (for clients and tests).
pub fn field_violations(status: &Status) -> Vec<FieldViolation> {
    status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|v| FieldViolation::new(v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses a UUID field of a request.
pub fn parse_id(field: &str, value: &str) -> Result<uuid::Uuid, FieldViolation> {
    if value.trim().is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    uuid::Uuid::parse_str(value.trim())
        .map_err(|_| FieldViolation::new(field, format!("{value:?} is not a valid id (UUID)")))
}

/// A pragmatic email address check, for customers and people alike: one `@`, a local part of
/// at most 64 characters, a dotted domain, no spaces, at most 254 characters.
pub fn email_address(field: &str, email: &str) -> Result<(), FieldViolation> {
    let invalid = || FieldViolation::new(field, format!("{email:?} is not an email address"));
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let labels_ok = domain.split('.').count() >= 2
        && domain.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if local.is_empty() || local.len() > 64 || domain.contains('@') || !labels_ok {
        return Err(invalid());
    }
    Ok(())
}

/// A free-text field, trimmed: present when `required`, at most `max` characters, and free of
/// control characters other than tab and line breaks (PostgreSQL stores no NUL in text, and
/// escape sequences have no place in names or notes).
pub fn text(
    field: &str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<String, FieldViolation> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    let len = value.chars().count();
    if len > max {
        return Err(FieldViolation::new(
            field,
            format!("must be at most {max} characters, is {len}"),
        ));
    }
    let forbidden = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r');
    if let Some(position) = value.chars().position(forbidden) {
        return Err(FieldViolation::new(
            field,
            format!(
                "must not contain control characters (other than tab and line breaks); found one at character {}",
                position + 1
            ),
        ));
    }
    Ok(value.to_string())
}

/// A database failure the caller cannot fix by changing the request: logged in full,
/// reported without internals. What [`crate::transient`] calls transient (connection lost,
/// server shutting down, pool exhausted, a serialization failure or deadlock, a lock or
/// statement timeout) is UNAVAILABLE: the same call succeeds later, and clients retry it.
pub fn database_error(err: &sqlx::Error) -> Status {
    if crate::transient::is_transient_database(err) {
        tracing::warn!(error = %err, "database unavailable");
        return Status::unavailable("database unavailable, retry later");
    }
    let code = match err {
        sqlx::Error::Database(db) => db.code().map(|c| c.to_string()),
        _ => None,
    };
    match code.as_deref() {
        // Text the database cannot store (a NUL byte, an invalid escape) that no field check
        // caught: the request is at fault, not the server.
        Some("22021" | "22P05") => {
            tracing::warn!(error = %err, "text the database cannot store");
            Status::invalid_argument(
                "a text value contains a character that cannot be stored (such as NUL)",
            )
        }
        _ => {
            tracing::error!(error = %err, "database error");
            Status::internal("internal database error")
        }
    }
}

/// A refusal of [`crate::idempotency`]: a key reused for a different request is
/// INVALID_ARGUMENT on `idempotency_key`, naming the key (422 from the BFF); its database
/// failing is mapped as any database error.
pub fn idempotency_error(err: &crate::idempotency::IdempotencyError) -> Status {
    use crate::idempotency::IdempotencyError;
    match err {
        IdempotencyError::Reused { .. } => {
            invalid_argument(&FieldViolation::new("idempotency_key", err.to_string()).into())
        }
        IdempotencyError::Database(db) => database_error(db),
        IdempotencyError::Unreadable { .. } => {
            tracing::error!(error = %err, "idempotency record unreadable");
            Status::internal("internal error")
        }
    }
}

/// True when `err` is a unique violation of the named constraint.
pub fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation() && db.constraint() == Some(constraint)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_wrong_in_many_places_reports_the_first_twenty_and_counts_the_rest() {
        let mut v = Violations::new();
        for n in 0..500 {
            v.add(
                format!("items[{n}].label"),
                format!("\"{n}\" is already an item of section \"Brakes and tyres\""),
            );
        }
        let status = invalid_argument(&v);
        let reported = field_violations(&status);
        assert_eq!(reported, &v.as_slice()[..MAX_REPORTED_VIOLATIONS]);
        assert!(
            status
                .message()
                .ends_with("; and 480 more (fix these first)"),
            "{}",
            status.message()
        );
        // Both travel in the trailers; together well under the 16 KiB a peer accepts.
        assert!(status.message().len() + status.details().len() < 8 * 1024);
    }

    #[test]
    fn invalid_argument_carries_every_field_in_details_and_message() {
        let mut v = Violations::new();
        v.add("name", "is required");
        v.add("email", "\"x\" is not an email address");
        let status = invalid_argument(&v);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid request: name: is required; email: \"x\" is not an email address"
        );
        assert_eq!(field_violations(&status), v.as_slice());
    }

    #[test]
    fn text_fields_are_trimmed_required_and_bounded() {
        let mut v = Violations::new();
        assert_eq!(v.required_text("name", "  Jane ", 10), "Jane");
        assert_eq!(v.optional_text("notes", "   ", 10), "");
        assert!(v.is_empty());
        v.required_text("name", "  ", 10);
        v.optional_text("notes", "abcdefghijk", 10);
        // Characters, not bytes.
        assert_eq!(
            text("city", &"é".repeat(10), 10, false).unwrap(),
            "é".repeat(10)
        );
        assert_eq!(
            v.to_string(),
            "invalid request: name: is required; notes: must be at most 10 characters, is 11"
        );
    }

    /// What no field check caught and the database cannot store is still the caller's fault.
    #[sqlx::test(migrations = false)]
    async fn text_the_database_cannot_store_is_invalid_argument(pool: sqlx::PgPool) {
        let err = sqlx::query("SELECT $1::text")
            .bind("a\u{0}b")
            .execute(&pool)
            .await
            .unwrap_err();
        let status = database_error(&err);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("NUL"), "{status:?}");
    }

    #[test]
    fn text_with_nul_or_other_control_characters_is_refused() {
        let mut v = Violations::new();
        v.optional_text("notes", "line one\nline two\tindented", 100);
        assert!(v.is_empty(), "{v}");
        v.required_text("complaint", "brakes\u{0}", 100);
        v.optional_text("reason", "a\u{1b}[31m", 100);
        assert_eq!(
            v.to_string(),
            "invalid request: complaint: must not contain control characters (other than tab and line breaks); found one at character 7; \
             reason: must not contain control characters (other than tab and line breaks); found one at character 2"
        );
    }

    #[test]
    fn transient_database_errors_are_unavailable_and_others_internal() {
        assert_eq!(
            database_error(&sqlx::Error::PoolTimedOut).code(),
            Code::Unavailable
        );
        assert_eq!(
            database_error(&sqlx::Error::Protocol("cut".into())).code(),
            Code::Unavailable
        );
        let internal = database_error(&sqlx::Error::ColumnNotFound("secret_column".into()));
        assert_eq!(internal.code(), Code::Internal);
        assert!(
            !internal.message().contains("secret_column"),
            "{internal:?}"
        );
    }

    /// A real serialization failure of a real server: retry later, not "conflict".
    #[sqlx::test(migrations = false)]
    async fn a_serialization_failure_is_unavailable(pool: sqlx::PgPool) {
        sqlx::query("CREATE TABLE c (id INT PRIMARY KEY, n INT)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO c VALUES (1, 0)")
            .execute(&pool)
            .await
            .unwrap();
        let mut first = pool.begin().await.unwrap();
        let mut second = pool.begin().await.unwrap();
        for tx in [&mut first, &mut second] {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                .execute(&mut **tx)
                .await
                .unwrap();
            sqlx::query("SELECT n FROM c WHERE id = 1")
                .execute(&mut **tx)
                .await
                .unwrap();
        }
        sqlx::query("UPDATE c SET n = n + 1 WHERE id = 1")
            .execute(&mut *first)
            .await
            .unwrap();
        first.commit().await.unwrap();
        let err = sqlx::query("UPDATE c SET n = n + 1 WHERE id = 1")
            .execute(&mut *second)
            .await
            .unwrap_err();
        let status = database_error(&err);
        assert_eq!(status.code(), Code::Unavailable, "{err}: {status:?}");
    }

    #[test]
    fn parse_id_names_the_field() {
        assert_eq!(parse_id("id", "").unwrap_err().description, "is required");
        assert_eq!(
            parse_id("customer_id", "nope").unwrap_err().field,
            "customer_id"
        );
        assert!(parse_id("id", "0192f0c1-6b2a-7c3d-8e4f-0123456789ab").is_ok());
    }
}
