//! Prometheus metrics: one registry per server, rendered at `GET /metrics` on the
//! separate `--metrics-bind` listener (see `docs/operations.md` for the names).
//!
//! `prometheus-client` does the bookkeeping and the text encoding; nothing here writes
//! the exposition format by hand. Every label takes values from a small closed set
//! (route templates, status codes, errorCodes, grant types), never a user or client
//! id, so the number of series stays bounded whatever the traffic.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The label set of the request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The route template (`/api/v2/users/{id}`), `unmatched` for unknown paths.
    pub route: String,
    pub status: u16,
}

/// The label set of the latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

/// The label set of link and unlink outcomes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IdentityOpLabels {
    /// `link` or `unlink`.
    pub operation: &'static str,
    /// `success`, or the Auth0 errorCode answered (`server_error` for a 500).
    pub outcome: &'static str,
}

/// The label set of token grants.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrantLabels {
    /// A grant type idlink knows, or `unsupported`.
    pub grant_type: &'static str,
    /// `success`, or the OAuth `error` answered.
    pub outcome: &'static str,
}

/// The label set of rate-limit refusals.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub route: String,
}

/// The label set of webhook delivery attempts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `delivered`, `failed` (retried later) or `dead`.
    pub outcome: &'static str,
}

/// The SQLite writer's group commits. Cloning shares the underlying series, so the
/// store records into the histograms the registry renders.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    /// Operations committed together.
    pub group_size: Histogram,
    /// Seconds from the group's first statement to its commit being on disk.
    pub group_duration: Histogram,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            group_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            group_duration: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
        }
    }
}

impl StoreMetrics {
    /// Records one group commit of `size` operations that took `took`.
    pub fn record_group(&self, size: usize, took: Duration) {
        self.group_size.observe(size as f64);
        self.group_duration.observe(took.as_secs_f64());
    }
}

/// Connections of a database pool, read when metrics are scraped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections open (idle and in use).
    pub open: u32,
    /// Open connections nobody is using.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

impl PoolUsage {
    /// The use of a sqlx pool right now.
    pub fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Self {
        Self {
            open: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max: pool.options().get_max_connections(),
        }
    }
}

