//! Per-call options.

use std::time::Duration;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

/// Options for one call, overriding the client's defaults: the same set the official
/// SDKs offer (base URL, timeout, max retries, additional headers, query parameters and
/// body properties) plus a cancellation token.
///
/// The timeout covers the whole call: token fetch, every attempt and the delays between
/// them. Dropping the call's future cancels it too.
///
/// ```
/// use std::time::Duration;
/// use idlink_client::RequestOptions;
/// use tokio_util::sync::CancellationToken;
///
/// let cancel = CancellationToken::new();
/// let options = RequestOptions::new()
///     .timeout(Duration::from_secs(10))
///     .max_retries(5)
///     .header("x-request-id", "abc-123")
///     .query_param("fields", "user_id,identities")
///     .body_property("connection_id", "con_0123456789abcdef")
///     .cancellation_token(cancel.clone());
/// ```
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    pub(crate) base_url: Option<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_retries: Option<u32>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: Map<String, Value>,
    pub(crate) cancellation_token: Option<CancellationToken>,
    pub(crate) idempotency_key: Option<String>,
}

impl RequestOptions {
    /// No overrides.
    ///
    /// ```
    /// let o = idlink_client::RequestOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends this call to another base URL (e.g. `http://127.0.0.1:8080/api/v2`).
    ///
    /// ```
    /// let o = idlink_client::RequestOptions::new().base_url("http://127.0.0.1:8080/api/v2");
    /// ```
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into());
        self
    }

    /// Limits the whole call, retries and delays included.
    ///
    /// ```
    /// let o = idlink_client::RequestOptions::new().timeout(std::time::Duration::from_secs(5));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Retries after the first attempt (0 disables retrying).
    ///
    /// ```
    /// let o = idlink_client::RequestOptions::new().max_retries(0);
    /// ```
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = Some(max_retries);
        self
    }

    /// Adds a header (replacing one the client would send under that name).
    ///
    /// ```
    /// let o = idlink_client::RequestOptions::new().header("x-correlation-id", "42");
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a query parameter.
    ///
    /// ```
    /// let o = idlink_client::RequestOptions::new().query_param("fields", "user_id");
    /// ```
    pub fn query_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    /// Adds a property to the JSON body (merged at the top level; a call without a body
    /// gets one made of these properties).
    ///
    /// ```
    /// let o = idlink_client::RequestOptions::new().body_property("connection_id", "con_0123456789abcdef");
    /// ```
    pub fn body_property(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.body.insert(name.into(), value.into());
        self
    }

    /// Cancels the call when `token` is cancelled; the call then fails with
    /// [`Error::Cancelled`](crate::Error::Cancelled).
    ///
    /// ```
    /// let cancel = tokio_util::sync::CancellationToken::new();
    /// let o = idlink_client::RequestOptions::new().cancellation_token(cancel.child_token());
    /// ```
    pub fn cancellation_token(mut self, token: CancellationToken) -> Self {
        self.cancellation_token = Some(token);
        self
    }

    /// Sends this `Idempotency-Key` on every attempt of the call, instead of the fresh
    /// one the client makes for each link and unlink. Reuse a key across your own
    /// retries of one logical call (e.g. after a crash, with the key saved beside the
    /// job): idlink then answers the repeat with the first call's stored answer
    /// (`Idempotent-Replayed: true`) instead of acting twice. Any call may carry one
    /// (idlink honours it on link, unlink and user create, update and delete); Auth0
    /// ignores the header. See idlink's `docs/idempotency.md`.
    ///
    /// ```
    /// let o = idlink_client::RequestOptions::new()
    ///     .idempotency_key("link-order-1234-github");
    /// ```
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}
