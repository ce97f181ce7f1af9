//! The client against a small local server of the test's own that misbehaves on cue:
//! retries, delays, timeouts, cancellation, token caching, error decoding and the
//! request's shape on the wire.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use idlink_client::{
    ClientCredentials, Error, LinkUserIdentityRequestContent, ManagementClient, Method,
    RequestOptions, RetryPolicy, UserIdentity, UserIdentityProviderEnum as Provider,
};
use tokio_util::sync::CancellationToken;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Script = Arc<dyn Fn(usize) -> BoxFuture<Response> + Send + Sync>;

/// One request the server saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
    wall: SystemTime,
}

#[derive(Debug, Clone, Copy)]
enum TokenMode {
    Ok { expires_in: u64 },
    Denied,
}

struct Shared {
    script: Script,
    seen: Mutex<Vec<Seen>>,
    token_fetches: AtomicUsize,
    token_bodies: Mutex<Vec<serde_json::Value>>,
    token_mode: Mutex<TokenMode>,
    in_flight_done: AtomicU64,
}

struct Mock {
    origin: String,
    shared: Arc<Shared>,
}

impl Mock {
    async fn start(script: impl Fn(usize) -> BoxFuture<Response> + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            script: Arc::new(script),
            seen: Mutex::new(Vec::new()),
            token_fetches: AtomicUsize::new(0),
            token_bodies: Mutex::new(Vec::new()),
            token_mode: Mutex::new(TokenMode::Ok { expires_in: 86400 }),
            in_flight_done: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/oauth/token", post(token))
            .fallback(api)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { origin, shared }
    }

    fn api_url(&self) -> String {
        format!("{}/api/v2", self.origin)
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    fn attempts(&self) -> usize {
        self.shared.seen.lock().unwrap().len()
    }

    fn token_fetches(&self) -> usize {
        self.shared.token_fetches.load(Ordering::SeqCst)
    }

    fn set_token_mode(&self, mode: TokenMode) {
        *self.shared.token_mode.lock().unwrap() = mode;
    }

    /// A client with a static token and a fast retry policy (base delay 10 ms).
    fn client(&self) -> ManagementClient {
        ManagementClient::builder()
            .base_url(self.api_url())
            .token("static-token")
            .retry_policy(fast_policy())
            .build()
            .unwrap()
    }
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy::default().with_base_delay(Duration::from_millis(10))
}

async fn api(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let n = {
        let mut seen = shared.seen.lock().unwrap();
        seen.push(Seen {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            headers: parts.headers,
            body,
            at: Instant::now(),
            wall: SystemTime::now(),
        });
        seen.len() - 1
    };
    let response = (shared.script)(n).await;
    shared.in_flight_done.fetch_add(1, Ordering::SeqCst);
    response
}

async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let n = shared.token_fetches.fetch_add(1, Ordering::SeqCst) + 1;
    shared
        .token_bodies
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap_or_default());
    // Slow enough that concurrent callers overlap with the fetch.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mode = *shared.token_mode.lock().unwrap();
    match mode {
        TokenMode::Ok { expires_in } => json(
            200,
            &[],
            serde_json::json!({
                "access_token": format!("tok-{n}"), "token_type": "Bearer",
                "expires_in": expires_in, "scope": "read:users update:users"
            }),
        ),
        TokenMode::Denied => json(
            401,
            &[],
            serde_json::json!({"error": "access_denied", "error_description": "Unauthorized"}),
        ),
    }
}

fn reply(status: u16, headers: &[(&str, String)], body: impl Into<String>) -> Response {
    let mut response = (StatusCode::from_u16(status).unwrap(), body.into()).into_response();
    for (k, v) in headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    response
}

