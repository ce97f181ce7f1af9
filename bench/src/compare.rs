//! `idlink-bench compare`: every target, started and measured in one invocation, so
//! each figure is a ratio taken minutes apart on the same machine.

use std::path::PathBuf;
use std::sync::Arc;

use idlink_server::domain::model::IdentityKey;
use idlink_server::store::Store;

use crate::ceiling::{self, StoreWorker};
use crate::firebase::{FirebaseApi, FirebaseFixture};
use crate::idlink::Fixture;
use crate::load::{self, LoadOptions};
use crate::raw::RawSqlite;
use crate::report::{self, BenchResult};
use crate::scenario::Scenario;
use crate::targets::{self, FirebaseEmulator, IdlinkChild, PgDatabase};

/// What `compare` runs.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub load: LoadOptions,
    /// Each target × scenario is measured this many times (interleaved); the report
    /// gives medians.
    pub runs: usize,
    pub scenarios: Vec<Scenario>,
    pub firebase: bool,
    pub postgres: bool,
    pub idlink_bin: Option<PathBuf>,
}

enum Target {
    /// idlink servers on one database (one, or several sharing the load: worker `i`
    /// talks to server `i % n`), each with the fixture as its own token sees it.
    Idlink {
        name: String,
        servers: Vec<(IdlinkChild, Fixture)>,
        /// Measured on link-unlink alone: a variant of a target measured in full, there
        /// for one ratio (NORMAL against FULL, two instances against one).
        link_unlink_only: bool,
    },
    Ceiling {
        name: String,
        store: Arc<dyn Store>,
        pairs: Vec<(String, IdentityKey)>,
        _dir: Option<tempfile::TempDir>,
    },
    /// `sqlite-raw`: idlink's statements on one plain rusqlite connection.
    Raw {
        raw: Arc<RawSqlite>,
        _dir: tempfile::TempDir,
    },
    Firebase {
        emulator: FirebaseEmulator,
        api: FirebaseApi,
        fixture: FirebaseFixture,
    },
}

impl Target {
    fn name(&self) -> &str {
        match self {
            Self::Idlink { name, .. } | Self::Ceiling { name, .. } => name,
            Self::Raw { .. } => "sqlite-raw",
            Self::Firebase { .. } => "firebase-emulator",
        }
    }

    /// Measures `scenario`, or `None` when this target has no such scenario.
    async fn measure(&mut self, scenario: Scenario, options: &LoadOptions) -> Option<BenchResult> {
        let c = options.concurrency;
        let m = match self {
            Self::Idlink {
                link_unlink_only: true,
                ..
            } if scenario != Scenario::LinkUnlink => return None,
            Self::Idlink { servers, .. } => {
                let n = servers.len();
                let pids: Vec<u32> = servers.iter().map(|(s, _)| s.process.pid()).collect();
                let workers = servers
                    .iter()
                    .enumerate()
                    .flat_map(|(k, (server, fixture))| {
                        let all = server.api.workers(scenario, fixture, c);
                        all.into_iter()
                            .enumerate()
                            .filter(move |(i, _)| i % n == k)
                            .map(|(_, worker)| worker)
                    })
                    .collect();
                // Every instance's CPU: the figure is per op of the whole deployment.
                let cpu = || {
                    pids.iter()
                        .map(|&pid| crate::cpu::tree_seconds(pid))
                        .sum::<Option<f64>>()
                };
                load::run(options, workers, cpu).await
            }
            Self::Ceiling { store, pairs, .. } => {
                if scenario != Scenario::LinkUnlink {
                    return None;
                }
                let workers = (0..c)
                    .map(|i| StoreWorker::new(store.clone(), &pairs[i % pairs.len()]))
                    .collect();
                // In-process: the "server" is this process, load generator included.
                load::run(options, workers, crate::cpu::own_seconds).await
            }
            Self::Raw { raw, .. } => {
                if scenario != Scenario::LinkUnlink {
                    return None;
                }
                let (raw, options) = (raw.clone(), *options);
                match tokio::task::spawn_blocking(move || raw.measure(&options)).await {
                    Ok(Ok(m)) => m,
                    Ok(Err(e)) => {
                        note(&format!("sqlite-raw failed: {e}"));
                        return None;
                    }
                    Err(e) => {
                        note(&format!("sqlite-raw panicked: {e}"));
                        return None;
                    }
                }
            }
            Self::Firebase {
                emulator,
                api,
                fixture,
            } => {
                let pid = emulator.process.pid();
                let workers = api.workers(scenario, fixture, c)?;
                load::run(options, workers, || crate::cpu::tree_seconds(pid)).await
            }
        };
        Some(BenchResult::from_measurement(
            self.name(),
            scenario.name(),
            c,
            &m,
        ))
    }
}

/// A short description of the machine, for the report.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| format!(", {} GiB RAM", kb / (1024 * 1024)))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!(", Linux {}", k.trim()))
        .unwrap_or_default();
    format!("{cores} × {model}{memory}{kernel}")
}

fn note(line: &str) {
    eprintln!("[idlink-bench] {line}");
}

