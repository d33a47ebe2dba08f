//! The process table: each managed process, its lifecycle state, its output
//! pipes and log sinks, and the lookups by name, id and pid. It holds data and
//! rules; the loop in `mod.rs` does the system calls and registrations.

use super::signals::Exit;
use super::spec::Spec;
use crate::logs::store::LogSink;
use crate::protocol::{ProcessInfo, Stream};
use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime};

/// The CPU time of a process group at one reading, to measure the next against
/// (taken and read by `resources.rs`; kept here, with the process it belongs to).
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pub(super) pgid: i32,
    pub(super) ticks: u64,
    pub(super) at: Instant,
    pub(super) percent: f64,
}

/// A process's number in the session's table (`p1`, `p2`, … by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ProcId(pub u32);

impl std::fmt::Display for ProcId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Running {
        pid: u32,
        since: Instant,
    },
    /// SIGTERM sent; `leader` is set once the leader is reaped, while the rest of
    /// the group may still be going. `generation` tells stale escalation timers apart.
    Stopping {
        pid: u32,
        since: Instant,
        leader: Option<Exit>,
        generation: u64,
        kills: u32,
    },
    Exited {
        exit: Exit,
    },
    /// Died; its restart policy starts it again at `until`.
    Backoff {
        exit: Exit,
        until: Instant,
        generation: u64,
    },
    /// A restart could not start the command again, or the restarts ran out.
    Failed {
        reason: String,
    },
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Running { .. } => "running",
            State::Stopping { .. } => "stopping",
            State::Exited { .. } => "exited",
            State::Backoff { .. } => "backoff",
            State::Failed { .. } => "failed",
        }
    }

    pub fn is_alive(&self) -> bool {
        matches!(self, State::Running { .. } | State::Stopping { .. })
    }
}

/// The token of an output whose pipe the loop has not registered yet.
pub const UNWATCHED: mio::Token = mio::Token(usize::MAX);

/// One output stream of the current run: the pipe (until EOF) and its log.
pub struct Output {
    pub pipe: Option<mio::unix::pipe::Receiver>,
    pub token: mio::Token,
    pub sink: LogSink,
    /// The pipe was grown and counts against the daemon's budget until closed.
    pub grown: bool,
}

pub struct Proc {
    pub id: ProcId,
    pub name: String,
    pub spec: Spec,
    pub state: State,
    /// The process group of the current or last run (the leader's pid).
    pub pgid: i32,
    pub pid: u32,
    pub started_wall: SystemTime,
    /// The leader's start time in /proc, to recognise it after a daemon crash.
    pub start_ticks: Option<u64>,
    /// stdout, stderr.
    pub outputs: [Option<Output>; 2],
    /// Restarts, the reasons of past exits, and the restart policy's counters.
    pub sup: super::supervise::Supervision,
    /// What outlived the last stop outside the process group.
    pub survivors: Vec<super::survivors::Survivor>,
    /// The last CPU reading of a `status` that asked for resources.
    pub cpu_sample: Option<CpuSample>,
    /// Who held the port when the last run died saying its address was in use.
    pub port_conflict: Option<String>,
    /// The number of the current or last run in the run journal (0: none yet).
    pub run: u64,
    /// The sequence number its output starts from (taken before its first byte).
    pub run_seq: u64,
    /// An `up` is checking its readiness condition: the proxy waits for it.
    pub awaiting_ready: bool,
    /// The `started_wall` of the run whose `ready` event was sent: a later `up`
    /// that finds that run still going says nothing new about it.
    pub ready_reported: Option<SystemTime>,
}

impl Proc {
    /// The current run became ready: its pid, for the one `ready` event of the
    /// run, or None when that was sent already (another `up` saw it too).
    pub fn mark_ready(&mut self) -> Option<u32> {
        if self.ready_reported == Some(self.started_wall) {
            return None;
        }
        self.ready_reported = Some(self.started_wall);
        Some(self.pid)
    }

    /// A process not started yet (`Failed` until its first run begins).
    pub fn new(id: ProcId, name: String, spec: Spec) -> Proc {
        Proc {
            id,
            name,
            spec,
            state: State::Failed {
                reason: "not started".into(),
            },
            pgid: 0,
            pid: 0,
            started_wall: SystemTime::now(),
            start_ticks: None,
            outputs: [None, None],
            sup: super::supervise::Supervision::default(),
            survivors: Vec::new(),
            cpu_sample: None,
            port_conflict: None,
            run: 0,
            run_seq: 0,
            awaiting_ready: false,
            ready_reported: None,
        }
    }

    pub fn output(&mut self, stream: Stream) -> Option<&mut Output> {
        self.outputs[stream_index(stream)].as_mut()
    }

    /// Both pipes have reached end of file (or there never were any).
    pub fn pipes_closed(&self) -> bool {
        self.outputs
            .iter()
            .all(|o| o.as_ref().is_none_or(|o| o.pipe.is_none()))
    }

