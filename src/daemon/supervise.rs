//! Restart policies and exit history: what a process's death means and what to
//! do about it. Pure rules over counters; the loop in `mod.rs` arms the restart
//! timer, writes the annotations and starts the process again.

use super::signals::Exit;
use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

/// Exits kept for `last_exits`.
const HISTORY: usize = 5;
/// The exponential backoff never waits longer than this...
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// ...and starts over once a run lasted this long.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// The window of `crashes_last_minute`.
const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// The shortest restart delay, so a command that dies at once cannot spin.
const MIN_DELAY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Always,
    OnFailure,
    /// Given explicitly: shown in status, restarts nothing.
    Never,
}

/// When and how to start a process again after it died on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// Restarts allowed before the process is left `failed`.
    pub max: Option<u32>,
    pub delay: Duration,
    pub exponential: bool,
}

impl Policy {
    /// From the wire: `always`, `on-failure` or `never` (None). Anything else is an
    /// error, never a silent `never`.
    pub fn from_request(p: &crate::protocol::RestartPolicy) -> Result<Option<Policy>, String> {
        let mode = match p.mode.as_str() {
            "always" => Mode::Always,
            "on-failure" => Mode::OnFailure,
            "never" => Mode::Never,
            other => {
                return Err(format!(
                    "unknown restart mode '{other}' (always, on-failure or never)"
                ));
            }
        };
        let exponential = match p.backoff.as_deref() {
            None => false,
            Some("exponential") => true,
            Some(other) => return Err(format!("unknown backoff '{other}' (exponential)")),
        };
        Ok(Some(Policy {
            mode,
            max: p.max_restarts,
            delay: Duration::from_millis(p.restart_delay_ms).max(MIN_DELAY),
            exponential,
        }))
    }

    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::Always => "always",
            Mode::OnFailure => "on-failure",
            Mode::Never => "never",
        }
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// It died on its own: an exit or a signal we did not send.
    Crashed,
    /// `stop`, `stop-all` or `down`, within the grace period.
    Stopped,
    /// `restart` (or a changed definition under `up`).
    Restarted,
    /// A stop that needed SIGKILL.
    KilledAfterTimeout,
    /// A watched file changed.
    Watch,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Crashed => "crashed",
            Reason::Stopped => "stopped",
            Reason::Restarted => "restarted",
            Reason::KilledAfterTimeout => "killed-after-timeout",
            Reason::Watch => "watch",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ExitRecord {
    pub exit: Exit,
    pub at: SystemTime,
    pub reason: Reason,
}

/// What to do after a death.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: no policy, a clean exit under on-failure, or we ended it.
    Stay,
    /// Start again after `delay`; this will be restart number `attempt`.
    Restart { delay: Duration, attempt: u32 },
    /// The restarts allowed are used up.
    GiveUp { max: u32 },
}

/// A process's supervision record, kept across its runs.
#[derive(Debug, Default)]
pub struct Supervision {
    /// Automatic restarts since it was last started by hand.
    pub restarts: u32,
    /// A manual stop turned automatic restarts off (until `restart` or `run`).
    pub disabled: bool,
    /// Quick deaths in a row, for the exponential backoff.
    streak: u32,
    pub exits: VecDeque<ExitRecord>,
    crashes: VecDeque<Instant>,
    /// Set when we begin ending the run, so its exit is not taken for a crash.
    pub stop_reason: Option<Reason>,
    pub exited_at: Option<SystemTime>,
}

impl Supervision {
    /// Started again by hand (`run` of the name, `restart`): counting starts over.
    pub fn reset(&mut self) {
        self.restarts = 0;
        self.disabled = false;
        self.streak = 0;
    }

    /// Why the run ends: `replace` overrides a reason already given.
    pub fn set_stop_reason(&mut self, reason: Reason, replace: bool) {
        if replace {
            self.stop_reason = Some(reason);
        } else {
            self.stop_reason.get_or_insert(reason);
        }
    }

    /// Record the end of a run that lasted `ran_for` and decide what follows.
    pub fn record(
        &mut self,
        exit: Exit,
        ran_for: Duration,
        policy: Option<&Policy>,
        now: Instant,
    ) -> Decision {
        let reason = self.stop_reason.take().unwrap_or(Reason::Crashed);
        self.exited_at = Some(SystemTime::now());
        if self.exits.len() == HISTORY {
            self.exits.pop_front();
        }
        self.exits.push_back(ExitRecord {
            exit,
            at: SystemTime::now(),
            reason,
        });
        if reason == Reason::Crashed {
            if self.crashes.len() == 64 {
                self.crashes.pop_front();
            }
            self.crashes.push_back(now);
        }
        let Some(policy) = policy else {
            return Decision::Stay;
        };
        let clean = exit == Exit::Code(0);
        if reason != Reason::Crashed
            || self.disabled
            || policy.mode == Mode::Never
            || (policy.mode == Mode::OnFailure && clean)
        {
            return Decision::Stay;
        }
        if let Some(max) = policy.max
            && self.restarts >= max
        {
            return Decision::GiveUp { max };
        }
        if ran_for >= STABLE_AFTER {
            self.streak = 0;
        }
        let delay = if policy.exponential {
            let factor = 1u32 << self.streak.min(16);
            policy
                .delay
                .saturating_mul(factor)
                .min(BACKOFF_CAP.max(policy.delay))
        } else {
            policy.delay
        };
        self.streak = self.streak.saturating_add(1);
        Decision::Restart {
            delay,
            attempt: self.restarts + 1,
        }
    }

