//! Pending `wait` requests: what each waits for, and whether a line or an exit
//! satisfies it. The loop feeds lines and exits in; replies go out through it.

use super::ids::{ClientId, WaitId};
use super::procs::ProcId;
pub use crate::logs::pattern::Pattern;
use std::collections::HashMap;

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

    #[test]
    fn waits_are_taken_once() {
        let mut t = WaitTable::default();
        let pattern = Some(Pattern::new("ready", false, false).unwrap());
        t.add(Wait {
            client: ClientId(1),
            proc: 7,
            pattern,
            pattern_text: "ready".into(),
            exit: false,
            probe: false,
        });
        t.add(Wait {
            client: ClientId(2),
            proc: 7,
            pattern: None,
            pattern_text: String::new(),
            exit: true,
            probe: false,
        });
        assert!(t.take_matching(7, b"not yet").is_empty());
        assert_eq!(t.take_matching(7, b"now ready").len(), 1);
        assert!(t.take_matching(7, b"ready again").is_empty());
        assert_eq!(t.take_exit(7).len(), 1);
        assert!(!t.any_pattern_for(7));
    }
}
