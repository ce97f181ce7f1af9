//! `POST /api/v2/users/{id}/identities` (link),
//! `DELETE /api/v2/users/{id}/identities/{provider}/{user_id}` (unlink), and idlink's
//! `POST /idlink/v1/users/{id}/identities/preview` (the link's outcome, nothing written).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use idlink_types::UserIdentity;
use serde_json::{Value, json};

use super::extract::{ApiPath, RawBody, parse_payload};
use super::idempotency::{Idempotency, Target};
use crate::auth::Principal;
use crate::domain::audit::{LogEvent, Operation};
use crate::domain::error::Error as DomainError;
use crate::domain::idempotency::Claim;
use crate::domain::linking::{self, LinkProof, LinkingPolicy};
use crate::domain::merge::MergePolicy;
use crate::domain::model::{Identity, IdentityKey};
use crate::domain::users::{json_type, reject_unknown, type_error};
use crate::error::{Error, Result};
use crate::http::observe::RequestId;
use crate::state::AppState;

/// Scopes of both endpoints: `update:users` acts on anyone,
/// `update:current_user_identities` only on the token's own user.
const SCOPES: &[&str; 2] = &["update:users", "update:current_user_identities"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/{id}/identities", post(link))
        .route(
            "/users/{id}/identities/{provider}/{user_id}",
            delete(unlink),
        )
}

/// idlink's own routes about linking (mounted under `/idlink/v1`).
pub fn extension_router() -> Router<AppState> {
    Router::new().route("/users/{id}/identities/preview", post(preview))
}

/// The request header that overrides the tenant's `[linking] merge` for one link.
pub const MERGE_POLICY_HEADER: &str = "idlink-merge-policy";

/// The tenant's linking policy, with the merge policy a request may name instead.
fn linking_policy(state: &AppState, headers: &HeaderMap) -> Result<LinkingPolicy> {
    let mut policy = state.linking;
    if let Some(value) = headers.get(MERGE_POLICY_HEADER) {
        policy.merge = value
            .to_str()
            .ok()
            .and_then(MergePolicy::parse)
            .ok_or_else(|| {
                Error::InvalidHeader(format!(
                    "Invalid value of header {MERGE_POLICY_HEADER}: expected none, primary-wins or secondary-wins."
                ))
            })?;
    }
    Ok(policy)
}

/// A validated link body.
#[derive(Debug, PartialEq)]
enum LinkRequest {
    /// Mode A: the secondary account's JWT.
    Token(String),
    /// Mode B: the secondary identity by name.
    Identity {
        provider: String,
        user_id: String,
        connection_id: Option<String>,
    },
}

fn is_connection_id(s: &str) -> bool {
    s.len() == 20 && s.starts_with("con_") && s[4..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Validates a link body against `LinkUserIdentityRequestContent`.
fn parse_link_request(body: &Value) -> Result<LinkRequest> {
    let object = body.as_object().ok_or_else(|| {
        Error::InvalidBody(format!(
            "Payload validation error: 'Expected type object but found type {}'.",
            json_type(body)
        ))
    })?;
    reject_unknown(
        object,
        &["provider", "connection_id", "user_id", "link_with"],
    )?;
    if object.is_empty() {
        return Err(Error::InvalidBody(
            "Payload validation error: 'Too few properties defined (0), minimum 1'.".into(),
        ));
    }
    let string = |key: &str| -> Result<Option<String>> {
        match object.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(Error::InvalidBody(format!(
                "Payload validation error: 'String is too short (0 chars), minimum 1' on property {key}."
            ))),
            Some(_) => Err(type_error(key, "string").into()),
        }
    };
    let provider = string("provider")?;
    let link_with = string("link_with")?;
    let connection_id = string("connection_id")?;
    if let Some(id) = &connection_id {
        if !is_connection_id(id) {
            return Err(Error::InvalidBody(format!(
                "Payload validation error: 'String does not match pattern ^con_[A-Za-z0-9]{{16}}$: {id}' on property connection_id."
            )));
        }
    }
    let user_id = match object.get("user_id") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Some(_) => return Err(type_error("user_id", "string or integer").into()),
    };

    if let Some(token) = link_with {
        if provider.is_some() || user_id.is_some() || connection_id.is_some() {
            return Err(Error::InvalidBody(
                "Payload validation error: 'link_with' must not be sent with provider, user_id or connection_id.".into(),
            ));
        }
        return Ok(LinkRequest::Token(token));
    }
    let missing = |key: &str| {
        Error::InvalidBody(format!(
            "Payload validation error: 'Missing required property: {key}'."
        ))
    };
    Ok(LinkRequest::Identity {
        provider: provider.ok_or_else(|| missing("provider"))?,
        user_id: user_id.ok_or_else(|| missing("user_id"))?,
        connection_id,
    })
}

