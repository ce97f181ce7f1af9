//! Sign-in for apps (Auth0's Authentication API, the part sign-in and linking need):
//! `GET /authorize`, the login pages under `/u/` (as Auth0's Universal Login), the
//! emulated identity provider, `/userinfo`, `/v2/logout`, and CORS for web origins.
//!
//! The path of a sign-in: `/authorize` checks the request and signs it into a login
//! transaction (a short-lived token of idlink's own, so nothing is stored before the
//! user signs in) → `/u/login…` pages post back with the transaction and a CSRF token
//! → on success a session cookie, an authorization code in the store, and the redirect
//! to the application's callback.

mod authorize;
pub mod cors;
mod link_prompt;
mod login;
mod pages;
mod session;
pub mod shortcut;

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::auth::signin::{self, CODE_LIFETIME, CodeGrant, Grant};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{StoredCode, StoredSession};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/authorize", get(authorize::authorize))
        .route("/u/login", get(login::login_page).post(login::login_submit))
        .route(
            "/u/signup",
            get(login::signup_page).post(login::signup_submit),
        )
        .route(
            "/u/login/identity-provider",
            get(login::provider_page).post(login::provider_submit),
        )
        .route("/u/login/link", post(link_prompt::link_submit))
        .route("/userinfo", get(session::userinfo).post(session::userinfo))
        .route("/v2/logout", get(session::logout))
}

/// The session cookie.
const SESSION_COOKIE: &str = "idlink_session";
/// The CSRF cookie of the login forms (double submit: a form must carry its value).
const CSRF_COOKIE: &str = "idlink_csrf";
/// `aud` of login transactions.
const TX_PURPOSE: &str = "urn:idlink:login-transaction";
/// How long the login pages may take.
const TX_LIFETIME: i64 = 1800;

/// A checked `/authorize` request, carried through the login pages (signed).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Transaction {
    client_id: String,
    redirect_uri: String,
    /// `query`, `form_post` or `web_message`.
    response_mode: String,
    state: Option<String>,
    nonce: Option<String>,
    scope: String,
    audience: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    /// The connection asked for (`connection=`), skipping the chooser.
    connection: Option<String>,
}

impl Transaction {
    fn sign(&self, state: &AppState) -> Result<String> {
        state.tokens.sign_internal(TX_PURPOSE, TX_LIFETIME, self)
    }

    async fn verify(state: &AppState, token: &str) -> Option<Self> {
        state.tokens.verify_internal(TX_PURPOSE, token).await
    }
}

/// The value of cookie `name`.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Secure under HTTPS.
fn set_cookie(state: &AppState, name: &str, value: &str, path: &str, max_age: i64) -> HeaderValue {
    set_cookie_with(state, name, value, path, max_age, "Lax")
}

/// A `Set-Cookie` value: HttpOnly, SameSite=`same_site`, Secure under HTTPS.
pub(crate) fn set_cookie_with(
    state: &AppState,
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
    same_site: &str,
) -> HeaderValue {
    let secure = if state.signin.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// An HTML page with `status`, never cached.
fn html(status: StatusCode, markup: maud::Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The login pages may not be framed by another site (clickjacking).
    headers.insert("x-frame-options", HeaderValue::from_static("deny"));
    response
}

/// The error page of a request that cannot be answered at its redirect URI.
fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    html(status, pages::error(title, message))
}

/// `url` with `params` added to its query.
fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{query}")
}

/// Answers the application at its (checked) redirect URI, as `response_mode` says.
fn respond_to_app(redirect_uri: &str, response_mode: &str, params: &[(&str, &str)]) -> Response {
    if response_mode == "form_post" {
        return html(StatusCode::OK, pages::form_post(redirect_uri, params));
    }
    if response_mode == "web_message" {
        let response: serde_json::Map<String, serde_json::Value> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        let message = serde_json::json!({"type": "authorization_response", "response": response})
            .to_string()
            .replace('<', "\\u003c");
        let mut page = html(
            StatusCode::OK,
            pages::web_message(&origin_of(redirect_uri), &message),
        );
        // Framed by the application's page, by design of this mode.
        page.headers_mut().remove("x-frame-options");
        return page;
    }
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(location) = HeaderValue::from_str(&with_query(redirect_uri, params)) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
            format!("{scheme}://{host}")
        }
        None => url.to_owned(),
    }
}

