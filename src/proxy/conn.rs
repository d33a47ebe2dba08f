//! One client connection of the proxy, and the backend connection it uses: a
//! state machine that readiness events and deadlines move on.
//!
//! ```text
//! Head ──request──▶ Exchange ──response done──▶ Head (keep-alive)
//!  │                 │   ▲  (backend not up yet: retry every 100 ms, ≤ 5 s)
//!  │                 │   └── Connect
//!  │                 └──101──▶ Tunnel
//!  └──error, close──▶ Closing ──flushed──▶ Draining ──EOF or 2 s──▶ done
//! ```
//!
//! Both sockets are registered once, readable and writable, edge-triggered;
//! `run` does all the work it can and remembers which side may have more.
//! Buffers stay bounded: a side is not read while what it produced waits to be
//! written to the other, so a slow client slows its backend, never the daemon.

use super::http::{self, Chunked, Framing, Parsed, Route};
use super::{Backends, Lookup, TOKEN_BASE};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// A partial request head must be complete within this, and a request body
/// may go this long without a byte (unless the backend is the one not reading).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection with no request is closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request waits for a process that is starting or restarting.
const BACKEND_WAIT: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_millis(100);
/// After an error response, how long unread request bytes are drained, so
/// closing does not reset the connection before the client read the answer.
const LINGER: Duration = Duration::from_secs(2);
/// Bytes waiting to be written to one side before the other side is not read.
const HIGH_WATER: usize = 256 * 1024;

/// Idle connections kept per backend port: as many as nginx's `keepalive 64`,
/// so that a burst of up to 64 clients that each close after one request finds
/// its backend connections still open (a connect and a close saved per request).
pub const POOL_PER_PORT: usize = 64;
/// While a response head is awaited, a read takes at most this much, so that
/// most of a big body stays in the kernel for `splice` (a response of up to
/// this size still comes in one read).
const HEAD_READ: usize = 128 * 1024;
/// Response bodies with at least this many bytes left move through a pipe with
/// `splice(2)` instead of being read and written: no copy, but three system
/// calls more per response. That loses at 64 KiB (49.1 against 46.1 µs of CPU
/// per request with 16 KiB here) and wins a quarter at 1 MiB (BENCHMARKS.md).
const SPLICE_MIN: u64 = 128 * 1024;
/// Head buffers up to this size are kept for the next request; a bigger one
/// (heads may have 64 KiB) is not held by an idle connection.
const KEPT_HEAD: usize = 4096;

/// Idle backend connections kept open by port after their client left, so that
/// the next client need not connect again (as nginx's upstream keepalive).
///
/// A pooled connection stays registered under the token of the client it last
/// served (whose id is never reused), so it costs no system call to pool. Any
/// event for it means bytes nobody asked for or a hang-up: it could only hand
/// the next client someone else's response, so it is closed at once (`evict`).
/// Events come in the order the kernel saw them, so bytes that arrived before
/// a request are seen before that request is sent on a pooled connection.
#[derive(Default)]
pub struct Pool {
    by_port: std::collections::HashMap<u16, Vec<(u64, TcpStream)>>,
    /// Pooled connections by the id of their token, to their port.
    ports: std::collections::HashMap<u64, u16>,
    /// Connections taken from the pool keep the token they were registered
    /// under (re-registering would cost a system call per request): by that
    /// token's id, the client connection that holds them now.
    lent: std::collections::HashMap<u64, u64>,
}

impl Pool {
    /// Keep `stream` (registered under `id`'s token) for `port`; false when
    /// that port's share is full (then the caller closes it).
    pub fn put(&mut self, id: u64, port: u16, stream: TcpStream) -> bool {
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
    fn take(&mut self, port: u16) -> Option<(u64, TcpStream)> {
        let (id, stream) = self.by_port.get_mut(&port)?.pop()?;
        self.ports.remove(&id);
        Some((id, stream))
    }

    /// The client connection that holds the connection of token `id`, if lent.
    pub fn holder(&self, id: u64) -> Option<u64> {
        self.lent.get(&id).copied()
    }

    /// The connection of token `id` is no longer lent (closed, or back in the pool).
    pub fn returned(&mut self, id: u64) {
        self.lent.remove(&id);
    }

    /// Close the pooled connection of token `id`, if there is one.
    pub fn evict(&mut self, id: u64) -> bool {
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

/// What a connection needs from around it while it runs.
pub struct Env<'a> {
    pub backends: &'a dyn Backends,
    pub pool: &'a mut Pool,
    pub proxy_port: u16,
    /// The pipe response bodies are spliced through, empty between uses; None
    /// when there is none (then bodies are read and written).
    pub pipe: &'a mut Option<crate::sys::SplicePipe>,
}

/// What woke a connection up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// `hup`: the peer has closed its side (its end of file waits behind any data).
    Client {
        hup: bool,
    },
    Backend {
        hup: bool,
    },
    Deadline,
}

pub fn split_token(token: Token) -> (u64, bool) {
    let n = token.0.saturating_sub(TOKEN_BASE);
    ((n >> 1) as u64, n & 1 == 1)
}

fn token(id: u64, backend: bool) -> Token {
    Token(TOKEN_BASE + ((id as usize) << 1) + usize::from(backend))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// A request is being relayed.
    Exchange,
    /// After a 101: bytes pass both ways untouched.
    Tunnel,
    /// Our own response is being written; then the connection closes.
    Closing,
    /// Written and half-closed: reading what the client still sends, briefly.
    Draining,
}

/// Where a body stands.
#[derive(Debug)]
enum Body {
    Done,
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

impl Body {
    fn new(framing: Framing) -> Body {
        match framing {
            Framing::Empty | Framing::Length(0) => Body::Done,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked(Chunked::default()),
            Framing::UntilClose => Body::UntilClose,
        }
    }

    fn done(&self) -> bool {
        matches!(self, Body::Done)
    }

