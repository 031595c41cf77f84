//! The rules of identity that need no I/O: what an email address and a password must be,
//! how long a throttled sign-in waits, what an API token looks like, and how long tokens
//! live. Everything here is unit-tested directly.

use std::time::Duration;

use carerp_kit::FieldViolation;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A refresh token is good for one rotation within this time.
pub const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// The shortest password anyone may choose.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longer passwords are refused: Argon2 would happily hash megabytes on every sign-in.
pub const MAX_PASSWORD_LEN: usize = 256;
pub const MAX_DISPLAY_NAME: usize = 200;
pub const MAX_API_TOKEN_NAME: usize = 100;
/// The furthest an API token may expire: integrations are re-keyed at least yearly.
pub const MAX_API_TOKEN_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::days(366);
/// The prefix of an API token, so that secret scanners and people recognise one.
pub const API_TOKEN_PREFIX: &str = "cet_";

/// Failed sign-ins of an account or a client address are free up to this many...
pub const FREE_FAILURES: i32 = 5;
/// ...then each one locks for 2^(failures - 5) seconds, at most this long.
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// A record of failures is forgotten after this quiet time once its lock has ended.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// How long the `failures`-th failure in a row locks: nothing for the first
/// [`FREE_FAILURES`] - 1, then 1 s, 2 s, 4 s ... capped at [`MAX_LOCK`].
pub fn lock_after(failures: i32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(failures - FREE_FAILURES).unwrap_or(u32::MAX);
    2u64.checked_pow(doublings)
        .map(Duration::from_secs)
        .unwrap_or(MAX_LOCK)
        .min(MAX_LOCK)
}

/// The failures counted so far for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRecord {
    pub failures: i32,
    pub last_failure_at: DateTime<Utc>,
}

/// The record after one more failure at `now`, and until when it locks. A record whose lock
/// ended more than [`FAILURE_WINDOW`] ago is forgotten first, so a person who mistypes now and
/// then is never throttled, while a guesser's lock keeps growing.
pub fn record_failure(
    previous: Option<FailureRecord>,
    now: DateTime<Utc>,
) -> (FailureRecord, DateTime<Utc>) {
    let failures = match previous {
        Some(record) if !is_forgotten(record, now) => record.failures.saturating_add(1),
        _ => 1,
    };
    let locked_until = now + to_delta(lock_after(failures));
    (
        FailureRecord {
            failures,
            last_failure_at: now,
        },
        locked_until,
    )
}

fn is_forgotten(record: FailureRecord, now: DateTime<Utc>) -> bool {
    let lock = to_delta(lock_after(record.failures));
    now >= record.last_failure_at + lock + to_delta(FAILURE_WINDOW)
}

/// How long until `locked_until`, when it is still ahead (rounded up to whole seconds, so a
/// client that waits as told is not refused again by a fraction).
pub fn remaining_lock(locked_until: DateTime<Utc>, now: DateTime<Utc>) -> Option<Duration> {
    let left = (locked_until - now).to_std().ok()?;
    if left.is_zero() {
        return None;
    }
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    Some(Duration::from_secs(seconds))
}

pub fn to_delta(duration: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(duration).unwrap_or(chrono::TimeDelta::MAX)
}

/// The key an account's failures are counted under: the email as typed, case-folded, so
/// unknown addresses are throttled exactly like known ones.
pub fn account_key(email: &str) -> String {
    format!("account:{}", email.trim().to_lowercase())
}

pub fn address_key(client_address: &str) -> Option<String> {
    let address = client_address.trim();
    (!address.is_empty())
        .then(|| format!("address:{}", address.chars().take(100).collect::<String>()))
}

/// A person's email: required (it is how they sign in), then the kit's one address check.
pub fn check_email(field: &str, email: &str) -> Result<(), FieldViolation> {
    if email.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    carerp_kit::status::email_address(field, email)
}

/// A password someone chooses: at least [`MIN_PASSWORD_LEN`] characters, and not common or
/// guessable (zxcvbn score 3 or more, judged against `user_inputs` such as the email and
/// name). The refusal says why, never what the password was.
pub fn check_new_password(
    field: &str,
    password: &str,
    user_inputs: &[&str],
) -> Result<(), FieldViolation> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        return Err(FieldViolation::new(
            field,
            format!("must be at least {MIN_PASSWORD_LEN} characters, is {len}"),
        ));
    }
    if len > MAX_PASSWORD_LEN {
        return Err(FieldViolation::new(
            field,
            format!("must be at most {MAX_PASSWORD_LEN} characters, is {len}"),
        ));
    }
    let entropy = zxcvbn::zxcvbn(password, user_inputs);
    if entropy.score() >= zxcvbn::Score::Three {
        return Ok(());
    }
    let mut why = "is too easy to guess".to_string();
    if let Some(feedback) = entropy.feedback() {
        if let Some(warning) = feedback.warning() {
            why.push_str(&format!(": {warning}"));
        }
        let hints: Vec<String> = feedback
            .suggestions()
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !hints.is_empty() {
            why.push_str(&format!(" ({})", hints.join(" ")));
        }
    }
    Err(FieldViolation::new(field, why))
}

/// `cet_<id as 32 hex digits>_<secret>`: the id finds the row, the secret proves possession.
pub fn format_api_token(id: Uuid, secret: &str) -> String {
    format!("{API_TOKEN_PREFIX}{}_{secret}", id.simple())
}

