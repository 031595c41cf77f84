//! Checks a tenant the way the API server would, and says where it is wrong.
//!
//! `render`, `local` and the controller all go through [`validate`] (files first through
//! [`parse_tenant`]), so a bad tenant gets the same message everywhere: the field path and the
//! reason, e.g. `spec.settings.currency: expected a 3-letter ISO 4217 code such as EUR, got "eu"`.

use std::fmt;
use std::time::Duration;

use crate::crd::{CarErpTenant, SERVICES};

/// One thing wrong with a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the field, e.g. `spec.services.workorder.replicas`.
    pub path: String,
    pub reason: String,
}

/// A tenant that must not be acted on, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTenant {
    pub problems: Vec<Problem>,
}

impl InvalidTenant {
    fn one(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem {
                path: path.into(),
                reason: reason.into(),
            }],
        }
    }
}

impl fmt::Display for InvalidTenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", p.path, p.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidTenant {}

/// Reads a tenant from YAML (a file given to `render` or `local`) and validates it.
pub fn parse_tenant(yaml: &str) -> Result<CarErpTenant, InvalidTenant> {
    let value: serde_json::Value = serde_saphyr::from_str(yaml)
        .map_err(|err| InvalidTenant::one("(file)", format!("not valid YAML: {err}")))?;
    let api_version = value.get("apiVersion").and_then(|v| v.as_str());
    if api_version != Some("carerp.io/v1alpha1") {
        return Err(InvalidTenant::one(
            "apiVersion",
            format!("expected carerp.io/v1alpha1, got {api_version:?}"),
        ));
    }
    let kind = value.get("kind").and_then(|v| v.as_str());
    if kind != Some("CarErpTenant") {
        return Err(InvalidTenant::one(
            "kind",
            format!("expected CarErpTenant, got {kind:?}"),
        ));
    }
    let tenant: CarErpTenant = serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        InvalidTenant::one(
            if path == "." { "(root)".into() } else { path },
            err.into_inner().to_string(),
        )
    })?;
    validate(&tenant)?;
    Ok(tenant)
}

/// Every rule of the CRD schema, checked on a typed tenant (which the API server may have let
/// through when the CRD installed is older than the operator).
pub fn validate(tenant: &CarErpTenant) -> Result<(), InvalidTenant> {
    let mut problems = Vec::new();
    let mut bad = |path: &str, reason: String| {
        problems.push(Problem {
            path: path.into(),
            reason,
        })
    };

    match tenant.metadata.name.as_deref() {
        None | Some("") => bad("metadata.name", "is required".into()),
        Some(name) => {
            if let Err(reason) = carerp_kit::config::validate_tenant(name) {
                bad("metadata.name", format!("{reason}, got {name:?}"));
            }
        }
    }

    let spec = &tenant.spec;
    let display = spec.display_name.trim();
    if display.is_empty() || spec.display_name.chars().count() > 100 {
        bad("spec.displayName", "must be 1 to 100 characters".into());
    }
    if let Some(version) = &spec.version {
        let valid = !version.is_empty()
            && version.len() <= 128
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            && !version.starts_with(['.', '-']);
        if !valid {
            bad(
                "spec.version",
                format!("must be an image tag (letters, digits, '_', '.', '-'), got {version:?}"),
            );
        }
    }

    let s = &spec.settings;
    if s.currency.len() != 3 || !s.currency.chars().all(|c| c.is_ascii_uppercase()) {
        bad(
            "spec.settings.currency",
            format!(
                "expected a 3-letter ISO 4217 code such as EUR, got {:?}",
                s.currency
            ),
        );
    }
    if !(0..=10_000).contains(&s.tax_rate_basis_points) {
        bad(
            "spec.settings.taxRateBasisPoints",
            format!(
                "expected 0 to 10000 basis points, got {}",
                s.tax_rate_basis_points
            ),
        );
    }
    if s.labor_rate_cents < 0 {
        bad(
            "spec.settings.laborRateCents",
            format!("must not be negative, got {}", s.labor_rate_cents),
        );
    }
    if !(0..=365).contains(&s.payment_terms_days) {
        bad(
            "spec.settings.paymentTermsDays",
            format!("expected 0 to 365 days, got {}", s.payment_terms_days),
        );
    }
    if !valid_timezone_name(&s.timezone) {
        bad(
            "spec.settings.timezone",
            format!(
                "expected an IANA time zone name such as Europe/Berlin, got {:?}",
                s.timezone
            ),
        );
    }

    for service in SERVICES {
        if let Some(o) = spec.services.get(service)
            && let Some(replicas) = o.replicas
            && !(0..=50).contains(&replicas)
        {
            bad(
                &format!("spec.services.{}.replicas", service.name()),
                format!("expected 0 to 50, got {replicas}"),
            );
        }
    }

    // The kit's minimum, so that the stream's 2-minute duplicate window always fits inside
    // the max age and events outlive an outage of their consumers.
    match parse_duration(&spec.messaging.max_age) {
        Ok(d) if d < carerp_kit::stream::MIN_MAX_AGE => bad(
            "spec.messaging.maxAge",
            format!(
                "must be at least 1h (events must outlive an outage, and the 2m duplicate window must fit inside), got {:?}",
                spec.messaging.max_age
            ),
        ),
        Ok(_) => {}
        Err(reason) => bad("spec.messaging.maxAge", reason),
    }
    match parse_duration(&spec.messaging.dead_letter_max_age) {
        Ok(d) if d < carerp_kit::stream::MIN_DEAD_LETTER_MAX_AGE => bad(
            "spec.messaging.deadLetterMaxAge",
            format!(
                "must be at least 24h (dead letters must wait for someone to look at them), got {:?}",
                spec.messaging.dead_letter_max_age
            ),
        ),
        Ok(_) => {}
        Err(reason) => bad("spec.messaging.deadLetterMaxAge", reason),
    }
    if !(1..=5).contains(&spec.messaging.replicas) {
        bad(
            "spec.messaging.replicas",
            format!("expected 1 to 5, got {}", spec.messaging.replicas),
        );
    }

    let t = &spec.telemetry;
    if !(0.0..=1.0).contains(&t.sampling_ratio) {
        bad(
            "spec.telemetry.samplingRatio",
            format!("expected 0 to 1, got {}", t.sampling_ratio),
        );
    }
    if let Some(endpoint) = &t.otlp_endpoint
        && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
    {
        bad(
            "spec.telemetry.otlpEndpoint",
            format!("expected an http:// or https:// URL, got {endpoint:?}"),
        );
    }

    if let Some(ingress) = &spec.ingress
        && !valid_dns_name(&ingress.host)
    {
        bad(
            "spec.ingress.host",
            format!(
                "expected a DNS name such as acme.example.com, got {:?}",
                ingress.host
            ),
        );
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(InvalidTenant { problems })
    }
}

