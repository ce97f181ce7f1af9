//! The Users page, the User page, and linking and unlinking with their previews.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use idlink_types::{User, UserIdentity};
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use super::{Peer, Session, csrf_field, error_words, page, redirect, require, require_post, seg};
use crate::domain::linking;
use crate::domain::model::IdentityKey;
use crate::domain::search;
use crate::domain::users::UserQuery;
use crate::error::Error;
use crate::http::identities::{perform_link, perform_preview, perform_unlink};
use crate::http::observe::RequestId;
use crate::state::AppState;

const PER_PAGE: u64 = 20;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/users", get(list))
        .route("/ui/users/{id}", get(show))
        .route("/ui/users/{id}/link", get(link_search).post(link_confirm))
        .route("/ui/users/{id}/link/preview", get(link_preview))
        .route(
            "/ui/users/{id}/unlink",
            get(unlink_preview).post(unlink_confirm),
        )
}

/// The search box's text as an Auth0 query: a query as it is when it names a field,
/// else the text as an email, a name or a user id.
pub(crate) fn query_of(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() || text.contains(':') && !text.contains('|') {
        return text.to_owned();
    }
    let quoted: String = text.chars().filter(|c| *c != '"' && *c != '\\').collect();
    format!("email:\"{quoted}\" OR name:\"{quoted}\" OR user_id:\"{quoted}\"")
}

async fn search_users(state: &AppState, text: &str, page: u64) -> Result<(Vec<User>, u64), Error> {
    let query = UserQuery {
        filter: search::parse(&query_of(text))?,
        sort: None,
        page,
        per_page: PER_PAGE,
    };
    let (users, total) = state.store.list_users(&query).await?;
    Ok((users.iter().map(|u| u.to_wire()).collect(), total))
}

fn main_connection(user: &User) -> &str {
    user.identities
        .first()
        .map_or("", |i| i.connection.as_str())
}

fn title_of(user: &User) -> String {
    user.email.clone().unwrap_or_else(|| user.user_id.clone())
}

fn users_table(users: &[User], action: impl Fn(&User) -> Markup) -> Markup {
    html! {
        div.table-wrap {
            table.responsive {
                thead { tr { th scope="col" { "Email" } th scope="col" { "Name" } th scope="col" { "Connection" } th scope="col" { "Identities" } th scope="col" { "Created" } th scope="col" { span.sr-only { "Actions" } } } }
                tbody {
                    @for user in users {
                        tr {
                            td data-label="Email" { a href={ "/ui/users/" (seg(&user.user_id)) } { (title_of(user)) } }
                            td data-label="Name" { (user.name.as_deref().unwrap_or("")) }
                            td data-label="Connection" { (main_connection(user)) }
                            td data-label="Identities" { (user.identities.len()) }
                            td data-label="Created" { (user.created_at.as_deref().unwrap_or("")) }
                            td data-label="Actions" { (action(user)) }
                        }
                    }
                }
            }
        }
    }
}

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
    let q = params.get("q").map_or("", String::as_str);
    let page_no: u64 = params.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let result = search_users(&state, q, page_no).await;
    let body = html! {
        h1 { "Users" }
        form.search method="get" action="/ui/users" role="search" {
            label for="q" { "Search users" }
            div.row {
                input id="q" name="q" type="search" value=(q) placeholder="email, name, user id or query";
                button type="submit" { "Search" }
            }
        }
        @match &result {
            Err(err) => { p.error role="alert" { (error_words(err)) } }
            Ok((users, total)) => {
                p.muted { (total) " users" }
                @if users.is_empty() { p { "No users match." } }
                @else { (users_table(users, |_| html! {})) }
                (pager("/ui/users", &[("q", q)], page_no, *total))
            }
        }
    };
    session.finish(page(StatusCode::OK, "Users", Some(&session), body))
}

pub(crate) fn pager(path: &str, params: &[(&str, &str)], page_no: u64, total: u64) -> Markup {
    let pages = total.div_ceil(PER_PAGE).max(1);
    let href = |p: u64| {
        let mut query: Vec<(&str, String)> =
            params.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        query.push(("page", p.to_string()));
        format!(
            "{path}?{}",
            serde_urlencoded::to_string(&query).unwrap_or_default()
        )
    };
    html! {
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if page_no > 0 { a href=(href(page_no - 1)) { "Previous page" } }
                span { "Page " (page_no + 1) " of " (pages) }
                @if page_no + 1 < pages { a href=(href(page_no + 1)) { "Next page" } }
            }
        }
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn metadata(user: &User) -> Markup {
    let um = user.user_metadata.clone().unwrap_or_default();
    let am = user.app_metadata.clone().unwrap_or_default();
    html! {
        h3 { "user_metadata" }
        pre.json { (pretty(&Value::Object(um))) }
        h3 { "app_metadata" }
        pre.json { (pretty(&Value::Object(am))) }
    }
}

