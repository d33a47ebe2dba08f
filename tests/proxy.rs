//! The reverse proxy, driven through the real binary and spoken to over raw TCP:
//! routing by Host and the routes page, the error statuses, HTTP/1.1 framing and
//! smuggling defences, keep-alive, hop-by-hop and X-Forwarded-* headers, 1xx,
//! streaming, WebSocket tunnels, slow and numerous clients, descriptor exhaustion,
//! port assignment, and no listener at all when the proxy is not asked for.
//! Backends are tests/proxy/backend.py, written into each sandbox.

#[path = "proxy/client.rs"]
mod client;
mod common;

use client::*;
use common::backend::*;
use common::*;
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("writing a test file");
}

/// How long the proxy holds a request for a backend that is not up, in the
/// tests that wait it out (5 s otherwise).
const HOLD_MS: &str = "1500";
const HOLD: Duration = Duration::from_millis(1500);

/// The header values the backend received, by name (case-insensitive).
fn received(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|kv| kv[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
                .map(|kv| kv[1].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

const SHORT: Duration = Duration::from_secs(5);

#[test]
fn the_routes_page_lists_every_process_and_the_host_picks_the_process() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let (pp2, _) = serve(&sb, "api");
    assert_eq!(pp, pp2, "one proxy per session");
    assert!(
        (9090..=9190).contains(&pp),
        "proxy port {pp} is outside 9090-9190"
    );
    run_proxied(&sb, "idle", "sleep 60", Some(free_port()));
    sb.ok(&["stop", "idle"]);

    let hosts = [
        "localhost".to_string(),
        format!("localhost:{pp}"),
        format!("127.0.0.1:{pp}"),
        format!("LocalHost:{pp}"),
    ];
    for host in hosts {
        let r = get(pp, &host, "/");
        assert_eq!(r.status, 200, "Host {host}:\n{r}");
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "Host {host}:\n{r}"
        );
        let text = r.text();
        for (name, states) in [
            ("web", &["running"][..]),
            ("api", &["running"][..]),
            ("idle", &["stopped", "exited"][..]),
        ] {
            let url = format!("http://{name}.localhost:{pp}");
            let line = text
                .lines()
                .find(|l| l.contains(&url))
                .unwrap_or_else(|| panic!("no line with {url} on the routes page:\n{r}"));
            assert!(
                states.iter().any(|s| line.contains(s)),
                "the line for {name} does not say {states:?}: {line:?}\n{r}"
            );
        }
    }

    let routes = [
        (format!("web.localhost:{pp}"), "web"),
        ("web.localhost".to_string(), "web"),
        (format!("WEB.LocalHost:{pp}"), "web"),
        (format!("api.localhost:{pp}"), "api"),
        (format!("x.api.localhost:{pp}"), "api"),
        ("a.b.web.localhost".to_string(), "web"),
    ];
    for (host, want) in routes {
        let r = get(pp, &host, "/echo?q=1");
        assert_eq!(r.status, 200, "Host {host}:\n{r}");
        let echo = r.json();
        assert_eq!(echo["name"], want, "Host {host}:\n{r}");
        assert_eq!(echo["path"], "/echo?q=1", "Host {host}:\n{r}");
    }
}

#[test]
fn hosts_that_name_nothing_routable_get_the_right_error() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    run_proxied(&sb, "idle", "sleep 60", Some(free_port()));
    sb.ok(&["stop", "idle"]);
    run_proxied(&sb, "quitter", "sh -c 'exit 3'", Some(free_port()));
    sb.ok(&["wait", "quitter", "--exit", "--timeout", "20"]);

    for host in [
        "example.com",
        "web.example.com",
        "web.localhost.example.com",
        "localhostx",
        "weblocalhost",
    ] {
        let r = get(pp, host, "/");
        assert_eq!(r.status, 421, "Host {host}:\n{r}");
    }

    let raw: [(&str, &[u8]); 2] = [
        ("no Host", b"GET / HTTP/1.1\r\n\r\n"),
        (
            "two Hosts",
            b"GET / HTTP/1.1\r\nHost: web.localhost\r\nHost: web.localhost\r\n\r\n",
        ),
    ];
    for (what, bytes) in raw {
        let mut c = Conn::open(pp);
        c.send(bytes);
        let r = c.response(SHORT);
        assert_eq!(r.status, 400, "{what}:\n{r}");
    }

    let r = get(pp, &format!("nope.localhost:{pp}"), "/");
    assert_eq!(r.status, 502, "{r}");
    let body = r.text();
    // 0.6's phrase, which scripts look for, comes first.
    assert!(
        body.starts_with("no running process named 'nope'"),
        "the 502 lacks 0.6's phrase:\n{r}"
    );
    assert!(
        body.contains("nope"),
        "the 502 does not name the process:\n{r}"
    );
    assert!(
        body.contains(&format!("http://web.localhost:{pp}")),
        "the 502 does not list the routes that exist:\n{r}"
    );

    let r = get(pp, "idle.localhost", "/");
    assert_eq!(r.status, 502, "{r}");
    let body = r.text();
    assert!(
        body.starts_with("no running process named 'idle': "),
        "the 502 lacks 0.6's phrase:\n{r}"
    );
    assert!(
        body.contains("idle")
            && ["stopped", "exited", "not running"]
                .iter()
                .any(|w| body.contains(w)),
        "the 502 does not say the process is stopped:\n{r}"
    );

    let r = get(pp, "quitter.localhost", "/");
    assert_eq!(r.status, 502, "{r}");
    let body = r.text();
    assert!(
        body.starts_with("no running process named 'quitter': "),
        "the 502 lacks 0.6's phrase:\n{r}"
    );
    assert!(
        body.contains("quitter") && body.contains("exited"),
        "the 502 does not say the process exited:\n{r}"
    );
}

#[test]
fn requests_wait_for_a_starting_backend() {
    let sb = sandbox();
    // Listens 1.5 s after it starts: the request waits instead of failing.
    let (_, pp) = run_proxied(
        &sb,
        "slow",
        "python3 backend.py slow 1.5",
        Some(free_port()),
    );
    let r = get(pp, "slow.localhost", "/echo");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["name"], "slow");

    // The same across a restart.
    let before = sb.proc_status("slow")["pid"].clone();
    sb.ok(&["restart", "slow"]);
    let r = get(pp, "slow.localhost", "/echo");
    assert_eq!(r.status, 200, "{r}");
    assert_ne!(sb.proc_status("slow")["pid"], before);
}