/// An OAuth error sent back to the application (its redirect URI was checked).
fn error_to_app(tx: &Transaction, error: &str, description: &str) -> Response {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(s) = &tx.state {
        params.push(("state", s));
    }
    respond_to_app(&tx.redirect_uri, &tx.response_mode, &params)
}

/// A redirect to `location` (an idlink page).
fn redirect(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// The unexpired session the request's cookie names.
async fn current_session(state: &AppState, headers: &HeaderMap) -> Result<Option<StoredSession>> {
    match cookie(headers, SESSION_COOKIE) {
        Some(id) => {
            state
                .store
                .session(&signin::digest(id), state.clock.unix_now())
                .await
        }
        None => Ok(None),
    }
}

/// Stores an authorization code for `user_id` and sends it to the application.
async fn issue_code(
    state: &AppState,
    tx: &Transaction,
    user_id: &str,
    auth_time: i64,
) -> Result<Response> {
    let code = signin::random_token();
    let now = state.clock.unix_now();
    let payload = CodeGrant {
        grant: Grant {
            user_id: user_id.to_owned(),
            client_id: tx.client_id.clone(),
            scope: tx.scope.clone(),
            audience: tx.audience.clone(),
            nonce: tx.nonce.clone(),
            auth_time,
            sid: None,
        },
        redirect_uri: tx.redirect_uri.clone(),
        code_challenge: tx.code_challenge.clone(),
        code_challenge_method: tx.code_challenge_method.clone(),
    };
    state
        .store
        .put_code(
            &StoredCode {
                hash: signin::digest(&code),
                client_id: tx.client_id.clone(),
                payload: serde_json::to_string(&payload).map_err(Error::internal)?,
                expires_at: now + CODE_LIFETIME,
            },
            now,
        )
        .await?;
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = &tx.state {
        params.push(("state", s));
    }
    Ok(respond_to_app(&tx.redirect_uri, &tx.response_mode, &params))
}

/// A user signed in on a login page: counts the login and records the `s` event; then,
/// unless linking at sign-in offers to link another account first (see
/// [`link_prompt`]), starts the session and sends the code to the application. `csrf`
/// is the browser's CSRF token, for the forms of that offer.
async fn complete_sign_in(
    state: &AppState,
    tx: &Transaction,
    user_id: &str,
    connection: &str,
    login_name: &str,
    csrf: &str,
) -> Result<Response> {
    let now_iso = state.clock.now_iso();
    state.store.record_login(user_id, &now_iso).await?;
    state
        .store
        .record_log(&crate::domain::audit::LogEvent::login(
            &tx.client_id,
            connection,
            Some(user_id),
            login_name,
            None,
            &now_iso,
        ))
        .await?;
    if let Some(offer) = link_prompt::offer(state, tx, user_id, csrf).await? {
        return Ok(offer);
    }
    start_session(state, tx, user_id).await
}

/// Starts a session (cookie) for `user_id`, signed in now, and sends the code to the
/// application.
async fn start_session(state: &AppState, tx: &Transaction, user_id: &str) -> Result<Response> {
    let now = state.clock.unix_now();
    let session_id = signin::random_token();
    let lifetime = state.signin.session_lifetime;
    state
        .store
        .put_session(
            &StoredSession {
                hash: signin::digest(&session_id),
                user_id: user_id.to_owned(),
                auth_time: now,
                expires_at: now + lifetime,
            },
            now,
        )
        .await?;
    let mut response = issue_code(state, tx, user_id, now).await?;
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(state, SESSION_COOKIE, &session_id, "/", lifetime),
    );
    Ok(response)
}

/// Records a refused login (`f`).
async fn record_failed_login(
    state: &AppState,
    client_id: &str,
    connection: &str,
    user_id: Option<&str>,
    login_name: &str,
    reason: &str,
) -> Result<()> {
    state
        .store
        .record_log(&crate::domain::audit::LogEvent::login(
            client_id,
            connection,
            user_id,
            login_name,
            Some(reason),
            &state.clock.now_iso(),
        ))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_queries() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; idlink_session=xyz; b="),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "b"), None);
        assert_eq!(
            with_query("https://app/cb", &[("code", "a b"), ("state", "&")]),
            "https://app/cb?code=a+b&state=%26"
        );
        assert_eq!(
            with_query("https://app/cb?x=1", &[("code", "c")]),
            "https://app/cb?x=1&code=c"
        );
    }
}
