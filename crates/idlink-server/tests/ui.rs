//! The admin web UI at `/ui/` over real HTTP: sign-in, the session cookie's attributes,
//! the CSP, CSRF refusals, scope enforcement (a read-only client sees no action
//! buttons and cannot act), and link/unlink through the UI landing in the store and
//! the audit trail with the UI's client as the actor.

mod common;

use common::{Api, enc};
use idlink_server::emulator::EmulatorSettings;
use idlink_server::emulator::snapshot::Snapshot;
use idlink_server::testing::TestServer;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

const VIEWER: &str = "viewer";
const VIEWER_SECRET: &str = "viewer-secret-0123456789abcdef0123456789";

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `name=value` of cookie `name` in the answer's Set-Cookie headers, and the whole
/// header.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap().to_owned(), v.to_owned()))
}

/// The value of the hidden `csrf` field of a page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Signs in through the form; returns the session cookie pair.
async fn sign_in(api: &Api, client_id: &str, secret: &str) -> String {
    let http = browser();
    let page = http.get(api.url("/ui/login")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let (login_cookie, _) = set_cookie(&page, "idlink_ui_csrf").expect("a login CSRF cookie");
    let csrf = csrf_of(&page.text().await.unwrap());
    let response = http
        .post(api.url("/ui/login"))
        .header(COOKIE, &login_cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("client_id", client_id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(response.headers()[LOCATION], "/ui/users");
    set_cookie(&response, "idlink_ui")
        .expect("a session cookie")
        .0
}

async fn get_page(api: &Api, cookie: &str, path: &str) -> (u16, String) {
    let response = browser()
        .get(api.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn post_form(
    api: &Api,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    browser()
        .post(api.url(path))
        .header(COOKIE, cookie)
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_eight_hour_cookie_under_a_csp() {
    let api = Api::start().await;
    // Not signed in (not an emulator): to the sign-in page.
    let response = browser().get(api.url("/ui/users")).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[LOCATION], "/ui/login");

    let http = browser();
    let page = http.get(api.url("/ui/login")).send().await.unwrap();
    let csp = page.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let (login_cookie, _) = set_cookie(&page, "idlink_ui_csrf").unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains(">Client ID<") && html.contains(">Client secret<"));
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline script or style"
    );
    let csrf = csrf_of(&html);

    // A wrong secret: the form again, in words.
    let wrong = http
        .post(api.url("/ui/login"))
        .header(COOKIE, &login_cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("client_id", api.server.admin_client_id.as_str()),
            ("client_secret", "not-the-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(set_cookie(&wrong, "idlink_ui").is_none());
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("Wrong client ID or secret")
    );

    // Without the CSRF token: refused.
    let no_csrf = http
        .post(api.url("/ui/login"))
        .header(COOKIE, &login_cookie)
        .form(&[
            ("client_id", api.server.admin_client_id.as_str()),
            ("client_secret", api.server.admin_client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);

    let response = http
        .post(api.url("/ui/login"))
        .header(COOKIE, &login_cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("client_id", api.server.admin_client_id.as_str()),
            ("client_secret", api.server.admin_client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let (cookie, header) = set_cookie(&response, "idlink_ui").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age=28800", "Path=/ui"] {
        assert!(header.contains(attribute), "{header} lacks {attribute}");
    }
    assert!(
        !header.contains("Secure"),
        "plain HTTP: no Secure: {header}"
    );

    let (status, html) = get_page(&api, &cookie, "/ui/users").await;
    assert_eq!(status, 200);
    assert!(html.contains("<h1>Users</h1>"));
    assert!(html.contains(">Search users<"));
    // A forged cookie is no session.
    let (status, _) = get_page(&api, "idlink_ui=forged.token.value", "/ui/users").await;
    assert_eq!(status, 303);
}

#[tokio::test]
async fn link_and_unlink_through_the_ui_use_the_api_and_its_audit_trail() {
    let api = Api::start().await;
    let primary = api.db_user("ui-primary@example.com").await;
    let secondary = api
        .social_user("github", json!(4242), "ui-secondary@example.com")
        .await;
    let cookie = sign_in(
        &api,
        &api.server.admin_client_id,
        &api.server.admin_client_secret,
    )
    .await;
    let base = format!("/ui/users/{}", enc(&primary));

    let (status, html) = get_page(&api, &cookie, &base).await;
    assert_eq!(status, 200);
    assert!(html.contains("<h1>ui-primary@example.com</h1>"), "{html}");
    assert!(html.contains("Identities") && html.contains("<svg"));
    assert!(html.contains(">Link an account<"));
    let csrf = csrf_of(&html);

    let (status, html) = get_page(
        &api,
        &cookie,
        &format!("{base}/link?q=ui-secondary%40example.com"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("Search for the account to link"));
    assert!(html.contains("Preview link"));
    let (status, html) = get_page(
        &api,
        &cookie,
        &format!("{base}/link/preview?provider=github&user_id=4242"),
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(">Confirm link<"));
    // The preview wrote nothing.
    assert_eq!(api.user(&secondary).await.status, 200);

    // Without the CSRF token: 403, nothing linked.
    let refused = post_form(
        &api,
        &cookie,
        &format!("{base}/link"),
        &[("provider", "github"), ("user_id", "4242")],
    )
    .await;
    assert_eq!(refused.status(), 403);
    let refused = post_form(
        &api,
        &cookie,
        &format!("{base}/link"),
        &[
            ("csrf", "wrong"),
            ("provider", "github"),
            ("user_id", "4242"),
        ],
    )
    .await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        api.user(&primary).await.body["identities"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let linked = post_form(
        &api,
        &cookie,
        &format!("{base}/link"),
        &[
            ("csrf", csrf.as_str()),
            ("provider", "github"),
            ("user_id", "4242"),
        ],
    )
    .await;
    assert_eq!(linked.status(), 303);
    let user = api.user(&primary).await.body;
    assert_eq!(user["identities"].as_array().unwrap().len(), 2, "{user}");
    assert_eq!(api.user(&secondary).await.status, 404);

    // Linking it again: the error in words, with Auth0's errorCode.
    let again = post_form(
        &api,
        &cookie,
        &format!("{base}/link"),
        &[
            ("csrf", csrf.as_str()),
            ("provider", "github"),
            ("user_id", "4242"),
        ],
    )
    .await;
    let text = again.text().await.unwrap();
    assert!(text.contains("errorCode:"), "{text}");

    let (status, html) = get_page(
        &api,
        &cookie,
        &format!("{base}/unlink?provider=github&user_id=4242"),
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("github|4242") && html.contains(">Confirm unlink<"));
    let unlinked = post_form(
        &api,
        &cookie,
        &format!("{base}/unlink"),
        &[
            ("csrf", csrf.as_str()),
            ("provider", "github"),
            ("user_id", "4242"),
        ],
    )
    .await;
    assert_eq!(unlinked.status(), 303);
    assert_eq!(
        api.user(&primary).await.body["identities"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(api.user("github|4242").await.status, 200);

    // The trail names the UI's client as the actor, as the API would.
    let logs = api
        .get(&format!("/api/v2/logs?q=user_id:{}", enc(&primary)))
        .await
        .body;
    let ours: Vec<&Value> = logs
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["client_id"] == api.server.admin_client_id.as_str())
        .collect();
    assert!(ours.len() >= 3, "link, failed link, unlink: {logs}");
    let (status, html) = get_page(
        &api,
        &cookie,
        &format!("/ui/audit?user_id={}", enc(&primary)),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("<h1>Audit log</h1>") && html.contains("Unlink a User Identity"),
        "{html}"
    );
}

async fn emulator() -> Api {
    let seed = json!({
        "version": 1,
        "clients": [{
            "client_id": VIEWER, "name": "Viewer", "client_secret": VIEWER_SECRET,
            "grant_types": ["client_credentials"], "scopes": ["read:users"]
        }],
        "users": [
            {"email": "ann@example.com", "email_verified": true,
             "identities": [{"connection": "google-oauth2", "user_id": "ann-1"}]},
            {"email": "ann@example.com", "email_verified": true,
             "identities": [{"connection": "github", "user_id": 77}]}
        ]
    });
    let seed = Snapshot::from_json(seed.to_string().as_bytes()).expect("seed parses");
    let server = TestServer::start_with(|config| {
        config.emulator = Some(EmulatorSettings {
            seed: Some(seed),
            ..EmulatorSettings::default()
        });
    })
    .await;
    Api::with_server(server).await
}

#[tokio::test]
async fn a_read_only_client_sees_no_action_buttons_and_cannot_act() {
    let api = emulator().await;
    let cookie = sign_in(&api, VIEWER, VIEWER_SECRET).await;
    let base = format!("/ui/users/{}", enc("google-oauth2|ann-1"));
    let (status, html) = get_page(&api, &cookie, &base).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<h1>ann@example.com</h1>"));
    assert!(!html.contains("Link an account"), "{html}");
    let (_, html) = get_page(&api, &cookie, &format!("{base}/link?q=ann%40example.com")).await;
    assert!(!html.contains("Preview link") && !html.contains("Confirm link"));
    let (_, html) = get_page(
        &api,
        &cookie,
        &format!("{base}/link/preview?provider=github&user_id=77"),
    )
    .await;
    assert!(!html.contains("Confirm link"));
    assert!(html.contains("insufficient_scope"), "{html}");
    // Posting anyway, with a valid CSRF token: the API's scope check refuses it.
    let csrf = csrf_of(&html);
    let response = post_form(
        &api,
        &cookie,
        &format!("{base}/link"),
        &[
            ("csrf", csrf.as_str()),
            ("provider", "github"),
            ("user_id", "77"),
        ],
    )
    .await;
    assert_ne!(response.status(), 303);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("insufficient_scope")
    );
    assert_eq!(api.user("github|77").await.status, 200, "not linked");
}

#[tokio::test]
async fn the_emulator_signs_a_loopback_browser_in_as_its_admin() {
    let api = emulator().await;
    let response = browser().get(api.url("/ui/users")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let (_, header) = set_cookie(&response, "idlink_ui").expect("a session cookie");
    assert!(header.contains("SameSite=Strict"));
    let html = response.text().await.unwrap();
    assert!(html.contains("ann@example.com"));
}

#[tokio::test]
async fn the_session_cookie_is_secure_under_an_https_public_url() {
    let server = TestServer::start_with(|config| {
        config.public_url = Some("https://idlink.example.com".into());
    })
    .await;
    let api = Api::with_server(server).await;
    let page = browser().get(api.url("/ui/login")).send().await.unwrap();
    let (_, header) = set_cookie(&page, "idlink_ui_csrf").unwrap();
    assert!(header.contains("; Secure"), "{header}");
}

#[tokio::test]
async fn the_emulator_page_calls_the_control_api() {
    let api = emulator().await;
    let cookie = sign_in(
        &api,
        &api.server.admin_client_id,
        &api.server.admin_client_secret,
    )
    .await;
    let (status, html) = get_page(&api, &cookie, "/ui/emulator").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<h1>Emulator</h1>") && html.contains(">Reset users<"));
    let csrf = csrf_of(&html);
    let response = post_form(
        &api,
        &cookie,
        "/ui/emulator/reset-users",
        &[("csrf", csrf.as_str())],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Every user was deleted.")
    );
    assert_eq!(api.get("/api/v2/users").await.body, json!([]));
    let response = post_form(
        &api,
        &cookie,
        "/ui/emulator/reset",
        &[("csrf", csrf.as_str())],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        api.get("/api/v2/users")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let response = post_form(
        &api,
        &cookie,
        "/ui/emulator/advance-clock",
        &[("csrf", csrf.as_str()), ("seconds", "3600")],
    )
    .await;
    assert!(response.text().await.unwrap().contains("Clock advanced."));
    assert_eq!(
        api.get("/idlink/v1/clock").await.body["offset_seconds"],
        3600
    );
    // Without the CSRF token: refused, nothing done.
    let response = post_form(&api, &cookie, "/ui/emulator/reset-users", &[]).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        api.get("/api/v2/users")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Not in plain serve.
    let plain = Api::start().await;
    let cookie = sign_in(
        &plain,
        &plain.server.admin_client_id,
        &plain.server.admin_client_secret,
    )
    .await;
    let (status, html) = get_page(&plain, &cookie, "/ui/users").await;
    assert_eq!(status, 200);
    assert!(!html.contains("/ui/emulator"));
}

#[tokio::test]
async fn suggested_links_group_verified_duplicates() {
    let api = emulator().await;
    let cookie = sign_in(
        &api,
        &api.server.admin_client_id,
        &api.server.admin_client_secret,
    )
    .await;
    let (status, html) = get_page(&api, &cookie, "/ui/suggested").await;
    assert_eq!(status, 200);
    assert!(html.contains("<h1>Suggested links</h1>") && html.contains("ann@example.com"));
    assert!(html.contains("/link/preview"), "{html}");
    let viewer = sign_in(&api, VIEWER, VIEWER_SECRET).await;
    let (_, html) = get_page(&api, &viewer, "/ui/suggested").await;
    assert!(html.contains("ann@example.com") && !html.contains("/link/preview"));
}

#[tokio::test]
async fn the_emulator_page_uploads_a_snapshot_file() {
    let api = emulator().await;
    let cookie = sign_in(
        &api,
        &api.server.admin_client_id,
        &api.server.admin_client_secret,
    )
    .await;
    let (_, html) = get_page(&api, &cookie, "/ui/emulator").await;
    assert!(html.contains(">Snapshot file<"));
    let csrf = csrf_of(&html);
    let mut snapshot = api.get("/idlink/v1/snapshot").await.body;
    snapshot["users"] = json!([snapshot["users"][0].clone()]);
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .part(
            "snapshot",
            reqwest::multipart::Part::bytes(snapshot.to_string().into_bytes()).file_name("s.json"),
        );
    let response = browser()
        .post(api.url("/ui/emulator/snapshot-file"))
        .header(COOKIE, &cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(text.contains("Snapshot loaded."), "{text}");
    assert_eq!(
        api.get("/api/v2/users")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Without the token: refused.
    let form = reqwest::multipart::Form::new().part(
        "snapshot",
        reqwest::multipart::Part::bytes(b"{}".to_vec()).file_name("s.json"),
    );
    let response = browser()
        .post(api.url("/ui/emulator/snapshot-file"))
        .header(COOKIE, &cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}
