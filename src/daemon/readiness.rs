//! The probes component: TCP and HTTP readiness probes on the loop (what a
//! `wait --port/--http` or an `up` entry's `ready: tcp/http` waits for; the
//! target itself is `crate::probe`). A probe is tried every `PERIOD`; each try
//! is one non-blocking connect (and, for HTTP, one request) that the loop
//! drives with readiness events and bounds with `TRY_TIMEOUT`. No threads, no
//! blocking calls. The component decides and returns actions: the loop
//! registers a try's socket (`ProbeRegister`), closes it (`ProbeClose`), arms
//! the timers, and tells the owner (`ProbeWaitReady`, `ProbeUpReady`).

use super::action::Action;
use super::ids::{ProbeId, WaitId};
use super::procs::{ProcId, ProcTable, State};
use super::timers::Timer;
use crate::probe::{self, Target};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// Pause between two tries of a probe.
pub const PERIOD: Duration = Duration::from_millis(250);
/// Longest a single try may take (a server that accepts but never answers).
pub const TRY_TIMEOUT: Duration = Duration::from_secs(2);
/// Enough for any status line.
const HEAD_CAP: usize = 4096;

/// Who learns the outcome of a probe (defined with the ids, so that actions
/// can carry it).
pub use super::ids::ProbeOwner as Owner;

pub struct Probe {
    pub owner: Owner,
    /// The process whose readiness this is; its exit ends the probe.
    pub proc: ProcId,
    pub target: Target,
    /// The try in progress and the token its socket is registered under
    /// (None until the loop has registered it).
    pub attempt: Option<(Attempt, Option<mio::Token>)>,
    /// Counts tries, so a stale try-timeout finds nothing to cancel.
    pub tries: u64,
    /// Why the last try failed, for the final message.
    pub last_error: Option<String>,
}

/// One try: a connect in progress, then (HTTP) the request out and the head in.
pub struct Attempt {
    pub stream: mio::net::TcpStream,
    connected: bool,
    written: usize,
    head: Vec<u8>,
}

/// Where a try stands after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Needs more events.
    Pending,
    /// The target is ready; the text says how (`HTTP 200`).
    Ready(String),
    /// This try failed (refused, reset, 503); the probe tries again later.
    NotYet(String),
}

/// The component: every probe in progress, by id.
#[derive(Default)]
pub struct ProbeTable {
    probes: HashMap<ProbeId, Probe>,
    next: u64,
}

impl ProbeTable {
    /// A new probe for `owner` of `proc`'s `target`; arm `ProbeTry` to start it.
    pub fn add(&mut self, owner: Owner, proc: ProcId, target: Target) -> ProbeId {
        self.next += 1;
        let id = ProbeId(self.next);
        self.probes.insert(
            id,
            Probe {
                owner,
                proc,
                target,
                attempt: None,
                tries: 0,
                last_error: None,
            },
        );
        id
    }

    /// A new probe for `owner` of `proc`'s `target`, its first try now.
    pub fn start(&mut self, owner: Owner, proc: ProcId, target: Target) -> Vec<Action> {
        let probe = self.add(owner, proc, target);
        vec![Action::Arm {
            at: Instant::now(),
            timer: Timer::ProbeTry { probe },
        }]
    }

    /// Why the last try of `id` failed, if one did.
    pub fn last_error(&self, id: ProbeId) -> Option<&str> {
        self.probes.get(&id)?.last_error.as_deref()
    }

    /// What the last try of `owner`'s probe said went wrong (its first probe's).
    pub fn last_error_of(&self, owner: Owner) -> Option<String> {
        let first = *self.owned_by(|o| o == owner).first()?;
        self.last_error(first).map(str::to_string)
    }

