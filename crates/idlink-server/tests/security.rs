//! Regressions of the second security round (issue 11): each test fails without its fix.

mod common;

use common::{Api, DB, enc};
use reqwest::Method;
use serde_json::{Value, json};

/// A user's own token (`update:current_user_identities`, no `update:users`) may link
/// only with `link_with`: naming another account (JSON or form) would absorb it.
#[tokio::test]
async fn a_user_token_cannot_link_an_account_by_name() {
    let api = Api::start().await;
    let attacker = api.db_user("attacker@example.com").await;
    let victim = api.db_user("victim@example.com").await;
    api.social_user("github", json!(583231), "gh@example.com")
        .await;
    let tokens = api.sign_in("attacker@example.com").await;
    let bearer = tokens["access_token"].as_str().unwrap();
    let before = api.snapshot_without_logins().await;
    let path = format!("/api/v2/users/{}/identities", enc(&attacker));

    let victim_id = victim.trim_start_matches("auth0|");
    for body in [
        json!({"provider": "auth0", "user_id": victim_id}),
        json!({"provider": "github", "user_id": 583231}),
    ] {
        let reply = api
            .send_as(Some(bearer), Method::POST, &path, Some(body))
            .await;
        reply.assert_error(403, "insufficient_scope");
        assert!(
            reply.body["message"]
                .as_str()
                .unwrap()
                .contains("update:users"),
            "{}",
            reply.body
        );
    }
    let response = api
        .http
        .post(api.url(&path))
        .bearer_auth(bearer)
        .form(&[("provider", "github"), ("user_id", "583231")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errorCode"], "insufficient_scope");

    assert_eq!(
        api.snapshot_without_logins().await,
        before,
        "nothing was linked"
    );
    // The victim's password still signs in as the victim.
    let claims = decode_claims(
        api.sign_in("victim@example.com").await["id_token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(claims["sub"], victim);

    // Every attempt is audited, with the named account.
    let failures = api.get("/api/v2/logs?q=type%3Afapi").await.body;
    let failures = failures.as_array().unwrap();
    assert_eq!(failures.len(), 3, "{failures:?}");
    for event in failures {
        assert_eq!(event["user_id"], attacker);
        assert_eq!(
            event["details"]["response"]["body"]["errorCode"],
            "insufficient_scope"
        );
    }
    assert_eq!(
        failures[0]["details"]["request"]["body"]["provider"],
        "github"
    );

    // The admin (update:users) may still link by name.
    let reply = api
        .link(&attacker, json!({"provider": "github", "user_id": 583231}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

/// A user token unlinks only from its own account.
#[tokio::test]
async fn a_user_token_unlinks_only_from_its_own_account() {
    let api = Api::start().await;
    let owner = api.db_user("owner@example.com").await;
    let other = api.db_user("other@example.com").await;
    api.social_user("github", json!(11), "gh@example.com").await;
    assert_eq!(
        api.link(&other, json!({"provider": "github", "user_id": 11}))
            .await
            .status,
        201
    );
    let tokens = api.sign_in("owner@example.com").await;
    let bearer = tokens["access_token"].as_str().unwrap();
    let reply = api
        .send_as(
            Some(bearer),
            Method::DELETE,
            &format!("/api/v2/users/{}/identities/github/11", enc(&other)),
            None,
        )
        .await;
    reply.assert_error(403, "unowned_resource");
    let stored = api.user(&other).await.body;
    assert_eq!(stored["identities"].as_array().unwrap().len(), 2);
    let _ = (owner, DB);
}

/// The payload of a JWT, without verifying it.
fn decode_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
