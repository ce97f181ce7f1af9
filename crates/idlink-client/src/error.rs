//! The one error type of the crate.

use std::fmt;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use idlink_types::{ErrorBody, OAuthErrorBody};

use crate::request::RawResponse;
use crate::retry::parse_retry_after;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a call.
///
/// API errors come as one variant per status the Management API documents (400, 401,
/// 403, 404, 409, 429), other statuses as [`Error::Api`]. Match on the variant and on
/// [`error_code`](Self::error_code), never on the message.
///
/// ```no_run
/// # async fn run(client: idlink_client::ManagementClient) {
/// use idlink_client::{Error, LinkUserIdentityRequestContent, UserIdentityProviderEnum as Provider};
///
/// let req = LinkUserIdentityRequestContent::identity(Provider::Github, 583231);
/// match client.users().identities().link("auth0|5f7c8ec7c33c6c004bbafe82", req, None).await {
///     Ok(identities) => println!("now {} identities", identities.len()),
///     Err(Error::Conflict(e)) if e.error_code() == Some("identity_conflict") => {
///         println!("already linked")
///     }
///     Err(Error::TooManyRequests(e)) => println!("slow down until {:?}", e.rate_limit().reset_at()),
///     Err(e) => eprintln!("link failed ({:?}): {e}", e.status_code()),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 400 Bad Request: the body or the path was rejected.
    #[error("400 Bad Request: {0}")]
    BadRequest(Box<ApiError>),
    /// 401 Unauthorized: the token is missing, invalid or expired.
    #[error("401 Unauthorized: {0}")]
    Unauthorized(Box<ApiError>),
    /// 403 Forbidden: the token lacks a scope, or acts on another user.
    #[error("403 Forbidden: {0}")]
    Forbidden(Box<ApiError>),
    /// 404 Not Found: the user or identity does not exist.
    #[error("404 Not Found: {0}")]
    NotFound(Box<ApiError>),
    /// 409 Conflict: e.g. the identity is already linked.
    #[error("409 Conflict: {0}")]
    Conflict(Box<ApiError>),
    /// 429 Too Many Requests, after the retries were used up; see
    /// [`ApiError::rate_limit`].
    #[error("429 Too Many Requests: {0}")]
    TooManyRequests(Box<ApiError>),
    /// Any other non-success status.
    #[error("{status} {0}", status = .0.status_code())]
    Api(Box<ApiError>),
    /// The call (all attempts and the delays between them) took longer than its timeout.
    #[error("the call did not complete within {timeout:?}")]
    Timeout {
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// The call's cancellation token was cancelled.
    #[error("the call was cancelled")]
    Cancelled,
    /// The request could not be sent or the response not read.
    #[error("transport error: {0}")]
    Transport(#[source] reqwest::Error),
    /// A success response whose body does not have the expected shape.
    #[error(transparent)]
    Decode(Box<DecodeError>),
    /// A token provider failed for a reason other than an HTTP answer.
    #[error("token provider failed: {0}")]
    TokenProvider(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The client or the request is misconfigured (bad URL, bad header, …).
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// The HTTP status of the response that caused the error, if there was one.
    ///
    /// ```
    /// assert_eq!(idlink_client::Error::Cancelled.status_code(), None);
    /// ```
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Self::Transport(e) => e.status().map(|s| s.as_u16()),
            Self::Decode(d) => Some(d.raw_response.status_code),
            _ => self.api_error().map(ApiError::status_code),
        }
    }

    /// The Management API's `errorCode` (e.g. `identity_conflict`), or the OAuth `error`
    /// of a failed token request.
    ///
    /// ```
    /// assert_eq!(idlink_client::Error::Cancelled.error_code(), None);
    /// ```
    pub fn error_code(&self) -> Option<&str> {
        self.api_error().and_then(ApiError::error_code)
    }

    /// A human-readable message: the API's `message` for API errors.
    ///
    /// ```
    /// assert_eq!(idlink_client::Error::Cancelled.message(), "the call was cancelled");
    /// ```
    pub fn message(&self) -> String {
        match self.api_error() {
            Some(api) => api.message().to_owned(),
            None => self.to_string(),
        }
    }

    /// The HTTP response behind the error (API and decode errors).
    ///
    /// ```
    /// assert!(idlink_client::Error::Cancelled.raw_response().is_none());
    /// ```
    pub fn raw_response(&self) -> Option<&RawResponse> {
        match self {
            Self::Decode(d) => Some(&d.raw_response),
            _ => self.api_error().map(ApiError::raw_response),
        }
    }

    /// The API error of the status variants (400 … 429 and [`Error::Api`]).
    ///
    /// ```
    /// assert!(idlink_client::Error::Cancelled.api_error().is_none());
    /// ```
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Self::BadRequest(e)
            | Self::Unauthorized(e)
            | Self::Forbidden(e)
            | Self::NotFound(e)
            | Self::Conflict(e)
            | Self::TooManyRequests(e)
            | Self::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The rate-limit headers of the response behind an API error.
    ///
    /// ```
    /// assert!(idlink_client::Error::Cancelled.rate_limit().is_none());
    /// ```
    pub fn rate_limit(&self) -> Option<&RateLimit> {
        self.api_error().map(ApiError::rate_limit)
    }

    /// Wraps the failure of a custom [`TokenProvider`](crate::TokenProvider).
    ///
    /// ```
    /// let e = idlink_client::Error::token_provider("vault unreachable");
    /// assert!(e.to_string().contains("vault unreachable"));
    /// ```
    pub fn token_provider(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::TokenProvider(error.into())
    }

    /// Builds the error for a non-success response.
    pub(crate) fn from_response(raw_response: RawResponse, body: &[u8]) -> Self {
        let api = Box::new(ApiError::new(raw_response, body));
        match api.status_code {
            400 => Self::BadRequest(api),
            401 => Self::Unauthorized(api),
            403 => Self::Forbidden(api),
            404 => Self::NotFound(api),
            409 => Self::Conflict(api),
            429 => Self::TooManyRequests(api),
            _ => Self::Api(api),
        }
    }
}

