//! Real `idlink serve` processes on one PostgreSQL database: kill -9 one of them in the
//! middle of a link/unlink load and restart it; rotate the signing key with
//! `idlink keys rotate` while both run.
//!
//! Needs `IDLINK_TEST_POSTGRES_URL`; each test creates a database of its own. Without
//! the variable each test says so in one line and passes.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::{AUDIENCE, Instance, TEST_ADMIN_CLIENT_ID, TEST_ADMIN_CLIENT_SECRET};
use idlink_server::testing::{TestDatabase, check_ownership, postgres_test_url};
use rand::Rng;
use serde_json::{Value, json};

fn postgres_or_skip() -> Option<String> {
    let url = postgres_test_url();
    if url.is_none() {
        println!("postgres_processes: skipped, IDLINK_TEST_POSTGRES_URL is not set");
    }
    url
}

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
        .expect("token request")
        .json()
        .await
        .expect("token JSON");
    reply["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {reply}"))
        .to_owned()
}

async fn create_user(
    http: &reqwest::Client,
    base_url: &str,
    token: &str,
    connection: &str,
    id: &str,
) -> String {
    let response = http
        .post(format!("{base_url}/api/v2/users"))
        .bearer_auth(token)
        .json(
            &json!({"connection": connection, "user_id": id, "email": format!("{id}@example.com")}),
        )
        .send()
        .await
        .expect("create user");
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("JSON");
    body["user_id"].as_str().expect("user_id").to_owned()
}

fn enc(segment: &str) -> String {
    segment.replace('|', "%7C")
}

#[derive(Default)]
struct Tally {
    links: AtomicUsize,
    unlinks: AtomicUsize,
    rejected: AtomicUsize,
    connection_errors: AtomicUsize,
    server_errors: Mutex<Vec<String>>,
}

