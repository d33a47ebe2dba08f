//! The reverse proxy: `http://NAME.localhost:PORT` to the process named NAME.
//!
//! It runs on the daemon's loop. The daemon hands it readiness events for the
//! tokens it owns (`owns`), asks it for its next deadline, and describes the
//! processes through `Backends`; the proxy knows nothing else about them.
//! `conn.rs` is one client connection's state machine, `http.rs` the protocol.

pub mod conn;
pub mod http;

use conn::{Conn, Env, Pool, Wake};
use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Where the proxy listens unless the config names a port.
pub const PORTS: std::ops::RangeInclusive<u16> = 9090..=9190;
/// Where processes without a port get one.
pub const BACKEND_PORTS: std::ops::RangeInclusive<u16> = 4000..=4999;
/// Proxy tokens start here, far above the daemon's own.
pub const TOKEN_BASE: usize = 1 << 40;
const LISTENER: Token = Token(TOKEN_BASE);
/// The [::1] listener. Connection ids start at 1, so no connection has it.
const LISTENER6: Token = Token(TOKEN_BASE + 1);
/// Pause before accepting again when out of descriptors, doubled up to a second.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Client connections held at most; past it the listener waits.
const MAX_CONNS: usize = 16 * 1024;
/// The size asked for the splice pipe: a 256 KiB body in one pair of calls.
const SPLICE_PIPE: usize = 256 * 1024;
/// Shortens the request head and body timeouts, for tests only.
const TEST_TIMEOUT_VAR: &str = "AGENT_PROCS_TEST_HEAD_TIMEOUT_MS";

/// What the proxy may know of a process.
pub enum Lookup {
    /// Running a while, serving on this port: a refused connection is a 502 at once.
    Up(u16),
    /// Running, but started moments ago: a refused connection is waited out
    /// (up to 5 s), as for `Soon`.
    Starting(u16),
    /// Restarting or starting: worth waiting for (up to 5 s). The text says why.
    Soon(String),
    /// Exited, failed, or without a port: the text says what is wrong.
    Down(String),
    Unknown,
}

/// The daemon's view of its processes, as the proxy needs it.
pub trait Backends {
    fn lookup(&self, name: &str) -> Lookup;
    /// Every process: name, port, state, for the routes page and 502 bodies.
    fn routes(&self) -> Vec<(String, Option<u16>, String)>;
}

pub struct Proxy {
    listener: TcpListener,
    /// [::1] on the same port, wherever IPv6 is up: browsers, Node 17+ and glibc
    /// resolve NAME.localhost to ::1 too, and whoever held [::1]:PORT would get
    /// the requests (cookies included) meant for us.
    listener6: Option<TcpListener>,
    port: u16,
    conns: HashMap<u64, Conn>,
    next_id: u64,
    /// (deadline, connection). A connection's `deadline()` is the truth and
    /// `armed` says which entry counts, so a deadline that moves later costs no
    /// push: the entry fires, finds it moved, and re-arms once.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Accepting is paused until then (out of descriptors, or at the cap).
    accept_paused: Option<Instant>,
    backoff: Duration,
    /// daemon.log hears of running out of descriptors once a minute at most.
    notes: crate::ratelimit::NoteLimit,
    /// One read buffer for every connection: an idle connection owns no buffer.
    scratch: Vec<u8>,
    /// Connections that stopped with work left; they run again next turn.
    again: Vec<u64>,
    pool: Pool,
    /// Response bodies pass through it (`conn::Conn::splice_body`); None if it
    /// could not be made (then they are copied).
    pipe: Option<crate::sys::SplicePipe>,
    /// Descriptors the proxy may hold: client, backend and pooled sockets.
    fd_budget: usize,
    /// Request head and body timeout (`conn::REQUEST_TIMEOUT` but in tests).
    timeout: Duration,
}

