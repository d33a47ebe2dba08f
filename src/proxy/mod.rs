//! The reverse proxy: `http://NAME.localhost:PORT` to the process named NAME.
//!
//! It runs on the daemon's loop but never touches it: the loop hands it the
//! readiness events of the tokens it owns (`owns`), the timers it asked for and
//! the retries, and describes the processes through `Backends`; the proxy
//! answers with `Step`s (watch this socket, wake me then, run me again) that
//! the loop carries out. `conn.rs` is one client connection's state machine,
//! `pool.rs` the idle backend connections, `http.rs` the protocol.

pub mod conn;
pub mod http;
pub mod pool;
pub mod socket;

use crate::protocol::Response;
use conn::{Conn, Env, Limits};
use mio::net::{TcpListener, TcpStream};
use pool::Pool;
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// Where the proxy listens unless the config names a port.
pub const PORTS: std::ops::RangeInclusive<u16> = 9090..=9190;
/// Where processes without a port get one.
pub const BACKEND_PORTS: std::ops::RangeInclusive<u16> = 4000..=4999;
/// Proxy tokens start here, far above the daemon's own.
pub const TOKEN_BASE: usize = 1 << 40;
const LISTENER: usize = TOKEN_BASE;
/// The [::1] listener. Connection ids start at 1, so no connection has it.
const LISTENER6: usize = TOKEN_BASE + 1;
/// Pause before accepting again when out of descriptors, doubled up to a second.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Client connections held at most; past it the listener waits.
const MAX_CONNS: usize = 16 * 1024;
/// The size asked for the splice pipe: a 256 KiB body in one pair of calls.
const SPLICE_PIPE: usize = 256 * 1024;
/// Shorten the request head and body timeout, and the wait for a backend
/// that is starting, for tests only (milliseconds).
const TEST_TIMEOUT_VAR: &str = "AGENT_PROCS_TEST_HEAD_TIMEOUT_MS";
const TEST_HOLD_VAR: &str = "AGENT_PROCS_TEST_BACKEND_WAIT_MS";

/// A client connection of the proxy. Never reused, so a late event or timer
/// for a closed connection finds nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The two sockets of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
}

/// The token of one side of a connection.
pub fn token(id: ConnId, side: Side) -> usize {
    TOKEN_BASE + ((id.0 as usize) << 1) + usize::from(side == Side::Backend)
}

/// The connection a token of ours belongs to.
pub fn conn_of(token: usize) -> ConnId {
    split_token(token).0
}

fn split_token(token: usize) -> (ConnId, Side) {
    let n = token.saturating_sub(TOKEN_BASE);
    let side = if n & 1 == 1 {
        Side::Backend
    } else {
        Side::Client
    };
    (ConnId((n >> 1) as u64), side)
}

/// What the proxy asks of the loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Watch socket `fd` under `token` for `interest` (readable, and writable
    /// while a write waits); `add` it to the poll set, or else change what it
    /// is watched for. The
    /// socket is open until the proxy is next called (closing one ends its
    /// registration: there is no step for that).
    Interest {
        token: usize,
        fd: RawFd,
        interest: mio::Interest,
        add: bool,
    },
    /// Call `wake` with this at that time.
    WaitUntil(Instant, Wake),
    /// The connection of this (client) token stopped with work left: call
    /// `again` with the token on the next turn.
    Again(usize),
    /// A line for daemon.log.
    Note(String),
}

/// Why the proxy asked to be woken (`Step::WaitUntil`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wake {
    /// A connection's deadline, if it is still the one armed (by generation).
    Conn { conn: ConnId, generation: u64 },
    /// Accepting may resume after a pause.
    Accept,
}

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
    conns: HashMap<ConnId, Conn<TcpStream>>,
    next_id: u64,
    /// Counts timers asked for; a connection's `armed` says which one counts.
    generation: u64,
    /// Accepting is paused until then (out of descriptors, or at the cap).
    accept_paused: Option<Instant>,
    backoff: Duration,
    /// daemon.log hears of running out of descriptors once a minute at most.
    notes: crate::ratelimit::NoteLimit,
    /// One read buffer for every connection: an idle connection owns no buffer.
    scratch: Vec<u8>,
    pool: Pool<TcpStream>,
    /// Response bodies pass through it (`conn::relay`); None if it could not
    /// be made (then they are copied).
    pipe: Option<crate::sys::SplicePipe>,
    /// Descriptors the proxy may hold: client, backend and pooled sockets.
    fd_budget: usize,
    limits: Limits,
    /// What the loop must do, in order; it takes them after each call.
    steps: Vec<Step>,
    /// A listener could not be watched: why (`opened` answers with it).
    deaf: Option<String>,
}

