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
    #[serde(default)]
    pub start_ticks: Option<u64>,
    pub command: String,
}

/// Start time of `pid` in clock ticks since boot, from /proc/<pid>/stat.
pub fn start_ticks(pid: u32) -> Option<u64> {
    use std::io::Read;
    // One read into a fixed buffer: a stat line is a few hundred bytes.
    let mut buf = [0u8; 1024];
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let n = file.read(&mut buf).ok()?;
    let stat = std::str::from_utf8(&buf[..n]).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

pub fn save(path: &Path, state: &SavedState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    crate::paths::write_private_atomic(path, &bytes)
}

/// Process groups left behind by a previous daemon that did not shut down:
/// those whose leader is still the process it started (same start time), or
/// that still have members in its session (the old daemon's pid, which stays
/// reserved while anyone is in that session), so a reused number is never hit.
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
    let old_session = state.daemon_pid as i32;
    state
        .processes
        .into_iter()
        .filter(|p| p.pgid > 1)
        .filter(|p| {
            p.start_ticks.is_some_and(|t| start_ticks(p.pid) == Some(t))
                || super::signals::group_alive(p.pgid, old_session)
        })
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