fn profile(user: &User) -> Markup {
    let rows: Vec<(&str, String)> = vec![
        ("user_id", user.user_id.clone()),
        ("email", user.email.clone().unwrap_or_default()),
        (
            "email_verified",
            user.email_verified
                .map(|v| v.to_string())
                .unwrap_or_default(),
        ),
        ("name", user.name.clone().unwrap_or_default()),
        ("nickname", user.nickname.clone().unwrap_or_default()),
        ("created_at", user.created_at.clone().unwrap_or_default()),
        ("updated_at", user.updated_at.clone().unwrap_or_default()),
    ];
    html! {
        dl.profile {
            @for (k, v) in rows { @if !v.is_empty() { dt { (k) } dd { (v) } } }
        }
    }
}

/// The identity graph: the user (primary) with an edge to each identity.
pub(crate) fn graph(user: &User) -> Markup {
    let n = user.identities.len().max(1);
    let row = 44;
    let height = n * row + 8;
    let center = height / 2;
    html! {
        svg.graph viewBox={ "0 0 520 " (height) } width="100%" role="img"
            aria-label={ "Identity graph: " (title_of(user)) " with " (user.identities.len()) " identities" } {
            rect.node-primary x="4" y=(center - 18) width="170" height="36" rx="8" {}
            text x="89" y=(center + 5) text-anchor="middle" { (truncate(&title_of(user), 22)) }
            @for (i, identity) in user.identities.iter().enumerate() {
                @let y = i * row + 8 + 18;
                line.edge x1="174" y1=(center) x2="300" y2=(y) {}
                rect class=(if i == 0 { "node-main" } else { "node-linked" }) x="300" y=(y - 16) width="216" height="32" rx="6" {}
                text x="408" y=(y + 5) text-anchor="middle" { (truncate(&format!("{}|{}", identity.provider, identity.user_id), 28)) }
            }
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn identities_table(user: &User, session: &Session, unlink: bool) -> Markup {
    html! {
        div.table-wrap {
            table.responsive {
                thead { tr { th scope="col" { "Provider" } th scope="col" { "Connection" } th scope="col" { "user_id" } th scope="col" { span.sr-only { "Actions" } } } }
                tbody {
                    @for (i, identity) in user.identities.iter().enumerate() {
                        tr {
                            td data-label="Provider" { span id={ "provider-" (i) } { (identity.provider) } @if i == 0 { " " span.badge { "main" } } }
                            td data-label="Connection" { (identity.connection) }
                            td data-label="user_id" { code id={ "identity-" (i) } { (identity.user_id) } }
                            td data-label="Actions" {
                                @if unlink && i > 0 && session.can_update() {
                                    form.inline method="get" action={ "/ui/users/" (seg(&user.user_id)) "/unlink" } {
                                        input type="hidden" name="provider" value=(identity.provider);
                                        input type="hidden" name="user_id" value=(identity.user_id.as_string());
                                        button type="submit" aria-describedby={ "provider-" (i) " identity-" (i) } { "Unlink" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn load(state: &AppState, id: &str) -> Result<User, Error> {
    state
        .store
        .user(id)
        .await?
        .map(|u| u.to_wire())
        .ok_or(Error::Domain(crate::domain::error::Error::UserNotFound))
}

fn not_found(session: &Session, err: &Error) -> Response {
    let (status, _) = err.status_and_code();
    session.finish(page(
        status,
        "User",
        Some(session),
        html! { h1 { "User" } p.error role="alert" { (error_words(err)) } p { a href="/ui/users" { "Back to Users" } } },
    ))
}

async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    connect: Peer,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = super::query_map(query.as_deref());
    let session = match require(&state, &headers, &connect).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let user = match load(&state, &id).await {
        Ok(u) => u,
        Err(err) => return not_found(&session, &err),
    };
    let title = title_of(&user);
    let done = params.get("done").map(String::as_str);
    let body = html! {
        h1 { (title) }
        @match done {
            Some("linked") => { p.notice role="status" { "Linked." } }
            Some("unlinked") => { p.notice role="status" { "Unlinked: the identity is a user of its own again." } }
            _ => {}
        }
        div.grid {
            section.card aria-labelledby="profile-h" {
                h2 id="profile-h" { "Profile" }
                (profile(&user))
                h2 { "Metadata" }
                (metadata(&user))
            }
            section.card aria-labelledby="identities-h" {
                h2 id="identities-h" { "Identities" }
                (graph(&user))
                (identities_table(&user, &session, true))
                @if session.can_update() {
                    p { a.button.primary href={ "/ui/users/" (seg(&user.user_id)) "/link" } { "Link an account" } }
                }
            }
        }
    };
    session.finish(page(StatusCode::OK, &title, Some(&session), body))
}

/// "Link an account": search for the account to link.
async fn link_search(
    State(state): State<AppState>,
    headers: HeaderMap,
    connect: Peer,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = super::query_map(query.as_deref());
    let session = match require(&state, &headers, &connect).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let user = match load(&state, &id).await {
        Ok(u) => u,
        Err(err) => return not_found(&session, &err),
    };
    let q = params.get("q").map_or("", String::as_str);
    let results = if q.trim().is_empty() {
        None
    } else {
        Some(search_users(&state, q, 0).await)
    };
    let base = format!("/ui/users/{}", seg(&user.user_id));
    let body = html! {
        p { a href=(base) { "← " (title_of(&user)) } }
        h1 { "Link an account to " (title_of(&user)) }
        @if !session.can_update() {
            p.error role="alert" { "This client lacks update:users: it cannot link accounts." }
        }
        form.search method="get" action={ (base) "/link" } role="search" {
            label for="q" { "Search for the account to link" }
            div.row {
                input id="q" name="q" type="search" value=(q) placeholder="email, name, user id or query";
                button type="submit" { "Search" }
            }
        }
        @match &results {
            None => {}
            Some(Err(err)) => { p.error role="alert" { (error_words(err)) } }
            Some(Ok((users, _))) => {
                @let others: Vec<User> = users.iter().filter(|u| u.user_id != user.user_id).cloned().collect();
                @if others.is_empty() { p { "No other users match." } }
                @else {
                    (users_table(&others, |other| html! {
                        @if session.can_update() {
                            @if let Some(main) = other.identities.first() {
                                form.inline method="get" action={ (base) "/link/preview" } {
                                    input type="hidden" name="provider" value=(main.provider);
                                    input type="hidden" name="user_id" value=(main.user_id.as_string());
                                    button type="submit" aria-label={ "Preview link of " (title_of(other)) } { "Preview link" }
                                }
                            }
                        }
                    }))
                }
            }
        }
    };
    session.finish(page(
        StatusCode::OK,
        "Link an account",
        Some(&session),
        body,
    ))
}

fn link_body(provider: &str, user_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"provider": provider, "user_id": user_id})).unwrap_or_default()
}

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers
}

fn discarded(map: &Map<String, Value>) -> Markup {
    html! {
        @if map.is_empty() { p.muted { "Nothing." } } @else { pre.json { (pretty(&Value::Object(map.clone()))) } }
    }
}

async fn link_preview(
    State(state): State<AppState>,
    headers: HeaderMap,
    connect: Peer,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = super::query_map(query.as_deref());
    let session = match require(&state, &headers, &connect).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let provider = params.get("provider").map_or("", String::as_str);
    let user_id = params.get("user_id").map_or("", String::as_str);
    render_link_preview(&state, &session, &id, provider, user_id, None).await
}

async fn render_link_preview(
    state: &AppState,
    session: &Session,
    id: &str,
    provider: &str,
    user_id: &str,
    error: Option<String>,
) -> Response {
    let principal = session.principal(state);
    let preview = perform_preview(
        state,
        &principal,
        id,
        &json_headers(),
        &link_body(provider, user_id),
    )
    .await;
    let base = format!("/ui/users/{}", seg(id));
    let (status, body) = match preview {
        Err(err) => (
            err.status_and_code().0,
            html! {
                p { a href=(base) { "← Back to the user" } }
                h1 { "Link preview" }
                p.error role="alert" { (error_words(&err)) }
            },
        ),
        Ok(preview) => (
            if error.is_some() {
                StatusCode::CONFLICT
            } else {
                StatusCode::OK
            },
            html! {
                p { a href=(base) { "← Back to the user" } }
                h1 { "Link preview" }
                p { "Linking " code { (provider) "|" (user_id) } " into " strong { (title_of(&preview.user)) } " (merge policy " code { (serde_json::to_value(preview.merge).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) } "). Nothing is changed until you confirm." }
                div.grid {
                    section.card aria-labelledby="after-h" {
                        h2 id="after-h" { "The primary after the link" }
                        (graph(&preview.user))
                        (identity_list(&preview.identities))
                        (metadata(&preview.user))
                    }
                    section.card aria-labelledby="discarded-h" {
                        h2 id="discarded-h" { "Metadata discarded" }
                        h3 { "user_metadata" }
                        (discarded(&preview.discarded.user_metadata))
                        h3 { "app_metadata" }
                        (discarded(&preview.discarded.app_metadata))
                    }
                }
                @if let Some(error) = &error { p.error role="alert" { (error) } }
                @if session.can_update() {
                    form method="post" action={ (base) "/link" } {
                        (csrf_field(session))
                        input type="hidden" name="provider" value=(provider);
                        input type="hidden" name="user_id" value=(user_id);
                        button.primary type="submit" { "Confirm link" }
                        " "
                        a href=(base) { "Cancel" }
                    }
                }
            },
        ),
    };
    session.finish(page(status, "Link preview", Some(session), body))
}

fn identity_list(identities: &[UserIdentity]) -> Markup {
    html! {
        ul.identities {
            @for identity in identities {
                li { code { (identity.provider) "|" (identity.user_id) } " · " (identity.connection) }
            }
        }
    }
}

async fn link_confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    connect: Peer,
    request_id: RequestId,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = super::FormMap::of(&body).0;
    let session = match require_post(&state, &headers, &connect, &form).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let provider = form.get("provider").map_or("", String::as_str);
    let user_id = form.get("user_id").map_or("", String::as_str);
    let principal = session.principal(&state);
    let linked = perform_link(
        &state,
        &principal,
        &request_id,
        &id,
        &json_headers(),
        &link_body(provider, user_id),
        None,
    )
    .await;
    match linked {
        Ok(_) => session.finish(redirect(&format!("/ui/users/{}?done=linked", seg(&id)))),
        Err(err) => {
            render_link_preview(
                &state,
                &session,
                &id,
                provider,
                user_id,
                Some(error_words(&err)),
            )
            .await
        }
    }
}

async fn unlink_preview(
    State(state): State<AppState>,
    headers: HeaderMap,
    connect: Peer,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = super::query_map(query.as_deref());
    let session = match require(&state, &headers, &connect).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let provider = params.get("provider").map_or("", String::as_str);
    let user_id = params.get("user_id").map_or("", String::as_str);
    render_unlink_preview(&state, &session, &id, provider, user_id, None).await
}

async fn render_unlink_preview(
    state: &AppState,
    session: &Session,
    id: &str,
    provider: &str,
    user_id: &str,
    error: Option<String>,
) -> Response {
    let base = format!("/ui/users/{}", seg(id));
    let planned = match state.store.user(id).await {
        Err(err) => Err(err),
        Ok(None) => Err(Error::Domain(crate::domain::error::Error::UserNotFound)),
        Ok(Some(primary)) => linking::plan_unlink(
            &primary,
            &IdentityKey::literal(provider, user_id),
            &state.clock.now_iso(),
            state.linking.unlink,
        )
        .map_err(Error::Domain),
    };
    let (status, body) = match planned {
        Err(err) => (
            err.status_and_code().0,
            html! {
                p { a href=(base) { "← Back to the user" } }
                h1 { "Unlink preview" }
                p.error role="alert" { (error_words(&err)) }
            },
        ),
        Ok(plan) => {
            let new_user = plan.new_user.to_wire();
            (
                if error.is_some() {
                    StatusCode::CONFLICT
                } else {
                    StatusCode::OK
                },
                html! {
                    p { a href=(base) { "← Back to the user" } }
                    h1 { "Unlink preview" }
                    p { "Unlinking " code { (provider) "|" (user_id) } " recreates this standalone user. Nothing is changed until you confirm." }
                    section.card aria-labelledby="new-h" {
                        h2 id="new-h" { "The user recreated: " (new_user.user_id) }
                        (profile(&new_user))
                        (metadata(&new_user))
                    }
                    section.card aria-labelledby="remaining-h" {
                        h2 id="remaining-h" { "The primary's remaining identities" }
                        (identity_list(&plan.remaining.iter().map(|i| i.to_wire()).collect::<Vec<_>>()))
                    }
                    @if let Some(error) = &error { p.error role="alert" { (error) } }
                    @if session.can_update() {
                        form method="post" action={ (base) "/unlink" } {
                            (csrf_field(session))
                            input type="hidden" name="provider" value=(provider);
                            input type="hidden" name="user_id" value=(user_id);
                            button.danger type="submit" { "Confirm unlink" }
                            " "
                            a href=(base) { "Cancel" }
                        }
                    }
                },
            )
        }
    };
    session.finish(page(status, "Unlink preview", Some(session), body))
}

async fn unlink_confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    connect: Peer,
    request_id: RequestId,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = super::FormMap::of(&body).0;
    let session = match require_post(&state, &headers, &connect, &form).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let provider = form.get("provider").map_or("", String::as_str);
    let user_id = form.get("user_id").map_or("", String::as_str);
    let principal = session.principal(&state);
    match perform_unlink(
        &state,
        &principal,
        &request_id,
        &id,
        (provider, user_id),
        None,
    )
    .await
    {
        Ok(_) => session.finish(redirect(&format!("/ui/users/{}?done=unlinked", seg(&id)))),
        Err(err) => {
            render_unlink_preview(
                &state,
                &session,
                &id,
                provider,
                user_id,
                Some(error_words(&err)),
            )
            .await
        }
    }
}
