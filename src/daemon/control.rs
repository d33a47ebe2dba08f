//! The control component. `Control` decides about connections (whom to admit,
//! when to pause accepting) and routes each request (`route`): wire types stop
//! here, the process a request names is found here (or the not-found answer
//! built), and the loop runs the one call a `Route` names. `Client` is one
//! control connection: bytes in, request lines out; responses in, bytes out.
//! It buffers within caps and reports what it saw. Neither touches the poll
//! registry or any other part of the daemon.

use super::action::Action;
use super::procs::{ProcId, ProcTable};
use super::timers::Timer;
use super::waits::{Ask, WaitFor};
use crate::protocol::{self, MAX_REQUEST, Request, Response, UpProcess};
use crate::ratelimit::NoteLimit;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// Connections open at once at most; more are refused (and noted).
pub const MAX_CLIENTS: usize = 4096;
/// Pause before accepting again when out of descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Decisions about control connections and requests.
pub struct Control {
    /// Only our own user may connect.
    uid: u32,
    /// Accepting is paused for lack of descriptors until a RetryAccept timer
    /// fires (only one is ever armed).
    paused: bool,
    /// Conditions that could repeat on every event are noted once a minute.
    notes: NoteLimit,
}

/// What routing reads of the daemon.
pub struct View<'a> {
    /// The processes a request may name.
    pub procs: &'a ProcTable,
    /// The session's name, for the not-found answer.
    pub session: &'a str,
    pub shutting_down: bool,
}

/// What a request asks of the daemon, checked, with the process it names
/// found: the loop runs one call for each.
#[derive(Debug)]
pub enum Route {
    /// Not carried out: its client hung up before it was read. The actions
    /// note that (at most once a minute).
    Dropped(Vec<Action>),
    /// Answer at once.
    Reply(Response),
    /// Start a process (the lifecycle checks the request: `Spec::from_run`).
    Run(Box<Request>),
    /// `up`: the processes, the environment they share, the timeout (ms).
    Up(Vec<UpProcess>, Option<HashMap<String, String>>, Option<u64>),
    /// Stop a process; the name it was asked by (for the answer); the grace (ms).
    Stop(ProcId, String, Option<u64>),
    StopAll {
        timeout: Option<Duration>,
    },
    Restart {
        proc: ProcId,
    },
    Status {
        target: Option<ProcId>,
        resources: bool,
    },
    /// `logs --follow` of `target` (None: every process; the follow component
    /// reads the request).
    Follow {
        request: Box<Request>,
        target: Option<ProcId>,
    },
    /// Wait for a line, an exit, a port or a URL of a process.
    Wait(ProcId, WaitFor),
    Shutdown,
    EnableProxy(Option<u16>),
    Subscribe {
        since: Option<u64>,
    },
}

impl Control {
    pub fn new(uid: u32) -> Control {
        Control {
            uid,
            paused: false,
            notes: NoteLimit::default(),
        }
    }

    /// Whether to accept now: a paused listener is retried by its one timer,
    /// not by every new connection's event (that would re-arm a timer each).
    pub fn accepting(&self) -> bool {
        !self.paused
    }

    /// The retry timer fired: accept again.
    pub fn resume(&mut self) {
        self.paused = false;
    }

    /// Accepting failed: None to accept on (interrupted, or a peer that gave
    /// up while queued), else stop accepting and carry out the actions (none
    /// when the queue is empty). For want of resources (EMFILE and friends)
    /// the connection stays queued in the backlog: try again shortly rather
    /// than spinning on it.
    pub fn on_accept_error(&mut self, e: &io::Error, now: Instant) -> Option<Vec<Action>> {
        match e.kind() {
            io::ErrorKind::WouldBlock => return Some(Vec::new()),
            io::ErrorKind::Interrupted => return None,
            _ if e.raw_os_error() == Some(libc::ECONNABORTED) => return None,
            _ => {}
        }
        let mut actions = self.note_limited(
            "accept",
            format!(
                "accepting a connection: {}; retrying every 100 ms",
                crate::error::describe_io(e)
            ),
            now,
        );
        self.paused = true;
        actions.push(Action::Arm {
            at: now + ACCEPT_RETRY,
            timer: Timer::RetryAccept,
        });
        Some(actions)
    }

