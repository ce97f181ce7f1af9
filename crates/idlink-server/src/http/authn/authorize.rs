//! `GET /authorize`: checks the request as Auth0 does, then starts the login pages (or,
//! with a session and without `prompt=login`, answers at once).
//!
//! Until `client_id` and `redirect_uri` are known good, errors are an idlink page:
//! never a redirect to an unchecked URL (no open redirect). After that, errors go to the
//! application's redirect URI as `error`/`error_description`/`state`.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{Transaction, current_session, error_page, error_to_app, issue_code, redirect};
use crate::auth::signin;
use crate::error::Result;
use crate::state::AppState;

/// Longest value of any parameter (state, nonce and challenges are short in practice).
const MAX_PARAM: usize = 2048;

pub(super) fn parse_query(raw: Option<&str>) -> HashMap<String, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.unwrap_or("")).unwrap_or_default();
    let mut params = HashMap::new();
    for (k, v) in pairs {
        params.entry(k).or_insert(v);
    }
    params
}

pub(super) async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params = parse_query(query.as_deref());
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    if params.values().any(|v| v.len() > MAX_PARAM) {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "A parameter is too long.",
        ));
    }

    let Some(client_id) = get("client_id") else {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "Missing required parameter: client_id",
        ));
    };
    let Some(client) = state.store.client(client_id).await? else {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "Unknown client",
            &format!("Unknown client: {client_id}"),
        ));
    };
    let app = state.apps.app(client_id);
    let Some(redirect_uri) = get("redirect_uri") else {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "Missing required parameter: redirect_uri",
        ));
    };
    if !app.allows_callback(redirect_uri) {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "Callback URL mismatch",
            &format!(
                "The provided redirect_uri is not in the list of allowed callback URLs: {redirect_uri}"
            ),
        ));
    }
    let response_mode = get("response_mode").unwrap_or("query");
    let mut tx = Transaction {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        // An unsupported mode is refused below, answering in the default one.
        response_mode: match response_mode {
            "form_post" | "web_message" => response_mode.to_owned(),
            _ => "query".into(),
        },
        state: get("state").map(str::to_owned),
        nonce: get("nonce").map(str::to_owned),
        scope: get("scope").unwrap_or("openid").to_owned(),
        audience: get("audience").map(str::to_owned),
        code_challenge: get("code_challenge").map(str::to_owned),
        code_challenge_method: None,
        connection: get("connection").map(str::to_owned),
    };

    // From here on the redirect URI is good: errors go back to the application.
    if !matches!(response_mode, "query" | "form_post" | "web_message") {
        return Ok(error_to_app(
            &tx,
            "invalid_request",
            &format!("Unsupported response_mode: {response_mode}"),
        ));
    }
    match get("response_type") {
        Some("code") => {}
        None => {
            return Ok(error_to_app(
                &tx,
                "invalid_request",
                "Missing required parameter: response_type",
            ));
        }
        Some(other) => {
            return Ok(error_to_app(
                &tx,
                "unsupported_response_type",
                &format!("Unsupported response type: {other}"),
            ));
        }
    }
    if !client.grant_types.iter().any(|g| g == "authorization_code") {
        return Ok(error_to_app(
            &tx,
            "unauthorized_client",
            "Grant type 'authorization_code' not allowed for the client.",
        ));
    }
    match (&tx.code_challenge, get("code_challenge_method")) {
        (Some(challenge), method) => {
            let method = method.unwrap_or("plain");
            if !matches!(method, "S256" | "plain") {
                return Ok(error_to_app(
                    &tx,
                    "invalid_request",
                    &format!("Unsupported code_challenge_method: {method}"),
                ));
            }
            if !signin::is_pkce_string(challenge) {
                return Ok(error_to_app(
                    &tx,
                    "invalid_request",
                    "Invalid code_challenge",
                ));
            }
            tx.code_challenge_method = Some(method.to_owned());
        }
        (None, Some(_)) => {
            return Ok(error_to_app(
                &tx,
                "invalid_request",
                "Missing required parameter: code_challenge",
            ));
        }
        // A public client has no secret to prove the exchange with: PKCE is its proof.
        (None, None) if app.is_public() || client.secret_hash.is_none() => {
            return Ok(error_to_app(
                &tx,
                "invalid_request",
                "Missing required parameter: code_challenge",
            ));
        }
        (None, None) => {}
    }
    if !signin::is_known_audience(&state, tx.audience.as_deref()) {
        return Ok(error_to_app(
            &tx,
            "access_denied",
            &format!(
                "Service not found: {}",
                tx.audience.as_deref().unwrap_or_default()
            ),
        ));
    }
    if let Some(name) = &tx.connection {
        let usable = state
            .connection_by_name(name)
            .is_some_and(|c| c.is_database() || state.apps.is_emulated(&c.name));
        if !usable {
            return Ok(error_to_app(
                &tx,
                "invalid_request",
                "the connection was not found",
            ));
        }
    }

    let prompt = get("prompt").unwrap_or("");
    let prompts: Vec<&str> = prompt.split_whitespace().collect();
    if !prompts.contains(&"login") {
        if let Some(session) = current_session(&state, &headers).await? {
            // Single sign-on: the session's user, if it may still sign in.
            let usable = state
                .store
                .user(&session.user_id)
                .await?
                .is_some_and(|u| !u.blocked);
            if usable {
                return issue_code(&state, &tx, &session.user_id, session.auth_time).await;
            }
        }
        if prompts.contains(&"none") {
            return Ok(error_to_app(&tx, "login_required", "Login required"));
        }
    }

    let signed = tx.sign(&state)?;
    let mut location = super::with_query("/u/login", &[("state", signed.as_str())]);
    if let Some(connection) = &tx.connection {
        location = super::with_query(&location, &[("connection", connection.as_str())]);
    }
    Ok(redirect(&location))
}
