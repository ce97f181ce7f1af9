//! `idlink`: serve the Auth0-compatible API, and operate it (or an Auth0 tenant) from
//! the command line.

mod cli;
mod malloc_tuning;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use idlink_server::Server;
use idlink_server::config::{Config, DEFAULT_BIND, DEFAULT_DATABASE_URL, TenantConfig};
use idlink_server::emulator::EmulatorSettings;
use idlink_server::ratelimit::RateLimit;
use idlink_server::startup::StartError;
use idlink_server::store::{DbPooler, SqliteSynchronous, StoreOptions};
use idlink_server::tls::TlsSettings;

#[derive(Debug, Parser)]
#[command(
    name = "idlink",
    version,
    about = "Auth0-compatible users, tokens and account linking",
    after_help = cli::EXIT_CODES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (zero configuration: SQLite file `idlink.db`, port 8080).
    Serve(Box<ServerArgs>),
    /// Run an emulator for tests and local development: an in-memory tenant (unless
    /// --db), an optional --seed, and the control API under /idlink/v1/ (reset,
    /// snapshot, clock, faults), answering on loopback only.
    Emulate(Box<EmulateArgs>),
    /// Manage the tenant's signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Copy a SQLite database consistently while servers use it (VACUUM INTO), e.g.
    /// `idlink backup --db sqlite:///var/lib/idlink/idlink.db /backups/idlink-2026-12-02.db`.
    Backup(BackupArgs),
    #[command(flatten)]
    Remote(cli::RemoteCommand),
    /// Print a shell completion script, e.g. `idlink completions bash > ~/.local/share/bash-completion/completions/idlink`.
    Completions(CompletionsArgs),
}

#[derive(Debug, clap::Args)]
struct BackupArgs {
    /// The database to copy: sqlite://PATH.
    #[arg(long = "db", env = "IDLINK_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    /// The new file to write (must not exist; created with mode 0600).
    file: PathBuf,
}

fn backup(args: &BackupArgs) -> Result<(), Failure> {
    if !args.database_url.starts_with("sqlite:") {
        return Err(StartError::config(format!(
            "idlink backup copies SQLite databases; {} is not one",
            idlink_server::store::postgres::redact_url(&args.database_url)
        ))
        .hint("back PostgreSQL up with pg_dump")
        .into());
    }
    idlink_server::store::sqlite::backup(&args.database_url, &args.file)?;
    println!("backed up to {}", args.file.display());
    Ok(())
}