    /// Whether to keep a connection from a peer of `peer_uid` while `open`
    /// are open; a refusal says why (at most once a minute per cause).
    pub fn admit(
        &mut self,
        peer_uid: io::Result<u32>,
        open: usize,
        now: Instant,
    ) -> Result<(), Vec<Action>> {
        let (cause, why) = match peer_uid {
            Ok(uid) if uid == self.uid && open < MAX_CLIENTS => return Ok(()),
            Ok(uid) if uid == self.uid => (
                "cap",
                format!("refused a connection: {MAX_CLIENTS} connections are open"),
            ),
            Ok(uid) => ("uid", format!("refused a connection from uid {uid}")),
            Err(e) => (
                "credentials",
                format!("refused a connection: reading its credentials: {e}"),
            ),
        };
        Err(self.note_limited(cause, why, now))
    }

    /// What `request` asks for. `read_closed`: its client hung up already.
    pub fn route(
        &mut self,
        request: Request,
        read_closed: bool,
        view: &View,
        now: Instant,
    ) -> Route {
        // The CLI never half-closes: a peer that hung up before its request was
        // read has gone (it gave up while the daemon was stalled, or was killed).
        // Nobody would learn of a process started for it now, so none is.
        if read_closed && matches!(request, Request::Run { .. } | Request::Up { .. }) {
            let what = match &request {
                Request::Run { name, command, .. } => {
                    format!("run of '{}'", name.as_deref().unwrap_or(command))
                }
                _ => "up".to_string(),
            };
            let msg = format!("dropped a {what}: its client hung up before it was read");
            return Route::Dropped(self.note_limited("gone", msg, now));
        }
        route(request, view)
    }

    /// A note for a cause that may repeat per event: at most one a minute.
    fn note_limited(&mut self, cause: &'static str, msg: String, now: Instant) -> Vec<Action> {
        match self.notes.allow(cause, now) {
            Some(held) => vec![Action::Note(crate::ratelimit::with_held(&msg, held))],
            None => Vec::new(),
        }
    }
}

/// A request answered where it is routed (boxed: it is the rare way).
type Answer = Box<Response>;

fn answer(message: impl Into<String>) -> Answer {
    Box::new(Response::error(message))
}

/// The process `target` names, or the answer that names the ones there are.
fn find(view: &View, target: &str) -> Result<ProcId, Answer> {
    (view.procs.find(target))
        .ok_or_else(|| Box::new(not_found(view.session, &view.procs.names(), target)))
}

/// Where a request goes, with its arguments checked and its process found.
fn route(request: Request, view: &View) -> Route {
    let routed = match request {
        run @ Request::Run { .. } => Ok(Route::Run(Box::new(run))),
        Request::Up {
            processes,
            base_env,
            timeout_ms,
        } => Ok(Route::Up(processes, base_env, timeout_ms)),
        Request::Stop { target, timeout_ms } => {
            find(view, &target).map(|proc| Route::Stop(proc, target, timeout_ms))
        }
        Request::StopAll { timeout_ms } => Ok(Route::StopAll {
            timeout: timeout_ms.map(Duration::from_millis),
        }),
        Request::Restart { .. } if view.shutting_down => Err(answer("the daemon is shutting down")),
        Request::Restart { target } => find(view, &target).map(|proc| Route::Restart { proc }),
        Request::Status { target, resources } => match target.map(|t| find(view, &t)) {
            Some(Err(answer)) => Err(answer),
            found => Ok(Route::Status {
                target: found.and_then(Result::ok),
                resources,
            }),
        },
        logs @ Request::Logs { follow: true, .. } => route_follow(logs, view),
        Request::Logs { .. } => Ok(Route::Reply(Response::error(
            "logs without follow are read from the files directly; set follow: true to stream",
        ))),
        wait @ Request::Wait { .. } => route_wait(wait, view),
        Request::Shutdown => Ok(Route::Shutdown),
        Request::EnableProxy { proxy_port } => Ok(Route::EnableProxy(proxy_port)),
        Request::Hello { .. } => Ok(Route::Reply(Response::Hello {
            version: protocol::PROTOCOL_VERSION,
        })),
        Request::Events { since } => Ok(Route::Subscribe { since }),
        Request::Unknown => Ok(Route::Reply(Response::error("unknown request type"))),
    };
    routed.unwrap_or_else(|answer| Route::Reply(*answer))
}

