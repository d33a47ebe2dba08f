//! The connection machine without sockets: scripted client and backend
//! (`socket::fake`), fed bytes cut at every position, checked by what each
//! side received and what the machine asked of the loop.

use super::*;
use crate::proxy::Lookup;
use crate::proxy::socket::fake::{self, Fake};
use std::net::Ipv4Addr;

const WEB: u16 = 4000;

/// `web` is up on 4000, `slow` is starting on 4001, `gone` exited.
struct Procs;

impl Backends for Procs {
    fn lookup(&self, name: &str) -> Lookup {
        match name {
            "web" => Lookup::Up(WEB),
            "slow" => Lookup::Starting(4001),
            "gone" => Lookup::Down("gone is not running: it exited (status 1)".into()),
            _ => Lookup::Unknown,
        }
    }
    fn routes(&self) -> Vec<(String, Option<u16>, String)> {
        vec![("web".into(), Some(WEB), "running".into())]
    }
}

/// One connection under test, and what surrounds it in the proxy.
struct Rig {
    conn: Conn<Fake>,
    client: Fake,
    pool: Pool<Fake>,
    pipe: Option<crate::sys::SplicePipe>,
    scratch: Vec<u8>,
    steps: Vec<Step>,
}

impl Rig {
    fn new() -> Rig {
        Rig::with(Limits::default())
    }

    fn with(limits: Limits) -> Rig {
        fake::reset();
        let client = Fake::default();
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut conn = Conn::new(ConnId(1), client.clone(), peer, limits);
        let mut steps = Vec::new();
        conn.sync(&mut steps);
        Rig {
            conn,
            client,
            pool: Pool::default(),
            pipe: None,
            scratch: vec![0; 64 * 1024],
            steps,
        }
    }

    /// Run as the proxy does: until no work is left, then sync the interests.
    fn run(&mut self) {
        let mut env = Env {
            backends: &Procs,
            pool: &mut self.pool,
            proxy_port: 9090,
            pipe: &mut self.pipe,
        };
        while self.conn.run(&mut env, &mut self.scratch) {}
        if !self.conn.finished() {
            self.conn.sync(&mut self.steps);
        }
    }

    fn client_sends(&mut self, bytes: &[u8]) {
        self.client.feed(bytes);
        self.conn.ready(Side::Client, false);
        self.run();
    }

    fn backend_sends(&mut self, backend: &Fake, bytes: &[u8]) {
        backend.feed(bytes);
        self.conn.ready(Side::Backend, false);
        self.run();
    }

    /// Wait out the connection's deadline (bounded), then let it act.
    fn pass_deadline(&mut self) {
        let due = self.conn.deadline().expect("a deadline");
        let wait = due.saturating_duration_since(Instant::now());
        assert!(wait <= Duration::from_secs(1), "a deadline {wait:?} away");
        std::thread::sleep(wait);
        self.conn.deadline_passed();
        self.run();
    }
}

const GET: &str = "GET /a HTTP/1.1\r\nHost: web.localhost:9090\r\n\r\n";
const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

/// What the backend receives for `request` and the client for `response`,
/// each fed in the pieces `cuts` make.
fn relay_cut(request: &[u8], req_cut: usize, response: &[u8], resp_cut: usize) -> (String, String) {
    let mut rig = Rig::new();
    let backend = Fake::default();
    fake::expect_dial(&backend);
    rig.client_sends(&request[..req_cut]);
    rig.client_sends(&request[req_cut..]);
    let got = backend.take_sent();
    rig.backend_sends(&backend, &response[..resp_cut]);
    rig.backend_sends(&backend, &response[resp_cut..]);
    (got, rig.client.take_sent())
}

fn assert_cut_everywhere(request: &str, response: &str) -> (String, String) {
    let (req, resp) = (request.as_bytes(), response.as_bytes());
    let whole = relay_cut(req, req.len(), resp, resp.len());
    assert!(!whole.0.is_empty(), "nothing reached the backend");
    assert!(!whole.1.is_empty(), "nothing reached the client");
    for cut in 0..=req.len() {
        assert_eq!(
            relay_cut(req, cut, resp, resp.len()),
            whole,
            "request cut at {cut}"
        );
    }
    for cut in 0..=resp.len() {
        assert_eq!(
            relay_cut(req, req.len(), resp, cut),
            whole,
            "response cut at {cut}"
        );
    }
    whole
}

