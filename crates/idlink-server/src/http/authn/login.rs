//! The login pages: `/u/login` (the chooser, or a database connection's form),
//! `/u/signup`, and `/u/login/identity-provider` (the emulated social provider).
//!
//! Every POST carries the signed login transaction and a CSRF token equal to the
//! `idlink_csrf` cookie (double submit; the cookie is SameSite=Lax, so another site's
//! form cannot send it). Attempts are rate-limited per address and login name.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::authorize::parse_query;
use super::{
    CSRF_COOKIE, Transaction, complete_sign_in, cookie, error_page, html, pages,
    record_failed_login, redirect, set_cookie, with_query,
};
use crate::auth::{secrets, signin};
use crate::domain::model::{Connection, IdentityKey};
use crate::domain::users::{NewUser, new_user};
use crate::error::{Error, Result};
use crate::http::extract::RawBody;
use crate::ratelimit::SourceIp;
use crate::state::AppState;
use crate::store::Credential;

fn bad_transaction() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "Invalid login",
        "The login transaction is invalid or has expired. Start again from the application.",
    )
}

/// The CSRF token of this browser, and the cookie to set when it has none yet.
fn csrf(state: &AppState, headers: &HeaderMap) -> (String, Option<axum::http::HeaderValue>) {
    match cookie(headers, CSRF_COOKIE) {
        Some(token) if token.len() == 43 => (token.to_owned(), None),
        _ => {
            let token = signin::random_token();
            let header = set_cookie(state, CSRF_COOKIE, &token, "/u", super::TX_LIFETIME);
            (token, Some(header))
        }
    }
}

/// Whether the form's CSRF token is this browser's.
fn csrf_ok(headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    match (cookie(headers, CSRF_COOKIE), form.get("csrf")) {
        (Some(cookie), Some(sent)) => bool::from(cookie.as_bytes().ct_eq(sent.as_bytes())),
        _ => false,
    }
}

fn with_csrf(mut response: Response, cookie: Option<axum::http::HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

/// The connections a login page offers: database ones and emulated social ones.
fn usable(state: &AppState) -> Vec<&Connection> {
    state
        .connections
        .iter()
        .filter(|c| c.is_database() || state.apps.is_emulated(&c.name))
        .collect()
}

fn usable_named<'s>(state: &'s AppState, name: &str) -> Option<&'s Connection> {
    usable(state).into_iter().find(|c| c.name == name)
}

fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let mut form = HashMap::new();
    for (k, v) in pairs {
        form.entry(k).or_insert(v);
    }
    form
}

/// The transaction and connection of a POSTed form, after the CSRF check.
async fn posted(
    state: &AppState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> std::result::Result<(Transaction, Connection), Response> {
    if !csrf_ok(headers, form) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "Invalid request",
            "The form's CSRF token is missing or does not match. Reload the page and try again.",
        ));
    }
    let Some(tx) = Transaction::verify(state, form.get("state").map_or("", String::as_str)).await
    else {
        return Err(bad_transaction());
    };
    let name = form.get("connection").map_or("", String::as_str);
    match usable_named(state, name) {
        Some(c) => Ok((tx, c.clone())),
        None => Err(error_page(
            StatusCode::BAD_REQUEST,
            "Unknown connection",
            "The connection was not found.",
        )),
    }
}

/// Takes a login attempt from the buckets; `false` when over the limit.
fn attempt_allowed(state: &AppState, source: Option<std::net::IpAddr>, key: &str) -> bool {
    let address = source.map(|ip| ip.to_string()).unwrap_or_default();
    let per_address = state.signin.attempts_per_address.take(&address).allowed;
    let per_name = state
        .signin
        .attempts
        .take(&format!("{address}|{}", key.to_lowercase()))
        .allowed;
    per_address && per_name
}

const TOO_MANY: &str = "Too many login attempts. Wait a little and try again.";

pub(super) async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params = parse_query(query.as_deref());
    let token = params.get("state").map_or("", String::as_str);
    let Some(tx) = Transaction::verify(&state, token).await else {
        return Ok(bad_transaction());
    };
    let chosen = params
        .get("connection")
        .filter(|c| !c.is_empty())
        .or(tx.connection.as_ref());
    let connection = match chosen {
        Some(name) => match usable_named(&state, name) {
            Some(c) => c.clone(),
            None => {
                return Ok(error_page(
                    StatusCode::BAD_REQUEST,
                    "Unknown connection",
                    "The connection was not found.",
                ));
            }
        },
        None => {
            let all = usable(&state);
            match all.as_slice() {
                [only] => (*only).clone(),
                _ => {
                    let names: Vec<String> = all.iter().map(|c| c.name.clone()).collect();
                    return Ok(html(StatusCode::OK, pages::chooser(token, &names)));
                }
            }
        }
    };
    if !connection.is_database() {
        return Ok(redirect(&with_query(
            "/u/login/identity-provider",
            &[("state", token), ("connection", &connection.name)],
        )));
    }
    let (csrf, set) = csrf(&state, &headers);
    let signup = state.apps.signup_allowed(&connection.name);
    Ok(with_csrf(
        html(
            StatusCode::OK,
            pages::login(token, &csrf, &connection.name, None, signup, ""),
        ),
        set,
    ))
}