/// A non-success HTTP answer: status, `errorCode`, message, the raw body and response.
///
/// The body is decoded as the Management API error body
/// (`{"statusCode","error","message","errorCode"}`) or, for `/oauth/token`, the OAuth
/// error body (`{"error","error_description"}`); when it is neither, the raw text is kept
/// and the message falls back to it.
///
/// ```no_run
/// # async fn run(client: idlink_client::ManagementClient) {
/// if let Err(e) = client.users().get("auth0|nobody", None).await {
///     let api = e.api_error().expect("an HTTP answer");
///     println!("{} {:?} {} {}", api.status_code(), api.error_code(), api.message(), api.body());
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ApiError {
    status_code: u16,
    error_code: Option<String>,
    message: String,
    body: String,
    error_body: Option<ErrorBody>,
    rate_limit: RateLimit,
    raw_response: RawResponse,
}

impl ApiError {
    fn new(raw_response: RawResponse, body: &[u8]) -> Self {
        let status_code = raw_response.status_code;
        let text = String::from_utf8_lossy(body).into_owned();
        let error_body = serde_json::from_slice::<ErrorBody>(body).ok();
        let (error_code, message) = if let Some(b) = &error_body {
            (b.error_code.clone(), b.message.clone())
        } else if let Ok(o) = serde_json::from_slice::<OAuthErrorBody>(body) {
            let message = o
                .error_description
                .clone()
                .unwrap_or_else(|| o.error.clone());
            (Some(o.error), message)
        } else if text.trim().is_empty() {
            let reason = http::StatusCode::from_u16(status_code)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Unknown status");
            (None, reason.to_owned())
        } else {
            (None, text.clone())
        };
        Self {
            status_code,
            error_code,
            message,
            body: text,
            error_body,
            rate_limit: RateLimit::from_headers(&raw_response.headers),
            raw_response,
        }
    }

    /// The HTTP status code.
    ///
    /// ```no_run
    /// # fn f(e: &idlink_client::ApiError) {
    /// assert!(e.status_code() >= 400);
    /// # }
    /// ```
    pub fn status_code(&self) -> u16 {
        self.status_code
    }

    /// The `errorCode` of the body (or the OAuth `error`), when there is one.
    ///
    /// ```no_run
    /// # fn f(e: &idlink_client::ApiError) {
    /// if e.error_code() == Some("inexistent_user") { /* … */ }
    /// # }
    /// ```
    pub fn error_code(&self) -> Option<&str> {
        self.error_code.as_deref()
    }

    /// The body's `message` (or `error_description`), else the raw body text, else the
    /// HTTP reason phrase.
    ///
    /// ```no_run
    /// # fn f(e: &idlink_client::ApiError) {
    /// eprintln!("{}", e.message());
    /// # }
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The raw response body, as text.
    ///
    /// ```no_run
    /// # fn f(e: &idlink_client::ApiError) {
    /// eprintln!("{}", e.body());
    /// # }
    /// ```
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The decoded Management API error body, when the body was one.
    ///
    /// ```no_run
    /// # fn f(e: &idlink_client::ApiError) {
    /// if let Some(b) = e.error_body() { println!("{}", b.error); }
    /// # }
    /// ```
    pub fn error_body(&self) -> Option<&ErrorBody> {
        self.error_body.as_ref()
    }

