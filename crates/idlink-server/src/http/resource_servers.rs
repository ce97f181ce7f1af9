//! `GET /api/v2/resource-servers` and `GET /api/v2/resource-servers/{id}`: the tenant's
//! APIs, read-only, in Auth0's shape — the Management API itself first (`is_system`),
//! then the APIs of the config file.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{ApiPath, ApiQuery};
use super::paging::Paging;
use crate::apps::ResourceServer;
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::state::AppState;

/// The scope both endpoints need.
const SCOPES: &[&str] = &["read:resource_servers"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/resource-servers", get(list))
        .route("/resource-servers/{id}", get(read))
}

/// One permission of an API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeBody {
    pub value: String,
    pub description: String,
}

/// An API as Auth0 shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceServerBody {
    /// 24 hex characters.
    pub id: String,
    pub name: String,
    /// The `audience` of its tokens.
    pub identifier: String,
    pub is_system: bool,
    pub scopes: Vec<ScopeBody>,
    /// Always `RS256`: its tokens verify with the tenant's JWKS.
    pub signing_alg: String,
    /// Seconds.
    pub token_lifetime: i64,
    /// Seconds (idlink issues the same lifetime to browser flows).
    pub token_lifetime_for_web: i64,
    pub allow_offline_access: bool,
    pub skip_consent_for_verifiable_first_party_clients: bool,
}

impl ResourceServerBody {
    fn of(rs: &ResourceServer, is_system: bool) -> Self {
        Self {
            id: rs.id.clone(),
            name: rs.name.clone(),
            identifier: rs.identifier.clone(),
            is_system,
            scopes: rs
                .scopes
                .iter()
                .map(|(value, description)| ScopeBody {
                    value: value.clone(),
                    description: description.clone(),
                })
                .collect(),
            signing_alg: "RS256".into(),
            token_lifetime: rs.token_lifetime,
            token_lifetime_for_web: rs.token_lifetime.min(7200),
            allow_offline_access: rs.allow_offline_access,
            skip_consent_for_verifiable_first_party_clients: true,
        }
    }
}

/// Every API, the Management API first.
fn all(state: &AppState) -> Vec<ResourceServerBody> {
    let tenant = state.tokens.tenant();
    let management = ResourceServer {
        id: crate::apps::stable_hex(&format!("rs:{}", tenant.api_audience), 24),
        name: "Auth0 Management API".into(),
        identifier: tenant.api_audience.clone(),
        scopes: crate::auth::scopes::MANAGEMENT_SCOPES
            .iter()
            .map(|s| (s.to_string(), String::new()))
            .collect(),
        token_lifetime: tenant.access_token_lifetime,
        allow_offline_access: false,
    };
    std::iter::once(ResourceServerBody::of(&management, true))
        .chain(
            state
                .apps
                .resource_servers
                .iter()
                .map(|rs| ResourceServerBody::of(rs, false)),
        )
        .collect()
}

#[utoipa::path(
    get,
    path = "/api/v2/resource-servers",
    tag = "resource-servers",
    params(
        ("page" = Option<u64>, Query, description = "Page number, from 0"),
        ("per_page" = Option<u64>, Query, maximum = 100, description = "Items per page (default 50, at most 100)"),
        ("include_totals" = Option<bool>, Query, description = "Wrap the items in `{total, start, limit, resource_servers}`"),
    ),
    responses((status = 200, description = "The tenant's APIs", body = super::openapi::ResourceServersResponse), super::openapi::ApiErrors),
    security(("bearer" = ["read:resource_servers"]))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Response> {
    principal.require_any(SCOPES)?;
    let paging = Paging::from_params(&params)?;
    let everything = all(&state);
    let total = everything.len() as u64;
    let offset = usize::try_from(paging.offset()).unwrap_or(usize::MAX);
    let per_page = usize::try_from(paging.per_page).unwrap_or(usize::MAX);
    let page: Vec<ResourceServerBody> =
        everything.into_iter().skip(offset).take(per_page).collect();
    Ok(paging.respond_without_length("resource_servers", page, total))
}

#[utoipa::path(
    get,
    path = "/api/v2/resource-servers/{id}",
    tag = "resource-servers",
    params(("id" = String, Path, description = "The API's id or its identifier")),
    responses((status = 200, description = "The API", body = ResourceServerBody), super::openapi::ApiErrors),
    security(("bearer" = ["read:resource_servers"]))
)]
pub(super) async fn read(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Response> {
    principal.require_any(SCOPES)?;
    // Auth0 accepts the id or the identifier here.
    all(&state)
        .into_iter()
        .find(|rs| rs.id == id || rs.identifier == id)
        .map(|rs| Json(rs).into_response())
        .ok_or(Error::ResourceServerNotFound)
}
