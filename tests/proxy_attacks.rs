//! Issue 16, the proxy part: a hostile local user gets nothing. Each test plays
//! the attacker (a buggy or tricked backend, a second uid, a flood of held
//! connections) and checks that another client still gets its own answer, and
//! only its own. Backends are tests/proxy/backend.py, written into each sandbox.

#[path = "proxy/client.rs"]
mod client;
mod common;

use client::*;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const BACKEND: &str = include_str!("proxy/backend.py");

fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    std::fs::write(sb.root.join("backend.py"), BACKEND).expect("writing the backend");
    sb
}

/// Start the backend NAME behind the proxy and wait until it serves; returns
/// (proxy port, backend port).
fn serve(sb: &Sandbox, name: &str) -> (u16, u16) {
    let port = free_port();
    let p = port.to_string();
    let command = format!("python3 backend.py {name}");
    let args = ["run", &command, "--name", name, "--port", &p, "--proxy"];
    let out = sb.run(&args);
    if out.code != 0 {
        panic!("{}", sb.report(&args, &out, "expected exit 0"));
    }
    let proxy = proxy_port_in(&format!("{}{}", out.stdout, out.stderr))
        .unwrap_or_else(|| panic!("{}", sb.report(&args, &out, "no localhost:PORT")));
    sb.ok(&["wait", name, "--until", "serving", "--timeout", "20"]);
    (proxy, port)
}

/// Lines in a file the backend appends to (0 while it does not exist).
fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Wait (bounded) until the backend has appended `n` lines to `path`.
fn await_lines(path: &Path, n: usize) {
    let end = Instant::now() + Duration::from_secs(10);
    while lines_in(path) < n {
        assert!(
            Instant::now() < end,
            "{} never reached {n} lines",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// B's answer must be B's own: the echo of exactly its request.
fn assert_own_answer(r: &Response, path: &str, round: usize) {
    assert!(
        r.header("x-stale").is_none(),
        "round {round}: a client got a response meant for nobody (or someone else):\n{r}"
    );
    assert_eq!(r.status, 200, "round {round}:\n{r}");
    assert_eq!(r.json()["path"], path, "round {round}:\n{r}");
}

/// A handler that writes a second response after its first: the extra bytes
/// arrive while the backend connection is idle (pooled after its client left,
/// or still kept by that client). They must never reach the next client.
#[test]
fn a_response_nobody_asked_for_never_reaches_the_next_client() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let host = format!("web.localhost:{pp}");
    let log = sb.root.join("twice-log");
    for round in 1..=12 {
        // The victim-to-be's predecessor: one request, then it leaves (by
        // asking to close, or by closing), and the backend connection is idle.
        let mut a = Conn::open(pp);
        let close: &[&str] = if round % 2 == 0 {
            &["Connection: close"]
        } else {
            &[]
        };
        a.send(&request("GET", &format!("/twice?{round}"), &host, close));
        let r = a.response(RESPONSE_LIMIT);
        assert_eq!(r.text(), "first answer", "round {round}:\n{r}");
        drop(a);
        // The stray response has been written by now.
        await_lines(&log, round);
        let path = format!("/echo?round={round}");
        let mut b = Conn::open(pp);
        b.send(&request("GET", &path, &host, &[]));
        assert_own_answer(&b.response(RESPONSE_LIMIT), &path, round);
    }
    // The same with the client still connected: its next request gets its own answer.
    let mut a = Conn::open(pp);
    for round in 13..=18 {
        a.send(&request("GET", &format!("/twice?{round}"), &host, &[]));
        assert_eq!(a.response(RESPONSE_LIMIT).text(), "first answer");
        await_lines(&log, round);
        let path = format!("/echo?round={round}");
        a.send(&request("GET", &path, &host, &[]));
        assert_own_answer(&a.response(RESPONSE_LIMIT), &path, round);
    }
}

/// The CL.0 class: a backend that does not read a GET's body serves the body
/// as a request of its own. Smuggled that way, a slow request's answer would
/// be queued for whoever next got that backend connection.
#[test]
fn a_smuggled_request_in_a_get_body_answers_nobody_else() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let host = format!("web.localhost:{pp}");
    let smuggled = format!("GET /stale HTTP/1.1\r\nHost: {host}\r\n\r\n");
    for round in 1..=10 {
        let mut a = Conn::open(pp);
        let length = format!("Content-Length: {}", smuggled.len());
        let mut req = request("GET", "/nobody", &host, &[&length]);
        req.extend_from_slice(smuggled.as_bytes());
        a.send(&req);
        let r = a.response(RESPONSE_LIMIT);
        assert_eq!(r.text(), "ignored your body", "round {round}:\n{r}");
        drop(a);
        let path = format!("/echo?round={round}");
        let mut b = Conn::open(pp);
        b.send(&request("GET", &path, &host, &[]));
        assert_own_answer(&b.response(RESPONSE_LIMIT), &path, round);
    }
}

/// A Transfer-Encoding other than exactly `chunked` is not passed on with a body
/// we framed as chunked: 501, and the connection closes.
#[test]
fn transfer_codings_other_than_chunked_get_501_and_a_close() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let host = format!("web.localhost:{pp}");
    for te in ["identity, chunked", "gzip, chunked", "xyz, chunked", "gzip"] {
        let mut c = Conn::open(pp);
        let mut req = request(
            "POST",
            "/echo",
            &host,
            &[&format!("Transfer-Encoding: {te}")],
        );
        // What a backend decoding `identity` or `xyz` differently could take
        // for a second request.
        req.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\nGET /stale HTTP/1.1\r\nHost: x\r\n\r\n");
        c.send(&req);
        let r = c.response(RESPONSE_LIMIT);
        assert_eq!(r.status, 501, "Transfer-Encoding: {te}:\n{r}");
        assert_eq!(r.header("connection"), Some("close"), "{te}:\n{r}");
        assert!(
            r.text().contains("only Transfer-Encoding: chunked"),
            "{te}:\n{r}"
        );
        assert!(c.closes_within(SHORT), "{te}: the connection stayed open");
    }
    // Exactly chunked (any case) is relayed, as chunked.
    let mut c = Conn::open(pp);
    let mut req = request("POST", "/echo", &host, &["Transfer-Encoding: Chunked"]);
    req.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
    c.send(&req);
    let r = c.response(RESPONSE_LIMIT);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["body_head"], "hello", "{r}");
}