    /// How the last run ended, for messages: `exit code 1`, followed by who
    /// held its port when it died saying its address was in use.
    pub fn outcome(&self, exit: Exit) -> String {
        match &self.port_conflict {
            Some(conflict) => format!("{}; {conflict}", exit.describe()),
            None => exit.describe(),
        }
    }

    /// The URL of the process: through the proxy when it listens on `proxy_port`.
    pub fn url(&self, proxy_port: Option<u16>) -> Option<String> {
        let port = self.spec.port?;
        Some(match proxy_port {
            Some(pp) => format!("http://{}.localhost:{pp}", self.name),
            None => format!("http://127.0.0.1:{port}"),
        })
    }

    /// The survivors of the last stop that still run, if any.
    pub fn survivors_alive(&self) -> Option<Vec<crate::protocol::SurvivorInfo>> {
        let alive: Vec<_> = self
            .survivors
            .iter()
            .filter(|s| s.alive())
            .map(|s| crate::protocol::SurvivorInfo {
                pid: s.pid,
                command: s.command.clone(),
            })
            .collect();
        (!alive.is_empty()).then_some(alive)
    }

    pub fn info(&self, now: Instant, proxy_port: Option<u16>) -> ProcessInfo {
        let (exit_code, exit_signal, uptime) = match &self.state {
            State::Running { since, .. } | State::Stopping { since, .. } => (
                None,
                None,
                Some(now.saturating_duration_since(*since).as_secs()),
            ),
            State::Exited { exit } | State::Backoff { exit, .. } => {
                (exit.code(), exit.signal_name(), None)
            }
            // As in 0.6, a failed process keeps the code of its last exit.
            State::Failed { .. } => match self.sup.exits.back() {
                Some(e) => (e.exit.code(), e.exit.signal_name(), None),
                None => (None, None, None),
            },
        };
        let policy = self.spec.restart.as_ref();
        let rfc = crate::timefmt::rfc3339;
        let last_exits = self
            .sup
            .exits
            .iter()
            .map(|e| crate::protocol::ExitInfo {
                code: e.exit.code(),
                signal: e.exit.signal_name(),
                time: rfc(e.at),
                reason: e.reason.name().to_string(),
            })
            .collect::<Vec<_>>();
        let next_restart_in_ms = match self.state {
            State::Backoff { until, .. } => {
                Some(until.saturating_duration_since(now).as_millis() as u64)
            }
            _ => None,
        };
        ProcessInfo {
            schema: None,
            name: self.name.clone(),
            id: format!("p{}", self.id),
            pid: self.pid,
            state: self.state.name().to_string(),
            exit_code,
            uptime_secs: uptime,
            command: self.spec.command.clone(),
            port: self.spec.port,
            url: self.url(proxy_port),
            // null while 0, as in 0.6.
            restart_count: (self.sup.restarts > 0).then_some(self.sup.restarts),
            max_restarts: policy.and_then(|p| p.max),
            restart_policy: policy.map(|p| p.mode_name().to_string()),
            watched: None,
            exit_signal,
            cwd: Some(self.spec.cwd.display().to_string()),
            started_at: (self.pid != 0).then(|| rfc(self.started_wall)),
            exited_at: match self.state {
                State::Running { .. } | State::Stopping { .. } => None,
                _ => self.sup.exited_at.map(rfc),
            },
            last_exits: Some(last_exits),
            next_restart_in_ms,
            crashes_last_minute: Some(self.sup.crashes_last_minute(now)),
            survivors: self.survivors_alive(),
            oneshot: self.spec.oneshot.then_some(true),
            port_conflict: self.port_conflict.clone(),
            ..ProcessInfo::default()
        }
    }
}

pub fn stream_index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

pub const STREAMS: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

#[derive(Default)]
pub struct ProcTable {
    procs: HashMap<ProcId, Proc>,
    /// Ordered, so names and status rows come out sorted without a sort.
    by_name: BTreeMap<String, ProcId>,
    by_pid: HashMap<i32, ProcId>,
    next_id: ProcId,
}

impl ProcTable {
    pub fn allocate_id(&mut self) -> ProcId {
        self.next_id.0 += 1;
        self.next_id
    }

    pub fn insert(&mut self, proc: Proc) {
        self.by_name.insert(proc.name.clone(), proc.id);
        self.procs.insert(proc.id, proc);
    }

    /// Forget a process that never started; its id is handed out again if it was the last.
    pub fn remove_unstarted(&mut self, id: ProcId) -> Option<Proc> {
        if self.next_id == id {
            self.next_id.0 -= 1;
        }
        self.remove(id)
    }

    pub fn remove(&mut self, id: ProcId) -> Option<Proc> {
        let proc = self.procs.remove(&id)?;
        self.by_name.remove(&proc.name);
        self.by_pid.retain(|_, v| *v != id);
        Some(proc)
    }

    pub fn get(&self, id: ProcId) -> Option<&Proc> {
        self.procs.get(&id)
    }

    pub fn get_mut(&mut self, id: ProcId) -> Option<&mut Proc> {
        self.procs.get_mut(&id)
    }

