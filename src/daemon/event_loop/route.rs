//! The loop's routing table: which component gets a request, a child's
//! exit, a read's lines or a run's start, and where what it returns goes.
//! Part of the loop (`impl Daemon`), but it never touches the poll: what needs
//! registering comes back as an action that `event_loop.rs` carries out
//! (tests/architecture.rs holds it to that).

use super::{Daemon, PIPE_BUDGET};
use crate::daemon::action::Action;
use crate::daemon::control::{self, Route};
use crate::daemon::follow;
use crate::daemon::ids::ClientId;
use crate::daemon::procs::{ProcId, STREAMS};
use crate::daemon::signals::{self, Exit};
use crate::daemon::{lines, resources, runs, spec, starts, startup, supervisor, up_run};
use crate::protocol::{Request, Response, Stream};
use std::time::Instant;

impl Daemon {
    // ---- requests ----

    /// Carry out one request: the control component says where it goes (and
    /// finds the process it names), the owning component decides.
    pub(super) fn handle(&mut self, client: ClientId, request: Request) {
        let (read_closed, now) = (self.clients.read_closed(client), Instant::now());
        let view = control::View {
            procs: &self.procs,
            session: &self.paths.session,
            shutting_down: self.shutting_down,
        };
        let actions = match self.control.route(request, read_closed, &view, now) {
            Route::Dropped(actions) => actions,
            Route::Reply(response) => return self.clients.send(client, &response),
            Route::Run(run) => {
                let response = self.run_process(*run);
                return self.clients.send(client, &response);
            }
            Route::Up(p, env, ms) => self.ups.request(client, p, env, ms, self.shutting_down),
            Route::Stop(id, name, t) => self.sup.stop_request(&mut self.procs, client, id, name, t),
            Route::StopAll { timeout: t } => self.sup.stop_all_request(&mut self.procs, client, t),
            Route::Restart { proc } => self.sup.restart_request(&mut self.procs, client, proc),
            Route::Status { target, resources } => {
                let (watch, port) = (&self.watch, self.proxy.as_ref().map(|p| p.port()));
                let (ask, watching) = ((target, resources, port), |id| watch.watching(id));
                let notes = self.persist.status_notes();
                let status = resources::status(&mut self.procs, &self.paths, ask, watching, notes);
                return self.clients.send(client, &status);
            }
            Route::Follow { request, target } => {
                let found = follow::Found::of(target, &self.procs, &self.paths.log_dir);
                self.follow.request(client, *request, &found, now)
            }
            Route::Wait(proc, wait) => self.waits.on_request(client, &self.procs, proc, wait, now),
            Route::Shutdown => return self.begin_shutdown(Some(client)),
            Route::EnableProxy(proxy_port) => {
                let response = self.enable_proxy(proxy_port);
                return self.clients.send(client, &response);
            }
            Route::Subscribe { since } => self.events.subscribe(client, since),
        };
        self.apply(actions);
    }

    /// Stop everything and leave, answering `client` (if it asked) at the end.
    pub(super) fn begin_shutdown(&mut self, client: Option<ClientId>) {
        if !std::mem::replace(&mut self.shutting_down, true) {
            self.note("shutting down");
        }
        let actions = self.sup.shutdown(&mut self.procs, client);
        self.apply(actions);
        self.settle_pending();
    }

    // ---- a run's start ----

    pub(super) fn run_process(&mut self, request: Request) -> Response {
        let behind_proxy = self.proxy.is_some();
        match starts::plan(request, &self.home_cwd, behind_proxy, self.shutting_down) {
            Ok(planned) => self.run_planned(planned),
            Err(refused) => *refused,
        }
    }

    /// Start what a checked request planned (a `run`, or an `up` entry).
    pub(super) fn run_planned(&mut self, planned: spec::Planned) -> Response {
        let chosen = self.persist.chosen_ports();
        let now = starts::Now::new(self.shutting_down, self.proxy.is_some(), chosen);
        let start = match starts::admit(&self.procs, &self.paths, planned, now, starts::can_bind) {
            Ok(start) => start,
            Err(refused) => return *refused,
        };
        if let Some((name, port)) = &start.chosen {
            self.persist.choose_port(name, *port);
        }
        let existing = start.existing;
        let admitted = (self.sup).admit(&mut self.procs, existing, start.name, start.spec);
        let (id, actions) = match admitted {
            Ok(admitted) => admitted,
            Err(msg) => return Response::error(msg),
        };
        self.apply(actions);
        let mut response = match self.set_watch(id, start.watch) {
            Ok(()) => self.respawn(id, None),
            Err(msg) => Response::error(msg),
        };
        let actions = starts::started(&mut self.procs, id, existing, &mut response, start.taken);
        self.apply(actions);
        response
    }

    /// Start (or start again) process `id` from its spec, `note` first in its
    /// log: launched by the runs component, its pipes registered, begun.
    pub(super) fn respawn(&mut self, id: ProcId, note: Option<&str>) -> Response {
        let grow = self.capture.may_grow_pipes();
        let actions = (self.runs).launch(&mut self.procs, id, note, grow, &mut self.clock);
        self.apply(actions);
        let proxy_port = self.proxy.as_ref().map(|p| p.port());
        let (response, actions) = (self.runs).begin(&mut self.procs, id, note, proxy_port);
        self.apply(actions);
        response
    }

