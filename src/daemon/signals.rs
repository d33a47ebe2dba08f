//! Signals, as the loop sees them: self-pipes that turn SIGCHLD and the shutdown
//! signals into readable sources, the `waitpid` loop, group kills, and names.

use std::io::{self, Read};
#[cfg(test)]
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// How a process ended: its exit code, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn from_status(status: ExitStatus) -> Exit {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Code(-1),
        }
    }

    pub fn code(self) -> Option<i32> {
        match self {
            Exit::Code(c) => Some(c),
            Exit::Signal(_) => None,
        }
    }

    pub fn signal_name(self) -> Option<String> {
        match self {
            Exit::Code(_) => None,
            Exit::Signal(s) => Some(signal_name(s)),
        }
    }

    /// `exit code 1` or `killed by SIGKILL`, for messages and daemon.log.
    pub fn describe(self) -> String {
        match self {
            Exit::Code(c) => format!("exit code {c}"),
            Exit::Signal(s) => format!("killed by {}", signal_name(s)),
        }
    }
}

pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSYS => "SIGSYS",
        other => return format!("signal {other}"),
    };
    name.to_string()
}

/// The number of a signal named `TERM` or `SIGTERM`.
pub fn signal_number(name: &str) -> Option<i32> {
    let name = name.strip_prefix("SIG").unwrap_or(name);
    (1..32).find(|&sig| signal_name(sig).strip_prefix("SIG") == Some(name))
}

/// A self-pipe for `signals`: the handler writes a byte, the loop reads it.
pub fn signal_pipe(signals: &[libc::c_int]) -> io::Result<mio::net::UnixStream> {
    let (read, write) = std::os::unix::net::UnixStream::pair()?;
    read.set_nonblocking(true)?;
    for &signal in signals {
        signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
    }
    Ok(mio::net::UnixStream::from_std(read))
}

/// Empty a self-pipe; one byte can stand for many signals, so callers act once after.
pub fn drain_pipe(pipe: &mut mio::net::UnixStream) {
    let mut buf = [0u8; 256];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return, // WouldBlock: empty
        }
    }
}

/// Reap every child that has exited, without blocking.
pub fn reap(mut exited: impl FnMut(libc::pid_t, Exit)) {
    loop {
        let mut raw = 0;
        // SAFETY: waitpid writes only through the valid pointer we pass.
        match unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) } {
            0 => return, // children exist, none has exited
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            -1 => return, // ECHILD: no children at all
            pid => exited(pid, Exit::from_status(ExitStatus::from_raw(raw))),
        }
    }
}

/// Send `signal` to the whole process group `pgid`. ESRCH (gone) is not an error.
pub fn kill_group(pgid: i32, signal: libc::c_int) {
    if pgid > 1 {
        // SAFETY: kill with a negative pid signals a process group; no memory is involved.
        unsafe { libc::kill(-pgid, signal) };
    }
}

/// Whether process group `pgid` still has a member (zombies included) in session
/// `sid`. Our children stay in the daemon's session, so this tells our own
/// lingering group members apart from an unrelated group that reused the number.
pub fn group_alive(pgid: i32, sid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    if unsafe { libc::kill(-pgid, 0) } != 0 {
        return false; // ESRCH: nobody; EPERM: someone else's group
    }
    crate::sys::group_in_session(pgid, sid)
}

/// Our session id (the daemon's pid once it has called setsid).
pub fn session_id() -> i32 {
    // SAFETY: getsid(0) only queries the calling process.
    unsafe { libc::getsid(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_found_by_name() {
        assert_eq!(signal_number("TERM"), Some(libc::SIGTERM));
        assert_eq!(signal_number("SIGINT"), Some(libc::SIGINT));
        assert_eq!(signal_number("USR2"), Some(libc::SIGUSR2));
        assert_eq!(signal_number("NOPE"), None);
        assert_eq!(signal_number(""), None);
    }

    #[test]
    fn exits_describe_themselves() {
        assert_eq!(Exit::Code(3).describe(), "exit code 3");
        assert_eq!(Exit::Signal(libc::SIGKILL).describe(), "killed by SIGKILL");
        assert_eq!(
            Exit::Signal(libc::SIGTERM).signal_name().as_deref(),
            Some("SIGTERM")
        );
        assert_eq!(signal_name(64), "signal 64");
    }

    #[test]
    fn only_groups_in_the_given_session_count_as_ours() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("starting sleep");
        let pgid = child.id() as i32;
        assert!(group_alive(pgid, session_id()));
        assert!(!group_alive(pgid, session_id() + 1));
        kill_group(pgid, libc::SIGKILL);
        let _ = child.wait();
        assert!(!group_alive(pgid, session_id()));
    }
}