#[test]
fn heads_cut_at_every_byte_relay_the_same_exchange() {
    let (to_backend, to_client) = assert_cut_everywhere(GET, OK);
    assert!(
        to_backend.starts_with("GET /a HTTP/1.1\r\n"),
        "{to_backend}"
    );
    assert!(
        to_backend.contains("X-Forwarded-Host: web.localhost:9090"),
        "{to_backend}"
    );
    assert!(to_backend.ends_with("\r\n\r\n"), "{to_backend}");
    assert!(to_client.starts_with("HTTP/1.1 200 OK\r\n"), "{to_client}");
    assert!(to_client.ends_with("\r\n\r\nhello"), "{to_client}");
}

#[test]
fn chunked_bodies_cut_at_every_byte_pass_unchanged() {
    let body = "5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: v\r\n\r\n";
    let request = format!(
        "POST /p HTTP/1.1\r\nHost: web.localhost:9090\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
    );
    let response = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
    let (to_backend, to_client) = assert_cut_everywhere(&request, &response);
    assert!(
        to_backend.ends_with(&format!("\r\n\r\n{body}")),
        "{to_backend}"
    );
    assert!(
        to_client.ends_with(&format!("\r\n\r\n{body}")),
        "{to_client}"
    );
}

#[test]
fn a_socket_that_hands_out_one_byte_per_read_is_read_until_it_would_block() {
    // A short read does not prove a socket empty (edge-triggered readiness
    // comes once): one event must bring the whole request and response.
    let mut rig = Rig::new();
    rig.client.0.borrow_mut().chunk = Some(1);
    let backend = Fake::default();
    backend.0.borrow_mut().chunk = Some(1);
    fake::expect_dial(&backend);
    rig.client_sends(GET.as_bytes());
    assert!(
        backend.sent().ends_with("\r\n\r\n"),
        "one event, part of a head: {:?}",
        backend.sent()
    );
    rig.backend_sends(&backend, OK.as_bytes());
    assert!(
        rig.client.sent().ends_with("hello"),
        "{:?}",
        rig.client.sent()
    );
}

#[test]
fn keep_alive_reuses_the_backend_and_close_ends_the_connection() {
    let mut rig = Rig::new();
    let backend = Fake::default();
    fake::expect_dial(&backend);
    for _ in 0..3 {
        rig.client_sends(GET.as_bytes());
        assert!(backend.take_sent().starts_with("GET /a "));
        rig.backend_sends(&backend, OK.as_bytes());
        assert!(rig.client.take_sent().ends_with("hello"));
        assert!(!rig.conn.finished());
    }
    assert_eq!(fake::dialled(), vec![WEB], "one connect for three requests");
    let last = "GET /a HTTP/1.1\r\nHost: web.localhost:9090\r\nConnection: close\r\n\r\n";
    rig.client_sends(last.as_bytes());
    rig.backend_sends(&backend, OK.as_bytes());
    assert!(
        rig.client.sent().contains("Connection: close\r\n"),
        "{}",
        rig.client.sent()
    );
    assert!(
        rig.conn.finished(),
        "Connection: close, yet the connection stays"
    );
}

#[test]
fn an_idle_kept_backend_goes_to_the_pool_when_the_client_leaves() {
    let mut rig = Rig::new();
    let backend = Fake::default();
    fake::expect_dial(&backend);
    rig.client_sends(GET.as_bytes());
    rig.backend_sends(&backend, OK.as_bytes());
    rig.client.close();
    rig.conn.ready(Side::Client, true);
    rig.run();
    assert!(rig.conn.finished());
    let kept = rig.conn.close().expect("the backend is pooled");
    assert_eq!(
        (kept.0, kept.1),
        (ConnId(1), WEB),
        "under its token, for its port"
    );
}

#[test]
fn a_backend_with_bytes_nobody_asked_for_is_never_pooled() {
    let mut rig = Rig::new();
    let backend = Fake::default();
    fake::expect_dial(&backend);
    rig.client_sends(GET.as_bytes());
    // The response, and more: someone else's answer, or garbage.
    rig.backend_sends(&backend, format!("{OK}HTTP/1.1 200 OK\r\n").as_bytes());
    assert!(rig.client.take_sent().ends_with("hello"));
    rig.client.close();
    rig.conn.ready(Side::Client, true);
    rig.run();
    assert!(
        rig.conn.close().is_none(),
        "a spoiled connection was pooled"
    );
}

