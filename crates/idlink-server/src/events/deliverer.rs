//! The webhook deliverer of one instance. Each round it claims, per webhook, a batch of
//! due deliveries (a lease in the database: `FOR UPDATE SKIP LOCKED` on PostgreSQL, so
//! instances share the work without sending one event twice in the normal case), only
//! the oldest pending one of each user, sends them side by side, and records each
//! outcome. A 2xx answer delivers; anything else (5xx, other status, timeout, refused
//! connection) is retried with exponential backoff until the delivery is dead. An
//! instance that dies mid-send leaves its lease to expire: the delivery is sent again
//! (at least once). API calls never wait for any of this: they only write the outbox.

use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinSet;

use super::Webhook;
use super::signing;
use crate::domain::events::AfterFailure;
use crate::state::AppState;
use crate::store::events::{Claimed, EventOp, Events};

/// Deliveries claimed per webhook and round (sent side by side).
pub const BATCH: i64 = 16;
/// How often old events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The running deliverer; stops when dropped (its leases then expire).
#[derive(Debug)]
pub struct Deliverer(tokio::task::JoinHandle<()>);

impl Deliverer {
    /// Starts the deliverer of `state`'s instance, when events are on.
    pub fn spawn(state: &AppState) -> Option<Self> {
        if !state.events.enabled() {
            return None;
        }
        let state = state.clone();
        Some(Self(tokio::spawn(async move { run(state).await })))
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn now_ms() -> i64 {
    crate::jobs::now_ms()
}

/// Builds the HTTP client: every attempt bounded by the delivery timeout, no redirects
/// (a 3xx is a failed attempt, not a hop to another host).
fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("idlink/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

async fn run(state: AppState) {
    let settings = state.events.settings.clone();
    let http = client(settings.delivery_timeout);
    let owner = format!("deliverer_{}", crate::domain::ids::client_id());
    // A claim outlives the slowest attempt, so a live instance keeps what it sends.
    let lease_ms = i64::try_from((settings.delivery_timeout * 2).as_millis())
        .unwrap_or(i64::MAX)
        .saturating_add(5_000);
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        let wake = state.events.wake.notified();
        let mut busy = false;
        for webhook in &settings.webhooks {
            match round(&state, &http, &owner, webhook, lease_ms).await {
                Ok(sent) => busy |= sent > 0,
                Err(err) => {
                    tracing::warn!(error = %err, webhook = %webhook.url, "cannot claim webhook deliveries");
                }
            }
        }
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(tokio::time::Instant::now());
            prune(&state).await;
        }
        if !busy {
            tokio::select! {
                () = wake => {}
                () = tokio::time::sleep(settings.poll) => {}
            }
        }
    }
}

async fn prune(state: &AppState) {
    let retention = i64::try_from(state.events.settings.retention.as_millis()).unwrap_or(i64::MAX);
    let before_ms = now_ms().saturating_sub(retention);
    if let Err(err) = Events(state.store.as_ref())
        .done(EventOp::Prune { before_ms })
        .await
    {
        tracing::warn!(error = %err, "cannot prune old events");
    }
}

/// One round for one webhook: claim, send side by side, record. Answers how many were
/// sent.
async fn round(
    state: &AppState,
    http: &reqwest::Client,
    owner: &str,
    webhook: &Webhook,
    lease_ms: i64,
) -> crate::error::Result<usize> {
    let now = now_ms();
    let claimed = Events(state.store.as_ref())
        .claim(EventOp::Claim {
            webhook: webhook.url.clone(),
            owner: owner.to_owned(),
            now_ms: now,
            lease_until: now.saturating_add(lease_ms),
            limit: BATCH,
        })
        .await?;
    let count = claimed.len();
    let mut sends = JoinSet::new();
    for delivery in claimed {
        let (http, webhook) = (http.clone(), webhook.clone());
        sends.spawn(async move {
            let outcome = send(&http, &webhook, &delivery).await;
            (delivery, outcome)
        });
    }
    while let Some(joined) = sends.join_next().await {
        let Ok((delivery, outcome)) = joined else {
            continue;
        };
        record(state, owner, webhook, &delivery, outcome).await;
    }
    Ok(count)
}

/// One attempt: `Ok` on a 2xx answer, else why it failed.
async fn send(http: &reqwest::Client, webhook: &Webhook, delivery: &Claimed) -> Result<(), String> {
    let message_id = serde_json::from_str::<Value>(&delivery.body)
        .ok()
        .and_then(|event| event["id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("evt_{}", delivery.event_id));
    let timestamp = crate::clock::unix_now();
    let signature = signing::sign(&webhook.key, &message_id, timestamp, &delivery.body);
    let reply = http
        .post(&webhook.url)
        .header("content-type", "application/cloudevents+json")
        .header("webhook-id", &message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.body.clone())
        .send()
        .await;
    match reply {
        Ok(reply) if reply.status().is_success() => Ok(()),
        Ok(reply) => Err(format!("the receiver answered {}", reply.status())),
        Err(err) if err.is_timeout() => Err("the receiver did not answer in time".into()),
        Err(err) if err.is_connect() => Err("cannot connect to the receiver".into()),
        Err(err) => Err(format!("the request failed: {err}")),
    }
}

async fn record(
    state: &AppState,
    owner: &str,
    webhook: &Webhook,
    delivery: &Claimed,
    outcome: Result<(), String>,
) {
    let events = Events(state.store.as_ref());
    let now = now_ms();
    let (op, label) = match outcome {
        Ok(()) => (
            EventOp::Delivered {
                webhook: webhook.url.clone(),
                event_id: delivery.event_id,
                owner: owner.to_owned(),
                now_ms: now,
            },
            "delivered",
        ),
        Err(error) => {
            let after = state
                .events
                .settings
                .retry
                .after_failure(delivery.attempts + 1, now);
            let (retry_at, label) = match after {
                AfterFailure::RetryAt(at) => (Some(at), "failed"),
                AfterFailure::Dead => (None, "dead"),
            };
            (
                EventOp::Failed {
                    webhook: webhook.url.clone(),
                    event_id: delivery.event_id,
                    owner: owner.to_owned(),
                    now_ms: now,
                    retry_at,
                    error,
                },
                label,
            )
        }
    };
    state.metrics.record_webhook_delivery(label);
    if let Err(err) = events.done(op).await {
        // The lease expires and the delivery is tried again: at least once.
        tracing::warn!(error = %err, event_id = delivery.event_id, "cannot record a webhook delivery");
    }
}
