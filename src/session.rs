//! Which session a command acts on: `--session NAME`, else `AGENT_PROCS_SESSION`,
//! else (for `up` and `down`) the config's `session:`, else `default`. The name
//! `auto` stands for one derived from the git worktree the command runs in, so
//! agents working in two checkouts never share names, ports or proxy hostnames.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The environment variable that sets the default session.
pub const ENV: &str = "AGENT_PROCS_SESSION";
/// The session name that means "derive it from the worktree".
pub const AUTO: &str = "auto";

#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    pub name: String,
    /// By `--session` or the environment: it wins over the config's `session:`.
    pub given: bool,
    /// For an `auto` session, the worktree root it was derived from.
    pub root: Option<PathBuf>,
}

/// The session from the flag, else the environment variable, else `default`.
/// `cwd` is asked for only when the choice is `auto`.
pub fn choose(
    flag: Option<String>,
    env: Option<String>,
    cwd: impl FnOnce() -> std::io::Result<PathBuf>,
) -> Result<Chosen> {
    let Some(name) = flag.or(env.filter(|e| !e.is_empty())) else {
        return Ok(Chosen {
            name: "default".into(),
            given: false,
            root: None,
        });
    };
    if name != AUTO {
        return Ok(Chosen {
            name,
            given: true,
            root: None,
        });
    }
    let cwd = cwd().map_err(|e| {
        Error::Failed(format!(
            "--session auto: finding the current directory: {}",
            crate::error::describe_io(&e)
        ))
    })?;
    let root = worktree_root(&cwd);
    Ok(Chosen {
        name: auto_name(&root),
        given: true,
        root: Some(root),
    })
}

/// The nearest directory at or above `dir` with a `.git` (a directory in a
/// repository, a file in a worktree made by `git worktree add`); `dir` itself
/// when there is none, so a directory outside git is a session of its own.
pub fn worktree_root(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(dir)
        .to_path_buf()
}

/// `NAME-HASH`: the root's last component in the session alphabet, and eight
/// hex digits of a hash of the whole path, so two checkouts both called `app`
/// still differ.
pub fn auto_name(root: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = root.as_os_str().as_bytes();
    // FNV-1a: stable across builds and versions, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let base: String = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let base = base.trim_start_matches(['.', '-']);
    let base = if base.is_empty() { "root" } else { base };
    format!("{base}-{:08x}", (hash ^ (hash >> 32)) as u32)
}

