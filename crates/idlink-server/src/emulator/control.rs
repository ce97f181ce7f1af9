//! The control API, `/idlink/v1/…` (emulator mode only). JSON in and out; errors in
//! Auth0's shape; every call recorded in the audit log (`GET /api/v2/logs`).
//!
//! Adding a control route is one `.route(…)` line in [`router`].

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use idlink_types::ErrorBody;
use serde::Deserialize;
use serde_json::{Value, json};

use super::snapshot::Snapshot;
use super::{control_allowed, control_event};
use crate::error::{Error, Result};
use crate::http::extract::ApiQuery;
use crate::http::faults::FaultRules;
use crate::state::AppState;

/// Largest control request body (a snapshot of many users).
pub const CONTROL_BODY_LIMIT: usize = 256 * 1024 * 1024;

/// The control routes, relative to `/idlink/v1`.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/users", delete(delete_users))
        .route("/reset", post(reset))
        .route("/snapshot", get(get_snapshot).put(put_snapshot))
        .route("/clock", get(get_clock).put(put_clock))
        .route("/clock/advance", post(advance_clock))
        .route(
            "/faults",
            get(get_faults).put(put_faults).delete(delete_faults),
        )
        // Tokens for a user without a browser sign-in (`POST /idlink/v1/tokens`).
        .merge(crate::http::authn::shortcut::router())
        .layer(DefaultBodyLimit::max(CONTROL_BODY_LIMIT))
        .route_layer(middleware::from_fn_with_state(state, guard))
}

/// Refuses control calls from other hosts (unless `--allow-remote-control`).
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let allow_remote = state
        .emulator
        .as_ref()
        .is_some_and(|e| e.allow_remote_control);
    if control_allowed(peer, allow_remote) {
        return next.run(request).await;
    }
    let message = "The emulator control API answers only on loopback; start idlink emulate \
                   with --allow-remote-control to allow other addresses.";
    let event = control_event(
        &state.clock.now_iso(),
        request.method().as_str(),
        request.uri().path(),
        403,
        Some(message),
    );
    if let Err(err) = state.store.record_log(&event).await {
        tracing::warn!(error = %err, "cannot record a refused control call");
    }
    let body = ErrorBody {
        status_code: 403,
        error: "Forbidden".into(),
        message: message.into(),
        error_code: Some("remote_control_disabled".into()),
    };
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

/// Records a control call that wrote nothing else (clock, faults, a refused body).
async fn record(state: &AppState, method: Method, path: &str, outcome: &Result<()>) {
    let (status, message) = match outcome {
        Ok(()) => (200, None),
        Err(err) => (
            err.status_and_code().0.as_u16(),
            Some(err.public_message().into_owned()),
        ),
    };
    let event = control_event(
        &state.clock.now_iso(),
        method.as_str(),
        path,
        status,
        message.as_deref(),
    );
    if let Err(err) = state.store.record_log(&event).await {
        tracing::warn!(error = %err, "cannot record a control call");
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        Error::InvalidBody(format!("{path}: {}", err.into_inner()))
    })
}

fn emulator(state: &AppState) -> Result<&super::Emulator> {
    state
        .emulator
        .as_deref()
        .ok_or_else(|| Error::internal("control API outside emulator mode"))
}

/// `DELETE /idlink/v1/users`: every user and identity goes; clients, connections and
/// keys stay. The per-test reset.
pub(crate) async fn delete_users(State(state): State<AppState>) -> Result<Json<Value>> {
    let emulator = emulator(&state)?;
    let _writing = emulator.writing.lock().await;
    let event = control_event(
        &state.clock.now_iso(),
        "DELETE",
        "/idlink/v1/users",
        200,
        None,
    );
    state.store.delete_all_users(&event).await?;
    Ok(Json(json!({})))
}

/// `POST /idlink/v1/reset`: back to exactly the state the emulator started with.
pub(crate) async fn reset(State(state): State<AppState>) -> Result<Json<Value>> {
    let emulator = emulator(&state)?;
    let _writing = emulator.writing.lock().await;
    let target = emulator.reset_target()?;
    super::replace(&state, &target, |now| {
        control_event(now, "POST", "/idlink/v1/reset", 200, None)
    })
    .await?;
    Ok(Json(json!({})))
}

