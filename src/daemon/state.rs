//! `state.json`: the process table as it stands, written atomically on every
//! start and exit, so that the next daemon can find and stop the process groups
//! of a daemon that was killed with SIGKILL. A pid is only trusted when its start
//! time in /proc still matches, so a reused pid is never signalled.

use super::action::Action;
use super::procs::ProcTable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The persistence component: state.json (written once at the end of a turn
/// that changed the table), the ports chosen for processes that named none,
/// and what this daemon did about a dead predecessor (told with every status).
pub struct Persistence {
    path: PathBuf,
    /// Open for rewriting in place (None if it could not be opened).
    file: Option<StateFile>,
    /// The process table changed this turn.
    dirty: bool,
    /// Ports chosen for processes that named none, by name.
    chosen_ports: BTreeMap<String, u16>,
    notes: Vec<String>,
    /// The daemon's start dir, shown by `session list`.
    root: String,
}

impl Persistence {
    pub fn new(path: PathBuf, root: &Path) -> Persistence {
        Persistence {
            path,
            file: None,
            dirty: false,
            chosen_ports: BTreeMap::new(),
            notes: Vec::new(),
            root: root.display().to_string(),
        }
    }

    /// Take over from the table a previous daemon left: its chosen ports, and
    /// its orphaned groups, which are to be killed (and told of in `status`).
    pub fn adopt(&mut self, previous: Previous, now: SystemTime) -> Vec<Action> {
        let Previous {
            daemon_pid: old_daemon,
            orphans,
            ports,
        } = previous;
        self.chosen_ports = ports;
        let mut actions = Vec::new();
        let mut stopped = Vec::new();
        for orphan in orphans {
            actions.push(Action::Note(format!(
                "previous daemon died without stopping {} ({}, pid {}): sent SIGKILL to process group {}",
                orphan.name, orphan.id, orphan.pid, orphan.pgid
            )));
            actions.push(Action::KillOrphan { pgid: orphan.pgid });
            stopped.push(format!("{} (pid {})", orphan.name, orphan.pid));
        }
        if !stopped.is_empty() {
            let at = crate::timefmt::rfc3339(now);
            self.notes.push(format!(
                "the previous daemon (pid {old_daemon}) was killed without stopping its processes; at {at} this daemon stopped what was left of them: {}; their logs are kept (agent-procs logs NAME)",
                stopped.join(", ")
            ));
        }
        actions
    }

    /// Open state.json for rewriting; without it crash recovery is off.
    pub fn open(&mut self) -> Vec<Action> {
        match StateFile::open(&self.path) {
            Ok(file) => {
                self.file = Some(file);
                Vec::new()
            }
            Err(e) => vec![Action::Note(format!(
                "opening {}: {}; crash recovery is off",
                self.path.display(),
                crate::error::describe_io(&e)
            ))],
        }
    }

    /// The table changed: rewrite state.json at the end of this turn.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Whether the table changed since the last save (and forget that it did).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Rewrite state.json from the table: every process that is alive or left a
    /// group behind in our session `sid`.
    pub fn save(&self, procs: &ProcTable, sid: i32) -> Vec<Action> {
        let Some(file) = &self.file else {
            return Vec::new();
        };
        let processes = procs
            .iter()
            .filter(|p| p.state.is_alive() || super::signals::group_alive(p.pgid, sid))
            .map(|p| SavedProc {
                name: p.name.clone(),
                id: format!("p{}", p.id),
                pid: p.pid,
                pgid: p.pgid,
                start_ticks: p.start_ticks,
                command: p.spec.command.clone(),
            })
            .collect();
        let saved = SavedState {
            daemon_pid: std::process::id(),
            names: Some(procs.iter().map(|p| p.name.clone()).collect()),
            processes,
            ports: self.chosen_ports.clone(),
            root: Some(self.root.clone()),
        };
        match file.save(&saved) {
            Ok(()) => Vec::new(),
            Err(e) => vec![Action::Note(format!(
                "writing {}: {}",
                self.path.display(),
                crate::error::describe_io(&e)
            ))],
        }
    }

    /// Ports chosen before, by process name.
    pub fn chosen_ports(&self) -> &BTreeMap<String, u16> {
        &self.chosen_ports
    }

    /// Remember `port` for process `name` (in state.json, for the next daemon too).
    pub fn choose_port(&mut self, name: &str, port: u16) {
        self.chosen_ports.insert(name.to_string(), port);
        self.dirty = true;
    }

    /// What `status` tells about a dead predecessor.
    pub fn status_notes(&self) -> &[String] {
        &self.notes
    }
}

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

    fn orphan(name: &str, pgid: i32) -> SavedProc {
        SavedProc {
            name: name.into(),
            id: "p1".into(),
            pid: 4242,
            pgid,
            start_ticks: None,
            command: "x".into(),
        }
    }

    #[test]
    fn orphans_of_a_dead_daemon_are_killed_and_told_of_in_status() {
        let mut persist =
            Persistence::new(PathBuf::from("/nonexistent/state.json"), Path::new("/"));
        let previous = Previous {
            daemon_pid: 77,
            orphans: vec![orphan("web", 900)],
            ports: BTreeMap::from([("web".to_string(), 4100)]),
        };
        let actions = persist.adopt(previous, SystemTime::UNIX_EPOCH);
        assert!(
            matches!(actions[0], Action::Note(ref n) if n.contains("sent SIGKILL to process group 900"))
        );
        assert!(matches!(actions[1], Action::KillOrphan { pgid: 900 }));
        assert_eq!(persist.chosen_ports().get("web"), Some(&4100));
        let notes = persist.status_notes();
        assert!(notes[0].contains("pid 77") && notes[0].contains("web (pid 4242)"));
        // A clean predecessor leaves nothing to tell.
        let mut clean = Persistence::new(PathBuf::from("/nonexistent"), Path::new("/"));
        assert!(
            clean
                .adopt(Previous::default(), SystemTime::UNIX_EPOCH)
                .is_empty()
        );
        assert!(clean.status_notes().is_empty());
    }

    #[test]
    fn a_chosen_port_is_remembered_and_saved_once_per_turn() {
        let mut persist = Persistence::new(PathBuf::from("/nonexistent"), Path::new("/"));
        assert!(!persist.take_dirty());
        persist.choose_port("api", 4001);
        assert_eq!(persist.chosen_ports().get("api"), Some(&4001));
        assert!(persist.take_dirty());
        assert!(!persist.take_dirty());
    }

    #[test]
    fn an_unopenable_state_file_turns_crash_recovery_off_with_a_note() {
        let mut persist =
            Persistence::new(PathBuf::from("/nonexistent/dir/state.json"), Path::new("/"));
        let actions = persist.open();
        assert!(matches!(&actions[..], [Action::Note(n)] if n.contains("crash recovery is off")));
        // Nothing to write to: saving is quiet.
        assert!(persist.save(&ProcTable::default(), 0).is_empty());
    }

    #[test]
    fn the_table_is_saved_with_names_ports_and_root() {
        let path = std::env::temp_dir().join(format!("ap-persist-{}", std::process::id()));
        let mut persist = Persistence::new(path.clone(), Path::new("/srv/app"));
        assert!(persist.open().is_empty());
        persist.choose_port("web", 4321);
        assert!(persist.save(&ProcTable::default(), 0).is_empty());
        let back: SavedState = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back.daemon_pid, std::process::id());
        assert_eq!(back.ports.get("web"), Some(&4321));
        assert_eq!(back.root.as_deref(), Some("/srv/app"));
        std::fs::remove_file(path).unwrap();
    }

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