#[test]
fn a_backend_that_carried_a_body_is_never_pooled() {
    let mut rig = Rig::new();
    let backend = Fake::default();
    fake::expect_dial(&backend);
    let post = "POST /a HTTP/1.1\r\nHost: web.localhost:9090\r\nContent-Length: 2\r\n\r\nhi";
    rig.client_sends(post.as_bytes());
    assert!(backend.take_sent().ends_with("\r\n\r\nhi"));
    rig.backend_sends(&backend, OK.as_bytes());
    rig.client.close();
    rig.conn.ready(Side::Client, true);
    rig.run();
    assert!(
        rig.conn.close().is_none(),
        "it may answer the body as a request later"
    );
}

#[test]
fn a_pooled_backend_is_lent_and_serves_the_next_client() {
    let mut rig = Rig::new();
    let pooled = Fake::default();
    assert!(rig.pool.put(ConnId(7), WEB, pooled.clone()));
    rig.client_sends(GET.as_bytes());
    assert!(
        pooled.take_sent().starts_with("GET /a "),
        "the request went elsewhere"
    );
    assert_eq!(rig.pool.holder(ConnId(7)), Some(ConnId(1)));
    assert_eq!(
        rig.conn.backend_token(),
        Some(ConnId(7)),
        "no new registration"
    );
    rig.backend_sends(&pooled, OK.as_bytes());
    assert!(rig.client.sent().ends_with("hello"));
    assert!(fake::dialled().is_empty(), "it connected anew");
}