#[test]
fn a_starting_backend_that_never_listens_gets_503_after_the_hold() {
    let sb = sandbox();
    // Running but never listening: 503 after the hold (shortened here), with the reason.
    let env = [(HOLD_VAR, HOLD_MS)];
    let (_, pp) = run_proxied_env(&sb, "deaf", "sleep 60", Some(free_port()), &env);
    let started = Instant::now();
    let r = get(pp, "deaf.localhost", "/");
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{r}");
    let text = r.text();
    assert!(text.contains("deaf"), "the 503 gives no reason:\n{r}");
    assert!(
        text.contains("gave up after 1500 ms"),
        "not the hold set:\n{r}"
    );
    assert!(
        took >= HOLD && took <= HOLD + Duration::from_secs(8),
        "the 503 came after {took:?}, not about {HOLD:?}"
    );
}

/// Polls `status --json` until `name` has run for `secs` seconds (bounded).
fn await_uptime(sb: &Sandbox, name: &str, secs: u64) {
    eventually(
        Duration::from_secs(secs + 30),
        &format!("{name} to run {secs} s"),
        || {
            let st = sb.proc_status(name);
            done_or(st["uptime_secs"].as_u64().is_some_and(|u| u >= secs), st)
        },
    );
}

#[test]
fn a_running_process_that_refuses_gets_502_at_once_but_an_unready_one_is_waited_for() {
    let sb = sandbox();
    // `deaf` runs but never listens; `unready` neither, and an `up` still waits
    // for its readiness line.
    let env = [(HOLD_VAR, HOLD_MS)];
    let (_, pp) = run_proxied_env(&sb, "deaf", "sleep 60", Some(free_port()), &env);
    write(
        &sb.root.join("agent-procs.yaml"),
        &format!(
            "processes:\n  unready:\n    cmd: sleep 60\n    port: {}\n    ready: never-printed\n    ready_timeout: 60\n",
            free_port()
        ),
    );
    let mut up = sb.command(&["up"]);
    up.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut up = up.spawn().expect("starting up");
    await_uptime(&sb, "deaf", 6);
    await_uptime(&sb, "unready", 6);

    // Past its first seconds, a refusal is a 502 at once, as in 0.6 and nginx.
    let started = Instant::now();
    let r = get(pp, "deaf.localhost", "/");
    let took = started.elapsed();
    assert_eq!(r.status, 502, "{r}");
    assert!(
        r.text().contains("deaf is not accepting connections"),
        "the 502 gives no reason:\n{r}"
    );
    assert!(took < Duration::from_secs(3), "the 502 took {took:?}");

    // Not ready yet for its `up`: held, then 503.
    let started = Instant::now();
    let r = get(pp, "unready.localhost", "/");
    let took = started.elapsed();
    let _ = up.kill();
    let _ = up.wait();
    assert_eq!(r.status, 503, "{r}");
    assert!(took >= HOLD, "the 503 came after {took:?}");
}

#[test]
fn malformed_and_ambiguous_requests_are_refused() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let host = format!("web.localhost:{pp}");
    let post = |extra: &str, body: &str| {
        format!("POST /echo HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n{body}").into_bytes()
    };
    let get_with = |extra: &str| format!("GET /echo HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n");

    let big = format!("X-Big: {}\r\n", "a".repeat(70 * 1024));
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let long_line = format!(
        "GET /{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
        "a".repeat(9 * 1024)
    );
    let smuggled = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web.localhost\r\n\r\n";
    // (what, bytes, status, whether the connection must close after it)
    let cases: Vec<(&str, Vec<u8>, u16, bool)> = vec![
        ("a head over 64 KiB", get_with(&big).into_bytes(), 431, true),
        ("101 header fields", get_with(&many).into_bytes(), 431, true),
        (
            "a request line over 8 KiB",
            long_line.into_bytes(),
            414,
            true,
        ),
        (
            "Content-Length and Transfer-Encoding",
            post(
                "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                smuggled,
            ),
            400,
            true,
        ),
        (
            "Transfer-Encoding and Content-Length",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                smuggled,
            ),
            400,
            true,
        ),
        (
            "two equal Content-Lengths",
            post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
            400,
            true,
        ),
        (
            "two different Content-Lengths",
            post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
            400,
            true,
        ),
        (
            "a Content-Length list",
            post("Content-Length: 5, 5\r\n", "hello"),
            400,
            true,
        ),
        (
            "a Content-Length that is not a number",
            post("Content-Length: abc\r\n", "hello"),
            400,
            true,
        ),
        (
            "a negative Content-Length",
            post("Content-Length: -1\r\n", "hello"),
            400,
            true,
        ),
        (
            "a signed Content-Length",
            post("Content-Length: +5\r\n", "hello"),
            400,
            true,
        ),
        (
            "a Content-Length past u64",
            post("Content-Length: 99999999999999999999999\r\n", "hello"),
            400,
            true,
        ),
        (
            "a chunk size that is not hex",
            post("Transfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n"),
            400,
            true,
        ),
        (
            "a chunk size past u64",
            post(
                "Transfer-Encoding: chunked\r\n",
                "1ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            ),
            400,
            true,
        ),
        (
            "an obs-fold continuation line",
            get_with("X-A: 1\r\n folded\r\n").into_bytes(),
            400,
            true,
        ),
        (
            "a bare CR in a header value",
            get_with("X-A: a\rb\r\n").into_bytes(),
            400,
            true,
        ),
        (
            "a bare CR ending a line",
            format!("GET /echo HTTP/1.1\rHost: {host}\r\n\r\n").into_bytes(),
            400,
            true,
        ),
        (
            "a space before the colon",
            format!("GET /echo HTTP/1.1\r\nHost : {host}\r\n\r\n").into_bytes(),
            400,
            true,
        ),
        (
            "CONNECT",
            format!("CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
            405,
            false,
        ),
        (
            "an absolute-form target for a route",
            format!("GET http://{host}/echo HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
            400,
            false,
        ),
    ];
    for (what, bytes, status, closes) in cases {
        let mut c = Conn::open(pp);
        // The proxy may answer and close before it has read everything.
        let _ = c.send_lossy(&bytes);
        let r = c
            .try_response(false, SHORT)
            .unwrap_or_else(|f| panic!("{what}: no response: {f}"));
        assert_eq!(r.status, status, "{what}:\n{r}");
        if closes {
            match c.rest_until_close(SHORT) {
                Ok(rest) => assert!(
                    rest.is_empty(),
                    "{what}: more came after the {status}: {:?}",
                    preview(&rest)
                ),
                Err(f) => panic!("{what}: the connection stayed open after the {status}: {f}"),
            }
        }
    }

    // Not an open proxy: an absolute-form target is never dialled.
    let target = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
    target.set_nonblocking(true).expect("non-blocking");
    let tp = target.local_addr().expect("local address").port();
    let mut c = Conn::open(pp);
    c.send(
        format!("GET http://127.0.0.1:{tp}/ HTTP/1.1\r\nHost: 127.0.0.1:{tp}\r\n\r\n").as_bytes(),
    );
    let r = c.response(SHORT);
    assert_eq!(r.status, 400, "absolute-form to 127.0.0.1:{tp}:\n{r}");
    match target.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the proxy dialled an absolute-form target: {other:?}"),
    }

    // Near the limits is fine: a 60 KB head and 90 header fields.
    let near: [(&str, String); 2] = [
        ("a 60 KB head", format!("X-Big: {}\r\n", "a".repeat(60_000))),
        (
            "90 header fields",
            (0..89).map(|i| format!("X-H{i}: v\r\n")).collect(),
        ),
    ];
    for (what, extra) in near {
        let mut c = Conn::open(pp);
        c.send(get_with(&extra).as_bytes());
        let r = c.response(SHORT);
        assert_eq!(r.status, 200, "{what}:\n{r}");
        assert_eq!(r.json()["name"], "web", "{what}");
    }
}

