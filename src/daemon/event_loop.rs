//! The loop: one thread, one `mio::Poll`. This is the only file that touches
//! the poll registry: it owns the tokens and the one timer heap, turns
//! readiness, signals and deadlines into calls on the components, and carries
//! out the actions they return (registering, deregistering, retrying, arming,
//! replying). Which component gets a request, an exit or a read's lines is
//! `route.rs`, the loop's routing table, which never touches the poll.

mod route;

use super::action::Action;
use super::ids::ClientId;
use super::procs::{ProcId, ProcTable, STREAMS};
use super::timers::{Timer, Timers};

use super::{
    action, clients, control, events, follow, ids, output, procs, readiness, runs, signals, starts,
    startup, state, supervisor, up_run, waits, watch,
};
use crate::error::{Error, Result};
use crate::logs;
use crate::paths::{self, SessionPaths};
use crate::protocol::{Response, Stream};
use crate::sys;
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

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
        let startup::Opened {
            paths,
            home_cwd,
            mut listener,
            mut sigchld,
            mut shutdown_sig,
        } = startup::open(session)?;
        let io_err = |what: &str| {
            let what = what.to_string();
            move |err: io::Error| Error::Io { what, err }
        };
        let poll = Poll::new().map_err(io_err("creating the poll instance"))?;
        let registry = poll.registry();
        (registry.register(&mut listener, LISTENER, Interest::READABLE))
            .and_then(|()| registry.register(&mut sigchld, SIGCHLD_PIPE, Interest::READABLE))
            .and_then(|()| registry.register(&mut shutdown_sig, SHUTDOWN_PIPE, Interest::READABLE))
            .map_err(io_err("registering the socket and the signal pipes"))?;

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
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                polled => polled.map_err(|err| Error::Io {
                    what: "waiting for events".into(),
                    err,
                })?,
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
                    WATCH => self.act(|d| d.watch.on_readable(Instant::now())),
                    SHUTDOWN_PIPE => {
                        signals::drain_pipe(&mut self.shutdown_sig);
                        self.note("received a termination signal; stopping every process");
                        self.begin_shutdown(None);
                    }
                    Token(token) if crate::proxy::Proxy::owns(token) => {
                        let hup = event.is_read_closed() || event.is_error();
                        self.drive_proxy(|p, procs| p.ready(token, hup, procs));
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
            Some(Slot::Probe(probe)) => self.act(|d| d.probes.on_event(probe)),
            None if crate::proxy::Proxy::owns(token.0) => {
                self.drive_proxy(|p, procs| p.again(token.0, procs));
            }
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
                Action::Emit { proc, change } => {
                    self.act(|d| d.events.on_change(&d.procs, proc, change))
                }
                Action::SaveState => self.persist.mark_dirty(),
                Action::Busy { client } => self.clients.set_busy(client, true),
                // ---- control ----
                Action::Reply { client, response } => self.clients.send(client, &response),
                Action::ReplyLater { client, response } => self.reply_later(client, &response),
                // ---- lifecycle ----
                Action::KillGroup { pgid, signal } => signals::kill_group(pgid, signal),
                Action::CheckStop { proc } => self.check_stop(proc),
                // Done by `supervisor::step` and `carry` as they step a process.
                Action::ResetRestarts { .. } | Action::Died { .. } | Action::Stopped { .. } => {}
                Action::Ended { .. } | Action::StopThenRestart { .. } => {}
                Action::SaveStateNow => self.save_state(),
                Action::RunStarted { proc, annotation } => self.run_started(proc, annotation),
                Action::Restart {
                    proc,
                    note,
                    counted,
                } => self.restart(proc, &note, starts::Then::Policy { counted }),
                Action::Annotate { proc, note } => self.stdout_note(proc, &note),
                Action::Respawn {
                    proc,
                    note,
                    reply,
                    settled,
                } => self.restart(proc, note, starts::Then::Answer { reply, settled }),
                Action::FinishShutdown { client } => self.finish_shutdown(client),
                Action::Journal(entry) => self.act(|d| d.runs.journal(entry)),
                Action::ExitWaits { proc, exit } => self.exit_waits(proc, exit),
                Action::Settle => self.settle_pending(),
                Action::OutputFinished { proc } => {
                    self.act(|d| d.with_router(|r| r.output_finished(proc)))
                }
                Action::UpExited { proc, exit } => self.with_ups(|u, v| u.on_exit(proc, exit, v)),
                // ---- output and follow ----
                Action::PrepareIndexes { proc } => output::prepare_indexes(&mut self.procs, proc),
                Action::Output(a) => self.apply_output(a),
                a
                @ (Action::FollowSend { .. } | Action::NoteLost { .. } | Action::Flush { .. }) => {
                    if let Some(broken) = self.clients.on_follow(a) {
                        self.close_client(broken);
                    }
                }
                // ---- events ----
                Action::SendEvent { to, event, seq } => self.send_event(&to, &event, seq),
                // ---- starts (runs) ----
                Action::WatchOutputs { proc } => self.watch_outputs(proc),
                Action::UnwatchPipe { pipe, token, grown } => self.unwatch_pipe(pipe, token, grown),
                // ---- up and probes ----
                Action::UpAdvance { run } => self.with_ups(|u, v| u.advance(run, v)),
                Action::UpDropProbes { run } => self.act(|d| d.probes.drop_run(run)),
                Action::ProbeWaitReady { wait, line } => self.act(|d| d.waits.on_ready(wait, line)),
                Action::ProbeUpReady { run, entry } => self.with_ups(|u, v| u.ready(run, entry, v)),
                a @ (Action::UpSpawn { .. }
                | Action::StopReason { .. }
                | Action::UpStop { .. }
                | Action::Probe { .. }
                | Action::ProbeRegister { .. }
                | Action::ProbeClose { .. }) => self.apply_up(a),
                // ---- watch ----
                Action::WatchNote { proc, note } => self.stdout_note(proc, &note),
                // ---- persistence ----
                Action::KillOrphan { pgid } => signals::kill_group(pgid, libc::SIGKILL),
                // ---- proxy ----
            }
        }
    }

    /// Start an `up` entry or stop what it replaces; start, register or
    /// close a probe.
    fn apply_up(&mut self, action: Action) {
        match action {
            Action::UpSpawn {
                run,
                entry,
                event,
                planned,
            } => {
                let response = self.run_planned(*planned);
                self.with_ups(|u, v| u.on_spawned(run, entry, event, response, v));
            }
            // Up replaces an entry; the lifecycle's reasons are set by `supervisor::step`.
            Action::StopReason {
                proc,
                reason,
                replace,
            } => {
                if let Some(p) = self.procs.get_mut(proc) {
                    p.sup.set_stop_reason(reason, replace);
                }
            }
            Action::UpStop { run, entry, proc } => {
                let timeout = supervisor::stop_timeout(&self.procs, proc, None);
                let mut actions = Vec::new();
                let stopping = (self.sup).begin_stop(&mut self.procs, proc, timeout, &mut actions);
                self.apply(actions);
                if !stopping {
                    // Nothing was left to stop: the entry starts at once.
                    self.with_ups(|u, v| u.spawn(run, entry, "restarted", v))
                }
            }
            Action::Probe {
                owner,
                proc,
                target,
            } => self.act(|d| d.probes.start(owner, proc, target)),
            Action::ProbeRegister { probe } => {
                let Some(stream) = self.probes.stream_mut(probe) else {
                    return;
                };
                let (token, registry) = (Token(self.next_token), self.poll.registry());
                let rw = Interest::READABLE | Interest::WRITABLE;
                let registered = registry.register(stream, token, rw).map(|()| token);
                if registered.is_ok() {
                    self.next_token += 1;
                    self.slots.insert(token, Slot::Probe(probe));
                }
                self.act(|d| d.probes.on_registered(probe, registered));
            }
            Action::ProbeClose { mut stream, token } => {
                let _ = self.poll.registry().deregister(&mut stream);
                if let Some(token) = token {
                    self.slots.remove(&token);
                }
            }
            _ => {}
        }
    }

    /// Carry out what a component returns (`self.act(|d| d.component.on_x(..))`).
    fn act(&mut self, f: impl FnOnce(&mut Daemon) -> Vec<Action>) {
        let actions = f(self);
        self.apply(actions);
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

    /// Accept what waits, unless paused (then its one timer retries).
    fn accept_clients(&mut self) {
        if self.control.accepting() {
            self.accept_waiting();
        }
    }

    /// Accept and register every queued connection the control component admits.
    fn accept_waiting(&mut self) {
        self.control.resume();
        loop {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) => match self.control.on_accept_error(&e, Instant::now()) {
                    Some(actions) => return self.apply(actions),
                    None => continue,
                },
            };
            let peer = sys::peer_uid(std::os::fd::AsRawFd::as_raw_fd(&stream));
            if let Err(refused) = self.control.admit(peer, self.clients.len(), Instant::now()) {
                self.apply(refused);
                continue;
            }
            let (token, interest) = (self.new_token(), Interest::READABLE | Interest::WRITABLE);
            let registry = self.poll.registry();
            if registry.register(&mut stream, token, interest).is_ok() {
                self.slots.insert(token, Slot::Client);
                self.clients.add(ClientId(token.0), stream);
            }
        }
    }

    /// Read what a client sent, carry out its requests (a bounded number a turn), write out.
    fn service_client(&mut self, id: ClientId, readable: bool) {
        let more = match self.clients.read(id, readable) {
            clients::Read::Gone => return,
            clients::Read::Broken => return self.close_client(id),
            clients::Read::Done { more } => more,
        };
        let left_over =
            (0..clients::REQUESTS_PER_TURN).all(|_| match self.clients.next_request(id) {
                clients::Next::Request(request) => {
                    self.handle(id, request);
                    true
                }
                clients::Next::Answered => true,
                clients::Next::Idle => false,
            });
        if left_over {
            self.retry.push(Token(id.0));
        }
        match self.clients.after_service(id, more) {
            clients::After::Keep => {}
            clients::After::Retry => self.retry.push(Token(id.0)),
            clients::After::Close => self.close_client(id),
        }
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

    /// Write event `seq` to its subscribers; a broken one is closed by a later turn's retry.
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
        let actions = self.ups.drop_client(id, &mut self.procs);
        self.apply(actions);
        self.sup.drop_client(id);
    }

    /// Register the pipes of `id`'s outputs not registered yet; one that cannot
    /// be is left out of the run, which then fails (`Runs::unwatchable`).
    fn watch_outputs(&mut self, id: ProcId) {
        for stream in STREAMS {
            let token = self.new_token();
            let Some(out) = self.procs.get_mut(id).and_then(|p| p.output(stream)) else {
                continue;
            };
            let Some(pipe) = out.pipe.as_mut().filter(|_| out.token == procs::UNWATCHED) else {
                continue;
            };
            let registry = self.poll.registry();
            if let Err(e) = registry.register(pipe, token, Interest::READABLE) {
                self.runs.unwatchable(&mut self.procs, id, stream, &e);
                continue;
            }
            out.token = token;
            self.slots.insert(token, Slot::Output(id, stream));
            if out.grown {
                self.capture.pipe_grown();
            }
        }
    }

    /// Deregister a pipe that was read, forget its token, free its place in the
    /// budget of grown pipes.
    fn unwatch_pipe(&mut self, pipe: Option<mio::unix::pipe::Receiver>, token: Token, grown: bool) {
        let _ = pipe.map(|mut pipe| self.poll.registry().deregister(&mut pipe));
        self.slots.remove(&token);
        if grown {
            self.capture.pipe_released();
        }
    }

    // ---- child output ----

    /// Carry out what the capture and the line router asked for.
    fn apply_output(&mut self, action: action::OutputAction) {
        match action {
            action::OutputAction::ReadAgain { token } => self.retry.push(token),
            action::OutputAction::FlushFollowers => self.act(|d| d.follow.flush()),
            action::OutputAction::Ended { proc } => {
                self.act(|d| d.with_router(|r| r.output_finished(proc)))
            }
            action::OutputAction::LetGo { proc } => output::let_go(&mut self.procs, proc),
        }
    }

    // ---- timers ----

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Escalate { proc, generation } => {
                    self.act(|d| d.sup.escalate(&mut d.procs, proc, generation))
                }
                Timer::WaitDeadline { wait } => self.act(|d| d.waits.on_deadline(wait)),
                Timer::FollowDeadline { client, generation } => {
                    self.act(|d| d.follow.on_deadline(client, generation))
                }
                Timer::RetryAccept => self.accept_waiting(),
                Timer::ProbeTry { probe } => {
                    let (waits, ups) = (&self.waits, &self.ups);
                    let alive =
                        |o| readiness::owner_alive(o, |w| waits.contains(w), |r| ups.contains(r));
                    let actions = self.probes.on_try(probe, alive, &self.procs);
                    self.apply(actions);
                }
                Timer::Restart { proc, generation } => self
                    .act(|d| (d.sup).auto_restart(&mut d.procs, proc, generation, d.shutting_down)),
                Timer::WatchRestart { proc } => {
                    self.watch.debounced(proc);
                    self.act(|d| d.sup.watch_restart(&mut d.procs, proc, d.shutting_down));
                }
                Timer::ProbeTimeout { probe, tries } => {
                    let (waits, ups) = (&self.waits, &self.ups);
                    let alive =
                        |o| readiness::owner_alive(o, |w| waits.contains(w), |r| ups.contains(r));
                    let actions = self.probes.on_timeout(probe, tries, alive, &self.procs);
                    self.apply(actions);
                }
                Timer::ReadyDeadline { run, entry } => {
                    self.with_ups(|u, v| u.on_deadline(run, Some(entry), v))
                }
                Timer::UpDeadline { run } => self.with_ups(|u, v| u.on_deadline(run, None, v)),
                Timer::UpContinue { run } => self.with_ups(|u, v| u.advance(run, v)),
                Timer::Proxy(wake) => self.drive_proxy(|p, procs| p.wake(wake, procs)),
                Timer::ExitDeadline => {
                    // Replies that could not be delivered in time are dropped.
                    self.clients.drop_all();
                }
            }
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
        if let Some(fd) = self.watch.start_for(spec.is_some())? {
            let source = &mut mio::unix::SourceFd(&fd);
            let registry = self.poll.registry();
            let watched = registry.register(source, WATCH, Interest::READABLE);
            self.watch.registered(watched)?;
        }
        let (answer, actions) = self.watch.set(id, spec, &self.procs);
        self.apply(actions);
        answer
    }

    // ---- the reverse proxy ----

    /// A client asked for the proxy: a new one answers once its listeners are watched.
    fn enable_proxy(&mut self, wanted: Option<u16>) -> Response {
        if let Some(answer) = crate::proxy::Proxy::enable(&mut self.proxy, wanted) {
            return answer;
        }
        self.apply_proxy();
        let answer = crate::proxy::Proxy::opened(&mut self.proxy);
        self.apply_proxy();
        answer
    }

    /// Call the proxy with the process table, and carry out the steps it leaves.
    fn drive_proxy(&mut self, f: impl FnOnce(&mut crate::proxy::Proxy, &ProcTable)) {
        if let Some(proxy) = self.proxy.as_mut() {
            f(proxy, &self.procs);
            self.apply_proxy();
        }
    }

    /// Carry out what the proxy asked for, right after the call that asked
    /// (the descriptors in its steps are open until it is called again).
    fn apply_proxy(&mut self) {
        use crate::proxy::{Proxy, Step};
        while let Some(mut steps) = self.proxy.as_mut().and_then(Proxy::take_steps) {
            let mut lost = Vec::new();
            for step in steps.drain(..) {
                match step {
                    Step::Interest {
                        token,
                        fd,
                        interest,
                        add,
                    } => {
                        let mut source = mio::unix::SourceFd(&fd);
                        let registry = self.poll.registry();
                        let watched = if add {
                            registry.register(&mut source, Token(token), interest)
                        } else {
                            registry.reregister(&mut source, Token(token), interest)
                        };
                        if let Err(e) = watched {
                            lost.push((token, e));
                        }
                    }
                    Step::WaitUntil(at, wake) => self.timers.arm(at, Timer::Proxy(wake)),
                    Step::Again(token) => self.retry.push(Token(token)),
                    Step::Note(line) => self.note(&line),
                }
            }
            let Some(proxy) = self.proxy.as_mut() else {
                return;
            };
            proxy.give_back(steps);
            // A socket that cannot be watched: its connection gives up (and
            // asks for more, carried out on the next round).
            for (token, e) in lost {
                proxy.unwatchable(token, &e, &self.procs);
            }
        }
    }
}
