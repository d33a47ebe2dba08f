//! Idle backend connections kept open by port after their client left, so that
//! the next client need not connect again (as nginx's upstream keepalive). The
//! pool only holds sockets; the connections decide what may go in.

use super::ConnId;
use super::socket::Socket;
use std::collections::HashMap;

/// Idle connections kept per backend port: as many as nginx's `keepalive 64`,
/// so that a burst of up to 64 clients that each close after one request finds
/// its backend connections still open (a connect and a close saved per request).
pub const POOL_PER_PORT: usize = 64;

/// A pooled connection stays registered under the token of the client it last
/// served (whose id is never reused), so it costs no system call to pool. Any
/// event for it means bytes nobody asked for or a hang-up: it could only hand
/// the next client someone else's response, so it is closed at once (`evict`).
/// Events come in the order the kernel saw them, so bytes that arrived before
/// a request are seen before that request is sent on a pooled connection.
pub struct Pool<S> {
    by_port: HashMap<u16, Vec<(ConnId, S)>>,
    /// Pooled connections by the id of their token, to their port.
    ports: HashMap<ConnId, u16>,
    /// Connections taken from the pool keep the token they were registered
    /// under (re-registering would cost a system call per request): by that
    /// token's id, the client connection that holds them now.
    lent: HashMap<ConnId, ConnId>,
}

impl<S> Default for Pool<S> {
    fn default() -> Self {
        Pool {
            by_port: HashMap::new(),
            ports: HashMap::new(),
            lent: HashMap::new(),
        }
    }
}

impl<S: Socket> Pool<S> {
    /// Keep `stream` (registered under `id`'s token) for `port`; false when
    /// that port's share is full (then the caller closes it).
    pub fn put(&mut self, id: ConnId, port: u16, stream: S) -> bool {
        let idle = self.by_port.entry(port).or_default();
        if idle.len() >= POOL_PER_PORT {
            return false;
        }
        idle.push((id, stream));
        self.ports.insert(id, port);
        self.lent.remove(&id);
        true
    }

    /// The most recently pooled connection to `port`, and the id of its token.
    fn take(&mut self, port: u16) -> Option<(ConnId, S)> {
        let (id, stream) = self.by_port.get_mut(&port)?.pop()?;
        self.ports.remove(&id);
        Some((id, stream))
    }

