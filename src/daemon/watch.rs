//! File watching for `--watch`: one inotify descriptor for the daemon, created
//! when the first process asks, with a watch on every directory under each
//! watched process's working directory (new directories are added as they
//! appear). Only changes count: create, close after writing, move, delete,
//! attribute change — never open or read, so a process that reads its own
//! sources does not restart itself. The loop owns the registration and the
//! debounce; this file owns the descriptor, the tree and the matching.
//! A tree is added in slices of bounded time (`work`), one per loop turn, so a
//! huge tree (`--cwd /`, `**`) never holds up the daemon's other clients.

use super::action::Action;
use super::procs::{ProcId, ProcTable};
use super::timers::Timer;
use crate::glob::{self, Glob};
use crate::sys::{self, DirEvent, DirWatch};
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Directories watched for one process at most (a runaway tree is an error).
pub const MAX_DIRS: usize = 100_000;
/// How long one slice of adding watches may take: the loop serves its clients
/// between slices, so this bounds what a huge tree adds to their wait.
pub const SLICE: Duration = Duration::from_millis(2);

/// Changes closer together than this restart a process once.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// The watch component: the inotify `Watcher` (made when the first process
/// asks), and the processes with a change waiting out the debounce. It says
/// what to note and when to restart (`Timer::WatchRestart`); the loop registers
/// the descriptor and routes the restart to the lifecycle.
#[derive(Default)]
pub struct FileWatch {
    watcher: Option<Watcher>,
    pending: HashSet<ProcId>,
}

impl FileWatch {
    /// Make the inotify descriptor if `wanted` and there is none yet; its fd
    /// is returned when it is new, for the loop to register (and say how that
    /// went, `registered`).
    pub fn start_for(&mut self, wanted: bool) -> Result<Option<RawFd>, String> {
        if !wanted || self.watcher.is_some() {
            return Ok(None);
        }
        let w = Watcher::new().map_err(|e| {
            format!(
                "starting file watching (inotify): {}",
                crate::error::describe_io(&e)
            )
        })?;
        let fd = w.fd();
        self.watcher = Some(w);
        Ok(Some(fd))
    }

    /// How registering the new descriptor (`start`) went. Failing, it is
    /// dropped (the next watch tries again) and that is the error.
    pub fn registered(&mut self, watched: io::Result<()>) -> Result<(), String> {
        watched.map_err(|e| {
            self.watcher = None;
            format!("watching the inotify descriptor: {e}")
        })
    }

    /// Watch `spec`'s tree for `proc` (`watch`), or stop watching for it (None).
    pub fn set(
        &mut self,
        proc: ProcId,
        spec: Option<Spec>,
        procs: &ProcTable,
    ) -> (Result<(), String>, Vec<Action>) {
        match spec {
            Some(spec) => self.watch(proc, spec, procs),
            None => {
                self.unwatch(proc);
                (Ok(()), Vec::new())
            }
        }
    }

    /// Stop watching for `proc`.
    pub fn unwatch(&mut self, proc: ProcId) {
        if let Some(w) = self.watcher.as_mut() {
            w.unwatch(proc);
        }
    }

    /// Watch `spec`'s tree for `proc` (after `start`), and add the first slice
    /// now: a tree that fits in it (most do) is watched before `run` answers,
    /// and its error is the answer. A bigger one goes on a slice per loop turn.
    pub fn watch(
        &mut self,
        proc: ProcId,
        spec: Spec,
        procs: &ProcTable,
    ) -> (Result<(), String>, Vec<Action>) {
        match self.watcher.as_mut() {
            Some(w) => w.watch(proc, spec),
            None => return (Ok(()), Vec::new()),
        }
        self.slice(Some(proc), procs)
    }

    /// Whether watches are still to be added (the loop then polls without sleeping).
    pub fn busy(&self) -> bool {
        self.watcher.as_ref().is_some_and(|w| w.busy())
    }

