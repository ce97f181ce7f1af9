//! Linking at sign-in (`[linking] at_sign_in = "prompt"`; see
//! `docs/linking-at-sign-in.md`): after a first sign-in proved one account, offer to link
//! the other account of the same verified email, and link only once the user has signed
//! in to that one too — Auth0's guidance: "request authentication for both accounts".
//!
//! The pending offer is a single-use row (in the table of authorization codes: short-
//! lived, taken by one `DELETE … RETURNING`, stored under a digest) named by a random
//! secret in an HttpOnly cookie of this browser. So a confirmation without that cookie,
//! a replayed one, or one after ten minutes links nothing; the forms carry the CSRF
//! token as every login form does. A wrong second password puts a fresh offer (new
//! secret) back, counting the attempt.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::login::{TOO_MANY, attempt_allowed, csrf_ok, emulated, parse_form};
use super::{
    Transaction, cookie, error_page, html, pages, record_failed_login, set_cookie, start_session,
};
use crate::auth::{secrets, signin};
use crate::domain::audit::{Actor, LogEvent, Operation, Outcome};
use crate::domain::linking::LinkProof;
use crate::domain::model::{Connection, IdentityKey, UserRecord};
use crate::domain::sign_in_linking::{AtSignIn, link_candidate, primary_and_secondary};
use crate::domain::users::UserQuery;
use crate::error::{Error, Result};
use crate::http::extract::RawBody;
use crate::ratelimit::SourceIp;
use crate::state::AppState;
use crate::store::StoredCode;

/// The cookie naming this browser's pending offer.
const LINK_COOKIE: &str = "idlink_link";
/// The path the offer's forms post to (and the only one its cookie is sent to).
const LINK_PATH: &str = "/u/login/link";
/// How long an offer stays open (seconds).
const OFFER_LIFETIME: i64 = 600;
/// Wrong second sign-ins one offer allows; then only "Continue without linking" works.
const MAX_ATTEMPTS: u32 = 5;
/// The `client_id` column of offer rows: no client has it, so `/oauth/token` can never
/// redeem an offer as an authorization code.
const OFFER_ROW_CLIENT: &str = "urn:idlink:link-offer";

/// A pending offer, as stored between the two sign-ins.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Offer {
    /// The authorization the first sign-in was for; it goes on after the offer.
    tx: Transaction,
    /// The user the first sign-in proved.
    user_id: String,
    /// The account offered: the other user of the same verified email.
    other_user_id: String,
    /// The email both have (the other account's, as shown and as its login).
    email: String,
    /// Wrong second sign-ins so far.
    attempts: u32,
    /// Unix seconds.
    expires_at: i64,
}

/// The row key of an offer whose cookie holds `secret` (namespaced, so no digest of an
/// authorization code can ever equal it).
fn row_key(secret: &str) -> String {
    signin::digest(&format!("link-offer:{secret}"))
}

/// How the user proves the other account: its main identity's connection, which must be
/// one a login page can sign in to.
fn second_sign_in(state: &AppState, other: &UserRecord) -> Option<Connection> {
    let main = other.identities.first()?;
    let connection = state.connection_by_id(&main.connection_id)?;
    if connection.is_database() {
        return Some(connection.clone());
    }
    emulated(state, &connection.name)
}

/// After the first sign-in of `user_id`: the page offering to link, when the setting is
/// `prompt` and the rule finds exactly one other account; `None` to sign in as usual.
pub(super) async fn offer(
    state: &AppState,
    tx: &Transaction,
    user_id: &str,
    csrf: &str,
) -> Result<Option<Response>> {
    if state.linking.at_sign_in != AtSignIn::Prompt {
        return Ok(None);
    }
    let Some(user) = state.store.user(user_id).await? else {
        return Ok(None);
    };
    let Some(email) = user
        .profile
        .email
        .clone()
        .filter(|_| user.profile.email_verified)
    else {
        return Ok(None);
    };
    let (same_email, _) = state.store.list_users(&UserQuery::by_email(&email)).await?;
    let Some(other) = link_candidate(&user, &same_email) else {
        return Ok(None);
    };
    let Some(connection) = second_sign_in(state, other) else {
        return Ok(None);
    };
    let offer = Offer {
        tx: tx.clone(),
        user_id: user.user_id.clone(),
        other_user_id: other.user_id.clone(),
        email: other.profile.email.clone().unwrap_or(email),
        attempts: 0,
        expires_at: state.clock.unix_now() + OFFER_LIFETIME,
    };
    let secret = put_offer(state, &offer).await?;
    record_step(state, &offer, Outcome::LinkPrompted).await?;
    Ok(Some(offer_page(
        state,
        StatusCode::OK,
        &offer,
        &connection,
        csrf,
        None,
        &secret,
    )))
}