    /// Probes that belong to `owner`.
    pub fn owned_by(&self, pred: impl Fn(Owner) -> bool) -> Vec<ProbeId> {
        self.probes
            .iter()
            .filter(|(_, p)| pred(p.owner))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Time for the next try of `id`: start it, unless nobody waits for it any
    /// more (`owner_alive` says whether its owner does) or its process is no
    /// longer running (the exit paths tell the owner); then the probe ends.
    pub fn on_try(
        &mut self,
        id: ProbeId,
        owner_alive: impl Fn(Owner) -> bool,
        procs: &ProcTable,
    ) -> Vec<Action> {
        let Some(probe) = self.probes.get_mut(&id) else {
            return Vec::new();
        };
        let proc_alive = procs
            .get(probe.proc)
            .is_some_and(|p| matches!(p.state, State::Running { .. }));
        if !owner_alive(probe.owner) || !proc_alive {
            return self.drop_probe(id);
        }
        if probe.attempt.is_some() {
            return Vec::new();
        }
        probe.tries += 1;
        match Attempt::connect(&probe.target) {
            Ok(attempt) => {
                probe.attempt = Some((attempt, None));
                vec![Action::ProbeRegister { probe: id }]
            }
            Err(e) => {
                probe.last_error = Some(crate::error::describe_io(&e));
                vec![retry(id)]
            }
        }
    }

    /// The socket of `id`'s try in progress, for the loop to register.
    pub fn stream_mut(&mut self, id: ProbeId) -> Option<&mut mio::net::TcpStream> {
        let (attempt, _) = self.probes.get_mut(&id)?.attempt.as_mut()?;
        Some(&mut attempt.stream)
    }

    /// The loop registered `id`'s try under `token` (Ok) or could not (Err).
    pub fn on_registered(
        &mut self,
        id: ProbeId,
        registered: io::Result<mio::Token>,
    ) -> Vec<Action> {
        let Some(probe) = self.probes.get_mut(&id) else {
            return Vec::new();
        };
        match registered {
            Ok(token) => {
                if let Some((_, slot)) = probe.attempt.as_mut() {
                    *slot = Some(token);
                }
                vec![Action::Arm {
                    at: Instant::now() + TRY_TIMEOUT,
                    timer: Timer::ProbeTimeout {
                        probe: id,
                        tries: probe.tries,
                    },
                }]
            }
            Err(e) => {
                probe.attempt = None;
                probe.last_error = Some(crate::error::describe_io(&e));
                vec![retry(id)]
            }
        }
    }

    /// A readiness event on the socket of `id`'s try.
    pub fn on_event(&mut self, id: ProbeId) -> Vec<Action> {
        let Some(probe) = self.probes.get_mut(&id) else {
            return Vec::new();
        };
        let Some((attempt, _)) = probe.attempt.as_mut() else {
            return Vec::new();
        };
        match attempt.step(&probe.target) {
            Step::Pending => Vec::new(),
            Step::Ready(how) => {
                let mut actions = self.end_attempt(id);
                if let Some(probe) = self.probes.remove(&id) {
                    actions.push(succeeded(&probe, &how));
                }
                actions
            }
            Step::NotYet(why) => {
                let mut actions = self.end_attempt(id);
                probe_error(self.probes.get_mut(&id), why);
                actions.push(retry(id));
                actions
            }
        }
    }

    /// Try number `tries` of `id` ran out of time: end it and try again now.
    pub fn on_timeout(
        &mut self,
        id: ProbeId,
        tries: u64,
        owner_alive: impl Fn(Owner) -> bool,
        procs: &ProcTable,
    ) -> Vec<Action> {
        let Some(probe) = self.probes.get_mut(&id) else {
            return Vec::new();
        };
        if probe.tries != tries || probe.attempt.is_none() {
            return Vec::new();
        }
        probe.last_error = Some(format!("no answer within {} s", TRY_TIMEOUT.as_secs()));
        let mut actions = self.end_attempt(id);
        actions.extend(self.on_try(id, owner_alive, procs));
        actions
    }

    /// End probe `id` (its owner gave up), closing its try's socket.
    pub fn drop_probe(&mut self, id: ProbeId) -> Vec<Action> {
        let actions = self.end_attempt(id);
        self.probes.remove(&id);
        actions
    }

    /// End the probes of `up` run `run` (it finished or failed).
    pub fn drop_run(&mut self, run: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        for probe in self.owned_by(|o| matches!(o, Owner::Up { run: r, .. } if r == run)) {
            actions.extend(self.drop_probe(probe));
        }
        actions
    }

    /// Close the socket of the try in progress, if any.
    fn end_attempt(&mut self, id: ProbeId) -> Vec<Action> {
        let Some(probe) = self.probes.get_mut(&id) else {
            return Vec::new();
        };
        match probe.attempt.take() {
            Some((attempt, token)) => vec![Action::ProbeClose {
                stream: attempt.stream,
                token,
            }],
            None => Vec::new(),
        }
    }
}

/// Whether `owner` still waits for its probe, told by the loop's two
/// membership tests: is the wait pending, is the `up` run in progress.
pub fn owner_alive(owner: Owner, wait: impl Fn(WaitId) -> bool, up: impl Fn(u64) -> bool) -> bool {
    match owner {
        Owner::Wait(w) => wait(w),
        Owner::Up { run, .. } => up(run),
    }
}

fn probe_error(probe: Option<&mut Probe>, why: String) {
    if let Some(probe) = probe {
        probe.last_error = Some(why);
    }
}

/// The next try, after a pause.
fn retry(id: ProbeId) -> Action {
    Action::Arm {
        at: Instant::now() + PERIOD,
        timer: Timer::ProbeTry { probe: id },
    }
}

/// Tell the owner of `probe` that its target is ready (`how`).
fn succeeded(probe: &Probe, how: &str) -> Action {
    match probe.owner {
        Owner::Wait(wait) => Action::ProbeWaitReady {
            wait,
            line: format!("{} is ready ({how})", probe.target.describe()),
        },
        Owner::Up { run, entry } => Action::ProbeUpReady { run, entry },
    }
}

impl Attempt {
    pub fn connect(target: &Target) -> io::Result<Attempt> {
        Ok(Attempt {
            stream: mio::net::TcpStream::connect(target.addr())?,
            connected: false,
            written: 0,
            head: Vec::new(),
        })
    }