    /// An idle connection to `port`, lent to client `holder`. With `check`, one
    /// the backend has not closed (a request with a body cannot be sent again;
    /// one without is retried on a new connection if the old one turns out
    /// closed, so it skips the check).
    pub fn lend(&mut self, port: u16, holder: ConnId, check: bool) -> Option<(ConnId, S)> {
        while let Some((id, mut stream)) = self.take(port) {
            // Still open and silent: reading would block.
            let live = !check
                || matches!(stream.read(&mut [0u8; 1]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            if live {
                self.lent.insert(id, holder);
                return Some((id, stream));
            }
        }
        None
    }

    /// The client connection that holds the connection of token `id`, if lent.
    pub fn holder(&self, id: ConnId) -> Option<ConnId> {
        self.lent.get(&id).copied()
    }

    /// The connection of token `id` is no longer lent (closed, or back in the pool).
    pub fn returned(&mut self, id: ConnId) {
        self.lent.remove(&id);
    }

    /// Close the pooled connection of token `id`, if there is one.
    pub fn evict(&mut self, id: ConnId) -> bool {
        let Some(port) = self.ports.remove(&id) else {
            return false;
        };
        if let Some(idle) = self.by_port.get_mut(&port) {
            idle.retain(|(i, _)| *i != id);
        }
        true
    }

    /// Close the longest-idle connection of some port, to free a descriptor.
    pub fn evict_any(&mut self) -> bool {
        let Some(id) = self
            .by_port
            .values()
            .find_map(|idle| idle.first().map(|(id, _)| *id))
        else {
            return false;
        };
        self.evict(id)
    }

    /// Connections held (each one descriptor).
    pub fn held(&self) -> usize {
        self.ports.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::net::TcpStream;

    /// A connected loopback stream, and the listener that keeps its peer queued.
    fn stream() -> (std::net::TcpListener, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding");
        let addr = listener.local_addr().expect("address");
        let std = std::net::TcpStream::connect(addr).expect("connecting");
        (listener, TcpStream::from_std(std))
    }

    fn local_port(s: &TcpStream) -> u16 {
        s.local_addr().expect("address").port()
    }

    #[test]
    fn the_pool_hands_out_the_newest_and_forgets_an_evicted_connection() {
        let mut pool = Pool::default();
        let (_l1, a) = stream();
        let (_l2, b) = stream();
        let (_l3, c) = stream();
        let (a_port, b_port) = (local_port(&a), local_port(&b));
        assert!(pool.put(ConnId(1), 4000, a));
        assert!(pool.put(ConnId(2), 4000, b));
        assert!(pool.put(ConnId(3), 4001, c));
        assert_eq!(pool.held(), 3);
        // An event on connection 2 (bytes nobody asked for, a hang-up) closes it.
        assert!(pool.evict(ConnId(2)));
        assert!(!pool.evict(ConnId(2)), "evicted twice");
        assert!(!pool.evict(ConnId(7)), "an id that was never pooled");
        assert_eq!(pool.held(), 2);
        let (id, got) = pool.take(4000).expect("connection 1");
        assert_eq!(id, ConnId(1), "the token it was pooled under");
        assert_eq!(local_port(&got), a_port, "not the evicted {b_port}");
        assert!(pool.take(4000).is_none());
        // Its id is no longer the pool's: a late event for it evicts nothing.
        assert!(!pool.evict(ConnId(1)));
        assert!(pool.take(4002).is_none());
        assert!(pool.evict_any());
        assert_eq!(pool.held(), 0);
        assert!(!pool.evict_any());
    }

    #[test]
    fn a_lent_connection_is_found_by_its_token_until_it_is_returned() {
        let mut pool = Pool::default();
        let (_l, a) = stream();
        assert!(pool.put(ConnId(5), 4000, a));
        let (id, a) = pool
            .lend(4000, ConnId(9), false)
            .expect("the pooled connection");
        assert_eq!(id, ConnId(5));
        assert_eq!(
            pool.holder(ConnId(5)),
            Some(ConnId(9)),
            "its events go to client 9"
        );
        // Back in the pool under the same token: events evict it again.
        assert!(pool.put(ConnId(5), 4000, a));
        assert_eq!(pool.holder(ConnId(5)), None);
        assert!(pool.evict(ConnId(5)));
    }

    #[test]
    fn a_pooled_connection_with_bytes_waiting_is_not_lent_for_a_body() {
        let mut pool = Pool::default();
        let (l, a) = stream();
        let (mut peer, _) = l.accept().expect("accepting");
        std::io::Write::write_all(&mut peer, b"HTTP/1.1 200 OK\r\n").expect("writing");
        assert!(pool.put(ConnId(5), 4000, a));
        // Bounded wait for the bytes to arrive on the pooled side.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut lent = pool.lend(4000, ConnId(9), true);
        while let Some((id, s)) = lent.take() {
            assert!(std::time::Instant::now() < until, "the bytes never arrived");
            assert!(pool.put(id, 4000, s));
            std::thread::sleep(std::time::Duration::from_millis(5));
            lent = pool.lend(4000, ConnId(9), true);
        }
        assert_eq!(pool.held(), 0, "the spoiled connection is closed");
        assert_eq!(pool.holder(ConnId(5)), None);
    }

    #[test]
    fn a_port_keeps_at_most_its_share_and_the_oldest_goes_first() {
        let mut pool = Pool::default();
        let mut keep = Vec::new();
        let mut first_port = 0;
        for id in 0..POOL_PER_PORT as u64 {
            let (l, s) = stream();
            if id == 0 {
                first_port = local_port(&s);
            }
            keep.push(l);
            assert!(pool.put(ConnId(id), 4000, s));
        }
        let (_l, extra) = stream();
        assert!(
            !pool.put(ConnId(99), 4000, extra),
            "over the share of one port"
        );
        assert_eq!(pool.held(), POOL_PER_PORT);
        assert!(pool.evict_any());
        // The oldest (id 0) went; the rest come out newest first.
        let mut seen = Vec::new();
        while let Some((_, s)) = pool.take(4000) {
            seen.push(local_port(&s));
        }
        assert_eq!(seen.len(), POOL_PER_PORT - 1);
        assert!(!seen.contains(&first_port));
    }
}
