//! The retry policy: which answers are retried, and how long to wait before the next try.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// When and how often a call is retried; the official Auth0 SDKs' policy by default.
///
/// - Retried statuses: 408, 429 and every 5xx. Transport errors are not retried (the
///   request may have reached the server, and against Auth0 a link is not idempotent).
///   Link and unlink send one `Idempotency-Key` on all their attempts, so on idlink a
///   retried link or unlink acts at most once.
/// - Default: 2 retries, so at most 3 attempts.
/// - Delay before retry *n* (0-based): the `Retry-After` header (seconds or an HTTP date)
///   when present and positive; else `X-RateLimit-Reset` minus now plus 0–20 % jitter;
///   else `base_delay` × 2ⁿ ± 10 % jitter (base 1 s). Every delay is capped at
///   `max_delay` (60 s).
///
/// The policy is a plain value: replace it on the client
/// ([`ManagementClientBuilder::retry_policy`](crate::ManagementClientBuilder::retry_policy)),
/// or change `max_retries` for a single call with
/// [`RequestOptions::max_retries`](crate::RequestOptions::max_retries).
///
/// ```
/// use std::time::Duration;
/// use idlink_client::RetryPolicy;
///
/// let policy = RetryPolicy::default()
///     .with_max_retries(4)
///     .with_base_delay(Duration::from_millis(10))
///     .with_jitter(false);
/// assert!(policy.is_retryable_status(503));
/// assert!(!policy.is_retryable_status(409));
/// // No rate-limit headers: exponential backoff.
/// assert_eq!(policy.delay(2, &http::HeaderMap::new()), Duration::from_millis(40));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    max_retries: u32,
    base_delay: Duration,
    max_delay: Duration,
    jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The default policy (2 retries, base delay 1 s, cap 60 s, jitter on).
    ///
    /// ```
    /// assert_eq!(idlink_client::RetryPolicy::new().max_retries(), 2);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A policy that never retries.
    ///
    /// ```
    /// assert_eq!(idlink_client::RetryPolicy::none().max_retries(), 0);
    /// ```
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// Sets the number of retries after the first attempt.
    ///
    /// ```
    /// let p = idlink_client::RetryPolicy::new().with_max_retries(5);
    /// assert_eq!(p.max_retries(), 5);
    /// ```
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Sets the base of the exponential backoff (1 s by default). Tests make it tiny.
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = idlink_client::RetryPolicy::new().with_base_delay(Duration::from_millis(5));
    /// assert_eq!(p.base_delay(), Duration::from_millis(5));
    /// ```
    pub fn with_base_delay(mut self, base_delay: Duration) -> Self {
        self.base_delay = base_delay;
        self
    }

    /// Sets the cap of every delay, header-driven ones included (60 s by default).
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = idlink_client::RetryPolicy::new().with_max_delay(Duration::from_secs(5));
    /// assert_eq!(p.max_delay(), Duration::from_secs(5));
    /// ```
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Turns the random jitter on (default) or off (for deterministic delays).
    ///
    /// ```
    /// let p = idlink_client::RetryPolicy::new().with_jitter(false);
    /// assert!(!p.jitter());
    /// ```
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Retries after the first attempt.
    ///
    /// ```
    /// assert_eq!(idlink_client::RetryPolicy::default().max_retries(), 2);
    /// ```
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// Base of the exponential backoff.
    ///
    /// ```
    /// assert_eq!(idlink_client::RetryPolicy::default().base_delay().as_secs(), 1);
    /// ```
    pub fn base_delay(&self) -> Duration {
        self.base_delay
    }

    /// Cap of every delay.
    ///
    /// ```
    /// assert_eq!(idlink_client::RetryPolicy::default().max_delay().as_secs(), 60);
    /// ```
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// Whether jitter is applied.
    ///
    /// ```
    /// assert!(idlink_client::RetryPolicy::default().jitter());
    /// ```
    pub fn jitter(&self) -> bool {
        self.jitter
    }

    /// Whether an answer with this status is retried: 408, 429 and 5xx.
    ///
    /// ```
    /// let p = idlink_client::RetryPolicy::default();
    /// assert!(p.is_retryable_status(408) && p.is_retryable_status(429) && p.is_retryable_status(500));
    /// assert!(!p.is_retryable_status(400) && !p.is_retryable_status(404));
    /// ```
    pub fn is_retryable_status(&self, status: u16) -> bool {
        matches!(status, 408 | 429 | 500..=599)
    }

    /// The delay before retry number `attempt` (0 for the first retry), from the headers
    /// of the answer being retried, the clock and a random jitter.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("retry-after", "3".parse().unwrap());
    /// assert_eq!(idlink_client::RetryPolicy::default().delay(0, &headers), Duration::from_secs(3));
    /// ```
    pub fn delay(&self, attempt: u32, headers: &HeaderMap) -> Duration {
        let random = if self.jitter {
            rand::random::<f64>()
        } else {
            0.5
        };
        self.delay_at(attempt, headers, SystemTime::now(), random)
    }

    /// [`delay`](Self::delay) with the clock and the random sample given: `random` is in
    /// `[0, 1)`; `0.5` means "no jitter" for the backoff, `0.0` for the reset jitter.
    /// Deterministic, for tests.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// let now = UNIX_EPOCH + Duration::from_secs(1_000);
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("x-ratelimit-reset", "1010".parse().unwrap());
    /// let p = idlink_client::RetryPolicy::default();
    /// assert_eq!(p.delay_at(0, &headers, now, 0.0), Duration::from_secs(10));
    /// assert_eq!(p.delay_at(0, &headers, now, 0.5), Duration::from_secs(11)); // +10 %
    /// ```
    pub fn delay_at(
        &self,
        attempt: u32,
        headers: &HeaderMap,
        now: SystemTime,
        random: f64,
    ) -> Duration {
        let random = random.clamp(0.0, 1.0);
        let header = |name: http::header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        if let Some(delay) = header(http::header::RETRY_AFTER)
            .and_then(|v| parse_retry_after(v, now))
            .filter(|d| !d.is_zero())
        {
            return delay.min(self.max_delay);
        }
        if let Some(delay) = header(http::header::HeaderName::from_static("x-ratelimit-reset"))
            .and_then(|v| v.parse::<u64>().ok())
            .and_then(|reset| {
                (SystemTime::UNIX_EPOCH + Duration::from_secs(reset))
                    .duration_since(now)
                    .ok()
            })
            .filter(|d| !d.is_zero())
        {
            let positive = if self.jitter { 1.0 + random * 0.2 } else { 1.0 };
            return scale(delay.min(self.max_delay), positive, self.max_delay);
        }
        let exponential = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.min(31)))
            .min(self.max_delay);
        let symmetric = if self.jitter {
            1.0 + (random - 0.5) * 0.2
        } else {
            1.0
        };
        scale(exponential, symmetric, self.max_delay)
    }
}

