//! The waits component: pending `wait` requests, what each waits for, and
//! whether a line, an exit, the end of output or its deadline settles it. It
//! owns the table; the loop feeds lines and exits in and carries out the
//! replies and timers it returns. It reads a process only through `Subject`.

use super::action::{Action, OutputAction};
use super::ids::{ClientId, ProbeOwner, WaitId};
use super::procs::{Proc, ProcId, State};
use super::signals::Exit;
use super::timers::Timer;
use crate::logs;
pub use crate::logs::pattern::Pattern;
use crate::protocol::Response;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What a wait needs to know of its process, read from the table by the loop.
pub struct Subject<'a> {
    pub id: ProcId,
    pub name: &'a str,
    pub state: &'a State,
    pub pipes_closed: bool,
    /// How its last run ended, for messages (exited, backed off or failed).
    pub outcome: Option<String>,
    /// The log segments of its current run and how far each is complete.
    pub segments: Vec<(PathBuf, u64)>,
}

impl Subject<'_> {
    pub fn of(p: &Proc) -> Subject<'_> {
        let outcome = match &p.state {
            State::Exited { exit } | State::Backoff { exit, .. } => Some(p.outcome(*exit)),
            State::Failed { reason } => Some(reason.clone()),
            _ => None,
        };
        Subject {
            id: p.id,
            name: &p.name,
            state: &p.state,
            pipes_closed: p.pipes_closed(),
            outcome,
            segments: p
                .outputs
                .iter()
                .flatten()
                .flat_map(|o| o.sink.run_segments())
                .collect(),
        }
    }
}

/// What a `wait` asks for.
#[derive(Debug)]
pub struct Ask {
    pub until: Option<String>,
    pub regex: bool,
    pub exit: bool,
    pub timeout: Duration,
}

/// A `wait`, routed: for a line or an exit, or for a port or URL to answer.
#[derive(Debug)]
pub enum WaitFor {
    Output(Ask),
    Probe {
        target: crate::probe::Target,
        timeout: Duration,
    },
}

/// The pending waits, and what settles them.
#[derive(Default)]
pub struct Waits {
    table: WaitTable,
}

impl Waits {
    /// A routed `wait` for process `id` (`request` or `probe`).
    pub fn on_request(
        &mut self,
        client: ClientId,
        procs: &super::procs::ProcTable,
        id: ProcId,
        wait: WaitFor,
        now: Instant,
    ) -> Vec<Action> {
        let Some(p) = procs.get(id) else {
            return Vec::new();
        };
        let p = &Subject::of(p);
        match wait {
            WaitFor::Output(ask) => self.request(client, p, ask, now),
            WaitFor::Probe { target, timeout } => self.probe(client, p, target, timeout, now),
        }
    }

    /// `wait --until/--exit`: answered now from the history or the state, or
    /// kept until a line, the exit, the end of output or the deadline.
    pub fn request(
        &mut self,
        client: ClientId,
        p: &Subject,
        ask: Ask,
        now: Instant,
    ) -> Vec<Action> {
        let reply = |response| vec![Action::Reply { client, response }];
        let pattern = match ask
            .until
            .as_deref()
            .map(|u| Pattern::new(u, ask.regex, false))
            .transpose()
        {
            Ok(pattern) => pattern,
            Err(msg) => return reply(Response::error(msg)),
        };
        if pattern.is_none() && !ask.exit {
            return reply(Response::error(
                "wait needs a pattern (until) or exit: true",
            ));
        }
        // History first: the output of the current run, up to its last complete line.
        if let Some(pattern) = &pattern
            && let Some(line) = search_history(&p.segments, pattern)
        {
            let line = String::from_utf8_lossy(&line).into_owned();
            return reply(Response::WaitMatch { line });
        }
        if let Some(response) = settled(p, &ask) {
            return reply(response);
        }
        let mut actions = vec![Action::Busy { client }];
        if pattern.is_some() {
            actions.push(Action::PrepareIndexes { proc: p.id });
        }
        let wait = self.table.add(Wait {
            client,
            proc: p.id,
            pattern,
            pattern_text: ask.until.unwrap_or_default(),
            exit: ask.exit,
            probe: false,
        });
        let at = now + ask.timeout;
        actions.push(Action::Arm {
            at,
            timer: Timer::WaitDeadline { wait },
        });
        actions
    }

