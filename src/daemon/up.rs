//! `up`: a dependency graph carried out by the daemon. Each process starts as soon
//! as every process it depends on is ready (not level by level), and the client
//! hears each step as it happens. A process that exits before it is ready, or is
//! not ready in time, fails the run; what did start keeps running.
//!
//! The graph and its phases live here; the loop feeds in lines, exits, probe
//! results and deadlines through the `up_*` methods.

use super::procs::{ProcId, State};
use super::readiness::Owner;
use super::signals::Exit;
use super::timers::Timer;
use super::{Daemon, Pattern};
use crate::probe::{self, Target};
use crate::protocol::{ReadyCheck, Request, Response, UpProcess};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Processes started per loop turn; the rest wait for the next turn, so a huge
/// graph does not keep other clients waiting.
const STARTS_PER_TURN: usize = 32;

/// One `up` request in progress. The bookkeeping keeps every step proportional
/// to what changed, so a huge graph cannot stall the loop.
pub struct UpRun {
    pub client: usize,
    pub entries: Vec<Entry>,
    pub base_env: Option<HashMap<String, String>>,
    /// For each entry, the entries that depend on it.
    dependents: Vec<Vec<usize>>,
    /// For each entry, how many of its dependencies are not ready yet.
    waiting: Vec<usize>,
    /// Entries free to start.
    queue: Vec<usize>,
    ready: usize,
    /// The entry checking or replacing each process.
    by_proc: HashMap<ProcId, usize>,
}