    pub fn by_name(&self, name: &str) -> Option<ProcId> {
        self.by_name.get(name).copied()
    }

    /// A name, or an id of the form `pN`, as 0.6 accepts both.
    pub fn find(&self, target: &str) -> Option<ProcId> {
        self.by_name(target).or_else(|| {
            let id = ProcId(target.strip_prefix('p')?.parse().ok()?);
            self.procs.contains_key(&id).then_some(id)
        })
    }

    pub fn set_pid(&mut self, id: ProcId, pid: i32) {
        self.by_pid.insert(pid, id);
    }

    /// Whether `pid` leads the current run of a managed process.
    pub fn is_leader(&self, pid: i32) -> bool {
        self.by_pid.contains_key(&pid)
    }

    /// Whether an `up` is checking `id`'s readiness (the proxy waits for it).
    pub fn set_awaiting_ready(&mut self, id: ProcId, on: bool) {
        if let Some(p) = self.get_mut(id) {
            p.awaiting_ready = on;
        }
    }

    /// `id`'s current run became ready: its pid, for the one `ready` event of
    /// the run (`Proc::mark_ready`); None for a process that is gone.
    pub fn mark_ready(&mut self, id: ProcId) -> Option<u32> {
        self.get_mut(id)?.mark_ready()
    }

    pub fn take_pid(&mut self, pid: i32) -> Option<ProcId> {
        self.by_pid.remove(&pid)
    }

    pub fn ids(&self) -> Vec<ProcId> {
        let mut ids: Vec<ProcId> = self.procs.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub fn iter(&self) -> impl Iterator<Item = &Proc> {
        self.procs.values()
    }

    /// Names in the table, sorted, for "did you mean" style messages.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    pub fn status(&self, now: Instant, proxy_port: Option<u16>) -> Vec<ProcessInfo> {
        self.by_name
            .values()
            .filter_map(|id| self.procs.get(id))
            .map(|p| p.info(now, proxy_port))
            .collect()
    }
}

/// How long after it starts a process counts as starting for the proxy, which
/// holds a request for such a process up to 5 s when its port refuses.
const STARTING_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// What the proxy sees of the processes: a name, a port and a state.
impl crate::proxy::Backends for ProcTable {
    fn lookup(&self, name: &str) -> crate::proxy::Lookup {
        use crate::proxy::Lookup;
        // Host names arrive lowercased: match names regardless of case.
        let id = self.by_name(name).or_else(|| {
            self.by_name
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, id)| *id)
        });
        let Some(p) = id.and_then(|id| self.get(id)) else {
            return Lookup::Unknown;
        };
        let Some(port) = p.spec.port else {
            return Lookup::Down(format!(
                "{name} has no port; start it with --port P or --proxy to give it one"
            ));
        };
        match &p.state {
            // Just started, or an `up` still waits for it to be ready: a refused
            // connection is waited out. Later, it is a 502 at once.
            State::Running { since, .. } if p.awaiting_ready || since.elapsed() < STARTING_FOR => {
                Lookup::Starting(port)
            }
            State::Running { .. } => Lookup::Up(port),
            State::Stopping { .. } | State::Backoff { .. } => {
                Lookup::Soon(format!("{name} is stopping or restarting"))
            }
            State::Exited { exit } => Lookup::Down(format!(
                "{name} is not running: it exited ({})",
                exit.describe()
            )),
            State::Failed { reason } => Lookup::Down(format!("{name} is not running: {reason}")),
        }
    }

    fn routes(&self) -> Vec<(String, Option<u16>, String)> {
        self.by_name
            .values()
            .filter_map(|id| self.get(*id))
            .map(|p| (p.name.clone(), p.spec.port, p.state.name().to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_reported_ready_once_and_the_next_run_again() {
        let spec = Spec::for_test("server");
        let mut p = Proc::new(ProcId(1), "api".into(), spec);
        p.pid = 42;
        assert_eq!(p.mark_ready(), Some(42));
        assert_eq!(p.mark_ready(), None, "a second up says nothing new");
        p.started_wall += std::time::Duration::from_secs(1);
        assert_eq!(p.mark_ready(), Some(42), "a new run is ready anew");
    }

    #[test]
    fn the_table_marks_readiness_of_the_processes_it_has() {
        let mut table = ProcTable::default();
        let id = table.allocate_id();
        let mut p = Proc::new(id, "api".into(), Spec::for_test("server"));
        p.pid = 42;
        table.insert(p);
        table.set_awaiting_ready(id, true);
        assert!(table.get(id).is_some_and(|p| p.awaiting_ready));
        table.set_awaiting_ready(id, false);
        assert!(table.get(id).is_some_and(|p| !p.awaiting_ready));
        assert_eq!(table.mark_ready(id), Some(42));
        assert_eq!(table.mark_ready(id), None);
        // A process that is gone: nothing to mark, nothing to report.
        table.set_awaiting_ready(ProcId(id.0 + 1), true);
        assert_eq!(table.mark_ready(ProcId(id.0 + 1)), None);
    }
}