/// The id and secret of an API token, or `None` when it is not shaped like one.
pub fn parse_api_token(token: &str) -> Option<(Uuid, &str)> {
    let rest = token.trim().strip_prefix(API_TOKEN_PREFIX)?;
    let (id, secret) = (rest.get(..32)?, rest.get(32..)?);
    let secret = secret.strip_prefix('_')?;
    if secret.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some((Uuid::try_parse(id).ok()?, secret))
}

/// An API token's expiry: given, in the future, at most [`MAX_API_TOKEN_LIFETIME`] away.
pub fn check_api_token_expiry(
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, FieldViolation> {
    let field = "expires_at";
    let expires_at = expires_at.ok_or_else(|| FieldViolation::new(field, "is required"))?;
    if expires_at <= now {
        return Err(FieldViolation::new(field, "must be in the future"));
    }
    if expires_at > now + MAX_API_TOKEN_LIFETIME {
        return Err(FieldViolation::new(field, "must be at most a year away"));
    }
    Ok(expires_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn the_lock_doubles_after_five_failures_and_is_capped() {
        let cases = [
            (1, 0),
            (4, 0),
            (5, 1),
            (6, 2),
            (7, 4),
            (14, 512),
            (15, 900),
            (100, 900),
            (i32::MAX, 900),
        ];
        for (failures, seconds) in cases {
            assert_eq!(lock_after(failures).as_secs(), seconds, "{failures}");
        }
    }

    #[test]
    fn failures_accumulate_and_are_forgotten_after_a_quiet_window() {
        let (first, locked) = record_failure(None, at(0));
        assert_eq!((first.failures, locked), (1, at(0)));
        let mut record = first;
        for n in 2..=6 {
            record = record_failure(Some(record), at(n)).0;
        }
        assert_eq!(record.failures, 6);
        // 6 failures lock 2 s; a quarter hour after that lock the record is gone.
        let (soon, _) = record_failure(Some(record), at(6 + 2 + 899));
        assert_eq!(soon.failures, 7);
        let (later, locked) = record_failure(Some(record), at(6 + 2 + 900));
        assert_eq!(later.failures, 1);
        assert_eq!(locked, at(908));
    }

    #[test]
    fn the_remaining_lock_rounds_up_and_ends() {
        let now = at(0);
        assert_eq!(remaining_lock(at(10), now), Some(Duration::from_secs(10)));
        let half = now + chrono::TimeDelta::milliseconds(1500);
        assert_eq!(remaining_lock(half, now), Some(Duration::from_secs(2)));
        assert_eq!(remaining_lock(now, now), None);
        assert_eq!(remaining_lock(at(-5), now), None);
    }

    #[test]
    fn throttle_keys_fold_case_and_skip_unknown_addresses() {
        assert_eq!(
            account_key(" Jane@Example.COM "),
            "account:jane@example.com"
        );
        assert_eq!(address_key(""), None);
        assert_eq!(address_key("10.0.0.1").as_deref(), Some("address:10.0.0.1"));
    }

    #[test]
    fn emails_are_checked() {
        assert!(check_email("email", "owner@acme-motors.local").is_ok());
        for bad in [
            "",
            "jane",
            "jane@",
            "@example.com",
            "jane@example",
            "ja ne@example.com",
        ] {
            assert!(check_email("email", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_email("email", "").unwrap_err().description,
            "is required"
        );
    }

    #[test]
    fn new_passwords_must_be_long_and_hard_to_guess() {
        let inputs = ["jane@example.com", "Jane Doe"];
        let cases = [
            ("short", Some("at least 12 characters, is 5")),
            ("password1234", Some("too easy to guess")),
            ("qwertyuiop12", Some("too easy to guess")),
            ("jane@example.com", Some("too easy to guess")),
            ("correct-horse-battery-staple-9", None),
            ("Vq7#mZ2!pL9x", None),
        ];
        for (password, refusal) in cases {
            let result = check_new_password("new_password", password, &inputs);
            match refusal {
                None => assert!(result.is_ok(), "{password}: {result:?}"),
                Some(why) => {
                    let Err(violation) = result else {
                        panic!("{password} was accepted")
                    };
                    assert_eq!(violation.field, "new_password");
                    assert!(
                        violation.description.contains(why),
                        "{password}: {violation}"
                    );
                    assert!(!violation.description.contains(password), "{violation}");
                }
            }
        }
        let long = "x".repeat(MAX_PASSWORD_LEN + 1);
        assert!(check_new_password("new_password", &long, &[]).is_err());
    }

    #[test]
    fn api_tokens_round_trip_and_malformed_ones_are_refused() {
        let id = Uuid::now_v7();
        let token = format_api_token(id, "s3cr_et-value");
        assert_eq!(parse_api_token(&token), Some((id, "s3cr_et-value")));
        for bad in [
            "",
            "cet_",
            "cet_abc_def",
            &format!("xyz_{}_secret", id.simple()),
            &format!("cet_{}_", id.simple()),
            &format!("cet_{}secret", id.simple()),
            &format!("cet_{}_secret", "z".repeat(32)),
        ] {
            assert_eq!(parse_api_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn api_token_expiry_is_required_future_and_within_a_year() {
        let now = at(0);
        assert!(check_api_token_expiry(None, now).is_err());
        assert!(check_api_token_expiry(Some(now), now).is_err());
        assert!(check_api_token_expiry(Some(now + chrono::TimeDelta::days(367)), now).is_err());
        let fine = now + chrono::TimeDelta::days(90);
        assert_eq!(check_api_token_expiry(Some(fine), now), Ok(fine));
    }
}
