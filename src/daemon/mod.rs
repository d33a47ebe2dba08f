//! The daemon: one thread, one `mio::Poll`. This is the only file that touches the
//! poll registry. It accepts control connections, reads child output into logs,
//! reaps children on SIGCHLD, fires deadlines, and answers requests.

mod action;
mod control;
mod events;
mod ids;
mod probes;
mod procs;
mod resources;
mod signals;
mod spawn;
mod spec;
mod startup;
mod state;
mod supervise;
mod survivors;
mod timers;
mod up;
mod waits;
mod watch;

use crate::error::{Error, Result};
use crate::logs::{self, store::LogSink};
use crate::paths::{self, SessionPaths};
use crate::protocol::{Request, Response, Stream};
use crate::sys;
use action::Action;
use control::{Client, ReadOutcome};
use events::Change;
use mio::{Events, Interest, Poll, Token};
use procs::{Output, Proc, ProcId, ProcTable, STREAMS, State};
use signals::Exit;
/// For `agent-procs mcp`, which ends on the same signals through the same kind of pipe.
pub(crate) use signals::signal_pipe;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use timers::{Timer, Timers};
use waits::{Pattern, Wait, WaitTable};

const LISTENER: Token = Token(0);
const SIGCHLD_PIPE: Token = Token(1);
const SHUTDOWN_PIPE: Token = Token(2);
const WATCH: Token = Token(3);
/// Changes closer together than this restart a process once.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(500);
const WATCH_NOTE: &str = "[agent-procs] File changed, restarted";
const MANUAL_NOTE: &str = "[agent-procs] Restarted (manual)";
const FIRST_DYNAMIC: usize = 16;

const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// After SIGKILL, how often to check (and re-send) until the group is gone.
const KILL_RECHECK: Duration = Duration::from_secs(1);
const MAX_KILLS: u32 = 5;
/// Bytes taken from one child pipe per wake-up, so a flood cannot starve the rest.
const PIPE_BUDGET: usize = 256 * 1024;
const MAX_CLIENTS: usize = 4096;
/// How long replies may take to drain once we decided to exit.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// Pause before accepting again when out of descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Who owns a dynamic token.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Client,
    Output(ProcId, Stream),
    Probe(u64),
}

/// A `logs --follow` in progress on a client.
struct Follow {
    target: Option<ProcId>,
    stderr: bool,
    all: bool,
    remaining: Option<usize>,
    /// Both streams (`--both`), whatever `stderr` and `all` say.
    both: bool,
    /// Only lines that match (`--grep`).
    grep: Option<Pattern>,
    /// Tells this follow's deadline apart from an earlier follow's on the same client.
    generation: u64,
    /// The client takes live lines in batches; the batch being gathered.
    chunked: bool,
    batch: Option<Batch>,
    /// Runs the replay covers (0: all) and, when set, run starts are marked.
    runs: Option<u64>,
}

/// Live lines of one process and stream gathered for one `LogChunk`.
struct Batch {
    process: String,
    stream: Stream,
    text: String,
    lines: u64,
}

/// A request that is answered later, when processes have finished stopping.
enum Pending {
    Stop {
        client: usize,
        proc: ProcId,
        label: String,
    },
    Restart {
        client: usize,
        proc: ProcId,
        /// The annotation the new run starts with.
        note: &'static str,
    },
    StopAll {
        client: usize,
        remaining: HashSet<ProcId>,
    },
    Shutdown {
        client: Option<usize>,
        remaining: HashSet<ProcId>,
    },
}

/// The daemon executable's whole program (`agent-procs-daemon __daemon SESSION
/// [--ready-fd N]`): no CLI parser, so the CLI's code stays out of that binary.
pub fn main_entry() -> i32 {
    match startup::parse_args(std::env::args_os().skip(1)) {
        Ok((session, ready_fd)) => run(&session, ready_fd),
        Err(e) => {
            eprintln!("agent-procs: {e}");
            64
        }
    }
}

pub fn run(session: &str, ready_fd: Option<i32>) -> i32 {
    startup::ReadyPipe::close_inherited(ready_fd);
    let ready = startup::ReadyPipe::from_fd(ready_fd);
    match Daemon::start(session) {
        Ok(mut daemon) => {
            ready.ready();
            let code = match daemon.run_loop() {
                Ok(()) => 0,
                Err(e) => {
                    daemon.note(&format!("fatal: {e}"));
                    daemon.kill_everything();
                    1
                }
            };
            startup::remove_runtime_files(&daemon.paths);
            code
        }
        Err(e) => {
            eprintln!("agent-procs: {e}");
            ready.failed(&e);
            1
        }
    }
}

struct Daemon {
    paths: SessionPaths,
    poll: Poll,
    listener: mio::net::UnixListener,
    sigchld: mio::net::UnixStream,
    shutdown_sig: mio::net::UnixStream,
    slots: HashMap<Token, Slot>,
    next_token: usize,
    clients: HashMap<usize, Client>,
    follows: HashMap<usize, Follow>,
    procs: ProcTable,
    waits: WaitTable,
    pending: Vec<Pending>,
    timers: Timers,
    retry: Vec<Token>,
    generation: u64,
    /// Where relative and missing `cwd`s of old clients resolve: the daemon's start dir.
    home_cwd: PathBuf,
    shutting_down: bool,
    /// Everything is stopped; leave once replies are flushed or the grace ends.
    exiting: bool,
    uid: u32,
    /// state.json, open for rewriting in place (None if it could not be opened).
    state_file: Option<state::StateFile>,
    /// Sequence numbers for the log indexes, shared by every stream.
    clock: logs::index::SeqClock,
    /// The last run number of each process name in the run journal, read at
    /// the first start (None until then).
    run_numbers: Option<HashMap<String, u64>>,
    /// The process table changed this turn; state.json is rewritten once, at its end.
    state_dirty: bool,
    /// Output pipes grown to sys::PIPE_SIZE, and how many may be.
    big_pipes: usize,
    big_pipe_budget: usize,
    /// Accepting is paused for lack of descriptors until a RetryAccept timer
    /// fires (only one is ever armed).
    accept_paused: bool,
    /// Conditions that could repeat on every event are noted once a minute.
    notes: crate::ratelimit::NoteLimit,
    /// Our session: children stay in it, which is how we recognise their groups.
    sid: i32,
    read_buf: Vec<u8>,
    /// `up` runs in progress, by number.
    ups: HashMap<u64, up::UpRun>,
    next_up: u64,
    /// TCP and HTTP readiness checks in progress.
    probes: probes::ProbeTable,
    /// Processes a stop-all or shutdown stops once their dependents are gone,
    /// with the grace period it asked for.
    deferred_stops: Vec<(ProcId, Option<Duration>)>,
    /// The reverse proxy, once a client asked for it (nothing until then).
    proxy: Option<crate::proxy::Proxy>,
    /// inotify, once a process asked to be watched (nothing until then).
    watcher: Option<watch::Watcher>,
    /// Processes with a change waiting out the debounce.
    watch_pending: HashSet<ProcId>,
    /// State changes, numbered, and the clients streaming them.
    events: events::Events,
    /// Told with every `status`: what this daemon did about a dead predecessor.
    status_notes: Vec<String>,
    /// Ports chosen for processes that named none, by name (kept in state.json).
    chosen_ports: std::collections::BTreeMap<String, u16>,
    /// The log dir as last verified, shared by the sinks of the runs it holds.
    log_dir: Option<std::rc::Rc<paths::OwnDir>>,
}