/// Stores `offer` under a fresh secret; returns the secret (the cookie's value).
async fn put_offer(state: &AppState, offer: &Offer) -> Result<String> {
    let secret = signin::random_token();
    state
        .store
        .put_code(
            &StoredCode {
                hash: row_key(&secret),
                client_id: OFFER_ROW_CLIENT.to_owned(),
                payload: serde_json::to_string(offer).map_err(Error::internal)?,
                expires_at: offer.expires_at,
            },
            state.clock.unix_now(),
        )
        .await?;
    Ok(secret)
}

/// Takes (and so ends) the offer this browser's cookie names, if it is still open.
async fn take_offer(state: &AppState, headers: &HeaderMap) -> Result<Option<Offer>> {
    let Some(secret) = cookie(headers, LINK_COOKIE) else {
        return Ok(None);
    };
    let Some(row) = state.store.take_code(&row_key(secret)).await? else {
        return Ok(None);
    };
    if row.client_id != OFFER_ROW_CLIENT || row.expires_at <= state.clock.unix_now() {
        return Ok(None);
    }
    Ok(serde_json::from_str(&row.payload).ok())
}

async fn record_step(state: &AppState, offer: &Offer, step: Outcome) -> Result<()> {
    state
        .store
        .record_log(&LogEvent::sign_in_link(
            step,
            &offer.tx.client_id,
            &offer.user_id,
            &offer.other_user_id,
            &state.clock.now_iso(),
        ))
        .await
}

/// The offer page, with the cookie of its (new) secret.
fn offer_page(
    state: &AppState,
    status: StatusCode,
    offer: &Offer,
    connection: &Connection,
    csrf: &str,
    error: Option<&str>,
    secret: &str,
) -> Response {
    let mut response = html(
        status,
        pages::link_prompt(
            csrf,
            &offer.email,
            &connection.name,
            connection.is_database(),
            error,
        ),
    );
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(state, LINK_COOKIE, secret, LINK_PATH, OFFER_LIFETIME),
    );
    response
}

fn offer_gone() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "Invalid link request",
        "This offer to link accounts is invalid, expired or already used. Nothing was linked. Start again from the application.",
    )
}

/// The answer with the offer's cookie cleared.
fn clearing_cookie(state: &AppState, mut response: Response) -> Response {
    response
        .headers_mut()
        .append(SET_COOKIE, set_cookie(state, LINK_COOKIE, "", LINK_PATH, 0));
    response
}

