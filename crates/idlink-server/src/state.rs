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
    /// What `GET /metrics` renders (on the `--metrics-bind` listener).
    pub metrics: crate::metrics::SharedMetrics,
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
