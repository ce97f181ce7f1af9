//! Starting the targets: idlink (the release binary, on SQLite or a fresh PostgreSQL
//! database) and the Firebase Auth Emulator.

use idlink_server::testing::{database_url_with_name, drop_database};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::idlink::IdlinkApi;
use crate::process::{ChildProcess, free_port, wait_ready};

/// The admin client the bench pins on the servers it starts.
pub const BENCH_CLIENT_ID: &str = "idlink-bench-admin";
/// See [`BENCH_CLIENT_ID`].
pub const BENCH_CLIENT_SECRET: &str = "idlink-bench-admin-secret-0123456789abcdef";

/// The workspace root (the bench crate's parent folder).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `idlink` binary to measure: `explicit`, else `IDLINK_BENCH_BIN`, else the one
/// beside this executable — (re)built first when running under `cargo run`, in the
/// same profile as this bench.
pub fn idlink_binary(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(path) = explicit.or_else(|| std::env::var_os("IDLINK_BENCH_BIN").map(PathBuf::from))
    {
        return Ok(path);
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "idlink"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build
            .current_dir(workspace_root())
            .status()
            .map_err(|e| format!("cannot run cargo build: {e}"))?;
        if !status.success() {
            return Err("cargo build -p idlink failed".into());
        }
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let candidate = exe
        .parent()
        .map(|dir| dir.join("idlink"))
        .ok_or("no folder for the current executable")?;
    if candidate.exists() {
        Ok(candidate)
    } else {
        Err(format!(
            "{} not found: run `cargo build --release -p idlink` or pass --idlink-bin",
            candidate.display()
        ))
    }
}

/// An idlink server running as a child process.
#[derive(Debug)]
pub struct IdlinkChild {
    pub process: ChildProcess,
    pub api: IdlinkApi,
    _dir: tempfile::TempDir,
}

/// Starts `bin serve` on a free port, on `database_url` or a fresh SQLite file in a
/// temporary folder.
pub async fn start_idlink(bin: &Path, database_url: Option<&str>) -> Result<IdlinkChild, String> {
    start_idlink_with(bin, database_url, &[]).await
}

/// [`start_idlink`] with further `serve` flags (e.g. `--rate-limit free`).
pub async fn start_idlink_with(
    bin: &Path,
    database_url: Option<&str>,
    extra_args: &[&str],
) -> Result<IdlinkChild, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let db = database_url.map_or_else(
        || format!("sqlite://{}", dir.path().join("idlink.db").display()),
        str::to_owned,
    );
    let port = free_port()?;
    let mut command = Command::new(bin);
    command
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--db", &db])
        .args(extra_args)
        .env("IDLINK_ADMIN_CLIENT_ID", BENCH_CLIENT_ID)
        .env("IDLINK_ADMIN_CLIENT_SECRET", BENCH_CLIENT_SECRET)
        .current_dir(dir.path());
    let mut process = ChildProcess::spawn("idlink", command, &dir.path().join("idlink.log"))?;
    let base_url = format!("http://127.0.0.1:{port}");
    wait_ready(
        &mut process,
        &format!("{base_url}/health"),
        Duration::from_secs(60),
    )
    .await?;
    Ok(IdlinkChild {
        process,
        api: IdlinkApi::new(&base_url, BENCH_CLIENT_ID, BENCH_CLIENT_SECRET),
        _dir: dir,
    })
}

/// A fresh PostgreSQL database for one target, dropped with this value.
#[derive(Debug)]
pub struct PgDatabase {
    pub url: String,
    name: String,
    maintenance_url: String,
}

impl PgDatabase {
    /// Creates `idlink_bench_<tag>` on the server `maintenance_url` reaches.
    pub async fn create(maintenance_url: &str, role: &str) -> Result<Self, String> {
        use sqlx::{Connection as _, Executor as _};
        let name = format!("idlink_bench_{role}_{}", crate::scenario::run_tag());
        let mut conn = sqlx::PgConnection::connect(maintenance_url)
            .await
            .map_err(|e| format!("cannot reach PostgreSQL: {e}"))?;
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .map_err(|e| format!("cannot create database {name}: {e}"))?;
        let _ = conn.close().await;
        Ok(Self {
            url: database_url_with_name(maintenance_url, &name),
            name,
            maintenance_url: maintenance_url.to_owned(),
        })
    }
}

impl Drop for PgDatabase {
    /// Drops the database, also when the bench is interrupted.
    fn drop(&mut self) {
        drop_database(&self.maintenance_url, &self.name);
    }
}

/// The PostgreSQL server to measure on: `IDLINK_BENCH_POSTGRES_URL`, else
/// `IDLINK_TEST_POSTGRES_URL`.
pub fn postgres_url() -> Option<String> {
    ["IDLINK_BENCH_POSTGRES_URL", "IDLINK_TEST_POSTGRES_URL"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
}

/// Which `firebase-tools` the bench installs.
pub const FIREBASE_TOOLS_VERSION: &str = "15.34.2";
/// The `demo-` project: the emulator runs it offline, without credentials.
pub const FIREBASE_PROJECT: &str = "demo-idlink";

/// Where `firebase-tools` is installed: `IDLINK_BENCH_FIREBASE_DIR`, else
/// `bench/.firebase-tools`.
pub fn firebase_dir() -> PathBuf {
    std::env::var_os("IDLINK_BENCH_FIREBASE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".firebase-tools"))
}

fn works(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The `firebase` CLI's entry script, installing `firebase-tools` with npm on first use.
pub fn ensure_firebase_tools() -> Result<PathBuf, String> {
    let dir = firebase_dir();
    let script = dir.join("node_modules/firebase-tools/lib/bin/firebase.js");
    if !works("node") {
        return Err("node not found on PATH".into());
    }
    if script.exists() {
        return Ok(script);
    }
    if !works("npm") {
        return Err("npm not found on PATH".into());
    }
    eprintln!(
        "installing firebase-tools@{FIREBASE_TOOLS_VERSION} into {} (first use) …",
        dir.display()
    );
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let status = Command::new("npm")
        .args(["install", "--prefix"])
        .arg(&dir)
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .arg(format!("firebase-tools@{FIREBASE_TOOLS_VERSION}"))
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if status.success() && script.exists() {
        Ok(script)
    } else {
        Err(format!(
            "npm install firebase-tools@{FIREBASE_TOOLS_VERSION} failed"
        ))
    }
}

/// The Firebase Auth Emulator running as a child process.
#[derive(Debug)]
pub struct FirebaseEmulator {
    pub process: ChildProcess,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    _dir: tempfile::TempDir,
}

/// Starts `firebase emulators:start --only auth --project demo-idlink` on free ports.
pub async fn start_firebase(script: &Path) -> Result<FirebaseEmulator, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (auth, hub, logging) = (free_port()?, free_port()?, free_port()?);
    let config = serde_json::json!({
        "emulators": {
            "auth": {"host": "127.0.0.1", "port": auth},
            "hub": {"host": "127.0.0.1", "port": hub},
            "logging": {"host": "127.0.0.1", "port": logging},
            "ui": {"enabled": false},
        }
    });
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
    let mut process = ChildProcess::spawn(
        "firebase emulator",
        command,
        &dir.path().join("firebase.log"),
    )?;
    let base_url = format!("http://127.0.0.1:{auth}");
    wait_ready(
        &mut process,
        &format!("{base_url}/"),
        Duration::from_secs(120),
    )
    .await?;
    Ok(FirebaseEmulator {
        process,
        base_url,
        _dir: dir,
    })
}