#[test]
fn expect_100_continue_passes_the_interim_answer_then_the_body() {
    let mut rig = Rig::new();
    let backend = Fake::default();
    fake::expect_dial(&backend);
    let head = "POST /u HTTP/1.1\r\nHost: web.localhost:9090\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    rig.client_sends(head.as_bytes());
    assert!(backend.take_sent().ends_with("\r\n\r\n"));
    rig.backend_sends(&backend, b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(rig.client.take_sent(), "HTTP/1.1 100 Continue\r\n\r\n");
    rig.client_sends(b"hello");
    assert_eq!(backend.take_sent(), "hello");
    rig.backend_sends(&backend, OK.as_bytes());
    assert!(rig.client.sent().starts_with("HTTP/1.1 200 OK\r\n"));
}

#[test]
fn an_upgrade_becomes_a_tunnel_both_ways() {
    let mut rig = Rig::new();
    let backend = Fake::default();
    fake::expect_dial(&backend);
    let ws = "GET /ws HTTP/1.1\r\nHost: web.localhost:9090\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    rig.client_sends(ws.as_bytes());
    let sent = backend.take_sent();
    assert!(sent.contains("Upgrade: websocket"), "{sent}");
    rig.backend_sends(
        &backend,
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nfirst",
    );
    let got = rig.client.take_sent();
    assert!(
        got.starts_with("HTTP/1.1 101 ") && got.ends_with("\r\n\r\nfirst"),
        "{got}"
    );
    // Not HTTP any more: bytes pass untouched, either way.
    rig.client_sends(b"\x01\x02hi GET / HTTP/1.1\r\n\r\n");
    assert_eq!(backend.take_sent(), "\u{1}\u{2}hi GET / HTTP/1.1\r\n\r\n");
    rig.backend_sends(&backend, b"pong");
    assert_eq!(rig.client.take_sent(), "pong");
    backend.close();
    rig.conn.ready(Side::Backend, true);
    rig.run();
    assert!(rig.conn.finished(), "the backend closed the tunnel");
}

#[test]
fn a_101_nobody_asked_for_is_a_502() {
    let mut rig = Rig::new();
    let backend = Fake::default();
    fake::expect_dial(&backend);
    rig.client_sends(GET.as_bytes());
    rig.backend_sends(
        &backend,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    );
    let got = rig.client.sent();
    assert!(
        got.starts_with("HTTP/1.1 502 ") && got.contains("switched protocols"),
        "{got}"
    );
}

#[test]
fn a_running_backend_that_refuses_is_a_502_at_once() {
    let mut rig = Rig::new();
    rig.client_sends(GET.as_bytes()); // no backend listens on 4000
    let got = rig.client.sent();
    assert!(got.starts_with("HTTP/1.1 502 "), "{got}");
    assert!(
        got.contains("web is not accepting connections on 127.0.0.1:4000 (connection refused)")
    );
    assert!(
        !rig.conn.finished(),
        "a bodiless request keeps the connection"
    );
}

#[test]
fn unknown_and_exited_processes_get_a_502_with_the_routes() {
    for (host, why) in [
        ("nope", "there is no process of that name in this session"),
        ("gone", "gone is not running: it exited"),
    ] {
        let mut rig = Rig::new();
        rig.client_sends(
            format!("GET / HTTP/1.1\r\nHost: {host}.localhost:9090\r\n\r\n").as_bytes(),
        );
        let got = rig.client.sent();
        assert!(got.starts_with("HTTP/1.1 502 "), "{got}");
        assert!(
            got.contains(&format!("no running process named '{host}': {why}")),
            "{got}"
        );
        assert!(
            got.contains("http://web.localhost:9090"),
            "no routes: {got}"
        );
    }
}

#[test]
fn a_starting_backend_is_retried_until_it_listens() {
    let mut rig = Rig::new();
    let slow = "GET / HTTP/1.1\r\nHost: slow.localhost:9090\r\n\r\n";
    rig.client_sends(slow.as_bytes()); // refused: held
    assert_eq!(rig.client.sent(), "", "answered while the process starts");
    let retry = rig.conn.deadline().expect("a retry");
    assert!(retry <= Instant::now() + RETRY, "retry {retry:?}");
    let backend = Fake::default();
    fake::expect_dial(&backend);
    rig.pass_deadline();
    assert!(
        backend.take_sent().starts_with("GET / "),
        "not sent on the retry"
    );
    assert_eq!(fake::dialled(), vec![4001, 4001]);
    rig.backend_sends(&backend, OK.as_bytes());
    assert!(rig.client.sent().ends_with("hello"));
}

#[test]
fn a_backend_that_never_listens_gets_a_503_after_the_hold() {
    let hold = Duration::from_millis(250);
    let mut rig = Rig::with(Limits {
        hold,
        ..Limits::default()
    });
    let started = Instant::now();
    let slow = "GET / HTTP/1.1\r\nHost: slow.localhost:9090\r\n\r\n";
    rig.client_sends(slow.as_bytes());
    while rig.client.sent().is_empty() {
        assert!(
            started.elapsed() < hold * 8,
            "no answer after {:?}",
            started.elapsed()
        );
        rig.pass_deadline();
    }
    let got = rig.client.sent();
    assert!(
        started.elapsed() >= hold,
        "answered after {:?}",
        started.elapsed()
    );
    assert!(got.starts_with("HTTP/1.1 503 "), "{got}");
    assert!(
        got.contains("slow is not accepting connections") && got.contains("gave up after 250 ms")
    );
    assert!(fake::dialled().len() >= 2, "tried {:?}", fake::dialled());
}

#[test]
fn a_connect_that_fails_later_is_held_like_a_refusal() {
    let mut rig = Rig::new();
    let backend = Fake::default();
    backend.0.borrow_mut().pending = true;
    backend.0.borrow_mut().refused = true;
    fake::expect_dial(&backend);
    rig.client_sends(b"GET / HTTP/1.1\r\nHost: slow.localhost:9090\r\n\r\n");
    assert_eq!(backend.sent(), "", "written before the connect completed");
    backend.0.borrow_mut().pending = false; // now refused
    rig.conn.ready(Side::Backend, true);
    rig.run();
    assert_eq!(rig.client.sent(), "", "a starting process is waited for");
    assert!(rig.conn.deadline().is_some());
}

#[test]
fn writability_is_watched_only_while_a_write_waits() {
    let mut rig = Rig::new();
    let interest = |steps: &[Step]| -> Vec<(usize, bool, bool)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Interest {
                    token,
                    interest,
                    add,
                    ..
                } => Some((*token, interest.is_writable(), *add)),
                _ => None,
            })
            .collect()
    };
    let (c, b) = (
        token(ConnId(1), Side::Client),
        token(ConnId(1), Side::Backend),
    );
    assert_eq!(
        interest(&rig.steps),
        vec![(c, false, true)],
        "accepted: readable"
    );
    rig.steps.clear();
    let backend = Fake::default();
    fake::expect_dial(&backend);
    backend.0.borrow_mut().room = Some(0);
    rig.client_sends(GET.as_bytes());
    // A new connection is watched for writes until its request is written.
    assert_eq!(interest(&rig.steps), vec![(b, true, true)]);
    rig.steps.clear();
    backend.0.borrow_mut().room = None;
    rig.conn.ready(Side::Backend, false);
    rig.run();
    assert_eq!(interest(&rig.steps), vec![(b, false, false)]);
    rig.steps.clear();
    // A client that takes 10 bytes: the rest waits, writes are watched.
    rig.client.0.borrow_mut().room = Some(10);
    rig.backend_sends(&backend, OK.as_bytes());
    assert_eq!(interest(&rig.steps), vec![(c, true, false)]);
    rig.steps.clear();
    rig.client.0.borrow_mut().room = None;
    rig.conn.ready(Side::Client, false);
    rig.run();
    assert_eq!(interest(&rig.steps), vec![(c, false, false)]);
    assert!(rig.client.sent().ends_with("hello"));
}

