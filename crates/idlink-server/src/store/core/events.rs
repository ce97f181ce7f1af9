//! The link events' transactions, written once for both backends over [`Tx`]: the
//! outbox rows written beside a change, and the deliverer's claims and outcomes.
//!
//! Order. An event's outbox id is its place in the stream (`Last-Event-ID`) and the
//! order deliveries of one user follow. SQLite's single writer commits in id order by
//! itself; on PostgreSQL a transaction that writes events first takes `LOCK TABLE
//! events IN EXCLUSIVE MODE` (held to its commit, readers not blocked), so ids commit
//! in the order they are drawn and a reader that saw id n never later finds a smaller
//! one appear.

use super::jobs::Cells;
use super::{Failure, Outcome, Param, Tx};
use crate::domain::events::OutboxEvent;
use crate::store::events::{Claimed, DeliveryRow, EventOp, EventReply, StoredEvent};

const INSERT_EVENT: &str =
    "INSERT INTO events (type, subject, body, created_ms) VALUES (?, ?, ?, ?) RETURNING id";
const INSERT_DELIVERY: &str = "INSERT INTO webhook_deliveries (webhook, event_id, subject, \
     state, attempts, next_attempt_ms, updated_ms) VALUES (?, ?, ?, 'pending', 0, ?, ?)";
const SELECT_AFTER: &str = "SELECT id, type, body FROM events WHERE id > ? ORDER BY id LIMIT ?";
/// The due deliveries of one webhook, only the oldest pending one per user (a user's
/// later events wait until it is delivered or dead), leased to the claimer. The outer
/// WHERE repeats the condition, so a row another instance claimed meanwhile is refused
/// on PostgreSQL's re-check.
macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE webhook_deliveries SET lease_owner = ?, lease_until = ? \
             WHERE webhook = ? AND event_id IN (SELECT d.event_id FROM webhook_deliveries d \
             WHERE d.webhook = ? AND d.state = 'pending' AND d.next_attempt_ms <= ? \
             AND (d.lease_until IS NULL OR d.lease_until < ?) \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.webhook = d.webhook \
             AND e.subject = d.subject AND e.state = 'pending' AND e.event_id < d.event_id) \
             ORDER BY d.event_id LIMIT ?",
            $lock,
            ") AND state = 'pending' AND (lease_until IS NULL OR lease_until < ?) \
             RETURNING event_id, attempts"
        )
    };
}
/// PostgreSQL: instances claiming at once skip each other's rows instead of queueing.
const CLAIM_SKIP_LOCKED: &str = claim_sql!(" FOR UPDATE SKIP LOCKED");
/// SQLite: one writer, nothing to skip.
const CLAIM: &str = claim_sql!("");
const SELECT_BODY: &str = "SELECT body FROM events WHERE id = ?";
const DELIVERED: &str = "UPDATE webhook_deliveries SET state = 'delivered', lease_owner = NULL, \
     lease_until = NULL, updated_ms = ? WHERE webhook = ? AND event_id = ? AND lease_owner = ? \
     AND state = 'pending'";
const FAILED: &str = "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, \
     next_attempt_ms = ?, last_error = ?, lease_owner = NULL, lease_until = NULL, \
     updated_ms = ? WHERE webhook = ? AND event_id = ? AND lease_owner = ? AND state = 'pending'";
const SELECT_DELIVERIES: &str = "SELECT d.webhook, d.event_id, d.state, d.attempts, \
     d.next_attempt_ms, d.last_error, d.updated_ms, e.body FROM webhook_deliveries d \
     JOIN events e ON e.id = d.event_id WHERE (? IS NULL OR d.state = ?) \
     ORDER BY d.event_id DESC, d.webhook LIMIT ?";
const PRUNE_DELIVERIES: &str = "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND \
     event_id IN (SELECT id FROM events WHERE created_ms < ?)";
const PRUNE_EVENTS: &str = "DELETE FROM events WHERE created_ms < ? AND NOT EXISTS \
     (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = events.id)";

fn now_ms() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

/// Writes `events` (and a pending delivery for each webhook that wants one) in the
/// transaction of the change they describe.
pub async fn append<T: Tx>(tx: &mut T, events: &[OutboxEvent]) -> Result<(), T::DbError> {
    if events.is_empty() {
        return Ok(());
    }
    if T::ROW_LOCKS {
        tx.execute("LOCK TABLE events IN EXCLUSIVE MODE", Vec::new())
            .await?;
    }
    let now = now_ms();
    for event in events {
        let rows = tx
            .fetch(
                INSERT_EVENT,
                vec![
                    event.kind.name().into(),
                    (&event.subject).into(),
                    (&event.body).into(),
                    Param::Int(now),
                ],
            )
            .await?;
        let id = match rows.first().and_then(|row| row.first()) {
            Some(super::Cell::Int(id)) => *id,
            // RETURNING always answers the id; nothing else can be written without it.
            _ => continue,
        };
        for webhook in &event.webhooks {
            tx.execute(
                INSERT_DELIVERY,
                vec![
                    webhook.into(),
                    Param::Int(id),
                    (&event.subject).into(),
                    Param::Int(now),
                    Param::Int(now),
                ],
            )
            .await?;
        }
    }
    Ok(())
}