    /// Whether `proc`'s tree is watched (for `status`).
    pub fn watching(&self, proc: ProcId) -> bool {
        self.watcher.as_ref().is_some_and(|w| w.watching(proc))
    }

    /// Add watches for one slice of time; say what finished. A failure of
    /// `answering`'s tree is returned, for its `run` to report; one found later
    /// goes to daemon.log and to the process's log (`WatchNote`).
    pub fn slice(
        &mut self,
        answering: Option<ProcId>,
        procs: &ProcTable,
    ) -> (Result<(), String>, Vec<Action>) {
        let mut answer = Ok(());
        let mut actions = Vec::new();
        let Some(w) = self.watcher.as_mut() else {
            return (answer, actions);
        };
        let name = |proc| procs.get(proc).map(|p| p.name.as_str()).unwrap_or_default();
        for finished in w.work(SLICE) {
            match finished {
                Finished::Watching { proc, dirs } => {
                    let (root, patterns) = w.describe(proc).unwrap_or_default();
                    actions.push(Action::Note(format!(
                        "{}: watching {dirs} directories under {root} for {patterns}",
                        name(proc)
                    )));
                }
                Finished::Failed { proc, msg } if Some(proc) == answering => answer = Err(msg),
                Finished::Failed { proc, msg } => {
                    let note = format!("[agent-procs] Not watching files: {msg}");
                    actions.push(Action::Note(format!("{}: {note}", name(proc))));
                    actions.push(Action::WatchNote { proc, note });
                }
            }
        }
        (answer, actions)
    }

    /// The descriptor is readable: a changed process restarts once its
    /// changes have settled (`DEBOUNCE` after the first).
    pub fn on_readable(&mut self, now: Instant) -> Vec<Action> {
        let Some(w) = self.watcher.as_mut() else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        for proc in w.read_changes() {
            if self.pending.insert(proc) {
                actions.push(Action::Arm {
                    at: now + DEBOUNCE,
                    timer: Timer::WatchRestart { proc },
                });
            }
        }
        actions
    }

    /// The debounce of `proc` is over: later changes arm a new one.
    pub fn debounced(&mut self, proc: ProcId) {
        self.pending.remove(&proc);
    }
}

/// What one process watches.
#[derive(Debug, Clone)]
pub struct Spec {
    pub root: PathBuf,
    pub patterns: Vec<Glob>,
    pub ignore: Vec<Glob>,
}

impl Spec {
    /// Whether a change of `rel` (relative to the root) concerns this process.
    fn wants(&self, rel: &str) -> bool {
        !glob::ignored_by_default(rel)
            && !self.ignore.iter().any(|g| g.matches(rel))
            && self.patterns.iter().any(|g| g.matches(rel))
    }

    /// Whether the directory `rel` is left out of the tree altogether.
    fn skips_dir(&self, rel: &str) -> bool {
        !rel.is_empty()
            && (glob::ignored_by_default(rel) || self.ignore.iter().any(|g| g.matches(rel)))
    }
}

struct Dir {
    path: PathBuf,
    procs: Vec<ProcId>,
}

/// Directories still to be added for one process: its whole tree (after
/// `watch`), or a directory that appeared in it.
struct Scan {
    proc: ProcId,
    todo: Vec<PathBuf>,
    count: usize,
    whole_tree: bool,
}

/// A tree that `work` finished adding, or gave up on.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    /// All of `proc`'s tree is watched: `dirs` directories.
    Watching { proc: ProcId, dirs: usize },
    /// `proc`'s tree cannot be watched (too big, the inotify limit); nothing of
    /// it is watched any more.
    Failed { proc: ProcId, msg: String },
}

pub struct Watcher {
    inotify: DirWatch,
    dirs: HashMap<i32, Dir>,
    specs: HashMap<ProcId, Spec>,
    buf: Vec<u8>,
    /// Work left, oldest first.
    scans: Vec<Scan>,
    max_dirs: usize,
}