#[test]
fn one_connection_carries_requests_for_two_processes_and_reuses_the_backend() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    serve(&sb, "api");
    let mut c = Conn::open(pp);
    let mut peers = Vec::new();
    for want in ["web", "api", "web", "web", "web"] {
        c.send(&request(
            "GET",
            "/echo",
            &format!("{want}.localhost:{pp}"),
            &[],
        ));
        let r = c.response(SHORT);
        assert_eq!(r.status, 200, "{r}");
        let echo = r.json();
        assert_eq!(echo["name"], want, "{r}");
        peers.push(echo["peer_port"].as_u64().unwrap_or(0));
        assert!(
            !r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close")),
            "the proxy closes a keep-alive connection:\n{r}"
        );
    }
    assert!(
        peers[3] == peers[4],
        "two requests in a row to web used two backend connections (ports {peers:?})"
    );
}

#[test]
fn bodies_pass_intact_in_both_framings_and_both_directions() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let host = format!("web.localhost:{pp}");
    let pattern = |n: usize| -> Vec<u8> { (0..n).map(|i| b'a' + (i % 26) as u8).collect() };
    let ends = |body: &[u8]| {
        (
            String::from_utf8_lossy(&body[..64.min(body.len())]).into_owned(),
            String::from_utf8_lossy(&body[body.len().saturating_sub(64)..]).into_owned(),
        )
    };
    let mut c = Conn::open(pp);

    let big = pattern(300_000);
    c.send(&request(
        "POST",
        "/echo",
        &host,
        &[&format!("Content-Length: {}", big.len())],
    ));
    c.send(&big);
    let echo = c.response(SHORT).json();
    let (head, tail) = ends(&big);
    assert_eq!(echo["body_len"], big.len());
    assert_eq!(echo["body_head"], head);
    assert_eq!(echo["body_tail"], tail);

    let sizes = [10usize, 70_000, 3];
    let body = pattern(sizes.iter().sum());
    c.send(&request(
        "POST",
        "/echo",
        &host,
        &["Transfer-Encoding: chunked"],
    ));
    let mut at = 0;
    for n in sizes {
        c.send(format!("{n:x}\r\n").as_bytes());
        c.send(&body[at..at + n]);
        c.send(b"\r\n");
        at += n;
    }
    c.send(b"0\r\n\r\n");
    let echo = c.response(SHORT).json();
    let (head, tail) = ends(&body);
    assert_eq!(echo["body_len"], body.len());
    assert_eq!(echo["body_head"], head);
    assert_eq!(echo["body_tail"], tail);

    c.send(&request("GET", "/chunked?sizes=1,100,70000,3", &host, &[]));
    let r = c.response(SHORT);
    assert_eq!(r.status, 200, "{}", r.head);
    let mut want = Vec::new();
    for (i, n) in [1usize, 100, 70_000, 3].into_iter().enumerate() {
        want.extend(std::iter::repeat_n(b'a' + i as u8, n));
    }
    assert!(
        r.body == want,
        "the chunked response arrived changed ({} bytes)",
        r.body.len()
    );

    c.send(&request("GET", "/echo", &host, &[]));
    assert_eq!(c.response(SHORT).json()["name"], "web");

    // A body that ends where the backend closes: the client gets all of it,
    // re-framed or ended by a close of its own.
    c.send(&request("GET", "/close", &host, &[]));
    let r = c.response(SHORT);
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.body.len() == 100_000 && r.body.iter().all(|&b| b == b'z'),
        "a close-delimited body arrived changed ({} bytes)",
        r.body.len()
    );
}