    /// A run began: followers may want its marker; waits and followers see the
    /// annotation as its first line.
    pub(super) fn run_started(&mut self, id: ProcId, annotation: Option<String>) {
        let actions = (self.follow).on_run_began(&self.procs, id, &self.paths.log_dir);
        self.apply(actions);
        if let Some(note) = annotation {
            self.deliver_line(id, Stream::Stdout, note.as_bytes());
        }
    }

    /// Start `id` again with `note` first in its log; what follows is `then`'s.
    pub(super) fn restart(&mut self, id: ProcId, note: &str, then: starts::Then) {
        starts::count_restart(&mut self.procs, id, then);
        let response = self.respawn(id, Some(note));
        let actions = starts::restarted(&self.procs, id, note, then, response);
        self.apply(actions);
    }

    // ---- child output ----

    /// Read up to `budget` bytes from one pipe into its log, and pass the lines on.
    pub(super) fn read_output(&mut self, id: ProcId, stream: Stream, budget: usize) {
        let wanted = self.with_router(|r| r.wanted(id, stream));
        let Some(p) = self.procs.get_mut(id) else {
            return;
        };
        let mut actions = (self.capture).read(p, stream, &mut self.clock, wanted, budget);
        self.with_router(|r| r.after_read(id, stream, &mut actions));
        self.apply(actions);
    }

    /// The takers of lines (`up`, waits, followers) with what they read.
    pub(super) fn with_router<R>(&mut self, f: impl FnOnce(&mut lines::Router) -> R) -> R {
        let mut router = lines::Router {
            waits: &mut self.waits,
            ups: &mut self.ups,
            follow: &mut self.follow,
            view: up_run::View {
                procs: &mut self.procs,
                proxy_port: self.proxy.as_ref().map(|p| p.port()),
                home_cwd: &self.home_cwd,
                last_try: &|owner| self.probes.last_error_of(owner),
                port_conflict: &|procs, id| resources::port_conflict(procs, &self.paths, id),
            },
            capture: &self.capture,
        };
        f(&mut router)
    }

    /// A line of ours (a note) to whoever takes the process's lines, sent at once.
    pub(super) fn deliver_line(&mut self, id: ProcId, stream: Stream, line: &[u8]) {
        self.act(|d| d.with_router(|r| r.line(id, stream, line)));
        self.act(|d| d.follow.flush());
    }

    /// A line from the daemon in `proc`'s stdout log, and to its followers.
    pub(super) fn stdout_note(&mut self, proc: ProcId, note: &str) {
        runs::annotate(&mut self.procs, proc, &mut self.clock, note);
        self.deliver_line(proc, Stream::Stdout, note.as_bytes());
    }

    // ---- children ----

    pub(super) fn reap_children(&mut self) {
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
    pub(super) fn check_stop(&mut self, id: ProcId) {
        let view = supervisor::ExitView::new(&self.paths, self.shutting_down);
        let actions = self.sup.check_stop_done(&mut self.procs, id, view);
        self.apply(actions);
    }

    /// Answer the waits for `id`'s exit with how it ended.
    pub(super) fn exit_waits(&mut self, id: ProcId, exit: Exit) {
        let p = self.procs.get(id);
        let outcome = p.map_or_else(|| exit.describe(), |p| p.outcome(exit));
        let name = p.map_or("", |p| p.name.as_str());
        let actions = self.waits.on_exit(id, name, &outcome, exit);
        self.apply(actions);
    }

    /// Begin the deferred stops nothing depends on any more, then answer every
    /// pending request whose processes have all stopped, one at a time.
    pub(super) fn settle_pending(&mut self) {
        let mut actions = Vec::new();
        (self.sup).release_deferred_stops(&mut self.procs, &mut actions);
        self.apply(actions);
        while let Some(actions) = self.sup.settle_next(&self.procs, self.shutting_down) {
            self.apply(actions);
        }
    }

    pub(super) fn finish_shutdown(&mut self, client: Option<ClientId>) {
        if self.exiting {
            return;
        }
        // Free the session name first, so a new daemon can start as soon as we answer.
        startup::remove_runtime_files(&self.paths);
        self.exiting = true;
        let actions = supervisor::shutdown_done(&self.procs, client, Instant::now());
        self.apply(actions);
    }

    // ---- up and persistence ----

    /// Call the up component with its view, and carry out what it returns.
    pub(super) fn with_ups(
        &mut self,
        f: impl FnOnce(&mut up_run::Ups, &mut up_run::View) -> Vec<Action>,
    ) {
        let mut view = up_run::View {
            procs: &mut self.procs,
            proxy_port: self.proxy.as_ref().map(|p| p.port()),
            home_cwd: &self.home_cwd,
            last_try: &|owner| self.probes.last_error_of(owner),
            port_conflict: &|procs, id| resources::port_conflict(procs, &self.paths, id),
        };
        let actions = f(&mut self.ups, &mut view);
        self.apply(actions);
    }

    pub(super) fn save_state(&mut self) {
        let actions = self.persist.save(&self.procs, self.sup.sid());
        self.apply(actions);
    }
}
