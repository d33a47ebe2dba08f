//! The daemon: one thread, one `mio::Poll`. This is the only file that touches the
//! poll registry. It accepts control connections, reads child output into logs,
//! reaps children on SIGCHLD, fires deadlines, and answers requests.

mod action;
mod clients;
mod control;
mod events;
mod follow;
mod ids;
mod lifecycle;
mod output;
mod procs;
mod readiness;
mod resources;
mod runs;
mod signals;
mod spawn;
mod spec;
mod starts;
mod startup;
mod state;
mod stops;
mod supervise;
mod supervisor;
mod survivors;
mod timers;
mod up_run;
mod waits;
mod watch;

use crate::error::{Error, Result};
use crate::logs;
use crate::paths::{self, SessionPaths};
use crate::protocol::{Request, Response, Stream};
use crate::sys;
use action::Action;
use control::Route;
use events::Change;
use ids::ClientId;
use mio::{Events, Interest, Poll, Token};
use procs::{Output, ProcId, ProcTable, STREAMS};
use signals::Exit;
/// For `agent-procs mcp`, which ends on the same signals through the same kind of pipe.
pub(crate) use signals::signal_pipe;
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use stops::Pending;
use timers::{Timer, Timers};
use waits::Pattern;

const LISTENER: Token = Token(0);
const SIGCHLD_PIPE: Token = Token(1);
const SHUTDOWN_PIPE: Token = Token(2);
const WATCH: Token = Token(3);
const FIRST_DYNAMIC: usize = 16;
/// Bytes taken from one child pipe per wake-up, so a flood cannot starve the rest.
const PIPE_BUDGET: usize = 256 * 1024;