#[test]
fn a_client_that_half_closes_after_its_request_gets_the_answer_then_the_close() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let mut c = Conn::open(pp);
    c.send_and_finish(&request(
        "GET",
        "/echo",
        &format!("web.localhost:{pp}"),
        &[],
    ));
    let r = c.response(SHORT);
    assert_eq!(r.status, 200, "{r}");
    assert!(
        c.closes_within(SHORT),
        "the proxy kept the connection open after the client half-closed and was answered"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order_each_by_its_own_host() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    serve(&sb, "api");
    let web = format!("web.localhost:{pp}");
    let api = format!("api.localhost:{pp}");
    // One write: a POST with its body, then two GETs for two processes.
    let mut bytes = request("POST", "/echo", &web, &["Content-Length: 5"]);
    bytes.extend(b"hello");
    bytes.extend(request("GET", "/echo", &api, &[]));
    bytes.extend(request("GET", "/echo", &web, &[]));
    let mut c = Conn::open(pp);
    c.send(&bytes);
    for (name, method) in [("web", "POST"), ("api", "GET"), ("web", "GET")] {
        let r = c.response(SHORT);
        assert_eq!(r.status, 200, "{r}");
        let echo = r.json();
        assert_eq!(
            (echo["name"].as_str(), echo["method"].as_str()),
            (Some(name), Some(method)),
            "pipelined requests answered out of order or by the wrong process:\n{r}"
        );
        let body = if method == "POST" { "hello" } else { "" };
        assert_eq!(echo["body_head"], body, "{r}");
    }
}

#[test]
fn hop_by_hop_headers_are_removed_and_forwarding_headers_added() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let host = format!("web.localhost:{pp}");
    let mut c = Conn::open(pp);
    c.send(&request(
        "GET",
        "/echo",
        &host,
        &[
            "Connection: keep-alive, X-Secret",
            "X-Secret: 1",
            "Keep-Alive: timeout=5",
            "TE: trailers",
            "Trailer: X-T",
            "Proxy-Connection: keep-alive",
            "X-Forwarded-For: 1.2.3.4",
            "X-Custom: kept",
        ],
    ));
    let r = c.response(SHORT);
    assert_eq!(r.status, 200, "{r}");
    let echo = r.json();
    for gone in [
        "x-secret",
        "keep-alive",
        "te",
        "trailer",
        "proxy-connection",
    ] {
        assert!(
            received(&echo, gone).is_empty(),
            "{gone} reached the backend: {echo}"
        );
    }
    for v in received(&echo, "connection") {
        assert!(
            v.eq_ignore_ascii_case("keep-alive") || v.eq_ignore_ascii_case("close"),
            "Connection: {v} reached the backend: {echo}"
        );
    }
    assert_eq!(received(&echo, "x-custom"), ["kept"], "{echo}");
    assert_eq!(
        received(&echo, "x-forwarded-for"),
        ["1.2.3.4, 127.0.0.1"],
        "{echo}"
    );
    assert_eq!(
        received(&echo, "x-forwarded-host"),
        [host.as_str()],
        "{echo}"
    );
    assert_eq!(received(&echo, "x-forwarded-proto"), ["http"], "{echo}");
    assert_eq!(received(&echo, "host"), [host.as_str()], "{echo}");

    c.send(&request("GET", "/echo", &host, &[]));
    let echo = c.response(SHORT).json();
    assert_eq!(received(&echo, "x-forwarded-for"), ["127.0.0.1"], "{echo}");

    // And on the way back.
    c.send(&request("GET", "/hop", &host, &[]));
    let r = c.response(SHORT);
    assert_eq!(r.status, 200, "{r}");
    for gone in ["x-internal", "keep-alive", "proxy-connection"] {
        assert!(r.header(gone).is_none(), "{gone} reached the client:\n{r}");
    }
    for v in r.all("connection") {
        assert!(
            v.eq_ignore_ascii_case("keep-alive") || v.eq_ignore_ascii_case("close"),
            "Connection: {v} reached the client:\n{r}"
        );
    }
    assert_eq!(r.header("x-visible"), Some("yes"), "{r}");
    assert_eq!(r.text(), "hop");
}

#[test]
fn head_204_and_304_responses_end_at_their_head() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let host = format!("web.localhost:{pp}");
    let mut c = Conn::open(pp);

    c.send(&request("HEAD", "/echo", &host, &[]));
    let r = c.head_response(SHORT);
    assert_eq!(r.status, 200, "{r}");
    assert!(
        r.header("content-length").is_some_and(|n| n != "0"),
        "HEAD lost its Content-Length:\n{r}"
    );
    for status in [204, 304] {
        c.send(&request("GET", &format!("/status/{status}"), &host, &[]));
        let r = c.response(SHORT);
        assert_eq!(r.status, status, "{r}");
    }
    // Anything after those heads would spoil this response.
    c.send(&request("GET", "/echo", &host, &[]));
    let r = c.response(SHORT);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["method"], "GET");
    assert!(
        c.pending().is_empty(),
        "extra bytes: {:?}",
        preview(c.pending())
    );
}

#[test]
fn expect_100_continue_gets_the_interim_response_before_the_body() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let mut c = Conn::open(pp);
    c.send(&request(
        "POST",
        "/echo",
        &format!("web.localhost:{pp}"),
        &["Content-Length: 11", "Expect: 100-continue"],
    ));
    let r = c.response(SHORT);
    assert_eq!(r.status, 100, "no 100 Continue before the body:\n{r}");
    c.send(b"hello world");
    let r = c.response(SHORT);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["body_head"], "hello world");
}

#[test]
fn server_sent_events_arrive_as_they_are_sent() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let mut c = Conn::open(pp);
    c.send(&request("GET", "/sse", &format!("web.localhost:{pp}"), &[]));
    // The backend sends the second event only once `sse-go` exists.
    let first = c
        .read_until(b"data: one\n\n", SHORT)
        .unwrap_or_else(|f| panic!("the first event did not arrive by itself: {f}"));
    let head = String::from_utf8_lossy(&first).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("text/event-stream"),
        "{head}"
    );
    assert!(find(c.pending(), b"two").is_none());
    write(&sb.root.join("sse-go"), "");
    c.read_until(b"data: two\n\n", SHORT)
        .unwrap_or_else(|f| panic!("the second event did not arrive: {f}"));
}

