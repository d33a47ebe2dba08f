//! The connection to a session's daemon: connect (checking who serves the
//! socket), start the daemon when a command creates processes, send a request
//! and read its replies.

use crate::error::{Context, Error, Result};
use crate::paths::{self, SessionPaths};
use crate::protocol::{ProcessInfo, Request, Response};
use crate::sys;
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// How long the CLI waits for a daemon it started to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon's own executable, looked for in the directory of ours.
pub const DAEMON_EXE: &str = "agent-procs-daemon";

/// Slack on top of a request's own deadline before the CLI gives up on the daemon.
const REPLY_SLACK: Duration = Duration::from_secs(30);

/// A connection to the daemon of one session.
pub struct Conn {
    /// Reads go through the buffer; writes go straight to the socket under it.
    reader: BufReader<UnixStream>,
    socket: PathBuf,
}

impl Conn {
    /// Connect; with `start`, start the daemon when none is running.
    pub fn open(paths: &SessionPaths, start: bool) -> Result<Conn> {
        if start {
            paths::ensure_private_dir(&paths.runtime_dir)?;
        } else {
            match std::fs::symlink_metadata(&paths.runtime_dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(no_daemon(paths)),
                _ => paths::check_private_dir(&paths.runtime_dir)?,
            }
        }
        match Conn::connect(paths) {
            Ok(conn) => Ok(conn),
            Err(e) if is_absent(&e) && start => {
                start_daemon(paths)?;
                Conn::connect(paths).context(|| format!("connecting to {}", paths.socket.display()))
            }
            Err(e) if is_absent(&e) => Err(no_daemon(paths)),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && e.raw_os_error().is_none() => {
                Err(Error::Failed(e.to_string()))
            }
            Err(e) => Err(e).context(|| format!("connecting to {}", paths.socket.display())),
        }
    }

    pub fn connect(paths: &SessionPaths) -> io::Result<Conn> {
        let stream = UnixStream::connect(&paths.socket)?;
        // Never hand a command line or an environment to a socket someone else serves.
        let uid = sys::peer_uid(stream.as_raw_fd())?;
        if uid != sys::euid() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is served by uid {uid}, not by us; refusing to talk to it",
                    paths.socket.display()
                ),
            ));
        }
        Ok(Conn {
            reader: BufReader::new(stream),
            socket: paths.socket.clone(),
        })
    }

    /// Whether more of the daemon's replies are already read and waiting.
    pub fn has_buffered(&self) -> bool {
        !self.reader.buffer().is_empty()
    }

    /// Wait (at most `patience`) for the daemon to close the connection, as it
    /// does when it exits.
    pub fn wait_closed(&mut self, patience: Duration) {
        let _ = self.reader.get_ref().set_read_timeout(Some(patience));
        let mut rest = Vec::new();
        let _ = self.reader.read_to_end(&mut rest);
    }

    /// The socket itself, for a caller with a loop of its own (nothing has been read yet).
    pub fn into_stream(self) -> UnixStream {
        self.reader.into_inner()
    }

    pub fn send(&mut self, request: &Request) -> Result<()> {
        let mut line = serde_json::to_vec(request)
            .map_err(|e| Error::Failed(format!("encoding the request: {e}")))?;
        line.push(b'\n');
        let mut socket: &UnixStream = self.reader.get_ref();
        socket
            .write_all(&line)
            .context(|| format!("sending to {}", self.socket.display()))
    }

    /// The next response; `patience` bounds the wait (None: wait as long as it takes).
    pub fn recv(&mut self, patience: Option<Duration>) -> Result<Response> {
        let _ = self
            .reader
            .get_ref()
            .set_read_timeout(patience.map(|p| p + REPLY_SLACK));
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => Err(Error::Failed(format!(
                "the daemon closed the connection ({})",
                self.socket.display()
            ))),
            Ok(_) => serde_json::from_slice(&line)
                .map_err(|e| Error::Failed(format!("unreadable reply from the daemon: {e}"))),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(Error::Failed(format!(
                    "the daemon did not answer in time ({})",
                    self.socket.display()
                )))
            }
            Err(e) => Err(e).context(|| format!("reading from {}", self.socket.display())),
        }
    }

    /// Send a request and read its one reply; a daemon error becomes our error.
    pub fn ask(&mut self, request: &Request, patience: Duration) -> Result<Response> {
        self.send(request)?;
        match self.recv(Some(patience))? {
            Response::Error { code, message } => Err(daemon_error(code, message)),
            other => Ok(other),
        }
    }
}

fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

fn no_daemon(paths: &SessionPaths) -> Error {
    Error::Failed(format!("no daemon running for session '{}'", paths.session))
}

pub fn daemon_error(code: i32, message: String) -> Error {
    if code == crate::protocol::CODE_NOT_FOUND {
        Error::NotFound(message)
    } else {
        Error::Failed(message)
    }
}

pub fn unexpected(response: Response) -> Result<i32> {
    Err(Error::Failed(format!(
        "unexpected reply from the daemon: {response:?}"
    )))
}