    /// How many of `data` belong to the body; Err for a broken chunked body.
    fn take(&mut self, data: &[u8]) -> Result<usize, ()> {
        let (n, finished) = match self {
            Body::Done => (0, true),
            Body::Length(left) => {
                let n = (*left).min(data.len() as u64);
                *left -= n;
                (n as usize, *left == 0)
            }
            Body::Chunked(c) => c.feed(data).map_err(|_| ())?,
            Body::UntilClose => (data.len(), false),
        };
        if finished {
            *self = Body::Done;
        }
        Ok(n)
    }
}

/// Bytes waiting to be written to one socket.
#[derive(Default)]
struct Out {
    buf: Vec<u8>,
    pos: usize,
}

impl Out {
    fn len(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Write what we can. Ok(true) when something was written.
    fn flush(&mut self, stream: &mut TcpStream) -> io::Result<bool> {
        let mut wrote = false;
        while self.pos < self.buf.len() {
            match stream.write(&self.buf[self.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pos += n;
                    wrote = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            // An idle connection keeps no big buffer.
            if self.buf.capacity() > 64 * 1024 {
                self.buf = Vec::new();
            }
        }
        Ok(wrote)
    }
}

struct Backend {
    stream: TcpStream,
    /// What it is registered under: this connection's backend token, or the
    /// one it had in the pool.
    token: Token,
    port: u16,
    /// Its process was starting when we dialled: a refusal is waited out.
    starting: bool,
    connected: bool,
    /// Kept from an earlier exchange: it may have been closed under us.
    reused: bool,
    /// Something was written to it in this exchange.
    sent: bool,
    readable: bool,
    /// The backend has closed its side: read to the end of file.
    hup: bool,
    /// Registered for writability (while connecting, or when a write would block).
    watching_writes: bool,
    /// It carried a request body. A backend may have ignored the body and read
    /// it as a request of its own (a GET with Content-Length, to many dev
    /// servers), whose answer would come later: such a connection serves no
    /// other client.
    carried_body: bool,
}

/// The request being relayed.
struct Exchange {
    name: String,
    /// The head as sent to the backend, for one retry on a stale kept connection.
    head: Vec<u8>,
    keep_alive: bool,
    upgrade: bool,
    is_head: bool,
    /// The request had no body, so it can be sent again.
    bodiless: bool,
    /// The request has body bytes (not only `Content-Length: 0`).
    carries_body: bool,
    /// `Expect: 100-continue`: the client may hold its body until an answer.
    expect_continue: bool,
    request: Body,
    /// Waiting for the response head (again, after a 1xx).
    awaiting_head: bool,
    response: Body,
    backend_keep_alive: bool,
    /// Response bytes have reached the client.
    answered: bool,
    /// Give up waiting for the backend then.
    wait_until: Instant,
    /// No backend yet: try again then.
    retry_at: Option<Instant>,
    /// The last time request body bytes came from the client.
    body_progress: Instant,
    why_waiting: String,
}

pub struct Conn {
    id: u64,
    client: TcpStream,
    peer: IpAddr,
    backend: Option<Backend>,
    phase: Phase,
    /// The heap entry that counts for this connection (see `Proxy::arm`).
    pub armed: Option<Instant>,
    since: Instant,
    head_started: Option<Instant>,
    /// `REQUEST_TIMEOUT`, or shorter for tests.
    timeout: Duration,
    exchange: Option<Exchange>,
    c_in: Vec<u8>,
    c_out: Out,
    /// A rewritten request head is built here; it returns when its exchange
    /// ends, so a keep-alive connection allocates no head per request.
    head_buf: Vec<u8>,
    /// The same for response heads.
    response_head: Vec<u8>,
    b_in: Vec<u8>,
    b_out: Out,
    c_readable: bool,
    /// The client has closed its side: read to the end of file.
    c_hup: bool,
    c_watching_writes: bool,
    c_eof: bool,
    released: Vec<u64>,
    deadline_hit: bool,
    done: bool,
}

impl Conn {
    pub fn new(
        id: u64,
        mut client: TcpStream,
        peer: IpAddr,
        timeout: Duration,
        registry: &Registry,
    ) -> io::Result<Conn> {
        // TCP_NODELAY comes from the listener (see `Proxy::bind`).
        registry.register(&mut client, token(id, false), Interest::READABLE)?;
        Ok(Conn {
            id,
            client,
            peer,
            backend: None,
            phase: Phase::Head,
            armed: None,
            since: Instant::now(),
            head_started: None,
            timeout,
            exchange: None,
            c_in: Vec::new(),
            c_out: Out::default(),
            head_buf: Vec::new(),
            response_head: Vec::new(),
            b_in: Vec::new(),
            b_out: Out::default(),
            c_readable: true,
            c_hup: false,
            c_watching_writes: false,
            c_eof: false,
            released: Vec::new(),
            deadline_hit: false,
            done: false,
        })
    }

    pub fn wake(&mut self, why: Wake) {
        match why {
            Wake::Client { hup } => {
                self.c_readable = true;
                self.c_hup |= hup;
            }
            Wake::Backend { hup } => {
                if let Some(b) = self.backend.as_mut() {
                    b.readable = true;
                    b.hup |= hup;
                }
            }
            Wake::Deadline => self.deadline_hit = true,
        }
    }

    pub fn finished(&self) -> bool {
        self.done
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Head => Some(match self.head_started {
                Some(t) => t + self.timeout,
                None => self.since + IDLE_TIMEOUT,
            }),
            Phase::Exchange => {
                let ex = self.exchange.as_ref()?;
                let stall = self.body_stall_deadline(ex);
                match (ex.retry_at, stall) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            Phase::Tunnel => None,
            Phase::Closing | Phase::Draining => Some(self.since + LINGER),
        }
    }

    /// When a request body that is waited for stops being waited for: the client
    /// sends no byte for the timeout while the backend would take them. Held
    /// bodies must not pin descriptors (another user's, perhaps) for ever.
    /// A client that expects 100-continue may wait for the process's answer
    /// before it sends, so its clock starts with the answer.
    fn body_stall_deadline(&self, ex: &Exchange) -> Option<Instant> {
        let waiting_for_us = ex.expect_continue && !ex.answered;
        (!ex.request.done()
            && self.b_out.len() < HIGH_WATER
            && self.c_in.is_empty()
            && !waiting_for_us)
            .then_some(ex.body_progress + self.timeout)
    }

    /// Deregister and close; hands back the backend connection when it is idle
    /// and may serve another client.
    pub fn close(&mut self) -> Option<(Token, u16, TcpStream)> {
        // Closing a socket removes it from epoll: no deregistering (a system call
        // per connection). Ids are never reused, so a late event finds nobody.
        let idle = self.phase != Phase::Tunnel
            && self.exchange.is_none()
            && self.b_in.is_empty()
            && self.b_out.len() == 0;
        match self.backend.take() {
            // Unread readiness or a hang-up: bytes nobody asked for may wait in it.
            // Watched for writes, it would wake (and be evicted) for nothing.
            Some(b)
                if idle
                    && b.connected
                    && !b.readable
                    && !b.hup
                    && !b.carried_body
                    && !b.watching_writes =>
            {
                Some((b.token, b.port, b.stream))
            }
            Some(b) => {
                self.release(b.token);
                None
            }
            None => None,
        }
    }

    fn drop_backend(&mut self, registry: &Registry) {
        if let Some(mut b) = self.backend.take() {
            let _ = registry.deregister(&mut b.stream);
            self.release(b.token);
        }
        self.b_in.clear();
    }

    /// A backend connection taken from the pool is closed: its token is no
    /// longer ours (`take_released` tells the pool).
    fn release(&mut self, t: Token) {
        if t != token(self.id, true) {
            self.released.push(split_token(t).0);
        }
    }

    /// Tokens of pooled connections this one took and has closed since asked last.
    pub fn take_released(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.released)
    }

    /// The token its backend connection is registered under, if it has one.
    pub fn backend_token(&self) -> Option<Token> {
        self.backend.as_ref().map(|b| b.token)
    }

    /// Make the progress possible now. Returns true when it stopped with work
    /// left (its share of this loop turn is spent); call again soon then, as no
    /// new event will come for bytes already waiting.
    pub fn run(&mut self, registry: &Registry, env: &mut Env, scratch: &mut [u8]) -> bool {
        if std::mem::take(&mut self.deadline_hit) {
            self.on_deadline(registry, env);
        }
        // Each pass moves bytes one step; stop when a pass changes nothing.
        for _ in 0..64 {
            if self.done {
                return false;
            }
            let mut progress = false;
            progress |= self.flush_client(registry);
            progress |= self.flush_backend(registry, env);
            progress |= match self.phase {
                Phase::Head => self.step_head(registry, env, scratch),
                Phase::Exchange => self.step_exchange(registry, env, scratch),
                Phase::Tunnel => self.step_tunnel(registry, scratch),
                Phase::Closing => self.step_closing(),
                Phase::Draining => self.step_draining(scratch),
            };
            if !progress {
                return false;
            }
        }
        true
    }

    // ---- reading ----

    /// Read from the client into `c_in`. Ok(true) when bytes came.
    fn read_client(&mut self, scratch: &mut [u8]) -> bool {
        if !self.c_readable || self.c_eof {
            return false;
        }
        match read_some(&mut self.client, scratch) {
            Some(0) => {
                self.c_eof = true;
                true
            }
            Some(n) => {
                self.c_in.extend_from_slice(&scratch[..n]);
                // A short read emptied the socket, and the next byte brings an
                // event; but an end of file that came with the data brings none.
                if n < scratch.len() && !self.c_hup {
                    // A short read emptied the socket; the next byte brings an event.
                    self.c_readable = false;
                }
                true
            }
            None => {
                self.c_readable = false;
                false
            }
        }
    }

    /// Read from the backend into `b_in`: Some(true) bytes, Some(false) EOF,
    /// None nothing (would block, or an error that `backend_failed` handles).
    fn read_backend(&mut self, scratch: &mut [u8]) -> Option<bool> {
        match self.read_backend_raw(scratch)? {
            0 => Some(false),
            n => {
                self.b_in.extend_from_slice(&scratch[..n]);
                Some(true)
            }
        }
    }

    /// Read from the backend into `scratch`: Some(n) bytes, Some(0) at its end
    /// (a reset included), None when it would block.
    fn read_backend_raw(&mut self, scratch: &mut [u8]) -> Option<usize> {
        let b = self.backend.as_mut()?;
        if !b.readable || !b.connected {
            return None;
        }
        match b.stream.read(scratch) {
            Ok(0) => {
                b.readable = false;
                Some(0)
            }
            Ok(n) => {
                if n < scratch.len() && !b.hup {
                    b.readable = false;
                }
                Some(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                b.readable = false;
                None
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
            Err(_) => {
                b.readable = false;
                Some(0)
            }
        }
    }

    // ---- writing ----

    fn flush_client(&mut self, registry: &Registry) -> bool {
        if self.c_out.len() == 0 {
            return false;
        }
        match self.c_out.flush(&mut self.client) {
            Ok(wrote) => {
                // Writability is watched only while a write waits, so that the
                // acknowledgements of every write do not wake the loop.
                let blocked = self.c_out.len() > 0;
                if blocked != self.c_watching_writes {
                    let interest = if blocked {
                        Interest::READABLE | Interest::WRITABLE
                    } else {
                        Interest::READABLE
                    };
                    let _ = registry.reregister(&mut self.client, token(self.id, false), interest);
                    self.c_watching_writes = blocked;
                }
                wrote
            }
            Err(_) => {
                // The client is gone: nothing more to do for it.
                self.done = true;
                true
            }
        }
    }

    fn flush_backend(&mut self, registry: &Registry, env: &mut Env) -> bool {
        let Some(b) = self.backend.as_mut() else {
            return false;
        };
        if !b.connected {
            match connect_result(&b.stream) {
                ConnectState::Pending => return false,
                ConnectState::Connected => b.connected = true,
                ConnectState::Failed(why) => {
                    self.connect_failed(registry, why);
                    return true;
                }
            }
        }
        if self.b_out.len() == 0 {
            if b.watching_writes && b.connected {
                let _ = registry.reregister(&mut b.stream, b.token, Interest::READABLE);
                b.watching_writes = false;
            }
            return false;
        }
        let Some(b) = self.backend.as_mut() else {
            return false;
        };
        match self.b_out.flush(&mut b.stream) {
            Ok(wrote) => {
                b.sent |= wrote;
                let blocked = self.b_out.len() > 0;
                if blocked != b.watching_writes {
                    let interest = if blocked {
                        Interest::READABLE | Interest::WRITABLE
                    } else {
                        Interest::READABLE
                    };
                    let _ = registry.reregister(&mut b.stream, b.token, interest);
                    b.watching_writes = blocked;
                }
                wrote
            }
            Err(_) => {
                self.backend_failed(registry, env);
                true
            }
        }
    }

    // ---- phases ----

    fn step_head(&mut self, registry: &Registry, env: &mut Env, scratch: &mut [u8]) -> bool {
        let mut progress = false;
        // A kept backend that speaks or hangs up between requests is dropped.
        if self.backend.as_ref().is_some_and(|b| b.readable) && self.read_backend(scratch).is_some()
        {
            self.drop_backend(registry);
            progress = true;
        }
        if self.c_in.is_empty() || self.head_needs_more() {
            progress |= self.read_client(scratch);
        }
        if self.c_in.is_empty() {
            if self.c_eof {
                self.done = true;
                return true;
            }
            return progress;
        }
        if self.head_started.is_none() {
            self.head_started = Some(Instant::now());
        }
        let mut head = std::mem::take(&mut self.head_buf);
        head.clear();
        let request = match http::parse_request(&self.c_in, self.peer, &mut head) {
            Parsed::Partial => {
                if self.c_eof {
                    self.done = true;
                    return true;
                }
                // Whatever the quick check said, more is needed: read it now, as
                // no new event comes for bytes already waiting.
                return progress | self.read_client(scratch);
            }
            Parsed::Invalid(reject) => {
                let body = format!("{}\n", reject.reason);
                self.respond(reject.status, &body, false);
                return true;
            }
            Parsed::Complete(request) => request,
        };
        self.c_in.drain(..request.head_len);
        let has_body = request.framing != Framing::Empty;
        let keep = request.keep_alive && !has_body && !self.c_eof;
        match &request.route {
            Route::Index => {
                let page = super::routes_page(&env.backends.routes(), env.proxy_port);
                self.respond(200, &page, keep);
            }
            Route::Misdirected => {
                let body = format!(
                    "this is the agent-procs proxy; it serves NAME.localhost:{} only, not '{}'\n",
                    env.proxy_port, request.host
                );
                self.respond(421, &body, false);
            }
            Route::Process(name) => {
                let now = Instant::now();
                self.exchange = Some(Exchange {
                    name: name.clone(),
                    head,
                    keep_alive: request.keep_alive,
                    upgrade: request.upgrade,
                    is_head: request.is_head,
                    bodiless: !has_body,
                    carries_body: !matches!(request.framing, Framing::Empty | Framing::Length(0)),
                    request: Body::new(request.framing),
                    awaiting_head: true,
                    response: Body::Done,
                    backend_keep_alive: false,
                    answered: false,
                    expect_continue: request.expect_continue,
                    wait_until: now + BACKEND_WAIT,
                    retry_at: None,
                    body_progress: now,
                    why_waiting: String::new(),
                });
                self.phase = Phase::Exchange;
                self.head_started = None;
                self.since = now;
                self.dial(registry, env);
            }
        }
        true
    }

    /// Whether the head in `c_in` is incomplete (so reading more may help).
    fn head_needs_more(&self) -> bool {
        !http::head_complete(&self.c_in)
    }

    fn step_exchange(&mut self, registry: &Registry, env: &mut Env, scratch: &mut [u8]) -> bool {
        let mut progress = false;
        // Request body: client → backend.
        let body_pending = self.exchange.as_ref().is_some_and(|e| !e.request.done());
        if body_pending {
            if self.c_in.is_empty() && self.b_out.len() < HIGH_WATER && self.read_client(scratch) {
                progress = true;
                if let Some(ex) = self.exchange.as_mut() {
                    ex.body_progress = Instant::now();
                }
            }
            if !self.c_in.is_empty() {
                let Some(ex) = self.exchange.as_mut() else {
                    return progress;
                };
                match ex.request.take(&self.c_in) {
                    Ok(n) => {
                        self.b_out.push(&self.c_in[..n]);
                        self.c_in.drain(..n);
                        progress |= n > 0;
                    }
                    Err(()) => {
                        self.fail_request(registry, 400, "bad chunked request body".into());
                        return true;
                    }
                }
            } else if self.c_eof {
                // The client gave up in the middle of its body.
                self.done = true;
                return true;
            }
        }
        // Response: a big body through the pipe; else backend → client, straight
        // from the read buffer when nothing of an earlier read waits.
        if let Some(moved) = self.splice_body(registry, env, scratch) {
            return progress | moved;
        }
        if self.c_out.len() < HIGH_WATER {
            let awaiting_head = self.exchange.as_ref().is_some_and(|e| e.awaiting_head);
            let limit = if awaiting_head && env.pipe.is_some() {
                HEAD_READ.min(scratch.len())
            } else {
                scratch.len()
            };
            match self.read_backend_raw(&mut scratch[..limit]) {
                Some(0) => {
                    self.backend_eof(registry, env);
                    return true;
                }
                Some(n) if self.b_in.is_empty() => {
                    let used = self.relay(registry, &scratch[..n]);
                    self.keep_unrelayed(registry, &scratch[used..n]);
                    progress = true;
                }
                Some(n) => {
                    self.b_in.extend_from_slice(&scratch[..n]);
                    self.relay_response(registry);
                    progress = true;
                }
                None => {}
            }
        }
        progress
    }

    /// Splice the next part of a response body with a known length from the
    /// backend to the client, when at least `SPLICE_MIN` of it is left and
    /// nothing waits before it. None when that does not apply (read instead);
    /// else whether anything happened.
    ///
    /// The pipe is shared by every connection, so it is left empty: what the
    /// client does not take at once is read out of it into `c_out`, whose
    /// high-water mark then stops reading the backend as for any other bytes.
    fn splice_body(
        &mut self,
        registry: &Registry,
        env: &mut Env,
        scratch: &mut [u8],
    ) -> Option<bool> {
        let ex = self.exchange.as_ref()?;
        let Body::Length(left) = ex.response else {
            return None;
        };
        let b = self.backend.as_mut()?;
        if ex.awaiting_head
            || left < SPLICE_MIN
            || !self.b_in.is_empty()
            || self.c_out.len() > 0
            || !b.readable
            || !b.connected
        {
            return None;
        }
        let pipe = env.pipe.as_ref()?;
        let want = usize::try_from(left).map_or(pipe.capacity, |l| l.min(pipe.capacity));
        let n = match pipe.fill(b.stream.as_raw_fd(), want) {
            // A short splice may mean the pipe ran out of slots, not that the
            // socket is empty: only "would block" ends its readiness.
            Ok(n) if n > 0 => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                b.readable = false;
                return Some(false);
            }
            // End of file, or an error: cut off in the middle of the body.
            Ok(_) | Err(_) => {
                b.readable = false;
                self.backend_eof(registry, env);
                return Some(true);
            }
        };
        let mut out = 0;
        while out < n {
            match pipe.drain_to(self.client.as_raw_fd(), n - out) {
                Ok(0) => break,
                Ok(k) => out += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    // The client is gone: empty the pipe for the next one.
                    self.done = true;
                    break;
                }
            }
        }
        // What the client did not take waits in `c_out` (or is dropped if it left).
        while out < n {
            let chunk = (n - out).min(scratch.len());
            match pipe.read_into(&mut scratch[..chunk]) {
                Ok(k) if k > 0 => {
                    if !self.done {
                        self.c_out.push(&scratch[..k]);
                    }
                    out += k;
                }
                Ok(_) | Err(_) => {
                    // Never seen; a pipe in an unknown state serves nobody again.
                    *env.pipe = None;
                    self.done = true;
                    return Some(true);
                }
            }
        }
        if self.done {
            return Some(true);
        }
        let Some(ex) = self.exchange.as_mut() else {
            return Some(true);
        };
        ex.response = match left - n as u64 {
            0 => Body::Done,
            rest => Body::Length(rest),
        };
        if ex.response.done() {
            // A short read proves the socket empty, which a short splice does
            // not: only a backend with nothing more to say may serve again.
            let spoiled = match self.backend.as_mut() {
                Some(b) => match b.stream.read(&mut scratch[..1]) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        b.readable = false;
                        false
                    }
                    // Bytes nobody asked for, its end of file, or an error.
                    Ok(_) | Err(_) => true,
                },
                None => false,
            };
            self.finish_exchange(registry);
            if spoiled {
                self.drop_backend(registry);
            }
        }
        Some(true)
    }

