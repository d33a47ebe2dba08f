//! The up component: a dependency graph carried out by the daemon. Each
//! process starts as soon as every process it depends on is ready (not level
//! by level), and the client hears each step as it happens. A process that
//! exits before it is ready, or is not ready in time, fails the run; what did
//! start keeps running.
//!
//! It owns the runs in progress (`UpRun`s) and decides; the loop feeds in
//! lines, exits, probe results and deadlines through a `View` (the process
//! table, where it marks what it awaits and what became ready), carries out
//! the starts, stops, probes and replies it returns, and hands back what came
//! of a start (`on_spawned`). (The CLI side of `up` is `cmd/up.rs` and
//! `client/project.rs`.)

use super::action::{Action, Change};
use super::ids::{ClientId, ProbeOwner};
use super::procs::{ProcId, ProcTable, State};
use super::signals::Exit;
use super::spec::{Context, Spec};
use super::supervise::Reason;
use super::timers::Timer;
use super::waits::Pattern;
use crate::probe::{self, Target};
use crate::protocol::{ReadyCheck, Request, Response, UpProcess};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Processes started per loop turn; the rest wait for the next turn, so a huge
/// graph does not keep other clients waiting.
const STARTS_PER_TURN: usize = 32;

/// One `up` request in progress. The bookkeeping keeps every step proportional
/// to what changed, so a huge graph cannot stall the loop.
pub struct UpRun {
    pub client: ClientId,
    pub entries: Vec<Entry>,
    pub base_env: Option<HashMap<String, String>>,
    /// For each entry, the entries that depend on it.
    dependents: Vec<Vec<usize>>,
    /// For each entry, how many of its dependencies are not ready yet.
    waiting: Vec<usize>,
    /// Entries free to start.
    queue: Vec<usize>,
    ready: usize,
    /// Entries started since the queue was last empty (see `STARTS_PER_TURN`).
    started: usize,
    /// The entry checking or replacing each process.
    by_proc: HashMap<ProcId, usize>,
}

impl UpRun {
    fn new(
        client: ClientId,
        entries: Vec<Entry>,
        base_env: Option<HashMap<String, String>>,
    ) -> UpRun {
        let mut dependents = vec![Vec::new(); entries.len()];
        for (i, e) in entries.iter().enumerate() {
            for &d in &e.deps {
                dependents[d].push(i);
            }
        }
        let waiting: Vec<usize> = entries.iter().map(|e| e.deps.len()).collect();
        // Reversed, so that popping starts them in file order.
        let queue = (0..entries.len())
            .rev()
            .filter(|&i| waiting[i] == 0)
            .collect();
        UpRun {
            client,
            entries,
            base_env,
            dependents,
            waiting,
            queue,
            ready: 0,
            started: 0,
            by_proc: HashMap::new(),
        }
    }

    fn set_phase(&mut self, i: usize, phase: Phase) {
        let Some(e) = self.entries.get_mut(i) else {
            return;
        };
        if let Phase::Checking(id) | Phase::Replacing(id) = e.phase {
            self.by_proc.remove(&id);
        }
        if let Phase::Checking(id) | Phase::Replacing(id) = phase {
            self.by_proc.insert(id, i);
        }
        let was_ready = e.phase == Phase::Ready;
        e.phase = phase;
        if phase == Phase::Ready && !was_ready {
            self.ready += 1;
            for k in 0..self.dependents[i].len() {
                let d = self.dependents[i][k];
                self.waiting[d] -= 1;
                if self.waiting[d] == 0 {
                    self.queue.push(d);
                }
            }
        }
    }

    /// The entry watching process `id`, and its phase.
    fn watching(&self, id: ProcId) -> Option<(usize, &Entry)> {
        let &i = self.by_proc.get(&id)?;
        Some((i, self.entries.get(i)?))
    }
}

pub struct Entry {
    pub def: UpProcess,
    /// Indexes of the entries this one waits for.
    pub deps: Vec<usize>,
    pub ready: Readiness,
    pub phase: Phase,
}