fn wire(identities: &[Identity]) -> Vec<UserIdentity> {
    identities.iter().map(Identity::to_wire).collect()
}

/// What the audit trail says about a request as it is understood so far.
#[derive(Debug, Default)]
struct Attempted {
    /// The request, without secrets (a `link_with` token is never recorded).
    request: Value,
    /// The other user involved.
    secondary_user_id: Option<String>,
}

/// The metric label of an operation.
fn operation_label(operation: Operation) -> &'static str {
    match operation {
        Operation::Link => "link",
        Operation::Unlink => "unlink",
    }
}

/// Records a failed attempt. Best effort: the request's own answer matters more than
/// its record, so a failure to write is logged, not returned.
async fn record_failure(
    state: &AppState,
    operation: Operation,
    principal: &Principal,
    request_id: &RequestId,
    primary: &str,
    attempted: Attempted,
    err: &Error,
) {
    let (status, code) = err.status_and_code();
    state.metrics.record_identity_operation(
        operation_label(operation),
        Some(code.unwrap_or("server_error")),
    );
    let event = LogEvent::new(
        operation,
        &principal.actor(),
        primary,
        attempted.secondary_user_id,
        attempted.request,
        status.as_u16(),
        Some((code.unwrap_or("server_error"), &err.public_message())),
        &state.clock.now_iso(),
    )
    .with_request_id(request_id.as_deref());
    if let Err(write_err) = state.store.record_log(&event).await {
        tracing::warn!(error = %write_err, "could not record a failed attempt in the audit trail");
    }
}

#[utoipa::path(
    post,
    path = "/api/v2/users/{id}/identities",
    tag = "identities",
    params(("id" = String, Path, description = "The primary user's user_id")),
    request_body(content(
        (idlink_types::LinkUserIdentityRequestContent = "application/json"),
        (idlink_types::LinkUserIdentityRequestContent = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 201, description = "The primary's identities, primary first, each with profileData", body = [UserIdentity]),
        (status = 409, description = "The identity is already linked to the primary (`identity_conflict`)", body = idlink_types::ErrorBody),
        super::openapi::ApiErrors,
    ),
    security(("bearer" = ["update:users"]), ("bearer" = ["update:current_user_identities"]))
)]
pub(super) async fn link(
    State(state): State<AppState>,
    principal: Principal,
    request_id: RequestId,
    target: Target,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let idempotency = keyed(&principal, &id, &target, &headers, &body)?;
    if let Some(replay) = idempotency.replay(&state).await? {
        return Ok(replay);
    }
    let claim = idempotency.claim(&state, StatusCode::CREATED);
    match perform_link(&state, &principal, &request_id, &id, &headers, &body, claim).await {
        Ok(identities) => Ok((StatusCode::CREATED, Json(wire(&identities))).into_response()),
        Err(Error::IdempotencyKeyInUse) => idempotency.after_race(&state).await,
        Err(err) => Err(err),
    }
}