    /// `wait --port/--http`: kept until the probe (which the loop starts on
    /// `Probe`) succeeds, the process exits, or the deadline; answered at
    /// once when the process is not running.
    pub fn probe(
        &mut self,
        client: ClientId,
        p: &Subject,
        target: crate::probe::Target,
        timeout: Duration,
        now: Instant,
    ) -> Vec<Action> {
        if !matches!(p.state, State::Running { .. }) {
            let why = match (p.state, &p.outcome) {
                (State::Exited { .. }, Some(outcome)) => format!("it exited ({outcome})"),
                (State::Failed { .. }, Some(reason)) => reason.clone(),
                (State::Backoff { .. }, _) => "it is waiting to be restarted".to_string(),
                _ => "it is stopping".to_string(),
            };
            let response = Response::error(format!("{} is not running: {why}", p.name));
            return vec![Action::Reply { client, response }];
        }
        let wait = self.table.add(Wait {
            client,
            proc: p.id,
            pattern: None,
            pattern_text: target.describe(),
            exit: false,
            probe: true,
        });
        let at = now + timeout;
        vec![
            Action::Busy { client },
            Action::Arm {
                at,
                timer: Timer::WaitDeadline { wait },
            },
            Action::Probe {
                owner: ProbeOwner::Wait(wait),
                proc: p.id,
                target,
            },
        ]
    }

    /// A line of process `id`: the waits it matches are answered with it.
    /// (Nothing is allocated unless one matches.)
    pub fn on_line(&mut self, id: ProcId, line: &[u8]) -> Vec<Action> {
        let matched = self.table.take_matching(id, line);
        if matched.is_empty() {
            return Vec::new();
        }
        let text = String::from_utf8_lossy(line).into_owned();
        matched
            .into_iter()
            .map(|w| Action::ReplyLater {
                client: w.client,
                response: Response::WaitMatch { line: text.clone() },
            })
            .collect()
    }

    /// Process `p.id`'s leader exited: probe waits fail, exit waits are answered.
    pub fn on_exit(&mut self, id: ProcId, name: &str, outcome: &str, exit: Exit) -> Vec<Action> {
        let mut actions = Vec::new();
        for wait in self.table.take_probes(id) {
            let message = format!(
                "{name} has exited ({outcome}) before {} was ready",
                wait.pattern_text
            );
            actions.push(Action::ReplyLater {
                client: wait.client,
                response: Response::error(message),
            });
        }
        for wait in self.table.take_exit(id) {
            let response = Response::WaitExited {
                exit_code: exit.code(),
                exit_signal: exit.signal_name(),
            };
            actions.push(Action::ReplyLater {
                client: wait.client,
                response,
            });
        }
        actions
    }

    /// Process `p` is gone for good and its output is drained: what still
    /// waits on it can never be met.
    pub fn on_output_finished(&mut self, p: &Subject) -> Vec<Action> {
        if !matches!(p.state, State::Exited { .. } | State::Failed { .. }) {
            return Vec::new();
        }
        let outcome = p.outcome.as_deref().unwrap_or_default();
        let name = p.name;
        self.table
            .take_all_for(p.id)
            .into_iter()
            .map(|wait| {
                let message = if wait.pattern.is_some() {
                    format!(
                        "{name} has exited ({outcome}) and its output never matched '{}'",
                        wait.pattern_text
                    )
                } else {
                    format!("{name} has exited ({outcome})")
                };
                Action::ReplyLater {
                    client: wait.client,
                    response: Response::error(message),
                }
            })
            .collect()
    }

    /// A probe of wait `wait` succeeded.
    pub fn on_ready(&mut self, wait: WaitId, line: String) -> Vec<Action> {
        match self.table.remove(wait) {
            Some(w) => vec![Action::ReplyLater {
                client: w.client,
                response: Response::WaitMatch { line },
            }],
            None => Vec::new(),
        }
    }

