//! The client and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderValue, Method};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::logs::LogsClient;
use crate::request::ApiRequest;
use crate::retry::RetryPolicy;
use crate::secret::SecretString;
use crate::token::{ClientCredentials, StaticToken, TokenProvider};
use crate::users::UsersClient;

/// The crate version, sent in the `Auth0-Client` header.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The default timeout of a whole call, retries included (as the .NET SDK: 30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything but RFC 3986's unreserved characters is escaped in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment: `auth0|abc` → `auth0%7Cabc`, `a/b` → `a%2Fb`.
///
/// The area handlers do this for you; use it when building paths for
/// [`ManagementClient::request`].
///
/// ```
/// assert_eq!(idlink_client::encode_path_segment("auth0|abc"), "auth0%7Cabc");
/// assert_eq!(idlink_client::encode_path_segment("a b/c"), "a%20b%2Fc");
/// ```
pub fn encode_path_segment(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

pub(crate) struct Inner {
    pub(crate) base_url: String,
    pub(crate) http: reqwest::Client,
    pub(crate) tokens: Arc<dyn TokenProvider>,
    pub(crate) retry: RetryPolicy,
    pub(crate) timeout: Duration,
    pub(crate) telemetry: Option<HeaderValue>,
}

/// A client of the Auth0 Management API v2 (or of idlink, which speaks the same API).
///
/// Cheap to clone (one `Arc`); clones share the HTTP connection pool and the token cache.
/// Calls are grouped by area, octocrab style: [`users()`](Self::users), then
/// [`identities()`](UsersClient::identities); [`request`](Self::request) reaches any
/// other endpoint.
///
/// ```no_run
/// use std::time::Duration;
/// use idlink_client::{LinkUserIdentityRequestContent, ManagementClient, RequestOptions,
///                     UserIdentityProviderEnum as Provider, UserId};
///
/// # async fn run() -> idlink_client::Result<()> {
/// let client = ManagementClient::builder()
///     .domain("tenant.auth0.com")
///     .client_credentials("CLIENT_ID", "CLIENT_SECRET")
///     .build()?;
///
/// let identities = client.users().identities()
///     .link("auth0|5f7c8ec7c33c6c004bbafe82", LinkUserIdentityRequestContent {
///         provider: Some(Provider::GoogleOauth2),
///         user_id: Some(UserId::from("1234")),
///         ..Default::default()
///     }, None)
///     .await?;
///
/// let remaining = client.users().identities()
///     .delete("auth0|5f7c8ec7c33c6c004bbafe82", Provider::GoogleOauth2, "1234",
///             Some(RequestOptions::new().max_retries(5).timeout(Duration::from_secs(10))))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ManagementClient {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for ManagementClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementClient")
            .field("base_url", &self.inner.base_url)
            .field("retry", &self.inner.retry)
            .field("timeout", &self.inner.timeout)
            .field("telemetry", &self.inner.telemetry.is_some())
            .finish_non_exhaustive()
    }
}

impl ManagementClient {
    /// Starts building a client.
    ///
    /// ```
    /// let client = idlink_client::ManagementClient::builder()
    ///     .base_url("http://127.0.0.1:8080/api/v2")
    ///     .token("eyJ…")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(client.base_url(), "http://127.0.0.1:8080/api/v2");
    /// ```
    pub fn builder() -> ManagementClientBuilder {
        ManagementClientBuilder::default()
    }