/// One worker of the load: link a random secondary into a random primary on a random
/// instance; when that works, unlink it again (on a random instance).
async fn churn(
    http: reqwest::Client,
    urls: Arc<RwLock<Vec<String>>>,
    token: String,
    primaries: Arc<Vec<String>>,
    secondaries: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let pick_url = || {
        let urls = urls.read().unwrap();
        urls[rand::thread_rng().gen_range(0..urls.len())].clone()
    };
    while !stop.load(Ordering::Relaxed) {
        let (primary, secondary) = {
            let mut rng = rand::thread_rng();
            (
                primaries[rng.gen_range(0..primaries.len())].clone(),
                secondaries[rng.gen_range(0..secondaries.len())].clone(),
            )
        };
        let id = secondary.trim_start_matches("google-oauth2|").to_owned();
        let sent = http
            .post(format!(
                "{}/api/v2/users/{}/identities",
                pick_url(),
                enc(&primary)
            ))
            .bearer_auth(&token)
            .json(&json!({"provider": "google-oauth2", "user_id": id}))
            .send()
            .await;
        let linked = match sent {
            Err(_) => {
                tally.connection_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(r) if r.status() == 201 => true,
            Ok(r) if r.status().is_server_error() => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                tally
                    .server_errors
                    .lock()
                    .unwrap()
                    .push(format!("link {status}: {body}"));
                false
            }
            Ok(_) => false,
        };
        if !linked {
            tally.rejected.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        tally.links.fetch_add(1, Ordering::Relaxed);
        let sent = http
            .delete(format!(
                "{}/api/v2/users/{}/identities/google-oauth2/{id}",
                pick_url(),
                enc(&primary)
            ))
            .bearer_auth(&token)
            .send()
            .await;
        match sent {
            Err(_) => {
                tally.connection_errors.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) if r.status() == 200 => {
                tally.unlinks.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) if r.status().is_server_error() => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                tally
                    .server_errors
                    .lock()
                    .unwrap()
                    .push(format!("unlink {status}: {body}"));
            }
            Ok(_) => {
                tally.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_dash_nine_during_link_unlink_load_loses_and_duplicates_nothing() {
    let Some(base) = postgres_or_skip() else {
        return;
    };
    let database = TestDatabase::create(&base).await;
    let a = Instance::spawn(&database.url, &[]);
    let b = Instance::spawn(&database.url, &[]);
    let http = reqwest::Client::new();
    let token = token(&http, &b.base_url).await;

    let mut primaries = Vec::new();
    for i in 0..8 {
        primaries
            .push(create_user(&http, &a.base_url, &token, "github", &format!("{}", 10 + i)).await);
    }
    let mut secondaries = Vec::new();
    for i in 0..24 {
        secondaries.push(
            create_user(
                &http,
                &b.base_url,
                &token,
                "google-oauth2",
                &format!("g{i}"),
            )
            .await,
        );
    }
    let before = check_ownership(&database.url).await;
    assert_eq!(before.identities.len(), 32);

    let urls = Arc::new(RwLock::new(vec![a.base_url.clone(), b.base_url.clone()]));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let (primaries, secondaries) = (Arc::new(primaries), Arc::new(secondaries));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(churn(
                http.clone(),
                urls.clone(),
                token.clone(),
                primaries.clone(),
                secondaries.clone(),
                stop.clone(),
                tally.clone(),
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_kill = tally.links.load(Ordering::Relaxed);
    a.kill();
    urls.write().unwrap()[0] = b.base_url.clone();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let a = Instance::spawn(&database.url, &[]);
    urls.write().unwrap()[0] = a.base_url.clone();
    let at_restart = tally.links.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    let after_restart = tally.links.load(Ordering::Relaxed) - at_restart;

    let server_errors = tally.server_errors.lock().unwrap().clone();
    assert!(server_errors.is_empty(), "5xx answers: {server_errors:?}");
    assert!(before_kill > 0, "load ran before the kill");
    assert!(after_restart > 0, "load ran after the restart");

    let after = check_ownership(&database.url).await;
    assert_eq!(
        after.identities, before.identities,
        "no identity lost or duplicated"
    );
    // Whatever is still linked (a response lost to the kill) is consistent too: each
    // identity that is not a user's main identity sits on exactly one primary.
    let linked = after.identities.len() - after.users;
    for url in [&a.base_url, &b.base_url] {
        let health = http.get(format!("{url}/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    }
    println!(
        "postgres_processes: kill -9 under load: {} links, {} unlinks, {} rejected, {} \
         connection errors, 0 server errors; {before_kill} links before the kill, \
         {after_restart} after the restart; invariant holds ({} identities, {} users, \
         {linked} still linked)",
        tally.links.load(Ordering::Relaxed),
        tally.unlinks.load(Ordering::Relaxed),
        tally.rejected.load(Ordering::Relaxed),
        tally.connection_errors.load(Ordering::Relaxed),
        after.identities.len(),
        after.users,
    );
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

async fn users_status(http: &reqwest::Client, base_url: &str, token: &str) -> u16 {
    http.get(format!("{base_url}/api/v2/users"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET users")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_reaches_every_instance_and_old_tokens_keep_verifying() {
    let Some(base) = postgres_or_skip() else {
        return;
    };
    let database = TestDatabase::create(&base).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("idlink.toml");
    std::fs::write(&config, "[tokens]\nkey_refresh_interval = 1\n").unwrap();
    let config = config.to_str().unwrap();
    let a = Instance::spawn(&database.url, &["--config", config]);
    let b = Instance::spawn(&database.url, &["--config", config]);
    let http = reqwest::Client::new();

    let old = token(&http, &a.base_url).await;
    assert_eq!(
        users_status(&http, &b.base_url, &old).await,
        200,
        "A's token on B"
    );

    let rotated = Command::new(env!("CARGO_BIN_EXE_idlink"))
        .args(["keys", "rotate", "--db", &database.url])
        .env("RUST_LOG", "warn")
        .output()
        .expect("idlink keys rotate");
    let stdout = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        rotated.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let new_kid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("new signing key: "))
        .expect("new kid printed")
        .trim()
        .to_owned();
    assert_ne!(new_kid, kid(&old));

    // A switches to the new key at its next refresh (1 s here).
    let deadline = Instant::now() + Duration::from_secs(10);
    let new = loop {
        let token = token(&http, &a.base_url).await;
        if kid(&token) == new_kid {
            break token;
        }
        assert!(Instant::now() < deadline, "A never signed with {new_kid}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (name, token) in [("new", &new), ("old", &old)] {
        assert_eq!(
            users_status(&http, &b.base_url, token).await,
            200,
            "{name} on B"
        );
        assert_eq!(
            users_status(&http, &a.base_url, token).await,
            200,
            "{name} on A"
        );
    }
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
    assert!(
        kids.contains(&new_kid.as_str()) && kids.contains(&kid(&old).as_str()),
        "{jwks}"
    );
    drop((a, b));
}
