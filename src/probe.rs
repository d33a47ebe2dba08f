//! Readiness probes without sockets: what a `tcp:` or `http:` check connects to,
//! the request an HTTP check sends, and how its answer is judged. The daemon
//! (`daemon/readiness.rs`) does the non-blocking I/O on its loop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// What a probe connects to, and for HTTP what it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp(SocketAddr),
    Http {
        addr: SocketAddr,
        /// The request, ready to write.
        request: Vec<u8>,
        /// The URL as given, for messages.
        url: String,
    },
}

impl Target {
    pub fn tcp(port: u16) -> Target {
        Target::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Target::Tcp(addr) | Target::Http { addr, .. } => *addr,
        }
    }

    /// What being ready means, for messages: `port 5432`, `http://…/health`.
    pub fn describe(&self) -> String {
        match self {
            Target::Tcp(addr) => format!("port {}", addr.port()),
            Target::Http { url, .. } => url.clone(),
        }
    }
}

/// The rule for probe hosts, as errors state it.
pub const LOOPBACK_ONLY: &str = "the host must be localhost or a loopback address (127.0.0.0/8 or ::1); agent-procs probes nothing off this machine";

/// Parse `http://HOST[:PORT][/PATH]` where HOST is `localhost` or a loopback
/// address (127.0.0.0/8, ::1). Names are not looked up: a lookup could block the
/// daemon's loop. Other hosts are refused: the daemon opens no TCP connection
/// off this machine (SECURITY.md), so a config cannot make it probe a network.
pub fn http_target(url: &str) -> Result<Target, String> {
    let bad = |why: &str| Err(format!("invalid URL '{url}': {why}"));
    let Some(rest) = url.strip_prefix("http://") else {
        return bad("only http:// URLs can be probed");
    };
    if rest.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return bad("it contains spaces or control characters");
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], &rest[i..]),
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.split('#').next().unwrap_or("/").to_string()
    };
    if authority.contains('@') {
        return bad("user names and passwords are not supported");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return bad("an IPv6 address needs a closing ]");
        };
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return bad("the port must be a number from 1 to 65535"),
        },
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        match host.parse::<IpAddr>() {
            Ok(ip) if ip.is_loopback() => ip,
            Err(_) if host.is_empty() => return bad("it has no host"),
            Ok(_) | Err(_) => return bad(LOOPBACK_ONLY),
        }
    };
    let host_header = if authority.is_empty() {
        "localhost"
    } else {
        authority
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: agent-procs\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    Ok(Target::Http {
        addr: SocketAddr::new(ip, port),
        request: request.into_bytes(),
        url: url.to_string(),
    })
}

/// The status code of a response whose first line is complete in `head`:
/// `Some(Ok(code))`, `Some(Err(why))` when it is not HTTP, `None` to read on.
pub fn status_code(head: &[u8]) -> Option<Result<u16, String>> {
    let Some(end) = head.iter().position(|&b| b == b'\n') else {
        // A status line has no business being this long.
        return (head.len() > 1024).then(|| Err("the answer is not HTTP".into()));
    };
    let line = head[..end].strip_suffix(b"\r").unwrap_or(&head[..end]);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let valid =
        version.starts_with(b"HTTP/") && code.len() == 3 && code.iter().all(u8::is_ascii_digit);
    if !valid {
        return Some(Err("the answer is not HTTP".into()));
    }
    let code = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    Some(Ok(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(url: &str) -> (SocketAddr, String) {
        match http_target(url) {
            Ok(Target::Http { addr, request, .. }) => {
                (addr, String::from_utf8(request).unwrap_or_default())
            }
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn urls_name_an_address_and_a_request() {
        let (addr, req) = http("http://127.0.0.1:8080/health?x=1");
        assert_eq!(addr, "127.0.0.1:8080".parse().unwrap());
        assert!(req.starts_with("GET /health?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        let (addr, req) = http("http://localhost");
        assert_eq!(addr, "127.0.0.1:80".parse().unwrap());
        assert!(req.starts_with("GET / HTTP/1.1\r\nHost: localhost\r\n"));
        let (addr, _) = http("http://127.1.2.3:81/");
        assert_eq!(addr, "127.1.2.3:81".parse().unwrap());
        let (addr, _) = http("http://[::1]:9000/");
        assert_eq!(addr, "[::1]:9000".parse().unwrap());
        let (_, req) = http("http://LOCALHOST:3000?ready");
        assert!(req.starts_with("GET /?ready HTTP/1.1\r\n"));
        let (_, req) = http("http://127.0.0.1:1/a#frag");
        assert!(req.starts_with("GET /a HTTP/1.1\r\n"));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, why) in [
            ("https://127.0.0.1/", "only http://"),
            (
                "http://example.com/",
                "must be localhost or a loopback address",
            ),
            ("http://10.0.0.1:80/", "(127.0.0.0/8 or ::1)"),
            ("http://0.0.0.0:80/", "(127.0.0.0/8 or ::1)"),
            ("http://[::]:80/", "(127.0.0.0/8 or ::1)"),
            ("http://[::ffff:10.1.2.3]/", "(127.0.0.0/8 or ::1)"),
            ("http://169.254.169.254/latest/meta-data/", "loopback"),
            ("http://127.0.0.1:0/", "from 1 to 65535"),
            ("http://127.0.0.1:99999/", "from 1 to 65535"),
            ("http://u:p@127.0.0.1/", "passwords"),
            ("http://[::1/", "closing ]"),
            ("http:///x", "no host"),
            ("http://127.0.0.1/a b", "spaces"),
            ("http://127.0.0.1/\r\nX: y", "control"),
        ] {
            let err = http_target(url).expect_err(url);
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(Ok(200)));
        assert_eq!(status_code(b"HTTP/1.0 302\r\n"), Some(Ok(302)));
        assert_eq!(status_code(b"HTTP/1.1 503 Busy\n"), Some(Ok(503)));
        assert_eq!(status_code(b"HTTP/1.1 20"), None);
        assert!(matches!(status_code(b"SSH-2.0-OpenSSH\r\n"), Some(Err(_))));
        assert!(matches!(status_code(b"HTTP/1.1 2000 x\r\n"), Some(Err(_))));
        assert!(matches!(status_code(&[b'x'; 2000]), Some(Err(_))));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(url in "http://[ -~]{0,40}", head in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = http_target(&url);
            let _ = status_code(&head);
        }
    }
}