    /// The deadline of `wait` passed (if it is still waiting).
    /// When it was the last wait on its process's lines, the index files
    /// held open for it close (`LetGo`).
    pub fn on_deadline(&mut self, wait: WaitId) -> Vec<Action> {
        let Some(w) = self.table.remove(wait) else {
            return Vec::new();
        };
        let mut actions = vec![Action::ReplyLater {
            client: w.client,
            response: Response::WaitTimeout,
        }];
        if w.pattern.is_some() && !self.table.any_pattern_for(w.proc) {
            let proc = w.proc;
            actions.push(Action::Output(OutputAction::LetGo { proc }));
        }
        actions
    }

    /// Whether wait `wait` is still pending (its probe is still wanted).
    pub fn contains(&self, wait: WaitId) -> bool {
        self.table.contains(wait)
    }

    /// Whether a wait on `proc` looks at its lines (not only at its exit).
    pub fn any_pattern_for(&self, proc: ProcId) -> bool {
        self.table.any_pattern_for(proc)
    }

    pub fn drop_client(&mut self, client: ClientId) {
        self.table.drop_client(client);
    }
}

/// The answer to a wait the state of its process settles already: it exited
/// (a wait for the exit), its output ended unmatched, or it failed.
fn settled(p: &Subject, ask: &Ask) -> Option<Response> {
    let outcome = p.outcome.as_deref().unwrap_or_default();
    match p.state {
        State::Exited { exit } | State::Backoff { exit, .. } if ask.exit => {
            Some(Response::WaitExited {
                exit_code: exit.code(),
                exit_signal: exit.signal_name(),
            })
        }
        State::Exited { .. } if p.pipes_closed => Some(Response::error(format!(
            "{} has exited ({outcome}) and its output never matched '{}'",
            p.name,
            ask.until.as_deref().unwrap_or_default()
        ))),
        State::Failed { .. } => Some(Response::error(format!(
            "{} is not running: {outcome}",
            p.name
        ))),
        _ => None,
    }
}

/// The first line of the current run (across rotated segments) that matches.
pub fn search_history(segments: &[(PathBuf, u64)], pattern: &Pattern) -> Option<Vec<u8>> {
    // Every segment of the current run: it may have been rotated by size.
    segments.iter().find_map(|(path, limit)| {
        let limit = *limit;
        match pattern {
            Pattern::Substring(text) => logs::read::find_substring(path, limit, text),
            Pattern::Regex(_, Some(literal)) => {
                // Only lines holding the literal can match: search for it first.
                let mut found = None;
                logs::read::for_each_match(path, 0, limit, literal, |_, line| {
                    if pattern.matches(line) {
                        found = Some(line.to_vec());
                    }
                    found.is_none()
                })
                .map(|()| found)
            }
            Pattern::Regex(_, None) => {
                logs::read::find_line(path, limit, |line| pattern.matches(line))
            }
        }
        .ok()
        .flatten()
    })
}

pub struct Wait {
    pub client: ClientId,
    pub proc: ProcId,
    pub pattern: Option<Pattern>,
    /// The pattern as the user gave it, for messages.
    pub pattern_text: String,
    pub exit: bool,
    /// A TCP or HTTP probe decides this wait (`pattern_text` describes it).
    pub probe: bool,
}

#[derive(Default)]
pub struct WaitTable {
    waits: HashMap<WaitId, Wait>,
    next: u64,
}

impl WaitTable {
    pub fn add(&mut self, wait: Wait) -> WaitId {
        self.next += 1;
        let id = WaitId(self.next);
        self.waits.insert(id, wait);
        id
    }

    pub fn remove(&mut self, id: WaitId) -> Option<Wait> {
        self.waits.remove(&id)
    }

    pub fn contains(&self, id: WaitId) -> bool {
        self.waits.contains_key(&id)
    }

    /// Probe waits on `proc` (which has exited), removed from the table.
    pub fn take_probes(&mut self, proc: ProcId) -> Vec<Wait> {
        self.take_where(|w| w.proc == proc && w.probe)
    }

    /// Whether a wait on `proc` looks at its lines (not only at its exit).
    pub fn any_pattern_for(&self, proc: ProcId) -> bool {
        self.waits
            .values()
            .any(|w| w.proc == proc && w.pattern.is_some())
    }

