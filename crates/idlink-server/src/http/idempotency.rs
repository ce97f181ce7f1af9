//! The `Idempotency-Key` request header on the Management API's writes (link, unlink,
//! user create, update, delete): reading and checking it, answering a repeat from the
//! store, and the claim the write stores in its own transaction. The rules themselves
//! (valid keys, fingerprints, repeats) are [`crate::domain::idempotency`]'s; without
//! the header nothing here does anything. See `docs/idempotency.md`.

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::Principal;
use crate::domain::idempotency::{self, Claim, Repeat, StoredAnswer};
use crate::error::{Error, Result};
use crate::state::AppState;

/// The request header naming a call.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header that marks an answer replayed from the store.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// What a request acts on, as its fingerprint names it: the method and the path as
/// sent (before any router nesting stripped a prefix; percent-encoding kept).
#[derive(Debug, Clone)]
pub struct Target {
    method: String,
    path: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Target {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        let path = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.path(), |original| original.path())
            .to_owned();
        Ok(Self {
            method: parts.method.as_str().to_owned(),
            path,
        })
    }
}

/// A request's idempotency: the caller's key and the request's fingerprint, or
/// nothing (no header: the request is served exactly as Auth0 does).
#[derive(Debug, Clone, Default)]
pub struct Idempotency(Option<Keyed>);

#[derive(Debug, Clone)]
struct Keyed {
    scope: String,
    key: String,
    fingerprint: String,
}

impl Idempotency {
    /// No key: nothing is claimed, nothing replayed.
    pub fn none() -> Self {
        Self(None)
    }

    /// Reads the header of a request to `target` with `body` (the raw bytes) by
    /// `principal`. A present but invalid key (empty, over 255 characters, control or
    /// non-ASCII characters, sent twice) is a 400 `invalid_headers`.
    pub fn from_request(
        principal: &Principal,
        target: &Target,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Self> {
        let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
        let Some(value) = values.next() else {
            return Ok(Self::none());
        };
        if values.next().is_some() {
            return Err(Error::InvalidHeader(
                "Invalid Idempotency-Key header: send it once.".into(),
            ));
        }
        let key = idempotency::parse_key(value.as_bytes())
            .map_err(|err| Error::InvalidHeader(err.message().into()))?;
        let claims = principal.claims();
        let scope = idempotency::scope(claims.azp.as_deref(), &claims.sub);
        let fingerprint = idempotency::fingerprint(&target.method, &target.path, &scope, body);
        Ok(Self(Some(Keyed {
            scope,
            key,
            fingerprint,
        })))
    }

    /// The answer to send instead of acting, when this key was used before (and has
    /// not expired): the first answer for the same request, 422 for another request.
    pub async fn replay(&self, state: &AppState) -> Result<Option<Response>> {
        let Some(keyed) = &self.0 else {
            return Ok(None);
        };
        let expired = state.clock.unix_now().saturating_sub(state.idempotency_ttl);
        let stored = state
            .store
            .idempotency_key(&keyed.scope, &keyed.key, expired)
            .await?;
        match stored.map(|stored| idempotency::repeat(stored, &keyed.fingerprint)) {
            None => Ok(None),
            Some(Repeat::Replay(answer)) => Ok(Some(replayed(answer)?)),
            Some(Repeat::Mismatch) => Err(Error::IdempotencyKeyReused),
            Some(Repeat::InProgress) => Err(Error::IdempotencyKeyInUse),
        }
    }

    /// What the write claims in its transaction, answering `status` on success.
    pub fn claim(&self, state: &AppState, status: StatusCode) -> Option<Claim> {
        self.0.as_ref().map(|keyed| {
            Claim::new(
                keyed.scope.clone(),
                keyed.key.clone(),
                keyed.fingerprint.clone(),
                status.as_u16(),
                state.clock.unix_now(),
                state.idempotency_ttl,
            )
        })
    }

    /// The answer of a write that found its key claimed by a concurrent call (which
    /// has committed by then: PostgreSQL made the claim wait for it, SQLite's writer
    /// answers after the commit): that call's answer, or 422 if it was another request.
    pub async fn after_race(&self, state: &AppState) -> Result<Response> {
        self.replay(state).await?.ok_or(Error::IdempotencyKeyInUse)
    }
}

/// A stored answer as the response: its status, its exact body, and
/// `Idempotent-Replayed: true`.
fn replayed(answer: StoredAnswer) -> Result<Response> {
    let status = StatusCode::from_u16(answer.status).map_err(Error::internal)?;
    let mut response = if answer.body.is_empty() {
        status.into_response()
    } else {
        (
            status,
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            answer.body,
        )
            .into_response()
    };
    response
        .headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    Ok(response)
}
