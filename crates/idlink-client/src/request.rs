//! A call as a value: built by the area handlers, run by awaiting it.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use reqwest::Url;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::ManagementClient;
use crate::error::{DecodeError, Error, Result};
use crate::options::RequestOptions;

/// The HTTP response of a call: status, final URL and headers.
///
/// Header lookup is case-insensitive: `headers.get("X-RateLimit-Remaining")` and
/// `headers.get("x-ratelimit-remaining")` find the same header.
///
/// ```no_run
/// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
/// let r = client.users().get("auth0|5f7c8ec7c33c6c004bbafe82", None).with_raw_response().await?;
/// println!("{} {} {:?}", r.raw_response.status_code, r.raw_response.url,
///          r.raw_response.headers.get("X-RateLimit-Remaining"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The HTTP status code.
    pub status_code: u16,
    /// The URL that answered.
    pub url: Url,
    /// The response headers.
    pub headers: HeaderMap,
}

impl RawResponse {
    pub(crate) fn from_response(response: &reqwest::Response) -> Self {
        Self {
            status_code: response.status().as_u16(),
            url: response.url().clone(),
            headers: response.headers().clone(),
        }
    }
}

/// The data of a call with the HTTP response beside it; what
/// [`ApiRequest::with_raw_response`] yields.
///
/// ```no_run
/// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
/// use idlink_client::{LinkUserIdentityRequestContent, UserIdentityProviderEnum as Provider};
///
/// let req = LinkUserIdentityRequestContent::identity(Provider::GoogleOauth2, "1093");
/// let r = client.users().identities()
///     .link("auth0|5f7c8ec7c33c6c004bbafe82", req, None)
///     .with_raw_response()
///     .await?;
/// assert_eq!(r.raw_response.status_code, 201);
/// println!("{} identities", r.data.len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct WithRawResponse<T> {
    /// The decoded body.
    pub data: T,
    /// Status, URL and headers.
    pub raw_response: RawResponse,
}

/// One call, ready to run: `.await` it for the data, or call
/// [`with_raw_response`](Self::with_raw_response) first for the HTTP response too.
///
/// Nothing is sent until it is awaited; dropping the future cancels the call.
///
/// ```no_run
/// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
/// use std::time::Duration;
/// use idlink_client::RequestOptions;
///
/// let request = client.users().get("auth0|5f7c8ec7c33c6c004bbafe82", None);
/// // `request` is a value: nothing was sent yet.
/// // Options can also be given after the fact:
/// let user = request.options(RequestOptions::new().timeout(Duration::from_secs(3))).await?;
/// # Ok(()) }
/// ```
#[must_use = "a request does nothing until it is awaited"]
pub struct ApiRequest<T> {
    client: ManagementClient,
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    body: Option<std::result::Result<Value, String>>,
    options: RequestOptions,
    /// Whether each run of the call sends a fresh `Idempotency-Key` (link, unlink),
    /// unless the options name one.
    fresh_idempotency_key: bool,
    _data: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for ApiRequest<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<T> ApiRequest<T> {
    pub(crate) fn new(client: ManagementClient, method: Method, path: String) -> Self {
        Self {
            client,
            method,
            path,
            query: Vec::new(),
            body: None,
            options: RequestOptions::default(),
            fresh_idempotency_key: false,
            _data: PhantomData,
        }
    }

    /// Adds a query parameter.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// let stats: serde_json::Value = client
    ///     .request(http::Method::GET, "/stats/daily")
    ///     .query("from", "20240101")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn query(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        self.query.push((name.into(), value.to_string()));
        self
    }