/// What "ready" means for one entry.
pub enum Readiness {
    /// Nothing to wait for: ready once started.
    Started,
    Log(Pattern),
    Probe(Target),
    Exit(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for its dependencies.
    Blocked,
    /// An old run with another definition is being stopped first.
    Replacing(ProcId),
    /// Started; waiting for it to become ready.
    Checking(ProcId),
    Ready,
}

impl Readiness {
    fn parse(check: Option<&ReadyCheck>) -> Result<Readiness, String> {
        let Some(c) = check else {
            return Ok(Readiness::Started);
        };
        let given = [
            c.log.is_some(),
            c.tcp.is_some(),
            c.http.is_some(),
            c.exit.is_some(),
        ];
        if given.iter().filter(|&&g| g).count() != 1 {
            return Err("give exactly one of log, tcp, http and exit".into());
        }
        if let Some(text) = &c.log {
            return Pattern::new(text, c.regex, false).map(Readiness::Log);
        }
        if let Some(port) = c.tcp {
            if port == 0 {
                return Err("tcp: the port must be from 1 to 65535".into());
            }
            return Ok(Readiness::Probe(Target::tcp(port)));
        }
        if let Some(url) = &c.http {
            return probe::http_target(url).map(Readiness::Probe);
        }
        Ok(Readiness::Exit(c.exit.unwrap_or(0)))
    }
}

/// Check the graph of an `Up` request: names unique and valid, dependencies
/// known, no cycles, readiness forms valid.
fn plan(processes: Vec<UpProcess>) -> Result<Vec<Entry>, String> {
    let mut index = HashMap::new();
    for (i, p) in processes.iter().enumerate() {
        crate::paths::check_process_name(&p.name)?;
        if index.insert(p.name.clone(), i).is_some() {
            return Err(format!("process '{}' is defined twice", p.name));
        }
    }
    let mut entries = Vec::with_capacity(processes.len());
    for p in processes {
        let mut deps = Vec::new();
        for d in &p.depends_on {
            match index.get(d) {
                Some(&j) => deps.push(j),
                None => {
                    return Err(format!(
                        "{} depends on '{d}', which is not among the processes to start",
                        p.name
                    ));
                }
            }
        }
        let ready = Readiness::parse(p.ready.as_ref()).map_err(|e| format!("{}: {e}", p.name))?;
        entries.push(Entry {
            def: p,
            deps,
            ready,
            phase: Phase::Blocked,
        });
    }
    // Kahn's algorithm: whatever never becomes free sits on a cycle.
    let mut dependents = vec![Vec::new(); entries.len()];
    for (i, e) in entries.iter().enumerate() {
        for &d in &e.deps {
            dependents[d].push(i);
        }
    }
    let mut waiting: Vec<usize> = entries.iter().map(|e| e.deps.len()).collect();
    let mut free: Vec<usize> = (0..entries.len()).filter(|&i| waiting[i] == 0).collect();
    let mut seen = 0;
    while let Some(i) = free.pop() {
        seen += 1;
        for &j in &dependents[i] {
            waiting[j] -= 1;
            if waiting[j] == 0 {
                free.push(j);
            }
        }
    }
    if seen < entries.len() {
        let stuck: Vec<&str> = (0..entries.len())
            .filter(|&i| waiting[i] > 0)
            .map(|i| entries[i].def.name.as_str())
            .collect();
        return Err(format!(
            "the dependencies form a cycle among: {}",
            stuck.join(", ")
        ));
    }
    Ok(entries)
}

/// What the component may read of the daemon, and the process table, where
/// it marks what it waits for (`awaiting_ready`) and what became ready.
pub struct View<'a> {
    pub procs: &'a mut ProcTable,
    pub proxy_port: Option<u16>,
    /// Where relative `cwd`s resolve, to compare definitions.
    pub home_cwd: &'a Path,
    /// Why the last try of an entry's probe failed (asked of a late entry).
    pub last_try: &'a dyn Fn(ProbeOwner) -> Option<String>,
    /// What the output of a process says of its port (asked of a late entry).
    pub port_conflict: &'a dyn Fn(&ProcTable, ProcId) -> Option<String>,
}

/// The component: every `up` run in progress, by number.
#[derive(Default)]
pub struct Ups {
    runs: HashMap<u64, UpRun>,
    next: u64,
}

impl Ups {
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Whether run `run` is still in progress (a probe of it is still wanted).
    pub fn contains(&self, run: u64) -> bool {
        self.runs.contains_key(&run)
    }

    /// An `Up` request: check the graph, then start what has no dependencies.
    pub fn request(
        &mut self,
        client: ClientId,
        processes: Vec<UpProcess>,
        base_env: Option<HashMap<String, String>>,
        timeout_ms: Option<u64>,
        shutting_down: bool,
    ) -> Vec<Action> {
        if shutting_down {
            let response = Response::error(
                "the daemon is shutting down; run the command again once it has exited",
            );
            return vec![Action::Reply { client, response }];
        }
        let entries = match plan(processes) {
            Ok(entries) => entries,
            Err(msg) => {
                let response = Response::error(msg);
                return vec![Action::Reply { client, response }];
            }
        };
        self.next += 1;
        let run = self.next;
        self.runs.insert(run, UpRun::new(client, entries, base_env));
        let mut actions = vec![Action::Busy { client }];
        if let Some(ms) = timeout_ms {
            actions.push(Action::Arm {
                at: Instant::now() + Duration::from_millis(ms),
                timer: Timer::UpDeadline { run },
            });
        }
        actions.push(Action::UpAdvance { run });
        actions
    }