/// Runs one operation.
pub async fn run<T: Tx>(tx: &mut T, op: &EventOp) -> Outcome<EventReply, T> {
    let db = Failure::Db;
    match op {
        EventOp::After { after, limit } => {
            let rows = tx
                .fetch(SELECT_AFTER, vec![Param::Int(*after), Param::Int(*limit)])
                .await
                .map_err(db)?;
            let mut events = Vec::with_capacity(rows.len());
            for row in rows {
                let mut c = Cells(row.into_iter());
                events.push(StoredEvent {
                    id: c.int()?,
                    kind: c.text()?,
                    body: c.text()?,
                });
            }
            Ok(EventReply::Events(events))
        }
        EventOp::Claim {
            webhook,
            owner,
            now_ms,
            lease_until,
            limit,
        } => {
            let sql = if T::ROW_LOCKS {
                CLAIM_SKIP_LOCKED
            } else {
                CLAIM
            };
            let params = vec![
                owner.into(),
                Param::Int(*lease_until),
                webhook.into(),
                webhook.into(),
                Param::Int(*now_ms),
                Param::Int(*now_ms),
                Param::Int(*limit),
                Param::Int(*now_ms),
            ];
            let rows = tx.fetch(sql, params).await.map_err(db)?;
            let mut claimed = Vec::with_capacity(rows.len());
            for row in rows {
                let mut c = Cells(row.into_iter());
                let (event_id, attempts) = (c.int()?, c.int()?);
                let body = tx
                    .fetch(SELECT_BODY, vec![Param::Int(event_id)])
                    .await
                    .map_err(db)?;
                let Some(row) = body.into_iter().next() else {
                    continue;
                };
                claimed.push(Claimed {
                    event_id,
                    attempts,
                    body: Cells(row.into_iter()).text()?,
                });
            }
            claimed.sort_by_key(|c| c.event_id);
            Ok(EventReply::Claimed(claimed))
        }
        EventOp::Delivered {
            webhook,
            event_id,
            owner,
            now_ms,
        } => {
            let params = vec![
                Param::Int(*now_ms),
                webhook.into(),
                Param::Int(*event_id),
                owner.into(),
            ];
            let n = tx.execute_count(DELIVERED, params).await.map_err(db)?;
            Ok(EventReply::Done(n))
        }
        EventOp::Failed {
            webhook,
            event_id,
            owner,
            now_ms,
            retry_at,
            error,
        } => {
            let state = if retry_at.is_some() {
                "pending"
            } else {
                "dead"
            };
            let params = vec![
                state.into(),
                Param::Int(retry_at.unwrap_or(*now_ms)),
                error.into(),
                Param::Int(*now_ms),
                webhook.into(),
                Param::Int(*event_id),
                owner.into(),
            ];
            let n = tx.execute_count(FAILED, params).await.map_err(db)?;
            Ok(EventReply::Done(n))
        }
        EventOp::Deliveries { state, limit } => {
            let state = Param::Text(state.clone());
            let rows = tx
                .fetch(
                    SELECT_DELIVERIES,
                    vec![state.clone(), state, Param::Int(*limit)],
                )
                .await
                .map_err(db)?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let mut c = Cells(row.into_iter());
                out.push(DeliveryRow {
                    webhook: c.text()?,
                    event_id: c.int()?,
                    state: c.text()?,
                    attempts: c.int()?,
                    next_attempt_ms: c.int()?,
                    last_error: c.opt_text()?,
                    updated_ms: c.int()?,
                    body: c.text()?,
                });
            }
            Ok(EventReply::Deliveries(out))
        }
        EventOp::Prune { before_ms } => {
            let before = vec![Param::Int(*before_ms)];
            let deliveries = tx
                .execute_count(PRUNE_DELIVERIES, before.clone())
                .await
                .map_err(db)?;
            let events = tx.execute_count(PRUNE_EVENTS, before).await.map_err(db)?;
            Ok(EventReply::Done(deliveries + events))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_has_one_placeholder_per_parameter_and_locks_only_on_postgres() {
        assert_eq!(CLAIM.matches('?').count(), 8);
        assert_eq!(CLAIM_SKIP_LOCKED.matches('?').count(), 8);
        assert!(CLAIM_SKIP_LOCKED.contains("LIMIT ? FOR UPDATE SKIP LOCKED)"));
        assert!(!CLAIM.contains("FOR UPDATE"));
    }
}
