//! The events component: every state change of a process gets the next
//! sequence number and is kept in a short ring, so `events --since SEQ` can
//! replay what a client missed, and each new event goes to the subscribers.
//! It owns the ring and the subscriber list and returns the sends as actions.

use super::action::Action;
/// `Change` is part of the actions' vocabulary (action.rs), so that the
/// components returning actions do not import each other through it.
pub use super::action::Change;
use super::ids::ClientId;
use super::procs::{ProcId, ProcTable};
use crate::protocol::Response;
use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

/// Events kept for replay. A client that was away for longer re-reads `status`.
const KEPT: usize = 1024;

/// The event log and the clients streaming it.
#[derive(Default)]
pub struct Events {
    log: EventLog,
    subscribers: Vec<ClientId>,
}

impl Events {
    /// `events [--since SEQ]`: the client is busy from now on, first with what
    /// it missed after `since` (if it said), then with each new event.
    pub fn subscribe(&mut self, client: ClientId, since: Option<u64>) -> Vec<Action> {
        let mut actions = vec![Action::Busy { client }];
        if let Some(since) = since {
            let (missed, replay) = self.log.since(since);
            if missed > 0 {
                let response = lost(missed, since.saturating_add(missed));
                actions.push(Action::Reply { client, response });
            }
            for event in replay {
                let response = event.clone();
                actions.push(Action::Reply { client, response });
            }
        }
        self.subscribers.push(client);
        actions
    }

    /// Number a change of process `id` of `procs` and stream it to the
    /// subscribers (nothing for a process no longer in the table).
    pub fn on_change(&mut self, procs: &ProcTable, id: ProcId, change: Change) -> Vec<Action> {
        match procs.get(id) {
            Some(p) => self.emit(&p.name, id, change),
            None => Vec::new(),
        }
    }

    /// Number a change of process `id` (named `name`) and stream it to the subscribers.
    pub fn emit(&mut self, name: &str, id: ProcId, change: Change) -> Vec<Action> {
        let seq = self.log.last_seq() + 1;
        let event = self.log.record(name, id, change);
        if self.subscribers.is_empty() {
            return Vec::new();
        }
        vec![Action::SendEvent {
            to: self.subscribers.clone(),
            event: event.clone(),
            seq,
        }]
    }

    /// The client has gone: stream nothing more to it.
    pub fn drop_client(&mut self, client: ClientId) {
        self.subscribers.retain(|&c| c != client);
    }
}

#[derive(Default)]
pub struct EventLog {
    last_seq: u64,
    recent: VecDeque<Response>,
}

impl EventLog {
    /// Number the change, keep it, and return the event to send.
    pub fn record(&mut self, name: &str, id: ProcId, change: Change) -> &Response {
        self.last_seq += 1;
        if self.recent.len() == KEPT {
            self.recent.pop_front();
        }
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.recent.push_back(Response::Event {
            seq: self.last_seq,
            at_ms,
            name: name.to_string(),
            id: format!("p{id}"),
            event: change.event.to_string(),
            pid: change.pid,
            exit_code: change.exit_code,
            exit_signal: change.exit_signal,
            delay_ms: change.delay_ms,
            detail: change.detail,
        });
        // Just pushed, so the ring is not empty.
        &self.recent[self.recent.len() - 1]
    }

    /// The sequence number of the newest event, 0 before the first.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The events after `seq` still held, and how many after it are no longer held.
    pub fn since(&self, seq: u64) -> (u64, impl Iterator<Item = &Response>) {
        let oldest = self.last_seq + 1 - self.recent.len() as u64;
        let missed = oldest.saturating_sub(seq.saturating_add(1));
        let skip = seq.saturating_add(1).saturating_sub(oldest);
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        (missed, self.recent.iter().skip(skip))
    }
}

