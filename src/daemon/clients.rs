//! The control connections: every client's buffers, owned here. The loop
//! accepts and registers a connection, hands it over, and asks what to do
//! next: handle a request, read on later (a retry of its token), or close it
//! (deregister its stream and tell the components that knew the client).
//! Writing replies, follow lines and events to a client happens here.

use super::action::Action;
use super::control::{Client, ReadOutcome};
use super::ids::ClientId;
use crate::protocol::{Request, Response};
use std::collections::HashMap;

/// Requests taken from one client in one turn before the others get theirs.
pub const REQUESTS_PER_TURN: usize = 64;

#[derive(Default)]
pub struct Clients {
    map: HashMap<ClientId, Client>,
}

/// How reading a client went.
#[derive(Debug, PartialEq)]
pub enum Read {
    /// No such client (closed earlier in this turn).
    Gone,
    /// The connection is broken: close it.
    Broken,
    /// Read what there was; `more`: the budget ran out first.
    Done { more: bool },
}

/// What a client has for the daemon next. (Moved once per request, not
/// boxed: as `protocol::Request` itself, no allocation for it.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Next {
    /// A request to carry out.
    Request(Request),
    /// A bad request line, already answered with its error.
    Answered,
    /// Nothing now (busy, owed too much, no complete line, or gone).
    Idle,
}

/// What the loop does with a client once its requests of this turn are served.
#[derive(Debug, PartialEq)]
pub enum After {
    Keep,
    /// Read on in a later turn (the budget ran out).
    Retry,
    /// Broken, or done on both sides: close it.
    Close,
}

impl Clients {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn add(&mut self, id: ClientId, stream: mio::net::UnixStream) {
        self.map.insert(id, Client::new(stream));
    }

    /// Forget a client; its stream is the loop's to deregister.
    pub fn remove(&mut self, id: ClientId) -> Option<mio::net::UnixStream> {
        self.map.remove(&id).map(|c| c.stream)
    }

    /// Everything owed to every client has been written.
    pub fn drained(&self) -> bool {
        self.map.values().all(|c| !c.has_output())
    }

    /// The exit grace ended: write what fits once more, and drop every client.
    pub fn drop_all(&mut self) {
        for client in self.map.values_mut() {
            let _ = client.flush();
        }
        self.map.clear();
    }

    /// Read what client `id` sent (when `readable`), within its budget.
    pub fn read(&mut self, id: ClientId, readable: bool) -> Read {
        let Some(client) = self.map.get_mut(&id) else {
            return Read::Gone;
        };
        if !readable || client.read_closed {
            return Read::Done { more: false };
        }
        match client.read_some() {
            Ok(ReadOutcome::Drained) => Read::Done { more: false },
            Ok(ReadOutcome::More) => Read::Done { more: true },
            Err(_) => Read::Broken,
        }
    }

    /// The next request of client `id`, if it may make one now.
    pub fn next_request(&mut self, id: ClientId) -> Next {
        let Some(client) = self.map.get_mut(&id) else {
            return Next::Idle;
        };
        if !client.ready_for_request() {
            return Next::Idle;
        }
        match client.next_request() {
            None => Next::Idle,
            Some(Ok(request)) => Next::Request(request),
            Some(Err(message)) => {
                client.send(&Response::error(message));
                Next::Answered
            }
        }
    }

    /// Write out what client `id` is owed and say what becomes of it; `more`:
    /// its read stopped at the budget.
    pub fn after_service(&mut self, id: ClientId, more: bool) -> After {
        let Some(client) = self.map.get_mut(&id) else {
            return After::Keep;
        };
        if client.flush().is_err() || client.finished() {
            return After::Close;
        }
        if more && client.ready_for_request() {
            After::Retry
        } else {
            After::Keep
        }
    }

    pub fn read_closed(&self, id: ClientId) -> bool {
        self.map.get(&id).is_some_and(|c| c.read_closed)
    }

    /// The client may still send (its next requests wait for a read).
    pub fn reading(&self, id: ClientId) -> bool {
        self.map.get(&id).is_some_and(|c| !c.read_closed)
    }

    pub fn send(&mut self, id: ClientId, response: &Response) {
        if let Some(c) = self.map.get_mut(&id) {
            c.send(response);
        }
    }

    /// Take no further request from the client until `free`.
    pub fn set_busy(&mut self, id: ClientId, busy: bool) {
        if let Some(c) = self.map.get_mut(&id) {
            c.busy = busy;
        }
    }

    /// Write out what the client is owed; true when the connection is broken.
    pub fn flush_broken(&mut self, id: ClientId) -> bool {
        self.map.get_mut(&id).is_some_and(|c| c.flush().is_err())
    }