/// `POST /u/login/link`: `choice=decline` goes on signed in as the first account;
/// `choice=link` with the other account's password (database) or provider user ID
/// (emulated social) links the two, then goes on signed in as the primary.
pub(super) async fn link_submit(
    State(state): State<AppState>,
    SourceIp(source): SourceIp,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let form = parse_form(&body);
    if !csrf_ok(&headers, &form) {
        return Ok(error_page(
            StatusCode::FORBIDDEN,
            "Invalid request",
            "The form's CSRF token is missing or does not match. Reload the page and try again.",
        ));
    }
    let csrf = form.get("csrf").map_or("", String::as_str);
    let Some(mut offer) = take_offer(&state, &headers).await? else {
        return Ok(clearing_cookie(&state, offer_gone()));
    };
    if form.get("choice").map(String::as_str) != Some("link") {
        record_step(&state, &offer, Outcome::LinkDeclined).await?;
        let response = start_session(&state, &offer.tx, &offer.user_id).await?;
        return Ok(clearing_cookie(&state, response));
    }

    let (Some(first), Some(other)) = (
        state.store.user(&offer.user_id).await?,
        state.store.user(&offer.other_user_id).await?,
    ) else {
        return Ok(clearing_cookie(&state, offer_gone()));
    };
    let Some(connection) = second_sign_in(&state, &other) else {
        return Ok(clearing_cookie(&state, offer_gone()));
    };
    // A refused attempt puts the offer back under a new secret, one attempt spent.
    let again = |offer: Offer, status: StatusCode, message: &'static str| {
        let state = state.clone();
        let connection = connection.clone();
        let csrf = csrf.to_owned();
        async move {
            let secret = put_offer(&state, &offer).await?;
            Ok::<_, Error>(offer_page(
                &state,
                status,
                &offer,
                &connection,
                &csrf,
                Some(message),
                &secret,
            ))
        }
    };
    if offer.attempts >= MAX_ATTEMPTS {
        return again(offer, StatusCode::TOO_MANY_REQUESTS, TOO_MANY_TRIES).await;
    }
    if !attempt_allowed(&state, source, &offer.email) {
        return again(offer, StatusCode::TOO_MANY_REQUESTS, TOO_MANY).await;
    }
    if !proves_other(&state, &form, &connection, &other, &offer.email).await? {
        offer.attempts += 1;
        record_failed_login(
            &state,
            &offer.tx.client_id,
            &connection.name,
            Some(&other.user_id),
            &offer.email,
            WRONG_PROOF,
        )
        .await?;
        return again(offer, StatusCode::BAD_REQUEST, WRONG_PROOF).await;
    }
    record_step(&state, &offer, Outcome::LinkConfirmed).await?;

    let (primary, secondary) = primary_and_secondary(&first, &other);
    let Some(target) = secondary.identities.first().map(|i| i.key()) else {
        return Err(Error::internal("a user without identities"));
    };
    let actor = Actor {
        client_id: Some(offer.tx.client_id.clone()),
        sub: offer.user_id.clone(),
        scope: String::new(),
    };
    let request =
        json!({"provider": target.provider, "user_id": target.user_id, "at_sign_in": true});
    let link_event = |status: StatusCode, error: Option<(&str, &str)>| {
        LogEvent::new(
            Operation::Link,
            &actor,
            &primary.user_id,
            Some(secondary.user_id.clone()),
            request.clone(),
            status.as_u16(),
            error,
            &state.clock.now_iso(),
        )
    };
    // Both accounts were signed in to, which is what a `link_with` ID token proves: the
    // same rules apply (a blocked secondary is refused), with the tenant's merge policy.
    // The link's events (docs/events.md) are written in its transaction, as the API's.
    let now = state.clock.now_iso();
    let alongside = state
        .events
        .alongside(Some(link_event(StatusCode::CREATED, None)), |f| {
            f.linked(&primary.user_id, Some(&secondary.user_id), &target, &now)
        });
    let linked = state
        .store
        .link(
            &primary.user_id,
            &target,
            &LinkProof::IdToken,
            &state.linking,
            &alongside,
        )
        .await;
    if linked.is_ok() {
        state.events.committed(&alongside.events);
    }
    if let Err(err) = linked {
        let (status, code) = err.status_and_code();
        let code = code.unwrap_or("server_error");
        let message = err.public_message();
        state.metrics.record_identity_operation("link", Some(code));
        state
            .store
            .record_log(&link_event(status, Some((code, &message))))
            .await?;
        return Ok(clearing_cookie(
            &state,
            error_page(
                StatusCode::CONFLICT,
                "The accounts could not be linked",
                &format!("{message} Nothing was linked. Start again from the application."),
            ),
        ));
    }
    state.metrics.record_identity_operation("link", None);
    let primary_id = primary.user_id.clone();
    let response = start_session(&state, &offer.tx, &primary_id).await?;
    Ok(clearing_cookie(&state, response))
}

const WRONG_PROOF: &str = "That is not the sign-in of the other account.";
const TOO_MANY_TRIES: &str = "Too many tries. Continue without linking, or start again later.";

/// Whether the form signs in to `other` on `connection`: its password (verified against
/// its login with `email`), or for an emulated social connection the provider's user
/// ID of its main identity (what the emulated provider page signs in with).
async fn proves_other(
    state: &AppState,
    form: &HashMap<String, String>,
    connection: &Connection,
    other: &UserRecord,
    email: &str,
) -> Result<bool> {
    if connection.is_database() {
        let password = form.get("password").map_or("", String::as_str);
        if password.is_empty() || password.len() > 1024 {
            return Ok(false);
        }
        let login = state.store.find_login(&connection.id, email).await?;
        let verified = secrets::verify(
            password.to_owned(),
            login.as_ref().map(|l| l.password_hash.clone()),
        )
        .await?;
        return Ok(
            verified && login.is_some_and(|l| l.owner_user_id == other.user_id && !l.blocked)
        );
    }
    let entered = form.get("user_id").map_or("", |s| s.trim());
    let key = IdentityKey::new(&connection.strategy, entered);
    Ok(!entered.is_empty()
        && !other.blocked
        && other.identities.first().is_some_and(|main| main.is(&key)))
}