impl Daemon {
    fn start(session: &str) -> Result<Daemon> {
        let paths = SessionPaths::new(session)?;
        paths::ensure_private_dir(&paths.runtime_dir)?;
        paths::ensure_state_dirs(&paths)?;
        startup::detach();
        startup::redirect_stdio(&paths)?;
        startup::raise_fd_limit();
        let home_cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        // Do not keep the caller's directory busy (an unmount, a deleted checkout).
        let _ = std::env::set_current_dir("/");

        let io_err = |what: &str| {
            let what = what.to_string();
            move |err: io::Error| Error::Io { what, err }
        };
        let poll = Poll::new().map_err(io_err("creating the poll instance"))?;
        let mut sigchld = signals::signal_pipe(&[libc::SIGCHLD])
            .map_err(io_err("installing the SIGCHLD handler"))?;
        let mut shutdown_sig = signals::signal_pipe(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP])
            .map_err(io_err("installing the SIGTERM handler"))?;
        let mut listener = startup::bind_socket(&paths.socket)?;
        startup::write_pid_file(&paths)?;
        let registry = poll.registry();
        registry
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io_err("registering the socket"))?;
        registry
            .register(&mut sigchld, SIGCHLD_PIPE, Interest::READABLE)
            .map_err(io_err("registering signals"))?;
        registry
            .register(&mut shutdown_sig, SHUTDOWN_PIPE, Interest::READABLE)
            .map_err(io_err("registering signals"))?;

        let mut daemon = Daemon {
            paths,
            poll,
            listener,
            sigchld,
            shutdown_sig,
            slots: HashMap::new(),
            next_token: FIRST_DYNAMIC,
            clients: HashMap::new(),
            follows: HashMap::new(),
            procs: ProcTable::default(),
            waits: WaitTable::default(),
            pending: Vec::new(),
            timers: Timers::default(),
            retry: Vec::new(),
            generation: 0,
            home_cwd,
            shutting_down: false,
            exiting: false,
            uid: paths::euid(),
            sid: signals::session_id(),
            accept_paused: false,
            notes: crate::ratelimit::NoteLimit::default(),
            big_pipes: 0,
            big_pipe_budget: sys::big_pipe_budget(),
            state_dirty: false,
            state_file: None,
            clock: logs::index::SeqClock::default(),
            run_numbers: None,
            read_buf: vec![0; 128 * 1024],
            ups: HashMap::new(),
            next_up: 0,
            probes: probes::ProbeTable::default(),
            deferred_stops: Vec::new(),
            proxy: None,
            watcher: None,
            watch_pending: HashSet::new(),
            events: events::Events::default(),
            status_notes: Vec::new(),
            chosen_ports: Default::default(),
            log_dir: None,
        };
        daemon.note(&format!(
            "daemon {} started for session '{session}'",
            std::process::id()
        ));
        daemon.stop_orphans();
        let path = daemon.paths.state_file();
        match state::StateFile::open(&path) {
            Ok(file) => daemon.state_file = Some(file),
            Err(e) => daemon.note(&format!(
                "opening {}: {}; crash recovery is off",
                path.display(),
                crate::error::describe_io(&e)
            )),
        }
        daemon.save_state();
        Ok(daemon)
    }

    /// The log dir for a new run, opened by its path again and verified (a link
    /// or a dir not privately ours there now is refused, never written through);
    /// while it is the same dir, its one descriptor is shared with earlier runs.
    fn own_log_dir(&mut self) -> io::Result<std::rc::Rc<paths::OwnDir>> {
        let fresh = match paths::OwnDir::open(&self.paths.log_dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The log dir was deleted under us: make it again.
                let _ = paths::ensure_state_dirs(&self.paths);
                paths::OwnDir::open(&self.paths.log_dir)?
            }
            other => other?,
        };
        if let Some(held) = &self.log_dir
            && held.same_as(&fresh)
        {
            return Ok(held.clone());
        }
        let dir = std::rc::Rc::new(fresh);
        self.log_dir = Some(dir.clone());
        Ok(dir)
    }

    fn run_loop(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            // A huge tree to watch is added a slice per turn, so requests are
            // served in between (the poll below does not sleep while work remains).
            if self.watcher.as_ref().is_some_and(|w| w.busy()) {
                let _ = self.watch_slice(None);
            }
            if self.state_dirty {
                self.state_dirty = false;
                self.save_state();
            }
            if self.exiting && self.clients.values().all(|c| !c.has_output()) {
                return Ok(());
            }
            let now = Instant::now();
            let watching = self.watcher.as_ref().is_some_and(|w| w.busy());
            let timeout = if self.retry.is_empty() && !watching {
                self.timers.next_timeout(now)
            } else {
                Some(Duration::ZERO)
            };
            if timeout.is_none() {
                // Going idle: hand freed heap pages back, so a burst of requests does
                // not leave its high-water mark in the daemon's resident size.
                sys::trim_heap();
            }
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(Error::Io {
                        what: "waiting for events".into(),
                        err,
                    });
                }
            }
            for token in std::mem::take(&mut self.retry) {
                self.dispatch(token, true, false);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_clients(),
                    SIGCHLD_PIPE => {
                        signals::drain_pipe(&mut self.sigchld);
                        self.reap_children();
                    }
                    WATCH => self.watch_events(),
                    SHUTDOWN_PIPE => {
                        signals::drain_pipe(&mut self.shutdown_sig);
                        self.note("received a termination signal; stopping every process");
                        self.begin_shutdown(None);
                    }
                    Token(token) if crate::proxy::Proxy::owns(token) => {
                        self.proxy_event(token, event.is_read_closed() || event.is_error())
                    }
                    token => self.dispatch(
                        token,
                        event.is_readable() || event.is_read_closed(),
                        event.is_write_closed(),
                    ),
                }
            }
            self.fire_due_timers();
        }
    }

    fn dispatch(&mut self, token: Token, readable: bool, hung_up: bool) {
        match self.slots.get(&token).copied() {
            Some(Slot::Client) => {
                // A peer that hung up may still have left requests in the socket
                // (a fire-and-forget StopAll): act on them, then let it go.
                self.service_client(token.0, readable || hung_up);
                if hung_up {
                    self.close_client(token.0);
                }
            }
            Some(Slot::Output(proc, stream)) => self.read_output(proc, stream, PIPE_BUDGET),
            Some(Slot::Probe(probe)) => self.probe_event(probe),
            None if crate::proxy::Proxy::owns(token.0) => self.proxy_again(token.0),
            None => {} // a source closed earlier in this turn
        }
    }

    /// Carry out what components decided, in order. An action may lead to
    /// more (a reply frees a client that had more requests queued).
    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                // ---- shared ----
                Action::Note(msg) => self.note(&msg),
                Action::Arm { at, timer } => self.timers.arm(at, timer),
                Action::Emit { proc, change } => self.emit(proc, change),
                Action::SaveState => self.state_dirty = true,
                Action::Busy { client } => self.set_busy(client),
                // ---- control ----
                Action::Reply { client, response } => self.reply(client, &response),
                Action::ReplyLater { client, response } => self.reply_later(client, &response),
                // ---- lifecycle ----
                // ---- output and follow ----
                // ---- events ----
                Action::SendEvent { to, event, seq } => self.send_event(&to, &event, seq),
                // ---- waits ----
                // ---- up ----
                // ---- probes ----
                // ---- watch ----
                // ---- proxy ----
            }
        }
    }

    fn new_token(&mut self) -> Token {
        let token = Token(self.next_token);
        self.next_token += 1;
        token
    }

    /// One line in daemon.log (our stderr), with a UTC timestamp.
    fn note(&self, msg: &str) {
        // One write per line, so lines from one daemon never interleave mid-line.
        let line = format!("{} {msg}\n", crate::timefmt::rfc3339(SystemTime::now()));
        let _ = io::Write::write_all(&mut io::stderr().lock(), line.as_bytes());
    }

    // ---- control connections ----

    /// A note for a cause that may repeat per event: at most one a minute.
    fn note_limited(&mut self, cause: &'static str, msg: &str) {
        if let Some(held) = self.notes.allow(cause, Instant::now()) {
            self.note(&crate::ratelimit::with_held(msg, held));
        }
    }

    /// Accept what waits, unless paused: a paused listener is retried by its one
    /// timer, not by every new connection's event (that would re-arm a timer each).
    fn accept_clients(&mut self) {
        if !self.accept_paused {
            self.accept_waiting();
        }
    }

    fn accept_waiting(&mut self) {
        self.accept_paused = false;
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Err(e) => {
                    // EMFILE and friends: the connection stays queued in the backlog;
                    // try again shortly rather than spinning on it.
                    self.note_limited(
                        "accept",
                        &format!(
                            "accepting a connection: {}; retrying every 100 ms",
                            crate::error::describe_io(&e)
                        ),
                    );
                    self.accept_paused = true;
                    self.timers
                        .arm(Instant::now() + ACCEPT_RETRY, Timer::RetryAccept);
                    return;
                }
            };
            use std::os::fd::AsRawFd;
            match crate::sys::peer_uid(stream.as_raw_fd()) {
                Ok(uid) if uid == self.uid => {}
                Ok(uid) => {
                    self.note_limited("uid", &format!("refused a connection from uid {uid}"));
                    continue;
                }
                Err(e) => {
                    self.note_limited(
                        "credentials",
                        &format!("refused a connection: reading its credentials: {e}"),
                    );
                    continue;
                }
            }
            if self.clients.len() >= MAX_CLIENTS {
                self.note_limited(
                    "cap",
                    &format!("refused a connection: {MAX_CLIENTS} connections are open"),
                );
                continue;
            }
            let token = self.new_token();
            if self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                continue;
            }
            self.slots.insert(token, Slot::Client);
            self.clients.insert(token.0, Client::new(stream));
        }
    }

    /// Read what a client sent, answer what can be answered, write what is queued.
    fn service_client(&mut self, id: usize, readable: bool) {
        let mut more = false;
        if readable {
            let Some(client) = self.clients.get_mut(&id) else {
                return;
            };
            if !client.read_closed {
                match client.read_some() {
                    Ok(ReadOutcome::Drained) => {}
                    Ok(ReadOutcome::More) => more = true,
                    Err(_) => return self.close_client(id),
                }
            }
        }
        self.process_requests(id);
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if client.flush().is_err() {
            return self.close_client(id);
        }
        if client.finished() {
            return self.close_client(id);
        }
        // Read on later if the budget ran out and the client can take requests again.
        if more && client.ready_for_request() {
            self.retry.push(Token(id));
        }
    }

    fn process_requests(&mut self, id: usize) {
        let mut handled = 0;
        loop {
            let Some(client) = self.clients.get_mut(&id) else {
                return;
            };
            if !client.ready_for_request() || handled >= 64 {
                if handled >= 64 {
                    self.retry.push(Token(id));
                }
                return;
            }
            let Some(request) = client.next_request() else {
                return;
            };
            handled += 1;
            match request {
                Ok(request) => self.handle(id, request),
                Err(message) => client.send(&Response::error(message)),
            }
        }
    }

    /// Flush after a reply made outside `service_client` (a stop that finished, a
    /// wait that matched), and take the client's next request, which waited.
    fn after_reply(&mut self, id: usize) {
        if let Some(client) = self.clients.get_mut(&id) {
            client.busy = false;
        }
        self.service_client(id, false);
        // The client may have sent more while busy; its edge was spent.
        if self.clients.get(&id).is_some_and(|c| !c.read_closed) {
            self.retry.push(Token(id));
        }
    }

    fn reply(&mut self, id: usize, response: &Response) {
        if let Some(client) = self.clients.get_mut(&id) {
            client.send(response);
        }
    }

    /// Reply to a request that kept the client busy, and free the client.
    fn reply_later(&mut self, id: usize, response: &Response) {
        self.reply(id, response);
        self.after_reply(id);
    }

    fn close_client(&mut self, id: usize) {
        if let Some(mut client) = self.clients.remove(&id) {
            let _ = self.poll.registry().deregister(&mut client.stream);
        }
        self.slots.remove(&Token(id));
        self.follows.remove(&id);
        self.events.drop_client(ids::ClientId(id));
        self.waits.drop_client(ids::ClientId(id));
        self.up_drop_client(id);
        for p in &mut self.pending {
            match p {
                Pending::Stop { client, .. }
                | Pending::Restart { client, .. }
                | Pending::StopAll { client, .. }
                    if *client == id =>
                {
                    *client = usize::MAX;
                }
                Pending::Shutdown { client, .. } if *client == Some(id) => *client = None,
                _ => {}
            }
        }
    }

    // ---- requests ----

    fn handle(&mut self, client: usize, request: Request) {
        // The CLI never half-closes: a peer that hung up before its request was
        // read has gone (it gave up while the daemon was stalled, or was killed).
        // Nobody would learn of a process started for it now, so none is.
        if matches!(request, Request::Run { .. } | Request::Up { .. })
            && self.clients.get(&client).is_some_and(|c| c.read_closed)
        {
            let what = match &request {
                Request::Run { name, command, .. } => {
                    format!("run of '{}'", name.as_deref().unwrap_or(command))
                }
                _ => "up".to_string(),
            };
            self.note_limited(
                "gone",
                &format!("dropped a {what}: its client hung up before it was read"),
            );
            return;
        }
        match request {
            run @ Request::Run { .. } => {
                let response = self.run_process(run);
                self.reply(client, &response);
            }
            Request::Up { processes, base_env, timeout_ms } => {
                self.up_request(client, processes, base_env, timeout_ms)
            }
            Request::Stop { target, timeout_ms } => self.stop_request(client, &target, timeout_ms),
            Request::StopAll { timeout_ms } => {
                let remaining = self.stop_all(timeout_ms.map(Duration::from_millis));
                if remaining.is_empty() {
                    self.reply(client, &Response::Ok { message: "all processes stopped".into() });
                } else {
                    self.set_busy(client);
                    self.pending.push(Pending::StopAll { client, remaining });
                }
            }
            Request::Restart { target } => self.restart_request(client, &target),
            Request::Status { target, resources } => {
                let proxy_port = self.proxy.as_ref().map(|p| p.port());
                let mut processes = match &target {
                    None => self.procs.status(Instant::now(), proxy_port),
                    Some(t) => match self.procs.find(t).and_then(|id| self.procs.get(id)) {
                        Some(p) => vec![p.info(Instant::now(), proxy_port)],
                        None => {
                            let response = self.not_found(t);
                            return self.reply(client, &response);
                        }
                    },
                };
                if let Some(w) = &self.watcher {
                    for row in &mut processes {
                        if let Some(p) = self.procs.by_name(&row.name).and_then(|id| self.procs.get(id))
                            && w.watching(p.id)
                        {
                            // A process stopped by hand is not restarted by changes.
                            row.watched = Some(!p.sup.disabled);
                        }
                    }
                }
                if resources || target.is_some() {
                    self.add_resources(&mut processes, target.is_some());
                }
                let notes = self.status_notes.clone();
                self.reply(client, &Response::Status { processes, notes });
            }
            logs @ Request::Logs { follow: true, .. } => self.follow_request(client, logs),
            Request::Logs { .. } => self.reply(
                client,
                &Response::error("logs without follow are read from the files directly; set follow: true to stream"),
            ),
            Request::Wait { target, until, regex, exit, timeout_secs, timeout_ms, port, http } => {
                let timeout = timeout_ms
                    .map(Duration::from_millis)
                    .or(timeout_secs.map(Duration::from_secs))
                    .unwrap_or(DEFAULT_WAIT_TIMEOUT);
                let probe = match (port, http) {
                    (None, None) => None,
                    (Some(port), None) if port > 0 => Some(Ok(crate::probe::Target::tcp(port))),
                    (Some(_), None) => Some(Err("port must be from 1 to 65535".to_string())),
                    (None, Some(url)) => Some(crate::probe::http_target(&url)),
                    (Some(_), Some(_)) => Some(Err("wait takes port or http, not both".to_string())),
                };
                match probe {
                    None => self.wait_request(client, &target, until, regex, exit, timeout),
                    Some(_) if until.is_some() || exit => self.reply(
                        client,
                        &Response::error("wait takes one of until, exit, port and http"),
                    ),
                    Some(Ok(probe)) => self.probe_wait(client, &target, probe, timeout),
                    Some(Err(msg)) => self.reply(client, &Response::error(msg)),
                }
            }
            Request::Shutdown => {
                self.set_busy(client);
                self.begin_shutdown(Some(client));
            }
            Request::EnableProxy { proxy_port } => {
                let response = self.enable_proxy(proxy_port);
                self.reply(client, &response);
            }
            Request::Hello { .. } => {
                self.reply(client, &Response::Hello { version: crate::protocol::PROTOCOL_VERSION })
            }
            Request::Events { since } => {
                let actions = self.events.subscribe(ids::ClientId(client), since);
                self.apply(actions);
            }
            Request::Unknown => self.reply(client, &Response::error("unknown request type")),
        }
    }

    /// Number a state change of process `id` and stream it to the subscribers.
    fn emit(&mut self, id: ProcId, change: events::Change) {
        let Some(p) = self.procs.get(id) else {
            return;
        };
        let actions = self.events.emit(&p.name, id, change);
        self.apply(actions);
    }

    /// Write event `seq` to each subscriber that is still connected.
    fn send_event(&mut self, to: &[ids::ClientId], event: &Response, seq: u64) {
        for client in to {
            if let Some(c) = self.clients.get_mut(&client.0) {
                c.send_event(event, seq);
                // What does not fit in the socket now goes on its writable edge; a
                // broken connection is closed by the retry, not in the middle of this.
                if c.flush().is_err() {
                    self.retry.push(Token(client.0));
                }
            }
        }
    }

    fn set_busy(&mut self, client: usize) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.busy = true;
        }
    }

    fn not_found(&self, target: &str) -> Response {
        let names = self.procs.names();
        let known = if names.is_empty() {
            format!("session '{}' has no processes", self.paths.session)
        } else {
            format!("session '{}' has: {}", self.paths.session, names.join(", "))
        };
        Response::not_found(format!("process not found: {target} ({known})"))
    }

    /// What a run request asks for, minus the caller's environment and name:
    /// equal definitions start the same thing.
    fn definition(&self, request: &Request) -> Option<String> {
        spec::definition(request, &self.home_cwd)
    }

    fn run_process(&mut self, request: Request) -> Response {
        if self.shutting_down {
            return Response::error(
                "the daemon is shutting down; run the command again once it has exited",
            );
        }
        let ctx = spec::Context {
            home_cwd: &self.home_cwd,
            behind_proxy: self.proxy.is_some(),
        };
        let spec::Planned {
            name,
            mut spec,
            watch,
        } = match spec::Spec::from_run(request, &ctx) {
            Ok(planned) => planned,
            Err(msg) => return Response::error(msg),
        };
        let existing = name.as_deref().and_then(|n| self.procs.by_name(n));
        if let Some(id) = existing
            && let Some(p) = self.procs.get(id)
            && p.state.is_alive()
        {
            return Response::error(format!(
                "process '{}' is already running (id p{}, pid {}); stop it first or choose another --name",
                p.name, p.id, p.pid
            ));
        }
        // Processes started from one shell share one copy of its environment.
        spec.base_env = spec.base_env.map(|env| {
            self.procs
                .iter()
                .filter_map(|p| p.spec.base_env.as_ref())
                .find(|known| ***known == *env)
                .cloned()
                .unwrap_or(env)
        });
        let asked_port = spec.port;
        if asked_port.is_none() {
            match self.backend_port(existing, name.as_deref()) {
                Ok(port) => spec.port = port,
                Err(message) => return Response::error(message),
            }
        }
        let watch = watch.map(|w| watch::Spec {
            root: spec.cwd.clone(),
            patterns: w.patterns,
            ignore: w.ignore,
        });
        let taken = self.asked_port_taken(asked_port, existing);
        let mut response = match existing {
            Some(id) => self.rerun(id, spec, watch),
            None => self.first_run(name, spec, watch),
        };
        if let (Some(taken), Response::RunOk { name, warning, .. }) = (taken, &mut response) {
            self.note(&format!("{name}: warning: {taken}"));
            *warning = Some(taken);
        }
        response
    }

    /// Behind the proxy every process needs a port: a re-run keeps the one it
    /// had, so its URL keeps working, or a free one is taken.
    fn backend_port(
        &mut self,
        existing: Option<ProcId>,
        name: Option<&str>,
    ) -> std::result::Result<Option<u16>, String> {
        if self.proxy.is_none() {
            return Ok(None);
        }
        let kept = existing
            .and_then(|id| self.procs.get(id))
            .and_then(|p| p.spec.port);
        match kept {
            Some(port) => Ok(Some(port)),
            None => self.free_backend_port(name).map(Some),
        }
    }

    /// 0.6 did not look; a taken port is a warning, not a refusal, because
    /// the holder may be about to go, or the command may not use PORT at all.
    /// A port we chose was free already; a bind tells in microseconds whether
    /// an asked-for one is, and only a refusal costs reading the TCP tables.
    fn asked_port_taken(&self, asked: Option<u16>, existing: Option<ProcId>) -> Option<String> {
        asked
            .filter(|&port| TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).is_err())
            .and_then(|port| {
                let old_group = existing
                    .and_then(|id| self.procs.get(id))
                    .map(|p| p.pgid)
                    .filter(|&g| g > 0);
                self.port_taken(port, old_group)
            })
    }

    /// Re-running an exited name replaces it, keeping its id; leftovers of its
    /// old process group belong to the run being replaced.
    fn rerun(&mut self, id: ProcId, spec: spec::Spec, watch: Option<watch::Spec>) -> Response {
        let sid = self.sid;
        if let Some(p) = self.procs.get_mut(id) {
            if signals::group_alive(p.pgid, sid) {
                signals::kill_group(p.pgid, libc::SIGKILL);
            }
            p.spec = spec;
            p.sup.reset();
        }
        if let Err(msg) = self.set_watch(id, watch) {
            return Response::error(msg);
        }
        self.respawn(id, None)
    }

    /// A new name: a new entry in the table, removed again if it cannot start.
    fn first_run(
        &mut self,
        name: Option<String>,
        spec: spec::Spec,
        watch: Option<watch::Spec>,
    ) -> Response {
        let id = self.procs.allocate_id();
        let name = name.unwrap_or_else(|| format!("p{id}"));
        if self.procs.by_name(&name).is_some() {
            return Response::error(format!("process '{name}' already exists; choose a --name"));
        }
        self.procs.insert(Proc::new(id, name, spec));
        if let Err(msg) = self.set_watch(id, watch) {
            self.procs_remove(id);
            return Response::error(msg);
        }
        let response = self.respawn(id, None);
        if matches!(response, Response::Error { .. }) {
            self.procs_remove(id);
        }
        response
    }

    fn procs_remove(&mut self, id: ProcId) {
        // Only a process that never started is removed; it has no pipes or logs.
        self.procs.remove_unstarted(id);
    }

    /// Start (or start again) process `id` from its spec: new log segments, new
    /// pipes registered with the loop, state Running. Returns the `run` answer.
    fn respawn(&mut self, id: ProcId, annotation: Option<&str>) -> Response {
        let Some(p) = self.procs.get(id) else {
            return Response::error("process vanished");
        };
        let spec = p.spec.clone();
        let name = p.name.clone();
        let grow = self.big_pipes + 2 <= self.big_pipe_budget;
        let spawned = match spawn::spawn(&spec, &name, grow) {
            Ok(s) => s,
            Err(msg) => {
                self.note(&format!("{name}: {msg}"));
                if let Some(p) = self.procs.get_mut(id) {
                    p.state = State::Failed {
                        reason: msg.clone(),
                    };
                }
                self.emit(id, Change::new("failed").detail(msg.clone()));
                return Response::error(msg);
            }
        };
        // Retire the previous run's pipes (a setsid'd escapee may still hold them).
        self.close_outputs(id);
        // The run begins here: every byte of it gets a later sequence number.
        let run = self.next_run_number(&name);
        let run_seq = self.clock.tick();
        let grown = spawned.grown;
        let mut outputs: [Option<Output>; 2] = [None, None];
        let mut failure = None;
        let log_dir = self.own_log_dir();
        for (slot, (stream, pipe)) in outputs.iter_mut().zip([
            (Stream::Stdout, spawned.stdout),
            (Stream::Stderr, spawned.stderr),
        ]) {
            let path = self.paths.log_file(&name, stream.name());
            let created = match &log_dir {
                Ok(dir) => LogSink::create_in(dir.clone(), path.clone(), spec.log_limits),
                Err(e) => Err(io::Error::new(
                    e.kind(),
                    format!(
                        "{}: {}",
                        self.paths.log_dir.display(),
                        crate::error::describe_io(e)
                    ),
                )),
            };
            let sink = match created {
                Ok(mut s) => {
                    // Before the child's first byte, which is still in the pipe.
                    if let (Some(note), Stream::Stdout) = (annotation, stream) {
                        s.annotate(&mut self.clock, note, |_| {});
                        // Its index closes again until output flows.
                        s.release();
                    }
                    s
                }
                Err(e) => {
                    failure = Some(format!(
                        "opening log {}: {}",
                        path.display(),
                        crate::error::describe_io(&e)
                    ));
                    continue;
                }
            };
            let token = self.new_token();
            let mut pipe = pipe;
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut pipe, token, Interest::READABLE)
            {
                failure = Some(format!("watching the output of {name}: {e}"));
                continue;
            }
            self.slots.insert(token, Slot::Output(id, stream));
            if grown {
                self.big_pipes += 1;
            }
            *slot = Some(Output {
                pipe: Some(pipe),
                token,
                sink,
                grown,
            });
        }
        let pid = spawned.pid;
        let Some(p) = self.procs.get_mut(id) else {
            return Response::error("process vanished");
        };
        p.outputs = outputs;
        p.pid = pid;
        p.pgid = pid as i32;
        p.started_wall = SystemTime::now();
        p.run = run;
        p.run_seq = run_seq;
        p.start_ticks = sys::start_ticks(pid);
        p.port_conflict = None;
        p.cpu_sample = None;
        p.state = State::Running {
            pid,
            since: Instant::now(),
        };
        self.procs.set_pid(id, pid as i32);
        if let Some(msg) = failure {
            // Without its logs the process would run blind; stop it at once.
            signals::kill_group(pid as i32, libc::SIGKILL);
            self.note(&format!("{name}: {msg}"));
            self.emit(id, Change::new("failed").pid(pid).detail(msg.clone()));
            return Response::error(msg);
        }
        self.note(&format!(
            "{name} (p{id}) started, pid {pid}: {}",
            spec.command
        ));
        self.journal(logs::runs::Entry {
            p: name.clone(),
            run,
            start: Some(logs::index::now_ms()),
            seq: Some(run_seq),
            pid: Some(pid),
            ..Default::default()
        });
        // Recorded before anyone hears of it: if we are killed right after
        // answering, the next daemon must still find this process group.
        self.save_state();
        let started = Change::new("started").pid(pid);
        self.emit(
            id,
            match annotation {
                Some(note) => started.detail(note.trim_start_matches("[agent-procs] ")),
                None => started,
            },
        );
        self.mark_run_start(id);
        // Followers and waits see the note as the first line of the new run.
        if let Some(note) = annotation {
            self.deliver_line(id, Stream::Stdout, note.as_bytes());
            self.flush_followers();
        }
        let proxy_port = self.proxy.as_ref().map(|p| p.port());
        let url = self.procs.get(id).and_then(|p| p.url(proxy_port));
        Response::RunOk {
            name,
            id: format!("p{id}"),
            pid,
            port: spec.port,
            url,
            warning: None,
        }
    }

    /// The number the next run of `name` gets: one more than the journal's last,
    /// or than the runs in its logs when the journal has none (older logs).
    fn next_run_number(&mut self, name: &str) -> u64 {
        let log_dir = &self.paths.log_dir;
        let numbers = self
            .run_numbers
            .get_or_insert_with(|| logs::runs::last_numbers(log_dir));
        let last = match numbers.get(name) {
            Some(&n) => n,
            None => {
                let streams = STREAMS.map(|s| (s, self.paths.log_file(name, s.name())));
                logs::runs::count_in_logs(name, &streams)
            }
        };
        // (A planted journal may say anything, u64::MAX included.)
        let next = last.saturating_add(1);
        numbers.insert(name.to_string(), next);
        next
    }

    /// Tell the followers of `id` that asked for run markers that a run began.
    fn mark_run_start(&mut self, id: ProcId) {
        let wanted = |f: &Follow| f.runs.is_some() && f.target.is_none_or(|t| t == id);
        if !self.follows.values().any(wanted) {
            return;
        }
        let Some(p) = self.procs.get(id) else { return };
        let previous = match p.sup.exits.back() {
            Some(exit) => logs::runs::Previous::Ended(supervise::ended(exit)),
            None if p.run <= 1 => logs::runs::Previous::None,
            // Its last run was under an earlier daemon: the journal knows.
            None => logs::runs::from_journal(&logs::runs::read(&self.paths.log_dir, Some(&p.name)))
                .pop()
                .map_or(logs::runs::Previous::Unknown, |r| r.previous),
        };
        let run = logs::runs::Run {
            number: Some(p.run),
            seq: p.run_seq,
            start_ms: Some(logs::index::now_ms()),
            pid: Some(p.pid),
            previous,
            journal: true,
        };
        let line = logs::runs::marker(&run);
        let name = p.name.clone();
        for (client, follow) in self.follows.iter_mut() {
            if !wanted(follow) {
                continue;
            }
            let Some(c) = self.clients.get_mut(client) else {
                continue;
            };
            if let Some(batch) = follow.batch.take() {
                send_batch(c, batch); // what came before goes first
            }
            c.send_follow(
                &Response::LogLine {
                    process: name.clone(),
                    stream: marker_stream(follow),
                    line: line.clone(),
                },
                1,
            );
        }
    }

    /// Append to the run journal; a failure is noted in daemon.log, nothing more.
    /// Written relative to the log dir's descriptor, like the logs themselves.
    fn journal(&mut self, entry: logs::runs::Entry) {
        let dir = match self.log_dir.clone() {
            Some(dir) => Ok(dir),
            None => self.own_log_dir(),
        };
        if let Err(e) = dir.and_then(|dir| logs::runs::append(&dir, &entry)) {
            self.note(&format!(
                "writing {}: {}",
                logs::runs::journal_path(&self.paths.log_dir).display(),
                crate::error::describe_io(&e)
            ));
        }
    }

    fn close_outputs(&mut self, id: ProcId) {
        let Some(p) = self.procs.get_mut(id) else {
            return;
        };
        for output in p.outputs.iter_mut().flatten() {
            if let Some(mut pipe) = output.pipe.take() {
                let _ = self.poll.registry().deregister(&mut pipe);
            }
            if std::mem::take(&mut output.grown) {
                self.big_pipes -= 1;
            }
            self.slots.remove(&output.token);
        }
    }

    fn stop_request(&mut self, client: usize, target: &str, timeout_ms: Option<u64>) {
        let Some(id) = self.procs.find(target) else {
            let response = self.not_found(target);
            return self.reply(client, &response);
        };
        let timeout = self.stop_timeout(id, timeout_ms.map(Duration::from_millis));
        // A stop by hand turns automatic restarts off until `restart` or `run`.
        let mut was_down = None;
        if let Some(p) = self.procs.get_mut(id) {
            p.sup.disabled = true;
            if matches!(p.state, State::Exited { .. } | State::Failed { .. }) {
                was_down = Some(p.name.clone());
            }
        }
        if self.begin_stop(id, timeout) {
            self.set_busy(client);
            self.pending.push(Pending::Stop {
                client,
                proc: id,
                label: target.to_string(),
            });
        } else {
            // A second stop is not an error (the process is where it was asked
            // to be), but it does not pretend to have stopped anything either.
            let message = match was_down {
                Some(name) => format!("{name} was not running"),
                None => format!("stopped {target}"),
            };
            self.reply(client, &Response::Ok { message });
        }
    }

    /// Send SIGTERM to the group and arm the SIGKILL deadline. Returns false when
    /// there is nothing left to stop (the process and its whole group are gone).
    fn begin_stop(&mut self, id: ProcId, timeout: Duration) -> bool {
        self.generation += 1;
        let generation = self.generation;
        let Some(p) = self.procs.get_mut(id) else {
            return false;
        };
        let signal = if timeout.is_zero() {
            libc::SIGKILL
        } else {
            p.spec.stop_signal
        };
        match p.state.clone() {
            State::Running { pid, since } => {
                p.state = State::Stopping {
                    pid,
                    since,
                    leader: None,
                    generation,
                    kills: 0,
                };
            }
            State::Stopping { .. } => {
                // Already stopping: a shorter grace period may still apply.
                if let State::Stopping { generation: g, .. } = p.state {
                    self.timers.arm(
                        Instant::now() + timeout,
                        Timer::Escalate {
                            proc: id,
                            generation: g,
                        },
                    );
                }
                return true;
            }
            State::Exited { exit } if signals::group_alive(p.pgid, self.sid) => {
                // The leader is gone but members of its group live on.
                p.state = State::Stopping {
                    pid: p.pid,
                    since: Instant::now(),
                    leader: Some(exit),
                    generation,
                    kills: 0,
                };
            }
            State::Backoff { exit, .. } => {
                // Waiting to restart: the stop cancels that, and ends what the dead
                // leader left in its group.
                p.state = State::Exited { exit };
                if signals::group_alive(p.pgid, self.sid) {
                    signals::kill_group(p.pgid, libc::SIGKILL);
                }
                self.state_dirty = true;
                self.emit(id, Change::new("stopped").detail("restart cancelled"));
                return false;
            }
            State::Exited { .. } | State::Failed { .. } => return false,
        }
        p.sup.stop_reason.get_or_insert(supervise::Reason::Stopped);
        let (pgid, name, pid) = (p.pgid, p.name.clone(), p.pid);
        signals::kill_group(pgid, signal);
        self.note(&format!(
            "stopping {name}: sent {} to process group {pgid}",
            signals::signal_name(signal)
        ));
        self.emit(
            id,
            Change::new("stopping")
                .pid(pid)
                .detail(signals::signal_name(signal)),
        );
        self.timers.arm(
            Instant::now() + timeout,
            Timer::Escalate {
                proc: id,
                generation,
            },
        );
        true
    }

    /// The grace period for stopping `id`: the one asked for, else its own, else 10 s.
    fn stop_timeout(&self, id: ProcId, requested: Option<Duration>) -> Duration {
        requested
            .or_else(|| self.procs.get(id).and_then(|p| p.spec.stop_timeout))
            .unwrap_or(DEFAULT_STOP_TIMEOUT)
    }

    /// Begin stopping every live process, dependents before what they depend on
    /// (independent ones in parallel); returns those that must finish first.
    fn stop_all(&mut self, requested: Option<Duration>) -> HashSet<ProcId> {
        let mut remaining = HashSet::new();
        for id in self.procs.ids() {
            if let Some(p) = self.procs.get_mut(id) {
                p.sup.disabled = true;
                if let State::Backoff { exit, .. } = p.state {
                    p.state = State::Exited { exit };
                    self.state_dirty = true;
                }
            }
            if self.procs.get(id).is_some_and(|p| p.state.is_alive()) {
                remaining.insert(id);
                self.deferred_stops.retain(|(d, _)| *d != id);
                self.deferred_stops.push((id, requested));
            } else if self.begin_stop(id, self.stop_timeout(id, requested)) {
                // Exited leader, live group: nothing depends on leftovers.
                remaining.insert(id);
            }
        }
        self.release_deferred_stops();
        remaining
    }

    /// Stop the deferred processes that no live process depends on any more.
    fn release_deferred_stops(&mut self) {
        loop {
            let live_needs: HashSet<&str> = self
                .procs
                .iter()
                .filter(|p| p.state.is_alive())
                .flat_map(|p| p.spec.depends_on.iter().map(String::as_str))
                .collect();
            let mut free: Vec<(ProcId, Option<Duration>)> = self
                .deferred_stops
                .iter()
                .filter(|(id, _)| {
                    self.procs
                        .get(*id)
                        .is_none_or(|p| !live_needs.contains(p.name.as_str()))
                })
                .copied()
                .collect();
            if free.is_empty() {
                // Nothing is stopping, so nothing will free them (dependencies from
                // two configs can form a cycle): stop the rest together.
                let in_flight = self
                    .procs
                    .iter()
                    .any(|p| matches!(p.state, State::Stopping { .. }));
                if in_flight || self.deferred_stops.is_empty() {
                    return;
                }
                free = self.deferred_stops.clone();
            }
            self.deferred_stops.retain(|d| !free.contains(d));
            for (id, requested) in free {
                let timeout = self.stop_timeout(id, requested);
                self.begin_stop(id, timeout);
            }
            // A process that was already gone may have freed others at once.
        }
    }

    fn restart_request(&mut self, client: usize, target: &str) {
        if self.shutting_down {
            return self.reply(client, &Response::error("the daemon is shutting down"));
        }
        let Some(id) = self.procs.find(target) else {
            let response = self.not_found(target);
            return self.reply(client, &response);
        };
        if let Some(p) = self.procs.get_mut(id) {
            p.sup.reset();
            p.sup.stop_reason = Some(supervise::Reason::Restarted);
        }
        self.emit(id, Change::new("restarting").delay_ms(0).detail("manual"));
        let stopping = self.begin_stop(id, self.stop_timeout(id, None));
        if !stopping && let Some(p) = self.procs.get_mut(id) {
            // Not running: nothing ends with this reason; the next death is its own.
            p.sup.stop_reason = None;
        }
        if stopping {
            self.set_busy(client);
            self.pending.push(Pending::Restart {
                client,
                proc: id,
                note: MANUAL_NOTE,
            });
        } else {
            let response = self.respawn(id, Some(MANUAL_NOTE));
            self.reply(client, &response);
        }
    }

    fn begin_shutdown(&mut self, client: Option<usize>) {
        if !self.shutting_down {
            self.note("shutting down");
        }
        self.shutting_down = true;
        let remaining = self.stop_all(None);
        self.pending.push(Pending::Shutdown { client, remaining });
        self.settle_pending();
    }

    // ---- waits and follows ----

    fn wait_request(
        &mut self,
        client: usize,
        target: &str,
        until: Option<String>,
        regex: bool,
        exit: bool,
        timeout: Duration,
    ) {
        let Some(id) = self.procs.find(target) else {
            let response = self.not_found(target);
            return self.reply(client, &response);
        };
        let pattern = match until
            .as_deref()
            .map(|u| Pattern::new(u, regex, false))
            .transpose()
        {
            Ok(p) => p,
            Err(msg) => return self.reply(client, &Response::error(msg)),
        };
        if pattern.is_none() && !exit {
            return self.reply(
                client,
                &Response::error("wait needs a pattern (until) or exit: true"),
            );
        }
        // History first: the output of the current run, up to its last complete line.
        if let Some(pattern) = &pattern
            && let Some(line) = self.search_history(id, pattern)
        {
            return self.reply(
                client,
                &Response::WaitMatch {
                    line: String::from_utf8_lossy(&line).into_owned(),
                },
            );
        }
        let Some(p) = self.procs.get(id) else { return };
        match &p.state {
            State::Exited { exit: status } | State::Backoff { exit: status, .. } if exit => {
                let response = Response::WaitExited {
                    exit_code: status.code(),
                    exit_signal: status.signal_name(),
                };
                return self.reply(client, &response);
            }
            State::Exited { exit: status } if p.pipes_closed() => {
                let message = format!(
                    "{} has exited ({}) and its output never matched '{}'",
                    p.name,
                    p.outcome(*status),
                    until.unwrap_or_default()
                );
                return self.reply(client, &Response::error(message));
            }
            State::Failed { reason } => {
                let message = format!("{} is not running: {reason}", p.name);
                return self.reply(client, &Response::error(message));
            }
            _ => {}
        }
        self.set_busy(client);
        if pattern.is_some() {
            self.prepare_indexes(id);
        }
        let wait = self.waits.add(Wait {
            client: ids::ClientId(client),
            proc: id,
            pattern,
            pattern_text: until.unwrap_or_default(),
            exit,
            probe: false,
        });
        self.timers
            .arm(Instant::now() + timeout, Timer::WaitDeadline { wait });
    }

    /// A line of process `id` is awaited: its first line, which may be the one,
    /// should not have to create the index files on its way to the waiter.
    /// (A stream nobody waits on still gets its index only when it writes.)
    fn prepare_indexes(&mut self, id: ProcId) {
        let Some(p) = self.procs.get_mut(id) else {
            return;
        };
        for stream in STREAMS {
            if let Some(output) = p.output(stream).filter(|o| o.pipe.is_some()) {
                // A failure here is met again, and reported, by the first write.
                let _ = output.sink.prepare_index();
            }
        }
    }

    /// `wait --port` / `--http`: probe until ready, the process exits, or time is up.
    fn probe_wait(
        &mut self,
        client: usize,
        target: &str,
        probe: crate::probe::Target,
        timeout: Duration,
    ) {
        let Some(id) = self.procs.find(target) else {
            let response = self.not_found(target);
            return self.reply(client, &response);
        };
        let Some(p) = self.procs.get(id) else { return };
        if !matches!(p.state, State::Running { .. }) {
            let why = match &p.state {
                State::Exited { exit } => format!("it exited ({})", p.outcome(*exit)),
                State::Failed { reason } => reason.clone(),
                State::Backoff { .. } => "it is waiting to be restarted".to_string(),
                _ => "it is stopping".to_string(),
            };
            let message = format!("{} is not running: {why}", p.name);
            return self.reply(client, &Response::error(message));
        }
        self.set_busy(client);
        let wait = self.waits.add(Wait {
            client: ids::ClientId(client),
            proc: id,
            pattern: None,
            pattern_text: probe.describe(),
            exit: false,
            probe: true,
        });
        let probe = self.probes.add(probes::Owner::Wait(wait.0), id, probe);
        self.timers.arm(Instant::now(), Timer::ProbeTry { probe });
        self.timers
            .arm(Instant::now() + timeout, Timer::WaitDeadline { wait });
    }

    fn search_history(&self, id: ProcId, pattern: &Pattern) -> Option<Vec<u8>> {
        let p = self.procs.get(id)?;
        // Every segment of the current run: it may have been rotated by size.
        p.outputs
            .iter()
            .flatten()
            .flat_map(|o| o.sink.run_segments())
            .find_map(|(path, limit)| {
                match pattern {
                    Pattern::Substring(text) => logs::read::find_substring(&path, limit, text),
                    Pattern::Regex(_, Some(literal)) => {
                        // Only lines holding the literal can match: search for it first.
                        let mut found = None;
                        logs::read::for_each_match(&path, 0, limit, literal, |_, line| {
                            if pattern.matches(line) {
                                found = Some(line.to_vec());
                            }
                            found.is_none()
                        })
                        .map(|()| found)
                    }
                    Pattern::Regex(_, None) => {
                        logs::read::find_line(&path, limit, |line| pattern.matches(line))
                    }
                }
                .ok()
                .flatten()
            })
    }

    #[allow(clippy::too_many_arguments)]
    fn follow_request(&mut self, client: usize, request: Request) {
        let Request::Logs {
            target,
            tail,
            stderr,
            all,
            timeout_secs,
            lines,
            both,
            grep,
            regex,
            ignore_case,
            chunked,
            runs,
            ..
        } = request
        else {
            return;
        };
        let target_id = match target.as_deref() {
            Some(t) if !all => match self.procs.find(t) {
                Some(id) => Some(id),
                None => {
                    let response = self.not_found(t);
                    return self.reply(client, &response);
                }
            },
            _ => None,
        };
        let grep = match grep
            .as_deref()
            .map(|g| Pattern::new(g, regex, ignore_case))
            .transpose()
        {
            Ok(g) => g,
            Err(msg) => return self.reply(client, &Response::error(msg)),
        };
        self.generation += 1;
        let follow = Follow {
            target: target_id,
            stderr,
            both,
            all: all || target_id.is_none(),
            remaining: lines,
            generation: self.generation,
            grep,
            chunked,
            batch: None,
            runs,
        };
        // Replay the tail and go live in the same turn: no gap, no duplicate.
        if tail > 0 {
            self.replay(client, &follow, tail);
        }
        self.set_busy(client);
        if let Some(secs) = timeout_secs {
            let generation = follow.generation;
            self.timers.arm(
                Instant::now() + Duration::from_secs(secs),
                Timer::FollowDeadline { client, generation },
            );
        }
        self.follows.insert(client, follow);
        if lines == Some(0) || target_id.is_some_and(|id| self.output_finished(id)) {
            self.end_follow(client);
        }
    }

    /// The last `tail` lines (or matches) a follower asked for, from the files,
    /// in arrival order and up to the last complete line of each stream.
    fn replay(&mut self, client: usize, follow: &Follow, tail: usize) {
        let ids = match follow.target {
            Some(id) => vec![id],
            None => self.procs.ids(),
        };
        let mut sources = Vec::new();
        let mut histories = HashMap::new();
        for id in ids {
            let Some(p) = self.procs.get(id) else {
                continue;
            };
            let first = sources.len();
            for stream in STREAMS {
                let Some(output) = &p.outputs[procs::stream_index(stream)] else {
                    continue;
                };
                if !follow_wants(follow, stream) {
                    continue;
                }
                let limit = Some(output.sink.complete_len());
                if let Ok(mut source) =
                    logs::query::Source::open_limited(&p.name, stream, &output.sink.path, limit)
                {
                    // The replay covers the current run, as `logs` does by default.
                    source.floor = logs::query::Floor::Seq(p.run_seq);
                    sources.push(source);
                }
            }
            // Earlier runs too: their starts come from the run journal.
            if let Some(n) = follow.runs.filter(|&n| n != 1) {
                let mine: Vec<&logs::query::Source> = sources[first..].iter().collect();
                let history = logs::runs::History::load(&self.paths.log_dir, &p.name, &mine);
                let floor = history.floor((n > 0).then_some(n as usize));
                for source in &mut sources[first..] {
                    source.floor = floor;
                }
                histories.insert(p.name.clone(), history);
            }
        }
        let filter = |line: &[u8]| follow.grep.as_ref().is_none_or(|g| g.matches(line));
        let plain = follow.grep.as_ref().and_then(Pattern::literal);
        let query = logs::query::Query {
            tail: Some(tail),
            since: logs::query::Since::Everything,
            after: None,
            grep: follow
                .grep
                .as_ref()
                .map(|_| &filter as logs::query::LineFilter<'_>),
            plain,
            context: 0,
        };
        let lines = logs::query::run(&sources, &query).unwrap_or_default();
        let marks = logs::runs::marks(
            &lines,
            |i| sources.get(i).map(|s| s.process.as_str()),
            &histories,
        );
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        for (line, mark) in lines.into_iter().zip(marks) {
            let Some(source) = sources.get(line.source) else {
                continue;
            };
            for run in mark.starts {
                c.send(&Response::LogLine {
                    process: source.process.clone(),
                    stream: marker_stream(follow),
                    line: logs::runs::marker(run),
                });
            }
            c.send(&Response::LogLine {
                process: source.process.clone(),
                stream: source.stream,
                line: String::from_utf8_lossy(&line.bytes).into_owned(),
            });
        }
    }

    fn end_follow(&mut self, client: usize) {
        if let Some(mut follow) = self.follows.remove(&client) {
            if let Some(c) = self.clients.get_mut(&client) {
                if let Some(batch) = follow.batch.take() {
                    send_batch(c, batch);
                }
                c.note_lost(); // before the end, not after it
            }
            self.reply_later(client, &Response::LogEnd);
        }
    }

    /// The process has exited for good and all its output has been read.
    fn output_finished(&self, id: ProcId) -> bool {
        self.procs.get(id).is_some_and(|p| {
            matches!(p.state, State::Exited { .. } | State::Failed { .. }) && p.pipes_closed()
        })
    }

    // ---- child output ----

    /// Read up to `budget` bytes from one pipe into its log, and pass the lines on.
    fn read_output(&mut self, id: ProcId, stream: Stream, budget: usize) {
        let mut taken = 0;
        let mut eof = false;
        let mut buf = std::mem::take(&mut self.read_buf);
        // Lines are split out only for someone who wants them.
        let interested = self.waits.any_pattern_for(id)
            || self.up_wants_lines(id)
            || self
                .follows
                .values()
                .any(|f| f.target.is_none_or(|t| t == id) && follow_wants(f, stream));
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut write_error = None;
        {
            let Some(output) = self.procs.get_mut(id).and_then(|p| p.output(stream)) else {
                self.read_buf = buf;
                return;
            };
            let Some(pipe) = output.pipe.as_mut() else {
                self.read_buf = buf;
                return;
            };
            while taken < budget {
                match pipe.read(&mut buf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        taken += n;
                        let err = if interested {
                            output.sink.append(&mut self.clock, &buf[..n], |line| {
                                lines.push(line.to_vec())
                            })
                        } else {
                            output.sink.append_quiet(&mut self.clock, &buf[..n])
                        };
                        write_error = write_error.or(err);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        eof = true;
                        break;
                    }
                }
            }
            output.sink.release();
            if eof {
                output.sink.finish(|line| {
                    if interested {
                        lines.push(line.to_vec());
                    }
                });
                if let Some(mut pipe) = output.pipe.take() {
                    let _ = self.poll.registry().deregister(&mut pipe);
                }
                if std::mem::take(&mut output.grown) {
                    self.big_pipes -= 1;
                }
                self.slots.remove(&output.token);
            } else if taken >= budget {
                self.retry.push(output.token);
            }
        }
        self.read_buf = buf;
        if let Some(e) = write_error {
            let path = self.paths.log_file(&self.proc_name(id), stream.name());
            self.note(&format!(
                "writing {}: {} (output is being lost)",
                path.display(),
                crate::error::describe_io(&e)
            ));
        }
        for line in &lines {
            self.deliver_line(id, stream, line);
        }
        if !lines.is_empty() {
            self.flush_followers();
        }
        if eof {
            self.check_output_finished(id);
        }
    }

    fn proc_name(&self, id: ProcId) -> String {
        self.procs
            .get(id)
            .map(|p| p.name.clone())
            .unwrap_or_default()
    }

    fn deliver_line(&mut self, id: ProcId, stream: Stream, line: &[u8]) {
        if !self.ups.is_empty() {
            self.up_line(id, line);
        }
        let matched = self.waits.take_matching(id, line);
        let mut text = None;
        for wait in matched {
            let line = text
                .get_or_insert_with(|| String::from_utf8_lossy(line).into_owned())
                .clone();
            self.reply_later(wait.client.0, &Response::WaitMatch { line });
        }
        if self.follows.is_empty() {
            return;
        }
        let name = self.proc_name(id);
        let mut finished = Vec::new();
        for (client, follow) in self.follows.iter_mut() {
            if follow.target.is_some_and(|t| t != id)
                || !follow_wants(follow, stream)
                || follow.grep.as_ref().is_some_and(|g| !g.matches(line))
            {
                continue;
            }
            let Some(c) = self.clients.get_mut(client) else {
                continue;
            };
            if follow.chunked {
                let same = follow
                    .batch
                    .as_ref()
                    .is_some_and(|b| b.process == name && b.stream == stream);
                if !same && let Some(batch) = follow.batch.take() {
                    send_batch(c, batch);
                }
                let batch = follow.batch.get_or_insert_with(|| Batch {
                    process: name.clone(),
                    stream,
                    text: String::new(),
                    lines: 0,
                });
                if batch.lines > 0 {
                    batch.text.push('\n');
                }
                batch.text.push_str(&String::from_utf8_lossy(line));
                batch.lines += 1;
            } else {
                let line = text
                    .get_or_insert_with(|| String::from_utf8_lossy(line).into_owned())
                    .clone();
                c.send_follow(
                    &Response::LogLine {
                        process: name.clone(),
                        stream,
                        line,
                    },
                    1,
                );
            }
            if let Some(left) = follow.remaining.as_mut() {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    finished.push(*client);
                }
            }
        }
        for client in finished {
            self.end_follow(client);
        }
    }

    /// Send the batches gathered and write out what followers were sent: once
    /// per burst of output, not per line.
    fn flush_followers(&mut self) {
        let mut broken = Vec::new();
        for (client, follow) in self.follows.iter_mut() {
            let Some(c) = self.clients.get_mut(client) else {
                continue;
            };
            if let Some(batch) = follow.batch.take() {
                send_batch(c, batch);
            }
            if c.flush().is_err() {
                broken.push(*client);
            }
        }
        for client in broken {
            self.close_client(client);
        }
    }

    /// When a process is gone for good and its pipes are drained, waits for its
    /// output can never match and followers of it are done.
    fn check_output_finished(&mut self, id: ProcId) {
        if !self.output_finished(id) {
            return;
        }
        let Some(p) = self.procs.get(id) else { return };
        let (name, outcome) = match &p.state {
            State::Exited { exit } => (p.name.clone(), p.outcome(*exit)),
            State::Failed { reason } => (p.name.clone(), reason.clone()),
            _ => return,
        };
        for wait in self.waits.take_all_for(id) {
            let message = if wait.pattern.is_some() {
                format!(
                    "{name} has exited ({outcome}) and its output never matched '{}'",
                    wait.pattern_text
                )
            } else {
                format!("{name} has exited ({outcome})")
            };
            self.reply_later(wait.client.0, &Response::error(message));
        }
        let followers: Vec<usize> = self
            .follows
            .iter()
            .filter(|(_, f)| f.target == Some(id))
            .map(|(c, _)| *c)
            .collect();
        for client in followers {
            self.end_follow(client);
        }
    }

    // ---- children ----

    fn reap_children(&mut self) {
        let mut reaped = Vec::new();
        signals::reap(|pid, exit| reaped.push((pid, exit)));
        for (pid, exit) in reaped {
            if let Some(id) = self.procs.take_pid(pid) {
                self.leader_exited(id, exit);
            }
            // Other pids are orphans re-parented to us (we are a subreaper): reaped, done.
        }
        // Reaping group members may have emptied a group whose leader is already gone.
        let stopping: Vec<ProcId> = self
            .procs
            .iter()
            .filter(|p| {
                matches!(
                    p.state,
                    State::Stopping {
                        leader: Some(_),
                        ..
                    }
                )
            })
            .map(|p| p.id)
            .collect();
        for id in stopping {
            self.check_stop_done(id);
        }
    }

    fn leader_exited(&mut self, id: ProcId, exit: Exit) {
        // Everything the leader wrote is in the pipes now: take it before reporting
        // the exit, so `wait --exit` followed by `logs` sees all of it.
        for stream in STREAMS {
            self.read_output(id, stream, 16 * PIPE_BUDGET);
        }
        let Some(p) = self.procs.get_mut(id) else {
            return;
        };
        match p.state.clone() {
            State::Stopping {
                pid,
                since,
                generation,
                kills,
                ..
            } => {
                p.state = State::Stopping {
                    pid,
                    since,
                    leader: Some(exit),
                    generation,
                    kills,
                };
                self.check_stop_done(id);
            }
            _ => {
                p.state = State::Exited { exit };
                let (name, pid) = (p.name.clone(), p.pid);
                // A server that died because its port was taken: say who has it.
                let conflict = if exit.code() == Some(0) {
                    None
                } else {
                    self.port_conflict(id)
                };
                let mut exited = Change::new("exited")
                    .pid(pid)
                    .exit(exit.code(), exit.signal_name());
                match &conflict {
                    Some(c) => {
                        self.note(&format!("{name} exited ({}); {c}", exit.describe()));
                        exited = exited.detail(c.clone());
                    }
                    None => self.note(&format!("{name} exited ({})", exit.describe())),
                }
                if let Some(p) = self.procs.get_mut(id) {
                    p.port_conflict = conflict;
                }
                self.state_dirty = true;
                self.emit(id, exited);
                self.exited(id, exit);
            }
        }
    }

    /// A stop is done once the leader is reaped and nobody is left in its group.
    fn check_stop_done(&mut self, id: ProcId) {
        let Some(p) = self.procs.get(id) else { return };
        let State::Stopping {
            leader: Some(exit),
            kills,
            ..
        } = p.state
        else {
            return;
        };
        if signals::group_alive(p.pgid, self.sid) && kills < MAX_KILLS {
            return;
        }
        if kills >= MAX_KILLS {
            self.note(&format!(
                "{}: process group {} survived SIGKILL; giving up on it",
                p.name, p.pgid
            ));
        }
        let name = p.name.clone();
        // The group is gone; what left it earlier may live on, re-parented to us.
        let survivors = survivors::find(&name, |pid| self.procs.is_leader(pid));
        let mut stopped = Change::new("stopped").exit(exit.code(), exit.signal_name());
        if let Some(p) = self.procs.get_mut(id) {
            p.state = State::Exited { exit };
            if kills > 0 {
                p.sup.stop_reason = Some(supervise::Reason::KilledAfterTimeout);
            }
            stopped = stopped.pid(p.pid);
            p.survivors = survivors;
        }
        self.note(&format!("{name} stopped ({})", exit.describe()));
        if let Some(sentence) = self.survivor_sentence(id) {
            self.note(&sentence);
            stopped = stopped.detail(sentence);
        }
        self.emit(id, stopped);
        self.exited(id, exit);
        self.state_dirty = true;
    }

    /// What of process `id` outlived its last stop and still runs, as a sentence.
    fn survivor_sentence(&self, id: ProcId) -> Option<String> {
        let p = self.procs.get(id)?;
        let alive: Vec<survivors::Survivor> =
            p.survivors.iter().filter(|s| s.alive()).cloned().collect();
        (!alive.is_empty()).then(|| survivors::sentence(&p.name, &alive))
    }

    /// The process reached `Exited`: answer exit waits and requests that waited for it.
    fn exited(&mut self, id: ProcId, exit: Exit) {
        self.supervise_exit(id, exit);
        for wait in self.waits.take_probes(id) {
            let name = self.proc_name(id);
            let outcome = self
                .procs
                .get(id)
                .map_or_else(|| exit.describe(), |p| p.outcome(exit));
            let message = format!(
                "{name} has exited ({outcome}) before {} was ready",
                wait.pattern_text
            );
            self.reply_later(wait.client.0, &Response::error(message));
        }
        for wait in self.waits.take_exit(id) {
            let response = Response::WaitExited {
                exit_code: exit.code(),
                exit_signal: exit.signal_name(),
            };
            self.reply_later(wait.client.0, &response);
        }
        self.settle_pending();
        self.check_output_finished(id);
        self.up_exited(id, exit);
    }

    /// Answer every pending request whose processes have all stopped.
    fn settle_pending(&mut self) {
        if !self.deferred_stops.is_empty() {
            self.release_deferred_stops();
        }
        let stopped =
            |procs: &ProcTable, id: ProcId| procs.get(id).is_none_or(|p| !p.state.is_alive());
        let mut i = 0;
        while i < self.pending.len() {
            let done = match &mut self.pending[i] {
                Pending::Stop { proc, .. } | Pending::Restart { proc, .. } => {
                    stopped(&self.procs, *proc)
                }
                Pending::StopAll { remaining, .. } | Pending::Shutdown { remaining, .. } => {
                    remaining.retain(|id| !stopped(&self.procs, *id));
                    remaining.is_empty()
                }
            };
            if !done {
                i += 1;
                continue;
            }
            match self.pending.remove(i) {
                Pending::Stop {
                    client,
                    label,
                    proc,
                } => {
                    let mut message = format!("stopped {label}");
                    if let Some(sentence) = self.survivor_sentence(proc) {
                        message = format!("{message}\n{sentence}");
                    }
                    self.reply_later(client, &Response::Ok { message })
                }
                Pending::Restart { client, proc, note } => {
                    let response = if self.shutting_down {
                        Response::error("the daemon is shutting down")
                    } else {
                        self.respawn(proc, Some(note))
                    };
                    if let Response::RunOk { .. } = response {
                        let name = self.proc_name(proc);
                        self.note(&format!("{name}: {note}"));
                    }
                    self.reply_later(client, &response);
                }
                Pending::StopAll { client, .. } => {
                    let mut message = "all processes stopped".to_string();
                    for id in self.procs.ids() {
                        if let Some(sentence) = self.survivor_sentence(id) {
                            message = format!("{message}\n{sentence}");
                        }
                    }
                    self.reply_later(client, &Response::Ok { message })
                }
                Pending::Shutdown { client, .. } => self.finish_shutdown(client),
            }
        }
    }

    fn finish_shutdown(&mut self, client: Option<usize>) {
        if self.exiting {
            return;
        }
        // Free the session name first, so a new daemon can start as soon as we answer.
        startup::remove_runtime_files(&self.paths);
        self.note("all processes stopped; daemon exiting");
        self.exiting = true;
        if let Some(client) = client {
            // What outlived the stops, one sentence a line after the first, as
            // stop-all says it, so `down` can name them on stderr.
            let mut message = "daemon shutting down".to_string();
            for id in self.procs.ids() {
                if let Some(sentence) = self.survivor_sentence(id) {
                    message = format!("{message}\n{sentence}");
                }
            }
            self.reply_later(client, &Response::Ok { message });
        }
        self.timers
            .arm(Instant::now() + EXIT_GRACE, Timer::ExitDeadline);
    }

    // ---- timers ----

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Escalate { proc, generation } => self.escalate(proc, generation),
                Timer::WaitDeadline { wait } => {
                    if let Some(w) = self.waits.remove(wait) {
                        self.apply(vec![Action::ReplyLater {
                            client: w.client.0,
                            response: Response::WaitTimeout,
                        }]);
                    }
                }
                Timer::FollowDeadline { client, generation } => {
                    if self
                        .follows
                        .get(&client)
                        .is_some_and(|f| f.generation == generation)
                    {
                        self.end_follow(client);
                    }
                }
                Timer::RetryAccept => self.accept_waiting(),
                Timer::ProbeTry { probe } => self.probe_try(probe),
                Timer::Restart { proc, generation } => self.auto_restart(proc, generation),
                Timer::WatchRestart { proc } => {
                    self.watch_pending.remove(&proc);
                    self.watch_restart(proc);
                }
                Timer::ProbeTimeout { probe, tries } => self.probe_timeout(probe, tries),
                Timer::ReadyDeadline { run, entry } => self.up_deadline(run, Some(entry)),
                Timer::UpDeadline { run } => self.up_deadline(run, None),
                Timer::UpContinue { run } => self.up_advance(run),
                Timer::Proxy { conn, generation } => self.proxy_deadline(conn, generation),
                Timer::ProxyAccept => self.proxy_accept(),
                Timer::ExitDeadline => {
                    // Replies that could not be delivered in time are dropped.
                    for client in self.clients.values_mut() {
                        let _ = client.flush();
                    }
                    self.clients.clear();
                }
            }
        }
    }

    fn escalate(&mut self, id: ProcId, generation: u64) {
        let Some(p) = self.procs.get_mut(id) else {
            return;
        };
        let State::Stopping {
            generation: current,
            ref mut kills,
            ..
        } = p.state
        else {
            return;
        };
        if current != generation {
            return;
        }
        *kills += 1;
        let (pgid, name, kills) = (p.pgid, p.name.clone(), *kills);
        let leader_alive = matches!(p.state, State::Stopping { leader: None, .. });
        // Once the leader is reaped, make sure the group number is still ours.
        if leader_alive || signals::group_alive(pgid, self.sid) {
            signals::kill_group(pgid, libc::SIGKILL);
        }
        if kills == 1 {
            self.note(&format!(
                "{name} did not stop in time; sent SIGKILL to process group {pgid}"
            ));
        }
        self.timers.arm(
            Instant::now() + KILL_RECHECK,
            Timer::Escalate {
                proc: id,
                generation,
            },
        );
        self.check_stop_done(id);
    }

    // ---- restart policies ----

    /// A run ended: record why, and restart it later or give up, as its policy says.
    fn supervise_exit(&mut self, id: ProcId, exit: Exit) {
        self.generation += 1;
        let generation = self.generation;
        let now = Instant::now();
        let shutting_down = self.shutting_down;
        let Some(p) = self.procs.get_mut(id) else {
            return;
        };
        let ran_for = p.started_wall.elapsed().unwrap_or_default();
        let decision = p.sup.record(exit, ran_for, p.spec.restart.as_ref(), now);
        let name = p.name.clone();
        let ended = (p.run > 0).then(|| logs::runs::Entry {
            p: name.clone(),
            run: p.run,
            end: Some(logs::index::now_ms()),
            how: p.sup.exits.back().map(supervise::ended),
            ..Default::default()
        });
        if let Some(entry) = ended {
            self.journal(entry);
        }
        let Some(p) = self.procs.get_mut(id) else {
            return;
        };
        let base_delay = p.spec.restart.as_ref().map(|r| r.delay);
        match decision {
            _ if shutting_down => {}
            supervise::Decision::Stay => {}
            supervise::Decision::Restart { delay, attempt } => {
                p.state = State::Backoff {
                    exit,
                    until: now + delay,
                    generation,
                };
                self.timers.arm(
                    now + delay,
                    Timer::Restart {
                        proc: id,
                        generation,
                    },
                );
                self.note(&format!(
                    "{name} died ({}); restart {attempt} in {}",
                    exit.describe(),
                    crate::timefmt::seconds(delay)
                ));
                // `backoff` when exponential backoff stretched the delay.
                let kind = if base_delay.is_some_and(|base| delay > base) {
                    "backoff"
                } else {
                    "restarting"
                };
                self.emit(
                    id,
                    Change::new(kind)
                        .exit(exit.code(), exit.signal_name())
                        .delay_ms(delay.as_millis() as u64)
                        .detail(format!("restart {attempt}")),
                );
            }
            supervise::Decision::GiveUp { max } => {
                let note = format!("[agent-procs] Max restarts ({max}) exhausted");
                p.state = State::Failed {
                    reason: format!("max restarts ({max}) exhausted"),
                };
                if let Some(out) = p.output(Stream::Stdout) {
                    out.sink.annotate(&mut self.clock, &note, |_| {});
                    out.sink.release();
                }
                self.note(&format!("{name}: {note}"));
                self.deliver_line(id, Stream::Stdout, note.as_bytes());
                self.flush_followers();
                let reason = format!("max restarts ({max}) exhausted");
                self.emit(
                    id,
                    Change::new("failed")
                        .exit(exit.code(), exit.signal_name())
                        .detail(reason),
                );
            }
        }
        self.state_dirty = true;
    }

    /// The restart delay is over: start the process again, with the note first.
    fn auto_restart(&mut self, id: ProcId, generation: u64) {
        if self.shutting_down {
            return;
        }
        let sid = self.sid;
        let Some(p) = self.procs.get_mut(id) else {
            return;
        };
        let State::Backoff {
            exit,
            generation: current,
            ..
        } = p.state
        else {
            return;
        };
        if current != generation {
            return;
        }
        // What the dead leader left behind (a child holding its port) goes first.
        if signals::group_alive(p.pgid, sid) {
            signals::kill_group(p.pgid, libc::SIGKILL);
        }
        p.sup.restarts += 1;
        let max = p.spec.restart.as_ref().and_then(|r| r.max);
        let note = supervise::restarted_note(exit, p.sup.restarts, max);
        let name = p.name.clone();
        if let Response::RunOk { pid, .. } = self.respawn(id, Some(&note)) {
            self.note(&format!("{name} restarted, pid {pid}: {note}"));
        }
    }

    // ---- file watching ----

    /// Watch `spec`'s tree for `id`, or stop watching for it (None). The inotify
    /// descriptor is made and registered on first use.
    fn set_watch(
        &mut self,
        id: ProcId,
        spec: Option<watch::Spec>,
    ) -> std::result::Result<(), String> {
        let Some(spec) = spec else {
            if let Some(w) = self.watcher.as_mut() {
                w.unwatch(id);
            }
            return Ok(());
        };
        if self.watcher.is_none() {
            let w = watch::Watcher::new().map_err(|e| {
                format!(
                    "starting file watching (inotify): {}",
                    crate::error::describe_io(&e)
                )
            })?;
            self.poll
                .registry()
                .register(&mut mio::unix::SourceFd(&w.fd()), WATCH, Interest::READABLE)
                .map_err(|e| format!("watching the inotify descriptor: {e}"))?;
            self.watcher = Some(w);
        }
        let Some(w) = self.watcher.as_mut() else {
            return Ok(());
        };
        w.watch(id, spec);
        // The first slice now: a tree that fits in it (most do) is watched before
        // `run` answers, and its error is the answer. A bigger one goes on, a
        // slice per loop turn (`run_loop`).
        self.watch_slice(Some(id))
    }

    /// Add watches for one slice of time; say what finished. A failure of
    /// `answering`'s tree is returned, for its `run` to report; one found later
    /// goes to daemon.log and to the process's log.
    fn watch_slice(&mut self, answering: Option<ProcId>) -> std::result::Result<(), String> {
        let Some(w) = self.watcher.as_mut() else {
            return Ok(());
        };
        let finished = w.work(watch::SLICE);
        let described: Vec<(watch::Finished, Option<(String, String)>)> = finished
            .into_iter()
            .map(|f| {
                let about = match &f {
                    watch::Finished::Watching { proc, .. } => w.describe(*proc),
                    watch::Finished::Failed { .. } => None,
                };
                (f, about)
            })
            .collect();
        let mut answer = Ok(());
        for (finished, about) in described {
            match finished {
                watch::Finished::Watching { proc, dirs } => {
                    let name = self.proc_name(proc);
                    let (root, patterns) = about.unwrap_or_default();
                    self.note(&format!(
                        "{name}: watching {dirs} directories under {root} for {patterns}"
                    ));
                }
                watch::Finished::Failed { proc, msg } if Some(proc) == answering => {
                    answer = Err(msg);
                }
                watch::Finished::Failed { proc, msg } => {
                    let name = self.proc_name(proc);
                    let note = format!("[agent-procs] Not watching files: {msg}");
                    self.note(&format!("{name}: {note}"));
                    if let Some(out) = self
                        .procs
                        .get_mut(proc)
                        .and_then(|p| p.output(Stream::Stdout))
                    {
                        out.sink.annotate(&mut self.clock, &note, |_| {});
                        out.sink.release();
                    }
                    self.deliver_line(proc, Stream::Stdout, note.as_bytes());
                    self.flush_followers();
                }
            }
        }
        answer
    }

    fn watch_events(&mut self) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        let changed = w.read_changes();
        for id in changed {
            if self.watch_pending.insert(id) {
                self.timers.arm(
                    Instant::now() + WATCH_DEBOUNCE,
                    Timer::WatchRestart { proc: id },
                );
            }
        }
    }

    /// A watched file changed: restart the process (reviving it if it had failed),
    /// unless it was stopped by hand.
    fn watch_restart(&mut self, id: ProcId) {
        if self.shutting_down {
            return;
        }
        let Some(p) = self.procs.get_mut(id) else {
            return;
        };
        if p.sup.disabled {
            return;
        }
        p.sup.reset();
        let state = p.state.clone();
        self.emit(id, Change::new("watch_triggered"));
        self.emit(
            id,
            Change::new("restarting").delay_ms(0).detail("file changed"),
        );
        let sid = self.sid;
        let Some(p) = self.procs.get_mut(id) else {
            return;
        };
        match state {
            State::Running { .. } => {
                p.sup.stop_reason = Some(supervise::Reason::Watch);
                let timeout = self.stop_timeout(id, None);
                if self.begin_stop(id, timeout) {
                    self.pending.push(Pending::Restart {
                        client: usize::MAX,
                        proc: id,
                        note: WATCH_NOTE,
                    });
                } else {
                    self.respawn(id, Some(WATCH_NOTE));
                }
            }
            State::Stopping { .. } => {} // already on its way down
            State::Exited { .. } | State::Backoff { .. } | State::Failed { .. } => {
                if signals::group_alive(p.pgid, sid) {
                    signals::kill_group(p.pgid, libc::SIGKILL);
                }
                self.respawn(id, Some(WATCH_NOTE));
            }
        }
    }

    // ---- the reverse proxy ----

    fn enable_proxy(&mut self, wanted: Option<u16>) -> Response {
        if let Some(proxy) = &self.proxy {
            let port = proxy.port();
            if wanted.is_some_and(|w| w != port) {
                return Response::error(format!(
                    "the proxy of this session already listens on port {port}; \
                     stop the session (agent-procs down) to move it"
                ));
            }
            return Response::Ok {
                message: format!("Proxy already listening on http://localhost:{port}"),
            };
        }
        let proxy = match crate::proxy::Proxy::bind(wanted) {
            Ok(proxy) => proxy,
            Err(msg) => return Response::error(msg),
        };
        for (token, fd) in proxy.listeners() {
            let mut source = mio::unix::SourceFd(&fd);
            let watched =
                self.poll
                    .registry()
                    .register(&mut source, Token(token), Interest::READABLE);
            if let Err(e) = watched {
                return Response::error(format!("watching the proxy's socket: {e}"));
            }
        }
        let port = proxy.port();
        if proxy.on_ipv6() {
            self.note(&format!(
                "proxy listening on 127.0.0.1:{port} and [::1]:{port}"
            ));
        } else {
            self.note(&format!(
                "proxy listening on 127.0.0.1:{port} (no IPv6 loopback on this host)"
            ));
        }
        self.proxy = Some(proxy);
        Response::Ok {
            message: format!("Proxy listening on http://localhost:{port}"),
        }
    }

    /// A port of 4000-4999 that no process of the session has and nobody listens
    /// on, for process `name`: the one chosen for that name before (by this daemon
    /// or the last one) while it is free, else one not chosen for another name,
    /// else any. The choice is remembered in state.json.
    /// Out of descriptors, the probe cannot tell, and that is the error.
    fn free_backend_port(&mut self, name: Option<&str>) -> std::result::Result<u16, String> {
        let taken: HashSet<u16> = self.procs.iter().filter_map(|p| p.spec.port).collect();
        let no_fds = std::cell::Cell::new(None);
        let free = |p: u16| {
            if taken.contains(&p) || no_fds.get().is_some() {
                return false;
            }
            match std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, p)) {
                Ok(_) => true,
                Err(e) if sys::out_of_descriptors(&e) => {
                    no_fds.set(e.raw_os_error());
                    false
                }
                Err(_) => false,
            }
        };
        let before = name.and_then(|n| self.chosen_ports.get(n).copied());
        let others: HashSet<u16> = self
            .chosen_ports
            .iter()
            .filter(|(n, _)| Some(n.as_str()) != name)
            .map(|(_, &p)| p)
            .collect();
        let port = before
            .filter(|&p| free(p))
            .or_else(|| {
                crate::proxy::BACKEND_PORTS
                    .clone()
                    .filter(|p| !others.contains(p))
                    .find(|&p| free(p))
            })
            .or_else(|| crate::proxy::BACKEND_PORTS.clone().find(|&p| free(p)));
        let port = match (port, no_fds.take()) {
            (Some(port), _) => port,
            (None, Some(errno)) => {
                let why = crate::error::describe_io(&io::Error::from_raw_os_error(errno));
                return Err(format!(
                    "cannot look for a free port for the process: the daemon is out of file \
                     descriptors ({why}); try again once some connections have closed, or give \
                     it a port with --port"
                ));
            }
            (None, None) => {
                return Err(
                    "no free port in 4000-4999 for the process; give it one with --port".into(),
                );
            }
        };
        if let Some(name) = name {
            self.chosen_ports.insert(name.to_string(), port);
            self.state_dirty = true;
        }
        Ok(port)
    }

    fn proxy_event(&mut self, token: usize, hup: bool) {
        if let Some(proxy) = self.proxy.as_mut() {
            proxy.ready(token, hup, &self.procs);
            self.apply_proxy();
        }
    }

    /// A proxy connection that stopped with work left (`Step::Again`) goes on.
    fn proxy_again(&mut self, token: usize) {
        if let Some(proxy) = self.proxy.as_mut() {
            proxy.again(crate::proxy::conn_of(token), &self.procs);
            self.apply_proxy();
        }
    }

    fn proxy_deadline(&mut self, conn: crate::proxy::ConnId, generation: u64) {
        if let Some(proxy) = self.proxy.as_mut() {
            proxy.deadline(conn, generation, &self.procs);
            self.apply_proxy();
        }
    }

    fn proxy_accept(&mut self) {
        if let Some(proxy) = self.proxy.as_mut() {
            proxy.accept_again();
            self.apply_proxy();
        }
    }

    /// Carry out what the proxy asked for, right after the call that asked
    /// (the descriptors in its steps are open until it is called again).
    fn apply_proxy(&mut self) {
        use crate::proxy::Step;
        loop {
            let Some(proxy) = self.proxy.as_mut() else {
                return;
            };
            let mut steps = proxy.take_steps();
            if steps.is_empty() {
                proxy.give_back(steps);
                return;
            }
            let mut lost = Vec::new();
            for step in steps.drain(..) {
                match step {
                    Step::Interest {
                        token,
                        fd,
                        writable,
                        add,
                    } => {
                        let interest = if writable {
                            Interest::READABLE | Interest::WRITABLE
                        } else {
                            Interest::READABLE
                        };
                        let mut source = mio::unix::SourceFd(&fd);
                        let registry = self.poll.registry();
                        let watched = if add {
                            registry.register(&mut source, Token(token), interest)
                        } else {
                            registry.reregister(&mut source, Token(token), interest)
                        };
                        if watched.is_err() {
                            lost.push(token);
                        }
                    }
                    Step::WaitUntil {
                        conn,
                        generation,
                        at,
                    } => self.timers.arm(at, Timer::Proxy { conn, generation }),
                    Step::AcceptAt(at) => self.timers.arm(at, Timer::ProxyAccept),
                    Step::Again(conn) => self
                        .retry
                        .push(Token(crate::proxy::token(conn, crate::proxy::Side::Client))),
                    Step::Note(line) => self.note(&line),
                }
            }
            let Some(proxy) = self.proxy.as_mut() else {
                return;
            };
            proxy.give_back(steps);
            if lost.is_empty() {
                return;
            }
            // A socket that cannot be watched: its connection gives up (and
            // asks for more, carried out on the next round).
            for token in lost {
                proxy.unwatchable(token, &self.procs);
            }
        }
    }

    // ---- readiness probes ----

    /// Start the next try of `probe`, unless nobody waits for it any more.
    fn probe_try(&mut self, id: u64) {
        let Some(probe) = self.probes.get_mut(id) else {
            return;
        };
        let owner_alive = match probe.owner {
            probes::Owner::Wait(w) => self.waits.contains(ids::WaitId(w)),
            probes::Owner::Up { run, .. } => self.ups.contains_key(&run),
        };
        let proc_alive = self
            .procs
            .get(probe.proc)
            .is_some_and(|p| matches!(p.state, State::Running { .. }));
        if !owner_alive || !proc_alive || probe.attempt.is_some() {
            // Its process exited: the exit paths tell the owner.
            if !owner_alive || !proc_alive {
                self.drop_probe(id);
            }
            return;
        }
        probe.tries += 1;
        let tries = probe.tries;
        match probes::Attempt::connect(&probe.target) {
            Ok(mut attempt) => {
                let token = Token(self.next_token);
                self.next_token += 1;
                let interest = Interest::READABLE | Interest::WRITABLE;
                if let Err(e) = self
                    .poll
                    .registry()
                    .register(&mut attempt.stream, token, interest)
                {
                    probe.last_error = Some(crate::error::describe_io(&e));
                    self.timers.arm(
                        Instant::now() + probes::PERIOD,
                        Timer::ProbeTry { probe: id },
                    );
                    return;
                }
                probe.attempt = Some((attempt, token));
                self.slots.insert(token, Slot::Probe(id));
                self.timers.arm(
                    Instant::now() + probes::TRY_TIMEOUT,
                    Timer::ProbeTimeout { probe: id, tries },
                );
            }
            Err(e) => {
                probe.last_error = Some(crate::error::describe_io(&e));
                self.timers.arm(
                    Instant::now() + probes::PERIOD,
                    Timer::ProbeTry { probe: id },
                );
            }
        }
    }

    fn probe_event(&mut self, id: u64) {
        let Some(probe) = self.probes.get_mut(id) else {
            return;
        };
        let Some((attempt, _)) = probe.attempt.as_mut() else {
            return;
        };
        match attempt.step(&probe.target) {
            probes::Step::Pending => {}
            probes::Step::Ready(how) => {
                self.end_attempt(id);
                if let Some(probe) = self.probes.remove(id) {
                    self.probe_succeeded(probe, how);
                }
            }
            probes::Step::NotYet(why) => {
                self.end_attempt(id);
                if let Some(probe) = self.probes.get_mut(id) {
                    probe.last_error = Some(why);
                }
                self.timers.arm(
                    Instant::now() + probes::PERIOD,
                    Timer::ProbeTry { probe: id },
                );
            }
        }
    }

    fn probe_timeout(&mut self, id: u64, tries: u64) {
        let Some(probe) = self.probes.get_mut(id) else {
            return;
        };
        if probe.tries != tries || probe.attempt.is_none() {
            return;
        }
        probe.last_error = Some(format!(
            "no answer within {} s",
            probes::TRY_TIMEOUT.as_secs()
        ));
        self.end_attempt(id);
        self.probe_try(id);
    }

    fn probe_succeeded(&mut self, probe: probes::Probe, how: String) {
        match probe.owner {
            probes::Owner::Wait(w) => {
                if let Some(wait) = self.waits.remove(ids::WaitId(w)) {
                    let line = format!("{} is ready ({how})", probe.target.describe());
                    self.reply_later(wait.client.0, &Response::WaitMatch { line });
                }
            }
            probes::Owner::Up { run, entry } => self.up_ready(run, entry),
        }
    }

    /// Close the socket of the try in progress, if any.
    fn end_attempt(&mut self, id: u64) {
        let Some(probe) = self.probes.get_mut(id) else {
            return;
        };
        if let Some((mut attempt, token)) = probe.attempt.take() {
            let _ = self.poll.registry().deregister(&mut attempt.stream);
            self.slots.remove(&token);
        }
    }

    fn drop_probe(&mut self, id: u64) {
        self.end_attempt(id);
        self.probes.remove(id);
    }

    // ---- persistence ----

    fn save_state(&self) {
        let processes = self
            .procs
            .iter()
            .filter(|p| p.state.is_alive() || signals::group_alive(p.pgid, self.sid))
            .map(|p| state::SavedProc {
                name: p.name.clone(),
                id: format!("p{}", p.id),
                pid: p.pid,
                pgid: p.pgid,
                start_ticks: p.start_ticks,
                command: p.spec.command.clone(),
            })
            .collect();
        let saved = state::SavedState {
            daemon_pid: std::process::id(),
            names: Some(self.procs.iter().map(|p| p.name.clone()).collect()),
            processes,
            ports: self.chosen_ports.clone(),
            root: Some(self.home_cwd.display().to_string()),
        };
        let Some(file) = &self.state_file else { return };
        if let Err(e) = file.save(&saved) {
            self.note(&format!(
                "writing {}: {}",
                self.paths.state_file().display(),
                crate::error::describe_io(&e)
            ));
        }
    }

    /// Process groups a previous daemon left running when it was killed: stop them.
    fn stop_orphans(&mut self) {
        let state::Previous {
            daemon_pid: old_daemon,
            orphans,
            ports,
        } = state::previous(&self.paths.state_file());
        self.chosen_ports = ports;
        let mut stopped = Vec::new();
        for orphan in orphans {
            self.note(&format!(
                "previous daemon died without stopping {} ({}, pid {}): sent SIGKILL to process group {}",
                orphan.name, orphan.id, orphan.pid, orphan.pgid
            ));
            signals::kill_group(orphan.pgid, libc::SIGKILL);
            stopped.push(format!("{} (pid {})", orphan.name, orphan.pid));
        }
        if !stopped.is_empty() {
            let at = crate::timefmt::rfc3339(SystemTime::now());
            self.status_notes.push(format!(
                "the previous daemon (pid {old_daemon}) was killed without stopping its processes; at {at} this daemon stopped what was left of them: {}; their logs are kept (agent-procs logs NAME)",
                stopped.join(", ")
            ));
        }
    }

    /// Last resort on a fatal loop error: leave nothing running.
    fn kill_everything(&mut self) {
        for p in self.procs.iter() {
            if p.state.is_alive() || signals::group_alive(p.pgid, self.sid) {
                signals::kill_group(p.pgid, libc::SIGKILL);
            }
        }
    }
}

fn send_batch(client: &mut Client, batch: Batch) {
    let lines = batch.lines;
    client.send_follow(
        &Response::LogChunk {
            process: batch.process,
            stream: batch.stream,
            lines: batch.text,
        },
        lines,
    );
}

/// The stream a run marker is sent as: one the follower shows, unmarked.
fn marker_stream(follow: &Follow) -> Stream {
    if follow_wants(follow, Stream::Stdout) {
        Stream::Stdout
    } else {
        Stream::Stderr
    }
}

fn follow_wants(follow: &Follow, stream: Stream) -> bool {
    if follow.both {
        return true;
    }
    // 0.6's rule: --stderr shows stderr; a single process shows stdout; --all shows both.
    match stream {
        Stream::Stderr => follow.stderr || (follow.all && follow.target.is_none()),
        Stream::Stdout => !follow.stderr,
    }
}
