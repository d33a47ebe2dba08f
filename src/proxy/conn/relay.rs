//! Moving a connection's bytes: reading each side until it would block,
//! writing what waits, passing the response to the client (heads rewritten,
//! big bodies through `splice`), and the raw tunnel after a 101.

use super::super::http::{self, Chunked, Framing, Parsed};
use super::super::socket::{Connecting, Socket};
use super::{Conn, Env, HIGH_WATER, KEPT_HEAD, Phase};
use std::io::{self, Read, Write};
use std::time::Instant;

/// While a response head is awaited, a read takes at most this much, so that
/// most of a big body stays in the kernel for `splice` (a response of up to
/// this size still comes in one read).
const HEAD_READ: usize = 128 * 1024;
/// Response bodies with at least this many bytes left move through a pipe with
/// `splice(2)` instead of being read and written: no copy, but three system
/// calls more per response. That loses at 64 KiB (49.1 against 46.1 µs of CPU
/// per request with 16 KiB here) and wins a quarter at 1 MiB (BENCHMARKS.md).
const SPLICE_MIN: u64 = 128 * 1024;

/// Where a body stands.
#[derive(Debug)]
pub(super) enum Body {
    Done,
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

impl Body {
    pub(super) fn new(framing: Framing) -> Body {
        match framing {
            Framing::Empty | Framing::Length(0) => Body::Done,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked(Chunked::default()),
            Framing::UntilClose => Body::UntilClose,
        }
    }

    pub(super) fn done(&self) -> bool {
        matches!(self, Body::Done)
    }