/// `logs --follow`: of the one process it names, unless `all`.
fn route_follow(request: Request, view: &View) -> Result<Route, Answer> {
    let target = match &request {
        Request::Logs {
            target: Some(t),
            all: false,
            ..
        } => Some(find(view, t)?),
        _ => None,
    };
    let request = Box::new(request);
    Ok(Route::Follow { request, target })
}

/// A `wait`: for a line or an exit, or for a port or URL to answer.
fn route_wait(request: Request, view: &View) -> Result<Route, Answer> {
    let Request::Wait {
        target,
        until,
        regex,
        exit,
        timeout_secs,
        timeout_ms,
        port,
        http,
    } = request
    else {
        return Err(answer("internal error: not a wait request"));
    };
    let timeout = timeout_ms
        .map(Duration::from_millis)
        .or(timeout_secs.map(Duration::from_secs))
        .unwrap_or(DEFAULT_WAIT_TIMEOUT);
    let probe = match (port, http) {
        (None, None) => Ok(None),
        _ if until.is_some() || exit => Err("wait takes one of until, exit, port and http".into()),
        (Some(port), None) if port > 0 => Ok(Some(crate::probe::Target::tcp(port))),
        (Some(_), None) => Err("port must be from 1 to 65535".to_string()),
        (None, Some(url)) => crate::probe::http_target(&url).map(Some),
        (Some(_), Some(_)) => Err("wait takes port or http, not both".to_string()),
    };
    let wait = match probe.map_err(answer)? {
        Some(target) => WaitFor::Probe { target, timeout },
        None => WaitFor::Output(Ask {
            until,
            regex,
            exit,
            timeout,
        }),
    };
    Ok(Route::Wait(find(view, &target)?, wait))
}

/// Stop taking requests from a client whose unread responses pile up past this.
const OUT_HIGH_WATER: usize = 1024 * 1024;
/// A follower whose unread output passes this starts losing lines (and is told).
const FOLLOW_CAP: usize = 8 * 1024 * 1024;
/// Bytes read from one client per wake-up, so one cannot starve the others.
pub const READ_BUDGET: usize = 256 * 1024;

pub struct Client {
    pub stream: mio::net::UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// Skipping the rest of an oversized request line.
    discarding: bool,
    /// The peer will send nothing more.
    pub read_closed: bool,
    /// A request of this client is in progress (stop, wait, follow …); later
    /// requests wait in `inbuf` until it is answered.
    pub busy: bool,
    /// Lines a follower lost because it did not read fast enough, not yet reported,
    /// and the process and stream of the first of them.
    pub lost_lines: u64,
    lost_from: Option<(String, crate::protocol::Stream)>,
    /// Events an `Events` subscriber lost because it did not read fast enough.
    events_lost: u64,
    /// How much of `out` has been written already.
    out_pos: usize,
}

pub enum ReadOutcome {
    /// Read everything available.
    Drained,
    /// Stopped at the budget or a full buffer; there may be more.
    More,
}

impl Client {
    pub fn new(stream: mio::net::UnixStream) -> Client {
        Client {
            stream,
            inbuf: Vec::new(),
            out: Vec::new(),
            discarding: false,
            read_closed: false,
            busy: false,
            lost_lines: 0,
            lost_from: None,
            events_lost: 0,
            out_pos: 0,
        }
    }

    /// Whether the loop may hand this client's next request to the daemon.
    pub fn ready_for_request(&self) -> bool {
        !self.busy && self.queued() < OUT_HIGH_WATER
    }

