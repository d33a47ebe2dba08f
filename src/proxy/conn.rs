//! One client connection of the proxy, and the backend connection it uses: a
//! state machine that readiness and deadlines move on. It reads and writes its
//! own sockets but never registers them or keeps a timer: it says what it wants
//! watched (`sync`, as `Step::Interest`) and when it must wake (`deadline`),
//! and the daemon's loop does both.
//!
//! ```text
//! Head ──request──▶ Exchange ──response done──▶ Head (keep-alive)
//!  │                 │   ▲  (backend not up yet: retry every 100 ms, ≤ 5 s)
//!  │                 │   └── Connect
//!  │                 └──101──▶ Tunnel
//!  └──error, close──▶ Closing ──flushed──▶ Draining ──EOF or 2 s──▶ done
//! ```
//!
//! Edge-triggered: a side that signalled readiness is read until it would
//! block (a short read does not prove it empty), unless what it sent waits to
//! be written to the other side. Buffers stay bounded that way: a slow client
//! slows its backend, never the daemon. Moving bytes is in `relay.rs`.

mod backend;
mod relay;
#[cfg(test)]
mod tests;

use super::http::{self, Framing, Parsed, Route};
use super::pool::Pool;
use super::socket::Socket;
use super::{Backends, ConnId, Side, Step, token};
use relay::{Body, Out};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A partial request head must be complete within this, and a request body
/// may go this long without a byte (unless the backend is the one not reading).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for a process that is starting or restarting.
pub const BACKEND_WAIT: Duration = Duration::from_secs(5);
/// A keep-alive connection with no request is closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const RETRY: Duration = Duration::from_millis(100);
/// After an error response, how long unread request bytes are drained, so
/// closing does not reset the connection before the client read the answer.
const LINGER: Duration = Duration::from_secs(2);
/// Bytes waiting to be written to one side before the other side is not read.
const HIGH_WATER: usize = 256 * 1024;
/// Head buffers up to this size are kept for the next request; a bigger one
/// (heads may have 64 KiB) is not held by an idle connection.
const KEPT_HEAD: usize = 4096;

/// The timeouts a connection keeps (tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `REQUEST_TIMEOUT`.
    pub request: Duration,
    /// `BACKEND_WAIT`.
    pub hold: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request: REQUEST_TIMEOUT,
            hold: BACKEND_WAIT,
        }
    }
}

/// What a connection needs from around it while it runs.
pub struct Env<'a, S> {
    pub backends: &'a dyn Backends,
    pub pool: &'a mut Pool<S>,
    pub proxy_port: u16,
    /// The pipe response bodies are spliced through, empty between uses; None
    /// when there is none (then bodies are read and written).
    pub pipe: &'a mut Option<crate::sys::SplicePipe>,
}

/// What a socket is registered for, and what it should be.
#[derive(Debug, Clone, Copy, Default)]
struct Watch {
    /// None: not registered yet; Some(w): readable, and writable if w.
    registered: Option<bool>,
    /// Writability is wanted only while a write waits, so that the
    /// acknowledgements of every write do not wake the loop.
    writes: bool,
}

impl Watch {
    /// The step that makes the registration what it should be, if any.
    fn step(&mut self, token: usize, fd: std::os::fd::RawFd) -> Option<Step> {
        if self.registered == Some(self.writes) {
            return None;
        }
        let add = self.registered.is_none();
        self.registered = Some(self.writes);
        Some(Step::Interest {
            token,
            fd,
            interest: if self.writes {
                mio::Interest::READABLE | mio::Interest::WRITABLE
            } else {
                mio::Interest::READABLE
            },
            add,
        })
    }
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

struct Backend<S> {
    stream: S,
    /// The id whose backend token it is registered under: this connection's,
    /// or the one it had in the pool.
    token_id: ConnId,
    watch: Watch,
    port: u16,
    /// Its process was starting when we dialled: a refusal is waited out.
    starting: bool,
    connected: bool,
    /// Kept from an earlier exchange: it may have been closed under us.
    reused: bool,
    /// It may have bytes to read: set by an event, cleared when a read would block.
    readable: bool,
    /// The backend has closed its side.
    hup: bool,
    /// It carried a request body. A backend may have ignored the body and read
    /// it as a request of its own (a GET with Content-Length, to many dev
    /// servers), whose answer would come later: such a connection serves no
    /// other client.
    carried_body: bool,
}

impl<S: Socket> Backend<S> {
    /// Whether it has nothing to read: what it may still have (it was readable
    /// when last read) is read, so that the answer is "would block", never a
    /// guess from a short read. Bytes, its end or an error: it is spoiled.
    fn quiet(&mut self) -> bool {
        if !self.readable {
            return !self.hup;
        }
        loop {
            match self.stream.read(&mut [0u8; 1]) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return !self.hup;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(_) | Err(_) => return false,
            }
        }
    }
}

