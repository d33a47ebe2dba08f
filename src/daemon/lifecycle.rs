//! The process lifecycle as a table: `on(&Proc, Event)` gives the next state and
//! the actions that go with the step (signal the group, arm the escalation or
//! restart timer, note, emit). Pure: the loop reads the OS (is the group alive?)
//! into the event, assigns the state and carries out the actions.

use super::action::{Action, Change};
use super::procs::{Proc, State};
use super::signals::{self, Exit};
use super::supervise::{Decision, Reason};
use super::timers::Timer;
use std::time::{Duration, Instant};

/// After SIGKILL, how often to check (and re-send) until the group is gone.
pub const KILL_RECHECK: Duration = Duration::from_secs(1);
/// SIGKILLs sent before a group that will not die is given up on.
pub const MAX_KILLS: u32 = 5;
/// The note a watch restart writes before the new run's first byte.
pub const WATCH_NOTE: &str = "[agent-procs] File changed, restarted";

/// What happened to a process. The OS facts a step needs (`group_alive`: its
/// process group still has members in our session) are read by the loop.
#[derive(Debug, Clone)]
pub enum Event {
    /// The command was started again; `pid` leads the new group.
    Started { pid: u32, now: Instant },
    /// It could not be started (or its logs could not be opened).
    SpawnFailed { reason: String },
    /// `stop`, `stop-all`, `down`, `restart`: end it within `timeout`.
    StopRequested {
        timeout: Duration,
        generation: u64,
        group_alive: bool,
        now: Instant,
    },
    /// `stop-all` or a shutdown calls off a restart that waits out its delay.
    RestartCancelled,
    /// The group leader was reaped.
    LeaderExited { exit: Exit },
    /// During a stop, after the leader was reaped: is the group empty yet?
    GroupChecked { group_alive: bool },
    /// The grace period (or a SIGKILL recheck) of stop `generation` ran out.
    StopTimedOut {
        generation: u64,
        group_alive: bool,
        now: Instant,
    },
    /// The run ended and its restart policy decided (`supervise.rs`).
    Supervised {
        exit: Exit,
        decision: Decision,
        base_delay: Option<Duration>,
        generation: u64,
        shutting_down: bool,
        now: Instant,
    },
    /// The restart delay of `generation` is over.
    BackoffOver {
        generation: u64,
        group_alive: bool,
        shutting_down: bool,
    },
    /// A watched file changed (after the debounce).
    WatchChanged {
        group_alive: bool,
        shutting_down: bool,
    },
}

/// The step process `p` takes on `event`: its next state, and what to do.
pub fn on(p: &Proc, event: Event) -> (State, Vec<Action>) {
    let stay = || (p.state.clone(), Vec::new());
    match event {
        Event::Started { pid, now } => (State::Running { pid, since: now }, Vec::new()),
        Event::SpawnFailed { reason } => {
            let actions = vec![
                Action::Note(format!("{}: {reason}", p.name)),
                emit(p, Change::new("failed").detail(reason.clone())),
            ];
            (State::Failed { reason }, actions)
        }
        Event::StopRequested {
            timeout,
            generation,
            group_alive,
            now,
        } => stop(p, timeout, generation, group_alive, now),
        Event::RestartCancelled => match p.state {
            State::Backoff { exit, .. } => (State::Exited { exit }, vec![Action::SaveState]),
            _ => stay(),
        },
        Event::LeaderExited { exit } => match p.state.clone() {
            State::Stopping {
                pid,
                since,
                generation,
                kills,
                ..
            } => {
                let state = State::Stopping {
                    pid,
                    since,
                    leader: Some(exit),
                    generation,
                    kills,
                };
                (state, vec![Action::CheckStop { proc: p.id }])
            }
            _ => (
                State::Exited { exit },
                vec![Action::Died { proc: p.id, exit }],
            ),
        },
        Event::GroupChecked { group_alive } => stop_done(p, group_alive),
        Event::StopTimedOut {
            generation,
            group_alive,
            now,
        } => escalate(p, generation, group_alive, now),
        Event::Supervised { .. } => supervised(p, event),
        Event::BackoffOver {
            generation,
            group_alive,
            shutting_down,
        } => (
            p.state.clone(),
            backoff_over(p, generation, group_alive, shutting_down),
        ),
        Event::WatchChanged {
            group_alive,
            shutting_down,
        } => (
            p.state.clone(),
            watch_changed(p, group_alive, shutting_down),
        ),
    }
}