    /// Start the next entry whose dependencies are all ready (the loop comes
    /// back with `UpAdvance` until none is left); finish when all are ready.
    pub fn advance(&mut self, run: u64, view: &mut View) -> Vec<Action> {
        let Some(up) = self.runs.get_mut(&run) else {
            return Vec::new();
        };
        if let Some(i) = up.queue.pop() {
            up.started += 1;
            if up.started >= STARTS_PER_TURN && !up.queue.is_empty() {
                // The rest on a later turn, so other clients are served between.
                up.started = 0;
                let mut actions = self.start(run, i, view);
                actions.push(Action::Arm {
                    at: Instant::now(),
                    timer: Timer::UpContinue { run },
                });
                return actions;
            }
            let mut actions = self.start(run, i, view);
            actions.push(Action::UpAdvance { run });
            return actions;
        }
        up.started = 0;
        if up.ready < up.entries.len() {
            return Vec::new();
        }
        let Some(up) = self.remove(run, view.procs) else {
            return Vec::new();
        };
        vec![Action::ReplyLater {
            client: up.client,
            response: Response::Ok {
                message: "all processes started".into(),
            },
        }]
    }

    fn start(&mut self, run: u64, i: usize, view: &mut View) -> Vec<Action> {
        let Some(entry) = self.runs.get(&run).and_then(|u| u.entries.get(i)) else {
            return Vec::new();
        };
        let Some((id, p)) = view
            .procs
            .by_name(&entry.def.name)
            .and_then(|id| Some((id, view.procs.get(id)?)))
        else {
            return self.spawn(run, i, "started", view);
        };
        let request = run_request(&entry.def, None);
        let definition = super::spec::definition(&request, view.home_cwd);
        let same = definition.as_deref() == Some(p.spec.definition.as_str());
        match (&p.state, &entry.ready) {
            (State::Running { .. }, _) if same => {
                let mut actions = self.send(run, progress("running", p, view.proxy_port));
                actions.extend(self.check(run, i, id, false, view));
                actions
            }
            (State::Running { .. } | State::Stopping { .. }, _) => {
                self.set_phase(run, i, Phase::Replacing(id), view.procs);
                vec![
                    Action::StopReason {
                        proc: id,
                        reason: Reason::Restarted,
                        replace: true,
                    },
                    Action::UpStop {
                        run,
                        entry: i,
                        proc: id,
                    },
                ]
            }
            (State::Exited { exit }, Readiness::Exit(code))
                if same && exit.code() == Some(*code) =>
            {
                // A setup step that already did its job with this definition.
                let progress = progress("ready", p, view.proxy_port);
                self.set_phase(run, i, Phase::Ready, view.procs);
                self.send(run, progress)
            }
            _ => self.spawn(run, i, "started", view),
        }
    }

    /// Start entry `i` (`event`: `started` or `restarted`), through the loop:
    /// its definition is checked and planned here, as a `run` would be.
    pub fn spawn(
        &mut self,
        run: u64,
        i: usize,
        event: &'static str,
        view: &mut View,
    ) -> Vec<Action> {
        let Some(up) = self.runs.get(&run) else {
            return Vec::new();
        };
        let Some(entry) = up.entries.get(i) else {
            return Vec::new();
        };
        let ctx = Context {
            home_cwd: view.home_cwd,
            behind_proxy: view.proxy_port.is_some(),
        };
        match Spec::from_run(run_request(&entry.def, up.base_env.clone()), &ctx) {
            Ok(planned) => vec![Action::UpSpawn {
                run,
                entry: i,
                event,
                planned: Box::new(planned),
            }],
            Err(message) => {
                let name = entry.def.name.clone();
                self.fail(
                    run,
                    &name,
                    format!("could not start: {message}"),
                    view.procs,
                )
            }
        }
    }

    /// The loop started entry `i` (or could not): tell the client, and watch
    /// the process for readiness.
    pub fn on_spawned(
        &mut self,
        run: u64,
        i: usize,
        event: &str,
        response: Response,
        view: &mut View,
    ) -> Vec<Action> {
        let Some(name) = self.name(run, i) else {
            return Vec::new();
        };
        match response {
            Response::RunOk { warning, .. } => {
                let Some(id) = view.procs.by_name(&name) else {
                    return Vec::new();
                };
                let mut actions = Vec::new();
                if let Some(p) = view.procs.get(id) {
                    let mut progress = progress(event, p, view.proxy_port);
                    if let Response::UpProgress { warning: w, .. } = &mut progress {
                        *w = warning;
                    }
                    actions = self.send(run, progress);
                }
                actions.extend(self.check(run, i, id, true, view));
                actions
            }
            Response::Error { message, .. } => self.fail(
                run,
                &name,
                format!("could not start: {message}"),
                view.procs,
            ),
            _ => {
                let why = "internal error: unexpected start result".into();
                self.fail(run, &name, why, view.procs)
            }
        }
    }

