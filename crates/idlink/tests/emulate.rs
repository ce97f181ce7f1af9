//! `idlink emulate` as a process: what it prints, a bad seed stopping the start, the
//! in-memory tenant going away on exit, `--export-on-exit`, `--dev-signing-key` and
//! `--bind :PORT`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Emulator {
    child: Child,
    base_url: String,
    /// Every stdout line up to the control API line.
    banner: Vec<String>,
}

fn command(extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_idlink"));
    command
        .arg("emulate")
        .args(extra)
        .env("RUST_LOG", "warn")
        .env_remove("IDLINK_DATABASE_URL")
        .env_remove("IDLINK_ADMIN_CLIENT_ID")
        .env_remove("IDLINK_ADMIN_CLIENT_SECRET")
        .env_remove("IDLINK_CONFIG")
        .env_remove("IDLINK_SEED")
        .env_remove("IDLINK_DEV_SIGNING_KEY")
        // The default development key lives in the user's cache: keep the tests' own.
        .env("XDG_CACHE_HOME", env!("CARGO_TARGET_TMPDIR"))
        .stdin(Stdio::null());
    command
}

fn spawn(extra: &[&str]) -> Emulator {
    spawn_command(command(extra))
}

fn spawn_command(mut command: Command) -> Emulator {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn idlink emulate");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    let mut base_url = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("idlink listening on ") {
            let addr = rest
                .split_whitespace()
                .next()
                .unwrap()
                .replace("0.0.0.0", "127.0.0.1");
            base_url = Some(format!("http://{addr}"));
        }
        let done = line.contains("control API:");
        banner.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Emulator {
        child,
        base_url: base_url.expect("a listening line"),
        banner,
    }
}