fn json(status: u16, headers: &[(&str, String)], body: serde_json::Value) -> Response {
    let mut response = reply(status, headers, body.to_string());
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

fn error_body(status: u16, error_code: &str, message: &str) -> serde_json::Value {
    let reason = StatusCode::from_u16(status)
        .unwrap()
        .canonical_reason()
        .unwrap();
    serde_json::json!({"statusCode": status, "error": reason, "message": message, "errorCode": error_code})
}

fn identities() -> serde_json::Value {
    serde_json::json!([
        {"connection": "Username-Password-Authentication", "user_id": "abc", "provider": "auth0", "isSocial": false},
        {"connection": "github", "user_id": 123, "provider": "github", "isSocial": true,
         "profileData": {"email": "octo@example.com", "login": "octo"}, "some_new_field": 1}
    ])
}

fn ok() -> Response {
    json(200, &[("x-ratelimit-remaining", "41".into())], identities())
}

fn unavailable() -> Response {
    json(
        503,
        &[],
        error_body(503, "service_unavailable", "try later"),
    )
}

fn boxed(r: Response) -> BoxFuture<Response> {
    Box::pin(async move { r })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn gaps(seen: &[Seen]) -> Vec<Duration> {
    seen.windows(2).map(|w| w[1].at - w[0].at).collect()
}

fn link_request() -> LinkUserIdentityRequestContent {
    LinkUserIdentityRequestContent::identity(Provider::Github, 123)
}

#[tokio::test]
async fn retries_503_twice_then_succeeds_with_backoff() {
    let mock = Mock::start(|n| boxed(if n < 2 { unavailable() } else { ok() })).await;
    let client = ManagementClient::builder()
        .base_url(mock.api_url())
        .token("t")
        .retry_policy(RetryPolicy::default().with_base_delay(Duration::from_millis(40)))
        .build()
        .unwrap();
    let r = client
        .users()
        .identities()
        .link("auth0|abc", link_request(), None)
        .with_raw_response()
        .await
        .unwrap();
    assert_eq!(r.raw_response.status_code, 200);
    assert_eq!(r.data.len(), 2);
    assert_eq!(mock.attempts(), 3);
    let gaps = gaps(&mock.seen());
    // 40 ms × 2^0 and × 2^1, each ±10 %.
    assert!(gaps[0] >= Duration::from_millis(36), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(72), "{gaps:?}");
    assert!(gaps[1] < Duration::from_millis(400), "{gaps:?}");
    // Each attempt sends the same body.
    let seen = mock.seen();
    assert!(seen.iter().all(|s| s.body == seen[0].body));
}

#[tokio::test]
async fn gives_up_after_max_retries() {
    let mock = Mock::start(|_| boxed(unavailable())).await;
    let client = mock.client();
    let err = client.users().get("auth0|abc", None).await.unwrap_err();
    assert!(matches!(err, Error::Api(_)), "{err:?}");
    assert_eq!(err.status_code(), Some(503));
    assert_eq!(err.error_code(), Some("service_unavailable"));
    assert_eq!(mock.attempts(), 3, "default: 2 retries");

    let err = client
        .users()
        .get("auth0|abc", Some(RequestOptions::new().max_retries(0)))
        .await
        .unwrap_err();
    assert_eq!(err.status_code(), Some(503));
    assert_eq!(mock.attempts(), 4, "max_retries(0): one attempt");

    client
        .users()
        .get("auth0|abc", Some(RequestOptions::new().max_retries(4)))
        .await
        .unwrap_err();
    assert_eq!(mock.attempts(), 9, "max_retries(4): five attempts");
}

#[tokio::test]
async fn retries_408_and_500_but_not_other_4xx() {
    let mock = Mock::start(|n| {
        boxed(match n {
            0 => reply(408, &[], ""),
            1 => reply(500, &[], "boom"),
            _ => ok(),
        })
    })
    .await;
    mock.client()
        .users()
        .identities()
        .link("auth0|abc", link_request(), None)
        .await
        .unwrap();
    assert_eq!(mock.attempts(), 3);
}

#[tokio::test]
async fn retry_after_seconds_is_honoured() {
    let mock = Mock::start(|n| {
        boxed(if n == 0 {
            json(
                429,
                &[
                    ("retry-after", "1".into()),
                    ("x-ratelimit-reset", (unix_now() + 30).to_string()),
                ],
                error_body(429, "too_many_requests", "Too many requests."),
            )
        } else {
            ok()
        })
    })
    .await;
    mock.client()
        .users()
        .identities()
        .link("auth0|abc", link_request(), None)
        .await
        .unwrap();
    assert_eq!(mock.attempts(), 2);
    let gap = gaps(&mock.seen())[0];
    // Retry-After wins over X-RateLimit-Reset and over the (10 ms) backoff; no jitter.
    assert!(gap >= Duration::from_millis(1000), "{gap:?}");
    assert!(gap < Duration::from_millis(1500), "{gap:?}");
}

#[tokio::test]
async fn retry_after_http_date_is_honoured() {
    let mock = Mock::start(|n| {
        boxed(if n == 0 {
            let at = SystemTime::now() + Duration::from_secs(1);
            reply(503, &[("retry-after", httpdate::fmt_http_date(at))], "")
        } else {
            ok()
        })
    })
    .await;
    // A backoff this long would show: the header must be what sets the delay.
    let client = ManagementClient::builder()
        .base_url(mock.api_url())
        .token("t")
        .retry_policy(RetryPolicy::default().with_base_delay(Duration::from_secs(5)))
        .build()
        .unwrap();
    client
        .users()
        .identities()
        .link("auth0|abc", link_request(), None)
        .await
        .unwrap();
    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    // The date has second resolution: the retry waits until that second has begun.
    let first = seen[0].wall.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let second = seen[1].wall.duration_since(UNIX_EPOCH).unwrap();
    assert!(second.as_secs() > first, "{first} {second:?}");
    assert!(seen[1].at - seen[0].at < Duration::from_millis(1500));
}

#[tokio::test]
async fn rate_limit_reset_is_honoured_without_retry_after() {
    let mock = Mock::start(|n| {
        boxed(if n == 0 {
            json(
                429,
                &[
                    ("x-ratelimit-limit", "2".into()),
                    ("x-ratelimit-remaining", "0".into()),
                    ("x-ratelimit-reset", (unix_now() + 1).to_string()),
                ],
                error_body(429, "too_many_requests", "Too many requests."),
            )
        } else {
            ok()
        })
    })
    .await;
    mock.client()
        .users()
        .identities()
        .link("auth0|abc", link_request(), None)
        .await
        .unwrap();
    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    let reset = UNIX_EPOCH
        + Duration::from_secs(seen[0].wall.duration_since(UNIX_EPOCH).unwrap().as_secs() + 1);
    // The retry comes after the advertised reset, and at most 20 % (+ slack) later.
    assert!(seen[1].wall >= reset, "retried before the reset");
    let delay = seen[1].at - seen[0].at;
    assert!(delay <= Duration::from_millis(1200 + 300), "{delay:?}");
}

#[tokio::test]
async fn exhausted_429_is_too_many_requests_with_rate_limit() {
    let reset = unix_now() + 60;
    let mock = Mock::start(move |_| {
        boxed(json(
            429,
            &[
                ("X-RateLimit-Limit", "50".into()),
                ("X-RateLimit-Remaining", "0".into()),
                ("X-RateLimit-Reset", reset.to_string()),
                ("Retry-After", "1".into()),
            ],
            error_body(429, "too_many_requests", "Too many requests."),
        ))
    })
    .await;
    let err = mock
        .client()
        .users()
        .get("auth0|abc", Some(RequestOptions::new().max_retries(0)))
        .await
        .unwrap_err();
    let Error::TooManyRequests(api) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(api.error_code(), Some("too_many_requests"));
    let rl = api.rate_limit();
    assert_eq!(
        (rl.limit, rl.remaining, rl.reset),
        (Some(50), Some(0), Some(reset))
    );
    assert_eq!(rl.retry_after, Some(Duration::from_secs(1)));
    assert_eq!(
        err.rate_limit().unwrap().reset_at(),
        Some(UNIX_EPOCH + Duration::from_secs(reset))
    );
    assert_eq!(mock.attempts(), 1);
}

#[tokio::test]
async fn bad_request_and_conflict_are_not_retried() {
    let mock = Mock::start(|n| {
        boxed(if n == 0 {
            json(
                400,
                &[],
                error_body(400, "invalid_body", "Payload validation error"),
            )
        } else {
            json(
                409,
                &[],
                error_body(
                    409,
                    "identity_conflict",
                    "Specified identity already exists.",
                ),
            )
        })
    })
    .await;
    let client = mock.client();
    let err = client
        .users()
        .identities()
        .link("auth0|abc", link_request(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err:?}");
    assert_eq!(err.error_code(), Some("invalid_body"));
    assert_eq!(err.message(), "Payload validation error");
    assert_eq!(mock.attempts(), 1);

    let err = client
        .users()
        .identities()
        .link("auth0|abc", link_request(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert_eq!(err.error_code(), Some("identity_conflict"));
    assert_eq!(err.status_code(), Some(409));
    assert_eq!(err.raw_response().unwrap().status_code, 409);
    assert_eq!(mock.attempts(), 2);
}

#[tokio::test]
async fn timeout_spans_retries() {
    let mock = Mock::start(|_| boxed(unavailable())).await;
    let client = ManagementClient::builder()
        .base_url(mock.api_url())
        .token("t")
        .retry_policy(
            RetryPolicy::default()
                .with_max_retries(10)
                .with_base_delay(Duration::from_millis(100))
                .with_jitter(false),
        )
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client
        .users()
        .get(
            "auth0|abc",
            Some(RequestOptions::new().timeout(Duration::from_millis(250))),
        )
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, Error::Timeout { timeout } if timeout == Duration::from_millis(250)),
        "{err:?}"
    );
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
    // Attempts at 0 ms and ~100 ms; the third would start at ~300 ms, past the timeout.
    let attempts = mock.attempts();
    assert!((1..=2).contains(&attempts), "{attempts} attempts");
}

#[tokio::test]
async fn client_default_timeout_applies() {
    let mock = Mock::start(|_| boxed(unavailable())).await;
    let client = ManagementClient::builder()
        .base_url(mock.api_url())
        .token("t")
        .timeout(Duration::from_millis(150))
        .retry_policy(RetryPolicy::default().with_base_delay(Duration::from_secs(5)))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.users().get("x", None).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn slow_response_times_out() {
    let mock = Mock::start(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            ok()
        })
    })
    .await;
    let started = Instant::now();
    let err = mock
        .client()
        .users()
        .identities()
        .link(
            "auth0|abc",
            link_request(),
            Some(RequestOptions::new().timeout(Duration::from_millis(200))),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert_eq!(err.status_code(), None);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(mock.attempts(), 1);
}

#[tokio::test]
async fn cancellation_token_stops_a_slow_call() {
    let mock = Mock::start(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            ok()
        })
    })
    .await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let err = mock
        .client()
        .users()
        .identities()
        .delete(
            "auth0|abc",
            Provider::Github,
            123,
            Some(RequestOptions::new().cancellation_token(cancel)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn cancellation_token_stops_retrying() {
    let mock = Mock::start(|_| boxed(unavailable())).await;
    let client = ManagementClient::builder()
        .base_url(mock.api_url())
        .token("t")
        .retry_policy(
            RetryPolicy::default()
                .with_max_retries(50)
                .with_base_delay(Duration::from_millis(30)),
        )
        .build()
        .unwrap();
    let cancel = CancellationToken::new();
    let call = tokio::spawn(
        client
            .users()
            .get(
                "auth0|abc",
                Some(RequestOptions::new().cancellation_token(cancel.clone())),
            )
            .into_future(),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancel.cancel();
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    let attempts = mock.attempts();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mock.attempts(), attempts, "no attempt after cancellation");
    assert!(attempts < 50);

    // A token cancelled before the call starts: nothing is sent.
    let before = mock.attempts();
    let err = client
        .users()
        .get(
            "auth0|abc",
            Some(RequestOptions::new().cancellation_token(cancel)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled));
    assert_eq!(mock.attempts(), before);
}

#[tokio::test]
async fn dropping_the_future_stops_retrying() {
    let mock = Mock::start(|_| boxed(unavailable())).await;
    let client = ManagementClient::builder()
        .base_url(mock.api_url())
        .token("t")
        .retry_policy(
            RetryPolicy::default()
                .with_max_retries(50)
                .with_base_delay(Duration::from_millis(30)),
        )
        .build()
        .unwrap();
    let call = tokio::spawn(client.users().get("auth0|abc", None).into_future());
    tokio::time::sleep(Duration::from_millis(100)).await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    let attempts = mock.attempts();
    assert!(attempts >= 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        mock.attempts(),
        attempts,
        "no attempt after the future was dropped"
    );
}

#[tokio::test]
async fn token_is_fetched_once_for_many_concurrent_calls() {
    let mock = Mock::start(|_| boxed(ok())).await;
    let client = ManagementClient::builder()
        .base_url(mock.api_url())
        .client_credentials("my-client", "my-secret")
        .build()
        .unwrap();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(
                client
                    .users()
                    .identities()
                    .link("auth0|abc", link_request(), None)
                    .into_future(),
            )
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(mock.token_fetches(), 1);
    let seen = mock.seen();
    assert_eq!(seen.len(), 20);
    assert!(
        seen.iter()
            .all(|s| s.headers["authorization"] == "Bearer tok-1")
    );
    let body = mock.shared.token_bodies.lock().unwrap()[0].clone();
    assert_eq!(body["grant_type"], "client_credentials");
    assert_eq!(body["client_id"], "my-client");
    assert_eq!(body["client_secret"], "my-secret");
    let port = mock.origin.rsplit(':').next().unwrap();
    assert_eq!(
        body["audience"],
        format!("https://127.0.0.1:{port}/api/v2/")
    );
    assert!(!format!("{client:?}").contains("my-secret"));
}

#[tokio::test]
async fn token_is_refreshed_after_expiry() {
    let mock = Mock::start(|_| boxed(ok())).await;
    mock.set_token_mode(TokenMode::Ok { expires_in: 2 });
    // Valid for 2 s − 1.5 s = 500 ms.
    let provider = ClientCredentials::new(
        format!("{}/oauth/token", mock.origin),
        "https://tenant.example/api/v2/",
        "id",
        "secret",
    )
    .with_refresh_margin(Duration::from_millis(1500));
    let client = ManagementClient::builder()
        .base_url(mock.api_url())
        .token_provider(provider)
        .build()
        .unwrap();
    let link = || {
        client
            .users()
            .identities()
            .link("auth0|abc", link_request(), None)
    };
    link().await.unwrap();
    link().await.unwrap();
    assert_eq!(mock.token_fetches(), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    link().await.unwrap();
    assert_eq!(mock.token_fetches(), 2);
    let auth: Vec<_> = mock
        .seen()
        .iter()
        .map(|s| s.headers["authorization"].clone())
        .collect();
    assert_eq!(auth, ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]);
    assert_eq!(
        mock.shared.token_bodies.lock().unwrap()[0]["audience"],
        "https://tenant.example/api/v2/"
    );
}

#[tokio::test]
async fn failed_token_fetch_is_a_typed_error_and_not_cached() {
    let mock = Mock::start(|_| boxed(ok())).await;
    mock.set_token_mode(TokenMode::Denied);
    let client = ManagementClient::builder()
        .base_url(mock.api_url())
        .client_credentials("id", "wrong")
        .build()
        .unwrap();
    let err = client
        .users()
        .identities()
        .link("auth0|abc", link_request(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");
    assert_eq!(err.error_code(), Some("access_denied"));
    assert_eq!(err.message(), "Unauthorized");
    assert_eq!(mock.attempts(), 0);
    mock.set_token_mode(TokenMode::Ok { expires_in: 86400 });
    client
        .users()
        .identities()
        .link("auth0|abc", link_request(), None)
        .await
        .unwrap();
    assert_eq!(mock.token_fetches(), 2);
}

#[tokio::test]
async fn closure_token_provider_is_asked_per_attempt() {
    let mock = Mock::start(|n| boxed(if n == 0 { unavailable() } else { ok() })).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let client = ManagementClient::builder()
        .base_url(mock.api_url())
        .token_provider(idlink_client::FnTokenProvider::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok(format!("closure-{n}")) }
        }))
        .retry_policy(fast_policy())
        .build()
        .unwrap();
    client
        .users()
        .identities()
        .link("auth0|abc", link_request(), None)
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let auth: Vec<_> = mock
        .seen()
        .iter()
        .map(|s| s.headers["authorization"].clone())
        .collect();
    assert_eq!(auth, ["Bearer closure-0", "Bearer closure-1"]);
}

#[tokio::test]
async fn request_shape_on_the_wire() {
    let mock = Mock::start(|_| boxed(ok())).await;
    let client = mock.client();
    let r = client
        .users()
        .identities()
        .link(
            "auth0|abc/def",
            link_request(),
            Some(
                RequestOptions::new()
                    .header("X-Correlation-Id", "corr-1")
                    .query_param("fields", "a b")
                    .body_property("connection_id", "con_0123456789abcdef"),
            ),
        )
        .with_raw_response()
        .await
        .unwrap();
    let seen = &mock.seen()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.uri,
        "/api/v2/users/auth0%7Cabc%2Fdef/identities?fields=a+b"
    );
    assert_eq!(seen.headers["authorization"], "Bearer static-token");
    assert_eq!(seen.headers["content-type"], "application/json");
    assert_eq!(seen.headers["x-correlation-id"], "corr-1");
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"provider": "github", "user_id": 123, "connection_id": "con_0123456789abcdef"})
    );
    let telemetry = base64::engine::general_purpose::STANDARD
        .decode(seen.headers["auth0-client"].as_bytes())
        .unwrap();
    let telemetry: serde_json::Value = serde_json::from_slice(&telemetry).unwrap();
    assert_eq!(telemetry["name"], "idlink-client");
    assert_eq!(telemetry["version"], idlink_client::VERSION);

    // Raw response: status, URL, case-insensitive headers.
    assert_eq!(r.raw_response.status_code, 200);
    assert_eq!(
        r.raw_response.url.path(),
        "/api/v2/users/auth0%7Cabc%2Fdef/identities"
    );
    assert_eq!(
        r.raw_response.headers.get("X-RateLimit-Remaining").unwrap(),
        "41"
    );
    assert_eq!(
        r.raw_response.headers.get("x-ratelimit-remaining").unwrap(),
        "41"
    );
    // Unknown fields are ignored or kept; the integer id stays an integer.
    let identities: &Vec<UserIdentity> = &r.data;
    assert_eq!(identities[1].user_id, idlink_client::UserId::Integer(123));
    assert_eq!(
        identities[1].profile_data.as_ref().unwrap().extra["login"],
        "octo"
    );

    // Unlink: provider and user id are path segments too.
    client
        .users()
        .identities()
        .delete("auth0|abc", Provider::Other("my idp".into()), "x|y", None)
        .await
        .unwrap();
    assert_eq!(
        mock.seen()[1].uri,
        "/api/v2/users/auth0%7Cabc/identities/my%20idp/x%7Cy"
    );
    assert_eq!(mock.seen()[1].method, "DELETE");
    assert!(mock.seen()[1].body.is_empty());
}