/// Open a session's lock file without following a link (0600 when created),
/// and only if it is a regular file of ours with one name (`paths::open_private`).
/// None when it is missing and `create` is false.
pub fn open_lock(path: &Path, create: bool) -> std::io::Result<Option<std::fs::File>> {
    let opened = crate::paths::open_private(
        path,
        std::fs::OpenOptions::new()
            .create(create)
            .truncate(false)
            .write(true),
    );
    match opened {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the open `file` is still the one at `path`. A lock file can be removed
/// (by `down` or `session clean`) between someone's open and their lock; the lock
/// then guards nothing, and they must open the path again.
pub fn still_at(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Remove a session's lock file unless somebody holds it (a daemon being
/// started). It is removed while we hold the lock, so a starter that opened it
/// meanwhile finds it gone from the path (`still_at`) and opens the new one.
pub fn remove_lock(path: &Path) -> std::io::Result<bool> {
    let Some(file) = open_lock(path, false)? else {
        return Ok(false);
    };
    if !crate::sys::try_lock_exclusive(&file)? || !still_at(&file, path) {
        return Ok(false);
    }
    std::fs::remove_file(path)?;
    Ok(true)
}

/// What `session clean` did with one session.
#[derive(Debug, PartialEq)]
pub enum Cleaned {
    /// Its daemon answers, or its pid file names a live daemon of this session.
    Running,
    /// Somebody holds its lock: a daemon is being started right now.
    Starting,
    /// The daemon is gone: these paths were removed; `kept` says what was left
    /// alone and why (not ours, not the kind of file it should be).
    Removed {
        removed: Vec<PathBuf>,
        kept: Vec<String>,
    },
}

/// Remove what a dead daemon of `paths.session` left behind: socket, pid file,
/// lock file and state directory. Only when the daemon is verifiably gone (no
/// answer on the socket, no live daemon of this session under the pid file's pid,
/// the lock free, and held by us meanwhile), never through a symbolic link, and
/// only files of the right kind owned by us.
pub fn clean(paths: &crate::paths::SessionPaths) -> Result<Cleaned> {
    use crate::error::Context;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let lock_path = &paths.lock_file;
    // Held while we look and remove, so no daemon starts meanwhile; made for the
    // purpose when there is none (and then not reported as something left behind).
    let had_lock = std::fs::symlink_metadata(lock_path).is_ok();
    let lock = match open_lock(lock_path, true) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Ok(Cleaned::Starting),
        Err(e) => {
            let why = crate::error::describe_io(&e);
            let kept = vec![format!("{} ({why})", lock_path.display())];
            return Ok(Cleaned::Removed {
                removed: Vec::new(),
                kept,
            });
        }
    };
    let locked = crate::sys::try_lock_exclusive(&lock)
        .context(|| format!("locking {}", lock_path.display()))?;
    if !locked || !still_at(&lock, lock_path) {
        return Ok(Cleaned::Starting);
    }
    if daemon_answers(paths) {
        return Ok(Cleaned::Running);
    }
    let ours = |meta: &std::fs::Metadata| meta.uid() == crate::sys::euid();
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    // Each path, and whether it may be a socket (else only a regular file). A
    // regular file of ours at the socket's path goes too, as with 0.6.
    for (path, socket) in [
        (&paths.socket, true),
        (&paths.pid_file, false),
        (lock_path, false),
    ] {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            continue;
        };
        let (right_kind, kind) = match socket {
            true => (
                meta.file_type().is_socket() || meta.file_type().is_file(),
                "a socket",
            ),
            false => (meta.file_type().is_file(), "a regular file"),
        };
        if !right_kind || !ours(&meta) {
            kept.push(format!("{} (not {kind} of yours)", path.display()));
            continue;
        }
        std::fs::remove_file(path).context(|| format!("removing {}", path.display()))?;
        if path != lock_path || had_lock {
            removed.push(path.to_path_buf());
        }
    }
    if removed.is_empty() {
        // Nothing was left behind here (a stray file of another kind at most):
        // this is no session, and its state, if any, is not ours to judge.
        return Ok(Cleaned::Removed { removed, kept });
    }
    if let Ok(meta) = std::fs::symlink_metadata(&paths.state_dir) {
        if meta.is_dir() && ours(&meta) {
            // remove_dir_all does not follow symbolic links inside.
            std::fs::remove_dir_all(&paths.state_dir)
                .context(|| format!("removing {}", paths.state_dir.display()))?;
            removed.push(paths.state_dir.clone());
        } else {
            kept.push(format!(
                "{} (not a directory of yours)",
                paths.state_dir.display()
            ));
        }
    }
    Ok(Cleaned::Removed { removed, kept })
}

/// Whether the session's daemon is alive: it answers on the socket, or the pid
/// file (a regular file of ours) names a live daemon of this session.
fn daemon_answers(paths: &crate::paths::SessionPaths) -> bool {
    use std::os::unix::fs::MetadataExt;
    if std::os::unix::net::UnixStream::connect(&paths.socket).is_ok() {
        return true;
    }
    if let Ok(meta) = std::fs::symlink_metadata(&paths.pid_file)
        && meta.is_file()
        && meta.uid() == crate::sys::euid()
        && let Ok(text) = std::fs::read_to_string(&paths.pid_file)
        && let Ok(pid) = text.trim().parse::<u32>()
        && is_daemon_of(pid, &paths.session)
    {
        return true;
    }
    false
}

/// Whether `pid` runs `agent-procs __daemon SESSION`: a pid file naming a pid
/// that was reused by something else does not keep a session alive.
fn is_daemon_of(pid: u32, session: &str) -> bool {
    let Some(raw) = crate::sys::cmdline(pid) else {
        return false;
    };
    let args: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
    args.windows(2)
        .any(|w| w[0] == b"__daemon" && w[1] == session.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn no_cwd() -> std::io::Result<PathBuf> {
        Err(std::io::Error::other("not asked"))
    }

    #[test]
    fn the_flag_wins_then_the_environment_then_default() {
        let chosen = |flag: Option<&str>, env: Option<&str>| {
            choose(flag.map(Into::into), env.map(Into::into), no_cwd).ok()
        };
        let named = |name: &str, given| {
            Some(Chosen {
                name: name.into(),
                given,
                root: None,
            })
        };
        assert_eq!(chosen(None, None), named("default", false));
        assert_eq!(chosen(None, Some("")), named("default", false));
        assert_eq!(chosen(None, Some("ci")), named("ci", true));
        assert_eq!(chosen(Some("web"), Some("ci")), named("web", true));
        assert_eq!(chosen(Some("default"), None), named("default", true));
    }

    #[test]
    fn auto_derives_the_name_from_the_worktree_root() {
        let dir = std::env::temp_dir().join(format!("ap-session-{}", std::process::id()));
        let deep = dir.join("my app/src/deep");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(dir.join("my app/.git"), "gitdir: elsewhere\n").unwrap();
        let from_deep = choose(Some("auto".into()), None, || Ok(deep.clone())).unwrap();
        let from_top = choose(None, Some("auto".into()), || Ok(dir.join("my app"))).unwrap();
        let outside = choose(Some("auto".into()), None, || Ok(dir.clone())).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(from_deep, from_top);
        assert_eq!(from_deep.root, Some(dir.join("my app")));
        assert!(from_deep.given);
        assert!(from_deep.name.starts_with("my-app-"), "{}", from_deep.name);
        assert_eq!(outside.root, Some(dir.clone()));
        assert_ne!(outside.name, from_deep.name);
    }

    #[test]
    fn same_last_component_different_paths_differ() {
        let a = auto_name(Path::new("/home/a/app"));
        let b = auto_name(Path::new("/home/b/app"));
        assert!(a.starts_with("app-") && b.starts_with("app-"));
        assert_ne!(a, b);
        assert_eq!(a, auto_name(Path::new("/home/a/app")), "stable");
        assert_eq!(
            auto_name(Path::new("/")),
            format!("root-{}", &auto_name(Path::new("/"))[5..])
        );
    }

    proptest! {
        #[test]
        fn every_derived_name_is_a_valid_session_name(path in "/[ -~é]{0,80}") {
            let name = auto_name(Path::new(&path));
            prop_assert!(crate::paths::check_session_name(&name).is_ok(), "{name}");
        }
    }
}
