//! The stop and restart flows of the process lifecycle: who is stopped, in
//! what order, with which grace period, and which request waits for it; and
//! what follows a leader's exit, in order (`on_exit`). It owns the stop
//! generation, the requests waiting for stops (`stops::Stops`) and our
//! session id; it reads the OS to ask whether a process group still has
//! members and, at an exit, who holds a dead server's port (`resources`) and
//! what outlived a stop (`survivors`). It steps processes through the
//! lifecycle table (`lifecycle::on`) on the table the loop passes in, and
//! returns the actions that go with each step for the loop to carry out.

use super::action::{Action, Change};
use super::ids::ClientId;
use super::lifecycle::{self, Event};
use super::procs::{Proc, ProcId, ProcTable, State};
use super::resources;
use super::signals::{self, Exit};
use super::spec::Spec;
use super::stops::{Pending, Stops};
use super::supervise::{self, Reason};
use super::survivors;
use super::timers::Timer;
use crate::logs;
use crate::paths::SessionPaths;
use crate::protocol::Response;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The grace period of a stop when neither the request nor the spec gives one.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The note a manual restart writes before the new run's first byte.
pub const MANUAL_NOTE: &str = "[agent-procs] Restarted (manual)";

/// Put process `id` through one step of the lifecycle table: its state and
/// what the step changes of its supervision (why the run ends, the restart
/// count starting over) are set here; the other actions are added to `out`.
pub fn step(procs: &mut ProcTable, id: ProcId, event: Event, out: &mut Vec<Action>) {
    let Some(p) = procs.get_mut(id) else {
        return;
    };
    let (state, actions) = lifecycle::on(p, event);
    p.state = state;
    for action in actions {
        match action {
            Action::StopReason {
                reason, replace, ..
            } => p.sup.set_stop_reason(reason, replace),
            Action::ResetRestarts { .. } => p.sup.reset(),
            action => out.push(action),
        }
    }
}

/// What the decisions at an exit read besides the table: where the logs are
/// (to tell why a server died) and whether the daemon is shutting down.
#[derive(Clone, Copy)]
pub struct ExitView<'a> {
    pub paths: &'a SessionPaths,
    pub shutting_down: bool,
}

impl ExitView<'_> {
    pub fn new(paths: &SessionPaths, shutting_down: bool) -> ExitView<'_> {
        ExitView {
            paths,
            shutting_down,
        }
    }
}

/// A stop check for each process whose leader is reaped but whose stop is
/// not done yet (reaping group members may have emptied its group).
pub fn check_groups(procs: &ProcTable) -> Vec<Action> {
    procs
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
        .map(|p| Action::CheckStop { proc: p.id })
        .collect()
}

/// The grace period for stopping `id`: the one asked for, else its own, else 10 s.
pub fn stop_timeout(procs: &ProcTable, id: ProcId, requested: Option<Duration>) -> Duration {
    requested
        .or_else(|| procs.get(id).and_then(|p| p.spec.stop_timeout))
        .unwrap_or(DEFAULT_STOP_TIMEOUT)
}

/// What of process `id` outlived its last stop and still runs, as a sentence.
pub fn survivor_sentence(procs: &ProcTable, id: ProcId) -> Option<String> {
    let p = procs.get(id)?;
    let alive: Vec<survivors::Survivor> =
        p.survivors.iter().filter(|s| s.alive()).cloned().collect();
    (!alive.is_empty()).then(|| survivors::sentence(&p.name, &alive))
}

/// `head`, then a line for each process with survivors of its last stop
/// (what stop-all and a shutdown answer).
pub fn with_survivors(procs: &ProcTable, head: &str) -> String {
    let mut message = head.to_string();
    for id in procs.ids() {
        if let Some(sentence) = survivor_sentence(procs, id) {
            message = format!("{message}\n{sentence}");
        }
    }
    message
}

/// How long replies may take to drain once we decided to exit.
pub const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Every process stopped for a shutdown: say so, answer `client` with what
/// outlived the stops (one sentence a line after the first, as stop-all says
/// it, so `down` can name them on stderr), and arm the exit.
pub fn shutdown_done(procs: &ProcTable, client: Option<ClientId>, now: Instant) -> Vec<Action> {
    let mut out = vec![Action::Note("all processes stopped; daemon exiting".into())];
    if let Some(client) = client {
        let message = with_survivors(procs, "daemon shutting down");
        let response = Response::Ok { message };
        out.push(Action::ReplyLater { client, response });
    }
    out.push(Action::Arm {
        at: now + EXIT_GRACE,
        timer: Timer::ExitDeadline,
    });
    out
}

/// A run of a name that is running now is refused, with what to do instead.
pub fn refuse_running(procs: &ProcTable, existing: Option<ProcId>) -> Option<Response> {
    let p = procs.get(existing?).filter(|p| p.state.is_alive())?;
    Some(Response::error(format!(
        "process '{}' is already running (id p{}, pid {}); stop it first or choose another --name",
        p.name, p.id, p.pid
    )))
}

/// Processes started from one shell share one copy of its environment.
pub fn share_env(procs: &ProcTable, spec: &mut Spec) {
    spec.base_env = spec.base_env.take().map(|env| {
        procs
            .iter()
            .filter_map(|p| p.spec.base_env.as_ref())
            .find(|known| ***known == *env)
            .cloned()
            .unwrap_or(env)
    });
}