    /// The users endpoints (`/users…`), and through them the identities.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// let user = client.users().get("auth0|5f7c8ec7c33c6c004bbafe82", None).await?;
    /// # Ok(()) }
    /// ```
    pub fn users(&self) -> UsersClient<'_> {
        UsersClient::new(self)
    }

    /// The log endpoints (`/logs`, `/users/{id}/logs`).
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// let events = client.logs().list(Default::default(), None).await?;
    /// # Ok(()) }
    /// ```
    pub fn logs(&self) -> LogsClient<'_> {
        LogsClient::new(self)
    }

    /// The jobs endpoints (`/jobs/users-imports`, `/jobs/users-exports`, `/jobs/{id}`).
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// let job = client.jobs().get("job_0000000000000001", None).await?;
    /// # Ok(()) }
    /// ```
    pub fn jobs(&self) -> crate::JobsClient<'_> {
        crate::JobsClient::new(self)
    }

    /// The base URL every path is appended to, e.g. `https://tenant.auth0.com/api/v2`.
    ///
    /// ```
    /// let client = idlink_client::ManagementClient::builder()
    ///     .domain("tenant.auth0.com").token("t").build().unwrap();
    /// assert_eq!(client.base_url(), "https://tenant.auth0.com/api/v2");
    /// ```
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The escape hatch: a call to any endpoint, with the same auth, retries, timeout,
    /// options and error handling as the wrapped ones. `path` is appended to the base URL
    /// as given, so encode its segments with [`encode_path_segment`].
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// use idlink_client::{encode_path_segment, Method};
    ///
    /// let id = encode_path_segment("auth0|5f7c8ec7c33c6c004bbafe82");
    /// let roles: serde_json::Value = client
    ///     .request(Method::GET, format!("/users/{id}/roles"))
    ///     .query("per_page", 50)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: impl Into<String>,
    ) -> ApiRequest<T> {
        ApiRequest::new(self.clone(), method, path.into())
    }
}

#[derive(Clone)]
enum Auth {
    None,
    ClientCredentials {
        client_id: String,
        client_secret: SecretString,
    },
    Provider(Arc<dyn TokenProvider>),
}

/// Builds a [`ManagementClient`]: where (a domain or a base URL), how to authenticate
/// (client credentials, a token or a token provider), and the defaults of every call.
///
/// ```
/// use std::time::Duration;
/// use idlink_client::{ManagementClient, RetryPolicy};
///
/// let client = ManagementClient::builder()
///     .domain("tenant.auth0.com")
///     .client_credentials("CLIENT_ID", "CLIENT_SECRET")
///     .timeout(Duration::from_secs(10))
///     .retry_policy(RetryPolicy::default().with_max_retries(4))
///     .telemetry(false)
///     .build()
///     .unwrap();
/// ```
#[derive(Clone)]
pub struct ManagementClientBuilder {
    domain: Option<String>,
    base_url: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
    auth: Auth,
    http: Option<reqwest::Client>,
    retry: RetryPolicy,
    timeout: Duration,
    telemetry: bool,
}

impl Default for ManagementClientBuilder {
    fn default() -> Self {
        Self {
            domain: None,
            base_url: None,
            audience: None,
            scope: None,
            auth: Auth::None,
            http: None,
            retry: RetryPolicy::default(),
            timeout: DEFAULT_TIMEOUT,
            telemetry: true,
        }
    }
}

impl fmt::Debug for ManagementClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::None => "none",
            Auth::ClientCredentials { .. } => "client_credentials",
            Auth::Provider(_) => "token_provider",
        };
        f.debug_struct("ManagementClientBuilder")
            .field("domain", &self.domain)
            .field("base_url", &self.base_url)
            .field("audience", &self.audience)
            .field("scope", &self.scope)
            .field("auth", &auth)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .field("telemetry", &self.telemetry)
            .finish_non_exhaustive()
    }
}

