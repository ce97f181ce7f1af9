//! `idlink-bench`: measure one scenario against a running server, or `compare` every
//! target in one invocation.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use idlink_bench::compare::{self, CompareOptions};
use idlink_bench::firebase::FirebaseApi;
use idlink_bench::idlink::IdlinkApi;
use idlink_bench::load::{self, LoadOptions};
use idlink_bench::report::{self, BenchResult};
use idlink_bench::scenario::Scenario;
use idlink_bench::{cpu, parse_duration};

#[derive(Debug, Parser)]
#[command(
    name = "idlink-bench",
    version,
    about = "Load generator for idlink: link/unlink, token and read scenarios",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start idlink (SQLite, and PostgreSQL when IDLINK_BENCH_POSTGRES_URL or
    /// IDLINK_TEST_POSTGRES_URL is set), the store ceiling and the Firebase Auth
    /// Emulator, and measure them all side by side.
    Compare(CompareArgs),
    /// Start `idlink emulate` (cold, with a dev signing key, restarted, seeded with
    /// 10,000 users) and the Firebase Auth Emulator, and report for each the time to
    /// ready (/health and a first token) and the resident memory, as JSON.
    Startup(StartupArgs),
    /// Import N users (Auth0's bulk-import JSON, bcrypt hashes, half with a linked
    /// identity) into idlink on SQLite through the jobs API, export them again, and
    /// insert the same rows on one plain SQLite connection (the ceiling), as JSON.
    Import(ImportArgs),
    /// Run the real `idlink suggest-links` and `idlink apply-links` over N duplicate
    /// pairs on idlink (SQLite, no rate limit) beside plain link calls on the same
    /// server, then apply-links under Auth0 Free's rate limit (finishes, links once), as
    /// JSON.
    ApplyLinks(ApplyLinksArgs),
}

