//! Link events (see `docs/events.md`): what each change emits, as a CloudEvents 1.0
//! JSON object, which webhooks want it, and when a failed delivery is tried again.
//! Pure rules: the store writes the event beside the change, the deliverer sends it.

use rand::Rng;
use serde_json::{Value, json};

use super::model::{IdentityKey, UserRecord};

/// The kinds of event, as the CloudEvent `type` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Linked,
    Unlinked,
    Created,
    Updated,
    Deleted,
}

impl EventType {
    /// Every type, in the order the docs list them.
    pub const ALL: [Self; 5] = [
        Self::Linked,
        Self::Unlinked,
        Self::Created,
        Self::Updated,
        Self::Deleted,
    ];

    /// The CloudEvent `type`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Linked => "user.identity.linked",
            Self::Unlinked => "user.identity.unlinked",
            Self::Created => "user.created",
            Self::Updated => "user.updated",
            Self::Deleted => "user.deleted",
        }
    }

    /// The type named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// One event to write beside a change: its type, the user deliveries are ordered by,
/// the CloudEvent as sent, and the webhooks (by URL) that will get it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub kind: EventType,
    /// The user the change is about (the primary of a link or unlink).
    pub subject: String,
    /// The CloudEvent, serialized once: every receiver gets the same bytes.
    pub body: String,
    /// Each webhook that subscribes to `kind`, by URL.
    pub webhooks: Vec<String>,
}

/// A webhook's subscription: the types it wants (empty: all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub url: String,
    pub events: Vec<EventType>,
}

impl Subscription {
    /// Whether this webhook wants events of `kind`.
    pub fn wants(&self, kind: EventType) -> bool {
        self.events.is_empty() || self.events.contains(&kind)
    }
}

/// Builds the events of one tenant: its `source` and its webhooks' subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFactory {
    /// The CloudEvent `source`: the server's public URL.
    pub source: String,
    pub subscriptions: Vec<Subscription>,
}

/// `evt_` + 24 lowercase hex digits: the CloudEvent `id`, which is also the Standard
/// Webhooks `webhook-id` (the same on every retry, so receivers can drop duplicates).
pub fn event_id() -> String {
    let bytes: [u8; 12] = rand::thread_rng().r#gen();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("evt_{hex}")
}

fn identity_json(key: &IdentityKey) -> Value {
    json!({"provider": key.provider, "user_id": key.user_id})
}

impl EventFactory {
    /// The event of `kind` about `subject` with `data`, at `time` (RFC 3339).
    pub fn event(&self, kind: EventType, subject: &str, data: Value, time: &str) -> OutboxEvent {
        let cloud_event = json!({
            "specversion": "1.0",
            "id": event_id(),
            "source": self.source,
            "type": kind.name(),
            "subject": subject,
            "time": time,
            "datacontenttype": "application/json",
            "data": data,
        });
        OutboxEvent {
            kind,
            subject: subject.to_owned(),
            body: cloud_event.to_string(),
            webhooks: self
                .subscriptions
                .iter()
                .filter(|s| s.wants(kind))
                .map(|s| s.url.clone())
                .collect(),
        }
    }

    /// `user.identity.linked`: `secondary_user_id`'s main identity `identity` joined
    /// `user_id`.
    pub fn linked(
        &self,
        user_id: &str,
        secondary_user_id: Option<&str>,
        identity: &IdentityKey,
        time: &str,
    ) -> OutboxEvent {
        let data = json!({
            "user_id": user_id,
            "secondary_user_id": secondary_user_id,
            "identity": identity_json(identity),
        });
        self.event(EventType::Linked, user_id, data, time)
    }

    /// `user.identity.unlinked`: `identity` left `user_id` and is `new_user_id`'s now.
    pub fn unlinked(
        &self,
        user_id: &str,
        new_user_id: &str,
        identity: &IdentityKey,
        time: &str,
    ) -> OutboxEvent {
        let data = json!({
            "user_id": user_id,
            "new_user_id": new_user_id,
            "identity": identity_json(identity),
        });
        self.event(EventType::Unlinked, user_id, data, time)
    }

