//! Crash safety on SQLite (`synchronous=FULL`, the default), two ways, both with the
//! real `idlink serve` on a temporary database file under concurrent link/unlink load:
//!
//! - killed with SIGKILL five times at random moments and restarted each time.
//!   Afterwards the database holds every identity exactly once, every user has its main
//!   identity, and every link or unlink the server acknowledged is there: the client
//!   tracks, per secondary, the last acknowledged operation (and the one in flight when
//!   a kill struck, whose outcome is unknown) and checks the final state against it;
//! - power loss: the database file and its WAL copied at random moments while the load
//!   runs, each copy opened and checked (see
//!   `copies_taken_at_any_moment_hold_every_acknowledged_operation`).

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
    /// Every place it was sent to, in order, from its first one (standalone); an
    /// operation's target is added before the request leaves.
    history: Vec<Place>,
    /// The index in `history` of the last acknowledged (or settled) place.
    acked_at: usize,
}

impl Known {
    fn new() -> Self {
        Self {
            acked: Place::Standalone,
            unsure: None,
            history: vec![Place::Standalone],
            acked_at: 0,
        }
    }

    fn settle(&mut self, place: Place) {
        if self.history.last() != Some(&place) {
            self.history.push(place.clone());
        }
        self.acked_at = self.history.len() - 1;
        self.acked = place;
        self.unsure = None;
    }
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

