//! Starting the server: bind, open the store, bootstrap the tenant, serve.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::auth::keys::KeyRing;
use crate::auth::secrets::ClientSecretCache;
use crate::auth::tokens::{Tenant, Tokens};
use crate::bootstrap::{self, AdminClient};
use crate::config::Config;
use crate::connections::{self, ConnectionLimits};
use crate::metrics::Metrics;
use crate::ratelimit::{RateLimit, RateLimiter, TokenEndpointLimiter};
use crate::startup::StartError as Startup;
use crate::state::AppState;
use crate::store;
use crate::tls::{self, Tls, TlsListener};

/// Why the server could not start: a [`crate::startup::StartError`] (what, where, what
/// to do, exit code) for the failures an operator can fix, else any error.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// A bound, bootstrapped server, ready to [`serve`](Server::serve).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    admin: AdminClient,
    audience: String,
    tls: Option<Tls>,
    key_refresh: std::time::Duration,
    connection_limits: ConnectionLimits,
    /// The `--metrics-bind` listener, when metrics are on.
    metrics_listener: Option<(TcpListener, SocketAddr)>,
}

/// The address to listen on: `:8080` (no host, as Go and Docker write it) means every
/// IPv4 interface, `0.0.0.0:8080`.
pub fn listen_address(bind: &str) -> String {
    match bind.strip_prefix(':') {
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("0.0.0.0:{port}")
        }
        _ => bind.to_owned(),
    }
}

/// `(public_url, api host)` for a server listening on `local_addr`.
fn public_identity(config: &Config, local_addr: SocketAddr) -> (String, String) {
    let domain = config
        .tenant
        .domain
        .as_deref()
        .map(|d| d.trim_end_matches('/'));
    let public_url = match (&config.public_url, domain) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, Some(domain)) => format!("https://{domain}"),
        (None, None) if config.tls.is_some() => format!("https://{local_addr}"),
        (None, None) => format!("http://{local_addr}"),
    };
    let host = domain.map(str::to_owned).unwrap_or_else(|| {
        let without_scheme = public_url
            .split_once("://")
            .map_or(public_url.as_str(), |(_, rest)| rest);
        without_scheme
            .split('/')
            .next()
            .unwrap_or(without_scheme)
            .to_owned()
    });
    (public_url, host)
}

