//! Auth0-style rate limiting of the Management API: a token bucket, reported on every
//! response in `x-ratelimit-limit` / `-remaining` / `-reset`, and 429 with `Retry-After`
//! when empty. One bucket for the tenant and one per client; a request needs a token
//! from both. A request that does not authenticate (no token, or one that does not
//! verify) spends neither: it draws on its source address's own bucket, so anonymous
//! floods cannot starve the tenant's callers.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Instant;

use crate::clock::Clock;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::auth::Principal;
use crate::error::Error;
use crate::http::observe::ClientId;
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

/// Most client buckets kept; past that, full buckets (clients idle long enough to have
/// refilled) are forgotten, which changes nothing for them.
const MAX_CLIENT_BUCKETS: usize = 10_000;

impl Bucket {
    fn full(limit: RateLimit, now: Instant) -> Self {
        Self {
            tokens: f64::from(limit.burst),
            refilled: now,
        }
    }

    /// Refills for the time elapsed, then takes a token if there is one.
    fn take(&mut self, limit: RateLimit, now: Instant, unix_now: f64) -> Decision {
        let RateLimit {
            burst, per_second, ..
        } = limit;
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(f64::from(burst));
        self.refilled = now;
        let allowed = self.tokens >= 1.0 || !limit.enforced;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
        }
        let until_next = if self.tokens >= 1.0 {
            0.0
        } else {
            (1.0 - self.tokens) / per_second
        };
        Decision {
            allowed,
            limit: burst,
            remaining: self.tokens.floor() as u32,
            reset: (unix_now + until_next).ceil() as u64,
            retry_after: until_next.ceil().max(1.0) as u64,
        }
    }

    /// Whether the bucket would be full now (its client has been idle long enough).
    fn is_full(&self, limit: RateLimit, now: Instant) -> bool {
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens + elapsed * limit.per_second >= f64::from(limit.burst)
    }
}

impl Decision {
    /// The decision to report when a request has to pass two buckets: a refusal if
    /// either refuses, else the bucket with fewer tokens left (on a tie, the one that
    /// refills later).
    pub fn tighter(self, other: Self) -> Self {
        match (self.allowed, other.allowed) {
            (false, _) => self,
            (true, false) => other,
            (true, true) => {
                if (other.remaining, std::cmp::Reverse(other.reset))
                    < (self.remaining, std::cmp::Reverse(self.reset))
                {
                    other
                } else {
                    self
                }
            }
        }
    }
}

/// One bucket per key (a client id, a source address), all of one shape, at most
/// [`MAX_CLIENT_BUCKETS`] of them.
#[derive(Debug)]
pub struct KeyedBuckets {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
    clock: Clock,
}

impl KeyedBuckets {
    /// Full buckets of shape `limit`, made as keys first appear.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
            clock: Clock::default(),
        }
    }

    fn with_clock(mut self, clock: &Clock) -> Self {
        self.clock = clock.clone();
        self
    }

    /// Takes a token from `key`'s bucket if there is one.
    pub fn take(&self, key: &str) -> Decision {
        let now = self.clock.instant();
        let limit = self.limit;
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !buckets.contains_key(key) && buckets.len() >= MAX_CLIENT_BUCKETS {
            buckets.retain(|_, bucket| !bucket.is_full(limit, now));
            if buckets.len() >= MAX_CLIENT_BUCKETS {
                // Every bucket is in use: forgetting them all refills them, which errs
                // on the side of serving (the tenant bucket still applies).
                buckets.clear();
            }
        }
        buckets
            .entry(key.to_owned())
            .or_insert_with(|| Bucket::full(limit, now))
            .take(limit, now, self.clock.unix_now_f64())
    }
}

/// The token buckets of the Management API: one for the tenant, one per client (the
/// `azp` of the bearer token, so a client's users share its bucket), and one per source
/// address for requests that do not authenticate.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    bucket: Mutex<Bucket>,
    clients: KeyedBuckets,
    unauthenticated: KeyedBuckets,
    clock: Clock,
}

impl RateLimiter {
    /// Full buckets of shape `limit`, for the tenant, each client and each address.
    pub fn new(limit: RateLimit) -> Self {
        Self::with_client_limit(limit, limit)
    }

