//! Every error row of the link and unlink tables: status, errorCode, and nothing changed.

mod common;

use common::{Api, enc};
use idlink_server::ratelimit::RateLimit;
use idlink_server::testing::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

/// A primary with one linked identity, a free secondary, and the admin API.
async fn world() -> (Api, String) {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    api.social_user("github", json!(1), "gh@example.com").await;
    api.social_user("google-oauth2", json!("g1"), "g@example.com")
        .await;
    assert_eq!(
        api.link(&primary, json!({"provider": "github", "user_id": 1}))
            .await
            .status,
        201
    );
    (api, primary)
}

fn identities_path(primary: &str) -> String {
    format!("/api/v2/users/{}/identities", enc(primary))
}

#[tokio::test]
async fn link_body_errors_change_nothing() {
    let (api, primary) = world().await;
    let before = api.snapshot().await;
    let bodies = [
        json!([]),
        json!("text"),
        json!({}),
        json!({"provider": "google-oauth2", "user_id": "g1", "unknown": true}),
        json!({"provider": 7, "user_id": "g1"}),
        json!({"provider": "google-oauth2", "user_id": true}),
        json!({"provider": "google-oauth2", "user_id": 1.5}),
        json!({"provider": "google-oauth2", "user_id": ""}),
        json!({"provider": "google-oauth2"}),
        json!({"user_id": "g1"}),
        json!({"link_with": "a.b.c", "provider": "google-oauth2", "user_id": "g1"}),
        json!({"provider": "auth0", "user_id": "x", "connection_id": "con_tooshort"}),
        json!({"link_with": 5}),
    ];
    for body in bodies {
        let reply = api.link(&primary, body.clone()).await;
        assert_eq!(
            reply.body["errorCode"], "invalid_body",
            "{body} → {}",
            reply.body
        );
        reply.assert_error(400, "invalid_body");
    }
    // Malformed JSON and a wrong content type answer in the same shape.
    let malformed = api
        .http
        .post(api.url(&identities_path(&primary)))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{\"provider\":")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let body: Value = malformed.json().await.unwrap();
    assert_eq!(body["errorCode"], "invalid_body");
    let wrong_type = api
        .http
        .post(api.url(&identities_path(&primary)))
        .bearer_auth(&api.token)
        .header("content-type", "text/plain")
        .body("provider=github")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
    let body: Value = wrong_type.json().await.unwrap();
    assert_eq!(body["statusCode"], 415);
    assert_eq!(api.snapshot().await, before);
}

#[tokio::test]
async fn link_domain_errors_change_nothing() {
    let (api, primary) = world().await;
    let before = api.snapshot().await;
    let main_id = primary.trim_start_matches("auth0|");

    let cases = [
        (
            json!({"provider": "okta", "user_id": "x"}),
            400,
            "inexistent_connection",
        ),
        (
            json!({"provider": "auth0", "user_id": "x", "connection_id": "con_AAAAAAAAAAAAAAAA"}),
            400,
            "inexistent_connection",
        ),
        (
            json!({"provider": "auth0", "user_id": main_id}),
            400,
            "invalid_body",
        ),
        (
            json!({"provider": "auth0", "user_id": format!("auth0|{main_id}")}),
            400,
            "invalid_body",
        ),
        (
            json!({"provider": "google-oauth2", "user_id": "nobody"}),
            400,
            "inexistent_user",
        ),
        (
            json!({"provider": "github", "user_id": 1}),
            409,
            "identity_conflict",
        ),
        (
            json!({"provider": "github", "user_id": "1"}),
            409,
            "identity_conflict",
        ),
    ];
    for (body, status, code) in cases {
        let reply = api.link(&primary, body.clone()).await;
        assert_eq!(reply.body["errorCode"], code, "{body} → {}", reply.body);
        reply.assert_error(status, code);
    }
    assert_eq!(
        api.link(&primary, json!({"provider": "auth0", "user_id": main_id}))
            .await
            .body["message"],
        "Main identity and the new one are the same."
    );
    // The primary itself missing.
    api.link(
        "auth0|000000000000000000000000",
        json!({"provider": "google-oauth2", "user_id": "g1"}),
    )
    .await
    .assert_error(404, "inexistent_user");
    // A linked identity is not a standalone secondary for another primary.
    let other = api.db_user("other@example.com").await;
    api.link(&other, json!({"provider": "github", "user_id": 1}))
        .await
        .assert_error(400, "inexistent_user");
    let mut expected = before.clone();
    let other_user = api.user(&other).await.body;
    let mut other_user = other_user.as_object().unwrap().clone();
    other_user.remove("updated_at");
    expected.insert(other.clone(), Value::Object(other_user));
    assert_eq!(api.snapshot().await, expected);
}

