//! The audit trail: `GET /api/v2/logs` and `GET /api/v2/users/{id}/logs`, in Auth0's
//! log-event shape.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

use super::extract::{ApiPath, ApiQuery};
use super::paging::Paging;
use crate::auth::Principal;
use crate::domain::audit::{LogEvent, LogQuery, Outcome};
use crate::domain::users::parse_terms;
use crate::error::{Error, Result};
use crate::state::AppState;

/// The event types `q=type:` filters on: Auth0's, then idlink's linking at sign-in.
const LOG_TYPES: &[&str] = &[
    "sapi",
    "fapi",
    "s",
    "f",
    "idlink_link_prompted",
    "idlink_link_confirmed",
    "idlink_link_declined",
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/logs", get(list))
        .route("/users/{id}/logs", get(user_logs))
}

/// `sort=date:-1` (newest first, the default) or `date:1`.
fn ascending(params: &HashMap<String, String>) -> Result<bool> {
    match params.get("sort").map(String::as_str) {
        None | Some("date:-1") => Ok(false),
        Some("date:1") => Ok(true),
        Some(other) => Err(Error::InvalidQuery(format!(
            "Query validation error: unsupported sort '{other}' (use date:1 or date:-1)."
        ))),
    }
}

fn respond(paging: Paging, events: Vec<LogEvent>, total: u64) -> Response {
    let events: Vec<_> = events.iter().map(LogEvent::to_wire).collect();
    paging.respond("logs", events, total)
}

#[utoipa::path(
    get,
    path = "/api/v2/logs",
    tag = "logs",
    params(
        ("page" = Option<u64>, Query, description = "Page number, from 0"),
        ("per_page" = Option<u64>, Query, maximum = 100, description = "Items per page (default 50, at most 100)"),
        ("include_totals" = Option<bool>, Query, description = "Wrap the items in `{start, limit, length, total, …}`"),
        ("q" = Option<String>, Query, description = "`user_id:…` and/or `type:sapi|fapi|s|f`, joined by `AND`"),
        ("sort" = Option<super::openapi::LogSort>, Query, description = "`date:1` (oldest first) or `date:-1` (default)"),
    ),
    responses((status = 200, description = "Log events", body = super::openapi::LogsResponse), super::openapi::ApiErrors),
    security(("bearer" = ["read:logs"]))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Response> {
    principal.require_any(&["read:logs"])?;
    let paging = Paging::from_params(&params)?;
    let mut query = LogQuery {
        user_id: None,
        outcome: None,
        page: paging.page,
        per_page: paging.per_page,
        ascending: ascending(&params)?,
    };
    for (field, value) in parse_terms(params.get("q").map(String::as_str).unwrap_or(""))? {
        match field.as_str() {
            "user_id" => query.user_id = Some(value),
            "type" if LOG_TYPES.contains(&value.as_str()) => {
                query.outcome = Some(Outcome::from_code(&value));
            }
            _ => {
                return Err(Error::InvalidQuery(format!(
                    "Query validation error: unsupported search term '{field}:{value}' (use user_id or type:{}).",
                    LOG_TYPES.join("|")
                )));
            }
        }
    }
    let (events, total) = state.store.list_logs(&query).await?;
    Ok(respond(paging, events, total))
}

#[utoipa::path(
    get,
    path = "/api/v2/users/{id}/logs",
    tag = "logs",
    params(
        ("id" = String, Path, description = "The user's full user_id, e.g. `auth0|5f7c8ec7c33c6c004bbafe82` (percent-encoded)"),
        ("page" = Option<u64>, Query, description = "Page number, from 0"),
        ("per_page" = Option<u64>, Query, maximum = 100, description = "Items per page (default 50, at most 100)"),
        ("include_totals" = Option<bool>, Query, description = "Wrap the items in `{start, limit, length, total, …}`"),
        ("sort" = Option<super::openapi::LogSort>, Query, description = "`date:1` (oldest first) or `date:-1` (default)"),
    ),
    responses((status = 200, description = "The user's log events", body = super::openapi::LogsResponse), super::openapi::ApiErrors),
    security(("bearer" = ["read:logs_users"]))
)]
pub(super) async fn user_logs(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Response> {
    principal.require_any(&["read:logs_users"])?;
    let paging = Paging::from_params(&params)?;
    let query = LogQuery {
        user_id: Some(id),
        outcome: None,
        page: paging.page,
        per_page: paging.per_page,
        ascending: ascending(&params)?,
    };
    let (events, total) = state.store.list_logs(&query).await?;
    Ok(respond(paging, events, total))
}