/// The note a slow subscriber gets in place of the events it lost.
pub fn lost(count: u64, seq: u64) -> Response {
    let at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Response::Event {
        seq,
        at_ms,
        name: String::new(),
        id: String::new(),
        event: "lost".into(),
        pid: None,
        exit_code: None,
        exit_signal: None,
        delay_ms: None,
        detail: Some(format!(
            "{count} events dropped: this reader was too slow; read status again"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs<'a>(events: impl Iterator<Item = &'a Response>) -> Vec<u64> {
        events
            .map(|e| match e {
                Response::Event { seq, .. } => *seq,
                _ => 0,
            })
            .collect()
    }

    #[test]
    fn subscribers_get_what_they_missed_then_each_new_event_until_they_go() {
        let mut events = Events::default();
        // Nobody listens: the event is numbered and kept, and nothing is sent.
        assert!(
            events
                .emit("api", ProcId(1), Change::new("started"))
                .is_empty()
        );
        let actions = events.subscribe(ClientId(5), Some(0));
        assert!(matches!(
            actions[0],
            Action::Busy {
                client: ClientId(5)
            }
        ));
        assert!(matches!(
            &actions[1],
            Action::Reply {
                client: ClientId(5),
                response: Response::Event { seq: 1, .. }
            }
        ));
        assert_eq!(actions.len(), 2);
        events.subscribe(ClientId(6), None);
        let sent = events.emit("api", ProcId(1), Change::new("exited"));
        match &sent[..] {
            [
                Action::SendEvent {
                    to,
                    seq: 2,
                    event: Response::Event { event, .. },
                },
            ] => {
                assert_eq!(to, &[ClientId(5), ClientId(6)]);
                assert_eq!(event, "exited");
            }
            other => panic!("{other:?}"),
        }
        events.drop_client(ClientId(5));
        match &events.emit("api", ProcId(1), Change::new("started"))[..] {
            [Action::SendEvent { to, .. }] => assert_eq!(to, &[ClientId(6)]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_subscriber_that_fell_behind_the_ring_is_told_how_many_it_lost() {
        let mut events = Events::default();
        for _ in 0..KEPT + 3 {
            events.emit("api", ProcId(1), Change::new("started"));
        }
        let actions = events.subscribe(ClientId(1), Some(0));
        assert_eq!(actions.len(), 2 + KEPT);
        match &actions[1] {
            Action::Reply {
                response: Response::Event { event, seq, .. },
                ..
            } => {
                assert_eq!((event.as_str(), *seq), ("lost", 3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn events_are_numbered_from_one_and_replayed_after_a_seq() {
        let mut log = EventLog::default();
        assert_eq!(log.last_seq(), 0);
        let (missed, none) = log.since(0);
        assert_eq!((missed, seqs(none)), (0, vec![]));
        for _ in 0..5 {
            log.record("api", ProcId(1), Change::new("started").pid(42));
        }
        assert_eq!(log.last_seq(), 5);
        let (missed, after) = log.since(2);
        assert_eq!((missed, seqs(after)), (0, vec![3, 4, 5]));
        let (missed, after) = log.since(5);
        assert_eq!((missed, seqs(after)), (0, vec![]));
        // A seq from the future (another daemon's) replays nothing.
        let (missed, after) = log.since(99);
        assert_eq!((missed, seqs(after)), (0, vec![]));
        let (_, all) = log.since(0);
        assert_eq!(seqs(all), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn only_the_newest_are_kept_and_the_rest_are_counted_as_missed() {
        let mut log = EventLog::default();
        let total = KEPT as u64 + 10;
        for _ in 0..total {
            log.record("api", ProcId(1), Change::new("exited").exit(Some(1), None));
        }
        let (missed, after) = log.since(0);
        let after = seqs(after);
        assert_eq!(missed, 10);
        assert_eq!(after.len(), KEPT);
        assert_eq!(after.first(), Some(&11));
        assert_eq!(after.last(), Some(&total));
        let (missed, after) = log.since(total - 3);
        assert_eq!((missed, seqs(after).len()), (0, 3));
        let (missed, _) = log.since(u64::MAX);
        assert_eq!(missed, 0);
    }

    #[test]
    fn an_event_carries_what_changed_and_encodes_as_one_line() {
        let mut log = EventLog::default();
        let event = log
            .record(
                "web",
                ProcId(3),
                Change::new("backoff")
                    .exit(None, Some("SIGKILL".into()))
                    .delay_ms(2000),
            )
            .clone();
        let mut line = Vec::new();
        crate::protocol::encode_response(&mut line, &event);
        let text = String::from_utf8_lossy(&line);
        assert!(text.starts_with(r#"{"type":"Event","seq":1,"#), "{text}");
        assert!(
            text.contains(r#""name":"web","id":"p3","event":"backoff","#),
            "{text}"
        );
        assert!(
            text.contains(r#""exit_signal":"SIGKILL","delay_ms":2000"#),
            "{text}"
        );
        assert!(
            !text.contains("exit_code"),
            "absent fields are left out: {text}"
        );
        let back: Response = serde_json::from_slice(&line[..line.len() - 1])
            .ok()
            .unwrap_or(Response::Unknown);
        assert_eq!(back, event);
    }

    #[test]
    fn a_change_is_named_from_the_table_and_one_of_a_process_gone_is_dropped() {
        let mut procs = ProcTable::default();
        let id = procs.allocate_id();
        let spec = crate::daemon::spec::Spec::for_test("x");
        procs.insert(crate::daemon::procs::Proc::new(id, "api".into(), spec));
        let mut events = Events::default();
        events.subscribe(ClientId(3), None);
        match &events.on_change(&procs, id, Change::new("started"))[..] {
            [Action::SendEvent { event, seq: 1, .. }] => {
                assert!(matches!(event, Response::Event { name, .. } if name == "api"))
            }
            other => panic!("{other:?}"),
        }
        let gone = procs.allocate_id();
        assert!(
            events
                .on_change(&procs, gone, Change::new("exited"))
                .is_empty()
        );
        assert_eq!(events.log.last_seq(), 1, "not numbered either");
    }
}
