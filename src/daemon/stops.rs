//! Requests that wait for processes to stop (`stop`, `restart`, `stop-all`,
//! `down`), and the stops deferred until dependents are gone. It decides which
//! request is settled and which stop may begin; the loop signals and answers.

use super::ids::ClientId;
use super::procs::{ProcId, ProcTable, State};
use std::collections::HashSet;
use std::time::Duration;

/// A request that is answered later, when processes have finished stopping.
#[derive(Debug, PartialEq)]
pub enum Pending {
    Stop {
        client: ClientId,
        proc: ProcId,
        label: String,
    },
    Restart {
        client: ClientId,
        proc: ProcId,
        /// The annotation the new run starts with.
        note: &'static str,
    },
    StopAll {
        client: ClientId,
        remaining: HashSet<ProcId>,
    },
    Shutdown {
        client: Option<ClientId>,
        remaining: HashSet<ProcId>,
    },
}

/// A stop waiting for what depends on it, with the grace period asked for.
pub type Deferred = (ProcId, Option<Duration>);

#[derive(Default)]
pub struct Stops {
    pending: Vec<Pending>,
    /// Processes a stop-all or shutdown stops once their dependents are gone.
    deferred: Vec<Deferred>,
}

fn stopped(procs: &ProcTable, id: ProcId) -> bool {
    procs.get(id).is_none_or(|p| !p.state.is_alive())
}

impl Stops {
    /// Answer `request` once its processes have stopped.
    pub fn push(&mut self, request: Pending) {
        self.pending.push(request);
    }

    /// Stop `id` once no live process depends on it (asked again: once).
    pub fn defer(&mut self, id: ProcId, requested: Option<Duration>) {
        self.deferred.retain(|(d, _)| *d != id);
        self.deferred.push((id, requested));
    }

    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// The deferred stops that may begin now: those no live process depends on.
    /// When none may but nothing is stopping either, nothing would ever free
    /// them (dependencies from two configs can form a cycle): all of them.
    pub fn releasable(&mut self, procs: &ProcTable) -> Vec<Deferred> {
        let live_needs: HashSet<&str> = procs
            .iter()
            .filter(|p| p.state.is_alive())
            .flat_map(|p| p.spec.depends_on.iter().map(String::as_str))
            .collect();
        let mut free: Vec<Deferred> = self
            .deferred
            .iter()
            .filter(|(id, _)| {
                procs
                    .get(*id)
                    .is_none_or(|p| !live_needs.contains(p.name.as_str()))
            })
            .copied()
            .collect();
        if free.is_empty() {
            let in_flight = procs
                .iter()
                .any(|p| matches!(p.state, State::Stopping { .. }));
            if in_flight {
                return Vec::new();
            }
            free = std::mem::take(&mut self.deferred);
        }
        self.deferred.retain(|d| !free.contains(d));
        free
    }

    /// Client `id` went away: its requests still complete (the stops go on),
    /// answered to nobody.
    pub fn drop_client(&mut self, id: ClientId) {
        for p in &mut self.pending {
            match p {
                Pending::Stop { client, .. }
                | Pending::Restart { client, .. }
                | Pending::StopAll { client, .. }
                    if *client == id =>
                {
                    *client = ClientId(usize::MAX);
                }
                Pending::Shutdown { client, .. } if *client == Some(id) => *client = None,
                _ => {}
            }
        }
    }

