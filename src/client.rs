//! The CLI side: connect to the session's daemon (starting it when a command
//! creates processes), send one request, print the answer. `logs` without
//! `--follow` reads the files directly and works without a daemon.

use crate::cli::{Command, Invocation, LogsArgs, RunArgs, Runs, SinceArg, WaitArgs};
use crate::error::{Context, Error, Result};
use crate::logs;
use crate::logs::index::now_ms;
use crate::logs::pattern::Pattern;
use crate::logs::query::{Line, Position, Query, Since, Source};
use crate::paths::{self, SessionPaths};
use crate::protocol::Stream;
use crate::protocol::{ProcessInfo, Request, Response};
use crate::sys;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// How long the CLI waits for a daemon it started to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Slack on top of a request's own deadline before the CLI gives up on the daemon.
const REPLY_SLACK: Duration = Duration::from_secs(30);

/// How a command reports what it did: text, one JSON object, or nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
}

impl Output {
    /// Print `text` (a line), or `json` with `"schema": 1` first; nothing when quiet.
    pub fn say(self, text: &str, json: serde_json::Value) -> Result<()> {
        if self.quiet {
            return Ok(());
        }
        if self.json {
            let mut object = serde_json::Map::new();
            object.insert("schema".into(), 1.into());
            if let serde_json::Value::Object(fields) = json {
                object.extend(fields);
            }
            let line = serde_json::Value::Object(object).to_string();
            return print_line(&line);
        }
        print_line(text)
    }
}

