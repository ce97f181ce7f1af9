//! An import job survives `kill -9` of the server binary: restarted on the same
//! database, the job resumes after its last committed batch and ends with every record
//! imported exactly once (a record applied twice would fail as a duplicate, one lost
//! would be missing from the total). On the backend `IDLINK_TEST_BACKEND` names.

mod common;

use std::time::{Duration, Instant};

use common::{AUDIENCE, Instance, TEST_ADMIN_CLIENT_ID, TEST_ADMIN_CLIENT_SECRET};
use idlink_server::testing::{TestBackend, TestDatabase};
use serde_json::{Value, json};

const USERS: usize = 30_000;

async fn token(http: &reqwest::Client, base_url: &str) -> String {
    let reply: Value = http
        .post(format!("{base_url}/oauth/token"))
        .json(&json!({
            "grant_type": "client_credentials",
            "client_id": TEST_ADMIN_CLIENT_ID,
            "client_secret": TEST_ADMIN_CLIENT_SECRET,
            "audience": AUDIENCE,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["access_token"].as_str().unwrap().to_owned()
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> Value {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_mid_way_completes_after_restart_with_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let database = match TestBackend::from_env() {
        TestBackend::Postgres(url) => Some(TestDatabase::create(&url).await),
        TestBackend::Sqlite => None,
    };
    let url = database.as_ref().map_or_else(
        || format!("sqlite://{}", dir.path().join("idlink.db").display()),
        |db| db.url.clone(),
    );
    // A short lease, so the restarted instance takes the dead one's job over quickly.
    let config = dir.path().join("idlink.toml");
    std::fs::write(&config, "job_lease = 1\n").unwrap();
    let config = config.display().to_string();
    let args = ["--config", config.as_str()];

    let server = Instance::spawn(&url, &args);
    let http = reqwest::Client::new();
    let token = token(&http, &server.base_url).await;
    let connections = get(
        &http,
        &format!("{}/api/v2/connections", server.base_url),
        &token,
    )
    .await;
    let connection_id = connections
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["strategy"] == "auth0")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut file = String::new();
    for n in 0..USERS {
        file.push_str(&format!(
            "{{\"user_id\": \"{n:024x}\", \"email\": \"user{n}@example.com\", \"email_verified\": true}}\n"
        ));
    }
    let form = reqwest::multipart::Form::new()
        .text("connection_id", connection_id)
        .part("users", reqwest::multipart::Part::bytes(file.into_bytes()));
    let job: Value = http
        .post(format!("{}/api/v2/jobs/users-imports", server.base_url))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_owned();

    // Kill it once some batches are committed.
    let started = Instant::now();
    let done_at_kill = loop {
        let job = get(
            &http,
            &format!("{}/api/v2/jobs/{id}", server.base_url),
            &token,
        )
        .await;
        let total = job["summary"]["total"].as_u64().unwrap_or(0);
        if total > 0 {
            assert!(
                (total as usize) < USERS,
                "the import finished before the kill: {job}"
            );
            break total;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{job}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    server.kill();

    let server = Instance::spawn(&url, &args);
    let token = self::token(&http, &server.base_url).await;
    let started = Instant::now();
    let job = loop {
        let job = get(
            &http,
            &format!("{}/api/v2/jobs/{id}", server.base_url),
            &token,
        )
        .await;
        if job["status"] == "completed" || job["status"] == "failed" {
            break job;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        job["summary"],
        json!({"failed": 0, "updated": 0, "inserted": USERS, "total": USERS}),
        "killed after {done_at_kill} records"
    );
    let page = get(
        &http,
        &format!(
            "{}/api/v2/users?per_page=1&include_totals=true",
            server.base_url
        ),
        &token,
    )
    .await;
    assert_eq!(page["total"], USERS, "{page}");
    println!("killed after {done_at_kill} of {USERS} records; resumed and completed");
}
