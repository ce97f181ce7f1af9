//! Link events at run time (`docs/events.md`): the settings from `[events]` and
//! `[[webhooks]]`, what handlers call to emit events beside their change, and the
//! wake-up that lets this instance's deliverer and SSE streams react at once.

pub mod deliverer;
pub mod signing;

use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::config::{EventsConfig, WebhookConfig};
use crate::domain::events::{EventFactory, EventType, OutboxEvent, RetryPolicy, Subscription};

/// At most this many `GET /idlink/v1/events` streams at once per instance (more get
/// 429): each holds a connection and polls the database.
pub const MAX_STREAMS: usize = 64;

/// A configured webhook, its secret decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub events: Vec<EventType>,
    /// The HMAC key (the secret's bytes after `whsec_`).
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// `[events]` and `[[webhooks]]`, checked and with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSettings {
    pub enabled: bool,
    pub retention: Duration,
    pub retry: RetryPolicy,
    pub delivery_timeout: Duration,
    pub poll: Duration,
    pub webhooks: Vec<Webhook>,
}

fn seconds(key: &str, value: Option<f64>, default: Duration) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(s) if s > 0.0 && s.is_finite() => {
            Duration::try_from_secs_f64(s).map_err(|e| format!("{key}: invalid {s}: {e}"))
        }
        Some(s) => Err(format!(
            "{key}: invalid {s}: expected a positive number of seconds"
        )),
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Checks a webhook URL: absolute, http or https, with a host.
fn check_webhook_url(key: &str, url: &str) -> Result<(), String> {
    let refuse = |why: &str| {
        Err(format!(
            "{key}: {url:?} is not a webhook URL ({why}); expected e.g. https://hooks.example.com/idlink"
        ))
    };
    let Ok(uri) = url.parse::<http::Uri>() else {
        return refuse("it does not parse");
    };
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return refuse("the scheme must be http or https"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return refuse("it has no host");
    }
    Ok(())
}

/// Decodes a Standard Webhooks secret: `whsec_` + base64 of 24 to 64 bytes.
fn decode_secret(key: &str, secret: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let refuse = |why: String| {
        Err(format!(
            "{key}: {why}; expected whsec_ + base64 of 24 to 64 random bytes, e.g. whsec_$(openssl rand -base64 32)"
        ))
    };
    let Some(encoded) = secret.strip_prefix("whsec_") else {
        return refuse("the secret does not start with whsec_".into());
    };
    let bytes = match base64::engine::general_purpose::STANDARD.decode(encoded) {
        Ok(bytes) => bytes,
        Err(err) => return refuse(format!("the secret is not base64 ({err})")),
    };
    if !(24..=64).contains(&bytes.len()) {
        return refuse(format!("the secret has {} bytes", bytes.len()));
    }
    Ok(bytes)
}

impl EventSettings {
    /// From the config file's tables; an error names the key path.
    pub fn from_config(events: &EventsConfig, webhooks: &[WebhookConfig]) -> Result<Self, String> {
        let mut checked = Vec::with_capacity(webhooks.len());
        for (i, webhook) in webhooks.iter().enumerate() {
            check_webhook_url(&format!("webhooks[{i}].url"), &webhook.url)?;
            if checked.iter().any(|w: &Webhook| w.url == webhook.url) {
                return Err(format!(
                    "webhooks[{i}].url: the webhook URL {:?} is configured twice",
                    webhook.url
                ));
            }
            let mut types = Vec::new();
            for (j, name) in webhook.events.iter().enumerate() {
                let Some(kind) = EventType::parse(name) else {
                    let known: Vec<_> = EventType::ALL.iter().map(|t| t.name()).collect();
                    return Err(format!(
                        "webhooks[{i}].events[{j}]: unknown event type {name:?}; expected one of {}",
                        known.join(", ")
                    ));
                };
                types.push(kind);
            }
            checked.push(Webhook {
                url: webhook.url.clone(),
                events: types,
                key: decode_secret(&format!("webhooks[{i}].secret"), &webhook.secret)?,
            });
        }
        let max_attempts = match events.max_attempts {
            None => RetryPolicy::default().max_attempts,
            Some(n) if n >= 1 => n,
            Some(n) => {
                return Err(format!(
                    "events.max_attempts: invalid {n}: expected at least 1"
                ));
            }
        };
        let initial = seconds(
            "events.retry_initial",
            events.retry_initial,
            Duration::from_secs(1),
        )?;
        let max = seconds(
            "events.retry_max",
            events.retry_max,
            Duration::from_secs(3600),
        )?;
        Ok(Self {
            enabled: events.enabled.unwrap_or(!checked.is_empty()),
            retention: seconds(
                "events.retention",
                events.retention,
                Duration::from_secs(7 * 24 * 3600),
            )?,
            retry: RetryPolicy {
                initial_ms: millis(initial),
                max_ms: millis(max.max(initial)),
                max_attempts,
            },
            delivery_timeout: seconds(
                "events.delivery_timeout",
                events.delivery_timeout,
                Duration::from_secs(10),
            )?,
            poll: seconds("events.poll", events.poll, Duration::from_secs(1))?,
            webhooks: checked,
        })
    }
}

