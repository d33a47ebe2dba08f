//! File watching for `--watch`: one inotify descriptor for the daemon, created
//! when the first process asks, with a watch on every directory under each
//! watched process's working directory (new directories are added as they
//! appear). Only changes count: create, close after writing, move, delete,
//! attribute change — never open or read, so a process that reads its own
//! sources does not restart itself. The loop owns the registration and the
//! debounce; this file owns the descriptor, the tree and the matching.

use super::procs::ProcId;
use crate::glob::{self, Glob};
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The events that mean a file changed.
const CHANGES: u32 = libc::IN_CREATE
    | libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE
    | libc::IN_ATTRIB;
/// Directories watched for one process at most (a runaway tree is an error).
const MAX_DIRS: usize = 100_000;

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

pub struct Watcher {
    inotify: File,
    dirs: HashMap<i32, Dir>,
    specs: HashMap<ProcId, Spec>,
    buf: Vec<u8>,
}

impl Watcher {
    pub fn new() -> io::Result<Watcher> {
        // SAFETY: inotify_init1 takes flags and returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Watcher {
            // SAFETY: the descriptor is new and owned by nobody else.
            inotify: unsafe { File::from_raw_fd(fd) },
            dirs: HashMap::new(),
            specs: HashMap::new(),
            buf: vec![0; 64 * 1024],
        })
    }

    pub fn fd(&self) -> RawFd {
        self.inotify.as_raw_fd()
    }

    /// Watch the tree of `spec.root` for `proc` (replacing what it watched before).
    /// Returns the number of directories watched.
    pub fn watch(&mut self, proc: ProcId, spec: Spec) -> Result<usize, String> {
        self.unwatch(proc);
        let root = spec.root.clone();
        self.specs.insert(proc, spec);
        let mut count = 0;
        if let Err(e) = self.add_tree(proc, &root, &mut count) {
            self.unwatch(proc);
            return Err(e);
        }
        Ok(count)
    }

    /// Stop watching for `proc`; directories nobody watches any more are dropped.
    pub fn unwatch(&mut self, proc: ProcId) {
        if self.specs.remove(&proc).is_none() {
            return;
        }
        let fd = self.fd();
        self.dirs.retain(|&wd, dir| {
            dir.procs.retain(|&p| p != proc);
            if dir.procs.is_empty() {
                // SAFETY: removing a watch descriptor of our own inotify instance.
                unsafe { libc::inotify_rm_watch(fd, wd) };
                return false;
            }
            true
        });
    }

    pub fn watching(&self, proc: ProcId) -> bool {
        self.specs.contains_key(&proc)
    }

    /// Add watches on `dir` and every directory below it, for `proc`.
    fn add_tree(&mut self, proc: ProcId, dir: &Path, count: &mut usize) -> Result<(), String> {
        let mut todo = vec![dir.to_path_buf()];
        while let Some(dir) = todo.pop() {
            let Some(spec) = self.specs.get(&proc) else {
                return Ok(());
            };
            let rel = relative(&spec.root, &dir);
            if spec.skips_dir(&rel) {
                continue;
            }
            *count += 1;
            if *count > MAX_DIRS {
                return Err(format!(
                    "{} has more than {MAX_DIRS} directories to watch; narrow it with --watch-ignore",
                    spec.root.display()
                ));
            }
            match self.add_watch(&dir) {
                Ok(wd) => {
                    let entry = self.dirs.entry(wd).or_insert_with(|| Dir {
                        path: dir.clone(),
                        procs: Vec::new(),
                    });
                    entry.path = dir.clone();
                    if !entry.procs.contains(&proc) {
                        entry.procs.push(proc);
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                        .map(|s| s.trim().to_string())
                        .unwrap_or_else(|_| "?".into());
                    return Err(format!(
                        "the inotify watch limit (fs.inotify.max_user_watches = {limit}) is reached \
                         watching {}; raise it with: sysctl fs.inotify.max_user_watches=524288, \
                         or narrow the tree with --watch-ignore",
                        dir.display()
                    ));
                }
                // Gone or unreadable meanwhile: nothing to watch there.
                Err(_) => continue,
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(entry.path());
                }
            }
        }
        Ok(())
    }

    fn add_watch(&self, dir: &Path) -> io::Result<i32> {
        let path = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mask = CHANGES | libc::IN_ONLYDIR | libc::IN_DONT_FOLLOW | libc::IN_EXCL_UNLINK;
        // SAFETY: the path is NUL-terminated and outlives the call.
        let wd = unsafe { libc::inotify_add_watch(self.fd(), path.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
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
            let mut at = 0;
            // struct inotify_event { int wd; u32 mask; u32 cookie; u32 len; char name[len]; }
            while at + 16 <= n {
                let word = |i: usize| {
                    let b = &self.buf[at + i..at + i + 4];
                    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
                };
                let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
                let name_end = (at + 16 + len).min(n);
                let name = &self.buf[at + 16..name_end];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                at = at + 16 + len;
                if mask & libc::IN_Q_OVERFLOW != 0 {
                    overflow = true;
                    continue;
                }
                let Some(dir) = self.dirs.get(&wd) else {
                    continue;
                };
                if name.is_empty() {
                    continue;
                }
                let path = dir.path.join(std::ffi::OsStr::from_bytes(name));
                if mask & libc::IN_ISDIR != 0 && mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
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
                let _ = self.watch(proc, spec);
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
                let mut count = 0;
                let _ = self.add_tree(proc, &dir, &mut count);
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
