//! The admin web UI at `/ui/`: server-rendered with `maud`, usable without JavaScript
//! (plain forms and redirects; the vendored `htmx` only boosts links and forms).
//!
//! Sign-in takes a client's id and secret, checked as the client-credentials grant
//! checks them; the session is a signed cookie (`idlink_ui`, HttpOnly, SameSite=Strict,
//! Secure under HTTPS, 8 hours) holding the client id and the session's CSRF token,
//! which every form carries back. What the UI shows and does follows the client's
//! scopes, read again on every request: `read:users` to see anything, `update:users`
//! for the buttons that change something. Every change goes through the Management
//! API's own functions (`http/identities.rs`), audit trail included, with the UI's
//! client as the actor. In emulator mode a loopback browser is signed in as the
//! emulator's admin client.

mod audit;
mod emulator;
mod suggest;
mod users;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::auth::signin;
use crate::auth::tokens::{AccessClaims, Audience};
use crate::auth::{Principal, secrets};
use crate::error::Error;
use crate::http::authn::{cookie, set_cookie_with};
use crate::state::AppState;

/// The session cookie of the UI.
const SESSION_COOKIE: &str = "idlink_ui";
/// The CSRF cookie of the sign-in form (before there is a session).
const LOGIN_CSRF_COOKIE: &str = "idlink_ui_csrf";
/// `aud` of UI session tokens.
const SESSION_PURPOSE: &str = "urn:idlink:ui-session";
/// How long a UI session lasts: 8 hours.
pub const SESSION_LIFETIME: i64 = 8 * 3600;
/// The header every UI page carries: no inline scripts or styles.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

const CSS: &[u8] = include_bytes!("../../../assets/ui.css");
/// htmx 2.0.4 from the npm package `htmx.org` (0BSD, see `assets/htmx.LICENSE`).
const HTMX: &[u8] = include_bytes!("../../../assets/htmx.min.js");

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { redirect("/ui/users") }))
        .route("/ui/", get(|| async { redirect("/ui/users") }))
        .route("/ui/login", get(login_page).post(login_submit))
        .route("/ui/logout", post(logout))
        .route("/ui/assets/ui.css", get(css))
        .route("/ui/assets/htmx.min.js", get(htmx))
        .merge(users::router())
        .merge(audit::router())
        .merge(suggest::router())
        .merge(emulator::router())
        .layer(middleware::from_fn_with_state(state, headers))
}

/// Every UI answer: the CSP, never cached, never framed.
async fn headers(State(_): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert("x-frame-options", HeaderValue::from_static("deny"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn htmx() -> Response {
    asset("text/javascript; charset=utf-8", HTMX)
}

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// What the signed cookie holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionToken {
    client_id: String,
    csrf: String,
}

/// A signed-in UI session: the client, its scopes as they are now, the CSRF token.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub client_id: String,
    scopes: Vec<String>,
    pub csrf: String,
    /// Whether the server is the emulator (the Emulator page exists).
    pub emulator: bool,
    /// A fresh cookie to send (automatic emulator sign-in).
    set_cookie: Option<HeaderValue>,
}

impl Session {
    pub fn can(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether the session may change users.
    pub fn can_update(&self) -> bool {
        self.can("update:users")
    }

    /// The session as the Management API's caller: a client-credentials principal of
    /// the UI's client, so authorization and the audit trail are the API's.
    pub fn principal(&self, state: &AppState) -> Principal {
        let tenant = state.tokens.tenant();
        let now = state.clock.unix_now();
        Principal(Arc::new(AccessClaims {
            iss: tenant.issuer.clone(),
            sub: format!("{}@clients", self.client_id),
            aud: Audience::One(tenant.api_audience.clone()),
            iat: now,
            exp: now + SESSION_LIFETIME,
            azp: Some(self.client_id.clone()),
            scope: self.scopes.join(" "),
            gty: Some("client-credentials".into()),
        }))
    }

    /// Whether `form` carries this session's CSRF token.
    pub fn csrf_ok(&self, form: &HashMap<String, String>) -> bool {
        form.get("csrf")
            .is_some_and(|sent| bool::from(sent.as_bytes().ct_eq(self.csrf.as_bytes())))
    }

    /// `response` with the session's fresh cookie, if any.
    pub fn finish(&self, mut response: Response) -> Response {
        if let Some(cookie) = &self.set_cookie {
            response.headers_mut().append(SET_COOKIE, cookie.clone());
        }
        response
    }
}

fn session_cookie(state: &AppState, value: &str, max_age: i64) -> HeaderValue {
    set_cookie_with(state, SESSION_COOKIE, value, "/ui", max_age, "Strict")
}

/// The request's session: its cookie, or in emulator mode from loopback the admin
/// client's. `None`: not signed in (or the client is gone).
pub(crate) async fn session(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<Option<Session>, Error> {
    if let Some(token) = cookie(headers, SESSION_COOKIE) {
        if let Some(t) = state
            .tokens
            .verify_internal::<SessionToken>(SESSION_PURPOSE, token)
            .await
        {
            if let Some(client) = state.store.client(&t.client_id).await? {
                return Ok(Some(Session {
                    client_id: client.client_id,
                    scopes: client.scopes,
                    csrf: t.csrf,
                    emulator: state.emulator.is_some(),
                    set_cookie: None,
                }));
            }
        }
    }
    let Some(emulator) = state.emulator.as_ref() else {
        return Ok(None);
    };
    if !crate::emulator::control_allowed(peer.map(|p| p.ip()), false) {
        return Ok(None);
    }
    let Some(client) = state.store.client(&emulator.admin_client).await? else {
        return Ok(None);
    };
    let (value, csrf) = new_session(state, &client.client_id)?;
    Ok(Some(Session {
        client_id: client.client_id,
        scopes: client.scopes,
        csrf,
        emulator: true,
        set_cookie: Some(session_cookie(state, &value, SESSION_LIFETIME)),
    }))
}

fn new_session(state: &AppState, client_id: &str) -> Result<(String, String), Error> {
    let csrf = signin::random_token();
    let token = state.tokens.sign_internal(
        SESSION_PURPOSE,
        SESSION_LIFETIME,
        &SessionToken {
            client_id: client_id.to_owned(),
            csrf: csrf.clone(),
        },
    )?;
    Ok((token, csrf))
}

/// The peer's address, when the server knows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| *addr),
        ))
    }
}

