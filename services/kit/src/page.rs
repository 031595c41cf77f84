//! Cursor pagination: a page token is the sort key of the last row served, opaque to callers.
//!
//! Keyset pagination (rather than offsets) keeps pages free of gaps and repeats while rows
//! are inserted between calls.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Serialize, de::DeserializeOwned};

use crate::status::FieldViolation;

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 500;

/// The number of rows to serve: 0 means the default, larger than the maximum is capped.
pub fn page_size(requested: i32) -> Result<i64, FieldViolation> {
    match requested {
        n if n < 0 => Err(FieldViolation::new(
            "page.page_size",
            format!("must not be negative, is {n}"),
        )),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok(i64::from(n).min(MAX_PAGE_SIZE)),
    }
}

pub fn encode_token<T: Serialize>(cursor: &T) -> String {
    // Serializing our own cursor types cannot fail; an empty token would only end paging.
    let json = serde_json::to_vec(cursor).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// `None` for the first page.
pub fn decode_token<T: DeserializeOwned>(token: &str) -> Result<Option<T>, FieldViolation> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || FieldViolation::new("page.page_token", "is not a token this list returned");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|_| invalid())
}

/// Splits one extra fetched row off: rows are fetched with `limit + 1` so that the presence
/// of a next page is known without a count query.
pub fn split_page<T, C: Serialize>(
    mut rows: Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> C,
) -> (Vec<T>, String) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() > limit {
        rows.truncate(limit);
        let token = rows
            .last()
            .map(|row| encode_token(&cursor_of(row)))
            .unwrap_or_default();
        (rows, token)
    } else {
        (rows, String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_defaults_caps_and_refuses_negative() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(10).unwrap(), 10);
        assert_eq!(page_size(10_000).unwrap(), MAX_PAGE_SIZE);
        assert_eq!(page_size(-1).unwrap_err().field, "page.page_size");
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let token = encode_token(&("2026-01-01", 42));
        assert_eq!(
            decode_token::<(String, i32)>(&token).unwrap(),
            Some(("2026-01-01".into(), 42))
        );
        assert_eq!(decode_token::<(String, i32)>("").unwrap(), None);
        assert!(decode_token::<(String, i32)>("!!!").is_err());
        assert!(decode_token::<(String, i32)>(&encode_token(&"other")).is_err());
    }

    #[test]
    fn split_page_reports_a_next_page_only_when_there_is_one() {
        let (rows, token) = split_page(vec![1, 2, 3], 2, |r| *r);
        assert_eq!(rows, vec![1, 2]);
        assert_eq!(decode_token::<i32>(&token).unwrap(), Some(2));
        let (rows, token) = split_page(vec![1, 2], 2, |r| *r);
        assert_eq!(rows, vec![1, 2]);
        assert!(token.is_empty());
    }
}