/// `delay × factor`, capped at `cap` (and never panicking on overflow).
fn scale(delay: Duration, factor: f64, cap: Duration) -> Duration {
    Duration::try_from_secs_f64(delay.as_secs_f64() * factor)
        .unwrap_or(cap)
        .min(cap)
}

/// Parses `Retry-After`: delay-seconds or an HTTP date (made relative to `now`; a date in
/// the past yields zero).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const NOW: u64 = 1_700_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    #[test]
    fn retry_after_seconds_wins_and_has_no_jitter() {
        let p = RetryPolicy::default();
        let h = headers(&[("retry-after", "7"), ("x-ratelimit-reset", "1700000030")]);
        for r in [0.0, 0.5, 0.99] {
            assert_eq!(p.delay_at(0, &h, now(), r), Duration::from_secs(7));
        }
    }

    #[test]
    fn retry_after_http_date() {
        let p = RetryPolicy::default();
        let date = httpdate::fmt_http_date(now() + Duration::from_secs(12));
        let h = headers(&[("retry-after", &date)]);
        assert_eq!(p.delay_at(0, &h, now(), 0.3), Duration::from_secs(12));
    }

    #[test]
    fn zero_or_past_retry_after_falls_through() {
        let p = RetryPolicy::default().with_jitter(false);
        let past = httpdate::fmt_http_date(now() - Duration::from_secs(5));
        for v in ["0", past.as_str(), "garbage"] {
            let h = headers(&[("retry-after", v)]);
            assert_eq!(p.delay_at(1, &h, now(), 0.9), Duration::from_secs(2), "{v}");
        }
    }

    #[test]
    fn rate_limit_reset_with_positive_jitter() {
        let p = RetryPolicy::default();
        let h = headers(&[("x-ratelimit-reset", "1700000004")]);
        assert_eq!(p.delay_at(0, &h, now(), 0.0), Duration::from_secs(4));
        let high = p.delay_at(0, &h, now(), 0.999_999);
        assert!(high > Duration::from_millis(4790) && high <= Duration::from_millis(4800));
        // A reset in the past falls back to backoff.
        let h = headers(&[("x-ratelimit-reset", "1699999990")]);
        assert_eq!(p.delay_at(0, &h, now(), 0.5), Duration::from_secs(1));
    }

    #[test]
    fn exponential_backoff_with_symmetric_jitter() {
        let p = RetryPolicy::default();
        let h = HeaderMap::new();
        assert_eq!(p.delay_at(0, &h, now(), 0.5), Duration::from_secs(1));
        assert_eq!(p.delay_at(1, &h, now(), 0.5), Duration::from_secs(2));
        assert_eq!(p.delay_at(3, &h, now(), 0.5), Duration::from_secs(8));
        assert_eq!(p.delay_at(0, &h, now(), 0.0), Duration::from_millis(900));
        let high = p.delay_at(0, &h, now(), 0.999_999);
        assert!(high > Duration::from_millis(1099) && high <= Duration::from_millis(1100));
        for _ in 0..100 {
            let d = p.delay(2, &h);
            assert!(d >= Duration::from_millis(3600) && d <= Duration::from_millis(4400));
        }
    }

    #[test]
    fn every_delay_is_capped() {
        let p = RetryPolicy::default();
        let h = HeaderMap::new();
        assert_eq!(p.delay_at(10, &h, now(), 0.99), Duration::from_secs(60));
        assert_eq!(p.delay_at(40, &h, now(), 0.5), Duration::from_secs(60));
        let h = headers(&[("retry-after", "3600")]);
        assert_eq!(p.delay_at(0, &h, now(), 0.5), Duration::from_secs(60));
        let h = headers(&[("x-ratelimit-reset", "1700003600")]);
        assert_eq!(p.delay_at(0, &h, now(), 0.99), Duration::from_secs(60));
        // Absurd settings saturate instead of panicking.
        let p = RetryPolicy::default()
            .with_base_delay(Duration::MAX)
            .with_max_delay(Duration::MAX);
        assert!(p.delay_at(5, &HeaderMap::new(), now(), 0.99) > Duration::from_secs(1 << 40));
    }

    #[test]
    fn retryable_statuses() {
        let p = RetryPolicy::default();
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(p.is_retryable_status(s), "{s}");
        }
        for s in [200, 201, 204, 400, 401, 403, 404, 409, 410, 412, 413] {
            assert!(!p.is_retryable_status(s), "{s}");
        }
    }
}