/// `GET /idlink/v1/snapshot[?include_keys=true]`: the tenant as a seed file.
async fn get_snapshot(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Response> {
    let include_keys = match params.get("include_keys").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(Error::InvalidQuery(format!(
                "include_keys must be true or false, not {other:?}"
            )));
        }
    };
    let snapshot = super::export(&state, include_keys).await?;
    let outcome = Ok(());
    record(&state, Method::GET, "/idlink/v1/snapshot", &outcome).await;
    let mut response = snapshot.to_json().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// `PUT /idlink/v1/snapshot`: replaces the tenant (validated first: a bad snapshot is a
/// 400 naming its JSON path, and nothing changes).
pub(crate) async fn put_snapshot(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>> {
    let emulator = emulator(&state)?;
    let _writing = emulator.writing.lock().await;
    let result = async {
        let snapshot = Snapshot::from_json(&body).map_err(|e| Error::InvalidBody(e.to_string()))?;
        super::replace(&state, &snapshot, |now| {
            control_event(now, "PUT", "/idlink/v1/snapshot", 200, None)
        })
        .await
    }
    .await;
    if result.is_err() {
        record(&state, Method::PUT, "/idlink/v1/snapshot", &result).await;
    }
    result.map(|()| Json(json!({})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockOffset {
    offset_seconds: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockAdvance {
    seconds: i64,
}

pub(crate) fn clock_answer(state: &AppState) -> Json<Value> {
    Json(json!({"offset_seconds": state.clock.offset_seconds()}))
}

fn out_of_range() -> Error {
    Error::InvalidBody(format!(
        "the clock offset must stay within ±{} seconds",
        crate::clock::MAX_OFFSET_SECONDS
    ))
}

/// `GET /idlink/v1/clock`.
pub(crate) async fn get_clock(State(state): State<AppState>) -> Json<Value> {
    record(&state, Method::GET, "/idlink/v1/clock", &Ok(())).await;
    clock_answer(&state)
}

/// `PUT /idlink/v1/clock {"offset_seconds": N}`.
pub(crate) async fn put_clock(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>> {
    let result = parse::<ClockOffset>(&body).and_then(|c| {
        state
            .clock
            .set_offset(c.offset_seconds)
            .map(drop)
            .ok_or_else(out_of_range)
    });
    record(&state, Method::PUT, "/idlink/v1/clock", &result).await;
    result.map(|()| clock_answer(&state))
}

/// `POST /idlink/v1/clock/advance {"seconds": N}`.
pub(crate) async fn advance_clock(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>> {
    let result = parse::<ClockAdvance>(&body).and_then(|a| {
        state
            .clock
            .advance(a.seconds)
            .map(drop)
            .ok_or_else(out_of_range)
    });
    record(&state, Method::POST, "/idlink/v1/clock/advance", &result).await;
    result.map(|()| clock_answer(&state))
}

/// `GET /idlink/v1/faults`: the rules with their counters (`hits`, `remaining`).
pub(crate) async fn get_faults(State(state): State<AppState>) -> Result<Json<Value>> {
    let described = emulator(&state)?.faults.describe();
    record(&state, Method::GET, "/idlink/v1/faults", &Ok(())).await;
    Ok(Json(described))
}

/// `PUT /idlink/v1/faults {"rules": [...]}`: replaces the rules (all or none).
pub(crate) async fn put_faults(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>> {
    let emulator = emulator(&state)?;
    let result = parse::<FaultRules>(&body)
        .and_then(|rules| emulator.faults.set(rules.rules).map_err(Error::InvalidBody));
    record(&state, Method::PUT, "/idlink/v1/faults", &result).await;
    result.map(|()| Json(emulator.faults.describe()))
}

/// `DELETE /idlink/v1/faults`.
pub(crate) async fn delete_faults(State(state): State<AppState>) -> Result<Json<Value>> {
    let emulator = emulator(&state)?;
    emulator.faults.clear();
    record(&state, Method::DELETE, "/idlink/v1/faults", &Ok(())).await;
    Ok(Json(emulator.faults.describe()))
}
