//! HTTP/1.1 for the reverse proxy, without sockets: parsing request and response
//! heads (httparse), deciding message framing per RFC 9112, rewriting heads for
//! the other side (hop-by-hop headers out, X-Forwarded-* in), tracking chunked
//! bodies that pass through unchanged, routing by Host, and the proxy's own
//! error responses. Everything here is pure and table-tested; `conn.rs` moves
//! the bytes.

use std::io::Write as _;
use std::net::{IpAddr, Ipv6Addr};

/// Longest request or response head accepted (431 beyond it for requests).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one head (431 beyond it for requests).
pub const MAX_HEADERS: usize = 100;
/// Longest request line (414 beyond it).
pub const MAX_REQUEST_LINE: usize = 8 * 1024;

/// How the body of a message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (GET without length, HEAD responses, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`; track it with `Chunked`.
    Chunked,
    /// Responses only: the body runs until the backend closes.
    UntilClose,
}

/// Why a request is refused, and with which status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// 400, 405, 414, 431, 501 …
    pub status: u16,
    /// One line for the response body and for logs, e.g. `both Content-Length and
    /// Transfer-Encoding`.
    pub reason: String,
}

/// Outcome of parsing a head at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// Not all of the head is in the buffer yet (and it is within the limits).
    Partial,
    Complete(T),
    Invalid(Reject),
}

/// Where a request goes, by its Host header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `NAME.localhost[:port]`: the label right before `localhost`, lowercased.
    Process(String),
    /// Bare `localhost` or `127.0.0.1` (any port): the routes page.
    Index,
    /// Any other host: 421, so a rebinding DNS name cannot reach us.
    Misdirected,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Bytes of the buffer the head took, final CRLFCRLF included.
    pub head_len: usize,
    pub route: Route,
    /// The Host header as sent, for X-Forwarded-Host and messages.
    pub host: String,
    pub framing: Framing,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// `Connection: upgrade` with an `Upgrade` header: tunnel after a 101.
    pub upgrade: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// HEAD: the response has no body whatever its headers say.
    pub is_head: bool,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub head_len: usize,
    pub status: u16,
    pub framing: Framing,
    /// The backend keeps the connection open after this response.
    pub keep_alive: bool,
}

/// Parse the request head at the start of `buf`. On `Complete`, `out` is cleared
/// and holds the head to send to the backend: the same request line (origin-form
/// target) and headers, minus hop-by-hop ones (`Connection` and every header it
/// names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Upgrade` unless
/// this is an upgrade); `Transfer-Encoding` and `Content-Length` are kept as the
/// body is passed on unchanged; plus `X-Forwarded-For` (the client's value with
/// `, PEER` appended, or `PEER`), `X-Forwarded-Host` (the Host), and
/// `X-Forwarded-Proto: http`; plus `Connection: keep-alive`, or for an upgrade
/// `Connection: upgrade` and the `Upgrade` header. Refusals: a malformed head or
/// request line, obs-fold, bare CR, missing or repeated Host, both
/// Content-Length and Transfer-Encoding, a repeated or invalid Content-Length,
/// `chunked` applied twice, an empty coding → 400; any other Transfer-Encoding
/// than exactly `chunked` (`gzip, chunked`, `identity, chunked`, `gzip`) → 501, as
/// nginx does (the backend could decode the codings differently than we frame
/// the body); head over
/// `MAX_HEAD` or more than `MAX_HEADERS` fields → 431; request line over
/// `MAX_REQUEST_LINE` → 414; CONNECT → 405; an absolute-form or
/// authority-form target → 400 (this is not a forward proxy); HTTP versions
/// other than 1.0 and 1.1 → 505.
pub fn parse_request(buf: &[u8], peer: IpAddr, out: &mut Vec<u8>) -> Parsed<Request> {
    let window = buf.get(..MAX_HEAD).unwrap_or(buf);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    // httparse's defaults are strict: no obs-fold, no space before a colon,
    // single spaces in the request line, no bare CR. They accept bare LF line
    // endings, which RFC 9112 §2.2 allows; `out` gets CRLF whatever came in.
    let head_len = match req.parse(window) {
        Err(e) => return Parsed::Invalid(request_error(e, window)),
        Ok(httparse::Status::Partial) => {
            if request_line_too_long(window) {
                return Parsed::Invalid(reject(414, "request line over 8 KiB"));
            }
            if buf.len() >= MAX_HEAD {
                return Parsed::Invalid(reject(431, "request head over 64 KiB"));
            }
            return Parsed::Partial;
        }
        Ok(httparse::Status::Complete(n)) => n,
    };
    let head = window.get(..head_len).unwrap_or(window);
    if request_line_too_long(head) {
        return Parsed::Invalid(reject(414, "request line over 8 KiB"));
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::Invalid(reject(400, "malformed request line"));
    };
    let headers: &[httparse::Header] = req.headers;

    if method == "CONNECT" {
        return Parsed::Invalid(reject(
            405,
            "CONNECT is not supported: this is not a forward proxy",
        ));
    }
    if let Err(why) = check_target(method, target) {
        return Parsed::Invalid(reject(400, why));
    }
    let info = HeadInfo::scan(headers);
    let host = match request_host(&info) {
        Ok(host) => host,
        Err(reject) => return Parsed::Invalid(reject),
    };
    let framing = match request_framing(&info, minor) {
        Ok(framing) => framing,
        Err(reject) => return Parsed::Invalid(reject),
    };
    let upgrade = minor == 1 && info.conn_upgrade && info.upgrade_header;
    let forward = Forward {
        head,
        headers,
        info: &info,
        upgrade,
        framing,
    };
    forward.write(peer, host, out);

    Parsed::Complete(Request {
        head_len,
        route: route(host),
        host: host.to_owned(),
        framing,
        keep_alive: info.keep_alive(minor),
        upgrade,
        expect_continue: minor == 1 && info.expect_continue,
        is_head: method == "HEAD",
    })
}

/// The Host of a request: exactly one, not empty, UTF-8.
fn request_host<'b>(info: &HeadInfo<'b>) -> Result<&'b str, Reject> {
    match info.host {
        _ if info.host_count > 1 => Err(reject(400, "repeated Host header")),
        None => Err(reject(400, "missing Host header")),
        Some(b"") => Err(reject(400, "empty Host header")),
        Some(value) => {
            std::str::from_utf8(value).map_err(|_| reject(400, "Host header is not UTF-8"))
        }
    }
}

/// How a request's body is delimited, or why it cannot be relayed.
fn request_framing(info: &HeadInfo, minor: u8) -> Result<Framing, Reject> {
    match info.body() {
        Err(why) => Err(reject(400, why)),
        Ok(_) if info.te_count > 0 && minor == 0 => {
            Err(reject(400, "Transfer-Encoding in an HTTP/1.0 request"))
        }
        Ok(Body::None) => Ok(Framing::Empty),
        Ok(Body::Length(n)) => Ok(Framing::Length(n)),
        Ok(Body::Chunked) if info.te_codings == 1 => Ok(Framing::Chunked),
        Ok(Body::Chunked | Body::NotChunked) => Err(reject(501, TE_UNSUPPORTED)),
    }
}

/// A parsed request head, to be written for the backend.
struct Forward<'h, 'b> {
    head: &'h [u8],
    headers: &'h [httparse::Header<'b>],
    info: &'h HeadInfo<'b>,
    upgrade: bool,
    framing: Framing,
}