impl Proxy {
    /// Listen on 127.0.0.1 and [::1] (where IPv6 is up): `port`, or the first
    /// port of `PORTS` free on both.
    pub fn bind(port: Option<u16>) -> Result<Proxy, String> {
        let (listener, listener6) = match port {
            Some(p) => bind_pair(p).map_err(|e| e.explain(p))?,
            None => bind_first(PORTS)?,
        };
        let port = listener
            .local_addr()
            .map_err(|e| format!("the proxy's address: {e}"))?
            .port();
        Ok(Proxy {
            listener,
            listener6,
            port,
            conns: HashMap::new(),
            next_id: 0,
            deadlines: BinaryHeap::new(),
            accept_paused: None,
            backoff: ACCEPT_BACKOFF,
            notes: crate::ratelimit::NoteLimit::default(),
            scratch: vec![0; 256 * 1024],
            again: Vec::new(),
            pool: Pool::default(),
            pipe: crate::sys::SplicePipe::new(SPLICE_PIPE).ok(),
            fd_budget: fd_budget(crate::sys::fd_limit()),
            timeout: std::env::var(TEST_TIMEOUT_VAR)
                .ok()
                .and_then(|ms| ms.parse::<u64>().ok())
                .filter(|&ms| ms > 0)
                .map_or(conn::REQUEST_TIMEOUT, Duration::from_millis),
        })
    }

    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(&mut self.listener, LISTENER, Interest::READABLE)?;
        if let Some(l) = self.listener6.as_mut() {
            registry.register(l, LISTENER6, Interest::READABLE)?;
        }
        Ok(())
    }

    /// Whether the proxy also listens on [::1] (IPv6 is up on this host).
    pub fn on_ipv6(&self) -> bool {
        self.listener6.is_some()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn owns(token: Token) -> bool {
        token.0 >= TOKEN_BASE
    }

    /// A readiness event on one of our tokens.
    pub fn ready(
        &mut self,
        registry: &Registry,
        token: Token,
        hup: bool,
        backends: &dyn Backends,
        note: &mut dyn FnMut(&str),
    ) {
        if token == LISTENER || token == LISTENER6 {
            // Only the listener that fired: the other one's accept would just
            // say EAGAIN, a system call per connection for nothing.
            if self.accept_paused.is_none() {
                self.accept_from(token == LISTENER6, registry, note);
            }
            return;
        }
        let (mut id, backend_side) = conn::split_token(token);
        if backend_side && !self.conns.contains_key(&id) {
            // A connection from the pool keeps its token: whoever holds it now.
            match self.pool.holder(id) {
                Some(holder)
                    if self
                        .conns
                        .get(&holder)
                        .is_some_and(|c| c.backend_token() == Some(token)) =>
                {
                    id = holder;
                }
                _ => {
                    // Bytes or a hang-up on an idle pooled connection: it is
                    // spoiled. (Or a late event of one closed since.)
                    self.pool.evict(id);
                    self.pool.returned(id);
                    return;
                }
            }
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.wake(if backend_side {
            Wake::Backend { hup }
        } else {
            Wake::Client { hup }
        });
        self.drive(registry, id, backends);
    }

    /// When the loop must wake up for us next.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.again.is_empty() {
            return Some(Instant::now());
        }
        let conn = self.deadlines.peek().map(|Reverse((at, _))| *at);
        match (conn, self.accept_paused) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fire what is due: connection deadlines and a paused listener.
    pub fn fire(
        &mut self,
        registry: &Registry,
        now: Instant,
        backends: &dyn Backends,
        note: &mut dyn FnMut(&str),
    ) {
        if self.accept_paused.is_some_and(|at| at <= now) {
            self.accept_paused = None;
            self.accept(registry, note);
        }
        for id in std::mem::take(&mut self.again) {
            self.drive(registry, id, backends);
        }
        while let Some(Reverse((at, id))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            if conn.armed != Some(at) {
                continue; // superseded by an earlier entry
            }
            conn.armed = None;
            if conn.deadline().is_some_and(|due| due <= now) {
                conn.wake(Wake::Deadline);
                self.drive(registry, id, backends);
            } else {
                self.arm(id);
            }
        }
    }

    /// Make sure the heap holds an entry no later than the connection's deadline.
    fn arm(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(due) = conn.deadline()
            && conn.armed.is_none_or(|at| due < at)
        {
            conn.armed = Some(due);
            self.deadlines.push(Reverse((due, id)));
        }
    }

    /// Accept what waits on both listeners, unless paused (after a pause, whose
    /// edges were spent while it lasted).
    fn accept(&mut self, registry: &Registry, note: &mut dyn FnMut(&str)) {
        if self.accept_paused.is_some() {
            return;
        }
        self.accept_from(false, registry, note);
        if self.listener6.is_some() && self.accept_paused.is_none() {
            self.accept_from(true, registry, note);
        }
    }

    fn accept_from(&mut self, v6: bool, registry: &Registry, note: &mut dyn FnMut(&str)) {
        loop {
            if !self.room_for_one() {
                // A closing connection resumes accepting; the backlog waits.
                if let Some(held) = self.notes.allow("cap", Instant::now()) {
                    note(&crate::ratelimit::with_held(
                        &format!(
                            "proxy: {} connections hold the {} descriptors the proxy may use \
                             (of the daemon's {}); new ones wait until some close",
                            self.conns.len(),
                            self.fd_budget,
                            crate::sys::fd_limit().map_or("unlimited".into(), |l| l.to_string()),
                        ),
                        held,
                    ));
                }
                self.accept_paused = Some(Instant::now() + ACCEPT_BACKOFF_MAX);
                return;
            }
            let listener = match (v6, self.listener6.as_ref()) {
                (true, Some(l)) => l,
                (true, None) => return,
                (false, _) => &self.listener,
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.backoff = ACCEPT_BACKOFF;
                    self.next_id += 1;
                    let id = self.next_id;
                    match Conn::new(id, stream, peer.ip(), self.timeout, registry) {
                        Ok(conn) => {
                            self.conns.insert(id, conn);
                            self.arm(id);
                        }
                        Err(_) => continue, // the peer left already
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    if let Some(held) = self.notes.allow("accept", Instant::now()) {
                        note(&crate::ratelimit::with_held(
                            &format!(
                                "proxy: out of descriptors ({}); pausing accepts, {} connections open",
                                crate::error::describe_io(&e),
                                self.conns.len()
                            ),
                            held,
                        ));
                    }
                    self.accept_paused = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    return;
                }
                Err(_) => continue, // ECONNABORTED and friends: that peer only
            }
        }
    }

    /// Whether one more client (and its backend) fits in the descriptor budget,
    /// closing idle pooled connections to make room.
    fn room_for_one(&mut self) -> bool {
        if self.conns.len() >= MAX_CONNS {
            return false;
        }
        // Every connection counts with a backend, whether it has one yet or not.
        while (self.conns.len() + 1) * 2 + self.pool.held() > self.fd_budget {
            if !self.pool.evict_any() {
                return false;
            }
        }
        true
    }

    /// Let a connection make all the progress it can, then retire it if done.
    fn drive(&mut self, registry: &Registry, id: u64, backends: &dyn Backends) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let mut env = Env {
            backends,
            pool: &mut self.pool,
            proxy_port: self.port,
            pipe: &mut self.pipe,
        };
        if conn.run(registry, &mut env, &mut self.scratch) {
            self.again.push(id);
        }
        for lent in conn.take_released() {
            self.pool.returned(lent);
        }
        if conn.finished() {
            if let Some(mut conn) = self.conns.remove(&id) {
                let kept = conn.close();
                for lent in conn.take_released() {
                    self.pool.returned(lent);
                }
                if let Some((token, port, stream)) = kept {
                    // Still registered under its token, which now finds the
                    // pool. A full pool closes it (closing deregisters).
                    let (token_id, _) = conn::split_token(token);
                    self.pool.returned(token_id);
                    self.pool.put(token_id, port, stream);
                }
            }
            // Room again: accept what waited in the backlog.
            if self.accept_paused.is_some() && self.room_for_one() {
                self.accept_paused = Some(Instant::now());
            }
            return;
        }
        self.arm(id);
    }
}

