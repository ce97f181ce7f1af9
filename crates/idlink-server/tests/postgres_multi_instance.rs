//! Two server instances on one PostgreSQL database, in-process: conflicting links
//! spread over both, links in opposite directions, tokens and key rotation across
//! instances, and `/health` when the database goes away.
//!
//! Needs `IDLINK_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`);
//! every test creates a database of its own on that server. Without the variable each
//! test says so in one line and passes. (Process-level tests, kill -9 and
//! `idlink keys rotate`, are in `crates/idlink/tests/postgres_processes.rs`.)

use std::collections::BTreeMap;

use idlink_server::testing::{TestDatabase, TestServer, check_ownership, postgres_test_url};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Both instances sit behind one public URL, as behind a load balancer: one issuer,
/// one audience, so a token from either verifies on both.
const PUBLIC_URL: &str = "http://idlink.test";

fn postgres_or_skip(test: &str) -> Option<String> {
    let url = postgres_test_url();
    if url.is_none() {
        println!("{test}: skipped, IDLINK_TEST_POSTGRES_URL is not set");
    }
    url
}

/// Starts two instances on one fresh database, at the same time (so they also race
/// through migrations and bootstrap).
async fn two_instances(database: &TestDatabase) -> (TestServer, TestServer) {
    let shared = |config: &mut idlink_server::Config| {
        config.public_url = Some(PUBLIC_URL.into());
    };
    tokio::join!(
        TestServer::start_on_with(&database.url, shared),
        TestServer::start_on_with(&database.url, shared),
    )
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: Value,
}

async fn call(
    http: &reqwest::Client,
    server: &TestServer,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let mut request = http
        .request(method, format!("{}{path}", server.base_url))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply { status, body }
}

async fn create_user(
    http: &reqwest::Client,
    server: &TestServer,
    token: &str,
    connection: &str,
    id: &str,
) -> String {
    let reply = call(
        http,
        server,
        token,
        reqwest::Method::POST,
        "/api/v2/users",
        Some(json!({
            "connection": connection,
            "user_id": id,
            "email": format!("{id}@{connection}.example.com"),
            "name": format!("User {id}"),
        })),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["user_id"].as_str().expect("user_id").to_owned()
}

fn enc(segment: &str) -> String {
    segment.replace('|', "%7C")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_conflicting_links_over_two_instances_have_one_winner_per_secondary() {
    let Some(base) = postgres_or_skip("postgres_multi_instance") else {
        return;
    };
    let database = TestDatabase::create(&base).await;
    let (a, b) = two_instances(&database).await;
    let http = reqwest::Client::new();
    let token = a.admin_token().await;

    // 4 primaries, 16 secondaries; every secondary is asked into every primary: 64
    // link requests, alternating between the instances.
    let mut primaries = Vec::new();
    for i in 0..4 {
        primaries.push(create_user(&http, &a, &token, "github", &format!("{}", 100 + i)).await);
    }
    let mut secondaries = Vec::new();
    for i in 0..16 {
        let server = if i % 2 == 0 { &a } else { &b };
        secondaries
            .push(create_user(&http, server, &token, "google-oauth2", &format!("s{i}")).await);
    }
    let before = check_ownership(&database.url).await;
    assert_eq!(before.users, 20);
    assert_eq!(before.identities.len(), 20);

    let base_urls = [a.base_url.clone(), b.base_url.clone()];
    let mut tasks = Vec::new();
    for (s, secondary) in secondaries.iter().enumerate() {
        for (p, primary) in primaries.iter().enumerate() {
            let url = format!(
                "{}/api/v2/users/{}/identities",
                base_urls[(s * 4 + p) % 2],
                enc(primary)
            );
            let (http, token) = (http.clone(), token.clone());
            let secondary_id = secondary.trim_start_matches("google-oauth2|").to_owned();
            let primary = primary.clone();
            tasks.push(tokio::spawn(async move {
                let response = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"provider": "google-oauth2", "user_id": secondary_id}))
                    .send()
                    .await
                    .expect("link request");
                let status = response.status();
                let body: Value = response.json().await.expect("JSON");
                (secondary_id, primary, status, body)
            }));
        }
    }
    assert_eq!(tasks.len(), 64);
    let mut winners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut losers = 0;
    for task in tasks {
        let (secondary, primary, status, body) = task.await.expect("task");
        match status.as_u16() {
            201 => winners.entry(secondary).or_default().push(primary),
            400 => {
                assert_eq!(body["errorCode"], "inexistent_user", "{body}");
                assert_eq!(body["message"], "Provided secondary account not found.");
                losers += 1;
            }
            other => panic!("a racing link answered {other}: {body}"),
        }
    }
    assert_eq!(
        winners.len(),
        16,
        "every secondary was linked once: {winners:?}"
    );
    assert!(winners.values().all(|w| w.len() == 1), "{winners:?}");
    assert_eq!(losers, 48);

    let after = check_ownership(&database.url).await;
    assert_eq!(
        after.identities, before.identities,
        "no identity lost or added"
    );
    assert_eq!(after.users, 4, "every secondary was absorbed");
    // Each secondary is owned by the primary whose request won, on both instances.
    for (secondary, winner) in &winners {
        for server in [&a, &b] {
            let reply = call(
                &http,
                server,
                &token,
                reqwest::Method::GET,
                &format!("/api/v2/users/{}", enc(&winner[0])),
                None,
            )
            .await;
            assert_eq!(reply.status, 200);
            let owned = reply.body["identities"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["provider"] == "google-oauth2" && i["user_id"] == secondary.as_str());
            assert!(owned, "{secondary} on {}: {}", winner[0], reply.body);
        }
    }
    println!(
        "postgres_multi_instance: 64 conflicting links over 2 instances -> {} successes, {losers} \
         inexistent_user, 0 other; invariant holds ({} identities, {} users)",
        winners.len(),
        after.identities.len(),
        after.users
    );
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opposite_links_on_two_instances_do_not_deadlock() {
    let Some(base) = postgres_or_skip("postgres_multi_instance") else {
        return;
    };
    let database = TestDatabase::create(&base).await;
    let (a, b) = two_instances(&database).await;
    let http = reqwest::Client::new();
    let token = a.admin_token().await;

    // 16 pairs; X links Y on A while Y links X on B. The locks are taken in user_id
    // order, so each pair resolves to one link instead of a deadlock.
    let mut pairs = Vec::new();
    for i in 0..16 {
        let x = create_user(&http, &a, &token, "github", &format!("{}", 500 + i)).await;
        let y = create_user(&http, &b, &token, "github", &format!("{}", 900 + i)).await;
        pairs.push((x, y));
    }
    let before = check_ownership(&database.url).await;
    let mut tasks = Vec::new();
    for (x, y) in &pairs {
        for (primary, secondary, server) in [(x, y, &a), (y, x, &b)] {
            let url = format!(
                "{}/api/v2/users/{}/identities",
                server.base_url,
                enc(primary)
            );
            let body =
                json!({"provider": "github", "user_id": secondary.trim_start_matches("github|")});
            let (http, token) = (http.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let response = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .expect("link");
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.expect("JSON"))
            }));
        }
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task"));
    }
    for pair in outcomes.chunks(2) {
        let wins = pair.iter().filter(|(status, _)| *status == 201).count();
        assert_eq!(wins, 1, "{pair:?}");
        for (status, body) in pair.iter().filter(|(status, _)| *status != 201) {
            // The loser's secondary is gone (400) or its primary was absorbed (404).
            assert!(matches!(status, 400 | 404), "{status}: {body}");
            assert_eq!(body["errorCode"], "inexistent_user", "{body}");
        }
    }
    let after = check_ownership(&database.url).await;
    assert_eq!(after.identities, before.identities);
    assert_eq!(after.users, 16);
    drop((a, b));
}

