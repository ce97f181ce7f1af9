//! Crash safety on SQLite: the real `idlink serve` on a temporary database file, killed
//! with SIGKILL five times at random moments during concurrent link/unlink load and
//! restarted each time. Afterwards the database holds every identity exactly once, every
//! user has its main identity, and every link or unlink the server acknowledged is
//! there: the client tracks, per secondary, the last acknowledged operation (and the one
//! in flight when a kill struck, whose outcome is unknown) and checks the final state
//! against it.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::{AUDIENCE, Instance, TEST_ADMIN_CLIENT_ID, TEST_ADMIN_CLIENT_SECRET};
use rand::Rng;
use serde_json::{Value, json};

const KILLS: usize = 5;
const PRIMARIES: usize = 4;
const WORKERS: usize = 6;
const SECONDARIES_PER_WORKER: usize = 3;

/// Where a secondary is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Standalone,
    LinkedTo(String),
}

/// What the client knows about one secondary.
#[derive(Debug, Clone)]
struct Known {
    /// After the last acknowledged operation.
    acked: Place,
    /// The outcome of an operation whose answer was lost to a kill, until a read settles
    /// it: the final state may be this one instead.
    unsure: Option<Place>,
}

fn enc(s: &str) -> String {
    s.replace('|', "%7C")
}

struct Shared {
    http: reqwest::Client,
    url: RwLock<String>,
    token: String,
    primaries: Vec<String>,
    known: Mutex<BTreeMap<String, Known>>,
    stop: AtomicBool,
    acked_ops: AtomicUsize,
    lost_answers: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn url(&self) -> String {
        self.url.read().unwrap().clone()
    }

    /// Reads where `secondary` is, retrying through restarts.
    async fn locate(&self, secondary: &str) -> Place {
        loop {
            let url = self.url();
            let sent = self
                .http
                .get(format!("{url}/api/v2/users/{}", enc(secondary)))
                .bearer_auth(&self.token)
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 200 => return Place::Standalone,
                Ok(r) if r.status() == 404 => break,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        for primary in &self.primaries {
            loop {
                let url = self.url();
                let sent = self
                    .http
                    .get(format!("{url}/api/v2/users/{}", enc(primary)))
                    .bearer_auth(&self.token)
                    .send()
                    .await;
                let Ok(response) = sent else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let Ok(user) = response.json::<Value>().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let id = secondary.trim_start_matches("google-oauth2|");
                if user["identities"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|i| i["user_id"] == id))
                {
                    return Place::LinkedTo(primary.clone());
                }
                break;
            }
        }
        panic!("{secondary} is nowhere");
    }
}

/// One worker owns a few secondaries (so the operations on each are sequential) and
/// moves them: a standalone one is linked to a random primary, a linked one unlinked.
async fn worker(shared: Arc<Shared>, mine: Vec<String>) {
    while !shared.stop.load(Ordering::Relaxed) {
        let secondary = mine[rand::thread_rng().gen_range(0..mine.len())].clone();
        let id = secondary.trim_start_matches("google-oauth2|").to_owned();
        let current = shared.known.lock().unwrap()[&secondary].acked.clone();
        let url = shared.url();
        let (target, sent) = match &current {
            Place::Standalone => {
                let primary = shared.primaries
                    [rand::thread_rng().gen_range(0..shared.primaries.len())]
                .clone();
                let sent = shared
                    .http
                    .post(format!("{url}/api/v2/users/{}/identities", enc(&primary)))
                    .bearer_auth(&shared.token)
                    .json(&json!({"provider": "google-oauth2", "user_id": id}))
                    .send()
                    .await;
                (Place::LinkedTo(primary), sent)
            }
            Place::LinkedTo(primary) => {
                let sent = shared
                    .http
                    .delete(format!(
                        "{url}/api/v2/users/{}/identities/google-oauth2/{id}",
                        enc(primary)
                    ))
                    .bearer_auth(&shared.token)
                    .send()
                    .await;
                (Place::Standalone, sent)
            }
        };
        let answer = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                response.text().await.map(|body| (status, body))
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok((200 | 201, _)) => {
                let mut known = shared.known.lock().unwrap();
                let entry = known.get_mut(&secondary).unwrap();
                entry.acked = target;
                entry.unsure = None;
                shared.acked_ops.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, body)) => {
                // The client's record and the server disagree: an acknowledged
                // operation was lost (or something else is wrong).
                shared.failures.lock().unwrap().push(format!(
                    "{secondary} ({current:?} → {target:?}): {status} {body}"
                ));
                shared.stop.store(true, Ordering::Relaxed);
            }
            Err(_) => {
                // Killed mid-request: the operation may or may not have committed.
                shared.lost_answers.fetch_add(1, Ordering::Relaxed);
                shared
                    .known
                    .lock()
                    .unwrap()
                    .get_mut(&secondary)
                    .unwrap()
                    .unsure = Some(target.clone());
                // Settle it with a read once the server is back: what a read shows
                // after the restart has committed.
                let place = shared.locate(&secondary).await;
                let mut known = shared.known.lock().unwrap();
                let entry = known.get_mut(&secondary).unwrap();
                assert!(
                    place == entry.acked || place == target,
                    "{secondary}: found {place:?}, expected {:?} or {target:?}",
                    entry.acked
                );
                entry.acked = place;
                entry.unsure = None;
            }
        }
    }
}