    /// Move what `b_in` holds of the response to the client.
    fn relay_response(&mut self, registry: &Registry) -> bool {
        let data = std::mem::take(&mut self.b_in);
        let used = self.relay(registry, &data);
        self.keep_unrelayed(registry, &data[used..]);
        used > 0
    }

    /// Bytes of the backend that `relay` did not take: the rest of a head, or, after
    /// the response ended, bytes nobody asked for (the connection is then dropped).
    fn keep_unrelayed(&mut self, registry: &Registry, rest: &[u8]) {
        if rest.is_empty() {
            return;
        }
        if self.phase == Phase::Exchange && self.exchange.is_some() {
            self.b_in.extend_from_slice(rest);
        } else {
            self.drop_backend(registry);
        }
    }

    /// Pass response bytes in `data` to the client: heads rewritten, body bytes as
    /// they are, head and body in one write when nothing waits before them. Returns
    /// how many bytes of `data` were taken.
    fn relay(&mut self, registry: &Registry, data: &[u8]) -> usize {
        // One buffer for the rewritten heads, kept from request to request.
        let mut head = std::mem::take(&mut self.response_head);
        let used = self.relay_with(registry, data, &mut head);
        if head.capacity() <= KEPT_HEAD {
            head.clear();
            self.response_head = head;
        }
        used
    }