#[tokio::test]
async fn tokens_and_scopes_are_checked_first() {
    let (api, primary) = world().await;
    let before = api.snapshot_without_logins().await;
    let path = identities_path(&primary);
    let body = Some(json!({"provider": "google-oauth2", "user_id": "g1"}));

    let reply = api.send_as(None, Method::POST, &path, body.clone()).await;
    reply.assert_error(401, "invalid_token");
    assert_eq!(reply.body["message"], "Missing authentication");
    api.send_as(Some("not.a.jwt"), Method::POST, &path, body.clone())
        .await
        .assert_error(401, "invalid_token");
    // 401 wins over a bad body.
    api.send_as(Some("garbage"), Method::POST, &path, Some(json!([])))
        .await
        .assert_error(401, "invalid_token");

    let read_only = api
        .server
        .token(json!({
            "grant_type": "client_credentials",
            "client_id": api.server.admin_client_id,
            "client_secret": api.server.admin_client_secret,
            "audience": api.server.audience(),
            "scope": "read:users",
        }))
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = api
        .send_as(Some(&read_only), Method::POST, &path, body.clone())
        .await;
    reply.assert_error(403, "insufficient_scope");
    assert_eq!(
        reply.body["message"],
        "Insufficient scope; expected any of: update:users, update:current_user_identities."
    );
    // 403 wins over a bad body.
    api.send_as(Some(&read_only), Method::POST, &path, Some(json!({})))
        .await
        .assert_error(403, "insufficient_scope");
    api.send_as(
        Some(&read_only),
        Method::DELETE,
        &format!("{path}/github/1"),
        None,
    )
    .await
    .assert_error(403, "insufficient_scope");

    // A user token acting on someone else.
    let other = api.db_user("other@example.com").await;
    let user_token = api.sign_in("other@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = api
        .send_as(Some(&user_token), Method::POST, &path, body.clone())
        .await;
    reply.assert_error(403, "unowned_resource");
    api.send_as(
        Some(&user_token),
        Method::DELETE,
        &format!("{path}/github/1"),
        None,
    )
    .await
    .assert_error(403, "unowned_resource");

    let mut expected = before;
    let mut other_user = api.user(&other).await.body.as_object().unwrap().clone();
    for moving in ["updated_at", "last_login", "logins_count"] {
        other_user.remove(moving);
    }
    expected.insert(other, Value::Object(other_user));
    // Signing in counts a login; nothing else may differ.
    assert_eq!(api.snapshot_without_logins().await, expected);
}

#[tokio::test]
async fn unlink_errors_change_nothing() {
    let (api, primary) = world().await;
    let before = api.snapshot().await;
    let main_id = primary.trim_start_matches("auth0|");

    let reply = api.unlink(&primary, "auth0", main_id).await;
    reply.assert_error(400, "invalid_uri");
    assert_eq!(reply.body["message"], "Main identity cannot be removed.");
    // An identity that is not on the user is a 200 no-op (recorded Auth0 behaviour).
    for (provider, id) in [("google-oauth2", "g1"), ("github", "2")] {
        let reply = api.unlink(&primary, provider, id).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    api.unlink("auth0|000000000000000000000000", "github", "1")
        .await
        .assert_error(404, "inexistent_user");
    api.send_as(
        None,
        Method::DELETE,
        &format!("{}/github/1", identities_path(&primary)),
        None,
    )
    .await
    .assert_error(401, "invalid_token");
    assert_eq!(api.snapshot().await, before);
}

#[tokio::test]
async fn link_with_tokens_are_checked_rule_by_rule() {
    let (api, primary) = world().await;
    let secondary = api.db_user("s@example.com").await;
    let tokens = api.sign_in("p@example.com").await;
    let bearer = tokens["access_token"].as_str().unwrap().to_owned();
    let own_id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let client_id = api.server.admin_client_id.clone();
    let issuer = api.server.issuer();
    let now = idlink_server::clock::unix_now();
    let before = api.snapshot_without_logins().await;

    let forge = |claims: Value| api.server.sign_with_tenant_key(&claims);
    let good =
        json!({"iss": issuer, "sub": secondary, "aud": client_id, "iat": now, "exp": now + 600});
    let with = |key: &str, value: Value| {
        let mut claims = good.clone();
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value;
        }
        forge(claims)
    };

    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &good,
        &jsonwebtoken::EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    let other_tenant_key = idlink_server::auth::keys::generate_signing_key(now).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(other_tenant_key.kid.clone());
    let foreign = jsonwebtoken::encode(
        &header,
        &good,
        &jsonwebtoken::EncodingKey::from_rsa_pem(other_tenant_key.private_key_pem.as_bytes())
            .unwrap(),
    )
    .unwrap();
    let mut tampered: Vec<String> = with("sub", json!(secondary))
        .split('.')
        .map(str::to_owned)
        .collect();
    {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims = good.clone();
        claims["sub"] = json!(primary);
        tampered[1] = engine.encode(claims.to_string());
    }
    let unsigned = {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            engine.encode(r#"{"alg":"none","typ":"JWT"}"#),
            engine.encode(good.to_string())
        )
    };

    let cases: Vec<(String, &str, &str)> = vec![
        (
            "not-a-jwt".into(),
            "invalid_link_with",
            "Invalid token (link_with).",
        ),
        (
            hs256,
            "invalid_link_with",
            "JWT (link_with) must have an alg of RS256.",
        ),
        (
            unsigned,
            "invalid_link_with",
            "JWT (link_with) must have an alg of RS256.",
        ),
        (foreign, "invalid_link_with", "Invalid token (link_with)."),
        (
            tampered.join("."),
            "invalid_link_with",
            "Invalid token (link_with).",
        ),
        (
            with("exp", json!(now - 60)),
            "invalid_link_with",
            "Invalid token (link_with).",
        ),
        (
            with("iss", json!("https://evil.example.com/")),
            "invalid_link_with",
            "JWT (link_with) must have the same issuer as the calling user.",
        ),
        (
            with("aud", json!("another-client")),
            "invalid_link_with",
            "JWT (link_with) must have an aud claim that matches that of the calling token's azp.",
        ),
        (
            with("sub", Value::Null),
            "invalid_link_with",
            "JWT (link_with) must contains sub claim.",
        ),
        (
            own_id_token,
            "invalid_body",
            "Main identity and the new one are the same.",
        ),
    ];
    for (token, code, message) in cases {
        let reply = api
            .send_as(
                Some(&bearer),
                Method::POST,
                &identities_path(&primary),
                Some(json!({"link_with": token})),
            )
            .await;
        assert_eq!(reply.body["message"], message, "{}", reply.body);
        reply.assert_error(400, code);
    }
    assert_eq!(api.snapshot_without_logins().await, before);

    // The same forged-but-valid token links.
    let reply = api
        .send_as(
            Some(&bearer),
            Method::POST,
            &identities_path(&primary),
            Some(json!({"link_with": forge(good.clone())})),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[tokio::test]
async fn an_empty_bucket_answers_429_with_retry_after() {
    let server =
        TestServer::start_with(|c| c.tenant.rate_limit = Some(RateLimit::new(3, 0.5))).await;
    let api = Api::with_server(server).await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let reply = api.get("/api/v2/users").await;
        statuses.push(reply.status.as_u16());
        assert_eq!(reply.headers["x-ratelimit-limit"], "3");
        assert!(reply.headers.contains_key("x-ratelimit-remaining"));
        assert!(reply.headers.contains_key("x-ratelimit-reset"));
        last = Some(reply);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let refused = last.unwrap();
    refused.assert_error(429, "too_many_requests");
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(refused.headers["x-ratelimit-remaining"], "0");
}

#[tokio::test]
async fn transport_level_errors_use_the_error_shape() {
    let (api, primary) = world().await;
    // Unknown route, wrong method.
    let reply = api.get("/api/v2/nothing-here").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body["statusCode"], 404);
    let reply = api
        .send(Method::PUT, &identities_path(&primary), Some(json!({})))
        .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.body["error"], "Method Not Allowed");
    // Oversized body.
    let big = "x".repeat(1024 * 1024 + 10);
    let response = api
        .http
        .post(api.url(&identities_path(&primary)))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body(format!("{{\"provider\":\"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["statusCode"], 413);
    // Bad percent-encoding in the path.
    let response = api
        .http
        .get(api.url("/api/v2/users/auth0%7C%FF%FE"))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errorCode"], "invalid_uri");
}
