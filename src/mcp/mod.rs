//! `agent-procs mcp`: a Model Context Protocol server on stdin and stdout, in
//! the CLI process, as a client of the session's daemon. One mio loop reads
//! stdin, a signal pipe and one daemon connection per pending tool call (so a
//! `wait` never holds up a `status`, and a cancelled call just closes its
//! connection). `jsonrpc` frames messages; `tools` knows the tools.

mod jsonrpc;
mod tools;

use crate::client::Conn;
use crate::error::{Context, Error, Result};
use crate::paths::SessionPaths;
use crate::protocol::Response;
use jsonrpc::{Fault, Message};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use serde_json::{Map, Value};
use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tools::{Job, Outcome, Plan, Step};

const STDIN: Token = Token(0);
const SIGNALS: Token = Token(1);
/// Daemon connections count up from here, never reused.
const FIRST_CALL: usize = 16;

/// Longest message taken from the client; longer ones are answered and skipped.
const MAX_MESSAGE: usize = 4 << 20;
/// What one read takes, from stdin or the daemon. Reads loop until nothing is
/// left, so a small buffer only costs more calls on long messages, and it keeps
/// the stack (every page of it resident once touched) small.
const READ_CHUNK: usize = 8 * 1024;
/// How often a pending `wait` reports progress to a client that asked for it.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Revisions of the `initialize` handshake spoken here, newest first; a client
/// asking for another gets the newest, and decides whether it can go on.
pub const VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The revision of per-request envelopes (no `initialize`), spoken as well.
pub const MODERN: &str = "2026-07-28";
/// The `data` of -32022: what a per-request envelope may name.
const SUPPORTED: &str = r#"{"supported":["2026-07-28"]}"#;
/// Where a 2026-07-28 request names its revision, in `params._meta`.
const ENVELOPE_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// The revision to answer a client that asked for `asked`.
pub fn negotiate(asked: &str) -> &'static str {
    VERSIONS
        .iter()
        .find(|v| **v == asked)
        .copied()
        .unwrap_or(VERSIONS[0])
}

/// From 2025-11-25 on, arguments that fail their checks are tool errors the
/// model can read and correct; before, they are JSON-RPC invalid params.
fn bad_arguments_are_tool_errors(version: &str) -> bool {
    version >= "2025-11-25"
}

pub fn run(session: &str, root: Option<PathBuf>) -> Result<i32> {
    let paths = SessionPaths::new(session)?.with_root(root);
    Server::new(paths)?.serve()
}

/// One tool call waiting for the daemon.
struct Call {
    token: Token,
    /// The request's id, as JSON text.
    id: String,
    job: Job,
    stream: mio::net::UnixStream,
    inbuf: Vec<u8>,
    /// The client's `progressToken` (JSON text), when it wants progress.
    progress: Option<String>,
    progress_sent: u64,
    started: Instant,
    next_progress: Option<Instant>,
}

struct Server {
    paths: SessionPaths,
    poll: Poll,
    stdin: std::fs::File,
    inbuf: Vec<u8>,
    /// Skipping the rest of an oversized message.
    discarding: bool,
    /// The negotiated revision, once `initialize` was answered or a request
    /// came with a 2026-07-28 envelope.
    version: Option<&'static str>,
    /// Speaking 2026-07-28: every request carries its envelope, results are tagged.
    modern: bool,
    /// Pending calls, few at a time.
    calls: Vec<Call>,
    /// The client closed its end: no more input; exit once `calls` is empty.
    input_closed: bool,
    next_token: usize,
    signals: mio::net::UnixStream,
}

