//! Issue 16, the proxy part: a hostile local user gets nothing. Each test plays
//! the attacker (a buggy or tricked backend, a second uid, a flood of held
//! connections) and checks that another client still gets its own answer, and
//! only its own. Backends are tests/proxy/backend.py, written into each sandbox.

#[path = "proxy/client.rs"]
mod client;
mod common;

use client::*;
use common::backend::*;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Lines in a file the backend appends to (0 while it does not exist).
fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Wait (bounded) until the backend has appended `n` lines to `path`.
fn await_lines(path: &Path, n: usize) {
    eventually(
        Duration::from_secs(10),
        &format!("{n} lines in {}", path.display()),
        || {
            let lines = lines_in(path);
            done_or(lines >= n, lines)
        },
    );
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

/// A CLI call that must answer within `limit`: (elapsed, output).
fn timed(sb: &Sandbox, args: &[&str], limit: Duration) -> (Duration, Out) {
    let t = Instant::now();
    let out = run_bounded(sb.command(args), limit);
    (t.elapsed(), out)
}

/// Another user holds hundreds of proxy connections whose bodies never end,
/// against a daemon limited to 256 descriptors. The proxy keeps within its share,
/// so `status` and `run` (whose port probe needs a descriptor) still answer at once.
#[test]
fn a_flood_of_held_connections_leaves_status_and_run_their_descriptors() {
    raise_fd_limit(1024);
    let sb = sandbox();
    let pp = serve_with_nofile(&sb, "web", 256);
    let daemon = sb.daemon_pid().expect("the daemon's pid");
    assert_eq!(
        fd_limit(daemon),
        Some(256),
        "the test did not lower the limit"
    );

    let host = format!("web.localhost:{pp}");
    let held = format!("POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000\r\n\r\nabc");
    // Until 400, or the listen queue stays full (its SYNs are dropped) three
    // times running, the proxy meanwhile taking what it may.
    let mut flood = Vec::new();
    let mut refused = 0;
    while flood.len() < 400 && refused < 3 {
        match Conn::try_open(pp, Duration::from_millis(500)) {
            Ok(mut c) => {
                let _ = c.send_lossy(held.as_bytes());
                flood.push(c);
                refused = 0;
            }
            Err(_) => refused += 1,
        }
    }
    assert!(
        // Each held connection costs the daemon two descriptors (and a backend one).
        flood.len() > 128,
        "only {} connections opened; the daemon holds {} descriptors; daemon.log:\n{}",
        flood.len(),
        fd_count(daemon),
        std::fs::read_to_string(sb.daemon_log()).unwrap_or_default()
    );
    // The proxy takes connections until its share is used up.
    eventually(
        Duration::from_secs(20),
        "the flood to reach the daemon (180 descriptors)",
        || {
            let held = fd_count(daemon);
            done_or(held >= 180, format!("the daemon holds {held}"))
        },
    );

    let limit = Duration::from_secs(10);
    let (status_took, out) = timed(&sb, &["status"], limit);
    assert_eq!(
        out.code,
        0,
        "{}",
        sb.report(&["status"], &out, "under the flood")
    );
    assert!(
        status_took < Duration::from_secs(1),
        "status took {status_took:?} under the flood"
    );
    // Behind the proxy a process without --port gets one through a port probe.
    let args = ["run", "sleep 60", "--name", "late", "--proxy"];
    let (took, out) = timed(&sb, &args, limit);
    assert_eq!(out.code, 0, "{}", sb.report(&args, &out, "under the flood"));
    assert!(
        took < Duration::from_secs(1),
        "run took {took:?} under the flood"
    );
    assert_eq!(sb.proc_status("late")["state"], "running");
    eprintln!(
        "under a flood of {} held connections: status {status_took:?}, run {took:?}, \
         daemon descriptors {} of 256",
        flood.len(),
        fd_count(daemon)
    );
    assert!(
        fd_count(daemon) < 256,
        "the daemon ran out of descriptors: {}",
        fd_count(daemon)
    );
    let log = std::fs::read_to_string(sb.daemon_log()).unwrap_or_default();
    assert_eq!(
        log.matches("descriptors the proxy may use").count(),
        1,
        "the cap is said once:\n{log}"
    );
    drop(flood);
    // Once the flood is gone, the proxy serves again.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let Ok(mut c) = Conn::try_open(pp, Duration::from_millis(300)) else {
            assert!(Instant::now() < end, "no connection after the flood");
            continue;
        };
        c.send(&request("GET", "/echo", &host, &[]));
        match c.try_response(false, Duration::from_secs(3)) {
            Ok(r) if r.status == 200 => break,
            other => assert!(
                Instant::now() < end,
                "no recovery after the flood: {other:?}"
            ),
        }
    }
    sb.ok(&["stop", "late"]);
}

