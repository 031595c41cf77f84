//! Reading request bodies and query strings, with errors that name what was wrong.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use http::header;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::{ApiError, FieldError};

/// Bodies larger than this are refused with 413 (every route but the photo upload).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The largest body any route takes: an inspection photo. Routes read at most
/// [`MAX_BODY_BYTES`] unless they raise their own limit (`DefaultBodyLimit` on the route).
pub const MAX_UPLOAD_BYTES: usize = carerp_kit::MAX_PHOTO_BYTES;

/// A JSON body: `application/json` (or a `+json` type) or 415; valid JSON or 400; matching
/// the request type (unknown fields refused by `deny_unknown_fields`) or 422 naming each
/// field; larger than [`MAX_BODY_BYTES`] 413.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_content_type(req.headers().get(header::CONTENT_TYPE))?;
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::Status(rejection.status(), rejection.body_text()))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// What a JSON document that is not an object is, for the refusal.
fn kind_of(bytes: &[u8]) -> &'static str {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Array(_)) => "an array",
        Ok(serde_json::Value::String(_)) => "a string",
        Ok(serde_json::Value::Number(_)) => "a number",
        Ok(serde_json::Value::Bool(_)) => "a boolean",
        Ok(serde_json::Value::Null) => "null",
        _ => "a value of another kind",
    }
}

fn check_content_type(value: Option<&http::HeaderValue>) -> Result<(), ApiError> {
    let Some(value) = value else {
        return Err(ApiError::UnsupportedMediaType(
            "the body must be JSON: send Content-Type: application/json".into(),
        ));
    };
    let text = value.to_str().unwrap_or_default();
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "the body must be JSON (application/json), not {text:?}"
        )))
    }
}

/// Parses a body, telling a broken document (400) from one of the wrong shape (422). Every
/// request body is an object: an array, a string, a number or `null` is refused before any
/// field is read (serde would otherwise fill a struct from an array by position).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
            .map_err(|err| ApiError::MalformedJson(err.to_string()))?;
        return Err(ApiError::InvalidBody(vec![FieldError {
            field: String::new(),
            message: format!("the body must be a JSON object, not {}", kind_of(bytes)),
        }]));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => value,
        Err(err) if err.inner().to_string().starts_with(INTEGRAL_FLOAT) => {
            return parse_with_integral_floats(bytes);
        }
        Err(err) => return Err(deserialize_error(err)),
    };
    deserializer
        .end()
        .map_err(|err| ApiError::MalformedJson(err.to_string()))?;
    Ok(value)
}

/// How serde_json starts the message for a number written with a fraction or an exponent
/// (`2.0`, `1e3`) where an integer field is.
const INTEGRAL_FLOAT: &str = "invalid type: floating point";

/// The slow path of [`parse_json`], for a body with a number such as `2.0` where an integer
/// is: JSON Schema (and so the OpenAPI document) counts any number without a fractional part
/// as an integer, so the body is read again with those numbers as integers. A number with a
/// fraction, or outside the 64-bit range, stays a float and is refused as before.
fn parse_with_integral_floats<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|err| ApiError::MalformedJson(err.to_string()))?;
    integral_floats_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(deserialize_error)
}

fn integral_floats_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(number) if number.is_f64() => {
            // `i64::MAX as f64` is 2^63, itself out of range: hence `<`.
            if let Some(float) = number.as_f64()
                && float.fract() == 0.0
                && float >= i64::MIN as f64
                && float < i64::MAX as f64
            {
                *value = Value::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

fn deserialize_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => ApiError::InvalidBody(vec![data_error(&path, &inner)]),
        _ => ApiError::MalformedJson(inner.to_string()),
    }
}

/// A data error as a field error: an unknown field is named by itself, other errors by the
/// path where they happened.
fn data_error(path: &str, err: &serde_json::Error) -> FieldError {
    let message = strip_position(&err.to_string());
    let parent = if path == "." { "" } else { path };
    if let Some(name) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        // The path already ends with the unknown key.
        let field = if parent == name || parent.ends_with(&format!(".{name}")) {
            parent.to_string()
        } else if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}.{name}")
        };
        return FieldError {
            field,
            message: "unknown field".into(),
        };
    }
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        let field = if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}.{name}")
        };
        return FieldError {
            field,
            message: "is required".into(),
        };
    }
    FieldError {
        field: if parent.is_empty() {
            "$".into()
        } else {
            parent.into()
        },
        message,
    }
}

/// serde_json ends messages with " at line 1 column 12", which means nothing to a client
/// that is told the field.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

/// Query parameters, refused with 422 naming the parameter.
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(query_error(&rejection.body_text())),
        }
    }
}

