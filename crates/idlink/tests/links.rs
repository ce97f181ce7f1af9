//! `idlink suggest-links` and `idlink apply-links` end to end: the real binary against a
//! real in-process server (SQLite, or PostgreSQL with `IDLINK_TEST_BACKEND=postgres`).

mod cli_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cli_support::*;
use idlink_server::ratelimit::RateLimit;
use idlink_server::testing::{TEST_ADMIN_CLIENT_ID, TEST_ADMIN_CLIENT_SECRET, TestServer};
use serde_json::{Value, json};

/// The Management API as the test's own hands, to set data up and check it.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn new(server: &TestServer) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: server.api_url(),
            token: server.admin_token().await,
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        if status == 429 {
            // The rate-limited test's own set-up waits its turn too.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Box::pin(self.send(method, path, body)).await;
        }
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a user and returns it.
    async fn create(&self, body: Value) -> Value {
        let (status, user) = self.send(reqwest::Method::POST, "/users", Some(body)).await;
        assert_eq!(status, 201, "{user}");
        user
    }

    async fn database_user(&self, email: &str, verified: bool) -> Value {
        self.create(json!({
            "connection": "Username-Password-Authentication", "email": email,
            "password": "correct-Horse-battery-9", "email_verified": verified,
        }))
        .await
    }

    async fn social_user(&self, connection: &str, id: &str, email: &str, verified: bool) -> Value {
        self.create(json!({
            "connection": connection, "user_id": id, "email": email, "email_verified": verified,
        }))
        .await
    }

    async fn get(&self, id: &str) -> (u16, Value) {
        let path = format!("/users/{}", id.replace('|', "%7C"));
        self.send(reqwest::Method::GET, &path, None).await
    }

    /// `provider|user_id` of each of the user's identities, main first.
    async fn identities(&self, id: &str) -> Vec<String> {
        let (status, user) = self.get(id).await;
        assert_eq!(status, 200, "{user}");
        user["identities"]
            .as_array()
            .expect("identities")
            .iter()
            .map(|i| {
                format!(
                    "{}|{}",
                    i["provider"].as_str().unwrap(),
                    i["user_id"].as_str().unwrap()
                )
            })
            .collect()
    }
}

fn id(user: &Value) -> String {
    user["user_id"].as_str().expect("user_id").to_owned()
}