/// A new name: a new entry in the table, or why there cannot be one.
pub fn add(
    procs: &mut ProcTable,
    name: Option<String>,
    spec: Spec,
) -> std::result::Result<ProcId, String> {
    let id = procs.allocate_id();
    let name = name.unwrap_or_else(|| format!("p{id}"));
    if procs.by_name(&name).is_some() {
        return Err(format!("process '{name}' already exists; choose a --name"));
    }
    procs.insert(Proc::new(id, name, spec));
    Ok(id)
}

pub struct Supervisor {
    /// Numbers each stop and each restart delay, so a stale timer finds nothing to do.
    generation: u64,
    /// Requests waiting for processes to stop, and stops waiting for dependents.
    pub pending: Stops,
    /// Our session: children stay in it, which is how we recognise their groups.
    sid: i32,
}

impl Supervisor {
    pub fn new(sid: i32) -> Supervisor {
        Supervisor {
            generation: 0,
            pending: Stops::default(),
            sid,
        }
    }

    pub fn sid(&self) -> i32 {
        self.sid
    }

    /// Whether the group of `id` lives on, asked only when its leader is gone.
    pub fn leftovers(&self, procs: &ProcTable, id: ProcId) -> bool {
        procs.get(id).is_some_and(|p| {
            !matches!(
                p.state,
                State::Running { .. } | State::Stopping { leader: None, .. }
            ) && signals::group_alive(p.pgid, self.sid)
        })
    }

    /// Send the stop signal to the group and arm the SIGKILL deadline. Returns
    /// false when there is nothing left to stop (the process and its group are gone).
    pub fn begin_stop(
        &mut self,
        procs: &mut ProcTable,
        id: ProcId,
        timeout: Duration,
        out: &mut Vec<Action>,
    ) -> bool {
        self.generation += 1;
        let event = Event::StopRequested {
            timeout,
            generation: self.generation,
            group_alive: self.leftovers(procs, id),
            now: Instant::now(),
        };
        step(procs, id, event, out);
        procs
            .get(id)
            .is_some_and(|p| matches!(p.state, State::Stopping { .. }))
    }

    /// The entry a start goes into. A new name gets a new one (`add`).
    /// Re-running an exited name (`existing`) replaces its spec, keeping its id;
    /// leftovers of its old process group belong to the run being replaced and go.
    pub fn admit(
        &self,
        procs: &mut ProcTable,
        existing: Option<ProcId>,
        name: Option<String>,
        spec: Spec,
    ) -> std::result::Result<(ProcId, Vec<Action>), String> {
        let Some(id) = existing else {
            return add(procs, name, spec).map(|id| (id, Vec::new()));
        };
        let mut out = Vec::new();
        if let Some(p) = procs.get_mut(id) {
            if signals::group_alive(p.pgid, self.sid) {
                out.push(Action::KillGroup {
                    pgid: p.pgid,
                    signal: libc::SIGKILL,
                });
            }
            p.spec = spec;
            p.sup.reset();
        }
        Ok((id, out))
    }

    /// `stop NAME` (process `id`, named `target`): stop it and answer once it
    /// is down. A stop by hand turns automatic restarts off until `restart` or `run`.
    pub fn stop_request(
        &mut self,
        procs: &mut ProcTable,
        client: ClientId,
        id: ProcId,
        target: String,
        timeout_ms: Option<u64>,
    ) -> Vec<Action> {
        let timeout = stop_timeout(procs, id, timeout_ms.map(Duration::from_millis));
        let mut was_down = None;
        if let Some(p) = procs.get_mut(id) {
            p.sup.disabled = true;
            if matches!(p.state, State::Exited { .. } | State::Failed { .. }) {
                was_down = Some(p.name.clone());
            }
        }
        let mut out = Vec::new();
        if self.begin_stop(procs, id, timeout, &mut out) {
            out.push(Action::Busy { client });
            self.pending.push(Pending::Stop {
                client,
                proc: id,
                label: target,
            });
        } else {
            // A second stop is not an error (the process is where it was asked
            // to be), but it does not pretend to have stopped anything either.
            let message = match was_down {
                Some(name) => format!("{name} was not running"),
                None => format!("stopped {target}"),
            };
            let response = Response::Ok { message };
            out.push(Action::Reply { client, response });
        }
        out
    }

    /// `stop-all`: answer at once if nothing runs, else once everything stopped.
    pub fn stop_all_request(
        &mut self,
        procs: &mut ProcTable,
        client: ClientId,
        requested: Option<Duration>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let remaining = self.stop_all(procs, requested, &mut out);
        if remaining.is_empty() {
            let message = "all processes stopped".into();
            let response = Response::Ok { message };
            out.push(Action::Reply { client, response });
        } else {
            out.push(Action::Busy { client });
            self.pending.push(Pending::StopAll { client, remaining });
        }
        out
    }

    /// Begin stopping every live process, dependents before what they depend on
    /// (independent ones in parallel); returns those that must finish first.
    pub fn stop_all(
        &mut self,
        procs: &mut ProcTable,
        requested: Option<Duration>,
        out: &mut Vec<Action>,
    ) -> HashSet<ProcId> {
        let mut remaining = HashSet::new();
        for id in procs.ids() {
            if let Some(p) = procs.get_mut(id) {
                p.sup.disabled = true;
            }
            step(procs, id, Event::RestartCancelled, out);
            if procs.get(id).is_some_and(|p| p.state.is_alive()) {
                remaining.insert(id);
                self.pending.defer(id, requested);
            } else if self.begin_stop(procs, id, stop_timeout(procs, id, requested), out) {
                // Exited leader, live group: nothing depends on leftovers.
                remaining.insert(id);
            }
        }
        self.release_deferred_stops(procs, out);
        remaining
    }