    fn relay_with(&mut self, registry: &Registry, data: &[u8], head: &mut Vec<u8>) -> usize {
        let mut at = 0;
        loop {
            let Some(ex) = self.exchange.as_mut() else {
                return at;
            };
            head.clear();
            if ex.awaiting_head {
                match http::parse_response(&data[at..], ex.is_head, ex.keep_alive, head) {
                    Parsed::Partial => return at,
                    Parsed::Invalid(reject) => {
                        let name = ex.name.clone();
                        self.bad_gateway(
                            registry,
                            format!("{name} sent an invalid response: {}", reject.reason),
                        );
                        return data.len();
                    }
                    Parsed::Complete(response) => {
                        if response.status == 101 && !ex.upgrade {
                            let name = ex.name.clone();
                            self.bad_gateway(
                                registry,
                                format!("{name} switched protocols without being asked"),
                            );
                            return data.len();
                        }
                        at += response.head_len;
                        if !ex.answered {
                            // The body clock of a client that waited starts now.
                            ex.body_progress = Instant::now();
                        }
                        ex.answered = true;
                        if response.status == 101 {
                            // Whatever followed the head belongs to the tunnel.
                            self.phase = Phase::Tunnel;
                            send(&mut self.client, &mut self.c_out, head, &data[at..]);
                            return data.len();
                        }
                        if (100..200).contains(&response.status) {
                            // An interim answer; the real one follows.
                            send(&mut self.client, &mut self.c_out, head, &[]);
                            continue;
                        }
                        ex.awaiting_head = false;
                        ex.response = Body::new(response.framing);
                        ex.backend_keep_alive = response.keep_alive;
                        if response.framing == Framing::UntilClose {
                            ex.keep_alive = false;
                        }
                    }
                }
            }
            let Some(ex) = self.exchange.as_mut() else {
                return at;
            };
            let body = match ex.response.take(&data[at..]) {
                Ok(n) => &data[at..at + n],
                Err(()) => {
                    // Mid-body: all we can do is cut the client off.
                    self.done = true;
                    return data.len();
                }
            };
            if !head.is_empty() || !body.is_empty() {
                send(&mut self.client, &mut self.c_out, head, body);
            }
            at += body.len();
            if ex.response.done() {
                self.finish_exchange(registry);
            }
            return at;
        }
    }

