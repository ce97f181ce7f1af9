//! An in-process server for tests and benchmarks: a fresh SQLite file in a temporary
//! directory, listening on `127.0.0.1:0`, spoken to over real HTTP.
//!
//! With `IDLINK_TEST_BACKEND=postgres`, every [`TestServer::start`] instead creates a
//! fresh PostgreSQL database (`idlink_t_…`) on the server `IDLINK_TEST_POSTGRES_URL`
//! names, and drops it when the test server is dropped, so tests stay parallel.

mod webhooks;

use std::path::PathBuf;

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::server::Server;
use crate::state::AppState;
pub use webhooks::{Received, WebhookReceiver};

/// Admin credentials every test server pins.
pub const TEST_ADMIN_CLIENT_ID: &str = "idlink-test-admin";
/// See [`TEST_ADMIN_CLIENT_ID`].
pub const TEST_ADMIN_CLIENT_SECRET: &str = "idlink-test-admin-secret-0123456789abcdef";

/// A running server. Stops when dropped (or with [`stop`](Self::stop)).
#[derive(Debug)]
pub struct TestServer {
    /// `http://127.0.0.1:PORT`, where the server listens.
    pub base_url: String,
    /// `http://127.0.0.1:PORT/metrics`, when the config set `metrics_bind`.
    pub metrics_url: Option<String>,
    pub admin_client_id: String,
    pub admin_client_secret: String,
    audience: String,
    state: AppState,
    db_path: PathBuf,
    config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database this server created (dropped last).
    database: Option<TestDatabase>,
}

