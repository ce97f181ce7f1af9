//! An in-process server for tests and benchmarks: a fresh SQLite file in a temporary
//! directory, listening on `127.0.0.1:0`, spoken to over real HTTP.

use std::path::PathBuf;

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::server::Server;
use crate::state::AppState;

/// Admin credentials every test server pins.
pub const TEST_ADMIN_CLIENT_ID: &str = "idlink-test-admin";
/// See [`TEST_ADMIN_CLIENT_ID`].
pub const TEST_ADMIN_CLIENT_SECRET: &str = "idlink-test-admin-secret-0123456789abcdef";

/// A running server. Stops when dropped (or with [`stop`](Self::stop)).
#[derive(Debug)]
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    pub admin_client_id: String,
    pub admin_client_secret: String,
    audience: String,
    state: AppState,
    db_path: PathBuf,
    config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    dir: Option<tempfile::TempDir>,
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
        let mut config = Config {
            bind: "127.0.0.1:0".into(),
            database_url: format!("sqlite://{}", db_path.display()),
            admin_client_id: Some(TEST_ADMIN_CLIENT_ID.into()),
            admin_client_secret: Some(TEST_ADMIN_CLIENT_SECRET.into()),
            print_credentials: false,
            ..Config::default()
        };
        adjust(&mut config);
        let mut server = Self::launch(config, db_path).await;
        server.dir = Some(dir);
        server
    }

    async fn launch(config: Config, db_path: PathBuf) -> Self {
        let server = Server::bind(config.clone()).await.expect("server starts");
        let base_url = server.public_url().to_owned();
        let audience = server.audience().to_owned();
        let state = server.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = rx.await;
        }));
        Self {
            base_url,
            admin_client_id: config.admin_client_id.clone().unwrap_or_default(),
            admin_client_secret: config.admin_client_secret.clone().unwrap_or_default(),
            audience,
            state,
            db_path,
            config,
            shutdown: Some(tx),
            task: Some(task),
            dir: None,
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

    /// The SQLite file.
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
