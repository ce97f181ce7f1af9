//! `GET|POST /userinfo` and `GET /v2/logout`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::header::{AUTHORIZATION, SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::authorize::parse_query;
use super::{SESSION_COOKIE, cookie, error_page, html, pages, redirect, set_cookie};
use crate::auth::signin;
use crate::error::Result;
use crate::state::AppState;

fn unauthorized(description: &str) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{description}\"");
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

/// The signed-in user's claims, as the access token's scopes allow (OIDC's standard
/// claims; Auth0 answers 401 `Unauthorized` to a bad token).
pub(super) async fn userinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(token) = token else {
        return Ok(unauthorized("Missing access token"));
    };
    let audience = state.tokens.tenant().userinfo_audience.clone();
    let Ok(claims) = state.tokens.verify_for_audience(token, &audience).await else {
        return Ok(unauthorized("Invalid access token"));
    };
    let Some(user) = state.store.user(&claims.sub).await? else {
        return Ok(unauthorized("The user does not exist"));
    };
    let p = &user.profile;
    let mut body = json!({"sub": user.user_id});
    if claims.has_scope("profile") {
        for (key, value) in [
            ("name", &p.name),
            ("nickname", &p.nickname),
            ("picture", &p.picture),
            ("given_name", &p.given_name),
            ("family_name", &p.family_name),
        ] {
            if let Some(value) = value {
                body[key] = json!(value);
            }
        }
        body["updated_at"] = json!(user.updated_at);
    }
    if claims.has_scope("email") {
        if let Some(email) = &p.email {
            body["email"] = json!(email);
            body["email_verified"] = json!(p.email_verified);
        }
    }
    Ok(Json::<Value>(body).into_response())
}

/// Ends the session; `returnTo` must be one of the client's allowed logout URLs (exact
/// match), else an error page — never a redirect to an unchecked URL.
pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params: HashMap<String, String> = parse_query(query.as_deref());
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let return_to = get("returnTo").or_else(|| get("post_logout_redirect_uri"));
    let client_id = get("client_id");
    if let Some(url) = return_to {
        let allowed = match client_id {
            Some(id) => state.apps.app(id).allows_logout_url(url),
            None => false,
        };
        if !allowed {
            return Ok(error_page(
                StatusCode::BAD_REQUEST,
                "Invalid logout URL",
                &format!(
                    "The \"returnTo\" querystring parameter \"{url}\" is not defined as a valid URL in \"Allowed Logout URLs\"."
                ),
            ));
        }
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        state.store.delete_session(&signin::digest(id)).await?;
    }
    let mut response = match return_to {
        Some(url) => {
            let url = match get("state") {
                Some(s) => super::with_query(url, &[("state", s)]),
                None => url.to_owned(),
            };
            redirect(&url)
        }
        None => html(
            StatusCode::OK,
            pages::message("Logged out", "You are logged out."),
        ),
    };
    response
        .headers_mut()
        .append(SET_COOKIE, set_cookie(&state, SESSION_COOKIE, "", "/", 0));
    Ok(response)
}