    /// Sets the JSON body.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// let user: serde_json::Value = client
    ///     .request(http::Method::PATCH, "/users/auth0%7Cabc")
    ///     .json(&serde_json::json!({"blocked": true}))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn json(mut self, body: &impl Serialize) -> Self {
        self.body = Some(serde_json::to_value(body).map_err(|e| e.to_string()));
        self
    }

    /// Replaces the call's options.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// let users = client.users()
    ///     .list_by_email("a@example.com", None)
    ///     .options(idlink_client::RequestOptions::new().max_retries(0))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn options(mut self, options: RequestOptions) -> Self {
        self.options = options;
        self
    }

    /// Makes each run of the call send a fresh `Idempotency-Key` (kept for its
    /// retries), so that retrying it after a 5xx never acts twice on idlink.
    pub(crate) fn with_fresh_idempotency_key(mut self) -> Self {
        self.fresh_idempotency_key = true;
        self
    }

    /// The key every attempt of this run sends: the caller's, else a fresh one when
    /// the call asks for it.
    fn idempotency_key(&self) -> Result<Option<HeaderValue>> {
        let key = match &self.options.idempotency_key {
            Some(key) => Some(key.clone()),
            None if self.fresh_idempotency_key => Some(fresh_idempotency_key()),
            None => None,
        };
        key.map(|key| {
            HeaderValue::from_str(&key)
                .map_err(|e| Error::Config(format!("invalid Idempotency-Key `{key}`: {e}")))
        })
        .transpose()
    }

    pub(crate) fn maybe_options(self, options: Option<RequestOptions>) -> Self {
        match options {
            Some(o) => self.options(o),
            None => self,
        }
    }

    /// Yields [`WithRawResponse`]: the data and the HTTP response.
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// let r = client.users().get("auth0|abc", None).with_raw_response().await?;
    /// println!("{:?}", r.raw_response.headers.get("x-ratelimit-remaining"));
    /// # Ok(()) }
    /// ```
    pub fn with_raw_response(self) -> WithRawResponseRequest<T> {
        WithRawResponseRequest { request: self }
    }
}

impl<T: DeserializeOwned + Send + 'static> ApiRequest<T> {
    /// Runs the call (the same as awaiting the request).
    ///
    /// ```no_run
    /// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
    /// let user = client.users().get("auth0|abc", None).send().await?;
    /// # Ok(()) }
    /// ```
    pub async fn send(self) -> Result<T> {
        self.execute().await.map(|r| r.data)
    }

    async fn execute(self) -> Result<WithRawResponse<T>> {
        let timeout = self.options.timeout.unwrap_or(self.client.inner.timeout);
        let cancel = self.options.cancellation_token.clone();
        let timed = async {
            match tokio::time::timeout(timeout, self.attempts()).await {
                Ok(result) => result,
                Err(_) => Err(Error::Timeout { timeout }),
            }
        };
        match cancel {
            Some(cancel) => tokio::select! {
                biased;
                () = cancel.cancelled() => Err(Error::Cancelled),
                result = timed => result,
            },
            None => timed.await,
        }
    }

    fn url(&self) -> Result<Url> {
        let base = self
            .options
            .base_url
            .as_deref()
            .unwrap_or(&self.client.inner.base_url)
            .trim_end_matches('/');
        let slash = if self.path.starts_with('/') { "" } else { "/" };
        let text = format!("{base}{slash}{}", self.path);
        let mut url =
            Url::parse(&text).map_err(|e| Error::Config(format!("invalid URL `{text}`: {e}")))?;
        if !self.query.is_empty() || !self.options.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in self.query.iter().chain(&self.options.query) {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    fn body(&self) -> Result<Option<Vec<u8>>> {
        let mut body = match &self.body {
            None => None,
            Some(Ok(v)) => Some(v.clone()),
            Some(Err(e)) => return Err(Error::Config(format!("the body does not serialize: {e}"))),
        };
        if !self.options.body.is_empty() {
            match &mut body {
                None => body = Some(Value::Object(self.options.body.clone())),
                Some(Value::Object(map)) => {
                    map.extend(
                        self.options
                            .body
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone())),
                    );
                }
                Some(_) => {
                    return Err(Error::Config(
                        "additional body properties need a JSON object body".into(),
                    ));
                }
            }
        }
        body.map(|v| serde_json::to_vec(&v))
            .transpose()
            .map_err(|e| Error::Config(format!("the body does not serialize: {e}")))
    }

    fn extra_headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>> {
        self.options
            .headers
            .iter()
            .map(|(k, v)| {
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|e| Error::Config(format!("invalid header name `{k}`: {e}")))?;
                let value = HeaderValue::from_str(v)
                    .map_err(|e| Error::Config(format!("invalid value for header `{k}`: {e}")))?;
                Ok((name, value))
            })
            .collect()
    }

    async fn attempts(&self) -> Result<WithRawResponse<T>> {
        let inner = &self.client.inner;
        let policy = &inner.retry;
        let max_retries = self.options.max_retries.unwrap_or(policy.max_retries());
        let url = self.url()?;
        let body = self.body()?;
        let extra_headers = self.extra_headers()?;
        // One key for every attempt: a retry is the same logical call.
        let idempotency_key = self.idempotency_key()?;
        let mut attempt: u32 = 0;
        loop {
            let token = match inner.tokens.token().await {
                Ok(token) => token,
                Err(e) => {
                    let retry = e
                        .api_error()
                        .filter(|a| policy.is_retryable_status(a.status_code()))
                        .map(|a| a.raw_response().headers.clone());
                    match retry {
                        Some(headers) if attempt < max_retries => {
                            tokio::time::sleep(policy.delay(attempt, &headers)).await;
                            attempt += 1;
                            continue;
                        }
                        _ => return Err(e),
                    }
                }
            };
            let mut authorization =
                HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                    .map_err(|_| Error::Config("the token is not a valid header value".into()))?;
            authorization.set_sensitive(true);
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, authorization);
            headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
            if let Some(telemetry) = &inner.telemetry {
                headers.insert(HeaderName::from_static("auth0-client"), telemetry.clone());
            }
            if body.is_some() {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            if let Some(key) = &idempotency_key {
                headers.insert(IDEMPOTENCY_KEY, key.clone());
            }
            for (name, value) in &extra_headers {
                headers.insert(name.clone(), value.clone());
            }
            let mut request = inner
                .http
                .request(self.method.clone(), url.clone())
                .headers(headers);
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            let response = request.send().await.map_err(Error::Transport)?;
            let raw = RawResponse::from_response(&response);
            let bytes = response.bytes().await.map_err(Error::Transport)?;
            if (200..300).contains(&raw.status_code) {
                return decode(&bytes, raw);
            }
            if attempt < max_retries && policy.is_retryable_status(raw.status_code) {
                tokio::time::sleep(policy.delay(attempt, &raw.headers)).await;
                attempt += 1;
                continue;
            }
            return Err(Error::from_response(raw, &bytes));
        }
    }
}

