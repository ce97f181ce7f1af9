//! What the link events store: the outbox (one row per event, written beside its
//! change by [`super::core::write_alongside`]) and one delivery per (webhook, event).
//! Reads and delivery bookkeeping are [`EventOp`]s that both backends run through the
//! shared flows of `core::events`, as the jobs API does.

use super::Store;
use crate::error::{Error, Result};

/// One event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The outbox id: increasing in commit order, the SSE `id`.
    pub id: i64,
    pub kind: String,
    /// The CloudEvent JSON.
    pub body: String,
}

/// A delivery this instance claimed and now sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub event_id: i64,
    /// Failed attempts so far.
    pub attempts: i64,
    pub body: String,
}

/// A delivery's state, as `GET /idlink/v1/webhooks/deliveries` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub webhook: String,
    pub event_id: i64,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub updated_ms: i64,
    pub body: String,
}

/// An operation on the events tables, one transaction each.
#[derive(Debug, Clone)]
pub enum EventOp {
    /// Events after `after` (an outbox id), oldest first, at most `limit`.
    After { after: i64, limit: i64 },
    /// Claims up to `limit` due deliveries of `webhook`: only the oldest pending one of
    /// each user, so a user's events arrive in order.
    Claim {
        webhook: String,
        owner: String,
        now_ms: i64,
        lease_until: i64,
        limit: i64,
    },
    /// The receiver answered 2xx.
    Delivered {
        webhook: String,
        event_id: i64,
        owner: String,
        now_ms: i64,
    },
    /// The attempt failed: retry at `retry_at` (unix ms), or dead when `None`.
    Failed {
        webhook: String,
        event_id: i64,
        owner: String,
        now_ms: i64,
        retry_at: Option<i64>,
        error: String,
    },
    /// Deliveries in `state` (any when `None`), newest first, at most `limit`.
    Deliveries { state: Option<String>, limit: i64 },
    /// Deletes events created before `before_ms` that no delivery waits for.
    Prune { before_ms: i64 },
}

/// What an [`EventOp`] answers.
#[derive(Debug, Clone)]
pub enum EventReply {
    Done(u64),
    Events(Vec<StoredEvent>),
    Claimed(Vec<Claimed>),
    Deliveries(Vec<DeliveryRow>),
}

fn unexpected(reply: EventReply) -> Error {
    Error::internal(format!("unexpected event store reply {reply:?}"))
}

/// Typed calls over [`Store::event_op`].
#[derive(Debug, Clone, Copy)]
pub struct Events<'s>(pub &'s dyn Store);

impl Events<'_> {
    /// Runs an operation that answers a count of rows changed.
    pub async fn done(&self, op: EventOp) -> Result<u64> {
        match self.0.event_op(&op).await? {
            EventReply::Done(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// Events after `after`, oldest first.
    pub async fn after(&self, after: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        match self.0.event_op(&EventOp::After { after, limit }).await? {
            EventReply::Events(events) => Ok(events),
            other => Err(unexpected(other)),
        }
    }

    /// Claims due deliveries (see [`EventOp::Claim`]).
    pub async fn claim(&self, op: EventOp) -> Result<Vec<Claimed>> {
        match self.0.event_op(&op).await? {
            EventReply::Claimed(claimed) => Ok(claimed),
            other => Err(unexpected(other)),
        }
    }

    /// Deliveries, newest first.
    pub async fn deliveries(&self, state: Option<String>, limit: i64) -> Result<Vec<DeliveryRow>> {
        match self
            .0
            .event_op(&EventOp::Deliveries { state, limit })
            .await?
        {
            EventReply::Deliveries(rows) => Ok(rows),
            other => Err(unexpected(other)),
        }
    }
}