pub(super) async fn login_submit(
    State(state): State<AppState>,
    SourceIp(source): SourceIp,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let form = parse_form(&body);
    let (tx, connection) = match posted(&state, &headers, &form).await {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    let token = form.get("state").map_or("", String::as_str);
    let csrf = form.get("csrf").map_or("", String::as_str);
    let username = form.get("username").map_or("", |s| s.trim());
    let password = form.get("password").map_or("", String::as_str);
    let signup = state.apps.signup_allowed(&connection.name);
    let again = |status: StatusCode, error: &str| {
        html(
            status,
            pages::login(token, csrf, &connection.name, Some(error), signup, username),
        )
    };
    if !connection.is_database() {
        return Ok(bad_transaction());
    }
    if !attempt_allowed(&state, source, username) {
        record_failed_login(
            &state,
            &tx.client_id,
            &connection.name,
            None,
            username,
            TOO_MANY,
        )
        .await?;
        return Ok(again(StatusCode::TOO_MANY_REQUESTS, TOO_MANY));
    }
    if username.is_empty() || password.is_empty() || username.len() > 512 || password.len() > 1024 {
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "Enter your email and password.",
        ));
    }
    let login = state.store.find_login(&connection.id, username).await?;
    let verified = secrets::verify(
        password.to_owned(),
        login.as_ref().map(|l| l.password_hash.clone()),
    )
    .await?;
    let login = match login {
        Some(login) if verified => login,
        _ => {
            let message = "Wrong email or password.";
            record_failed_login(
                &state,
                &tx.client_id,
                &connection.name,
                None,
                username,
                message,
            )
            .await?;
            return Ok(again(StatusCode::BAD_REQUEST, message));
        }
    };
    if login.blocked {
        let message = "user is blocked";
        record_failed_login(
            &state,
            &tx.client_id,
            &connection.name,
            Some(&login.owner_user_id),
            username,
            message,
        )
        .await?;
        return Ok(again(StatusCode::UNAUTHORIZED, "Your account is blocked."));
    }
    complete_sign_in(
        &state,
        &tx,
        &login.owner_user_id,
        &connection.name,
        username,
    )
    .await
}

pub(super) async fn signup_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params = parse_query(query.as_deref());
    let token = params.get("state").map_or("", String::as_str);
    if Transaction::verify(&state, token).await.is_none() {
        return Ok(bad_transaction());
    }
    let name = params.get("connection").map_or("", String::as_str);
    let Some(connection) = usable_named(&state, name).filter(|c| c.is_database()) else {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "Unknown connection",
            "The connection was not found.",
        ));
    };
    if !state.apps.signup_allowed(&connection.name) {
        return Ok(error_page(
            StatusCode::FORBIDDEN,
            "Sign-up is disabled",
            "This connection does not allow sign-up.",
        ));
    }
    let (csrf, set) = csrf(&state, &headers);
    Ok(with_csrf(
        html(
            StatusCode::OK,
            pages::signup(token, &csrf, &connection.name, None, ""),
        ),
        set,
    ))
}