#[derive(Debug, Args)]
struct ApplyLinksArgs {
    /// The idlink binary (default: built by cargo, beside this executable); it is both
    /// the server and the CLI.
    #[arg(long, env = "IDLINK_BENCH_BIN")]
    idlink_bin: Option<PathBuf>,
    /// Duplicate pairs to link without a rate limit.
    #[arg(long, default_value_t = 10_000)]
    pairs: usize,
    /// Duplicate pairs to link under `--rate-limit free` (0 leaves that part out).
    #[arg(long, default_value_t = 20)]
    free_pairs: usize,
    /// apply-links' `--concurrency`, and the plain calls' concurrency.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

async fn run_apply_links(args: ApplyLinksArgs) -> Result<Vec<BenchResult>, String> {
    let bin = idlink_bench::targets::idlink_binary(args.idlink_bin)?;
    let rows =
        idlink_bench::apply_links::run(&bin, args.pairs, args.free_pairs, args.concurrency).await?;
    print_rows("apply_links", &rows);
    Ok(Vec::new())
}

/// The rows on stderr one a line, then one JSON document on stdout.
fn print_rows(name: &str, rows: &[serde_json::Value]) {
    for row in rows {
        eprintln!("{row}");
    }
    println!(
        "{}",
        serde_json::json!({name: rows, "profile": if cfg!(debug_assertions) { "debug" } else { "release" }})
    );
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// The idlink binary (default: built by cargo, beside this executable).
    #[arg(long, env = "IDLINK_BENCH_BIN")]
    idlink_bin: Option<PathBuf>,
    /// Users in the file.
    #[arg(long, default_value_t = 100_000)]
    users: usize,
}

async fn run_import(args: ImportArgs) -> Result<Vec<BenchResult>, String> {
    let bin = idlink_bench::targets::idlink_binary(args.idlink_bin)?;
    let rows = idlink_bench::import::run(&bin, args.users).await?;
    print_rows("import", &rows);
    Ok(Vec::new())
}

#[derive(Debug, Args)]
struct StartupArgs {
    /// The idlink binary (default: built by cargo, beside this executable).
    #[arg(long, env = "IDLINK_BENCH_BIN")]
    idlink_bin: Option<PathBuf>,
    /// Users in the seeded case.
    #[arg(long, default_value_t = 10_000)]
    seeded_users: usize,
    /// Leave out the Firebase Auth Emulator.
    #[arg(long)]
    no_firebase: bool,
}

async fn run_startup(args: StartupArgs) -> Result<Vec<BenchResult>, String> {
    let bin = idlink_bench::targets::idlink_binary(args.idlink_bin)?;
    let mut rows = idlink_bench::startup::idlink_cases(&bin, args.seeded_users).await?;
    if !args.no_firebase {
        let script = idlink_bench::targets::ensure_firebase_tools()?;
        rows.push(idlink_bench::startup::firebase_case(&script).await?);
    }
    for row in &rows {
        eprintln!(
            "{:<24} {:<14} ready {:>9} ms  (health {:>9} ms)  rss {:>7} MiB",
            row["target"].as_str().unwrap_or_default(),
            row["case"].as_str().unwrap_or_default(),
            row["ready_ms"],
            row["health_ms"],
            row["rss_mib"]
        );
    }
    println!(
        "{}",
        serde_json::json!({"startup": rows, "profile": if cfg!(debug_assertions) { "debug" } else { "release" }})
    );
    Ok(Vec::new())
}

#[derive(Debug, Clone, Args)]
struct LoadArgs {
    /// Workers, each with one request in flight on its own keep-alive connection.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The measured window (e.g. 10, 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Load before the window, not measured.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Print, last, one JSON line {"results": [...]}.
    #[arg(long)]
    json: bool,
}

impl LoadArgs {
    fn options(&self) -> LoadOptions {
        LoadOptions {
            concurrency: self.concurrency.max(1),
            duration: self.duration,
            warmup: self.warmup,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    Idlink,
    Firebase,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The server: idlink's base URL, or the Firebase Auth Emulator's with --kind firebase.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// link-unlink, token or read.
    #[arg(long, default_value = "link-unlink")]
    scenario: Scenario,
    /// What the server at --url is.
    #[arg(long, value_enum, default_value = "idlink")]
    kind: Kind,
    /// The admin client (every Management scope).
    #[arg(long, env = "IDLINK_ADMIN_CLIENT_ID", default_value = "")]
    client_id: String,
    #[arg(
        long,
        env = "IDLINK_ADMIN_CLIENT_SECRET",
        default_value = "",
        hide_env_values = true
    )]
    client_secret: String,
    /// The Management API audience; default https://HOST:PORT/api/v2/ of --url.
    #[arg(long)]
    audience: Option<String>,
    /// The name reported as "target".
    #[arg(long)]
    target: Option<String>,
    /// The server's process id, to report its CPU seconds (local servers only).
    #[arg(long)]
    server_pid: Option<u32>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// Measure each target and scenario this many times; the summary gives medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Only these scenarios (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "link-unlink,token,read")]
    scenarios: Vec<Scenario>,
    /// Leave out the Firebase Auth Emulator.
    #[arg(long)]
    no_firebase: bool,
    /// Leave out PostgreSQL even when its URL is set.
    #[arg(long)]
    no_postgres: bool,
    /// The idlink binary (default: built by cargo, beside this executable).
    #[arg(long, env = "IDLINK_BENCH_BIN")]
    idlink_bin: Option<PathBuf>,
    /// A few seconds per scenario, one run, to check that everything works (errors
    /// fail it; slowness never does).
    #[arg(long)]
    smoke: bool,
    #[command(flatten)]
    load: LoadArgs,
}

async fn run_one(args: RunArgs) -> Result<Vec<BenchResult>, String> {
    let options = args.load.options();
    let pid = args.server_pid;
    let server_cpu = move || pid.and_then(cpu::tree_seconds);
    let m = match args.kind {
        Kind::Idlink => {
            if args.client_id.is_empty() || args.client_secret.is_empty() {
                return Err(
                    "--client-id and --client-secret (or IDLINK_ADMIN_CLIENT_ID / IDLINK_ADMIN_CLIENT_SECRET) are required".into(),
                );
            }
            let mut api = IdlinkApi::new(&args.url, &args.client_id, &args.client_secret);
            if let Some(audience) = args.audience {
                api.audience = audience;
            }
            let fixture = api.prepare(options.concurrency).await?;
            let workers = api.workers(args.scenario, &fixture, options.concurrency);
            load::run(&options, workers, server_cpu).await
        }
        Kind::Firebase => {
            let api = FirebaseApi::new(&args.url);
            let fixture = api.prepare(options.concurrency).await?;
            let workers = api
                .workers(args.scenario, &fixture, options.concurrency)
                .ok_or("the Firebase Auth Emulator has no client-credentials grant")?;
            load::run(&options, workers, server_cpu).await
        }
    };
    let target = args.target.unwrap_or_else(|| match args.kind {
        Kind::Idlink => "idlink".into(),
        Kind::Firebase => "firebase-emulator".into(),
    });
    let row = BenchResult::from_measurement(&target, args.scenario.name(), options.concurrency, &m);
    println!("{}", row.human());
    if args.load.json {
        println!("{}", report::json_line(std::slice::from_ref(&row)));
    }
    Ok(vec![row])
}

async fn run_compare(args: CompareArgs) -> Result<Vec<BenchResult>, String> {
    let mut load = args.load.options();
    let mut runs = args.runs.max(1);
    if args.smoke {
        load.duration = load.duration.min(Duration::from_secs(2));
        load.warmup = load.warmup.min(Duration::from_millis(500));
        runs = 1;
    }
    let options = CompareOptions {
        load,
        runs,
        scenarios: args.scenarios,
        firebase: !args.no_firebase,
        postgres: !args.no_postgres,
        idlink_bin: args.idlink_bin,
    };
    let all = compare::compare(&options).await?;
    Ok(compare::print_summary(&all, runs, args.load.json))
}

async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("idlink-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let work = async {
            match cli.command {
                Some(Command::Compare(args)) => run_compare(args).await,
                Some(Command::Startup(args)) => run_startup(args).await,
                Some(Command::Import(args)) => run_import(args).await,
                Some(Command::ApplyLinks(args)) => run_apply_links(args).await,
                None => run_one(cli.run).await,
            }
        };
        // On Ctrl-C or SIGTERM the work is dropped, which stops the servers it started.
        tokio::select! {
            outcome = work => outcome,
            () = interrupted() => Err("interrupted".into()),
        }
    });
    match outcome {
        Ok(rows) if rows.iter().all(|r| r.errors.is_empty()) => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("idlink-bench: some requests failed (see the errors above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("idlink-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