/// Who owns a dynamic token.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Client,
    Output(ProcId, Stream),
    Probe(ids::ProbeId),
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
                    // Last resort: leave nothing running.
                    daemon.sup.kill_everything(&daemon.procs);
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
    /// Control connections and their buffers.
    clients: clients::Clients,
    /// `logs --follow` clients.
    follow: follow::Followers,
    procs: ProcTable,
    waits: waits::Waits,
    /// The stop and restart flows: requests waiting for stops, generations.
    sup: supervisor::Supervisor,
    timers: Timers,
    retry: Vec<Token>,
    /// Where relative and missing `cwd`s of old clients resolve: the daemon's start dir.
    home_cwd: PathBuf,
    shutting_down: bool,
    /// Everything is stopped; leave once replies are flushed or the grace ends.
    exiting: bool,
    /// state.json, the chosen ports, what status tells of a dead predecessor.
    persist: state::Persistence,
    /// Sequence numbers for the log indexes, shared by every stream.
    clock: logs::index::SeqClock,
    /// Run numbers, the run journal, the log dir new runs' logs go in.
    runs: runs::Runs,
    /// Reads child output into the logs; owns the budget of grown pipes.
    capture: output::Capture,
    /// Decisions about connections and requests: admission, routing.
    control: control::Control,
    /// `up` runs in progress.
    ups: up_run::Ups,
    /// TCP and HTTP readiness checks in progress.
    probes: readiness::ProbeTable,
    /// The reverse proxy, once a client asked for it (nothing until then).
    proxy: Option<crate::proxy::Proxy>,
    /// File watching (`--watch`): inotify and the debounce.
    watch: watch::FileWatch,
    /// State changes, numbered, and the clients streaming them.
    events: events::Events,
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

        let persist = state::Persistence::new(paths.state_file(), &home_cwd);
        let runs = runs::Runs::new(paths.clone());
        let mut daemon = Daemon {
            paths,
            poll,
            listener,
            sigchld,
            shutdown_sig,
            slots: HashMap::new(),
            next_token: FIRST_DYNAMIC,
            clients: clients::Clients::default(),
            follow: follow::Followers::default(),
            procs: ProcTable::default(),
            waits: waits::Waits::default(),
            sup: supervisor::Supervisor::new(signals::session_id()),
            timers: Timers::default(),
            retry: Vec::new(),
            home_cwd,
            shutting_down: false,
            exiting: false,
            control: control::Control::new(paths::euid()),
            capture: output::Capture::new(sys::big_pipe_budget()),
            persist,
            clock: logs::index::SeqClock::default(),
            runs,
            ups: up_run::Ups::default(),
            probes: readiness::ProbeTable::default(),
            proxy: None,
            watch: watch::FileWatch::default(),
            events: events::Events::default(),
        };
        daemon.note(&format!(
            "daemon {} started for session '{session}'",
            std::process::id()
        ));
        // Process groups a previous daemon left running when it was killed: stop them.
        let previous = state::previous(&daemon.paths.state_file());
        let actions = daemon.persist.adopt(previous, SystemTime::now());
        daemon.apply(actions);
        let actions = daemon.persist.open();
        daemon.apply(actions);
        daemon.save_state();
        Ok(daemon)
    }

    fn run_loop(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            // A huge tree to watch is added a slice per turn, so requests are
            // served in between (the poll below does not sleep while work remains).
            if self.watch.busy() {
                let (_, actions) = self.watch.slice(None, &self.procs);
                self.apply(actions);
            }
            if self.persist.take_dirty() {
                self.save_state();
            }
            if self.exiting && self.clients.drained() {
                return Ok(());
            }
            let now = Instant::now();
            let watching = self.watch.busy();
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
                    WATCH => {
                        let actions = self.watch.on_readable(Instant::now());
                        self.apply(actions);
                    }
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
                self.service_client(ClientId(token.0), readable || hung_up);
                if hung_up {
                    self.close_client(ClientId(token.0));
                }
            }
            Some(Slot::Output(proc, stream)) => self.read_output(proc, stream, PIPE_BUDGET),
            Some(Slot::Probe(probe)) => {
                let actions = self.probes.on_event(probe);
                self.apply(actions);
            }
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
                Action::SaveState => self.persist.mark_dirty(),
                Action::Busy { client } => self.set_busy(client),
                // ---- control ----
                Action::Reply { client, response } => self.reply(client, &response),
                Action::ReplyLater { client, response } => self.reply_later(client, &response),
                // ---- lifecycle ----
                Action::KillGroup { pgid, signal } => signals::kill_group(pgid, signal),
                Action::CheckStop { proc } => self.check_stop(proc),
                Action::StopReason { .. } | Action::ResetRestarts { .. } => {}
                Action::Died { .. } | Action::Stopped { .. } | Action::Ended { .. } => {}
                Action::StopThenRestart { .. } => {} // these three: done by the supervisor
                Action::SaveStateNow => self.save_state(),
                Action::RunStarted {
                    proc,
                    pid,
                    annotation,
                } => self.announce_start(proc, pid, annotation.as_deref()),
                Action::Restart {
                    proc,
                    note,
                    counted,
                } => self.restart_now(proc, &note, counted),
                Action::Annotate { proc, note } => self.stdout_note(proc, &note),
                Action::Respawn {
                    proc,
                    note,
                    reply,
                    settled,
                } => self.restart_with(proc, note, reply, settled),
                Action::FinishShutdown { client } => self.finish_shutdown(client),
                Action::Journal(entry) => self.journal(entry),
                Action::ExitWaits { proc, exit } => self.exit_waits(proc, exit),
                Action::Settle => self.settle_pending(),
                Action::OutputFinished { proc } => self.check_output_finished(proc),
                Action::UpExited { proc, exit } => self.with_ups(|u, v| u.on_exit(proc, exit, v)),
                // ---- output and follow ----
                Action::PrepareIndexes { proc } => self.prepare_indexes(proc),
                a
                @ (Action::FollowSend { .. } | Action::NoteLost { .. } | Action::Flush { .. }) => {
                    self.apply_follow(a)
                }
                // ---- events ----
                Action::SendEvent { to, event, seq } => self.send_event(&to, &event, seq),
                // ---- waits ----
                Action::WaitProbe { wait, proc, target } => {
                    let probe = self.probes.add(readiness::Owner::Wait(wait), proc, target);
                    self.timers.arm(Instant::now(), Timer::ProbeTry { probe });
                }
                // ---- up ----
                a @ (Action::UpAdvance { .. }
                | Action::UpSpawn { .. }
                | Action::UpStop { .. }
                | Action::UpProgress { .. }
                | Action::UpProbe { .. }
                | Action::UpSearchHistory { .. }
                | Action::UpPrepareIndexes { .. }
                | Action::AwaitingReady { .. }
                | Action::UpReadyEvent { .. }
                | Action::UpDropProbes { .. }) => self.apply_up(a),
                // ---- probes ----
                a @ (Action::ProbeRegister { .. }
                | Action::ProbeClose { .. }
                | Action::ProbeWaitReady { .. }
                | Action::ProbeUpReady { .. }) => self.apply_probe(a),
                // ---- watch ----
                Action::WatchNote { proc, note } => self.stdout_note(proc, &note),
                // ---- persistence ----
                Action::KillOrphan { pgid } => signals::kill_group(pgid, libc::SIGKILL),
                // ---- proxy ----
            }
        }
    }

    /// Carry out what the follow component asked for on a client.
    fn apply_follow(&mut self, action: Action) {
        match action {
            Action::FollowSend {
                client,
                response,
                lines,
            } => self.clients.send_follow(client, &response, lines),
            Action::NoteLost { client } => self.clients.note_lost(client),
            Action::Flush { client } if self.clients.flush_broken(client) => {
                self.close_client(client)
            }
            _ => {}
        }
    }

    /// Carry out what the up component asked for.
    fn apply_up(&mut self, action: Action) {
        match action {
            Action::UpAdvance { run } => self.up_advance(run),
            Action::UpSpawn {
                run,
                entry,
                event,
                planned,
            } => {
                let response = self.run_planned(*planned);
                self.with_ups(|ups, view| ups.on_spawned(run, entry, event, response, view));
            }
            Action::UpStop { run, entry, proc } => self.up_stop(run, entry, proc),
            Action::UpProgress { client, response } => self.up_progress(client, &response),
            Action::UpProbe {
                run,
                entry,
                proc,
                target,
            } => {
                let probe = self
                    .probes
                    .add(readiness::Owner::Up { run, entry }, proc, target);
                self.timers.arm(Instant::now(), Timer::ProbeTry { probe });
            }
            Action::UpSearchHistory { run, entry, proc } => {
                let found = (self.ups.log_pattern(run, entry))
                    .is_some_and(|p| self.search_history(proc, p).is_some());
                self.with_ups(|ups, view| ups.on_history(run, entry, proc, found, view));
            }
            Action::UpPrepareIndexes { proc } => self.prepare_indexes(proc),
            Action::AwaitingReady { proc, on } => {
                if let Some(p) = self.procs.get_mut(proc) {
                    p.awaiting_ready = on;
                }
            }
            Action::UpReadyEvent { proc } => self.ready_event(proc),
            Action::UpDropProbes { run } => {
                let up = |o| matches!(o, readiness::Owner::Up { run: r, .. } if r == run);
                for probe in self.probes.owned_by(up) {
                    let actions = self.probes.drop_probe(probe);
                    self.apply(actions);
                }
            }
            _ => {}
        }
    }

    /// Carry out what the probes component asked for.
    fn apply_probe(&mut self, action: Action) {
        match action {
            Action::ProbeRegister { probe } => self.register_probe(probe),
            Action::ProbeClose { mut stream, token } => {
                let _ = self.poll.registry().deregister(&mut stream);
                if let Some(token) = token {
                    self.slots.remove(&token);
                }
            }
            Action::ProbeWaitReady { wait, line } => {
                let actions = self.waits.on_ready(wait, line);
                self.apply(actions);
            }
            Action::ProbeUpReady { run, entry } => {
                self.with_ups(|ups, view| ups.ready(run, entry, view))
            }
            _ => {}
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

    /// Accept what waits, unless paused: a paused listener is retried by its one
    /// timer, not by every new connection's event (that would re-arm a timer each).
    fn accept_clients(&mut self) {
        if self.control.accepting() {
            self.accept_waiting();
        }
    }

    /// Accept every queued connection the control component admits.
    fn accept_waiting(&mut self) {
        self.control.resume();
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Err(e) => {
                    let actions = self.control.on_accept_error(&e, Instant::now());
                    return self.apply(actions);
                }
            };
            use std::os::fd::AsRawFd;
            let peer = crate::sys::peer_uid(stream.as_raw_fd());
            if let Err(refused) = self.control.admit(peer, self.clients.len(), Instant::now()) {
                self.apply(refused);
                continue;
            }
            let token = self.new_token();
            let interest = Interest::READABLE | Interest::WRITABLE;
            if self
                .poll
                .registry()
                .register(&mut stream, token, interest)
                .is_err()
            {
                continue;
            }
            self.slots.insert(token, Slot::Client);
            self.clients.add(ClientId(token.0), stream);
        }
    }

    /// Read what a client sent, answer what can be answered, write what is queued.
    fn service_client(&mut self, id: ClientId, readable: bool) {
        let more = match self.clients.read(id, readable) {
            clients::Read::Gone => return,
            clients::Read::Broken => return self.close_client(id),
            clients::Read::Done { more } => more,
        };
        self.process_requests(id);
        match self.clients.after_service(id, more) {
            clients::After::Keep => {}
            clients::After::Retry => self.retry.push(Token(id.0)),
            clients::After::Close => self.close_client(id),
        }
    }

    /// Carry out the client's requests, a bounded number a turn.
    fn process_requests(&mut self, id: ClientId) {
        for _ in 0..clients::REQUESTS_PER_TURN {
            match self.clients.next_request(id) {
                clients::Next::Request(request) => self.handle(id, request),
                clients::Next::Answered => {}
                clients::Next::Idle => return,
            }
        }
        self.retry.push(Token(id.0));
    }

    /// Reply to a request that kept the client busy, flush, and take the
    /// client's next request, which waited.
    fn reply_later(&mut self, id: ClientId, response: &Response) {
        self.clients.send(id, response);
        self.clients.set_busy(id, false);
        self.service_client(id, false);
        // The client may have sent more while busy; its edge was spent.
        if self.clients.reading(id) {
            self.retry.push(Token(id.0));
        }
    }

    fn reply(&mut self, id: ClientId, response: &Response) {
        self.clients.send(id, response);
    }

    fn set_busy(&mut self, id: ClientId) {
        self.clients.set_busy(id, true);
    }

    /// Write event `seq` to its subscribers; a broken one is closed by a retry
    /// on a later turn, not in the middle of this.
    fn send_event(&mut self, to: &[ClientId], event: &Response, seq: u64) {
        let broken = self.clients.send_event(to, event, seq);
        self.retry.extend(broken.into_iter().map(|c| Token(c.0)));
    }

    /// Deregister a client's stream and tell every component that knew it.
    fn close_client(&mut self, id: ClientId) {
        if let Some(mut stream) = self.clients.remove(id) {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        self.slots.remove(&Token(id.0));
        self.follow.drop_client(id);
        self.events.drop_client(id);
        self.waits.drop_client(id);
        let actions = self.ups.drop_client(id);
        self.apply(actions);
        for p in &mut self.sup.pending {
            match p {
                Pending::Stop { client, .. }
                | Pending::Restart { client, .. }
                | Pending::StopAll { client, .. }
                    if *client == id =>
                {
                    *client = ClientId(usize::MAX);
                }
                Pending::Shutdown { client, .. } if *client == Some(id) => *client = None,
                _ => {}
            }
        }
    }

    // ---- requests ----

    /// Carry out one request: the control component says where it goes.
    fn handle(&mut self, client: ClientId, request: Request) {
        let read_closed = self.clients.read_closed(client);
        match self.control.route(request, read_closed, Instant::now()) {
            Route::Dropped(actions) => self.apply(actions),
            Route::Reply(response) => self.reply(client, &response),
            Route::Run(run) => {
                let response = self.run_process(*run);
                self.reply(client, &response);
            }
            Route::Up {
                processes,
                base_env,
                timeout_ms,
            } => {
                let stopping = self.shutting_down;
                let actions = self
                    .ups
                    .request(client, processes, base_env, timeout_ms, stopping);
                self.apply(actions);
            }
            Route::Stop { target, timeout_ms } => self.stop_request(client, &target, timeout_ms),
            Route::StopAll { timeout } => {
                let actions = self.sup.stop_all_request(&mut self.procs, client, timeout);
                self.apply(actions);
            }
            Route::Restart { target } => self.restart_request(client, &target),
            Route::Status { target, resources } => self.status(client, target, resources),
            Route::Follow(logs) => self.follow_request(client, *logs),
            Route::Wait {
                target,
                until,
                regex,
                exit,
                timeout,
            } => self.wait_request(client, &target, until, regex, exit, timeout),
            Route::Probe {
                target,
                probe,
                timeout,
            } => self.probe_wait(client, &target, probe, timeout),
            Route::Shutdown => {
                self.set_busy(client);
                self.begin_shutdown(Some(client));
            }
            Route::EnableProxy(proxy_port) => {
                let response = self.enable_proxy(proxy_port);
                self.reply(client, &response);
            }
            Route::Subscribe { since } => {
                let actions = self.events.subscribe(client, since);
                self.apply(actions);
            }
        }
    }

    /// The status table (of one process with `target`), with the notes.
    fn status(&mut self, client: ClientId, target: Option<String>, resources: bool) {
        let target = match &target {
            None => None,
            Some(t) => Some(match self.find_for(client, t) {
                Some(id) => id,
                None => return,
            }),
        };
        let proxy_port = self.proxy.as_ref().map(|p| p.port());
        let watch = &self.watch;
        let Some(processes) = resources::status_rows(
            &mut self.procs,
            &self.paths,
            target,
            proxy_port,
            resources,
            |id| watch.watching(id),
        ) else {
            return;
        };
        let notes = self.persist.status_notes().to_vec();
        self.reply(client, &Response::Status { processes, notes });
    }

    /// Number a state change of process `id` and stream it to the subscribers.
    fn emit(&mut self, id: ProcId, change: events::Change) {
        let Some(p) = self.procs.get(id) else {
            return;
        };
        let actions = self.events.emit(&p.name, id, change);
        self.apply(actions);
    }

    /// The process `target` names; None after telling the client which there are.
    fn find_for(&mut self, client: ClientId, target: &str) -> Option<ProcId> {
        let found = self.procs.find(target);
        if found.is_none() {
            self.not_found(client, target);
        }
        found
    }

    fn not_found(&mut self, client: ClientId, target: &str) {
        let response = control::not_found(&self.paths.session, &self.procs.names(), target);
        self.reply(client, &response);
    }

    fn run_process(&mut self, request: Request) -> Response {
        if self.shutting_down {
            return starts::shutting_down();
        }
        let ctx = spec::Context {
            home_cwd: &self.home_cwd,
            behind_proxy: self.proxy.is_some(),
        };
        match spec::Spec::from_run(request, &ctx) {
            Ok(planned) => self.run_planned(planned),
            Err(msg) => Response::error(msg),
        }
    }

    /// Start what a checked request planned (a `run`, or an `up` entry).
    fn run_planned(&mut self, planned: spec::Planned) -> Response {
        let behind_proxy = self.proxy.is_some();
        let mut start =
            match starts::prepare(&self.procs, planned, self.shutting_down, behind_proxy) {
                Ok(start) => start,
                Err(refused) => return *refused,
            };
        if start.choose_port {
            match self.free_backend_port(start.name.as_deref()) {
                Ok(port) => start.spec.port = Some(port),
                Err(message) => return Response::error(message),
            }
        }
        let (asked, existing) = (start.asked_port, start.existing);
        let taken = resources::asked_port_taken(&self.procs, &self.paths, asked, existing);
        let mut response = match existing {
            Some(id) => self.rerun(id, start.spec, start.watch),
            None => self.first_run(start.name, start.spec, start.watch),
        };
        if let Some(line) = starts::warn_taken(&mut response, taken) {
            self.note(&line);
        }
        response
    }

    /// Re-running an exited name replaces it, keeping its id; leftovers of its
    /// old process group belong to the run being replaced.
    fn rerun(&mut self, id: ProcId, spec: spec::Spec, watch: Option<watch::Spec>) -> Response {
        let actions = self.sup.replace_spec(&mut self.procs, id, spec);
        self.apply(actions);
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
        let id = match supervisor::add(&mut self.procs, name, spec) {
            Ok(id) => id,
            Err(msg) => return Response::error(msg),
        };
        // Only a process that never started is removed; it has no pipes or logs.
        if let Err(msg) = self.set_watch(id, watch) {
            self.procs.remove_unstarted(id);
            return Response::error(msg);
        }
        let response = self.respawn(id, None);
        if matches!(response, Response::Error { .. }) {
            self.procs.remove_unstarted(id);
        }
        response
    }

    /// Start (or start again) process `id` from its spec: new log segments, new
    /// pipes registered with the loop, state Running. Returns the `run` answer.
    fn respawn(&mut self, id: ProcId, annotation: Option<&str>) -> Response {
        let Some(p) = self.procs.get(id) else {
            return Response::error("process vanished");
        };
        let spec = p.spec.clone();
        let name = p.name.clone();
        let grow = self.capture.may_grow_pipes();
        let spawned = match spawn::spawn(&spec, &name, grow) {
            Ok(s) => s,
            Err(msg) => {
                let reason = msg.clone();
                self.step(id, lifecycle::Event::SpawnFailed { reason });
                return Response::error(msg);
            }
        };
        // Retire the previous run's pipes (a setsid'd escapee may still hold them).
        self.close_outputs(id);
        // The run begins here: every byte of it gets a later sequence number.
        let run = self.runs.next_number(&name);
        let run_seq = self.clock.tick();
        let pid = spawned.pid;
        let (outputs, failure) = self.open_outputs(id, &name, &spec, spawned, annotation);
        let launch = runs::Launch {
            pid,
            run,
            run_seq,
            outputs,
            failure,
        };
        let proxy_port = self.proxy.as_ref().map(|p| p.port());
        let (response, actions) =
            (self.runs).begin(&mut self.procs, id, launch, annotation, proxy_port);
        self.apply(actions);
        response
    }

    /// The log sinks of a new run and its pipes registered with the loop; the
    /// annotation goes first in the stdout log. A failure leaves that stream out.
    fn open_outputs(
        &mut self,
        id: ProcId,
        name: &str,
        spec: &spec::Spec,
        spawned: spawn::Spawned,
        annotation: Option<&str>,
    ) -> ([Option<Output>; 2], Option<String>) {
        let grown = spawned.grown;
        let mut outputs: [Option<Output>; 2] = [None, None];
        let mut failure = None;
        let sinks = (self.runs).open_sinks(name, spec, annotation, &mut self.clock);
        for ((slot, sink), (stream, mut pipe)) in outputs.iter_mut().zip(sinks).zip([
            (Stream::Stdout, spawned.stdout),
            (Stream::Stderr, spawned.stderr),
        ]) {
            let sink = match sink {
                Ok(sink) => sink,
                Err(msg) => {
                    failure = Some(msg);
                    continue;
                }
            };
            let token = self.new_token();
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
                self.capture.pipe_grown();
            }
            *slot = Some(Output {
                pipe: Some(pipe),
                token,
                sink,
                grown,
            });
        }
        (outputs, failure)
    }

    /// Tell subscribers and followers that a run began; waits and followers see
    /// the annotation as its first line.
    fn announce_start(&mut self, id: ProcId, pid: u32, annotation: Option<&str>) {
        let started = Change::new("started").pid(pid);
        self.emit(
            id,
            match annotation {
                Some(note) => started.detail(note.trim_start_matches("[agent-procs] ")),
                None => started,
            },
        );
        let actions = (self.follow).on_run_began(&self.procs, id, &self.paths.log_dir);
        self.apply(actions);
        if let Some(note) = annotation {
            self.deliver_line(id, Stream::Stdout, note.as_bytes());
            self.flush_followers();
        }
    }

    /// Append to the run journal; a failure is noted in daemon.log, nothing more.
    fn journal(&mut self, entry: logs::runs::Entry) {
        let actions = self.runs.journal(entry);
        self.apply(actions);
    }

    fn close_outputs(&mut self, id: ProcId) {
        let Some(p) = self.procs.get_mut(id) else {
            return;
        };
        for output in p.outputs.iter_mut().flatten() {
            if let Some(mut pipe) = self.capture.retire(output) {
                let _ = self.poll.registry().deregister(&mut pipe);
            }
            self.slots.remove(&output.token);
        }
    }

    fn stop_request(&mut self, client: ClientId, target: &str, timeout_ms: Option<u64>) {
        match (self.sup).stop_request(&mut self.procs, client, target, timeout_ms) {
            Some(actions) => self.apply(actions),
            None => self.not_found(client, target),
        }
    }

    /// Put process `id` through one step of the lifecycle table.
    fn step(&mut self, id: ProcId, event: lifecycle::Event) {
        let mut actions = Vec::new();
        supervisor::step(&mut self.procs, id, event, &mut actions);
        self.apply(actions);
    }

    /// Send the stop signal to the group and arm the SIGKILL deadline. Returns
    /// false when there is nothing left to stop (the process and its group are gone).
    fn begin_stop(&mut self, id: ProcId, timeout: Duration) -> bool {
        let mut actions = Vec::new();
        let stopping = (self.sup).begin_stop(&mut self.procs, id, timeout, &mut actions);
        self.apply(actions);
        stopping
    }

    /// The grace period for stopping `id`: the one asked for, else its own, else 10 s.
    fn stop_timeout(&self, id: ProcId, requested: Option<Duration>) -> Duration {
        supervisor::stop_timeout(&self.procs, id, requested)
    }

    fn restart_request(&mut self, client: ClientId, target: &str) {
        if self.shutting_down {
            return self.reply(client, &Response::error("the daemon is shutting down"));
        }
        match self.sup.restart_request(&mut self.procs, client, target) {
            Some(actions) => self.apply(actions),
            None => self.not_found(client, target),
        }
    }

    fn begin_shutdown(&mut self, client: Option<ClientId>) {
        if !self.shutting_down {
            self.note("shutting down");
        }
        self.shutting_down = true;
        let actions = self.sup.shutdown(&mut self.procs, client);
        self.apply(actions);
        self.settle_pending();
    }

    // ---- waits and follows ----

    fn wait_request(
        &mut self,
        client: ClientId,
        target: &str,
        until: Option<String>,
        regex: bool,
        exit: bool,
        timeout: Duration,
    ) {
        let Some(p) = self
            .find_for(client, target)
            .and_then(|id| self.procs.get(id))
        else {
            return;
        };
        let ask = waits::Ask {
            until,
            regex,
            exit,
            timeout,
        };
        let subject = waits::Subject::of(p);
        let actions = self.waits.request(client, &subject, ask, Instant::now());
        self.apply(actions);
    }

    /// A line of process `id` is awaited: create its index files now.
    fn prepare_indexes(&mut self, id: ProcId) {
        if let Some(p) = self.procs.get_mut(id) {
            output::prepare_indexes(p);
        }
    }

    /// The first line of the current run of `id` that matches (for `up`).
    fn search_history(&self, id: ProcId, pattern: &Pattern) -> Option<Vec<u8>> {
        let p = self.procs.get(id)?;
        waits::search_history(&waits::Subject::of(p).segments, pattern)
    }

    /// `wait --port` / `--http`: probe until ready, the process exits, or time is up.
    fn probe_wait(
        &mut self,
        client: ClientId,
        target: &str,
        probe: crate::probe::Target,
        timeout: Duration,
    ) {
        let Some(p) = self
            .find_for(client, target)
            .and_then(|id| self.procs.get(id))
        else {
            return;
        };
        let subject = waits::Subject::of(p);
        let actions = (self.waits).probe(client, &subject, probe, timeout, Instant::now());
        self.apply(actions);
    }

    fn follow_request(&mut self, client: ClientId, request: Request) {
        let Request::Logs { target, all, .. } = &request else {
            return;
        };
        let target = match target.as_deref() {
            Some(t) if !all => match self.find_for(client, t) {
                Some(id) => Some(id),
                None => return,
            },
            _ => None,
        };
        let finished = target.is_some_and(|id| self.procs.get(id).is_some_and(output::finished));
        let found = follow::Found {
            target,
            finished,
            procs: &self.procs,
            log_dir: &self.paths.log_dir,
        };
        let actions = self.follow.request(client, request, &found, Instant::now());
        self.apply(actions);
    }

    // ---- child output ----

    /// Read up to `budget` bytes from one pipe into its log, and pass the lines on.
    fn read_output(&mut self, id: ProcId, stream: Stream, budget: usize) {
        // Lines are split out only for someone who wants them.
        let wanted = self.waits.any_pattern_for(id)
            || self.ups.wants_lines(id)
            || self.follow.wants(id, stream);
        let Some(output) = self.procs.get_mut(id).and_then(|p| p.output(stream)) else {
            return;
        };
        let Some(pipe) = output.pipe.as_mut() else {
            return;
        };
        let taken =
            self.capture
                .on_readable(pipe, &mut output.sink, &mut self.clock, wanted, budget);
        if taken.eof {
            if let Some(mut pipe) = self.capture.retire(output) {
                let _ = self.poll.registry().deregister(&mut pipe);
            }
            self.slots.remove(&output.token);
        } else if taken.more {
            self.retry.push(output.token);
        }
        if let Some(e) = taken.write_error {
            let path = self.paths.log_file(&self.proc_name(id), stream.name());
            self.note(&format!(
                "writing {}: {} (output is being lost)",
                path.display(),
                crate::error::describe_io(&e)
            ));
        }
        if !taken.lines.is_empty() {
            // One list of sends for every line of this read, not one per line.
            let mut sends = Vec::new();
            for line in &taken.lines {
                self.route_line(id, stream, line, &mut sends);
            }
            self.apply(sends);
            self.flush_followers();
        }
        if taken.eof {
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
        let mut sends = Vec::new();
        self.route_line(id, stream, line, &mut sends);
        self.apply(sends);
    }

    /// A line goes to `up` runs and waits (answered at once), and to followers
    /// (their sends added to `sends`).
    fn route_line(&mut self, id: ProcId, stream: Stream, line: &[u8], sends: &mut Vec<Action>) {
        if !self.ups.is_empty() {
            self.up_line(id, line);
        }
        let actions = self.waits.on_line(id, line);
        self.apply(actions);
        if self.follow.is_empty() {
            return;
        }
        let name = self.proc_name(id);
        self.follow.on_line(id, &name, stream, line, sends);
    }

    /// Send the batches gathered and write out what followers were sent: once
    /// per burst of output, not per line.
    fn flush_followers(&mut self) {
        let actions = self.follow.flush();
        self.apply(actions);
    }

    /// When a process is gone for good and its pipes are drained, waits for its
    /// output can never match and followers of it are done.
    fn check_output_finished(&mut self, id: ProcId) {
        let Some(p) = self.procs.get(id).filter(|p| output::finished(p)) else {
            return;
        };
        let mut actions = self.waits.on_output_finished(&waits::Subject::of(p));
        actions.extend(self.follow.on_output_finished(id));
        self.apply(actions);
    }

    // ---- children ----

    fn reap_children(&mut self) {
        let mut reaped = Vec::new();
        signals::reap(|pid, exit| reaped.push((pid, exit)));
        for (pid, exit) in reaped {
            // Other pids are orphans re-parented to us (we are a subreaper): reaped, done.
            let Some(id) = self.procs.take_pid(pid) else {
                continue;
            };
            // Everything the leader wrote is in the pipes now: take it before reporting
            // the exit, so `wait --exit` followed by `logs` sees all of it.
            for stream in STREAMS {
                self.read_output(id, stream, 16 * PIPE_BUDGET);
            }
            let view = supervisor::ExitView::new(&self.paths, self.shutting_down);
            let actions = self.sup.on_exit(&mut self.procs, id, exit, view);
            self.apply(actions);
        }
        // Reaping group members may have emptied a group whose leader is already gone.
        let checks = supervisor::check_groups(&self.procs);
        self.apply(checks);
    }

    /// A stopping process whose leader is reaped: is its group gone yet?
    fn check_stop(&mut self, id: ProcId) {
        let view = supervisor::ExitView::new(&self.paths, self.shutting_down);
        let actions = self.sup.check_stop_done(&mut self.procs, id, view);
        self.apply(actions);
    }

    /// Answer the waits for `id`'s exit with how it ended.
    fn exit_waits(&mut self, id: ProcId, exit: Exit) {
        let p = self.procs.get(id);
        let outcome = p.map_or_else(|| exit.describe(), |p| p.outcome(exit));
        let name = p.map_or("", |p| p.name.as_str());
        let actions = self.waits.on_exit(id, name, &outcome, exit);
        self.apply(actions);
    }

    /// Begin the deferred stops nothing depends on any more, then answer every
    /// pending request whose processes have all stopped, one at a time.
    fn settle_pending(&mut self) {
        let mut actions = Vec::new();
        (self.sup).release_deferred_stops(&mut self.procs, &mut actions);
        self.apply(actions);
        while let Some(actions) = self.sup.settle_next(&self.procs, self.shutting_down) {
            self.apply(actions);
        }
    }

    /// Start `id` again with `note` first, and answer `reply` (if a client asked);
    /// `settled`: it waited for a stop (its client is busy; a start is noted).
    fn restart_with(&mut self, id: ProcId, note: &str, reply: Option<ClientId>, settled: bool) {
        let response = self.respawn(id, Some(note));
        if settled && let Response::RunOk { .. } = response {
            let name = self.proc_name(id);
            self.note(&format!("{name}: {note}"));
        }
        match reply {
            Some(client) if settled => self.reply_later(client, &response),
            Some(client) => self.reply(client, &response),
            None => {}
        }
    }

    fn finish_shutdown(&mut self, client: Option<ClientId>) {
        if self.exiting {
            return;
        }
        // Free the session name first, so a new daemon can start as soon as we answer.
        startup::remove_runtime_files(&self.paths);
        self.exiting = true;
        let actions = supervisor::shutdown_done(&self.procs, client, Instant::now());
        self.apply(actions);
    }

    // ---- timers ----

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Escalate { proc, generation } => {
                    let actions = self.sup.escalate(&mut self.procs, proc, generation);
                    self.apply(actions);
                }
                Timer::WaitDeadline { wait } => {
                    let actions = self.waits.on_deadline(wait);
                    self.apply(actions);
                }
                Timer::FollowDeadline { client, generation } => {
                    let actions = self.follow.on_deadline(client, generation);
                    self.apply(actions);
                }
                Timer::RetryAccept => self.accept_waiting(),
                Timer::ProbeTry { probe } => self.probe_try(probe),
                Timer::Restart { proc, generation } => {
                    let stopping = self.shutting_down;
                    let actions =
                        (self.sup).auto_restart(&mut self.procs, proc, generation, stopping);
                    self.apply(actions);
                }
                Timer::WatchRestart { proc } => {
                    self.watch.debounced(proc);
                    let stopping = self.shutting_down;
                    let actions = self.sup.watch_restart(&mut self.procs, proc, stopping);
                    self.apply(actions);
                }
                Timer::ProbeTimeout { probe, tries } => {
                    let (waits, ups) = (&self.waits, &self.ups);
                    let alive = |o| probe_owner_alive(o, waits, ups);
                    let actions = self.probes.on_timeout(probe, tries, alive, &self.procs);
                    self.apply(actions);
                }
                Timer::ReadyDeadline { run, entry } => self.up_deadline(run, Some(entry)),
                Timer::UpDeadline { run } => self.up_deadline(run, None),
                Timer::UpContinue { run } => self.up_advance(run),
                Timer::Proxy { conn, generation } => self.proxy_deadline(conn, generation),
                Timer::ProxyAccept => self.proxy_accept(),
                Timer::ExitDeadline => {
                    // Replies that could not be delivered in time are dropped.
                    self.clients.drop_all();
                }
            }
        }
    }

    // ---- restart policies ----

    /// Start `id` again now, with `note` first in its log; an automatic restart
    /// (`counted`) counts against its policy and is noted.
    fn restart_now(&mut self, id: ProcId, note: &str, counted: bool) {
        if counted && let Some(p) = self.procs.get_mut(id) {
            p.sup.restarts += 1;
        }
        let name = self.proc_name(id);
        if let Response::RunOk { pid, .. } = self.respawn(id, Some(note))
            && counted
        {
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
            self.watch.unwatch(id);
            return Ok(());
        };
        if let Some(fd) = self.watch.start()? {
            let source = &mut mio::unix::SourceFd(&fd);
            if let Err(e) = self
                .poll
                .registry()
                .register(source, WATCH, Interest::READABLE)
            {
                self.watch.abandon();
                return Err(format!("watching the inotify descriptor: {e}"));
            }
        }
        let (answer, actions) = self.watch.watch(id, spec, &self.procs);
        self.apply(actions);
        answer
    }

    /// A line from the daemon in `proc`'s stdout log, and to its followers.
    fn stdout_note(&mut self, proc: ProcId, note: &str) {
        runs::annotate(&mut self.procs, proc, &mut self.clock, note);
        self.deliver_line(proc, Stream::Stdout, note.as_bytes());
        self.flush_followers();
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
        let before = name.and_then(|n| self.persist.chosen_ports().get(n).copied());
        let others: HashSet<u16> = self
            .persist
            .chosen_ports()
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
            self.persist.choose_port(name, port);
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

    // ---- up ----

    /// Call the up component with what it may read, and carry out what it returns.
    fn with_ups(&mut self, f: impl FnOnce(&mut up_run::Ups, &up_run::View) -> Vec<Action>) {
        let view = up_run::View {
            procs: &self.procs,
            proxy_port: self.proxy.as_ref().map(|p| p.port()),
            home_cwd: &self.home_cwd,
        };
        let actions = f(&mut self.ups, &view);
        self.apply(actions);
    }

    fn up_advance(&mut self, run: u64) {
        self.with_ups(|ups, view| ups.advance(run, view));
    }

    fn up_line(&mut self, id: ProcId, line: &[u8]) {
        self.with_ups(|ups, view| ups.on_line(id, line, view));
    }

    /// An `up` readiness deadline passed: fail the run if an entry is late.
    fn up_deadline(&mut self, run: u64, entry: Option<usize>) {
        let Some((i, proc)) = self.ups.late(run, entry) else {
            return;
        };
        let last_try = (self.probes).last_error_of(readiness::Owner::Up { run, entry: i });
        let conflict = proc.and_then(|id| resources::port_conflict(&self.procs, &self.paths, id));
        let actions = self.ups.on_deadline(run, entry, i, last_try, conflict);
        self.apply(actions);
    }

    /// Stop `proc` for entry `entry` of `run` to replace it; start the entry at
    /// once if there is nothing to stop.
    fn up_stop(&mut self, run: u64, entry: usize, proc: ProcId) {
        if let Some(p) = self.procs.get_mut(proc) {
            p.sup.stop_reason = Some(supervise::Reason::Restarted);
        }
        let timeout = self.stop_timeout(proc, None);
        if !self.begin_stop(proc, timeout) {
            self.with_ups(|ups, view| ups.spawn(run, entry, "restarted", view));
        }
    }

    /// A progress line to an `up` client, written out at once.
    fn up_progress(&mut self, client: ClientId, response: &Response) {
        self.reply(client, response);
        if self.clients.flush_broken(client) {
            self.close_client(client);
        }
    }

    /// One `ready` event per run of a process, however many `up`s see it.
    fn ready_event(&mut self, id: ProcId) {
        if let Some(pid) = self.procs.get_mut(id).and_then(procs::Proc::mark_ready) {
            self.emit(id, events::Change::new("ready").pid(pid));
        }
    }

    // ---- readiness probes ----

    /// Start the next try of `probe`, unless nobody waits for it any more.
    fn probe_try(&mut self, probe: ids::ProbeId) {
        let (waits, ups) = (&self.waits, &self.ups);
        let alive = |o| probe_owner_alive(o, waits, ups);
        let actions = self.probes.on_try(probe, alive, &self.procs);
        self.apply(actions);
    }

    /// Register the socket of `probe`'s new try, and tell the probe how it went.
    fn register_probe(&mut self, probe: ids::ProbeId) {
        let token = Token(self.next_token);
        let Some(stream) = self.probes.stream_mut(probe) else {
            return;
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        let registered = match self.poll.registry().register(stream, token, interest) {
            Ok(()) => {
                self.next_token += 1;
                self.slots.insert(token, Slot::Probe(probe));
                Ok(token)
            }
            Err(e) => Err(e),
        };
        let actions = self.probes.on_registered(probe, registered);
        self.apply(actions);
    }

    // ---- persistence ----

    fn save_state(&mut self) {
        let actions = self.persist.save(&self.procs, self.sup.sid());
        self.apply(actions);
    }
}

/// Whether the owner of a probe still waits for it.
fn probe_owner_alive(owner: readiness::Owner, waits: &waits::Waits, ups: &up_run::Ups) -> bool {
    match owner {
        readiness::Owner::Wait(w) => waits.contains(w),
        readiness::Owner::Up { run, .. } => ups.contains(run),
    }
}