/// The request's `Idempotency-Key`, read once the caller may act on `id`: a replay
/// shows what the first call answered, so it is only for a caller who could make the
/// call now; a refused caller gets the refusal (and its record) from the operation.
fn keyed(
    principal: &Principal,
    id: &str,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Idempotency> {
    match principal.authorize_on(id, SCOPES) {
        Ok(()) => Idempotency::from_request(principal, target, headers, body),
        Err(_) => Ok(Idempotency::none()),
    }
}

/// A link as `POST /api/v2/users/{id}/identities` makes it, body and headers
/// included: metrics and the audit trail (a failed attempt too) are written here, so
/// the admin UI links through exactly this path. `claim` is the caller's
/// `Idempotency-Key`, stored in the link's transaction.
pub(crate) async fn perform_link(
    state: &AppState,
    principal: &Principal,
    request_id: &RequestId,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    claim: Option<Claim>,
) -> Result<Vec<Identity>> {
    let mut attempted = Attempted::default();
    let checked = link_checked(
        state,
        principal,
        request_id,
        id,
        (headers, body),
        claim,
        &mut attempted,
    );
    match checked.await {
        Ok(identities) => {
            state.metrics.record_identity_operation("link", None);
            Ok(identities)
        }
        // A concurrent call with the same key linked: this one did nothing, and
        // answers with that call's answer.
        Err(err @ Error::IdempotencyKeyInUse) => Err(err),
        Err(err) => {
            record_failure(
                state,
                Operation::Link,
                principal,
                request_id,
                id,
                attempted,
                &err,
            )
            .await;
            Err(err)
        }
    }
}

/// Authorize, validate, resolve the secondary, link — in the contract's order.
async fn link_checked(
    state: &AppState,
    principal: &Principal,
    request_id: &RequestId,
    id: &str,
    (headers, body): (&HeaderMap, &[u8]),
    claim: Option<Claim>,
    attempted: &mut Attempted,
) -> Result<Vec<Identity>> {
    let (target, proof, policy) =
        resolve_link(state, principal, id, headers, body, attempted).await?;
    // A successful link makes the secondary (whose main identity is the target) part
    // of the primary; the event is written in the link's own transaction.
    let now = state.clock.now_iso();
    let event = LogEvent::new(
        Operation::Link,
        &principal.actor(),
        id,
        attempted.secondary_user_id.clone(),
        attempted.request.clone(),
        StatusCode::CREATED.as_u16(),
        None,
        &now,
    )
    .with_request_id(request_id.as_deref());
    let secondary = attempted.secondary_user_id.as_deref();
    let alongside = state
        .events
        .alongside(Some(event), |f| f.linked(id, secondary, &target, &now))
        .with_idempotency(claim);
    let identities = state
        .store
        .link(id, &target, &proof, &policy, &alongside)
        .await?;
    state.events.committed(&alongside.events);
    Ok(identities)
}

/// Everything a link decides before it touches the store: the caller may act on `id`,
/// the body is valid, and names (or proves) the identity to link, under which policy.
async fn resolve_link(
    state: &AppState,
    principal: &Principal,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    attempted: &mut Attempted,
) -> Result<(IdentityKey, LinkProof, LinkingPolicy)> {
    principal.authorize_on(id, SCOPES)?;
    let policy = linking_policy(state, headers)?;
    let request = parse_link_request(&parse_payload(headers, body)?)?;
    let (target, proof) = match request {
        LinkRequest::Identity {
            provider,
            user_id,
            connection_id,
        } => {
            attempted.request =
                json!({"provider": provider, "user_id": user_id, "connection_id": connection_id});
            principal.authorize_link_by_name()?;
            let configured = match &connection_id {
                Some(id) => state
                    .connection_by_id(id)
                    .is_some_and(|c| c.strategy == provider),
                None => state.has_strategy(&provider),
            };
            if !configured {
                return Err(Error::InexistentConnection);
            }
            (
                IdentityKey::new(&provider, &user_id),
                LinkProof::Named { connection_id },
            )
        }
        LinkRequest::Token(token) => {
            attempted.request = json!({"link_with": "[redacted]"});
            let sub = state
                .tokens
                .verify_link_with(&token, principal.claims())
                .await?;
            attempted.request = json!({"link_with": "[redacted]", "sub": sub});
            let target = IdentityKey::from_user_id(&sub).ok_or(Error::InvalidLinkWith(
                "JWT (link_with) contains an invalid sub claim.",
            ))?;
            (target, LinkProof::IdToken)
        }
    };
    attempted.secondary_user_id = Some(target.to_user_id());
    if policy.merge != MergePolicy::None {
        attempted.request["merge"] = json!(policy.merge);
    }
    Ok((target, proof, policy))
}

/// The answer of a link preview.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Preview {
    /// The primary as it would be after the link (`GET /api/v2/users/{id}`'s shape).
    pub(crate) user: idlink_types::User,
    /// The link's own answer.
    pub(crate) identities: Vec<UserIdentity>,
    /// The metadata the merge would throw away.
    pub(crate) discarded: Discarded,
    /// The merge policy applied.
    pub(crate) merge: MergePolicy,
}

