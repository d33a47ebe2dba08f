//! `state.json`: the process table as it stands, written atomically on every
//! start and exit, so that the next daemon can find and stop the process groups
//! of a daemon that was killed with SIGKILL. A pid is only trusted when its start
//! time in /proc still matches, so a reused pid is never signalled.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Serialize, Deserialize, Default)]
pub struct SavedState {
    pub daemon_pid: u32,
    /// Every process of the daemon, running or not: what `logs --all` covers,
    /// also after the daemon is gone (see `logs::runs::daemon_names`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    pub processes: Vec<SavedProc>,
    /// Ports the daemon chose for processes that did not name one, by process
    /// name, so a process gets the same port (and URL) again, also under the
    /// next daemon, while the port is free.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u16>,
    /// The directory the daemon started in (for an `auto` session, its
    /// worktree), shown by `session list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
}

/// What the next daemon learns from the last one's state.json.
#[derive(Debug, Default)]
pub struct Previous {
    /// 0 when there was no readable state.
    pub daemon_pid: u32,
    /// Process groups it left running (see `orphans`).
    pub orphans: Vec<SavedProc>,
    pub ports: BTreeMap<String, u16>,
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

/// The open state file. Rewritten in place with one `pwrite` from offset 0, then
/// truncated: a write(2) to a regular file is not cut short by our death, and the
/// reader takes the first JSON value, so it sees the old or the new table, whole.
/// (No rename: replacing a file by rename makes ext4 flush it, ~0.5 ms a start,
/// and atomicity against power loss is moot: no process survives a reboot.)
pub struct StateFile(std::fs::File);

impl StateFile {
    pub fn open(path: &Path) -> std::io::Result<StateFile> {
        // A table planted while the dir was open to others is not ours to rewrite.
        let file = crate::paths::open_private(
            path,
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )?;
        Ok(StateFile(file))
    }

    pub fn save(&self, state: &SavedState) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
        self.0.write_all_at(&bytes, 0)?;
        self.0.set_len(bytes.len() as u64)
    }
}

/// Process groups left behind by a previous daemon that did not shut down:
/// those whose leader is still the process it started (same start time), or
/// that still have members in its session (the old daemon's pid, which stays
/// reserved while anyone is in that session), so a reused number is never hit.
pub fn previous(path: &Path) -> Previous {
    // Never through a symbolic link, never another user's file: a planted table
    // would name groups to kill.
    let Ok(bytes) = crate::logs::read::open_log(path).and_then(|mut f| {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut bytes).map(|_| bytes)
    }) else {
        return Previous::default();
    };
    // The first value: a longer older table may trail it until the truncate.
    let first = serde_json::Deserializer::from_slice(&bytes)
        .into_iter::<SavedState>()
        .next();
    let Some(Ok(state)) = first else {
        return Previous::default();
    };
    // We only start once the old socket refuses connections: whatever the old
    // daemon's state (dead, a zombie, wedged), its groups have nobody serving them.
    if state.daemon_pid == std::process::id() {
        return Previous::default();
    }
    let old_session = state.daemon_pid as i32;
    let orphans = state
        .processes
        .into_iter()
        .filter(|p| p.pgid > 1)
        .filter(|p| {
            p.start_ticks
                .is_some_and(|t| crate::sys::start_ticks(p.pid) == Some(t))
                || super::signals::group_alive(p.pgid, old_session)
        })
        .collect();
    Previous {
        daemon_pid: state.daemon_pid,
        orphans,
        ports: state.ports,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shorter_table_over_a_longer_one_reads_back_whole() {
        let path = std::env::temp_dir().join(format!("ap-state-{}", std::process::id()));
        let file = StateFile::open(&path).unwrap();
        let proc = |name: &str| SavedProc {
            name: name.into(),
            id: "p1".into(),
            pid: 1,
            pgid: 0,
            start_ticks: None,
            command: "x".repeat(100),
        };
        file.save(&SavedState {
            daemon_pid: 1,
            processes: vec![proc("a"), proc("b")],
            ..SavedState::default()
        })
        .unwrap();
        file.save(&SavedState {
            daemon_pid: 2,
            processes: vec![],
            ..SavedState::default()
        })
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let back: SavedState = serde_json::from_slice(&bytes).unwrap();
        assert_eq!((back.daemon_pid, back.processes.len()), (2, 0));
        // Had we died before the truncate, the reader still takes the new table.
        let mut torn = bytes.clone();
        torn.extend_from_slice(b"\"stale\":[1,2,3]}");
        let first = serde_json::Deserializer::from_slice(&torn)
            .into_iter::<SavedState>()
            .next();
        assert!(matches!(first, Some(Ok(SavedState { daemon_pid: 2, .. }))));
        std::fs::remove_file(path).unwrap();
    }
}