    /// The first request whose processes have all stopped, taken off the list.
    /// One at a time: answering one (a restart) may start processes again.
    pub fn next_settled(&mut self, procs: &ProcTable) -> Option<Pending> {
        let i = self.pending.iter_mut().position(|p| match p {
            Pending::Stop { proc, .. } | Pending::Restart { proc, .. } => stopped(procs, *proc),
            Pending::StopAll { remaining, .. } | Pending::Shutdown { remaining, .. } => {
                remaining.retain(|id| !stopped(procs, *id));
                remaining.is_empty()
            }
        })?;
        Some(self.pending.remove(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::procs::Proc;
    use crate::daemon::signals::Exit;
    use crate::daemon::spec::Spec;
    use std::time::Instant;

    fn table(procs: &[(&str, bool, &[&str])]) -> ProcTable {
        let mut t = ProcTable::default();
        for (name, alive, needs) in procs {
            let id = t.allocate_id();
            let spec = Spec {
                depends_on: needs.iter().map(|n| n.to_string()).collect(),
                ..Spec::for_test("x")
            };
            let mut p = Proc::new(id, name.to_string(), spec);
            p.state = if *alive {
                State::Running {
                    pid: 100 + id.0,
                    since: Instant::now(),
                }
            } else {
                State::Exited {
                    exit: Exit::Code(0),
                }
            };
            t.insert(p);
        }
        t
    }

    fn set(procs: &mut ProcTable, id: ProcId, state: State) {
        if let Some(p) = procs.get_mut(id) {
            p.state = state;
        }
    }

    #[test]
    fn dependents_stop_before_what_they_need() {
        // web needs api needs db; all three are deferred by a stop-all.
        let mut procs = table(&[
            ("db", true, &[]),
            ("api", true, &["db"]),
            ("web", true, &["api"]),
        ]);
        let ids: Vec<ProcId> = procs.ids();
        let mut stops = Stops::default();
        for &id in &ids {
            stops.defer(id, None);
        }
        assert_eq!(stops.releasable(&procs), vec![(ids[2], None)], "web first");
        let stopping = State::Stopping {
            pid: 1,
            since: Instant::now(),
            leader: None,
            generation: 1,
            kills: 0,
        };
        set(&mut procs, ids[2], stopping);
        assert_eq!(
            stops.releasable(&procs),
            vec![],
            "api waits while web stops"
        );
        set(
            &mut procs,
            ids[2],
            State::Exited {
                exit: Exit::Code(0),
            },
        );
        assert_eq!(stops.releasable(&procs), vec![(ids[1], None)]);
        set(
            &mut procs,
            ids[1],
            State::Exited {
                exit: Exit::Code(0),
            },
        );
        assert_eq!(stops.releasable(&procs), vec![(ids[0], None)]);
        assert!(!stops.has_deferred());
    }

    #[test]
    fn a_dependency_cycle_is_stopped_together() {
        let procs = table(&[("a", true, &["b"]), ("b", true, &["a"])]);
        let ids = procs.ids();
        let mut stops = Stops::default();
        let grace = Some(Duration::from_secs(1));
        stops.defer(ids[0], grace);
        stops.defer(ids[1], None);
        stops.defer(ids[0], grace); // asked twice: stopped once
        let mut free = stops.releasable(&procs);
        free.sort();
        assert_eq!(free, vec![(ids[0], grace), (ids[1], None)]);
        assert!(!stops.has_deferred());
    }

    #[test]
    fn requests_settle_when_their_processes_are_down() {
        let mut procs = table(&[("a", true, &[]), ("b", true, &[]), ("c", false, &[])]);
        let ids = procs.ids();
        let mut stops = Stops::default();
        stops.push(Pending::Stop {
            client: ClientId(1),
            proc: ids[0],
            label: "a".into(),
        });
        stops.push(Pending::StopAll {
            client: ClientId(2),
            remaining: ids.iter().copied().collect(),
        });
        stops.push(Pending::Restart {
            client: ClientId(3),
            proc: ids[2],
            note: "n",
        });
        // c is down already: its restart is settled, the others wait.
        assert!(matches!(
            stops.next_settled(&procs),
            Some(Pending::Restart {
                client: ClientId(3),
                ..
            })
        ));
        assert_eq!(stops.next_settled(&procs), None);
        set(
            &mut procs,
            ids[0],
            State::Exited {
                exit: Exit::Code(0),
            },
        );
        assert!(matches!(
            stops.next_settled(&procs),
            Some(Pending::Stop {
                client: ClientId(1),
                ..
            })
        ));
        assert_eq!(stops.next_settled(&procs), None, "b still runs");
        set(&mut procs, ids[1], State::Failed { reason: "x".into() });
        assert!(matches!(
            stops.next_settled(&procs),
            Some(Pending::StopAll {
                client: ClientId(2),
                ..
            })
        ));
        assert_eq!(stops.next_settled(&procs), None);
    }

    #[test]
    fn a_client_that_left_is_forgotten_but_its_request_kept() {
        let mut stops = Stops::default();
        stops.push(Pending::Shutdown {
            client: Some(ClientId(4)),
            remaining: HashSet::new(),
        });
        stops.push(Pending::StopAll {
            client: ClientId(4),
            remaining: HashSet::new(),
        });
        stops.push(Pending::StopAll {
            client: ClientId(5),
            remaining: HashSet::new(),
        });
        stops.drop_client(ClientId(4));
        let procs = table(&[]);
        assert_eq!(
            stops.next_settled(&procs),
            Some(Pending::Shutdown {
                client: None,
                remaining: HashSet::new()
            })
        );
        let nobody = ClientId(usize::MAX);
        assert!(matches!(
            stops.next_settled(&procs),
            Some(Pending::StopAll { client, .. }) if client == nobody
        ));
        // Another client's request is still answered to it.
        assert!(matches!(
            stops.next_settled(&procs),
            Some(Pending::StopAll {
                client: ClientId(5),
                ..
            })
        ));
    }
}
