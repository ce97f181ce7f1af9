//! The endpoints around linking: users, `/oauth/token`, keys, health.

mod common;

use common::{Api, DB, PASSWORD, enc};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn users_create_read_list_search_patch_delete() {
    let api = Api::start().await;
    let reply = api
        .post(
            "/api/v2/users",
            json!({"connection": DB, "email": "Ada@Example.com", "password": PASSWORD,
                   "name": "Ada", "user_metadata": {"a": 1, "nested": {"x": 1}}}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.body["user_id"].as_str().unwrap().to_owned();
    let hex = id.strip_prefix("auth0|").unwrap();
    assert!(
        hex.len() == 24
            && hex
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert!(reply.body["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(reply.body.get("password").is_none());

    // The same email in the same database connection is taken.
    api.post(
        "/api/v2/users",
        json!({"connection": DB, "email": "ada@example.com", "password": PASSWORD}),
    )
    .await
    .assert_error(409, "auth0_idp_error");
    // Social users need their provider-side id; unknown connections and fields are refused.
    api.post(
        "/api/v2/users",
        json!({"connection": "github", "email": "x@example.com"}),
    )
    .await
    .assert_error(400, "invalid_body");
    api.post(
        "/api/v2/users",
        json!({"connection": "nope", "email": "x@example.com"}),
    )
    .await
    .assert_error(400, "inexistent_connection");
    api.post(
        "/api/v2/users",
        json!({"connection": DB, "email": "x@example.com", "password": "p", "bogus": 1}),
    )
    .await
    .assert_error(400, "invalid_body");
    api.post(
        "/api/v2/users",
        json!({"connection": DB, "email": "x@example.com"}),
    )
    .await
    .assert_error(400, "invalid_body");
    let gh = api
        .social_user("github", json!(77), "octo@example.com")
        .await;
    assert_eq!(gh, "github|77");
    api.post(
        "/api/v2/users",
        json!({"connection": "github", "user_id": 77}),
    )
    .await
    .assert_error(409, "auth0_idp_error");

    // Search and list.
    let found = api
        .get("/api/v2/users?q=email%3A%22ADA%40example.com%22&search_engine=v3")
        .await;
    assert_eq!(found.body.as_array().unwrap().len(), 1, "{}", found.body);
    let by_email = api
        .get("/api/v2/users-by-email?email=ada%40EXAMPLE.com")
        .await;
    assert_eq!(by_email.body[0]["user_id"], id);
    let page = api
        .get("/api/v2/users?per_page=1&page=1&include_totals=true")
        .await
        .body;
    assert_eq!(
        (
            page["start"].clone(),
            page["limit"].clone(),
            page["length"].clone(),
            page["total"].clone()
        ),
        (json!(1), json!(1), json!(1), json!(2))
    );
    api.get("/api/v2/users?per_page=101")
        .await
        .assert_error(400, "invalid_query_string");
    api.get("/api/v2/users?q=password%3Ax")
        .await
        .assert_error(400, "invalid_query_string");
    api.get("/api/v2/users-by-email")
        .await
        .assert_error(400, "invalid_query_string");

    // Patch: top-level merge, nested replaced, null removes.
    let reply = api
        .send(
            Method::PATCH,
            &format!("/api/v2/users/{}", enc(&id)),
            Some(json!({"user_metadata": {"nested": {"y": 2}, "a": null, "b": true}, "name": "Ada L."})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body["user_metadata"],
        json!({"nested": {"y": 2}, "b": true})
    );
    assert_eq!(reply.body["name"], "Ada L.");
    assert_eq!(
        api.user(&id).await.body["user_metadata"],
        json!({"nested": {"y": 2}, "b": true})
    );
    api.send(
        Method::PATCH,
        &format!("/api/v2/users/{}", enc(&id)),
        Some(json!({"blocked": "no"})),
    )
    .await
    .assert_error(400, "invalid_body");
    api.send(
        Method::PATCH,
        "/api/v2/users/auth0%7Cmissing",
        Some(json!({"name": "x"})),
    )
    .await
    .assert_error(404, "inexistent_user");

    // Delete.
    assert_eq!(
        api.delete(&format!("/api/v2/users/{}", enc(&id)))
            .await
            .status,
        204
    );
    api.user(&id).await.assert_error(404, "inexistent_user");
}

#[tokio::test]
async fn client_credentials_tokens_carry_the_contract_claims() {
    let api = Api::start().await;
    let token = api
        .server
        .token(json!({
            "grant_type": "client_credentials",
            "client_id": api.server.admin_client_id,
            "client_secret": api.server.admin_client_secret,
            "audience": api.server.audience(),
        }))
        .await;
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 86400);
    assert!(token["scope"].as_str().unwrap().contains("update:users"));
    let claims = decode(token["access_token"].as_str().unwrap());
    assert_eq!(claims["iss"], api.server.issuer());
    assert_eq!(claims["aud"], api.server.audience());
    assert_eq!(
        claims["sub"],
        format!("{}@clients", api.server.admin_client_id)
    );
    assert_eq!(claims["azp"], api.server.admin_client_id);
    assert_eq!(claims["gty"], "client-credentials");

    // Form-encoded and the http:// audience work too.
    let response = api
        .http
        .post(api.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &api.server.admin_client_id),
            ("client_secret", &api.server.admin_client_secret),
            (
                "audience",
                &api.server.audience().replace("https://", "http://"),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // OAuth-shaped errors.
    let post = |body: Value| {
        let http = api.http.clone();
        let url = api.url("/oauth/token");
        async move {
            let response = http.post(url).json(&body).send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, body) = post(
        json!({"grant_type": "client_credentials", "client_id": api.server.admin_client_id,
        "client_secret": "wrong", "audience": api.server.audience()}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (401, "access_denied")
    );
    let (status, body) = post(
        json!({"grant_type": "client_credentials", "client_id": "nobody",
        "client_secret": "x", "audience": api.server.audience()}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (401, "access_denied")
    );
    let (status, body) = post(
        json!({"grant_type": "client_credentials", "client_id": api.server.admin_client_id,
        "client_secret": api.server.admin_client_secret, "audience": "https://elsewhere/api/"}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (403, "access_denied")
    );
    let (status, body) = post(json!({"grant_type": "client_credentials", "client_id": api.server.admin_client_id,
        "client_secret": api.server.admin_client_secret, "audience": api.server.audience(), "scope": "read:users root"})).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (403, "access_denied")
    );
    let (status, body) = post(json!({"grant_type": "implicit"})).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (400, "unsupported_grant_type")
    );
    let (status, body) = post(json!({"client_id": "x"})).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (400, "invalid_request")
    );
}

#[tokio::test]
async fn password_grants_sign_database_users_in() {
    let api = Api::start().await;
    let id = api.db_user("ada@example.com").await;
    let tokens = api.sign_in("ADA@example.com").await;
    let access = decode(tokens["access_token"].as_str().unwrap());
    assert_eq!(access["sub"], id);
    assert!(
        access["aud"]
            .as_array()
            .unwrap()
            .contains(&json!(api.server.audience()))
    );
    assert!(
        access["scope"]
            .as_str()
            .unwrap()
            .contains("update:current_user_identities")
    );
    let id_token = decode(tokens["id_token"].as_str().unwrap());
    assert_eq!(id_token["aud"], api.server.admin_client_id);
    assert_eq!(id_token["sub"], id);
    assert_eq!(id_token["email"], "ada@example.com");
    // The user's access token reads its own user, and not others.
    let bearer = tokens["access_token"].as_str().unwrap();
    let reply = api
        .send_as(
            Some(bearer),
            Method::GET,
            &format!("/api/v2/users/{}", enc(&id)),
            None,
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["logins_count"], 1);
    let other = api.db_user("other@example.com").await;
    api.send_as(
        Some(bearer),
        Method::GET,
        &format!("/api/v2/users/{}", enc(&other)),
        None,
    )
    .await
    .assert_error(403, "unowned_resource");
    api.send_as(Some(bearer), Method::GET, "/api/v2/users", None)
        .await
        .assert_error(403, "insufficient_scope");
    // An ID token is not a Management API token.
    api.send_as(
        Some(tokens["id_token"].as_str().unwrap()),
        Method::GET,
        "/api/v2/users",
        None,
    )
    .await
    .assert_error(401, "invalid_token");

    // The plain password grant uses the default database connection.
    let plain = api
        .http
        .post(api.url("/oauth/token"))
        .json(&json!({"grant_type": "password", "username": "ada@example.com", "password": PASSWORD,
            "client_id": api.server.admin_client_id, "client_secret": api.server.admin_client_secret,
            "scope": "openid"}))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);

    // Wrong password and unknown user answer alike.
    for username in ["ada@example.com", "nobody@example.com"] {
        let response = api
            .http
            .post(api.url("/oauth/token"))
            .json(&json!({"grant_type": "http://auth0.com/oauth/grant-type/password-realm", "realm": DB,
                "username": username, "password": "wrong-password",
                "client_id": api.server.admin_client_id, "client_secret": api.server.admin_client_secret}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error": "invalid_grant", "error_description": "Wrong email or password."})
        );
    }
}

#[tokio::test]
async fn keys_discovery_and_health() {
    let api = Api::start().await;
    let jwks = api.get("/.well-known/jwks.json").await.body;
    let key = &jwks["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["alg"].as_str(),
            key["use"].as_str()
        ),
        (Some("RSA"), Some("RS256"), Some("sig"))
    );
    let kid = key["kid"].as_str().unwrap();
    let header = decode_header(&api.token);
    assert_eq!(header["kid"], kid);
    assert_eq!(header["alg"], "RS256");
    let discovery = api.get("/.well-known/openid-configuration").await.body;
    assert_eq!(discovery["issuer"], api.server.issuer());
    assert_eq!(
        discovery["jwks_uri"],
        format!("{}/.well-known/jwks.json", api.server.base_url)
    );
    let health = api.get("/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["database"], "ok");

    // Every response reports a rate-limit bucket, not only the Management API's.
    let token = api
        .http
        .post(api.url("/oauth/token"))
        .json(
            &json!({"grant_type": "client_credentials", "client_id": api.server.admin_client_id,
            "client_secret": api.server.admin_client_secret, "audience": api.server.audience()}),
        )
        .send()
        .await
        .unwrap();
    for headers in [
        token.headers(),
        &health.headers,
        &api.get("/.well-known/jwks.json").await.headers,
    ] {
        for name in [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
        ] {
            let value = headers
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing"));
            assert!(
                value.to_str().unwrap().parse::<u64>().is_ok(),
                "{name}: {value:?}"
            );
        }
    }
}

fn part(token: &str, index: usize) -> Value {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(index).unwrap())
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn decode(token: &str) -> Value {
    part(token, 1)
}

fn decode_header(token: &str) -> Value {
    part(token, 0)
}
