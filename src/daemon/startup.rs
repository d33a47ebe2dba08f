//! Becoming a daemon: detach from the caller's session, point stdio at /dev/null
//! and daemon.log, bind the socket privately, write the pid file, and tell the
//! waiting CLI through the readiness pipe that we are up (or why we are not).

use crate::error::{Context, Error, Result};
use crate::paths::{self, SessionPaths};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// The write end of the pipe the CLI waits on; fd number given by `--ready-fd`.
pub struct ReadyPipe(Option<File>);

impl ReadyPipe {
    /// Descriptors the CLI's own caller left open (a CI runner's pipe, a shell's
    /// saved descriptor) must not live on in the daemon and its children: a pipe
    /// held open by a daemon keeps whoever reads it waiting forever. Close every
    /// descriptor above stderr but `keep`.
    pub fn close_inherited(keep: Option<i32>) {
        let Some(open) = crate::sys::open_descriptors() else {
            return;
        };
        let fds: Vec<i32> = open
            .into_iter()
            .filter(|&fd| fd > 2 && Some(fd) != keep)
            .collect();
        for fd in fds {
            // SAFETY: closing a descriptor number; none is owned by Rust code yet
            // (this runs first thing in the daemon), and a closed one gives EBADF.
            unsafe { libc::close(fd) };
        }
    }

    pub fn from_fd(fd: Option<i32>) -> ReadyPipe {
        ReadyPipe(fd.filter(|&fd| fd > 2 && fd_is_open(fd)).map(|fd| {
            // SAFETY: the CLI handed us this descriptor and nothing else owns it.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            set_cloexec(owned.as_raw_fd());
            File::from(owned)
        }))
    }

    /// Report success: the CLI may connect now.
    pub fn ready(mut self) {
        if let Some(mut f) = self.0.take() {
            let _ = f.write_all(b"ok\n");
        }
    }

    /// Report why we could not start; the CLI prints it as its own error.
    pub fn failed(mut self, err: &Error) {
        if let Some(mut f) = self.0.take() {
            let _ = writeln!(f, "{err}");
        }
    }
}

fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

fn set_cloexec(fd: i32) {
    // SAFETY: F_SETFD on a descriptor we own changes only its flags.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// What a daemon opens before its loop: its session's paths, the directory
/// relative `cwd`s resolve against, the control socket and the signal pipes.
pub struct Opened {
    pub paths: SessionPaths,
    pub home_cwd: std::path::PathBuf,
    pub listener: mio::net::UnixListener,
    pub sigchld: mio::net::UnixStream,
    pub shutdown_sig: mio::net::UnixStream,
}

/// Become the daemon of `session`: private dirs, detached, stdio redirected,
/// the descriptor limit raised, the signal pipes installed, the socket bound
/// and the pid file written.
pub fn open(session: &str) -> Result<Opened> {
    let paths = SessionPaths::new(session)?;
    paths::ensure_private_dir(&paths.runtime_dir)?;
    paths::ensure_state_dirs(&paths)?;
    detach();
    redirect_stdio(&paths)?;
    raise_fd_limit();
    let home_cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    // Do not keep the caller's directory busy (an unmount, a deleted checkout).
    let _ = std::env::set_current_dir("/");
    let installing = |what: &str| {
        let what = format!("installing the {what} handler");
        move |err: io::Error| Error::Io { what, err }
    };
    let sigchld = super::signals::signal_pipe(&[libc::SIGCHLD]).map_err(installing("SIGCHLD"))?;
    let shutdown_sig = super::signals::signal_pipe(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP])
        .map_err(installing("SIGTERM"))?;
    let listener = bind_socket(&paths.socket)?;
    write_pid_file(&paths)?;
    Ok(Opened {
        paths,
        home_cwd,
        listener,
        sigchld,
        shutdown_sig,
    })
}

/// Leave the caller's session and process group, so Ctrl-C in its terminal
/// (or the end of a CI step's group) does not reach us.
pub fn detach() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    // A client that hangs up must cost us an EPIPE, not our life; children get
    // the default back from std's spawn.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // SAFETY: setsid takes no arguments; failing (already a group leader) is harmless.
    unsafe { libc::setsid() };
    // Orphaned grandchildren are then re-parented to us, so we reap them and see
    // when a stopped process group is really empty.
    crate::sys::set_child_subreaper();
}

/// Raise the soft descriptor limit to the hard one: each child costs four.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max.min(65536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// stdin and stdout to /dev/null, stderr appended to daemon.log (0600).
pub fn redirect_stdio(paths: &SessionPaths) -> Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context(|| "opening /dev/null".into())?;
    let log_path = paths.daemon_log();
    let log = crate::logs::store::open_append(&log_path)
        .context(|| format!("opening {}", log_path.display()))?;
    for (from, to) in [
        (null.as_raw_fd(), 0),
        (null.as_raw_fd(), 1),
        (log.as_raw_fd(), 2),
    ] {
        // SAFETY: dup2 onto the standard descriptors; both are valid open descriptors.
        if unsafe { libc::dup2(from, to) } == -1 {
            return Err(io::Error::last_os_error())
                .context(|| "redirecting standard streams".into());
        }
    }
    Ok(())
}

