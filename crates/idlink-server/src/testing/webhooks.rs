//! A webhook receiver on loopback for tests: it verifies every request's Standard
//! Webhooks signature with the `standardwebhooks` crate (an implementation independent
//! of idlink's), records what it accepted, and can answer 503 or answer slowly.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::task::JoinHandle;

/// One accepted delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The `webhook-id` header (the CloudEvent's id).
    pub webhook_id: String,
    /// The body: a CloudEvent.
    pub event: Value,
}

#[derive(Debug, Default)]
struct Inner {
    secret: String,
    received: std::sync::Mutex<Vec<Received>>,
    /// Requests still to refuse with 503.
    fail_next: AtomicUsize,
    /// Every request seen (refused ones included).
    requests: AtomicUsize,
    /// Requests whose signature did not verify (answered 401).
    bad_signatures: AtomicUsize,
    delay: std::sync::Mutex<Duration>,
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct WebhookReceiver {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    inner.requests.fetch_add(1, Ordering::SeqCst);
    let verified =
        standardwebhooks::Webhook::new(&inner.secret).and_then(|hook| hook.verify(&body, &headers));
    if verified.is_err() {
        inner.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    let refuse = inner
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if refuse {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let delay = *inner.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let webhook_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    inner
        .received
        .lock()
        .unwrap()
        .push(Received { webhook_id, event });
    StatusCode::NO_CONTENT
}

impl WebhookReceiver {
    /// Listens on `127.0.0.1:0`, verifying with `secret` (`whsec_…`).
    pub async fn start(secret: &str) -> Self {
        let inner = Arc::new(Inner {
            secret: secret.to_owned(),
            ..Inner::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, inner, task }
    }

    /// Answers the next `n` requests with 503.
    pub fn fail_next(&self, n: usize) {
        self.inner.fail_next.store(n, Ordering::SeqCst);
    }

    /// Waits `delay` before accepting each request.
    pub fn set_delay(&self, delay: Duration) {
        *self.inner.delay.lock().unwrap() = delay;
    }

    /// What was accepted, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    /// Every request seen, refused ones included.
    pub fn requests(&self) -> usize {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// Requests refused because their signature did not verify.
    pub fn bad_signatures(&self) -> usize {
        self.inner.bad_signatures.load(Ordering::SeqCst)
    }

    /// Waits (up to `timeout`) until `done` holds for what was accepted; answers it.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let received = self.received();
            if done(&received) || tokio::time::Instant::now() >= deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
