//! `idlink-bench import`: an import job of N users into idlink on SQLite, then an export
//! job of the same users, through `idlink-client` as `idlink import`/`idlink export` run
//! them; the server's peak resident memory sampled during each. The same run measures
//! the ceiling: the same rows inserted on one plain SQLite connection
//! ([`crate::raw::insert_ceiling`]), so the import is also a fraction of what SQLite and
//! the disk allow.
//!
//! The file is Auth0's bulk-import JSON; every user has a bcrypt `custom_password_hash`
//! (kept, not recomputed) and every second one a linked GitHub identity (idlink's
//! `identities` extension), as in the startup bench's seed.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use idlink_client::{ExportUsersParameters, ImportUsersParameters, ManagementClient};
use serde_json::{Value, json};

use crate::startup::rss_mib;
use crate::targets::{BENCH_CLIENT_ID, BENCH_CLIENT_SECRET, start_idlink};

/// A well-formed bcrypt hash (cost 4): imported as is, never computed here.
const HASH: &str = "$2b$04$C6UzMDM.H6dfI/f/IKxGhuIL1cHnCWcRa5TxvmS3WYtGJJtHI3Mpe";

/// Writes the import file of `users` users to `path`, one record a line.
fn write_file(path: &Path, users: usize) -> Result<(), String> {
    use std::io::Write;
    let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut out = std::io::BufWriter::new(file);
    let io = |e: std::io::Error| e.to_string();
    writeln!(out, "[").map_err(io)?;
    for i in 0..users {
        let mut user = json!({
            "email": format!("user{i}@example.com"), "email_verified": true,
            "user_id": format!("{i:024x}"), "name": format!("User {i}"),
            "user_metadata": {"n": i},
            "custom_password_hash": {"algorithm": "bcrypt", "hash": {"value": HASH}},
        });
        if i % 2 == 0 {
            user["identities"] = json!([
                {"provider": "auth0", "user_id": format!("{i:024x}"),
                 "connection": "Username-Password-Authentication"},
                {"provider": "github", "user_id": (100_000 + i).to_string(), "connection": "github",
                 "isSocial": true, "profileData": {"email": format!("u{i}@github.example")}}
            ]);
        }
        let comma = if i + 1 < users { "," } else { "" };
        writeln!(out, "{user}{comma}").map_err(io)?;
    }
    writeln!(out, "]").map_err(io)?;
    out.flush().map_err(io)
}

/// Samples the resident memory of `pid` until the flag is set; the highest seen.
fn sample_peak(pid: u32, done: Arc<AtomicBool>) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut peak: f64 = 0.0;
        while !done.load(Ordering::Relaxed) {
            peak = peak.max(rss_mib(pid).unwrap_or(0.0));
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    })
}

/// Runs `work` while sampling `pid`'s memory: (seconds, peak MiB, the result).
async fn measured<T>(
    pid: u32,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<(f64, f64, T), String> {
    let done = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak(pid, done.clone());
    let started = Instant::now();
    let result = work.await;
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0.0);
    Ok((seconds, peak, result?))
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The import, the export and the ceiling, as JSON rows.
pub async fn run(bin: &Path, users: usize) -> Result<Vec<Value>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join("users.json");
    write_file(&file, users)?;
    let file_mib = std::fs::metadata(&file).map_err(|e| e.to_string())?.len() as f64 / 1048576.0;

    let server = start_idlink(bin, None).await?;
    let pid = server.process.pid();
    let idle = rss_mib(pid).unwrap_or(0.0);
    let client = ManagementClient::builder()
        .base_url(format!("{}/api/v2", server.api.base_url))
        .audience(server.api.audience.clone())
        .client_credentials(BENCH_CLIENT_ID, BENCH_CLIENT_SECRET)
        .build()
        .map_err(|e| e.to_string())?;
    let connections: Vec<Value> = client
        .request(reqwest::Method::GET, "/connections")
        .await
        .map_err(|e| e.to_string())?;
    let database = connections
        .iter()
        .find(|c| c["name"] == "Username-Password-Authentication")
        .and_then(|c| c["id"].as_str())
        .ok_or("no Username-Password-Authentication connection")?
        .to_owned();
    let every = Duration::from_millis(50);

    let (import_s, import_peak, job) = measured(pid, async {
        let job = client
            .jobs()
            .import_users(
                &file,
                ImportUsersParameters {
                    connection_id: database.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        client
            .jobs()
            .wait(&job.id, every)
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    let summary = job.summary.unwrap_or_default();
    if job.status != "completed" || summary.inserted != users as u64 {
        return Err(format!("import ended {} with {summary:?}", job.status));
    }

    let (export_s, export_peak, exported) = measured(pid, async {
        let params = ExportUsersParameters {
            format: Some("json".into()),
            ..Default::default()
        };
        let job = client
            .jobs()
            .export_users(&params, None)
            .await
            .map_err(|e| e.to_string())?;
        let job = client
            .jobs()
            .wait(&job.id, every)
            .await
            .map_err(|e| e.to_string())?;
        let location = job.location.ok_or("an export without a location")?;
        let gz = client
            .jobs()
            .download(&location)
            .await
            .map_err(|e| e.to_string())?;
        Ok(gz.len())
    })
    .await?;

    let ceiling = crate::raw::insert_ceiling(&dir.path().join("ceiling.db"), users)?;
    let import_rate = users as f64 / import_s;
    Ok(vec![
        json!({"target": "idlink-sqlite", "case": "import", "users": users,
            "file_mib": round(file_mib), "seconds": round(import_s * 1000.0) / 1000.0,
            "users_per_sec": round(import_rate), "idle_rss_mib": round(idle),
            "peak_rss_mib": round(import_peak), "fraction_of_ceiling": round(import_rate / ceiling * 1000.0) / 1000.0}),
        json!({"target": "idlink-sqlite", "case": "export", "users": users,
            "seconds": round(export_s * 1000.0) / 1000.0, "users_per_sec": round(users as f64 / export_s),
            "gzip_mib": round(exported as f64 / 1048576.0), "peak_rss_mib": round(export_peak)}),
        json!({"target": "sqlite-raw", "case": "insert", "users": users,
            "users_per_sec": round(ceiling)}),
    ])
}
