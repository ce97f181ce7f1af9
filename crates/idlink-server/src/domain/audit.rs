//! The audit trail: one log event per link, unlink and failed attempt, in Auth0's
//! log-event shape (`type` `sapi` for a successful Management API operation, `fapi` for
//! a failed one).

use rand::Rng;
use serde_json::{Value, json};

use super::model::IdentityKey;

/// Whether the operation succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `sapi`: Success API Operation.
    Success,
    /// `fapi`: Failed API Operation.
    Failure,
    /// `s`: Success Login.
    Login,
    /// `f`: Failed Login.
    FailedLogin,
    /// idlink's linking at sign-in (no Auth0 counterpart, so the codes are namespaced):
    /// the login page offered to link the signed-in user with another account.
    LinkPrompted,
    /// The user signed in to the other account too (the second proof of a sign-in link).
    LinkConfirmed,
    /// The user chose to go on without linking.
    LinkDeclined,
}

impl Outcome {
    /// Auth0's event type code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Success => "sapi",
            Self::Failure => "fapi",
            Self::Login => "s",
            Self::FailedLogin => "f",
            Self::LinkPrompted => "idlink_link_prompted",
            Self::LinkConfirmed => "idlink_link_confirmed",
            Self::LinkDeclined => "idlink_link_declined",
        }
    }

    /// The outcome of a stored type code.
    pub fn from_code(code: &str) -> Self {
        match code {
            "sapi" => Self::Success,
            "s" => Self::Login,
            "f" => Self::FailedLogin,
            "idlink_link_prompted" => Self::LinkPrompted,
            "idlink_link_confirmed" => Self::LinkConfirmed,
            "idlink_link_declined" => Self::LinkDeclined,
            _ => Self::Failure,
        }
    }
}

/// Who made the request: the verified token's client and subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The client the token was issued to (`azp`).
    pub client_id: Option<String>,
    /// The token's subject: `{client_id}@clients` or a user id.
    pub sub: String,
    /// The token's scopes.
    pub scope: String,
}

/// One log event.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent {
    pub log_id: String,
    /// ISO-8601.
    pub date: String,
    pub outcome: Outcome,
    pub description: String,
    pub client_id: Option<String>,
    /// The user acted on (the primary).
    pub user_id: Option<String>,
    /// The other user involved (the secondary), so its own log finds the event too.
    pub secondary_user_id: Option<String>,
    pub details: Value,
}

/// What was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Link,
    Unlink,
}

impl Operation {
    fn description(self) -> &'static str {
        match self {
            Self::Link => "Link a User Account",
            Self::Unlink => "Unlink a User Identity",
        }
    }
}

/// Longest user id kept in an event's indexed columns. Longer ones (which no real user
/// has) are cut, so that an attempt with an absurd id is still recorded rather than
/// refused by the index and lost from the trail.
pub const MAX_LOGGED_ID: usize = 512;

fn clip(id: &str) -> String {
    if id.len() <= MAX_LOGGED_ID {
        return id.to_owned();
    }
    let mut end = MAX_LOGGED_ID;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &id[..end])
}

/// Most bytes an event's `details` take once serialised, whatever the request held: a
/// refused request is recorded, so without a bound every refusal of a 1 MB body would
/// store 1 MB (20 refused links grew a database by 23 MB).
pub const MAX_DETAILS_BYTES: usize = 4096;

/// Longest string kept inside `details` (and in `description`); longer ones keep their
/// start and a marker saying how long they were.
pub const MAX_DETAIL_STRING: usize = 256;

/// Cuts `s` to at most `max` bytes (on a character boundary), marking what was cut.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[truncated, {} bytes]", &s[..end], s.len())
}

/// Truncates every string in `value` (keys included) to `max` bytes.
fn truncate_strings(value: &mut Value, max: usize) {
    match value {
        Value::String(s) if s.len() > max => *s = truncate(s, max),
        Value::Array(items) => items.iter_mut().for_each(|v| truncate_strings(v, max)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut v) in entries {
                truncate_strings(&mut v, max);
                map.insert(truncate(&key, max), v);
            }
        }
        _ => {}
    }
}

/// Bounds `details` to [`MAX_DETAILS_BYTES`]: long strings are truncated first, shorter
/// still if that is not enough; as a last resort the request body is replaced by a
/// marker (the status, error and caller are always kept).
fn bound_details(details: &mut Value) {
    let size = |v: &Value| serde_json::to_vec(v).map_or(usize::MAX, |bytes| bytes.len());
    for max in [MAX_DETAIL_STRING, 64] {
        truncate_strings(details, max);
        if size(details) <= MAX_DETAILS_BYTES {
            return;
        }
    }
    details["request"]["body"] = json!("[truncated]");
    if size(details) > MAX_DETAILS_BYTES {
        details["request"] = json!("[truncated]");
    }
}

