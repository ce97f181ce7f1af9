//! Time as the API writes it, and the server's clock.
//!
//! Every server has a [`Clock`]: the real time plus an offset that only the emulator's
//! control API changes (`PUT /idlink/v1/clock`), so tests can make tokens expire and
//! rate-limit windows pass without sleeping. Outside emulator mode the offset stays 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::macros::format_description;

/// Now, as Auth0 writes timestamps: `2024-01-31T12:34:56.789Z`.
pub fn now_iso() -> String {
    iso(OffsetDateTime::now_utc())
}

fn iso(at: OffsetDateTime) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned())
}

/// A Unix time in milliseconds, as Auth0 writes timestamps.
pub fn iso_from_unix_ms(ms: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    iso(at)
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Most the clock can be shifted, either way: a century, far beyond any token lifetime
/// and well inside what every timestamp type here can hold.
pub const MAX_OFFSET_SECONDS: i64 = 100 * 366 * 86_400;

/// The server's clock: real time shifted by an offset. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// The current offset, in seconds.
    pub fn offset_seconds(&self) -> i64 {
        self.offset.load(Ordering::Relaxed)
    }

    /// Sets the offset; `None` when it is beyond [`MAX_OFFSET_SECONDS`].
    pub fn set_offset(&self, seconds: i64) -> Option<i64> {
        (seconds.abs() <= MAX_OFFSET_SECONDS).then(|| {
            self.offset.store(seconds, Ordering::Relaxed);
            seconds
        })
    }

    /// Moves the clock by `seconds`; returns the new offset, `None` (unchanged) when it
    /// would pass [`MAX_OFFSET_SECONDS`].
    pub fn advance(&self, seconds: i64) -> Option<i64> {
        self.offset
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
                current
                    .checked_add(seconds)
                    .filter(|total| total.abs() <= MAX_OFFSET_SECONDS)
            })
            .ok()
            .map(|previous| previous + seconds)
    }

    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.offset_seconds())
    }

    /// Now, in Unix seconds.
    pub fn unix_now(&self) -> i64 {
        self.now().unix_timestamp()
    }

    /// Now, in Unix seconds with a fraction (rate-limit reset times).
    pub fn unix_now_f64(&self) -> f64 {
        let now = self.now();
        now.unix_timestamp() as f64 + f64::from(now.nanosecond()) / 1e9
    }

    /// Now, as Auth0 writes timestamps.
    pub fn now_iso(&self) -> String {
        iso(self.now())
    }

    /// A monotonic instant, shifted like the clock: rate-limit buckets refill by it.
    /// A negative offset cannot take an `Instant` before the process began, so it
    /// counts as no shift (buckets never refill backwards anyway).
    pub fn instant(&self) -> Instant {
        let now = Instant::now();
        match u64::try_from(self.offset_seconds()) {
            Ok(ahead) => now.checked_add(Duration::from_secs(ahead)).unwrap_or(now),
            Err(_) => now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_shape() {
        let now = super::now_iso();
        assert_eq!(now.len(), 24, "{now}");
        assert!(now.ends_with('Z') && now.as_bytes()[10] == b'T');
    }

    #[test]
    fn clock_shifts_every_reading() {
        let clock = Clock::default();
        let before = clock.unix_now();
        let start = clock.instant();
        assert_eq!(clock.advance(86_400), Some(86_400));
        assert!(clock.unix_now() - before >= 86_400);
        assert!(clock.instant().duration_since(start) >= Duration::from_secs(86_400));
        assert_eq!(clock.advance(-400), Some(86_000));
        assert_eq!(clock.set_offset(-5), Some(-5));
        assert!(clock.unix_now() < unix_now());
        assert_eq!(clock.set_offset(MAX_OFFSET_SECONDS + 1), None);
        assert_eq!(clock.advance(i64::MAX), None);
        assert_eq!(clock.offset_seconds(), -5);
        let shared = clock.clone();
        shared.set_offset(7);
        assert_eq!(clock.offset_seconds(), 7);
    }
}
