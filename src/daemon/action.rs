//! What a component asks the loop to do. Components own their data and decide;
//! they never touch `Poll`, sockets of other components, or each other. They
//! return `Action`s and the loop (daemon/mod.rs, `apply`) carries them out,
//! routing what one component produced to the next.
//!
//! Keep the variants grouped by the component that returns them most; a
//! variant any component may return sits under "shared".
//!
//! Every type an action carries is defined here or in a module that does
//! not return actions (ids, procs, timers), so that action.rs stays below
//! the components and no two of them meet in an import cycle.

use super::ids::ClientId;
use super::procs::ProcId;
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
    Busy { client: usize },

    // ---- control ----
    /// Answer a client and keep serving it (it was not busy).
    Reply { client: usize, response: Response },
    /// Answer a request that kept the client busy, and free the client.
    ReplyLater { client: usize, response: Response },
    // ---- lifecycle ----
    // ---- output and follow ----
    // ---- events ----
    /// Stream event number `seq` to these subscribers.
    SendEvent {
        to: Vec<ClientId>,
        event: Response,
        seq: u64,
    },
    // ---- waits ----
    // ---- up ----
    // ---- probes ----
    // ---- watch ----
    // ---- proxy ----
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
