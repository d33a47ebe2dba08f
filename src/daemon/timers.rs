//! The deadline heap that sets the poll timeout. Cancelling is lazy: a timer that
//! fires for something that moved on (a stop that finished, a wait that matched)
//! finds nothing to do, because each carries the generation it was armed for.

use super::ids::{ClientId, ProbeId, WaitId};
use super::procs::ProcId;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// SIGKILL the group of this process if its stop (of this generation) is still pending.
    Escalate { proc: ProcId, generation: u64 },
    /// A `wait` ran out of time.
    WaitDeadline { wait: WaitId },
    /// A `logs --follow` ran out of time.
    FollowDeadline { client: ClientId, generation: u64 },
    /// Stop waiting for the last replies to drain and exit.
    ExitDeadline,
    /// Try accepting again after running out of descriptors.
    RetryAccept,
    /// A restart policy's delay is over (if the process still waits, in this generation).
    Restart { proc: ProcId, generation: u64 },
    /// The debounce after a watched file changed is over.
    WatchRestart { proc: ProcId },
    /// Start the next try of a readiness probe.
    ProbeTry { probe: ProbeId },
    /// Give up on try number `tries` of a probe if it is still going.
    ProbeTimeout { probe: ProbeId, tries: u64 },
    /// Entry `entry` of an `up` run must be ready by now.
    ReadyDeadline { run: u64, entry: usize },
    /// The whole `up` run must be done by now (`up --timeout`).
    UpDeadline { run: u64 },
    /// Start the next processes of an `up` run that had more than one turn's worth.
    UpContinue { run: u64 },
    /// The proxy asked to be woken (a connection's deadline, or accepting again).
    Proxy(crate::proxy::Wake),
}

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
}

impl Timers {
    pub fn arm(&mut self, when: Instant, timer: Timer) {
        self.heap.push(Reverse((when, timer)));
    }

    /// How long poll may sleep: until the earliest deadline, or forever when none.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((when, _))| when.saturating_duration_since(now))
    }

    /// Remove and return the earliest timer if it is due.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((when, _))) if *when <= now => self.heap.pop().map(|Reverse((_, t))| t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_timers_means_sleep_forever() {
        assert_eq!(Timers::default().next_timeout(Instant::now()), None);
    }

    #[test]
    fn earliest_deadline_sets_the_timeout_and_fires_first() {
        let now = Instant::now();
        let mut t = Timers::default();
        t.arm(now + Duration::from_secs(5), Timer::ExitDeadline);
        t.arm(
            now + Duration::from_secs(1),
            Timer::WaitDeadline { wait: WaitId(7) },
        );
        assert_eq!(t.next_timeout(now), Some(Duration::from_secs(1)));
        assert_eq!(t.pop_due(now), None);
        assert_eq!(
            t.pop_due(now + Duration::from_secs(2)),
            Some(Timer::WaitDeadline { wait: WaitId(7) })
        );
        assert_eq!(t.pop_due(now + Duration::from_secs(2)), None);
        assert_eq!(
            t.next_timeout(now + Duration::from_secs(9)),
            Some(Duration::ZERO)
        );
    }
}