    /// Crashes in the last minute.
    pub fn crashes_last_minute(&self, now: Instant) -> u32 {
        self.crashes
            .iter()
            .filter(|&&t| now.saturating_duration_since(t) < CRASH_WINDOW)
            .count() as u32
    }
}

/// How a run ended, for the run journal: `exited 1`, `killed by SIGSEGV`,
/// `stopped (killed by SIGTERM)`, `restarted after file change (exited 0)`.
pub fn ended(record: &ExitRecord) -> String {
    let how = match record.exit {
        Exit::Code(c) => format!("exited {c}"),
        Exit::Signal(_) => record.exit.describe(),
    };
    match record.reason {
        Reason::Crashed => how,
        Reason::Stopped => format!("stopped ({how})"),
        Reason::Restarted => format!("restarted ({how})"),
        Reason::KilledAfterTimeout => format!("stopped, did not exit in time ({how})"),
        Reason::Watch => format!("restarted after file change ({how})"),
    }
}

/// `[agent-procs] Restarted (exit 1, attempt 2/5)`.
pub fn restarted_note(exit: Exit, attempt: u32, max: Option<u32>) -> String {
    let how = match exit {
        Exit::Code(c) => format!("exit {c}"),
        Exit::Signal(_) => exit.describe(),
    };
    let of = max.map(|m| format!("/{m}")).unwrap_or_default();
    format!("[agent-procs] Restarted ({how}, attempt {attempt}{of})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: Mode, max: Option<u32>, exponential: bool) -> Policy {
        Policy {
            mode,
            max,
            delay: Duration::from_millis(100),
            exponential,
        }
    }

    #[test]
    fn policies_decide_by_mode_exit_and_count() {
        let quick = Duration::from_millis(10);
        let now = Instant::now();
        let restart = |attempt| Decision::Restart {
            delay: Duration::from_millis(100),
            attempt,
        };
        // (mode, exit, expected decision on the first death)
        let table = [
            (Some(Mode::Always), Exit::Code(0), restart(1)),
            (Some(Mode::Always), Exit::Code(1), restart(1)),
            (Some(Mode::Always), Exit::Signal(9), restart(1)),
            (Some(Mode::OnFailure), Exit::Code(0), Decision::Stay),
            (Some(Mode::OnFailure), Exit::Code(3), restart(1)),
            (Some(Mode::OnFailure), Exit::Signal(11), restart(1)),
            (Some(Mode::Never), Exit::Code(1), Decision::Stay),
            (None, Exit::Code(1), Decision::Stay),
        ];
        for (mode, exit, want) in table {
            let p = mode.map(|m| policy(m, Some(2), false));
            let mut s = Supervision::default();
            assert_eq!(
                s.record(exit, quick, p.as_ref(), now),
                want,
                "{mode:?} {exit:?}"
            );
        }
        let p = policy(Mode::Always, Some(2), false);
        let mut s = Supervision::default();
        for attempt in 1..=2 {
            assert_eq!(
                s.record(Exit::Code(1), quick, Some(&p), now),
                restart(attempt)
            );
            s.restarts += 1;
        }
        assert_eq!(
            s.record(Exit::Code(1), quick, Some(&p), now),
            Decision::GiveUp { max: 2 }
        );
        assert_eq!(s.crashes_last_minute(now), 3);
    }

    #[test]
    fn our_own_stops_and_a_disabled_policy_do_not_restart() {
        let p = policy(Mode::Always, None, false);
        let now = Instant::now();
        let mut s = Supervision {
            stop_reason: Some(Reason::Stopped),
            ..Supervision::default()
        };
        assert_eq!(
            s.record(Exit::Signal(15), Duration::ZERO, Some(&p), now),
            Decision::Stay
        );
        assert_eq!(s.exits.back().map(|e| e.reason), Some(Reason::Stopped));
        s.disabled = true;
        assert_eq!(
            s.record(Exit::Code(1), Duration::ZERO, Some(&p), now),
            Decision::Stay
        );
        assert_eq!(s.crashes_last_minute(now), 1);
        for _ in 0..10 {
            s.record(Exit::Code(1), Duration::ZERO, Some(&p), now);
        }
        assert_eq!(s.exits.len(), HISTORY);
    }

    #[test]
    fn exponential_backoff_doubles_up_to_the_cap_and_resets_after_a_stable_run() {
        let p = policy(Mode::Always, None, true);
        let now = Instant::now();
        let mut s = Supervision::default();
        let mut delays = Vec::new();
        for _ in 0..12 {
            if let Decision::Restart { delay, .. } =
                s.record(Exit::Code(1), Duration::ZERO, Some(&p), now)
            {
                delays.push(delay.as_millis());
            }
        }
        assert_eq!(&delays[..5], &[100, 200, 400, 800, 1600]);
        assert_eq!(delays.last(), Some(&30_000));
        let Decision::Restart { delay, .. } =
            s.record(Exit::Code(1), Duration::from_secs(31), Some(&p), now)
        else {
            panic!("expected a restart");
        };
        assert_eq!(delay, Duration::from_millis(100));
    }

    #[test]
    fn notes_read_like_0_6() {
        assert_eq!(
            restarted_note(Exit::Code(1), 2, Some(5)),
            "[agent-procs] Restarted (exit 1, attempt 2/5)"
        );
        assert_eq!(
            restarted_note(Exit::Signal(9), 3, None),
            "[agent-procs] Restarted (killed by SIGKILL, attempt 3)"
        );
    }
}
