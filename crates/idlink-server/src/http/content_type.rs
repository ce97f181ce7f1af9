//! The `Content-Type` of Management API answers, set in one place.
//!
//! Auth0 labels every Management API answer `application/json; charset=utf-8` — its
//! JSON bodies, its errors and even its empty `204`s (recorded traffic, e.g. go-auth0's
//! `TestUserManager_Delete`). Handlers answer with axum's `Json`, which says
//! `application/json`, and a bare `204` says nothing; this layer rewrites both so no
//! handler has to remember. The token endpoint is left alone: its recordings say plain
//! `application/json`.

use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// What Auth0 sends on every Management API answer.
pub const JSON_UTF8: &str = "application/json; charset=utf-8";

/// Whether a request is a Management API call (the answers this layer labels).
fn is_management(request: &Request) -> bool {
    let path = request.uri().path();
    path == "/api/v2" || path.starts_with("/api/v2/")
}

/// Labels JSON answers (and empty `204`s) of the Management API `JSON_UTF8`.
pub async fn middleware(request: Request, next: Next) -> Response {
    let management = is_management(&request);
    let mut response = next.run(request).await;
    if !management {
        return response;
    }
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("application/json"));
    let is_empty_204 = response.status() == StatusCode::NO_CONTENT
        && !response.headers().contains_key(CONTENT_TYPE);
    if is_json || is_empty_204 {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    }
    response
}
