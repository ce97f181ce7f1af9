//! The emulator's memory with a large seed. glibc's malloc gives each thread that finds
//! the heap busy an arena of its own and keeps what is freed inside it: after decoding,
//! validating and writing a seed of 10,000 users (on the main thread, the writer thread
//! and the reader pool's threads), about 110 MiB stayed resident, half of it in those
//! arenas. With one arena and a fixed trim threshold the same start stays near 64 MiB
//! (`docs/performance.md`). glibc reads its tunables once, when the process starts, and
//! setting them from inside (`mallopt`, `malloc_trim`) needs FFI that this workspace's
//! `unsafe` ban rules out — so `idlink emulate` starts itself again, once, with
//! `GLIBC_TUNABLES` set. `serve` is left alone: under load, per-thread arenas are what
//! keep its allocations from contending.

use std::ffi::OsString;

/// What the emulator runs with. `trim_threshold` set by hand also stops glibc from
/// raising it after large frees, so freed memory at the top of the heap goes back.
const TUNABLES: &str = "glibc.malloc.arena_max=1:glibc.malloc.trim_threshold=131072";

/// Set on the restarted process, so it does not restart again.
const RESTARTED: &str = "IDLINK_MALLOC_TUNED";

/// The `GLIBC_TUNABLES` to restart with, given the current value; `None` when the
/// process must not restart: it already did, or the user chose the arena count.
fn tunables_for(current: Option<&str>, restarted: bool) -> Option<String> {
    if restarted {
        return None;
    }
    match current {
        Some(existing) if existing.contains("glibc.malloc.arena_max") => None,
        Some(existing) if !existing.is_empty() => Some(format!("{existing}:{TUNABLES}")),
        _ => Some(TUNABLES.to_owned()),
    }
}

/// Replaces this process (same PID, same arguments) by one started with the emulator's
/// malloc tunables, unless it already runs with them; on any failure it goes on as it
/// is, since the tunables only save memory. Call before any thread starts.
pub fn restart_with_emulator_tunables() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    let current = std::env::var("GLIBC_TUNABLES").ok();
    let restarted = std::env::var_os(RESTARTED).is_some();
    let Some(tunables) = tunables_for(current.as_deref(), restarted) else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from("idlink"));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        // `exec` returns only when it failed; then this process carries on untuned.
        let _failed = std::process::Command::new(exe)
            .arg0(arg0)
            .args(args)
            .env("GLIBC_TUNABLES", tunables)
            .env(RESTARTED, "1")
            .exec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_once_and_keeps_the_users_own_tunables() {
        assert_eq!(tunables_for(None, false).as_deref(), Some(TUNABLES));
        assert_eq!(tunables_for(Some(""), false).as_deref(), Some(TUNABLES));
        assert_eq!(
            tunables_for(Some("glibc.malloc.tcache_count=0"), false),
            Some(format!("glibc.malloc.tcache_count=0:{TUNABLES}"))
        );
        // The user's own arena count wins; the restarted process never restarts.
        assert_eq!(tunables_for(Some("glibc.malloc.arena_max=4"), false), None);
        assert_eq!(tunables_for(None, true), None);
    }
}
