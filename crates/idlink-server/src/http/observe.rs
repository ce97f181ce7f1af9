//! What operators see of each request: its id (`x-request-id`, accepted or generated,
//! returned on every answer), one log line (method, route template, status, duration,
//! client id, request id; never a header value, body, token or secret) and the request
//! metrics.
//!
//! The id comes from tower-http's request-id layers; the line and the metrics come from
//! [`request_log`], which reads what inner parts learned from the response's
//! extensions: the client ([`ClientId`], set where the token or the token request is
//! read) and the errorCode ([`ErrorCode`], set where errors become answers).

use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::HeaderName;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId as TowerRequestId, SetRequestIdLayer,
};

use crate::state::AppState;

/// The request id header, as Auth0 and most proxies name it.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id accepted from a client; longer (or odd) ones are replaced by a
/// generated one, so a client cannot put arbitrary text into logs and audit rows.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The route template of requests no route matched; one label value for all of them
/// keeps the metrics bounded whatever paths clients try.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The client a request acted as (a verified token's `azp`, or the `client_id` a
/// token request named), put on the response for the log line.
#[derive(Debug, Clone)]
pub struct ClientId(pub String);

/// The Auth0 `errorCode` (or OAuth `error`) a response carries, for the log line.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// Whether a client-sent request id may be kept: short, and only characters that are
/// harmless in a log line, a header and a JSON string.
pub fn acceptable_request_id(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
}

/// Drops a client-sent `x-request-id` that is not [acceptable](acceptable_request_id),
/// so the layer after it generates a fresh one.
pub async fn sanitize_request_id(mut request: Request, next: Next) -> Response {
    let headers = request.headers_mut();
    let keep = {
        let mut values = headers.get_all(&X_REQUEST_ID).iter();
        match (values.next(), values.next()) {
            (None, _) => true,
            (Some(one), None) => acceptable_request_id(one.as_bytes()),
            (Some(_), Some(_)) => false,
        }
    };
    if !keep {
        headers.remove(&X_REQUEST_ID);
    }
    next.run(request).await
}

/// Generates a UUID v4 request id when the client sent none.
pub fn set_request_id_layer() -> SetRequestIdLayer<MakeRequestUuid> {
    SetRequestIdLayer::new(X_REQUEST_ID.clone(), MakeRequestUuid)
}

/// Copies the request's id onto every response, errors included.
pub fn propagate_request_id_layer() -> PropagateRequestIdLayer {
    PropagateRequestIdLayer::new(X_REQUEST_ID.clone())
}

/// The request's id, for handlers that record it (the audit trail).
#[derive(Debug, Clone, Default)]
pub struct RequestId(pub Option<String>);

impl RequestId {
    fn of(extensions: &axum::http::Extensions, headers: &axum::http::HeaderMap) -> Self {
        let value = extensions
            .get::<TowerRequestId>()
            .map(TowerRequestId::header_value)
            .or_else(|| headers.get(&X_REQUEST_ID));
        Self(
            value
                .and_then(|v| v.to_str().ok())
                .filter(|v| acceptable_request_id(v.as_bytes()))
                .map(str::to_owned),
        )
    }

    /// The id, if the request has one.
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions, &parts.headers))
    }
}

/// Logs one line per request and records the request metrics.
pub async fn request_log(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let request_id = RequestId::of(request.extensions(), request.headers());
    let response = next.run(request).await;
    let took = started.elapsed();
    let route = route.unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    let status = response.status();
    state
        .metrics
        .record_request(method.as_str(), &route, status.as_u16(), took);
    let client_id = response
        .extensions()
        .get::<ClientId>()
        .map(|c| c.0.as_str());
    let error_code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    let duration_ms = took.as_secs_f64() * 1000.0;
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(
                target: "idlink::request",
                $level,
                method = %method,
                route = %route,
                status = status.as_u16(),
                duration_ms = format_args!("{duration_ms:.1}"),
                client_id = %client_id.unwrap_or("-"),
                request_id = %request_id.as_deref().unwrap_or("-"),
                error_code = %error_code.unwrap_or("-"),
                "request"
            )
        };
    }
    if status.is_server_error() {
        line!(tracing::Level::WARN);
    } else {
        line!(tracing::Level::INFO);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_clients_are_bounded() {
        assert!(acceptable_request_id(
            b"4f9c2a7e-1b2c-4d5e-8f90-123456789abc"
        ));
        assert!(acceptable_request_id(b"trace:abc/def+1=2@x_y.z"));
        assert!(!acceptable_request_id(b""));
        assert!(!acceptable_request_id(b"has space"));
        assert!(!acceptable_request_id(b"quote\"d"));
        assert!(!acceptable_request_id("\u{e9}".as_bytes()));
        assert!(acceptable_request_id(&[b'a'; MAX_REQUEST_ID_LEN]));
        assert!(!acceptable_request_id(&[b'a'; MAX_REQUEST_ID_LEN + 1]));
    }
}