/// Every metric idlink exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    identity_operations: Family<IdentityOpLabels, Counter>,
    token_grants: Family<GrantLabels, Counter>,
    rate_limit_refusals: Family<RefusalLabels, Counter>,
    webhook_deliveries: Family<DeliveryLabels, Counter>,
    pool_open: Gauge,
    pool_idle: Gauge,
    pool_in_use: Gauge,
    pool_max: Gauge,
    store: StoreMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(StoreMetrics::default())
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s: argon2 on the token endpoint sits in the middle, reads at the bottom.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    /// A registry with every metric, recording the store's group commits into `store`.
    pub fn new(store: StoreMetrics) -> Self {
        let mut registry = Registry::with_prefix("idlink");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        let latency =
            Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register_with_unit(
            "http_request_duration",
            "Time from request to response head, by method and route template",
            Unit::Seconds,
            latency.clone(),
        );
        let identity_operations = Family::<IdentityOpLabels, Counter>::default();
        registry.register(
            "identity_operations",
            "Link and unlink requests by outcome (success or the errorCode answered)",
            identity_operations.clone(),
        );
        let token_grants = Family::<GrantLabels, Counter>::default();
        registry.register(
            "token_grants",
            "POST /oauth/token requests by grant type and outcome",
            token_grants.clone(),
        );
        let rate_limit_refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "rate_limit_refusals",
            "Requests refused with 429 by a rate limit, by route template",
            rate_limit_refusals.clone(),
        );
        let webhook_deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, failed and retried, dead)",
            webhook_deliveries.clone(),
        );
        let (pool_open, pool_idle, pool_in_use, pool_max) = Default::default();
        registry.register(
            "db_pool_connections_open",
            "Database pool connections open",
            Gauge::clone(&pool_open),
        );
        registry.register(
            "db_pool_connections_idle",
            "Database pool connections open and unused",
            Gauge::clone(&pool_idle),
        );
        registry.register(
            "db_pool_connections_in_use",
            "Database pool connections serving a request",
            Gauge::clone(&pool_in_use),
        );
        registry.register(
            "db_pool_connections_max",
            "The most connections the database pool opens",
            Gauge::clone(&pool_max),
        );
        registry.register(
            "sqlite_group_commit_size",
            "SQLite writer: operations committed in one transaction (group commit)",
            store.group_size.clone(),
        );
        registry.register_with_unit(
            "sqlite_group_commit_duration",
            "SQLite writer: time to run and commit one group",
            Unit::Seconds,
            store.group_duration.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            identity_operations,
            token_grants,
            rate_limit_refusals,
            webhook_deliveries,
            pool_open,
            pool_idle,
            pool_in_use,
            pool_max,
            store,
        }
    }

    /// The group-commit histograms, for the store to record into.
    pub fn store(&self) -> &StoreMetrics {
        &self.store
    }

    /// Records an answered request.
    pub fn record_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
        if status == 429 {
            self.rate_limit_refusals
                .get_or_create(&RefusalLabels {
                    route: route.to_owned(),
                })
                .inc();
        }
    }

    /// Records a link or unlink answered with `error_code` (`None`: success).
    pub fn record_identity_operation(
        &self,
        operation: &'static str,
        error_code: Option<&'static str>,
    ) {
        self.identity_operations
            .get_or_create(&IdentityOpLabels {
                operation,
                outcome: error_code.unwrap_or("success"),
            })
            .inc();
    }

    /// Records one webhook delivery attempt's outcome.
    pub fn record_webhook_delivery(&self, outcome: &'static str) {
        self.webhook_deliveries
            .get_or_create(&DeliveryLabels { outcome })
            .inc();
    }

    /// Records a token request.
    pub fn record_grant(&self, grant_type: &'static str, error: Option<&'static str>) {
        self.token_grants
            .get_or_create(&GrantLabels {
                grant_type,
                outcome: error.unwrap_or("success"),
            })
            .inc();
    }

    /// The exposition text (OpenMetrics, which Prometheus scrapes natively), with the
    /// pool gauges set to `pool` first.
    pub fn render(&self, pool: PoolUsage) -> String {
        self.pool_open.set(i64::from(pool.open));
        self.pool_idle.set(i64::from(pool.idle));
        self.pool_in_use
            .set(i64::from(pool.open.saturating_sub(pool.idle)));
        self.pool_max.set(i64::from(pool.max));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Shared by the app state and the metrics listener.
pub type SharedMetrics = Arc<Metrics>;

/// The `--metrics-bind` listener's app: `GET /metrics` only. Kept off the API port so
/// that port answers exactly what Auth0 answers, and so metrics (which show traffic
/// volumes and error rates) are reachable only where the operator binds them.
pub fn app(state: crate::state::AppState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state)
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let text = state.metrics.render(state.store.pool_usage());
    ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_text_names_every_family_and_counts() {
        let metrics = Metrics::default();
        metrics.record_request(
            "POST",
            "/api/v2/users/{id}/identities",
            201,
            Duration::from_millis(3),
        );
        metrics.record_request("GET", "/api/v2/users", 429, Duration::from_millis(1));
        metrics.record_identity_operation("link", None);
        metrics.record_identity_operation("link", Some("identity_conflict"));
        metrics.record_grant("client_credentials", None);
        metrics.store().record_group(3, Duration::from_millis(2));
        let text = metrics.render(PoolUsage {
            open: 3,
            idle: 1,
            max: 8,
        });
        for needle in [
            r#"idlink_http_requests_total{method="POST",route="/api/v2/users/{id}/identities",status="201"} 1"#,
            r#"idlink_rate_limit_refusals_total{route="/api/v2/users"} 1"#,
            r#"idlink_identity_operations_total{operation="link",outcome="identity_conflict"} 1"#,
            r#"idlink_token_grants_total{grant_type="client_credentials",outcome="success"} 1"#,
            "idlink_db_pool_connections_in_use 2",
            "idlink_sqlite_group_commit_size_count 1",
            "# TYPE idlink_http_request_duration_seconds histogram",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