/// The request being relayed.
struct Exchange {
    name: String,
    /// The head as sent to the backend, for one retry on a stale kept connection.
    head: Vec<u8>,
    keep_alive: bool,
    /// The client said `Connection: close` (or spoke HTTP/1.0 without keep-alive).
    client_closes: bool,
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

pub struct Conn<S> {
    id: ConnId,
    client: S,
    c_watch: Watch,
    peer: IpAddr,
    backend: Option<Backend<S>>,
    phase: Phase,
    /// The timer that counts for this connection: when, and its generation
    /// (see `Proxy::arm`).
    pub armed: Option<(Instant, u64)>,
    since: Instant,
    head_started: Option<Instant>,
    limits: Limits,
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
    /// The client may have bytes to read: set by an event, cleared when a read
    /// would block.
    c_readable: bool,
    c_eof: bool,
    /// The client asked to close after a request that was read whole, so it
    /// has nothing more to send: closing needs no look for unread bytes.
    expect_nothing: bool,
    released: Vec<ConnId>,
    deadline_hit: bool,
    done: bool,
}

impl<S: Socket> Conn<S> {
    /// A connection just accepted; `sync` asks for it to be watched.
    pub fn new(id: ConnId, client: S, peer: IpAddr, limits: Limits) -> Conn<S> {
        Conn {
            id,
            client,
            c_watch: Watch::default(),
            peer,
            backend: None,
            phase: Phase::Head,
            armed: None,
            since: Instant::now(),
            head_started: None,
            limits,
            exchange: None,
            c_in: Vec::new(),
            c_out: Out::default(),
            head_buf: Vec::new(),
            response_head: Vec::new(),
            b_in: Vec::new(),
            b_out: Out::default(),
            c_readable: true,
            c_eof: false,
            expect_nothing: false,
            released: Vec::new(),
            deadline_hit: false,
            done: false,
        }
    }

    /// A readiness event for one side (`hup`: its peer closed, or it failed).
    /// Writability needs no flag: every run writes what waits.
    pub fn ready(&mut self, side: Side, hup: bool) {
        match side {
            Side::Client => self.c_readable = true,
            Side::Backend => {
                if let Some(b) = self.backend.as_mut() {
                    b.readable = true;
                    b.hup |= hup;
                }
            }
        }
    }

    /// Its deadline passed; the next `run` acts on it.
    pub fn deadline_passed(&mut self) {
        self.deadline_hit = true;
    }

    pub fn finished(&self) -> bool {
        self.done
    }