#[derive(Debug, clap::Args)]
struct CompletionsArgs {
    /// The shell to complete for.
    shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Start signing with a new key. The previous key stays in the JWKS (and keeps
    /// verifying) until every token it signed has expired; running instances switch
    /// within `key_refresh_interval` (default 60 s).
    Rotate(RotateArgs),
}

#[derive(Debug, clap::Args)]
struct RotateArgs {
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long = "db", env = "IDLINK_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    #[command(flatten)]
    db: DbOptions,
}

/// Database tuning (PostgreSQL mostly; the pool size applies to SQLite readers too).
#[derive(Debug, clap::Args)]
struct DbOptions {
    /// Database connections per instance.
    #[arg(long, env = "IDLINK_DB_POOL_SIZE", default_value_t = 8)]
    db_pool_size: u32,
    /// PostgreSQL: cancel statements running longer than this many seconds (0: no limit).
    #[arg(long, env = "IDLINK_DB_STATEMENT_TIMEOUT", default_value_t = 30)]
    db_statement_timeout: u64,
    /// PostgreSQL: retry the first connection at most this many times while the
    /// database is unreachable (within --db-connect-timeout).
    #[arg(long, env = "IDLINK_DB_CONNECT_RETRIES", default_value_t = 5)]
    db_connect_retries: u32,
    /// PostgreSQL: give up connecting at start-up after this many seconds, all
    /// attempts included (each is logged); exit code 69.
    #[arg(long, env = "IDLINK_DB_CONNECT_TIMEOUT", default_value_t = 10.0)]
    db_connect_timeout: f64,
    /// PostgreSQL: prepared statements cached per connection (0: every query goes as
    /// an unnamed statement).
    #[arg(long, env = "IDLINK_DB_STATEMENT_CACHE", default_value_t = 100)]
    db_statement_cache: usize,
    /// PostgreSQL: none (a direct connection or a session pooler) or transaction
    /// (--db goes through PgBouncer with pool_mode = transaction: every call runs in a
    /// transaction with unnamed statements; needs --db-migrate-url).
    #[arg(long, env = "IDLINK_DB_POOLER", default_value = "none")]
    db_pooler: DbPooler,
    /// PostgreSQL: apply migrations over this URL (a direct connection to the server)
    /// instead of --db, e.g. when --db goes through PgBouncer in transaction mode.
    #[arg(long, env = "IDLINK_DB_MIGRATE_URL")]
    db_migrate_url: Option<String>,
    /// SQLite: full (default) acknowledges a write once it is on disk, so it survives
    /// power loss; normal only survives a process crash, for a little more speed.
    #[arg(long, env = "IDLINK_SQLITE_SYNCHRONOUS", default_value = "full")]
    sqlite_synchronous: SqliteSynchronous,
}

impl DbOptions {
    fn store_options(&self) -> StoreOptions {
        StoreOptions {
            max_connections: self.db_pool_size.max(1),
            statement_timeout: (self.db_statement_timeout > 0)
                .then(|| Duration::from_secs(self.db_statement_timeout)),
            connect_retries: self.db_connect_retries,
            connect_timeout: Duration::try_from_secs_f64(self.db_connect_timeout.max(0.1))
                .unwrap_or(Duration::from_secs(10)),
            sqlite_synchronous: self.sqlite_synchronous,
            statement_cache_capacity: Some(self.db_statement_cache),
            migrate_url: self.db_migrate_url.clone(),
            pooler: self.db_pooler,
            ..StoreOptions::default()
        }
    }
}

/// The flags `serve` and `emulate` share.
#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// Address to listen on (`:8080` listens on every interface).
    #[arg(long, env = "IDLINK_BIND", default_value = DEFAULT_BIND)]
    bind: String,
    /// Database URL: sqlite://PATH (created if missing) or postgres://USER@HOST/DB
    /// (migrated at start-up; many instances may share it). Default: sqlite://idlink.db
    /// for serve; a fresh in-memory tenant for emulate.
    #[arg(long = "db", env = "IDLINK_DATABASE_URL")]
    database_url: Option<String>,
    /// Optional TOML file: domain, token lifetimes, connections, clients, rate limit.
    #[arg(long, env = "IDLINK_CONFIG")]
    config: Option<PathBuf>,
    /// The URL clients reach this server at; tokens are issued by `<public-url>/`.
    /// Default: https://<domain> when the config sets one, else http://<bind>.
    #[arg(long, env = "IDLINK_PUBLIC_URL")]
    public_url: Option<String>,
    /// Management API rate limit: free, enterprise, off, or BURST/RATE_PER_SECOND.
    #[arg(long, env = "IDLINK_RATE_LIMIT")]
    rate_limit: Option<RateLimit>,
    /// Each client's own bucket (default: the same shape as --rate-limit).
    #[arg(long, env = "IDLINK_CLIENT_RATE_LIMIT")]
    client_rate_limit: Option<RateLimit>,
    /// Each source address's bucket of requests without a valid token, which never spend
    /// the tenant's or a client's (default: the same shape as --rate-limit).
    #[arg(long, env = "IDLINK_UNAUTHENTICATED_RATE_LIMIT")]
    unauthenticated_rate_limit: Option<RateLimit>,
    /// POST /oauth/token: each client id's bucket (default: generous).
    #[arg(long, env = "IDLINK_TOKEN_RATE_LIMIT")]
    token_rate_limit: Option<RateLimit>,
    /// POST /oauth/token: each source address's bucket (default: generous).
    #[arg(long, env = "IDLINK_TOKEN_ADDRESS_RATE_LIMIT")]
    token_address_rate_limit: Option<RateLimit>,
    /// Seconds a request may run before it is abandoned with a 503 (default 30).
    #[arg(long, env = "IDLINK_REQUEST_TIMEOUT")]
    request_timeout: Option<f64>,
    /// Seconds a client may take to send a whole request head (default 5).
    #[arg(long, env = "IDLINK_HEADER_READ_TIMEOUT")]
    header_read_timeout: Option<f64>,
    /// Seconds a keep-alive connection may sit without a request (default 60).
    #[arg(long, env = "IDLINK_IDLE_TIMEOUT")]
    idle_timeout: Option<f64>,
    /// Connections served at once (default 1024); more wait until one closes.
    #[arg(long, env = "IDLINK_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Pin the admin client's id (with --admin-client-secret).
    #[arg(long, env = "IDLINK_ADMIN_CLIENT_ID", requires = "admin_client_secret")]
    admin_client_id: Option<String>,
    /// Pin the admin client's secret.
    #[arg(
        long,
        env = "IDLINK_ADMIN_CLIENT_SECRET",
        hide_env_values = true,
        requires = "admin_client_id"
    )]
    admin_client_secret: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(
        long,
        env = "IDLINK_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, env = "IDLINK_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate for the bind host, created beside the
    /// database (idlink-tls.crt, idlink-tls.key) and reused on restart.
    #[arg(long, env = "IDLINK_TLS_SELF_SIGNED")]
    tls_self_signed: bool,
    /// Serve Prometheus metrics at GET /metrics on this address (e.g. 127.0.0.1:9090).
    /// Off by default: the API port answers exactly what Auth0 answers, and metrics
    /// (traffic volumes, error rates) are unauthenticated, so they belong on an
    /// address only the monitoring system reaches.
    #[arg(long, env = "IDLINK_METRICS_BIND")]
    metrics_bind: Option<String>,
    /// Log format: text (human-readable, coloured on a terminal) or json (one object
    /// a line, for log shippers). One line per request at info level; RUST_LOG filters.
    #[arg(long, env = "IDLINK_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(flatten)]
    db: DbOptions,
}

