//! The Emulator page (emulator mode only): reset users, reset to the seed, download or
//! upload a snapshot, set faults, shift the clock — each button calls the control API's
//! own handler (`emulator/control.rs`), so the effect and its audit record are the
//! API's.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use maud::html;
use serde_json::{Value, json};

use super::{FormMap, Peer, csrf_field, error_words, page, require, require_post};
use crate::emulator::control;
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/emulator", get(show))
        .route("/ui/emulator/snapshot-file", post(upload))
        .route("/ui/emulator/{action}", post(act))
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

async fn show(State(state): State<AppState>, headers: HeaderMap, connect: Peer) -> Response {
    render(&state, &headers, &connect, None).await
}

async fn render(
    state: &AppState,
    headers: &HeaderMap,
    connect: &Peer,
    outcome: Option<(bool, String)>,
) -> Response {
    let session = match require(state, headers, connect).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(emulator) = state.emulator.as_ref() else {
        return super::redirect("/ui/users");
    };
    let clock = control::clock_answer(state).0;
    let faults = emulator.faults.describe();
    let can = session.can_update();
    let button = |action: &str, label: &str| {
        html! {
            form.inline method="post" action={ "/ui/emulator/" (action) } {
                (csrf_field(&session))
                button type="submit" { (label) }
            }
        }
    };
    let body = html! {
        h1 { "Emulator" }
        @if let Some((ok, message)) = &outcome {
            @if *ok { p.notice role="status" { (message) } } @else { p.error role="alert" { (message) } }
        }
        @if !can { p.muted { "This client lacks update:users: the emulator's controls are hidden." } }
        div.grid {
            section.card aria-labelledby="state-h" {
                h2 id="state-h" { "State" }
                @if can {
                    p { (button("reset-users", "Reset users")) " " (button("reset", "Reset to seed")) }
                }
                p { a.button href="/idlink/v1/snapshot" download="idlink-snapshot.json" { "Download snapshot" } }
                @if can {
                    form method="post" action="/ui/emulator/snapshot-file" enctype="multipart/form-data" {
                        (csrf_field(&session))
                        label for="snapshot-file" { "Snapshot file" }
                        input id="snapshot-file" name="snapshot" type="file" accept="application/json,.json" required;
                        button type="submit" { "Upload snapshot file" }
                    }
                    form method="post" action="/ui/emulator/snapshot" {
                        (csrf_field(&session))
                        label for="snapshot" { "Snapshot JSON" }
                        textarea id="snapshot" name="snapshot" required {}
                        button type="submit" { "Upload snapshot" }
                    }
                }
            }
            section.card aria-labelledby="clock-h" {
                h2 id="clock-h" { "Clock" }
                pre.json { (pretty(&clock)) }
                @if can {
                    form method="post" action="/ui/emulator/advance-clock" {
                        (csrf_field(&session))
                        label for="seconds" { "Advance the clock by seconds" }
                        input id="seconds" name="seconds" type="text" inputmode="numeric" required value="3600";
                        button type="submit" { "Advance the clock" }
                    }
                    form method="post" action="/ui/emulator/clock" {
                        (csrf_field(&session))
                        label for="offset" { "Clock offset in seconds" }
                        input id="offset" name="offset_seconds" type="text" inputmode="numeric" required value="0";
                        button type="submit" { "Set the clock offset" }
                    }
                }
            }
            section.card aria-labelledby="faults-h" {
                h2 id="faults-h" { "Faults" }
                pre.json { (pretty(&faults)) }
                @if can {
                    form method="post" action="/ui/emulator/faults" {
                        (csrf_field(&session))
                        label for="rules" { "Fault rules JSON" }
                        textarea id="rules" name="rules" required { r#"[{"path": "/api/v2/users/**", "status": 503, "times": 1}]"# }
                        button type="submit" { "Set faults" }
                    }
                    p { (button("clear-faults", "Clear faults")) }
                }
            }
        }
    };
    session.finish(page(StatusCode::OK, "Emulator", Some(&session), body))
}

fn number(form: &std::collections::HashMap<String, String>, key: &str) -> Result<i64> {
    form.get(key)
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::InvalidBody(format!("{key}: a whole number of seconds is needed")))
}

async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    connect: Peer,
    Path(action): Path<String>,
    body: Bytes,
) -> Response {
    let form = FormMap::of(&body).0;
    let session = match require_post(&state, &headers, &connect, &form).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if state.emulator.is_none() || !session.can_update() {
        return super::redirect("/ui/users");
    }
    let field = |k: &str| Bytes::from(form.get(k).cloned().unwrap_or_default());
    let st = || State(state.clone());
    let result: Result<&str> = match action.as_str() {
        "reset-users" => control::delete_users(st())
            .await
            .map(|_| "Every user was deleted."),
        "reset" => control::reset(st()).await.map(|_| "Back to the seed."),
        "snapshot" => control::put_snapshot(st(), field("snapshot"))
            .await
            .map(|_| "Snapshot loaded."),
        "clear-faults" => control::delete_faults(st())
            .await
            .map(|_| "Faults cleared."),
        "faults" => {
            let rules: std::result::Result<Value, _> =
                serde_json::from_str(form.get("rules").map_or("", String::as_str));
            match rules {
                Ok(rules) => {
                    let body = json!({ "rules": rules }).to_string();
                    control::put_faults(st(), Bytes::from(body))
                        .await
                        .map(|_| "Faults set.")
                }
                Err(err) => Err(Error::InvalidBody(format!("rules: {err}"))),
            }
        }
        "advance-clock" => match number(&form, "seconds") {
            Ok(seconds) => {
                control::advance_clock(st(), Bytes::from(json!({"seconds": seconds}).to_string()))
                    .await
                    .map(|_| "Clock advanced.")
            }
            Err(err) => Err(err),
        },
        "clock" => match number(&form, "offset_seconds") {
            Ok(offset) => control::put_clock(
                st(),
                Bytes::from(json!({"offset_seconds": offset}).to_string()),
            )
            .await
            .map(|_| "Clock offset set."),
            Err(err) => Err(err),
        },
        _ => Err(Error::RouteNotFound),
    };
    let outcome = match result {
        Ok(message) => (true, message.to_owned()),
        Err(err) => (false, error_words(&err)),
    };
    render(&state, &headers, &connect, Some(outcome)).await
}

/// "Upload snapshot file": a multipart form with the CSRF token and the file.
async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    connect: Peer,
    mut multipart: Multipart,
) -> Response {
    let mut form = std::collections::HashMap::new();
    let mut file = None;
    while let Ok(Some(field)) = multipart.next_field().await {
        let name = field.name().unwrap_or("").to_owned();
        let Ok(bytes) = field.bytes().await else {
            break;
        };
        if name == "snapshot" {
            file = Some(bytes);
        } else {
            form.insert(name, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    let session = match require_post(&state, &headers, &connect, &form).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if state.emulator.is_none() || !session.can_update() {
        return super::redirect("/ui/users");
    }
    let outcome = match file {
        None => (false, "No snapshot file was sent.".to_owned()),
        Some(bytes) => match control::put_snapshot(State(state.clone()), bytes).await {
            Ok(_) => (true, "Snapshot loaded.".to_owned()),
            Err(err) => (false, error_words(&err)),
        },
    };
    render(&state, &headers, &connect, Some(outcome)).await
}