#[test]
fn a_websocket_upgrade_becomes_a_two_way_tunnel() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let host = format!("web.localhost:{pp}");
    let upgrade = [
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];
    let mut c = Conn::open(pp);
    // A backend that answers an upgrade with a plain 200 keeps plain HTTP going.
    c.send(&request("GET", "/echo", &host, &upgrade));
    let r = c.response(SHORT);
    assert_eq!(r.status, 200, "{r}");
    let echo = r.json();
    assert_eq!(received(&echo, "upgrade"), ["websocket"], "{echo}");
    c.send(&request("GET", "/echo", &host, &[]));
    let r = c.response(SHORT);
    assert_eq!(r.status, 200, "after a refused upgrade:\n{r}");
    assert!(received(&r.json(), "upgrade").is_empty(), "{r}");

    c.send(&request("GET", "/ws", &host, &upgrade));
    let r = c.response(SHORT);
    assert_eq!(r.status, 101, "{r}");
    assert!(
        r.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{r}"
    );
    // RFC 6455's own example key and answer.
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{r}"
    );

    c.send(&ws_frame(1, b"hello proxy"));
    assert_eq!(ws_read(&mut c), (1, b"hello proxy".to_vec()));
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    c.send(&ws_frame(2, &big));
    let (op, echoed) = ws_read(&mut c);
    assert_eq!(op, 2);
    assert!(echoed == big, "a 100 KB binary frame came back changed");
}

/// A WebSocket handshake with the backend NAME through the proxy.
fn ws_open(pp: u16, name: &str) -> Conn {
    let mut c = Conn::open(pp);
    c.send(&request(
        "GET",
        "/ws",
        &format!("{name}.localhost:{pp}"),
        &[
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ],
    ));
    let r = c.response(SHORT);
    assert_eq!(r.status, 101, "{r}");
    c
}

#[test]
fn a_tunnel_ends_when_the_backend_closes() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let mut c = ws_open(pp, "web");
    // The backend answers a close frame with its own and closes, both at once.
    c.send(&ws_frame(8, &1000u16.to_be_bytes()));
    assert_eq!(ws_read(&mut c), (8, 1000u16.to_be_bytes().to_vec()));
    assert!(
        c.closes_within(SHORT),
        "the tunnel stayed open after the backend closed"
    );
}

#[test]
fn a_tunnel_passes_on_the_clients_half_close() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let mut c = ws_open(pp, "web");
    // A last frame and the half-close at once; the backend echoes the frame,
    // reads the end of file, and closes.
    c.send_and_finish(&ws_frame(1, b"bye"));
    assert_eq!(ws_read(&mut c), (1, b"bye".to_vec()));
    assert!(
        c.closes_within(SHORT),
        "the tunnel stayed open after the client half-closed"
    );
}

/// The proxy's header-read timeout (10 s; here 4 s, through the test knob, so
/// the test does not wait 10 s out).
#[test]
fn a_stalled_or_trickled_head_times_out_while_others_are_served() {
    let sb = sandbox();
    let timeout = Duration::from_secs(4);
    let pp = serve_with_head_timeout(&sb, "web", timeout.as_millis() as u64);
    let host = format!("web.localhost:{pp}");
    let started = Instant::now();
    let mut stalled = Conn::open(pp);
    stalled.send(b"GET /echo HTTP/1.1\r\nHost: web.loc");
    // Another sends one byte every quarter second, never finishing its head.
    let mut trickled = Conn::open(pp);
    trickled.send(b"GET /echo HTTP/1.1\r\nX-Slow: ");
    let mut writer = trickled.stream.try_clone().expect("cloning a socket");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_writer = stop.clone();
    let trickler = std::thread::spawn(move || {
        use std::io::Write;
        let until = Instant::now() + Duration::from_secs(25);
        while !stop_writer.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < until {
            if writer.write_all(b"a").is_err() {
                return;
            }
            // Pacing a slow client; nothing to wait for.
            std::thread::sleep(Duration::from_millis(250));
        }
    });

    for _ in 0..5 {
        let t = Instant::now();
        let r = get(pp, &host, "/echo");
        assert_eq!(r.status, 200, "{r}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "a request took {:?} while a client stalled",
            t.elapsed()
        );
    }

    let limit = Duration::from_secs(20);
    for (what, conn) in [("stalled", &mut stalled), ("trickled", &mut trickled)] {
        match conn.try_response(false, limit.saturating_sub(started.elapsed())) {
            Ok(r) => assert_eq!(r.status, 408, "{what}:\n{r}"),
            Err(Failure::Closed(_)) => {}
            Err(f) => panic!("the {what} client was neither answered nor closed: {f}"),
        }
        let took = started.elapsed();
        assert!(
            took >= timeout * 9 / 10,
            "the {what} client was cut off after {took:?}, before {timeout:?}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    trickler.join().expect("the trickling thread");
}

#[test]
fn a_thousand_concurrent_connections_are_all_answered() {
    raise_fd_limit(1200);
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let req = request("GET", "/echo", &format!("web.localhost:{pp}"), &[]);
    let mut conns: Vec<Conn> = (0..1000).map(|_| Conn::open(pp)).collect();
    for c in &mut conns {
        c.send(&req);
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    for (i, c) in conns.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = c
            .try_response(false, left)
            .unwrap_or_else(|f| panic!("connection {i} of 1000: {f}"));
        assert_eq!(r.status, 200, "connection {i} of 1000:\n{r}");
    }
}

#[test]
fn running_out_of_descriptors_neither_spins_nor_sticks() {
    raise_fd_limit(400);
    let sb = sandbox();
    // The first call starts the daemon, which inherits the low limits (hard too,
    // since the daemon raises its soft limit to the hard one).
    let pp = serve_with_nofile(&sb, "web", 64);
    let daemon = sb.daemon_pid().expect("the daemon's pid");
    let limit = fd_limit(daemon);
    assert!(
        limit.is_some_and(|n| n <= 64),
        "the daemon's descriptor limit is {limit:?}, not 64: the test did not lower it"
    );
    let host = format!("web.localhost:{pp}");
    assert_eq!(get(pp, &host, "/echo").status, 200);

    // More clients than descriptors: the excess may wait in the accept queue or,
    // once that is full, not get connected at all; both are fine.
    let mut conns = Vec::new();
    while conns.len() < 300 {
        match Conn::try_open(pp, Duration::from_millis(500)) {
            Ok(mut c) => {
                let _ = c.send_lossy(&request("GET", "/echo", &host, &[]));
                conns.push(c);
            }
            Err(_) => break,
        }
    }
    assert!(
        conns.len() > 64,
        "only {} connections opened; the test needs more than the daemon's 64 descriptors",
        conns.len()
    );
    // The proxy keeps to its share of the descriptors (half of a limit this
    // low), so the daemon never runs out: the rest wait in the backlog.
    eventually(
        Duration::from_secs(10),
        "the clients to reach the daemon (36 descriptors)",
        || {
            let held = fd_count(daemon);
            done_or(held >= 36, format!("the daemon holds {held}"))
        },
    );
    let held = fd_count(daemon);
    assert!(held < 64, "the daemon holds {held} descriptors of 64");
    let before = cpu_time(daemon);
    // A measuring window: nothing to await, the CPU it spends in 2 s is the point.
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_time(daemon) - before;
    assert!(
        spent < Duration::from_millis(500),
        "the daemon used {spent:?} of CPU in 2 s while out of descriptors"
    );
    assert!(alive(daemon), "the daemon died out of descriptors");
    drop(conns);

    // Once the clients are gone, the proxy serves again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // A fresh SYN each try: a full accept queue drops SYNs, and the
        // kernel's own retransmission would wait seconds.
        let Ok(mut c) = Conn::try_open(pp, Duration::from_millis(300)) else {
            assert!(
                Instant::now() < deadline,
                "no connection after the clients closed"
            );
            continue;
        };
        c.send(&request("GET", "/echo", &host, &[]));
        match c.try_response(false, Duration::from_secs(3)) {
            Ok(r) if r.status == 200 => break,
            other if Instant::now() > deadline => {
                panic!("no recovery after the clients closed: {other:?}")
            }
            _ => {}
        }
    }
    assert_eq!(sb.proc_status("web")["state"], "running");
    // Noted once (at most once a minute), not once per refused accept.
    let log = std::fs::read_to_string(sb.daemon_log()).unwrap_or_default();
    assert_eq!(
        log.matches("descriptors the proxy may use").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("proxy: out of descriptors").count(), 0, "{log}");
}

/// The TCP sockets `pid` listens on: (address as /proc/net/tcp prints it, port).
fn listeners(pid: i32) -> Vec<(String, u16)> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("reading the daemon's descriptors")
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.to_string_lossy().into_owned();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
            {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() > 9
                && f[3] == "0A"
                && inodes.contains(f[9])
                && let Some((addr, port)) = f[1].split_once(':')
            {
                found.push((addr.to_string(), u16::from_str_radix(port, 16).unwrap_or(0)));
            }
        }
    }
    found
}

