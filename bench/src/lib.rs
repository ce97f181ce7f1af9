//! `idlink-bench`: a load generator on keep-alive HTTP connections for idlink's
//! link/unlink, token and read paths, and `compare`, which measures idlink beside its
//! references — its own store without HTTP (the ceiling) and the Firebase Auth
//! Emulator — in one invocation. See `docs/performance.md`.

pub mod apply_links;
pub mod ceiling;
pub mod compare;
pub mod cpu;
pub mod firebase;
pub mod http;
pub mod idlink;
pub mod import;
pub mod load;
pub mod process;
pub mod raw;
pub mod report;
pub mod scenario;
pub mod startup;
pub mod targets;

/// Parses a duration: `10`, `2.5`, `10s`, `500ms`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(secs) = s.strip_suffix('s') {
        (secs, 1.0)
    } else {
        (s, 1.0)
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| std::time::Duration::from_secs_f64(n * scale))
        .ok_or_else(|| format!("invalid duration {s:?}: expected e.g. 10, 2.5s or 500ms"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2.5s").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
    }
}