impl Server {
    /// Binds `config.bind`, opens the database (creating and migrating it), bootstraps
    /// the tenant and builds the application state.
    pub async fn bind(mut config: Config) -> Result<Self, StartError> {
        config.validate().map_err(Startup::config)?;
        let bind = listen_address(&config.bind);
        let listener = TcpListener::bind(&bind)
            .await
            .map_err(|e| Startup::listen(&config.bind, "--bind", &e))?;
        let local_addr = listener.local_addr()?;
        let metrics_listener = match &config.metrics_bind {
            Some(bind) => {
                let listener = TcpListener::bind(bind)
                    .await
                    .map_err(|e| Startup::listen(bind, "--metrics-bind", &e))?;
                let addr = listener.local_addr()?;
                Some((listener, addr))
            }
            None => None,
        };
        let (public_url, host) = public_identity(&config, local_addr);
        let tls = match &config.tls {
            Some(settings) => {
                let bare_host = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
                let names = tls::self_signed_names(local_addr, Some(bare_host));
                Some(tls::load(settings, &names)?)
            }
            None => None,
        };

        let store = store::open(&config.database_url, &config.store)
            .await
            .map_err(|e| {
                Startup::from_store(e, &store::postgres::redact_url(&config.database_url))
            })?;
        let clock = crate::clock::Clock::default();
        // The seed is applied once and then dropped: `reset` goes back to what the
        // database holds afterwards, and a large seed would otherwise stay in memory.
        let seed = config.emulator.as_mut().and_then(|s| s.seed.take());
        if let Some(settings) = &config.emulator {
            crate::emulator::prepare(store.as_ref(), &config, settings, seed, &clock).await?;
        }
        let tenant_state = bootstrap::ensure_tenant(store.as_ref(), &config).await?;
        let emulator = match &config.emulator {
            Some(settings) => {
                let admin = tenant_state.admin.client_id.clone();
                let start = crate::emulator::starting_state(store.as_ref(), &admin).await?;
                Some(Arc::new(crate::emulator::Emulator::new(
                    settings, admin, &start,
                )?))
            }
            None => None,
        };
        let tokens_config = &config.tenant.tokens;
        let max_lifetime = tokens_config
            .access_token_lifetime
            .max(tokens_config.id_token_lifetime);
        let keys = KeyRing::load(store.as_ref(), max_lifetime).await?;
        let tenant = Tenant {
            issuer: format!("{public_url}/"),
            api_audience: format!("https://{host}/api/v2/"),
            api_audience_http: format!("http://{host}/api/v2/"),
            userinfo_audience: format!("{public_url}/userinfo"),
            access_token_lifetime: tokens_config.access_token_lifetime,
            id_token_lifetime: tokens_config.id_token_lifetime,
        };
        let audience = tenant.api_audience.clone();
        let apps = crate::apps::Apps::from_config(&config, &audience)?;

        if let Some(path) = config.credentials_path() {
            bootstrap::write_credentials(&path, &tenant_state.admin, &public_url, &audience)?;
        }
        // Emulator mode: the admin secret was just hashed (generated) or checked against
        // the stored hash (pinned, see `bootstrap::ensure_admin`), so its first token
        // needs no argon2 (fast start, and no 19 MiB work area). Only there: instances
        // sharing a database could rewrite the hash in between.
        let client_secrets = ClientSecretCache::default();
        let admin = &tenant_state.admin;
        let pinned = match (&config.admin_client_id, &config.admin_client_secret) {
            (Some(id), Some(secret)) if *id == admin.client_id => Some(secret),
            _ => None,
        };
        let known = admin.generated_secret.as_ref().or(pinned);
        if let Some(secret) = known.filter(|_| config.emulator.is_some()) {
            let stored = store.client(&admin.client_id).await?;
            if let Some(hash) = stored.and_then(|c| c.secret_hash) {
                client_secrets.remember(&admin.client_id, secret, &hash);
            }
        }
        let events = Arc::new(crate::events::EventsState::new(
            config.tenant.event_settings()?,
            &public_url,
        ));
        let state = AppState {
            tokens: Tokens::new(tenant, keys, store.clone()).with_clock(clock.clone()),
            store,
            connections: Arc::new(tenant_state.connections),
            apps: Arc::new(apps),
            signin: Arc::new(crate::state::SignInSettings::new(&config, &public_url)),
            client_secrets,
            rate_limiter: Arc::new(
                RateLimiter::with_client_limit(
                    config.tenant.rate_limit.unwrap_or_default(),
                    config
                        .tenant
                        .client_rate_limit
                        .or(config.tenant.rate_limit)
                        .unwrap_or_default(),
                )
                .with_unauthenticated_limit(
                    config
                        .tenant
                        .unauthenticated_rate_limit
                        .or(config.tenant.rate_limit)
                        .unwrap_or_default(),
                )
                .with_clock(&clock),
            ),
            authentication_limiter: Arc::new(
                RateLimiter::new(RateLimit::GENEROUS).with_clock(&clock),
            ),
            token_limiter: Arc::new(
                TokenEndpointLimiter::new(
                    config.tenant.token_rate_limit.unwrap_or_default(),
                    config.tenant.token_address_rate_limit.unwrap_or_default(),
                )
                .with_clock(&clock),
            ),
            public_url: public_url.into(),
            request_timeout: crate::http::limits::request_timeout(config.tenant.request_timeout)?,
            linking: config.tenant.linking,
            idempotency_ttl: config.tenant.idempotency.ttl_seconds()?,
            clock,
            emulator,
            jobs: Arc::new(crate::jobs::JobsState::new(config.tenant.job_settings()?)),
            events,
            metrics: Arc::new(Metrics::new(config.store.metrics.clone())),
        };
        Ok(Self {
            listener,
            local_addr,
            state,
            admin: tenant_state.admin,
            audience,
            tls,
            key_refresh: std::time::Duration::from_secs(
                config.tenant.tokens.key_refresh_interval.max(1),
            ),
            connection_limits: config.tenant.connection_limits()?,
            metrics_listener,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL clients reach the server at (no trailing slash).
    pub fn public_url(&self) -> &str {
        &self.state.public_url
    }

    /// The Management API audience, `https://{host}/api/v2/`.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The TLS certificate file being served, when serving HTTPS.
    pub fn tls_cert_path(&self) -> Option<&std::path::Path> {
        self.tls.as_ref().map(|t| t.cert_path.as_path())
    }

    /// The address `GET /metrics` is served on, when `metrics_bind` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(_, addr)| *addr)
    }

    /// The admin client.
    pub fn admin(&self) -> &AdminClient {
        &self.admin
    }

    /// The application state (for tools and benchmarks that use the store directly).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let _key_refresh = KeyRefresh::spawn(&self.state, self.key_refresh);
        // Import and export jobs run while the server does (stopped, and the running
        // job handed back, when serving ends).
        let _jobs = crate::jobs::runner::Runner::spawn(&self.state);
        // Webhook deliveries run while the server does, when events are on.
        let _deliverer = crate::events::deliverer::Deliverer::spawn(&self.state);
        let _metrics = self
            .metrics_listener
            .map(|(listener, _)| MetricsServer::spawn(listener, &self.state));
        let app = crate::http::app(self.state);
        match &self.tls {
            Some(tls) => {
                connections::serve(
                    TlsListener::new(self.listener, tls),
                    app,
                    self.connection_limits,
                    shutdown,
                )
                .await
            }
            None => connections::serve(self.listener, app, self.connection_limits, shutdown).await,
        }
    }
}

/// Serves `GET /metrics` on its own listener while the server runs; stops when dropped.
struct MetricsServer(tokio::task::JoinHandle<()>);

impl MetricsServer {
    fn spawn(listener: TcpListener, state: &AppState) -> Self {
        let app = crate::metrics::app(state.clone());
        Self(tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(error = %err, "the metrics listener stopped");
            }
        }))
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Re-reads the signing keys periodically while the server runs, so a key rotated by
/// another instance or by `idlink keys rotate` is used for signing and published here.
/// Stops when dropped.
struct KeyRefresh(tokio::task::JoinHandle<()>);

