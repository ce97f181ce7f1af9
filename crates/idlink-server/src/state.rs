//! The state every handler shares.

use std::sync::Arc;

use crate::auth::secrets::ClientSecretCache;
use crate::auth::tokens::Tokens;
use crate::domain::model::Connection;
use crate::ratelimit::{RateLimiter, TokenEndpointLimiter};
use crate::store::Store;

/// Cheap to clone: everything inside is shared.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub tokens: Tokens,
    /// The tenant's connections, loaded at start-up (they change only through the
    /// config file, which every instance applies when it starts).
    pub connections: Arc<Vec<Connection>>,
    /// Sign-in's lifetimes, cookie flags and login-attempt buckets.
    pub signin: Arc<SignInSettings>,
    /// Applications' sign-in settings, APIs and client grants (from the config file).
    pub apps: Arc<crate::apps::Apps>,
    pub client_secrets: ClientSecretCache,
    pub rate_limiter: Arc<RateLimiter>,
    /// The bucket of the routes outside the Management API (tokens, keys, health).
    pub authentication_limiter: Arc<RateLimiter>,
    /// `POST /oauth/token`'s buckets per client id and per source address.
    pub token_limiter: Arc<TokenEndpointLimiter>,
    /// The URL clients reach the server at, without a trailing slash.
    pub public_url: Arc<str>,
    /// How long a request may run before it is abandoned (503 `request_timeout`).
    pub request_timeout: std::time::Duration,
    /// The tenant's `[linking]` settings (Auth0's behaviour unless configured).
    pub linking: crate::domain::linking::LinkingPolicy,
    /// Seconds an `Idempotency-Key`'s answer is kept (`[idempotency] ttl_seconds`).
    pub idempotency_ttl: i64,
    /// The server's clock (tokens, audit dates, rate-limit windows); only the
    /// emulator's control API shifts it.
    pub clock: crate::clock::Clock,
    /// Emulator mode's state; `None` in plain `serve`, where the control API does not
    /// exist.
    pub emulator: Option<Arc<crate::emulator::Emulator>>,
    /// The jobs API: settings, this instance's runner name, the download-link key.
    pub jobs: Arc<crate::jobs::JobsState>,
    /// Link events: settings, webhooks, the wake-up of the deliverer and streams.
    pub events: Arc<crate::events::EventsState>,
    /// What `GET /metrics` renders (on the `--metrics-bind` listener).
    pub metrics: crate::metrics::SharedMetrics,
}

/// What the sign-in pages and grants need beyond the tenant.
#[derive(Debug)]
pub struct SignInSettings {
    /// Seconds a refresh-token family lives.
    pub refresh_token_lifetime: i64,
    /// Seconds a login session lives.
    pub session_lifetime: i64,
    /// Cookies carry `Secure` (the server is reached over HTTPS).
    pub secure_cookies: bool,
    /// Login attempts per source address and login name (brute force).
    pub attempts: crate::ratelimit::KeyedBuckets,
    /// Login attempts per source address, whatever the name (credential stuffing).
    pub attempts_per_address: crate::ratelimit::KeyedBuckets,
}

impl SignInSettings {
    /// From the config, for a server reached at `public_url`.
    pub fn new(config: &crate::config::Config, public_url: &str) -> Self {
        use crate::ratelimit::{KeyedBuckets, RateLimit};
        Self {
            refresh_token_lifetime: config.tenant.tokens.refresh_token_lifetime,
            session_lifetime: config.tenant.tokens.session_lifetime,
            secure_cookies: public_url.starts_with("https://"),
            // 10 tries, then one every 6 s; Auth0's brute-force protection blocks after 10.
            attempts: KeyedBuckets::new(RateLimit::new(10, 1.0 / 6.0)),
            attempts_per_address: KeyedBuckets::new(RateLimit::new(100, 1.0)),
        }
    }
}

impl AppState {
    /// The connection named `name`.
    pub fn connection_by_name(&self, name: &str) -> Option<&Connection> {
        self.connections.iter().find(|c| c.name == name)
    }

    /// The connection with id `id`.
    pub fn connection_by_id(&self, id: &str) -> Option<&Connection> {
        self.connections.iter().find(|c| c.id == id)
    }

    /// Whether any connection uses `strategy` (i.e. the provider is configured).
    pub fn has_strategy(&self, strategy: &str) -> bool {
        self.connections.iter().any(|c| c.strategy == strategy)
    }
}