#[test]
fn without_proxy_the_daemon_listens_on_nothing_and_with_it_on_loopback_only() {
    let sb = sandbox();
    let port = free_port().to_string();
    sb.ok(&[
        "run",
        "python3 backend.py web",
        "--name",
        "web",
        "--port",
        &port,
    ]);
    sb.ok(&["wait", "web", "--until", "serving", "--timeout", "20"]);
    let daemon = sb.daemon_pid().expect("the daemon's pid");
    assert_eq!(listeners(daemon), [], "the daemon listens without --proxy");
    assert_eq!(
        sb.proc_status("web")["port"],
        port.parse::<u64>().unwrap_or(0)
    );

    let (_, pp) = run_proxied(&sb, "other", "sleep 60", Some(free_port()));
    // 127.0.0.1, and ::1 where IPv6 is up (NAME.localhost resolves to both).
    let mut want = vec![("0100007F".to_string(), pp)];
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        want.push(("00000000000000000000000001000000".to_string(), pp));
    }
    assert_eq!(
        listeners(daemon),
        want,
        "the proxy should listen on the loopback addresses of port {pp} alone"
    );
}

#[test]
fn ports_come_from_4000_to_4999_reach_the_environment_and_survive_a_restart() {
    let sb = sandbox();
    // A port of the range that someone else holds is never handed out.
    let taken = (4000..=4999)
        .find_map(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
        .expect("no free port in 4000-4999");
    let taken_port = u64::from(taken.local_addr().expect("local address").port());
    let args = ["run", "python3 backend.py web", "--name", "web", "--proxy"];
    let out = sb.run(&args);
    assert_eq!(out.code, 0, "{}", sb.report(&args, &out, "expected exit 0"));
    let pp = proxy_port_in(&out.stderr).unwrap_or_else(|| panic!("stderr: {:?}", out.stderr));
    // 0.6's exact line, alone on its line: scripts grep for it.
    assert!(
        out.stderr
            .lines()
            .any(|l| l == format!("Proxy listening on http://localhost:{pp}")),
        "{:?}",
        out.stderr
    );
    let pid = parse_pid(&out.stdout);
    assert_eq!(
        out.stdout,
        format!("web (id: p1, pid: {pid}, http://web.localhost:{pp})\n")
    );

    let args = ["run", "python3 backend.py api", "--name", "api", "--proxy"];
    let out = sb.run(&args);
    assert_eq!(out.code, 0, "{}", sb.report(&args, &out, "expected exit 0"));
    assert!(
        out.stderr
            .lines()
            .any(|l| l == format!("Proxy already listening on http://localhost:{pp}")),
        "{:?}",
        out.stderr
    );
    let pid = parse_pid(&out.stdout);
    assert_eq!(
        out.stdout,
        format!("api (id: p2, pid: {pid}, http://api.localhost:{pp})\n")
    );

    let explicit = free_port();
    run_proxied(&sb, "fixed", "sleep 60", Some(explicit));

    let web = sb.proc_status("web");
    let api = sb.proc_status("api");
    let fixed = sb.proc_status("fixed");
    let port_of = |p: &serde_json::Value| p["port"].as_u64().unwrap_or(0);
    for p in [&web, &api] {
        assert!((4000..=4999).contains(&port_of(p)), "{p}");
    }
    assert_ne!(port_of(&web), port_of(&api));
    assert!(
        port_of(&web) != taken_port && port_of(&api) != taken_port,
        "port {taken_port} was handed out while another program listened on it"
    );
    assert_eq!(port_of(&fixed), u64::from(explicit), "{fixed}");
    for (p, name) in [(&web, "web"), (&api, "api"), (&fixed, "fixed")] {
        assert_eq!(p["url"], format!("http://{name}.localhost:{pp}"), "{p}");
    }

    for name in ["web", "api"] {
        sb.ok(&["wait", name, "--until", "serving", "--timeout", "20"]);
        let echo = get(pp, &format!("{name}.localhost"), "/echo").json();
        let port = sb.proc_status(name)["port"].as_u64().unwrap_or(0);
        assert_eq!(echo["env"]["PORT"], port.to_string(), "{echo}");
        assert_eq!(echo["env"]["HOST"], "127.0.0.1", "{echo}");
    }

    let pid = web["pid"].clone();
    sb.ok(&["restart", "web"]);
    sb.ok(&["wait", "web", "--until", "serving", "--timeout", "20"]);
    let after = sb.proc_status("web");
    assert_ne!(after["pid"], pid);
    assert_eq!(
        port_of(&after),
        port_of(&web),
        "restart moved the port: {after}"
    );
    let echo = get(pp, "web.localhost", "/echo").json();
    assert_eq!(echo["env"]["PORT"], port_of(&web).to_string(), "{echo}");
}

#[test]
fn a_chosen_port_is_kept_for_the_name_across_daemons_while_it_is_free() {
    let sb = sandbox();
    let port_of = |name: &str| sb.proc_status(name)["port"].as_u64().unwrap_or(0) as u16;
    run_proxied(&sb, "api", "sleep 60", None);
    run_proxied(&sb, "web", "sleep 60", None);
    let (api, web) = (port_of("api"), port_of("web"));
    assert!((4000..=4999).contains(&api) && api != web);
    // A new daemon gives each name its port again, whatever the order of runs.
    sb.ok(&["down"]);
    run_proxied(&sb, "web", "sleep 60", None);
    run_proxied(&sb, "api", "sleep 60", None);
    assert_eq!((port_of("api"), port_of("web")), (api, web));
    // A name that is new never gets a port chosen for another name while a
    // free one remains.
    run_proxied(&sb, "other", "sleep 60", None);
    let other = port_of("other");
    assert!(other != api && other != web, "{other}");

    // Taken by someone else meanwhile: the name gets another port, and keeps that.
    sb.ok(&["down"]);
    let squatter = std::net::TcpListener::bind(("127.0.0.1", api));
    if squatter.is_err() {
        skip_notice(&format!(
            "skipped the squatter half: port {api} was taken by someone else"
        ));
        return;
    }
    run_proxied(&sb, "api", "sleep 60", None);
    let moved = port_of("api");
    assert!(moved != api && moved != web && moved != other, "{moved}");
    drop(squatter);
    sb.ok(&["stop", "api"]);
    sb.ok(&["restart", "api"]);
    assert_eq!(port_of("api"), moved);
}

#[test]
fn the_config_or_up_proxy_turns_the_proxy_on() {
    let proxy_port = free_port();
    let sb = sandbox();
    write(
        &sb.root.join("agent-procs.yaml"),
        &format!(
            "proxy: true
proxy_port: {proxy_port}
processes:
  web:
    cmd: python3 backend.py web
    ready: serving
"
        ),
    );
    let run = sb.run(&["up"]);
    assert_eq!(
        run.code,
        0,
        "{}",
        sb.report(&["up"], &run, "expected exit 0")
    );
    // 0.6's line on stderr, which scripts grep for.
    assert!(
        run.stderr
            .lines()
            .any(|l| l == format!("Proxy listening on http://localhost:{proxy_port}")),
        "{:?}",
        run.stderr
    );
    let out = run.stdout;
    assert!(
        out.contains(&format!("http://web.localhost:{proxy_port}")),
        "up does not show the proxy URL:\n{out}"
    );
    let r = get(proxy_port, "web.localhost", "/echo");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["name"], "web");
    let status = sb.proc_status("web");
    assert_eq!(status["url"], format!("http://web.localhost:{proxy_port}"));
    assert!(
        (4000..=4999).contains(&status["port"].as_u64().unwrap_or(0)),
        "{status}"
    );

    let sb = sandbox();
    write(
        &sb.root.join("agent-procs.yaml"),
        "processes:\n  api:\n    cmd: python3 backend.py api\n    ready: serving\n",
    );
    let out = sb.ok(&["up", "--proxy"]);
    let pp = proxy_port_in(&out).unwrap_or_else(|| panic!("no proxy URL in:\n{out}"));
    assert!(out.contains(&format!("http://api.localhost:{pp}")), "{out}");
    assert_eq!(get(pp, "api.localhost", "/echo").json()["name"], "api");
}