/// A test timeout from the environment, if set (milliseconds, more than 0).
fn test_timeout(var: &str) -> Option<Duration> {
    std::env::var(var)
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
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
            generation: 0,
            accept_paused: None,
            backoff: ACCEPT_BACKOFF,
            notes: crate::ratelimit::NoteLimit::default(),
            scratch: vec![0; 256 * 1024],
            pool: Pool::default(),
            pipe: crate::sys::SplicePipe::new(SPLICE_PIPE).ok(),
            fd_budget: fd_budget(crate::sys::fd_limit()),
            limits: Limits {
                request: test_timeout(TEST_TIMEOUT_VAR).unwrap_or(conn::REQUEST_TIMEOUT),
                hold: test_timeout(TEST_HOLD_VAR).unwrap_or(conn::BACKEND_WAIT),
            },
            steps: Vec::new(),
            deaf: None,
        })
    }

    /// A client asked for the proxy, on `wanted` or any port of `PORTS`;
    /// `session` holds the session's proxy, if it has one, and one that
    /// listens stays where it is. The answer, or None for a new proxy, put in
    /// `session`, whose first steps watch its listeners: carry them out, then
    /// answer with `opened`.
    pub fn enable(session: &mut Option<Proxy>, wanted: Option<u16>) -> Option<Response> {
        if let Some(port) = session.as_ref().map(|p| p.port) {
            if wanted.is_some_and(|w| w != port) {
                return Some(Response::error(format!(
                    "the proxy of this session already listens on port {port}; \
                     stop the session (agent-procs down) to move it"
                )));
            }
            return Some(Response::Ok {
                message: format!("Proxy already listening on http://localhost:{port}"),
            });
        }
        let mut proxy = match Proxy::bind(wanted) {
            Ok(proxy) => proxy,
            Err(msg) => return Some(Response::error(msg)),
        };
        let watch = |token, l: &TcpListener| Step::Interest {
            token,
            fd: l.as_raw_fd(),
            interest: mio::Interest::READABLE,
            add: true,
        };
        proxy.steps.push(watch(LISTENER, &proxy.listener));
        if let Some(l) = &proxy.listener6 {
            proxy.steps.push(watch(LISTENER6, l));
        }
        *session = Some(proxy);
        None
    }

    /// After the first steps of a new proxy: the answer, and the note for
    /// daemon.log (a step). If a listener could not be watched, the proxy is
    /// dropped and the answer says why.
    pub fn opened(session: &mut Option<Proxy>) -> Response {
        let Some(proxy) = session.as_mut() else {
            return Response::error("the proxy is gone");
        };
        if let Some(why) = proxy.deaf.take() {
            *session = None;
            return Response::error(why);
        }
        let port = proxy.port;
        proxy.steps.push(Step::Note(if proxy.listener6.is_some() {
            format!("proxy listening on 127.0.0.1:{port} and [::1]:{port}")
        } else {
            format!("proxy listening on 127.0.0.1:{port} (no IPv6 loopback on this host)")
        }));
        Response::Ok {
            message: format!("Proxy listening on http://localhost:{port}"),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn owns(token: usize) -> bool {
        token >= TOKEN_BASE
    }

    /// The steps of the last calls, if any, for the loop to carry out; it
    /// hands the emptied vector back (`give_back`), so a turn allocates nothing.
    pub fn take_steps(&mut self) -> Option<Vec<Step>> {
        if self.steps.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.steps))
    }

    pub fn give_back(&mut self, mut steps: Vec<Step>) {
        steps.clear();
        if self.steps.is_empty() {
            self.steps = steps;
        }
    }

    /// A readiness event on one of our tokens (`hup`: the peer closed, or an error).
    pub fn ready(&mut self, token: usize, hup: bool, backends: &dyn Backends) {
        if token == LISTENER || token == LISTENER6 {
            // Only the listener that fired: the other one's accept would just
            // say EAGAIN, a system call per connection for nothing.
            if self.accept_paused.is_none() {
                self.accept_from(token == LISTENER6);
            }
            return;
        }
        let (mut id, side) = split_token(token);
        if side == Side::Backend && !self.conns.contains_key(&id) {
            // A connection from the pool keeps its token: whoever holds it now.
            match self.pool.holder(id) {
                Some(holder)
                    if self
                        .conns
                        .get(&holder)
                        .is_some_and(|c| c.backend_token() == Some(id)) =>
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
        conn.ready(side, hup);
        self.drive(id, backends);
    }

    /// The socket of `token` could not be watched (`Step::Interest` failed
    /// with `e`). A listener's failure is the answer of `opened`.
    pub fn unwatchable(&mut self, token: usize, e: &io::Error, backends: &dyn Backends) {
        if token == LISTENER || token == LISTENER6 {
            if self.deaf.is_none() {
                self.deaf = Some(format!("watching the proxy's socket: {e}"));
            }
            return;
        }
        let (mut id, side) = split_token(token);
        if side == Side::Backend
            && let Some(holder) = self.pool.holder(id)
        {
            id = holder;
        }
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.unwatchable(side);
            self.drive(id, backends);
        }
    }

    /// A connection that stopped with work left (`Step::Again`) runs on.
    pub fn again(&mut self, token: usize, backends: &dyn Backends) {
        self.drive(conn_of(token), backends);
    }

    /// A timer of `Step::WaitUntil` is due.
    pub fn wake(&mut self, wake: Wake, backends: &dyn Backends) {
        match wake {
            Wake::Conn { conn, generation } => self.deadline(conn, generation, backends),
            Wake::Accept => self.accept_again(),
        }
    }

    fn deadline(&mut self, id: ConnId, generation: u64, backends: &dyn Backends) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.armed.is_none_or(|(_, g)| g != generation) {
            return; // superseded by an earlier one
        }
        conn.armed = None;
        if conn.deadline().is_some_and(|due| due <= Instant::now()) {
            conn.deadline_passed();
            self.drive(id, backends);
        } else {
            self.arm(id);
        }
    }

    /// The pause of accepting may be over: accept what waited.
    fn accept_again(&mut self) {
        if self.accept_paused.is_some_and(|at| at <= Instant::now()) {
            self.accept_paused = None;
            // Both listeners: their edges were spent while the pause lasted.
            self.accept_from(false);
            if self.listener6.is_some() && self.accept_paused.is_none() {
                self.accept_from(true);
            }
        }
    }

    /// Make sure a timer no later than the connection's deadline is asked for.
    /// A deadline that moves later costs nothing: the timer fires, finds it
    /// moved, and asks again once.
    fn arm(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(due) = conn.deadline()
            && conn.armed.is_none_or(|(at, _)| due < at)
        {
            self.generation += 1;
            conn.armed = Some((due, self.generation));
            let wake = Wake::Conn {
                conn: id,
                generation: self.generation,
            };
            self.steps.push(Step::WaitUntil(due, wake));
        }
    }

    fn pause_accepting(&mut self, until: Instant) {
        self.accept_paused = Some(until);
        self.steps.push(Step::WaitUntil(until, Wake::Accept));
    }

    fn note(&mut self, cause: &'static str, msg: impl FnOnce() -> String) {
        if let Some(held) = self.notes.allow(cause, Instant::now()) {
            let line = crate::ratelimit::with_held(&msg(), held);
            self.steps.push(Step::Note(line));
        }
    }

    fn accept_from(&mut self, v6: bool) {
        loop {
            if !self.room_for_one() {
                // A closing connection resumes accepting; the backlog waits.
                let (open, budget) = (self.conns.len(), self.fd_budget);
                self.note("cap", || {
                    format!(
                        "proxy: {open} connections hold the {budget} descriptors the proxy may \
                         use (of the daemon's {}); new ones wait until some close",
                        crate::sys::fd_limit().map_or("unlimited".into(), |l| l.to_string()),
                    )
                });
                self.pause_accepting(Instant::now() + ACCEPT_BACKOFF_MAX);
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
                    let id = ConnId(self.next_id);
                    let mut conn = Conn::new(id, stream, peer.ip(), self.limits);
                    conn.sync(&mut self.steps);
                    self.conns.insert(id, conn);
                    self.arm(id);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if crate::sys::out_of_descriptors(&e) || is_out_of_memory(&e) => {
                    let open = self.conns.len();
                    self.note("accept", || {
                        format!(
                            "proxy: out of descriptors ({}); pausing accepts, {open} connections open",
                            crate::error::describe_io(&e),
                        )
                    });
                    self.pause_accepting(Instant::now() + self.backoff);
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
    fn drive(&mut self, id: ConnId, backends: &dyn Backends) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let mut env = Env {
            backends,
            pool: &mut self.pool,
            proxy_port: self.port,
            pipe: &mut self.pipe,
        };
        if conn.run(&mut env, &mut self.scratch) {
            self.steps.push(Step::Again(token(id, Side::Client)));
        }
        for lent in conn.take_released() {
            self.pool.returned(lent);
        }
        if !conn.finished() {
            conn.sync(&mut self.steps);
            self.arm(id);
            return;
        }
        if let Some(mut conn) = self.conns.remove(&id) {
            let kept = conn.close();
            for lent in conn.take_released() {
                self.pool.returned(lent);
            }
            if let Some((token_id, port, stream)) = kept {
                // Still registered under its token, which now finds the
                // pool. A full pool closes it (closing deregisters).
                self.pool.returned(token_id);
                self.pool.put(token_id, port, stream);
            }
        }
        // Room again: accept what waited in the backlog.
        if self.accept_paused.is_some() && self.room_for_one() {
            self.pause_accepting(Instant::now());
        }
    }
}

/// ENOBUFS and ENOMEM from accept: the kernel is short of memory for sockets,
/// which, like running out of descriptors, passes.
fn is_out_of_memory(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::ENOMEM))
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

    /// No processes: the tests below never reach a backend.
    struct NoBackends;

    impl Backends for NoBackends {
        fn lookup(&self, _: &str) -> Lookup {
            Lookup::Unknown
        }
        fn routes(&self) -> Vec<(String, Option<u16>, String)> {
            Vec::new()
        }
    }

    /// A session's new proxy, on a free port, with its first steps.
    fn enabled() -> (Option<Proxy>, Vec<Step>) {
        let mut session = None;
        let answer = Proxy::enable(&mut session, Some(0));
        assert!(
            answer.is_none(),
            "a new proxy answers after `opened`: {answer:?}"
        );
        let steps = session.as_mut().and_then(Proxy::take_steps);
        (session, steps.expect("its first steps"))
    }

    #[test]
    fn a_new_proxy_asks_for_its_listeners_then_notes_where_it_listens() {
        let (mut session, steps) = enabled();
        let proxy = session.as_ref().expect("kept in the session");
        let (port, v6) = (proxy.port, proxy.listener6.is_some());
        let mut want = vec![(LISTENER, proxy.listener.as_raw_fd())];
        if let Some(l) = &proxy.listener6 {
            want.push((LISTENER6, l.as_raw_fd()));
        }
        let got: Vec<_> = steps
            .iter()
            .map(|s| match s {
                Step::Interest {
                    token,
                    fd,
                    interest,
                    add: true,
                } if *interest == mio::Interest::READABLE => (*token, *fd),
                other => panic!("not a listener to watch: {other:?}"),
            })
            .collect();
        assert_eq!(got, want);
        let message = format!("Proxy listening on http://localhost:{port}");
        assert_eq!(Proxy::opened(&mut session), Response::Ok { message });
        let note = match v6 {
            true => format!("proxy listening on 127.0.0.1:{port} and [::1]:{port}"),
            false => format!("proxy listening on 127.0.0.1:{port} (no IPv6 loopback on this host)"),
        };
        let steps = session.as_mut().and_then(Proxy::take_steps);
        assert_eq!(steps, Some(vec![Step::Note(note)]));
    }

    #[test]
    fn a_listener_that_cannot_be_watched_drops_the_proxy_with_the_reason() {
        let (mut session, _) = enabled();
        let full = io::Error::from_raw_os_error(libc::ENOSPC);
        if let Some(proxy) = session.as_mut() {
            proxy.unwatchable(LISTENER, &full, &NoBackends);
        }
        let answer = Proxy::opened(&mut session);
        let Response::Error { message, .. } = answer else {
            panic!("answered {answer:?}");
        };
        assert_eq!(message, format!("watching the proxy's socket: {full}"));
        assert!(
            session.is_none(),
            "the proxy is dropped, its port free again"
        );
    }

    #[test]
    fn asking_again_keeps_the_proxy_where_it_listens() {
        let (mut session, _) = enabled();
        let port = session.as_ref().map_or(0, |p| p.port);
        let other = port.wrapping_add(1);
        let already = format!("Proxy already listening on http://localhost:{port}");
        let moved = format!(
            "the proxy of this session already listens on port {port}; \
             stop the session (agent-procs down) to move it"
        );
        let table = [
            (
                None,
                Response::Ok {
                    message: already.clone(),
                },
            ),
            (Some(port), Response::Ok { message: already }),
            (Some(other), Response::error(moved)),
        ];
        for (wanted, want) in table {
            assert_eq!(
                Proxy::enable(&mut session, wanted),
                Some(want),
                "{wanted:?}"
            );
            assert_eq!(session.as_ref().map(|p| p.port), Some(port), "{wanted:?}");
        }
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