    /// Move the try on after a readiness event on its socket.
    pub fn step(&mut self, target: &Target) -> Step {
        if !self.connected {
            match self.stream.take_error() {
                Ok(Some(e)) | Err(e) => return Step::NotYet(refusal(&e)),
                Ok(None) => {}
            }
            match self.stream.peer_addr() {
                Ok(_) => self.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Step::Pending,
                Err(e) => return Step::NotYet(refusal(&e)),
            }
        }
        let request = match target {
            Target::Tcp(_) => return Step::Ready("accepting connections".into()),
            Target::Http { request, .. } => request,
        };
        while self.written < request.len() {
            match self.stream.write(&request[self.written..]) {
                Ok(0) => return Step::NotYet("the connection closed".into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::NotYet(refusal(&e)),
            }
        }
        let mut buf = [0u8; 1024];
        loop {
            if let Some(status) = probe::status_code(&self.head) {
                return match status {
                    Ok(code) if (200..400).contains(&code) => Step::Ready(format!("HTTP {code}")),
                    Ok(code) => Step::NotYet(format!("it answered HTTP {code}")),
                    Err(why) => Step::NotYet(why),
                };
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Step::NotYet("the connection closed before an answer".into()),
                Ok(n) => {
                    let room = HEAD_CAP.saturating_sub(self.head.len());
                    self.head.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::NotYet(refusal(&e)),
            }
        }
    }
}

fn refusal(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => crate::error::describe_io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe of a loopback listener with its first try connecting, as after
    /// `on_try` for a running process.
    fn probing(owner: Owner) -> (ProbeTable, ProbeId, std::net::TcpListener) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut table = ProbeTable::default();
        let id = table.add(owner, ProcId(1), Target::tcp(port));
        let probe = table.probes.get_mut(&id).unwrap();
        probe.tries = 1;
        probe.attempt = Some((Attempt::connect(&probe.target).unwrap(), None));
        (table, id, listener)
    }

    #[test]
    fn a_probe_whose_process_is_gone_ends_at_its_next_try() {
        let mut table = ProbeTable::default();
        let id = table.add(Owner::Wait(WaitId(3)), ProcId(9), Target::tcp(1));
        let actions = table.on_try(id, |_| true, &ProcTable::default());
        assert!(actions.is_empty());
        assert!(table.owned_by(|_| true).is_empty());
        // A try timer of a probe that ended finds nothing to do.
        assert!(table.on_try(id, |_| true, &ProcTable::default()).is_empty());
    }

    #[test]
    fn a_ready_target_answers_the_owner_and_closes_the_socket() {
        let (mut table, id, _listener) = probing(Owner::Wait(WaitId(7)));
        let actions = table.on_registered(id, Ok(mio::Token(99)));
        assert!(matches!(
            actions[..],
            [Action::Arm {
                timer: Timer::ProbeTimeout { tries: 1, .. },
                ..
            }]
        ));
        let mut actions = Vec::new();
        for _ in 0..500 {
            actions = table.on_event(id);
            if !actions.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        match &actions[..] {
            [
                Action::ProbeClose { token, .. },
                Action::ProbeWaitReady {
                    wait: WaitId(7),
                    line,
                },
            ] => {
                assert_eq!(*token, Some(mio::Token(99)));
                assert!(line.ends_with("is ready (accepting connections)"), "{line}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(table.owned_by(|_| true).is_empty());
    }

    #[test]
    fn an_up_entry_hears_of_its_ready_target() {
        let (mut table, id, _listener) = probing(Owner::Up { run: 2, entry: 5 });
        let mut actions = Vec::new();
        for _ in 0..500 {
            actions = table.on_event(id);
            if !actions.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(matches!(
            actions[..],
            [
                Action::ProbeClose { token: None, .. },
                Action::ProbeUpReady { run: 2, entry: 5 }
            ]
        ));
    }

    #[test]
    fn a_try_that_cannot_be_registered_is_retried_later_with_the_reason() {
        let (mut table, id, _listener) = probing(Owner::Wait(WaitId(1)));
        let err = io::Error::from_raw_os_error(libc::ENOMEM);
        let actions = table.on_registered(id, Err(err));
        assert!(matches!(
            actions[..],
            [Action::Arm { timer: Timer::ProbeTry { probe }, .. }] if probe == id
        ));
        assert!(table.last_error(id).is_some());
        assert!(table.stream_mut(id).is_none());
    }

    #[test]
    fn a_late_up_entry_is_told_its_probes_last_error() {
        let (mut table, id, _listener) = probing(Owner::Up { run: 1, entry: 0 });
        let owner = Owner::Up { run: 1, entry: 0 };
        assert_eq!(table.last_error_of(owner), None);
        let err = io::Error::from_raw_os_error(libc::ENOMEM);
        let _ = table.on_registered(id, Err(err));
        assert!(table.last_error_of(owner).is_some());
        assert_eq!(table.last_error_of(Owner::Up { run: 1, entry: 1 }), None);
    }

    #[test]
    fn only_the_current_try_times_out() {
        let (mut table, id, _listener) = probing(Owner::Wait(WaitId(1)));
        // A timer of an earlier try: nothing happens.
        assert!(
            table
                .on_timeout(id, 0, |_| true, &ProcTable::default())
                .is_empty()
        );
        assert!(table.stream_mut(id).is_some());
        // The current one: the socket is closed, the reason kept, and (its
        // process being gone here) the probe ends.
        let actions = table.on_timeout(id, 1, |_| true, &ProcTable::default());
        assert!(matches!(actions[..], [Action::ProbeClose { .. }]));
        assert!(table.owned_by(|_| true).is_empty());
    }

    #[test]
    fn dropping_a_probe_closes_its_try() {
        let (mut table, id, _listener) = probing(Owner::Up { run: 1, entry: 0 });
        assert_eq!(
            table.owned_by(|o| matches!(o, Owner::Up { run: 1, .. })),
            vec![id]
        );
        assert!(matches!(
            table.drop_probe(id)[..],
            [Action::ProbeClose { .. }]
        ));
        assert!(table.drop_probe(id).is_empty());
    }

    #[test]
    fn a_probe_starts_with_a_try_now_for_its_owner() {
        let mut table = ProbeTable::default();
        let owner = Owner::Up { run: 4, entry: 1 };
        let before = Instant::now();
        let actions = table.start(owner, ProcId(9), Target::tcp(1));
        let [
            Action::Arm {
                at,
                timer: Timer::ProbeTry { probe },
            },
        ] = actions[..]
        else {
            panic!("{actions:?}");
        };
        assert!(at >= before && at <= Instant::now(), "the first try is now");
        assert_eq!(table.owned_by(|o| o == owner), vec![probe]);
    }

    #[test]
    fn the_end_of_an_up_run_ends_its_probes_only() {
        let (mut table, id, _listener) = probing(Owner::Up { run: 1, entry: 0 });
        let idle = table.add(Owner::Up { run: 1, entry: 2 }, ProcId(1), Target::tcp(1));
        let other = table.add(Owner::Up { run: 2, entry: 0 }, ProcId(1), Target::tcp(1));
        let wait = table.add(Owner::Wait(WaitId(1)), ProcId(1), Target::tcp(1));
        // The try in progress is closed; the idle probe just goes.
        assert!(matches!(table.drop_run(1)[..], [Action::ProbeClose { .. }]));
        let mut left = table.owned_by(|_| true);
        left.sort();
        assert_eq!(left, vec![other, wait]);
        assert!(table.last_error(id).is_none() && table.last_error(idle).is_none());
        assert!(table.drop_run(1).is_empty());
    }

    #[test]
    fn a_probe_is_wanted_while_its_wait_or_up_run_is() {
        let waits = [WaitId(1)];
        let runs = [3];
        let alive = |o| owner_alive(o, |w| waits.contains(&w), |r| runs.contains(&r));
        let cases = [
            (Owner::Wait(WaitId(1)), true),
            (Owner::Wait(WaitId(2)), false),
            (Owner::Up { run: 3, entry: 7 }, true),
            (Owner::Up { run: 1, entry: 0 }, false),
        ];
        for (owner, wanted) in cases {
            assert_eq!(alive(owner), wanted, "{owner:?}");
        }
    }
}