/// How log lines are written (stderr).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable, coloured when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs to stderr: every request at info (target `idlink::request`), sqlx and
/// tower-http only when they warn, unless `RUST_LOG` says otherwise.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// `idlink emulate`: the server's flags and the emulator's.
#[derive(Debug, clap::Args)]
struct EmulateArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Start from this seed file (JSON, the snapshot format; see docs/testing-your-app.md).
    /// A seed that does not validate stops the start, naming the file and the JSON path.
    #[arg(long, env = "IDLINK_SEED")]
    seed: Option<PathBuf>,
    /// Write a snapshot (keys included, mode 0600) to this file on SIGINT/SIGTERM.
    #[arg(long, env = "IDLINK_EXPORT_ON_EXIT")]
    export_on_exit: Option<PathBuf>,
    /// Answer control calls (/idlink/v1/) from any address, not only loopback. They have
    /// no authentication: only for a network you trust.
    #[arg(long, env = "IDLINK_ALLOW_REMOTE_CONTROL")]
    allow_remote_control: bool,
    /// Sign tokens with the RSA key in this PEM file, generated (mode 0600) on first use,
    /// so that later starts of a brand-new tenant skip RSA key generation (~1 s).
    /// Default: `$XDG_CACHE_HOME/idlink/dev-signing-key.pem` (or `~/.cache/idlink/…`),
    /// shared by the emulators of this user. For development only.
    #[arg(
        long,
        env = "IDLINK_DEV_SIGNING_KEY",
        conflicts_with = "fresh_signing_key"
    )]
    dev_signing_key: Option<PathBuf>,
    /// Generate a new signing key for this tenant, as `serve` does, instead of the
    /// cached development key.
    #[arg(long, env = "IDLINK_FRESH_SIGNING_KEY")]
    fresh_signing_key: bool,
}

