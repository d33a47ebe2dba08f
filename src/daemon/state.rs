//! `state.json`: the process table as it stands, written atomically on every
//! start and exit, so that the next daemon can find and stop the process groups
//! of a daemon that was killed with SIGKILL. A pid is only trusted when its start
//! time in /proc still matches, so a reused pid is never signalled.

use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Serialize, Deserialize, Default)]
pub struct SavedState {
    pub daemon_pid: u32,
    pub processes: Vec<SavedProc>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SavedProc {
    pub name: String,
    pub id: String,
    pub pid: u32,
    pub pgid: i32,
    /// Field 22 of /proc/<pid>/stat when we started it: clock ticks since boot.
    pub start_ticks: u64,
    pub command: String,
}

/// Start time of `pid` in clock ticks since boot, from /proc/<pid>/stat.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

pub fn save(path: &Path, state: &SavedState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    crate::paths::write_private_atomic(path, &bytes)
}

/// Process groups left behind by a previous daemon that did not shut down:
/// those whose leader is still the process we started (same start time).
pub fn orphans(path: &Path) -> Vec<SavedProc> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let Ok(state) = serde_json::from_slice::<SavedState>(&bytes) else {
        return Vec::new();
    };
    // We only start once the old socket refuses connections: whatever the old
    // daemon's state (dead, a zombie, wedged), its groups have nobody serving them.
    if state.daemon_pid == std::process::id() {
        return Vec::new();
    }
    state
        .processes
        .into_iter()
        .filter(|p| p.pgid > 1 && start_ticks(p.pid) == Some(p.start_ticks))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_ourselves_is_readable_and_stable() {
        let me = std::process::id();
        let first = start_ticks(me);
        assert!(first.is_some());
        assert_eq!(first, start_ticks(me));
        assert_eq!(start_ticks(u32::MAX), None);
    }
}
