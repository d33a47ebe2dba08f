//! One non-blocking connection to the daemon, for the UI's loop: connect (checking
//! that the daemon is ours), write a request line, split what comes back into lines.
//! The loop registers it and calls `read_lines` on each event.

use crate::paths::SessionPaths;
use crate::sys;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

/// Longest reply line accepted (a status of many processes, a chunk of output).
const MAX_LINE: usize = 64 * 1024 * 1024;

pub struct LineConn {
    pub stream: mio::net::UnixStream,
    inbuf: Vec<u8>,
    /// Bytes of the request not yet written (the socket was full).
    out: Vec<u8>,
}

impl LineConn {
    /// Connect and queue `request` (one JSON line, newline included).
    pub fn open(paths: &SessionPaths, request: &[u8]) -> io::Result<LineConn> {
        let stream = std::os::unix::net::UnixStream::connect(&paths.socket)?;
        // Never send anything to a socket served by someone else.
        if sys::peer_uid(stream.as_raw_fd())? != sys::euid() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the session's socket is served by another user",
            ));
        }
        stream.set_nonblocking(true)?;
        let mut conn = LineConn {
            stream: mio::net::UnixStream::from_std(stream),
            inbuf: Vec::new(),
            out: request.to_vec(),
        };
        conn.flush()?;
        Ok(conn)
    }

    /// Queue another request line on this connection.
    pub fn queue(&mut self, request: &[u8]) {
        self.out.extend_from_slice(request);
    }

    /// Write what is queued, as far as the socket takes it.
    pub fn flush(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Read until the socket is empty, calling `line` for each complete line.
    /// `Ok(true)` once the daemon has closed the connection. At most `budget`
    /// bytes are read per call, so a torrent of output cannot starve the keys;
    /// `more` is set when the budget ran out with data left.
    pub fn read_lines(
        &mut self,
        budget: usize,
        more: &mut bool,
        mut line: impl FnMut(&[u8]),
    ) -> io::Result<bool> {
        let mut buf = [0u8; 64 * 1024];
        let mut taken = 0;
        loop {
            if taken >= budget {
                *more = true;
                return Ok(false);
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    taken += n;
                    self.inbuf.extend_from_slice(&buf[..n]);
                    let mut start = 0;
                    while let Some(at) = self.inbuf[start..].iter().position(|&b| b == b'\n') {
                        line(&self.inbuf[start..start + at]);
                        start += at + 1;
                    }
                    self.inbuf.drain(..start);
                    if self.inbuf.len() > MAX_LINE {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a reply line from the daemon is too long",
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
