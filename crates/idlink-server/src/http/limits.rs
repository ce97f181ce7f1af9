//! Limits every request is held to: URI length, total header size, and a deadline
//! (the 1 MB body limit lives with the body extractor, [`super::extract::BODY_LIMIT`]).
//! Each refusal answers in Auth0's error shape.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::state::AppState;

/// Longest request target (path and query) accepted: 8 KiB, as most proxies allow.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest total of header names and values accepted: 16 KiB. (hyper itself refuses a
/// request head larger than about 400 KiB, or with more than 100 headers, with a bare
/// 431 before idlink sees it.)
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long an import's upload may take.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// How long a request may run when the configuration says nothing.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The request deadline from the configured seconds (`None`: the default).
pub fn request_timeout(seconds: Option<f64>) -> Result<Duration, String> {
    match seconds {
        None => Ok(DEFAULT_REQUEST_TIMEOUT),
        Some(s) if s > 0.0 && s.is_finite() => {
            Duration::try_from_secs_f64(s).map_err(|e| format!("invalid request_timeout {s}: {e}"))
        }
        Some(s) => Err(format!(
            "invalid request_timeout {s}: expected a positive number of seconds"
        )),
    }
}

/// Refuses oversized URIs (414) and headers (431), and abandons a request that runs past
/// the deadline (503 `request_timeout`). Abandoning drops the handler's future, and with
/// it any open store transaction, which rolls back: a timed-out request leaves either
/// nothing or (when its commit had already finished) everything, never a part.
pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let uri_bytes = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return Error::UriTooLong(MAX_URI_BYTES).into_response();
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Error::HeadersTooLarge(MAX_HEADER_BYTES).into_response();
    }
    // An import's upload may take long (files up to `max_import_bytes`); it is bounded
    // by its size instead, and a stalled client by the connection's idle limits.
    let deadline = if request.uri().path() == "/api/v2/jobs/users-imports" {
        state.request_timeout.max(UPLOAD_TIMEOUT)
    } else {
        state.request_timeout
    };
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                timeout = ?state.request_timeout,
                "request abandoned after its deadline"
            );
            Error::RequestTimeout.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse() {
        assert_eq!(request_timeout(None).unwrap(), DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(
            request_timeout(Some(0.25)).unwrap(),
            Duration::from_millis(250)
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(request_timeout(Some(bad)).is_err(), "{bad}");
        }
    }
}
