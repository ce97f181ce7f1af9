//! `idlink-bench apply-links`: the real `idlink suggest-links` and `idlink apply-links`
//! against idlink on SQLite, over N duplicate pairs (a database user and a GitHub user
//! sharing a verified email), timed end to end; beside it, in the same run and on the
//! same server, the reference: N other pairs linked by plain link calls through
//! `idlink-client` at the same concurrency (what apply-links adds is its two re-reads
//! per link and its result file). A second part runs apply-links against a server
//! limited as Auth0's Free tier (`--rate-limit free`) and checks that it finishes with
//! every pair linked once, and that a rerun links nothing more.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use idlink_client::{ImportUsersParameters, LinkUserIdentityRequestContent, ManagementClient};
use serde_json::{Value, json};

use crate::targets::{BENCH_CLIENT_ID, BENCH_CLIENT_SECRET, IdlinkChild, start_idlink_with};

/// The GitHub user id of pair `i` (apart from any database user id).
fn github_id(i: usize) -> String {
    (500_000 + i).to_string()
}

/// The database user id of pair `i`.
fn database_id(i: usize) -> String {
    format!("{i:024x}")
}

/// Writes an import file of the pairs `range`: each a database user and a GitHub user
/// with the same verified email.
fn write_pairs(path: &Path, range: std::ops::Range<usize>) -> Result<(), String> {
    use std::io::Write;
    let io = |e: std::io::Error| e.to_string();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for i in range {
        let email = format!("pair{i}@example.com");
        let database = json!({"email": email, "email_verified": true, "user_id": database_id(i)});
        let github = json!({"email": email, "email_verified": true, "identities": [
            {"provider": "github", "user_id": github_id(i), "connection": "github",
             "isSocial": true, "profileData": {"email": email, "email_verified": true}}]});
        writeln!(out, "{database}\n{github}").map_err(io)?;
    }
    out.flush().map_err(io)
}

fn client_of(server: &IdlinkChild) -> Result<ManagementClient, String> {
    ManagementClient::builder()
        .base_url(format!("{}/api/v2", server.api.base_url))
        .audience(server.api.audience.clone())
        .client_credentials(BENCH_CLIENT_ID, BENCH_CLIENT_SECRET)
        .max_retries(8)
        .build()
        .map_err(|e| e.to_string())
}

/// Imports the pairs `range` through an import job.
async fn seed(
    client: &ManagementClient,
    dir: &Path,
    range: std::ops::Range<usize>,
) -> Result<(), String> {
    let file = dir.join(format!("pairs-{}.ndjson", range.start));
    let expected = (range.end - range.start) * 2;
    write_pairs(&file, range)?;
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
    let job = client
        .jobs()
        .import_users(
            &file,
            ImportUsersParameters {
                connection_id: database,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let job = client
        .jobs()
        .wait(&job.id, std::time::Duration::from_millis(50))
        .await
        .map_err(|e| e.to_string())?;
    let inserted = job.summary.map_or(0, |s| s.inserted);
    if job.status != "completed" || inserted != expected as u64 {
        return Err(format!(
            "seeding ended {} with {inserted} of {expected} users",
            job.status
        ));
    }
    Ok(())
}

/// Runs the `idlink` CLI against `server`; its seconds, or its stderr when it failed.
fn cli(bin: &Path, server: &IdlinkChild, args: &[&str]) -> Result<f64, String> {
    let started = Instant::now();
    let output = Command::new(bin)
        .args(args)
        .args(["--url", &server.api.base_url])
        .args(["--client-id", BENCH_CLIENT_ID])
        .args(["--client-secret", BENCH_CLIENT_SECRET])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        return Err(format!(
            "idlink {} exited {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(seconds)
}

/// How many outcomes of each kind a result file holds: (linked, other).
fn outcomes(path: &Path) -> Result<(usize, usize), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut linked = 0;
    let mut other = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let outcome: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if outcome["outcome"] == "linked" {
            linked += 1;
        } else {
            other += 1;
        }
    }
    Ok((linked, other))
}

/// suggest-links then apply-links over `pairs` pairs: (suggest s, apply s, linked).
fn plan_and_apply(
    bin: &Path,
    server: &IdlinkChild,
    dir: &Path,
    concurrency: usize,
) -> Result<(f64, f64, usize), String> {
    let plan = dir.join("plan.json");
    let results = dir.join("plan.results.ndjson");
    let plan_arg = plan.to_string_lossy().into_owned();
    let suggest = cli(bin, server, &["suggest-links", "--out", &plan_arg])?;
    let apply = cli(
        bin,
        server,
        &[
            "apply-links",
            &plan_arg,
            "--results",
            &results.to_string_lossy(),
            "--concurrency",
            &concurrency.to_string(),
        ],
    )?;
    let (linked, other) = outcomes(&results)?;
    if other > 0 {
        return Err(format!("apply-links: {other} outcomes other than linked"));
    }
    Ok((suggest, apply, linked))
}

/// Links the pairs `range` by plain link calls, `concurrency` at a time: seconds.
async fn plain_links(
    client: &ManagementClient,
    range: std::ops::Range<usize>,
    concurrency: usize,
) -> Result<f64, String> {
    let next = Arc::new(AtomicUsize::new(range.start));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next, end) = (client.clone(), next.clone(), range.end);
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return Ok::<(), String>(());
                }
                let request: LinkUserIdentityRequestContent =
                    serde_json::from_value(json!({"provider": "github", "user_id": github_id(i)}))
                        .map_err(|e| e.to_string())?;
                client
                    .users()
                    .identities()
                    .link(format!("auth0|{}", database_id(i)), request, None)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    Ok(started.elapsed().as_secs_f64())
}

