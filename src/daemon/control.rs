//! One control connection: bytes in, request lines out; responses in, bytes out.
//! It buffers within caps and reports what it saw; the loop decides what to do.
//! It never touches the poll registry or any other part of the daemon.

use crate::protocol::{self, MAX_REQUEST, Response};
use std::io::{self, Read, Write};

/// Stop taking requests from a client whose unread responses pile up past this.
const OUT_HIGH_WATER: usize = 1024 * 1024;
/// A follower whose unread output passes this starts losing lines (and is told).
const FOLLOW_CAP: usize = 8 * 1024 * 1024;
/// Bytes read from one client per wake-up, so one cannot starve the others.
pub const READ_BUDGET: usize = 256 * 1024;

pub struct Client {
    pub stream: mio::net::UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// Skipping the rest of an oversized request line.
    discarding: bool,
    /// The peer will send nothing more.
    pub read_closed: bool,
    /// A request of this client is in progress (stop, wait, follow …); later
    /// requests wait in `inbuf` until it is answered.
    pub busy: bool,
    /// Lines a follower lost because it did not read fast enough, not yet reported,
    /// and the process and stream of the first of them.
    pub lost_lines: u64,
    lost_from: Option<(String, crate::protocol::Stream)>,
    /// Events an `Events` subscriber lost because it did not read fast enough.
    events_lost: u64,
    /// How much of `out` has been written already.
    out_pos: usize,
}

pub enum ReadOutcome {
    /// Read everything available.
    Drained,
    /// Stopped at the budget or a full buffer; there may be more.
    More,
}

impl Client {
    pub fn new(stream: mio::net::UnixStream) -> Client {
        Client {
            stream,
            inbuf: Vec::new(),
            out: Vec::new(),
            discarding: false,
            read_closed: false,
            busy: false,
            lost_lines: 0,
            lost_from: None,
            events_lost: 0,
            out_pos: 0,
        }
    }

    /// Whether the loop may hand this client's next request to the daemon.
    pub fn ready_for_request(&self) -> bool {
        !self.busy && self.queued() < OUT_HIGH_WATER
    }

    /// Read what the peer sent, within the budget. Error means the connection is broken.
    pub fn read_some(&mut self) -> io::Result<ReadOutcome> {
        let mut buf = [0u8; 16 * 1024];
        let mut taken = 0;
        while taken < READ_BUDGET {
            // Hold back a client that sends while its requests cannot be served yet.
            if self.inbuf.len() > 2 * MAX_REQUEST {
                return Ok(ReadOutcome::More);
            }
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.read_closed = true;
                    return Ok(ReadOutcome::Drained);
                }
                Ok(n) => {
                    taken += n;
                    self.take_bytes(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(ReadOutcome::More)
    }

    fn take_bytes(&mut self, mut bytes: &[u8]) {
        if self.discarding {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(at) => {
                    self.discarding = false;
                    bytes = &bytes[at + 1..];
                }
                None => return,
            }
        }
        self.inbuf.extend_from_slice(bytes);
    }

    /// The next complete request line, decoded; `Err` carries the error to answer.
    pub fn next_request(&mut self) -> Option<Result<protocol::Request, String>> {
        loop {
            match self.inbuf.iter().position(|&b| b == b'\n') {
                Some(at) if at > MAX_REQUEST => {
                    self.inbuf.drain(..=at);
                    return Some(Err(too_large()));
                }
                Some(at) => {
                    let line: Vec<u8> = self.inbuf.drain(..=at).collect();
                    let line = &line[..at];
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue; // blank lines are keep-alives, not requests
                    }
                    return Some(protocol::decode_request(line));
                }
                None if self.inbuf.len() > MAX_REQUEST => {
                    self.inbuf.clear();
                    self.discarding = true;
                    return Some(Err(too_large()));
                }
                None => return None,
            }
        }
    }

    pub fn send(&mut self, response: &Response) {
        protocol::encode_response(&mut self.out, response);
    }

    /// Queue a line for a follower, or count it as lost when the follower lags.
    /// Queue `lines` lines for a follower (one `LogLine`, or a `LogChunk`).
    pub fn send_follow(&mut self, response: &Response, lines: u64) {
        if self.queued() >= FOLLOW_CAP {
            self.lost_lines += lines;
            if self.lost_from.is_none()
                && let Response::LogLine {
                    process, stream, ..
                }
                | Response::LogChunk {
                    process, stream, ..
                } = response
            {
                self.lost_from = Some((process.clone(), *stream));
            }
            return;
        }
        self.note_lost();
        self.send(response);
    }

    /// Queue an event for a subscriber, or count it as lost when it lags; the
    /// count goes out (as a `lost` event) before the next event that fits.
    pub fn send_event(&mut self, event: &Response, seq: u64) {
        if self.queued() >= FOLLOW_CAP {
            self.events_lost += 1;
            return;
        }
        if self.events_lost > 0 {
            let lost = super::events::lost(self.events_lost, seq.saturating_sub(1));
            self.events_lost = 0;
            self.send(&lost);
        }
        self.send(event);
    }

    /// Tell a follower how many lines it lost, once there is room again.
    pub fn note_lost(&mut self) {
        if self.lost_lines == 0 {
            return;
        }
        let line = format!(
            "[agent-procs] {} lines dropped: this reader was too slow",
            self.lost_lines
        );
        self.lost_lines = 0;
        if let Some((process, stream)) = self.lost_from.take() {
            self.send(&Response::LogLine {
                process,
                stream,
                line,
            });
        }
    }

    fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Write out what is queued. Error means the connection is broken.
    pub fn flush(&mut self) -> io::Result<()> {
        loop {
            while self.out_pos < self.out.len() {
                match self.stream.write(&self.out[self.out_pos..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => self.out_pos += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Compact now and then, not on every partial write.
                        if self.out_pos > self.out.len() / 2 {
                            self.out.drain(..self.out_pos);
                            self.out_pos = 0;
                        }
                        return Ok(());
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            self.out.clear();
            self.out_pos = 0;
            if self.lost_lines == 0 {
                break;
            }
            self.note_lost();
        }
        if self.out.capacity() > 64 * 1024 {
            self.out.shrink_to(4096);
        }
        Ok(())
    }

    pub fn has_output(&self) -> bool {
        self.queued() > 0
    }

    /// Nothing more will come from the peer and nothing is owed to it.
    pub fn finished(&self) -> bool {
        self.read_closed && !self.busy && self.queued() == 0 && !self.inbuf.contains(&b'\n')
    }
}

fn too_large() -> String {
    format!("request longer than {MAX_REQUEST} bytes; skipped")
}
