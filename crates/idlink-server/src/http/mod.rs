//! The HTTP surface: one module per resource, merged here into one router.

pub mod authn;
mod connections;
mod content_type;
mod events;
pub mod extract;
pub mod faults;
mod fields;
mod idempotency;
mod identities;
mod jobs;
pub mod limits;
mod logs;
mod oauth;
pub mod observe;
pub mod openapi;
mod paging;
mod resource_servers;
mod ui;
mod users;
mod well_known;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router, middleware};
use serde_json::{Value, json};
use tower_http::trace::TraceLayer;

use crate::error::Error;
use crate::ratelimit;
use crate::state::AppState;

/// The whole application; used by the binary and by tests alike.
pub fn app(state: AppState) -> Router {
    let management = Router::new()
        .merge(users::router())
        .merge(identities::router())
        .merge(connections::router())
        .merge(logs::router())
        .merge(resource_servers::router())
        .merge(jobs::router())
        .merge(openapi::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            ratelimit::middleware,
        ));
    // idlink's own API beside Auth0's: the same authentication and rate limits.
    let mut extensions = Router::new()
        .merge(identities::extension_router())
        .merge(events::router())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            ratelimit::middleware,
        ));
    if state.emulator.is_some() {
        // Never in plain `serve`: there, every control path is a 404.
        extensions = extensions.merge(crate::emulator::control::router(state.clone()));
    }
    let extensions = extensions
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    let authentication = Router::new()
        .merge(oauth::router())
        .merge(well_known::router())
        .merge(authn::router())
        .route("/health", get(health))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            ratelimit::authentication_middleware,
        ));
    Router::new()
        .nest("/api/v2", management)
        .nest("/idlink/v1", extensions)
        .merge(authentication)
        .merge(jobs::files_router())
        .merge(ui::router(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::middleware,
        ))
        .layer(middleware::from_fn(content_type::middleware))
        // Faults answer before anything else sees the request (limits, rate limits,
        // handlers), so a faulted request has no effect.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            faults::middleware,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            authn::cors::middleware,
        ))
        .layer(TraceLayer::new_for_http())
        // Outermost: every answer, refusals of the layers above included, gets the
        // request id and a log line.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            observe::request_log,
        ))
        .layer(observe::propagate_request_id_layer())
        .layer(observe::set_request_id_layer())
        .layer(middleware::from_fn(observe::sanitize_request_id))
        .with_state(state)
}

async fn not_found() -> Error {
    Error::RouteNotFound
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}

/// Liveness and database reachability, for load balancers: 200 when the database
/// answers, 503 when it does not (so traffic moves to instances that can serve).
#[utoipa::path(
    get,
    path = "/health",
    tag = "meta",
    responses(
        (status = 200, description = "The database answers", body = openapi::Health),
        (status = 503, description = "The database does not answer", body = openapi::Health),
    )
)]
pub(super) async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "database": "ok"})),
        ),
        Err(err) => {
            tracing::warn!(error = %err, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "error", "database": "unreachable"})),
            )
        }
    }
}
