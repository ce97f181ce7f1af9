//! The Audit log page: the trail of `GET /api/v2/logs`, filterable by user and type;
//! each row opens its details (a `<details>` element, no script needed).

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use maud::html;

use super::users::pager;
use super::{Peer, error_words, page, require, seg};
use crate::domain::audit::{LogQuery, Outcome};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/ui/audit", get(list))
}

use axum::Router;

const TYPES: [(&str, &str); 5] = [
    ("", "All types"),
    ("sapi", "Success API operation (sapi)"),
    ("fapi", "Failed API operation (fapi)"),
    ("s", "Success login (s)"),
    ("f", "Failed login (f)"),
];

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    connect: Peer,
    RawQuery(query): RawQuery,
) -> Response {
    let params = super::query_map(query.as_deref());
    let session = match require(&state, &headers, &connect).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let user = params.get("user_id").map_or("", |s| s.trim());
    let kind = params.get("type").map_or("", String::as_str);
    let page_no: u64 = params.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let query = LogQuery {
        user_id: (!user.is_empty()).then(|| user.to_owned()),
        outcome: TYPES
            .iter()
            .any(|(code, _)| !code.is_empty() && *code == kind)
            .then(|| Outcome::from_code(kind)),
        page: page_no,
        per_page: 20,
        ascending: false,
    };
    let result = state.store.list_logs(&query).await;
    let body = html! {
        h1 { "Audit log" }
        form.filters method="get" action="/ui/audit" {
            div {
                label for="user_id" { "Filter by user" }
                input id="user_id" name="user_id" type="text" value=(user) placeholder="auth0|…";
            }
            div {
                label for="type" { "Filter by type" }
                select id="type" name="type" {
                    @for (code, label) in TYPES {
                        option value=(code) selected[code == kind] { (label) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        @match &result {
            Err(err) => { p.error role="alert" { (error_words(err)) } }
            Ok((events, total)) => {
                p.muted { (total) " events" }
                @if events.is_empty() { p { "No events." } }
                ul.events {
                    @for event in events {
                        li {
                            details {
                                summary {
                                    span class={ "badge type-" (event.outcome.code()) } { (event.outcome.code()) }
                                    " " (event.description) " · " time { (event.date) }
                                    @if let Some(u) = &event.user_id { " · " (u) }
                                }
                                dl.profile {
                                    dt { "log_id" } dd { code { (event.log_id) } }
                                    @if let Some(c) = &event.client_id { dt { "client_id" } dd { (c) } }
                                    @if let Some(u) = &event.user_id { dt { "user_id" } dd { a href={ "/ui/users/" (seg(u)) } { (u) } } }
                                    @if let Some(u) = &event.secondary_user_id { dt { "secondary_user_id" } dd { (u) } }
                                }
                                pre.json { (serde_json::to_string_pretty(&event.details).unwrap_or_default()) }
                            }
                        }
                    }
                }
                (pager("/ui/audit", &[("user_id", user), ("type", kind)], page_no, *total))
            }
        }
    };
    session.finish(page(StatusCode::OK, "Audit log", Some(&session), body))
}
