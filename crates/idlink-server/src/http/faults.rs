//! Fault injection (emulator mode only): rules set with `PUT /idlink/v1/faults` answer
//! matching requests with an Auth0-shaped error — and, for 429, Auth0's rate-limit
//! headers — before they reach anything else, so an app can test its retry and backoff
//! code. A faulted request has no effect: it never reaches a handler, a rate-limit
//! bucket or the database. The control API itself is never faulted.
//!
//! A layer of its own, outside request logging and metrics, so those see faulted
//! requests as what the client saw.

use std::sync::Mutex;
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use glob::{MatchOptions, Pattern};
use idlink_types::ErrorBody;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::ratelimit::{self, Decision};
use crate::state::AppState;

/// Most rules at once.
pub const MAX_RULES: usize = 100;
/// Longest delay a rule may add.
pub const MAX_DELAY_MS: u64 = 60_000;

/// One rule as the control API takes and shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// `GET`, `POST`, …; any method when absent or `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// A glob over the request path: `*` within one segment, `**` across segments,
    /// e.g. `/api/v2/users/*/identities`.
    pub path: String,
    /// The status to answer (400–599); absent: only delay, then serve normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Apply to this many matching requests, then stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// Apply to each matching request with this probability (0 < p ≤ 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Wait this long before answering (or serving).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// `Retry-After` seconds (429 default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// `{"rules": [...]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRules {
    pub rules: Vec<FaultRule>,
}

/// A rule in force, with its counters.
#[derive(Debug)]
struct Active {
    rule: FaultRule,
    pattern: Pattern,
    /// Left of `times`.
    remaining: Option<u64>,
    /// Requests it applied to.
    hits: u64,
}

/// The rules in force. Checking takes one short lock per request.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Active>>,
}

/// What a matched rule does to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub index: usize,
    pub status: Option<u16>,
    pub delay: Duration,
    pub retry_after: Option<u64>,
}

const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl FaultRule {
    /// The rule's problems, as `rules[i].field: message`.
    fn check(&self, at: &str) -> Result<Pattern, String> {
        if !self.path.starts_with('/') {
            return Err(format!("{at}.path: must start with /"));
        }
        let pattern =
            Pattern::new(&self.path).map_err(|e| format!("{at}.path: not a glob: {e}"))?;
        if let Some(method) = &self.method {
            if method != "*"
                && (method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()))
            {
                return Err(format!("{at}.method: {method:?} is not an HTTP method"));
            }
        }
        if let Some(status) = self.status {
            if !(400..=599).contains(&status) {
                return Err(format!(
                    "{at}.status: {status} is not an error status (400-599)"
                ));
            }
        }
        if self.times.is_some() && self.probability.is_some() {
            return Err(format!(
                "{at}.probability: give times or probability, not both"
            ));
        }
        if let Some(p) = self.probability {
            if !(p > 0.0 && p <= 1.0) {
                return Err(format!("{at}.probability: must be in (0, 1]"));
            }
        }
        if self.times == Some(0) {
            return Err(format!("{at}.times: must be at least 1"));
        }
        if self.delay_ms.is_some_and(|d| d > MAX_DELAY_MS) {
            return Err(format!("{at}.delay_ms: at most {MAX_DELAY_MS}"));
        }
        if self.status.is_none() && self.delay_ms.is_none() {
            return Err(format!("{at}: give a status, a delay_ms or both"));
        }
        if self.retry_after.is_some_and(|r| r > 86_400) {
            return Err(format!("{at}.retry_after: at most 86400 seconds"));
        }
        Ok(pattern)
    }

    fn matches_method(&self, method: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m == "*" || m.eq_ignore_ascii_case(method))
    }
}

