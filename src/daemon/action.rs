//! What a component asks the loop to do. Components own their data and decide;
//! they never touch `Poll`, sockets of other components, or each other. They
//! return `Action`s and the loop (daemon/event_loop.rs, `apply`) carries them out,
//! routing what one component produced to the next.
//!
//! Keep the variants grouped by the component that returns them most; a
//! variant any component may return sits under "shared".
//!
//! Every type an action carries is defined here or in a module that does
//! not return actions (ids, procs, timers, spec), so that action.rs stays below
//! the components and no two of them meet in an import cycle.

use super::ids::{ClientId, ProbeId, ProbeOwner, WaitId};
use super::procs::ProcId;
use super::signals::Exit;
use super::spec::Planned;
use super::supervise::Reason;
use super::timers::Timer;
use crate::protocol::Response;
use std::time::Instant;

// Until every component returns actions, some variants have no constructor yet.
#[allow(dead_code)]
#[derive(Debug)]
pub enum Action {
    // ---- shared ----
    /// One line in daemon.log.
    Note(String),
    /// Arm a timer in the loop's one deadline heap.
    Arm { at: Instant, timer: Timer },
    /// Number a state change of a process and stream it to event subscribers.
    Emit { proc: ProcId, change: Change },
    /// The process table changed: rewrite state.json once, at the end of the turn.
    SaveState,
    /// The client's request is in progress: take no further request from it
    /// until a `ReplyLater` frees it. (Added with the events component.)
    Busy { client: ClientId },