    /// Begin watching entry `i`, whose process `id` runs, for readiness.
    /// `fresh`: it was just started, so it has no output yet; otherwise what
    /// it logged this run may already say it is ready.
    fn check(
        &mut self,
        run: u64,
        i: usize,
        id: ProcId,
        fresh: bool,
        view: &mut View,
    ) -> Vec<Action> {
        let Some(entry) = self.runs.get(&run).and_then(|u| u.entries.get(i)) else {
            return Vec::new();
        };
        let timeout = entry
            .def
            .ready_timeout_ms
            .map_or(DEFAULT_READY_TIMEOUT, Duration::from_millis);
        let mut actions = Vec::new();
        let mut logged = false;
        match &entry.ready {
            Readiness::Started => {
                self.set_phase(run, i, Phase::Ready, view.procs);
                return actions;
            }
            Readiness::Log(pattern) if !fresh && logged_this_run(view.procs, id, pattern) => {
                logged = true
            }
            Readiness::Log(_) => actions.push(Action::PrepareIndexes { proc: id }),
            Readiness::Exit(_) => {}
            Readiness::Probe(target) => actions.push(Action::Probe {
                owner: ProbeOwner::Up { run, entry: i },
                proc: id,
                target: target.clone(),
            }),
        }
        self.set_phase(run, i, Phase::Checking(id), view.procs);
        if logged {
            return self.ready(run, i, view);
        }
        actions.push(Action::Arm {
            at: Instant::now() + timeout,
            timer: Timer::ReadyDeadline { run, entry: i },
        });
        actions
    }

    /// Entry `i` of `run` is ready.
    pub fn ready(&mut self, run: u64, i: usize, view: &mut View) -> Vec<Action> {
        let Some(up) = self.runs.get(&run) else {
            return Vec::new();
        };
        let Some(Phase::Checking(id)) = up.entries.get(i).map(|e| e.phase) else {
            return Vec::new();
        };
        self.set_phase(run, i, Phase::Ready, view.procs);
        let mut actions = Vec::new();
        if let Some(p) = view.procs.get(id) {
            actions = self.send(run, progress("ready", p, view.proxy_port));
        }
        // One `ready` event per run of the process, however many `up`s see it.
        if let Some(pid) = view.procs.mark_ready(id) {
            let change = Change::new("ready").pid(pid);
            actions.push(Action::Emit { proc: id, change });
        }
        actions.push(Action::UpAdvance { run });
        actions
    }

    /// Whether an `up` watches the lines of `id`.
    pub fn wants_lines(&self, id: ProcId) -> bool {
        self.runs.values().any(|u| {
            u.watching(id).is_some_and(|(_, e)| {
                e.phase == Phase::Checking(id) && matches!(e.ready, Readiness::Log(_))
            })
        })
    }

    /// A line of process `id`. Nothing allocated unless it makes an entry ready.
    pub fn on_line(&mut self, id: ProcId, line: &[u8], view: &mut View) -> Vec<Action> {
        let matched: Vec<(u64, usize)> = self
            .runs
            .iter()
            .filter_map(|(&run, u)| {
                let (i, e) = u.watching(id)?;
                let hit = e.phase == Phase::Checking(id)
                    && matches!(&e.ready, Readiness::Log(p) if p.matches(line));
                hit.then_some((run, i))
            })
            .collect();
        let mut actions = Vec::new();
        for (run, i) in matched {
            actions.extend(self.ready(run, i, view));
        }
        actions
    }

    /// Process `id` has exited (or finished stopping).
    pub fn on_exit(&mut self, id: ProcId, exit: Exit, view: &mut View) -> Vec<Action> {
        let affected: Vec<(u64, usize, Phase)> = self
            .runs
            .iter()
            .filter_map(|(&run, u)| {
                let (i, e) = u.watching(id)?;
                Some((run, i, e.phase))
            })
            .collect();
        let mut actions = Vec::new();
        for (run, i, phase) in affected {
            let Some(entry) = self.runs.get(&run).and_then(|u| u.entries.get(i)) else {
                continue;
            };
            let name = entry.def.name.clone();
            let more = match (phase, &entry.ready) {
                (Phase::Replacing(_), _) => {
                    let mut actions = self.spawn(run, i, "restarted", view);
                    // Ready at once when it has no readiness condition.
                    actions.push(Action::UpAdvance { run });
                    actions
                }
                (_, Readiness::Exit(code)) if exit.code() == Some(*code) => {
                    self.ready(run, i, view)
                }
                (_, Readiness::Exit(code)) => {
                    let reason = format!("{} (expected exit code {code})", exited(exit));
                    self.fail(run, &name, reason, view.procs)
                }
                _ => {
                    let mut reason = format!("{} before it was ready", exited(exit));
                    if let Some(c) = view.procs.get(id).and_then(|p| p.port_conflict.as_ref()) {
                        reason.push_str(&format!("; {c}"));
                    }
                    self.fail(run, &name, reason, view.procs)
                }
            };
            actions.extend(more);
        }
        actions
    }

    /// A readiness deadline passed (`entry`, or the whole run's with None):
    /// the entry that is late, if one is, and its process if it runs.
    fn late(&self, run: u64, entry: Option<usize>) -> Option<(usize, Option<ProcId>)> {
        let up = self.runs.get(&run)?;
        let late = up.entries.iter().enumerate().find(|(i, e)| {
            entry.is_none_or(|only| only == *i) && matches!(e.phase, Phase::Checking(_))
        });
        let late = late.or_else(|| {
            // The whole run ran out of time while something was still stopping or blocked.
            entry
                .is_none()
                .then(|| {
                    up.entries
                        .iter()
                        .enumerate()
                        .find(|(_, e)| e.phase != Phase::Ready)
                })
                .flatten()
        });
        let (i, e) = late?;
        let proc = match e.phase {
            Phase::Checking(id) => Some(id),
            _ => None,
        };
        Some((i, proc))
    }