    /// Waits on `proc` whose pattern matches `line`, removed from the table.
    pub fn take_matching(&mut self, proc: ProcId, line: &[u8]) -> Vec<Wait> {
        self.take_where(|w| w.proc == proc && w.pattern.as_ref().is_some_and(|p| p.matches(line)))
    }

    /// Waits on `proc` for its exit, removed from the table.
    pub fn take_exit(&mut self, proc: ProcId) -> Vec<Wait> {
        self.take_where(|w| w.proc == proc && w.exit)
    }

    /// Every wait on `proc` (its output has ended for good), removed from the table.
    pub fn take_all_for(&mut self, proc: ProcId) -> Vec<Wait> {
        self.take_where(|w| w.proc == proc)
    }

    pub fn drop_client(&mut self, client: ClientId) {
        self.waits.retain(|_, w| w.client != client);
    }

    fn take_where(&mut self, pred: impl Fn(&Wait) -> bool) -> Vec<Wait> {
        let ids: Vec<WaitId> = self
            .waits
            .iter()
            .filter(|(_, w)| pred(w))
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.waits.remove(&id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(state: &State, outcome: Option<&str>) -> Subject<'static> {
        // Leaked so tests can hold the view as long as they like.
        let state: &'static State = Box::leak(Box::new(state.clone()));
        Subject {
            id: ProcId(7),
            name: "api",
            state,
            pipes_closed: false,
            outcome: outcome.map(str::to_string),
            segments: Vec::new(),
        }
    }

    fn running() -> State {
        State::Running {
            pid: 42,
            since: Instant::now(),
        }
    }

    fn ask(until: Option<&str>, exit: bool) -> Ask {
        Ask {
            until: until.map(str::to_string),
            regex: false,
            exit,
            timeout: Duration::from_secs(5),
        }
    }

    fn error_text(action: &Action) -> String {
        match action {
            Action::Reply {
                response: Response::Error { message, .. },
                ..
            }
            | Action::ReplyLater {
                response: Response::Error { message, .. },
                ..
            } => message.clone(),
            other => panic!("not an error reply: {other:?}"),
        }
    }

    #[test]
    fn a_wait_on_a_running_process_is_kept_and_answered_by_the_first_matching_line() {
        let mut waits = Waits::default();
        let now = Instant::now();
        let actions = waits.request(
            ClientId(3),
            &subject(&running(), None),
            ask(Some("ready"), false),
            now,
        );
        let wait = match &actions[..] {
            [
                Action::Busy {
                    client: ClientId(3),
                },
                Action::PrepareIndexes { proc: ProcId(7) },
                Action::Arm {
                    at,
                    timer: Timer::WaitDeadline { wait },
                },
            ] => {
                assert_eq!(*at, now + Duration::from_secs(5));
                *wait
            }
            other => panic!("{other:?}"),
        };
        assert!(waits.any_pattern_for(ProcId(7)));
        assert!(waits.on_line(ProcId(7), b"starting").is_empty());
        assert!(
            waits.on_line(ProcId(8), b"ready").is_empty(),
            "another process's line"
        );
        match &waits.on_line(ProcId(7), b"now ready")[..] {
            [
                Action::ReplyLater {
                    client: ClientId(3),
                    response: Response::WaitMatch { line },
                },
            ] => {
                assert_eq!(line, "now ready");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            waits.on_line(ProcId(7), b"ready again").is_empty(),
            "answered once"
        );
        assert!(
            waits.on_deadline(wait).is_empty(),
            "a stale deadline does nothing"
        );
    }

    #[test]
    fn a_wait_that_runs_out_of_time_gets_a_timeout_and_a_gone_client_gets_nothing() {
        let mut waits = Waits::default();
        let now = Instant::now();
        let first = waits.request(
            ClientId(1),
            &subject(&running(), None),
            ask(None, true),
            now,
        );
        assert!(
            !waits.any_pattern_for(ProcId(7)),
            "an exit wait reads no lines"
        );
        let Some(Action::Arm {
            timer: Timer::WaitDeadline { wait },
            ..
        }) = first.last()
        else {
            panic!("{first:?}");
        };
        assert!(matches!(
            &waits.on_deadline(*wait)[..],
            [Action::ReplyLater {
                client: ClientId(1),
                response: Response::WaitTimeout
            }]
        ));
        waits.request(
            ClientId(2),
            &subject(&running(), None),
            ask(None, true),
            now,
        );
        waits.drop_client(ClientId(2));
        assert!(
            waits
                .on_exit(ProcId(7), "api", "exit code 0", Exit::Code(0))
                .is_empty()
        );
    }

    fn deadline_of(actions: &[Action]) -> WaitId {
        match actions.last() {
            Some(Action::Arm {
                timer: Timer::WaitDeadline { wait },
                ..
            }) => *wait,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_last_pattern_wait_to_time_out_lets_its_indexes_go() {
        let mut waits = Waits::default();
        let now = Instant::now();
        let p = subject(&running(), None);
        let first = deadline_of(&waits.request(ClientId(1), &p, ask(Some("a"), false), now));
        let second = deadline_of(&waits.request(ClientId(2), &p, ask(Some("b"), false), now));
        let exit = deadline_of(&waits.request(ClientId(3), &p, ask(None, true), now));
        assert!(
            matches!(&waits.on_deadline(first)[..], [Action::ReplyLater { .. }]),
            "another wait still reads the lines"
        );
        assert!(matches!(
            &waits.on_deadline(second)[..],
            [
                Action::ReplyLater { .. },
                Action::Output(OutputAction::LetGo { proc: ProcId(7) })
            ]
        ));
        assert!(
            matches!(&waits.on_deadline(exit)[..], [Action::ReplyLater { .. }]),
            "an exit wait held no index"
        );
    }

    #[test]
    fn what_is_already_settled_is_answered_at_once() {
        let mut waits = Waits::default();
        let now = Instant::now();
        let exited = State::Exited {
            exit: Exit::Code(3),
        };
        let actions = waits.request(
            ClientId(1),
            &subject(&exited, Some("exit code 3")),
            ask(None, true),
            now,
        );
        assert!(matches!(
            &actions[..],
            [Action::Reply {
                client: ClientId(1),
                response: Response::WaitExited {
                    exit_code: Some(3),
                    exit_signal: None
                }
            }]
        ));
        let mut gone = subject(&exited, Some("exit code 3"));
        gone.pipes_closed = true;
        let actions = waits.request(ClientId(1), &gone, ask(Some("ready"), false), now);
        assert_eq!(
            error_text(&actions[0]),
            "api has exited (exit code 3) and its output never matched 'ready'"
        );
        let failed = State::Failed {
            reason: "no such file".into(),
        };
        let actions = waits.request(
            ClientId(1),
            &subject(&failed, Some("no such file")),
            ask(Some("x"), false),
            now,
        );
        assert_eq!(error_text(&actions[0]), "api is not running: no such file");
        let actions = waits.request(
            ClientId(1),
            &subject(&running(), None),
            ask(None, false),
            now,
        );
        assert_eq!(
            error_text(&actions[0]),
            "wait needs a pattern (until) or exit: true"
        );
        let bad = Ask {
            regex: true,
            ..ask(Some("("), false)
        };
        let actions = waits.request(ClientId(1), &subject(&running(), None), bad, now);
        assert_eq!(actions.len(), 1);
        assert!(!waits.any_pattern_for(ProcId(7)), "nothing was kept");
    }

    #[test]
    fn an_exit_answers_exit_waits_fails_probe_waits_and_the_end_of_output_fails_the_rest() {
        let mut waits = Waits::default();
        let now = Instant::now();
        let run = running();
        let actions = waits.probe(
            ClientId(1),
            &subject(&run, None),
            port(8080),
            Duration::from_secs(5),
            now,
        );
        let probe = probe_of(&actions);
        assert!(waits.contains(probe));
        waits.request(ClientId(2), &subject(&run, None), ask(None, true), now);
        waits.request(
            ClientId(3),
            &subject(&run, None),
            ask(Some("ready"), false),
            now,
        );
        let actions = waits.on_exit(ProcId(7), "api", "killed by SIGKILL", Exit::Signal(9));
        assert_eq!(actions.len(), 2);
        assert_eq!(
            error_text(&actions[0]),
            "api has exited (killed by SIGKILL) before port 8080 was ready"
        );
        assert!(matches!(
            &actions[1],
            Action::ReplyLater {
                client: ClientId(2),
                response: Response::WaitExited {
                    exit_code: None,
                    ..
                }
            }
        ));
        assert!(!waits.contains(probe));
        // Still running as far as the table says: output not finished yet.
        assert!(waits.on_output_finished(&subject(&run, None)).is_empty());
        let exited = State::Exited {
            exit: Exit::Signal(9),
        };
        let actions = waits.on_output_finished(&subject(&exited, Some("killed by SIGKILL")));
        assert_eq!(
            error_text(&actions[0]),
            "api has exited (killed by SIGKILL) and its output never matched 'ready'"
        );
        // A probe wait on a process that is not running is refused at once.
        let actions = waits.probe(
            ClientId(4),
            &subject(&exited, Some("killed by SIGKILL")),
            port(1),
            Duration::ZERO,
            now,
        );
        assert_eq!(actions.len(), 1, "refused at once, nothing probed");
        assert_eq!(
            error_text(&actions[0]),
            "api is not running: it exited (killed by SIGKILL)"
        );
    }

    fn port(n: u16) -> crate::probe::Target {
        crate::probe::Target::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], n)))
    }