/// Of `limit` descriptors, those the proxy may use: the rest of the daemon keeps
/// a quarter (at least 64, or half of a tiny limit) for the control socket and
/// its clients, each process's pipes and log files, readiness probes and port
/// probes, so that a flood of proxy connections (another user's, perhaps)
/// cannot starve `status` or `run`.
fn fd_budget(limit: Option<u64>) -> usize {
    let most = MAX_CONNS * 2;
    let Some(limit) = limit else {
        return most;
    };
    let reserve = (limit / 4).max(64.min(limit / 2));
    usize::try_from(limit - reserve).map_or(most, |b| b.min(most))
}

/// Why a port could not be held on both loopbacks.
#[derive(Debug)]
enum BindError {
    V4(io::Error),
    V6(io::Error),
}

impl BindError {
    fn out_of_descriptors(&self) -> bool {
        let (BindError::V4(e) | BindError::V6(e)) = self;
        matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
    }

    /// The message for a port that was asked for.
    fn explain(&self, port: u16) -> String {
        match self {
            BindError::V4(e) => format!(
                "the proxy cannot listen on 127.0.0.1:{port}: {}",
                crate::error::describe_io(e)
            ),
            BindError::V6(e) if e.kind() == io::ErrorKind::AddrInUse => format!(
                "the proxy cannot listen on [::1]:{port}: another program holds it, and \
                 browsers send NAME.localhost to ::1 as well as to 127.0.0.1, so it would \
                 receive requests meant for the proxy; stop it or choose another proxy_port"
            ),
            BindError::V6(e) => format!(
                "the proxy cannot listen on [::1]:{port}: {}",
                crate::error::describe_io(e)
            ),
        }
    }
}

/// Hold `port` on 127.0.0.1 and on [::1]. Without IPv6 (no ::1 on this host,
/// or no IPv6 at all) 127.0.0.1 alone: nobody can listen on ::1 then either.
fn bind_pair(port: u16) -> Result<(TcpListener, Option<TcpListener>), BindError> {
    let v4 =
        TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).map_err(BindError::V4)?;
    // Accepted connections inherit it: replies leave at once, and no system
    // call per client sets it.
    let _ = crate::sys::set_nodelay(v4.as_raw_fd());
    // The same port number: an automatic port of 0 means the one just chosen.
    let port = v4.local_addr().map_err(BindError::V4)?.port();
    match TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
        Ok(v6) => {
            let _ = crate::sys::set_nodelay(v6.as_raw_fd());
            Ok((v4, Some(v6)))
        }
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT)
            ) =>
        {
            Ok((v4, None))
        }
        Err(e) => Err(BindError::V6(e)),
    }
}