    /// A readiness deadline passed (`entry`, or the whole run's with None):
    /// fail `run` if an entry is late (see `late`), saying why its probe's
    /// last try failed and what its process's output says of its port.
    pub fn on_deadline(&mut self, run: u64, entry: Option<usize>, view: &mut View) -> Vec<Action> {
        let Some((i, proc)) = self.late(run, entry) else {
            return Vec::new();
        };
        let Some(e) = self.runs.get(&run).and_then(|u| u.entries.get(i)) else {
            return Vec::new();
        };
        let name = e.def.name.clone();
        let mut reason = match (entry, e.phase) {
            (None, Phase::Blocked) => "not started before the up --timeout ran out".to_string(),
            (None, _) => "not ready before the up --timeout ran out".to_string(),
            (Some(_), _) => {
                let limit = e
                    .def
                    .ready_timeout_ms
                    .map_or(DEFAULT_READY_TIMEOUT, Duration::from_millis);
                format!("not ready after {}", crate::timefmt::seconds(limit))
            }
        };
        if let Some(why) = (view.last_try)(ProbeOwner::Up { run, entry: i }) {
            reason.push_str(&format!(" (last try: {why})"));
        }
        // Still running, but its output may say why it never got ready.
        if let Some(c) = proc.and_then(|id| (view.port_conflict)(view.procs, id)) {
            reason.push_str(&format!("; {c}"));
        }
        self.fail(run, &name, reason, view.procs)
    }

    fn fail(&mut self, run: u64, name: &str, reason: String, procs: &mut ProcTable) -> Vec<Action> {
        let Some(up) = self.remove(run, procs) else {
            return Vec::new();
        };
        vec![
            Action::Note(format!("up failed: {name}: {reason}")),
            Action::UpDropProbes { run },
            Action::ReplyLater {
                client: up.client,
                response: Response::UpFailed {
                    name: name.to_string(),
                    reason,
                },
            },
        ]
    }

    /// Entry `i` of `run` moves to `phase`; the process it checks is marked
    /// as awaited (`awaiting_ready`) while it does.
    fn set_phase(&mut self, run: u64, i: usize, phase: Phase, procs: &mut ProcTable) {
        let Some(up) = self.runs.get_mut(&run) else {
            return;
        };
        if let Some(Phase::Checking(id)) = up.entries.get(i).map(|e| e.phase) {
            procs.set_awaiting_ready(id, false);
        }
        up.set_phase(i, phase);
        if let Phase::Checking(id) = phase {
            procs.set_awaiting_ready(id, true);
        }
    }

    /// Ends run `run`: what it was still checking is no longer awaited.
    fn remove(&mut self, run: u64, procs: &mut ProcTable) -> Option<UpRun> {
        let up = self.runs.remove(&run)?;
        for e in &up.entries {
            if let Phase::Checking(id) = e.phase {
                procs.set_awaiting_ready(id, false);
            }
        }
        Some(up)
    }

    fn name(&self, run: u64, i: usize) -> Option<String> {
        Some(self.runs.get(&run)?.entries.get(i)?.def.name.clone())
    }

    /// A progress line to the client of `run`, written out at once.
    fn send(&self, run: u64, response: Response) -> Vec<Action> {
        match self.runs.get(&run) {
            Some(up) => vec![
                Action::Reply {
                    client: up.client,
                    response,
                },
                Action::Flush { client: up.client },
            ],
            None => Vec::new(),
        }
    }

    /// The client went away: its runs end (nothing more is started for them).
    pub fn drop_client(&mut self, client: ClientId, procs: &mut ProcTable) -> Vec<Action> {
        let runs: Vec<u64> = self
            .runs
            .iter()
            .filter(|(_, u)| u.client == client)
            .map(|(r, _)| *r)
            .collect();
        let mut actions = Vec::new();
        for run in runs {
            self.remove(run, procs);
            actions.push(Action::Note("up cancelled: its client went away".into()));
            actions.push(Action::UpDropProbes { run });
        }
        actions
    }
}

fn progress(event: &str, p: &super::procs::Proc, proxy_port: Option<u16>) -> Response {
    Response::UpProgress {
        event: event.into(),
        name: p.name.clone(),
        id: format!("p{}", p.id),
        pid: p.pid,
        url: p.url(proxy_port),
        warning: None,
    }
}