/// A request body that stops coming is cut off after the request timeout (here
/// shortened for the test), while a slow but steady one is not.
#[test]
fn a_stalled_request_body_times_out_and_a_slow_one_does_not() {
    let sb = sandbox();
    let pp = serve_with_head_timeout(&sb, "web", 700);
    let host = format!("web.localhost:{pp}");

    let t = Instant::now();
    let mut stalled = Conn::open(pp);
    stalled.send(
        format!("POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\nabc").as_bytes(),
    );
    let r = stalled.response(Duration::from_secs(10));
    assert_eq!(r.status, 408, "{r}");
    assert!(
        r.text()
            .contains("the request body stalled: no byte for 700 ms"),
        "{r}"
    );
    assert_eq!(r.header("connection"), Some("close"), "{r}");
    assert!(
        t.elapsed() >= Duration::from_millis(650),
        "cut off after {:?}",
        t.elapsed()
    );

    // A head that stalls gets the same timeout.
    let mut head = Conn::open(pp);
    head.send(b"GET /echo HTTP/1.1\r\nHost: web.loc");
    let r = head.response(Duration::from_secs(10));
    assert_eq!(r.status, 408, "{r}");
    assert!(r.text().contains("within 700 ms"), "{r}");

    // A client that waits for 100 Continue is not stalled while the process
    // takes its time to say it; its clock starts with the 100.
    let mut waiting = Conn::open(pp);
    waiting.send(
        format!(
            "POST /slow-continue HTTP/1.1\r\nHost: {host}\r\nExpect: 100-continue\r\n\
             Content-Length: 5\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = waiting.response(Duration::from_secs(10));
    assert_eq!(r.status, 100, "{r}");
    waiting.send(b"hello");
    let r = waiting.response(RESPONSE_LIMIT);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["body_head"], "hello", "{r}");

    // Ten bytes, one every 250 ms: slower in all than the timeout, never stalled.
    let mut slow = Conn::open(pp);
    slow.send(
        format!("POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: 10\r\n\r\n").as_bytes(),
    );
    for b in b"0123456789" {
        // Pacing a slow client; nothing to wait for.
        std::thread::sleep(Duration::from_millis(250));
        slow.send(&[*b]);
    }
    let r = slow.response(RESPONSE_LIMIT);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["body_head"], "0123456789", "{r}");
}

/// A CLI that gave up while the daemon was stalled (here: stopped with SIGSTOP)
/// leaves its `run` in the socket; the daemon must not start it later.
#[test]
fn a_run_whose_client_gave_up_during_a_stall_is_not_started_later() {
    let sb = sandbox();
    sb.ok(&["run", "sleep 60", "--name", "first"]);
    let daemon = sb.daemon_pid().expect("the daemon's pid");
    kill(daemon, libc::SIGSTOP);
    let gone = {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(sb.socket()).expect("connecting");
        s.write_all(b"{\"type\":\"Run\",\"command\":\"sleep 60\",\"name\":\"late\"}\n")
            .expect("sending the run");
        s
    };
    drop(gone);
    kill(daemon, libc::SIGCONT);
    // A client that stays is served as ever (and after the one that left: the
    // daemon accepts in order).
    sb.ok(&["run", "sleep 60", "--name", "second"]);
    let names: Vec<String> = sb
        .status()
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect();
    assert_eq!(
        names,
        ["first", "second"],
        "a run nobody waits for any more was started"
    );
    let log = std::fs::read_to_string(sb.daemon_log()).unwrap_or_default();
    assert!(
        log.contains("dropped a run of 'late': its client hung up before it was read"),
        "{log}"
    );
    sb.ok(&["stop", "first"]);
    sb.ok(&["stop", "second"]);
}
