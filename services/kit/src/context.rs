//! Who asked: the caller's verified identity, and the correlation id and trace context of the
//! request being served.
//!
//! The gRPC layer puts a [`RequestContext`] into every request's extensions; handlers hand it
//! to the outbox so that events carry the ids of the request that caused them, and to
//! outgoing calls so that the next service continues the same trace.

use rand::Rng;

use crate::auth::Principal;

/// Metadata key of the correlation id, shared with the BFF.
pub const CORRELATION_HEADER: &str = "x-correlation-id";
/// The actor of work no person asked for: the saga's consumers, start-up.
pub const SYSTEM_ACTOR: &str = "system";
/// W3C trace context header.
pub const TRACEPARENT_HEADER: &str = "traceparent";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub correlation_id: String,
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits: the span that serves this request.
    pub span_id: String,
    /// The caller's span, when the request continued a trace.
    pub parent_span_id: Option<String>,
    /// The caller, from a verified access token; `None` for public methods and for work no
    /// person asked for (the saga's consumers act as the system).
    pub principal: Option<Principal>,
}

impl RequestContext {
    /// A context for work that no request caused (start-up, background jobs, tests).
    pub fn new_root() -> Self {
        Self {
            correlation_id: uuid::Uuid::now_v7().to_string(),
            trace_id: random_hex::<16>(),
            span_id: random_hex::<8>(),
            parent_span_id: None,
            principal: None,
        }
    }

    /// Continues `traceparent` when it is valid, else starts a new trace; keeps a
    /// well-formed correlation id or makes one.
    pub fn from_headers(correlation_id: Option<&str>, traceparent: Option<&str>) -> Self {
        let correlation_id = correlation_id
            .map(str::trim)
            .filter(|id| is_acceptable_correlation_id(id))
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let (trace_id, parent_span_id) = match traceparent.and_then(parse_traceparent) {
            Some((trace_id, parent)) => (trace_id, Some(parent)),
            None => (random_hex::<16>(), None),
        };
        Self {
            correlation_id,
            trace_id,
            span_id: random_hex::<8>(),
            parent_span_id,
            principal: None,
        }
    }

    /// Who did it, as recorded wherever the product says so: the user (or API token) id, or
    /// `system` for work no person asked for.
    pub fn actor(&self) -> String {
        self.principal
            .as_ref()
            .map(Principal::actor)
            .unwrap_or_else(|| SYSTEM_ACTOR.to_string())
    }

    /// The W3C `traceparent` naming this request's span as parent of what it causes.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

/// Splits a version-00 `traceparent` into trace id and parent span id.
pub fn parse_traceparent(value: &str) -> Option<(String, String)> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    };
    let all_zero = |s: &str| s.chars().all(|c| c == '0');
    if parts.next().is_some()
        || version != "00"
        || !hex(trace_id, 32)
        || !hex(span_id, 16)
        || !hex(flags, 2)
        || all_zero(trace_id)
        || all_zero(span_id)
    {
        return None;
    }
    Some((trace_id.to_string(), span_id.to_string()))
}

/// Correlation ids come from outside; anything long or odd is replaced rather than logged.
fn is_acceptable_correlation_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    rand::rng().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn continues_an_incoming_trace() {
        let cx = RequestContext::from_headers(Some("order-42"), Some(PARENT));
        assert_eq!(cx.correlation_id, "order-42");
        assert_eq!(cx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(cx.span_id, "00f067aa0ba902b7");
        assert_eq!(cx.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(
            cx.traceparent()
                .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        );
    }

    #[test]
    fn starts_a_new_trace_and_correlation_id_when_absent_or_malformed() {
        for (correlation, parent) in [
            (None, None),
            (Some(""), Some("garbage")),
            (
                Some("has spaces"),
                Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            ),
            (
                Some(&*"x".repeat(200)),
                Some("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ),
        ] {
            let cx = RequestContext::from_headers(correlation, parent);
            assert!(uuid::Uuid::parse_str(&cx.correlation_id).is_ok());
            assert_eq!(cx.trace_id.len(), 32);
            assert_ne!(cx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert!(parse_traceparent(&cx.traceparent()).is_some());
        }
    }
}
