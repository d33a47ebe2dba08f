//! Where agent-procs keeps its files, and the checks that keep them private:
//! the runtime dir (socket, pid file, lock) and the per-session state dir (logs,
//! state.json, daemon.log). Names are validated here so no path escapes them.

use crate::error::{Context, Error, Result};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `sun_path` holds 108 bytes including the terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;

pub use crate::sys::euid;

/// Session names: 1–64 of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
pub fn check_session_name(name: &str) -> Result<()> {
    check_name(name, 64)
        .map_err(|why| Error::Failed(format!("invalid session name '{name}': {why}")))
}

/// Process names: 1–63 of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
pub fn check_process_name(name: &str) -> std::result::Result<(), String> {
    check_name(name, 63).map_err(|why| format!("invalid process name '{name}': {why}"))
}

fn check_name(name: &str, max: usize) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > max {
        return Err(format!(
            "it is {} characters long, the limit is {max}",
            name.len()
        ));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err("it must not start with '.' or '-'".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{bad:?} is not allowed; use letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Everything the CLI and the daemon need to know about one session's files.
#[derive(Debug, Clone)]
pub struct SessionPaths {
    pub session: String,
    pub runtime_dir: PathBuf,
    pub socket: PathBuf,
    pub pid_file: PathBuf,
    pub lock_file: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    /// Where a daemon started for this session runs (None: the caller's directory).
    pub root: Option<PathBuf>,
}

impl SessionPaths {
    pub fn new(session: &str) -> Result<SessionPaths> {
        check_session_name(session)?;
        let runtime_dir = runtime_dir();
        let socket = runtime_dir.join(format!("{session}.sock"));
        let len = socket.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(Error::Failed(format!(
                "socket path {} is {len} bytes, longer than the {MAX_SOCKET_PATH} a Unix socket path can hold; \
                 use a shorter session name or AGENT_PROCS_RUNTIME_DIR",
                socket.display()
            )));
        }
        let state_dir = state_base().join("sessions").join(session);
        Ok(SessionPaths {
            session: session.to_string(),
            pid_file: runtime_dir.join(format!("{session}.pid")),
            lock_file: runtime_dir.join(format!("{session}.lock")),
            socket,
            runtime_dir,
            log_dir: state_dir.join("logs"),
            state_dir,
            root: None,
        })
    }

    /// The same session, whose daemon is to start in `root` (an `auto` session's
    /// worktree), so `session list` can show where it belongs.
    pub fn with_root(mut self, root: Option<PathBuf>) -> SessionPaths {
        self.root = root;
        self
    }

    pub fn log_file(&self, name: &str, stream: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.{stream}"))
    }

    pub fn daemon_log(&self) -> PathBuf {
        self.state_dir.join("daemon.log")
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }
}

/// `$AGENT_PROCS_RUNTIME_DIR`, else `/tmp/agent-procs-<uid>` (the path 0.6 uses).
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("AGENT_PROCS_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => absolute(PathBuf::from(dir)),
        _ => PathBuf::from(format!("/tmp/agent-procs-{}", euid())),
    }
}

/// The daemon leaves its start directory, so every path it keeps must be absolute.
fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    std::env::current_dir().map_or(path.clone(), |cwd| cwd.join(path))
}

/// `$XDG_STATE_HOME/agent-procs`, else `~/.local/state/agent-procs`.
pub fn state_base() -> PathBuf {
    let base = match std::env::var_os("XDG_STATE_HOME") {
        Some(dir) if !dir.is_empty() => absolute(PathBuf::from(dir)),
        _ => match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => absolute(PathBuf::from(home)).join(".local/state"),
            _ => fallback_state_dir(),
        },
    };
    base.join("agent-procs")
}

/// Where state goes when neither XDG_STATE_HOME nor HOME is set.
fn fallback_state_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/agent-procs-state-{}", euid()))
}

/// Create `dir` (mode 0700) if it is missing, then refuse it unless it is a real
/// directory, owned by us, that no group or other user can write to; one they
/// can only read or enter is made 0700.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).context(|| format!("creating {}", dir.display())),
    }
    check_private_dir(dir)
}

/// The checks of `ensure_private_dir` on an existing directory (and the repair of
/// a mode that only lets others read it); never follows a symlink.
pub fn check_private_dir(dir: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(dir).context(|| format!("checking {}", dir.display()))?;
    let shown = dir.display();
    if meta.file_type().is_symlink() {
        return Err(Error::Failed(format!(
            "{shown} is a symbolic link; refusing to use it (remove it)"
        )));
    }
    if !meta.is_dir() {
        return Err(Error::Failed(format!(
            "{shown} is not a directory; refusing to use it (remove it)"
        )));
    }
    // chmod is no fix for the next two: it does not evict what others planted
    // while the directory was theirs or open to them.
    if meta.uid() != euid() {
        return Err(Error::Failed(format!(
            "{shown} is owned by uid {}, not by us (uid {}); refusing to use it \
             (have it removed; agent-procs recreates it)",
            meta.uid(),
            euid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Error::Failed(format!(
            "{shown} has mode {:o}, open to other users, who may have planted files in it; \
             refusing to use it (remove it with: rm -rf {shown}; agent-procs recreates it)",
            meta.mode() & 0o7777
        )));
    }
    if meta.mode() & 0o077 != 0 {
        // Others could look inside but never write there (`mkdir` without a
        // mode makes 755, as 0.6's tests do): nothing can have been planted, so
        // closing it is safe.
        close_dir(dir).context(|| {
            format!(
                "{shown} has mode {:o}, readable by other users, and making it private failed (fix with: chmod 700 {shown})",
                meta.mode() & 0o7777
            )
        })?;
    }
    Ok(())
}

/// `chmod 700` on our directory `dir` through a descriptor opened without
/// following links, checking again through that descriptor that it is ours.
fn close_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)?;
    let meta = file.metadata()?;
    if !meta.is_dir() || meta.uid() != euid() || meta.mode() & 0o022 != 0 {
        return Err(io::Error::other("it changed while being checked"));
    }
    file.set_permissions(fs::Permissions::from_mode(0o700))
}