    /// Changes what the client knows of `secondary`.
    fn update_known<T>(&self, secondary: &str, change: impl FnOnce(&mut Known) -> T) -> T {
        change(self.known.lock().unwrap().get_mut(secondary).unwrap())
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
        let primary =
            shared.primaries[rand::thread_rng().gen_range(0..shared.primaries.len())].clone();
        let target = match &current {
            Place::Standalone => Place::LinkedTo(primary),
            Place::LinkedTo(_) => Place::Standalone,
        };
        shared.update_known(&secondary, |known| known.history.push(target.clone()));
        let sent = match &current {
            Place::Standalone => {
                let Place::LinkedTo(primary) = &target else {
                    unreachable!("a standalone secondary is linked")
                };
                shared
                    .http
                    .post(format!("{url}/api/v2/users/{}/identities", enc(primary)))
                    .bearer_auth(&shared.token)
                    .json(&json!({"provider": "google-oauth2", "user_id": id}))
                    .send()
                    .await
            }
            Place::LinkedTo(primary) => {
                shared
                    .http
                    .delete(format!(
                        "{url}/api/v2/users/{}/identities/google-oauth2/{id}",
                        enc(primary)
                    ))
                    .bearer_auth(&shared.token)
                    .send()
                    .await
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
                shared.update_known(&secondary, |known| known.settle(target));
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
                shared.update_known(&secondary, |known| known.unsure = Some(target.clone()));
                // Settle it with a read once the server is back: what a read shows
                // after the restart has committed.
                let place = shared.locate(&secondary).await;
                shared.update_known(&secondary, |entry| {
                    assert!(
                        place == entry.acked || place == target,
                        "{secondary}: found {place:?}, expected {:?} or {target:?}",
                        entry.acked
                    );
                    entry.settle(place);
                });
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

/// A server under link/unlink load: the client's record, and its workers.
struct Load {
    shared: Arc<Shared>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    /// How many identities the database holds, whatever the load did.
    identities: usize,
}

/// Creates the primaries and the secondaries on `instance`, then starts the workers.
async fn start_load(instance: &Instance) -> Load {
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
            shared
                .known
                .lock()
                .unwrap()
                .insert(secondary.clone(), Known::new());
            mine.push(secondary);
        }
        owned.push(mine);
    }
    let shared = Arc::new(shared);
    let workers = owned
        .into_iter()
        .map(|mine| tokio::spawn(worker(shared.clone(), mine)))
        .collect();
    Load {
        shared,
        workers,
        identities: PRIMARIES + WORKERS * SECONDARIES_PER_WORKER,
    }
}

impl Load {
    /// Stops the workers; fails on any acknowledged operation the server contradicted.
    async fn stop(&mut self) -> usize {
        self.shared.stop.store(true, Ordering::Relaxed);
        for worker in self.workers.drain(..) {
            worker.await.expect("worker");
        }
        let failures = self.shared.failures.lock().unwrap().clone();
        assert!(
            failures.is_empty(),
            "acknowledged operations lost: {failures:#?}"
        );
        let acked = self.shared.acked_ops.load(Ordering::Relaxed);
        assert!(acked >= 50, "too little load: {acked} operations");
        acked
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_link_unlink_load_loses_no_acknowledged_operation() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite://{}", dir.path().join("idlink.db").display());
    let mut instance = Instance::spawn(&database_url, &[]);
    let mut load = start_load(&instance).await;
    let (shared, identities) = (load.shared.clone(), load.identities);

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
    let acked = load.stop().await;
    let lost = shared.lost_answers.load(Ordering::Relaxed);

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

const COPIES: usize = 8;

/// Every thread of process `pid` stopped (`T`): none is inside a system call, so no
/// write to the database files is half done in the kernel.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
        })
    })
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Copies the database file and its WAL (when there is one) of the server `pid` into
/// `to`, with the server frozen (SIGSTOP) from before the first byte is read until
/// after the last. The shared-memory index is not copied: SQLite rebuilds it from the
/// WAL, as after a reboot.
async fn copy_frozen(pid: u32, from: &std::path::Path, to: &std::path::Path) {
    signal(pid, "STOP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !all_threads_stopped(pid) {
        assert!(Instant::now() < deadline, "the server did not stop");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    std::fs::create_dir_all(to).expect("copy folder");
    for name in ["idlink.db", "idlink.db-wal"] {
        match std::fs::copy(from.join(name), to.join(name)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name.ends_with("-wal") => {}
            Err(e) => panic!("copy {name}: {e}"),
        }
    }
    signal(pid, "CONT");
}

/// Where `secondary` is in the database at `database_url`.
async fn place_in(conn: &mut sqlx::SqliteConnection, secondary: &str) -> Place {
    let id = secondary.trim_start_matches("google-oauth2|");
    let (owner,): (String,) = sqlx::query_as(
        "SELECT owner_user_id FROM identities \
         WHERE provider = 'google-oauth2' AND identity_user_id = ?",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await
    .unwrap_or_else(|e| panic!("{secondary} is not in the copy: {e}"));
    if owner == secondary {
        Place::Standalone
    } else {
        Place::LinkedTo(owner)
    }
}

/// Power loss, modelled by copies: while link/unlink load runs, the database file and
/// its WAL are copied eight times at random moments, each copy opened (SQLite recovers
/// it from the WAL as after a power cut) and checked: it passes `integrity_check`,
/// every identity is there once, every user has its main identity, and every
/// operation acknowledged before the copy began is in it (a later one may or may not
/// be).
///
/// Why a copy is a fair model. The server is frozen with SIGSTOP, and the copy starts
/// only once every thread has stopped, so no thread is inside a write: the pair of
/// files is the exact state the server had written at one instant, whatever it was
/// doing — halfway through appending a transaction's frames to the WAL, or through a
/// checkpoint copying WAL pages into the main file, or restarting the WAL. That is
/// what the disk holds when the power fails at that instant and every write issued so
/// far had reached it, which a power cut may leave. Copying without the freeze would
/// not be fair: a checkpoint between reading the WAL and reading the main file (or a
/// WAL restart between reading the main file and the WAL) makes a pair of files that
/// never existed together, which no power loss can produce. What a copy does not model
/// is a disk that loses or reorders writes that were not yet synced; for those SQLite
/// relies on the fsync at each commit (`synchronous=FULL`), which is why only an
/// acknowledgement received before the freeze counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_taken_at_any_moment_hold_every_acknowledged_operation() {
    use sqlx::Connection as _;
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite://{}", dir.path().join("idlink.db").display());
    let instance = Instance::spawn(&database_url, &[]);
    let mut load = start_load(&instance).await;
    let shared = load.shared.clone();

    let mut copies = Vec::new();
    for n in 0..COPIES {
        let pause = rand::thread_rng().gen_range(100..600);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        // What was acknowledged before the freeze began; read first, so anything
        // acknowledged later only widens what the copy may hold.
        let acked_at: BTreeMap<String, usize> = shared
            .known
            .lock()
            .unwrap()
            .iter()
            .map(|(secondary, known)| (secondary.clone(), known.acked_at))
            .collect();
        let to = dir.path().join(format!("copy-{n}"));
        copy_frozen(instance.pid(), dir.path(), &to).await;
        copies.push((to, acked_at));
    }
    let acked = load.stop().await;

    let known = shared.known.lock().unwrap().clone();
    for (n, (copy, acked_at)) in copies.iter().enumerate() {
        let url = format!("sqlite://{}", copy.join("idlink.db").display());
        assert_eq!(check_database(&url).await, load.identities, "copy {n}");
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("open the copy");
        let (integrity,): (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await
            .expect("integrity_check");
        assert_eq!(integrity, "ok", "copy {n}");
        for (secondary, record) in &known {
            let place = place_in(&mut conn, secondary).await;
            let since = &record.history[acked_at[secondary]..];
            assert!(
                since.contains(&place),
                "copy {n}: {secondary} is {place:?}, but before the copy it had been \
                 acknowledged at {:?} and then sent to {:?}",
                since.first(),
                &since[1..]
            );
        }
        let _ = conn.close().await;
    }
    println!(
        "{COPIES} copies under load, {acked} acknowledged links/unlinks, every copy intact \
         with every operation acknowledged before it, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
