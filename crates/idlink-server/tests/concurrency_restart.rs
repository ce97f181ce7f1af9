//! Races for one secondary, and restarts on the same database.

mod common;

use common::Api;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_primaries_race_for_one_secondary_and_exactly_one_wins() {
    let api = Api::start().await;
    let mut primaries = Vec::new();
    for i in 0..32 {
        primaries.push(
            api.social_user("github", json!(1000 + i), &format!("p{i}@example.com"))
                .await,
        );
    }
    api.social_user("google-oauth2", json!("contested"), "c@example.com")
        .await;
    let identities_before = api.assert_invariants().await;

    let requests = primaries.iter().map(|primary| {
        api.link(
            primary,
            json!({"provider": "google-oauth2", "user_id": "contested"}),
        )
    });
    let replies = futures_join_all(requests).await;
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    for reply in replies.iter().filter(|r| r.status != 201) {
        reply.assert_error(400, "inexistent_user");
    }
    assert_eq!(api.assert_invariants().await, identities_before);
    assert_eq!(api.snapshot().await.len(), 32);
}

/// `join_all` without a futures dependency: spawn-free, polls all concurrently.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, future) in outputs.iter_mut().zip(set.iter_mut()) {
            if slot.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.unwrap()).collect()
}

#[tokio::test]
async fn users_links_keys_and_credentials_survive_a_restart() {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    api.social_user("github", json!(5), "gh@example.com").await;
    api.link(&primary, json!({"provider": "github", "user_id": 5}))
        .await;
    let before = api.snapshot().await;
    let old_token = api.token.clone();
    let jwks_before = api.get("/.well-known/jwks.json").await.body;

    let Api {
        server,
        http,
        token,
    } = api;
    let server = server.restart().await;
    let api = Api {
        server,
        http,
        token,
    };

    assert_eq!(api.snapshot().await, before, "users and links survive");
    assert_eq!(
        api.get("/.well-known/jwks.json").await.body,
        jwks_before,
        "keys survive"
    );
    // A token issued before the restart still verifies.
    let reply = api
        .send_as(Some(&old_token), Method::GET, "/api/v2/users", None)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // The pinned admin credentials and a user's password still work.
    api.server.admin_token().await;
    api.sign_in("p@example.com").await;
}