/// The checks of `check_private_dir` for the state dirs of `paths` that exist,
/// top down, for readers that run without a daemon (`logs`, `session list`):
/// they must not show what another user planted where the daemon would refuse
/// to write. Missing dirs are fine (nothing to read there).
pub fn check_state_dirs(paths: &SessionPaths) -> Result<()> {
    let base = state_base();
    let mut dirs = Vec::new();
    if let Some(parent) = base.parent()
        && parent == fallback_state_dir()
    {
        dirs.push(parent.to_path_buf());
    }
    dirs.extend([
        base.clone(),
        base.join("sessions"),
        paths.state_dir.clone(),
        paths.log_dir.clone(),
    ]);
    for dir in dirs {
        match fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            _ => check_private_dir(&dir)?,
        }
    }
    Ok(())
}

/// Open one of our files in a private dir (state.json, daemon.log, logs and
/// their indexes, the lock): never through a symbolic link, never blocking on a
/// planted FIFO, close-on-exec; then `verify_file`. Only at open time: nothing
/// here runs per write.
pub fn open_private(path: &Path, how: &mut fs::OpenOptions) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = how
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| explain_refusal(path, crate::error::not_following(e)))?;
    verify_file(&file)?;
    Ok(file)
}

/// Refuse an opened file unless it is a regular file, ours, with no other name
/// (`st_nlink` at most 1: 0 when it was just removed): a file another user
/// planted while a dir was open to them, or a hard link to it they kept, would
/// let them feed us a table of pids to kill or read what we write.
pub fn verify_file(file: &fs::File) -> io::Result<()> {
    check_own_file(&file.metadata()?)
}

/// The checks of `verify_file` on metadata at hand (an `lstat` before a rename).
pub fn check_own_file(meta: &fs::Metadata) -> io::Result<()> {
    if meta.file_type().is_symlink() {
        return Err(crate::error::not_following(io::Error::from_raw_os_error(
            libc::ELOOP,
        )));
    }
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{why}; refusing to use it (remove it)"),
        ))
    };
    if !meta.file_type().is_file() {
        return refuse("it is not a regular file".into());
    }
    if meta.uid() != euid() {
        return refuse(format!(
            "it is owned by uid {}, not by us (uid {})",
            meta.uid(),
            euid()
        ));
    }
    if meta.nlink() > 1 {
        return refuse(format!(
            "it has {} hard links, so it can be reached under another name",
            meta.nlink()
        ));
    }
    Ok(())
}

/// A directory of ours held open (the log dir), so that the files in it are
/// created, renamed and removed relative to this descriptor (`openat`,
/// `renameat`, `unlinkat`): whatever later takes the dir's place by its path (a
/// symbolic link to someone else's dir) is never written through.
#[derive(Debug)]
pub struct OwnDir {
    fd: std::os::fd::OwnedFd,
    dev: u64,
    ino: u64,
}