    /// Ask for each socket to be watched as it should be now.
    pub fn sync(&mut self, steps: &mut Vec<Step>) {
        steps.extend(
            self.c_watch
                .step(token(self.id, Side::Client), self.client.fd()),
        );
        if let Some(b) = self.backend.as_mut() {
            steps.extend(
                b.watch
                    .step(token(b.token_id, Side::Backend), b.stream.fd()),
            );
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Head => Some(match self.head_started {
                Some(t) => t + self.limits.request,
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
            .then_some(ex.body_progress + self.limits.request)
    }

    /// Close; hands back the backend connection when it is idle and may serve
    /// another client, with the id of the token it is registered under.
    pub fn close(&mut self) -> Option<(ConnId, u16, S)> {
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
                    && b.watch.registered == Some(false)
                    && !b.watch.writes =>
            {
                Some((b.token_id, b.port, b.stream))
            }
            Some(b) => {
                self.release(b.token_id);
                None
            }
            None => None,
        }
    }

    /// Close the backend connection (closing also ends its registration).
    fn drop_backend(&mut self) {
        if let Some(b) = self.backend.take() {
            self.release(b.token_id);
        }
        self.b_in.clear();
    }

    /// A backend connection taken from the pool is closed: its token is no
    /// longer ours (`take_released` tells the pool).
    fn release(&mut self, t: ConnId) {
        if t != self.id {
            self.released.push(t);
        }
    }

    /// Tokens of pooled connections this one took and has closed since asked last.
    pub fn take_released(&mut self) -> std::vec::Drain<'_, ConnId> {
        self.released.drain(..)
    }

    /// The id of the token its backend connection is registered under.
    pub fn backend_token(&self) -> Option<ConnId> {
        self.backend.as_ref().map(|b| b.token_id)
    }

    /// The socket could not be watched: without events it would hang, so give up.
    pub fn unwatchable(&mut self, side: Side) {
        match side {
            Side::Backend if self.exchange.is_some() => {
                let name = self.exchange_name();
                self.fail_request(502, format!("cannot watch the connection to {name}\n"));
            }
            Side::Backend => self.drop_backend(),
            Side::Client => self.done = true,
        }
    }

    /// Make the progress possible now. Returns true when it stopped with work
    /// left (its share of this loop turn is spent); run it again soon then, as
    /// no new event will come for bytes already waiting.
    pub fn run(&mut self, env: &mut Env<S>, scratch: &mut [u8]) -> bool {
        if std::mem::take(&mut self.deadline_hit) {
            self.on_deadline(env);
        }
        // Each pass moves bytes one step; stop when a pass changes nothing.
        for _ in 0..64 {
            if self.done {
                return false;
            }
            let mut progress = false;
            progress |= self.flush_client();
            progress |= self.flush_backend(env);
            progress |= match self.phase {
                Phase::Head => self.step_head(env, scratch),
                Phase::Exchange => self.step_exchange(env, scratch),
                Phase::Tunnel => self.step_tunnel(scratch),
                Phase::Closing => self.step_closing(scratch),
                Phase::Draining => self.step_draining(scratch),
            };
            if !progress {
                return false;
            }
        }
        true
    }

    // ---- phases ----

    fn step_head(&mut self, env: &mut Env<S>, scratch: &mut [u8]) -> bool {
        let mut progress = false;
        // A kept backend that speaks or hangs up between requests is dropped.
        if self.backend.as_ref().is_some_and(|b| b.readable) && self.read_backend(scratch).is_some()
        {
            self.drop_backend();
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
                self.head_buf = head;
                if self.c_eof {
                    self.done = true;
                    return true;
                }
                // More is needed: read it now, as no new event comes for bytes
                // already waiting.
                return progress | self.read_client(scratch);
            }
            Parsed::Invalid(reject) => {
                self.head_buf = head;
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
                self.head_buf = head;
                let page = super::routes_page(&env.backends.routes(), env.proxy_port);
                self.respond(200, &page, keep);
            }
            Route::Misdirected => {
                self.head_buf = head;
                let body = format!(
                    "this is the agent-procs proxy; it serves NAME.localhost:{} only, not '{}'\n",
                    env.proxy_port, request.host
                );
                self.respond(421, &body, false);
            }
            Route::Process(name) => self.start_exchange(env, name.clone(), &request, head),
        }
        true
    }

    /// A request for process `name` arrived, its head rewritten into `head`.
    fn start_exchange(&mut self, env: &mut Env<S>, name: String, r: &http::Request, head: Vec<u8>) {
        let now = Instant::now();
        let has_body = r.framing != Framing::Empty;
        self.exchange = Some(Exchange {
            name,
            head,
            keep_alive: r.keep_alive,
            client_closes: !r.keep_alive,
            upgrade: r.upgrade,
            is_head: r.is_head,
            bodiless: !has_body,
            carries_body: !matches!(r.framing, Framing::Empty | Framing::Length(0)),
            request: Body::new(r.framing),
            awaiting_head: true,
            response: Body::Done,
            backend_keep_alive: false,
            answered: false,
            expect_continue: r.expect_continue,
            wait_until: now + self.limits.hold,
            retry_at: None,
            body_progress: now,
            why_waiting: String::new(),
        });
        self.phase = Phase::Exchange;
        self.head_started = None;
        self.since = now;
        self.dial(env);
    }

    /// Whether the head in `c_in` is incomplete (so reading more may help).
    fn head_needs_more(&self) -> bool {
        !http::head_complete(&self.c_in)
    }

    fn step_exchange(&mut self, env: &mut Env<S>, scratch: &mut [u8]) -> bool {
        let progress = match self.pass_request_body(scratch) {
            Some(progress) => progress,
            None => return true,
        };
        progress | self.pass_response(env, scratch)
    }

    /// Request body: client → backend. None when the exchange ended.
    fn pass_request_body(&mut self, scratch: &mut [u8]) -> Option<bool> {
        let mut progress = false;
        if self.exchange.as_ref().is_none_or(|e| e.request.done()) {
            return Some(false);
        }
        if self.c_in.is_empty() && self.b_out.len() < HIGH_WATER && self.read_client(scratch) {
            progress = true;
            if let Some(ex) = self.exchange.as_mut() {
                ex.body_progress = Instant::now();
            }
        }
        if !self.c_in.is_empty() {
            let ex = self.exchange.as_mut()?;
            match ex.request.take(&self.c_in) {
                Ok(n) => {
                    self.b_out.push(&self.c_in[..n]);
                    self.c_in.drain(..n);
                    progress |= n > 0;
                }
                Err(()) => {
                    self.fail_request(400, "bad chunked request body".into());
                    return None;
                }
            }
        } else if self.c_eof {
            // The client gave up in the middle of its body.
            self.done = true;
            return None;
        }
        Some(progress)
    }

