//! Where the bearer token of each call comes from.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use idlink_types::{ClientCredentialsRequest, TokenResponse};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::{DecodeError, Error, Result};
use crate::request::RawResponse;
use crate::secret::SecretString;

/// A boxed, sendable future, as [`TokenProvider::token`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Supplies the bearer token of every attempt of every call.
///
/// It is asked before each attempt, so it should cache. Three implementations come with
/// the crate: [`ClientCredentials`] (fetches and caches a Management API token),
/// [`StaticToken`] and [`FnTokenProvider`] (any async closure).
///
/// ```
/// use idlink_client::{BoxFuture, Result, SecretString, TokenProvider};
///
/// /// Reads the token from an environment variable on every call.
/// struct FromEnv;
///
/// impl TokenProvider for FromEnv {
///     fn token(&self) -> BoxFuture<'_, Result<SecretString>> {
///         Box::pin(async {
///             std::env::var("AUTH0_TOKEN")
///                 .map(SecretString::from)
///                 .map_err(idlink_client::Error::token_provider)
///         })
///     }
/// }
///
/// let client = idlink_client::ManagementClient::builder()
///     .domain("tenant.auth0.com")
///     .token_provider(FromEnv)
///     .build()
///     .unwrap();
/// ```
pub trait TokenProvider: Send + Sync {
    /// The token to send as `Authorization: Bearer …`.
    fn token(&self) -> BoxFuture<'_, Result<SecretString>>;
}

impl<T: TokenProvider + ?Sized> TokenProvider for Arc<T> {
    fn token(&self) -> BoxFuture<'_, Result<SecretString>> {
        (**self).token()
    }
}

impl<T: TokenProvider + ?Sized> TokenProvider for Box<T> {
    fn token(&self) -> BoxFuture<'_, Result<SecretString>> {
        (**self).token()
    }
}

/// A token fixed in advance (e.g. copied from the Auth0 dashboard, or a user's access
/// token for mode A linking).
///
/// ```
/// use idlink_client::{StaticToken, TokenProvider};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let t = StaticToken::new("eyJ…");
/// assert_eq!(t.token().await.unwrap().expose_secret(), "eyJ…");
/// assert!(!format!("{t:?}").contains("eyJ"));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct StaticToken(SecretString);

impl StaticToken {
    /// Wraps a token.
    ///
    /// ```
    /// let t = idlink_client::StaticToken::new(String::from("eyJ…"));
    /// ```
    pub fn new(token: impl Into<SecretString>) -> Self {
        Self(token.into())
    }
}

impl TokenProvider for StaticToken {
    fn token(&self) -> BoxFuture<'_, Result<SecretString>> {
        let token = self.0.clone();
        Box::pin(async move { Ok(token) })
    }
}

/// A token provider made of an async closure; the closure runs before every attempt, so
/// cache inside it if fetching is expensive.
///
/// ```
/// use idlink_client::{FnTokenProvider, ManagementClient};
///
/// let provider = FnTokenProvider::new(|| async {
///     // e.g. read from a secret store
///     Ok::<_, idlink_client::Error>("eyJ…".to_string())
/// });
/// let client = ManagementClient::builder()
///     .domain("tenant.auth0.com")
///     .token_provider(provider)
///     .build()
///     .unwrap();
/// ```
pub struct FnTokenProvider<F> {
    f: F,
}

impl<F> FnTokenProvider<F> {
    /// Wraps `f`, an `Fn() -> impl Future<Output = Result<impl Into<SecretString>>>`.
    ///
    /// ```
    /// let p = idlink_client::FnTokenProvider::new(|| async { Ok::<_, idlink_client::Error>("t") });
    /// ```
    pub fn new(f: F) -> Self {
        Self { f }
    }
}

impl<F> fmt::Debug for FnTokenProvider<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnTokenProvider").finish_non_exhaustive()
    }
}

impl<F, Fut, T> TokenProvider for FnTokenProvider<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<T>> + Send + 'static,
    T: Into<SecretString>,
{
    fn token(&self) -> BoxFuture<'_, Result<SecretString>> {
        let fut = (self.f)();
        Box::pin(async move { fut.await.map(Into::into) })
    }
}

#[derive(Debug)]
struct CachedToken {
    token: SecretString,
    refresh_at: Instant,
}

/// Fetches a Management API token with the client-credentials grant
/// (`POST {origin}/oauth/token`) and caches it until `expires_in` − 10 s.
///
/// Concurrent callers share one in-flight fetch: the cache sits behind an async mutex
/// held across the fetch, so a burst of calls on a cold cache makes one token request.
/// A failed fetch is not cached.
///
/// Usually built for you by
/// [`ManagementClientBuilder::client_credentials`](crate::ManagementClientBuilder::client_credentials).
///
/// ```no_run
/// use idlink_client::{ClientCredentials, ManagementClient};
///
/// # async fn run() -> idlink_client::Result<()> {
/// let tokens = ClientCredentials::for_domain("tenant.auth0.com", "CLIENT_ID", "CLIENT_SECRET")
///     .with_scope("read:users update:users");
/// let client = ManagementClient::builder()
///     .domain("tenant.auth0.com")
///     .token_provider(tokens)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ClientCredentials {
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    audience: String,
    scope: Option<String>,
    http: reqwest::Client,
    refresh_margin: Duration,
    cache: Mutex<Option<CachedToken>>,
}

