//! `/api/v2/users` and `/api/v2/users-by-email`.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use idlink_types::User;
use serde_json::Value;

use super::extract::{ApiPath, ApiQuery, RawBody, parse_payload};
use super::fields::{FieldSelection, select_all};
use super::idempotency::{Idempotency, Target};
use super::paging::Paging;
use crate::auth::{Principal, secrets};
use crate::domain::error::Error as DomainError;
use crate::domain::model::UserRecord;
use crate::domain::search;
use crate::domain::users::{self, NewUser, UserPatch, UserQuery};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::Credential;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/{id}", get(read).patch(update).delete(remove))
        .route("/users-by-email", get(by_email))
}

#[utoipa::path(
    post,
    path = "/api/v2/users",
    tag = "users",
    request_body(content = idlink_types::CreateUserRequestContent, content_type = "application/json"),
    responses(
        (status = 201, description = "The user created", body = User),
        (status = 409, description = "A user with this identity exists", body = idlink_types::ErrorBody),
        super::openapi::ApiErrors,
    ),
    security(("bearer" = ["create:users"]))
)]
pub(super) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    target: Target,
    headers: HeaderMap,
    RawBody(raw): RawBody,
) -> Result<Response> {
    principal.require_any(&["create:users"])?;
    let idempotency = Idempotency::from_request(&principal, &target, &headers, &raw)?;
    if let Some(replay) = idempotency.replay(&state).await? {
        return Ok(replay);
    }
    let body = parse_payload(&headers, &raw)?;
    let connection_name = users::create_connection_name(&body)?;
    let connection = state
        .connection_by_name(&connection_name)
        .ok_or(Error::InexistentConnection)?
        .clone();
    let now = state.clock.now_iso();
    let NewUser { user, password } = users::new_user(&body, &connection, &now)?;
    if let Some(password) = &password
        && !state.apps.password_rule(&connection.name).accepts(password)
    {
        return Err(DomainError::PasswordTooWeak.into());
    }
    let credential = match password {
        Some(password) => Some(Credential {
            password_hash: secrets::hash(password).await?,
            login_email: user.profile.email.as_deref().map(str::to_lowercase),
            login_username: user.profile.username.as_deref().map(str::to_lowercase),
        }),
        None => None,
    };
    let alongside = state
        .events
        .alongside(None, |f| f.created(&user, &now))
        .with_idempotency(idempotency.claim(&state, StatusCode::CREATED));
    match state
        .store
        .create_user(&user, credential.as_ref(), &alongside)
        .await
    {
        Ok(()) => {
            state.events.committed(&alongside.events);
            Ok((StatusCode::CREATED, Json(user.to_wire())).into_response())
        }
        Err(Error::IdempotencyKeyInUse) => idempotency.after_race(&state).await,
        Err(err) => Err(err),
    }
}