/// The events part of the application state.
#[derive(Debug)]
pub struct EventsState {
    pub settings: EventSettings,
    /// Builds this tenant's events; `None` when events are off.
    factory: Option<EventFactory>,
    /// Wakes this instance's deliverer and streams after a commit that wrote events.
    pub wake: Notify,
    /// Bounds the open `GET /idlink/v1/events` streams.
    pub streams: std::sync::Arc<Semaphore>,
}

impl EventsState {
    /// For a server reached at `public_url` (the events' `source`).
    pub fn new(settings: EventSettings, public_url: &str) -> Self {
        let factory = settings.enabled.then(|| EventFactory {
            source: public_url.to_owned(),
            subscriptions: settings
                .webhooks
                .iter()
                .map(|w| Subscription {
                    url: w.url.clone(),
                    events: w.events.clone(),
                })
                .collect(),
        });
        Self {
            settings,
            factory,
            wake: Notify::new(),
            streams: std::sync::Arc::new(Semaphore::new(MAX_STREAMS)),
        }
    }

    /// Whether events are on.
    pub fn enabled(&self) -> bool {
        self.factory.is_some()
    }

    /// The event `build` makes, or none when events are off.
    pub fn emit(&self, build: impl FnOnce(&EventFactory) -> OutboxEvent) -> Vec<OutboxEvent> {
        self.factory.as_ref().map(build).into_iter().collect()
    }

    /// What a change writes beside itself: `audit` and, when events are on, the event
    /// `build` makes.
    pub fn alongside(
        &self,
        audit: Option<crate::domain::audit::LogEvent>,
        build: impl FnOnce(&EventFactory) -> OutboxEvent,
    ) -> crate::store::Alongside {
        crate::store::Alongside {
            audit,
            events: self.emit(build),
            ..Default::default()
        }
    }

    /// A change that wrote `events` committed: wake whoever waits for them here.
    pub fn committed(&self, events: &[OutboxEvent]) {
        if !events.is_empty() {
            self.wake.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(url: &str, secret: &str, events: &[&str]) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            secret: secret.into(),
        }
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn webhooks_turn_events_on_and_bad_ones_are_refused_by_key_path() {
        let off = EventSettings::from_config(&EventsConfig::default(), &[]).unwrap();
        assert!(!off.enabled);
        let on = EventSettings::from_config(
            &EventsConfig::default(),
            &[webhook(
                "https://h.example/x?y=1",
                SECRET,
                &["user.created"],
            )],
        )
        .unwrap();
        assert!(on.enabled);
        assert_eq!(on.webhooks[0].events, [EventType::Created]);
        assert_eq!(on.webhooks[0].key.len(), 24);
        let cases = [
            (webhook("ftp://h.example", SECRET, &[]), "webhooks[0].url"),
            (webhook("h.example/hook", SECRET, &[]), "webhooks[0].url"),
            (
                webhook("http://h.example", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &[]),
                "webhooks[0].secret",
            ),
            (
                webhook("http://h.example", "whsec_!!", &[]),
                "webhooks[0].secret",
            ),
            (
                webhook("http://h.example", "whsec_c2hvcnQ=", &[]),
                "webhooks[0].secret",
            ),
            (
                webhook("http://h.example", SECRET, &["user.linked"]),
                "webhooks[0].events[0]",
            ),
        ];
        for (hook, path) in cases {
            let err = EventSettings::from_config(&EventsConfig::default(), &[hook]).unwrap_err();
            assert!(err.starts_with(path), "{path} not in {err}");
        }
        let twice = [
            webhook("http://a", SECRET, &[]),
            webhook("http://a", SECRET, &[]),
        ];
        let err = EventSettings::from_config(&EventsConfig::default(), &twice).unwrap_err();
        assert!(err.starts_with("webhooks[1].url"), "{err}");
        let bad_attempts = EventsConfig {
            max_attempts: Some(0),
            ..EventsConfig::default()
        };
        let err = EventSettings::from_config(&bad_attempts, &[]).unwrap_err();
        assert!(err.starts_with("events.max_attempts"), "{err}");
    }
}