impl ClientCredentials {
    /// A provider posting to `token_url` for a token whose audience is `audience`.
    ///
    /// ```
    /// let p = idlink_client::ClientCredentials::new(
    ///     "http://127.0.0.1:8080/oauth/token",
    ///     "https://127.0.0.1:8080/api/v2/",
    ///     "CLIENT_ID",
    ///     "CLIENT_SECRET",
    /// );
    /// assert!(!format!("{p:?}").contains("CLIENT_SECRET"));
    /// ```
    pub fn new(
        token_url: impl Into<String>,
        audience: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
    ) -> Self {
        Self {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            audience: audience.into(),
            scope: None,
            http: reqwest::Client::new(),
            refresh_margin: Duration::from_secs(10),
            cache: Mutex::new(None),
        }
    }

    /// A provider for an Auth0 tenant: `https://{domain}/oauth/token`, audience
    /// `https://{domain}/api/v2/`.
    ///
    /// ```
    /// let p = idlink_client::ClientCredentials::for_domain("tenant.auth0.com", "id", "secret");
    /// assert_eq!(p.audience(), "https://tenant.auth0.com/api/v2/");
    /// assert_eq!(p.token_url(), "https://tenant.auth0.com/oauth/token");
    /// ```
    pub fn for_domain(
        domain: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
    ) -> Self {
        let domain = domain.trim_end_matches('/');
        Self::new(
            format!("https://{domain}/oauth/token"),
            format!("https://{domain}/api/v2/"),
            client_id,
            client_secret,
        )
    }

    /// Asks for these scopes (space-separated) instead of all the client holds.
    ///
    /// ```
    /// let p = idlink_client::ClientCredentials::for_domain("t.auth0.com", "id", "s")
    ///     .with_scope("read:users");
    /// ```
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Sets the audience (default `https://{domain}/api/v2/`).
    ///
    /// ```
    /// let p = idlink_client::ClientCredentials::for_domain("t.auth0.com", "id", "s")
    ///     .with_audience("https://custom/api/v2/");
    /// assert_eq!(p.audience(), "https://custom/api/v2/");
    /// ```
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Uses this HTTP client for the token requests.
    ///
    /// ```
    /// let p = idlink_client::ClientCredentials::for_domain("t.auth0.com", "id", "s")
    ///     .with_http_client(reqwest::Client::new());
    /// ```
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// How long before `expires_in` the token is refreshed (10 s by default).
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = idlink_client::ClientCredentials::for_domain("t.auth0.com", "id", "s")
    ///     .with_refresh_margin(Duration::from_secs(60));
    /// ```
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// The token endpoint.
    ///
    /// ```
    /// let p = idlink_client::ClientCredentials::for_domain("t.auth0.com", "id", "s");
    /// assert_eq!(p.token_url(), "https://t.auth0.com/oauth/token");
    /// ```
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The audience asked for.
    ///
    /// ```
    /// let p = idlink_client::ClientCredentials::for_domain("t.auth0.com", "id", "s");
    /// assert_eq!(p.audience(), "https://t.auth0.com/api/v2/");
    /// ```
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Forgets the cached token, so the next call fetches a new one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let p = idlink_client::ClientCredentials::for_domain("t.auth0.com", "id", "s");
    /// p.invalidate().await;
    /// # }
    /// ```
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    async fn cached_or_fetch(&self) -> Result<SecretString> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref() {
            if Instant::now() < cached.refresh_at {
                return Ok(cached.token.clone());
            }
        }
        let response = self.fetch().await?;
        let token = SecretString::from(response.access_token);
        *cache = Some(CachedToken {
            token: token.clone(),
            refresh_at: refresh_at(Instant::now(), response.expires_in, self.refresh_margin),
        });
        Ok(token)
    }

    async fn fetch(&self) -> Result<TokenResponse> {
        let mut body = ClientCredentialsRequest::new(
            self.client_id.clone(),
            self.client_secret.expose_secret(),
            self.audience.clone(),
        );
        body.scope = self.scope.clone();
        let response = self
            .http
            .post(&self.token_url)
            .json(&body)
            .send()
            .await
            .map_err(Error::Transport)?;
        let raw = RawResponse::from_response(&response);
        let bytes = response.bytes().await.map_err(Error::Transport)?;
        if !(200..300).contains(&raw.status_code) {
            return Err(Error::from_response(raw, &bytes));
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            Error::Decode(Box::new(DecodeError::new(
                path,
                e.into_inner(),
                &bytes,
                raw,
            )))
        })
    }
}

/// Longest a fetched token is cached, whatever its `expires_in` says: a server may send
/// any number, and `Instant + Duration` panics when the sum does not fit.
const MAX_CACHE_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// When a token fetched at `now` that lasts `expires_in` seconds is refreshed: `margin`
/// before it expires, saturating instead of overflowing on absurd lifetimes.
fn refresh_at(now: Instant, expires_in: u64, margin: Duration) -> Instant {
    let lifetime = Duration::from_secs(expires_in)
        .min(MAX_CACHE_LIFETIME)
        .saturating_sub(margin);
    now.checked_add(lifetime).unwrap_or(now)
}

impl TokenProvider for ClientCredentials {
    fn token(&self) -> BoxFuture<'_, Result<SecretString>> {
        Box::pin(self.cached_or_fetch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_expires_in_saturates_instead_of_panicking() {
        let now = Instant::now();
        let margin = Duration::from_secs(10);
        for expires_in in [u64::MAX, u64::MAX / 2, i64::MAX as u64, 10u64.pow(15)] {
            let at = refresh_at(now, expires_in, margin);
            assert_eq!(at, now + MAX_CACHE_LIFETIME - margin, "{expires_in}");
        }
        assert_eq!(
            refresh_at(now, 86_400, margin),
            now + Duration::from_secs(86_390)
        );
        assert_eq!(refresh_at(now, 5, margin), now, "shorter than the margin");
    }
}