#[utoipa::path(
    get,
    path = "/api/v2/users/{id}",
    tag = "users",
    params(
        ("id" = String, Path, description = "The user's full user_id, e.g. `auth0|5f7c8ec7c33c6c004bbafe82` (percent-encoded)"),
        ("fields" = Option<String>, Query, description = "Comma-separated keys to include (or exclude, see include_fields)"),
        ("include_fields" = Option<bool>, Query, description = "Whether `fields` are included (default) or excluded"),
    ),
    responses((status = 200, description = "The user", body = User), super::openapi::ApiErrors),
    security(("bearer" = ["read:users"]), ("bearer" = ["read:current_user"]))
)]
pub(super) async fn read(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Json<Value>> {
    principal.authorize_on(&id, &["read:users", "read:current_user"])?;
    let selection = FieldSelection::from_params(&params)?;
    let user = state
        .store
        .user(&id)
        .await?
        .ok_or(DomainError::UserNotFound)?;
    let mut selected = select_all(selection.as_ref(), wire_users(&[user]));
    Ok(Json(selected.pop().unwrap_or(Value::Null)))
}

/// Users in their wire shape, as JSON values (so `fields` can select keys).
fn wire_users(users: &[UserRecord]) -> Vec<Value> {
    users
        .iter()
        .map(|user| serde_json::to_value(user.to_wire()).unwrap_or(Value::Null))
        .collect()
}

/// `search_engine`: Auth0 serves only `v3` today; absent means the same.
fn check_search_engine(params: &HashMap<String, String>) -> Result<()> {
    match params.get("search_engine").map(String::as_str) {
        None | Some("v3") => Ok(()),
        Some(other) => Err(Error::InvalidQuery(format!(
            "Query validation error: search_engine '{other}' is not supported (use v3)."
        ))),
    }
}

#[utoipa::path(
    get,
    path = "/api/v2/users",
    tag = "users",
    params(
        ("page" = Option<u64>, Query, description = "Page number, from 0"),
        ("per_page" = Option<u64>, Query, maximum = 100, description = "Items per page (default 50, at most 100)"),
        ("include_totals" = Option<bool>, Query, description = "Wrap the items in `{start, limit, length, total, …}`"),
        ("q" = Option<String>, Query, description = "Search, Auth0's v3 Lucene subset: `field:value`, `field:\"phrase\"`, `*` wildcards, AND/OR/NOT, parentheses, `[a TO b]`/`{a TO b}` on dates and logins_count, `_exists_:field`; fields user_id, email, email_verified, name, given_name, family_name, nickname, username, phone_number, blocked, created_at, updated_at, last_login, logins_count, identities.user_id|connection|provider|isSocial, user_metadata.*, app_metadata.*"),
        ("search_engine" = Option<String>, Query, description = "`v3` (the only one; may be omitted)"),
        ("sort" = Option<String>, Query, description = "`field:1` (ascending) or `field:-1` (descending), on a root attribute"),
        ("fields" = Option<String>, Query, description = "Comma-separated keys to include (or exclude, see include_fields)"),
        ("include_fields" = Option<bool>, Query, description = "Whether `fields` are included (default) or excluded"),
    ),
    responses(
        (status = 200, description = "Users (primaries and standalone users)", body = super::openapi::UsersResponse),
        super::openapi::ApiErrors,
    ),
    security(("bearer" = ["read:users"]))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Response> {
    principal.require_any(&["read:users"])?;
    let paging = Paging::from_params(&params)?;
    check_search_engine(&params)?;
    let selection = FieldSelection::from_params(&params)?;
    let query = UserQuery {
        filter: search::parse(params.get("q").map(String::as_str).unwrap_or(""))?,
        sort: params
            .get("sort")
            .map(|s| search::Sort::parse(s))
            .transpose()?,
        page: paging.page,
        per_page: paging.per_page,
    };
    let (users, total) = state.store.list_users(&query).await?;
    let users = select_all(selection.as_ref(), wire_users(&users));
    Ok(paging.respond("users", users, total))
}

#[utoipa::path(
    get,
    path = "/api/v2/users-by-email",
    tag = "users",
    params(
        ("email" = String, Query, min_length = 1, description = "The email address (case-insensitive)"),
        ("fields" = Option<String>, Query, description = "Comma-separated keys to include (or exclude, see include_fields)"),
        ("include_fields" = Option<bool>, Query, description = "Whether `fields` are included (default) or excluded"),
    ),
    responses((status = 200, description = "The users with this email", body = [User]), super::openapi::ApiErrors),
    security(("bearer" = ["read:users"]))
)]
pub(super) async fn by_email(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Json<Vec<Value>>> {
    principal.require_any(&["read:users"])?;
    let selection = FieldSelection::from_params(&params)?;
    let email = params
        .get("email")
        .filter(|e| !e.is_empty())
        .ok_or_else(|| {
            Error::InvalidQuery(
                "Query validation error: 'Missing required property: email'.".into(),
            )
        })?;
    let (users, _) = state.store.list_users(&UserQuery::by_email(email)).await?;
    Ok(Json(select_all(selection.as_ref(), wire_users(&users))))
}

#[utoipa::path(
    patch,
    path = "/api/v2/users/{id}",
    tag = "users",
    params(("id" = String, Path, description = "The user's full user_id, e.g. `auth0|5f7c8ec7c33c6c004bbafe82` (percent-encoded)")),
    request_body(content = idlink_types::UpdateUserRequestContent, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated user", body = User),
        super::openapi::ApiErrors,
    ),
    security(("bearer" = ["update:users"]))
)]
pub(super) async fn update(
    State(state): State<AppState>,
    principal: Principal,
    target: Target,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    principal.require_any(&["update:users"])?;
    let idempotency = Idempotency::from_request(&principal, &target, &headers, &body)?;
    if let Some(replay) = idempotency.replay(&state).await? {
        return Ok(replay);
    }
    let payload = parse_payload(&headers, &body)?;
    let (mut patch, password) = UserPatch::from_body(&payload)?;
    if let Some(password) = password {
        let user = state
            .store
            .user(&id)
            .await?
            .ok_or(DomainError::UserNotFound)?;
        let database = user
            .identities
            .first()
            .and_then(|main| state.connection_by_id(&main.connection_id))
            .filter(|c| c.is_database());
        let Some(database) = database else {
            return Err(Error::InvalidBody(
                "Cannot update password for non-database connections.".into(),
            ));
        };
        if !state.apps.password_rule(&database.name).accepts(&password) {
            return Err(DomainError::PasswordTooWeak.into());
        }
        patch.password_hash = Some(secrets::hash(password).await?);
    }
    let now = state.clock.now_iso();
    let attributes = || {
        payload
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let alongside = state
        .events
        .alongside(None, |f| f.updated(&id, attributes(), &now))
        .with_idempotency(idempotency.claim(&state, StatusCode::OK));
    match state.store.update_user(&id, &patch, &now, &alongside).await {
        Ok(user) => {
            state.events.committed(&alongside.events);
            Ok(Json(user.to_wire()).into_response())
        }
        Err(Error::IdempotencyKeyInUse) => idempotency.after_race(&state).await,
        Err(err) => Err(err),
    }
}

#[utoipa::path(
    delete,
    path = "/api/v2/users/{id}",
    tag = "users",
    params(("id" = String, Path, description = "The user's full user_id, e.g. `auth0|5f7c8ec7c33c6c004bbafe82` (percent-encoded)")),
    responses(
        (status = 204, description = "Deleted, with every linked identity (also when there was no such user)"),
        super::openapi::ApiErrors,
    ),
    security(("bearer" = ["delete:users"]))
)]
pub(super) async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    target: Target,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response> {
    principal.require_any(&["delete:users"])?;
    // A DELETE's body means nothing (and is not read): the fingerprint is of none.
    let idempotency = Idempotency::from_request(&principal, &target, &headers, &[])?;
    if let Some(replay) = idempotency.replay(&state).await? {
        return Ok(replay);
    }
    // Like Auth0, deleting a user that does not exist is not an error.
    let now = state.clock.now_iso();
    let alongside = state
        .events
        .alongside(None, |f| f.deleted(&id, &now))
        .with_idempotency(idempotency.claim(&state, StatusCode::NO_CONTENT));
    match state.store.delete_user(&id, &alongside).await {
        Ok(deleted) => {
            if deleted {
                state.events.committed(&alongside.events);
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(Error::IdempotencyKeyInUse) => idempotency.after_race(&state).await,
        Err(err) => Err(err),
    }
}