    /// A tenant bucket of shape `tenant` and client buckets of shape `client`;
    /// unauthenticated addresses get the tenant's shape.
    pub fn with_client_limit(tenant: RateLimit, client: RateLimit) -> Self {
        Self {
            limit: tenant,
            bucket: Mutex::new(Bucket::full(tenant, Instant::now())),
            clients: KeyedBuckets::new(client),
            unauthenticated: KeyedBuckets::new(tenant),
            clock: Clock::default(),
        }
    }

    /// The same buckets, refilled by `clock` (which the emulator can move forward).
    pub fn with_clock(mut self, clock: &Clock) -> Self {
        self.clients = self.clients.with_clock(clock);
        self.unauthenticated = self.unauthenticated.with_clock(clock);
        self.clock = clock.clone();
        self
    }

    /// Gives each source address of unauthenticated requests buckets of shape `limit`.
    pub fn with_unauthenticated_limit(mut self, limit: RateLimit) -> Self {
        self.unauthenticated = KeyedBuckets::new(limit).with_clock(&self.clock);
        self
    }

    /// The tenant bucket's shape.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a token from the tenant's bucket if there is one.
    pub fn check(&self) -> Decision {
        self.bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take(self.limit, self.clock.instant(), self.clock.unix_now_f64())
    }

    /// Takes a token from `client`'s bucket if there is one.
    pub fn check_client(&self, client: &str) -> Decision {
        self.clients.take(client)
    }

    /// Takes a token from the bucket of unauthenticated requests from `source`.
    pub fn check_unauthenticated(&self, source: Option<IpAddr>) -> Decision {
        self.unauthenticated.take(&source_key(source))
    }
}

/// The address a request came from, when the server recorded it (it does for every
/// connection; in-process `oneshot` tests have none).
pub fn source_ip(request: &Request) -> Option<IpAddr> {
    peer_ip(request.extensions())
}

fn peer_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// The source address as an extractor (never fails: `None` when unknown).
#[derive(Debug, Clone, Copy)]
pub struct SourceIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for SourceIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(peer_ip(&parts.extensions)))
    }
}

/// The buckets of `POST /oauth/token`, where every attempt with a password or an
/// unknown secret costs an argon2 computation: one per client id named and one per
/// source address (so rotating client ids does not escape it).
#[derive(Debug)]
pub struct TokenEndpointLimiter {
    clients: KeyedBuckets,
    addresses: KeyedBuckets,
}

impl TokenEndpointLimiter {
    /// Buckets of shape `per_client` per client id and `per_address` per address.
    pub fn new(per_client: RateLimit, per_address: RateLimit) -> Self {
        Self {
            clients: KeyedBuckets::new(per_client),
            addresses: KeyedBuckets::new(per_address),
        }
    }

    /// The same buckets, refilled by `clock`.
    pub fn with_clock(mut self, clock: &Clock) -> Self {
        self.clients = self.clients.with_clock(clock);
        self.addresses = self.addresses.with_clock(clock);
        self
    }

    /// Takes a token from the bucket of `source`.
    pub fn check_address(&self, source: Option<IpAddr>) -> Decision {
        self.addresses.take(&source_key(source))
    }

    /// Takes a token from the bucket of the client id a request names.
    pub fn check_client(&self, client_id: &str) -> Decision {
        self.clients.take(client_id)
    }
}

/// The bucket key of a source address. IPv6 clients are keyed by their /64, which one
/// host usually holds whole (keying by full address would give it 2^64 buckets).
fn source_key(source: Option<IpAddr>) -> String {
    match source {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => "unknown".to_owned(),
    }
}

/// Writes a decision's `x-ratelimit-*` headers.
pub fn put_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(decision.remaining),
    );
    headers.insert("x-ratelimit-reset", HeaderValue::from(decision.reset));
}

/// The 429 answer of an empty bucket: Auth0's body, `Retry-After` and `x-ratelimit-*`.
pub fn too_many_requests(decision: &Decision) -> Response {
    let mut response = Error::TooManyRequests.into_response();
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from(decision.retry_after));
    put_headers(response.headers_mut(), decision);
    response
}