    /// The response is complete: keep or close each side, then the next request.
    fn finish_exchange(&mut self, registry: &Registry) {
        let Some(mut ex) = self.exchange.take() else {
            return;
        };
        if ex.head.capacity() <= KEPT_HEAD {
            self.head_buf = std::mem::take(&mut ex.head);
        }
        if !ex.backend_keep_alive || !ex.request.done() || !self.b_in.is_empty() {
            self.drop_backend(registry);
        } else if let Some(b) = self.backend.as_mut() {
            b.reused = true;
            b.sent = false;
        }
        if !ex.keep_alive || !ex.request.done() || self.c_eof {
            self.phase = Phase::Closing;
            self.since = Instant::now();
            return;
        }
        self.phase = Phase::Head;
        self.since = Instant::now();
        self.head_started = None;
    }

    fn step_tunnel(&mut self, registry: &Registry, scratch: &mut [u8]) -> bool {
        let mut progress = false;
        if self.b_out.len() < HIGH_WATER {
            if self.c_in.is_empty() {
                progress |= self.read_client(scratch);
            }
            if !self.c_in.is_empty() {
                self.b_out.push(&self.c_in);
                self.c_in.clear();
                progress = true;
            }
        }
        if self.c_out.len() < HIGH_WATER {
            match self.read_backend(scratch) {
                Some(true) => {
                    send(&mut self.client, &mut self.c_out, &[], &self.b_in);
                    self.b_in.clear();
                    progress = true;
                }
                Some(false) => {
                    // The backend is done: finish writing to the client, then close.
                    self.drop_backend(registry);
                    self.phase = Phase::Closing;
                    self.since = Instant::now();
                    return true;
                }
                None => {}
            }
        }
        if self.c_eof && self.c_in.is_empty() && self.b_out.len() == 0 {
            if let Some(b) = self.backend.as_ref() {
                let _ = b.stream.shutdown(Shutdown::Write);
            }
            if self.backend.is_none() {
                self.done = true;
                return true;
            }
        }
        progress
    }