async fn start_targets(
    options: &CompareOptions,
    databases: &mut Vec<PgDatabase>,
) -> Result<Vec<Target>, String> {
    let pairs = options.load.concurrency.max(1);
    let bin = targets::idlink_binary(options.idlink_bin.clone())?;
    note(&format!("idlink binary: {}", bin.display()));
    let mut out = Vec::new();

    let server = targets::start_idlink(&bin, None).await?;
    let fixture = server.api.prepare(pairs).await?;
    out.push(Target::Idlink {
        name: "idlink-sqlite".into(),
        servers: vec![(server, fixture)],
        link_unlink_only: false,
    });
    // What `synchronous=FULL` (the default, durable against power loss) costs.
    let server =
        targets::start_idlink_with(&bin, None, &["--sqlite-synchronous", "normal"]).await?;
    let fixture = server.api.prepare(pairs).await?;
    out.push(Target::Idlink {
        name: "idlink-sqlite-normal".into(),
        servers: vec![(server, fixture)],
        link_unlink_only: true,
    });

    let postgres = if options.postgres {
        targets::postgres_url()
    } else {
        None
    };
    match &postgres {
        None if options.postgres => note(
            "skipping idlink-postgres: set IDLINK_BENCH_POSTGRES_URL (or IDLINK_TEST_POSTGRES_URL) to measure it",
        ),
        None => {}
        Some(url) => match PgDatabase::create(url, "server").await {
            Err(e) => note(&format!("skipping idlink-postgres: {e}")),
            Ok(db) => {
                let started = targets::start_idlink(&bin, Some(&db.url)).await;
                let url = db.url.clone();
                databases.push(db);
                match started {
                    Err(e) => note(&format!(
                        "skipping idlink-postgres: the server did not start on {}: {e}",
                        redact(&url)
                    )),
                    Ok(server) => {
                        let fixture = server.api.prepare(pairs).await?;
                        out.push(Target::Idlink {
                            name: "idlink-postgres".into(),
                            servers: vec![(server, fixture)],
                            link_unlink_only: false,
                        });
                    }
                }
            }
        },
    }
    if let Some(url) = &postgres {
        if out.iter().any(|t| t.name() == "idlink-postgres") {
            out.push(start_postgres_pair(&bin, url, pairs, databases).await?);
        }
    }

    if options.scenarios.contains(&Scenario::LinkUnlink) {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let url = format!("sqlite://{}", dir.path().join("ceiling.db").display());
        let store = ceiling::open(&url).await?;
        let pairs = ceiling::prepare(&store, pairs).await?;
        out.push(Target::Ceiling {
            name: "store-ceiling-sqlite".into(),
            store,
            pairs,
            _dir: Some(dir),
        });
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let raw = RawSqlite::create(&dir.path().join("raw.db"), options.load.concurrency.max(1))?;
        out.push(Target::Raw {
            raw: Arc::new(raw),
            _dir: dir,
        });
        if let Some(url) = &postgres {
            if out.iter().any(|t| t.name() == "idlink-postgres") {
                let db = PgDatabase::create(url, "ceiling").await?;
                let store = ceiling::open(&db.url).await;
                databases.push(db);
                let store = store?;
                let pairs = ceiling::prepare(&store, options.load.concurrency.max(1)).await?;
                out.push(Target::Ceiling {
                    name: "store-ceiling-postgres".into(),
                    store,
                    pairs,
                    _dir: None,
                });
            }
        }
    }

    if options.firebase {
        match targets::ensure_firebase_tools() {
            Err(e) => note(&format!("skipping firebase-emulator: {e}")),
            Ok(script) => match targets::start_firebase(&script).await {
                Err(e) => note(&format!(
                    "skipping firebase-emulator: it did not start: {e}"
                )),
                Ok(emulator) => {
                    let api = FirebaseApi::new(&emulator.base_url);
                    let fixture = api.prepare(pairs).await?;
                    out.push(Target::Firebase {
                        emulator,
                        api,
                        fixture,
                    });
                }
            },
        }
    }
    Ok(out)
}

/// `idlink-postgres-2x`: two idlink instances on one fresh database, the load split
/// over both (each worker keeps to one instance; each instance signs its own tokens,
/// for its own audience).
async fn start_postgres_pair(
    bin: &std::path::Path,
    url: &str,
    pairs: usize,
    databases: &mut Vec<PgDatabase>,
) -> Result<Target, String> {
    let db = PgDatabase::create(url, "pair").await?;
    let url = db.url.clone();
    databases.push(db);
    let first = targets::start_idlink(bin, Some(&url)).await?;
    let second = targets::start_idlink(bin, Some(&url)).await?;
    let fixture = first.api.prepare(pairs).await?;
    let theirs = Fixture {
        token: second.api.token().await?,
        ..fixture.clone()
    };
    Ok(Target::Idlink {
        name: "idlink-postgres-2x".into(),
        servers: vec![(first, fixture), (second, theirs)],
        link_unlink_only: true,
    })
}