/// The restart delay of `generation` is over: start again, with the note first.
fn backoff_over(p: &Proc, generation: u64, group_alive: bool, shutting_down: bool) -> Vec<Action> {
    match p.state {
        State::Backoff {
            exit,
            generation: current,
            ..
        } if current == generation && !shutting_down => {
            let mut actions = kill_leftovers(p, group_alive);
            let max = p.spec.restart.as_ref().and_then(|r| r.max);
            let attempt = p.sup.restarts + 1;
            actions.push(Action::Restart {
                proc: p.id,
                note: super::supervise::restarted_note(exit, attempt, max),
                counted: true,
            });
            actions
        }
        _ => Vec::new(),
    }
}

fn emit(p: &Proc, change: Change) -> Action {
    Action::Emit { proc: p.id, change }
}

/// What the dead leader left behind in its group (a child holding its port) goes.
fn kill_leftovers(p: &Proc, group_alive: bool) -> Vec<Action> {
    if group_alive {
        vec![Action::KillGroup {
            pgid: p.pgid,
            signal: libc::SIGKILL,
        }]
    } else {
        Vec::new()
    }
}

/// Send the stop signal to the group and arm the SIGKILL deadline; a process
/// that is not running stays where it is (its leftovers are still ended).
fn stop(
    p: &Proc,
    timeout: Duration,
    generation: u64,
    group_alive: bool,
    now: Instant,
) -> (State, Vec<Action>) {
    let (pid, since, leader) = match p.state {
        State::Running { pid, since } => (pid, since, None),
        State::Stopping { generation: g, .. } => {
            // Already stopping: a shorter grace period may still apply.
            let arm = Action::Arm {
                at: now + timeout,
                timer: Timer::Escalate {
                    proc: p.id,
                    generation: g,
                },
            };
            return (p.state.clone(), vec![arm]);
        }
        // The leader is gone but members of its group live on.
        State::Exited { exit } if group_alive => (p.pid, now, Some(exit)),
        State::Backoff { exit, .. } => {
            // Waiting to restart: the stop cancels that, and ends what the dead
            // leader left in its group.
            let mut actions = kill_leftovers(p, group_alive);
            actions.push(Action::SaveState);
            actions.push(emit(p, Change::new("stopped").detail("restart cancelled")));
            return (State::Exited { exit }, actions);
        }
        State::Exited { .. } | State::Failed { .. } => return (p.state.clone(), Vec::new()),
    };
    let signal = if timeout.is_zero() {
        libc::SIGKILL
    } else {
        p.spec.stop_signal
    };
    let state = State::Stopping {
        pid,
        since,
        leader,
        generation,
        kills: 0,
    };
    let actions = vec![
        Action::StopReason {
            proc: p.id,
            reason: Reason::Stopped,
            replace: false,
        },
        Action::KillGroup {
            pgid: p.pgid,
            signal,
        },
        Action::Note(format!(
            "stopping {}: sent {} to process group {}",
            p.name,
            signals::signal_name(signal),
            p.pgid
        )),
        emit(
            p,
            Change::new("stopping")
                .pid(p.pid)
                .detail(signals::signal_name(signal)),
        ),
        Action::Arm {
            at: now + timeout,
            timer: Timer::Escalate {
                proc: p.id,
                generation,
            },
        },
    ];
    (state, actions)
}