pub(super) async fn signup_submit(
    State(state): State<AppState>,
    SourceIp(source): SourceIp,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let form = parse_form(&body);
    let (tx, connection) = match posted(&state, &headers, &form).await {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    if !connection.is_database() {
        return Ok(bad_transaction());
    }
    if !state.apps.signup_allowed(&connection.name) {
        return Ok(error_page(
            StatusCode::FORBIDDEN,
            "Sign-up is disabled",
            "This connection does not allow sign-up.",
        ));
    }
    let token = form.get("state").map_or("", String::as_str);
    let csrf = form.get("csrf").map_or("", String::as_str);
    let email = form.get("email").map_or("", |s| s.trim());
    let password = form.get("password").map_or("", String::as_str);
    let again = |status: StatusCode, error: &str| {
        html(
            status,
            pages::signup(token, csrf, &connection.name, Some(error), email),
        )
    };
    if !attempt_allowed(&state, source, email) {
        return Ok(again(StatusCode::TOO_MANY_REQUESTS, TOO_MANY));
    }
    if password.len() > 1024 {
        return Ok(again(StatusCode::BAD_REQUEST, "The password is too long."));
    }
    if !state.apps.password_rule(&connection.name).accepts(password) {
        let rule = state.apps.password_rule(&connection.name);
        let message = format!("Password is too weak. It needs {}.", rule.requirements());
        return Ok(again(StatusCode::BAD_REQUEST, &message));
    }
    let now = state.clock.now_iso();
    let body = json!({"connection": connection.name, "email": email, "password": password});
    // The same rules as POST /api/v2/users: one way users come to be.
    let NewUser { user, password } = match new_user(&body, &connection, &now) {
        Ok(new) => new,
        Err(err) => return Ok(again(StatusCode::BAD_REQUEST, &err.to_string())),
    };
    let credential = Credential {
        password_hash: secrets::hash(password.unwrap_or_default()).await?,
        login_email: user.profile.email.as_deref().map(str::to_lowercase),
        login_username: None,
    };
    match state
        .store
        .create_user(
            &user,
            Some(&credential),
            &crate::store::Alongside::default(),
        )
        .await
    {
        Ok(()) => {}
        Err(Error::Domain(crate::domain::Error::UserExists)) => {
            return Ok(again(StatusCode::CONFLICT, "The user already exists."));
        }
        Err(err) => return Err(err),
    }
    complete_sign_in(&state, &tx, &user.user_id, &connection.name, email).await
}

/// Whether `name` is a social connection whose sign-in idlink emulates.
fn emulated(state: &AppState, name: &str) -> Option<Connection> {
    state
        .connection_by_name(name)
        .filter(|c| !c.is_database() && state.apps.is_emulated(&c.name))
        .cloned()
}

pub(super) async fn provider_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params = parse_query(query.as_deref());
    let token = params.get("state").map_or("", String::as_str);
    if Transaction::verify(&state, token).await.is_none() {
        return Ok(bad_transaction());
    }
    let name = params.get("connection").map_or("", String::as_str);
    let Some(connection) = emulated(&state, name) else {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "Unknown connection",
            "The connection was not found, or idlink does not emulate its identity provider.",
        ));
    };
    let (csrf, set) = csrf(&state, &headers);
    Ok(with_csrf(
        html(
            StatusCode::OK,
            pages::identity_provider(token, &csrf, &connection.name, None),
        ),
        set,
    ))
}

pub(super) async fn provider_submit(
    State(state): State<AppState>,
    SourceIp(source): SourceIp,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let form = parse_form(&body);
    let (tx, connection) = match posted(&state, &headers, &form).await {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    if emulated(&state, &connection.name).is_none() {
        return Ok(bad_transaction());
    }
    let token = form.get("state").map_or("", String::as_str);
    let csrf = form.get("csrf").map_or("", String::as_str);
    let again = |status: StatusCode, error: &str| {
        html(
            status,
            pages::identity_provider(token, csrf, &connection.name, Some(error)),
        )
    };
    let field = |k: &str| form.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    let Some(provider_id) = field("user_id") else {
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "Enter the provider's user ID.",
        ));
    };
    if !attempt_allowed(&state, source, provider_id) {
        return Ok(again(StatusCode::TOO_MANY_REQUESTS, TOO_MANY));
    }
    let key = IdentityKey::new(&connection.strategy, provider_id);
    let login_name = field("email").unwrap_or(provider_id).to_owned();
    // A later sign-in reuses the identity: its owner signs in (the primary, when the
    // identity has been linked to another user, as Auth0 does).
    let owner = match state.store.identity_login(&key).await? {
        Some(found) => Some(found),
        None => {
            let now = state.clock.now_iso();
            let mut body = json!({
                "connection": connection.name,
                "user_id": provider_id,
                "email_verified": form.get("email_verified").is_some_and(|v| v == "true" || v == "on"),
            });
            for key in ["email", "name", "picture"] {
                if let Some(value) = field(key) {
                    body[key] = json!(value);
                }
            }
            // What a provider sends and Auth0 keeps on the root profile of a first social
            // login: a nickname (the email's local part when the provider has none).
            if let Some(email) = field("email") {
                body["nickname"] = json!(email.split('@').next().unwrap_or(email));
            }
            let NewUser { user, .. } = match new_user(&body, &connection, &now) {
                Ok(new) => new,
                Err(err) => return Ok(again(StatusCode::BAD_REQUEST, &err.to_string())),
            };
            match state
                .store
                .create_user(&user, None, &crate::store::Alongside::default())
                .await
            {
                Ok(()) => Some((user.user_id.clone(), false)),
                // Created by a concurrent first sign-in: use that one.
                Err(Error::Domain(crate::domain::Error::UserExists)) => {
                    state.store.identity_login(&key).await?
                }
                Err(err) => return Err(err),
            }
        }
    };
    let Some((user_id, blocked)) = owner else {
        return Err(Error::internal(
            "a just-created social identity has no owner",
        ));
    };
    if blocked {
        record_failed_login(
            &state,
            &tx.client_id,
            &connection.name,
            Some(&user_id),
            &login_name,
            "user is blocked",
        )
        .await?;
        return Ok(again(StatusCode::UNAUTHORIZED, "Your account is blocked."));
    }
    complete_sign_in(&state, &tx, &user_id, &connection.name, &login_name).await
}
