//! `idlink-bench startup`: how fast an emulator is ready and how much memory it holds.
//!
//! "Ready" is what a test suite waits for: from spawning the process to `/health`
//! answering 200 **and** the first token issued (idlink: a client-credentials token;
//! the Firebase Auth Emulator: an ID token from `accounts:signUp`). Resident memory
//! (VmRSS of the process and its children, from `/proc`) is read once ready, idle.
//!
//! idlink cases: `cold-fresh-key` (brand-new in-memory tenant, `--fresh-signing-key`:
//! the RSA key is generated, as on the very first start on a machine), `cold` (brand-new
//! tenant, the development key already in the cache — the default), `restart`
//! (the same `--db` file started again), `seeded-10000` (a seed of 10,000 users with
//! bcrypt passwords, half of them with a linked GitHub identity, keys included).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::process::{ChildProcess, free_port};
use crate::targets::{BENCH_CLIENT_ID, BENCH_CLIENT_SECRET, FIREBASE_PROJECT};

/// How long a start may take before it counts as failed.
const PATIENCE: Duration = Duration::from_secs(120);

/// Resident memory of `pid` and its descendants, in MiB (Linux `/proc`).
pub fn rss_mib(pid: u32) -> Option<f64> {
    fn kib(pid: u32) -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }
    fn children(pid: u32) -> Vec<u32> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
            .flat_map(|s| {
                s.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect()
    }
    let own = kib(pid);
    if own == 0 {
        return None;
    }
    let mut total = own;
    let mut queue = children(pid);
    while let Some(child) = queue.pop() {
        total += kib(child);
        queue.extend(children(child));
    }
    Some(total as f64 / 1024.0)
}

