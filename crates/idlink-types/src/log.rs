//! Log events: `GET /api/v2/logs` and `GET /api/v2/users/{id}/logs`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One event of the tenant's log, in Auth0's log-event shape.
///
/// The fields idlink writes are typed; every other field Auth0 sends (`ip`,
/// `user_agent`, `connection`, …) is kept in [`extra`](Self::extra).
///
/// ```
/// use idlink_types::LogEvent;
///
/// let event: LogEvent = serde_json::from_str(r#"{
///     "log_id": "90020261202",
///     "date": "2026-12-02T01:00:00.000Z",
///     "type": "sapi",
///     "description": "Link a user account",
///     "user_id": "auth0|5f7c8ec7c33c6c004bbafe82",
///     "ip": "203.0.113.9"
/// }"#).unwrap();
/// assert_eq!(event.event_type.as_deref(), Some("sapi"));
/// assert_eq!(event.extra["ip"], "203.0.113.9");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogEvent {
    /// The event's unique id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_id: Option<String>,
    /// When it happened (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// The event type code, e.g. `sapi` (a successful Management API call) or `fapi`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// What happened, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The client that made the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The user the event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Event-specific details (the request, the response, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// Every other field of the event.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
