//! A raw HTTP/1.1 client for the proxy tests: the test writes the exact bytes,
//! and reads one response at a time under a deadline, framed by Content-Length,
//! chunked or close, so a proxy that hangs or mis-frames fails the test quickly.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long one response may take unless a test says otherwise; longer than the
/// 5 s the proxy may hold a request for a backend that is still starting.
pub const RESPONSE_LIMIT: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// The head as received, for failure messages.
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (the backend's /echo answer).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}):\n{}{}", self.head, self.text()))
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.head, self.text())
    }
}

/// Why no complete response came.
#[derive(Debug)]
pub enum Failure {
    /// The peer closed (or reset) the connection; what had arrived.
    Closed(Vec<u8>),
    /// The deadline passed; what had arrived.
    TimedOut(Vec<u8>),
    Malformed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Closed(got) => write!(f, "connection closed after {:?}", preview(got)),
            Failure::TimedOut(got) => {
                write!(f, "no complete response in time; got {:?}", preview(got))
            }
            Failure::Malformed(why) => write!(f, "malformed response: {why}"),
        }
    }
}

/// One client connection and the bytes read from it but not yet consumed.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(port: u16) -> Conn {
        Conn::try_open(port, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connecting to 127.0.0.1:{port}: {e}"))
    }

    /// Connect, or say why not within `limit` (a full accept queue looks like a
    /// timeout).
    pub fn try_open(port: u16, limit: Duration) -> io::Result<Conn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, limit)?;
        stream.set_nodelay(true).expect("setting TCP_NODELAY");
        // A proxy that stops reading must not hang the test in a write.
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .expect("setting a write timeout");
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Write all of `bytes`; a write error fails the test.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("sending {:?}: {e}", preview(bytes)));
    }

    /// Write `bytes`, then end our side of the connection, the tail of the bytes
    /// and the FIN in one TCP segment (TCP_CORK holds the tail until the
    /// shutdown): the proxy gets data and end of file in a single readiness
    /// event, and must not take its short read for "nothing more to read".
    pub fn send_and_finish(&mut self, bytes: &[u8]) {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads one c_int from the pointer we pass.
        let rc = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_CORK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "setting TCP_CORK: {}", io::Error::last_os_error());
        self.send(bytes);
        self.stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shutting down our side");
    }

    /// Write `bytes` where the proxy may answer and close before reading them all.
    pub fn send_lossy(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Read one response (a 1xx included) or fail the test.
    pub fn response(&mut self, limit: Duration) -> Response {
        self.try_response(false, limit)
            .unwrap_or_else(|f| panic!("reading a response: {f}"))
    }

    /// Read the response to a HEAD request: no body, whatever the head says.
    pub fn head_response(&mut self, limit: Duration) -> Response {
        self.try_response(true, limit)
            .unwrap_or_else(|f| panic!("reading a response to HEAD: {f}"))
    }

    pub fn try_response(&mut self, to_head: bool, limit: Duration) -> Result<Response, Failure> {
        let deadline = Instant::now() + limit;
        let end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at + 4;
            }
            self.fill(deadline)?;
        };
        let head_bytes: Vec<u8> = self.buf.drain(..end).collect();
        let head = String::from_utf8_lossy(&head_bytes).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Failure::Malformed(format!("status line {status_line:?}")))?;
        if version != "HTTP/1.1" && version != "HTTP/1.0" {
            return Err(Failure::Malformed(format!("status line {status_line:?}")));
        }
        let mut headers = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| Failure::Malformed(format!("header line {line:?}")))?;
            headers.push((k.to_string(), v.trim().to_string()));
        }
        let mut response = Response {
            status,
            head,
            headers,
            body: Vec::new(),
        };
        if to_head || status < 200 || status == 204 || status == 304 {
            return Ok(response);
        }
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        if chunked {
            response.body = self.chunked_body(deadline)?;
        } else if let Some(len) = response.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| Failure::Malformed(format!("Content-Length {len:?}")))?;
            response.body = self.take(len, deadline)?;
        } else {
            // Delimited by the end of the connection.
            loop {
                match self.fill(deadline) {
                    Ok(_) => {}
                    Err(Failure::Closed(_)) => break,
                    Err(other) => return Err(other),
                }
            }
            response.body = std::mem::take(&mut self.buf);
        }
        Ok(response)
    }

    fn chunked_body(&mut self, deadline: Instant) -> Result<Vec<u8>, Failure> {
        let mut body = Vec::new();
        loop {
            let line = self.line(deadline)?;
            let size = line.split(|&b| b == b';').next().unwrap_or_default();
            let size = std::str::from_utf8(size)
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .ok_or_else(|| Failure::Malformed(format!("chunk size {:?}", preview(&line))))?;
            if size == 0 {
                // Trailer fields, then the blank line.
                while !self.line(deadline)?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.take(size, deadline)?);
            if !self.line(deadline)?.is_empty() {
                return Err(Failure::Malformed("no CRLF after a chunk".into()));
            }
        }
    }

    /// One line without its CRLF.
    fn line(&mut self, deadline: Instant) -> Result<Vec<u8>, Failure> {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n") {
                let mut line: Vec<u8> = self.buf.drain(..at + 2).collect();
                line.truncate(at);
                return Ok(line);
            }
            self.fill(deadline)?;
        }
    }

    /// Exactly `n` bytes.
    pub fn take(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>, Failure> {
        while self.buf.len() < n {
            self.fill(deadline)?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Everything up to and including `needle`.
    pub fn read_until(&mut self, needle: &[u8], limit: Duration) -> Result<Vec<u8>, Failure> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = find(&self.buf, needle) {
                return Ok(self.buf.drain(..at + needle.len()).collect());
            }
            self.fill(deadline)?;
        }
    }

    /// Bytes read but not consumed yet.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Whether the peer ends the connection within `limit` (end of file or a
    /// reset), reading and discarding whatever comes first.
    pub fn closes_within(&mut self, limit: Duration) -> bool {
        self.rest_until_close(limit).is_ok()
    }

    /// What arrives before the peer ends the connection (end of file or a reset),
    /// or `TimedOut` if it is still open after `limit`.
    pub fn rest_until_close(&mut self, limit: Duration) -> Result<Vec<u8>, Failure> {
        let deadline = Instant::now() + limit;
        loop {
            match self.fill(deadline) {
                Ok(_) => {}
                Err(Failure::Closed(rest)) => {
                    self.buf.clear();
                    return Ok(rest);
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Read more into the buffer: the count, or why nothing more will come.
    fn fill(&mut self, deadline: Instant) -> Result<usize, Failure> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::TimedOut(self.buf.clone()));
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("setting a read timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Failure::Closed(self.buf.clone())),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                // A receive timeout makes recv(2) fail with EINTR after a stop/continue.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    continue;
                }
                // A reset or similar: the connection is over.
                Err(_) => return Err(Failure::Closed(self.buf.clone())),
            }
        }
    }
}

