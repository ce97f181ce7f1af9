//! Emulator mode end to end: the control API (`/idlink/v1/`) over real HTTP — wipe,
//! reset, snapshot, clock and faults — on a real database (SQLite or PostgreSQL), and
//! its absence in plain `serve`.

mod common;

use common::{Api, DB, PASSWORD, Reply, enc};
use idlink_server::emulator::EmulatorSettings;
use idlink_server::emulator::snapshot::Snapshot;
use idlink_server::ratelimit::RateLimit;
use idlink_server::testing::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

/// A bcrypt hash of `PASSWORD` at cost 4 (Auth0's import format carries such hashes).
fn bcrypt_of_password() -> String {
    bcrypt::hash(PASSWORD, 4).unwrap()
}

fn seed() -> Value {
    json!({
        "version": 1,
        "connections": [{"name": "corp", "strategy": "auth0"}],
        "clients": [{
            "client_id": "spa", "name": "The SPA", "client_secret": "spa-secret-0123456789",
            "grant_types": ["client_credentials"], "scopes": ["read:users"]
        }],
        "users": [
            {
                "email": "ada@example.com", "email_verified": true, "name": "Ada",
                "user_metadata": {"theme": "dark"}, "app_metadata": {"plan": "pro"},
                "identities": [
                    {"connection": DB, "user_id": "ada", "password": PASSWORD},
                    {"connection": "github", "user_id": 1234,
                     "profileData": {"email": "ada@github.example", "nickname": "ada"}}
                ]
            },
            {
                "user_id": "auth0|bob", "email": "bob@example.com",
                "identities": [{"connection": DB, "user_id": "bob",
                    "custom_password_hash": {"algorithm": "bcrypt", "hash": {"value": bcrypt_of_password()}}}]
            },
            {
                "email": "cy@example.com",
                "identities": [{"connection": "google-oauth2", "user_id": "g-77"}]
            }
        ]
    })
}

async fn emulator_with(
    seed: Option<Value>,
    adjust: impl FnOnce(&mut idlink_server::Config),
) -> Api {
    let seed = seed.map(|s| Snapshot::from_json(s.to_string().as_bytes()).expect("seed parses"));
    let server = TestServer::start_with(|config| {
        config.emulator = Some(EmulatorSettings {
            seed,
            ..EmulatorSettings::default()
        });
        adjust(config);
    })
    .await;
    Api::with_server(server).await
}

async fn emulator(seed: Option<Value>) -> Api {
    emulator_with(seed, |_| {}).await
}

/// A control call (no token: the control API has none).
async fn control(api: &Api, method: Method, path: &str, body: Option<Value>) -> Reply {
    api.send_as(None, method, &format!("/idlink/v1{path}"), body)
        .await
}