impl Watcher {
    pub fn new() -> io::Result<Watcher> {
        Ok(Watcher {
            inotify: DirWatch::new()?,
            dirs: HashMap::new(),
            specs: HashMap::new(),
            buf: vec![0; 64 * 1024],
            scans: Vec::new(),
            max_dirs: MAX_DIRS,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.inotify.fd()
    }

    /// Watch the tree of `spec.root` for `proc` (replacing what it watched
    /// before). The watches are added by `work`, slice by slice.
    pub fn watch(&mut self, proc: ProcId, spec: Spec) {
        self.unwatch(proc);
        let root = spec.root.clone();
        self.specs.insert(proc, spec);
        self.scans.push(Scan {
            proc,
            todo: vec![root],
            count: 0,
            whole_tree: true,
        });
    }

    /// What `proc` watches: its root and patterns, for messages.
    pub fn describe(&self, proc: ProcId) -> Option<(String, String)> {
        let spec = self.specs.get(&proc)?;
        let patterns: Vec<&str> = spec.patterns.iter().map(|g| g.as_str()).collect();
        Some((spec.root.display().to_string(), patterns.join(" ")))
    }

    /// Whether watches are still to be added (the loop then polls without sleeping).
    pub fn busy(&self) -> bool {
        !self.scans.is_empty()
    }

    /// Add watches for about `budget` at most, oldest work first; returns the
    /// trees finished or given up on meanwhile.
    pub fn work(&mut self, budget: Duration) -> Vec<Finished> {
        let deadline = Instant::now() + budget;
        let mut finished = Vec::new();
        let mut steps: u32 = 0;
        while let Some(scan) = self.scans.first_mut() {
            // The clock is read every few directories: each costs microseconds.
            steps += 1;
            if steps.is_multiple_of(16) && Instant::now() >= deadline {
                break;
            }
            let Some(dir) = scan.todo.pop() else {
                let scan = self.scans.remove(0);
                if scan.whole_tree && self.specs.contains_key(&scan.proc) {
                    finished.push(Finished::Watching {
                        proc: scan.proc,
                        dirs: scan.count,
                    });
                }
                continue;
            };
            let proc = scan.proc;
            if let Err(msg) = self.add_dir(&dir) {
                let scan = self.scans.remove(0);
                if scan.whole_tree {
                    self.unwatch(proc);
                    finished.push(Finished::Failed { proc, msg });
                }
                // A dir that appeared later: as before, the rest of it is left out.
            }
        }
        finished
    }

    /// Stop watching for `proc`; directories nobody watches any more are dropped.
    pub fn unwatch(&mut self, proc: ProcId) {
        self.scans.retain(|s| s.proc != proc);
        if self.specs.remove(&proc).is_none() {
            return;
        }
        let inotify = &self.inotify;
        self.dirs.retain(|&wd, dir| {
            dir.procs.retain(|&p| p != proc);
            if dir.procs.is_empty() {
                inotify.remove(wd);
                return false;
            }
            true
        });
    }

    pub fn watching(&self, proc: ProcId) -> bool {
        self.specs.contains_key(&proc)
    }

    /// Add a watch on `dir` for the process of the first scan, and queue the
    /// directories in it.
    fn add_dir(&mut self, dir: &Path) -> Result<(), String> {
        let max_dirs = self.max_dirs;
        let Some(scan) = self.scans.first_mut() else {
            return Ok(());
        };
        let proc = scan.proc;
        {
            let Some(spec) = self.specs.get(&proc) else {
                scan.todo.clear();
                return Ok(());
            };
            let rel = relative(&spec.root, dir);
            if spec.skips_dir(&rel) {
                return Ok(());
            }
            scan.count += 1;
            if scan.count > max_dirs {
                return Err(format!(
                    "{} has more than {max_dirs} directories to watch; narrow it with --watch-ignore",
                    spec.root.display()
                ));
            }
        }
        match self.inotify.add(dir) {
            Ok(wd) => {
                let entry = self.dirs.entry(wd).or_insert_with(|| Dir {
                    path: dir.to_path_buf(),
                    procs: Vec::new(),
                });
                entry.path = dir.to_path_buf();
                if !entry.procs.contains(&proc) {
                    entry.procs.push(proc);
                }
            }
            // Gone or unreadable meanwhile: nothing to watch there, unless
            // the system's limit on watches is what refused.
            Err(e) => return sys::watch_limit_error(&e, dir).map_or(Ok(()), Err),
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        let subdirs = entries
            .flatten()
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .map(|entry| entry.path());
        if let Some(scan) = self.scans.first_mut() {
            scan.todo.extend(subdirs);
        }
        Ok(())
    }

    /// Read what happened; returns the processes whose watched files changed.
    /// New directories join the tree; an overflowed queue rescans every tree.
    pub fn read_changes(&mut self) -> Vec<ProcId> {
        let mut changed: Vec<ProcId> = Vec::new();
        let mut new_dirs: Vec<PathBuf> = Vec::new();
        let mut overflow = false;
        loop {
            let n = match self.inotify.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break, // would block: all read
            };
            for event in sys::dir_events(&self.buf[..n]) {
                let (wd, name, new_dir) = match event {
                    DirEvent::Overflow => {
                        overflow = true;
                        continue;
                    }
                    DirEvent::Change { wd, name, new_dir } => (wd, name, new_dir),
                };
                let Some(dir) = self.dirs.get(&wd) else {
                    continue;
                };
                if name.is_empty() {
                    continue;
                }
                let path = dir.path.join(std::ffi::OsStr::from_bytes(name));
                if new_dir {
                    new_dirs.push(path.clone());
                }
                for &proc in &dir.procs {
                    let Some(spec) = self.specs.get(&proc) else {
                        continue;
                    };
                    if !changed.contains(&proc) && spec.wants(&relative(&spec.root, &path)) {
                        changed.push(proc);
                    }
                }
            }
        }
        if overflow {
            // Events were lost: rebuild every tree, and count it as a change for all.
            let specs: Vec<(ProcId, Spec)> =
                self.specs.iter().map(|(p, s)| (*p, s.clone())).collect();
            for (proc, spec) in specs {
                self.watch(proc, spec);
                if !changed.contains(&proc) {
                    changed.push(proc);
                }
            }
            return changed;
        }
        for dir in new_dirs {
            let owners: Vec<ProcId> = self
                .specs
                .iter()
                .filter(|(_, s)| dir.starts_with(&s.root))
                .map(|(p, _)| *p)
                .collect();
            for proc in owners {
                self.scans.push(Scan {
                    proc,
                    todo: vec![dir.clone()],
                    count: 0,
                    whole_tree: false,
                });
            }
        }
        changed
    }
}

/// `path` relative to `root`, `/`-separated (empty for the root itself).
fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_restart_a_process_once_per_debounce() {
        let root = tree("debounce", 1);
        let mut fw = FileWatch::default();
        assert!(fw.on_readable(Instant::now()).is_empty());
        assert!(fw.start_for(true).unwrap().is_some());
        // One descriptor for the daemon: the second start has nothing to register.
        assert_eq!(fw.start_for(true), Ok(None));
        let procs = ProcTable::default();
        let (answer, mut actions) = fw.watch(ProcId(1), spec(&root), &procs);
        assert_eq!(answer, Ok(()));
        while fw.busy() {
            actions.extend(fw.slice(Some(ProcId(1)), &procs).1);
        }
        assert!(matches!(&actions[..], [Action::Note(n)] if n.contains("watching 3 directories")));
        assert!(fw.watching(ProcId(1)) && !fw.busy());
        let now = Instant::now();
        let changed = |fw: &mut FileWatch, file: &str| {
            std::fs::write(root.join(file), "x").unwrap();
            // The event is queued by the time write returns.
            fw.on_readable(now)
        };
        let first = changed(&mut fw, "a");
        assert!(matches!(
            first[..],
            [Action::Arm { at, timer: Timer::WatchRestart { proc: ProcId(1) } }] if at == now + DEBOUNCE
        ));
        // Within the debounce: no second restart.
        assert!(changed(&mut fw, "b").is_empty());
        fw.debounced(ProcId(1));
        assert_eq!(changed(&mut fw, "c").len(), 1);
        fw.unwatch(ProcId(1));
        fw.debounced(ProcId(1));
        assert!(changed(&mut fw, "d").is_empty());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_tree_given_up_later_is_noted_in_the_process_log() {
        let root = tree("later", 30);
        let mut fw = FileWatch::default();
        fw.start_for(true).unwrap();
        if let Some(w) = fw.watcher.as_mut() {
            w.max_dirs = 20;
        }
        let procs = ProcTable::default();
        // Given up while answering its own `run`: the error is the answer (a
        // loaded machine may need more than the first slice).
        let (mut answer, mut actions) = fw.watch(ProcId(4), spec(&root), &procs);
        while fw.busy() {
            let (more, notes) = fw.slice(Some(ProcId(4)), &procs);
            answer = answer.and(more);
            actions.extend(notes);
        }
        assert!(answer.is_err_and(|e| e.contains("more than 20 directories")));
        assert!(actions.is_empty());
        // Found in a later slice: noted in daemon.log and the process's log.
        if let Some(w) = fw.watcher.as_mut() {
            w.watch(ProcId(5), spec(&root));
        }
        let mut actions = Vec::new();
        while fw.busy() {
            let (answer, notes) = fw.slice(None, &procs);
            assert_eq!(answer, Ok(()));
            actions.extend(notes);
        }
        match &actions[..] {
            [
                Action::Note(n),
                Action::WatchNote {
                    proc: ProcId(5),
                    note,
                },
            ] => {
                assert!(n.contains("Not watching files"));
                assert!(note.starts_with("[agent-procs] Not watching files: "));
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(root).unwrap();
    }

    fn tree(tag: &str, dirs: usize) -> PathBuf {
        let root = std::env::temp_dir().join(format!("ap-watch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for i in 0..dirs {
            std::fs::create_dir_all(root.join(format!("d{}/e{i}", i % 7))).unwrap();
        }
        root
    }

    fn spec(root: &Path) -> Spec {
        Spec {
            root: root.to_path_buf(),
            patterns: vec![Glob::new("**").unwrap()],
            ignore: Vec::new(),
        }
    }

    #[test]
    fn a_tree_is_added_in_slices_and_reported_once_whole() {
        let root = tree("slices", 60);
        let mut w = Watcher::new().unwrap();
        w.watch(ProcId(1), spec(&root));
        assert!(w.busy());
        // A zero budget still makes progress: the clock is read every 16 dirs.
        let mut slices = 0;
        let mut finished = Vec::new();
        while w.busy() {
            finished.extend(w.work(Duration::ZERO));
            slices += 1;
            assert!(slices < 100, "no progress");
        }
        assert!(slices > 1, "the tree was added in one slice");
        // The root, d0..d6 and 60 leaves.
        assert_eq!(
            finished,
            vec![Finished::Watching {
                proc: ProcId(1),
                dirs: 68
            }]
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_tree_over_the_cap_is_given_up_with_the_fix() {
        let root = tree("cap", 30);
        let mut w = Watcher::new().unwrap();
        w.max_dirs = 20;
        w.watch(ProcId(1), spec(&root));
        let finished = w.work(Duration::from_secs(10));
        let [Finished::Failed { proc, msg }] = finished.as_slice() else {
            panic!("{finished:?}");
        };
        assert_eq!(*proc, ProcId(1));
        assert_eq!(
            msg,
            &format!(
                "{} has more than 20 directories to watch; narrow it with --watch-ignore",
                root.display()
            )
        );
        assert!(!w.busy() && !w.watching(ProcId(1)) && w.dirs.is_empty());
        std::fs::remove_dir_all(root).unwrap();
    }
}
