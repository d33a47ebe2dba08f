//! The CLI side: connect to the session's daemon (starting it when a command
//! creates processes), send one request, print the answer. `logs` without
//! `--follow` reads the files directly and works without a daemon.

use crate::cli::{Command, Invocation, LogsArgs, RunArgs, WaitArgs};
use crate::error::{Context, Error, Result};
use crate::logs;
use crate::paths::{self, SessionPaths};
use crate::protocol::{ProcessInfo, Request, Response};
use crate::sys;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// How long the CLI waits for a daemon it started to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Slack on top of a request's own deadline before the CLI gives up on the daemon.
const REPLY_SLACK: Duration = Duration::from_secs(30);

pub fn run(inv: Invocation) -> Result<i32> {
    let paths = SessionPaths::new(&inv.session)?;
    match inv.command {
        Command::Run(args) => run_process(&paths, args),
        Command::Stop { target, timeout } => {
            let request = Request::Stop {
                target,
                timeout_ms: timeout.map(millis),
            };
            print_message(&paths, &request, timeout.unwrap_or(Duration::from_secs(10)))
        }
        Command::StopAll { timeout } => {
            let request = Request::StopAll {
                timeout_ms: timeout.map(millis),
            };
            print_message(&paths, &request, timeout.unwrap_or(Duration::from_secs(10)))
        }
        Command::Restart { target } => {
            let mut conn = Conn::open(&paths, false)?;
            match conn.ask(&Request::Restart { target }, Duration::from_secs(10))? {
                Response::RunOk { name, id, pid, .. } => {
                    println!("restarted {name} (id: {id}, pid: {pid})");
                    Ok(0)
                }
                other => unexpected(other),
            }
        }
        Command::Status { json } => status(&paths, json),
        Command::Logs(args) if args.follow => follow_logs(&paths, args),
        Command::Logs(args) => print_logs(&paths, &args),
        Command::Wait(args) => wait(&paths, args),
        Command::Down => down(&paths),
        Command::SessionList => session_list(),
        Command::SessionClean => session_clean(),
        Command::Help(usage) => {
            println!("{usage}");
            Ok(0)
        }
        Command::Version => {
            println!("agent-procs {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Command::Daemon { .. } => Err(Error::Failed(
            "internal error: daemon mode reached the client".into(),
        )),
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// A connection to the daemon of one session.
struct Conn {
    /// Reads go through the buffer; writes go straight to the socket under it.
    reader: BufReader<UnixStream>,
    socket: PathBuf,
}

impl Conn {
    /// Connect; with `start`, start the daemon when none is running.
    fn open(paths: &SessionPaths, start: bool) -> Result<Conn> {
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

    fn connect(paths: &SessionPaths) -> io::Result<Conn> {
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

    fn send(&mut self, request: &Request) -> Result<()> {
        let mut line = serde_json::to_vec(request)
            .map_err(|e| Error::Failed(format!("encoding the request: {e}")))?;
        line.push(b'\n');
        let mut socket: &UnixStream = self.reader.get_ref();
        socket
            .write_all(&line)
            .context(|| format!("sending to {}", self.socket.display()))
    }

    /// The next response; `patience` bounds the wait (None: wait as long as it takes).
    fn recv(&mut self, patience: Option<Duration>) -> Result<Response> {
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
    fn ask(&mut self, request: &Request, patience: Duration) -> Result<Response> {
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

fn daemon_error(code: i32, message: String) -> Error {
    if code == crate::protocol::CODE_NOT_FOUND {
        Error::NotFound(message)
    } else {
        Error::Failed(message)
    }
}

fn unexpected(response: Response) -> Result<i32> {
    Err(Error::Failed(format!(
        "unexpected reply from the daemon: {response:?}"
    )))
}

/// Start the daemon for `paths.session`, unless another caller beat us to it.
/// The lock makes concurrent first calls start exactly one daemon.
fn start_daemon(paths: &SessionPaths) -> Result<()> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&paths.lock_file)
        .context(|| format!("opening {}", paths.lock_file.display()))?;
    sys::lock_exclusive(&lock).context(|| format!("locking {}", paths.lock_file.display()))?;
    match UnixStream::connect(&paths.socket) {
        Ok(_) => return Ok(()), // someone else started it while we waited for the lock
        Err(e) if is_absent(&e) => {}
        Err(e) => return Err(e).context(|| format!("connecting to {}", paths.socket.display())),
    }
    let (mut ready_r, ready_w) = sys::pipe().context(|| "creating a pipe".into())?;
    sys::clear_cloexec(ready_w.as_raw_fd()).context(|| "preparing the readiness pipe".into())?;
    let exe = std::env::current_exe().context(|| "finding our own executable".into())?;
    let child = std::process::Command::new(&exe)
        .arg("__daemon")
        .arg(&paths.session)
        .arg("--ready-fd")
        .arg(ready_w.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context(|| format!("starting the daemon ({})", exe.display()))?;
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

// ---- commands ----

fn run_process(paths: &SessionPaths, args: RunArgs) -> Result<i32> {
    let here = std::env::current_dir().context(|| "finding the current directory".into())?;
    let cwd = match args.cwd {
        Some(dir) => here.join(dir),
        None => here,
    };
    let cwd = cwd.into_os_string().into_string().map_err(|p| {
        Error::Failed(format!(
            "the working directory {} is not valid UTF-8",
            p.to_string_lossy()
        ))
    })?;
    // Only UTF-8 variables can travel in JSON; others are left out.
    let base_env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let overrides: HashMap<String, String> = args.env.into_iter().collect();
    let request = Request::Run {
        command: args.command,
        name: args.name,
        cwd: Some(cwd),
        env: (!overrides.is_empty()).then_some(overrides),
        port: args.port,
        restart: None,
        watch: None,
        base_env: Some(base_env),
    };
    let mut conn = Conn::open(paths, true)?;
    match conn.ask(&request, Duration::from_secs(10))? {
        Response::RunOk {
            name, id, pid, url, ..
        } => {
            match url {
                Some(url) => println!("{name} (id: {id}, pid: {pid}, {url})"),
                None => println!("{name} (id: {id}, pid: {pid})"),
            }
            Ok(0)
        }
        other => unexpected(other),
    }
}

fn print_message(paths: &SessionPaths, request: &Request, grace: Duration) -> Result<i32> {
    let mut conn = Conn::open(paths, false)?;
    match conn.ask(request, grace)? {
        Response::Ok { message } => {
            println!("{message}");
            Ok(0)
        }
        other => unexpected(other),
    }
}

fn status(paths: &SessionPaths, json: bool) -> Result<i32> {
    let mut conn = Conn::open(paths, false)?;
    let Response::Status { processes } = conn.ask(&Request::Status, Duration::from_secs(10))?
    else {
        return Err(Error::Failed("unexpected reply to status".into()));
    };
    let text = if json {
        let mut text =
            serde_json::to_string_pretty(&processes).map_err(|e| Error::Failed(e.to_string()))?;
        text.push('\n');
        text
    } else {
        status_table(&processes)
    };
    write_stdout(text.as_bytes())?;
    Ok(0)
}

/// The table of 0.6: NAME PID STATE EXIT [URL] UPTIME.
pub fn status_table(processes: &[ProcessInfo]) -> String {
    let has_urls = processes.iter().any(|p| p.url.is_some());
    let mut out = format!("{:<12} {:<8} {:<10} {:<6}", "NAME", "PID", "STATE", "EXIT");
    if has_urls {
        let _ = write!(out, " {:<30}", "URL");
    }
    out.push_str(" UPTIME\n");
    for p in processes {
        let state = if p.state == "failed" {
            "FAILED"
        } else {
            p.state.as_str()
        };
        let exit = match (&p.exit_code, &p.exit_signal) {
            (Some(code), _) => code.to_string(),
            (None, Some(sig)) => sig.clone(),
            (None, None) => "-".into(),
        };
        let _ = write!(out, "{:<12} {:<8} {:<10} {:<6}", p.name, p.pid, state, exit);
        if has_urls {
            let _ = write!(out, " {:<30}", p.url.as_deref().unwrap_or("-"));
        }
        let uptime = p.uptime_secs.map_or("-".to_string(), format_uptime);
        let _ = writeln!(out, " {uptime}");
    }
    out
}

fn format_uptime(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{}s", secs / 60, secs % 60),
        _ => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
    }
}

/// Write to stdout; a reader that went away (`| head`) ends us quietly.
fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Error::Silent(0)),
        Err(e) => Err(e).context(|| "writing to standard output".into()),
    }
}

fn print_logs(paths: &SessionPaths, args: &LogsArgs) -> Result<i32> {
    let stream = if args.stderr { "stderr" } else { "stdout" };
    let mut out = Vec::new();
    if args.all {
        let names = logged_names(paths, stream)?;
        for name in names {
            let lines = logs::read::tail(&paths.log_file(&name, stream), args.tail, None)
                .unwrap_or_default();
            for line in lines {
                out.extend_from_slice(format!("[{name}] ").as_bytes());
                out.extend_from_slice(&line);
                out.push(b'\n');
            }
        }
    } else {
        let target = args.target.as_deref().unwrap_or_default();
        let name = log_name(paths, target, stream);
        paths::check_process_name(&name).map_err(Error::Failed)?;
        let path = paths.log_file(&name, stream);
        let lines = match logs::read::tail(&path, args.tail, None) {
            Ok(lines) => lines,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotFound(format!(
                    "no logs for process '{target}' ({stream})"
                )));
            }
            Err(e) => return Err(e).context(|| format!("reading {}", path.display())),
        };
        for line in lines {
            out.extend_from_slice(&line);
            out.push(b'\n');
        }
    }
    write_stdout(&out)?;
    Ok(0)
}

/// The log file name for a target: the name itself, or, for an id like `p3` that
/// has no log of its own, the name the daemon knows it by.
fn log_name(paths: &SessionPaths, target: &str, stream: &str) -> String {
    let looks_like_id = target
        .strip_prefix('p')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !looks_like_id || paths.log_file(target, stream).exists() {
        return target.to_string();
    }
    let lookup = || -> Result<Option<String>> {
        let mut conn = Conn::open(paths, false)?;
        let Response::Status { processes } = conn.ask(&Request::Status, Duration::from_secs(10))?
        else {
            return Ok(None);
        };
        Ok(processes
            .into_iter()
            .find(|p| p.id == target)
            .map(|p| p.name))
    };
    lookup()
        .ok()
        .flatten()
        .unwrap_or_else(|| target.to_string())
}

/// Process names that have a current log for `stream`, sorted.
fn logged_names(paths: &SessionPaths, stream: &str) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(&paths.log_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NotFound(format!(
                "no logs for session '{}'",
                paths.session
            )));
        }
        Err(e) => return Err(e).context(|| format!("reading {}", paths.log_dir.display())),
    };
    let suffix = format!(".{stream}");
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(&suffix).map(str::to_string))
        .filter(|n| paths::check_process_name(n).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

fn follow_logs(paths: &SessionPaths, args: LogsArgs) -> Result<i32> {
    let timeout = args.timeout.unwrap_or(Duration::from_secs(30));
    let request = Request::Logs {
        target: args.target.clone(),
        tail: args.tail,
        follow: true,
        stderr: args.stderr,
        all: args.all,
        timeout_secs: Some(timeout.as_secs_f64().ceil() as u64),
        lines: args.lines,
    };
    let mut conn = Conn::open(paths, false)?;
    conn.send(&request)?;
    loop {
        match conn.recv(Some(timeout))? {
            Response::LogLine { process, line, .. } => {
                let text = if args.all {
                    format!("[{process}] {line}\n")
                } else {
                    format!("{line}\n")
                };
                write_stdout(text.as_bytes())?;
            }
            Response::LogEnd => return Ok(0),
            Response::Error { code, message } => return Err(daemon_error(code, message)),
            other => return unexpected(other),
        }
    }
}

fn wait(paths: &SessionPaths, args: WaitArgs) -> Result<i32> {
    let timeout = args.timeout.unwrap_or(Duration::from_secs(30));
    let request = Request::Wait {
        target: args.target.clone(),
        until: args.until,
        regex: args.regex,
        exit: args.exit,
        timeout_secs: Some(timeout.as_secs_f64().ceil() as u64),
        timeout_ms: Some(millis(timeout)),
    };
    let mut conn = Conn::open(paths, false)?;
    match conn.ask(&request, timeout)? {
        Response::WaitMatch { line } => {
            write_stdout(format!("{line}\n").as_bytes())?;
            Ok(0)
        }
        Response::WaitExited {
            exit_code,
            exit_signal,
        } => {
            let text = match (exit_code, exit_signal) {
                (Some(code), _) => format!("exited with code {code}\n"),
                (None, Some(signal)) => format!("exited by {signal}\n"),
                (None, None) => "exited by signal\n".to_string(),
            };
            write_stdout(text.as_bytes())?;
            Ok(0)
        }
        Response::WaitTimeout => Err(Error::Failed(format!(
            "timeout: {} did not {} within {}s",
            args.target,
            if args.exit {
                "exit"
            } else {
                "print a matching line"
            },
            timeout.as_secs_f64()
        ))),
        other => unexpected(other),
    }
}

fn down(paths: &SessionPaths) -> Result<i32> {
    let mut conn = match Conn::open(paths, false) {
        Ok(conn) => conn,
        Err(Error::Failed(msg)) if msg.starts_with("no daemon running") => {
            eprintln!("agent-procs: {msg}; nothing to stop");
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    match conn.ask(&Request::Shutdown, Duration::from_secs(10))? {
        Response::Ok { .. } => {}
        other => return unexpected(other),
    }
    // Return only once the daemon is gone: it closes the connection as it exits.
    let _ = conn
        .reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)));
    let mut rest = Vec::new();
    let _ = conn.reader.read_to_end(&mut rest);
    println!("all processes stopped");
    Ok(0)
}