/// Parses a Go-style duration (`168h`, `1h30m`, `90s`, `1.5h`), the format Kubernetes users know.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration such as 168h, 30m or 1h30m, got {input:?}");
    if input.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = input;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if number_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 100.0 * 365.0 * 86400.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

fn valid_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The shape of an IANA name (`UTC`, `Europe/Berlin`, `America/Argentina/Buenos_Aires`); the
/// operator has no zone database, the services check that the zone exists.
fn valid_timezone_name(tz: &str) -> bool {
    !tz.is_empty()
        && tz.len() <= 64
        && tz.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "apiVersion: carerp.io/v1alpha1
kind: CarErpTenant
metadata:
  name: demo-garage
spec:
  displayName: Demo Garage
";

    fn with_spec(extra: &str) -> String {
        format!("{MINIMAL}{extra}")
    }

    fn problem(yaml: &str) -> (String, String) {
        let err = parse_tenant(yaml).expect_err("tenant must be refused");
        let p = err.problems[0].clone();
        (p.path, p.reason)
    }

    #[test]
    fn minimal_tenant_gets_every_default() {
        let t = parse_tenant(MINIMAL).unwrap();
        assert_eq!(t.spec.plan, crate::crd::Plan::Standard);
        assert_eq!(t.spec.settings.currency, "EUR");
        assert_eq!(t.spec.settings.payment_terms_days, 14);
        assert_eq!(t.spec.messaging.max_age, "168h");
        assert_eq!(t.spec.messaging.replicas, 1);
        assert_eq!(t.spec.telemetry.sampling_ratio, 1.0);
        assert!(!t.spec.suspend);
        assert!(t.spec.ingress.is_none());
    }

    #[test]
    fn unknown_field_is_refused_with_its_path() {
        let (path, reason) = problem(&with_spec(
            "  settings:\n    currency: EUR\n    colour: red\n",
        ));
        assert_eq!(path, "spec.settings.colour");
        assert!(reason.contains("unknown field `colour`"), "{reason}");
    }

    #[test]
    fn name_too_long_is_refused() {
        let yaml = MINIMAL.replace("demo-garage", &"a".repeat(41));
        let (path, reason) = problem(&yaml);
        assert_eq!(path, "metadata.name");
        assert!(reason.contains("1 to 40 characters"), "{reason}");
    }

    #[test]
    fn name_not_a_dns_label_is_refused() {
        let yaml = MINIMAL.replace("demo-garage", "Demo_Garage");
        let (path, reason) = problem(&yaml);
        assert_eq!(path, "metadata.name");
        assert!(reason.contains("DNS label"), "{reason}");
    }

    #[test]
    fn negative_replicas_are_refused() {
        let (path, reason) = problem(&with_spec(
            "  services:\n    workorder:\n      replicas: -1\n",
        ));
        assert_eq!(path, "spec.services.workorder.replicas");
        assert!(reason.contains("got -1"), "{reason}");
    }

    #[test]
    fn unknown_plan_is_refused() {
        let (path, reason) = problem(&with_spec("  plan: Gold\n"));
        assert_eq!(path, "spec.plan");
        assert!(reason.contains("unknown variant `Gold`"), "{reason}");
    }

    #[test]
    fn bad_currency_is_refused() {
        let (path, reason) = problem(&with_spec("  settings:\n    currency: euro\n"));
        assert_eq!(path, "spec.settings.currency");
        assert!(reason.contains("3-letter ISO 4217"), "{reason}");
    }

    /// A max age the duplicate window does not fit in, or that events would not outlive an
    /// outage with, is refused before anything is provisioned (issue 14, item 5).
    #[test]
    fn dead_letters_are_kept_thirty_days_unless_said_otherwise_and_at_least_a_day() {
        let t = parse_tenant(&with_spec("")).unwrap();
        assert_eq!(t.spec.messaging.dead_letter_max_age, "720h");
        let (path, reason) = problem(&with_spec("  messaging:\n    deadLetterMaxAge: 23h\n"));
        assert_eq!(path, "spec.messaging.deadLetterMaxAge");
        assert!(reason.contains("at least 24h"), "{reason}");
        let ok = parse_tenant(&with_spec("  messaging:\n    deadLetterMaxAge: 2160h\n")).unwrap();
        assert_eq!(ok.spec.messaging.dead_letter_max_age, "2160h");
    }

    #[test]
    fn a_max_age_below_an_hour_is_refused() {
        for short in ["90s", "2m", "59m59s"] {
            let (path, reason) =
                problem(&with_spec(&format!("  messaging:\n    maxAge: {short}\n")));
            assert_eq!(path, "spec.messaging.maxAge");
            assert!(reason.contains("at least 1h"), "{short}: {reason}");
            assert!(reason.contains("duplicate window"), "{short}: {reason}");
        }
        let ok = parse_tenant(&with_spec("  messaging:\n    maxAge: 1h\n")).unwrap();
        assert!(validate(&ok).is_ok());
    }

    #[test]
    fn bad_duration_is_refused() {
        let (path, reason) = problem(&with_spec("  messaging:\n    maxAge: 7 days\n"));
        assert_eq!(path, "spec.messaging.maxAge");
        assert!(reason.contains("expected a duration"), "{reason}");
    }

    #[test]
    fn tax_rate_out_of_range_is_refused() {
        let (path, _) = problem(&with_spec("  settings:\n    taxRateBasisPoints: 10001\n"));
        assert_eq!(path, "spec.settings.taxRateBasisPoints");
    }

    #[test]
    fn wrong_kind_and_missing_display_name_are_refused() {
        let (path, _) = problem(&MINIMAL.replace("kind: CarErpTenant", "kind: Garage"));
        assert_eq!(path, "kind");
        let (path, reason) =
            problem(&MINIMAL.replace("  displayName: Demo Garage\n", "  plan: Starter\n"));
        assert_eq!(path, "spec");
        assert!(reason.contains("missing field `displayName`"), "{reason}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = parse_tenant(&with_spec(
            "  settings:\n    currency: eu\n    laborRateCents: -5\n  telemetry:\n    samplingRatio: 2\n",
        ))
        .unwrap_err();
        let paths: Vec<_> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.settings.currency",
                "spec.settings.laborRateCents",
                "spec.telemetry.samplingRatio"
            ]
        );
        assert!(
            err.to_string()
                .contains("; spec.settings.laborRateCents: must not be negative")
        );
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(
            parse_duration("168h").unwrap(),
            Duration::from_secs(168 * 3600)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "h", "10", "10d", "1h 30m", "-5m", "m5"] {
            assert!(parse_duration(bad).is_err(), "{bad} must be refused");
        }
    }
}