#[derive(Debug, serde::Serialize)]
pub(crate) struct Discarded {
    pub(crate) user_metadata: serde_json::Map<String, Value>,
    pub(crate) app_metadata: serde_json::Map<String, Value>,
}

/// What a link with this body would do, decided by the same rule on the users as they
/// are now; nothing is written (a real link decides again inside its transaction).
#[utoipa::path(
    post,
    path = "/idlink/v1/users/{id}/identities/preview",
    tag = "identities",
    params(
        ("id" = String, Path, description = "The primary user's user_id"),
        ("idlink-merge-policy" = Option<String>, Header, description = "none, primary-wins or secondary-wins: overrides the tenant's [linking] merge"),
    ),
    request_body(content(
        (idlink_types::LinkUserIdentityRequestContent = "application/json"),
    )),
    responses(
        (status = 200, description = "The primary as it would be after the link, the link's answer, and the metadata the merge would discard; nothing is written", body = Object),
        (status = 409, description = "The identity is already linked to the primary (`identity_conflict`)", body = idlink_types::ErrorBody),
        super::openapi::ApiErrors,
    ),
    security(("bearer" = ["update:users"]), ("bearer" = ["update:current_user_identities"]))
)]
pub(super) async fn preview(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Preview>> {
    Ok(Json(
        perform_preview(&state, &principal, &id, &headers, &body).await?,
    ))
}

/// What a link with this body would do (the preview endpoint's answer); nothing is
/// written. Shared with the admin UI.
pub(crate) async fn perform_preview(
    state: &AppState,
    principal: &Principal,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Preview> {
    let mut attempted = Attempted::default();
    let (target, proof, policy) =
        resolve_link(state, principal, id, headers, body, &mut attempted).await?;
    let primary = state
        .store
        .user(id)
        .await?
        .ok_or(DomainError::UserNotFound)?;
    // A linkable secondary is a standalone user, whose id its main identity names.
    let secondary = state.store.user(&target.to_user_id()).await?;
    let plan = linking::plan_link(&primary, &target, &proof, secondary.as_ref(), &policy)?;
    Ok(Preview {
        user: plan.primary_after(&primary).to_wire(),
        identities: wire(&plan.identities),
        discarded: Discarded {
            user_metadata: plan.discarded.user_metadata,
            app_metadata: plan.discarded.app_metadata,
        },
        merge: policy.merge,
    })
}

#[utoipa::path(
    delete,
    path = "/api/v2/users/{id}/identities/{provider}/{user_id}",
    tag = "identities",
    params(
        ("id" = String, Path, description = "The primary user's user_id"),
        ("provider" = String, Path, description = "The identity's provider"),
        ("user_id" = String, Path, description = "The identity's provider-side id (after `provider|`), compared literally"),
    ),
    responses(
        (status = 200, description = "The primary's remaining identities, each with profileData (unchanged when the identity is not on the user)", body = [UserIdentity]),
        super::openapi::ApiErrors,
    ),
    security(("bearer" = ["update:users"]), ("bearer" = ["update:current_user_identities"]))
)]
pub(super) async fn unlink(
    State(state): State<AppState>,
    principal: Principal,
    request_id: RequestId,
    target: Target,
    ApiPath((id, provider, user_id)): ApiPath<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    // A DELETE's body means nothing (and is not read): the fingerprint is of none.
    let idempotency = keyed(&principal, &id, &target, &headers, &[])?;
    if let Some(replay) = idempotency.replay(&state).await? {
        return Ok(replay);
    }
    let target = (provider.as_str(), user_id.as_str());
    let claim = idempotency.claim(&state, StatusCode::OK);
    match perform_unlink(&state, &principal, &request_id, &id, target, claim).await {
        Ok(remaining) => Ok(Json(wire(&remaining)).into_response()),
        Err(Error::IdempotencyKeyInUse) => idempotency.after_race(&state).await,
        Err(err) => Err(err),
    }
}