impl Server {
    fn new(paths: SessionPaths) -> Result<Server> {
        let poll = Poll::new().context(|| "creating the event loop".into())?;
        // A duplicate of fd 0, read only when poll says it is readable, so its
        // blocking mode (shared with whoever started us) is left alone. Not
        // through io::stdin(), whose buffered global this never needs.
        // SAFETY: fd 0 is only borrowed for the duplication; a closed one
        // makes that fail with EBADF.
        let stdin = unsafe { BorrowedFd::borrow_raw(libc::STDIN_FILENO) }
            .try_clone_to_owned()
            .context(|| "opening standard input".into())?;
        let stdin = std::fs::File::from(stdin);
        let mut signals = crate::daemon::signal_pipe(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP])
            .context(|| "handling signals".into())?;
        let registry = poll.registry();
        registry
            .register(
                &mut SourceFd(&libc::STDIN_FILENO),
                STDIN,
                Interest::READABLE,
            )
            .context(|| "watching standard input".into())?;
        registry
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .context(|| "watching signals".into())?;
        Ok(Server {
            paths,
            poll,
            stdin,
            inbuf: Vec::new(),
            discarding: false,
            version: None,
            modern: false,
            calls: Vec::new(),
            input_closed: false,
            next_token: FIRST_CALL,
            signals,
        })
    }

    fn serve(&mut self) -> Result<i32> {
        let mut events = Events::with_capacity(64);
        loop {
            let now = Instant::now();
            let timeout = self
                .calls
                .iter()
                .filter_map(|c| c.next_progress)
                .min()
                .map(|t| t.saturating_duration_since(now));
            match self.poll.poll(&mut events, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other.context(|| "waiting for events".into())?,
            }
            for event in events.iter() {
                match event.token() {
                    // End of input: the client is gone. What runs keeps running.
                    STDIN => {
                        if !self.input_closed && self.read_stdin()? {
                            self.end_of_input();
                        }
                    }
                    SIGNALS => {
                        let mut buf = [0u8; 16];
                        let _ = self.signals.read(&mut buf);
                        return Ok(0);
                    }
                    token => self.on_daemon(token)?,
                }
            }
            if self.input_closed && self.calls.is_empty() {
                return Ok(0);
            }
            self.send_progress(Instant::now())?;
        }
    }

    /// The client closed stdin. What it asked for is still carried out (a
    /// `start` or `down` piped in just before the end must not be lost: the
    /// daemon drops a request whose client hung up before it was read), but a
    /// `wait` or `status` only observes, and nobody will read its answer, so
    /// those end now. The loop exits when nothing is pending; what runs keeps
    /// running.
    fn end_of_input(&mut self) {
        self.input_closed = true;
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&libc::STDIN_FILENO));
        let registry = self.poll.registry();
        self.calls.retain_mut(|call| {
            let observes = matches!(call.job, Job::Wait { .. } | Job::Status { .. });
            if observes {
                let _ = registry.deregister(&mut call.stream);
            }
            !observes
        });
    }

    /// Read what the client sent; true at end of input.
    fn read_stdin(&mut self) -> Result<bool> {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            // Edge-triggered: read until nothing is left, without blocking.
            if !crate::sys::wait_readable(&self.stdin, Duration::ZERO)
                .context(|| "reading standard input".into())?
            {
                return Ok(false);
            }
            match self.stdin.read(&mut buf) {
                Ok(0) => {
                    // A last message without its newline is not one (the
                    // transport ends each message with a newline).
                    return Ok(true);
                }
                Ok(n) => self.take(&buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context(|| "reading standard input".into()),
            }
        }
    }

    fn take(&mut self, mut bytes: &[u8]) -> Result<()> {
        while let Some(at) = bytes.iter().position(|&b| b == b'\n') {
            let (line, rest) = (&bytes[..at], &bytes[at + 1..]);
            bytes = rest;
            if self.discarding {
                self.discarding = false;
                continue;
            }
            if self.inbuf.is_empty() {
                self.on_line(line)?;
            } else {
                let mut whole = std::mem::take(&mut self.inbuf);
                whole.extend_from_slice(line);
                self.on_line(&whole)?;
            }
        }
        if !self.discarding {
            self.inbuf.extend_from_slice(bytes);
            if self.inbuf.len() > MAX_MESSAGE {
                self.inbuf = Vec::new();
                self.discarding = true;
                let message = "message longer than 4 MiB; skipped";
                self.send(&jsonrpc::error(&Fault::new(
                    "null",
                    jsonrpc::INVALID_REQUEST,
                    message,
                )))?;
            }
        }
        Ok(())
    }

    fn on_line(&mut self, line: &[u8]) -> Result<()> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        match jsonrpc::classify(line) {
            Err(fault) => self.send(&jsonrpc::error(&fault)),
            Ok(Message::Response) => Ok(()),
            Ok(Message::Notification { method, params }) => {
                self.on_notification(&method, &params);
                Ok(())
            }
            Ok(Message::Request { id, method, params }) => {
                match self.on_request(&id, &method, &params) {
                    Ok(Some(result)) => self.send(&jsonrpc::result(&id, &result, self.modern)),
                    Ok(None) => Ok(()),
                    Err(fault) => self.send(&jsonrpc::error(&fault)),
                }
            }
        }
    }

    fn on_notification(&mut self, method: &str, params: &Map<String, Value>) {
        if method == "notifications/cancelled" {
            // Closing the connection ends the wait in the daemon at once; a
            // cancelled request is not answered.
            let Some(id) = params.get("requestId") else {
                return;
            };
            let id = jsonrpc::id_text(id);
            if let Some(at) = self.calls.iter().position(|c| Some(&c.id) == id.as_ref()) {
                let mut call = self.calls.swap_remove(at);
                let _ = self.poll.registry().deregister(&mut call.stream);
            }
        }
        // notifications/initialized and others need nothing.
    }

    /// The result (JSON text) to answer with now, None when it comes later.
    fn on_request(
        &mut self,
        id: &str,
        method: &str,
        params: &Map<String, Value>,
    ) -> std::result::Result<Option<String>, Fault> {
        let fault = |code, message: &str| Fault::new(id, code, message);
        self.check_envelope(id, method, params)?;
        match method {
            "server/discover" => Ok(Some(format!(
                "{{\"supportedVersions\":[\"{MODERN}\"],\"ttlMs\":0,\"cacheScope\":\"private\",\"capabilities\":{{\"tools\":{{\"listChanged\":false}}}},\
                 \"instructions\":{},\"_meta\":{{\"io.modelcontextprotocol/serverInfo\":\
                 {{\"name\":\"agent-procs\",\"version\":\"{}\"}}}}}}",
                jsonrpc::string(INSTRUCTIONS),
                env!("CARGO_PKG_VERSION")
            ))),
            "initialize" => self.initialize(id, params),
            "ping" => Ok(Some("{}".into())),
            "tools/list" | "tools/call" if self.version.is_none() => Err(fault(
                jsonrpc::INVALID_REQUEST,
                &format!("{method} before initialize: send initialize first"),
            )),
            "tools/list" => {
                let mut list = tools::TOOLS.to_string();
                if self.modern {
                    // 2026-07-28 caching hints: the list is fixed for this binary.
                    list.pop();
                    list.push_str(",\"ttlMs\":3600000,\"cacheScope\":\"private\"}");
                }
                Ok(Some(list))
            }
            "tools/call" => self.call(id, params),
            _ => Err(fault(
                jsonrpc::METHOD_NOT_FOUND,
                &format!(
                    "unknown method '{method}': this server offers initialize, ping, tools/list and tools/call"
                ),
            )),
        }
    }

    /// `initialize`: once per connection, on the revision the client asked
    /// for if it is one of `VERSIONS`.
    fn initialize(
        &mut self,
        id: &str,
        params: &Map<String, Value>,
    ) -> std::result::Result<Option<String>, Fault> {
        let fault = |code, message: &str| Fault::new(id, code, message);
        if self.version.is_some() {
            return Err(fault(
                jsonrpc::INVALID_REQUEST,
                "already initialized: initialize is sent once per connection",
            ));
        }
        let Some(asked) = params.get("protocolVersion").and_then(Value::as_str) else {
            return Err(fault(
                jsonrpc::INVALID_PARAMS,
                &format!(
                    "initialize needs params.protocolVersion, a string such as \"{}\"",
                    VERSIONS[0]
                ),
            ));
        };
        let version = negotiate(asked);
        self.version = Some(version);
        Ok(Some(format!(
            "{{\"protocolVersion\":\"{version}\",\"capabilities\":{{\"tools\":{{\"listChanged\":false}}}},\
             \"serverInfo\":{{\"name\":\"agent-procs\",\"title\":\"agent-procs\",\"version\":\"{}\"}},\
             \"instructions\":{}}}",
            env!("CARGO_PKG_VERSION"),
            jsonrpc::string(INSTRUCTIONS)
        )))
    }

    /// 2026-07-28: no handshake; each request names the revision. The first
    /// request decides which way this connection speaks; a request that does
    /// not fit that way is refused here.
    fn check_envelope(
        &mut self,
        id: &str,
        method: &str,
        params: &Map<String, Value>,
    ) -> std::result::Result<(), Fault> {
        let envelope = params.get("_meta").and_then(|m| m.get(ENVELOPE_VERSION));
        let initialize = method == "initialize";
        let problem = match envelope {
            _ if initialize && self.modern => Some((
                jsonrpc::UNSUPPORTED_VERSION,
                "this connection speaks 2026-07-28, which has no initialize",
            )),
            Some(_) if !initialize && self.version.is_some() && !self.modern => Some((
                jsonrpc::INVALID_REQUEST,
                "this connection began with initialize; requests with a 2026-07-28 envelope are not taken on it",
            )),
            Some(asked) if !initialize && asked.as_str() != Some(MODERN) => Some((
                jsonrpc::UNSUPPORTED_VERSION,
                "unsupported protocol version: requests with an envelope speak 2026-07-28; \
                 initialize speaks 2025-11-25, 2025-06-18, 2025-03-26 and 2024-11-05",
            )),
            Some(_) if !initialize => {
                self.modern = true;
                self.version = Some(MODERN);
                None
            }
            None if self.modern => Some((
                jsonrpc::INVALID_PARAMS,
                "params._meta must carry io.modelcontextprotocol/protocolVersion on a 2026-07-28 connection",
            )),
            _ => None,
        };
        if let Some((code, message)) = problem {
            let mut fault = Fault::new(id, code, message);
            if code == jsonrpc::UNSUPPORTED_VERSION {
                fault.data = Some(SUPPORTED.into());
            }
            return Err(fault);
        }
        Ok(())
    }

    fn call(
        &mut self,
        id: &str,
        params: &Map<String, Value>,
    ) -> std::result::Result<Option<String>, Fault> {
        let invalid = |message: &str| Fault::new(id, jsonrpc::INVALID_PARAMS, message);
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Err(invalid(
                "tools/call needs params.name: start, up, stop, restart, down, status, logs or wait",
            ));
        };
        let empty = Map::new();
        let args = match params.get("arguments") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(args)) => args,
            Some(_) => return Err(invalid("params.arguments must be an object")),
        };
        let plan = match tools::plan(name, args, &self.paths) {
            Ok(plan) => plan,
            // An unknown tool is a protocol error in every revision.
            Err(problem) if problem.starts_with("unknown tool") => return Err(invalid(&problem)),
            Err(problem) if self.version.is_some_and(bad_arguments_are_tool_errors) => {
                return Ok(Some(Outcome::error(problem).to_json()));
            }
            Err(problem) => return Err(invalid(&problem)),
        };
        let (requests, start, job) = match plan {
            Plan::Done(outcome) => return Ok(Some(outcome.to_json())),
            Plan::Ask {
                requests,
                start,
                job,
            } => (requests, start, job),
        };
        let progress = params
            .get("_meta")
            .and_then(|m| m.get("progressToken"))
            .and_then(jsonrpc::id_text);
        match self.open_call(&requests, start) {
            Ok(stream) => {
                let token = Token(self.next_token);
                self.next_token += 1;
                let mut stream = stream;
                if let Err(e) =
                    self.poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                {
                    return Ok(Some(Outcome::error(e.to_string()).to_json()));
                }
                let now = Instant::now();
                let waits = matches!(job, Job::Wait { .. });
                self.calls.push(Call {
                    token,
                    id: id.to_string(),
                    job,
                    stream,
                    inbuf: Vec::new(),
                    next_progress: (waits && progress.is_some()).then(|| now + PROGRESS_EVERY),
                    progress,
                    progress_sent: 0,
                    started: now,
                });
                Ok(None)
            }
            Err(Error::Failed(msg)) if msg.starts_with("no daemon running") => {
                let outcome = tools::without_daemon(&job, &self.paths.session).unwrap_or_else(|| {
                    Outcome::error(format!(
                        "{msg}: nothing has been started in it yet (start or up starts processes)"
                    ))
                });
                Ok(Some(outcome.to_json()))
            }
            Err(e) => Ok(Some(Outcome::error(e.to_string()).to_json())),
        }
    }

    /// Connect (starting the daemon when `start`), send the requests, and hand
    /// the connection over to the loop.
    fn open_call(
        &self,
        requests: &[crate::protocol::Request],
        start: bool,
    ) -> Result<mio::net::UnixStream> {
        let mut conn = Conn::open(&self.paths, start)?;
        for request in requests {
            conn.send(request)?;
        }
        let stream = conn.into_stream();
        stream
            .set_nonblocking(true)
            .context(|| "preparing the daemon connection".into())?;
        Ok(mio::net::UnixStream::from_std(stream))
    }

    /// Replies (or the end) on one call's connection.
    fn on_daemon(&mut self, token: Token) -> Result<()> {
        let Some(at) = self.calls.iter().position(|c| c.token == token) else {
            return Ok(()); // a late event for a call already answered or cancelled
        };
        let mut call = self.calls.swap_remove(at);
        let mut buf = [0u8; READ_CHUNK];
        let mut eof = false;
        loop {
            match call.stream.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => call.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        let mut done = None;
        let mut progress = Vec::new();
        let mut start = 0;
        while let Some(at) = call.inbuf[start..].iter().position(|&b| b == b'\n') {
            let line = &call.inbuf[start..start + at];
            start += at + 1;
            let step = match serde_json::from_slice::<Response>(line) {
                Ok(response) => tools::on_reply(&mut call.job, &self.paths, response),
                Err(e) => Step::Done(Outcome::error(format!(
                    "unreadable reply from the daemon: {e}"
                ))),
            };
            match step {
                Step::More(Some(message)) => progress.push(message),
                Step::More(None) => {}
                Step::Done(outcome) => {
                    done = Some(outcome);
                    break;
                }
            }
        }
        call.inbuf.drain(..start);
        for message in progress {
            if let Some(note) = progress_note(&mut call, &message, None) {
                self.send(&note)?;
            }
        }
        if done.is_none() && eof {
            done = Some(tools::on_eof(&call.job));
        }
        match done {
            Some(outcome) => {
                let _ = self.poll.registry().deregister(&mut call.stream);
                self.send(&jsonrpc::result(&call.id, &outcome.to_json(), self.modern))
            }
            None => {
                self.calls.push(call);
                Ok(())
            }
        }
    }

    /// Tell waiting clients how long their waits have run.
    fn send_progress(&mut self, now: Instant) -> Result<()> {
        let mut notes = Vec::new();
        for call in &mut self.calls {
            if call.next_progress.is_none_or(|t| t > now) {
                continue;
            }
            call.next_progress = Some(now + PROGRESS_EVERY);
            if let Job::Wait {
                target,
                what,
                timeout,
            } = &call.job
            {
                let elapsed = now.duration_since(call.started);
                let total = timeout.as_secs_f64().ceil() as u64;
                let message = format!(
                    "waiting for {target} to {what} ({} s of {total} s)",
                    elapsed.as_secs(),
                );
                notes.extend(progress_note(call, &message, Some(total)));
            }
        }
        for note in notes {
            self.send(&note)?;
        }
        Ok(())
    }

    /// Write one message to stdout, which carries nothing else.
    fn send(&self, message: &[u8]) -> Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(message)
            .and_then(|()| out.flush())
            .context(|| "writing to standard output".into())
    }
}