/// Sessions with a pid file in the runtime dir, sorted, with whether they answer.
fn sessions() -> Result<Vec<(String, bool)>> {
    let dir = paths::runtime_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).context(|| format!("reading {}", dir.display())),
    };
    paths::check_private_dir(&dir)?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".pid").map(str::to_string))
        .filter(|n| paths::check_session_name(n).is_ok())
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let alive = SessionPaths::new(&name).is_ok_and(|p| Conn::connect(&p).is_ok());
            (name, alive)
        })
        .collect())
}

fn session_list() -> Result<i32> {
    let sessions = sessions()?;
    if sessions.is_empty() {
        println!("no active sessions");
        return Ok(0);
    }
    let mut out = format!("{:<20} STATUS\n", "SESSION");
    for (name, alive) in sessions {
        let _ = writeln!(
            out,
            "{name:<20} {}",
            if alive { "running" } else { "stale" }
        );
    }
    write_stdout(out.as_bytes())?;
    Ok(0)
}

fn session_clean() -> Result<i32> {
    for (name, alive) in sessions()? {
        if alive {
            continue;
        }
        let paths = SessionPaths::new(&name)?;
        for file in [&paths.socket, &paths.pid_file, &paths.lock_file] {
            let _ = std::fs::remove_file(file);
        }
        let _ = std::fs::remove_dir_all(&paths.state_dir);
        println!("cleaned stale session: {name}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        name: &str,
        state: &str,
        exit_code: Option<i32>,
        exit_signal: Option<&str>,
    ) -> ProcessInfo {
        ProcessInfo {
            name: name.into(),
            id: "p1".into(),
            pid: 42,
            state: state.into(),
            exit_code,
            uptime_secs: if state == "running" { Some(75) } else { None },
            command: "x".into(),
            port: None,
            url: None,
            restart_count: None,
            max_restarts: None,
            restart_policy: None,
            watched: None,
            exit_signal: exit_signal.map(str::to_string),
            cwd: None,
        }
    }

    #[test]
    fn status_table_has_the_0_6_columns() {
        let table = status_table(&[
            row("web", "running", None, None),
            row("job", "exited", Some(3), None),
            row("hung", "exited", None, Some("SIGKILL")),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "NAME         PID      STATE      EXIT   UPTIME");
        assert_eq!(lines[1], "web          42       running    -      1m15s");
        assert_eq!(lines[2], "job          42       exited     3      -");
        assert_eq!(lines[3], "hung         42       exited     SIGKILL -");
    }

    #[test]
    fn uptimes_read_like_0_6() {
        assert_eq!(format_uptime(5), "5s");
        assert_eq!(format_uptime(125), "2m5s");
        assert_eq!(format_uptime(7260), "2h1m");
    }
}