    /// The response is complete: keep or close each side, then the next request.
    fn finish_exchange(&mut self) {
        let Some(mut ex) = self.exchange.take() else {
            return;
        };
        if ex.head.capacity() <= KEPT_HEAD {
            self.head_buf = std::mem::take(&mut ex.head);
        }
        // Only a backend with nothing more to say may serve again.
        let quiet = self.backend.as_mut().is_some_and(|b| b.quiet());
        if !ex.backend_keep_alive || !ex.request.done() || !self.b_in.is_empty() || !quiet {
            self.drop_backend();
        } else if let Some(b) = self.backend.as_mut() {
            b.reused = true;
        }
        if !ex.keep_alive || !ex.request.done() || self.c_eof {
            self.expect_nothing = ex.client_closes && ex.request.done();
            self.phase = Phase::Closing;
            self.since = Instant::now();
            return;
        }
        self.phase = Phase::Head;
        self.since = Instant::now();
        self.head_started = None;
    }

    fn step_closing(&mut self, scratch: &mut [u8]) -> bool {
        if self.c_out.len() > 0 {
            return false;
        }
        // Whether the client sent more than we read: learn it before closing
        // (as nginx, not after a client that said it was done: what it would
        // send breaks the protocol, and only it can lose its answer to a reset).
        if self.c_in.is_empty() && self.c_readable && !self.c_eof && !self.expect_nothing {
            self.read_client(scratch);
        }
        // Nothing unread: closing cannot reset the answer away.
        let unread = self.c_readable && !self.c_eof && !self.expect_nothing;
        if self.c_in.is_empty() && !unread {
            self.done = true;
            return true;
        }
        self.client.shutdown_write();
        self.phase = Phase::Draining;
        self.since = Instant::now();
        self.c_in = Vec::new();
        true
    }

    fn step_draining(&mut self, scratch: &mut [u8]) -> bool {
        let mut drained = 0;
        while self.c_readable && !self.c_eof && drained < 256 * 1024 {
            match relay::read_some(&mut self.client, scratch) {
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

    fn on_deadline(&mut self, env: &mut Env<S>) {
        let now = Instant::now();
        match self.phase {
            Phase::Head if self.head_started.is_some() => {
                let why = format!(
                    "the request head did not arrive within {}\n",
                    span(self.limits.request)
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
                        span(self.limits.request)
                    );
                    return self.bad_request_body(why);
                }
                let retry = self
                    .exchange
                    .as_mut()
                    .filter(|e| e.retry_at.is_some_and(|at| at <= now));
                if let Some(ex) = retry {
                    ex.retry_at = None;
                    self.dial(env);
                }
            }
            Phase::Tunnel => {}
            Phase::Closing | Phase::Draining => self.done = true,
        }
    }

    // ---- our own answers ----

    /// Answer with our own response; `keep` keeps the connection for more.
    fn respond(&mut self, status: u16, body: &str, keep: bool) {
        let mut out = Vec::new();
        http::own_response(status, body, keep, &mut out);
        self.c_out.push(&out);
        self.since = Instant::now();
        self.head_started = None;
        self.expect_nothing = false;
        self.phase = if keep { Phase::Head } else { Phase::Closing };
    }

    /// The current request cannot be served: answer it and, unless it is safe to
    /// go on (no body left unread), close.
    fn fail_request(&mut self, status: u16, body: String) {
        let keep = self
            .exchange
            .as_ref()
            .is_some_and(|e| e.keep_alive && e.request.done() && !e.upgrade)
            && !self.c_eof;
        self.exchange = None;
        self.drop_backend();
        self.b_out = Out::default();
        self.respond(status, &body, keep);
    }

    /// The client stopped sending its body: 408 if nothing was answered yet,
    /// else cut it off; the connection closes either way.
    fn bad_request_body(&mut self, why: String) {
        if self.exchange.as_ref().is_some_and(|e| e.answered) {
            self.drop_backend();
            self.done = true;
            return;
        }
        self.fail_request(408, why);
    }

    fn bad_gateway(&mut self, why: String) {
        if self.exchange.as_ref().is_some_and(|e| e.answered) {
            self.drop_backend();
            self.done = true;
            return;
        }
        self.fail_request(502, format!("{why}\n"));
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
