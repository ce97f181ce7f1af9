//! Sign-in for apps under test (issue 14): applications, APIs and client grants in the
//! config; `/authorize` with PKCE, the login pages, `/oauth/token`'s authorization_code
//! and refresh_token grants, the emulated identity provider, `/userinfo`, `/v2/logout`.
//! Every bad-input row of the issue is here, against the real server over HTTP.

mod common;

use common::{Api, decode_claims};
use idlink_server::config::{
    ClientConfig, ClientGrantConfig, Config, ConnectionConfig, ResourceServerConfig, ScopeConfig,
};
use idlink_server::testing::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SPA: &str = "spa-client";
const SPA_CALLBACK: &str = "http://localhost:3000/callback";
const WEB: &str = "web-client";
const WEB_SECRET: &str = "web-client-secret-0123456789abcdef0123";
const WEB_CALLBACK: &str = "http://localhost:4000/api/auth/callback";
const M2M: &str = "m2m-client";
const M2M_SECRET: &str = "m2m-client-secret-0123456789abcdef0123";
const API: &str = "https://api.example.com/";

fn configure(config: &mut Config) {
    config.tenant.clients.push(ClientConfig {
        name: "SPA".into(),
        client_id: SPA.into(),
        app_type: Some("spa".into()),
        callbacks: vec![SPA_CALLBACK.into()],
        allowed_logout_urls: vec!["http://localhost:3000/".into()],
        web_origins: vec!["http://localhost:3000".into()],
        token_endpoint_auth_method: Some("none".into()),
        ..ClientConfig::default()
    });
    config.tenant.clients.push(ClientConfig {
        name: "Regular web app".into(),
        client_id: WEB.into(),
        client_secret: Some(WEB_SECRET.into()),
        app_type: Some("regular_web".into()),
        callbacks: vec![WEB_CALLBACK.into()],
        allowed_logout_urls: vec!["http://localhost:4000/".into()],
        token_endpoint_auth_method: Some("client_secret_post".into()),
        ..ClientConfig::default()
    });
    config.tenant.clients.push(ClientConfig {
        name: "Back end".into(),
        client_id: M2M.into(),
        client_secret: Some(M2M_SECRET.into()),
        app_type: Some("non_interactive".into()),
        ..ClientConfig::default()
    });
    config.tenant.resource_servers.push(ResourceServerConfig {
        name: Some("Items API".into()),
        identifier: API.into(),
        scopes: vec![
            ScopeConfig::Name("read:items".into()),
            ScopeConfig::Described {
                value: "write:items".into(),
                description: "Change items".into(),
            },
        ],
        token_lifetime: Some(600),
        signing_alg: Some("RS256".into()),
        allow_offline_access: true,
    });
    config.tenant.client_grants.push(ClientGrantConfig {
        client_id: M2M.into(),
        audience: API.into(),
        scope: vec!["read:items".into()],
    });
    config.tenant.connections.push(ConnectionConfig {
        name: "google-oauth2".into(),
        strategy: "google-oauth2".into(),
        emulated: true,
        ..ConnectionConfig::default()
    });
}

async fn start() -> Api {
    Api::with_server(TestServer::start_with(configure).await).await
}

/// POSTs a form to `/oauth/token`: `(status, body)`.
async fn token_form(api: &Api, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = api
        .http
        .post(api.url("/oauth/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[track_caller]
fn assert_oauth_error(reply: &(StatusCode, Value), status: u16, error: &str) {
    assert_eq!(reply.0.as_u16(), status, "{}", reply.1);
    assert_eq!(reply.1["error"], error, "{}", reply.1);
    assert!(reply.1["error_description"].is_string(), "{}", reply.1);
    assert!(reply.1.get("access_token").is_none(), "{}", reply.1);
}

#[tokio::test]
async fn client_credentials_for_an_api_follow_its_client_grant() {
    let api = start().await;
    let (status, body) = token_form(
        &api,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", M2M),
            ("client_secret", M2M_SECRET),
            ("audience", API),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "read:items");
    assert_eq!(body["expires_in"], 600, "the API's own token lifetime");
    let claims = decode_claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], API);
    assert_eq!(claims["sub"], format!("{M2M}@clients"));
    assert_eq!(claims["gty"], "client-credentials");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );

    // A scope of the API the grant does not give.
    let reply = token_form(
        &api,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", M2M),
            ("client_secret", M2M_SECRET),
            ("audience", API),
            ("scope", "read:items write:items"),
        ],
    )
    .await;
    assert_oauth_error(&reply, 403, "access_denied");
    // A client without a grant on the API.
    let reply = token_form(
        &api,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", WEB),
            ("client_secret", WEB_SECRET),
            ("audience", API),
        ],
    )
    .await;
    assert_oauth_error(&reply, 403, "access_denied");
    assert!(
        reply.1["error_description"]
            .as_str()
            .unwrap()
            .contains("client-grant")
    );
    // An unknown audience.
    let reply = token_form(
        &api,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", M2M),
            ("client_secret", M2M_SECRET),
            ("audience", "https://unknown.example.com/"),
        ],
    )
    .await;
    assert_oauth_error(&reply, 403, "access_denied");
    // A public SPA may not use client credentials at all.
    let reply = token_form(
        &api,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", SPA),
            ("audience", API),
        ],
    )
    .await;
    assert_eq!(reply.1.get("access_token"), None, "{}", reply.1);
}

#[tokio::test]
async fn resource_servers_are_listed_in_auth0s_shape() {
    let api = start().await;
    let reply = api.get("/api/v2/resource-servers").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let list = reply.body.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["is_system"], true);
    assert_eq!(list[0]["identifier"], api.server.audience());
    let items = &list[1];
    assert_eq!(items["identifier"], API);
    assert_eq!(items["name"], "Items API");
    assert_eq!(items["signing_alg"], "RS256");
    assert_eq!(items["token_lifetime"], 600);
    assert_eq!(items["allow_offline_access"], true);
    assert_eq!(
        items["scopes"],
        json!([{"value": "read:items", "description": ""}, {"value": "write:items", "description": "Change items"}])
    );
    let id = items["id"].as_str().unwrap();
    assert_eq!(id.len(), 24);
    let one = api.get(&format!("/api/v2/resource-servers/{id}")).await;
    assert_eq!(one.body["identifier"], API);
    api.get("/api/v2/resource-servers/nope")
        .await
        .assert_error(404, "inexistent_resource_server");
    let paged = api
        .get("/api/v2/resource-servers?include_totals=true&per_page=1&page=1")
        .await;
    assert_eq!(paged.body["total"], 2, "{}", paged.body);
    assert_eq!(paged.body["resource_servers"][0]["identifier"], API);
    let anonymous = api
        .send_as(None, reqwest::Method::GET, "/api/v2/resource-servers", None)
        .await;
    assert_eq!(anonymous.status, 401);
}