impl Forward<'_, '_> {
    /// The head as the backend gets it (see `parse_request`).
    fn write(&self, peer: IpAddr, host: &str, out: &mut Vec<u8>) {
        let (headers, info, upgrade) = (self.headers, self.info, self.upgrade);
        out.clear();
        out.extend_from_slice(first_line(self.head, self.head.len()));
        out.extend_from_slice(b"\r\n");
        for h in headers {
            if info.is_dropped(h.name, headers, upgrade)
                || is_forwarded(h.name)
                || h.name.eq_ignore_ascii_case("transfer-encoding")
            {
                continue;
            }
            push_header(out, h.name.as_bytes(), h.value);
        }
        if self.framing == Framing::Chunked {
            // Only the framing we track goes on, spelled one way.
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        out.extend_from_slice(b"X-Forwarded-For: ");
        for h in headers {
            if h.name.eq_ignore_ascii_case("x-forwarded-for")
                && !h.value.is_empty()
                && !info.is_dropped(h.name, headers, upgrade)
            {
                out.extend_from_slice(h.value);
                out.extend_from_slice(b", ");
            }
        }
        push_peer(out, peer);
        out.extend_from_slice(b"\r\nX-Forwarded-Host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\nX-Forwarded-Proto: http\r\n");
        out.extend_from_slice(if upgrade {
            b"Connection: upgrade\r\n\r\n"
        } else {
            b"Connection: keep-alive\r\n\r\n"
        });
    }
}

/// Parse the response head at the start of `buf`, the answer to a request that
/// was HEAD when `to_head`. On `Complete`, `out` is cleared and holds the head
/// for the client: hop-by-hop headers removed as for requests, and
/// `Connection: keep-alive` when `client_keep_alive` and the framing lets the
/// client find the end (not `UntilClose`), else `Connection: close`; a 101 keeps
/// `Connection: upgrade` and `Upgrade`. Framing: 1xx, 204, 304 and answers to
/// HEAD are `Empty`; else chunked, Content-Length, or `UntilClose`. A malformed
/// head, or framing errors as for requests, give `Invalid` (the proxy answers
/// 502).
pub fn parse_response(
    buf: &[u8],
    to_head: bool,
    client_keep_alive: bool,
    out: &mut Vec<u8>,
) -> Parsed<Response> {
    let window = buf.get(..MAX_HEAD).unwrap_or(buf);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut slots);
    let head_len = match res.parse(window) {
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Invalid(reject(502, "more than 100 header fields in the response"));
        }
        Err(e) => {
            let why = diagnose(window).unwrap_or(match e {
                httparse::Error::Version => "unsupported HTTP version in the response",
                httparse::Error::Status => "malformed status line",
                _ => error_reason(e),
            });
            return Parsed::Invalid(reject(502, why));
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Parsed::Invalid(reject(502, "response head over 64 KiB"));
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Ok(httparse::Status::Complete(n)) => n,
    };
    let head = window.get(..head_len).unwrap_or(window);
    let (Some(status), Some(minor)) = (res.code, res.version) else {
        return Parsed::Invalid(reject(502, "malformed status line"));
    };
    if status < 100 {
        return Parsed::Invalid(reject(502, "malformed status code"));
    }
    let headers: &[httparse::Header] = res.headers;
    let info = HeadInfo::scan(headers);
    // RFC 9112 §6.3: these never have a body, whatever their headers say.
    let framing = if to_head || status < 200 || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match info.body() {
            Err(why) => return Parsed::Invalid(reject(502, why)),
            // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing,
            // so the body can only end when the backend closes.
            Ok(Body::Chunked | Body::NotChunked) if minor == 0 => Framing::UntilClose,
            Ok(Body::None | Body::NotChunked) => Framing::UntilClose,
            Ok(Body::Length(n)) => Framing::Length(n),
            Ok(Body::Chunked) => Framing::Chunked,
        }
    };
    let switching = status == 101;

    out.clear();
    out.extend_from_slice(first_line(head, head.len()));
    out.extend_from_slice(b"\r\n");
    for h in headers {
        if !info.is_dropped(h.name, headers, switching) {
            push_header(out, h.name.as_bytes(), h.value);
        }
    }
    if switching {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    } else if status >= 200 {
        // Interim 1xx responses say nothing about the connection.
        out.extend_from_slice(if client_keep_alive && framing != Framing::UntilClose {
            b"Connection: keep-alive\r\n"
        } else {
            b"Connection: close\r\n"
        });
    }
    out.extend_from_slice(b"\r\n");

    Parsed::Complete(Response {
        head_len,
        status,
        framing,
        keep_alive: framing != Framing::UntilClose && info.keep_alive(minor),
    })
}

/// Whether `buf` holds the end of a head, so that reading on cannot change what
/// `parse_request` says: an empty line after the first line, where empty lines
/// before the first line are skipped (RFC 9112 §2.2) and lines end in CRLF or LF.
pub fn head_complete(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = buf.get(start..).unwrap_or_default();
    rest.iter().enumerate().any(|(i, &b)| {
        b == b'\n' && matches!(rest.get(i + 1..), Some([b'\n', ..] | [b'\r', b'\n', ..]))
    })
}

/// Where a Host header value routes (see `Route`).
pub fn route(host: &str) -> Route {
    let name = strip_port(host);
    if let Some(literal) = name.strip_prefix('[') {
        return match literal.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
            Some(Ok(ip)) if ip == Ipv6Addr::LOCALHOST => Route::Index,
            _ => Route::Misdirected,
        };
    }
    if name == "127.0.0.1" {
        return Route::Index;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let valid = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let mut labels = name.rsplit('.');
    match labels.next() {
        Some(last) if last.eq_ignore_ascii_case("localhost") => {}
        _ => return Route::Misdirected,
    }
    let Some(process) = labels.next() else {
        return Route::Index;
    };
    if valid(process) && labels.all(valid) {
        Route::Process(process.to_ascii_lowercase())
    } else {
        Route::Misdirected
    }
}

/// Follows a chunked body as it passes through, to find where it ends.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    /// Chunk size being read, then the data bytes still to skip.
    size: u64,
    /// Hex digits of the chunk size read so far.
    digits: u8,
    /// Bytes of the current chunk-size or trailer line.
    line: usize,
    /// Bytes of trailer fields so far.
    trailers: usize,
}

impl Chunked {
    /// Look at the next bytes of the body. Returns how many of `data` belong to
    /// this body (all of it unless the body ends inside `data`) and whether the
    /// body is complete (last chunk, trailers and the final CRLF seen), or a 400
    /// reason for a bad chunk size or missing CRLF. Chunk-size lines and trailers
    /// are bounded (4 KiB each, `MAX_HEAD` of trailers in all).
    pub fn feed(&mut self, data: &[u8]) -> Result<(usize, bool), Reject> {
        let mut used = 0;
        while let Some(rest) = data.get(used..) {
            match self.state {
                ChunkState::Done => break,
                ChunkState::Failed(why) => return Err(reject(400, why)),
                ChunkState::Data => {
                    // Skip the chunk data in one step: at most what is here.
                    let take = usize::try_from(self.size).map_or(rest.len(), |s| s.min(rest.len()));
                    used += take;
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    if take == rest.len() {
                        break;
                    }
                }
                _ => {
                    let Some(&b) = rest.first() else { break };
                    used += 1;
                    if let Err(why) = self.step(b) {
                        self.state = ChunkState::Failed(why);
                        return Err(reject(400, why));
                    }
                }
            }
        }
        Ok((used, self.state == ChunkState::Done))
    }
}

/// A complete response made by the proxy itself: `status` with its reason
/// phrase, `Content-Type: text/plain; charset=utf-8`, `Content-Length`,
/// `Connection: close` unless `keep_alive`, and `body`. Appended to `out`.
pub fn own_response(status: u16, body: &str, keep_alive: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    push_u64(out, body.len() as u64);
    out.extend_from_slice(if keep_alive {
        b"\r\nConnection: keep-alive\r\n\r\n"
    } else {
        b"\r\nConnection: close\r\n\r\n"
    });
    out.extend_from_slice(body.as_bytes());
}

/// Longest chunk-size line or trailer field line in a chunked body.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Hop-by-hop headers that never cross the proxy (`Upgrade` is decided apart;
/// Go's reverse proxy drops the same list). Credentials meant for a proxy stay
/// with the proxy: they must not reach a backend or come back from one.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
];

/// The 501 for a request whose Transfer-Encoding is not exactly `chunked`.
const TE_UNSUPPORTED: &str = "only Transfer-Encoding: chunked is supported";

/// Headers a `Connection` token may not remove: the framing and the route would
/// then differ between the proxy and the backend.
const PROTECTED: [&str; 3] = ["host", "content-length", "transfer-encoding"];

fn reject(status: u16, reason: &str) -> Reject {
    Reject {
        status,
        reason: reason.to_owned(),
    }
}

/// What the headers of one head say, gathered in a single pass.
#[derive(Default)]
struct HeadInfo<'b> {
    host: Option<&'b [u8]>,
    host_count: usize,
    length: Option<u64>,
    length_count: usize,
    length_bad: bool,
    /// Number of Transfer-Encoding fields.
    te_count: usize,
    /// Number of `chunked` codings over all of them.
    chunked: usize,
    /// Number of codings over all of them.
    te_codings: usize,
    te_last_chunked: bool,
    te_bad: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
    /// `Connection` names some header other than close, keep-alive, upgrade.
    conn_names: bool,
    upgrade_header: bool,
    expect_continue: bool,
}

/// How the headers delimit a body, before the status or method has a say.
enum Body {
    None,
    Length(u64),
    Chunked,
    /// Transfer-Encoding whose last coding is not `chunked`.
    NotChunked,
}

