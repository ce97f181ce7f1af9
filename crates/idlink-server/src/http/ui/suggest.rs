//! The Suggested links page: users sharing a verified email, grouped by the same rule as
//! `idlink suggest-links` (`idlink_types::suggest`), each group linkable after the same
//! preview as any link; groups with an unverified email are shown but not linkable.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use idlink_types::suggest::{EmailNormalization, Member, PrimaryRule, suggest};
use maud::{Markup, html};

use super::{Peer, error_words, page, require, seg};
use crate::domain::search;
use crate::domain::users::UserQuery;
use crate::error::Error;
use crate::state::AppState;

/// The most users the page groups (pages of 100).
const MAX_USERS: u64 = 10_000;

pub fn router() -> Router<AppState> {
    Router::new().route("/ui/suggested", get(list))
}

async fn all_users(state: &AppState) -> Result<Vec<idlink_types::User>, Error> {
    let mut users = Vec::new();
    let per_page = 100;
    for page in 0..MAX_USERS / per_page {
        let query = UserQuery {
            filter: search::parse("")?,
            sort: None,
            page,
            per_page,
        };
        let (batch, total) = state.store.list_users(&query).await?;
        let done = batch.len() < per_page as usize;
        users.extend(batch.iter().map(|u| u.to_wire()));
        if done || users.len() as u64 >= total {
            break;
        }
    }
    Ok(users)
}

fn member_line(m: &Member) -> Markup {
    html! {
        a href={ "/ui/users/" (seg(&m.user_id)) } { (m.user_id) }
        " · " (m.connection)
        @if !m.email_verified { " · " span.badge.type-f { "unverified" } }
    }
}

async fn list(State(state): State<AppState>, headers: HeaderMap, connect: Peer) -> Response {
    let session = match require(&state, &headers, &connect).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let users = all_users(&state).await;
    let body = html! {
        h1 { "Suggested links" }
        p.muted { "Users sharing an email. The primary is the database account (else the oldest), as " code { "idlink suggest-links" } " proposes. Each link shows its preview before anything changes." }
        @match &users {
            Err(err) => { p.error role="alert" { (error_words(err)) } }
            Ok(users) => {
                @let plan = suggest(users, PrimaryRule::DatabaseFirst, EmailNormalization::default());
                @if plan.groups.is_empty() && plan.needs_confirmation.is_empty() { p { "No users share an email." } }
                @for group in &plan.groups {
                    section.card.group aria-label={ "Group " (group.email) } {
                        h2 { (group.email) }
                        p.muted { (group.reason) }
                        p { "Primary: " (member_line(&group.primary)) }
                        ul {
                            @for secondary in &group.secondaries {
                                li {
                                    (member_line(secondary)) " "
                                    @if session.can_update() {
                                        form.inline method="get" action={ "/ui/users/" (seg(&group.primary.user_id)) "/link/preview" } {
                                            input type="hidden" name="provider" value=(secondary.provider);
                                            input type="hidden" name="user_id" value=(secondary.identity_user_id);
                                            button type="submit" aria-label={ "Link " (secondary.user_id) " into " (group.primary.user_id) } { "Link" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if !plan.needs_confirmation.is_empty() {
                    h2 { "Not linkable: unverified email" }
                    @for group in &plan.needs_confirmation {
                        section.card.group aria-label={ "Unverified group " (group.email) } {
                            h3 { (group.email) }
                            p.muted { (group.reason) }
                            ul { @for m in &group.members { li { (member_line(m)) } } }
                        }
                    }
                }
            }
        }
    };
    session.finish(page(
        StatusCode::OK,
        "Suggested links",
        Some(&session),
        body,
    ))
}