pub fn run(inv: Invocation) -> Result<i32> {
    let out = Output {
        json: inv.json,
        quiet: inv.quiet,
    };
    // Commands that touch no session do not need a valid one.
    match inv.command {
        Command::Config(args) => return crate::config_cmd::run(args),
        Command::Export(args) => {
            let session = inv.session_given.then_some(inv.session.as_str());
            return crate::export_cmd::run(session, args);
        }
        Command::Completions(shell) => {
            print!("{}", crate::completions::script(shell));
            return Ok(0);
        }
        Command::SessionList => return session_list(out),
        Command::Ui => return crate::ui::run(&inv.session),
        Command::Mcp => return crate::mcp::run(&inv.session, inv.session_root),
        Command::SessionClean => return session_clean(),
        Command::Help(usage) => {
            println!("{usage}");
            return Ok(0);
        }
        Command::Version => {
            println!("agent-procs {}", env!("CARGO_PKG_VERSION"));
            return Ok(0);
        }
        Command::Up(args) => {
            let session = inv.session_given.then_some(inv.session.as_str());
            return crate::up_cmd::run(session, inv.session_root, args, out);
        }
        Command::Down { config } if !inv.session_given => {
            // The session the config names, as `up` used; any problem with the
            // file leaves the default (0.6 does the same).
            let session = crate::up_cmd::locate(config).ok().and_then(|path| {
                let named = crate::config::Config::load(&path).ok()?.session?;
                crate::up_cmd::config_session(&named, &path).ok()
            });
            let session = session.map_or(inv.session, |(name, _)| name);
            return down(&SessionPaths::new(&session)?, out);
        }
        _ => {}
    }
    let paths = SessionPaths::new(&inv.session)?.with_root(inv.session_root.clone());
    match inv.command {
        Command::Run(args) => run_process(&paths, args, out),
        Command::Stop { target, timeout } => stop(&paths, target, timeout, out),
        Command::StopAll { timeout } => {
            let request = Request::StopAll {
                timeout_ms: timeout.map(millis),
            };
            print_message(
                &paths,
                &request,
                timeout.unwrap_or(Duration::from_secs(10)),
                out,
            )
        }
        Command::Restart { target } => {
            let mut conn = Conn::open(&paths, false)?;
            let response = conn.ask(&Request::Restart { target }, Duration::from_secs(10))?;
            let now = match &response {
                Response::RunOk { name, .. } if out.json => one_status(&mut conn, name)?,
                _ => None,
            };
            say_started(out, "restarted ", false, response, now.as_ref())
        }
        Command::Status {
            json,
            target,
            resources,
        } => status(&paths, json, target, resources),
        Command::Events { since, json } => events(&paths, since, json),
        Command::Logs(args) if args.follow => follow_logs(&paths, args),
        Command::Logs(args) => print_logs(&paths, &args),
        Command::Wait(args) => wait(&paths, args, out),
        Command::Down { .. } => down(&paths, out),
        Command::SessionList
        | Command::SessionClean
        | Command::Config(_)
        | Command::Export(_)
        | Command::Completions(_)
        | Command::Help(_)
        | Command::Version
        | Command::Up(_)
        | Command::Ui
        | Command::Mcp
        | Command::Daemon { .. } => Err(Error::Failed(
            "internal error: command reached the wrong handler".into(),
        )),
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

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
    let exe = std::env::current_exe().context(|| "finding our own executable".into())?;
    let mut command = std::process::Command::new(&exe);
    if let Some(root) = &paths.root {
        command.current_dir(root);
    }
    let child = command
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

/// The environment a started process gets as its base, as the daemon is told.
/// Only UTF-8 variables can travel in JSON; others are left out.
pub fn caller_env() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

fn run_process(paths: &SessionPaths, args: RunArgs, out: Output) -> Result<i32> {
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
    let base_env = caller_env();
    let overrides: HashMap<String, String> = args.env.into_iter().collect();
    let request = Request::Run {
        command: args.command,
        name: args.name,
        cwd: Some(cwd),
        env: (!overrides.is_empty()).then_some(overrides),
        port: args.port,
        restart: args.restart.map(|r| crate::protocol::RestartPolicy {
            mode: r.mode,
            max_restarts: r.max_restarts,
            restart_delay_ms: r.delay_ms.unwrap_or(1000),
            backoff: r.exponential.then(|| "exponential".to_string()),
        }),
        watch: (!args.watch.is_empty()).then(|| crate::protocol::WatchConfig {
            paths: args.watch,
            ignore: (!args.watch_ignore.is_empty()).then_some(args.watch_ignore),
        }),
        base_env: Some(base_env),
        oneshot: args.oneshot,
        log_max_size: args.log_max_size,
        log_max_files: None,
        stop_timeout_ms: None,
        stop_signal: None,
        depends_on: Vec::new(),
    };
    let mut conn = Conn::open(paths, true)?;
    if args.proxy {
        enable_proxy(&mut conn, None)?;
    }
    let response = conn.ask(&request, Duration::from_secs(10))?;
    say_started(out, "", true, response, None)
}

/// Report the process `run` or `restart` started: `{verb}NAME (id: ID, pid: PID[, URL])`;
/// the JSON adds `state` and `exit_code` from `now`, the process's status.
fn say_started(
    out: Output,
    verb: &str,
    show_url: bool,
    response: Response,
    now: Option<&ProcessInfo>,
) -> Result<i32> {
    let Response::RunOk {
        name,
        id,
        pid,
        port,
        url,
        warning,
    } = response
    else {
        return unexpected(response);
    };
    // On stderr, so the line and the JSON stay as scripts parse them.
    if let Some(w) = &warning {
        eprintln!("agent-procs: warning: {w}");
    }
    let text = match (&url, show_url) {
        (Some(url), true) => format!("{verb}{name} (id: {id}, pid: {pid}, {url})"),
        _ => format!("{verb}{name} (id: {id}, pid: {pid})"),
    };
    let mut json =
        serde_json::json!({"name": name, "id": id, "pid": pid, "port": port, "url": url});
    if let (Some(w), Some(object)) = (warning, json.as_object_mut()) {
        object.insert("warning".into(), w.into());
    }
    if let (Some(p), Some(object)) = (now, json.as_object_mut()) {
        object.insert("state".into(), p.state.clone().into());
        object.insert("exit_code".into(), p.exit_code.into());
    }
    out.say(&text, json)?;
    Ok(0)
}

/// The status of one process, asked on an open connection (None if it is gone).
fn one_status(conn: &mut Conn, name: &str) -> Result<Option<ProcessInfo>> {
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

/// `stop`: the daemon's first line on stdout (`stopped NAME`, `NAME was not
/// running`), what outlived the stop on stderr; the JSON adds the process's name,
/// state and exit code, and the survivors.
fn stop(
    paths: &SessionPaths,
    target: String,
    timeout: Option<Duration>,
    out: Output,
) -> Result<i32> {
    let request = Request::Stop {
        target: target.clone(),
        timeout_ms: timeout.map(millis),
    };
    let mut conn = Conn::open(paths, false)?;
    let message = match conn.ask(&request, timeout.unwrap_or(Duration::from_secs(10)))? {
        Response::Ok { message } => message,
        other => return unexpected(other),
    };
    let headline = warn_survivors(&message);
    if !out.json {
        out.say(headline, serde_json::Value::Null)?;
        return Ok(0);
    }
    let mut json = serde_json::json!({"message": headline});
    if let (Some(p), Some(object)) = (one_status(&mut conn, &target)?, json.as_object_mut()) {
        object.insert("name".into(), p.name.into());
        object.insert("state".into(), p.state.into());
        object.insert("exit_code".into(), p.exit_code.into());
        object.insert("exit_signal".into(), p.exit_signal.into());
        if let Some(survivors) = p.survivors.filter(|s| !s.is_empty()) {
            let list = serde_json::to_value(survivors).unwrap_or_default();
            object.insert("survivors".into(), list);
        }
    }
    out.say("", json)?;
    Ok(0)
}

/// A stop's answer is one line, then a sentence per process that left something
/// running outside its group: those go to stderr, where a person sees them even
/// when stdout is parsed. Returns the first line.
fn warn_survivors(message: &str) -> &str {
    let mut lines = message.lines();
    let headline = lines.next().unwrap_or_default();
    for line in lines.filter(|l| !l.is_empty()) {
        eprintln!("agent-procs: warning: {line}");
    }
    headline
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

fn print_message(
    paths: &SessionPaths,
    request: &Request,
    grace: Duration,
    out: Output,
) -> Result<i32> {
    let mut conn = Conn::open(paths, false)?;
    match conn.ask(request, grace)? {
        Response::Ok { message } => {
            let headline = warn_survivors(&message);
            out.say(headline, serde_json::json!({"message": headline}))?;
            Ok(0)
        }
        other => unexpected(other),
    }
}

/// The `status` request of 0.6: every process, no /proc readings.
pub fn plain_status() -> Request {
    Request::Status {
        target: None,
        resources: false,
    }
}

fn status(
    paths: &SessionPaths,
    json: bool,
    target: Option<String>,
    resources: bool,
) -> Result<i32> {
    let mut conn = Conn::open(paths, false)?;
    let one = target.is_some();
    let request = Request::Status { target, resources };
    let (mut processes, notes) = match conn.ask(&request, Duration::from_secs(10))? {
        Response::Status { processes, notes } => (processes, notes),
        other => return unexpected(other),
    };
    if one {
        let Some(mut p) = processes.pop() else {
            return Err(Error::Failed("unexpected reply to status".into()));
        };
        let text = if json {
            p.schema = Some(1);
            let mut text =
                serde_json::to_string_pretty(&p).map_err(|e| Error::Failed(e.to_string()))?;
            text.push('\n');
            text
        } else {
            status_detail(&p)
        };
        write_stdout(text.as_bytes())?;
        return Ok(0);
    }
    let text = if json {
        for row in &mut processes {
            row.schema = Some(1);
        }
        let mut text =
            serde_json::to_string_pretty(&processes).map_err(|e| Error::Failed(e.to_string()))?;
        text.push('\n');
        text
    } else {
        status_table(&processes, resources)
    };
    write_stdout(text.as_bytes())?;
    // On stderr, so the table and the JSON stay as scripts parse them.
    for note in &notes {
        eprintln!("agent-procs: note: {note}");
    }
    for p in &processes {
        if let Some(conflict) = &p.port_conflict {
            eprintln!("agent-procs: note: {} could not listen: {conflict}", p.name);
        }
        if let Some(survivors) = &p.survivors {
            let list: Vec<String> = survivors
                .iter()
                .map(|s| format!("{} ({})", s.pid, s.command))
                .collect();
            let pids: Vec<String> = survivors.iter().map(|s| s.pid.to_string()).collect();
            eprintln!(
                "agent-procs: note: {} outlived its stop outside its process group: {}; end with: kill {}",
                p.name,
                list.join(", "),
                pids.join(" ")
            );
        }
    }
    Ok(0)
}

/// Stream the daemon's events until it exits (or stdout closes).
fn events(paths: &SessionPaths, since: Option<u64>, json: bool) -> Result<i32> {
    let mut conn = Conn::open(paths, false)?;
    conn.send(&Request::Events { since })?;
    let mut out = Vec::new();
    loop {
        let response = match conn.recv(None) {
            Ok(response) => response,
            // The daemon exited: the stream is over, as for `tail -f` of a removed file.
            Err(_) if out.is_empty() && conn.reader.buffer().is_empty() => return Ok(0),
            Err(e) => return Err(e),
        };
        match &response {
            Response::Event { .. } if json => {
                serde_json::to_writer(&mut out, &response)
                    .map_err(|e| Error::Failed(e.to_string()))?;
                out.push(b'\n');
            }
            Response::Event { .. } => {
                out.extend_from_slice(event_text(&response).as_bytes());
                out.push(b'\n');
            }
            Response::Error { code, message } => {
                return Err(daemon_error(*code, message.clone()));
            }
            _ => return unexpected(response),
        }
        if conn.reader.buffer().is_empty() {
            write_stdout(&out)?;
            out.clear();
        }
    }
}

/// `2026-11-26T02:31:00.123Z 12 api exited code 1`, and what else the event says.
fn event_text(event: &Response) -> String {
    let Response::Event {
        seq,
        at_ms,
        name,
        event,
        pid,
        exit_code,
        exit_signal,
        delay_ms,
        detail,
        ..
    } = event
    else {
        return String::new();
    };
    let mut text = format!("{} {seq} ", crate::timefmt::rfc3339_ms(*at_ms));
    if !name.is_empty() {
        text.push_str(name);
        text.push(' ');
    }
    text.push_str(event);
    if let Some(pid) = pid {
        text.push_str(&format!(" pid {pid}"));
    }
    match (exit_code, exit_signal) {
        (Some(code), _) => text.push_str(&format!(" code {code}")),
        (None, Some(signal)) => text.push_str(&format!(" {signal}")),
        (None, None) => {}
    }
    if let Some(ms) = delay_ms {
        let delay = crate::timefmt::seconds(Duration::from_millis(*ms));
        text.push_str(&format!(" restart in {delay}"));
    }
    if let Some(detail) = detail {
        text.push_str(&format!(" ({detail})"));
    }
    text
}

/// The table of 0.6: NAME PID STATE EXIT [URL] UPTIME; with `resources`,
/// PROCS RSS CPU LISTEN after it, so the 0.6 columns stay where they were.
pub fn status_table(processes: &[ProcessInfo], resources: bool) -> String {
    let has_urls = processes.iter().any(|p| p.url.is_some());
    // 0.6's columns; RESTARTS only when some process has a policy.
    let has_restarts = processes
        .iter()
        .any(|p| p.restart_policy.is_some() || p.restart_count.is_some());
    let has_watch = processes.iter().any(|p| p.watched == Some(true));
    let exit_text = |p: &ProcessInfo| match (&p.exit_code, &p.exit_signal) {
        (Some(code), _) => code.to_string(),
        (None, Some(sig)) => sig.clone(),
        (None, None) => "-".into(),
    };
    // 0.6's width, widened when a signal name (SIGTERM) would not fit.
    let ew = processes
        .iter()
        .map(|p| exit_text(p).len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!(
        "{:<12} {:<8} {:<10} {:<ew$}",
        "NAME", "PID", "STATE", "EXIT"
    );
    if has_restarts {
        let _ = write!(out, " {:<10}", "RESTARTS");
    }
    if has_watch {
        let _ = write!(out, " {:<6}", "WATCH");
    }
    if has_urls {
        let _ = write!(out, " {:<30}", "URL");
    }
    if resources {
        out.push_str(" UPTIME   PROCS RSS      CPU    LISTEN\n");
    } else {
        out.push_str(" UPTIME\n");
    }
    for p in processes {
        let state = if p.state == "failed" {
            "FAILED"
        } else {
            p.state.as_str()
        };
        let exit = exit_text(p);
        let _ = write!(
            out,
            "{:<12} {:<8} {:<10} {:<ew$}",
            p.name, p.pid, state, exit
        );
        if has_restarts {
            let restarts = match (p.restart_count, p.max_restarts) {
                (Some(c), Some(m)) => format!("{c}/{m}"),
                (Some(c), None) => c.to_string(),
                _ => "-".into(),
            };
            let _ = write!(out, " {restarts:<10}");
        }
        if has_watch {
            let watch = if p.watched == Some(true) { "*" } else { "-" };
            let _ = write!(out, " {watch:<6}");
        }
        if has_urls {
            let _ = write!(out, " {:<30}", p.url.as_deref().unwrap_or("-"));
        }
        let uptime = p.uptime_secs.map_or("-".to_string(), format_uptime);
        if resources {
            let procs = p.process_count.map_or("-".into(), |n| n.to_string());
            let rss = p.rss_bytes.map_or("-".into(), format_bytes);
            let cpu = p.cpu_percent.map_or("-".into(), |c| format!("{c:.1}%"));
            let listen = match &p.listening {
                Some(l) if !l.is_empty() => l.join(","),
                _ => "-".into(),
            };
            let _ = writeln!(out, " {uptime:<8} {procs:<5} {rss:<8} {cpu:<6} {listen}");
        } else {
            let _ = writeln!(out, " {uptime}");
        }
    }
    out
}

/// `812K`, `23.4M`, `1.2G`: resident memory, as ps and top print it.
fn format_bytes(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if b < K * K {
        format!("{}K", (b / K).round() as u64)
    } else if b < K * K * K {
        format!("{:.1}M", b / K / K)
    } else {
        format!("{:.1}G", b / K / K / K)
    }
}

/// `status NAME`: one process in full, a field per line.
fn status_detail(p: &ProcessInfo) -> String {
    let mut out = String::new();
    let mut field = |key: &str, value: &str| {
        let mut lines = value.lines();
        let _ = writeln!(out, "{key:<14}{}", lines.next().unwrap_or(""));
        for line in lines {
            let _ = writeln!(out, "{:<14}{line}", "");
        }
    };
    field("name", &format!("{} ({})", p.name, p.id));
    let mut state = p.state.clone();
    match (&p.exit_code, &p.exit_signal) {
        (Some(code), _) => state.push_str(&format!(", exit code {code}")),
        (None, Some(sig)) => state.push_str(&format!(", killed by {sig}")),
        _ => {}
    }
    if let Some(ms) = p.next_restart_in_ms {
        state.push_str(&format!(
            ", restarting in {}",
            crate::timefmt::seconds(Duration::from_millis(ms))
        ));
    }
    field("state", &state);
    if p.pid != 0 {
        let mut pid = format!("{}", p.pid);
        if let Some(g) = p.pgid {
            pid.push_str(&format!(", process group {g}"));
        }
        if let Some(n) = p.process_count {
            let s = if n == 1 { "" } else { "es" };
            pid.push_str(&format!(" of {n} process{s}"));
        }
        field("pid", &pid);
    }
    if let Some(up) = p.uptime_secs {
        field("uptime", &format_uptime(up));
    }
    field("command", &p.command);
    if let Some(cwd) = &p.cwd {
        field("cwd", cwd);
    }
    if let Some(keys) = &p.env_keys {
        field(
            "env",
            &if keys.is_empty() {
                "-".to_string()
            } else {
                keys.join(", ")
            },
        );
    }
    if let Some(port) = p.port {
        match &p.url {
            Some(url) => field("port", &format!("{port} ({url})")),
            None => field("port", &port.to_string()),
        }
    }
    if let Some(listening) = &p.listening {
        field(
            "listening",
            &if listening.is_empty() {
                "-".to_string()
            } else {
                listening.join(", ")
            },
        );
    }
    if let Some(rss) = p.rss_bytes {
        field("memory", &format!("{} resident", format_bytes(rss)));
    }
    if let Some(cpu) = p.cpu_percent {
        field("cpu", &format!("{cpu:.1}%"));
    }
    if let Some(policy) = &p.restart_policy {
        let count = match (p.restart_count, p.max_restarts) {
            (Some(c), Some(m)) => format!(", {c}/{m} restarts"),
            (Some(c), None) => format!(", {c} restarts"),
            _ => String::new(),
        };
        field("restart", &format!("{policy}{count}"));
    }
    if let Some(exits) = p.last_exits.as_ref().filter(|e| !e.is_empty()) {
        let lines: Vec<String> = exits
            .iter()
            .map(|e| {
                let how = match (&e.code, &e.signal) {
                    (Some(c), _) => format!("exit code {c}"),
                    (None, Some(s)) => format!("killed by {s}"),
                    (None, None) => "-".into(),
                };
                format!("{}  {how}  {}", e.time, e.reason)
            })
            .collect();
        field("last exits", &lines.join("\n"));
    }
    if let Some(conflict) = &p.port_conflict {
        field("port conflict", conflict);
    }
    if let Some(s) = p.survivors.as_ref().filter(|s| !s.is_empty()) {
        let list: Vec<String> = s
            .iter()
            .map(|s| format!("{} ({})", s.pid, s.command))
            .collect();
        field("survivors", &list.join("\n"));
    }
    if let Some(files) = &p.log_files {
        field("logs", &files.join("\n"));
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

/// One line on stdout; a closed stdout ends the program quietly.
pub fn print_line(text: &str) -> Result<()> {
    write_stdout(format!("{text}\n").as_bytes())
}

/// The last `n` lines of the current run of `name`, both streams in arrival
/// order, stderr lines marked `err| `.
pub fn tail_of_run(paths: &SessionPaths, name: &str, n: usize) -> Result<Vec<u8>> {
    paths::check_state_dirs(paths)?;
    let mut sources = Vec::new();
    for stream in [Stream::Stdout, Stream::Stderr] {
        let path = paths.log_file(name, stream.name());
        match Source::open(name, stream, &path) {
            Ok(source) => sources.push(source),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context(|| format!("reading {}", path.display())),
        }
    }
    let query = Query {
        tail: Some(n),
        since: Since::Run,
        after: None,
        grep: None,
        plain: None,
        context: 0,
    };
    let lines = logs::query::run(&sources, &query)
        .context(|| format!("reading {}", paths.log_dir.display()))?;
    let mut out = Vec::new();
    for line in &lines {
        if sources
            .get(line.source)
            .is_some_and(|s| s.stream == Stream::Stderr)
        {
            out.extend_from_slice(b"err| ");
        }
        out.extend_from_slice(&line.bytes);
        out.push(b'\n');
    }
    Ok(out)
}

/// The stored lines `logs` (without `--follow`) selects for `args`, and the
/// sources they came from; shared with the MCP server's `logs` tool.
pub fn read_logs(paths: &SessionPaths, args: &LogsArgs) -> Result<LogsRead> {
    // Read without a daemon: the same checks it makes, or we would print what
    // another user planted in a dir open to them.
    paths::check_state_dirs(paths)?;
    let streams: &[Stream] = match (args.both, args.stderr) {
        (true, _) => &[Stream::Stdout, Stream::Stderr],
        (false, true) => &[Stream::Stderr],
        (false, false) => &[Stream::Stdout],
    };
    let names = match &args.target {
        Some(target) if !args.all => {
            let name = log_name(paths, target, streams[0].name());
            paths::check_process_name(&name).map_err(Error::Failed)?;
            vec![name]
        }
        _ => daemon_names(paths, streams)?,
    };
    let mut sources = Vec::new();
    for name in &names {
        for &stream in streams {
            let path = paths.log_file(name, stream.name());
            match Source::open(name, stream, &path) {
                Ok(source) => sources.push(source),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context(|| format!("reading {}", path.display())),
            }
        }
    }
    // The runs covered: the latest by default; every run from the position
    // that --since or --after names.
    let runs = match args.runs {
        Some(Runs::All) => None,
        Some(Runs::Last(n)) => Some(n),
        None if args.since.is_some() || args.after.is_some() => None,
        None => Some(1),
    };
    let mut histories: HashMap<String, logs::runs::History> = HashMap::new();
    for name in &names {
        let mine: Vec<&Source> = sources.iter().filter(|s| &s.process == name).collect();
        if !mine.is_empty() {
            histories.insert(
                name.clone(),
                logs::runs::History::load(&paths.log_dir, name, &mine),
            );
        }
    }
    for source in &mut sources {
        if let Some(history) = histories.get(&source.process) {
            source.floor = history.floor(runs);
        }
    }
    if sources.is_empty() && !args.all {
        let shown = streams
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(" or ");
        let target = args.target.as_deref().unwrap_or_default();
        return Err(Error::NotFound(format!(
            "no logs for process '{target}' ({shown})"
        )));
    }

    let matcher = match &args.grep {
        Some(text) => {
            Some(Pattern::new(text, args.regex, args.ignore_case).map_err(Error::Failed)?)
        }
        None => None,
    };
    let grep = matcher.as_ref().map(|m| move |line: &[u8]| m.matches(line));
    let reading_a_range = args.since.is_some() || args.after.is_some() || args.grep.is_some();
    let since = match args.since {
        None | Some(SinceArg::Start) => Since::Everything,
        Some(SinceArg::Restart) => Since::Run,
        Some(SinceArg::Ago(span)) => Since::Time(now_ms().saturating_sub(span.as_millis() as u64)),
    };
    let query = Query {
        tail: (args.tail_given || !reading_a_range).then_some(args.tail),
        since,
        after: args.after.as_deref().and_then(Position::parse),
        grep: grep.as_ref().map(|g| g as &dyn Fn(&[u8]) -> bool),
        // Text every matching line contains, so blocks without it are skipped fast.
        plain: matcher.as_ref().and_then(Pattern::literal),
        context: args.context,
    };
    let lines = logs::query::run(&sources, &query)
        .context(|| format!("reading {}", paths.log_dir.display()))?;
    Ok(LogsRead {
        sources,
        lines,
        histories,
    })
}

/// What `read_logs` found: the lines, the sources they came from, and each
/// process's runs (to mark where a run starts).
pub struct LogsRead {
    pub sources: Vec<Source>,
    pub lines: Vec<Line>,
    pub histories: HashMap<String, logs::runs::History>,
}

impl LogsRead {
    /// For each line, the run starts to mark before it (for `render_line`).
    pub fn marks(&self) -> Vec<logs::runs::RunMark<'_>> {
        logs::runs::marks(
            &self.lines,
            |i| self.sources.get(i).map(|s| s.process.as_str()),
            &self.histories,
        )
    }
}

fn print_logs(paths: &SessionPaths, args: &LogsArgs) -> Result<i32> {
    let read = read_logs(paths, args)?;
    let marks = read.marks();
    let (sources, lines) = (&read.sources, &read.lines);
    let mut rendered: Vec<Vec<u8>> = lines
        .iter()
        .zip(&marks)
        .map(|(line, mark)| render_line(line, sources, args, mark))
        .collect();
    if let Some(budget) = args.max_bytes {
        let mut total = 0;
        let keep = rendered.iter().rev().take_while(|r| {
            total += r.len();
            total <= budget
        });
        let kept = keep.count();
        let cut = rendered.len() - kept;
        if cut > 0 {
            let bytes: usize = rendered[..cut].iter().map(Vec::len).sum();
            eprintln!(
                "agent-procs: --max-bytes {budget}: left out the {cut} oldest lines ({bytes} bytes); \
                 narrow with --tail, --since or --grep"
            );
            rendered.drain(..cut);
        }
    }
    let out: Vec<u8> = rendered.concat();
    write_stdout(&out)?;
    if args.cursor {
        let cursor = match lines.last() {
            Some(line) => line.pos.cursor(),
            None => args
                .after
                .clone()
                .unwrap_or_else(|| Position::default().cursor()),
        };
        eprintln!("cursor: {cursor}");
    }
    Ok(grep_status(args, lines.iter().any(|l| !l.context)))
}

/// The exit status of `logs`: with `--grep`, 1 when no line matched, as grep does.
fn grep_status(args: &LogsArgs, matched: bool) -> i32 {
    i32::from(args.grep.is_some() && !matched)
}

/// One output line: `[time ]` + the process/stream mark + the bytes, or JSON;
/// in text, the run starts it follows are marked first.
pub fn render_line(
    line: &Line,
    sources: &[Source],
    args: &LogsArgs,
    mark: &logs::runs::RunMark<'_>,
) -> Vec<u8> {
    let Some(source) = sources.get(line.source) else {
        return Vec::new();
    };
    let time = crate::timefmt::rfc3339_ms(line.time_ms);
    if args.json {
        let record = JsonLine {
            schema: 1,
            process: &source.process,
            stream: source.stream.name(),
            seq: line.pos.seq,
            time: &time,
            line: &String::from_utf8_lossy(&line.bytes),
            cursor: line.pos.cursor(),
            context: line.context.then_some(true),
            run: mark.number,
        };
        let mut out = serde_json::to_vec(&record).unwrap_or_default();
        out.push(b'\n');
        return out;
    }
    let mut out = Vec::with_capacity(line.bytes.len() + 48);
    if line.group_start {
        out.extend_from_slice(b"--\n");
    }
    for run in &mark.starts {
        if args.all {
            out.extend_from_slice(format!("[{}] ", source.process).as_bytes());
        }
        out.extend_from_slice(logs::runs::marker(run).as_bytes());
        out.push(b'\n');
    }
    if args.timestamps {
        out.extend_from_slice(time.as_bytes());
        out.push(b' ');
    }
    let err = args.both && source.stream == Stream::Stderr;
    match (args.all, err) {
        (true, true) => out.extend_from_slice(format!("[{}:err] ", source.process).as_bytes()),
        (true, false) => out.extend_from_slice(format!("[{}] ", source.process).as_bytes()),
        (false, true) => out.extend_from_slice(b"err| "),
        (false, false) => {}
    }
    out.extend_from_slice(&line.bytes);
    out.push(b'\n');
    out
}

/// One line of `logs --json`, fields in the documented order.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    schema: u32,
    process: &'a str,
    stream: &'a str,
    seq: u64,
    time: &'a str,
    line: &'a str,
    cursor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<bool>,
    /// The number of the run the line belongs to, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<u64>,
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
        let Response::Status { processes, .. } =
            conn.ask(&plain_status(), Duration::from_secs(10))?
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

/// What `logs --all` covers: the processes of the running daemon, or of the
/// last one (as its state.json names them); when that is not recorded (a
/// daemon of an older version), every name with a log.
fn daemon_names(paths: &SessionPaths, streams: &[Stream]) -> Result<Vec<String>> {
    match logs::runs::daemon_names(&paths.state_file()) {
        Some(mut names) => {
            names.retain(|n| paths::check_process_name(n).is_ok());
            names.sort_unstable();
            names.dedup();
            Ok(names)
        }
        None => logged_names(paths, streams),
    }
}

/// Process names that have a current log for one of `streams`, sorted.
fn logged_names(paths: &SessionPaths, streams: &[Stream]) -> Result<Vec<String>> {
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
    let files: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let mut names: Vec<String> = files
        .iter()
        .filter_map(|f| {
            streams
                .iter()
                .find_map(|s| f.strip_suffix(&format!(".{}", s.name())))
        })
        .filter(|n| paths::check_process_name(n).is_ok())
        .map(str::to_string)
        .collect();
    names.sort_unstable();
    names.dedup();
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
        both: args.both,
        grep: args.grep.clone(),
        regex: args.regex,
        ignore_case: args.ignore_case,
        chunked: true,
        // Also asks the daemon to mark run starts.
        runs: Some(match args.runs {
            None => 1,
            Some(Runs::Last(n)) => n as u64,
            Some(Runs::All) => 0,
        }),
    };
    let mut conn = Conn::open(paths, false)?;
    conn.send(&request)?;
    let mut matched = false;
    // Lines are gathered while more are already waiting in the socket buffer and
    // written out in one go: a line at a time would make the reader the bottleneck.
    let mut out = Vec::new();
    loop {
        let response = match conn.recv(Some(timeout)) {
            Ok(response) => response,
            Err(e) => {
                write_stdout(&out)?;
                return Err(e);
            }
        };
        match response {
            Response::LogLine {
                process,
                line,
                stream,
            } => {
                matched = true;
                push_followed(&mut out, &args, &process, stream, &line);
                // Nothing more waiting: show what we have before blocking again.
                if conn.reader.buffer().is_empty() || out.len() > 1 << 20 {
                    write_stdout(&out)?;
                    out.clear();
                }
            }
            Response::LogChunk {
                process,
                lines,
                stream,
            } => {
                matched = true;
                for line in lines.split('\n') {
                    push_followed(&mut out, &args, &process, stream, line);
                }
                if conn.reader.buffer().is_empty() || out.len() > 1 << 20 {
                    write_stdout(&out)?;
                    out.clear();
                }
            }
            Response::LogEnd => {
                write_stdout(&out)?;
                return Ok(grep_status(&args, matched));
            }
            Response::Error { code, message } => {
                write_stdout(&out)?;
                return Err(daemon_error(code, message));
            }
            other => {
                write_stdout(&out)?;
                return unexpected(other);
            }
        }
    }
}

/// One followed line as printed: marked by process and stream as asked.
fn push_followed(out: &mut Vec<u8>, args: &LogsArgs, process: &str, stream: Stream, line: &str) {
    let err = args.both && stream == Stream::Stderr;
    match (args.all, err) {
        (true, true) => out.extend_from_slice(format!("[{process}:err] ").as_bytes()),
        (true, false) => out.extend_from_slice(format!("[{process}] ").as_bytes()),
        (false, true) => out.extend_from_slice(b"err| "),
        (false, false) => {}
    }
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
}

fn wait(paths: &SessionPaths, args: WaitArgs, out: Output) -> Result<i32> {
    let timeout = args.timeout.unwrap_or(Duration::from_secs(30));
    let request = Request::Wait {
        target: args.target.clone(),
        until: args.until,
        regex: args.regex,
        exit: args.exit,
        timeout_secs: Some(timeout.as_secs_f64().ceil() as u64),
        timeout_ms: Some(millis(timeout)),
        port: args.port,
        http: args.http.clone(),
    };
    let mut conn = Conn::open(paths, false)?;
    match conn.ask(&request, timeout)? {
        Response::WaitMatch { line } => {
            out.say(&line, serde_json::json!({"event": "match", "line": line}))?;
            Ok(0)
        }
        Response::WaitExited {
            exit_code,
            exit_signal,
        } => {
            let text = match (exit_code, &exit_signal) {
                (Some(code), _) => format!("exited with code {code}"),
                (None, Some(signal)) => format!("exited by {signal}"),
                (None, None) => "exited by signal".to_string(),
            };
            let json = serde_json::json!({"event": "exit", "exit_code": exit_code, "exit_signal": exit_signal});
            if args.success && exit_code != Some(0) {
                // The exit is what was asked about, so it is said as usual; the
                // status says it was not a success.
                out.say(&text, json)?;
                return Err(Error::Failed(format!(
                    "{} did not succeed: it {text}",
                    args.target
                )));
            }
            out.say(&text, json)?;
            Ok(0)
        }
        Response::WaitTimeout => {
            let what = match (&args.port, &args.http) {
                (Some(port), _) => format!("accept connections on port {port}"),
                (_, Some(url)) => format!("answer {url} with 2xx or 3xx"),
                _ if args.exit => "exit".into(),
                _ => "print a matching line".into(),
            };
            if out.json {
                out.say("", serde_json::json!({"event": "timeout"}))?;
            }
            Err(Error::Failed(format!(
                "timeout: {} did not {what} within {}",
                args.target,
                crate::timefmt::seconds(timeout)
            )))
        }
        other => unexpected(other),
    }
}

fn down(paths: &SessionPaths, out: Output) -> Result<i32> {
    let mut conn = match Conn::open(paths, false) {
        Ok(conn) => conn,
        Err(Error::Failed(msg)) if msg.starts_with("no daemon running") => {
            eprintln!("agent-procs: {msg}; nothing to stop");
            if out.json {
                let json = serde_json::json!({"message": "nothing to stop", "stopped": false});
                out.say("", json)?;
            }
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    match conn.ask(&Request::Shutdown, Duration::from_secs(10))? {
        Response::Ok { message } => {
            warn_survivors(&message);
        }
        other => return unexpected(other),
    }
    // Return only once the daemon is gone: it closes the connection as it exits.
    let _ = conn
        .reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)));
    let mut rest = Vec::new();
    let _ = conn.reader.read_to_end(&mut rest);
    let json = serde_json::json!({"message": "all processes stopped", "stopped": true});
    out.say("all processes stopped", json)?;
    Ok(0)
}

/// Sessions with a pid file in the runtime dir, sorted, with whether they answer.
fn sessions() -> Result<Vec<(String, bool)>> {
    let dir = paths::runtime_dir();
    if std::fs::symlink_metadata(&dir).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        return Ok(Vec::new());
    }
    // Checked before reading: a file or a link there gets the same refusal as elsewhere.
    paths::check_private_dir(&dir)?;
    let entries = std::fs::read_dir(&dir).context(|| format!("reading {}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".pid").map(str::to_string))
        .filter(|n| paths::check_session_name(n).is_ok())
        .collect();
    names.sort_unstable();
    Ok(names
        .into_iter()
        .map(|name| {
            let alive = SessionPaths::new(&name).is_ok_and(|p| Conn::connect(&p).is_ok());
            (name, alive)
        })
        .collect())
}

fn session_list(out: Output) -> Result<i32> {
    let sessions = sessions()?;
    let root_of = |name: &str| -> Option<String> {
        let paths = SessionPaths::new(name).ok()?;
        paths::check_state_dirs(&paths).ok()?;
        let mut text = Vec::new();
        io::Read::read_to_end(
            &mut logs::read::open_log(&paths.state_file()).ok()?,
            &mut text,
        )
        .ok()?;
        // The first value: a longer older table may trail it (see daemon/state.rs).
        let state = serde_json::Deserializer::from_slice(&text)
            .into_iter::<serde_json::Value>()
            .next()?
            .ok()?;
        state["root"].as_str().map(str::to_string)
    };
    if out.json || out.quiet {
        let list: Vec<serde_json::Value> = sessions
            .iter()
            .map(|(name, alive)| {
                serde_json::json!({"name": name, "running": alive, "root": root_of(name)})
            })
            .collect();
        out.say("", serde_json::json!({"sessions": list}))?;
        return Ok(0);
    }
    if sessions.is_empty() {
        println!("no active sessions");
        return Ok(0);
    }
    let mut out = format!("{:<20} {:<8} ROOT\n", "SESSION", "STATUS");
    for (name, alive) in sessions {
        let root = root_of(&name).unwrap_or_else(|| "-".into());
        let status = if alive { "running" } else { "stale" };
        let _ = writeln!(out, "{name:<20} {status:<8} {root}");
    }
    write_stdout(out.as_bytes())?;
    Ok(0)
}

/// Every session with a socket, pid file or lock file in the runtime dir whose
/// daemon is verifiably gone loses them and its state directory; each is named.
fn session_clean() -> Result<i32> {
    let dir = paths::runtime_dir();
    if std::fs::symlink_metadata(&dir).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        return Ok(0);
    }
    paths::check_private_dir(&dir)?;
    let entries = std::fs::read_dir(&dir).context(|| format!("reading {}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| {
            let (name, ext) = f.rsplit_once('.')?;
            ["pid", "sock", "lock"]
                .contains(&ext)
                .then(|| name.to_string())
        })
        .filter(|n| paths::check_session_name(n).is_ok())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut text = String::new();
    for name in names {
        let Ok(paths) = SessionPaths::new(&name) else {
            continue;
        };
        match crate::session::clean(&paths)? {
            crate::session::Cleaned::Running => {}
            crate::session::Cleaned::Starting => {
                eprintln!("agent-procs: note: session '{name}' is being started; left alone");
            }
            crate::session::Cleaned::Removed { removed, kept } => {
                let list: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
                if !list.is_empty() {
                    // 0.6's line, exactly, on stdout (its tests and scripts compare
                    // it); what went, on stderr.
                    let _ = writeln!(text, "cleaned stale session: {name}");
                    eprintln!(
                        "agent-procs: note: session '{name}': removed {}",
                        list.join(", ")
                    );
                }
                for what in kept {
                    eprintln!("agent-procs: note: session '{name}': left {what}");
                }
            }
        }
    }
    write_stdout(text.as_bytes())?;
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
            ..ProcessInfo::default()
        }
    }

    #[test]
    fn status_table_has_the_0_6_columns() {
        let table = status_table(
            &[
                row("web", "running", None, None),
                row("job", "exited", Some(3), None),
            ],
            false,
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "NAME         PID      STATE      EXIT   UPTIME");
        assert_eq!(lines[1], "web          42       running    -      1m15s");
        assert_eq!(lines[2], "job          42       exited     3      -");
        // A signal name widens EXIT so that UPTIME stays in line.
        let table = status_table(
            &[
                row("web", "running", None, None),
                row("hung", "exited", None, Some("SIGKILL")),
            ],
            false,
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "NAME         PID      STATE      EXIT    UPTIME");
        assert_eq!(lines[1], "web          42       running    -       1m15s");
        assert_eq!(lines[2], "hung         42       exited     SIGKILL -");
    }

    #[test]
    fn resource_columns_follow_uptime() {
        let mut web = row("web", "running", None, None);
        web.process_count = Some(2);
        web.rss_bytes = Some(25 * 1024 * 1024 + 400 * 1024);
        web.cpu_percent = Some(1.5);
        web.listening = Some(vec!["127.0.0.1:3000".into(), "[::]:3000".into()]);
        let table = status_table(&[web, row("job", "exited", Some(3), None)], true);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "NAME         PID      STATE      EXIT   UPTIME   PROCS RSS      CPU    LISTEN"
        );
        assert_eq!(
            lines[1],
            "web          42       running    -      1m15s    2     25.4M    1.5%   127.0.0.1:3000,[::]:3000"
        );
        assert_eq!(
            lines[2],
            "job          42       exited     3      -        -     -        -      -"
        );
        assert_eq!(format_bytes(812 * 1024), "812K");
        assert_eq!(format_bytes(3 << 30), "3.0G");
    }

    #[test]
    fn one_process_in_full_names_env_keys_only() {
        let mut p = row("api", "running", None, None);
        p.env_keys = Some(vec!["PORT".into(), "SECRET".into()]);
        p.log_files = Some(vec!["/s/api.stdout".into(), "/s/api.stderr".into()]);
        p.listening = Some(vec![]);
        let text = status_detail(&p);
        assert!(text.contains("env           PORT, SECRET\n"), "{text}");
        assert!(
            text.contains("logs          /s/api.stdout\n              /s/api.stderr\n"),
            "{text}"
        );
        assert!(text.contains("listening     -\n"), "{text}");
    }

    #[test]
    fn uptimes_read_like_0_6() {
        assert_eq!(format_uptime(5), "5s");
        assert_eq!(format_uptime(125), "2m5s");
        assert_eq!(format_uptime(7260), "2h1m");
    }
}