#[test]
fn behind_the_proxy_a_name_must_be_a_dns_label() {
    let sb = Sandbox::new();
    sb.ok(&["run", "sleep 60", "--name", "web", "--proxy"]);
    for bad in ["web.v2", "Web", "my_api"] {
        let err = sb.fails(&["run", "sleep 60", "--name", bad], 1);
        assert!(err.contains("must be a DNS label"), "{bad}: {err}");
    }
    sb.ok(&["run", "sleep 60", "--name", "api-2"]);
}

/// `big.py PORT`: answers one request with a 128 MiB body, recording in `sent`
/// how many bytes the proxy has taken so far.
const BIG: &str = r#"
import socket, sys
TOTAL = 128 << 20
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(8)
print("serving", flush=True)
while True:
    c, _ = srv.accept()
    head = b""
    while b"\r\n\r\n" not in head:
        more = c.recv(65536)
        if not more:
            break
        head += more
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % TOTAL)
    chunk, sent = b"x" * (1 << 20), 0
    while sent < TOTAL:
        c.sendall(chunk)
        sent += len(chunk)
        with open("sent.tmp", "w") as f:
            f.write(str(sent))
        __import__("os").replace("sent.tmp", "sent")
    c.close()
"#;

#[test]
fn a_client_that_does_not_read_slows_its_backend_instead_of_filling_the_daemon() {
    let sb = sandbox();
    write(&sb.root.join("big.py"), BIG);
    let port = free_port();
    let (_, pp) = run_proxied(&sb, "big", &format!("python3 big.py {port}"), Some(port));
    sb.ok(&["wait", "big", "--until", "serving", "--timeout", "20"]);
    let daemon = sb.daemon_pid().expect("the daemon's pid");
    let before = rss_kib(daemon);

    let mut client = std::net::TcpStream::connect(("127.0.0.1", pp)).expect("connecting");
    std::io::Write::write_all(
        &mut client,
        b"GET / HTTP/1.1\r\nHost: big.localhost\r\n\r\n",
    )
    .expect("sending the request");
    // Not reading: what the backend manages to send is bounded by socket buffers
    // and the proxy's own per-direction buffer, not by the daemon's memory.
    let sent = || -> u64 {
        std::fs::read_to_string(sb.root.join("sent"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut last = 0;
    let steady = std::time::Instant::now() + Duration::from_secs(20);
    // Wait until the backend is stuck (no progress for 1 s), boundedly.
    loop {
        // Nothing to await: a stall is the absence of progress over a second.
        std::thread::sleep(Duration::from_secs(1));
        let now = sent();
        if now == last && now > 0 {
            break;
        }
        last = now;
        assert!(
            std::time::Instant::now() < steady,
            "the backend never stalled: {now} bytes sent"
        );
    }
    let grown = rss_kib(daemon).saturating_sub(before);
    eprintln!(
        "a client reading nothing: the backend sent {last} bytes, the daemon grew {grown} KiB"
    );
    assert!(
        last < 64 << 20,
        "the backend sent {last} bytes to a client that reads nothing"
    );
    assert!(grown < 8 * 1024, "the daemon grew by {grown} KiB");

    // Reading now gets the whole body, intact in length.
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let mut head_len = None;
    let mut head = Vec::new();
    while total < (128 << 20) {
        let n = std::io::Read::read(&mut client, &mut buf).expect("reading the body");
        assert!(n > 0, "the proxy closed after {total} body bytes");
        match head_len {
            Some(_) => total += n,
            None => {
                head.extend_from_slice(&buf[..n]);
                if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    head_len = Some(at + 4);
                    total = head.len() - (at + 4);
                }
            }
        }
    }
    assert_eq!(total, 128 << 20);
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200 OK\r\n"));
}

/// Byte i of the backend's `/bytes` bodies.
fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8
}

#[test]
fn big_bodies_reach_a_slow_reader_exactly_and_the_connection_goes_on() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let host = format!("web.localhost:{pp}");
    let mut c = Conn::open(pp);
    // Bodies well past the pipe, past the socket buffers, and just past the
    // size that is spliced; a small one and an echo after them, all pipelined.
    let sizes = [3_000_000usize, 16 * 1024 + 1, 70_000, 100];
    for n in sizes {
        c.send(&request("GET", &format!("/bytes?n={n}"), &host, &[]));
    }
    c.send(&request("GET", "/echo", &host, &[]));
    // Nothing to await: a reader that is late; what the client cannot take yet waits in the proxy.
    std::thread::sleep(Duration::from_millis(300));
    for n in sizes {
        let r = c.response(Duration::from_secs(20));
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(r.header("content-length"), Some(n.to_string().as_str()));
        assert_eq!(r.body.len(), n, "a body of {n} bytes arrived cut or padded");
        if let Some(i) = (0..n).find(|&i| r.body[i] != pattern_byte(i)) {
            panic!("a body of {n} bytes differs from byte {i} on");
        }
    }
    assert_eq!(c.response(SHORT).json()["name"], "web");
}