/// The `kid` in a JWT's header.
fn kid(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url");
    let header: Value = serde_json::from_slice(&bytes).expect("header JSON");
    header["kid"].as_str().expect("kid").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_one_instance_verify_on_the_other_across_a_key_rotation() {
    let Some(base) = postgres_or_skip("postgres_multi_instance") else {
        return;
    };
    let database = TestDatabase::create(&base).await;
    let (a, b) = two_instances(&database).await;
    let http = reqwest::Client::new();

    let old = a.admin_token().await;
    let reply = call(&http, &b, &old, reqwest::Method::GET, "/api/v2/users", None).await;
    assert_eq!(reply.status, 200, "A's token on B: {}", reply.body);

    // Rotate on A, as `idlink keys rotate` does, and let A pick the new key up at
    // once (instead of at its next periodic refresh).
    let state = a.state();
    let key = tokio::task::spawn_blocking(|| {
        idlink_server::auth::keys::generate_signing_key(idlink_server::clock::unix_now())
    })
    .await
    .unwrap()
    .unwrap();
    // A token naming a kid B does not know makes B re-read the keys now; the rotation
    // below lands well within a second of that re-read, which B must not hold against
    // the new key's tokens.
    let unknown_kid = {
        use base64::Engine;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"RS256","typ":"JWT","kid":"no-such-key"}"#);
        let rest = old.split_once('.').expect("a JWT").1;
        format!("{header}.{rest}")
    };
    let reply = call(
        &http,
        &b,
        &unknown_kid,
        reqwest::Method::GET,
        "/api/v2/users",
        None,
    )
    .await;
    assert_eq!(reply.status, 401, "an unknown kid on B: {}", reply.body);
    state.store.add_signing_key(&key).await.unwrap();
    state
        .tokens
        .keys()
        .reload(state.store.as_ref())
        .await
        .unwrap();

    let new = a.admin_token().await;
    assert_eq!(kid(&new), key.kid, "A signs with the new key");
    assert_ne!(kid(&old), kid(&new));
    for (name, token) in [("new", &new), ("old", &old)] {
        let reply = call(
            &http,
            &b,
            token,
            reqwest::Method::GET,
            "/api/v2/users",
            None,
        )
        .await;
        assert_eq!(reply.status, 200, "{name} token on B: {}", reply.body);
        let reply = call(
            &http,
            &a,
            token,
            reqwest::Method::GET,
            "/api/v2/users",
            None,
        )
        .await;
        assert_eq!(reply.status, 200, "{name} token on A: {}", reply.body);
    }
    // B now publishes both keys.
    let jwks: Value = http
        .get(format!("{}/.well-known/jwks.json", b.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(kids.contains(&kid(&old).as_str()), "{jwks}");
    assert!(kids.contains(&key.kid.as_str()), "{jwks}");
    drop((a, b));
}

#[tokio::test]
async fn health_answers_503_when_the_database_is_gone() {
    let Some(base) = postgres_or_skip("postgres_multi_instance") else {
        return;
    };
    let database = TestDatabase::create(&base).await;
    let server = TestServer::start_on(&database.url).await;
    let http = reqwest::Client::new();
    let health = format!("{}/health", server.base_url);

    let response = http.get(&health).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "ok", "database": "ok"})
    );

    drop(database); // DROP DATABASE … WITH (FORCE): connections cut, reconnects fail
    let response = http.get(&health).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "error", "database": "unreachable"})
    );
}