const SHORT: Duration = Duration::from_secs(5);

/// Credentials for a proxy stop at the proxy, both ways.
#[test]
fn proxy_credentials_do_not_cross_the_proxy() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let host = format!("web.localhost:{pp}");
    let mut c = Conn::open(pp);
    c.send(&request(
        "GET",
        "/echo",
        &host,
        &[
            "Proxy-Authorization: Basic c2VjcmV0OnNlY3JldA==",
            "Proxy-Authenticate: Basic",
        ],
    ));
    let r = c.response(RESPONSE_LIMIT);
    assert_eq!(r.status, 200, "{r}");
    let text = r.text().to_ascii_lowercase();
    assert!(
        !text.contains("proxy-authorization") && !text.contains("proxy-authenticate"),
        "the backend received proxy credentials:\n{r}"
    );
}

/// A head that starts with empty lines and comes in two reads is answered as
/// soon as it is complete, not after the 10 s header timeout.
#[test]
fn a_head_after_empty_lines_split_over_two_reads_is_answered_at_once() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let host = format!("web.localhost:{pp}");
    for (first, second) in [
        (
            "\r\n\r\nGET /echo HTTP/1.1\r\n".to_string(),
            format!("Host: {host}\r\n\r\n"),
        ),
        (
            "\n\nGET /echo HTTP/1.1\n".to_string(),
            format!("Host: {host}\n\n"),
        ),
        (
            "\r\n\r\n".to_string(),
            format!("GET /echo HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        ),
    ] {
        let mut c = Conn::open(pp);
        c.send(first.as_bytes());
        // Pacing, so the two parts arrive in two reads; nothing to wait for.
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        c.send(second.as_bytes());
        let r = c.response(Duration::from_secs(8));
        assert_eq!(r.status, 200, "{first:?} then {second:?}:\n{r}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{first:?} then {second:?}: answered after {:?}",
            t.elapsed()
        );
    }
}

/// A python another uid may run (root's may sit in a private pyenv).
fn python_for_anyone() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Whether this host has an IPv6 loopback to test with.
fn ipv6_up() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// A program of another uid listening on [::1]:`port` (root only); it prints
/// `listening`, then `got N` for the bytes of a connection, if one comes.
struct Squatter(std::process::Child);

impl Squatter {
    fn start(uid: u32, port: u16) -> Squatter {
        let script = format!(
            "import socket\n\
             s = socket.socket(socket.AF_INET6)\n\
             s.bind(('::1', {port}))\n\
             s.listen(8)\n\
             print('listening', flush=True)\n\
             s.settimeout(60)\n\
             c, _ = s.accept()\n\
             c.settimeout(5)\n\
             print('got', len(c.recv(65536)), flush=True)"
        );
        let mut child = std::process::Command::new("setpriv")
            .args(setpriv_args(uid))
            .args(["--", python_for_anyone(), "-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting the squatter");
        let mut out = std::io::BufReader::new(child.stdout.take().expect("its stdout"));
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).expect("reading the squatter");
        assert_eq!(
            line, "listening\n",
            "the squatter could not bind [::1]:{port}"
        );
        Squatter(child)
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Another user who holds [::1]:PORT first would receive every browser request
/// for NAME.localhost:PORT that went to ::1: the proxy refuses that port.
#[test]
fn a_proxy_port_another_user_holds_on_ipv6_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another uid");
        return;
    }
    if !ipv6_up() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let sb = sandbox();
    let port = free_port();
    let _squatter = Squatter::start(64_105, port);
    std::fs::write(
        sb.root.join("agent-procs.yaml"),
        format!(
            "proxy: true\nproxy_port: {port}\nprocesses:\n  web:\n    cmd: python3 backend.py web\n"
        ),
    )
    .expect("writing the config");
    let err = sb.fails(&["up"], 1);
    assert!(
        err.contains(&format!(
            "the proxy cannot listen on [::1]:{port}: another program holds it"
        )),
        "{err}"
    );
    // Nothing of ours listens on 127.0.0.1 there either: a browser trying both
    // would find only the other user.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "127.0.0.1:{port} still answers"
    );
}

/// The proxy holds [::1] on its port too, and serves it like 127.0.0.1.
#[test]
fn the_proxy_serves_the_ipv6_loopback_like_the_ipv4_one() {
    if !ipv6_up() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let mut stream = std::net::TcpStream::connect(("::1", pp))
        .unwrap_or_else(|e| panic!("the proxy does not listen on [::1]:{pp}: {e}"));
    stream
        .set_read_timeout(Some(RESPONSE_LIMIT))
        .expect("a read timeout");
    use std::io::{Read, Write};
    stream
        .write_all(&request(
            "GET",
            "/echo",
            &format!("web.localhost:{pp}"),
            &["Connection: close"],
        ))
        .expect("sending");
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.contains("\"name\": \"web\""), "{text}");
    assert!(text.contains("X-Forwarded-For\", \"::1\""), "{text}");
    // Nobody else can take [::1] on that port now.
    let squat = std::net::TcpListener::bind(("::1", pp));
    assert!(squat.is_err(), "[::1]:{pp} could be bound beside the proxy");
}