/// A stop is done once the leader is reaped and nobody is left in its group
/// (or the group survived `MAX_KILLS` SIGKILLs and is given up on).
fn stop_done(p: &Proc, group_alive: bool) -> (State, Vec<Action>) {
    let State::Stopping {
        leader: Some(exit),
        kills,
        ..
    } = p.state
    else {
        return (p.state.clone(), Vec::new());
    };
    if group_alive && kills < MAX_KILLS {
        return (p.state.clone(), Vec::new());
    }
    let mut actions = Vec::new();
    if kills >= MAX_KILLS {
        actions.push(Action::Note(format!(
            "{}: process group {} survived SIGKILL; giving up on it",
            p.name, p.pgid
        )));
    }
    if kills > 0 {
        actions.push(Action::StopReason {
            proc: p.id,
            reason: Reason::KilledAfterTimeout,
            replace: true,
        });
    }
    actions.push(Action::Stopped { proc: p.id, exit });
    (State::Exited { exit }, actions)
}

/// The grace period ran out: SIGKILL the group, and again every `KILL_RECHECK`
/// until it is gone. A timer of an earlier stop finds nothing to do.
fn escalate(p: &Proc, generation: u64, group_alive: bool, now: Instant) -> (State, Vec<Action>) {
    let State::Stopping {
        pid,
        since,
        leader,
        generation: current,
        kills,
    } = p.state
    else {
        return (p.state.clone(), Vec::new());
    };
    if current != generation {
        return (p.state.clone(), Vec::new());
    }
    let kills = kills + 1;
    let mut actions = Vec::new();
    // Once the leader is reaped, make sure the group number is still ours.
    if leader.is_none() || group_alive {
        actions.push(Action::KillGroup {
            pgid: p.pgid,
            signal: libc::SIGKILL,
        });
    }
    if kills == 1 {
        actions.push(Action::Note(format!(
            "{} did not stop in time; sent SIGKILL to process group {}",
            p.name, p.pgid
        )));
    }
    actions.push(Action::Arm {
        at: now + KILL_RECHECK,
        timer: Timer::Escalate {
            proc: p.id,
            generation,
        },
    });
    actions.push(Action::CheckStop { proc: p.id });
    let state = State::Stopping {
        pid,
        since,
        leader,
        generation,
        kills,
    };
    (state, actions)
}

/// The restart policy decided: wait out the delay in `Backoff`, give up as
/// `Failed`, or stay `Exited`.
fn supervised(p: &Proc, event: Event) -> (State, Vec<Action>) {
    let Event::Supervised {
        exit,
        decision,
        base_delay,
        generation,
        shutting_down,
        now,
    } = event
    else {
        return (p.state.clone(), Vec::new());
    };
    let name = &p.name;
    match decision {
        _ if shutting_down => (p.state.clone(), vec![Action::SaveState]),
        Decision::Stay => (p.state.clone(), vec![Action::SaveState]),
        Decision::Restart { delay, attempt } => {
            // `backoff` when exponential backoff stretched the delay.
            let kind = if base_delay.is_some_and(|base| delay > base) {
                "backoff"
            } else {
                "restarting"
            };
            let actions = vec![
                Action::Arm {
                    at: now + delay,
                    timer: Timer::Restart {
                        proc: p.id,
                        generation,
                    },
                },
                Action::Note(format!(
                    "{name} died ({}); restart {attempt} in {}",
                    exit.describe(),
                    crate::timefmt::seconds(delay)
                )),
                emit(
                    p,
                    Change::new(kind)
                        .exit(exit.code(), exit.signal_name())
                        .delay_ms(delay.as_millis() as u64)
                        .detail(format!("restart {attempt}")),
                ),
                Action::SaveState,
            ];
            let state = State::Backoff {
                exit,
                until: now + delay,
                generation,
            };
            (state, actions)
        }
        Decision::GiveUp { max } => {
            let reason = format!("max restarts ({max}) exhausted");
            let note = format!("[agent-procs] Max restarts ({max}) exhausted");
            let actions = vec![
                Action::Note(format!("{name}: {note}")),
                Action::Annotate { proc: p.id, note },
                emit(
                    p,
                    Change::new("failed")
                        .exit(exit.code(), exit.signal_name())
                        .detail(reason.clone()),
                ),
                Action::SaveState,
            ];
            (State::Failed { reason }, actions)
        }
    }
}

