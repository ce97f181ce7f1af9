//! `GET /api/v2/connections` and `GET /api/v2/connections/{id}`: the tenant's
//! connections, read-only, in Auth0's shape. SDKs look a connection up by name before
//! linking (go-auth0 sends `connection_id`, recorded in its `TestUserManager_Link`).

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::extract::{ApiPath, ApiQuery};
use super::fields::{FieldSelection, select_all};
use super::paging::Paging;
use crate::auth::Principal;
use crate::domain::error::Error as DomainError;
use crate::domain::model::Connection;
use crate::error::Result;
use crate::state::AppState;

/// The scope both endpoints need.
const SCOPES: &[&str] = &["read:connections"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/connections", get(list))
        .route("/connections/{id}", get(read))
}

/// A connection as Auth0 shows it. `options` holds only what idlink really has and
/// enforces — never Auth0's dashboard defaults idlink does not implement.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionBody {
    /// `con_` + 16 alphanumerics.
    pub id: String,
    pub name: String,
    /// `auth0` for a database connection, else the provider.
    pub strategy: String,
    /// Strategy-specific settings idlink enforces.
    #[schema(value_type = Object)]
    pub options: Map<String, Value>,
    /// Always `false`: idlink has no domain connections.
    pub is_domain_connection: bool,
    /// The realms the password-realm grant accepts for it: its name.
    pub realms: Vec<String>,
    /// Every client of the tenant: idlink does not restrict connections per client.
    pub enabled_clients: Vec<String>,
}

impl ConnectionBody {
    fn of(connection: &Connection, enabled_clients: &[String], apps: &crate::apps::Apps) -> Self {
        let options = if connection.is_database() {
            // What idlink does: usernames are optional, users are never imported
            // lazily from a legacy database, and new passwords meet the policy.
            let rule = apps.password_rule(&connection.name);
            let mut options = json!({
                "requires_username": false,
                "import_mode": false,
                "passwordPolicy": rule.policy.as_str(),
            });
            if let Some(min_length) = rule.min_length {
                options["password_complexity_options"] = json!({"min_length": min_length});
            }
            options
        } else {
            json!({})
        };
        Self {
            id: connection.id.clone(),
            name: connection.name.clone(),
            strategy: connection.strategy.clone(),
            options: options.as_object().cloned().unwrap_or_default(),
            is_domain_connection: false,
            realms: vec![connection.name.clone()],
            enabled_clients: enabled_clients.to_vec(),
        }
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[utoipa::path(
    get,
    path = "/api/v2/connections",
    tag = "connections",
    params(
        ("name" = Option<String>, Query, description = "Only the connection of this name"),
        ("strategy" = Option<String>, Query, description = "Only connections of this strategy"),
        ("fields" = Option<String>, Query, description = "Comma-separated keys to include (or exclude, see include_fields)"),
        ("include_fields" = Option<bool>, Query, description = "Whether `fields` are included (default) or excluded"),
        ("page" = Option<u64>, Query, description = "Page number, from 0"),
        ("per_page" = Option<u64>, Query, maximum = 100, description = "Items per page (default 50, at most 100)"),
        ("include_totals" = Option<bool>, Query, description = "Wrap the items in `{total, start, limit, connections}`"),
    ),
    responses((status = 200, description = "Connections", body = super::openapi::ConnectionsResponse), super::openapi::ApiErrors),
    security(("bearer" = ["read:connections"]))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Response> {
    principal.require_any(SCOPES)?;
    let paging = Paging::from_params(&params)?;
    let selection = FieldSelection::from_params(&params)?;
    let matching: Vec<&Connection> = state
        .connections
        .iter()
        .filter(|c| params.get("name").is_none_or(|name| &c.name == name))
        .filter(|c| params.get("strategy").is_none_or(|s| &c.strategy == s))
        .collect();
    let clients = state.store.client_ids().await?;
    let offset = usize::try_from(paging.offset()).unwrap_or(usize::MAX);
    let per_page = usize::try_from(paging.per_page).unwrap_or(usize::MAX);
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(per_page)
        .map(|c| ConnectionBody::of(c, &clients, &state.apps).to_value())
        .collect();
    let page = select_all(selection.as_ref(), page);
    Ok(paging.respond_without_length("connections", page, matching.len() as u64))
}

#[utoipa::path(
    get,
    path = "/api/v2/connections/{id}",
    tag = "connections",
    params(
        ("id" = String, Path, description = "The connection's id, `con_…`"),
        ("fields" = Option<String>, Query, description = "Comma-separated keys to include (or exclude, see include_fields)"),
        ("include_fields" = Option<bool>, Query, description = "Whether `fields` are included (default) or excluded"),
    ),
    responses(
        (status = 200, description = "The connection", body = ConnectionBody),
        super::openapi::ApiErrors,
    ),
    security(("bearer" = ["read:connections"]))
)]
pub(super) async fn read(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Response> {
    principal.require_any(SCOPES)?;
    let selection = FieldSelection::from_params(&params)?;
    let connection = state
        .connection_by_id(&id)
        .ok_or(DomainError::ConnectionNotFound)?;
    let clients = state.store.client_ids().await?;
    let body = ConnectionBody::of(connection, &clients, &state.apps).to_value();
    let body = select_all(selection.as_ref(), vec![body])
        .pop()
        .unwrap_or(Value::Null);
    Ok(Json(body).into_response())
}