fn run_request(def: &UpProcess, base_env: Option<HashMap<String, String>>) -> Request {
    Request::Run {
        command: def.command.clone(),
        name: Some(def.name.clone()),
        cwd: Some(def.cwd.clone()),
        env: Some(def.env.clone()),
        port: def.port,
        restart: def.restart.clone(),
        watch: def.watch.clone(),
        base_env,
        log_max_size: def.log_max_size,
        log_max_files: def.log_max_files,
        stop_timeout_ms: def.stop_timeout_ms,
        stop_signal: def.stop_signal.clone(),
        depends_on: def.depends_on.clone(),
        oneshot: def.oneshot,
    }
}

/// `exited with code 1`, `killed by SIGSEGV`.
/// Whether process `id` logged a line matching `pattern` in its current run.
fn logged_this_run(procs: &ProcTable, id: ProcId, pattern: &Pattern) -> bool {
    let Some(p) = procs.get(id) else {
        return false;
    };
    super::waits::search_history(&super::waits::Subject::of(p).segments, pattern).is_some()
}

fn exited(exit: Exit) -> String {
    match exit {
        Exit::Code(c) => format!("exited with code {c}"),
        Exit::Signal(_) => exit.describe(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(name: &str, deps: &[&str]) -> UpProcess {
        UpProcess {
            name: name.into(),
            command: "true".into(),
            cwd: "/".into(),
            env: HashMap::new(),
            port: None,
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            ready: None,
            ready_timeout_ms: None,
            stop_timeout_ms: None,
            stop_signal: None,
            log_max_size: None,
            log_max_files: None,
            restart: None,
            watch: None,
            oneshot: false,
        }
    }

    /// A process named after `def`, started from its definition, in `state`.
    fn started(procs: &mut ProcTable, def: &UpProcess, state: State) -> ProcId {
        let ctx = super::super::spec::Context {
            home_cwd: Path::new("/"),
            behind_proxy: false,
        };
        let planned = super::super::spec::Spec::from_run(run_request(def, None), &ctx).unwrap();
        let id = procs.allocate_id();
        let mut p = super::super::procs::Proc::new(id, def.name.clone(), planned.spec);
        p.state = state;
        p.pid = 100 + id.0;
        procs.insert(p);
        id
    }

    fn run_ok(name: &str, pid: u32) -> Response {
        Response::RunOk {
            name: name.into(),
            id: "p1".into(),
            pid,
            port: None,
            url: None,
            warning: None,
        }
    }

    fn running() -> State {
        State::Running {
            pid: 1,
            since: Instant::now(),
        }
    }

    fn view(procs: &mut ProcTable) -> View<'_> {
        View {
            procs,
            proxy_port: None,
            home_cwd: Path::new("/"),
            last_try: &|_| None,
            port_conflict: &|_, _| None,
        }
    }

    fn awaited(procs: &ProcTable, id: ProcId) -> bool {
        procs.get(id).is_some_and(|p| p.awaiting_ready)
    }

    /// The names of the entries the actions start, and the events sent.
    fn said(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::UpSpawn { planned, event, .. } => {
                    Some(format!("spawn {} {event}", planned.name.as_deref()?))
                }
                Action::Reply {
                    response: Response::UpProgress { event, name, .. },
                    ..
                } => Some(format!("{event} {name}")),
                Action::ReplyLater {
                    response: Response::Ok { message },
                    ..
                } => Some(message.clone()),
                Action::ReplyLater {
                    response: Response::UpFailed { name, reason },
                    ..
                } => Some(format!("failed {name}: {reason}")),
                Action::UpStop { proc, .. } => Some(format!("stop p{proc}")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_dependent_starts_once_what_it_needs_is_ready() {
        let (a, b) = (proc("a", &[]), proc("b", &["a"]));
        let mut ups = Ups::default();
        let mut procs = ProcTable::default();
        let actions = ups.request(
            ClientId(5),
            vec![a.clone(), b.clone()],
            None,
            Some(1000),
            false,
        );
        assert!(matches!(
            actions[0],
            Action::Busy {
                client: ClientId(5)
            }
        ));
        assert!(matches!(
            actions[1],
            Action::Arm {
                timer: Timer::UpDeadline { run: 1 },
                ..
            }
        ));
        assert!(matches!(actions[2], Action::UpAdvance { run: 1 }));
        // Only `a` is free to start.
        let actions = ups.advance(1, &mut view(&mut procs));
        assert_eq!(said(&actions), ["spawn a started"]);
        assert!(said(&ups.advance(1, &mut view(&mut procs))).is_empty());
        // Started (no readiness condition): ready at once, and `b` is free.
        started(&mut procs, &a, running());
        let ok = run_ok("a", 101);
        let actions = ups.on_spawned(1, 0, "started", ok, &mut view(&mut procs));
        assert_eq!(said(&actions), ["started a"]);
        // A progress line is written out at once, not at the end of the turn.
        let sent = actions
            .iter()
            .position(|a| matches!(a, Action::Reply { .. }));
        assert!(matches!(
            actions[sent.expect("a progress line") + 1],
            Action::Flush {
                client: ClientId(5)
            }
        ));
        assert_eq!(
            said(&ups.advance(1, &mut view(&mut procs))),
            ["spawn b started"]
        );
        started(&mut procs, &b, running());
        let ok = run_ok("b", 102);
        ups.on_spawned(1, 1, "started", ok, &mut view(&mut procs));
        assert_eq!(
            said(&ups.advance(1, &mut view(&mut procs))),
            ["all processes started"]
        );
        assert!(ups.is_empty());
    }

    #[test]
    fn a_log_ready_entry_waits_for_its_line_and_fails_on_an_early_exit() {
        let mut a = proc("a", &[]);
        a.ready = Some(ReadyCheck {
            log: Some("listening".into()),
            ..ReadyCheck::default()
        });
        let mut ups = Ups::default();
        let mut procs = ProcTable::default();
        ups.request(ClientId(1), vec![a.clone()], None, None, false);
        ups.advance(1, &mut view(&mut procs));
        let id = started(&mut procs, &a, running());
        let ok = run_ok("a", 101);
        let actions = ups.on_spawned(1, 0, "started", ok, &mut view(&mut procs));
        assert!(awaited(&procs, id), "the proxy waits for it meanwhile");
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::PrepareIndexes { proc } if *proc == id))
        );
        assert!(ups.wants_lines(id));
        assert!(
            ups.on_line(id, b"starting", &mut view(&mut procs))
                .is_empty()
        );
        let actions = ups.on_line(id, b"listening on 80", &mut view(&mut procs));
        assert_eq!(said(&actions), ["ready a"]);
        assert!(!awaited(&procs, id));
        // One `ready` event for the run, with its pid.
        let ready = |a: &Action| {
            matches!(a, Action::Emit { proc, change } if *proc == id
                && change.event == "ready" && change.pid == Some(100 + id.0))
        };
        assert_eq!(actions.iter().filter(|a| ready(a)).count(), 1);
        assert!(!ups.wants_lines(id));

        // A second `up` of it finds it running with the same definition.
        ups.request(ClientId(2), vec![a.clone()], None, None, false);
        procs.get_mut(id).unwrap().state = running();
        let actions = ups.advance(2, &mut view(&mut procs));
        // Running with the same definition: checked; its log (it has none
        // here) does not say it is ready, so its lines are awaited.
        assert_eq!(said(&actions), ["running a"]);
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::PrepareIndexes { proc } if *proc == id))
        );
        // The same run seen ready by a second `up`: no second event.
        let actions = ups.on_line(id, b"listening again", &mut view(&mut procs));
        assert_eq!(said(&actions), ["ready a"]);
        assert!(!actions.iter().any(|a| matches!(a, Action::Emit { .. })));
        // A third, while it exits first, fails, and says how it exited.
        ups.request(ClientId(3), vec![a.clone()], None, None, false);
        ups.advance(3, &mut view(&mut procs));
        let actions = ups.on_exit(id, Exit::Code(3), &mut view(&mut procs));
        assert_eq!(
            said(&actions),
            ["failed a: exited with code 3 before it was ready"]
        );
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::UpDropProbes { run: 3 }))
        );
        assert!(!awaited(&procs, id));
    }

    #[test]
    fn a_changed_definition_replaces_the_running_process() {
        let a = proc("a", &[]);
        let mut ups = Ups::default();
        let mut procs = ProcTable::default();
        let id = started(&mut procs, &a, running());
        let mut changed = a.clone();
        changed.command = "sleep 9".into();
        ups.request(ClientId(1), vec![changed], None, None, false);
        let actions = ups.advance(1, &mut view(&mut procs));
        assert_eq!(said(&actions), [format!("stop p{id}")]);
        // Its stop is a restart, said before the stop begins.
        assert!(matches!(
            &actions[..],
            [
                Action::StopReason {
                    proc,
                    reason: Reason::Restarted,
                    replace: true,
                },
                Action::UpStop { proc: stopped, .. },
                ..
            ] if *proc == id && *stopped == id
        ));
        // Its old run is gone: the new one starts.
        let actions = ups.on_exit(id, Exit::Signal(libc::SIGTERM), &mut view(&mut procs));
        assert_eq!(said(&actions), ["spawn a restarted"]);
    }

    #[test]
    fn a_late_entry_fails_the_run_with_its_last_try() {
        let mut a = proc("a", &[]);
        a.ready = Some(ReadyCheck {
            tcp: Some(4000),
            ..ReadyCheck::default()
        });
        let mut ups = Ups::default();
        let mut procs = ProcTable::default();
        ups.request(
            ClientId(1),
            vec![a.clone(), proc("b", &["a"])],
            None,
            None,
            false,
        );
        ups.advance(1, &mut view(&mut procs));
        let id = started(&mut procs, &a, running());
        let ok = run_ok("a", 101);
        let actions = ups.on_spawned(1, 0, "started", ok, &mut view(&mut procs));
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Probe { owner: ProbeOwner::Up { run: 1, entry: 0 }, proc, .. } if *proc == id))
        );
        assert_eq!(ups.late(1, Some(1)), None);
        assert_eq!(ups.late(1, Some(0)), Some((0, Some(id))));
        // Entry 1 is not late: nothing fails.
        assert!(
            ups.on_deadline(1, Some(1), &mut view(&mut procs))
                .is_empty()
        );
        let last_try = |o| {
            (o == ProbeOwner::Up { run: 1, entry: 0 }).then(|| "connection refused".to_string())
        };
        let conflict = |_: &ProcTable, p| (p == id).then(|| "port 4000 is held by pid 7".into());
        let mut late = View {
            last_try: &last_try,
            port_conflict: &conflict,
            ..view(&mut procs)
        };
        let actions = ups.on_deadline(1, Some(0), &mut late);
        assert_eq!(
            said(&actions),
            [
                "failed a: not ready after 30s (last try: connection refused); port 4000 is held by pid 7"
            ]
        );
        assert!(
            !awaited(&procs, id),
            "no longer awaited once the run failed"
        );
        assert!(ups.is_empty());
    }

    #[test]
    fn a_client_that_goes_away_ends_its_runs_and_a_stopping_daemon_starts_none() {
        let mut ups = Ups::default();
        let actions = ups.request(ClientId(3), vec![proc("a", &[])], None, None, true);
        assert!(matches!(
            &actions[..],
            [Action::Reply {
                client: ClientId(3),
                response: Response::Error { .. }
            }]
        ));
        ups.request(ClientId(3), vec![proc("a", &[])], None, None, false);
        let actions = ups.drop_client(ClientId(3), &mut ProcTable::default());
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::UpDropProbes { run: 1 }))
        );
        assert!(ups.is_empty() && !ups.contains(1));
        let bad = ups.request(ClientId(4), vec![proc("a", &["x"])], None, None, false);
        assert!(matches!(
            &bad[..],
            [Action::Reply {
                client: ClientId(4),
                ..
            }]
        ));
    }

    #[test]
    fn an_entry_that_cannot_be_planned_fails_the_run_before_anything_starts() {
        let mut a = proc("a", &[]);
        a.stop_signal = Some("BOGUS".into());
        let mut ups = Ups::default();
        let mut procs = ProcTable::default();
        ups.request(ClientId(1), vec![a], None, None, false);
        let actions = ups.advance(1, &mut view(&mut procs));
        assert_eq!(
            said(&actions),
            [
                "failed a: could not start: unknown stop signal 'BOGUS' (try TERM, INT, HUP, QUIT or KILL)"
            ]
        );
        assert!(!actions.iter().any(|a| matches!(a, Action::UpSpawn { .. })));
        assert!(ups.is_empty());
    }

    #[test]
    fn a_huge_graph_starts_a_turn_at_a_time() {
        let names: Vec<String> = (0..STARTS_PER_TURN + 5).map(|i| format!("p{i}")).collect();
        let graph = names.iter().map(|n| proc(n, &[])).collect();
        let mut ups = Ups::default();
        let mut procs = ProcTable::default();
        ups.request(ClientId(1), graph, None, None, false);
        let mut spawned = 0;
        loop {
            let actions = ups.advance(1, &mut view(&mut procs));
            spawned += actions
                .iter()
                .filter(|a| matches!(a, Action::UpSpawn { .. }))
                .count();
            if actions.iter().any(|a| {
                matches!(
                    a,
                    Action::Arm {
                        timer: Timer::UpContinue { .. },
                        ..
                    }
                )
            }) {
                break;
            }
            assert!(
                actions
                    .iter()
                    .any(|a| matches!(a, Action::UpAdvance { .. }))
            );
        }
        assert_eq!(spawned, STARTS_PER_TURN);
    }

    #[test]
    fn graphs_are_checked() {
        assert!(plan(vec![proc("a", &[]), proc("b", &["a"])]).is_ok());
        let err = |ps| plan(ps).err().unwrap_or_default();
        assert!(err(vec![proc("a", &[]), proc("a", &[])]).contains("defined twice"));
        assert!(err(vec![proc("a", &["x"])]).contains("depends on 'x'"));
        assert!(
            err(vec![proc("a", &["b"]), proc("b", &["a"]), proc("c", &[])])
                .contains("cycle among: a, b")
        );
        assert!(err(vec![proc("bad name", &[])]).contains("name"));
        let mut p = proc("a", &[]);
        p.ready = Some(ReadyCheck {
            tcp: Some(1),
            exit: Some(0),
            ..ReadyCheck::default()
        });
        assert!(err(vec![p]).contains("exactly one"));
    }

    #[test]
    fn exits_are_worded_for_people() {
        assert_eq!(exited(Exit::Code(1)), "exited with code 1");
        assert_eq!(exited(Exit::Signal(libc::SIGSEGV)), "killed by SIGSEGV");
        assert_eq!(crate::timefmt::seconds(Duration::from_secs(30)), "30s");
        assert_eq!(crate::timefmt::seconds(Duration::from_millis(1500)), "1.5s");
        assert_eq!(crate::timefmt::seconds(Duration::from_millis(250)), "0.25s");
    }
}