    fn step_closing(&mut self) -> bool {
        if self.c_out.len() > 0 {
            return false;
        }
        // Nothing unread: closing cannot reset the answer away.
        if self.c_in.is_empty() && (!self.c_readable || self.c_eof) {
            self.done = true;
            return true;
        }
        let _ = self.client.shutdown(Shutdown::Write);
        self.phase = Phase::Draining;
        self.since = Instant::now();
        self.c_in = Vec::new();
        true
    }

    fn step_draining(&mut self, scratch: &mut [u8]) -> bool {
        let mut drained = 0;
        while self.c_readable && !self.c_eof && drained < 256 * 1024 {
            match read_some(&mut self.client, scratch) {
                Some(0) => self.c_eof = true,
                Some(n) => drained += n,
                None => self.c_readable = false,
            }
        }
        if self.c_eof || drained >= 256 * 1024 {
            self.done = true;
            return true;
        }
        false
    }

    fn on_deadline(&mut self, registry: &Registry, env: &mut Env) {
        let now = Instant::now();
        match self.phase {
            Phase::Head if self.head_started.is_some() => {
                let why = format!(
                    "the request head did not arrive within {}\n",
                    span(self.timeout)
                );
                self.respond(408, &why, false);
            }
            Phase::Head => self.done = true,
            Phase::Exchange => {
                let stalled = self
                    .exchange
                    .as_ref()
                    .and_then(|ex| self.body_stall_deadline(ex))
                    .is_some_and(|at| at <= now);
                if stalled {
                    let why = format!(
                        "the request body stalled: no byte for {}\n",
                        span(self.timeout)
                    );
                    return self.bad_request_body(registry, why);
                }
                if self
                    .exchange
                    .as_ref()
                    .and_then(|e| e.retry_at)
                    .is_some_and(|at| at <= now)
                {
                    if let Some(ex) = self.exchange.as_mut() {
                        ex.retry_at = None;
                    }
                    self.dial(registry, env);
                }
            }
            Phase::Tunnel => {}
            Phase::Closing | Phase::Draining => self.done = true,
        }
    }

    // ---- the backend ----