impl ManagementClientBuilder {
    /// The tenant's domain: calls go to `https://{domain}/api/v2`, tokens come from
    /// `https://{domain}/oauth/token`. A value with a scheme (`http://host:port`) keeps it.
    ///
    /// ```
    /// let c = idlink_client::ManagementClient::builder()
    ///     .domain("tenant.eu.auth0.com").token("t").build().unwrap();
    /// assert_eq!(c.base_url(), "https://tenant.eu.auth0.com/api/v2");
    /// ```
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Any base URL instead of a domain, e.g. `http://127.0.0.1:8080/api/v2`. Tokens
    /// then come from the same origin's `/oauth/token`.
    ///
    /// ```
    /// let c = idlink_client::ManagementClient::builder()
    ///     .base_url("http://127.0.0.1:8080/api/v2/").token("t").build().unwrap();
    /// assert_eq!(c.base_url(), "http://127.0.0.1:8080/api/v2");
    /// ```
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into());
        self
    }

    /// Authenticates with the client-credentials grant (see [`ClientCredentials`]).
    ///
    /// ```
    /// let c = idlink_client::ManagementClient::builder()
    ///     .domain("tenant.auth0.com")
    ///     .client_credentials("CLIENT_ID", "CLIENT_SECRET")
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn client_credentials(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
    ) -> Self {
        self.auth = Auth::ClientCredentials {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        };
        self
    }

    /// With [`client_credentials`](Self::client_credentials): the scopes to ask for
    /// (space-separated) instead of all the client holds.
    ///
    /// ```
    /// let c = idlink_client::ManagementClient::builder()
    ///     .domain("tenant.auth0.com")
    ///     .client_credentials("CLIENT_ID", "CLIENT_SECRET")
    ///     .scope("read:users update:users")
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Authenticates with a fixed token (a Management API token, or a user's token with
    /// `update:current_user_identities` for mode A linking).
    ///
    /// ```
    /// let c = idlink_client::ManagementClient::builder()
    ///     .domain("tenant.auth0.com").token("eyJ…").build().unwrap();
    /// ```
    pub fn token(self, token: impl Into<SecretString>) -> Self {
        self.token_provider(StaticToken::new(token))
    }

    /// Authenticates with any [`TokenProvider`].
    ///
    /// ```
    /// let c = idlink_client::ManagementClient::builder()
    ///     .domain("tenant.auth0.com")
    ///     .token_provider(idlink_client::FnTokenProvider::new(|| async { Ok("eyJ…") }))
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn token_provider(mut self, provider: impl TokenProvider + 'static) -> Self {
        self.auth = Auth::Provider(Arc::new(provider));
        self
    }

    /// The audience of client-credentials tokens (default `https://{domain}/api/v2/`,
    /// where the domain is the base URL's host and port).
    ///
    /// ```
    /// let c = idlink_client::ManagementClient::builder()
    ///     .base_url("http://127.0.0.1:8080/api/v2")
    ///     .audience("https://tenant.auth0.com/api/v2/")
    ///     .client_credentials("id", "secret")
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Turns the `Auth0-Client` telemetry header on (default) or off.
    ///
    /// ```
    /// let c = idlink_client::ManagementClient::builder()
    ///     .domain("tenant.auth0.com").token("t").telemetry(false).build().unwrap();
    /// ```
    pub fn telemetry(mut self, enabled: bool) -> Self {
        self.telemetry = enabled;
        self
    }

    /// Uses this `reqwest::Client` (proxies, TLS roots, pool settings, …) for every
    /// request, token requests included.
    ///
    /// ```
    /// let http = reqwest::Client::builder().pool_max_idle_per_host(4).build().unwrap();
    /// let c = idlink_client::ManagementClient::builder()
    ///     .domain("tenant.auth0.com").token("t").http_client(http).build().unwrap();
    /// ```
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Replaces the retry policy (default: [`RetryPolicy::default`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = idlink_client::ManagementClient::builder()
    ///     .domain("tenant.auth0.com").token("t")
    ///     .retry_policy(idlink_client::RetryPolicy::default().with_base_delay(Duration::from_millis(200)))
    ///     .build().unwrap();
    /// ```
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Sets the default number of retries (2), keeping the rest of the policy.
    ///
    /// ```
    /// let c = idlink_client::ManagementClient::builder()
    ///     .domain("tenant.auth0.com").token("t").max_retries(0).build().unwrap();
    /// ```
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.retry = self.retry.with_max_retries(max_retries);
        self
    }

    /// Sets the default timeout of a whole call, retries included (30 s).
    ///
    /// ```
    /// let c = idlink_client::ManagementClient::builder()
    ///     .domain("tenant.auth0.com").token("t")
    ///     .timeout(std::time::Duration::from_secs(5)).build().unwrap();
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Builds the client. Fails when neither a domain nor a base URL is set, when the
    /// URL is invalid, or when no authentication is set.
    ///
    /// ```
    /// let err = idlink_client::ManagementClient::builder().token("t").build().unwrap_err();
    /// assert!(matches!(err, idlink_client::Error::Config(_)));
    /// ```
    pub fn build(self) -> Result<ManagementClient> {
        let base_url = match (&self.base_url, &self.domain) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Some(domain)) => {
                let domain = domain.trim_end_matches('/');
                if domain.contains("://") {
                    format!("{domain}/api/v2")
                } else {
                    format!("https://{domain}/api/v2")
                }
            }
            (None, None) => {
                return Err(Error::Config("set a domain or a base URL".into()));
            }
        };
        let parsed = Url::parse(&base_url)
            .map_err(|e| Error::Config(format!("invalid base URL `{base_url}`: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(Error::Config(format!(
                "the base URL `{base_url}` is not an http(s) URL"
            )));
        }
        let host = parsed.host_str().unwrap_or_default();
        let authority = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .user_agent(format!("idlink-client/{VERSION}"))
                .build()
                .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?,
        };
        let tokens: Arc<dyn TokenProvider> = match self.auth {
            Auth::None => {
                return Err(Error::Config(
                    "set client_credentials, a token or a token provider".into(),
                ));
            }
            Auth::Provider(p) => p,
            Auth::ClientCredentials {
                client_id,
                client_secret,
            } => {
                let origin = parsed.origin().ascii_serialization();
                let audience = self
                    .audience
                    .unwrap_or_else(|| format!("https://{authority}/api/v2/"));
                let mut provider = ClientCredentials::new(
                    format!("{origin}/oauth/token"),
                    audience,
                    client_id,
                    client_secret,
                )
                .with_http_client(http.clone());
                if let Some(scope) = self.scope {
                    provider = provider.with_scope(scope);
                }
                Arc::new(provider)
            }
        };
        let telemetry = self.telemetry.then(telemetry_header);
        Ok(ManagementClient {
            inner: Arc::new(Inner {
                base_url,
                http,
                tokens,
                retry: self.retry,
                timeout: self.timeout,
                telemetry,
            }),
        })
    }
}