/// `scheme://user@host/db` without a password.
fn redact(url: &str) -> String {
    match url.split_once("://").and_then(|(s, rest)| {
        let (auth, host) = rest.split_once('@')?;
        let user = auth.split(':').next().unwrap_or_default();
        Some(format!("{s}://{user}@{host}"))
    }) {
        Some(r) => r,
        None => url.to_owned(),
    }
}

/// Starts every target, measures each scenario `runs` times (interleaved), stops them;
/// returns every run's rows.
pub async fn compare(options: &CompareOptions) -> Result<Vec<BenchResult>, String> {
    let mut databases = Vec::new();
    let started = start_targets(options, &mut databases).await;
    let mut results = Vec::new();
    let outcome = match started {
        Err(e) => Err(e),
        Ok(mut targets) => {
            for run in 1..=options.runs {
                note(&format!("run {run} of {}", options.runs));
                for target in &mut targets {
                    for &scenario in &options.scenarios {
                        if let Some(row) = target.measure(scenario, &options.load).await {
                            println!("{}", row.human());
                            results.push(row);
                        }
                    }
                }
            }
            drop(targets);
            Ok(())
        }
    };
    drop(databases);
    outcome.map(|()| results)
}

/// Lines comparing the medians with the targets.
pub fn verdicts(medians: &[BenchResult]) -> Vec<String> {
    let find = |target: &str, scenario: &str| {
        medians
            .iter()
            .find(|r| r.target == target && r.scenario == scenario)
    };
    let mut lines = Vec::new();
    let idlink = find("idlink-sqlite", "link-unlink");
    if let (Some(ours), Some(fb)) = (idlink, find("firebase-emulator", "link-unlink")) {
        let ratio = ours.ops_per_sec / fb.ops_per_sec.max(f64::MIN_POSITIVE);
        lines.push(format!(
            "link-unlink idlink-sqlite / firebase-emulator: {ratio:.2}× ops/s (target ≥ 3×: {}); p99 {:.2} ms vs {:.2} ms (target ≤: {})",
            met(ratio >= 3.0),
            ours.p99_ms,
            fb.p99_ms,
            met(ours.p99_ms <= fb.p99_ms)
        ));
    }
    if let (Some(ours), Some(ceiling)) = (idlink, find("store-ceiling-sqlite", "link-unlink")) {
        let share = ours.ops_per_sec / ceiling.ops_per_sec.max(f64::MIN_POSITIVE);
        lines.push(format!(
            "link-unlink idlink-sqlite / store-ceiling-sqlite: {:.0} % (target ≥ 50 %: {})",
            share * 100.0,
            met(share >= 0.5)
        ));
    }
    if let (Some(ours), Some(raw)) = (idlink, find("sqlite-raw", "link-unlink")) {
        let share = ours.ops_per_sec / raw.ops_per_sec.max(f64::MIN_POSITIVE);
        lines.push(format!(
            "link-unlink idlink-sqlite / sqlite-raw: {:.0} % (target ≥ 50 %: {})",
            share * 100.0,
            met(share >= 0.5)
        ));
    }
    if let (Some(ours), Some(ceiling)) = (
        find("idlink-postgres", "link-unlink"),
        find("store-ceiling-postgres", "link-unlink"),
    ) {
        let share = ours.ops_per_sec / ceiling.ops_per_sec.max(f64::MIN_POSITIVE);
        lines.push(format!(
            "link-unlink idlink-postgres / store-ceiling-postgres: {:.0} %",
            share * 100.0
        ));
    }
    if let (Some(full), Some(normal)) = (
        find("idlink-sqlite", "link-unlink"),
        find("idlink-sqlite-normal", "link-unlink"),
    ) {
        lines.push(format!(
            "link-unlink idlink-sqlite (FULL) / idlink-sqlite-normal: {:.2}× ops/s (what power-loss durability costs)",
            full.ops_per_sec / normal.ops_per_sec.max(f64::MIN_POSITIVE)
        ));
    }
    if let (Some(one), Some(two)) = (
        find("idlink-postgres", "link-unlink"),
        find("idlink-postgres-2x", "link-unlink"),
    ) {
        lines.push(format!(
            "link-unlink idlink-postgres-2x / idlink-postgres: {:.2}× ops/s (two instances on one database)",
            two.ops_per_sec / one.ops_per_sec.max(f64::MIN_POSITIVE)
        ));
    }
    if let Some(token) = find("idlink-sqlite", "token") {
        lines.push(format!(
            "token idlink-sqlite: {:.0}/s (target ≥ 1,000/s: {})",
            token.ops_per_sec,
            met(token.ops_per_sec >= 1000.0)
        ));
    }
    lines
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// Prints the medians (human lines, verdicts and a Markdown table) and, with `json`,
/// the JSON line last. Returns the medians.
pub fn print_summary(all: &[BenchResult], runs: usize, json: bool) -> Vec<BenchResult> {
    let medians = report::medians(all);
    println!();
    println!("machine: {}", machine());
    println!("medians of {runs} run(s):");
    for row in &medians {
        println!("{}", row.human());
    }
    println!();
    for line in verdicts(&medians) {
        println!("{line}");
    }
    println!();
    print!("{}", report::markdown(&medians));
    if json {
        println!("{}", report::json_line(&medians));
    }
    medians
}