/// An unlink as `DELETE /api/v2/users/{id}/identities/{provider}/{user_id}` makes it,
/// audit trail and metrics included (`claim`: the caller's `Idempotency-Key`, stored
/// in the unlink's transaction). Shared with the admin UI.
pub(crate) async fn perform_unlink(
    state: &AppState,
    principal: &Principal,
    request_id: &RequestId,
    id: &str,
    (provider, user_id): (&str, &str),
    claim: Option<Claim>,
) -> Result<Vec<Identity>> {
    let target = IdentityKey::literal(provider, user_id);
    let attempted = || Attempted {
        request: json!({"provider": provider, "user_id": user_id}),
        secondary_user_id: Some(target.to_user_id()),
    };
    let outcome = match principal.authorize_on(id, SCOPES) {
        Ok(()) => {
            let now = state.clock.now_iso();
            let attempt = attempted();
            let event = LogEvent::new(
                Operation::Unlink,
                &principal.actor(),
                id,
                attempt.secondary_user_id,
                attempt.request,
                StatusCode::OK.as_u16(),
                None,
                &now,
            )
            .with_request_id(request_id.as_deref());
            let new_user_id = target.to_user_id();
            // Kept for the no-op answer, which records the attempt on its own.
            let alongside = state
                .events
                .alongside(Some(event.clone()), |f| {
                    f.unlinked(id, &new_user_id, &target, &now)
                })
                .with_idempotency(claim);
            let unlinked = state
                .store
                .unlink(id, &target, &now, state.linking.unlink, &alongside)
                .await;
            match unlinked {
                Err(Error::Domain(DomainError::IdentityNotFound)) => {
                    unlink_no_op(state, id, event).await
                }
                Ok(remaining) => {
                    state.events.committed(&alongside.events);
                    Ok(remaining)
                }
                other => other,
            }
        }
        Err(err) => Err(err),
    };
    match outcome {
        Ok(remaining) => {
            state.metrics.record_identity_operation("unlink", None);
            Ok(remaining)
        }
        // A concurrent call with the same key unlinked: this one did nothing.
        Err(err @ Error::IdempotencyKeyInUse) => Err(err),
        Err(err) => {
            record_failure(
                state,
                Operation::Unlink,
                principal,
                request_id,
                id,
                attempted(),
                &err,
            )
            .await;
            Err(err)
        }
    }
}

/// An unlink of an identity that is not on the user: Auth0 answers 200 with the
/// identities as they are and changes nothing; the trail records it as a no-op.
async fn unlink_no_op(state: &AppState, id: &str, event: LogEvent) -> Result<Vec<Identity>> {
    let primary = state
        .store
        .user(id)
        .await?
        .ok_or(DomainError::UserNotFound)?;
    if let Err(write_err) = state.store.record_log(&event.into_no_op()).await {
        tracing::warn!(error = %write_err, "could not record a no-op unlink in the audit trail");
    }
    Ok(linking::unlink_no_op_answer(&primary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rejected(body: Value) -> String {
        match parse_link_request(&body) {
            Err(err) if err.status_and_code().1 == Some("invalid_body") => err.to_string(),
            other => panic!("{body} was not rejected: {other:?}"),
        }
    }

    #[test]
    fn valid_bodies() {
        assert_eq!(
            parse_link_request(&json!({"provider": "github", "user_id": 12})).unwrap(),
            LinkRequest::Identity {
                provider: "github".into(),
                user_id: "12".into(),
                connection_id: None
            }
        );
        assert_eq!(
            parse_link_request(&json!({"link_with": "a.b.c"})).unwrap(),
            LinkRequest::Token("a.b.c".into())
        );
        assert!(parse_link_request(&json!({"provider": "auth0", "user_id": "x", "connection_id": "con_0123456789abcdef"})).is_ok());
    }

    #[test]
    fn invalid_bodies() {
        assert!(rejected(json!([])).contains("Expected type object"));
        assert!(rejected(Value::Null).contains("found type null"));
        assert!(rejected(json!({})).contains("Too few properties"));
        assert!(
            rejected(json!({"provider": "github", "user_id": "1", "extra": 1})).contains("extra")
        );
        assert!(rejected(json!({"provider": 5, "user_id": "1"})).contains("provider"));
        assert!(rejected(json!({"provider": "github", "user_id": 1.5})).contains("user_id"));
        assert!(rejected(json!({"provider": "github", "user_id": ""})).contains("user_id"));
        assert!(rejected(json!({"provider": "github"})).contains("user_id"));
        assert!(rejected(json!({"user_id": "1"})).contains("provider"));
        assert!(rejected(json!({"link_with": "t", "provider": "github"})).contains("link_with"));
        assert!(
            rejected(json!({"provider": "auth0", "user_id": "1", "connection_id": "con_short"}))
                .contains("pattern")
        );
    }
}