impl<'b> HeadInfo<'b> {
    fn scan(headers: &[httparse::Header<'b>]) -> Self {
        let mut info = HeadInfo::default();
        for h in headers {
            let name = h.name;
            if name.eq_ignore_ascii_case("host") {
                info.host_count += 1;
                info.host = Some(h.value);
            } else if name.eq_ignore_ascii_case("content-length") {
                info.length_count += 1;
                match parse_length(h.value) {
                    Some(n) => info.length = Some(n),
                    None => info.length_bad = true,
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                info.te_count += 1;
                for coding in list(h.value) {
                    // Strict: an empty element could be read differently downstream.
                    if coding.is_empty() {
                        info.te_bad = true;
                    }
                    info.te_codings += 1;
                    info.te_last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                    info.chunked += usize::from(info.te_last_chunked);
                }
            } else if name.eq_ignore_ascii_case("connection") {
                for token in list(h.value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        info.conn_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        info.conn_keep_alive = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        info.conn_upgrade = true;
                    } else if !token.is_empty() {
                        info.conn_names = true;
                    }
                }
            } else if name.eq_ignore_ascii_case("upgrade") {
                info.upgrade_header |= !h.value.is_empty();
            } else if name.eq_ignore_ascii_case("expect") {
                info.expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
            }
        }
        info
    }

    /// RFC 9112 §6.1–6.3, refusing every ambiguity a smuggler could use.
    fn body(&self) -> Result<Body, &'static str> {
        if self.te_count > 0 && self.length_count > 0 {
            return Err("both Content-Length and Transfer-Encoding");
        }
        if self.length_count > 1 {
            return Err("repeated Content-Length");
        }
        if self.length_bad {
            return Err("invalid Content-Length");
        }
        if self.te_count > 0 {
            if self.te_bad {
                return Err("malformed Transfer-Encoding");
            }
            if self.chunked > 1 {
                return Err("chunked applied more than once");
            }
            return Ok(if self.te_last_chunked {
                Body::Chunked
            } else {
                Body::NotChunked
            });
        }
        Ok(self.length.map_or(Body::None, Body::Length))
    }

    /// HTTP/1.1 stays open unless told to close; HTTP/1.0 only when asked to.
    fn keep_alive(&self, minor: u8) -> bool {
        !self.conn_close && (minor >= 1 || self.conn_keep_alive)
    }

    /// Whether the header `name` stays on this side of the proxy.
    fn is_dropped(&self, name: &str, headers: &[httparse::Header], keep_upgrade: bool) -> bool {
        if name.eq_ignore_ascii_case("upgrade") {
            return !keep_upgrade;
        }
        if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            return true;
        }
        if !self.conn_names || PROTECTED.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            return false;
        }
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .any(|h| list(h.value).any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
    }
}

/// The elements of a comma-separated field value, optional whitespace trimmed.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// `Content-Length`: one decimal number, nothing else (no sign, list or spaces).
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        let digit = char::from(b).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

fn is_forwarded(name: &str) -> bool {
    ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The peer as X-Forwarded-For shows it: IPv4-mapped IPv6 addresses as IPv4.
fn push_peer(out: &mut Vec<u8>, peer: IpAddr) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{}", peer.to_canonical());
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    let _ = write!(out, "{n}");
}

/// The request or status line: the first line after any empty lines (which
/// RFC 9112 §2.2 lets a server skip), without its line ending, at most `limit`
/// bytes of it.
fn first_line(buf: &[u8], limit: usize) -> &[u8] {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = buf.get(start..).unwrap_or_default();
    let rest = rest.get(..limit).unwrap_or(rest);
    let line = match rest.iter().position(|&b| b == b'\n') {
        Some(end) => rest.get(..end).unwrap_or(rest),
        None => rest,
    };
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The request line, complete or not, is longer than `MAX_REQUEST_LINE`.
fn request_line_too_long(buf: &[u8]) -> bool {
    first_line(buf, MAX_REQUEST_LINE + 2).len() > MAX_REQUEST_LINE
}

/// Origin-form, or `*` for OPTIONS (RFC 9112 §3.2); never a proxy's forms.
fn check_target(method: &str, target: &str) -> Result<(), &'static str> {
    if target.starts_with('/') {
        Ok(())
    } else if target == "*" {
        match method {
            "OPTIONS" => Ok(()),
            _ => Err("asterisk-form request target is only for OPTIONS"),
        }
    } else if target.contains("://") {
        Err("absolute-form request target: this is not a forward proxy")
    } else if !target.contains('/') {
        Err("authority-form request target: this is not a forward proxy")
    } else {
        Err("malformed request target")
    }
}

/// The status and reason for a request httparse refused.
fn request_error(e: httparse::Error, buf: &[u8]) -> Reject {
    match e {
        httparse::Error::TooManyHeaders => reject(431, "more than 100 header fields"),
        httparse::Error::Version if version_unsupported(buf) => {
            reject(505, "only HTTP/1.0 and HTTP/1.1 are supported")
        }
        _ => reject(400, diagnose(buf).unwrap_or(error_reason(e))),
    }
}

/// The version is well-formed (`HTTP/DIGIT.DIGIT`, or the start of it), just
/// not 1.0 or 1.1: 505 rather than 400.
fn version_unsupported(buf: &[u8]) -> bool {
    let line = first_line(buf, MAX_REQUEST_LINE + 2);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    match version.strip_prefix(b"HTTP/") {
        Some([major] | [major, b'.'] | [major, b'.', _]) if !major.is_ascii_digit() => false,
        Some([_]) | Some([_, b'.']) => true,
        Some([_, b'.', minor]) => minor.is_ascii_digit(),
        _ => false,
    }
}

/// Names the two refusals worth telling apart from a generic parse error.
fn diagnose(buf: &[u8]) -> Option<&'static str> {
    if buf
        .windows(2)
        .any(|w| matches!(w, [b'\r', next] if *next != b'\n'))
    {
        return Some("bare CR in head");
    }
    let blank = |line: &[u8]| line.is_empty() || line == b"\r";
    let folded = buf
        .split(|&b| b == b'\n')
        .skip_while(|line| blank(line))
        .skip(1)
        .take_while(|line| !blank(line))
        .any(|line| matches!(line.first(), Some(b' ' | b'\t')));
    folded.then_some("obsolete line folding in head")
}

fn error_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid byte in a header value",
        httparse::Error::NewLine => "malformed line ending",
        httparse::Error::Status => "malformed status line",
        httparse::Error::Token => "malformed request line",
        httparse::Error::TooManyHeaders => "more than 100 header fields",
        httparse::Error::Version => "malformed HTTP version",
    }
}

/// `host` without a trailing `:port` (digits only, possibly none as RFC 3986 allows).
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        // Any other code gets the name of its class.
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Unknown",
        },
    }
}

/// Where a chunked body stands, between two bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex digits of a chunk size.
    #[default]
    Size,
    /// Whitespace after the size; only `;` may follow.
    SizeWs,
    /// A chunk extension, up to CR.
    Ext,
    /// CR of the size line seen; LF must follow.
    SizeLf,
    /// Skipping `size` data bytes.
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
    Failed(&'static str),
}

impl Chunked {
    /// One byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<(), &'static str> {
        use ChunkState as S;
        match self.state {
            S::Size | S::SizeWs | S::Ext => {
                self.line += 1;
                if self.line > MAX_CHUNK_LINE {
                    return Err("chunk size line over 4 KiB");
                }
            }
            S::TrailerStart | S::TrailerName | S::TrailerValue | S::TrailerLf | S::FinalLf => {
                self.line += 1;
                self.trailers += 1;
                if self.line > MAX_CHUNK_LINE {
                    return Err("trailer field over 4 KiB");
                }
                if self.trailers > MAX_HEAD {
                    return Err("trailers over 64 KiB");
                }
            }
            S::SizeLf | S::Data | S::DataCr | S::DataLf | S::Done | S::Failed(_) => {}
        }
        self.state = match (self.state, b) {
            (S::Size, b'\r') if self.digits > 0 => S::SizeLf,
            (S::Size, b';') if self.digits > 0 => S::Ext,
            (S::Size, b' ' | b'\t') if self.digits > 0 => S::SizeWs,
            (S::Size, _) => {
                let digit = char::from(b).to_digit(16).ok_or("invalid chunk size")?;
                if self.digits == 16 {
                    return Err("chunk size over 16 hex digits");
                }
                self.digits += 1;
                self.size = self.size << 4 | u64::from(digit);
                S::Size
            }
            (S::SizeWs, b' ' | b'\t') => S::SizeWs,
            (S::SizeWs, b';') => S::Ext,
            (S::SizeWs, _) => return Err("invalid chunk size"),
            (S::Ext, b'\r') => S::SizeLf,
            (S::Ext, b'\t' | 0x20..=0x7e | 0x80..=0xff) => S::Ext,
            (S::Ext, _) => return Err("invalid byte in a chunk extension"),
            (S::SizeLf, b'\n') => {
                self.line = 0;
                self.digits = 0;
                if self.size == 0 {
                    S::TrailerStart
                } else {
                    S::Data
                }
            }
            (S::SizeLf, _) => return Err("bare CR in a chunk size line"),
            (S::DataCr, b'\r') => S::DataLf,
            (S::DataLf, b'\n') => S::Size,
            (S::DataCr | S::DataLf, _) => return Err("missing CRLF after chunk data"),
            (S::TrailerStart, b'\r') => S::FinalLf,
            (S::TrailerStart | S::TrailerName, t) if is_tchar(t) => S::TrailerName,
            (S::TrailerName, b':') => S::TrailerValue,
            (S::TrailerStart | S::TrailerName, _) => return Err("malformed trailer field"),
            (S::TrailerValue, b'\r') => S::TrailerLf,
            (S::TrailerValue, b'\t' | 0x20..=0x7e | 0x80..=0xff) => S::TrailerValue,
            (S::TrailerValue, _) => return Err("invalid byte in a trailer field"),
            (S::TrailerLf, b'\n') => {
                self.line = 0;
                S::TrailerStart
            }
            (S::FinalLf, b'\n') => S::Done,
            (S::TrailerLf | S::FinalLf, _) => return Err("bare CR in trailers"),
            // `feed` handles these without looking at single bytes.
            (S::Data | S::Done | S::Failed(_), _) => self.state,
        };
        Ok(())
    }
}