impl TestServer {
    /// Starts a server on a fresh database.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server on a fresh database, after `adjust` has changed its config.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_path = dir.path().join("idlink.db");
        let database = match TestBackend::from_env() {
            TestBackend::Sqlite => None,
            TestBackend::Postgres(url) => Some(TestDatabase::create(&url).await),
        };
        let mut config = Config {
            bind: "127.0.0.1:0".into(),
            database_url: match &database {
                Some(database) => database.url.clone(),
                None => format!("sqlite://{}", db_path.display()),
            },
            admin_client_id: Some(TEST_ADMIN_CLIENT_ID.into()),
            admin_client_secret: Some(TEST_ADMIN_CLIENT_SECRET.into()),
            print_credentials: false,
            ..Config::default()
        };
        if let Some(database) = &database {
            config.store = pooled_store_options(&database.url, config.store);
        }
        adjust(&mut config);
        let mut server = Self::launch(config, db_path).await;
        server.dir = Some(dir);
        server.database = database;
        server
    }

    /// Starts another instance on an existing database (`sqlite://…` or
    /// `postgres://…`, e.g. another test server's [`database_url`](Self::database_url)),
    /// as a second server behind a load balancer would run. It does not own the
    /// database: the server that created it drops it.
    pub async fn start_on(database_url: &str) -> Self {
        Self::start_on_with(database_url, |_| {}).await
    }

    /// [`start_on`](Self::start_on), after `adjust` has changed the config.
    pub async fn start_on_with(database_url: &str, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            bind: "127.0.0.1:0".into(),
            database_url: database_url.to_owned(),
            admin_client_id: Some(TEST_ADMIN_CLIENT_ID.into()),
            admin_client_secret: Some(TEST_ADMIN_CLIENT_SECRET.into()),
            print_credentials: false,
            ..Config::default()
        };
        if database_url.starts_with("postgres") {
            config.store = pooled_store_options(database_url, config.store);
        }
        adjust(&mut config);
        let db_path = config.sqlite_path().unwrap_or_default();
        Self::launch(config, db_path).await
    }

    /// The database URL this server runs on.
    pub fn database_url(&self) -> &str {
        &self.config.database_url
    }

    async fn launch(config: Config, db_path: PathBuf) -> Self {
        let server = Server::bind(config.clone()).await.expect("server starts");
        // Where to connect, which differs from the public URL when a test sets a domain.
        let base_url = format!("http://{}", server.local_addr());
        let audience = server.audience().to_owned();
        let metrics_url = server
            .metrics_addr()
            .map(|addr| format!("http://{addr}/metrics"));
        let state = server.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = rx.await;
        }));
        Self {
            base_url,
            metrics_url,
            admin_client_id: config.admin_client_id.clone().unwrap_or_default(),
            admin_client_secret: config.admin_client_secret.clone().unwrap_or_default(),
            audience,
            state,
            db_path,
            config,
            shutdown: Some(tx),
            task: Some(task),
            dir: None,
            database: None,
        }
    }

    /// `{base_url}/api/v2`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v2", self.base_url)
    }

    /// The Management API audience, `https://127.0.0.1:PORT/api/v2/`.
    pub fn audience(&self) -> String {
        self.audience.clone()
    }

    /// The token issuer, `{base_url}/`.
    pub fn issuer(&self) -> String {
        self.state.tokens.tenant().issuer.clone()
    }

    /// The server's state: its store and token machinery, for tests that need to reach
    /// below HTTP (forging tokens with the tenant's own key, checking storage).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Signs arbitrary claims with the tenant's current RS256 key (as a token the server
    /// itself issued would be), for tests of claim checks.
    pub fn sign_with_tenant_key(&self, claims: &Value) -> String {
        let keys = self.state.tokens.keys().get();
        let (kid, key) = keys.signing();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, key).expect("sign")
    }

    /// The SQLite file (meaningless on PostgreSQL: see [`database_url`](Self::database_url)).
    pub fn db_path(&self) -> &std::path::Path {
        &self.db_path
    }

    /// A client-credentials token of the admin client (every Management scope).
    pub async fn admin_token(&self) -> String {
        self.token(json!({
            "grant_type": "client_credentials",
            "client_id": self.admin_client_id,
            "client_secret": self.admin_client_secret,
            "audience": self.audience,
        }))
        .await["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// POSTs `body` to `/oauth/token` and returns the JSON answer, panicking unless 200.
    pub async fn token(&self, body: Value) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}/oauth/token", self.base_url))
            .json(&body)
            .send()
            .await
            .expect("token request");
        let status = response.status();
        let json: Value = response.json().await.expect("token JSON");
        assert_eq!(status, 200, "token request failed: {json}");
        json
    }

    /// Stops the server, waiting for it to finish.
    pub async fn stop(mut self) {
        self.shutdown_now().await;
    }

    async fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops the server and starts a new one on the same database and the same address
    /// (so the issuer, and with it every issued token, stays valid), as a restart would.
    pub async fn restart(mut self) -> Self {
        self.shutdown_now().await;
        let dir = self.dir.take();
        let mut config = self.config.clone();
        config.bind = self.base_url.trim_start_matches("http://").to_owned();
        let mut next = Self::launch(config, self.db_path.clone()).await;
        next.dir = dir;
        next.database = self.database.take();
        next
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Which database test servers run on, from `IDLINK_TEST_BACKEND` (`sqlite`, the
/// default, or `postgres`, which needs `IDLINK_TEST_POSTGRES_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    /// The maintenance URL new test databases are created through.
    Postgres(String),
}

impl TestBackend {
    /// Reads the environment; panics on `postgres` without `IDLINK_TEST_POSTGRES_URL`.
    pub fn from_env() -> Self {
        match std::env::var("IDLINK_TEST_BACKEND").as_deref() {
            Ok("postgres" | "postgresql") => Self::Postgres(
                postgres_test_url()
                    .expect("IDLINK_TEST_BACKEND=postgres needs IDLINK_TEST_POSTGRES_URL"),
            ),
            Ok("" | "sqlite") | Err(_) => Self::Sqlite,
            Ok(other) => panic!("IDLINK_TEST_BACKEND={other:?}: expected sqlite or postgres"),
        }
    }
}

/// `IDLINK_TEST_POSTGRES_DIRECT_URL`, when set and not empty: the test PostgreSQL
/// server reached directly, while `IDLINK_TEST_POSTGRES_URL` goes through a pooler in
/// transaction mode (`tests/pgbouncer/run.sh`). Test databases are then created and
/// migrated over the direct URL and served through the pooler (`--db-pooler transaction`).
pub fn postgres_direct_test_url() -> Option<String> {
    std::env::var("IDLINK_TEST_POSTGRES_DIRECT_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// The store options of a test server on the PostgreSQL database `url`: as given,
/// or, behind the test pooler, with `--db-pooler transaction` and migrations over the
/// direct URL (what `docs/scaling.md` tells operators to set).
fn pooled_store_options(
    url: &str,
    options: crate::store::StoreOptions,
) -> crate::store::StoreOptions {
    match postgres_direct_test_url() {
        Some(direct) => {
            let name = url.rsplit('/').next().unwrap_or_default();
            let name = name.split('?').next().unwrap_or_default();
            crate::store::StoreOptions {
                pooler: crate::store::DbPooler::Transaction,
                migrate_url: Some(database_url_with_name(&direct, name)),
                ..options
            }
        }
        None => options,
    }
}

/// `IDLINK_TEST_POSTGRES_URL`, when set and not empty.
pub fn postgres_test_url() -> Option<String> {
    std::env::var("IDLINK_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// A fresh PostgreSQL database of its own for one test, dropped (with `FORCE`, closing
/// whatever still connects to it) when this value is dropped. A test process killed
/// before that leaves `idlink_t_*` databases behind for CI to drop.
#[derive(Debug)]
pub struct TestDatabase {
    /// `postgres://…/idlink_t_…`.
    pub url: String,
    name: String,
    maintenance_url: String,
}

impl TestDatabase {
    /// Creates `idlink_t_<random>` on the server `maintenance_url` connects to.
    pub async fn create(maintenance_url: &str) -> Self {
        use sqlx::{Connection as _, Executor as _};
        let name = format!("idlink_t_{}", crate::domain::ids::key_id().to_lowercase());
        // Behind the test pooler, databases come and go over the direct connection.
        let served_url = maintenance_url;
        let direct = postgres_direct_test_url();
        let maintenance_url = direct.as_deref().unwrap_or(maintenance_url);
        let mut conn = sqlx::PgConnection::connect(maintenance_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL: {e}"));
        // CREATE DATABASE copies template1 and fails while another session copies it
        // at the same moment: retry a few times.
        let mut attempt = 0;
        loop {
            match conn
                .execute(format!("CREATE DATABASE {name}").as_str())
                .await
            {
                Ok(_) => break,
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    tracing::debug!(error = %e, "CREATE DATABASE failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => panic!("cannot create test database {name}: {e}"),
            }
        }
        let _ = conn.close().await;
        Self {
            url: database_url_with_name(served_url, &name),
            name,
            maintenance_url: maintenance_url.to_owned(),
        }
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        drop_database(&self.maintenance_url, &self.name);
    }
}

/// Drops database `name` (closing whatever still uses it), waiting until done. Usable
/// from `Drop`, which is synchronous and may run inside a runtime: the work happens on a
/// thread of its own with its own small runtime. Failures are ignored (CI sweeps leftovers).
pub fn drop_database(maintenance_url: &str, name: &str) {
    let (url, name) = (maintenance_url.to_owned(), name.to_owned());
    let dropper = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            use sqlx::{Connection as _, Executor as _};
            if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                let _ = conn
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await;
                let _ = conn.close().await;
            }
        });
    });
    let _ = dropper.join();
}

/// `url` (`postgres://user@host:port/db?params`) naming database `name` instead.
pub fn database_url_with_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let authority = rest.split('/').next().unwrap_or(rest);
    match query {
        Some(query) => format!("{scheme}://{authority}/{name}?{query}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

/// What [`check_ownership`] found in a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// Users (standalone or primary).
    pub users: usize,
    /// Every identity as `provider|id`, each exactly once.
    pub identities: std::collections::BTreeSet<String>,
}

/// Queries that each list the breaches of one ownership invariant (empty when it
/// holds). Plain SQL that both backends run.
pub const OWNERSHIP_BREACHES: [(&str, &str); 5] = [
    (
        "identities whose owner does not exist",
        "SELECT i.provider || '|' || i.identity_user_id FROM identities i \
         LEFT JOIN users u ON u.user_id = i.owner_user_id WHERE u.user_id IS NULL",
    ),
    (
        "identities stored twice",
        "SELECT provider || '|' || identity_user_id FROM identities \
         GROUP BY provider, identity_user_id HAVING COUNT(*) > 1",
    ),
    (
        "users without exactly one main identity",
        "SELECT u.user_id FROM users u LEFT JOIN identities i \
         ON i.owner_user_id = u.user_id AND i.position = 0 \
         GROUP BY u.user_id HAVING COUNT(i.provider) <> 1",
    ),
    (
        "users whose main identity is not their user_id",
        "SELECT u.user_id FROM users u JOIN identities i \
         ON i.owner_user_id = u.user_id AND i.position = 0 \
         WHERE i.provider || '|' || i.identity_user_id <> u.user_id",
    ),
    (
        "users whose identity positions have gaps or repeats",
        "SELECT owner_user_id FROM identities GROUP BY owner_user_id \
         HAVING MAX(position) + 1 <> COUNT(*) OR COUNT(DISTINCT position) <> COUNT(*)",
    ),
];

/// Checks the ownership invariant directly in a PostgreSQL database and panics on any
/// breach: every identity is owned by exactly one existing user, every user has exactly
/// one main identity (position 0) whose key is its user_id, and each user's positions
/// run 0, 1, 2, … without gaps or repeats.
pub async fn check_ownership(database_url: &str) -> Ownership {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .expect("connect for the invariant check");
    for (what, sql) in OWNERSHIP_BREACHES {
        let found = text_column(&mut conn, sql).await;
        assert!(found.is_empty(), "{what}: {found:?}");
    }
    let users = text_column(&mut conn, "SELECT COUNT(*)::text FROM users").await;
    let keys = text_column(
        &mut conn,
        "SELECT provider || '|' || identity_user_id FROM identities",
    )
    .await;
    let _ = conn.close().await;
    let count = keys.len();
    let identities: std::collections::BTreeSet<String> = keys.into_iter().collect();
    assert_eq!(identities.len(), count, "an identity is stored twice");
    Ownership {
        users: users
            .first()
            .and_then(|n| n.parse().ok())
            .expect("user count"),
        identities,
    }
}

/// The first column of every row of `sql`, sent as a simple query: no prepared
/// statement, so the check also runs through a transaction-pooling PgBouncer (where a
/// named statement can meet another client's of the same name).
async fn text_column(conn: &mut sqlx::PgConnection, sql: &str) -> Vec<String> {
    use sqlx::Row as _;
    sqlx::raw_sql(sql)
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("invariant query {sql}: {e}"))
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::database_url_with_name;

    #[test]
    fn database_names_are_swapped() {
        assert_eq!(
            database_url_with_name("postgres://postgres@127.0.0.1:5432/test", "idlink_t_x"),
            "postgres://postgres@127.0.0.1:5432/idlink_t_x"
        );
        assert_eq!(
            database_url_with_name("postgresql://u:p@h/test?sslmode=disable", "d"),
            "postgresql://u:p@h/d?sslmode=disable"
        );
        assert_eq!(
            database_url_with_name("postgres://h", "d"),
            "postgres://h/d"
        );
    }
}