impl UpRun {
    fn new(client: usize, entries: Vec<Entry>, base_env: Option<HashMap<String, String>>) -> UpRun {
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

impl Daemon {
    pub(super) fn up_request(
        &mut self,
        client: usize,
        processes: Vec<UpProcess>,
        base_env: Option<HashMap<String, String>>,
        timeout_ms: Option<u64>,
    ) {
        if self.shutting_down {
            return self.reply(
                client,
                &Response::error(
                    "the daemon is shutting down; run the command again once it has exited",
                ),
            );
        }
        let entries = match plan(processes) {
            Ok(entries) => entries,
            Err(msg) => return self.reply(client, &Response::error(msg)),
        };
        self.next_up += 1;
        let run = self.next_up;
        self.ups.insert(run, UpRun::new(client, entries, base_env));
        self.set_busy(client);
        if let Some(ms) = timeout_ms {
            self.timers.arm(
                Instant::now() + Duration::from_millis(ms),
                Timer::UpDeadline { run },
            );
        }
        self.up_advance(run);
    }

    /// Start every entry whose dependencies are all ready; finish when all are.
    pub(super) fn up_advance(&mut self, run: u64) {
        let mut started = 0;
        while let Some(i) = self.ups.get_mut(&run).and_then(|u| u.queue.pop()) {
            self.up_start(run, i);
            started += 1;
            if started == STARTS_PER_TURN && self.ups.get(&run).is_some_and(|u| !u.queue.is_empty())
            {
                self.timers.arm(Instant::now(), Timer::UpContinue { run });
                return;
            }
        }
        let Some(up) = self.ups.get(&run) else { return };
        if up.ready == up.entries.len() {
            let client = up.client;
            self.up_remove(run);
            self.reply_later(
                client,
                &Response::Ok {
                    message: "all processes started".into(),
                },
            );
        }
    }

    fn up_start(&mut self, run: u64, i: usize) {
        let Some(entry) = self.ups.get(&run).map(|u| &u.entries[i]) else {
            return;
        };
        let name = entry.def.name.clone();
        let Some(id) = self.procs.by_name(&name) else {
            return self.up_spawn(run, i, "started");
        };
        let definition = self.definition_of(run, i);
        let Some(p) = self.procs.get(id) else { return };
        let same = definition.as_deref() == Some(p.spec.definition.as_str());
        match (&p.state, &entry.ready) {
            (State::Running { .. }, _) if same => {
                let progress = progress("running", p, self.proxy.as_ref().map(|x| x.port()));
                self.up_send(run, &progress);
                self.up_check(run, i, id, false);
            }
            (State::Running { .. } | State::Stopping { .. }, _) => {
                self.set_phase(run, i, Phase::Replacing(id));
                if let Some(p) = self.procs.get_mut(id) {
                    p.sup.stop_reason = Some(super::supervise::Reason::Restarted);
                }
                let timeout = self.stop_timeout(id, None);
                if !self.begin_stop(id, timeout) {
                    self.up_spawn(run, i, "restarted");
                }
            }
            (State::Exited { exit }, Readiness::Exit(code))
                if same && exit.code() == Some(*code) =>
            {
                // A setup step that already did its job with this definition.
                let progress = progress("ready", p, self.proxy.as_ref().map(|x| x.port()));
                self.set_phase(run, i, Phase::Ready);
                self.up_send(run, &progress);
            }
            _ => self.up_spawn(run, i, "started"),
        }
    }

    /// The definition a `run` of entry `i` would record, to compare with the old one.
    fn definition_of(&self, run: u64, i: usize) -> Option<String> {
        let up = self.ups.get(&run)?;
        let request = run_request(&up.entries[i].def, None);
        self.definition(&request)
    }

    fn up_spawn(&mut self, run: u64, i: usize, event: &str) {
        let Some(up) = self.ups.get(&run) else { return };
        let request = run_request(&up.entries[i].def, up.base_env.clone());
        let name = up.entries[i].def.name.clone();
        match self.run_process(request) {
            Response::RunOk { warning, .. } => {
                let Some(id) = self.procs.by_name(&name) else {
                    return;
                };
                if let Some(p) = self.procs.get(id) {
                    let mut progress = progress(event, p, self.proxy.as_ref().map(|x| x.port()));
                    if let Response::UpProgress { warning: w, .. } = &mut progress {
                        *w = warning;
                    }
                    self.up_send(run, &progress);
                }
                self.up_check(run, i, id, true);
            }
            Response::Error { message, .. } => {
                self.up_fail(run, &name, format!("could not start: {message}"))
            }
            _ => self.up_fail(run, &name, "internal error: unexpected start result".into()),
        }
    }

    /// Begin watching entry `i`, whose process `id` runs, for readiness.
    /// `fresh`: it was just started, so it has no output yet.
    fn up_check(&mut self, run: u64, i: usize, id: ProcId, fresh: bool) {
        let Some(up) = self.ups.get(&run) else { return };
        let entry = &up.entries[i];
        let timeout = entry
            .def
            .ready_timeout_ms
            .map_or(DEFAULT_READY_TIMEOUT, Duration::from_millis);
        let history = match &entry.ready {
            Readiness::Started => {
                self.set_phase(run, i, Phase::Ready);
                return;
            }
            Readiness::Log(pattern) if !fresh => self.search_history(id, pattern).is_some(),
            Readiness::Log(_) | Readiness::Exit(_) => false,
            Readiness::Probe(target) => {
                let target = target.clone();
                let probe = self.probes.add(Owner::Up { run, entry: i }, id, target);
                self.timers.arm(Instant::now(), Timer::ProbeTry { probe });
                false
            }
        };
        let by_line = matches!(entry.ready, Readiness::Log(_));
        self.set_phase(run, i, Phase::Checking(id));
        if history {
            return self.up_ready(run, i);
        }
        if by_line {
            self.prepare_indexes(id);
        }
        self.timers.arm(
            Instant::now() + timeout,
            Timer::ReadyDeadline { run, entry: i },
        );
    }

    pub(super) fn up_ready(&mut self, run: u64, i: usize) {
        let Some(up) = self.ups.get(&run) else { return };
        let Phase::Checking(id) = up.entries[i].phase else {
            return;
        };
        self.set_phase(run, i, Phase::Ready);
        let proxy_port = self.proxy.as_ref().map(|x| x.port());
        if let Some(p) = self.procs.get_mut(id) {
            let progress = progress("ready", p, proxy_port);
            // One `ready` event per run of the process, however many `up`s see it.
            let first = p.ready_reported != Some(p.started_wall);
            p.ready_reported = Some(p.started_wall);
            let change = super::events::Change::new("ready").pid(p.pid);
            self.up_send(run, &progress);
            if first {
                self.emit(id, change);
            }
        }
        self.up_advance(run);
    }

    /// Whether an `up` watches the lines of `id`.
    pub(super) fn up_wants_lines(&self, id: ProcId) -> bool {
        self.ups.values().any(|u| {
            u.watching(id).is_some_and(|(_, e)| {
                e.phase == Phase::Checking(id) && matches!(e.ready, Readiness::Log(_))
            })
        })
    }

    pub(super) fn up_line(&mut self, id: ProcId, line: &[u8]) {
        let matched: Vec<(u64, usize)> = self
            .ups
            .iter()
            .filter_map(|(&run, u)| {
                let (i, e) = u.watching(id)?;
                let hit = e.phase == Phase::Checking(id)
                    && matches!(&e.ready, Readiness::Log(p) if p.matches(line));
                hit.then_some((run, i))
            })
            .collect();
        for (run, i) in matched {
            self.up_ready(run, i);
        }
    }

    /// Process `id` has exited (or finished stopping).
    pub(super) fn up_exited(&mut self, id: ProcId, exit: Exit) {
        let affected: Vec<(u64, usize, Phase)> = self
            .ups
            .iter()
            .filter_map(|(&run, u)| {
                let (i, e) = u.watching(id)?;
                Some((run, i, e.phase))
            })
            .collect();
        for (run, i, phase) in affected {
            let Some(entry) = self.ups.get(&run).map(|u| &u.entries[i]) else {
                continue;
            };
            let name = entry.def.name.clone();
            match (phase, &entry.ready) {
                (Phase::Replacing(_), _) => {
                    self.up_spawn(run, i, "restarted");
                    // Ready at once when it has no readiness condition.
                    self.up_advance(run);
                }
                (_, Readiness::Exit(code)) if exit.code() == Some(*code) => self.up_ready(run, i),
                (_, Readiness::Exit(code)) => {
                    let reason = format!("{} (expected exit code {code})", exited(exit));
                    self.up_fail(run, &name, reason)
                }
                _ => {
                    let mut reason = format!("{} before it was ready", exited(exit));
                    if let Some(c) = self.procs.get(id).and_then(|p| p.port_conflict.as_ref()) {
                        reason.push_str(&format!("; {c}"));
                    }
                    self.up_fail(run, &name, reason)
                }
            }
        }
    }

    /// A readiness deadline passed: fail if the entry is still not ready.
    pub(super) fn up_deadline(&mut self, run: u64, entry: Option<usize>) {
        let Some(up) = self.ups.get(&run) else { return };
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
        let Some((i, e)) = late else { return };
        let name = e.def.name.clone();
        let limit = match entry {
            Some(_) => e
                .def
                .ready_timeout_ms
                .map_or(DEFAULT_READY_TIMEOUT, Duration::from_millis),
            None => Duration::ZERO,
        };
        let why = self
            .probes
            .owned_by(|o| o == Owner::Up { run, entry: i })
            .first()
            .and_then(|&p| self.probes.last_error(p))
            .map(str::to_string);
        let mut reason = match (entry, e.phase) {
            (None, Phase::Blocked) => "not started before the up --timeout ran out".to_string(),
            (None, _) => "not ready before the up --timeout ran out".to_string(),
            (Some(_), _) => format!("not ready after {}", crate::timefmt::seconds(limit)),
        };
        if let Some(why) = why {
            reason.push_str(&format!(" (last try: {why})"));
        }
        // Still running, but its output may say why it never got ready.
        if let Phase::Checking(id) = e.phase
            && let Some(c) = self.port_conflict(id)
        {
            reason.push_str(&format!("; {c}"));
        }
        self.up_fail(run, &name, reason);
    }

    fn up_fail(&mut self, run: u64, name: &str, reason: String) {
        let Some(up) = self.up_remove(run) else {
            return;
        };
        self.note(&format!("up failed: {name}: {reason}"));
        for probe in self
            .probes
            .owned_by(|o| matches!(o, Owner::Up { run: r, .. } if r == run))
        {
            self.drop_probe(probe);
        }
        self.reply_later(
            up.client,
            &Response::UpFailed {
                name: name.to_string(),
                reason,
            },
        );
    }

    fn set_phase(&mut self, run: u64, i: usize, phase: Phase) {
        let Some(up) = self.ups.get_mut(&run) else {
            return;
        };
        let old = up.entries.get(i).map(|e| e.phase);
        up.set_phase(i, phase);
        if let Some(Phase::Checking(id)) = old {
            self.set_awaiting_ready(id, false);
        }
        if let Phase::Checking(id) = phase {
            self.set_awaiting_ready(id, true);
        }
    }

    fn set_awaiting_ready(&mut self, id: ProcId, on: bool) {
        if let Some(p) = self.procs.get_mut(id) {
            p.awaiting_ready = on;
        }
    }

    /// Ends run `run`: what it was still checking is no longer awaited.
    fn up_remove(&mut self, run: u64) -> Option<UpRun> {
        let up = self.ups.remove(&run)?;
        for e in &up.entries {
            if let Phase::Checking(id) = e.phase {
                self.set_awaiting_ready(id, false);
            }
        }
        Some(up)
    }

    /// A progress line to the client of `run`, written out at once.
    fn up_send(&mut self, run: u64, response: &Response) {
        let Some(client) = self.ups.get(&run).map(|u| u.client) else {
            return;
        };
        self.reply(client, response);
        let broken = self
            .clients
            .get_mut(&client)
            .is_some_and(|c| c.flush().is_err());
        if broken {
            self.close_client(client);
        }
    }

    /// The client went away: its runs end (nothing more is started for them).
    pub(super) fn up_drop_client(&mut self, client: usize) {
        let runs: Vec<u64> = self
            .ups
            .iter()
            .filter(|(_, u)| u.client == client)
            .map(|(r, _)| *r)
            .collect();
        for run in runs {
            self.up_remove(run);
            self.note("up cancelled: its client went away");
            for probe in self
                .probes
                .owned_by(|o| matches!(o, Owner::Up { run: r, .. } if r == run))
            {
                self.drop_probe(probe);
            }
        }
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
