//! The OpenAPI 3.1 document, served at `GET /api/v2/openapi.json`.
//!
//! Generated, not written: every handler carries a `#[utoipa::path]` annotation (method,
//! path, parameters, body, responses, scopes) next to its code, the wire types derive
//! their schemas from the same structs the server serializes (`idlink-types` with its
//! `openapi` feature), and `tests/openapi.rs` fails when a route of the router is
//! missing from the document or a documented route is not served.

use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use idlink_types::{
    CreateUserRequestContent, ErrorBody, LinkUserIdentityRequestContent, OAuthErrorBody,
    TokenResponse, UpdateUserRequestContent, User, UserId, UserIdentity, UserProfileData,
    UsersPage,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, ResponseBuilder, ResponsesBuilder};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use crate::state::AppState;

/// The document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "idlink",
        description = "Auth0-compatible Management API v2 users and identity linking, the token endpoint and keys. Error bodies follow Auth0: `{statusCode, error, message, errorCode}` (the token endpoint: OAuth's `{error, error_description}`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::users::list,
        super::users::create,
        super::users::read,
        super::users::update,
        super::users::remove,
        super::users::by_email,
        super::identities::link,
        super::identities::unlink,
        super::identities::preview,
        super::events::stream,
        super::events::deliveries,
        super::connections::list,
        super::connections::read,
        super::logs::list,
        super::logs::user_logs,
        super::resource_servers::list,
        super::resource_servers::read,
        super::jobs::create_import,
        super::jobs::create_export,
        super::jobs::read,
        super::jobs::errors,
        super::jobs::download,
        super::oauth::token,
        super::well_known::jwks,
        super::well_known::openid_configuration,
        super::health,
        document,
    ),
    components(schemas(
        User,
        UsersPage,
        UserIdentity,
        UserProfileData,
        UserId,
        CreateUserRequestContent,
        UpdateUserRequestContent,
        LinkUserIdentityRequestContent,
        ErrorBody,
        OAuthErrorBody,
        TokenResponse,
        TokenRequest,
        GrantType,
        LogSort,
        LogEvent,
        LogsPage,
        Health,
        super::connections::ConnectionBody,
        ConnectionsPage,
        ConnectionsResponse,
        super::resource_servers::ResourceServerBody,
        super::resource_servers::ScopeBody,
        ResourceServersPage,
        ResourceServersResponse,
    )),
    modifiers(&BearerAuth, &FieldsLeaveKeysOut),
    tags(
        (name = "users", description = "Users"),
        (name = "identities", description = "Linking and unlinking identities"),
        (name = "connections", description = "The tenant's connections (read-only)"),
        (name = "logs", description = "The audit trail"),
        (name = "events", description = "Link events: the outbox as Server-Sent Events, webhook deliveries"),
        (name = "resource-servers", description = "The tenant's APIs (read-only)"),
        (name = "oauth", description = "Tokens"),
        (name = "meta", description = "Keys, discovery, health and this document"),
    )
)]
pub struct ApiDoc;

/// The `bearer` security scheme every Management API operation names with its scopes.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An RS256 access token for the Management API audience, from POST /oauth/token.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "client_secret_basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// `fields`/`include_fields` may leave any key out of a user or a connection (`user_id`
/// and `id` included), so their schemas require none — as Auth0's own document does.
struct FieldsLeaveKeysOut;

impl Modify for FieldsLeaveKeysOut {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for name in ["User", "ConnectionBody"] {
            if let Some(RefOr::T(utoipa::openapi::schema::Schema::Object(object))) =
                components.schemas.get_mut(name)
            {
                object.required.clear();
            }
        }
    }
}

/// The document, built once.
pub fn document_json() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(document))
}

/// This OpenAPI document.
#[utoipa::path(
    get,
    path = "/api/v2/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this server", content_type = "application/json", body = Object),
        ApiErrors,
    )
)]
pub(super) async fn document() -> Response {
    let mut response = Json(document_json()).into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The errors any Management API request may meet, each with Auth0's error body. (The
/// ones specific to an operation are listed with it.)
#[derive(Debug)]
pub struct ApiErrors;

impl IntoResponses for ApiErrors {
    fn responses() -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        ResponsesBuilder::new()
            .response("400", error("Invalid request (`invalid_body`, `invalid_uri`, `invalid_query_string`, …)"))
            .response("401", error("Missing or invalid token (`invalid_token`)"))
            .response("403", error("Insufficient scope (`insufficient_scope`) or not the caller's own user (`unowned_resource`)"))
            .response("404", error("Not found (`inexistent_user`, `inexistent_connection`, or no such route)"))
            .response("413", error("Body larger than 1 MB"))
            .response("414", error("Request target longer than 8 KiB"))
            .response("415", error("Body neither JSON nor form-encoded"))
            .response("429", error("Rate limit reached (`too_many_requests`); see `Retry-After`"))
            .response("431", error("Request headers larger than 16 KiB"))
            .response("503", error("The request ran past its deadline (`request_timeout`)"))
            .build()
            .responses
    }
}

