//! Linking at sign-in (issue 16 item 4, `[linking] at_sign_in = "prompt"`): the login
//! pages offer to link the other account of the same verified email and link only after
//! the user signed in to it too. Driven as a browser would (forms, cookies, no redirects
//! followed) against the real server, on the backend the environment picks.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{Api, decode_claims, enc};
use idlink_server::config::{ClientConfig, Config, ConnectionConfig};
use idlink_server::domain::sign_in_linking::AtSignIn;
use idlink_server::testing::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SPA: &str = "spa-client";
const CALLBACK: &str = "http://localhost:3000/callback";
const GOOGLE: &str = "google-oauth2";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const EMAIL: &str = "ada@example.com";

fn configure(config: &mut Config, at_sign_in: AtSignIn) {
    config.tenant.clients.push(ClientConfig {
        name: "SPA".into(),
        client_id: SPA.into(),
        app_type: Some("spa".into()),
        callbacks: vec![CALLBACK.into()],
        token_endpoint_auth_method: Some("none".into()),
        ..ClientConfig::default()
    });
    config.tenant.connections.push(ConnectionConfig {
        name: GOOGLE.into(),
        strategy: GOOGLE.into(),
        emulated: true,
        ..ConnectionConfig::default()
    });
    config.tenant.linking.at_sign_in = at_sign_in;
}

async fn start(at_sign_in: AtSignIn) -> Api {
    Api::with_server(TestServer::start_with(move |c| configure(c, at_sign_in)).await).await
}

/// A browser: follows no redirect, keeps its cookies.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: BTreeMap<String, String>,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    text: String,
}

impl Browser {
    fn new(api: &Api) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: api.server.base_url.clone(),
            cookies: BTreeMap::new(),
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let response = request
            .header("cookie", cookie.join("; "))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        for c in response.headers().get_all("set-cookie") {
            let pair = c.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        Page {
            status,
            location,
            text: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(request).await
    }

    fn csrf(&self) -> String {
        self.cookies["idlink_csrf"].clone()
    }

    /// `/authorize` for `connection`, through to its login page: the login transaction.
    async fn open_login(&mut self, connection: &str) -> String {
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", SPA),
            ("redirect_uri", CALLBACK),
            ("scope", "openid profile email"),
            ("state", "app-state"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("connection", connection),
            ("prompt", "login"),
        ])
        .unwrap();
        let mut page = self.get(&format!("/authorize?{query}")).await;
        let mut tx = String::new();
        while page.status == StatusCode::FOUND {
            let location = page.location.clone().unwrap();
            if let Some(state) = query_of(&location).get("state") {
                tx = state.clone();
            }
            page = self.get(&location).await;
        }
        assert_eq!(page.status, 200, "{}", page.text);
        tx
    }

    /// Signs in with the database connection's password form.
    async fn password_sign_in(&mut self, email: &str) -> Page {
        let tx = self.open_login(common::DB).await;
        let csrf = self.csrf();
        self.post(
            "/u/login",
            &[
                ("state", &tx),
                ("csrf", &csrf),
                ("connection", common::DB),
                ("username", email),
                ("password", common::PASSWORD),
            ],
        )
        .await
    }

    /// Signs in through the emulated Google page.
    async fn google_sign_in(&mut self, user_id: &str, email: &str, verified: bool) -> Page {
        let tx = self.open_login(GOOGLE).await;
        let csrf = self.csrf();
        let mut form = vec![
            ("state", tx.as_str()),
            ("csrf", csrf.as_str()),
            ("connection", GOOGLE),
            ("user_id", user_id),
            ("email", email),
            ("name", "Ada"),
        ];
        if verified {
            form.push(("email_verified", "true"));
        }
        self.post("/u/login/identity-provider", &form).await
    }

    async fn confirm(&mut self, field: &str, value: &str) -> Page {
        let csrf = self.csrf();
        self.post(
            "/u/login/link",
            &[("csrf", &csrf), ("choice", "link"), (field, value)],
        )
        .await
    }

    async fn decline(&mut self) -> Page {
        let csrf = self.csrf();
        self.post("/u/login/link", &[("csrf", &csrf), ("choice", "decline")])
            .await
    }
}

fn query_of(url: &str) -> HashMap<String, String> {
    serde_urlencoded::from_str(url.split_once('?').map_or("", |(_, q)| q)).unwrap()
}