    /// The wait a `Probe` asks the loop to probe for (last, after Busy and Arm).
    fn probe_of(actions: &[Action]) -> WaitId {
        match actions {
            [
                Action::Busy { .. },
                Action::Arm { .. },
                Action::Probe {
                    owner: ProbeOwner::Wait(wait),
                    proc: ProcId(7),
                    ..
                },
            ] => *wait,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_ready_probe_answers_its_wait_once() {
        let mut waits = Waits::default();
        let run = running();
        let actions = waits.probe(
            ClientId(1),
            &subject(&run, None),
            port(1),
            Duration::ZERO,
            Instant::now(),
        );
        let wait = probe_of(&actions);
        assert!(matches!(
            &waits.on_ready(wait, "port 1 is ready".into())[..],
            [Action::ReplyLater {
                client: ClientId(1),
                response: Response::WaitMatch { .. }
            }]
        ));
        assert!(waits.on_ready(wait, "again".into()).is_empty());
    }

    #[test]
    fn waits_are_taken_once() {
        let mut t = WaitTable::default();
        let pattern = Some(Pattern::new("ready", false, false).unwrap());
        t.add(Wait {
            client: ClientId(1),
            proc: ProcId(7),
            pattern,
            pattern_text: "ready".into(),
            exit: false,
            probe: false,
        });
        t.add(Wait {
            client: ClientId(2),
            proc: ProcId(7),
            pattern: None,
            pattern_text: String::new(),
            exit: true,
            probe: false,
        });
        assert!(t.take_matching(ProcId(7), b"not yet").is_empty());
        assert_eq!(t.take_matching(ProcId(7), b"now ready").len(), 1);
        assert!(t.take_matching(ProcId(7), b"ready again").is_empty());
        assert_eq!(t.take_exit(ProcId(7)).len(), 1);
        assert!(!t.any_pattern_for(ProcId(7)));
    }

    #[test]
    fn a_routed_wait_reads_its_process_from_the_table() {
        let mut procs = crate::daemon::procs::ProcTable::default();
        let id = procs.allocate_id();
        let spec = crate::daemon::spec::Spec::for_test("x");
        procs.insert(Proc::new(id, "api".into(), spec));
        let mut waits = Waits::default();
        let now = Instant::now();
        // Not running: a probe wait is answered at once, naming the process.
        let probe = WaitFor::Probe {
            target: port(9),
            timeout: Duration::from_secs(1),
        };
        let actions = waits.on_request(ClientId(1), &procs, id, probe, now);
        assert!(error_text(&actions[0]).starts_with("api is not running"));
        let output = WaitFor::Output(ask(None, false));
        let actions = waits.on_request(ClientId(1), &procs, id, output, now);
        assert!(error_text(&actions[0]).contains("needs a pattern"));
        // A process gone since it was routed: nothing to answer for.
        let gone = procs.allocate_id();
        let output = WaitFor::Output(ask(Some("x"), false));
        assert!(
            waits
                .on_request(ClientId(1), &procs, gone, output, now)
                .is_empty()
        );
    }
}