    /// `user.created`: the user and its identity.
    pub fn created(&self, user: &UserRecord, time: &str) -> OutboxEvent {
        let identities: Vec<Value> = user
            .identities
            .iter()
            .map(|i| json!({"provider": i.provider, "user_id": i.user_id, "connection": i.connection}))
            .collect();
        let data = json!({"user_id": user.user_id, "identities": identities});
        self.event(EventType::Created, &user.user_id, data, time)
    }

    /// `user.updated`: the user and the attributes the request set (its body's keys;
    /// never their values, which may be secrets).
    pub fn updated(&self, user_id: &str, attributes: Vec<String>, time: &str) -> OutboxEvent {
        let data = json!({"user_id": user_id, "attributes": attributes});
        self.event(EventType::Updated, user_id, data, time)
    }

    /// `user.deleted`: the user (and every identity it held) is gone.
    pub fn deleted(&self, user_id: &str, time: &str) -> OutboxEvent {
        self.event(
            EventType::Deleted,
            user_id,
            json!({"user_id": user_id}),
            time,
        )
    }
}

/// How failed deliveries are retried: exponential backoff from `initial_ms`, doubling,
/// capped at `max_ms`; after `max_attempts` failures the delivery is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_ms: i64,
    pub max_ms: i64,
    pub max_attempts: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // 1 s, 2 s, 4 s … 1 h: ten attempts span about 17 minutes.
        Self {
            initial_ms: 1_000,
            max_ms: 3_600_000,
            max_attempts: 10,
        }
    }
}

/// What becomes of a delivery after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this time (unix ms).
    RetryAt(i64),
    /// Give up: the delivery is dead (visible through the API).
    Dead,
}

impl RetryPolicy {
    /// After the `attempts`-th failed attempt (from 1), at `now_ms`.
    pub fn after_failure(&self, attempts: i64, now_ms: i64) -> AfterFailure {
        if attempts >= self.max_attempts {
            return AfterFailure::Dead;
        }
        let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 40)).unwrap_or(40);
        let delay = self
            .initial_ms
            .saturating_mul(2_i64.saturating_pow(exponent))
            .min(self.max_ms);
        AfterFailure::RetryAt(now_ms.saturating_add(delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_round_trip_their_names() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.name()), Some(kind));
        }
        assert_eq!(EventType::parse("user.linked"), None);
    }

    #[test]
    fn an_empty_subscription_wants_everything() {
        let all = Subscription {
            url: "http://a".into(),
            events: vec![],
        };
        let some = Subscription {
            url: "http://b".into(),
            events: vec![EventType::Linked],
        };
        assert!(EventType::ALL.iter().all(|k| all.wants(*k)));
        assert!(some.wants(EventType::Linked) && !some.wants(EventType::Deleted));
        let factory = EventFactory {
            source: "http://idlink.test".into(),
            subscriptions: vec![all, some],
        };
        let event = factory.deleted("auth0|1", "2026-01-01T00:00:00.000Z");
        assert_eq!(event.webhooks, ["http://a"]);
        let body: Value = serde_json::from_str(&event.body).unwrap();
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["type"], "user.deleted");
        assert_eq!(body["subject"], "auth0|1");
        assert_eq!(body["data"], json!({"user_id": "auth0|1"}));
        assert!(body["id"].as_str().unwrap().starts_with("evt_"));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_then_gives_up() {
        let policy = RetryPolicy {
            initial_ms: 100,
            max_ms: 500,
            max_attempts: 5,
        };
        assert_eq!(policy.after_failure(1, 0), AfterFailure::RetryAt(100));
        assert_eq!(policy.after_failure(2, 0), AfterFailure::RetryAt(200));
        assert_eq!(policy.after_failure(3, 10), AfterFailure::RetryAt(410));
        assert_eq!(policy.after_failure(4, 0), AfterFailure::RetryAt(500));
        assert_eq!(policy.after_failure(5, 0), AfterFailure::Dead);
    }
}