    /// Read what the peer sent, within the budget. Error means the connection is broken.
    pub fn read_some(&mut self) -> io::Result<ReadOutcome> {
        let mut buf = [0u8; 16 * 1024];
        let mut taken = 0;
        while taken < READ_BUDGET {
            // Hold back a client that sends while its requests cannot be served yet.
            if self.inbuf.len() > 2 * MAX_REQUEST {
                return Ok(ReadOutcome::More);
            }
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.read_closed = true;
                    return Ok(ReadOutcome::Drained);
                }
                Ok(n) => {
                    taken += n;
                    self.take_bytes(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(ReadOutcome::More)
    }

    fn take_bytes(&mut self, mut bytes: &[u8]) {
        if self.discarding {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(at) => {
                    self.discarding = false;
                    bytes = &bytes[at + 1..];
                }
                None => return,
            }
        }
        self.inbuf.extend_from_slice(bytes);
    }

    /// The next complete request line, decoded; `Err` carries the error to answer.
    pub fn next_request(&mut self) -> Option<Result<protocol::Request, String>> {
        loop {
            match self.inbuf.iter().position(|&b| b == b'\n') {
                Some(at) if at > MAX_REQUEST => {
                    self.inbuf.drain(..=at);
                    return Some(Err(too_large()));
                }
                Some(at) => {
                    let line: Vec<u8> = self.inbuf.drain(..=at).collect();
                    let line = &line[..at];
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue; // blank lines are keep-alives, not requests
                    }
                    return Some(protocol::decode_request(line));
                }
                None if self.inbuf.len() > MAX_REQUEST => {
                    self.inbuf.clear();
                    self.discarding = true;
                    return Some(Err(too_large()));
                }
                None => return None,
            }
        }
    }

    pub fn send(&mut self, response: &Response) {
        protocol::encode_response(&mut self.out, response);
    }

    /// Queue a line for a follower, or count it as lost when the follower lags.
    /// Queue `lines` lines for a follower (one `LogLine`, or a `LogChunk`).
    pub fn send_follow(&mut self, response: &Response, lines: u64) {
        if self.queued() >= FOLLOW_CAP {
            self.lost_lines += lines;
            if self.lost_from.is_none()
                && let Response::LogLine {
                    process, stream, ..
                }
                | Response::LogChunk {
                    process, stream, ..
                } = response
            {
                self.lost_from = Some((process.clone(), *stream));
            }
            return;
        }
        self.note_lost();
        self.send(response);
    }

    /// Queue an event for a subscriber, or count it as lost when it lags; the
    /// count goes out (as a `lost` event) before the next event that fits.
    pub fn send_event(&mut self, event: &Response, seq: u64) {
        if self.queued() >= FOLLOW_CAP {
            self.events_lost += 1;
            return;
        }
        if self.events_lost > 0 {
            let lost = super::events::lost(self.events_lost, seq.saturating_sub(1));
            self.events_lost = 0;
            self.send(&lost);
        }
        self.send(event);
    }

    /// Tell a follower how many lines it lost, once there is room again.
    pub fn note_lost(&mut self) {
        if self.lost_lines == 0 {
            return;
        }
        let line = format!(
            "[agent-procs] {} lines dropped: this reader was too slow",
            self.lost_lines
        );
        self.lost_lines = 0;
        if let Some((process, stream)) = self.lost_from.take() {
            self.send(&Response::LogLine {
                process,
                stream,
                line,
            });
        }
    }

    fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Write out what is queued. Error means the connection is broken.
    pub fn flush(&mut self) -> io::Result<()> {
        loop {
            while self.out_pos < self.out.len() {
                match self.stream.write(&self.out[self.out_pos..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => self.out_pos += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Compact now and then, not on every partial write.
                        if self.out_pos > self.out.len() / 2 {
                            self.out.drain(..self.out_pos);
                            self.out_pos = 0;
                        }
                        return Ok(());
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            self.out.clear();
            self.out_pos = 0;
            if self.lost_lines == 0 {
                break;
            }
            self.note_lost();
        }
        if self.out.capacity() > 64 * 1024 {
            self.out.shrink_to(4096);
        }
        Ok(())
    }

    pub fn has_output(&self) -> bool {
        self.queued() > 0
    }

    /// Nothing more will come from the peer and nothing is owed to it.
    pub fn finished(&self) -> bool {
        self.read_closed && !self.busy && self.queued() == 0 && !self.inbuf.contains(&b'\n')
    }
}

fn too_large() -> String {
    format!("request longer than {MAX_REQUEST} bytes; skipped")
}

/// The answer to a request naming no process of the session: which there are,
/// so the caller can correct the name.
fn not_found(session: &str, names: &[&str], target: &str) -> Response {
    let known = if names.is_empty() {
        format!("session '{session}' has no processes")
    } else {
        format!("session '{session}' has: {}", names.join(", "))
    };
    Response::not_found(format!("process not found: {target} ({known})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_what_the_session_has() {
        let msg = |r: Response| match r {
            Response::Error { message, .. } => message,
            other => panic!("{other:?}"),
        };
        let none = msg(not_found("dev", &[], "web"));
        assert_eq!(
            none,
            "process not found: web (session 'dev' has no processes)"
        );
        let some = msg(not_found("dev", &["api", "db"], "web"));
        assert_eq!(some, "process not found: web (session 'dev' has: api, db)");
    }

    fn view(procs: &ProcTable, shutting_down: bool) -> View<'_> {
        View {
            procs,
            session: "dev",
            shutting_down,
        }
    }

    /// A table with one process, web.
    fn web() -> ProcTable {
        let mut procs = ProcTable::default();
        let id = procs.allocate_id();
        let spec = crate::daemon::spec::Spec::for_test("x");
        procs.insert(crate::daemon::procs::Proc::new(id, "web".into(), spec));
        procs
    }

    fn decode(json: &str) -> Request {
        protocol::decode_request(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn wait(until: Option<&str>, exit: bool, port: Option<u16>, http: Option<&str>) -> Request {
        wait_for("web", until, exit, port, http)
    }

    fn wait_for(
        target: &str,
        until: Option<&str>,
        exit: bool,
        port: Option<u16>,
        http: Option<&str>,
    ) -> Request {
        Request::Wait {
            target: target.into(),
            until: until.map(str::to_string),
            regex: false,
            exit,
            timeout_secs: None,
            timeout_ms: None,
            port,
            http: http.map(str::to_string),
        }
    }

    fn error_of(route: Route) -> String {
        match route {
            Route::Reply(Response::Error { message, .. }) => message,
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn only_our_user_is_admitted_and_only_up_to_the_cap() {
        let now = Instant::now();
        let mut control = Control::new(1000);
        assert!(control.admit(Ok(1000), 0, now).is_ok());
        let refused = control.admit(Ok(0), 0, now).unwrap_err();
        assert!(matches!(&refused[..], [Action::Note(n)] if n.contains("from uid 0")));
        // The same cause again within the minute: refused without a note.
        assert!(control.admit(Ok(0), 0, now).unwrap_err().is_empty());
        let full = control.admit(Ok(1000), MAX_CLIENTS, now).unwrap_err();
        assert!(matches!(&full[..], [Action::Note(n)] if n.contains("4096 connections are open")));
        let unknown = control.admit(Err(io::Error::from_raw_os_error(libc::EBADF)), 0, now);
        assert!(
            matches!(&unknown.unwrap_err()[..], [Action::Note(n)] if n.contains("credentials"))
        );
    }

    #[test]
    fn out_of_descriptors_pauses_accepting_until_the_retry() {
        let now = Instant::now();
        let mut control = Control::new(1);
        assert!(control.accepting());
        let error = |errno| io::Error::from_raw_os_error(errno);
        // Nothing queued, or a connection gone before it was taken: no pause.
        assert!(
            matches!(control.on_accept_error(&error(libc::EAGAIN), now), Some(a) if a.is_empty())
        );
        assert!(control.on_accept_error(&error(libc::EINTR), now).is_none());
        assert!(
            control
                .on_accept_error(&error(libc::ECONNABORTED), now)
                .is_none()
        );
        assert!(control.accepting());
        let actions = control.on_accept_error(&error(libc::EMFILE), now).unwrap();
        assert!(matches!(&actions[0], Action::Note(n) if n.contains("retrying every 100 ms")));
        assert!(matches!(
            actions[1],
            Action::Arm { at, timer: Timer::RetryAccept } if at == now + ACCEPT_RETRY
        ));
        assert!(!control.accepting());
        control.resume();
        assert!(control.accepting());
    }

    #[test]
    fn a_run_whose_client_hung_up_is_dropped_with_a_note() {
        let now = Instant::now();
        let mut control = Control::new(1);
        let up = Request::Up {
            processes: Vec::new(),
            base_env: None,
            timeout_ms: None,
        };
        let procs = ProcTable::default();
        match control.route(up, true, &view(&procs, false), now) {
            Route::Dropped(actions) => assert!(matches!(
                &actions[..],
                [Action::Note(n)] if n == "dropped a up: its client hung up before it was read"
            )),
            other => panic!("{other:?}"),
        }
        // Anything else is still answered: the reply may be read after all.
        assert!(matches!(
            control.route(
                Request::Status {
                    target: None,
                    resources: false
                },
                true,
                &view(&procs, false),
                now
            ),
            Route::Status { .. }
        ));
    }

    #[test]
    fn requests_are_routed_with_their_arguments_checked() {
        let mut control = Control::new(1);
        let procs = web();
        let mut route = |r| control.route(r, false, &view(&procs, false), Instant::now());
        assert!(matches!(
            route(Request::StopAll { timeout_ms: Some(1500) }),
            Route::StopAll { timeout: Some(t) } if t == Duration::from_millis(1500)
        ));
        assert!(matches!(
            route(Request::Hello { version: 1 }),
            Route::Reply(Response::Hello { .. })
        ));
        assert_eq!(error_of(route(Request::Unknown)), "unknown request type");
        assert!(matches!(
            route(wait(Some("ready"), false, None, None)),
            Route::Wait(_, WaitFor::Output(Ask { timeout, .. })) if timeout == DEFAULT_WAIT_TIMEOUT
        ));
        assert!(matches!(
            route(wait(None, false, Some(8080), None)),
            Route::Wait(_, WaitFor::Probe { .. })
        ));
        assert_eq!(
            error_of(route(wait(Some("x"), false, Some(1), None))),
            "wait takes one of until, exit, port and http"
        );
        assert_eq!(
            error_of(route(wait(None, false, Some(0), None))),
            "port must be from 1 to 65535"
        );
        assert_eq!(
            error_of(route(wait(None, false, Some(1), Some("http://127.0.0.1/")))),
            "wait takes port or http, not both"
        );
    }

    #[test]
    fn the_process_a_request_names_is_found_where_it_is_routed() {
        let mut control = Control::new(1);
        let procs = web();
        let id = procs.find("web").unwrap();
        let mut route = |r, shutting_down| {
            control.route(r, false, &view(&procs, shutting_down), Instant::now())
        };
        let missing = "process not found: nope (session 'dev' has: web)";
        // By name or by id; the answer says it as it was asked.
        assert!(matches!(
            route(decode(r#"{"type":"Stop","target":"web"}"#), false),
            Route::Stop(proc, label, None) if proc == id && label == "web"
        ));
        assert!(matches!(
            route(decode(&format!(r#"{{"type":"Restart","target":"p{id}"}}"#)), false),
            Route::Restart { proc } if proc == id
        ));
        for request in [
            r#"{"type":"Stop","target":"nope"}"#,
            r#"{"type":"Restart","target":"nope"}"#,
            r#"{"type":"Status","target":"nope"}"#,
            r#"{"type":"Logs","target":"nope","follow":true}"#,
        ] {
            assert_eq!(
                error_of(route(decode(request), false)),
                missing,
                "{request}"
            );
        }
        assert!(matches!(
            route(decode(r#"{"type":"Status"}"#), false),
            Route::Status { target: None, .. }
        ));
        assert!(matches!(
            route(decode(r#"{"type":"Status","target":"web"}"#), false),
            Route::Status { target: Some(proc), .. } if proc == id
        ));
        // `all` follows every process: the name is not looked up.
        assert!(matches!(
            route(
                decode(r#"{"type":"Logs","target":"nope","all":true,"follow":true}"#),
                false
            ),
            Route::Follow { target: None, .. }
        ));
        assert!(matches!(
            route(decode(r#"{"type":"Logs","target":"web","follow":true}"#), false),
            Route::Follow { target: Some(proc), .. } if proc == id
        ));
        // A wait's arguments are checked before its name.
        assert_eq!(
            error_of(route(wait_for("nope", None, false, Some(0), None), false)),
            "port must be from 1 to 65535"
        );
        assert_eq!(
            error_of(route(wait_for("nope", Some("x"), false, None, None), false)),
            missing
        );
        // A restart while shutting down is refused before its name is looked up.
        assert_eq!(
            error_of(route(decode(r#"{"type":"Restart","target":"nope"}"#), true)),
            "the daemon is shutting down"
        );
    }
}