    /// Connect to the process of the current exchange (or wait for it).
    fn dial(&mut self, registry: &Registry, env: &mut Env) {
        let Some(ex) = self.exchange.as_ref() else {
            return;
        };
        let lookup = env.backends.lookup(&ex.name);
        // 0.6's words first ("no running process named 'web'"), then ours.
        let (port, starting) = match lookup {
            Lookup::Up(port) => (port, false),
            Lookup::Starting(port) => (port, true),
            Lookup::Soon(why) => return self.wait_for_backend(registry, why),
            Lookup::Down(why) => {
                let name = self.exchange_name();
                let body = format!(
                    "no running process named '{name}': {why}\n\n{}",
                    super::routes_page(&env.backends.routes(), env.proxy_port)
                );
                return self.fail_request(registry, 502, body);
            }
            Lookup::Unknown => {
                let name = self.exchange_name();
                let body = format!(
                    "no running process named '{name}': there is no process of that name in this session\n\n{}",
                    super::routes_page(&env.backends.routes(), env.proxy_port)
                );
                return self.fail_request(registry, 502, body);
            }
        };
        let reuse = self
            .backend
            .as_ref()
            .is_some_and(|b| b.port == port && b.connected);
        if !reuse {
            self.drop_backend(registry);
        }
        let bodiless = self.exchange.as_ref().is_some_and(|e| e.bodiless);
        if !reuse && let Some((id, stream)) = take_pooled(env.pool, port, !bodiless) {
            // It stays registered (readable only) under its token, whose events
            // the proxy now routes here: no system call to take it.
            env.pool.lent.insert(id, self.id);
            self.backend = Some(Backend {
                stream,
                token: token(id, true),
                port,
                starting,
                connected: true,
                reused: true,
                sent: false,
                readable: false,
                hup: false,
                watching_writes: false,
                carried_body: false,
            });
        }
        let reuse = reuse || self.backend.is_some();
        if !reuse {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let mut stream = match TcpStream::connect(addr) {
                Ok(s) => s,
                Err(e) if crate::sys::out_of_descriptors(&e) => {
                    // Not the backend's fault: say what is wrong, and do not wait.
                    return self.fail_request(
                        registry,
                        503,
                        format!(
                            "the proxy is out of file descriptors ({}); try again shortly\n",
                            crate::error::describe_io(&e)
                        ),
                    );
                }
                Err(e) => {
                    let name = self.exchange_name();
                    let why = format!(
                        "{name} is not accepting connections on 127.0.0.1:{port} ({})",
                        refusal(&e)
                    );
                    return self.refused(registry, starting, why);
                }
            };
            let _ = stream.set_nodelay(true);
            if registry
                .register(
                    &mut stream,
                    token(self.id, true),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                let name = self.exchange_name();
                return self.fail_request(
                    registry,
                    502,
                    format!("cannot watch the connection to {name}\n"),
                );
            }
            self.backend = Some(Backend {
                stream,
                token: token(self.id, true),
                port,
                starting,
                connected: false,
                reused: false,
                sent: false,
                readable: true,
                hup: false,
                watching_writes: true,
                carried_body: false,
            });
        }
        if self.exchange.as_ref().is_some_and(|e| e.carries_body)
            && let Some(b) = self.backend.as_mut()
        {
            b.carried_body = true;
        }
        // The head goes first; body bytes follow as they come.
        if self.b_out.len() == 0
            && let Some(ex) = self.exchange.as_ref()
        {
            self.b_out.push(&ex.head);
        }
    }

    /// The name of the process the current request is for (for messages).
    fn exchange_name(&self) -> String {
        self.exchange
            .as_ref()
            .map(|e| e.name.clone())
            .unwrap_or_default()
    }

    fn wait_for_backend(&mut self, registry: &Registry, why: String) {
        let now = Instant::now();
        self.drop_backend(registry);
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        if now >= ex.wait_until {
            return self.fail_request(registry, 503, format!("{why}; gave up after 5 s\n"));
        }
        ex.why_waiting = why;
        ex.retry_at = Some((now + RETRY).min(ex.wait_until));
    }

    fn connect_failed(&mut self, registry: &Registry, why: String) {
        let (name, port, starting) = match (self.exchange.as_ref(), self.backend.as_ref()) {
            (Some(ex), Some(b)) => (ex.name.clone(), b.port, b.starting),
            _ => {
                self.drop_backend(registry);
                return;
            }
        };
        // Nothing was written: what waits in b_out goes to the next try.
        let why = format!("{name} is not accepting connections on 127.0.0.1:{port} ({why})");
        self.refused(registry, starting, why);
    }

    /// The backend's port refused the connection. A process that is still
    /// starting is waited for (up to 5 s, then 503), and so is one this request
    /// already waits for; one that has been running a while gets 502 at once,
    /// as in 0.6 and nginx.
    fn refused(&mut self, registry: &Registry, starting: bool, why: String) {
        let held = self
            .exchange
            .as_ref()
            .is_some_and(|e| !e.why_waiting.is_empty());
        if starting || held {
            self.wait_for_backend(registry, why);
        } else {
            self.fail_request(registry, 502, format!("{why}\n"));
        }
    }

    /// Writing to the backend failed.
    fn backend_failed(&mut self, registry: &Registry, env: &mut Env) {
        self.backend_eof(registry, env);
    }

    /// The backend closed (or reset) its connection.
    fn backend_eof(&mut self, registry: &Registry, env: &mut Env) {
        let Some(ex) = self.exchange.as_mut() else {
            self.drop_backend(registry);
            return;
        };
        let reused = self.backend.as_ref().is_some_and(|b| b.reused);
        if ex.awaiting_head && !ex.answered && self.b_in.is_empty() {
            if reused && ex.bodiless {
                // A kept connection the backend had closed: try once more on a new one.
                self.drop_backend(registry);
                self.b_out = Out::default();
                self.dial(registry, env);
                return;
            }
            let name = ex.name.clone();
            return self.bad_gateway(
                registry,
                format!("{name} closed the connection without answering"),
            );
        }
        if !ex.awaiting_head && matches!(ex.response, Body::UntilClose) {
            ex.response = Body::Done;
            ex.backend_keep_alive = false;
            self.finish_exchange(registry);
            return;
        }
        // Cut off in the middle of a response: the client cannot be told otherwise.
        self.drop_backend(registry);
        self.done = true;
    }

    // ---- our own answers ----

    /// Answer with our own response; `keep` keeps the connection for more.
    fn respond(&mut self, status: u16, body: &str, keep: bool) {
        let mut out = Vec::new();
        http::own_response(status, body, keep, &mut out);
        self.c_out.push(&out);
        self.since = Instant::now();
        self.head_started = None;
        if keep {
            self.phase = Phase::Head;
        } else {
            self.phase = Phase::Closing;
        }
    }