pub(crate) fn peer(connect: &Peer) -> Option<SocketAddr> {
    connect.0
}

/// A form body (`application/x-www-form-urlencoded`) as a map; a malformed one is empty.
pub(crate) struct FormMap(pub HashMap<String, String>);

impl FormMap {
    pub fn of(body: &Bytes) -> Self {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        Self(pairs.into_iter().collect())
    }
}

/// Query parameters as a map; malformed ones are left out.
pub(crate) fn query_map(query: Option<&str>) -> HashMap<String, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default();
    pairs.into_iter().collect()
}

/// The session, or the answer to give instead: sign-in for nobody, 403 without
/// `read:users`.
pub(crate) async fn require(
    state: &AppState,
    headers: &HeaderMap,
    connect: &Peer,
) -> Result<Session, Response> {
    match session(state, headers, peer(connect)).await {
        Err(err) => Err(error_page(&err)),
        Ok(None) => Err(redirect("/ui/login")),
        Ok(Some(session)) if !session.can("read:users") => Err(session.finish(page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            Some(&session),
            html! {
                h1 { "Not allowed" }
                p { "The client " code { (session.client_id) } " lacks the scope " code { "read:users" } ", which the admin UI needs." }
            },
        ))),
        Ok(Some(session)) => Ok(session),
    }
}

/// A POST's session with its CSRF token checked (403 without it).
pub(crate) async fn require_post(
    state: &AppState,
    headers: &HeaderMap,
    connect: &Peer,
    form: &HashMap<String, String>,
) -> Result<Session, Response> {
    let session = require(state, headers, connect).await?;
    if !session.csrf_ok(form) {
        return Err(forbidden_csrf());
    }
    Ok(session)
}

fn forbidden_csrf() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Forbidden",
        None,
        html! {
            h1 { "Forbidden" }
            p.error role="alert" { "The form's CSRF token is missing or wrong; reload the page and try again." }
        },
    )
}

/// The error's words with Auth0's errorCode, as the API would answer.
pub(crate) fn error_words(err: &Error) -> String {
    let (_, code) = err.status_and_code();
    match code {
        Some(code) => format!("{} (errorCode: {code})", err.public_message()),
        None => err.public_message().into_owned(),
    }
}

fn error_page(err: &Error) -> Response {
    let (status, _) = err.status_and_code();
    page(
        status,
        "Error",
        None,
        html! { h1 { "Error" } p.error role="alert" { (error_words(err)) } },
    )
}