impl Emulator {
    fn banner_value(&self, label: &str) -> String {
        let line = self
            .banner
            .iter()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap();
        line.trim_start()[label.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    }

    async fn admin_token(&self) -> String {
        let audience = self.banner_value("API audience:");
        let body: Value = reqwest::Client::new()
            .post(format!("{}/oauth/token", self.base_url))
            .json(&json!({"grant_type": "client_credentials",
                "client_id": self.banner_value("admin client id:"),
                "client_secret": self.banner_value("admin secret:"),
                "audience": audience}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["access_token"].as_str().expect("token").to_owned()
    }

    /// SIGTERM, then waits for the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        self.child.wait().unwrap()
    }
}

impl Drop for Emulator {
    /// SIGTERM (so the in-memory tenant's directory is removed), SIGKILL after 10 s.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_bad_seed_stops_the_start_naming_file_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    std::fs::write(
        &seed,
        r#"{"users": [{"identities": [{"connection": "nope", "user_id": "1"}]}]}"#,
    )
    .unwrap();
    let output = command(&["--bind", "127.0.0.1:0", "--seed", seed.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("invalid seed file {}", seed.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"users[0].identities[0].connection: unknown connection "nope""#),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("listening"),
        "started nothing"
    );

    std::fs::write(&seed, r#"{"users": [{"identities": 3}]}"#).unwrap();
    let output = command(&["--seed", seed.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("users[0].identities: invalid type"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_in_memory_tenant_prints_credentials_exports_on_exit_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("out.json");
    let started = Instant::now();
    let emulator = spawn(&["--bind", ":0", "--export-on-exit", export.to_str().unwrap()]);
    // `:0` listens on every interface.
    assert!(
        emulator.banner[0].starts_with("idlink listening on 0.0.0.0:"),
        "{:?}",
        emulator.banner
    );
    let token = emulator.admin_token().await;
    eprintln!("ready (banner + first token) after {:?}", started.elapsed());
    assert!(
        emulator
            .banner
            .iter()
            .any(|l| l.contains("control API:") && l.contains("loopback only"))
    );
    let credentials = emulator.banner_value("credentials written to");
    assert!(credentials.contains("idlink-emulator-"), "{credentials}");
    let memory_dir = std::path::Path::new(&credentials)
        .parent()
        .unwrap()
        .to_owned();
    assert!(memory_dir.exists());

    let http = reqwest::Client::new();
    let created = http
        .post(format!("{}/api/v2/users", emulator.base_url))
        .bearer_auth(&token)
        .json(&json!({"connection": "github", "user_id": 7, "email": "seven@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let status = emulator.terminate();
    assert!(status.success(), "{status}");
    assert!(!memory_dir.exists(), "the in-memory tenant is gone");
    let text = std::fs::read_to_string(&export).unwrap();
    let snapshot: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(snapshot["users"][0]["user_id"], "github|7");
    assert!(
        snapshot["signing_keys"]
            .as_array()
            .is_some_and(|k| k.len() == 1)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&export).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the export holds keys");
    }

    // The export seeds the next start: same users, same keys (no key generation).
    let again = spawn(&["--bind", "127.0.0.1:0", "--seed", export.to_str().unwrap()]);
    let token = again.admin_token().await;
    let users: Value = http
        .get(format!("{}/api/v2/users", again.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users[0]["user_id"], "github|7");
    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", again.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], snapshot["signing_keys"][0]["kid"]);
}

/// The `kid` the server at `base` publishes.
async fn kid(base: String) -> String {
    let jwks: Value = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"][0]["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_default_key_comes_from_the_user_cache_unless_a_fresh_one_is_asked_for() {
    let cache = tempfile::tempdir().unwrap();
    let start = |extra: &[&str]| {
        let mut command = command(&[&["--bind", "127.0.0.1:0"], extra].concat());
        command.env("XDG_CACHE_HOME", cache.path());
        spawn_command(command)
    };
    let first = start(&[]);
    let cached = kid(first.base_url.clone()).await;
    let key = cache.path().join("idlink/dev-signing-key.pem");
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("PRIVATE KEY")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(key.parent().unwrap()), 0o700);
    }
    let second = start(&[]);
    assert_eq!(
        kid(second.base_url.clone()).await,
        cached,
        "the cached key is reused"
    );
    let fresh = start(&["--fresh-signing-key"]);
    assert_ne!(kid(fresh.base_url.clone()).await, cached);
    drop((first, second, fresh));
    let files: Vec<_> = std::fs::read_dir(key.parent().unwrap()).unwrap().collect();
    assert_eq!(files.len(), 1, "no staged key left behind: {files:?}");
}

#[tokio::test]
async fn a_dev_signing_key_is_made_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("dev-key.pem");
    let first = spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--dev-signing-key",
        key.to_str().unwrap(),
    ]);
    let first_kid = kid(first.base_url.clone()).await;
    drop(first);
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("PRIVATE KEY")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let started = Instant::now();
    let second = spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--dev-signing-key",
        key.to_str().unwrap(),
    ]);
    second.admin_token().await;
    let elapsed = started.elapsed();
    eprintln!("ready with a dev signing key after {elapsed:?}");
    assert_eq!(kid(second.base_url.clone()).await, first_kid);
    // Debug build on a shared machine: generous; the release figure is in docs/performance.md.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

/// `NAME=value` entries of a process's environment.
#[cfg(target_os = "linux")]
fn environment_of(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    raw.split(|b| *b == 0)
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

/// The emulator restarts itself once, as the same process, with one malloc arena (its
/// memory with a large seed; see `malloc_tuning.rs`), and a user's own arena count wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_emulator_runs_with_one_malloc_arena_unless_told_otherwise() {
    let mut emulator = spawn(&["--bind", "127.0.0.1:0"]);
    let env = environment_of(emulator.child.id());
    assert!(
        env.iter()
            .any(|e| e.starts_with("GLIBC_TUNABLES=") && e.contains("glibc.malloc.arena_max=1")),
        "{env:?}"
    );
    emulator.child.kill().unwrap();
    emulator.child.wait().unwrap();

    let mut command = command(&["--bind", "127.0.0.1:0"]);
    command.env("GLIBC_TUNABLES", "glibc.malloc.arena_max=3");
    let mut emulator = spawn_command(command);
    let env = environment_of(emulator.child.id());
    assert!(
        env.contains(&"GLIBC_TUNABLES=glibc.malloc.arena_max=3".to_owned()),
        "{env:?}"
    );
    assert!(
        !env.iter().any(|e| e.starts_with("IDLINK_MALLOC_TUNED=")),
        "{env:?}"
    );
    emulator.child.kill().unwrap();
    emulator.child.wait().unwrap();
}
