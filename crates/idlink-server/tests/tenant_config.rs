//! What the config file adds: a domain, token lifetimes, connections and clients.

mod common;

use common::{Api, PASSWORD};
use idlink_server::config::{ClientConfig, ConnectionConfig};
use idlink_server::testing::TestServer;
use serde_json::{Value, json};

#[tokio::test]
async fn configured_domain_connections_clients_and_lifetimes_take_effect() {
    let server = TestServer::start_with(|c| {
        c.tenant.domain = Some("tenant.example.com".into());
        c.tenant.tokens.access_token_lifetime = 120;
        c.tenant.connections.push(ConnectionConfig {
            name: "corp-users".into(),
            strategy: "auth0".into(),
            ..Default::default()
        });
        c.tenant.connections.push(ConnectionConfig {
            name: "okta".into(),
            strategy: "okta".into(),
            ..Default::default()
        });
        c.tenant.clients.push(ClientConfig {
            name: "Single-page app".into(),
            client_id: "spa-client".into(),
            client_secret: None,
            grant_types: vec!["http://auth0.com/oauth/grant-type/password-realm".into()],
            scopes: vec![],
            ..Default::default()
        });
    })
    .await;
    assert_eq!(server.audience(), "https://tenant.example.com/api/v2/");
    assert_eq!(server.issuer(), "https://tenant.example.com/");
    let api = Api::with_server(server).await;

    // The admin token is for the domain's audience and lives as configured.
    let token = api
        .server
        .token(json!({"grant_type": "client_credentials", "client_id": api.server.admin_client_id,
            "client_secret": api.server.admin_client_secret, "audience": "https://tenant.example.com/api/v2/"}))
        .await;
    assert_eq!(token["expires_in"], 120);

    // Users in the configured database connection sign in through the public client.
    let reply = api
        .post(
            "/api/v2/users",
            json!({"connection": "corp-users", "email": "c@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["identities"][0]["connection"], "corp-users");
    let signed_in = api
        .server
        .token(json!({"grant_type": "http://auth0.com/oauth/grant-type/password-realm", "realm": "corp-users",
            "username": "c@example.com", "password": PASSWORD, "client_id": "spa-client",
            "scope": "openid"}))
        .await;
    assert!(signed_in["id_token"].is_string());
    // …but the public client may not use client credentials, and not the default realm
    // grant it was not given.
    let response = api
        .http
        .post(api.url("/oauth/token"))
        .json(
            &json!({"grant_type": "password", "username": "c@example.com", "password": PASSWORD,
            "client_id": "spa-client"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "unauthorized_client"
    );

    // A configured enterprise provider can be linked.
    api.social_user("okta", json!("okta-1"), "o@example.com")
        .await;
    let primary = reply.body["user_id"].as_str().unwrap();
    let linked = api
        .link(primary, json!({"provider": "okta", "user_id": "okta-1"}))
        .await;
    assert_eq!(linked.status, 201, "{}", linked.body);
    assert_eq!(linked.body[1]["isSocial"], false);
}