async fn poll(
    client: &reqwest::Client,
    deadline: Instant,
    mut attempt: impl AsyncFnMut(&reqwest::Client) -> bool,
) -> Result<(), String> {
    loop {
        if attempt(client).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("not ready in time".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One measured start.
async fn measure_idlink(
    bin: &Path,
    case: &str,
    extra: &[String],
    dir: &Path,
) -> Result<Value, String> {
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(bin);
    command
        .args(["emulate", "--bind", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env("IDLINK_ADMIN_CLIENT_ID", BENCH_CLIENT_ID)
        .env("IDLINK_ADMIN_CLIENT_SECRET", BENCH_CLIENT_SECRET)
        .env("RUST_LOG", "warn")
        .current_dir(dir);
    let started = Instant::now();
    let mut process =
        ChildProcess::spawn("idlink emulate", command, &dir.join(format!("{case}.log")))?;
    let client = reqwest::Client::new();
    let deadline = started + PATIENCE;
    let health_url = format!("{base}/health");
    poll(&client, deadline, async |c| {
        c.get(&health_url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .map_err(|e| format!("{case}: {e}: {}", process.log_tail()))?;
    let health_ms = started.elapsed().as_secs_f64() * 1000.0;
    let token_url = format!("{base}/oauth/token");
    let body = json!({"grant_type": "client_credentials", "client_id": BENCH_CLIENT_ID,
        "client_secret": BENCH_CLIENT_SECRET, "audience": format!("https://127.0.0.1:{port}/api/v2/")});
    poll(&client, deadline, async |c| {
        c.post(&token_url)
            .json(&body)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .map_err(|e| format!("{case}: {e}: {}", process.log_tail()))?;
    let ready_ms = started.elapsed().as_secs_f64() * 1000.0;
    process.check_alive()?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss = rss_mib(process.pid());
    process.stop();
    Ok(
        json!({"target": "idlink emulate", "case": case, "health_ms": round(health_ms),
        "ready_ms": round(ready_ms), "rss_mib": rss.map(round)}),
    )
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A seed of `users` users: database users with one bcrypt hash (cost 4), every other
/// one with a linked GitHub identity; `keys` from an earlier export.
fn big_seed(users: usize, keys: &Value) -> Value {
    // A well-formed bcrypt hash (cost 4); nobody signs in with it: this is about start-up.
    const HASH: &str = "$2b$04$C6UzMDM.H6dfI/f/IKxGhuIL1cHnCWcRa5TxvmS3WYtGJJtHI3Mpe";
    let list: Vec<Value> = (0..users)
        .map(|i| {
            let mut identities = vec![json!({"connection": "Username-Password-Authentication",
                "user_id": format!("u{i:05}"), "password_hash": HASH})];
            if i % 2 == 0 {
                identities.push(json!({"connection": "github", "user_id": 100_000 + i,
                    "profileData": {"email": format!("u{i}@github.example"), "nickname": format!("u{i}")}}));
            }
            json!({"email": format!("u{i}@example.com"), "email_verified": true,
                "name": format!("User {i}"), "user_metadata": {"n": i}, "identities": identities})
        })
        .collect();
    json!({"version": 1, "users": list, "signing_keys": keys})
}

/// The idlink cases, in order.
pub async fn idlink_cases(bin: &Path, seeded_users: usize) -> Result<Vec<Value>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = |name: &str| dir.path().join(name).display().to_string();
    let mut rows = Vec::new();
    rows.push(
        measure_idlink(
            bin,
            "cold-fresh-key",
            &["--fresh-signing-key".into()],
            dir.path(),
        )
        .await?,
    );
    // `--dev-signing-key` names the default's file in a place of the bench's own.
    let key = path("dev-key.pem");
    // The first use makes the key; the measured start finds it.
    measure_idlink(
        bin,
        "make-dev-key",
        &["--dev-signing-key".into(), key.clone()],
        dir.path(),
    )
    .await?;
    rows.push(
        measure_idlink(
            bin,
            "cold",
            &["--dev-signing-key".into(), key.clone()],
            dir.path(),
        )
        .await?,
    );
    let db = format!("sqlite://{}", path("restart.db"));
    measure_idlink(bin, "first-start", &["--db".into(), db.clone()], dir.path()).await?;
    rows.push(measure_idlink(bin, "restart", &["--db".into(), db], dir.path()).await?);
    // Keys for the seed: the dev key, as a snapshot carries it.
    let pem = std::fs::read_to_string(&key).map_err(|e| e.to_string())?;
    let keys = json!([{"kid": "bench-key", "private_key_pem": pem, "created_at": 0}]);
    let seed = path("seed.json");
    std::fs::write(&seed, big_seed(seeded_users, &keys).to_string()).map_err(|e| e.to_string())?;
    rows.push(
        measure_idlink(
            bin,
            &format!("seeded-{seeded_users}"),
            &["--seed".into(), seed],
            dir.path(),
        )
        .await?,
    );
    Ok(rows)
}

/// The Firebase Auth Emulator, measured the same way (its first token: `signUp`).
pub async fn firebase_case(script: &Path) -> Result<Value, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (auth, hub, logging) = (free_port()?, free_port()?, free_port()?);
    let config = json!({"emulators": {
        "auth": {"host": "127.0.0.1", "port": auth},
        "hub": {"host": "127.0.0.1", "port": hub},
        "logging": {"host": "127.0.0.1", "port": logging},
        "ui": {"enabled": false},
    }});
    std::fs::write(dir.path().join("firebase.json"), config.to_string())
        .map_err(|e| e.to_string())?;
    let mut command = Command::new("node");
    command
        .arg(script)
        .args([
            "emulators:start",
            "--only",
            "auth",
            "--project",
            FIREBASE_PROJECT,
        ])
        .current_dir(dir.path())
        .env("NO_UPDATE_NOTIFIER", "1")
        .env("FIREBASE_CLI_DISABLE_UPDATE_CHECK", "true")
        .env("HOME", dir.path());
    let started = Instant::now();
    let mut process = ChildProcess::spawn(
        "firebase emulator",
        command,
        &dir.path().join("firebase.log"),
    )?;
    let client = reqwest::Client::new();
    let deadline = started + PATIENCE;
    let base = format!("http://127.0.0.1:{auth}");
    poll(&client, deadline, async |c| {
        c.get(&base).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await
    .map_err(|e| format!("firebase: {e}: {}", process.log_tail()))?;
    let health_ms = started.elapsed().as_secs_f64() * 1000.0;
    let sign_up =
        format!("{base}/identitytoolkit.googleapis.com/v1/accounts:signUp?key=fake-api-key");
    poll(&client, deadline, async |c| {
        c.post(&sign_up)
            .json(&json!({"email": "ready@example.com", "password": "bench-password", "returnSecureToken": true}))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .map_err(|e| format!("firebase: {e}: {}", process.log_tail()))?;
    let ready_ms = started.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss = rss_mib(process.pid());
    process.stop();
    Ok(
        json!({"target": "firebase auth emulator", "case": "cold", "health_ms": round(health_ms),
        "ready_ms": round(ready_ms), "rss_mib": rss.map(round)}),
    )
}