/// A time-ordered numeric id, like Auth0's log ids.
pub fn log_id() -> String {
    let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let random: u64 = rand::thread_rng().gen_range(0..10_000_000_000_000_000);
    format!("900{millis:013}{random:016}")
}

impl LogEvent {
    /// The event for an operation on `primary` by `actor`.
    ///
    /// `request` is what was asked (provider, user_id, connection_id — never a token),
    /// `status` the HTTP status answered and `error` the failure, if any.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        operation: Operation,
        actor: &Actor,
        primary: &str,
        secondary_user_id: Option<String>,
        request: Value,
        status: u16,
        error: Option<(&str, &str)>,
        date: &str,
    ) -> Self {
        let outcome = if error.is_none() {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let mut response = json!({"statusCode": status});
        if let Some((code, message)) = error {
            response["body"] = json!({"errorCode": code, "message": message});
        }
        let description = match error {
            None => operation.description().to_owned(),
            Some((_, message)) => truncate(
                &format!("{}: {message}", operation.description()),
                MAX_DETAIL_STRING,
            ),
        };
        let mut details = json!({
            "request": {
                "method": match operation { Operation::Link => "post", Operation::Unlink => "delete" },
                "primary_user_id": primary,
                "body": request,
                "auth": {"sub": actor.sub, "client_id": actor.client_id, "scopes": actor.scope.split_whitespace().collect::<Vec<_>>()},
            },
            "response": response,
        });
        // Successes and failures alike: every event is bounded in this one place.
        bound_details(&mut details);
        LogEvent {
            log_id: log_id(),
            date: date.to_owned(),
            outcome,
            description,
            client_id: actor.client_id.as_deref().map(clip),
            user_id: Some(clip(primary)),
            secondary_user_id: secondary_user_id.as_deref().map(clip),
            details,
        }
    }

    /// The event with the request's id (`details.request.id`), so an event leads to
    /// the request's log line and back. Ids are bounded before they get here.
    pub fn with_request_id(mut self, request_id: Option<&str>) -> Self {
        if let (Some(id), Some(request)) = (request_id, self.details.get_mut("request")) {
            if request.is_object() {
                request["id"] = json!(clip(id));
            }
        }
        self
    }

    /// The success event of an operation a tool (a benchmark, an admin command) runs on
    /// the store directly rather than through the API; the tool is the client.
    pub fn for_tool(
        tool: &str,
        operation: Operation,
        primary: &str,
        target: &IdentityKey,
        date: &str,
    ) -> Self {
        let actor = Actor {
            client_id: Some(tool.to_owned()),
            sub: format!("{tool}@clients"),
            scope: "update:users".to_owned(),
        };
        let status = match operation {
            Operation::Link => 201,
            Operation::Unlink => 200,
        };
        Self::new(
            operation,
            &actor,
            primary,
            Some(target.to_user_id()),
            json!({"provider": target.provider, "user_id": target.user_id}),
            status,
            None,
            date,
        )
    }

    /// A sign-in through the login pages (`s`) or a refused one (`f`, with `error`),
    /// in Auth0's shape: `connection`, `client_id`, the user, and for a failure the
    /// reason in `description`.
    pub fn login(
        client_id: &str,
        connection: &str,
        user_id: Option<&str>,
        user_name: &str,
        error: Option<&str>,
        date: &str,
    ) -> Self {
        let (outcome, description) = match error {
            None => (Outcome::Login, "Successful login".to_owned()),
            Some(message) => (Outcome::FailedLogin, truncate(message, MAX_DETAIL_STRING)),
        };
        let mut details = json!({
            "connection": connection,
            "user_name": user_name,
            "client_id": client_id,
        });
        if let Some(message) = error {
            details["error"] = json!({"message": message});
        }
        bound_details(&mut details);
        LogEvent {
            log_id: log_id(),
            date: date.to_owned(),
            outcome,
            description,
            client_id: Some(clip(client_id)),
            user_id: user_id.map(clip),
            secondary_user_id: None,
            details,
        }
    }

    /// A step of linking at sign-in (`LinkPrompted`, `LinkConfirmed`, `LinkDeclined`):
    /// `user_id` signed in first, `other_user_id` is the account offered; the link
    /// itself is the `sapi` event the store writes with it.
    pub fn sign_in_link(
        step: Outcome,
        client_id: &str,
        user_id: &str,
        other_user_id: &str,
        date: &str,
    ) -> Self {
        let description = match step {
            Outcome::LinkPrompted => "Offered to link accounts at sign-in",
            Outcome::LinkConfirmed => "Signed in to the other account to link it",
            Outcome::LinkDeclined => "Declined to link accounts at sign-in",
            _ => "Linking at sign-in",
        };
        let mut details = json!({
            "client_id": client_id,
            "user_id": user_id,
            "other_user_id": other_user_id,
        });
        bound_details(&mut details);
        LogEvent {
            log_id: log_id(),
            date: date.to_owned(),
            outcome: step,
            description: description.to_owned(),
            client_id: Some(clip(client_id)),
            user_id: Some(clip(user_id)),
            secondary_user_id: Some(clip(other_user_id)),
            details,
        }
    }

    /// Marks the event of an unlink that changed nothing because the identity is not on
    /// the user (Auth0 answers 200 with the identities unchanged): its description and
    /// `details.response.no_op` say so, so the trail never shows it as an unlink done.
    pub fn into_no_op(mut self) -> Self {
        self.description = format!(
            "{}: nothing to do, the identity is not on the user",
            self.description
        );
        self.details["response"]["no_op"] = json!(true);
        self
    }

    /// The wire shape of `GET /api/v2/logs`.
    pub fn to_wire(&self) -> Value {
        let mut event = json!({
            "log_id": self.log_id,
            "date": self.date,
            "type": self.outcome.code(),
            "description": self.description,
            "details": self.details,
        });
        if let Some(client_id) = &self.client_id {
            event["client_id"] = json!(client_id);
        }
        if let Some(user_id) = &self.user_id {
            event["user_id"] = json!(user_id);
        }
        event
    }
}

