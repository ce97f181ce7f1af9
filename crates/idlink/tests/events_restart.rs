//! Link events survive `kill -9` of the server binary: the outbox is written in each
//! change's transaction, so after a restart on the same database every committed event
//! reaches the webhook at least once (deliveries in flight at the kill are sent again),
//! and a change that failed emits nothing. Also: a webhook URL that is not http(s)
//! refuses to start (exit 78, naming the key). On the backend `IDLINK_TEST_BACKEND`
//! names.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{AUDIENCE, Instance, TEST_ADMIN_CLIENT_ID, TEST_ADMIN_CLIENT_SECRET};
use idlink_server::testing::{TestBackend, TestDatabase, WebhookReceiver};
use serde_json::{Value, json};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const USERS: usize = 40;

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

fn created_subjects(received: &[idlink_server::testing::Received]) -> BTreeSet<String> {
    received
        .iter()
        .filter(|r| r.event["type"] == "user.created")
        .map(|r| r.event["subject"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_event_is_delivered_after_kill_dash_nine() {
    let dir = tempfile::tempdir().unwrap();
    let database = match TestBackend::from_env() {
        TestBackend::Postgres(url) => Some(TestDatabase::create(&url).await),
        TestBackend::Sqlite => None,
    };
    let url = database.as_ref().map_or_else(
        || format!("sqlite://{}", dir.path().join("idlink.db").display()),
        |db| db.url.clone(),
    );
    let receiver = WebhookReceiver::start(SECRET).await;
    // A slow receiver: deliveries are in flight when the server dies.
    receiver.set_delay(Duration::from_millis(300));
    let config = dir.path().join("idlink.toml");
    std::fs::write(
        &config,
        format!(
            "[events]\nretry_initial = 0.05\nretry_max = 0.2\npoll = 0.05\ndelivery_timeout = 2\n\n\
             [[webhooks]]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
            receiver.url
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let args = ["--config", config.as_str()];

    let server = Instance::spawn(&url, &args);
    let http = reqwest::Client::new();
    let token = token(&http, &server.base_url).await;
    let mut committed = BTreeSet::new();
    for n in 0..USERS {
        let reply = http
            .post(format!("{}/api/v2/users", server.base_url))
            .bearer_auth(&token)
            .json(&json!({"connection": "github", "user_id": 9000 + n, "email": format!("k{n}@example.com")}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 201);
        let user: Value = reply.json().await.unwrap();
        committed.insert(user["user_id"].as_str().unwrap().to_owned());
    }
    // A change that fails (the user exists) writes no event.
    let duplicate = http
        .post(format!("{}/api/v2/users", server.base_url))
        .bearer_auth(&token)
        .json(&json!({"connection": "github", "user_id": 9000, "email": "again@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(duplicate.status(), 409);
    receiver
        .wait_until(Duration::from_secs(30), |r| !r.is_empty())
        .await;
    let before_kill = receiver.received().len();
    server.kill();
    assert!(
        before_kill < USERS,
        "everything was delivered before the kill ({before_kill})"
    );

    receiver.set_delay(Duration::ZERO);
    let _server = Instance::spawn(&url, &args);
    let restarted = std::time::Instant::now();
    let received = receiver
        .wait_until(Duration::from_secs(60), |r| {
            created_subjects(r) == committed
        })
        .await;
    eprintln!(
        "{before_kill} delivered before the kill, {} requests in all, the rest {:?} after the restart",
        receiver.requests(),
        restarted.elapsed()
    );
    assert_eq!(
        created_subjects(&received),
        committed,
        "every committed event, at least once"
    );
    assert_eq!(receiver.bad_signatures(), 0);
    assert!(
        received.iter().all(|r| r.event["type"] == "user.created"
            && committed.contains(r.event["subject"].as_str().unwrap())),
        "nothing for the failed change"
    );
}

#[test]
fn a_webhook_url_that_is_not_http_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("idlink.toml");
    std::fs::write(
        &config,
        format!("[[webhooks]]\nurl = \"ftp://hooks.example.com/\"\nsecret = \"{SECRET}\"\n"),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_idlink"))
        .args(["serve", "--bind", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(format!(
            "sqlite://{}",
            dir.path().join("idlink.db").display()
        ))
        .env("RUST_LOG", "warn")
        .env_remove("IDLINK_CONFIG")
        .env_remove("IDLINK_DATABASE_URL")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("webhooks[0].url"), "{stderr}");
}
