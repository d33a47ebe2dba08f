//! TCP and HTTP readiness probes on the loop: a probe is tried every `PERIOD`;
//! each try is one non-blocking connect (and, for HTTP, one request) that the
//! loop drives with readiness events and bounds with `TRY_TIMEOUT`. No threads,
//! no blocking calls. `mod.rs` registers the sockets and arms the timers.

use super::procs::ProcId;
use crate::probe::{self, Target};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::time::Duration;

/// Pause between two tries of a probe.
pub const PERIOD: Duration = Duration::from_millis(250);
/// Longest a single try may take (a server that accepts but never answers).
pub const TRY_TIMEOUT: Duration = Duration::from_secs(2);
/// Enough for any status line.
const HEAD_CAP: usize = 4096;

/// Who learns the outcome of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Wait(u64),
    Up { run: u64, entry: usize },
}

pub struct Probe {
    pub owner: Owner,
    /// The process whose readiness this is; its exit ends the probe.
    pub proc: ProcId,
    pub target: Target,
    /// The try in progress and the token its socket is registered under.
    pub attempt: Option<(Attempt, mio::Token)>,
    /// Counts tries, so a stale try-timeout finds nothing to cancel.
    pub tries: u64,
    /// Why the last try failed, for the final message.
    pub last_error: Option<String>,
}

/// One try: a connect in progress, then (HTTP) the request out and the head in.
pub struct Attempt {
    pub stream: mio::net::TcpStream,
    connected: bool,
    written: usize,
    head: Vec<u8>,
}

/// Where a try stands after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Needs more events.
    Pending,
    /// The target is ready; the text says how (`HTTP 200`).
    Ready(String),
    /// This try failed (refused, reset, 503); the probe tries again later.
    NotYet(String),
}

#[derive(Default)]
pub struct ProbeTable {
    probes: HashMap<u64, Probe>,
    next: u64,
}

impl ProbeTable {
    pub fn add(&mut self, owner: Owner, proc: ProcId, target: Target) -> u64 {
        self.next += 1;
        self.probes.insert(
            self.next,
            Probe {
                owner,
                proc,
                target,
                attempt: None,
                tries: 0,
                last_error: None,
            },
        );
        self.next
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Probe> {
        self.probes.get_mut(&id)
    }

    pub fn remove(&mut self, id: u64) -> Option<Probe> {
        self.probes.remove(&id)
    }

    /// Probes that belong to `owner`.
    pub fn owned_by(&self, pred: impl Fn(Owner) -> bool) -> Vec<u64> {
        self.probes
            .iter()
            .filter(|(_, p)| pred(p.owner))
            .map(|(id, _)| *id)
            .collect()
    }
}

impl Attempt {
    pub fn connect(target: &Target) -> io::Result<Attempt> {
        Ok(Attempt {
            stream: mio::net::TcpStream::connect(target.addr())?,
            connected: false,
            written: 0,
            head: Vec::new(),
        })
    }

    /// Move the try on after a readiness event on its socket.
    pub fn step(&mut self, target: &Target) -> Step {
        if !self.connected {
            match self.stream.take_error() {
                Ok(Some(e)) | Err(e) => return Step::NotYet(refusal(&e)),
                Ok(None) => {}
            }
            match self.stream.peer_addr() {
                Ok(_) => self.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Step::Pending,
                Err(e) => return Step::NotYet(refusal(&e)),
            }
        }
        let request = match target {
            Target::Tcp(_) => return Step::Ready("accepting connections".into()),
            Target::Http { request, .. } => request,
        };
        while self.written < request.len() {
            match self.stream.write(&request[self.written..]) {
                Ok(0) => return Step::NotYet("the connection closed".into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::NotYet(refusal(&e)),
            }
        }
        let mut buf = [0u8; 1024];
        loop {
            if let Some(status) = probe::status_code(&self.head) {
                return match status {
                    Ok(code) if (200..400).contains(&code) => Step::Ready(format!("HTTP {code}")),
                    Ok(code) => Step::NotYet(format!("it answered HTTP {code}")),
                    Err(why) => Step::NotYet(why),
                };
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Step::NotYet("the connection closed before an answer".into()),
                Ok(n) => {
                    let room = HEAD_CAP.saturating_sub(self.head.len());
                    self.head.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::NotYet(refusal(&e)),
            }
        }
    }
}

fn refusal(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => crate::error::describe_io(e),
    }
}