/// A `notifications/progress` for a call whose client asked for progress. For
/// a wait, progress is in whole seconds out of `total`; else it counts steps.
fn progress_note(call: &mut Call, message: &str, total: Option<u64>) -> Option<Vec<u8>> {
    let token = call.progress.as_ref()?;
    // Progress must grow with every notification.
    call.progress_sent += 1;
    let mut params = format!(
        "{{\"progressToken\":{token},\"message\":{}",
        jsonrpc::string(message)
    );
    match total {
        Some(total) => {
            let done = call.started.elapsed().as_secs().max(call.progress_sent);
            params.push_str(&format!(",\"progress\":{done},\"total\":{total}}}"));
        }
        None => params.push_str(&format!(",\"progress\":{}}}", call.progress_sent)),
    }
    Some(jsonrpc::notification("notifications/progress", &params))
}

/// What the client may show the model about this server as a whole.
const INSTRUCTIONS: &str = "agent-procs runs long-lived processes (dev servers, watchers, \
    workers) in the background for you, in a session of its own for this git worktree. \
    Typical use: start (or up, for the project's agent-procs.yaml), then wait for its port, \
    URL or a log line, then logs (pass the returned cursor as after to read only new \
    lines), restart or stop. Processes keep running when you disconnect; down stops them all.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_negotiated_to_one_both_sides_speak() {
        for v in ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"] {
            assert_eq!(negotiate(v), v);
        }
        // Newer or unknown: the newest we speak, and the client decides.
        assert_eq!(negotiate("2026-07-28"), "2025-11-25");
        assert_eq!(negotiate("1.0"), "2025-11-25");
        assert!(bad_arguments_are_tool_errors("2025-11-25"));
        assert!(!bad_arguments_are_tool_errors("2025-06-18"));
        assert!(bad_arguments_are_tool_errors(MODERN));
    }
}