    /// The rate-limit headers of the response.
    ///
    /// ```no_run
    /// # fn f(e: &idlink_client::ApiError) {
    /// println!("{:?} calls left", e.rate_limit().remaining);
    /// # }
    /// ```
    pub fn rate_limit(&self) -> &RateLimit {
        &self.rate_limit
    }

    /// The HTTP response: status, URL, headers.
    ///
    /// ```no_run
    /// # fn f(e: &idlink_client::ApiError) {
    /// println!("{}", e.raw_response().url);
    /// # }
    /// ```
    pub fn raw_response(&self) -> &RawResponse {
        &self.raw_response
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error_code {
            Some(code) => write!(f, "{} ({code})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A success response whose body did not decode; `path` says where in the JSON.
///
/// ```no_run
/// # async fn run(client: idlink_client::ManagementClient) {
/// if let Err(idlink_client::Error::Decode(d)) = client.users().get("auth0|abc", None).await {
///     eprintln!("bad field at {}: {}", d.path(), d.body());
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct DecodeError {
    path: String,
    source: serde_json::Error,
    body: String,
    raw_response: RawResponse,
}

impl DecodeError {
    pub(crate) fn new(
        path: String,
        source: serde_json::Error,
        body: &[u8],
        raw_response: RawResponse,
    ) -> Self {
        Self {
            path,
            source,
            body: String::from_utf8_lossy(body).into_owned(),
            raw_response,
        }
    }

    /// The JSON path of the failing value, e.g. `[0].user_id`.
    ///
    /// ```no_run
    /// # fn f(d: &idlink_client::DecodeError) {
    /// println!("{}", d.path());
    /// # }
    /// ```
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw response body, as text.
    ///
    /// ```no_run
    /// # fn f(d: &idlink_client::DecodeError) {
    /// println!("{}", d.body());
    /// # }
    /// ```
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The HTTP response.
    ///
    /// ```no_run
    /// # fn f(d: &idlink_client::DecodeError) {
    /// println!("{}", d.raw_response().status_code);
    /// # }
    /// ```
    pub fn raw_response(&self) -> &RawResponse {
        &self.raw_response
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not decode the {} response at `{}`: {}",
            self.raw_response.status_code, self.path, self.source
        )
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The rate-limit headers of a response: `X-RateLimit-Limit`, `X-RateLimit-Remaining`,
/// `X-RateLimit-Reset` (Unix seconds of the next refill) and `Retry-After`.
///
/// ```
/// use http::HeaderMap;
/// use idlink_client::RateLimit;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-ratelimit-limit", "50".parse().unwrap());
/// headers.insert("X-RateLimit-Remaining", "0".parse().unwrap());
/// headers.insert("x-ratelimit-reset", "1700000000".parse().unwrap());
/// headers.insert("retry-after", "2".parse().unwrap());
/// let r = RateLimit::from_headers(&headers);
/// assert_eq!((r.limit, r.remaining, r.reset), (Some(50), Some(0), Some(1700000000)));
/// assert_eq!(r.retry_after, Some(std::time::Duration::from_secs(2)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// `X-RateLimit-Limit`: the bucket size.
    pub limit: Option<u64>,
    /// `X-RateLimit-Remaining`: calls left in the bucket.
    pub remaining: Option<u64>,
    /// `X-RateLimit-Reset`: Unix time (seconds) of the next refill.
    pub reset: Option<u64>,
    /// `Retry-After` (seconds, or an HTTP date converted to a delay from now).
    pub retry_after: Option<Duration>,
}

impl RateLimit {
    /// Reads the rate-limit headers (names are case-insensitive; bad values are ignored).
    ///
    /// ```
    /// let r = idlink_client::RateLimit::from_headers(&http::HeaderMap::new());
    /// assert_eq!(r, idlink_client::RateLimit::default());
    /// ```
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Self {
            limit: number("x-ratelimit-limit"),
            remaining: number("x-ratelimit-remaining"),
            reset: number("x-ratelimit-reset"),
            retry_after: headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now())),
        }
    }

    /// `reset` as a point in time.
    ///
    /// ```
    /// let r = idlink_client::RateLimit { reset: Some(0), ..Default::default() };
    /// assert_eq!(r.reset_at(), Some(std::time::UNIX_EPOCH));
    /// ```
    pub fn reset_at(&self) -> Option<SystemTime> {
        self.reset
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
    }
}
