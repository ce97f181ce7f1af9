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

// ---- The browser's side of a sign-in, by hand: no redirects followed, cookies kept.

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A browser: an HTTP client that follows no redirect, and its cookies.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: std::collections::BTreeMap<String, String>,
}

/// A response as the browser saw it.
struct Page {
    status: StatusCode,
    location: Option<String>,
    text: String,
    set_cookies: Vec<String>,
}

impl Browser {
    fn new(api: &Api) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: api.server.base_url.clone(),
            cookies: Default::default(),
        }
    }

    async fn finish(&mut self, request: reqwest::RequestBuilder) -> Page {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if cookie.is_empty() {
            request
        } else {
            request.header("cookie", cookie)
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let set_cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let text = response.text().await.unwrap();
        Page {
            status,
            location,
            text,
            set_cookies,
        }
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(self.url(path));
        self.finish(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.http.post(self.url(path)).form(form);
        self.finish(request).await
    }
}

/// The query parameters of a URL.
fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    serde_urlencoded::from_str(query).unwrap()
}

fn authorize_url(client_id: &str, redirect_uri: &str, extra: &[(&str, &str)]) -> String {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", "openid profile email offline_access"),
        ("state", "app-state-1"),
        ("nonce", "nonce-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    params.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    params.extend(extra.iter().copied().filter(|(_, v)| !v.is_empty()));
    format!(
        "/authorize?{}",
        serde_urlencoded::to_string(&params).unwrap()
    )
}

/// `/authorize` → the login page of `connection`: returns the login transaction.
async fn to_login_page(browser: &mut Browser, authorize: &str) -> String {
    let page = browser.get(authorize).await;
    assert_eq!(page.status, 302, "{}", page.text);
    let location = page.location.unwrap();
    assert!(location.starts_with("/u/login?"), "{location}");
    let page = browser.get(&location).await;
    assert_eq!(page.status, 200, "{}", page.text);
    query_of(&location)["state"].clone()
}

/// Signs `email` in through the database login page; returns the callback URL.
async fn password_login(browser: &mut Browser, authorize: &str, email: &str) -> String {
    let tx = to_login_page(browser, authorize).await;
    let csrf = browser.cookies["idlink_csrf"].clone();
    let page = browser
        .post(
            "/u/login",
            &[
                ("state", &tx),
                ("csrf", &csrf),
                ("connection", common::DB),
                ("username", email),
                ("password", common::PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 302, "{}", page.text);
    let session = page
        .set_cookies
        .iter()
        .find(|c| c.starts_with("idlink_session="))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(!session.contains("Secure"), "plain HTTP: {session}");
    page.location.unwrap()
}

async fn exchange(api: &Api, code: &str, verifier: &str) -> (StatusCode, Value) {
    token_form(
        api,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", SPA),
            ("code", code),
            ("redirect_uri", SPA_CALLBACK),
            ("code_verifier", verifier),
        ],
    )
    .await
}

#[tokio::test]
async fn code_with_pkce_signs_a_database_user_in() {
    let api = start().await;
    let user_id = api.db_user("ada@example.com").await;
    let mut browser = Browser::new(&api);
    let authorize = authorize_url(
        SPA,
        SPA_CALLBACK,
        &[
            ("connection", common::DB),
            ("audience", API),
            ("scope", "openid profile email offline_access read:items"),
        ],
    );
    let callback = password_login(&mut browser, &authorize, "ada@example.com").await;
    assert!(callback.starts_with(SPA_CALLBACK), "{callback}");
    let params = query_of(&callback);
    assert_eq!(params["state"], "app-state-1");
    let session_cookie = browser.cookies.get("idlink_session").cloned().unwrap();
    assert!(!session_cookie.is_empty());

    let (status, body) = exchange(&api, &params["code"], VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert_eq!(
        body["scope"],
        "openid profile email offline_access read:items"
    );
    let access = decode_claims(body["access_token"].as_str().unwrap());
    assert_eq!(access["sub"], user_id);
    assert_eq!(
        access["aud"],
        json!([API, format!("{}userinfo", api.server.issuer())])
    );
    assert_eq!(access["azp"], SPA);
    let id = decode_claims(body["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], user_id);
    assert_eq!(id["aud"], SPA);
    assert_eq!(id["nonce"], "nonce-1");
    assert_eq!(id["email"], "ada@example.com");
    assert_eq!(id["email_verified"], true);
    assert_eq!(
        id["at_hash"],
        idlink_server::auth::signin::at_hash(body["access_token"].as_str().unwrap())
    );
    assert!(id["auth_time"].is_i64());
    assert!(body["refresh_token"].is_string(), "{body}");

    // logins_count, last_login and the `s` event.
    let user = api.user(&user_id).await.body;
    assert_eq!(user["logins_count"], 1, "{user}");
    assert!(user["last_login"].is_string());
    let logs = api
        .get(&format!("/api/v2/users/{}/logs", common::enc(&user_id)))
        .await;
    assert!(
        logs.body
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "s"),
        "{}",
        logs.body
    );

    // The code is single-use: a replay gets nothing.
    let replay = exchange(&api, &params["code"], VERIFIER).await;
    assert_oauth_error(&replay, 403, "invalid_grant");

    // /userinfo with the access token.
    let info: Value = api
        .http
        .get(api.url("/userinfo"))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], user_id);
    assert_eq!(info["email"], "ada@example.com");

    // The session signs the user in again without the login page (no prompt=login) …
    let page = browser.get(&authorize).await;
    assert_eq!(page.status, 302);
    assert!(page.location.as_deref().unwrap().starts_with(SPA_CALLBACK));
    // … but prompt=login shows it.
    let page = browser
        .get(&authorize_url(
            SPA,
            SPA_CALLBACK,
            &[("connection", common::DB), ("prompt", "login")],
        ))
        .await;
    assert!(page.location.as_deref().unwrap().starts_with("/u/login"));
}