/// A masked client frame, FIN set.
pub fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend((n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend((n as u64).to_be_bytes());
        }
    }
    f.extend(mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Read one unmasked server frame: (opcode, payload).
pub fn ws_read(c: &mut Conn) -> (u8, Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let fail = |f: Failure| panic!("reading a WebSocket frame: {f}");
    let h = c.take(2, deadline).unwrap_or_else(fail);
    assert_eq!(h[1] & 0x80, 0, "the server masked its frame");
    let len = match h[1] & 0x7f {
        126 => {
            let b = c.take(2, deadline).unwrap_or_else(fail);
            u16::from_be_bytes([b[0], b[1]]) as usize
        }
        127 => {
            let b = c.take(8, deadline).unwrap_or_else(fail);
            u64::from_be_bytes(b.try_into().expect("8 bytes")) as usize
        }
        n => n as usize,
    };
    (h[0] & 0x0f, c.take(len, deadline).unwrap_or_else(fail))
}

/// A request head: `METHOD PATH HTTP/1.1`, the Host, the extra lines, a blank line.
pub fn request(method: &str, path: &str, host: &str, extra: &[&str]) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for line in extra {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// One GET on a fresh connection.
pub fn get(port: u16, host: &str, path: &str) -> Response {
    let mut conn = Conn::open(port);
    conn.send(&request("GET", path, host, &[]));
    conn.try_response(false, RESPONSE_LIMIT)
        .unwrap_or_else(|f| panic!("GET {path} with Host {host} on port {port}: {f}"))
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The start of some bytes, readable in a failure message.
pub fn preview(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(200)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if bytes.len() > 200 {
        text.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    text
}