fn rate(count: usize, seconds: f64) -> f64 {
    (count as f64 / seconds * 10.0).round() / 10.0
}

/// Both parts, as JSON rows.
pub async fn run(
    bin: &Path,
    pairs: usize,
    free_pairs: usize,
    concurrency: usize,
) -> Result<Vec<Value>, String> {
    let mut rows = Vec::new();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let server = start_idlink_with(bin, None, &["--rate-limit", "off"]).await?;
    let client = client_of(&server)?;
    seed(&client, dir.path(), 0..pairs).await?;
    let (suggest, apply, linked) = plan_and_apply(bin, &server, dir.path(), concurrency)?;
    if linked != pairs {
        return Err(format!("apply-links linked {linked} of {pairs} pairs"));
    }
    // The reference: as many other pairs, on the same (now larger) tenant.
    seed(&client, dir.path(), pairs..2 * pairs).await?;
    let plain = plain_links(&client, pairs..2 * pairs, concurrency).await?;
    rows.push(
        json!({"target": "idlink-sqlite", "case": "apply-links", "rate_limit": "off",
        "pairs": pairs, "concurrency": concurrency,
        "suggest_seconds": (suggest * 1000.0).round() / 1000.0,
        "apply_seconds": (apply * 1000.0).round() / 1000.0,
        "links_per_sec": rate(pairs, apply),
        "plain_link_calls_per_sec": rate(pairs, plain),
        "fraction_of_plain_links": (plain / apply * 1000.0).round() / 1000.0}),
    );
    drop(server);

    if free_pairs > 0 {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let server = start_idlink_with(bin, None, &["--rate-limit", "free"]).await?;
        let client = client_of(&server)?;
        seed(&client, dir.path(), 0..free_pairs).await?;
        let (suggest, apply, linked) = plan_and_apply(bin, &server, dir.path(), concurrency)?;
        // A rerun of the same plan: every pair is settled, nothing is linked again.
        let again = cli(
            bin,
            &server,
            &[
                "apply-links",
                &dir.path().join("plan.json").to_string_lossy(),
                "--results",
                &dir.path().join("plan.results.ndjson").to_string_lossy(),
            ],
        )?;
        let (linked_after, _) = outcomes(&dir.path().join("plan.results.ndjson"))?;
        rows.push(
            json!({"target": "idlink-sqlite", "case": "apply-links", "rate_limit": "free",
            "pairs": free_pairs, "concurrency": concurrency,
            "suggest_seconds": (suggest * 1000.0).round() / 1000.0,
            "apply_seconds": (apply * 1000.0).round() / 1000.0,
            "rerun_seconds": (again * 1000.0).round() / 1000.0,
            "linked": linked, "linked_after_rerun": linked_after,
            "correct": linked == free_pairs && linked_after == free_pairs}),
        );
    }
    Ok(rows)
}