impl EmulateArgs {
    /// The development key file to sign with: the one given, else the per-user cache's,
    /// none with `--fresh-signing-key` or without a home directory.
    fn signing_key_file(&self) -> Option<PathBuf> {
        if self.fresh_signing_key {
            return None;
        }
        if let Some(path) = &self.dev_signing_key {
            return Some(path.clone());
        }
        let non_empty = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let cache = non_empty("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
        Some(cache.join("idlink").join("dev-signing-key.pem"))
    }
}

impl ServerArgs {
    fn into_config(self) -> Result<Config, String> {
        let mut tenant = match &self.config {
            Some(path) => TenantConfig::load(path)?,
            None => TenantConfig::default(),
        };
        if self.rate_limit.is_some() {
            tenant.rate_limit = self.rate_limit;
        }
        if self.client_rate_limit.is_some() {
            tenant.client_rate_limit = self.client_rate_limit;
        }
        if self.unauthenticated_rate_limit.is_some() {
            tenant.unauthenticated_rate_limit = self.unauthenticated_rate_limit;
        }
        if self.token_rate_limit.is_some() {
            tenant.token_rate_limit = self.token_rate_limit;
        }
        if self.token_address_rate_limit.is_some() {
            tenant.token_address_rate_limit = self.token_address_rate_limit;
        }
        if self.request_timeout.is_some() {
            tenant.request_timeout = self.request_timeout;
        }
        if self.header_read_timeout.is_some() {
            tenant.header_read_timeout = self.header_read_timeout;
        }
        if self.idle_timeout.is_some() {
            tenant.idle_timeout = self.idle_timeout;
        }
        if self.max_connections.is_some() {
            tenant.max_connections = self.max_connections;
        }
        let mut config = Config {
            bind: self.bind,
            database_url: self
                .database_url
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            public_url: self.public_url,
            admin_client_id: self.admin_client_id,
            admin_client_secret: self.admin_client_secret,
            credentials_file: None,
            print_credentials: true,
            tenant,
            store: self.db.store_options(),
            tls: None,
            emulator: None,
            // Plain `serve` emulates only the connections configured as emulated.
            emulate_identity_providers: false,
            metrics_bind: self.metrics_bind,
        };
        config.tls = match (self.tls_cert, self.tls_key, self.tls_self_signed) {
            (Some(cert), Some(key), _) => Some(TlsSettings::Files { cert, key }),
            (_, _, true) => Some(TlsSettings::SelfSigned {
                dir: config.tls_dir(),
            }),
            _ => None,
        };
        Ok(config)
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A failure of `serve`, `emulate` or `keys rotate`: a [`StartError`] (exit code by
/// kind) or any other error (exit code 1).
type Failure = Box<dyn std::error::Error + Send + Sync>;

async fn serve(args: ServerArgs) -> Result<(), Failure> {
    let config = args.into_config().map_err(StartError::config)?;
    let server = start(config).await?;
    server
        .serve(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}").into())
}

/// A directory for an in-memory tenant: in RAM (/dev/shm) where there is one, else
/// the OS temp dir. Removed when dropped, i.e. when the emulator exits.
fn memory_dir() -> Result<tempfile::TempDir, String> {
    let shm = std::path::Path::new("/dev/shm");
    let in_ram = shm.is_dir().then(|| {
        tempfile::Builder::new()
            .prefix("idlink-emulator-")
            .tempdir_in(shm)
    });
    match in_ram {
        Some(Ok(dir)) => Ok(dir),
        _ => tempfile::Builder::new()
            .prefix("idlink-emulator-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}")),
    }
}

async fn emulate(args: EmulateArgs) -> Result<(), Failure> {
    let seed = match &args.seed {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| {
                StartError::config(format!("cannot read seed file {}: {e}", path.display()))
            })?;
            Some(
                idlink_server::emulator::snapshot::Snapshot::from_json(&bytes).map_err(|e| {
                    StartError::config(format!("invalid seed file {}: {e}", path.display()))
                })?,
            )
        }
        None => None,
    };
    let signing_key_file = args.signing_key_file();
    // An in-memory tenant is a SQLite file in RAM (the writer thread and the readers
    // share it through the file), deleted on exit.
    let memory = match args.server.database_url {
        Some(_) => None,
        None => Some(memory_dir()?),
    };
    let mut config = args.server.into_config().map_err(StartError::config)?;
    if let Some(dir) = &memory {
        config.database_url = format!("sqlite://{}", dir.path().join("idlink.db").display());
        // Nothing to make durable: commits need not wait for the disk.
        config.store.sqlite_synchronous = SqliteSynchronous::Normal;
        config.credentials_file = Some(dir.path().join("idlink-credentials.json"));
    }
    // Every social connection signs in through the emulated identity-provider page.
    config.emulate_identity_providers = true;
    config.emulator = Some(EmulatorSettings {
        allow_remote_control: args.allow_remote_control,
        seed,
        dev_signing_key: signing_key_file,
    });
    let seed_name = args.seed.as_ref().map(|p| p.display().to_string());
    let server = start(config).await.map_err(|e| -> Failure {
        let message = e.to_string();
        match (&seed_name, message.strip_prefix("invalid seed: ")) {
            (Some(name), Some(problem)) => Box::new(StartError::config(format!(
                "invalid seed file {name}: {problem}"
            ))),
            _ => e,
        }
    })?;
    let state = server.state().clone();
    println!(
        "  control API:     {}/idlink/v1/ ({})",
        server.public_url(),
        if args.allow_remote_control {
            "any address"
        } else {
            "loopback only"
        }
    );
    let served = server.serve(shutdown_signal()).await;
    if let Some(path) = &args.export_on_exit {
        let snapshot = idlink_server::emulator::export(&state, true)
            .await
            .map_err(|e| format!("cannot export on exit: {e}"))?;
        idlink_server::private_files::write_private(path, &snapshot.to_json())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("idlink: snapshot written to {}", path.display());
    }
    drop(memory);
    served.map_err(|e| format!("server error: {e}").into())
}

/// Binds and bootstraps, then prints where the server is and its admin credentials.
async fn start(config: Config) -> Result<Server, Failure> {
    let print = config.print_credentials;
    let credentials_path = config.credentials_path();
    let server = Server::bind(config).await?;
    let admin = server.admin();
    println!(
        "idlink listening on {} ({})",
        server.local_addr(),
        server.public_url()
    );
    println!("  token endpoint:  {}/oauth/token", server.public_url());
    if let Some(cert) = server.tls_cert_path() {
        println!("  TLS certificate: {}", cert.display());
    }
    if let Some(addr) = server.metrics_addr() {
        println!("  metrics:         http://{addr}/metrics");
    }
    println!("  API audience:    {}", server.audience());
    println!("  admin client id: {}", admin.client_id);
    if let (true, Some(secret)) = (print, &admin.generated_secret) {
        println!("  admin secret:    {secret}   (shown once; stored hashed)");
        if let Some(path) = &credentials_path {
            println!("  credentials written to {} (mode 0600)", path.display());
        }
    }
    Ok(server)
}

async fn rotate_keys(args: RotateArgs) -> Result<(), Failure> {
    let options = StoreOptions {
        max_connections: 1,
        ..args.db.store_options()
    };
    let store = idlink_server::store::open(&args.database_url, &options)
        .await
        .map_err(|e| {
            StartError::from_store(
                e,
                &idlink_server::store::postgres::redact_url(&args.database_url),
            )
        })?;
    let previous = store.signing_keys().await.map_err(|e| e.to_string())?;
    let key = tokio::task::spawn_blocking(|| {
        idlink_server::auth::keys::generate_signing_key(idlink_server::clock::unix_now())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    store
        .add_signing_key(&key)
        .await
        .map_err(|e| e.to_string())?;
    println!("new signing key: {}", key.kid);
    for old in previous.iter().filter(|k| k.retired_at.is_none()) {
        println!(
            "retired key:     {} (still published and verifying until its tokens expire)",
            old.kid
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    // The start-up exit codes join the management commands' in `--help`.
    let matches = Cli::command()
        .after_help(format!(
            "{}\n\n{}",
            cli::EXIT_CODES_HELP,
            idlink_server::startup::EXIT_CODES
        ))
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    if matches!(cli.command, Command::Emulate(_)) {
        // Before any thread starts: the emulator runs with one malloc arena.
        malloc_tuning::restart_with_emulator_tunables();
    }
    init_logging(match &cli.command {
        Command::Serve(args) => args.log_format,
        Command::Emulate(args) => args.server.log_format,
        _ => LogFormat::Text,
    });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("idlink: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(*args)),
        Command::Emulate(args) => runtime.block_on(emulate(*args)),
        Command::Keys(KeysCommand::Rotate(args)) => runtime.block_on(rotate_keys(args)),
        Command::Backup(args) => backup(&args),
        Command::Remote(command) => return command.run(&runtime),
        Command::Completions(args) => {
            clap_complete::generate(
                args.shell,
                &mut Cli::command(),
                "idlink",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idlink: {e}");
            match e.downcast_ref::<StartError>() {
                Some(start) => ExitCode::from(start.kind.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}