/// axum reports `Failed to deserialize query string: <path>: <message>`.
fn query_error(text: &str) -> ApiError {
    let text = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(text);
    if let Some(name) = text
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        return ApiError::field(name, "unknown query parameter");
    }
    match text.split_once(": ") {
        Some((field, message)) if !field.contains(' ') => {
            match message.strip_prefix("unknown field `") {
                Some(rest) => {
                    let name = rest.split('`').next().unwrap_or(field);
                    let expected = rest.split_once(", ").map(|(_, e)| e).unwrap_or_default();
                    ApiError::field(name, format!("unknown query parameter; {expected}"))
                }
                None => ApiError::field(field, message),
            }
        }
        _ => ApiError::field("query", text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        name: String,
        address: Option<Address>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Address {
        postal_code: String,
    }

    fn field_errors(err: ApiError) -> Vec<FieldError> {
        match err {
            ApiError::InvalidBody(errors) => errors,
            other => panic!("expected InvalidBody, got {other:?}"),
        }
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let err = parse_json::<Body>(br#"{"name":"a","nmae":"b"}"#).unwrap_err();
        assert_eq!(field_errors(err)[0].field, "nmae");
        let err = parse_json::<Body>(br#"{"name":"a","address":{"postalCode":"1","zip":"2"}}"#)
            .unwrap_err();
        assert_eq!(field_errors(err)[0].field, "address.zip");
    }

    #[test]
    fn wrong_types_and_missing_fields_are_named() {
        let err = parse_json::<Body>(br#"{"name":5}"#).unwrap_err();
        let errors = field_errors(err);
        assert_eq!(errors[0].field, "name");
        assert!(errors[0].message.contains("invalid type"), "{errors:?}");
        let err = parse_json::<Body>(br#"{}"#).unwrap_err();
        assert_eq!(
            field_errors(err)[0],
            FieldError {
                field: "name".into(),
                message: "is required".into()
            }
        );
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused_before_any_field_is_read() {
        // serde would take `["a"]` as the struct's fields by position.
        for (body, kind) in [
            (&br#"["a", null]"#[..], "an array"),
            (b" [null]", "an array"),
            (br#""a""#, "a string"),
            (b"null", "null"),
            (b"42", "a number"),
        ] {
            let errors = field_errors(parse_json::<Body>(body).unwrap_err());
            assert_eq!(
                errors[0].message,
                format!("the body must be a JSON object, not {kind}")
            );
        }
        assert!(matches!(
            parse_json::<Body>(b"[1,"),
            Err(ApiError::MalformedJson(_))
        ));
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Versioned {
        expected_version: i64,
        items: Vec<Item>,
        rate: Option<f64>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        quantity: i32,
    }

    #[test]
    fn a_number_without_a_fraction_is_an_integer_as_json_schema_says() {
        let body = parse_json::<Versioned>(
            br#"{"expectedVersion": 7.0, "items": [{"quantity": 1e2}], "rate": 2.0}"#,
        )
        .unwrap();
        assert_eq!(body.expected_version, 7);
        assert_eq!(body.items[0].quantity, 100);
        assert_eq!(body.rate, Some(2.0));
    }

    #[test]
    fn a_fraction_or_an_integer_out_of_range_is_still_refused_by_name() {
        for (body, field) in [
            (
                &br#"{"expectedVersion": 7.5, "items": []}"#[..],
                "expectedVersion",
            ),
            (
                br#"{"expectedVersion": 1e19, "items": []}"#,
                "expectedVersion",
            ),
            (
                br#"{"expectedVersion": 1, "items": [{"quantity": 1e10}]}"#,
                "items[0].quantity",
            ),
            (
                br#"{"expectedVersion": 1.0, "items": [], "nope": 1}"#,
                "nope",
            ),
        ] {
            let errors = field_errors(parse_json::<Versioned>(body).unwrap_err());
            assert_eq!(errors[0].field, field, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn broken_documents_are_malformed() {
        for body in [&b"{"[..], b"{\"name\":\"a\"} trailing", b"", b"nope"] {
            assert!(
                matches!(parse_json::<Body>(body), Err(ApiError::MalformedJson(_))),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn content_types() {
        let ok = |v: &str| check_content_type(Some(&http::HeaderValue::from_str(v).unwrap()));
        assert!(ok("application/json").is_ok());
        assert!(ok("Application/JSON; charset=utf-8").is_ok());
        assert!(ok("application/merge-patch+json").is_ok());
        assert!(ok("text/plain").is_err());
        assert!(check_content_type(None).is_err());
    }
}
