//! Auth0-style rate limiting of the Management API: a token bucket, reported on every
//! response in `x-ratelimit-limit` / `-remaining` / `-reset`, and 429 with `Retry-After`
//! when empty.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::Error;
use crate::state::AppState;

/// A bucket's shape: how many requests at once, and how fast it refills.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Bucket size (`x-ratelimit-limit`).
    pub burst: u32,
    /// Tokens added per second.
    pub per_second: f64,
    /// When false the bucket is only reported, never enforced.
    pub enforced: bool,
}

impl RateLimit {
    /// Auth0's free plan: 2 requests/s, burst 2.
    pub const FREE: Self = Self::new(2, 2.0);
    /// Auth0's enterprise production plan: 16 requests/s, burst 50.
    pub const ENTERPRISE: Self = Self::new(50, 16.0);
    /// The zero-config default: generous enough never to slow a benchmark.
    pub const GENEROUS: Self = Self::new(100_000, 100_000.0);
    /// Reported but never enforced.
    pub const OFF: Self = Self {
        enforced: false,
        ..Self::GENEROUS
    };

    /// An enforced bucket.
    pub const fn new(burst: u32, per_second: f64) -> Self {
        Self {
            burst,
            per_second,
            enforced: true,
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::GENEROUS
    }
}

impl FromStr for RateLimit {
    type Err = String;

    /// `free`, `enterprise`, `off`, or `BURST/RATE_PER_SECOND` (e.g. `10/5`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "free" => Ok(Self::FREE),
            "enterprise" => Ok(Self::ENTERPRISE),
            "off" => Ok(Self::OFF),
            other => {
                let err = || {
                    format!(
                        "invalid rate limit {other:?}: expected free, enterprise, off or BURST/RATE_PER_SECOND"
                    )
                };
                let (burst, rate) = other.split_once('/').ok_or_else(err)?;
                let burst: u32 = burst.trim().parse().map_err(|_| err())?;
                let rate: f64 = rate.trim().parse().map_err(|_| err())?;
                if burst == 0 || !(rate > 0.0 && rate.is_finite()) {
                    return Err(err());
                }
                Ok(Self::new(burst, rate))
            }
        }
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.enforced {
            write!(f, "{}/{}", self.burst, self.per_second)
        } else {
            f.write_str("off")
        }
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What one request learns from the bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Unix seconds at which the next token arrives.
    pub reset: u64,
    /// Seconds to wait before retrying (when refused).
    pub retry_after: u64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// One token bucket for the tenant.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    /// A full bucket of shape `limit`.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            bucket: Mutex::new(Bucket {
                tokens: f64::from(limit.burst),
                refilled: Instant::now(),
            }),
        }
    }

    /// Takes a token if there is one.
    pub fn check(&self) -> Decision {
        let RateLimit {
            burst, per_second, ..
        } = self.limit;
        let now = Instant::now();
        let mut bucket = self
            .bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(f64::from(burst));
        bucket.refilled = now;
        let allowed = bucket.tokens >= 1.0 || !self.limit.enforced;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
        }
        let until_next = if bucket.tokens >= 1.0 {
            0.0
        } else {
            (1.0 - bucket.tokens) / per_second
        };
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Decision {
            allowed,
            limit: burst,
            remaining: bucket.tokens.floor() as u32,
            reset: (unix_now + until_next).ceil() as u64,
            retry_after: until_next.ceil().max(1.0) as u64,
        }
    }
}

fn put_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(decision.remaining),
    );
    headers.insert("x-ratelimit-reset", HeaderValue::from(decision.reset));
}

/// Middleware for the Management API routes.
pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let decision = state.rate_limiter.check();
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        let mut response = Error::TooManyRequests.into_response();
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(decision.retry_after));
        response
    };
    put_headers(response.headers_mut(), &decision);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_custom_shapes_parse() {
        assert_eq!("free".parse::<RateLimit>().unwrap(), RateLimit::FREE);
        assert_eq!(
            "enterprise".parse::<RateLimit>().unwrap(),
            RateLimit::new(50, 16.0)
        );
        assert_eq!(
            "10/2.5".parse::<RateLimit>().unwrap(),
            RateLimit::new(10, 2.5)
        );
        assert!(!"off".parse::<RateLimit>().unwrap().enforced);
        for bad in ["", "fast", "0/1", "5/0", "5/-1", "a/b"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_empty_bucket_refuses_until_it_refills() {
        let limiter = RateLimiter::new(RateLimit::new(2, 0.5));
        let first = limiter.check();
        assert!(first.allowed);
        assert_eq!((first.limit, first.remaining), (2, 1));
        assert!(limiter.check().allowed);
        let refused = limiter.check();
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert!(refused.retry_after >= 1);
    }

    #[test]
    fn off_never_refuses() {
        let limiter = RateLimiter::new(RateLimit {
            burst: 1,
            per_second: 0.001,
            enforced: false,
        });
        assert!((0..5).all(|_| limiter.check().allowed));
    }
}