/// The plan member the CLI should write for `user` (as the API answered it).
fn member(user: &Value) -> Value {
    let identity = &user["identities"][0];
    json!({
        "user_id": user["user_id"],
        "provider": identity["provider"],
        "identity_user_id": identity["user_id"],
        "connection": identity["connection"],
        "email": user["email"],
        "email_verified": user["email_verified"],
        "created_at": user["created_at"],
        "logins_count": 0,
        "identities": user["identities"].as_array().unwrap().len(),
    })
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suggest_writes_the_exact_plan_and_apply_links_only_verified_groups() {
    let server = TestServer::start().await;
    let api = Api::new(&server).await;
    // A three-way group in mixed case: the database account is the primary.
    let ada_db = api.database_user("ada@example.com", true).await;
    let ada_google = api
        .social_user("google-oauth2", "ada1", "Ada@Example.com", true)
        .await;
    let ada_github = api
        .social_user("github", "ada2", "ADA@example.COM", true)
        .await;
    // Unverified on one side: listed, never applied.
    let bob_db = api.database_user("bob@example.com", true).await;
    let bob_google = api
        .social_user("google-oauth2", "bob1", "bob@example.com", false)
        .await;
    // Already linked (one user with two identities) plus a separate duplicate.
    let cy_db = api.database_user("cy@example.com", true).await;
    api.social_user("github", "cy1", "cy@example.com", true)
        .await;
    let (status, _) = api
        .send(
            reqwest::Method::POST,
            &format!("/users/{}/identities", id(&cy_db).replace('|', "%7C")),
            Some(json!({"provider": "github", "user_id": "cy1"})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, cy_db) = api.get(&id(&cy_db)).await;
    let cy_facebook = api
        .social_user("facebook", "cy2", "cy@example.com", true)
        .await;
    // No database account: the oldest is the primary.
    let dee_google = api
        .social_user("google-oauth2", "dee1", "dee@example.com", true)
        .await;
    let dee_github = api
        .social_user("github", "dee2", "dee@example.com", true)
        .await;
    // Alone: no group.
    api.database_user("solo@example.com", true).await;

    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("plan.json");
    let plan_arg = plan_path.to_str().unwrap();
    let summary = json(&idlink(&server, &["suggest-links", "--out", plan_arg, "--json"]).await);
    assert_eq!(
        summary,
        json!({"users": 10, "groups": 3, "links": 4, "needs_confirmation": 1, "plan": plan_arg})
    );

    let sorted = |mut users: Vec<&Value>| {
        users.sort_by_key(|u| id(u));
        users.into_iter().map(member).collect::<Vec<_>>()
    };
    let expected = json!({
        "version": 1,
        "primary_rule": "database-first",
        "normalization": {"gmail_dots": false},
        "groups": [
            {
                "email": "ada@example.com",
                "reason": format!("3 users share the verified email ada@example.com; primary {}: the database account (Username-Password-Authentication)", id(&ada_db)),
                "primary": member(&ada_db),
                "secondaries": sorted(vec![&ada_google, &ada_github]),
            },
            {
                "email": "cy@example.com",
                "reason": format!("2 users share the verified email cy@example.com; primary {}: the database account (Username-Password-Authentication)", id(&cy_db)),
                "primary": member(&cy_db),
                "secondaries": [member(&cy_facebook)],
            },
            {
                "email": "dee@example.com",
                "reason": format!("2 users share the verified email dee@example.com; primary google-oauth2|dee1: no database account; the oldest, created {}", dee_google["created_at"].as_str().unwrap()),
                "primary": member(&dee_google),
                "secondaries": [member(&dee_github)],
            },
        ],
        "needs_confirmation": [{
            "email": "bob@example.com",
            "reason": "2 users share the email bob@example.com, unverified on 1 of them: ask the user to sign in to each account before linking",
            "members": sorted(vec![&bob_db, &bob_google]),
        }],
    });
    assert_eq!(read_json(&plan_path), expected);

    // A dry run changes nothing.
    let dry = json(&idlink(&server, &["apply-links", plan_arg, "--dry-run", "--json"]).await);
    assert_eq!(dry["would_link"], 4, "{dry}");
    assert_eq!(api.identities(&id(&ada_db)).await.len(), 1);

    let applied = json(&idlink(&server, &["apply-links", plan_arg, "--json"]).await);
    assert_eq!(applied["linked"], 4, "{applied}");
    assert_eq!(applied["failed"], 0, "{applied}");
    let ada_db_id = id(&ada_db);
    assert_eq!(
        api.identities(&ada_db_id).await,
        [
            format!("auth0|{}", ada_db_id.trim_start_matches("auth0|")),
            "github|ada2".into(),
            "google-oauth2|ada1".into(),
        ],
        "secondaries are linked in the plan's order"
    );
    assert_eq!(api.identities(&id(&cy_db)).await.len(), 3);
    assert_eq!(
        api.identities("google-oauth2|dee1").await,
        ["google-oauth2|dee1", "github|dee2"]
    );
    // The unverified pair is untouched.
    assert_eq!(api.identities(&id(&bob_db)).await.len(), 1);
    assert_eq!(api.get("google-oauth2|bob1").await.0, 200);

    // Running it again does nothing more: everything is recorded as settled.
    let again = json(&idlink(&server, &["apply-links", plan_arg, "--json"]).await);
    assert_eq!(again["settled_before"], 4, "{again}");
    assert_eq!(again["linked"], 0, "{again}");
    // Without the result file it re-checks the data and finds every pair linked.
    let fresh = dir.path().join("other-results.ndjson");
    let checked = json(
        &idlink(
            &server,
            &[
                "apply-links",
                plan_arg,
                "--results",
                fresh.to_str().unwrap(),
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(checked["already_linked"], 4, "{checked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_no_longer_matches_is_skipped_with_the_reason() {
    let server = TestServer::start().await;
    let api = Api::new(&server).await;
    let eve = api.database_user("eve@example.com", true).await;
    api.social_user("google-oauth2", "eve1", "eve@example.com", true)
        .await;
    let fay = api.database_user("fay@example.com", true).await;
    api.social_user("github", "fay1", "fay@example.com", true)
        .await;
    let gus = api.database_user("gus@example.com", true).await;
    api.social_user("github", "gus1", "gus@example.com", true)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let plan_arg = plan.to_str().unwrap();
    json(&idlink(&server, &["suggest-links", "--out", plan_arg, "--json"]).await);

    // Since the plan: eve's social account changed its email, fay's was deleted, and
    // gus's primary lost its verification.
    let (status, _) = api
        .send(
            reqwest::Method::PATCH,
            "/users/google-oauth2%7Ceve1",
            Some(json!({"email": "eve@elsewhere.example"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .send(reqwest::Method::DELETE, "/users/github%7Cfay1", None)
        .await;
    assert_eq!(status, 204);
    let path = format!("/users/{}", id(&gus).replace('|', "%7C"));
    let (status, _) = api
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"email_verified": false})),
        )
        .await;
    assert_eq!(status, 200);

    let out = json(&idlink(&server, &["apply-links", plan_arg, "--json"]).await);
    assert_eq!(out["skipped"], 3, "{out}");
    assert_eq!(out["linked"], 0, "{out}");
    let results = std::fs::read_to_string(format!("{plan_arg}.results.ndjson")).unwrap();
    let reasons: Vec<String> = results
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("now has the email \"eve@elsewhere.example\"")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("no longer exists")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("no longer verified")),
        "{reasons:?}"
    );
    for user in [&eve, &fay, &gus] {
        assert_eq!(api.identities(&id(user)).await.len(), 1);
    }

    // A file that is not a plan is a usage error.
    std::fs::write(&plan, "{\"version\": 7}").unwrap();
    assert_exit(&idlink(&server, &["apply-links", plan_arg]).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_links_killed_midway_resumes_without_linking_twice() {
    const PAIRS: usize = 60;
    let server = TestServer::start().await;
    let api = Api::new(&server).await;
    let mut primaries = Vec::new();
    for n in 0..PAIRS {
        let email = format!("user{n:03}@example.com");
        primaries.push(id(&api.database_user(&email, true).await));
        api.social_user("google-oauth2", &format!("g{n:03}"), &email, true)
            .await;
    }
    // `--all` reads past the 100-per-page limit (the plan below depends on it too).
    let listed = idlink(&server, &["users", "list", "--all", "--ndjson"]).await;
    assert_exit(&listed, 0);
    assert_eq!(stdout(&listed).lines().count(), 2 * PAIRS);
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let plan_arg = plan.to_str().unwrap().to_owned();
    let results = dir.path().join("plan.json.results.ndjson");
    json(&idlink(&server, &["suggest-links", "--out", &plan_arg, "--json"]).await);

    // Start applying one group at a time and kill -9 the process part-way through.
    let mut child = Command::new(env!("CARGO_BIN_EXE_idlink"))
        .args([
            "apply-links",
            &plan_arg,
            "--concurrency",
            "1",
            "--url",
            &server.base_url,
        ])
        .args([
            "--client-id",
            TEST_ADMIN_CLIENT_ID,
            "--client-secret",
            TEST_ADMIN_CLIENT_SECRET,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let lines = |path: &Path| {
        std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while lines(&results) < PAIRS / 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "apply-links made no progress"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "apply-links ended before it was killed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("kill -9");
    child.wait().unwrap();
    let done_before = lines(&results);
    assert!(
        done_before < PAIRS,
        "killed too late to test resuming ({done_before} done)"
    );

    let resumed = json(&idlink(&server, &["apply-links", &plan_arg, "--json"]).await);
    assert_eq!(resumed["failed"], 0, "{resumed}");
    let settled = resumed["settled_before"].as_u64().unwrap() as usize;
    let linked = resumed["linked"].as_u64().unwrap() as usize;
    let already = resumed["already_linked"].as_u64().unwrap() as usize;
    // The link in flight when killed may have happened without its line: re-checked,
    // it counts as already linked — never linked twice.
    assert_eq!(settled + linked + already, PAIRS, "{resumed}");
    assert!(already <= 1, "{resumed}");
    for (n, primary) in primaries.iter().enumerate() {
        assert_eq!(
            api.identities(primary).await,
            [primary.clone(), format!("google-oauth2|g{n:03}")],
        );
    }
    let (status, _) = api.get("google-oauth2|g000").await;
    assert_eq!(status, 404, "the secondary is no longer a user of its own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_tight_rate_limit_apply_links_waits_out_the_429s_and_links_once() {
    // Burst 2, then 10 requests a second: four workers run into it at once.
    let server = TestServer::start_with(|config| {
        config.tenant.rate_limit = Some(RateLimit::new(2, 10.0));
    })
    .await;
    let api = Api::new(&server).await;
    let mut primaries = Vec::new();
    for n in 0..6 {
        let email = format!("slow{n}@example.com");
        primaries.push(id(&api.database_user(&email, true).await));
        api.social_user("github", &format!("s{n}"), &email, true)
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let plan_arg = plan.to_str().unwrap();
    json(&idlink(&server, &["suggest-links", "--out", plan_arg, "--json"]).await);
    // Without retries the limit shows: some reads are refused (a dry run changes nothing).
    let hasty = idlink(
        &server,
        &[
            "apply-links",
            plan_arg,
            "--dry-run",
            "--max-retries",
            "0",
            "--json",
        ],
    )
    .await;
    assert_exit(&hasty, 4);
    let out = json(&idlink(&server, &["apply-links", plan_arg, "--json"]).await);
    assert_eq!(out["linked"], 6, "{out}");
    assert_eq!(out["failed"], 0, "{out}");
    for (n, primary) in primaries.iter().enumerate() {
        assert_eq!(
            api.identities(primary).await,
            [primary.clone(), format!("github|s{n}")]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_workers_under_a_two_per_second_limit_link_every_pair_once() {
    // Auth0 Free's shape: 2 requests a second. Sixteen workers wake together whenever
    // the limit resets and most are refused again, far more often than the client's
    // retries allow; apply-links waits them out rather than fail a link.
    let server = TestServer::start_with(|config| {
        config.tenant.rate_limit = Some(RateLimit::new(2, 2.0));
    })
    .await;
    let api = Api::new(&server).await;
    let mut primaries = Vec::new();
    for n in 0..8 {
        let email = format!("free{n}@example.com");
        primaries.push(id(&api.database_user(&email, true).await));
        api.social_user("github", &format!("f{n}"), &email, true)
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let plan_arg = plan.to_str().unwrap();
    json(&idlink(&server, &["suggest-links", "--out", plan_arg, "--json"]).await);
    let out = json(
        &idlink(
            &server,
            &["apply-links", plan_arg, "--concurrency", "16", "--json"],
        )
        .await,
    );
    assert_eq!(
        (out["linked"].as_u64(), out["failed"].as_u64()),
        (Some(8), Some(0)),
        "{out}"
    );
    for (n, primary) in primaries.iter().enumerate() {
        assert_eq!(
            api.identities(primary).await,
            [primary.clone(), format!("github|f{n}")]
        );
    }
}
