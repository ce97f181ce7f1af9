//! idlink's events API (`docs/events.md`): `GET /idlink/v1/events`, the outbox as
//! Server-Sent Events with `Last-Event-ID` resume, and
//! `GET /idlink/v1/webhooks/deliveries`, where dead (and pending, delivered) webhook
//! deliveries are seen. Both need a Management API token with `read:logs`; with events
//! off both answer 404 `events_disabled`.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::extract::ApiQuery;
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::events::{Events, StoredEvent};

/// The scope both routes need: events are part of the tenant's audit trail.
const SCOPES: &[&str] = &["read:logs"];
/// Events read from the outbox per query of a stream.
const STREAM_BATCH: i64 = 100;
/// Deliveries listed at most (newest first).
const MAX_DELIVERIES: i64 = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/events", get(stream))
        .route("/webhooks/deliveries", get(deliveries))
}

/// Where a stream starts: after the `Last-Event-ID` header's outbox id (0: from the
/// oldest event kept).
fn resume_after(headers: &HeaderMap) -> Result<i64> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(0);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|id| *id >= 0)
        .ok_or_else(|| {
            Error::InvalidQuery(
                "Last-Event-ID must be the id of an event received from this stream (a non-negative integer).".into(),
            )
        })
}

fn sse_event(event: &StoredEvent) -> Event {
    Event::default()
        .id(event.id.to_string())
        .event(event.kind.clone())
        .data(event.body.clone())
}

/// The outbox as Server-Sent Events: every event kept, then new ones as they commit.
#[utoipa::path(
    get,
    path = "/idlink/v1/events",
    tag = "events",
    params(
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event id (the SSE `id` of the last event received)"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `id` (outbox id), `event` (the type) and `data` (the CloudEvent JSON) per event", content_type = "text/event-stream", body = String),
        (status = 404, description = "Link events are off (`events_disabled`)", body = idlink_types::ErrorBody),
        super::openapi::ApiErrors,
    ),
    security(("bearer" = ["read:logs"]))
)]
pub(super) async fn stream(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Response> {
    if !state.events.enabled() {
        return Err(Error::EventsDisabled);
    }
    principal.require_any(SCOPES)?;
    let after = resume_after(&headers)?;
    let permit = state
        .events
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| Error::TooManyRequests)?;
    let poll = state.events.settings.poll;
    let cursor = (state, after, VecDeque::<StoredEvent>::new(), permit);
    let events = futures_util::stream::unfold(
        cursor,
        move |(state, after, mut buffer, permit)| async move {
            loop {
                if let Some(event) = buffer.pop_front() {
                    let next = event.id;
                    return Some((
                        Ok::<_, Infallible>(sse_event(&event)),
                        (state, next, buffer, permit),
                    ));
                }
                // Register for the wake-up before reading, so a commit in between is seen.
                let wake = state.events.wake.notified();
                match Events(state.store.as_ref())
                    .after(after, STREAM_BATCH)
                    .await
                {
                    Ok(batch) if !batch.is_empty() => buffer.extend(batch),
                    Ok(_) => {
                        tokio::select! {
                            () = wake => {}
                            () = tokio::time::sleep(poll) => {}
                        }
                    }
                    Err(err) => {
                        // The client reconnects with Last-Event-ID and loses nothing.
                        tracing::warn!(error = %err, "an event stream cannot read the outbox");
                        return None;
                    }
                }
            }
        },
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Webhook deliveries, newest event first (at most 100).
#[utoipa::path(
    get,
    path = "/idlink/v1/webhooks/deliveries",
    tag = "events",
    params(
        ("state" = Option<String>, Query, description = "pending, delivered or dead"),
    ),
    responses(
        (status = 200, description = "Each delivery: webhook, event_id, state, attempts, next_attempt_at, last_error, updated_at, event", body = [Object]),
        (status = 404, description = "Link events are off (`events_disabled`)", body = idlink_types::ErrorBody),
        super::openapi::ApiErrors,
    ),
    security(("bearer" = ["read:logs"]))
)]
pub(super) async fn deliveries(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Json<Vec<Value>>> {
    if !state.events.enabled() {
        return Err(Error::EventsDisabled);
    }
    principal.require_any(SCOPES)?;
    let state_filter = match params.get("state").map(String::as_str) {
        None => None,
        Some(s @ ("pending" | "delivered" | "dead")) => Some(s.to_owned()),
        Some(other) => {
            return Err(Error::InvalidQuery(format!(
                "Query validation error: unknown state '{other}' (use pending, delivered or dead)."
            )));
        }
    };
    let rows = Events(state.store.as_ref())
        .deliveries(state_filter, MAX_DELIVERIES)
        .await?;
    let iso = |ms: i64| crate::clock::iso_from_unix_ms(ms);
    Ok(Json(
        rows.into_iter()
            .map(|row| {
                json!({
                    "webhook": row.webhook,
                    "event_id": row.event_id,
                    "state": row.state,
                    "attempts": row.attempts,
                    "next_attempt_at": (row.state == "pending").then(|| iso(row.next_attempt_ms)),
                    "last_error": row.last_error,
                    "updated_at": iso(row.updated_ms),
                    "event": serde_json::from_str::<Value>(&row.body).unwrap_or(Value::Null),
                })
            })
            .collect(),
    ))
}