/// A page of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// Only events about this user (as primary or secondary).
    pub user_id: Option<String>,
    /// Only events of this type code.
    pub outcome: Option<Outcome>,
    pub page: u64,
    pub per_page: u64,
    /// Oldest first instead of newest first.
    pub ascending: bool,
}

impl LogQuery {
    /// Rows to skip.
    pub fn offset(&self) -> u64 {
        self.page.saturating_mul(self.per_page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_auth0s_shape() {
        let actor = Actor {
            client_id: Some("cid".into()),
            sub: "cid@clients".into(),
            scope: "update:users".into(),
        };
        let ok = LogEvent::new(
            Operation::Link,
            &actor,
            "auth0|1",
            Some("github|2".into()),
            json!({"provider": "github", "user_id": 2}),
            201,
            None,
            "2026-01-01T00:00:00.000Z",
        );
        let wire = ok.to_wire();
        assert_eq!(wire["type"], "sapi");
        assert_eq!(wire["description"], "Link a User Account");
        assert_eq!(wire["client_id"], "cid");
        assert_eq!(wire["user_id"], "auth0|1");
        assert_eq!(wire["details"]["response"]["statusCode"], 201);
        assert_eq!(
            wire["details"]["request"]["auth"]["scopes"],
            json!(["update:users"])
        );

        let failed = LogEvent::new(
            Operation::Unlink,
            &actor,
            "auth0|1",
            None,
            json!({}),
            400,
            Some(("invalid_uri", "Main identity cannot be removed.")),
            "2026-01-01T00:00:00.000Z",
        );
        assert_eq!(failed.to_wire()["type"], "fapi");
        assert_eq!(
            failed.details["response"]["body"]["errorCode"],
            "invalid_uri"
        );
        let long = "é".repeat(600);
        let clipped = LogEvent::new(
            Operation::Link,
            &actor,
            &long,
            Some(long.clone()),
            json!({}),
            404,
            Some(("inexistent_user", "x")),
            "d",
        );
        assert!(clipped.user_id.as_ref().unwrap().len() <= MAX_LOGGED_ID + '…'.len_utf8());
        assert!(
            clipped
                .secondary_user_id
                .as_ref()
                .unwrap()
                .starts_with("éé")
        );
        assert_eq!(log_id().len(), 32);
    }

    #[test]
    fn every_event_is_bounded_and_marks_what_it_cut() {
        let actor = Actor {
            client_id: Some("cid".into()),
            sub: "cid@clients".into(),
            scope: "update:users ".repeat(2000),
        };
        let huge = "x".repeat(1 << 20);
        for error in [None, Some(("invalid_body", huge.as_str()))] {
            let event = LogEvent::new(
                Operation::Link,
                &actor,
                &huge,
                Some(huge.clone()),
                json!({"provider": huge, "user_id": huge, huge.clone(): [huge, huge]}),
                400,
                error,
                "d",
            );
            let details = serde_json::to_vec(&event.details).unwrap();
            assert!(details.len() <= MAX_DETAILS_BYTES, "{}", details.len());
            assert!(event.description.len() <= MAX_DETAIL_STRING + 40);
            assert_eq!(event.details["response"]["statusCode"], 400);
            assert!(
                event.details.to_string().contains("[truncated"),
                "the cut is marked"
            );
        }
        // Small events are untouched.
        let event = LogEvent::new(
            Operation::Link,
            &actor_small(),
            "auth0|1",
            None,
            json!({"provider": "github", "user_id": "x".repeat(MAX_DETAIL_STRING)}),
            201,
            None,
            "d",
        );
        assert_eq!(
            event.details["request"]["body"]["user_id"],
            "x".repeat(MAX_DETAIL_STRING)
        );
    }

    fn actor_small() -> Actor {
        Actor {
            client_id: None,
            sub: "auth0|1".into(),
            scope: "update:current_user_identities".into(),
        }
    }
}
