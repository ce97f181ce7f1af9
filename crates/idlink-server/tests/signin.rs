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

/// A code of the SPA for `email`, through the login page.
async fn code_for(api: &Api, email: &str, extra: &[(&str, &str)]) -> String {
    let mut browser = Browser::new(api);
    let mut params = vec![("connection", common::DB)];
    params.extend_from_slice(extra);
    let callback = password_login(
        &mut browser,
        &authorize_url(SPA, SPA_CALLBACK, &params),
        email,
    )
    .await;
    query_of(&callback)["code"].clone()
}

#[tokio::test]
async fn bad_exchanges_get_auth0s_oauth_errors_and_nothing() {
    let api = start().await;
    api.db_user("bob@example.com").await;

    // Missing and wrong PKCE verifier; the code is used up by the attempt.
    let code = code_for(&api, "bob@example.com", &[]).await;
    let missing = token_form(
        &api,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", SPA),
            ("code", &code),
            ("redirect_uri", SPA_CALLBACK),
        ],
    )
    .await;
    assert_oauth_error(&missing, 403, "invalid_grant");
    assert_oauth_error(&exchange(&api, &code, VERIFIER).await, 403, "invalid_grant");
    let code = code_for(&api, "bob@example.com", &[]).await;
    let wrong = exchange(&api, &code, &VERIFIER.replace('d', "x")).await;
    assert_oauth_error(&wrong, 403, "invalid_grant");

    // Redirect URI mismatch at the exchange.
    let code = code_for(&api, "bob@example.com", &[]).await;
    let other_uri = token_form(
        &api,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", SPA),
            ("code", &code),
            ("redirect_uri", "http://localhost:3000/other"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_oauth_error(&other_uri, 403, "invalid_grant");

    // A code of the SPA presented by another client.
    let code = code_for(&api, "bob@example.com", &[]).await;
    let other_client = token_form(
        &api,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", WEB),
            ("client_secret", WEB_SECRET),
            ("code", &code),
            ("redirect_uri", SPA_CALLBACK),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_oauth_error(&other_client, 403, "invalid_grant");

    // An unknown client.
    let unknown = token_form(
        &api,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "nobody"),
            ("code", "whatever"),
            ("redirect_uri", SPA_CALLBACK),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_oauth_error(&unknown, 401, "access_denied");
    // A made-up code.
    assert_oauth_error(
        &exchange(&api, "made-up", VERIFIER).await,
        403,
        "invalid_grant",
    );

    // An expired code (stored as a sign-in would, ten minutes and more ago).
    let state = api.server.state();
    let now = idlink_server::clock::unix_now();
    let payload = json!({
        "user_id": "auth0|000000000000000000000000", "client_id": SPA, "scope": "openid",
        "audience": null, "nonce": null, "auth_time": now - 700, "sid": null,
        "redirect_uri": SPA_CALLBACK, "code_challenge": CHALLENGE, "code_challenge_method": "S256",
    });
    state
        .store
        .put_code(
            &idlink_server::store::StoredCode {
                hash: idlink_server::auth::signin::digest("expired-code"),
                client_id: SPA.into(),
                payload: payload.to_string(),
                expires_at: now - 100,
            },
            now - 700,
        )
        .await
        .unwrap();
    assert_oauth_error(
        &exchange(&api, "expired-code", VERIFIER).await,
        403,
        "invalid_grant",
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reuse_revokes_the_family() {
    let api = start().await;
    api.db_user("rota@example.com").await;
    let code = code_for(&api, "rota@example.com", &[]).await;
    let (status, first) = exchange(&api, &code, VERIFIER).await;
    assert_eq!(status, 200, "{first}");
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |token: String| {
        let api = &api;
        async move {
            token_form(
                api,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", SPA),
                    ("refresh_token", &token),
                ],
            )
            .await
        }
    };
    let (status, second) = refresh(r1.clone()).await;
    assert_eq!(status, 200, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2, "rotated");
    assert!(second["id_token"].is_string());
    assert_eq!(
        decode_claims(second["access_token"].as_str().unwrap())["sub"],
        decode_claims(first["access_token"].as_str().unwrap())["sub"]
    );

    // r1 again: a reuse. It fails, and so does r2, the family's current token.
    assert_oauth_error(&refresh(r1).await, 403, "invalid_grant");
    assert_oauth_error(&refresh(r2).await, 403, "invalid_grant");
    assert_oauth_error(&refresh("never-issued".into()).await, 403, "invalid_grant");

    // Without offline_access there is no refresh token.
    let code = code_for(&api, "rota@example.com", &[("scope", "openid")]).await;
    let (_, body) = exchange(&api, &code, VERIFIER).await;
    assert!(body.get("refresh_token").is_none(), "{body}");
}

#[tokio::test]
async fn authorize_errors_never_redirect_to_an_unchecked_url() {
    let api = start().await;
    let mut browser = Browser::new(&api);
    // Unknown client, missing or unlisted redirect URIs: an idlink page, no Location.
    for url in [
        authorize_url("nobody", SPA_CALLBACK, &[]),
        authorize_url(SPA, "https://evil.example.com/cb", &[]),
        authorize_url(SPA, "http://localhost:3000/callback/", &[]),
        authorize_url(SPA, "", &[("redirect_uri", "")]),
        "/authorize?response_type=code".to_owned(),
    ] {
        let page = browser.get(&url).await;
        assert_eq!(page.status, 400, "{url}");
        assert!(page.location.is_none(), "{url}");
        assert!(page.text.contains("<html"), "{url}");
    }
    // With a good redirect URI, errors go back to the app with the state.
    for (extra, error) in [
        (
            vec![("audience", "https://unknown.example.com/")],
            "access_denied",
        ),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("code_challenge", "")], "invalid_request"),
        (vec![("code_challenge_method", "S512")], "invalid_request"),
        (
            vec![("connection", "no-such-connection")],
            "invalid_request",
        ),
        (vec![("response_mode", "fragment")], "invalid_request"),
        (vec![("prompt", "none")], "login_required"),
    ] {
        let page = browser.get(&authorize_url(SPA, SPA_CALLBACK, &extra)).await;
        assert_eq!(page.status, 302, "{extra:?}: {}", page.text);
        let location = page.location.unwrap();
        assert!(location.starts_with(SPA_CALLBACK), "{location}");
        let params = query_of(&location);
        assert_eq!(params["error"], error, "{extra:?}");
        assert!(params.contains_key("error_description"));
        assert_eq!(params["state"], "app-state-1");
    }
    // A client without the authorization_code grant.
    let page = browser.get(&authorize_url(M2M, SPA_CALLBACK, &[])).await;
    assert_eq!(page.status, 400, "M2M has no callbacks: an error page");
}

#[tokio::test]
async fn login_forms_need_their_csrf_token_and_record_failures() {
    let api = start().await;
    let user_id = api.db_user("eve@example.com").await;
    let mut browser = Browser::new(&api);
    let tx = to_login_page(
        &mut browser,
        &authorize_url(SPA, SPA_CALLBACK, &[("connection", common::DB)]),
    )
    .await;
    let form = |csrf: &'static str| {
        vec![
            ("state", tx.clone()),
            ("csrf", csrf.to_owned()),
            ("connection", common::DB.to_owned()),
            ("username", "eve@example.com".to_owned()),
            ("password", common::PASSWORD.to_owned()),
        ]
    };
    let as_refs = |f: &Vec<(&'static str, String)>| -> Vec<(&'static str, String)> { f.clone() };
    // No CSRF token, a wrong one: refused, nobody signed in.
    for csrf in ["", "wrong-token-wrong-token-wrong-token-wrong-t"] {
        let f = as_refs(&form(csrf));
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = browser.post("/u/login", &pairs).await;
        assert_eq!(page.status, 403, "{}", page.text);
        assert!(page.location.is_none());
    }
    // A tampered transaction.
    let csrf = browser.cookies["idlink_csrf"].clone();
    let page = browser
        .post(
            "/u/login",
            &[
                ("state", &format!("{tx}x")),
                ("csrf", &csrf),
                ("connection", common::DB),
                ("username", "eve@example.com"),
                ("password", common::PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 400);
    // A wrong password: the form again with Auth0's message, and an `f` event.
    let page = browser
        .post(
            "/u/login",
            &[
                ("state", &tx),
                ("csrf", &csrf),
                ("connection", common::DB),
                ("username", "eve@example.com"),
                ("password", "wrong"),
            ],
        )
        .await;
    assert_eq!(page.status, 400);
    assert!(
        page.text.contains("Wrong email or password."),
        "{}",
        page.text
    );
    let logs = api.get("/api/v2/logs?q=type:f").await;
    let events = logs.body.as_array().unwrap();
    assert_eq!(events.len(), 1, "{}", logs.body);
    assert_eq!(events[0]["details"]["user_name"], "eve@example.com");
    let count = &api.user(&user_id).await.body["logins_count"];
    assert!(count.is_null() || count == 0, "no login counted: {count}");

    // Attempts are rate-limited: after ten tries from one address for one name, 429.
    let mut last = StatusCode::OK;
    for _ in 0..12 {
        last = browser
            .post(
                "/u/login",
                &[
                    ("state", &tx),
                    ("csrf", &csrf),
                    ("connection", common::DB),
                    ("username", "eve@example.com"),
                    ("password", "wrong"),
                ],
            )
            .await
            .status;
    }
    assert_eq!(last, 429);
}

#[tokio::test]
async fn signup_creates_a_database_user_and_signs_it_in() {
    let api = start().await;
    let mut browser = Browser::new(&api);
    let tx = to_login_page(
        &mut browser,
        &authorize_url(SPA, SPA_CALLBACK, &[("connection", common::DB)]),
    )
    .await;
    let page = browser
        .get(&format!("/u/signup?state={tx}&connection={}", common::DB))
        .await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains(">Email</label>") && page.text.contains(">Continue</button>"));
    let csrf = browser.cookies["idlink_csrf"].clone();
    // A password weaker than the connection's policy (Auth0's default, `good`): the
    // form says what it needs, nothing is created.
    let page = browser
        .post(
            "/u/signup",
            &[
                ("state", &tx),
                ("csrf", &csrf),
                ("connection", common::DB),
                ("email", "new@example.com"),
                ("password", "hunter22"),
            ],
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.text);
    assert!(
        page.text.contains("Password is too weak") && page.text.contains("at least 8 characters"),
        "{}",
        page.text
    );
    let page = browser
        .post(
            "/u/signup",
            &[
                ("state", &tx),
                ("csrf", &csrf),
                ("connection", common::DB),
                ("email", "new@example.com"),
                ("password", common::PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 302, "{}", page.text);
    let code = query_of(&page.location.unwrap())["code"].clone();
    let (status, body) = exchange(&api, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    let sub = decode_claims(body["id_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(sub.starts_with("auth0|"), "{sub}");
    let user = api.user(&sub).await.body;
    assert_eq!(user["email"], "new@example.com");
    assert_eq!(user["logins_count"], 1);
    // The same email again: the form says so, nothing is created.
    let page = browser
        .post(
            "/u/signup",
            &[
                ("state", &tx),
                ("csrf", &csrf),
                ("connection", common::DB),
                ("email", "new@example.com"),
                ("password", common::PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 409);
}

/// Signs a provider-side identity in through the emulated google-oauth2 page; returns
/// the token answer.
async fn social_sign_in(api: &Api, user_id: &str, email: &str) -> Value {
    let mut browser = Browser::new(api);
    let page = browser
        .get(&authorize_url(
            SPA,
            SPA_CALLBACK,
            &[("connection", "google-oauth2")],
        ))
        .await;
    let location = page.location.unwrap();
    let page = browser.get(&location).await;
    assert_eq!(
        page.status, 302,
        "the database page sends social connections on"
    );
    let provider = page.location.unwrap();
    assert!(
        provider.starts_with("/u/login/identity-provider?"),
        "{provider}"
    );
    let page = browser.get(&provider).await;
    assert_eq!(page.status, 200);
    for name in [
        ">User ID</label>",
        ">Name</label>",
        " Email verified</label>",
        ">Continue</button>",
    ] {
        assert!(page.text.contains(name), "{name}: {}", page.text);
    }
    let tx = query_of(&provider)["state"].clone();
    let csrf = browser.cookies["idlink_csrf"].clone();
    let page = browser
        .post(
            "/u/login/identity-provider",
            &[
                ("state", &tx),
                ("csrf", &csrf),
                ("connection", "google-oauth2"),
                ("user_id", user_id),
                ("email", email),
                ("email_verified", "true"),
                ("name", "Grace Hopper"),
            ],
        )
        .await;
    assert_eq!(page.status, 302, "{}", page.text);
    let code = query_of(&page.location.unwrap())["code"].clone();
    let (status, body) = exchange(api, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn emulated_social_sign_in_creates_reuses_and_follows_links() {
    let api = start().await;
    let first = social_sign_in(&api, "10987654321", "grace@example.com").await;
    let id = decode_claims(first["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], "google-oauth2|10987654321");
    let user = api.user("google-oauth2|10987654321").await.body;
    assert_eq!(user["email"], "grace@example.com");
    assert_eq!(user["email_verified"], true);
    assert_eq!(user["name"], "Grace Hopper");
    assert_eq!(user["nickname"], "grace");
    assert_eq!(user["identities"][0]["provider"], "google-oauth2");
    assert_eq!(user["identities"][0]["isSocial"], true);
    assert_eq!(user["logins_count"], 1);

    // A later sign-in reuses the user.
    social_sign_in(&api, "10987654321", "grace@example.com").await;
    assert_eq!(
        api.user("google-oauth2|10987654321").await.body["logins_count"],
        2
    );

    // Mode A with the social user's ID token, then the secondary's sign-in is the primary's.
    let primary = api.db_user("primary@example.com").await;
    // link_with's aud (the SPA) must be the calling token's azp: the primary signs in to
    // the SPA too, asking for a Management API token.
    let spa_primary = {
        let code = code_for(
            &api,
            "primary@example.com",
            &[
                ("audience", &api.server.audience()),
                ("scope", "openid update:current_user_identities"),
            ],
        )
        .await;
        exchange(&api, &code, VERIFIER).await.1
    };
    let link = api
        .send_as(
            spa_primary["access_token"].as_str(),
            reqwest::Method::POST,
            &format!("/api/v2/users/{}/identities", common::enc(&primary)),
            Some(json!({"link_with": first["id_token"]})),
        )
        .await;
    assert_eq!(link.status, 201, "{}", link.body);
    assert_eq!(link.body.as_array().unwrap().len(), 2);
    let again = social_sign_in(&api, "10987654321", "grace@example.com").await;
    assert_eq!(
        decode_claims(again["id_token"].as_str().unwrap())["sub"],
        primary
    );
}

#[tokio::test]
async fn social_page_is_off_unless_the_connection_is_emulated() {
    // github is a default social connection, not configured as emulated.
    let api = start().await;
    let mut browser = Browser::new(&api);
    let page = browser
        .get(&authorize_url(
            SPA,
            SPA_CALLBACK,
            &[("connection", "github")],
        ))
        .await;
    let params = query_of(&page.location.unwrap());
    assert_eq!(params["error"], "invalid_request");
    let page = browser.get(&authorize_url(SPA, SPA_CALLBACK, &[])).await;
    let page = browser.get(&page.location.unwrap()).await;
    // The chooser: one button per usable connection, named after it.
    assert!(
        page.text.contains(&format!(">{}</button>", common::DB)),
        "{}",
        page.text
    );
    assert!(page.text.contains(">google-oauth2</button>"));
    assert!(!page.text.contains(">github</button>"));
    drop(api);

    // The emulator's switch turns it on for every social connection.
    let api = Api::with_server(
        TestServer::start_with(|c| {
            configure(c);
            c.emulate_identity_providers = true;
        })
        .await,
    )
    .await;
    let mut browser = Browser::new(&api);
    let page = browser
        .get(&authorize_url(
            SPA,
            SPA_CALLBACK,
            &[("connection", "github")],
        ))
        .await;
    assert!(page.location.unwrap().starts_with("/u/login?"));
}

#[tokio::test]
async fn form_post_logout_and_cors() {
    let api = start().await;
    api.db_user("fp@example.com").await;
    let mut browser = Browser::new(&api);
    let tx = to_login_page(
        &mut browser,
        &authorize_url(
            SPA,
            SPA_CALLBACK,
            &[("connection", common::DB), ("response_mode", "form_post")],
        ),
    )
    .await;
    let csrf = browser.cookies["idlink_csrf"].clone();
    let page = browser
        .post(
            "/u/login",
            &[
                ("state", &tx),
                ("csrf", &csrf),
                ("connection", common::DB),
                ("username", "fp@example.com"),
                ("password", common::PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains(&format!("action=\"{SPA_CALLBACK}\"")),
        "{}",
        page.text
    );
    assert!(page.text.contains("name=\"code\"") && page.text.contains("value=\"app-state-1\""));

    // Logout: an unlisted returnTo is refused, the listed one redirects and ends the session.
    let page = browser
        .get(&format!(
            "/v2/logout?client_id={SPA}&returnTo=https://evil.example.com/"
        ))
        .await;
    assert_eq!(page.status, 400);
    assert!(page.location.is_none());
    assert!(browser.cookies.contains_key("idlink_session"));
    let page = browser
        .get(&format!(
            "/v2/logout?client_id={SPA}&returnTo=http://localhost:3000/"
        ))
        .await;
    assert_eq!(page.status, 302);
    assert_eq!(page.location.as_deref(), Some("http://localhost:3000/"));
    assert!(!browser.cookies.contains_key("idlink_session"));
    let page = browser
        .get(&authorize_url(SPA, SPA_CALLBACK, &[("prompt", "none")]))
        .await;
    assert_eq!(query_of(&page.location.unwrap())["error"], "login_required");

    // CORS: the SPA's origin may call the token endpoint; another origin gets no header.
    let preflight = api
        .http
        .request(reqwest::Method::OPTIONS, api.url("/oauth/token"))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, auth0-client",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let other = api
        .http
        .post(api.url("/oauth/token"))
        .header("origin", "http://localhost:9999")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // Discovery lists it all.
    let discovery: Value = api
        .http
        .get(api.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["authorization_endpoint"], api.url("/authorize"));
    assert_eq!(discovery["userinfo_endpoint"], api.url("/userinfo"));
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256", "plain"])
    );
    // /userinfo without a valid token.
    let bad = api
        .http
        .get(api.url("/userinfo"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
}

/// POSTs `body` to the emulator's `POST /idlink/v1/tokens`: `(status, body)`.
async fn shortcut(api: &Api, body: Value) -> (u16, Value) {
    let response = api
        .http
        .post(api.url("/idlink/v1/tokens"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A sign-in tenant in emulator mode (where the token shortcut exists).
async fn start_emulator() -> Api {
    Api::with_server(
        TestServer::start_with(|config| {
            configure(config);
            config.emulator = Some(idlink_server::emulator::EmulatorSettings::default());
        })
        .await,
    )
    .await
}

#[tokio::test]
async fn the_emulator_shortcut_mints_what_a_sign_in_gives() {
    let api = start_emulator().await;
    let user_id = api.db_user("short@example.com").await;
    let code = code_for(&api, "short@example.com", &[("nonce", "n-2")]).await;
    let (_, signed_in) = exchange(&api, &code, VERIFIER).await;
    let (status, minted) = shortcut(
        &api,
        json!({"user_id": user_id, "client_id": SPA, "scope": "openid profile email offline_access", "nonce": "n-2"}),
    )
    .await;
    assert_eq!(status, 200, "{minted}");
    let keys = |token: &Value| {
        let claims = decode_claims(token.as_str().unwrap());
        claims
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(keys(&minted["id_token"]), keys(&signed_in["id_token"]));
    assert_eq!(
        keys(&minted["access_token"]),
        keys(&signed_in["access_token"])
    );
    assert_eq!(minted["scope"], signed_in["scope"]);
    assert!(minted["refresh_token"].is_string());
    let id = decode_claims(minted["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], user_id);
    assert_eq!(id["aud"], SPA);

    assert_eq!(
        shortcut(&api, json!({"user_id": "auth0|nobody", "client_id": SPA}))
            .await
            .0,
        404
    );
    assert_eq!(
        shortcut(&api, json!({"user_id": user_id, "client_id": "nobody"}))
            .await
            .0,
        404
    );
    assert_eq!(
        shortcut(
            &api,
            json!({"user_id": user_id, "client_id": SPA, "audience": "https://nope/"})
        )
        .await
        .0,
        403
    );
    assert_eq!(shortcut(&api, json!({"user_id": user_id})).await.0, 400);
}

#[tokio::test]
async fn silent_sign_in_answers_by_web_message() {
    let api = start().await;
    api.db_user("silent@example.com").await;
    let mut browser = Browser::new(&api);
    let silent = authorize_url(
        SPA,
        SPA_CALLBACK,
        &[("prompt", "none"), ("response_mode", "web_message")],
    );
    // No session: login_required, posted to the app's origin only.
    let page = browser.get(&silent).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("\"error\":\"login_required\""),
        "{}",
        page.text
    );
    assert!(
        page.text.contains("\"http://localhost:3000\")"),
        "{}",
        page.text
    );
    // After a sign-in, a code.
    password_login(
        &mut browser,
        &authorize_url(SPA, SPA_CALLBACK, &[("connection", common::DB)]),
        "silent@example.com",
    )
    .await;
    let page = browser.get(&silent).await;
    assert!(
        page.text.contains("\"type\":\"authorization_response\""),
        "{}",
        page.text
    );
    let code = page
        .text
        .split("\"code\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let (status, body) = exchange(&api, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_regular_web_app_exchanges_its_code_with_its_secret() {
    let api = start().await;
    api.db_user("web@example.com").await;
    let mut browser = Browser::new(&api);
    // No PKCE: a confidential client proves the exchange with its secret.
    let authorize = authorize_url(
        WEB,
        WEB_CALLBACK,
        &[
            ("connection", common::DB),
            ("code_challenge", ""),
            ("code_challenge_method", ""),
        ],
    );
    let callback = password_login(&mut browser, &authorize, "web@example.com").await;
    assert!(callback.starts_with(WEB_CALLBACK), "{callback}");
    let code = query_of(&callback)["code"].clone();
    let exchange = |secret: Option<&'static str>| {
        let (api, code) = (&api, code.clone());
        async move {
            let mut form = vec![
                ("grant_type", "authorization_code"),
                ("client_id", WEB),
                ("code", code.as_str()),
                ("redirect_uri", WEB_CALLBACK),
            ];
            if let Some(secret) = secret {
                form.push(("client_secret", secret));
            }
            token_form(api, &form).await
        }
    };
    // Without the secret: refused (and the code is not spent by it).
    assert_oauth_error(&exchange(None).await, 401, "access_denied");
    assert_oauth_error(&exchange(Some("wrong-secret")).await, 401, "access_denied");
    let (status, body) = exchange(Some(WEB_SECRET)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        decode_claims(body["id_token"].as_str().unwrap())["aud"],
        WEB
    );
}

#[tokio::test]
async fn cookies_are_secure_when_idlink_is_reached_over_https() {
    let api = Api::with_server(
        TestServer::start_with(|c| {
            configure(c);
            c.public_url = Some("https://idlink.example.com".into());
        })
        .await,
    )
    .await;
    let mut browser = Browser::new(&api);
    let page = browser
        .get(&authorize_url(
            SPA,
            SPA_CALLBACK,
            &[("connection", common::DB)],
        ))
        .await;
    let page = browser.get(&page.location.unwrap()).await;
    let csrf = page
        .set_cookies
        .iter()
        .find(|c| c.starts_with("idlink_csrf="))
        .unwrap();
    assert!(
        csrf.contains("; Secure") && csrf.contains("HttpOnly"),
        "{csrf}"
    );
}