/// A token character (RFC 9110 §5.6.2), as in field names.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn request(raw: &[u8]) -> (Parsed<Request>, Vec<u8>) {
        let mut out = b"left over".to_vec();
        let parsed = parse_request(raw, PEER, &mut out);
        (parsed, out)
    }

    fn complete(raw: &str) -> (Request, String) {
        match request(raw.as_bytes()) {
            (Parsed::Complete(req), out) => (req, String::from_utf8(out).unwrap()),
            (other, _) => panic!("{raw:?}: {other:?}"),
        }
    }

    fn response(raw: &str, to_head: bool, client_keep_alive: bool) -> (Parsed<Response>, String) {
        let mut out = Vec::new();
        let parsed = parse_response(raw.as_bytes(), to_head, client_keep_alive, &mut out);
        (parsed, String::from_utf8(out).unwrap())
    }

    fn s(text: &str) -> String {
        text.to_owned()
    }

    fn proc(name: &str) -> Route {
        Route::Process(name.to_owned())
    }

    #[test]
    fn hosts_route_by_the_label_before_localhost() {
        let table = [
            ("localhost", Route::Index),
            ("LocalHost", Route::Index),
            ("localhost:9090", Route::Index),
            ("localhost.", Route::Index),
            ("localhost.:9090", Route::Index),
            ("localhost:", Route::Index),
            ("127.0.0.1", Route::Index),
            ("127.0.0.1:9090", Route::Index),
            ("[::1]", Route::Index),
            ("[::1]:9090", Route::Index),
            ("[0:0:0:0:0:0:0:1]:80", Route::Index),
            ("api.localhost", proc("api")),
            ("API.LOCALHOST:9090", proc("api")),
            ("api.localhost.", proc("api")),
            ("api.localhost.:9090", proc("api")),
            ("my-app_2.localhost", proc("my-app_2")),
            ("v2.api.localhost", proc("api")),
            ("a.b.c.localhost:1", proc("c")),
            ("localhost.localhost", proc("localhost")),
            (".localhost", Route::Misdirected),
            ("a..localhost", Route::Misdirected),
            ("..a.localhost", Route::Misdirected),
            ("localhost..", Route::Misdirected),
            ("api.localhost:90a", Route::Misdirected),
            ("api.localhost:9090:9090", Route::Misdirected),
            ("a b.localhost", Route::Misdirected),
            ("a/b.localhost", Route::Misdirected),
            ("user@api.localhost", Route::Misdirected),
            ("evil.com", Route::Misdirected),
            ("localhost.evil.com", Route::Misdirected),
            ("api.localhost.evil.com", Route::Misdirected),
            ("xlocalhost", Route::Misdirected),
            ("127.0.0.2", Route::Misdirected),
            ("127.0.0.1.", Route::Misdirected),
            ("0.0.0.0", Route::Misdirected),
            ("[::2]:9090", Route::Misdirected),
            ("[::ffff:127.0.0.1]", Route::Misdirected),
            ("[::1", Route::Misdirected),
            ("::1", Route::Misdirected),
            ("", Route::Misdirected),
            (":9090", Route::Misdirected),
        ];
        for (host, want) in table {
            assert_eq!(route(host), want, "{host:?}");
        }
    }

    /// Each request is refused with its status and reason, and `out` is untouched.
    fn assert_refused<R: AsRef<[u8]> + std::fmt::Debug>(table: Vec<(R, u16, &str)>) {
        for (raw, status, reason) in table {
            let (parsed, out) = request(raw.as_ref());
            let want = Parsed::Invalid(Reject {
                status,
                reason: reason.to_owned(),
            });
            assert_eq!(parsed, want, "{raw:?}");
            assert_eq!(out, b"left over", "{raw:?}: out touched");
        }
    }

    /// Content-Length and Transfer-Encoding that could smuggle a request.
    #[test]
    fn bad_framing_is_refused_with_its_status() {
        let get = "GET / HTTP/1.1\r\nHost: a.localhost\r\n";
        #[rustfmt::skip]
        let table: Vec<(String, u16, &str)> = vec![
            (s("POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), 400, "both Content-Length and Transfer-Encoding"),
            (s("POST / HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), 400, "both Content-Length and Transfer-Encoding"),
            (format!("{get}Content-Length: 5\r\nContent-Length: 5\r\n\r\n"), 400, "repeated Content-Length"),
            (format!("{get}Content-Length: 5\r\ncontent-length: 6\r\n\r\n"), 400, "repeated Content-Length"),
            (format!("{get}Content-Length: +5\r\n\r\n"), 400, "invalid Content-Length"),
            (format!("{get}Content-Length: -5\r\n\r\n"), 400, "invalid Content-Length"),
            (format!("{get}Content-Length: 5 5\r\n\r\n"), 400, "invalid Content-Length"),
            (format!("{get}Content-Length: 5,5\r\n\r\n"), 400, "invalid Content-Length"),
            (format!("{get}Content-Length: 5, 5\r\n\r\n"), 400, "invalid Content-Length"),
            (format!("{get}Content-Length: 0x5\r\n\r\n"), 400, "invalid Content-Length"),
            (format!("{get}Content-Length: \r\n\r\n"), 400, "invalid Content-Length"),
            (format!("{get}Content-Length: 18446744073709551616\r\n\r\n"), 400, "invalid Content-Length"),
            (format!("{get}Content-Length: 99999999999999999999999\r\n\r\n"), 400, "invalid Content-Length"),
            (format!("{get}Transfer-Encoding: gzip\r\n\r\n"), 501, TE_UNSUPPORTED),
            (format!("{get}Transfer-Encoding: chunked, gzip\r\n\r\n"), 501, TE_UNSUPPORTED),
            (format!("{get}Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"), 501, TE_UNSUPPORTED),
            (format!("{get}Transfer-Encoding: chunked;x=1\r\n\r\n"), 501, TE_UNSUPPORTED),
            (format!("{get}Transfer-Encoding: identity, chunked\r\n\r\n"), 501, TE_UNSUPPORTED),
            (format!("{get}Transfer-Encoding: gzip, chunked\r\n\r\n"), 501, TE_UNSUPPORTED),
            (format!("{get}Transfer-Encoding: xyz, chunked\r\n\r\n"), 501, TE_UNSUPPORTED),
            (format!("{get}Transfer-Encoding: gzip , chunked\r\n\r\n"), 501, TE_UNSUPPORTED),
            (format!("{get}Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n"), 501, TE_UNSUPPORTED),
            (format!("{get}Transfer-Encoding: identity\r\n\r\n"), 501, TE_UNSUPPORTED),
            (format!("{get}Transfer-Encoding: chunked, chunked\r\n\r\n"), 400, "chunked applied more than once"),
            (format!("{get}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), 400, "chunked applied more than once"),
            (format!("{get}Transfer-Encoding: chunked,\r\n\r\n"), 400, "malformed Transfer-Encoding"),
            (format!("{get}Transfer-Encoding: \r\n\r\n"), 400, "malformed Transfer-Encoding"),
            (s("GET / HTTP/1.0\r\nHost: a.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"), 400, "Transfer-Encoding in an HTTP/1.0 request"),
        ];
        assert_refused(table);
    }

    /// Header lines: folding, bare CR, Host, names and values.
    #[test]
    fn bad_heads_are_refused_with_their_status() {
        let get = "GET / HTTP/1.1\r\nHost: a.localhost\r\n";
        #[rustfmt::skip]
        let table: Vec<(String, u16, &str)> = vec![
            (format!("{get}X-A: 1\r\n folded\r\n\r\n"), 400, "obsolete line folding in head"),
            (format!("{get}X-A: 1\r\n\tfolded\r\n\r\n"), 400, "obsolete line folding in head"),
            (format!("{get}X-A: 1\rX-B: 2\r\n\r\n"), 400, "bare CR in head"),
            (format!("{get}X-A: 1\r\r\n\r\n"), 400, "bare CR in head"),
            (s("GET / HTTP/1.1\rHost: a.localhost\r\n\r\n"), 400, "bare CR in head"),
            (s("GET /a\rb HTTP/1.1\r\nHost: a.localhost\r\n\r\n"), 400, "bare CR in head"),
            (s("\rGET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n"), 400, "bare CR in head"),
            (format!("{get}\r\r\n"), 400, "bare CR in head"),
            (s("GET / HTTP/1.1\r\n\r\n"), 400, "missing Host header"),
            (format!("{get}Host: a.localhost\r\n\r\n"), 400, "repeated Host header"),
            (format!("{get}host: b.localhost\r\n\r\n"), 400, "repeated Host header"),
            (s("GET / HTTP/1.1\r\nHost:\r\n\r\n"), 400, "empty Host header"),
            (s("GET / HTTP/1.1\r\nHost : a.localhost\r\n\r\n"), 400, "invalid header name"),
            (format!("{get}: empty\r\n\r\n"), 400, "invalid header name"),
            (format!("{get}X-A: a\x00b\r\n\r\n"), 400, "invalid byte in a header value"),
        ];
        assert_refused(table);
    }

    /// The request line: targets of a forward proxy, versions, its syntax.
    #[test]
    fn bad_request_lines_are_refused_with_their_status() {
        #[rustfmt::skip]
        let table: Vec<(String, u16, &str)> = vec![
            (s("GET http://a.localhost/ HTTP/1.1\r\nHost: a.localhost\r\n\r\n"), 400, "absolute-form request target: this is not a forward proxy"),
            (s("GET a.localhost:80 HTTP/1.1\r\nHost: a.localhost\r\n\r\n"), 400, "authority-form request target: this is not a forward proxy"),
            (s("GET a/b HTTP/1.1\r\nHost: a.localhost\r\n\r\n"), 400, "malformed request target"),
            (s("GET * HTTP/1.1\r\nHost: a.localhost\r\n\r\n"), 400, "asterisk-form request target is only for OPTIONS"),
            (s("CONNECT a.localhost:443 HTTP/1.1\r\nHost: a.localhost:443\r\n\r\n"), 405, "CONNECT is not supported: this is not a forward proxy"),
            (s("GET / HTTP/2.0\r\nHost: a.localhost\r\n\r\n"), 505, "only HTTP/1.0 and HTTP/1.1 are supported"),
            (s("GET / HTTP/1.2\r\nHost: a.localhost\r\n\r\n"), 505, "only HTTP/1.0 and HTTP/1.1 are supported"),
            (s("GET / HTTP/0.9\r\nHost: a.localhost\r\n\r\n"), 505, "only HTTP/1.0 and HTTP/1.1 are supported"),
            (s("GET / HTTP/2"), 505, "only HTTP/1.0 and HTTP/1.1 are supported"),
            (s("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505, "only HTTP/1.0 and HTTP/1.1 are supported"),
            (s("GET / HTTP/x.y\r\nHost: a.localhost\r\n\r\n"), 400, "malformed HTTP version"),
            (s("GET / http/1.1\r\nHost: a.localhost\r\n\r\n"), 400, "malformed HTTP version"),
            (s("GET / HTTP/1.10\r\nHost: a.localhost\r\n\r\n"), 400, "malformed line ending"),
            (s("GET  / HTTP/1.1\r\nHost: a.localhost\r\n\r\n"), 400, "malformed request line"),
            (s("GET /\r\n\r\n"), 400, "malformed request line"),
        ];
        assert_refused(table);
    }

    /// Heads over the limits, and bytes that are not text (a TLS hello).
    #[test]
    fn oversized_and_binary_requests_are_refused_with_their_status() {
        let many_headers: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let many_headers = format!("GET / HTTP/1.1\r\nHost: a.localhost\r\n{many_headers}\r\n");
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_REQUEST_LINE));
        let long_partial = format!("GET /{}", "a".repeat(MAX_REQUEST_LINE));
        let long_head = format!(
            "GET / HTTP/1.1\r\nHost: a.localhost\r\nX: {}",
            "v".repeat(MAX_HEAD)
        );
        let long_head = &long_head[..MAX_HEAD];
        let host: &[u8] = b"GET / HTTP/1.1\r\nHost: \xff.localhost\r\n\r\n";
        let tls: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
        let table: Vec<(Vec<u8>, u16, &str)> = vec![
            (
                many_headers.into_bytes(),
                431,
                "more than 100 header fields",
            ),
            (
                long_head.as_bytes().to_vec(),
                431,
                "request head over 64 KiB",
            ),
            (long_line.into_bytes(), 414, "request line over 8 KiB"),
            (long_partial.into_bytes(), 414, "request line over 8 KiB"),
            (host.to_vec(), 400, "Host header is not UTF-8"),
            (tls.to_vec(), 400, "malformed request line"),
        ];
        assert_refused(table);
    }

    #[test]
    fn limits_are_inclusive() {
        let path = "a".repeat(MAX_REQUEST_LINE - "GET / HTTP/1.1".len());
        let raw = format!("GET /{path} HTTP/1.1\r\nHost: a.localhost\r\n\r\n");
        assert!(matches!(request(raw.as_bytes()).0, Parsed::Complete(_)));
        // Still being received, exactly at the limit: wait for more.
        let raw = format!("GET /{path} HTTP/1.1");
        assert_eq!(raw.len(), MAX_REQUEST_LINE);
        assert_eq!(request(raw.as_bytes()).0, Parsed::Partial);

        let start = "GET / HTTP/1.1\r\nHost: a.localhost\r\nX: ";
        let value = "v".repeat(MAX_HEAD - start.len() - 4);
        let raw = format!("{start}{value}\r\n\r\nbody");
        let (parsed, _) = request(raw.as_bytes());
        let Parsed::Complete(req) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(req.head_len, MAX_HEAD);
        let raw = format!("{start}{value}v\r\n\r\n");
        assert_eq!(
            request(raw.as_bytes()).0,
            Parsed::Invalid(reject(431, "request head over 64 KiB"))
        );
        assert_eq!(request(&raw.as_bytes()[..MAX_HEAD - 1]).0, Parsed::Partial);

        let headers: String = (0..MAX_HEADERS - 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: a.localhost\r\n{headers}\r\n");
        assert!(matches!(request(raw.as_bytes()).0, Parsed::Complete(_)));
    }

    #[test]
    fn requests_are_understood() {
        #[derive(Clone)]
        struct Want {
            route: Route,
            framing: Framing,
            keep_alive: bool,
            upgrade: bool,
            expect_continue: bool,
            is_head: bool,
        }
        let base = Want {
            route: proc("a"),
            framing: Framing::Empty,
            keep_alive: true,
            upgrade: false,
            expect_continue: false,
            is_head: false,
        };
        #[rustfmt::skip]
        let table = [
            ("GET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n", base.clone()),
            ("GET / HTTP/1.1\r\nHost: localhost:9090\r\n\r\n", Want { route: Route::Index, ..base.clone() }),
            ("GET / HTTP/1.1\r\nHost: evil.com\r\n\r\n", Want { route: Route::Misdirected, ..base.clone() }),
            ("HEAD / HTTP/1.1\r\nHost: a.localhost\r\n\r\n", Want { is_head: true, ..base.clone() }),
            ("OPTIONS * HTTP/1.1\r\nHost: a.localhost\r\n\r\n", base.clone()),
            ("GET / HTTP/1.1\r\nHost: a.localhost\r\nConnection: close\r\n\r\n", Want { keep_alive: false, ..base.clone() }),
            ("GET / HTTP/1.1\r\nHost: a.localhost\r\nConnection: x, CLOSE\r\n\r\n", Want { keep_alive: false, ..base.clone() }),
            ("GET / HTTP/1.1\r\nHost: a.localhost\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", Want { keep_alive: false, ..base.clone() }),
            ("GET / HTTP/1.0\r\nHost: a.localhost\r\n\r\n", Want { keep_alive: false, ..base.clone() }),
            ("GET / HTTP/1.0\r\nHost: a.localhost\r\nConnection: Keep-Alive\r\n\r\n", base.clone()),
            ("GET / HTTP/1.0\r\nHost: a.localhost\r\nConnection: keep-alive, close\r\n\r\n", Want { keep_alive: false, ..base.clone() }),
            ("POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 5\r\n\r\n", Want { framing: Framing::Length(5), ..base.clone() }),
            ("POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 007\r\n\r\n", Want { framing: Framing::Length(7), ..base.clone() }),
            ("POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 0\r\n\r\n", Want { framing: Framing::Length(0), ..base.clone() }),
            ("POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 18446744073709551615\r\n\r\n", Want { framing: Framing::Length(u64::MAX), ..base.clone() }),
            ("POST / HTTP/1.0\r\nHost: a.localhost\r\nContent-Length: 5\r\n\r\n", Want { framing: Framing::Length(5), keep_alive: false, ..base.clone() }),
            ("POST / HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding: chunked\r\n\r\n", Want { framing: Framing::Chunked, ..base.clone() }),
            ("POST / HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding: Chunked\r\n\r\n", Want { framing: Framing::Chunked, ..base.clone() }),
            ("POST / HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding:  chunked \r\n\r\n", Want { framing: Framing::Chunked, ..base.clone() }),
            ("POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 5\r\nExpect: 100-Continue\r\n\r\n", Want { framing: Framing::Length(5), expect_continue: true, ..base.clone() }),
            ("POST / HTTP/1.0\r\nHost: a.localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", Want { framing: Framing::Length(5), keep_alive: false, ..base.clone() }),
            ("GET /ws HTTP/1.1\r\nHost: a.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", Want { upgrade: true, ..base.clone() }),
            ("GET /ws HTTP/1.1\r\nHost: a.localhost\r\nConnection: keep-alive, upgrade\r\nUpgrade: websocket\r\n\r\n", Want { upgrade: true, ..base.clone() }),
            ("GET /ws HTTP/1.1\r\nHost: a.localhost\r\nConnection: upgrade\r\n\r\n", base.clone()),
            ("GET /ws HTTP/1.1\r\nHost: a.localhost\r\nUpgrade: websocket\r\n\r\n", base.clone()),
            ("GET /ws HTTP/1.0\r\nHost: a.localhost\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", Want { keep_alive: false, ..base.clone() }),
            // Bare LF line endings are accepted (RFC 9112 §2.2), and so is a leading empty line.
            ("GET / HTTP/1.1\nHost: a.localhost\n\n", base.clone()),
            ("\r\n\nGET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n", base.clone()),
        ];
        for (raw, want) in table {
            let (req, _) = complete(raw);
            let got = (
                req.route,
                req.framing,
                req.keep_alive,
                req.upgrade,
                req.expect_continue,
                req.is_head,
            );
            let want = (
                want.route,
                want.framing,
                want.keep_alive,
                want.upgrade,
                want.expect_continue,
                want.is_head,
            );
            assert_eq!(got, want, "{raw:?}");
            assert_eq!(req.head_len, raw.len(), "{raw:?}");
        }
    }

    #[test]
    fn a_head_cut_anywhere_is_partial_until_the_blank_line() {
        let head = "POST /submit?x=1 HTTP/1.1\r\nHost: Api.localhost:9090\r\nContent-Length: 3\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n";
        let raw = format!("{head}abcGET / HTTP/1.1\r\n");
        for cut in 0..head.len() {
            assert_eq!(
                request(&raw.as_bytes()[..cut]).0,
                Parsed::Partial,
                "cut at {cut}"
            );
        }
        for end in head.len()..=raw.len() {
            let (parsed, _) = request(&raw.as_bytes()[..end]);
            let Parsed::Complete(req) = parsed else {
                panic!("{parsed:?}")
            };
            assert_eq!(req.head_len, head.len());
            assert_eq!(req.host, "Api.localhost:9090");
            assert_eq!(req.route, proc("api"));
            assert_eq!(req.framing, Framing::Length(3));
        }
    }

    #[test]
    fn request_heads_lose_hop_by_hop_headers_and_gain_forwarding_ones() {
        let (req, out) = complete(concat!(
            "GET /x?y=1 HTTP/1.1\r\n",
            "Host: api.localhost:9090\r\n",
            "Connection: keep-alive, X-Secret, x-forwarded-for\r\n",
            "Keep-Alive: timeout=5\r\n",
            "Proxy-Connection: keep-alive\r\n",
            "TE: trailers\r\n",
            "Trailer: X-T\r\n",
            "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n",
            "proxy-authenticate: Basic\r\n",
            "Upgrade: h2c\r\n",
            "x-secret: 1\r\n",
            "X-Forwarded-For: 1.2.3.4\r\n",
            "X-Forwarded-Host: evil\r\n",
            "x-forwarded-proto: https\r\n",
            "Accept:   */*  \r\n",
            "Cookie: a=b\r\n",
            "\r\n",
        ));
        assert_eq!(
            out,
            concat!(
                "GET /x?y=1 HTTP/1.1\r\n",
                "Host: api.localhost:9090\r\n",
                "Accept: */*\r\n",
                "Cookie: a=b\r\n",
                "X-Forwarded-For: 127.0.0.1\r\n",
                "X-Forwarded-Host: api.localhost:9090\r\n",
                "X-Forwarded-Proto: http\r\n",
                "Connection: keep-alive\r\n",
                "\r\n",
            )
        );
        assert!(!req.upgrade);
    }

    #[test]
    fn forwarded_for_values_are_merged_and_the_peer_appended() {
        let table: [(&str, IpAddr, &str); 5] = [
            ("", PEER, "127.0.0.1"),
            ("X-Forwarded-For: 1.2.3.4\r\n", PEER, "1.2.3.4, 127.0.0.1"),
            (
                "X-Forwarded-For: 1.2.3.4, 5.6.7.8\r\nAccept: */*\r\nx-forwarded-for: 9.9.9.9\r\nX-Forwarded-For:\r\n",
                PEER,
                "1.2.3.4, 5.6.7.8, 9.9.9.9, 127.0.0.1",
            ),
            ("", IpAddr::V6(Ipv6Addr::LOCALHOST), "::1"),
            (
                "X-Forwarded-For: 1.2.3.4\r\n",
                IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped()),
                "1.2.3.4, 10.1.2.3",
            ),
        ];
        for (headers, peer, want) in table {
            let raw = format!("GET / HTTP/1.1\r\nHost: a.localhost\r\n{headers}\r\n");
            let mut out = Vec::new();
            assert!(matches!(
                parse_request(raw.as_bytes(), peer, &mut out),
                Parsed::Complete(_)
            ));
            let out = String::from_utf8(out).unwrap();
            let line = format!("\r\nX-Forwarded-For: {want}\r\n");
            assert!(out.contains(&line), "{out:?} lacks {line:?}");
            assert_eq!(
                out.matches("X-Forwarded-For").count() + out.matches("x-forwarded-for").count(),
                1,
                "{out:?}"
            );
        }
    }

    #[test]
    fn connection_cannot_strip_framing_or_host() {
        let (req, out) = complete(
            "POST / HTTP/1.1\r\nHost: a.localhost\r\nConnection: Content-Length, host, Transfer-Encoding, Cookie\r\nContent-Length: 2\r\nCookie: c\r\n\r\n",
        );
        assert_eq!(req.framing, Framing::Length(2));
        assert_eq!(
            out,
            "POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 2\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Host: a.localhost\r\nX-Forwarded-Proto: http\r\nConnection: keep-alive\r\n\r\n"
        );
        // The backend is told the framing we track, in one spelling, and nothing else.
        let (req, out) = complete(
            "POST / HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding: Chunked\r\nConnection: Transfer-Encoding\r\n\r\n",
        );
        assert_eq!(req.framing, Framing::Chunked);
        assert_eq!(
            out,
            "POST / HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Host: a.localhost\r\nX-Forwarded-Proto: http\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn upgrades_keep_upgrade_and_say_connection_upgrade() {
        let (req, out) = complete(concat!(
            "GET /_next/webpack-hmr HTTP/1.1\r\n",
            "Host: web.localhost:9090\r\n",
            "Connection: keep-alive, Upgrade\r\n",
            "Upgrade: websocket\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "Sec-WebSocket-Version: 13\r\n",
            "\r\n",
        ));
        assert!(req.upgrade);
        assert_eq!(
            out,
            concat!(
                "GET /_next/webpack-hmr HTTP/1.1\r\n",
                "Host: web.localhost:9090\r\n",
                "Upgrade: websocket\r\n",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                "Sec-WebSocket-Version: 13\r\n",
                "X-Forwarded-For: 127.0.0.1\r\n",
                "X-Forwarded-Host: web.localhost:9090\r\n",
                "X-Forwarded-Proto: http\r\n",
                "Connection: upgrade\r\n",
                "\r\n",
            )
        );
    }

    #[test]
    fn heads_are_rewritten_with_crlf_and_without_leading_empty_lines() {
        let (_, out) =
            complete("\r\nGET / HTTP/1.0\nHost: a.localhost\nConnection: keep-alive\n\n");
        assert_eq!(
            out,
            "GET / HTTP/1.0\r\nHost: a.localhost\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Host: a.localhost\r\nX-Forwarded-Proto: http\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn responses_are_framed_per_rfc_9112() {
        let ka = "Connection: keep-alive\r\n\r\n";
        let close = "Connection: close\r\n\r\n";
        // (head, to_head, client keep-alive, status, framing, backend keep-alive, end of the rewritten head)
        #[rustfmt::skip]
        let table = [
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, true, 200, Framing::Length(5), true, ka),
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, true, 200, Framing::Length(0), true, ka),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, true, 200, Framing::Empty, true, ka),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, true, 200, Framing::Empty, true, ka),
            ("HTTP/1.1 200 OK\r\n\r\n", true, true, 200, Framing::Empty, true, ka),
            ("HTTP/1.1 100 Continue\r\n\r\n", false, true, 100, Framing::Empty, true, "HTTP/1.1 100 Continue\r\n\r\n"),
            ("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", false, false, 103, Framing::Empty, true, "Link: </a.css>\r\n\r\n"),
            ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false, true, 101, Framing::Empty, true, "Upgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
            ("HTTP/1.1 204 No Content\r\n\r\n", false, true, 204, Framing::Empty, true, ka),
            ("HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n", false, true, 204, Framing::Empty, true, ka),
            ("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false, true, 304, Framing::Empty, true, ka),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, true, 200, Framing::Chunked, true, ka),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n", false, true, 200, Framing::Chunked, true, ka),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, true, 200, Framing::UntilClose, false, close),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", false, true, 200, Framing::UntilClose, false, close),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", false, true, 200, Framing::UntilClose, false, close),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, false, 200, Framing::Length(5), true, close),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n", false, true, 200, Framing::Length(5), false, ka),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: Keep-Alive\r\n\r\n", false, true, 200, Framing::Length(5), true, ka),
            ("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", false, true, 200, Framing::Length(5), false, ka),
            ("HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n", false, true, 200, Framing::Length(5), true, ka),
            ("HTTP/1.0 200 OK\r\n\r\n", false, true, 200, Framing::UntilClose, false, close),
            ("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, true, 200, Framing::UntilClose, false, close),
            ("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", false, true, 404, Framing::Length(0), true, ka),
            ("HTTP/1.1 200 OK\nContent-Length: 1\n\n", false, true, 200, Framing::Length(1), true, ka),
        ];
        for (raw, to_head, client_ka, status, framing, keep_alive, ending) in table {
            let (parsed, out) = response(raw, to_head, client_ka);
            let want = Parsed::Complete(Response {
                head_len: raw.len(),
                status,
                framing,
                keep_alive,
            });
            assert_eq!(parsed, want, "{raw:?}");
            assert!(out.ends_with(ending), "{raw:?} gave {out:?}");
            assert_eq!(
                out.matches("Connection:").count(),
                usize::from(status >= 200 || status == 101),
                "{out:?}"
            );
        }
    }

    #[test]
    fn a_head_is_complete_at_its_empty_line_not_at_leading_ones() {
        let table: [(&str, bool); 12] = [
            ("", false),
            ("\r\n", false),
            ("\r\n\r\n", false),
            ("\r\n\r\nGET / HTTP/1.1\r\n", false),
            ("\n\nGET / HTTP/1.1\nHost: a\n", false),
            ("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n", false),
            ("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            ("GET / HTTP/1.1\nHost: a\n\n", true),
            ("GET / HTTP/1.1\nHost: a\n\r\n", true),
            ("GET / HTTP/1.1\r\nHost: a\r\n", false),
            ("GET / HTTP/1.1\r\n\r\n", true),
        ];
        for (raw, want) in table {
            assert_eq!(head_complete(raw.as_bytes()), want, "{raw:?}");
        }
        // Wherever a complete head is cut, the part is incomplete, and parsing
        // agrees: never Complete while head_complete says more may come.
        let raw = b"\r\n\n\r\nGET /x HTTP/1.1\r\nHost: a.localhost\nX: y\r\n\r\n";
        for cut in 0..raw.len() {
            let part = &raw[..cut];
            assert!(!head_complete(part), "{:?}", String::from_utf8_lossy(part));
            let mut out = Vec::new();
            assert_eq!(parse_request(part, PEER, &mut out), Parsed::Partial);
        }
        assert!(head_complete(raw));
    }

    #[test]
    fn response_heads_lose_hop_by_hop_headers() {
        let (parsed, out) = response(
            concat!(
                "HTTP/1.1 200 OK\r\n",
                "Content-Length: 2\r\n",
                "Connection: close, X-Internal\r\n",
                "Keep-Alive: timeout=5\r\n",
                "x-internal: 1\r\n",
                "Upgrade: h2c\r\n",
                "Trailer: X-T\r\n",
                "Proxy-Authenticate: Basic realm=\"x\"\r\n",
                "Set-Cookie: a=b\r\n",
                "X-Forwarded-For: kept\r\n",
                "\r\nhi",
            ),
            false,
            true,
        );
        assert!(matches!(
            parsed,
            Parsed::Complete(Response {
                keep_alive: false,
                ..
            })
        ));
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=b\r\nX-Forwarded-For: kept\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn bad_responses_are_invalid() {
        #[rustfmt::skip]
        let table = [
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "both Content-Length and Transfer-Encoding"),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", "repeated Content-Length"),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n", "invalid Content-Length"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", "chunked applied more than once"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: ,chunked\r\n\r\n", "malformed Transfer-Encoding"),
            ("HTTP/2 200 OK\r\n\r\n", "unsupported HTTP version in the response"),
            ("HTTP/1.1 2000 OK\r\n\r\n", "malformed status line"),
            ("HTTP/1.1 099 Odd\r\n\r\n", "malformed status code"),
            ("SSH-2.0-OpenSSH_9.6\r\n", "unsupported HTTP version in the response"),
            ("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", "obsolete line folding in head"),
            ("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "bare CR in head"),
        ];
        for (raw, reason) in table {
            let (parsed, out) = response(raw, false, true);
            assert_eq!(parsed, Parsed::Invalid(reject(502, reason)), "{raw:?}");
            assert!(out.is_empty());
        }
        let headers: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let raw = format!("HTTP/1.1 200 OK\r\n{headers}\r\n");
        assert_eq!(
            response(&raw, false, true).0,
            Parsed::Invalid(reject(502, "more than 100 header fields in the response"))
        );
        let raw = format!("HTTP/1.1 200 OK\r\nX: {}", "v".repeat(MAX_HEAD));
        assert_eq!(
            response(&raw, false, true).0,
            Parsed::Invalid(reject(502, "response head over 64 KiB"))
        );
        assert_eq!(
            response(&raw[..MAX_HEAD - 1], false, true).0,
            Parsed::Partial
        );
        assert_eq!(
            response("HTTP/1.1 200 OK\r\nX: 1\r\n", false, true).0,
            Parsed::Partial
        );
    }

    /// Feeds `body` in pieces cut at `cuts`; returns the bytes consumed and
    /// whether the body ended, or the first error.
    fn feed_cut(body: &[u8], cuts: &[usize]) -> Result<(usize, bool), Reject> {
        let mut chunked = Chunked::default();
        let mut consumed = 0;
        let mut done = false;
        let mut start = 0;
        for &end in cuts.iter().chain([&body.len()]) {
            let piece = &body[start..end.max(start)];
            start = end.max(start);
            let (used, finished) = chunked.feed(piece)?;
            assert!(used <= piece.len());
            assert!(
                used == piece.len() || finished,
                "stopped early without finishing"
            );
            if done {
                assert_eq!((used, finished), (0, true), "fed after the end");
            }
            consumed += used;
            done = finished;
        }
        Ok((consumed, done))
    }

    const GOOD_BODIES: [&str; 9] = [
        "0\r\n\r\n",
        "5\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        "A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
        "0005\r\nhe\r\nl\r\n000\r\n\r\n",
        "0000000000000005\r\nhello\r\n0\r\n\r\n",
        "5;name=value;flag\r\nhello\r\n0;last=\"yes; really\"\r\n\r\n",
        "5 ;ext\r\nhello\r\n0\t; x\r\n\r\n",
        "3\r\nabc\r\n0\r\nExpires: never\r\nX-Checksum:abc \r\nEmpty:\r\n\r\n",
    ];

    #[test]
    fn chunked_bodies_end_exactly_however_they_are_split() {
        let next = b"GET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n";
        for body in GOOD_BODIES {
            let mut data = body.as_bytes().to_vec();
            data.extend_from_slice(next);
            let want = Ok((body.len(), true));
            assert_eq!(feed_cut(&data, &[]), want, "{body:?} whole");
            let ones: Vec<usize> = (1..data.len()).collect();
            assert_eq!(feed_cut(&data, &ones), want, "{body:?} byte by byte");
            for a in 0..=data.len() {
                assert_eq!(feed_cut(&data, &[a]), want, "{body:?} cut at {a}");
                for b in a..=body.len() {
                    assert_eq!(feed_cut(&data, &[a, b]), want, "{body:?} cut at {a}, {b}");
                }
            }
            let short = &body.as_bytes()[..body.len() - 1];
            assert_eq!(
                feed_cut(short, &[]),
                Ok((short.len(), false)),
                "{body:?} short"
            );
        }
    }

    #[test]
    fn bad_chunked_bodies_are_refused_however_they_are_split() {
        let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_LINE));
        let long_trailer = format!("0\r\nX: {}\r\n\r\n", "v".repeat(MAX_CHUNK_LINE));
        let many_trailers = format!(
            "0\r\n{}\r\n",
            "X-Trailer: 0123456789012345678901234567890123456789\r\n".repeat(2000)
        );
        #[rustfmt::skip]
        let table: Vec<(String, &str)> = vec![
            (s("zz\r\n"), "invalid chunk size"),
            (s("-1\r\n"), "invalid chunk size"),
            (s("0x5\r\nhello\r\n"), "invalid chunk size"),
            (s("\r\n"), "invalid chunk size"),
            (s(";ext\r\n"), "invalid chunk size"),
            (s("5 \r\nhello\r\n"), "invalid chunk size"),
            (s("5 5\r\nhello\r\n"), "invalid chunk size"),
            (s("5\nhello\r\n0\r\n\r\n"), "invalid chunk size"),
            (s("00000000000000001\r\nx\r\n"), "chunk size over 16 hex digits"),
            (s("10000000000000000\r\n"), "chunk size over 16 hex digits"),
            (s("5\rhello\r\n"), "bare CR in a chunk size line"),
            (s("5;a\nhello\r\n"), "invalid byte in a chunk extension"),
            (s("5;a\x00\r\nhello\r\n"), "invalid byte in a chunk extension"),
            (s("5\r\nhelloX\r\n0\r\n\r\n"), "missing CRLF after chunk data"),
            (s("5\r\nhello\n0\r\n\r\n"), "missing CRLF after chunk data"),
            (s("5\r\nhello\r0\r\n\r\n"), "missing CRLF after chunk data"),
            (s("5\r\nhello\r\n0\r\n\rX"), "bare CR in trailers"),
            (s("0\r\nX: 1\rY\r\n\r\n"), "bare CR in trailers"),
            (s("0\r\nX: 1\n\r\n"), "invalid byte in a trailer field"),
            (s("0\r\n\n"), "malformed trailer field"),
            (s("0\r\n folded: 1\r\n\r\n"), "malformed trailer field"),
            (s("0\r\nNo colon\r\n\r\n"), "malformed trailer field"),
            (s("0\r\n: empty name\r\n\r\n"), "malformed trailer field"),
            (long_ext, "chunk size line over 4 KiB"),
            (long_trailer, "trailer field over 4 KiB"),
            (many_trailers, "trailers over 64 KiB"),
        ];
        for (body, reason) in table {
            let want = Err(reject(400, reason));
            let data = body.as_bytes();
            assert_eq!(feed_cut(data, &[]), want, "{body:?} whole");
            let ones: Vec<usize> = (1..data.len()).collect();
            assert_eq!(feed_cut(data, &ones), want, "{body:?} byte by byte");
            let mut chunked = Chunked::default();
            assert_eq!(chunked.feed(data), want);
            assert_eq!(
                chunked.feed(b"0\r\n\r\n"),
                want,
                "{body:?}: recovered after an error"
            );
        }
    }

    #[test]
    fn chunk_data_is_skipped_in_one_step() {
        let mut chunked = Chunked::default();
        assert_eq!(chunked.feed(b"ffffffffffffffff\r\n"), Ok((18, false)));
        let big = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            assert_eq!(chunked.feed(&big), Ok((big.len(), false)));
        }
        let mut chunked = Chunked::default();
        let mut body = b"100000\r\n".to_vec();
        body.extend_from_slice(&big);
        body.extend_from_slice(b"\r\n0\r\n\r\nnext");
        assert_eq!(chunked.feed(&body), Ok((body.len() - 4, true)));
        assert_eq!(chunked.feed(b"more"), Ok((0, true)));
    }

    #[test]
    fn own_responses_are_complete_messages() {
        let mut out = b"before|".to_vec();
        own_response(404, "no process named web\n", false, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "before|HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\nConnection: close\r\n\r\nno process named web\n"
        );
        let table = [
            (200, "OK"),
            (400, "Bad Request"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (414, "URI Too Long"),
            (421, "Misdirected Request"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (502, "Bad Gateway"),
            (503, "Service Unavailable"),
            (504, "Gateway Timeout"),
            (505, "HTTP Version Not Supported"),
            (418, "Client Error"),
            (599, "Server Error"),
            (1000, "Unknown"),
        ];
        for (status, reason) in table {
            let mut out = Vec::new();
            own_response(status, "é", true, &mut out);
            let want = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\né"
            );
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    /// Bytes that look enough like HTTP to get deep into the parsers.
    fn http_ish() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(&b"\r\n"[..]),
            Just(&b"\r"[..]),
            Just(&b"\n"[..]),
            Just(&b" "[..]),
            Just(&b":"[..]),
            Just(&b","[..]),
            Just(&b"GET / HTTP/1.1\r\n"[..]),
            Just(&b"HTTP/1.1 200 OK\r\n"[..]),
            Just(&b"Host: a.localhost"[..]),
            Just(&b"Content-Length: "[..]),
            Just(&b"Transfer-Encoding: chunked"[..]),
            Just(&b"Connection: "[..]),
            Just(&b"upgrade"[..]),
            Just(&b"Upgrade: websocket"[..]),
            Just(&b"X-Forwarded-For: "[..]),
            Just(&b"1"[..]),
            Just(&b"5"[..]),
            Just(&b"a"[..]),
            Just(&b";"[..]),
            Just(&b"\x00"[..]),
            Just(&b"\xff"[..]),
        ];
        proptest::collection::vec(piece, 0..60).prop_map(|pieces| pieces.concat())
    }

    fn arbitrary_input() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![proptest::collection::vec(any::<u8>(), 0..600), http_ish()]
    }

    /// A chunked encoding of `data` cut into chunks of `sizes`, with extensions
    /// and trailers.
    fn encode_chunked(data: &[u8], sizes: &[usize], ext: bool, trailers: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = data;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            out.extend_from_slice(format!("{:X}", chunk.len()).as_bytes());
            if ext {
                out.extend_from_slice(b";a=b");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
            rest = tail;
        }
        out.extend_from_slice(b"0\r\n");
        for t in trailers {
            out.extend_from_slice(t.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    proptest! {
        #[test]
        fn parse_request_never_panics(buf in arbitrary_input()) {
            let mut out = Vec::new();
            if let Parsed::Complete(req) = parse_request(&buf, PEER, &mut out) {
                prop_assert!(req.head_len <= buf.len() && req.head_len <= MAX_HEAD);
                prop_assert!(out.ends_with(b"\r\n\r\n"));
            }
        }

        #[test]
        fn parse_response_never_panics(buf in arbitrary_input(), to_head in any::<bool>(), ka in any::<bool>()) {
            let mut out = Vec::new();
            if let Parsed::Complete(res) = parse_response(&buf, to_head, ka, &mut out) {
                prop_assert!(res.head_len <= buf.len());
                prop_assert!(out.ends_with(b"\r\n\r\n"));
            }
        }

        #[test]
        fn chunked_feed_never_panics(buf in arbitrary_input(), cuts in proptest::collection::vec(0usize..700, 0..8)) {
            let mut cuts = cuts;
            cuts.retain(|&c| c <= buf.len());
            cuts.sort_unstable();
            if let Ok((used, done)) = feed_cut(&buf, &cuts) {
                prop_assert!(used <= buf.len());
                prop_assert!(used == buf.len() || done);
            }
        }

        #[test]
        fn well_formed_chunked_bodies_are_consumed_exactly(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            sizes in proptest::collection::vec(1usize..300, 1..6),
            ext in any::<bool>(),
            trailers in proptest::collection::vec("[A-Za-z][A-Za-z0-9-]{0,10}:[ -~]{0,20}", 0..3),
            next in proptest::collection::vec(any::<u8>(), 0..50),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let body = encode_chunked(&data, &sizes, ext, &trailers);
            let mut all = body.clone();
            all.extend_from_slice(&next);
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(all.len() + 1)).collect();
            cuts.sort_unstable();
            prop_assert_eq!(feed_cut(&all, &cuts), Ok((body.len(), true)));
        }

        #[test]
        fn valid_requests_end_exactly_at_their_head(
            method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE"), Just("PATCH"), Just("HEAD"), Just("OPTIONS")],
            path in "/[A-Za-z0-9._~/?=&%-]{0,40}",
            minor in 0u8..2,
            host in "[a-z][a-z0-9-]{0,10}",
            headers in proptest::collection::vec(("X-[A-Za-z0-9-]{1,12}", "[ -~]{0,30}"), 0..10),
            length in proptest::option::of(0u64..100_000),
            extra in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut head = format!("{method} {path} HTTP/1.{minor}\r\nHost: {host}.localhost:9090\r\n");
            for (name, value) in &headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            if let Some(n) = length {
                head.push_str(&format!("Content-Length: {n}\r\n"));
            }
            head.push_str("\r\n");
            let mut buf = head.clone().into_bytes();
            buf.extend_from_slice(&extra);
            let mut out = Vec::new();
            let parsed = parse_request(&buf, PEER, &mut out);
            let Parsed::Complete(req) = parsed else {
                return Err(TestCaseError::fail(format!("{head:?}: {parsed:?}")));
            };
            prop_assert_eq!(req.head_len, head.len());
            prop_assert_eq!(req.route, Route::Process(host.clone()));
            prop_assert_eq!(req.framing, length.map_or(Framing::Empty, Framing::Length));
            prop_assert_eq!(req.keep_alive, minor == 1);
            let line = format!("{method} {path} HTTP/1.{minor}\r\n");
            prop_assert!(out.starts_with(line.as_bytes()));
        }
    }
}