pub(crate) fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// A user id as one path segment.
pub(crate) fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The hidden CSRF field of every form.
pub(crate) fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A whole page: header with the navigation, `main` with `body`.
pub(crate) fn page(
    status: StatusCode,
    title: &str,
    session: Option<&Session>,
    body: Markup,
) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx may not add inline styles (CSP) nor evaluate code.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
                title { (title) " · idlink admin" }
                link rel="stylesheet" href="/ui/assets/ui.css";
                script src="/ui/assets/htmx.min.js" defer {}
            }
            body hx-boost="true" {
                header.top {
                    a.brand href="/ui/users" { "idlink admin" }
                    @if let Some(session) = session {
                        nav aria-label="Main" {
                            a href="/ui/users" { "Users" }
                            a href="/ui/suggested" { "Suggested links" }
                            a href="/ui/audit" { "Audit log" }
                            @if session.emulator { a href="/ui/emulator" { "Emulator" } }
                        }
                        form.signout method="post" action="/ui/logout" {
                            (csrf_field(session))
                            span.who { (session.client_id) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    let mut response = (status, markup.into_string()).into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn login_csrf(state: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, LOGIN_CSRF_COOKIE) {
        Some(token) if token.len() == 43 => (token.to_owned(), None),
        _ => {
            let token = signin::random_token();
            let header = set_cookie_with(state, LOGIN_CSRF_COOKIE, &token, "/ui", 1800, "Strict");
            (token, Some(header))
        }
    }
}

fn login_form(csrf: &str, error: Option<&str>, client_id: &str) -> Markup {
    html! {
        section.card.narrow {
            h1 { "Sign in" }
            p { "Sign in with a client's id and secret (a client holding " code { "read:users" } ", and " code { "update:users" } " to make changes)." }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action="/ui/login" {
                input type="hidden" name="csrf" value=(csrf);
                label for="client_id" { "Client ID" }
                input id="client_id" name="client_id" type="text" autocomplete="username" required value=(client_id);
                label for="client_secret" { "Client secret" }
                input id="client_secret" name="client_secret" type="password" autocomplete="current-password" required;
                button.primary type="submit" { "Sign in" }
            }
        }
    }
}

async fn login_page(State(state): State<AppState>, headers: HeaderMap, connect: Peer) -> Response {
    // Signed in by cookie: on to the users. (The emulator's automatic sign-in does not
    // apply here, so another client can sign in.)
    if let Ok(Some(session)) = session(&state, &headers, peer(&connect)).await {
        if session.set_cookie.is_none() {
            return redirect("/ui/users");
        }
    }
    let (csrf, set) = login_csrf(&state, &headers);
    let mut response = page(StatusCode::OK, "Sign in", None, login_form(&csrf, None, ""));
    if let Some(set) = set {
        response.headers_mut().append(SET_COOKIE, set);
    }
    response
}

async fn login_submit(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = FormMap::of(&body).0;
    let sent_ok = match (cookie(&headers, LOGIN_CSRF_COOKIE), form.get("csrf")) {
        (Some(c), Some(s)) => bool::from(c.as_bytes().ct_eq(s.as_bytes())),
        _ => false,
    };
    if !sent_ok {
        return forbidden_csrf();
    }
    let client_id = form.get("client_id").map_or("", |s| s.trim());
    let secret = form.get("client_secret").map_or("", String::as_str);
    let csrf = form.get("csrf").map_or("", String::as_str);
    let fail = |status: StatusCode, message: &str| {
        page(
            status,
            "Sign in",
            None,
            login_form(csrf, Some(message), client_id),
        )
    };
    let decision = state.token_limiter.check_client(client_id);
    if !decision.allowed {
        return fail(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "Too many attempts for this client; try again in {} s (errorCode: too_many_requests).",
                decision.retry_after
            ),
        );
    }
    match check_secret(&state, client_id, secret).await {
        Ok(true) => {}
        Ok(false) => {
            return fail(
                StatusCode::UNAUTHORIZED,
                "Wrong client ID or secret (errorCode: access_denied).",
            );
        }
        Err(err) => return error_page(&err),
    }
    match new_session(&state, client_id) {
        Ok((value, _)) => {
            let mut response = redirect("/ui/users");
            response
                .headers_mut()
                .append(SET_COOKIE, session_cookie(&state, &value, SESSION_LIFETIME));
            response
        }
        Err(err) => error_page(&err),
    }
}

/// The client-credentials check: a confidential client whose secret matches (the same
/// work for an unknown client, so ids are not revealed by timing).
async fn check_secret(state: &AppState, client_id: &str, secret: &str) -> Result<bool, Error> {
    let client = state.store.client(client_id).await?;
    match client {
        Some(client) => match &client.secret_hash {
            Some(hash) => {
                state
                    .client_secrets
                    .verify(&client.client_id, secret, hash)
                    .await
            }
            None => Ok(false),
        },
        None => {
            secrets::verify(secret.to_owned(), None).await?;
            Ok(false)
        }
    }
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    connect: Peer,
    body: Bytes,
) -> Response {
    let form = FormMap::of(&body).0;
    if let Err(response) = require_post(&state, &headers, &connect, &form).await {
        return response;
    }
    let mut response = page(
        StatusCode::OK,
        "Signed out",
        None,
        html! { section.card.narrow { h1 { "Signed out" } p { a href="/ui/login" { "Sign in again" } } } },
    );
    response
        .headers_mut()
        .append(SET_COOKIE, session_cookie(&state, "", 0));
    response
}
