//! Forged and misused bearer tokens: each is refused with 401 and changes nothing.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Api, enc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn forged_and_misused_bearer_tokens_are_refused() {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    api.social_user("github", json!(1), "gh@example.com").await;
    let before = api.snapshot_without_logins().await;

    let now = idlink_server::clock::unix_now();
    let good = json!({
        "iss": api.server.issuer(), "aud": api.server.audience(),
        "sub": format!("{}@clients", api.server.admin_client_id), "azp": api.server.admin_client_id,
        "scope": "update:users read:users", "iat": now, "exp": now + 600, "gty": "client-credentials",
    });
    let with = |key: &str, value: Value| {
        let mut claims = good.clone();
        claims[key] = value;
        claims
    };
    let sign = |claims: &Value| api.server.sign_with_tenant_key(claims);

    // The control: a token forged with the tenant's own key and good claims works.
    let control = api
        .send_as(Some(&sign(&good)), Method::GET, "/api/v2/users", None)
        .await;
    assert_eq!(control.status, 200, "{}", control.body);

    let jwks = api.get("/.well-known/jwks.json").await.body;
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    // Algorithm confusion: HS256 keyed with the RSA public key's published bytes.
    let public_material = format!("{}{}", jwks["keys"][0]["n"], jwks["keys"][0]["e"]);
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let confused = jsonwebtoken::encode(
        &hs_header,
        &good,
        &EncodingKey::from_secret(public_material.as_bytes()),
    )
    .unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64(&good)
    );
    let unknown_kid = {
        let token = sign(&good);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[0] = b64(&json!({"alg": "RS256", "typ": "JWT", "kid": "not-a-key"}));
        parts.join(".")
    };
    let tampered = {
        let token = sign(&with("scope", json!("read:users")));
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = b64(&good);
        parts.join(".")
    };
    let other_tenant = {
        let key = idlink_server::auth::keys::generate_signing_key(now).unwrap();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(
            &header,
            &good,
            &EncodingKey::from_rsa_pem(key.private_key_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let id_token = api.sign_in("p@example.com").await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let attacks: Vec<(&str, String)> = vec![
        ("alg none", alg_none),
        ("HS256 with the RSA public key", confused),
        ("unknown kid", unknown_kid),
        ("tampered payload", tampered),
        ("another tenant's key", other_tenant),
        ("expired", sign(&with("exp", json!(now - 60)))),
        ("not yet valid", sign(&with("nbf", json!(now + 600)))),
        (
            "wrong iss",
            sign(&with("iss", json!("https://evil.example.com/"))),
        ),
        (
            "wrong aud",
            sign(&with("aud", json!("https://other.example.com/api/v2/"))),
        ),
        ("no exp", {
            let mut claims = good.clone();
            claims.as_object_mut().unwrap().remove("exp");
            sign(&claims)
        }),
        ("an ID token as bearer", id_token),
        ("garbage", "a.b.c".into()),
    ];
    for (name, token) in attacks {
        for (method, path, body) in [
            (Method::GET, "/api/v2/users".to_owned(), None),
            (
                Method::POST,
                format!("/api/v2/users/{}/identities", enc(&primary)),
                Some(json!({"provider": "github", "user_id": 1})),
            ),
        ] {
            let reply = api.send_as(Some(&token), method, &path, body).await;
            assert_eq!(reply.status, 401, "{name}: {}", reply.body);
            reply.assert_error(401, "invalid_token");
        }
    }
    // Within the leeway is fine; past it is not. (Two seconds before now, not before the
    // test began: the unknown-kid attacks above may each wait up to a second for a key
    // reload.)
    let now = idlink_server::clock::unix_now();
    let reply = api
        .send_as(
            Some(&sign(&with("exp", json!(now - 2)))),
            Method::GET,
            "/api/v2/users",
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "a 2 s skew is tolerated: {}", reply.body);

    assert_eq!(
        api.snapshot_without_logins().await,
        before,
        "no attack changed anything"
    );
}

/// Every endpoint against every relevant scope: the scope it names lets the call
/// through (any status but 401/403), anything else is a 403 `insufficient_scope`.
#[tokio::test]
async fn every_endpoint_requires_its_scope() {
    let api = Api::start().await;
    let primary = api.db_user("p@example.com").await;
    let p = enc(&primary);
    let scopes = ["read:users", "create:users", "update:users", "delete:users"];
    let endpoints: Vec<(Method, String, Option<Value>, &str)> = vec![
        (Method::GET, "/api/v2/users".into(), None, "read:users"),
        (
            Method::GET,
            format!("/api/v2/users/{p}"),
            None,
            "read:users",
        ),
        (
            Method::GET,
            "/api/v2/users-by-email?email=p%40example.com".into(),
            None,
            "read:users",
        ),
        (
            Method::POST,
            "/api/v2/users".into(),
            Some(json!({"connection": "github", "user_id": 5})),
            "create:users",
        ),
        (
            Method::PATCH,
            format!("/api/v2/users/{p}"),
            Some(json!({"name": "n"})),
            "update:users",
        ),
        (
            Method::POST,
            format!("/api/v2/users/{p}/identities"),
            Some(json!({"provider": "github", "user_id": 404})),
            "update:users",
        ),
        (
            Method::DELETE,
            format!("/api/v2/users/{p}/identities/github/404"),
            None,
            "update:users",
        ),
        (
            Method::DELETE,
            "/api/v2/users/auth0%7Cnobody".into(),
            None,
            "delete:users",
        ),
    ];
    let mut tokens = std::collections::HashMap::new();
    for scope in scopes {
        let token = api
            .server
            .token(json!({"grant_type": "client_credentials", "client_id": api.server.admin_client_id,
                "client_secret": api.server.admin_client_secret, "audience": api.server.audience(), "scope": scope}))
            .await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        tokens.insert(scope, token);
    }
    for (method, path, body, needed) in &endpoints {
        for scope in scopes {
            let reply = api
                .send_as(Some(&tokens[scope]), method.clone(), path, body.clone())
                .await;
            if scope == *needed {
                assert!(
                    ![401, 403].contains(&reply.status.as_u16()),
                    "{method} {path} with {scope}: {}",
                    reply.body
                );
            } else {
                assert_eq!(
                    reply.status, 403,
                    "{method} {path} with {scope}: {}",
                    reply.body
                );
                reply.assert_error(403, "insufficient_scope");
            }
        }
    }
}