    /// Stop the deferred processes that no live process depends on any more.
    pub fn release_deferred_stops(&mut self, procs: &mut ProcTable, out: &mut Vec<Action>) {
        if !self.pending.has_deferred() {
            return;
        }
        loop {
            let free = self.pending.releasable(procs);
            if free.is_empty() {
                return;
            }
            for (id, requested) in free {
                let timeout = stop_timeout(procs, id, requested);
                self.begin_stop(procs, id, timeout, out);
            }
            // A process that was already gone may have freed others at once.
        }
    }

    /// Stop everything for a shutdown; answer `client` (if any, busy until
    /// then) once all is down.
    pub fn shutdown(&mut self, procs: &mut ProcTable, client: Option<ClientId>) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(client) = client {
            out.push(Action::Busy { client });
        }
        let remaining = self.stop_all(procs, None, &mut out);
        self.pending.push(Pending::Shutdown { client, remaining });
        out
    }

    /// `restart NAME` (process `id`): stop it, and start it again once it is
    /// down (at once if it is not running).
    pub fn restart_request(
        &mut self,
        procs: &mut ProcTable,
        client: ClientId,
        id: ProcId,
    ) -> Vec<Action> {
        if let Some(p) = procs.get_mut(id) {
            p.sup.reset();
            p.sup.stop_reason = Some(Reason::Restarted);
        }
        let change = Change::new("restarting").delay_ms(0).detail("manual");
        let mut out = vec![Action::Emit { proc: id, change }];
        let stopping = self.begin_stop(procs, id, stop_timeout(procs, id, None), &mut out);
        if stopping {
            out.push(Action::Busy { client });
            self.pending.push(Pending::Restart {
                client,
                proc: id,
                note: MANUAL_NOTE,
            });
        } else {
            if let Some(p) = procs.get_mut(id) {
                // Not running: nothing ends with this reason; the next death is its own.
                p.sup.stop_reason = None;
            }
            out.push(Action::Respawn {
                proc: id,
                note: MANUAL_NOTE,
                reply: Some(client),
                settled: false,
            });
        }
        out
    }

    /// Client `id` went away: what it asked for goes on, answered to nobody.
    pub fn drop_client(&mut self, id: ClientId) {
        self.pending.drop_client(id);
    }

    /// The next request whose processes have all stopped, answered: one at a
    /// time, as answering one (a restart) may start processes again.
    pub fn settle_next(&mut self, procs: &ProcTable, shutting_down: bool) -> Option<Vec<Action>> {
        let later = |client, response| vec![Action::ReplyLater { client, response }];
        Some(match self.pending.next_settled(procs)? {
            Pending::Stop {
                client,
                label,
                proc,
            } => {
                let mut message = format!("stopped {label}");
                if let Some(sentence) = survivor_sentence(procs, proc) {
                    message = format!("{message}\n{sentence}");
                }
                later(client, Response::Ok { message })
            }
            Pending::Restart { client, .. } if shutting_down => {
                later(client, Response::error("the daemon is shutting down"))
            }
            Pending::Restart { client, proc, note } => vec![Action::Respawn {
                proc,
                note,
                reply: Some(client),
                settled: true,
            }],
            Pending::StopAll { client, .. } => {
                let message = with_survivors(procs, "all processes stopped");
                later(client, Response::Ok { message })
            }
            Pending::Shutdown { client, .. } => vec![Action::FinishShutdown { client }],
        })
    }

    /// Stop `id`, then start it again with `note` once it is down (no client waits).
    pub fn stop_then_restart(
        &mut self,
        procs: &mut ProcTable,
        id: ProcId,
        note: &'static str,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let timeout = stop_timeout(procs, id, None);
        if self.begin_stop(procs, id, timeout, &mut out) {
            self.pending.push(Pending::Restart {
                client: ClientId(usize::MAX),
                proc: id,
                note,
            });
        } else {
            out.push(Action::Respawn {
                proc: id,
                note,
                reply: None,
                settled: false,
            });
        }
        out
    }

    /// A stop is done once the leader is reaped and nobody is left in its
    /// group: then it is reported and the run's end decided (`carry`).
    pub fn check_stop_done(
        &mut self,
        procs: &mut ProcTable,
        id: ProcId,
        view: ExitView,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(p) = procs.get(id) else { return out };
        if !matches!(
            p.state,
            State::Stopping {
                leader: Some(_),
                ..
            }
        ) {
            return out;
        }
        let group_alive = signals::group_alive(p.pgid, self.sid);
        let mut steps = Vec::new();
        step(procs, id, Event::GroupChecked { group_alive }, &mut steps);
        self.carry(procs, steps, view, &mut out);
        out
    }

    /// The leader of `id` was reaped (the loop has drained its pipes): the
    /// whole exit, in order. A death is reported (with who holds its port, if
    /// that is why), or a stop is checked for being done; the run's end is
    /// decided by its policy; then the loop answers waits for the exit and
    /// requests waiting for stops, ends its output and tells the `up` runs.
    pub fn on_exit(
        &mut self,
        procs: &mut ProcTable,
        id: ProcId,
        exit: Exit,
        view: ExitView,
    ) -> Vec<Action> {
        let mut steps = Vec::new();
        step(procs, id, Event::LeaderExited { exit }, &mut steps);
        let mut out = Vec::new();
        self.carry(procs, steps, view, &mut out);
        out
    }

    /// Carry a step's reports through: a stop check, a death, a finished stop
    /// and the end of a run become what they lead to; the rest goes to `out`
    /// for the loop, in order.
    fn carry(
        &mut self,
        procs: &mut ProcTable,
        actions: Vec<Action>,
        view: ExitView,
        out: &mut Vec<Action>,
    ) {
        for action in actions {
            match action {
                Action::CheckStop { proc } => {
                    let checked = self.check_stop_done(procs, proc, view);
                    out.extend(checked);
                }
                Action::Died { proc, exit } => {
                    // A server that died because its port was taken: say who has it.
                    let conflict = match exit.code() {
                        Some(0) => None,
                        _ => resources::port_conflict(procs, view.paths, proc),
                    };
                    let reports = self.died(procs, proc, exit, conflict);
                    self.carry(procs, reports, view, out);
                }
                Action::Stopped { proc, exit } => {
                    let name = procs.get(proc).map(|p| p.name.clone()).unwrap_or_default();
                    // The group is gone; what left it earlier may live on, re-parented to us.
                    let survivors = survivors::find(&name, |pid| procs.is_leader(pid));
                    let reports = self.stopped(procs, proc, exit, survivors);
                    self.carry(procs, reports, view, out);
                }
                Action::Ended { proc, exit } => {
                    out.extend(self.supervise_exit(procs, proc, exit, view.shutting_down));
                    out.extend([
                        Action::ExitWaits { proc, exit },
                        Action::Settle,
                        Action::OutputFinished { proc },
                        Action::UpExited { proc, exit },
                    ]);
                }
                action => out.push(action),
            }
        }
    }

    /// The grace period (or a SIGKILL recheck) of stop `generation` ran out.
    pub fn escalate(&self, procs: &mut ProcTable, id: ProcId, generation: u64) -> Vec<Action> {
        let event = Event::StopTimedOut {
            generation,
            group_alive: self.leftovers(procs, id),
            now: Instant::now(),
        };
        let mut out = Vec::new();
        step(procs, id, event, &mut out);
        out
    }

    /// The restart delay of `generation` is over: start the process again.
    pub fn auto_restart(
        &self,
        procs: &mut ProcTable,
        id: ProcId,
        generation: u64,
        shutting_down: bool,
    ) -> Vec<Action> {
        let event = Event::BackoffOver {
            generation,
            group_alive: self.leftovers(procs, id),
            shutting_down,
        };
        let mut out = Vec::new();
        step(procs, id, event, &mut out);
        out
    }

    /// A watched file changed: restart the process (reviving it if it had
    /// failed), unless it was stopped by hand.
    pub fn watch_restart(
        &mut self,
        procs: &mut ProcTable,
        id: ProcId,
        shutting_down: bool,
    ) -> Vec<Action> {
        let event = Event::WatchChanged {
            group_alive: self.leftovers(procs, id),
            shutting_down,
        };
        let mut steps = Vec::new();
        step(procs, id, event, &mut steps);
        let mut out = Vec::new();
        for action in steps {
            match action {
                Action::StopThenRestart { proc, note } => {
                    out.extend(self.stop_then_restart(procs, proc, note));
                }
                action => out.push(action),
            }
        }
        out
    }

    /// A run ended: record why, and restart it later or give up, as its policy
    /// says. The run journal's entry for the end comes first (`Journal`).
    fn supervise_exit(
        &mut self,
        procs: &mut ProcTable,
        id: ProcId,
        exit: Exit,
        shutting_down: bool,
    ) -> Vec<Action> {
        self.generation += 1;
        let generation = self.generation;
        let now = Instant::now();
        let mut out = Vec::new();
        let Some(p) = procs.get_mut(id) else {
            return out;
        };
        let ran_for = p.started_wall.elapsed().unwrap_or_default();
        let decision = p.sup.record(exit, ran_for, p.spec.restart.as_ref(), now);
        let base_delay = p.spec.restart.as_ref().map(|r| r.delay);
        if p.run > 0 {
            out.push(Action::Journal(logs::runs::Entry {
                p: p.name.clone(),
                run: p.run,
                end: Some(logs::index::now_ms()),
                how: p.sup.exits.back().map(supervise::ended),
                ..Default::default()
            }));
        }
        let event = Event::Supervised {
            exit,
            decision,
            base_delay,
            generation,
            shutting_down,
            now,
        };
        step(procs, id, event, &mut out);
        out
    }

    /// The leader died on its own (it was not being stopped): say how, and who
    /// holds its port if that is why (`conflict`, read by the loop for a failure).
    pub fn died(
        &self,
        procs: &mut ProcTable,
        id: ProcId,
        exit: Exit,
        conflict: Option<String>,
    ) -> Vec<Action> {
        let Some(p) = procs.get_mut(id) else {
            return Vec::new();
        };
        let mut exited = Change::new("exited")
            .pid(p.pid)
            .exit(exit.code(), exit.signal_name());
        let note = match &conflict {
            Some(c) => {
                exited = exited.detail(c.clone());
                format!("{} exited ({}); {c}", p.name, exit.describe())
            }
            None => format!("{} exited ({})", p.name, exit.describe()),
        };
        p.port_conflict = conflict;
        vec![
            Action::Note(note),
            Action::SaveState,
            Action::Emit {
                proc: id,
                change: exited,
            },
            Action::Ended { proc: id, exit },
        ]
    }

    /// A stop finished: report it, and what outlived it outside the group
    /// (`survivors`, looked for by the loop once the group is gone).
    pub fn stopped(
        &self,
        procs: &mut ProcTable,
        id: ProcId,
        exit: Exit,
        survivors: Vec<survivors::Survivor>,
    ) -> Vec<Action> {
        let mut stopped = Change::new("stopped").exit(exit.code(), exit.signal_name());
        let Some(p) = procs.get_mut(id) else {
            return Vec::new();
        };
        stopped = stopped.pid(p.pid);
        p.survivors = survivors;
        let mut out = vec![Action::Note(format!(
            "{} stopped ({})",
            p.name,
            exit.describe()
        ))];
        if let Some(sentence) = survivor_sentence(procs, id) {
            out.push(Action::Note(sentence.clone()));
            stopped = stopped.detail(sentence);
        }
        out.push(Action::Emit {
            proc: id,
            change: stopped,
        });
        out.push(Action::Ended { proc: id, exit });
        out.push(Action::SaveState);
        out
    }

    /// Last resort on a fatal loop error: leave nothing running.
    pub fn kill_everything(&self, procs: &ProcTable) {
        for p in procs.iter() {
            if p.state.is_alive() || signals::group_alive(p.pgid, self.sid) {
                signals::kill_group(p.pgid, libc::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::timers::Timer;

    /// No process group is in this session, so no group is ever alive.
    const NO_SESSION: i32 = i32::MAX;

    fn spec(needs: &[&str]) -> Spec {
        Spec {
            depends_on: needs.iter().map(|n| n.to_string()).collect(),
            ..Spec::for_test("server")
        }
    }

    /// A table of processes: (name, running, what it depends on).
    fn table(procs: &[(&str, bool, &[&str])]) -> ProcTable {
        let mut t = ProcTable::default();
        for (name, running, needs) in procs {
            let id = t.allocate_id();
            let mut p = Proc::new(id, name.to_string(), spec(needs));
            // Made-up groups: the actions that signal them are only looked at.
            p.pid = 900_000 + id.0;
            p.pgid = p.pid as i32;
            p.state = if *running {
                State::Running {
                    pid: p.pid,
                    since: Instant::now(),
                }
            } else {
                State::Exited {
                    exit: Exit::Code(0),
                }
            };
            t.insert(p);
        }
        t
    }

    #[test]
    fn a_finished_shutdown_is_noted_answered_and_ends_after_a_grace() {
        let t = table(&[("api", false, &[])]);
        let now = Instant::now();
        let actions = shutdown_done(&t, Some(ClientId(7)), now);
        assert!(matches!(&actions[0], Action::Note(n) if n.contains("daemon exiting")));
        assert!(matches!(
            &actions[1],
            Action::ReplyLater { client: ClientId(7), response: Response::Ok { message } }
                if message.starts_with("daemon shutting down")
        ));
        assert!(matches!(
            actions[2],
            Action::Arm { at, timer: Timer::ExitDeadline } if at == now + EXIT_GRACE
        ));
        // Without a client (a signal) nobody is answered.
        assert_eq!(shutdown_done(&t, None, now).len(), 2);
    }

    fn killed(actions: &[Action]) -> Vec<i32> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::KillGroup { pgid, .. } => Some(*pgid),
                _ => None,
            })
            .collect()
    }

    fn replies(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Reply {
                    response: Response::Ok { message },
                    ..
                } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_stop_waits_for_the_process_and_keeps_the_client_busy() {
        let mut procs = table(&[("web", true, &[])]);
        let id = procs.find("web").unwrap();
        let mut sup = Supervisor::new(NO_SESSION);
        let actions = sup.stop_request(&mut procs, ClientId(3), id, "web".into(), Some(250));
        assert_eq!(killed(&actions), vec![procs.get(id).unwrap().pgid]);
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::Busy {
                client: ClientId(3)
            }
        )));
        assert!(replies(&actions).is_empty(), "answered before it stopped");
        assert!(procs.get(id).unwrap().sup.disabled);
        // The asked grace period is the one armed.
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::Arm { timer: Timer::Escalate { proc, .. }, .. } if *proc == id
        )));
        // Not settled while it is stopping.
        assert!(sup.pending.next_settled(&procs).is_none());
    }

    #[test]
    fn stopping_what_is_down_answers_at_once_without_pretending() {
        let mut procs = table(&[("web", false, &[])]);
        let mut sup = Supervisor::new(NO_SESSION);
        let id = procs.find("web").unwrap();
        let actions = sup.stop_request(&mut procs, ClientId(3), id, "web".into(), None);
        assert_eq!(replies(&actions), vec!["web was not running".to_string()]);
        assert!(killed(&actions).is_empty());
        assert!(!actions.iter().any(|a| matches!(a, Action::Busy { .. })));
        assert!(sup.pending.next_settled(&procs).is_none());
    }

    #[test]
    fn stop_all_stops_dependents_first_and_hands_the_rest_on_when_they_are_down() {
        // api depends on db; cache stands alone.
        let mut procs = table(&[
            ("db", true, &[]),
            ("api", true, &["db"]),
            ("cache", true, &[]),
        ]);
        let (db, api, cache) = (
            procs.find("db").unwrap(),
            procs.find("api").unwrap(),
            procs.find("cache").unwrap(),
        );
        let pgid = |procs: &ProcTable, id| procs.get(id).unwrap().pgid;
        let mut sup = Supervisor::new(NO_SESSION);
        let actions = sup.stop_all_request(&mut procs, ClientId(5), None);
        let mut first = killed(&actions);
        first.sort();
        let mut expected = vec![pgid(&procs, api), pgid(&procs, cache)];
        expected.sort();
        assert_eq!(first, expected, "db is stopped only after api");
        assert!(matches!(
            procs.get(db).unwrap().state,
            State::Running { .. }
        ));
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::Busy {
                client: ClientId(5)
            }
        )));

        // api is down: db's stop is released.
        procs.get_mut(api).unwrap().state = State::Exited {
            exit: Exit::Code(0),
        };
        let mut out = Vec::new();
        sup.release_deferred_stops(&mut procs, &mut out);
        assert_eq!(killed(&out), vec![pgid(&procs, db)]);
        assert!(matches!(
            procs.get(db).unwrap().state,
            State::Stopping { .. }
        ));

        // Everything down: the stop-all is settled.
        for id in [db, cache] {
            procs.get_mut(id).unwrap().state = State::Exited {
                exit: Exit::Code(0),
            };
        }
        assert!(matches!(
            sup.pending.next_settled(&procs),
            Some(Pending::StopAll {
                client: ClientId(5),
                ..
            })
        ));
    }

    #[test]
    fn stop_all_of_nothing_running_answers_at_once() {
        let mut procs = table(&[("web", false, &[])]);
        let mut sup = Supervisor::new(NO_SESSION);
        let actions = sup.stop_all_request(&mut procs, ClientId(2), None);
        assert_eq!(replies(&actions), vec!["all processes stopped".to_string()]);
        assert!(sup.pending.next_settled(&procs).is_none());
    }

    #[test]
    fn restarting_what_is_down_starts_it_and_answers_the_client() {
        let mut procs = table(&[("web", false, &[])]);
        let id = procs.find("web").unwrap();
        let mut sup = Supervisor::new(NO_SESSION);
        let actions = sup.restart_request(&mut procs, ClientId(4), id);
        assert!(matches!(
            actions.last(),
            Some(Action::Respawn { proc, note: MANUAL_NOTE, reply: Some(ClientId(4)), settled: false }) if *proc == id
        ));
        // Nothing ends with the restart's reason: the next death is its own.
        assert_eq!(procs.get(id).unwrap().sup.stop_reason, None);
    }

    #[test]
    fn restarting_a_running_process_settles_once_it_stopped() {
        let mut procs = table(&[("web", true, &[])]);
        let id = procs.find("web").unwrap();
        let mut sup = Supervisor::new(NO_SESSION);
        let actions = sup.restart_request(&mut procs, ClientId(4), id);
        assert!(matches!(
            actions.first(),
            Some(Action::Emit { change, .. }) if change.event == "restarting"
        ));
        assert!(!actions.iter().any(|a| matches!(a, Action::Respawn { .. })));
        assert_eq!(
            procs.get(id).unwrap().sup.stop_reason,
            Some(Reason::Restarted)
        );
        assert!(sup.pending.next_settled(&procs).is_none());
        procs.get_mut(id).unwrap().state = State::Exited {
            exit: Exit::Code(0),
        };
        assert_eq!(
            sup.pending.next_settled(&procs),
            Some(Pending::Restart {
                client: ClientId(4),
                proc: id,
                note: MANUAL_NOTE
            })
        );
    }

    #[test]
    fn a_stale_escalation_finds_nothing_to_do() {
        let mut procs = table(&[("web", true, &[])]);
        let id = procs.find("web").unwrap();
        let mut sup = Supervisor::new(NO_SESSION);
        let mut out = Vec::new();
        assert!(sup.begin_stop(&mut procs, id, Duration::from_secs(1), &mut out));
        let State::Stopping { generation, .. } = procs.get(id).unwrap().state else {
            panic!("not stopping");
        };
        assert!(sup.escalate(&mut procs, id, generation + 1).is_empty());
        let actions = sup.escalate(&mut procs, id, generation);
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::KillGroup { signal, .. } if *signal == libc::SIGKILL
        )));
    }

    #[test]
    fn a_death_says_who_holds_the_port_and_then_ends_the_run() {
        let mut procs = table(&[("web", false, &[])]);
        let id = procs.find("web").unwrap();
        let sup = Supervisor::new(NO_SESSION);
        let conflict = Some("port 4000 is held by pid 77 (nc)".to_string());
        let exit = Exit::Code(1);
        let actions = sup.died(&mut procs, id, exit, conflict.clone());
        assert!(
            matches!(
                &actions[0],
                Action::Note(n) if n == "web exited (exit code 1); port 4000 is held by pid 77 (nc)"
            ),
            "{actions:?}"
        );
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::Emit { change, .. } if change.event == "exited"
                && change.exit_code == Some(1)
                && change.detail == conflict
        )));
        assert!(matches!(actions.last(), Some(Action::Ended { exit: e, .. }) if *e == exit));
        assert_eq!(procs.get(id).unwrap().port_conflict, conflict);
    }

    #[test]
    fn a_finished_stop_is_reported_before_the_run_ends() {
        let mut procs = table(&[("web", false, &[])]);
        let id = procs.find("web").unwrap();
        let sup = Supervisor::new(NO_SESSION);
        let exit = Exit::Signal(libc::SIGTERM);
        let actions = sup.stopped(&mut procs, id, exit, Vec::new());
        let order: Vec<&str> = actions
            .iter()
            .map(|a| match a {
                Action::Note(_) => "note",
                Action::Emit { .. } => "emit",
                Action::Ended { .. } => "ended",
                Action::SaveState => "save",
                _ => "other",
            })
            .collect();
        assert_eq!(order, ["note", "emit", "ended", "save"]);
        // Nobody outlived it: stop-all says just that.
        assert_eq!(
            with_survivors(&procs, "all processes stopped"),
            "all processes stopped"
        );
    }

    #[test]
    fn a_settled_restart_starts_again_unless_the_daemon_is_going_away() {
        for shutting_down in [false, true] {
            let mut procs = table(&[("web", true, &[])]);
            let id = procs.find("web").unwrap();
            let mut sup = Supervisor::new(NO_SESSION);
            sup.restart_request(&mut procs, ClientId(4), id);
            assert!(sup.settle_next(&procs, shutting_down).is_none());
            procs.get_mut(id).unwrap().state = State::Exited {
                exit: Exit::Code(0),
            };
            let actions = sup.settle_next(&procs, shutting_down).unwrap();
            if shutting_down {
                assert!(
                    matches!(
                        &actions[..],
                        [Action::ReplyLater {
                            client: ClientId(4),
                            response: Response::Error { .. }
                        }]
                    ),
                    "{actions:?}"
                );
            } else {
                assert!(
                    matches!(
                        &actions[..],
                        [Action::Respawn {
                            reply: Some(ClientId(4)),
                            settled: true,
                            ..
                        }]
                    ),
                    "{actions:?}"
                );
            }
            assert!(
                sup.settle_next(&procs, shutting_down).is_none(),
                "settled twice"
            );
        }
    }

    #[test]
    fn a_shutdown_settles_into_finishing_once_everything_is_down() {
        let mut procs = table(&[("web", true, &[])]);
        let id = procs.find("web").unwrap();
        let mut sup = Supervisor::new(NO_SESSION);
        let actions = sup.shutdown(&mut procs, Some(ClientId(9)));
        // The client asked to go down: it waits for that, asking nothing more.
        assert!(matches!(
            actions.first(),
            Some(Action::Busy {
                client: ClientId(9)
            })
        ));
        assert_eq!(killed(&actions).len(), 1);
        // A signal asked: nobody to keep busy.
        let mut other = Supervisor::new(NO_SESSION);
        let by_signal = other.shutdown(&mut table(&[]), None);
        assert!(!by_signal.iter().any(|a| matches!(a, Action::Busy { .. })));
        assert!(sup.settle_next(&procs, true).is_none());
        procs.get_mut(id).unwrap().state = State::Exited {
            exit: Exit::Code(0),
        };
        assert!(matches!(
            sup.settle_next(&procs, true).as_deref(),
            Some([Action::FinishShutdown {
                client: Some(ClientId(9))
            }])
        ));
    }

    #[test]
    fn a_run_of_a_running_name_is_refused_and_a_taken_name_is_not_added() {
        let mut procs = table(&[("web", true, &[]), ("old", false, &[])]);
        let web = procs.find("web");
        assert!(matches!(
            refuse_running(&procs, web),
            Some(Response::Error { message, .. }) if message.contains("already running")
        ));
        assert!(refuse_running(&procs, procs.find("old")).is_none());
        assert!(refuse_running(&procs, None).is_none());
        let err = add(&mut procs, Some("web".into()), spec(&[])).unwrap_err();
        assert!(err.contains("already exists"), "{err}");
        let id = add(&mut procs, None, spec(&[])).unwrap();
        assert_eq!(procs.find(&format!("p{id}")), Some(id));
    }

    #[test]
    fn processes_from_one_shell_share_one_environment() {
        use std::rc::Rc;
        let mut procs = table(&[("web", true, &[])]);
        let env: std::collections::HashMap<String, String> =
            [("A".to_string(), "1".to_string())].into();
        let id = procs.find("web").unwrap();
        procs.get_mut(id).unwrap().spec.base_env = Some(Rc::new(env.clone()));
        let mut fresh = spec(&[]);
        fresh.base_env = Some(Rc::new(env));
        share_env(&procs, &mut fresh);
        let known = procs.get(id).unwrap().spec.base_env.as_ref().unwrap();
        assert!(Rc::ptr_eq(known, fresh.base_env.as_ref().unwrap()));
    }

    fn always() -> supervise::Policy {
        supervise::Policy {
            mode: supervise::Mode::Always,
            max: None,
            delay: Duration::from_secs(1),
            exponential: false,
        }
    }

    fn paths() -> SessionPaths {
        let dir = std::path::PathBuf::from("/nonexistent/agent-procs-test");
        SessionPaths {
            session: "web".into(),
            runtime_dir: dir.join("run"),
            socket: dir.join("run/web.sock"),
            pid_file: dir.join("run/web.pid"),
            lock_file: dir.join("run/web.lock"),
            log_dir: dir.join("logs"),
            state_dir: dir,
            root: None,
        }
    }

    /// Each action by its kind, to check an exit's order.
    fn kinds(actions: &[Action]) -> Vec<&'static str> {
        actions
            .iter()
            .map(|a| match a {
                Action::Note(_) => "note",
                Action::SaveState => "save",
                Action::Emit { change, .. } => change.event,
                Action::Journal(_) => "journal",
                Action::Arm { .. } => "arm",
                Action::ExitWaits { .. } => "waits",
                Action::Settle => "settle",
                Action::OutputFinished { .. } => "output",
                Action::UpExited { .. } => "up",
                Action::KillGroup { .. } => "kill",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn a_death_is_reported_decided_and_routed_in_one_list_in_order() {
        let mut procs = table(&[("web", true, &[])]);
        let id = procs.find("web").unwrap();
        procs.get_mut(id).unwrap().run = 1;
        let mut sup = Supervisor::new(NO_SESSION);
        let paths = paths();
        let view = ExitView {
            paths: &paths,
            shutting_down: false,
        };
        let exit = Exit::Code(1);
        let actions = sup.on_exit(&mut procs, id, exit, view);
        assert_eq!(
            kinds(&actions),
            [
                "note", "save", "exited", "journal", "save", "waits", "settle", "output", "up"
            ],
            "{actions:?}"
        );
        assert!(matches!(&actions[3], Action::Journal(e) if e.p == "web" && e.run == 1));
        let p = procs.get(id).unwrap();
        assert!(matches!(p.state, State::Exited { exit: e } if e == exit));
        assert_eq!(p.sup.exits.back().map(|r| r.reason), Some(Reason::Crashed));
    }

    #[test]
    fn a_restart_policy_arms_the_restart_within_the_exit() {
        let mut procs = table(&[("web", true, &[])]);
        let id = procs.find("web").unwrap();
        procs.get_mut(id).unwrap().spec.restart = Some(always());
        let mut sup = Supervisor::new(NO_SESSION);
        let paths = paths();
        let view = ExitView {
            paths: &paths,
            shutting_down: false,
        };
        let actions = sup.on_exit(&mut procs, id, Exit::Code(1), view);
        assert_eq!(
            kinds(&actions),
            [
                "note",
                "save",
                "exited",
                "arm",
                "note",
                "restarting",
                "save",
                "waits",
                "settle",
                "output",
                "up"
            ],
            "{actions:?}"
        );
        assert!(matches!(
            procs.get(id).unwrap().state,
            State::Backoff { .. }
        ));
        // The same exit while shutting down is recorded, not restarted.
        let mut procs = table(&[("web", true, &[])]);
        procs.get_mut(id).unwrap().spec.restart = Some(always());
        let view = ExitView {
            paths: &paths,
            shutting_down: true,
        };
        let actions = sup.on_exit(&mut procs, id, Exit::Code(1), view);
        assert!(!kinds(&actions).contains(&"arm"), "{actions:?}");
        assert!(matches!(procs.get(id).unwrap().state, State::Exited { .. }));
    }

    #[test]
    fn a_stop_ends_at_the_leaders_exit_once_its_group_is_gone() {
        let mut procs = table(&[("web", true, &[])]);
        let id = procs.find("web").unwrap();
        let mut sup = Supervisor::new(NO_SESSION);
        let mut out = Vec::new();
        assert!(sup.begin_stop(&mut procs, id, Duration::from_secs(5), &mut out));
        // The step recorded why the run ends itself; it is not the loop's to do.
        assert_eq!(kinds(&out), ["kill", "note", "stopping", "arm"], "{out:?}");
        assert_eq!(
            procs.get(id).unwrap().sup.stop_reason,
            Some(Reason::Stopped)
        );
        let paths = paths();
        let view = ExitView {
            paths: &paths,
            shutting_down: false,
        };
        let exit = Exit::Signal(libc::SIGTERM);
        let actions = sup.on_exit(&mut procs, id, exit, view);
        assert_eq!(
            kinds(&actions),
            [
                "note", "stopped", "save", "waits", "settle", "output", "up", "save"
            ],
            "{actions:?}"
        );
        let p = procs.get(id).unwrap();
        assert!(matches!(p.state, State::Exited { exit: e } if e == exit));
        assert_eq!(p.sup.exits.back().map(|r| r.reason), Some(Reason::Stopped));
        // Nothing is left to check.
        assert!(check_groups(&procs).is_empty());
    }

    #[test]
    fn a_reaped_leader_of_a_stop_is_checked_until_its_group_is_gone() {
        let mut procs = table(&[("web", true, &[]), ("db", true, &[])]);
        let web = procs.find("web").unwrap();
        procs.get_mut(web).unwrap().state = State::Stopping {
            pid: 1,
            since: Instant::now(),
            leader: Some(Exit::Code(0)),
            generation: 1,
            kills: 0,
        };
        assert!(matches!(
            &check_groups(&procs)[..],
            [Action::CheckStop { proc }] if *proc == web
        ));
        let mut sup = Supervisor::new(NO_SESSION);
        let paths = paths();
        let view = ExitView {
            paths: &paths,
            shutting_down: false,
        };
        // Its group is gone (none is in our session): the stop is over.
        let actions = sup.check_stop_done(&mut procs, web, view);
        assert!(kinds(&actions).contains(&"stopped"), "{actions:?}");
        assert!(check_groups(&procs).is_empty());
        // A running process has nothing to check.
        let db = procs.find("db").unwrap();
        assert!(sup.check_stop_done(&mut procs, db, view).is_empty());
    }

    #[test]
    fn a_watch_change_stops_a_running_process_to_start_it_again() {
        let mut procs = table(&[("web", true, &[])]);
        let id = procs.find("web").unwrap();
        procs.get_mut(id).unwrap().sup.restarts = 3;
        let mut sup = Supervisor::new(NO_SESSION);
        let actions = sup.watch_restart(&mut procs, id, false);
        assert_eq!(
            kinds(&actions),
            [
                "watch_triggered",
                "restarting",
                "kill",
                "note",
                "stopping",
                "arm"
            ],
            "{actions:?}"
        );
        let p = procs.get(id).unwrap();
        // Counting starts over and the run ends for the watch, set in the step.
        assert_eq!(p.sup.restarts, 0);
        assert_eq!(p.sup.stop_reason, Some(Reason::Watch));
        assert!(matches!(p.state, State::Stopping { .. }));
        // Once it is down, it starts again with the watch's note.
        procs.get_mut(id).unwrap().state = State::Exited {
            exit: Exit::Code(0),
        };
        assert!(matches!(
            &sup.settle_next(&procs, false).unwrap()[..],
            [Action::Respawn { note, .. }] if *note == lifecycle::WATCH_NOTE
        ));
    }
}
