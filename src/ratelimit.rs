//! How often one cause may be noted in daemon.log: at most once a minute, so a
//! condition that repeats on every event (out of descriptors, a connection flood)
//! costs one line, not a line per event. Pure: the caller passes the time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One line per cause per minute.
pub const EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct NoteLimit {
    /// When each cause was last let through, and how many were held back since.
    last: HashMap<&'static str, (Instant, u64)>,
}

impl NoteLimit {
    /// Whether a note for `cause` may be written now. `Some(n)`: yes, and `n`
    /// notes of that cause were held back since the last one (0 the first time).
    pub fn allow(&mut self, cause: &'static str, now: Instant) -> Option<u64> {
        match self.last.get_mut(cause) {
            Some((at, held)) if now.saturating_duration_since(*at) < EVERY => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                *at = now;
                Some(std::mem::take(held))
            }
            None => {
                self.last.insert(cause, (now, 0));
                Some(0)
            }
        }
    }
}

/// `msg`, saying how many like it were held back, if any.
pub fn with_held(msg: &str, held: u64) -> String {
    match held {
        0 => msg.to_string(),
        n => format!("{msg} ({n} more like it in the last minute not shown)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_note_per_cause_per_minute_counting_the_rest() {
        let t0 = Instant::now();
        let mut limit = NoteLimit::default();
        assert_eq!(limit.allow("accept", t0), Some(0));
        assert_eq!(limit.allow("cap", t0), Some(0), "causes are counted apart");
        for s in 1..60 {
            assert_eq!(limit.allow("accept", t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(limit.allow("accept", t0 + EVERY), Some(59));
        assert_eq!(limit.allow("accept", t0 + EVERY), None);
        assert_eq!(limit.allow("accept", t0 + EVERY * 2), Some(1));
        assert_eq!(limit.allow("cap", t0 + EVERY * 3), Some(0));
    }

    #[test]
    fn held_notes_are_counted_in_the_next_line() {
        assert_eq!(with_held("x", 0), "x");
        assert_eq!(
            with_held("x", 3),
            "x (3 more like it in the last minute not shown)"
        );
    }
}
