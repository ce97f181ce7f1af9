//! CPU seconds of local processes, read from `/proc` (Linux). Elsewhere every probe
//! answers `None` and the reports leave the CPU columns empty.

use std::collections::HashMap;
use std::sync::OnceLock;

/// Clock ticks per second of the `/proc/*/stat` time fields (`getconf CLK_TCK`).
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// `(ppid, utime + stime in ticks)` from the text of `/proc/PID/stat`.
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    // The command name (field 2) may hold spaces and parentheses: fields are counted
    // from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state), so field N is rest[N - 3].
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

fn stat_of(pid: &str) -> Option<(u32, u64)> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// User + system CPU seconds used so far by this process.
pub fn own_seconds() -> Option<f64> {
    stat_of("self").map(|(_, ticks)| ticks as f64 / ticks_per_second())
}

/// User + system CPU seconds used so far by process `pid` and every live descendant
/// (a launcher script's children count as the server).
pub fn tree_seconds(pid: u32) -> Option<f64> {
    let (_, own) = stat_of(&pid.to_string())?;
    let mut children: HashMap<u32, Vec<(u32, u64)>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(child) = name.parse::<u32>() else {
                continue;
            };
            if let Some((ppid, ticks)) = stat_of(name) {
                children.entry(ppid).or_default().push((child, ticks));
            }
        }
    }
    let mut total = own;
    let mut stack = vec![pid];
    while let Some(parent) = stack.pop() {
        for &(child, ticks) in children.get(&parent).map(Vec::as_slice).unwrap_or_default() {
            total += ticks;
            stack.push(child);
        }
    }
    Some(total as f64 / ticks_per_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let stat = "4242 (a) b) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_stat(stat), Some((17, 281)));
    }

    #[test]
    fn reads_this_process() {
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(own_seconds().is_some());
            assert!(tree_seconds(std::process::id()).is_some());
        }
    }
}