async fn token(http: &reqwest::Client, base_url: &str) -> String {
    let reply: Value = http
        .post(format!("{base_url}/oauth/token"))
        .json(
            &json!({"grant_type": "client_credentials", "client_id": TEST_ADMIN_CLIENT_ID,
            "client_secret": TEST_ADMIN_CLIENT_SECRET, "audience": AUDIENCE}),
        )
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token JSON");
    reply["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn create_user(shared: &Shared, connection: &str, id: &str) -> String {
    let response = shared
        .http
        .post(format!("{}/api/v2/users", shared.url()))
        .bearer_auth(&shared.token)
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

/// The ownership invariant, straight from the database file.
async fn check_database(database_url: &str) -> usize {
    use sqlx::Connection as _;
    let mut conn = sqlx::SqliteConnection::connect(database_url)
        .await
        .expect("open the database");
    for (what, sql) in idlink_server::testing::OWNERSHIP_BREACHES {
        let found: Vec<(String,)> = sqlx::query_as(sql)
            .fetch_all(&mut conn)
            .await
            .expect("invariant query");
        assert!(found.is_empty(), "{what}: {found:?}");
    }
    let (identities,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM identities")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    let _ = conn.close().await;
    usize::try_from(identities).expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_link_unlink_load_loses_no_acknowledged_operation() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite://{}", dir.path().join("idlink.db").display());
    let mut instance = Instance::spawn(&database_url, &[]);
    let http = reqwest::Client::new();
    let token = token(&http, &instance.base_url).await;
    let mut shared = Shared {
        http,
        url: RwLock::new(instance.base_url.clone()),
        token,
        primaries: Vec::new(),
        known: Mutex::new(BTreeMap::new()),
        stop: AtomicBool::new(false),
        acked_ops: AtomicUsize::new(0),
        lost_answers: AtomicUsize::new(0),
        failures: Mutex::new(Vec::new()),
    };
    for i in 0..PRIMARIES {
        let primary = create_user(&shared, "github", &format!("{}", 100 + i)).await;
        shared.primaries.push(primary);
    }
    let mut owned = Vec::new();
    for w in 0..WORKERS {
        let mut mine = Vec::new();
        for s in 0..SECONDARIES_PER_WORKER {
            let secondary = create_user(&shared, "google-oauth2", &format!("g{w}-{s}")).await;
            shared.known.lock().unwrap().insert(
                secondary.clone(),
                Known {
                    acked: Place::Standalone,
                    unsure: None,
                },
            );
            mine.push(secondary);
        }
        owned.push(mine);
    }
    let identities = PRIMARIES + WORKERS * SECONDARIES_PER_WORKER;
    let shared = Arc::new(shared);
    let workers: Vec<_> = owned
        .into_iter()
        .map(|mine| tokio::spawn(worker(shared.clone(), mine)))
        .collect();

    for kill in 0..KILLS {
        let pause = rand::thread_rng().gen_range(300..1200);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let before = shared.acked_ops.load(Ordering::Relaxed);
        instance.kill();
        println!(
            "kill {}: after {pause} ms, {before} operations acknowledged so far",
            kill + 1
        );
        instance = Instance::spawn(&database_url, &[]);
        *shared.url.write().unwrap() = instance.base_url.clone();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    shared.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    let failures = shared.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "acknowledged operations lost: {failures:#?}"
    );
    let acked = shared.acked_ops.load(Ordering::Relaxed);
    let lost = shared.lost_answers.load(Ordering::Relaxed);
    assert!(acked >= 50, "too little load: {acked} operations");

    // One more kill with nothing running, then look at what is on disk.
    instance.kill();
    assert_eq!(check_database(&database_url).await, identities);
    let instance = Instance::spawn(&database_url, &[]);
    *shared.url.write().unwrap() = instance.base_url.clone();
    let known = shared.known.lock().unwrap().clone();
    for (secondary, record) in &known {
        let place = shared.locate(secondary).await;
        assert!(
            place == record.acked || Some(&place) == record.unsure.as_ref(),
            "{secondary}: the server says {place:?}, the last acknowledged operation says {:?}",
            record.acked
        );
    }
    println!(
        "{KILLS} kills, {acked} acknowledged links/unlinks, {lost} answers lost to a kill, \
         {identities} identities intact, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