    /// Carry out a follow's action on its client (send lines, tell of lost
    /// ones, write out); returns the client if its connection broke, to close.
    pub fn on_follow(&mut self, action: Action) -> Option<ClientId> {
        match action {
            Action::FollowSend {
                client,
                response,
                lines,
            } => self.send_follow(client, &response, lines),
            Action::NoteLost { client } => self.note_lost(client),
            Action::Flush { client } if self.flush_broken(client) => return Some(client),
            _ => {}
        }
        None
    }

    pub fn send_follow(&mut self, id: ClientId, response: &Response, lines: u64) {
        if let Some(c) = self.map.get_mut(&id) {
            c.send_follow(response, lines);
        }
    }

    pub fn note_lost(&mut self, id: ClientId) {
        if let Some(c) = self.map.get_mut(&id) {
            c.note_lost();
        }
    }

    /// Write event `seq` to each subscriber still connected; returns those whose
    /// connection broke, for the loop to retry (and so close) on a later turn,
    /// not in the middle of this.
    pub fn send_event(&mut self, to: &[ClientId], event: &Response, seq: u64) -> Vec<ClientId> {
        let mut broken = Vec::new();
        for id in to {
            if let Some(c) = self.map.get_mut(id) {
                c.send_event(event, seq);
                // What does not fit in the socket now goes on its writable edge.
                if c.flush().is_err() {
                    broken.push(*id);
                }
            }
        }
        broken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    fn pair() -> (Clients, std::os::unix::net::UnixStream) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        let mut clients = Clients::default();
        clients.add(ClientId(20), mio::net::UnixStream::from_std(ours));
        (clients, theirs)
    }

    #[test]
    fn a_busy_client_gives_no_request_until_freed() {
        let (mut clients, mut peer) = pair();
        let id = ClientId(20);
        peer.write_all(b"{\"type\":\"Status\"}\n\n{\"type\":\"Status\"}\n")
            .expect("write");
        assert_eq!(clients.read(id, true), Read::Done { more: false });
        assert!(matches!(clients.next_request(id), Next::Request(_)));
        clients.set_busy(id, true);
        assert!(matches!(clients.next_request(id), Next::Idle));
        clients.set_busy(id, false);
        // The blank line between is a keep-alive, not a request.
        assert!(matches!(clients.next_request(id), Next::Request(_)));
        assert!(matches!(clients.next_request(id), Next::Idle));
    }

    #[test]
    fn a_bad_line_is_answered_here_and_a_hung_up_peer_is_closed_once_served() {
        let (mut clients, mut peer) = pair();
        let id = ClientId(20);
        peer.write_all(b"not json\n").expect("write");
        peer.shutdown(std::net::Shutdown::Write).expect("shutdown");
        assert_eq!(clients.read(id, true), Read::Done { more: false });
        assert!(clients.read_closed(id));
        assert!(matches!(clients.next_request(id), Next::Answered));
        assert_eq!(clients.after_service(id, false), After::Close);
        assert!(clients.remove(id).is_some());
        let mut answer = String::new();
        peer.read_to_string(&mut answer).expect("read");
        assert!(answer.contains("\"Error\""), "{answer}");
        assert_eq!(clients.read(id, true), Read::Gone);
        assert!(clients.drained());
    }

    #[test]
    fn a_follower_is_sent_its_lines_and_a_broken_one_is_handed_back_to_close() {
        let (mut clients, mut peer) = pair();
        let id = ClientId(20);
        let response = Response::error("a line");
        let send = Action::FollowSend {
            client: id,
            response,
            lines: 1,
        };
        assert_eq!(clients.on_follow(send), None);
        assert_eq!(clients.on_follow(Action::Flush { client: id }), None);
        let mut got = [0u8; 256];
        let n = peer.read(&mut got).expect("read");
        assert!(String::from_utf8_lossy(&got[..n]).contains("a line"));
        drop(peer);
        let again = Action::FollowSend {
            client: id,
            response: Response::error("lost"),
            lines: 1,
        };
        assert_eq!(clients.on_follow(again), None);
        assert_eq!(clients.on_follow(Action::Flush { client: id }), Some(id));
        // A client gone already: nothing to do, nothing to close.
        assert_eq!(
            clients.on_follow(Action::Flush {
                client: ClientId(99)
            }),
            None
        );
    }

    #[test]
    fn events_go_only_to_connected_subscribers() {
        let (mut clients, mut peer) = pair();
        let event = Response::error("x");
        let broken = clients.send_event(&[ClientId(20), ClientId(99)], &event, 1);
        assert!(broken.is_empty());
        assert_eq!(clients.len(), 1);
        drop(clients);
        let mut got = String::new();
        peer.read_to_string(&mut got).expect("read");
        assert_eq!(got.lines().count(), 1);
    }
}