/// The request header of exactly-once calls (draft-ietf-httpapi-idempotency-key-header).
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// 128 random bits as a UUID v4 (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`).
fn fresh_idempotency_key() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    raw_response: RawResponse,
) -> Result<WithRawResponse<T>> {
    let input: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        bytes
    };
    let de = &mut serde_json::Deserializer::from_slice(input);
    let result = serde_path_to_error::deserialize(&mut *de)
        .map_err(|e| (e.path().to_string(), e.into_inner()))
        .and_then(|data| de.end().map(|()| data).map_err(|e| (".".to_owned(), e)));
    match result {
        Ok(data) => Ok(WithRawResponse { data, raw_response }),
        Err((path, source)) => Err(Error::Decode(Box::new(DecodeError::new(
            path,
            source,
            bytes,
            raw_response,
        )))),
    }
}

impl<T: DeserializeOwned + Send + 'static> IntoFuture for ApiRequest<T> {
    type Output = Result<T>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<T>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A call that yields [`WithRawResponse`]; made by [`ApiRequest::with_raw_response`],
/// run by awaiting it.
///
/// ```no_run
/// # async fn run(client: idlink_client::ManagementClient) -> idlink_client::Result<()> {
/// let r = client.users().list_by_email("a@example.com", None).with_raw_response().await?;
/// assert_eq!(r.raw_response.status_code, 200);
/// # Ok(()) }
/// ```
#[must_use = "a request does nothing until it is awaited"]
#[derive(Debug)]
pub struct WithRawResponseRequest<T> {
    request: ApiRequest<T>,
}

impl<T: DeserializeOwned + Send + 'static> IntoFuture for WithRawResponseRequest<T> {
    type Output = Result<WithRawResponse<T>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<WithRawResponse<T>>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.request.execute())
    }
}

#[cfg(test)]
mod tests {
    use super::fresh_idempotency_key;

    #[test]
    fn fresh_keys_are_uuid_v4_and_differ() {
        let key = fresh_idempotency_key();
        assert_eq!(key.len(), 36);
        assert_eq!(&key[14..15], "4");
        assert!(matches!(&key[19..20], "8" | "9" | "a" | "b"), "{key}");
        assert!(key.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
        assert_ne!(key, fresh_idempotency_key());
    }
}