/// Bind the control socket (mode 0600), replacing a stale one. A live daemon on
/// it is an error: two daemons must never serve one session.
pub fn bind_socket(socket: &Path) -> Result<mio::net::UnixListener> {
    match std::fs::symlink_metadata(socket) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return Err(Error::Failed(format!(
                    "a daemon is already serving {}",
                    socket.display()
                )));
            }
            std::fs::remove_file(socket)
                .context(|| format!("removing stale socket {}", socket.display()))?;
        }
        Ok(_) => {
            return Err(Error::Failed(format!(
                "{} exists and is not a socket; refusing to replace it (remove it)",
                socket.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context(|| format!("checking {}", socket.display())),
    }
    // SAFETY: umask only swaps the process's file-creation mask; we are single-threaded.
    let old = unsafe { libc::umask(0o077) };
    let bound = std::os::unix::net::UnixListener::bind(socket);
    // SAFETY: as above; restore the mask so children get the caller's usual one.
    unsafe { libc::umask(old) };
    let listener = bound.context(|| format!("binding {}", socket.display()))?;
    paths::set_private(socket).context(|| format!("setting the mode of {}", socket.display()))?;
    listener
        .set_nonblocking(true)
        .context(|| "making the socket non-blocking".into())?;
    Ok(mio::net::UnixListener::from_std(listener))
}

pub fn write_pid_file(paths: &SessionPaths) -> Result<()> {
    let pid = std::process::id();
    paths::write_private_atomic(&paths.pid_file, format!("{pid}\n").as_bytes())
        .context(|| format!("writing {}", paths.pid_file.display()))
}

/// Remove the socket, pid file and lock file, but only if they are still ours.
pub fn remove_runtime_files(paths: &SessionPaths) {
    let mut text = String::new();
    let ours = crate::logs::read::open_log(&paths.pid_file)
        .and_then(|mut f| io::Read::read_to_string(&mut f, &mut text))
        .ok()
        .and_then(|_| text.trim().parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    if ours {
        let _ = std::fs::remove_file(&paths.socket);
        let _ = std::fs::remove_file(&paths.pid_file);
        // Left alone when a caller holds it to start the next daemon already.
        let _ = crate::session::remove_lock(&paths.lock_file);
    }
}

/// The daemon executable's arguments: `__daemon SESSION [--ready-fd N]`, as the
/// CLI passes them (the same words as `agent-procs __daemon`, so `session list`
/// recognises either by its command line). Anything else is a usage error that
/// says who starts this program.
pub fn parse_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<(String, Option<i32>)> {
    let usage = || {
        Error::Failed(
            "agent-procs-daemon is started by agent-procs (usage: agent-procs-daemon __daemon SESSION [--ready-fd N]); run agent-procs instead"
                .into(),
        )
    };
    let mut args = args.into_iter();
    if args.next().is_none_or(|a| a != "__daemon") {
        return Err(usage());
    }
    let mut session = None;
    let mut ready_fd = None;
    while let Some(arg) = args.next() {
        if arg == "--ready-fd" {
            let fd = args.next().and_then(|v| v.to_str()?.parse::<i32>().ok());
            ready_fd = Some(fd.ok_or_else(usage)?);
        } else if session.is_none() {
            session = Some(arg.into_string().map_err(|_| usage())?);
        } else {
            return Err(usage());
        }
    }
    Ok((session.ok_or_else(usage)?, ready_fd))
}

#[cfg(test)]
mod tests {
    use super::parse_args;
    use std::ffi::OsString;

    fn parse(args: &[&str]) -> Option<(String, Option<i32>)> {
        parse_args(args.iter().map(OsString::from)).ok()
    }

    #[test]
    fn the_daemon_takes_the_words_the_cli_passes() {
        assert_eq!(parse(&["__daemon", "s"]), Some(("s".into(), None)));
        assert_eq!(
            parse(&["__daemon", "s", "--ready-fd", "5"]),
            Some(("s".into(), Some(5)))
        );
        assert_eq!(
            parse(&["__daemon", "--ready-fd", "7", "s"]),
            Some(("s".into(), Some(7)))
        );
        for bad in [
            &[][..],
            &["s"],
            &["status"],
            &["__daemon"],
            &["__daemon", "s", "t"],
            &["__daemon", "s", "--ready-fd"],
            &["__daemon", "s", "--ready-fd", "x"],
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