/// `Auth0-Client`: base64 of `{"name":"idlink-client","version":"…"}`, as the official
/// SDKs send their own name and version.
fn telemetry_header() -> HeaderValue {
    let json = serde_json::json!({ "name": "idlink-client", "version": VERSION });
    let encoded = base64::engine::general_purpose::STANDARD.encode(json.to_string());
    HeaderValue::from_str(&encoded).expect("base64 is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_is_base64_json() {
        let value = telemetry_header();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.as_bytes())
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["name"], "idlink-client");
        assert_eq!(json["version"], VERSION);
    }

    #[test]
    fn domain_with_scheme_is_kept() {
        let c = ManagementClient::builder()
            .domain("http://localhost:3000/")
            .token("t")
            .build()
            .unwrap();
        assert_eq!(c.base_url(), "http://localhost:3000/api/v2");
    }

    #[test]
    fn bad_base_url_is_a_config_error() {
        for url in ["not a url", "ftp://x/api/v2"] {
            let e = ManagementClient::builder().base_url(url).token("t").build();
            assert!(matches!(e, Err(Error::Config(_))), "{url}");
        }
    }

    #[test]
    fn no_auth_is_a_config_error() {
        let e = ManagementClient::builder().domain("t.auth0.com").build();
        assert!(matches!(e, Err(Error::Config(_))));
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_path_segment("auth0|5f7c"), "auth0%7C5f7c");
        assert_eq!(encode_path_segment("google-oauth2"), "google-oauth2");
        assert_eq!(encode_path_segment("é"), "%C3%A9");
        assert_eq!(encode_path_segment("a?b#c%d"), "a%3Fb%23c%25d");
    }
}