impl KeyRefresh {
    fn spawn(state: &AppState, every: std::time::Duration) -> Self {
        let (store, tokens) = (state.store.clone(), state.tokens.clone());
        Self(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if let Err(err) = tokens.keys().reload(store.as_ref()).await {
                    tracing::warn!(error = %err, "cannot refresh the signing keys");
                }
            }
        }))
    }
}

impl Drop for KeyRefresh {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_listens_everywhere() {
        assert_eq!(listen_address(":8080"), "0.0.0.0:8080");
        assert_eq!(listen_address("0.0.0.0:8080"), "0.0.0.0:8080");
        assert_eq!(listen_address("127.0.0.1:0"), "127.0.0.1:0");
        assert_eq!(listen_address("[::1]:8080"), "[::1]:8080");
        assert_eq!(listen_address(":http"), ":http");
    }

    #[test]
    fn identity_follows_public_url_then_domain_then_bind() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let mut config = Config::default();
        assert_eq!(
            public_identity(&config, addr),
            ("http://127.0.0.1:8080".into(), "127.0.0.1:8080".into())
        );
        config.tenant.domain = Some("t.example.com".into());
        assert_eq!(
            public_identity(&config, addr),
            ("https://t.example.com".into(), "t.example.com".into())
        );
        config.tenant.domain = None;
        config.public_url = Some("https://id.example.com:8443/".into());
        assert_eq!(
            public_identity(&config, addr),
            (
                "https://id.example.com:8443".into(),
                "id.example.com:8443".into()
            )
        );
    }
}