/// Errors of the token endpoint: OAuth's body, except for the transport-level ones.
#[derive(Debug)]
pub struct OAuthErrors;

impl IntoResponses for OAuthErrors {
    fn responses() -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        let body = |description: &str, schema: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name(schema)))
                        .build(),
                )
                .build()
        };
        ResponsesBuilder::new()
            .response("400", body("`invalid_request`, `unsupported_grant_type`", "OAuthErrorBody"))
            .response("401", body("`access_denied`: client authentication failed; `unauthorized`: user blocked", "OAuthErrorBody"))
            .response("403", body("`invalid_grant` (wrong email or password), `access_denied`, `unauthorized_client`", "OAuthErrorBody"))
            .response("413", body("Body larger than 1 MB", "ErrorBody"))
            .response("414", body("Request target longer than 8 KiB", "ErrorBody"))
            .response("415", body("Body neither JSON nor form-encoded", "OAuthErrorBody"))
            .response("431", body("Request headers larger than 16 KiB", "ErrorBody"))
            .response("429", body("`too_many_requests`: the client id's or the source address's bucket is empty; see `Retry-After`", "OAuthErrorBody"))
            .response("503", body("The request ran past its deadline", "ErrorBody"))
            .build()
            .responses
    }
}

/// `POST /oauth/token` parameters (JSON or form). Which are required depends on
/// `grant_type`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenRequest {
    pub grant_type: GrantType,
    /// The client's id (or HTTP Basic authentication).
    pub client_id: Option<String>,
    /// The client's secret (or HTTP Basic authentication).
    pub client_secret: Option<String>,
    /// `https://{domain}/api/v2/`.
    pub audience: Option<String>,
    /// Space-separated scopes.
    pub scope: Option<String>,
    /// Password grants: the user's email or username.
    pub username: Option<String>,
    /// Password grants: the user's password.
    pub password: Option<String>,
    /// Password-realm grant: the database connection's name.
    pub realm: Option<String>,
}

/// The grants `POST /oauth/token` knows.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub enum GrantType {
    #[serde(rename = "client_credentials")]
    ClientCredentials,
    #[serde(rename = "password")]
    Password,
    #[serde(rename = "http://auth0.com/oauth/grant-type/password-realm")]
    PasswordRealm,
}

/// The orders log listings know.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub enum LogSort {
    /// Oldest first.
    #[serde(rename = "date:1")]
    OldestFirst,
    /// Newest first (the default).
    #[serde(rename = "date:-1")]
    NewestFirst,
}

/// A `GET /api/v2/users` answer: the users, or with `include_totals=true` a page.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum UsersResponse {
    Users(Vec<User>),
    Page(UsersPage),
}

/// A connections listing with `include_totals=true` (Auth0's envelope has no `length`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionsPage {
    pub total: u64,
    pub start: u64,
    pub limit: u64,
    pub connections: Vec<super::connections::ConnectionBody>,
}

/// A `GET /api/v2/connections` answer: the connections, or with `include_totals=true` a page.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ConnectionsResponse {
    Connections(Vec<super::connections::ConnectionBody>),
    Page(ConnectionsPage),
}

/// A page of `GET /api/v2/resource-servers?include_totals=true`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceServersPage {
    pub total: u64,
    pub start: u64,
    pub limit: u64,
    pub resource_servers: Vec<super::resource_servers::ResourceServerBody>,
}

/// A `GET /api/v2/resource-servers` answer: the APIs, or with `include_totals=true` a page.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ResourceServersResponse {
    ResourceServers(Vec<super::resource_servers::ResourceServerBody>),
    Page(ResourceServersPage),
}

/// One event of the audit trail, in Auth0's log-event shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogEvent {
    pub log_id: String,
    /// ISO-8601.
    pub date: String,
    /// `sapi` (a Management API operation that succeeded) or `fapi` (one that failed).
    #[serde(rename = "type")]
    pub event_type: String,
    pub description: String,
    #[schema(value_type = Object)]
    pub details: Map<String, Value>,
    /// The client that acted.
    pub client_id: Option<String>,
    /// The user acted on.
    pub user_id: Option<String>,
}

/// A log page with `include_totals=true`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogsPage {
    pub start: u64,
    pub limit: u64,
    pub length: u64,
    pub total: u64,
    pub logs: Vec<LogEvent>,
}

/// A log listing: the events, or with `include_totals=true` a page.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LogsResponse {
    Logs(Vec<LogEvent>),
    Page(LogsPage),
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `error`.
    pub status: String,
    /// `ok` or `unreachable`.
    pub database: String,
}