#[test]
fn a_partial_head_times_out_with_408_and_closes() {
    let mut rig = Rig::with(Limits {
        request: Duration::from_millis(50),
        ..Limits::default()
    });
    rig.client_sends(b"GET / HTTP/1.1\r\nHost: web.loc");
    rig.pass_deadline();
    let got = rig.client.sent();
    assert!(
        got.starts_with("HTTP/1.1 408 ") && got.contains("within 50 ms"),
        "{got}"
    );
    assert!(
        rig.client.0.borrow().shut,
        "the answer is not followed by a close"
    );
    rig.client.close();
    rig.conn.ready(Side::Client, true);
    rig.run();
    assert!(rig.conn.finished());
}

#[test]
fn an_invalid_request_is_answered_and_the_rest_drained_before_closing() {
    let mut rig = Rig::new();
    rig.client_sends(b"GET / HTTP/1.1\r\nHost: web.localhost:9090\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx");
    let got = rig.client.sent();
    assert!(got.starts_with("HTTP/1.1 400 "), "{got}");
    assert!(
        rig.client.0.borrow().shut,
        "not half-closed before draining"
    );
    assert!(!rig.conn.finished(), "closed with bytes unread: a reset");
    rig.client.close();
    rig.conn.ready(Side::Client, true);
    rig.run();
    assert!(rig.conn.finished());
}

#[test]
fn timeouts_read_in_the_unit_they_were_set_in() {
    assert_eq!(span(Duration::from_secs(10)), "10 s");
    assert_eq!(span(Duration::from_millis(700)), "700 ms");
    assert_eq!(span(Duration::from_millis(1500)), "1500 ms");
}

#[test]
fn bytes_left_in_the_backend_socket_after_a_response_spoil_it() {
    // One read brings exactly the response; a stale answer still waits in the
    // socket. It must not be taken for the answer to the next request.
    let mut rig = Rig::new();
    let backend = Fake::default();
    backend.0.borrow_mut().chunk = Some(OK.len());
    fake::expect_dial(&backend);
    rig.client_sends(GET.as_bytes());
    rig.backend_sends(
        &backend,
        format!("{OK}HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale").as_bytes(),
    );
    assert!(rig.client.take_sent().ends_with("\r\n\r\nhello"));
    let fresh = Fake::default();
    fake::expect_dial(&fresh);
    rig.client_sends(GET.as_bytes());
    assert!(
        fresh.take_sent().starts_with("GET /a "),
        "sent on the spoiled connection"
    );
    assert_eq!(fake::dialled(), vec![WEB, WEB]);
    rig.backend_sends(&fresh, OK.as_bytes());
    assert!(
        !rig.client.sent().contains("stale"),
        "{}",
        rig.client.sent()
    );
}

#[test]
fn an_error_answer_looks_for_unread_bytes_but_a_finished_close_does_not() {
    // After `Connection: close` and a whole request, nothing more may come:
    // closing at once costs no read.
    let mut rig = Rig::new();
    let backend = Fake::default();
    fake::expect_dial(&backend);
    let close = "GET /a HTTP/1.1\r\nHost: web.localhost:9090\r\nConnection: close\r\n\r\n";
    rig.client_sends(close.as_bytes());
    let reads = rig.client.0.borrow().reads;
    rig.backend_sends(&backend, OK.as_bytes());
    assert!(rig.conn.finished());
    assert_eq!(
        rig.client.0.borrow().reads,
        reads,
        "read the client to close it"
    );
    assert!(!rig.client.0.borrow().shut);
    // Our own error answer: the client may still be sending, so look first.
    // One read brings exactly the head; more waits behind it.
    let mut rig = Rig::new();
    let head = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n";
    rig.client.0.borrow_mut().chunk = Some(head.len());
    rig.client.feed(head);
    rig.client.feed(b"more");
    rig.conn.ready(Side::Client, false);
    rig.run();
    assert!(
        rig.client.sent().starts_with("HTTP/1.1 421 "),
        "{}",
        rig.client.sent()
    );
    assert!(
        rig.client.0.borrow().shut,
        "closed with bytes unread: a reset"
    );
    assert!(!rig.conn.finished());
}