#[tokio::test]
async fn telemetry_can_be_turned_off_and_base_url_overridden_per_call() {
    let mock = Mock::start(|_| boxed(ok())).await;
    let client = ManagementClient::builder()
        .base_url("http://127.0.0.1:9/nowhere")
        .token("t")
        .telemetry(false)
        .build()
        .unwrap();
    client
        .users()
        .identities()
        .link(
            "auth0|abc",
            link_request(),
            Some(RequestOptions::new().base_url(mock.api_url())),
        )
        .await
        .unwrap();
    let seen = &mock.seen()[0];
    assert!(seen.headers.get("auth0-client").is_none());
    assert_eq!(seen.uri, "/api/v2/users/auth0%7Cabc/identities");
}

#[tokio::test]
async fn non_json_error_body_keeps_status_and_text() {
    let mock = Mock::start(|_| boxed(reply(502, &[], "<html>Bad Gateway</html>"))).await;
    let err = mock
        .client()
        .users()
        .get("auth0|abc", Some(RequestOptions::new().max_retries(0)))
        .await
        .unwrap_err();
    let Error::Api(api) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(api.status_code(), 502);
    assert_eq!(api.body(), "<html>Bad Gateway</html>");
    assert_eq!(api.message(), "<html>Bad Gateway</html>");
    assert_eq!(api.error_code(), None);
    assert!(api.error_body().is_none());

    let mock = Mock::start(|_| boxed(reply(404, &[], ""))).await;
    let err = mock
        .client()
        .users()
        .get("auth0|abc", None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)));
    assert_eq!(err.message(), "Not Found");
}