    /// The current request cannot be served: answer it and, unless it is safe to
    /// go on (no body left unread), close.
    fn fail_request(&mut self, registry: &Registry, status: u16, body: String) {
        let keep = self
            .exchange
            .as_ref()
            .is_some_and(|e| e.keep_alive && e.request.done() && !e.upgrade)
            && !self.c_eof;
        self.exchange = None;
        self.drop_backend(registry);
        self.b_out = Out::default();
        self.respond(status, &body, keep);
    }

    /// The client stopped sending its body: 408 if nothing was answered yet,
    /// else cut it off; the connection closes either way.
    fn bad_request_body(&mut self, registry: &Registry, why: String) {
        if self.exchange.as_ref().is_some_and(|e| e.answered) {
            self.drop_backend(registry);
            self.done = true;
            return;
        }
        self.fail_request(registry, 408, why);
    }

    fn bad_gateway(&mut self, registry: &Registry, why: String) {
        let answered = self.exchange.as_ref().is_some_and(|e| e.answered);
        if answered {
            self.drop_backend(registry);
            self.done = true;
            return;
        }
        self.fail_request(registry, 502, format!("{why}\n"));
    }
}

enum ConnectState {
    Pending,
    Connected,
    Failed(String),
}

fn connect_result(stream: &TcpStream) -> ConnectState {
    match stream.take_error() {
        Ok(Some(e)) | Err(e) => return ConnectState::Failed(refusal(&e)),
        Ok(None) => {}
    }
    match stream.peer_addr() {
        Ok(_) => ConnectState::Connected,
        Err(e) if e.kind() == io::ErrorKind::NotConnected => ConnectState::Pending,
        Err(e) => ConnectState::Failed(refusal(&e)),
    }
}

fn refusal(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => crate::error::describe_io(e),
    }
}

/// A timeout as a message shows it: `10 s`, or `500 ms` (tests shorten them).
fn span(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// One read: Some(n) bytes (0 at end of stream), None when it would block.
/// An error counts as the end of the stream.
fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> Option<usize> {
    loop {
        match stream.read(buf) {
            Ok(n) => return Some(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Some(0),
        }
    }
}

/// An idle pooled connection to `port`. With `check`, one the backend has not
/// closed (a request with a body cannot be sent again; one without is retried
/// on a new connection if the old one turns out closed, so it skips the check).
fn take_pooled(pool: &mut Pool, port: u16, check: bool) -> Option<(u64, TcpStream)> {
    while let Some((id, mut stream)) = pool.take(port) {
        if !check {
            return Some((id, stream));
        }
        let mut byte = [0u8; 1];
        // Still open and silent: reading would block.
        if let Err(e) = stream.read(&mut byte)
            && e.kind() == io::ErrorKind::WouldBlock
        {
            return Some((id, stream));
        }
    }
    None
}

/// Write `head` then `body` to the client now, in one vectored write, if nothing
/// waits before them; queue what the socket does not take.
fn send(stream: &mut TcpStream, out: &mut Out, head: &[u8], body: &[u8]) {
    let (mut head, mut body) = (head, body);
    if out.len() == 0 {
        while !head.is_empty() || !body.is_empty() {
            let parts = [io::IoSlice::new(head), io::IoSlice::new(body)];
            match stream.write_vectored(&parts) {
                Ok(0) => break,
                Ok(n) => {
                    let from_head = n.min(head.len());
                    head = &head[from_head..];
                    body = &body[n - from_head..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Would block, or an error the next flush reports.
                Err(_) => break,
            }
        }
    }
    out.push(head);
    out.push(body);
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(pool.put(1, 4000, a));
        assert!(pool.put(2, 4000, b));
        assert!(pool.put(3, 4001, c));
        assert_eq!(pool.held(), 3);
        // An event on connection 2 (bytes nobody asked for, a hang-up) closes it.
        assert!(pool.evict(2));
        assert!(!pool.evict(2), "evicted twice");
        assert!(!pool.evict(7), "an id that was never pooled");
        assert_eq!(pool.held(), 2);
        let (id, got) = pool.take(4000).expect("connection 1");
        assert_eq!(id, 1, "the token it was pooled under");
        assert_eq!(local_port(&got), a_port, "not the evicted {b_port}");
        assert!(pool.take(4000).is_none());
        // Its id is no longer the pool's: a late event for it evicts nothing.
        assert!(!pool.evict(1));
        assert!(pool.take(4002).is_none());
        assert!(pool.evict_any());
        assert_eq!(pool.held(), 0);
        assert!(!pool.evict_any());
    }

    #[test]
    fn a_lent_connection_is_found_by_its_token_until_it_is_returned() {
        let mut pool = Pool::default();
        let (_l, a) = stream();
        assert!(pool.put(5, 4000, a));
        let (id, a) = take_pooled(&mut pool, 4000, false).expect("the pooled connection");
        assert_eq!(id, 5);
        pool.lent.insert(id, 9);
        assert_eq!(pool.holder(5), Some(9), "its events go to client 9");
        // Back in the pool under the same token: events evict it again.
        assert!(pool.put(5, 4000, a));
        assert_eq!(pool.holder(5), None);
        assert!(pool.evict(5));
        pool.lent.insert(6, 9);
        pool.returned(6);
        assert_eq!(pool.holder(6), None, "closed by its holder");
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
            assert!(pool.put(id, 4000, s));
        }
        let (_l, extra) = stream();
        assert!(!pool.put(99, 4000, extra), "over the share of one port");
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

    #[test]
    fn timeouts_read_in_the_unit_they_were_set_in() {
        assert_eq!(span(Duration::from_secs(10)), "10 s");
        assert_eq!(span(Duration::from_millis(700)), "700 ms");
        assert_eq!(span(Duration::from_millis(1500)), "1500 ms");
    }
}