/// A watched file changed: restart the process (reviving it if it had failed),
/// unless it was stopped by hand.
fn watch_changed(p: &Proc, group_alive: bool, shutting_down: bool) -> Vec<Action> {
    if shutting_down || p.sup.disabled {
        return Vec::new();
    }
    let mut actions = vec![
        Action::ResetRestarts { proc: p.id },
        emit(p, Change::new("watch_triggered")),
        emit(
            p,
            Change::new("restarting").delay_ms(0).detail("file changed"),
        ),
    ];
    match p.state {
        State::Running { .. } => {
            actions.push(Action::StopReason {
                proc: p.id,
                reason: Reason::Watch,
                replace: true,
            });
            actions.push(Action::StopThenRestart {
                proc: p.id,
                note: WATCH_NOTE,
            });
        }
        State::Stopping { .. } => {} // already on its way down
        State::Exited { .. } | State::Backoff { .. } | State::Failed { .. } => {
            actions.extend(kill_leftovers(p, group_alive));
            actions.push(Action::Restart {
                proc: p.id,
                note: WATCH_NOTE.to_string(),
                counted: false,
            });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::procs::ProcId;
    use crate::daemon::spec::Spec;
    use crate::daemon::supervise::{Mode, Policy};

    const ID: u32 = 7;
    const PID: u32 = 4242;

    fn proc(state: State) -> Proc {
        let spec = Spec {
            restart: Some(Policy {
                mode: Mode::Always,
                max: Some(3),
                delay: Duration::from_millis(500),
                exponential: false,
            }),
            ..Spec::for_test("server")
        };
        let mut p = Proc::new(ProcId(ID), "web".into(), spec);
        p.state = state;
        p.pid = PID;
        p.pgid = PID as i32;
        p
    }

    fn now() -> Instant {
        // One instant for the whole table, so armed deadlines compare equal.
        thread_local!(static NOW: Instant = Instant::now());
        NOW.with(|n| *n)
    }

    fn running() -> State {
        State::Running {
            pid: PID,
            since: now(),
        }
    }

    fn stopping(leader: Option<Exit>, generation: u64, kills: u32) -> State {
        State::Stopping {
            pid: PID,
            since: now(),
            leader,
            generation,
            kills,
        }
    }

    fn exited(code: i32) -> State {
        State::Exited {
            exit: Exit::Code(code),
        }
    }

    fn backoff(generation: u64) -> State {
        State::Backoff {
            exit: Exit::Code(1),
            until: now() + Duration::from_millis(500),
            generation,
        }
    }

    fn failed() -> State {
        State::Failed {
            reason: "max restarts (3) exhausted".into(),
        }
    }

    fn stop_req(timeout_ms: u64, group_alive: bool) -> Event {
        Event::StopRequested {
            timeout: Duration::from_millis(timeout_ms),
            generation: 9,
            group_alive,
            now: now(),
        }
    }

    fn kill(signal: i32) -> Action {
        Action::KillGroup {
            pgid: PID as i32,
            signal,
        }
    }

    fn escalate_at(ms: u64, generation: u64) -> Action {
        Action::Arm {
            at: now() + Duration::from_millis(ms),
            timer: Timer::Escalate {
                proc: ProcId(ID),
                generation,
            },
        }
    }

    fn emit(change: Change) -> Action {
        Action::Emit {
            proc: ProcId(ID),
            change,
        }
    }

    fn stop_reason(reason: Reason, replace: bool) -> Action {
        Action::StopReason {
            proc: ProcId(ID),
            reason,
            replace,
        }
    }

    fn stop_actions(signal: i32, name: &str, timeout_ms: u64) -> Vec<Action> {
        vec![
            stop_reason(Reason::Stopped, false),
            kill(signal),
            Action::Note(format!("stopping web: sent {name} to process group {PID}")),
            emit(Change::new("stopping").pid(PID).detail(name)),
            escalate_at(timeout_ms, 9),
        ]
    }

    fn supervised(decision: Decision, shutting_down: bool) -> Event {
        Event::Supervised {
            exit: Exit::Code(1),
            decision,
            base_delay: Some(Duration::from_millis(500)),
            generation: 3,
            shutting_down,
            now: now(),
        }
    }

    /// One row: a process in `from` takes `event`; it must land in `to` with
    /// exactly `actions`, in order.
    fn check(rows: Vec<(&str, State, Event, State, Vec<Action>)>) {
        for (what, from, event, to, actions) in rows {
            let (state, got) = on(&proc(from), event);
            assert_eq!(state, to, "{what}: state");
            assert_eq!(
                format!("{got:?}"),
                format!("{actions:?}"),
                "{what}: actions"
            );
        }
    }

    #[test]
    fn start_and_spawn_failure() {
        let later = now() + Duration::from_secs(1);
        check(vec![
            (
                "a first start",
                failed(),
                Event::Started { pid: 9, now: later },
                State::Running {
                    pid: 9,
                    since: later,
                },
                vec![],
            ),
            (
                "a restart after backoff",
                backoff(1),
                Event::Started { pid: 9, now: later },
                State::Running {
                    pid: 9,
                    since: later,
                },
                vec![],
            ),
            (
                "a command that cannot start",
                exited(1),
                Event::SpawnFailed {
                    reason: "no such dir".into(),
                },
                State::Failed {
                    reason: "no such dir".into(),
                },
                vec![
                    Action::Note("web: no such dir".into()),
                    emit(Change::new("failed").detail("no such dir")),
                ],
            ),
        ]);
    }

    #[test]
    fn stop_requests() {
        let reap = Exit::Code(0);
        check(vec![
            (
                "running: the stop signal, then SIGKILL at the deadline",
                running(),
                stop_req(2000, true),
                stopping(None, 9, 0),
                stop_actions(libc::SIGTERM, "SIGTERM", 2000),
            ),
            (
                "a zero grace period is SIGKILL at once",
                running(),
                stop_req(0, true),
                stopping(None, 9, 0),
                stop_actions(libc::SIGKILL, "SIGKILL", 0),
            ),
            (
                "already stopping: only a new deadline for the same stop",
                stopping(None, 4, 0),
                stop_req(100, true),
                stopping(None, 4, 0),
                vec![escalate_at(100, 4)],
            ),
            (
                "exited leader with a live group: the group is stopped",
                exited(0),
                stop_req(2000, true),
                State::Stopping {
                    pid: PID,
                    since: now(),
                    leader: Some(reap),
                    generation: 9,
                    kills: 0,
                },
                stop_actions(libc::SIGTERM, "SIGTERM", 2000),
            ),
            (
                "exited and gone: nothing to stop",
                exited(0),
                stop_req(2000, false),
                exited(0),
                vec![],
            ),
            (
                "failed: nothing to stop",
                failed(),
                stop_req(2000, false),
                failed(),
                vec![],
            ),
        ]);
    }

    #[test]
    fn stops_during_backoff() {
        check(vec![
            (
                "stop during backoff cancels the restart",
                backoff(1),
                stop_req(2000, false),
                exited(1),
                vec![
                    Action::SaveState,
                    emit(Change::new("stopped").detail("restart cancelled")),
                ],
            ),
            (
                "stop during backoff ends what the dead leader left",
                backoff(1),
                stop_req(2000, true),
                exited(1),
                vec![
                    kill(libc::SIGKILL),
                    Action::SaveState,
                    emit(Change::new("stopped").detail("restart cancelled")),
                ],
            ),
            (
                "stop-all calls off a backoff quietly",
                backoff(1),
                Event::RestartCancelled,
                exited(1),
                vec![Action::SaveState],
            ),
            (
                "stop-all leaves a running one to the stop",
                running(),
                Event::RestartCancelled,
                running(),
                vec![],
            ),
        ]);
    }

    #[test]
    fn exits_and_stop_completion() {
        let code = |c| Exit::Code(c);
        check(vec![
            (
                "a crash: exited, reported",
                running(),
                Event::LeaderExited { exit: code(3) },
                exited(3),
                vec![Action::Died {
                    proc: ProcId(ID),
                    exit: code(3),
                }],
            ),
            (
                "exit during stop: the group is checked next",
                stopping(None, 9, 0),
                Event::LeaderExited { exit: code(0) },
                stopping(Some(code(0)), 9, 0),
                vec![Action::CheckStop { proc: ProcId(ID) }],
            ),
            (
                "leader gone, group still there: keep stopping",
                stopping(Some(code(0)), 9, 0),
                Event::GroupChecked { group_alive: true },
                stopping(Some(code(0)), 9, 0),
                vec![],
            ),
            (
                "leader alive: not done whatever the group",
                stopping(None, 9, 0),
                Event::GroupChecked { group_alive: false },
                stopping(None, 9, 0),
                vec![],
            ),
            (
                "leader and group gone: stopped",
                stopping(Some(code(0)), 9, 0),
                Event::GroupChecked { group_alive: false },
                exited(0),
                vec![Action::Stopped {
                    proc: ProcId(ID),
                    exit: code(0),
                }],
            ),
            (
                "gone after SIGKILL: killed after timeout",
                stopping(Some(Exit::Signal(9)), 9, 1),
                Event::GroupChecked { group_alive: false },
                State::Exited {
                    exit: Exit::Signal(9),
                },
                vec![
                    stop_reason(Reason::KilledAfterTimeout, true),
                    Action::Stopped {
                        proc: ProcId(ID),
                        exit: Exit::Signal(9),
                    },
                ],
            ),
            (
                "a group that survives five SIGKILLs is given up on",
                stopping(Some(code(0)), 9, MAX_KILLS),
                Event::GroupChecked { group_alive: true },
                exited(0),
                vec![
                    Action::Note(format!(
                        "web: process group {PID} survived SIGKILL; giving up on it"
                    )),
                    stop_reason(Reason::KilledAfterTimeout, true),
                    Action::Stopped {
                        proc: ProcId(ID),
                        exit: code(0),
                    },
                ],
            ),
        ]);
    }

    #[test]
    fn sigkill_escalation() {
        let recheck = |generation| Action::Arm {
            at: now() + KILL_RECHECK,
            timer: Timer::Escalate {
                proc: ProcId(ID),
                generation,
            },
        };
        let timed_out = |generation, group_alive| Event::StopTimedOut {
            generation,
            group_alive,
            now: now(),
        };
        let first_note = Action::Note(format!(
            "web did not stop in time; sent SIGKILL to process group {PID}"
        ));
        check(vec![
            (
                "the grace period is over: SIGKILL, noted once",
                stopping(None, 9, 0),
                timed_out(9, true),
                stopping(None, 9, 1),
                vec![
                    kill(libc::SIGKILL),
                    first_note,
                    recheck(9),
                    Action::CheckStop { proc: ProcId(ID) },
                ],
            ),
            (
                "a recheck sends SIGKILL again, quietly",
                stopping(None, 9, 1),
                timed_out(9, true),
                stopping(None, 9, 2),
                vec![
                    kill(libc::SIGKILL),
                    recheck(9),
                    Action::CheckStop { proc: ProcId(ID) },
                ],
            ),
            (
                "leader reaped and group gone: no signal to a reused number",
                stopping(Some(Exit::Code(0)), 9, 1),
                timed_out(9, false),
                stopping(Some(Exit::Code(0)), 9, 2),
                vec![recheck(9), Action::CheckStop { proc: ProcId(ID) }],
            ),
            (
                "a timer of an earlier stop",
                stopping(None, 9, 0),
                timed_out(8, true),
                stopping(None, 9, 0),
                vec![],
            ),
            (
                "a timer after the stop finished",
                exited(0),
                timed_out(9, true),
                exited(0),
                vec![],
            ),
        ]);
    }

    /// What a restart in `ms` does: arm the timer, note, emit `kind`, save.
    fn restart_in(ms: u64, kind: &'static str) -> Vec<Action> {
        vec![
            Action::Arm {
                at: now() + Duration::from_millis(ms),
                timer: Timer::Restart {
                    proc: ProcId(ID),
                    generation: 3,
                },
            },
            Action::Note(format!(
                "web died (exit code 1); restart 2 in {}",
                crate::timefmt::seconds(Duration::from_millis(ms))
            )),
            emit(
                Change::new(kind)
                    .exit(Some(1), None)
                    .delay_ms(ms)
                    .detail("restart 2"),
            ),
            Action::SaveState,
        ]
    }

    #[test]
    fn restart_policy_outcomes() {
        let restart = |ms| Decision::Restart {
            delay: Duration::from_millis(ms),
            attempt: 2,
        };
        check(vec![
            (
                "never, on-failure after exit 0, or stopped by us",
                exited(1),
                supervised(Decision::Stay, false),
                exited(1),
                vec![Action::SaveState],
            ),
            (
                "always / on-failure: backoff, then restart",
                exited(1),
                supervised(restart(500), false),
                State::Backoff {
                    exit: Exit::Code(1),
                    until: now() + Duration::from_millis(500),
                    generation: 3,
                },
                restart_in(500, "restarting"),
            ),
            (
                "a delay stretched by exponential backoff is a backoff event",
                exited(1),
                supervised(restart(2000), false),
                State::Backoff {
                    exit: Exit::Code(1),
                    until: now() + Duration::from_millis(2000),
                    generation: 3,
                },
                restart_in(2000, "backoff"),
            ),
            (
                "max restarts reached: failed, with a note in the log",
                exited(1),
                supervised(Decision::GiveUp { max: 3 }, false),
                failed(),
                vec![
                    Action::Note("web: [agent-procs] Max restarts (3) exhausted".into()),
                    Action::Annotate {
                        proc: ProcId(ID),
                        note: "[agent-procs] Max restarts (3) exhausted".into(),
                    },
                    emit(
                        Change::new("failed")
                            .exit(Some(1), None)
                            .detail("max restarts (3) exhausted"),
                    ),
                    Action::SaveState,
                ],
            ),
            (
                "nothing restarts while shutting down",
                exited(1),
                supervised(restart(500), true),
                exited(1),
                vec![Action::SaveState],
            ),
        ]);
    }

    #[test]
    fn the_end_of_a_backoff() {
        let over = |generation, group_alive, shutting_down| Event::BackoffOver {
            generation,
            group_alive,
            shutting_down,
        };
        let restart = || Action::Restart {
            proc: ProcId(ID),
            note: "[agent-procs] Restarted (exit 1, attempt 1/3)".into(),
            counted: true,
        };
        check(vec![
            (
                "restart with the note",
                backoff(1),
                over(1, false, false),
                backoff(1),
                vec![restart()],
            ),
            (
                "the dead leader's leftovers go first",
                backoff(1),
                over(1, true, false),
                backoff(1),
                vec![kill(libc::SIGKILL), restart()],
            ),
            (
                "an older backoff's timer",
                backoff(2),
                over(1, true, false),
                backoff(2),
                vec![],
            ),
            (
                "stopped meanwhile",
                exited(1),
                over(1, true, false),
                exited(1),
                vec![],
            ),
            (
                "shutting down",
                backoff(1),
                over(1, true, true),
                backoff(1),
                vec![],
            ),
        ]);
    }

    /// Each restart policy, from the exit through `supervise` to the state the
    /// table lands in: (mode, exit code, restarts so far, stopped by us, state).
    #[test]
    fn every_policy_path_lands_in_its_state() {
        let rows = [
            (Mode::Never, 1, 0, None, "exited"),
            (Mode::OnFailure, 0, 0, None, "exited"),
            (Mode::OnFailure, 1, 0, None, "backoff"),
            (Mode::OnFailure, 1, 3, None, "failed"),
            (Mode::Always, 0, 0, None, "backoff"),
            (Mode::Always, 1, 2, None, "backoff"),
            (Mode::Always, 1, 3, None, "failed"),
            (Mode::Always, 1, 0, Some(Reason::Stopped), "exited"),
            (
                Mode::Always,
                1,
                0,
                Some(Reason::KilledAfterTimeout),
                "exited",
            ),
            (Mode::Always, 1, 0, Some(Reason::Watch), "exited"),
        ];
        for (mode, code, restarts, stop_reason, expected) in rows {
            let mut p = proc(exited(code));
            if let Some(policy) = p.spec.restart.as_mut() {
                policy.mode = mode;
            }
            p.sup.restarts = restarts;
            p.sup.stop_reason = stop_reason;
            let exit = Exit::Code(code);
            let decision = p
                .sup
                .record(exit, Duration::ZERO, p.spec.restart.as_ref(), now());
            let event = Event::Supervised {
                exit,
                decision,
                base_delay: Some(Duration::from_millis(500)),
                generation: 1,
                shutting_down: false,
                now: now(),
            };
            let (state, _) = on(&p, event);
            let row = (mode, code, restarts, stop_reason);
            assert_eq!(state.name(), expected, "{row:?}");
        }
        // A manual stop turns restarts off until the next start by hand.
        let mut p = proc(exited(1));
        p.sup.disabled = true;
        let decision = p.sup.record(
            Exit::Code(1),
            Duration::ZERO,
            p.spec.restart.as_ref(),
            now(),
        );
        assert_eq!(decision, Decision::Stay);
    }

    #[test]
    fn watch_restarts() {
        let changed = |group_alive, shutting_down| Event::WatchChanged {
            group_alive,
            shutting_down,
        };
        let head = || {
            vec![
                Action::ResetRestarts { proc: ProcId(ID) },
                emit(Change::new("watch_triggered")),
                emit(Change::new("restarting").delay_ms(0).detail("file changed")),
            ]
        };
        let restart = || Action::Restart {
            proc: ProcId(ID),
            note: WATCH_NOTE.into(),
            counted: false,
        };
        let mut running_then = head();
        running_then.push(stop_reason(Reason::Watch, true));
        running_then.push(Action::StopThenRestart {
            proc: ProcId(ID),
            note: WATCH_NOTE,
        });
        let mut revived = head();
        revived.push(restart());
        let mut revived_killing = head();
        revived_killing.extend([kill(libc::SIGKILL), restart()]);
        check(vec![
            (
                "running: stopped, then started with the note",
                running(),
                changed(true, false),
                running(),
                running_then,
            ),
            (
                "stopping: already on its way down",
                stopping(None, 9, 0),
                changed(true, false),
                stopping(None, 9, 0),
                head(),
            ),
            (
                "failed: revived",
                failed(),
                changed(false, false),
                failed(),
                revived,
            ),
            (
                "exited with leftovers: they go first",
                exited(0),
                changed(true, false),
                exited(0),
                revived_killing,
            ),
            (
                "shutting down: nothing",
                running(),
                changed(true, true),
                running(),
                vec![],
            ),
        ]);
        let mut p = proc(running());
        p.sup.disabled = true;
        let (state, actions) = on(&p, changed(true, false));
        assert_eq!(
            state,
            running(),
            "stopped by hand: not restarted by changes"
        );
        assert!(actions.is_empty());
    }
}