async fn snapshot_text(api: &Api, query: &str) -> String {
    let response = reqwest::get(api.url(&format!("/idlink/v1/snapshot{query}")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

async fn put_snapshot(api: &Api, text: String) -> Reply {
    let response = api
        .http
        .put(api.url("/idlink/v1/snapshot"))
        .header("content-type", "application/json")
        .body(text)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

async fn user_count(api: &Api) -> u64 {
    let reply = api
        .get("/api/v2/users?include_totals=true&per_page=1")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["total"].as_u64().unwrap()
}

async fn log_descriptions(api: &Api) -> Vec<String> {
    let reply = api.get("/api/v2/logs?per_page=100").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["description"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn plain_serve_has_no_control_api() {
    let api = Api::start().await;
    api.db_user("keep@example.com").await;
    for (method, path) in [
        (Method::DELETE, "/users"),
        (Method::POST, "/reset"),
        (Method::GET, "/snapshot"),
        (Method::PUT, "/snapshot"),
        (Method::PUT, "/clock"),
        (Method::POST, "/clock/advance"),
        (Method::PUT, "/faults"),
        (Method::DELETE, "/faults"),
        (Method::POST, "/tokens"),
    ] {
        let reply = control(&api, method.clone(), path, Some(json!({}))).await;
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.body);
        assert_eq!(reply.body["statusCode"], 404);
        assert_eq!(reply.body["error"], "Not Found");
    }
    assert_eq!(user_count(&api).await, 1, "nothing was wiped");
}

#[tokio::test]
async fn seeded_users_arrive_linked_and_sign_in() {
    let api = emulator(Some(seed())).await;
    let ada = api.user("auth0|ada").await;
    assert_eq!(ada.status, 200, "{}", ada.body);
    let identities = ada.body["identities"].as_array().unwrap();
    assert_eq!(identities.len(), 2);
    assert_eq!(identities[1]["provider"], "github");
    assert_eq!(identities[1]["user_id"], 1234);
    assert_eq!(identities[1]["profileData"]["email"], "ada@github.example");
    assert_eq!(ada.body["user_metadata"], json!({"theme": "dark"}));
    assert_eq!(ada.body["app_metadata"], json!({"plan": "pro"}));
    assert_eq!(ada.body["email_verified"], true);
    // The linked identity is not a user of its own.
    api.user("github|1234")
        .await
        .assert_error(404, "inexistent_user");
    assert_eq!(user_count(&api).await, 3);

    // A plain seed password (hashed with argon2) and an imported bcrypt hash both sign in.
    for email in ["ada@example.com", "bob@example.com"] {
        let tokens = api.sign_in(email).await;
        assert!(tokens["access_token"].is_string(), "{email}: {tokens}");
    }
    // The seeded client gets tokens with its secret and scopes.
    let token = api
        .server
        .token(
            json!({"grant_type": "client_credentials", "client_id": "spa",
            "client_secret": "spa-secret-0123456789", "audience": api.server.audience()}),
        )
        .await;
    assert_eq!(
        common::decode_claims(token["access_token"].as_str().unwrap())["scope"],
        "read:users"
    );
}

#[tokio::test]
async fn snapshots_round_trip_byte_for_byte() {
    let api = emulator(Some(seed())).await;
    // Some history: a link, an unlink and a blocked user, so hidden state is exported.
    let eve = api.db_user("eve@example.com").await;
    let gh = api
        .social_user("github", json!(99), "eve@github.example")
        .await;
    assert_eq!(
        api.link(&eve, json!({"provider": "github", "user_id": 99}))
            .await
            .status,
        201
    );
    let _ = gh;
    let patched = api
        .send(
            Method::PATCH,
            &format!("/api/v2/users/{}", enc("auth0|bob")),
            Some(json!({"blocked": true})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);

    let first = snapshot_text(&api, "").await;
    let parsed: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(parsed["version"], 1);
    assert!(parsed.get("signing_keys").is_none(), "keys only on request");
    assert!(!first.contains("spa-secret"), "secrets are exported hashed");
    assert!(
        !first.contains(&api.server.admin_client_id),
        "the admin client is the emulator's own"
    );
    let ids: Vec<&str> = parsed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "users are sorted");

    // Export → import → export: identical.
    let reply = put_snapshot(&api, first.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(snapshot_text(&api, "").await, first);

    // A new emulator seeded with the export exports it again, byte for byte, keys too.
    let with_keys = snapshot_text(&api, "?include_keys=true").await;
    let again = emulator(Some(serde_json::from_str(&with_keys).unwrap())).await;
    assert_eq!(snapshot_text(&again, "?include_keys=true").await, with_keys);
    assert_eq!(snapshot_text(&again, "").await, first);
    // The same keys: both publish the same JWKS (a new port is a new issuer, though).
    let jwks = |api: &Api| reqwest::get(api.url("/.well-known/jwks.json"));
    let (a, b) = (jwks(&api).await.unwrap(), jwks(&again).await.unwrap());
    assert_eq!(a.text().await.unwrap(), b.text().await.unwrap());
    // Passwords survive as stored hashes.
    assert!(again.sign_in("eve@example.com").await["access_token"].is_string());
}

#[tokio::test]
async fn bad_snapshots_name_the_path_and_change_nothing() {
    let api = emulator(Some(seed())).await;
    let before = snapshot_text(&api, "").await;
    let cases = [
        (
            json!({"users": [{"identities": [{"connection": "github", "user_id": "1"}]},
                             {"identities": [{"connection": "nope", "user_id": "2"}]}]}),
            r#"users[1].identities[0].connection: unknown connection "nope""#,
        ),
        (
            json!({"users": [{"identities": [{"connection": "github", "user_id": "1"}]},
                             {"identities": [{"connection": "google-oauth2", "user_id": "2"},
                                             {"connection": "github", "user_id": 1, "profileData": {}}]}]}),
            "users[1].identities[1]: identity github|1 is already users[0].identities[0]",
        ),
        (
            json!({"users": [{"identities": [{"connection": DB, "user_id": "x",
                "password_hash": "$2b$10$not-a-hash"}]}]}),
            "users[0].identities[0].password_hash: not an argon2 PHC string or bcrypt hash",
        ),
        (
            json!({"users": [{"identities": [{"connection": DB, "user_id": 5, "email_verified": true}]}]}),
            "users[0].identities[0].email_verified: unknown field",
        ),
    ];
    for (body, expected) in cases {
        let reply = put_snapshot(&api, body.to_string()).await;
        reply.assert_error(400, "invalid_body");
        let message = reply.body["message"].as_str().unwrap();
        assert!(message.starts_with(expected), "{message}");
        assert_eq!(snapshot_text(&api, "").await, before, "nothing changed");
    }
    assert!(
        log_descriptions(&api)
            .await
            .iter()
            .any(|d| d.starts_with("Emulator control: PUT /idlink/v1/snapshot: users[1]"))
    );
}

#[tokio::test]
async fn delete_users_wipes_users_and_keeps_the_rest() {
    let api = emulator(Some(seed())).await;
    api.db_user("extra@example.com").await;
    let reply = control(&api, Method::DELETE, "/users", None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(user_count(&api).await, 0);
    // Clients, connections and keys stay: the old token still works, the client too.
    api.server
        .token(
            json!({"grant_type": "client_credentials", "client_id": "spa",
            "client_secret": "spa-secret-0123456789", "audience": api.server.audience()}),
        )
        .await;
    let snapshot: Value = serde_json::from_str(&snapshot_text(&api, "").await).unwrap();
    assert_eq!(snapshot["users"], json!([]));
    assert!(
        snapshot["connections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "corp")
    );
    // The same address is free again.
    api.db_user("ada@example.com").await;
    assert!(
        log_descriptions(&api)
            .await
            .contains(&"Emulator control: DELETE /idlink/v1/users".to_owned())
    );
}

#[tokio::test]
async fn reset_under_concurrent_traffic_leaves_exactly_the_seed() {
    let api = std::sync::Arc::new(emulator(Some(seed())).await);
    let seeded = snapshot_text(&api, "").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (api, stop) = (api.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Users come and go, and links race the resets.
                let a = api.post("/api/v2/users", json!({"connection": "github", "user_id": format!("w{w}-{n}"), "email": format!("w{w}-{n}@x.io")})).await;
                if a.status == 201 {
                    let _ = api.link("auth0|ada", json!({"provider": "github", "user_id": format!("w{w}-{n}")})).await;
                }
                n += 1;
            }
        }));
    }
    for _ in 0..5 {
        let reply = control(&api, Method::POST, "/reset", None).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        // Every snapshot taken meanwhile is whole: it imports again (each identity
        // once, every reference known).
        let during = snapshot_text(&api, "").await;
        Snapshot::from_json(during.as_bytes()).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    api.assert_invariants().await;
    assert_ne!(
        snapshot_text(&api, "").await,
        seeded,
        "the writers changed something"
    );
    assert_eq!(
        control(&api, Method::POST, "/reset", None).await.status,
        200
    );
    assert_eq!(snapshot_text(&api, "").await, seeded);
    assert!(api.sign_in("ada@example.com").await["access_token"].is_string());
}

#[tokio::test]
async fn the_clock_expires_tokens_and_refills_rate_limits() {
    let api = emulator_with(None, |config| {
        // Two requests, then one more every 1000 s.
        config.tenant.rate_limit = Some(RateLimit::new(2, 0.001));
    })
    .await;
    let reply = control(&api, Method::GET, "/clock", None).await;
    assert_eq!(reply.body, json!({"offset_seconds": 0}));
    assert_eq!(api.get("/api/v2/users").await.status, 200);
    let _ = api.get("/api/v2/users").await;
    let limited = api.get("/api/v2/users").await;
    limited.assert_error(429, "too_many_requests");

    // An hour later the window has passed.
    let reply = control(
        &api,
        Method::POST,
        "/clock/advance",
        Some(json!({"seconds": 3600})),
    )
    .await;
    assert_eq!(reply.body, json!({"offset_seconds": 3600}));
    assert_eq!(api.get("/api/v2/users").await.status, 200);

    // A day later the admin token (24 h) has expired; a new one works, dated on the
    // shifted clock.
    let reply = control(
        &api,
        Method::POST,
        "/clock/advance",
        Some(json!({"seconds": 86400})),
    )
    .await;
    assert_eq!(reply.body, json!({"offset_seconds": 90000}));
    let expired = api.get("/api/v2/users").await;
    expired.assert_error(401, "invalid_token");
    assert_eq!(
        expired.body["message"],
        "Expired token received for JSON Web Token validation."
    );
    let fresh = api.server.admin_token().await;
    let iat = common::decode_claims(&fresh)["iat"].as_i64().unwrap();
    assert!(
        iat >= idlink_server::clock::unix_now() + 89_990,
        "iat follows the clock"
    );
    let reply = api
        .send_as(Some(&fresh), Method::GET, "/api/v2/users", None)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // Audit dates follow the clock too.
    let logs = api
        .send_as(Some(&fresh), Method::GET, "/api/v2/logs?per_page=1", None)
        .await;
    let date = logs.body[0]["date"].as_str().unwrap().to_owned();
    let year_now = idlink_server::clock::now_iso()[..10].to_owned();
    assert_ne!(&date[..10], year_now, "dated a day ahead: {date}");

    let reply = control(
        &api,
        Method::PUT,
        "/clock",
        Some(json!({"offset_seconds": 0})),
    )
    .await;
    assert_eq!(reply.body, json!({"offset_seconds": 0}));
    control(&api, Method::PUT, "/clock", Some(json!({"offset": 1})))
        .await
        .assert_error(400, "invalid_body");
    control(
        &api,
        Method::POST,
        "/clock/advance",
        Some(json!({"seconds": i64::MAX})),
    )
    .await
    .assert_error(400, "invalid_body");
}

#[tokio::test]
async fn faults_answer_like_auth0_and_have_no_effect() {
    let api = emulator(None).await;
    let rules = json!({"rules": [
        {"method": "POST", "path": "/api/v2/users", "status": 503, "times": 2},
        {"method": "GET", "path": "/api/v2/users/*", "status": 429, "times": 1, "retry_after": 7},
    ]});
    let reply = control(&api, Method::PUT, "/faults", Some(rules)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    for _ in 0..2 {
        let reply = api
            .post(
                "/api/v2/users",
                json!({"connection": DB, "email": "f@example.com", "password": PASSWORD}),
            )
            .await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body["statusCode"], 503);
        assert_eq!(reply.body["error"], "Service Unavailable");
    }
    assert_eq!(user_count(&api).await, 0, "faulted requests had no effect");
    let id = api.db_user("f@example.com").await;

    let limited = api.user(&id).await;
    limited.assert_error(429, "too_many_requests");
    assert_eq!(limited.headers["retry-after"], "7");
    assert_eq!(limited.headers["x-ratelimit-remaining"], "0");
    assert!(limited.headers.contains_key("x-ratelimit-limit"));
    assert!(limited.headers.contains_key("x-ratelimit-reset"));
    assert_eq!(api.user(&id).await.status, 200);

    let described = control(&api, Method::GET, "/faults", None).await;
    assert_eq!(described.body["rules"][0]["hits"], 2);
    assert_eq!(described.body["rules"][1]["remaining"], 0);

    // A bad rule set is refused whole, naming the rule.
    let reply = control(
        &api,
        Method::PUT,
        "/faults",
        Some(json!({"rules": [{"path": "/x", "status": 200}]})),
    )
    .await;
    reply.assert_error(400, "invalid_body");
    assert_eq!(
        reply.body["message"],
        "rules[0].status: 200 is not an error status (400-599)"
    );
    control(
        &api,
        Method::PUT,
        "/faults",
        Some(json!({"rules": [{"path": "/api/**", "status": 500}]})),
    )
    .await;
    assert_eq!(api.get("/api/v2/users").await.status, 500);
    // The control API is never faulted; DELETE clears.
    assert_eq!(
        control(&api, Method::DELETE, "/faults", None).await.status,
        200
    );
    assert_eq!(api.get("/api/v2/users").await.status, 200);
    let logs = log_descriptions(&api).await;
    assert!(
        logs.iter()
            .any(|d| d == "Emulator control: PUT /idlink/v1/faults"),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|d| d == "Emulator control: DELETE /idlink/v1/faults")
    );
}

/// The machine's own non-loopback address, if it has one (no packet is sent).
fn lan_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn control_answers_only_on_loopback() {
    let Some(lan) = lan_address() else {
        eprintln!("no non-loopback address here: the rule is unit-tested in emulator::tests");
        return;
    };
    for allow_remote_control in [false, true] {
        let server = TestServer::start_with(|config| {
            config.bind = "0.0.0.0:0".into();
            config.emulator = Some(EmulatorSettings {
                allow_remote_control,
                ..EmulatorSettings::default()
            });
        })
        .await;
        let port = server.base_url.rsplit(':').next().unwrap().to_owned();
        // Connecting to the LAN address makes the server see the LAN address as the peer.
        let remote = format!("http://{lan}:{port}/idlink/v1/clock");
        let reply = reqwest::get(&remote).await.unwrap();
        if allow_remote_control {
            assert_eq!(reply.status(), 200);
        } else {
            assert_eq!(reply.status(), 403);
            let body: Value = reply.json().await.unwrap();
            assert_eq!(body["errorCode"], "remote_control_disabled");
            // The API itself answers from anywhere; loopback control still works.
            let local = format!("http://127.0.0.1:{port}/idlink/v1/clock");
            assert_eq!(reqwest::get(&local).await.unwrap().status(), 200);
            let health = format!("http://{lan}:{port}/health");
            assert_eq!(reqwest::get(&health).await.unwrap().status(), 200);
        }
    }
}

#[tokio::test]
async fn a_snapshot_stamps_its_clients_on_the_servers_clock() {
    let api = emulator(None).await;
    // Ten years back: clients written now were created before the admin client.
    let reply = control(
        &api,
        Method::PUT,
        "/clock",
        Some(json!({"offset_seconds": -10 * 366 * 86_400})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut snapshot: Value = serde_json::from_str(&snapshot_text(&api, "").await).unwrap();
    // Sorted after any generated client id, so only the creation date puts it first.
    snapshot["clients"] = json!([{
        "client_id": "zzzz-app", "name": "Late app", "client_secret": "zzzz-secret-0123456789",
        "grant_types": ["client_credentials"], "scopes": ["read:users"]
    }]);
    let reply = put_snapshot(&api, snapshot.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Connections list the tenant's clients oldest first.
    let connections = api.get("/api/v2/connections").await;
    assert_eq!(connections.status, 200, "{}", connections.body);
    let enabled = &connections.body.as_array().unwrap()[0]["enabled_clients"];
    assert_eq!(
        enabled,
        &json!(["zzzz-app", api.server.admin_client_id]),
        "{}",
        connections.body
    );
}