    // ---- control ----
    /// Answer a client and keep serving it (it was not busy).
    Reply {
        client: ClientId,
        response: Response,
    },
    /// Answer a request that kept the client busy, and free the client.
    ReplyLater {
        client: ClientId,
        response: Response,
    },
    // ---- lifecycle ----
    /// Signal a process group (`kill(-pgid, signal)`).
    KillGroup { pgid: i32, signal: i32 },
    /// Record why the current run ends (`replace`: over a reason given earlier).
    /// Set by the supervisor's `step`; never reaches the loop.
    StopReason {
        proc: ProcId,
        reason: Reason,
        replace: bool,
    },
    /// Started again by hand or by a change: restart counting starts over.
    /// Set by the supervisor's `step`; never reaches the loop.
    ResetRestarts { proc: ProcId },
    /// The leader of a stopping process was reaped: see whether its group is gone.
    CheckStop { proc: ProcId },
    /// The leader died on its own: report the exit, then what follows an end.
    /// Carried through by the supervisor (`on_exit`); never reaches the loop.
    Died { proc: ProcId, exit: Exit },
    /// A stop finished: report it and what outlived it, then what follows an end.
    /// Carried through by the supervisor; never reaches the loop.
    Stopped { proc: ProcId, exit: Exit },
    /// The run ended and was reported: the restart policy decides, waits for
    /// the exit and requests waiting for the stop are answered. Carried
    /// through by the supervisor; never reaches the loop.
    Ended { proc: ProcId, exit: Exit },
    /// Start the process again with `note` first in its log; `counted`: an
    /// automatic restart, which counts against the policy's maximum.
    Restart {
        proc: ProcId,
        note: String,
        counted: bool,
    },
    /// Stop the process, then start it again with `note` (no client waits).
    /// Carried through by the supervisor (`watch_restart`); never reaches the loop.
    StopThenRestart { proc: ProcId, note: &'static str },
    /// A line of ours in the process's stdout log, delivered like its output.
    Annotate { proc: ProcId, note: String },
    /// Start the process again now with `note` first in its log, and answer
    /// `reply` (a client that asked for the restart) with how that went;
    /// `settled`: the restart waited for a stop (the client is busy, and a
    /// start is noted).
    Respawn {
        proc: ProcId,
        note: &'static str,
        reply: Option<ClientId>,
        settled: bool,
    },
    /// Every process stopped for the shutdown: answer `client` and exit.
    FinishShutdown { client: Option<ClientId> },
    /// Write state.json now, not at the end of the turn (a new run's group).
    SaveStateNow,
    /// A run began: tell followers; the annotation is its first line for
    /// waits and followers.
    RunStarted {
        proc: ProcId,
        annotation: Option<String>,
    },
    // ---- exits (the supervisor's decision at an exit, in order) ----
    /// Append the end of a run to the run journal (the runs component).
    Journal(crate::logs::runs::Entry),
    /// Answer the waits for `proc`'s exit (and its probes' waits) with how it ended.
    ExitWaits { proc: ProcId, exit: Exit },
    /// Answer every request whose processes have all stopped, one at a time.
    Settle,
    /// If `proc` is gone for good and its pipes are drained, its waits and
    /// followers are done (the output component).
    OutputFinished { proc: ProcId },
    /// Tell the `up` runs that `proc` exited.
    UpExited { proc: ProcId, exit: Exit },
    // ---- output and follow ----
    /// Lines of this process are awaited: create its index files now, not on
    /// the way of its first line to the waiter.
    PrepareIndexes { proc: ProcId },
    /// Send live lines (`lines` of them) to a follower; counted as lost if its
    /// socket is full.
    FollowSend {
        client: ClientId,
        response: Response,
        lines: u64,
    },
    /// Tell a follower how many lines it lost, before its end.
    NoteLost { client: ClientId },
    /// Write out what a follower was sent; a broken connection is closed.
    Flush { client: ClientId },
    /// What the output component and the line router ask (`OutputAction`).
    Output(OutputAction),
    // ---- events ----
    /// Stream event number `seq` to these subscribers.
    SendEvent {
        to: Vec<ClientId>,
        event: Response,
        seq: u64,
    },
    // ---- starts (runs) ----
    /// Register the pipes of `proc`'s outputs that are not yet (`UNWATCHED`);
    /// one that cannot be is left out (`Runs::unwatchable`).
    WatchOutputs { proc: ProcId },
    /// Deregister a pipe the loop read (it closes when dropped) and forget its
    /// token; `grown`: its place in the budget of grown pipes is free again.
    UnwatchPipe {
        pipe: Option<mio::unix::pipe::Receiver>,
        token: mio::Token,
        grown: bool,
    },
    // ---- up ----
    /// Start the next entries of an `up` run (`Ups::advance`).
    UpAdvance { run: u64 },
    /// Start entry `entry` of `run` (`event`: started or restarted) and hand
    /// the answer back (`Ups::on_spawned`).
    UpSpawn {
        run: u64,
        entry: usize,
        event: &'static str,
        planned: Box<Planned>,
    },
    /// Begin stopping `proc` (its own grace period; its `StopReason` comes
    /// first), for `entry` of `run` to replace it: start the entry at once
    /// (`Ups::spawn`) if there was nothing to stop.
    UpStop {
        run: u64,
        entry: usize,
        proc: ProcId,
    },
    /// End the probes of `run`.
    UpDropProbes { run: u64 },
    // ---- probes ----
    /// Probe `target` for `owner` (a wait or an `up` entry; its process is
    /// `proc`), first try now.
    Probe {
        owner: ProbeOwner,
        proc: ProcId,
        target: crate::probe::Target,
    },
    /// Register the socket of a probe's new try (`ProbeTable::stream_mut`) and
    /// say how that went (`ProbeTable::on_registered`).
    ProbeRegister { probe: ProbeId },
    /// Deregister and close the socket of a probe's try.
    ProbeClose {
        stream: mio::net::TcpStream,
        token: Option<mio::Token>,
    },
    /// The target of `wait`'s probe is ready: answer the wait with `line`.
    ProbeWaitReady { wait: WaitId, line: String },
    /// The target of an `up` entry's probe is ready.
    ProbeUpReady { run: u64, entry: usize },
    // ---- watch ----
    /// A line from the daemon in `proc`'s stdout log (and to its followers).
    WatchNote { proc: ProcId, note: String },
    // ---- persistence ----
    /// SIGKILL a process group a previous daemon left behind.
    KillOrphan { pgid: i32 },
    // ---- proxy ----
}

/// The output component's actions: one arm of `apply` carries them out.
#[derive(Debug)]
pub enum OutputAction {
    /// A pipe's budget ran out with more to read: read it again next turn.
    ReadAgain { token: mio::Token },
    /// Send the followers' gathered batches and write out what they were sent
    /// (`Followers::flush`): once per read, not per line.
    FlushFollowers,
    /// A pipe of `proc` reached its end: if the process is gone for good and
    /// drained, waits on its output fail and its followers end.
    Ended { proc: ProcId },
    /// Nobody waits on the lines of `proc` any more: close the index files
    /// held open for a waiter (`prepare_indexes`).
    LetGo { proc: ProcId },
}

/// What happened to a process, before it gets its number and time.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Change {
    pub event: &'static str,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<String>,
    pub delay_ms: Option<u64>,
    pub detail: Option<String>,
}

impl Change {
    pub fn new(event: &'static str) -> Change {
        Change {
            event,
            ..Change::default()
        }
    }

    pub fn pid(mut self, pid: u32) -> Change {
        self.pid = Some(pid);
        self
    }

    pub fn exit(mut self, code: Option<i32>, signal: Option<String>) -> Change {
        self.exit_code = code;
        self.exit_signal = signal;
        self
    }

    pub fn delay_ms(mut self, ms: u64) -> Change {
        self.delay_ms = Some(ms);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Change {
        self.detail = Some(detail.into());
        self
    }
}