#[track_caller]
fn assert_offer(page: &Page, input: &str) {
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.text.contains("<h1>Link your accounts</h1>"),
        "{}",
        page.text
    );
    assert!(page.text.contains(EMAIL), "{}", page.text);
    assert!(
        page.text.contains(">Link accounts</button>"),
        "{}",
        page.text
    );
    assert!(
        page.text.contains(">Continue without linking</button>"),
        "{}",
        page.text
    );
    assert!(
        page.text.contains(&format!("<label for=\"{input}\">")),
        "{}",
        page.text
    );
}

/// The `sub` the application gets for the code the page sent it.
async fn signed_in_sub(api: &Api, page: &Page) -> String {
    assert_eq!(page.status, 302, "{}", page.text);
    let location = page.location.clone().unwrap();
    assert!(location.starts_with(CALLBACK), "{location}");
    let code = query_of(&location)["code"].clone();
    let response = api
        .http
        .post(api.url("/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", SPA),
            ("code", &code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    decode_claims(body["id_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The events of one type, oldest first.
async fn events(api: &Api, kind: &str) -> Vec<Value> {
    let reply = api
        .get(&format!("/api/v2/logs?q=type:{kind}&sort=date:1"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body.as_array().unwrap().clone()
}

async fn identity_count(api: &Api, user_id: &str) -> usize {
    let reply = api.user(user_id).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["identities"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_verified_match_is_linked_only_after_signing_in_to_both() {
    let api = start(AtSignIn::Prompt).await;
    let db = api.db_user(EMAIL).await;
    let mut browser = Browser::new(&api);

    let offer = browser.google_sign_in("g-1", "Ada@Example.com", true).await;
    assert_offer(&offer, "password");
    let google = "google-oauth2|g-1";
    assert_eq!(identity_count(&api, google).await, 1, "nothing linked yet");
    let prompted = events(&api, "idlink_link_prompted").await;
    assert_eq!(prompted.len(), 1);
    assert_eq!(prompted[0]["user_id"], google);
    assert_eq!(prompted[0]["details"]["other_user_id"], db);
    assert!(
        !browser.cookies.contains_key("idlink_session"),
        "no session before the offer is answered"
    );

    // A wrong password: nothing linked, a failed login of the other account, a new offer.
    let stale = browser.cookies["idlink_link"].clone();
    let wrong = browser.confirm("password", "not-the-password-1").await;
    assert_eq!(wrong.status, 400, "{}", wrong.text);
    assert!(wrong.text.contains("Link your accounts"), "{}", wrong.text);
    assert_ne!(browser.cookies["idlink_link"], stale, "a fresh offer");
    assert_eq!(identity_count(&api, &db).await, 1);
    let failed = events(&api, "f").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["user_id"], db);

    // The spent offer cannot be replayed, even with the right password.
    let fresh = browser.cookies["idlink_link"].clone();
    browser.cookies.insert("idlink_link".into(), stale);
    let replay = browser.confirm("password", common::PASSWORD).await;
    assert_eq!(replay.status, 400, "{}", replay.text);
    assert!(
        replay.text.contains("Nothing was linked"),
        "{}",
        replay.text
    );
    assert_eq!(identity_count(&api, &db).await, 1);

    // The right password on the open offer: linked, the older account is the primary.
    browser.cookies.insert("idlink_link".into(), fresh.clone());
    let linked = browser.confirm("password", common::PASSWORD).await;
    assert_eq!(signed_in_sub(&api, &linked).await, db);
    let user = api.user(&db).await.body;
    let identities = user["identities"].as_array().unwrap();
    assert_eq!(identities.len(), 2, "{user}");
    assert_eq!(identities[1]["provider"], GOOGLE);
    assert_eq!(identities[1]["user_id"], "g-1");
    assert_eq!(api.user(google).await.status, 404, "the secondary is gone");
    assert!(browser.cookies.contains_key("idlink_session"));
    assert!(
        !browser.cookies.contains_key("idlink_link"),
        "the offer cookie is cleared"
    );

    let confirmed = events(&api, "idlink_link_confirmed").await;
    assert_eq!(confirmed.len(), 1);
    let links = events(&api, "sapi").await;
    let link = links
        .iter()
        .find(|e| e["description"] == "Link a User Account")
        .expect("the link's own event");
    assert_eq!(link["user_id"], db);
    assert_eq!(link["details"]["request"]["body"]["at_sign_in"], true);

    // The same confirmation once more: refused, nothing changes.
    browser.cookies.insert("idlink_link".into(), fresh);
    let again = browser.confirm("password", common::PASSWORD).await;
    assert_eq!(again.status, 400, "{}", again.text);
    assert_eq!(identity_count(&api, &db).await, 2);

    // A later Google sign-in signs the primary in, and offers nothing more.
    let mut later = Browser::new(&api);
    let page = later.google_sign_in("g-1", EMAIL, true).await;
    assert_eq!(signed_in_sub(&api, &page).await, db);
    assert_eq!(events(&api, "idlink_link_prompted").await.len(), 1);
    api.assert_invariants().await;
}

#[tokio::test]
async fn a_social_other_account_is_proved_on_its_provider_page() {
    let api = start(AtSignIn::Prompt).await;
    let created = api
        .post(
            "/api/v2/users",
            json!({"connection": GOOGLE, "user_id": "g-7", "email": EMAIL, "email_verified": true}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let google = "google-oauth2|g-7";
    // Created later than the Google user, whatever the clock's resolution.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let db = api.db_user(EMAIL).await;

    let mut browser = Browser::new(&api);
    let offer = browser.password_sign_in(EMAIL).await;
    assert_offer(&offer, "user_id");
    let wrong = browser.confirm("user_id", "g-8").await;
    assert_eq!(wrong.status, 400, "{}", wrong.text);
    assert_eq!(identity_count(&api, google).await, 1);
    let linked = browser.confirm("user_id", "g-7").await;
    assert_eq!(
        signed_in_sub(&api, &linked).await,
        google,
        "the older account"
    );
    assert_eq!(identity_count(&api, google).await, 2);
    assert_eq!(api.user(&db).await.status, 404);
    api.assert_invariants().await;
}

#[tokio::test]
async fn declining_signs_in_as_the_first_account_and_links_nothing() {
    let api = start(AtSignIn::Prompt).await;
    let db = api.db_user(EMAIL).await;
    let mut browser = Browser::new(&api);
    let offer = browser.google_sign_in("g-2", EMAIL, true).await;
    assert_offer(&offer, "password");
    let stale = browser.cookies["idlink_link"].clone();
    let declined = browser.decline().await;
    assert_eq!(signed_in_sub(&api, &declined).await, "google-oauth2|g-2");
    assert_eq!(identity_count(&api, &db).await, 1);
    assert_eq!(identity_count(&api, "google-oauth2|g-2").await, 1);
    let events = events(&api, "idlink_link_declined").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["user_id"], "google-oauth2|g-2");

    // A declined offer is spent: confirming it afterwards links nothing.
    browser.cookies.insert("idlink_link".into(), stale);
    let late = browser.confirm("password", common::PASSWORD).await;
    assert_eq!(late.status, 400, "{}", late.text);
    assert_eq!(identity_count(&api, &db).await, 1);
}

#[tokio::test]
async fn unverified_or_ambiguous_emails_are_never_offered() {
    let api = start(AtSignIn::Prompt).await;
    let db = api.db_user(EMAIL).await;

    // The provider says the email is not verified: a plain sign-in.
    let mut browser = Browser::new(&api);
    let page = browser.google_sign_in("g-3", EMAIL, false).await;
    assert_eq!(signed_in_sub(&api, &page).await, "google-oauth2|g-3");

    // The other account's email is not verified: a plain sign-in.
    let unverified = api
        .post(
            "/api/v2/users",
            json!({"connection": common::DB, "email": "bob@example.com", "password": common::PASSWORD}),
        )
        .await;
    assert_eq!(unverified.status, 201, "{}", unverified.body);
    let page = Browser::new(&api)
        .google_sign_in("g-4", "bob@example.com", true)
        .await;
    assert_eq!(signed_in_sub(&api, &page).await, "google-oauth2|g-4");

    // Two other verified accounts: which one is meant cannot be known.
    let github = api
        .post(
            "/api/v2/users",
            json!({"connection": "github", "user_id": 5, "email": EMAIL, "email_verified": true}),
        )
        .await;
    assert_eq!(github.status, 201, "{}", github.body);
    let page = Browser::new(&api).google_sign_in("g-5", EMAIL, true).await;
    assert_eq!(signed_in_sub(&api, &page).await, "google-oauth2|g-5");

    assert!(events(&api, "idlink_link_prompted").await.is_empty());
    assert_eq!(identity_count(&api, &db).await, 1);
}

#[tokio::test]
async fn forged_confirmations_link_nothing() {
    let api = start(AtSignIn::Prompt).await;
    let db = api.db_user(EMAIL).await;
    let mut browser = Browser::new(&api);
    let offer = browser.google_sign_in("g-6", EMAIL, true).await;
    assert_offer(&offer, "password");
    let csrf = browser.csrf();
    let secret = browser.cookies["idlink_link"].clone();

    // Another browser (no offer cookie, its own CSRF token) posting the confirmation.
    let mut other = Browser::new(&api);
    other.cookies.insert("idlink_csrf".into(), csrf.clone());
    let page = other.confirm("password", common::PASSWORD).await;
    assert_eq!(page.status, 400, "{}", page.text);
    // A made-up offer secret.
    other
        .cookies
        .insert("idlink_link".into(), "A".repeat(secret.len()));
    let page = other.confirm("password", common::PASSWORD).await;
    assert_eq!(page.status, 400, "{}", page.text);
    // The right offer cookie without the CSRF token (a cross-site form post).
    let mut cross_site = Browser::new(&api);
    cross_site
        .cookies
        .insert("idlink_link".into(), secret.clone());
    cross_site.cookies.insert("idlink_csrf".into(), csrf);
    let page = cross_site
        .post(
            "/u/login/link",
            &[("choice", "link"), ("password", common::PASSWORD)],
        )
        .await;
    assert_eq!(page.status, 403, "{}", page.text);
    // The offer is still open for its own browser, which links.
    assert_eq!(identity_count(&api, &db).await, 1);
    let linked = browser.confirm("password", common::PASSWORD).await;
    assert_eq!(signed_in_sub(&api, &linked).await, db);
    assert_eq!(identity_count(&api, &db).await, 2);
    let logs = api.get(&format!("/api/v2/users/{}/logs", enc(&db))).await;
    assert_eq!(logs.status, 200);
}

#[tokio::test]
async fn with_the_default_setting_no_sign_in_ever_offers_to_link() {
    let api = start(AtSignIn::Off).await;
    let db = api.db_user(EMAIL).await;
    let mut browser = Browser::new(&api);
    let page = browser.google_sign_in("g-9", EMAIL, true).await;
    assert_eq!(signed_in_sub(&api, &page).await, "google-oauth2|g-9");
    let page = Browser::new(&api).password_sign_in(EMAIL).await;
    assert_eq!(signed_in_sub(&api, &page).await, db);
    assert_eq!(identity_count(&api, &db).await, 1);
    assert!(events(&api, "idlink_link_prompted").await.is_empty());
    // And the confirmation endpoint has nothing to confirm.
    let page = browser.confirm("password", common::PASSWORD).await;
    assert_eq!(page.status, 400, "{}", page.text);
}

#[tokio::test]
async fn a_link_refused_after_the_second_sign_in_links_nothing_and_is_recorded() {
    let api = start(AtSignIn::Prompt).await;
    let db = api.db_user(EMAIL).await;
    let mut browser = Browser::new(&api);
    let offer = browser.google_sign_in("g-10", EMAIL, true).await;
    assert_offer(&offer, "password");
    // The secondary (the newer Google user) is blocked while the page is open.
    let google = "google-oauth2|g-10";
    let blocked = api
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v2/users/{}", enc(google)),
            Some(json!({"blocked": true})),
        )
        .await;
    assert_eq!(blocked.status, 200, "{}", blocked.body);
    let page = browser.confirm("password", common::PASSWORD).await;
    assert_eq!(page.status, 409, "{}", page.text);
    assert!(page.text.contains("Nothing was linked"), "{}", page.text);
    assert!(!page.text.contains("code="), "no code for the application");
    assert_eq!(identity_count(&api, &db).await, 1);
    assert_eq!(identity_count(&api, google).await, 1);
    let refused = events(&api, "fapi").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["user_id"], db);
    assert_eq!(refused[0]["details"]["request"]["body"]["at_sign_in"], true);
}