#[tokio::test]
async fn decode_error_names_the_json_path() {
    let body = r#"[{"connection":"c","provider":"p","user_id":"a"},{"connection":"c","provider":"p","user_id":true}]"#;
    let mock = Mock::start(move |_| boxed(reply(201, &[], body))).await;
    let err = mock
        .client()
        .users()
        .identities()
        .link("auth0|abc", link_request(), None)
        .await
        .unwrap_err();
    let Error::Decode(d) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(d.path(), "[1].user_id");
    assert_eq!(d.body(), body);
    assert_eq!(err.status_code(), Some(201));
    assert_eq!(mock.attempts(), 1, "decode errors are not retried");
}

#[tokio::test]
async fn empty_204_decodes_to_unit_and_raw_request_works() {
    let mock = Mock::start(|n| {
        boxed(if n == 0 {
            reply(204, &[], "")
        } else {
            json(200, &[], serde_json::json!({"daily": [1, 2]}))
        })
    })
    .await;
    let client = mock.client();
    let r = client
        .users()
        .delete("auth0|abc", None)
        .with_raw_response()
        .await
        .unwrap();
    assert_eq!(r.raw_response.status_code, 204);
    let stats: serde_json::Value = client
        .request(Method::GET, "/stats/daily")
        .query("from", 20240101)
        .await
        .unwrap();
    assert_eq!(stats["daily"][1], 2);
    assert_eq!(mock.seen()[0].uri, "/api/v2/users/auth0%7Cabc");
    assert_eq!(mock.seen()[1].uri, "/api/v2/stats/daily?from=20240101");
}

#[tokio::test]
async fn invalid_options_are_config_errors() {
    let mock = Mock::start(|_| boxed(ok())).await;
    let err = mock
        .client()
        .users()
        .get("a", Some(RequestOptions::new().header("bad header", "x")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert_eq!(mock.attempts(), 0);
}

#[tokio::test]
async fn a_huge_expires_in_is_cached_without_panicking() {
    let mock = Mock::start(|_| boxed(ok())).await;
    mock.set_token_mode(TokenMode::Ok {
        expires_in: u64::MAX,
    });
    let client = ManagementClient::builder()
        .base_url(mock.api_url())
        .client_credentials("id", "secret")
        .build()
        .unwrap();
    for _ in 0..2 {
        client
            .users()
            .identities()
            .link("auth0|abc", link_request(), None)
            .await
            .unwrap();
    }
    assert_eq!(mock.token_fetches(), 1, "cached, not refetched");
}