#[test]
fn a_burst_of_closing_clients_finds_the_backend_connections_of_the_last_one() {
    // As many clients at once as a benchmark's (and more than a pool of 32):
    // each sends one request and closes, and the next burst must not connect
    // to the backend again (a connect and a close per request otherwise).
    const CLIENTS: usize = 48;
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let host = format!("web.localhost:{pp}");
    let burst = || -> HashSet<u64> {
        let mut conns: Vec<Conn> = (0..CLIENTS).map(|_| Conn::open(pp)).collect();
        for c in &mut conns {
            c.send(&request(
                "GET",
                "/pause?ms=400",
                &host,
                &["Connection: close"],
            ));
        }
        let mut ports = HashSet::new();
        for c in &mut conns {
            let r = c.response(Duration::from_secs(20));
            assert_eq!(r.status, 200, "{r}");
            ports.insert(r.json()["peer_port"].as_u64().unwrap_or(0));
            assert!(c.closes_within(SHORT), "the proxy kept a closing client");
        }
        ports
    };
    let first = burst();
    let second = burst();
    let fresh: Vec<_> = second.difference(&first).collect();
    assert!(
        fresh.is_empty(),
        "{} of {} backend connections of the second burst were new ({} in the first)",
        fresh.len(),
        second.len(),
        first.len()
    );
}

/// Continues a stopped daemon however the test ends.
struct Stopped(i32);

impl Drop for Stopped {
    fn drop(&mut self) {
        kill(self.0, libc::SIGCONT);
    }
}

/// A read that returns less than asked does not prove the socket empty: TCP
/// ends a read at an urgent mark with bytes behind it, and no new readiness
/// event comes for those. The proxy reads on until a read would block (it
/// used to take the short read for empty and wait 10 s for a 408).
#[test]
fn a_request_behind_an_urgent_mark_is_read_without_another_event() {
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");
    let host = format!("web.localhost:{pp}");
    let pid = sb.daemon_pid().expect("the daemon's pid");
    let mut c = Conn::open(pp);
    // Both parts arrive while the daemon is stopped: one event for them all.
    kill(pid, libc::SIGSTOP);
    let stopped = Stopped(pid);
    let first = b"GET /echo HTTP/1.1\r\n!"; // the '!' is urgent: out of band
    // SAFETY: send reads `first.len()` bytes from a live buffer.
    let sent = unsafe {
        libc::send(
            std::os::fd::AsRawFd::as_raw_fd(&c.stream),
            first.as_ptr().cast(),
            first.len(),
            libc::MSG_OOB,
        )
    };
    assert_eq!(sent, first.len() as isize, "sending with MSG_OOB");
    c.send(format!("Host: {host}\r\n\r\n").as_bytes());
    drop(stopped);
    let r = c.response(Duration::from_secs(8));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["path"], "/echo", "{r}");
}