/// Middleware for the Management API routes. When the bearer token verifies: the
/// tenant's bucket, then its client's; the headers report the tighter one, and the
/// verified caller is handed on to the [`Principal`] extractor, so the token is verified
/// once per request. When it does not (no token, a bad one): only the source address's
/// bucket of unauthenticated requests, so they cannot spend the tenant's budget.
pub async fn middleware(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let limiter = &state.rate_limiter;
    let mut client = None;
    let decision = match Principal::from_headers(request.headers(), &state).await {
        Ok(principal) => {
            client = Some(ClientId(principal.client().to_owned()));
            let tenant = limiter.check();
            if !tenant.allowed {
                return with_client(too_many_requests(&tenant), client);
            }
            let decision = tenant.tighter(limiter.check_client(principal.client()));
            request.extensions_mut().insert(principal);
            decision
        }
        Err(_) => limiter.check_unauthenticated(source_ip(&request)),
    };
    if !decision.allowed {
        return with_client(too_many_requests(&decision), client);
    }
    let mut response = next.run(request).await;
    put_headers(response.headers_mut(), &decision);
    with_client(response, client)
}

/// Puts the verified caller on the response, for the request log line.
fn with_client(mut response: Response, client: Option<ClientId>) -> Response {
    if let Some(client) = client {
        response.extensions_mut().insert(client);
    }
    response
}

/// Middleware for the routes outside the Management API (`/oauth/token`, the
/// well-known documents, `/health`): Auth0 reports a bucket on those too. Theirs is
/// separate and generous, so tokens and key fetches never compete with Management calls.
pub async fn authentication_middleware(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let decision = state.authentication_limiter.check();
    if !decision.allowed {
        return too_many_requests(&decision);
    }
    let mut response = next.run(request).await;
    // A handler's own bucket (the token endpoint's) reports itself.
    if !response.headers().contains_key("x-ratelimit-limit") {
        put_headers(response.headers_mut(), &decision);
    }
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
    fn each_client_has_its_own_bucket() {
        let limiter = RateLimiter::with_client_limit(RateLimit::GENEROUS, RateLimit::new(2, 0.1));
        assert!(limiter.check_client("a").allowed);
        assert!(limiter.check_client("a").allowed);
        assert!(!limiter.check_client("a").allowed);
        assert!(limiter.check_client("b").allowed);
    }

    #[test]
    fn the_tighter_bucket_is_reported() {
        let d = |allowed, remaining, reset| Decision {
            allowed,
            limit: 10,
            remaining,
            reset,
            retry_after: 1,
        };
        assert_eq!(d(true, 5, 1).tighter(d(true, 2, 1)), d(true, 2, 1));
        assert_eq!(d(true, 2, 1).tighter(d(true, 5, 1)), d(true, 2, 1));
        assert_eq!(d(true, 2, 1).tighter(d(true, 2, 9)), d(true, 2, 9));
        assert_eq!(d(true, 5, 1).tighter(d(false, 0, 3)), d(false, 0, 3));
        assert_eq!(d(false, 0, 3).tighter(d(true, 0, 9)), d(false, 0, 3));
    }

    #[test]
    fn client_buckets_are_bounded() {
        let limiter = RateLimiter::with_client_limit(RateLimit::GENEROUS, RateLimit::new(1, 0.001));
        for i in 0..MAX_CLIENT_BUCKETS + 5 {
            assert!(limiter.check_client(&i.to_string()).allowed);
        }
        assert!(limiter.clients.buckets.lock().unwrap().len() <= MAX_CLIENT_BUCKETS);
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

    #[test]
    fn unauthenticated_addresses_have_their_own_buckets() {
        let limiter = RateLimiter::new(RateLimit::new(100, 0.001))
            .with_unauthenticated_limit(RateLimit::new(1, 0.001));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limiter.check_unauthenticated(Some(a)).allowed);
        assert!(!limiter.check_unauthenticated(Some(a)).allowed);
        assert!(limiter.check_unauthenticated(Some(b)).allowed);
        assert_eq!(
            limiter.check().remaining,
            99,
            "the tenant's bucket is untouched"
        );
        let host: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        assert!(limiter.check_unauthenticated(Some(host)).allowed);
        assert!(!limiter.check_unauthenticated(Some(same_64)).allowed);
    }
}