impl OwnDir {
    /// Open `path` without following a link there, and refuse it unless it is a
    /// directory of ours with no group or other permission bit.
    pub fn open(path: &Path) -> io::Result<OwnDir> {
        let fd = crate::sys::open_raw(path, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .map_err(|e| match e.raw_os_error() {
                // O_NOFOLLOW with O_DIRECTORY at a link says ELOOP or ENOTDIR.
                Some(libc::ELOOP) | Some(libc::ENOTDIR)
                    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) =>
                {
                    crate::error::not_following(io::Error::from_raw_os_error(libc::ELOOP))
                }
                _ => e,
            })?;
        let meta = fs::File::from(fd.try_clone()?).metadata()?;
        if meta.uid() != euid() || meta.mode() & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "it is a directory of uid {} with mode {:o}, not private to us (uid {}); \
                     refusing to use it (remove it)",
                    meta.uid(),
                    meta.mode() & 0o7777,
                    euid()
                ),
            ));
        }
        Ok(OwnDir {
            fd,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Whether both are the same directory (a dir made again has a new inode).
    pub fn same_as(&self, other: &OwnDir) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }

    /// Open `name` here for appending (created 0600), then `verify_file` it.
    pub fn open_append(&self, name: &std::ffi::OsStr) -> io::Result<fs::File> {
        use std::os::fd::AsFd;
        let flags =
            libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        let file = fs::File::from(
            crate::sys::open_at(self.fd.as_fd(), name, flags)
                .map_err(crate::error::not_following)?,
        );
        verify_file(&file)?;
        Ok(file)
    }

    /// `open_append`, also readable (the run journal checks its last byte).
    pub fn open_read_append(&self, name: &std::ffi::OsStr) -> io::Result<fs::File> {
        use std::os::fd::AsFd;
        let flags =
            libc::O_RDWR | libc::O_APPEND | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        let file = fs::File::from(
            crate::sys::open_at(self.fd.as_fd(), name, flags)
                .map_err(crate::error::not_following)?,
        );
        verify_file(&file)?;
        Ok(file)
    }

    /// `lstat` of `name` here (a link is reported as one, not followed).
    pub fn metadata(&self, name: &std::ffi::OsStr) -> io::Result<fs::Metadata> {
        use std::os::fd::AsFd;
        crate::sys::metadata_at(self.fd.as_fd(), name)
    }

    pub fn rename(&self, from: &std::ffi::OsStr, to: &std::ffi::OsStr) -> io::Result<()> {
        use std::os::fd::AsFd;
        crate::sys::rename_at(self.fd.as_fd(), from, to)
    }

    pub fn remove(&self, name: &std::ffi::OsStr) -> io::Result<()> {
        use std::os::fd::AsFd;
        crate::sys::unlink_at(self.fd.as_fd(), name)
    }
}

/// An open that the kernel refused (EACCES, ENXIO at a FIFO) at a file that is
/// not ours reads better as the refusal `verify_file` would have given.
fn explain_refusal(path: &Path, err: io::Error) -> io::Error {
    if !matches!(err.raw_os_error(), Some(libc::EACCES | libc::ENXIO)) {
        return err;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.uid() != euid() => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "it is owned by uid {}, not by us (uid {}); refusing to use it (remove it)",
                meta.uid(),
                euid()
            ),
        ),
        Ok(meta) if !meta.is_file() => io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not a regular file; refusing to use it (remove it)",
        ),
        _ => err,
    }
}

/// Create the state dir chain (`agent-procs/`, `sessions/`, `<session>/`, `logs/`),
/// each private, for the daemon. Parents above `agent-procs/` are the user's own.
pub fn ensure_state_dirs(paths: &SessionPaths) -> Result<()> {
    let base = state_base();
    if let Some(parent) = base.parent() {
        if parent == fallback_state_dir() {
            // Under /tmp anyone could have made it first: check it like the runtime dir.
            ensure_private_dir(parent)?;
        } else {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .context(|| format!("creating {}", parent.display()))?;
        }
    }
    for dir in [
        base.clone(),
        base.join("sessions"),
        paths.state_dir.clone(),
        paths.log_dir.clone(),
    ] {
        ensure_private_dir(&dir)?;
    }
    Ok(())
}

/// Write `contents` to `path` atomically (temp file + rename), mode 0600.
pub fn write_private_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    file.write_all(contents)?;
    fs::rename(&tmp, path)
}

/// Make an existing file private; used on files we created before a mode change.
pub fn set_private(path: &Path) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_against_the_safe_alphabet() {
        for good in ["web", "p1", "api.v2", "a_b-c", "A"] {
            assert!(check_process_name(good).is_ok(), "{good}");
        }
        let long = "x".repeat(64);
        for bad in [
            "",
            ".hidden",
            "-flag",
            "a/b",
            "..",
            "a b",
            "ü",
            "a\0b",
            long.as_str(),
        ] {
            assert!(check_process_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_session_name(&"s".repeat(64)).is_ok());
        assert!(check_session_name(&"s".repeat(65)).is_err());
    }

    #[test]
    fn only_a_regular_file_of_ours_with_one_name_is_opened() {
        let dir = std::env::temp_dir().join(format!("ap-paths-open-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let read = || fs::OpenOptions::new().read(true).clone();
        let mine = dir.join("mine");
        fs::write(&mine, "x").unwrap();
        assert!(open_private(&mine, &mut read()).is_ok());
        let refusal = |name: &str| {
            open_private(&dir.join(name), &mut read())
                .expect_err(name)
                .to_string()
        };
        fs::hard_link(&mine, dir.join("twice")).unwrap();
        assert!(refusal("twice").contains("it has 2 hard links"));
        assert!(refusal("mine").contains("it has 2 hard links"));
        fs::remove_file(dir.join("twice")).unwrap();
        std::os::unix::fs::symlink(&mine, dir.join("link")).unwrap();
        assert!(refusal("link").contains("it is a symbolic link"));
        // A FIFO: refused at once, not waited on for a writer.
        let fifo = std::ffi::CString::new(dir.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(
            refusal("fifo").contains("it is not a regular file; refusing to use it (remove it)")
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn name_errors_say_what_is_wrong() {
        let err = check_process_name("a/b").unwrap_err();
        assert_eq!(
            err,
            "invalid process name 'a/b': '/' is not allowed; use letters, digits, '.', '_' and '-'"
        );
    }
}