impl Faults {
    /// Replaces the rules, once all of them are valid.
    pub fn set(&self, rules: Vec<FaultRule>) -> Result<(), String> {
        if rules.len() > MAX_RULES {
            return Err(format!("rules: at most {MAX_RULES}"));
        }
        let mut active = Vec::with_capacity(rules.len());
        for (i, rule) in rules.into_iter().enumerate() {
            let pattern = rule.check(&format!("rules[{i}]"))?;
            active.push(Active {
                remaining: rule.times,
                rule,
                pattern,
                hits: 0,
            });
        }
        *self.lock() = active;
        Ok(())
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The rules with their counters (`hits`, `remaining`), as JSON.
    pub fn describe(&self) -> serde_json::Value {
        let rules: Vec<serde_json::Value> = self
            .lock()
            .iter()
            .map(|a| {
                let mut value = serde_json::to_value(&a.rule).unwrap_or_default();
                value["hits"] = a.hits.into();
                if let Some(remaining) = a.remaining {
                    value["remaining"] = remaining.into();
                }
                value
            })
            .collect();
        serde_json::json!({ "rules": rules })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Active>> {
        self.rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The first rule that applies to this request, counted.
    pub fn check(&self, method: &str, path: &str) -> Option<Fault> {
        let mut rules = self.lock();
        for (index, active) in rules.iter_mut().enumerate() {
            if !active.rule.matches_method(method) || !active.pattern.matches_with(path, MATCH) {
                continue;
            }
            if active.remaining == Some(0) {
                continue;
            }
            if let Some(p) = active.rule.probability {
                if !rand::thread_rng().gen_bool(p) {
                    continue;
                }
            }
            if let Some(remaining) = &mut active.remaining {
                *remaining -= 1;
            }
            active.hits += 1;
            return Some(Fault {
                index,
                status: active.rule.status,
                delay: Duration::from_millis(active.rule.delay_ms.unwrap_or(0)),
                retry_after: active.rule.retry_after,
            });
        }
        None
    }
}

/// The Auth0-shaped answer of a fault with `status`.
fn answer(state: &AppState, fault: &Fault, status: u16) -> Response {
    let mut response = if status == 429 {
        let retry_after = fault.retry_after.unwrap_or(1).max(1);
        let reset = u64::try_from(state.clock.unix_now()).unwrap_or(0) + retry_after;
        ratelimit::too_many_requests(&Decision {
            allowed: false,
            limit: state.rate_limiter.limit().burst,
            remaining: 0,
            reset,
            retry_after,
        })
    } else {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let reason = code.canonical_reason().unwrap_or("Error");
        let body = ErrorBody {
            status_code: code.as_u16(),
            error: reason.to_owned(),
            message: match code {
                StatusCode::INTERNAL_SERVER_ERROR => "Internal Server Error".to_owned(),
                _ => format!("{reason} (fault injected by the idlink emulator)"),
            },
            error_code: None,
        };
        let mut response = (code, Json(body)).into_response();
        if let Some(seconds) = fault.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(seconds));
        }
        response
    };
    response
        .headers_mut()
        .insert("x-idlink-fault", HeaderValue::from(fault.index));
    response
}

/// The middleware: in emulator mode, applies the first matching rule.
pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(emulator) = &state.emulator else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if path.starts_with(crate::emulator::CONTROL_PREFIX) {
        return next.run(request).await;
    }
    let Some(fault) = emulator.faults.check(request.method().as_str(), path) else {
        return next.run(request).await;
    };
    if !fault.delay.is_zero() {
        tokio::time::sleep(fault.delay).await;
    }
    match fault.status {
        Some(status) => answer(&state, &fault, status),
        None => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> FaultRule {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn globs_stay_within_segments() {
        let faults = Faults::default();
        faults
            .set(vec![rule(
                r#"{"method": "post", "path": "/api/v2/users/*/identities", "status": 503, "times": 2}"#,
            )])
            .unwrap();
        assert!(faults.check("GET", "/api/v2/users/a/identities").is_none());
        assert!(
            faults
                .check("POST", "/api/v2/users/a/b/identities")
                .is_none()
        );
        assert_eq!(
            faults
                .check("POST", "/api/v2/users/auth0|1/identities")
                .unwrap()
                .status,
            Some(503)
        );
        assert!(faults.check("POST", "/api/v2/users/x/identities").is_some());
        assert!(
            faults.check("POST", "/api/v2/users/x/identities").is_none(),
            "times ran out"
        );
        assert_eq!(faults.describe()["rules"][0]["hits"], 2);

        faults
            .set(vec![rule(r#"{"path": "/api/**", "status": 500}"#)])
            .unwrap();
        assert!(
            faults
                .check("DELETE", "/api/v2/users/a/identities/github/1")
                .is_some()
        );
        assert!(faults.check("GET", "/oauth/token").is_none());
    }

    #[test]
    fn bad_rules_name_their_field() {
        let faults = Faults::default();
        let err = |json: &str| {
            faults
                .set(vec![rule(r#"{"path": "/a", "status": 500}"#), rule(json)])
                .unwrap_err()
        };
        assert_eq!(
            err(r#"{"path": "/a", "status": 200}"#),
            "rules[1].status: 200 is not an error status (400-599)"
        );
        assert!(err(r#"{"path": "a", "status": 500}"#).starts_with("rules[1].path"));
        assert!(err(r#"{"path": "/a[", "status": 500}"#).starts_with("rules[1].path: not a glob"));
        assert!(
            err(r#"{"path": "/a", "status": 500, "times": 1, "probability": 0.5}"#)
                .contains("not both")
        );
        assert!(
            err(r#"{"path": "/a", "status": 500, "probability": 1.5}"#)
                .starts_with("rules[1].probability")
        );
        assert!(err(r#"{"path": "/a"}"#).starts_with("rules[1]: give a status"));
        assert!(
            faults.check("GET", "/a").is_none(),
            "a refused set changes nothing"
        );
    }
}