/// Start the daemon for `paths.session`, unless another caller beat us to it.
/// The lock makes concurrent first calls start exactly one daemon.
fn start_daemon(paths: &SessionPaths) -> Result<()> {
    let lock_path = &paths.lock_file;
    let mut attempts = 0;
    // Held until we return, so the daemon we start is the only one.
    let _lock = loop {
        let lock = crate::session::open_lock(lock_path, true)
            .context(|| format!("opening {}", lock_path.display()))?
            .ok_or_else(|| Error::Failed(format!("{} vanished", lock_path.display())))?;
        sys::lock_exclusive(&lock).context(|| format!("locking {}", lock_path.display()))?;
        if crate::session::still_at(&lock, lock_path) {
            break lock;
        }
        // `down` or `session clean` removed it while we waited: lock the new one.
        attempts += 1;
        if attempts == 100 {
            return Err(Error::Failed(format!(
                "{} keeps being removed while we wait for it",
                lock_path.display()
            )));
        }
    };
    match UnixStream::connect(&paths.socket) {
        Ok(_) => return Ok(()), // someone else started it while we waited for the lock
        Err(e) if is_absent(&e) => {}
        Err(e) => return Err(e).context(|| format!("connecting to {}", paths.socket.display())),
    }
    let (mut ready_r, ready_w) = sys::pipe().context(|| "creating a pipe".into())?;
    sys::clear_cloexec(ready_w.as_raw_fd()).context(|| "preparing the readiness pipe".into())?;
    let child = spawn_daemon(paths, ready_w.as_raw_fd())?;
    drop(ready_w);
    let log = paths.daemon_log();
    let mut said = Vec::new();
    loop {
        let readable = sys::wait_readable(&ready_r, START_TIMEOUT)
            .context(|| "waiting for the daemon".into())?;
        if !readable {
            return Err(Error::Failed(format!(
                "the daemon (pid {}) did not report ready within {} s; see {}",
                child.id(),
                START_TIMEOUT.as_secs(),
                log.display()
            )));
        }
        let mut buf = [0u8; 1024];
        match ready_r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => said.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context(|| "reading the daemon's start-up report".into()),
        }
        if said.starts_with(b"ok\n") {
            return Ok(());
        }
    }
    let said = String::from_utf8_lossy(&said);
    match said.trim() {
        "ok" => Ok(()),
        "" => Err(Error::Failed(format!(
            "the daemon exited during start-up; see {}",
            log.display()
        ))),
        why => Err(Error::Failed(format!("starting the daemon: {why}"))),
    }
}

/// Start the daemon executable installed beside us, or (an older install,
/// `cargo run` of the CLI alone) our own `__daemon` command, the same daemon.
/// `ready_fd` is the readiness pipe's write end, inherited by the daemon.
fn spawn_daemon(paths: &SessionPaths, ready_fd: i32) -> Result<std::process::Child> {
    let exe = std::env::current_exe().context(|| "finding our own executable".into())?;
    let daemon_exe = exe.with_file_name(DAEMON_EXE);
    let start = |program: &std::path::Path| {
        let mut command = std::process::Command::new(program);
        if let Some(root) = &paths.root {
            command.current_dir(root);
        }
        command
            .arg("__daemon")
            .arg(&paths.session)
            .arg("--ready-fd")
            .arg(ready_fd.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    };
    match start(&daemon_exe) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ) =>
        {
            start(&exe)
        }
        other => other,
    }
    .context(|| format!("starting the daemon ({})", daemon_exe.display()))
}

/// The environment a started process gets as its base, as the daemon is told.
/// Only UTF-8 variables can travel in JSON; others are left out.
pub fn caller_env() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// The status of one process, asked on an open connection (None if it is gone).
pub fn one_status(conn: &mut Conn, name: &str) -> Result<Option<ProcessInfo>> {
    let request = Request::Status {
        target: Some(name.to_string()),
        resources: false,
    };
    match conn.ask(&request, Duration::from_secs(10)) {
        Ok(Response::Status { mut processes, .. }) => Ok(processes.pop()),
        Ok(other) => unexpected(other).map(|_| None),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Ask the daemon for its reverse proxy; says where it listens on stderr, in
/// 0.6's words and without our prefix (`Proxy listening on http://localhost:9090`),
/// since scripts look for that line.
pub fn enable_proxy(conn: &mut Conn, port: Option<u16>) -> Result<()> {
    match conn.ask(
        &Request::EnableProxy { proxy_port: port },
        Duration::from_secs(10),
    )? {
        Response::Ok { message } => {
            eprintln!("{message}");
            Ok(())
        }
        other => unexpected(other).map(|_| ()),
    }
}

/// The `status` request of 0.6: every process, no /proc readings.
pub fn plain_status() -> Request {
    Request::Status {
        target: None,
        resources: false,
    }
}

/// A duration in whole milliseconds, as requests carry it.
pub fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}