    /// How many of `data` belong to the body; Err for a broken chunked body.
    pub(super) fn take(&mut self, data: &[u8]) -> Result<usize, ()> {
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
pub(super) struct Out {
    buf: Vec<u8>,
    pos: usize,
}

impl Out {
    pub(super) fn len(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(super) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Write what we can. Ok(true) when something was written.
    fn flush(&mut self, stream: &mut impl Write) -> io::Result<bool> {
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

/// One read: Some(n) bytes (0 at end of stream), None when it would block.
/// An error counts as the end of the stream.
pub(super) fn read_some(stream: &mut impl Read, buf: &mut [u8]) -> Option<usize> {
    loop {
        match stream.read(buf) {
            Ok(n) => return Some(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Some(0),
        }
    }
}

/// Write `head` then `body` to the client now, in one vectored write, if nothing
/// waits before them; queue what the socket does not take.
fn send(stream: &mut impl Write, out: &mut Out, head: &[u8], body: &[u8]) {
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

impl<S: Socket> Conn<S> {
    // ---- reading ----

    /// Read from the client into `c_in`. True when bytes (or its end) came.
    /// A short read does not prove the socket empty: readiness ends only
    /// when a read would block.
    pub(super) fn read_client(&mut self, scratch: &mut [u8]) -> bool {
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
                true
            }
            None => {
                self.c_readable = false;
                false
            }
        }
    }

    /// Read from the backend into `b_in`: Some(true) bytes, Some(false) EOF,
    /// None nothing (would block, or not connected yet).
    pub(super) fn read_backend(&mut self, scratch: &mut [u8]) -> Option<bool> {
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
            Ok(n) => Some(n),
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

    pub(super) fn flush_client(&mut self) -> bool {
        if self.c_out.len() == 0 {
            return false;
        }
        match self.c_out.flush(&mut self.client) {
            Ok(wrote) => {
                self.c_watch.writes = self.c_out.len() > 0;
                wrote
            }
            Err(_) => {
                // The client is gone: nothing more to do for it.
                self.done = true;
                true
            }
        }
    }

    pub(super) fn flush_backend(&mut self, env: &mut Env<S>) -> bool {
        let Some(b) = self.backend.as_mut() else {
            return false;
        };
        if !b.connected {
            match b.stream.connecting() {
                Connecting::Pending => return false,
                Connecting::Connected => b.connected = true,
                Connecting::Failed(why) => {
                    self.connect_failed(why);
                    return true;
                }
            }
        }
        if self.b_out.len() == 0 {
            b.watch.writes = false;
            return false;
        }
        match self.b_out.flush(&mut b.stream) {
            Ok(wrote) => {
                b.watch.writes = self.b_out.len() > 0;
                wrote
            }
            Err(_) => {
                self.backend_eof(env);
                true
            }
        }
    }

    // ---- the response ----

    /// Response: a big body through the pipe; else backend → client, straight
    /// from the read buffer when nothing of an earlier read waits.
    pub(super) fn pass_response(&mut self, env: &mut Env<S>, scratch: &mut [u8]) -> bool {
        if let Some(moved) = self.splice_body(env, scratch) {
            return moved;
        }
        if self.c_out.len() >= HIGH_WATER {
            return false;
        }
        let awaiting_head = self.exchange.as_ref().is_some_and(|e| e.awaiting_head);
        let limit = if awaiting_head && env.pipe.is_some() {
            HEAD_READ.min(scratch.len())
        } else {
            scratch.len()
        };
        match self.read_backend_raw(&mut scratch[..limit]) {
            Some(0) => {
                self.backend_eof(env);
                true
            }
            Some(n) if self.b_in.is_empty() => {
                let used = self.relay(&scratch[..n]);
                self.keep_unrelayed(&scratch[used..n]);
                true
            }
            Some(n) => {
                self.b_in.extend_from_slice(&scratch[..n]);
                self.relay_response();
                true
            }
            None => false,
        }
    }

    /// Splice the next part of a response body with a known length from the
    /// backend to the client, when at least `SPLICE_MIN` of it is left and
    /// nothing waits before it. None when that does not apply (read instead);
    /// else whether anything happened.
    ///
    /// The pipe is shared by every connection, so it is left empty: what the
    /// client does not take at once is read out of it into `c_out`, whose
    /// high-water mark then stops reading the backend as for any other bytes.
    fn splice_body(&mut self, env: &mut Env<S>, scratch: &mut [u8]) -> Option<bool> {
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
        let n = match pipe.fill(b.stream.fd(), want) {
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
                self.backend_eof(env);
                return Some(true);
            }
        };
        if !self.empty_pipe(env, scratch, n) {
            return Some(true);
        }
        self.spliced(left - n as u64);
        Some(true)
    }

    /// Send the `n` bytes in the pipe to the client, keeping in `c_out` what it
    /// does not take. False when the connection is over (the client left, or
    /// the pipe broke).
    fn empty_pipe(&mut self, env: &mut Env<S>, scratch: &mut [u8], n: usize) -> bool {
        let Some(pipe) = env.pipe.as_ref() else {
            return false;
        };
        let mut out = 0;
        while out < n {
            match pipe.drain_to(self.client.fd(), n - out) {
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
                    return false;
                }
            }
        }
        !self.done
    }

    /// `rest` bytes of the spliced body are left; at 0 the exchange ends.
    fn spliced(&mut self, rest: u64) {
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        ex.response = match rest {
            0 => Body::Done,
            rest => Body::Length(rest),
        };
        if ex.response.done() {
            // `finish_exchange` keeps the backend only if it has nothing more.
            self.finish_exchange();
        }
    }

    /// Move what `b_in` holds of the response to the client.
    fn relay_response(&mut self) -> bool {
        let data = std::mem::take(&mut self.b_in);
        let used = self.relay(&data);
        self.keep_unrelayed(&data[used..]);
        used > 0
    }

    /// Bytes of the backend that `relay` did not take: the rest of a head, or, after
    /// the response ended, bytes nobody asked for (the connection is then dropped).
    fn keep_unrelayed(&mut self, rest: &[u8]) {
        if rest.is_empty() {
            return;
        }
        if self.phase == Phase::Exchange && self.exchange.is_some() {
            self.b_in.extend_from_slice(rest);
        } else {
            self.drop_backend();
        }
    }

    /// Pass response bytes in `data` to the client: heads rewritten, body bytes as
    /// they are, head and body in one write when nothing waits before them. Returns
    /// how many bytes of `data` were taken.
    fn relay(&mut self, data: &[u8]) -> usize {
        // One buffer for the rewritten heads, kept from request to request.
        let mut head = std::mem::take(&mut self.response_head);
        let used = self.relay_with(data, &mut head);
        if head.capacity() <= KEPT_HEAD {
            head.clear();
            self.response_head = head;
        }
        used
    }

    fn relay_with(&mut self, data: &[u8], head: &mut Vec<u8>) -> usize {
        let mut at = 0;
        loop {
            let Some(ex) = self.exchange.as_mut() else {
                return at;
            };
            head.clear();
            if ex.awaiting_head {
                match self.response_head(&data[at..], head) {
                    Heading::Partial => return at,
                    Heading::Over => return data.len(),
                    Heading::Interim(len) => {
                        at += len;
                        continue;
                    }
                    Heading::Final(len) => at += len,
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
                self.finish_exchange();
            }
            return at;
        }
    }

    /// A response head at the start of `data`, rewritten into `head`. Interim
    /// (1xx) heads and a 101 go to the client here; a final head is left in
    /// `head` to go with the first body bytes.
    fn response_head(&mut self, data: &[u8], head: &mut Vec<u8>) -> Heading {
        let Some(ex) = self.exchange.as_mut() else {
            return Heading::Over;
        };
        let response = match http::parse_response(data, ex.is_head, ex.keep_alive, head) {
            Parsed::Partial => return Heading::Partial,
            Parsed::Invalid(reject) => {
                let name = ex.name.clone();
                self.bad_gateway(format!(
                    "{name} sent an invalid response: {}",
                    reject.reason
                ));
                return Heading::Over;
            }
            Parsed::Complete(response) => response,
        };
        if response.status == 101 && !ex.upgrade {
            let name = ex.name.clone();
            self.bad_gateway(format!("{name} switched protocols without being asked"));
            return Heading::Over;
        }
        if !ex.answered {
            // The body clock of a client that waited starts now.
            ex.body_progress = Instant::now();
        }
        ex.answered = true;
        if response.status == 101 {
            // Whatever followed the head belongs to the tunnel.
            self.phase = Phase::Tunnel;
            send(
                &mut self.client,
                &mut self.c_out,
                head,
                &data[response.head_len..],
            );
            return Heading::Over;
        }
        if (100..200).contains(&response.status) {
            // An interim answer; the real one follows.
            send(&mut self.client, &mut self.c_out, head, &[]);
            return Heading::Interim(response.head_len);
        }
        ex.awaiting_head = false;
        ex.response = Body::new(response.framing);
        ex.backend_keep_alive = response.keep_alive;
        if response.framing == Framing::UntilClose {
            ex.keep_alive = false;
        }
        Heading::Final(response.head_len)
    }

    // ---- after a 101 ----

    pub(super) fn step_tunnel(&mut self, scratch: &mut [u8]) -> bool {
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
                    self.drop_backend();
                    self.phase = Phase::Closing;
                    self.since = Instant::now();
                    return true;
                }
                None => {}
            }
        }
        if self.c_eof && self.c_in.is_empty() && self.b_out.len() == 0 {
            match self.backend.as_ref() {
                Some(b) => b.stream.shutdown_write(),
                None => {
                    self.done = true;
                    return true;
                }
            }
        }
        progress
    }
}

/// What a response head at the start of the data was.
enum Heading {
    /// Not all there yet.
    Partial,
    /// 1xx (not 101), this long, sent on; the real head follows.
    Interim(usize),
    /// The final head, this long.
    Final(usize),
    /// The exchange is over (a 101, or a bad head answered); all data was taken.
    Over,
}