/// The first port of `ports` free on both loopbacks.
fn bind_first(
    ports: std::ops::RangeInclusive<u16>,
) -> Result<(TcpListener, Option<TcpListener>), String> {
    for p in ports.clone() {
        match bind_pair(p) {
            Ok(pair) => return Ok(pair),
            Err(e) if e.out_of_descriptors() => {
                return Err(format!(
                    "the proxy cannot listen: the daemon is out of file descriptors ({}); \
                     close some connections or raise its limit (ulimit -n)",
                    match &e {
                        BindError::V4(e) | BindError::V6(e) => crate::error::describe_io(e),
                    }
                ));
            }
            Err(_) => {}
        }
    }
    Err(format!(
        "the proxy found no port in {}-{} free on both 127.0.0.1 and [::1]; \
         set proxy_port in agent-procs.yaml",
        ports.start(),
        ports.end()
    ))
}

/// The routes page: every process, its URL, where it goes and its state.
pub fn routes_page(routes: &[(String, Option<u16>, String)], proxy_port: u16) -> String {
    let mut page = format!("agent-procs proxy on 127.0.0.1:{proxy_port}\n\n");
    if routes.is_empty() {
        page.push_str("no processes yet; start one with agent-procs run CMD --name NAME --proxy\n");
    }
    for (name, port, state) in routes {
        let to = port.map_or("(no port)".to_string(), |p| format!("127.0.0.1:{p}"));
        page.push_str(&format!(
            "http://{name}.localhost:{proxy_port}  ->  {to}  {state}\n"
        ));
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port another socket holds on [::1] only; None without IPv6 here.
    fn held_on_ipv6() -> Option<(std::net::TcpListener, u16)> {
        let held = std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).ok()?;
        let port = held.local_addr().ok()?.port();
        Some((held, port))
    }

    #[test]
    fn the_descriptor_budget_leaves_the_daemon_a_reserve() {
        let table: [(Option<u64>, usize); 7] = [
            (Some(64), 32),
            (Some(128), 64),
            (Some(256), 192),
            (Some(1024), 768),
            (Some(65536), 32 * 1024),
            (Some(0), 0),
            (None, 32 * 1024),
        ];
        for (limit, want) in table {
            assert_eq!(fd_budget(limit), want, "{limit:?}");
        }
    }

    #[test]
    fn accepted_clients_come_with_nagle_off() {
        let (v4, v6) = bind_pair(0).expect("a free port");
        let port = v4.local_addr().expect("address").port();
        let _c4 = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connecting");
        let accepted = accept_blocking(&v4);
        assert!(accepted.nodelay().expect("TCP_NODELAY"), "127.0.0.1");
        if let Some(v6) = v6 {
            let _c6 =
                std::net::TcpStream::connect((Ipv6Addr::LOCALHOST, port)).expect("connecting");
            assert!(
                accept_blocking(&v6).nodelay().expect("TCP_NODELAY"),
                "[::1]"
            );
        }
    }

    /// The connection waiting on a non-blocking listener (bounded).
    fn accept_blocking(l: &TcpListener) -> mio::net::TcpStream {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            match l.accept() {
                Ok((s, _)) => return s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accepting: {e}"),
            }
        }
    }

    #[test]
    fn a_port_held_on_ipv6_is_refused_with_the_reason() {
        let Some((_held, port)) = held_on_ipv6() else {
            eprintln!("skipped: no IPv6 loopback here");
            return;
        };
        let err = match bind_pair(port) {
            Ok(_) => panic!("[::1]:{port} is held, yet the pair was bound"),
            Err(e) => e.explain(port),
        };
        assert!(
            err.contains(&format!("[::1]:{port}: another program holds it"))
                && err.contains("choose another proxy_port"),
            "{err}"
        );
    }

    #[test]
    fn an_automatic_port_skips_one_held_on_ipv6_and_holds_both() {
        let Some((_held, port)) = held_on_ipv6() else {
            eprintln!("skipped: no IPv6 loopback here");
            return;
        };
        let last = port.saturating_add(40);
        let (v4, v6) = bind_first(port..=last).expect("a free port nearby");
        let chosen = v4.local_addr().expect("address").port();
        assert_ne!(chosen, port, "chose the port held on [::1]");
        let v6 = v6.expect("IPv6 is up here, so [::1] must be held too");
        assert_eq!(v6.local_addr().expect("address").port(), chosen);
        assert!(v6.local_addr().expect("address").ip().is_loopback());
    }
}
