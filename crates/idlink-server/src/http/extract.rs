//! Extractors whose rejections answer in Auth0's error shape, never axum's plain text.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The raw request body, read within [`BODY_LIMIT`]. Parsed by the handler with
/// [`parse_payload`] *after* authorization, so that a bad token or scope is reported
/// before a bad body (contract order: 401, 403, then 400).
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::PayloadTooLarge(BODY_LIMIT)
                } else {
                    Error::InvalidBody("Invalid request payload.".into())
                }
            })
    }
}

/// The media types a body may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Json,
    Form,
}

/// The body's media type; a missing `Content-Type` is read as JSON (as Auth0 does).
pub fn media_type(headers: &HeaderMap) -> Result<MediaType> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(MediaType::Json);
    };
    let essence = value
        .to_str()
        .map_err(|_| Error::UnsupportedMediaType)?
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(MediaType::Json),
        "application/x-www-form-urlencoded" => Ok(MediaType::Form),
        other if other.starts_with("application/") && other.ends_with("+json") => {
            Ok(MediaType::Json)
        }
        _ => Err(Error::UnsupportedMediaType),
    }
}

/// Whether any string (or object key) in `value` holds a NUL character.
fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Parses a JSON or form-encoded body into JSON. Form fields become strings; an empty
/// JSON body becomes `null` (which the validators then reject in Auth0's words). NUL
/// characters are refused anywhere in it: PostgreSQL text cannot hold them (they made
/// every such request a 500 there), and no field has a use for them.
pub fn parse_payload(headers: &HeaderMap, body: &[u8]) -> Result<Value> {
    let value = parse_any_payload(headers, body)?;
    if has_nul(&value) {
        return Err(Error::InvalidBody(
            "Payload validation error: strings must not contain NUL characters.".into(),
        ));
    }
    Ok(value)
}

fn parse_any_payload(headers: &HeaderMap, body: &[u8]) -> Result<Value> {
    match media_type(headers)? {
        MediaType::Json if body.iter().all(u8::is_ascii_whitespace) => Ok(Value::Null),
        MediaType::Json => serde_json::from_slice(body)
            .map_err(|_| Error::InvalidBody("Invalid request payload JSON format".into())),
        MediaType::Form => {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|_| Error::InvalidBody("Invalid request payload form format".into()))?;
            Ok(Value::Object(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect::<Map<_, _>>(),
            ))
        }
    }
}

/// Whether a percent-encoded path or query holds an encoded NUL (`%00`), which decodes
/// to a character PostgreSQL text cannot hold.
fn has_encoded_nul(raw: &str) -> bool {
    raw.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

/// Path parameters, percent-decoded; a bad encoding is a 400 `invalid_uri`.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        if has_encoded_nul(parts.uri.path()) {
            return Err(Error::InvalidUri(
                "Invalid request URI. The path must not contain NUL characters.".into(),
            ));
        }
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|rejection: PathRejection| {
                Error::InvalidUri(format!("Invalid request URI. {}", rejection.body_text()))
            })
    }
}

/// Query parameters; a malformed query is a 400 `invalid_query_string`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        if parts.uri.query().is_some_and(has_encoded_nul) {
            return Err(Error::InvalidQuery(
                "Query validation error: parameters must not contain NUL characters.".into(),
            ));
        }
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| {
                Error::InvalidQuery(format!("Query validation error: {}", rejection.body_text()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        h
    }

    #[test]
    fn payloads() {
        let json =
            parse_payload(&headers("application/json; charset=utf-8"), br#"{"a":1}"#).unwrap();
        assert_eq!(json["a"], 1);
        let form = parse_payload(
            &headers("application/x-www-form-urlencoded"),
            b"provider=github&user_id=12",
        )
        .unwrap();
        assert_eq!(form["user_id"], "12");
        assert_eq!(parse_payload(&HeaderMap::new(), b"").unwrap(), Value::Null);
        assert!(matches!(
            parse_payload(&headers("text/plain"), b"x"),
            Err(Error::UnsupportedMediaType)
        ));
        assert!(matches!(
            parse_payload(&headers("application/json"), b"{"),
            Err(Error::InvalidBody(_))
        ));
        for nul in [
            &br#"{"name":"a\u0000b"}"#[..],
            br#"{"m":{"k\u0000":1}}"#,
            br#"["\u0000"]"#,
        ] {
            assert!(matches!(
                parse_payload(&headers("application/json"), nul),
                Err(Error::InvalidBody(_))
            ));
        }
        assert!(matches!(
            parse_payload(&headers("application/x-www-form-urlencoded"), b"a=%00"),
            Err(Error::InvalidBody(_))
        ));
        assert!(has_encoded_nul("/users/a%00b") && !has_encoded_nul("/users/a%100"));
    }
}
