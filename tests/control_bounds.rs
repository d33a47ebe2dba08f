//! What one control connection can cost the daemon (SECURITY.md, "Input from the
//! socket"): a client that floods requests without reading answers stops being
//! read (2 MiB of input waiting, 1 MiB of answers unread) while everyone else is
//! served, and gets every answer once it reads; past 4096 connections new ones
//! are closed until one leaves.

mod common;
use common::*;
use std::io::{BufRead, ErrorKind, Write};
use std::time::Duration;

const STATUS: &[u8] = b"{\"type\":\"Status\"}\n";

/// Whether `stream` can take more bytes within `limit` (poll for POLLOUT).
fn writable_within(stream: &std::os::unix::net::UnixStream, limit: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: poll on the one pollfd we own, for at most `limit`.
    unsafe { libc::poll(&mut pfd, 1, limit.as_millis() as i32) > 0 }
}

/// Read one answer line through a buffer (answers here are 100 KB each).
fn read_line(reader: &mut impl BufRead) -> serde_json::Value {
    let mut line = Vec::new();
    match reader.read_until(b'\n', &mut line) {
        Ok(n) if n > 0 && line.ends_with(b"\n") => {}
        other => panic!("reading an answer: {other:?} after {} bytes", line.len()),
    }
    serde_json::from_slice(&line).expect("an answer is JSON")
}

#[test]
fn a_client_that_never_reads_is_held_at_the_caps_and_others_are_served() {
    let sb = Sandbox::new();
    // A 100 KB command makes every Status answer over 100 KB.
    let big = format!("sleep 300 #{}", "x".repeat(100_000));
    sb.start("big", &big);
    let daemon = sb.daemon_pid().expect("a daemon");
    let rss_before = rss_kib(daemon);
    let mut greedy = sb.connect();
    greedy.set_nonblocking(true).expect("non-blocking");
    // Requests padded to 64 KiB (unknown fields are ignored), 64 MiB of them, and
    // not one answer read: the daemon must stop taking them. Once nothing has been
    // taken for 3 s, it has taken all it will.
    let mut one = b"{\"type\":\"Status\",\"pad\":\"".to_vec();
    one.resize(64 * 1024 - 3, b'p');
    one.extend_from_slice(b"\"}\n");
    let flood = one.repeat(16);
    let mut sent = 0usize;
    while sent < 64 << 20 {
        match greedy.write(&flood[sent % flood.len()..]) {
            Ok(n) => sent += n,
            // Wait for room; none for 3 s means the daemon has stopped reading us.
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !writable_within(&greedy, Duration::from_secs(3)) {
                    break;
                }
            }
            Err(e) => panic!("writing requests: {e}"),
        }
    }
    // 2 MiB waiting in the daemon, the requests its answers (1 MiB, plus one)
    // took, and the kernel's socket buffers: far below what was offered.
    assert!(
        sent < 8 << 20,
        "the daemon took {sent} bytes of requests from a client that reads nothing"
    );
    // Everyone else is served meanwhile, and the daemon's memory stayed bounded.
    for _ in 0..5 {
        sb.ok(&["status"]);
    }
    let grown = rss_kib(daemon).saturating_sub(rss_before);
    assert!(grown < 32 * 1024, "the daemon's RSS grew by {grown} KiB");
    // Once it reads, it gets an answer to every whole request it managed to send:
    // the daemon goes back to reading it by itself (no new event is owed to it).
    greedy.set_nonblocking(false).expect("blocking");
    greedy
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("a read timeout");
    let whole = sent / one.len();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, &greedy);
    for i in 0..whole {
        let reply = read_line(&mut reader);
        assert_eq!(reply["type"], "Status", "answer {i} of {whole}");
    }
    eprintln!("took {sent} bytes ({whole} requests) from a client that read nothing");
    assert_eq!(sb.proc_status("big")["state"], "running");
}

/// Raise this test process's soft descriptor limit to at least `need`, if the
/// hard limit allows; false if it does not.
fn raise_fd_limit(need: u64) -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if lim.rlim_max < need {
        return false;
    }
    if lim.rlim_cur < need {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct we pass.
        return unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0;
    }
    true
}

#[test]
fn past_4096_connections_new_ones_are_closed_until_one_leaves() {
    // 4096 connections on our side and the daemon's, plus what the other tests hold.
    if !raise_fd_limit(12_000) {
        skip_notice("the hard descriptor limit is below the 12000 this test needs");
        return;
    }
    let sb = Sandbox::new();
    sb.start("x", "sleep 300");
    let daemon = sb.daemon_pid().expect("a daemon");
    let mut held = Vec::with_capacity(4096);
    // Each connection answers a Status, so all 4096 are the daemon's clients.
    for i in 0..4096 {
        let mut s = sb.connect();
        if i % 512 == 0 || i == 4095 {
            assert_eq!(ask(&mut s, STATUS)["type"], "Status", "connection {i}");
        }
        held.push(s);
    }
    // One more is closed without an answer, and so is a CLI call.
    let mut extra = sb.connect();
    let _ = extra.write_all(STATUS);
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut extra, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "connection 4097 was answered");
    sb.fails(&["status"], 1);
    // One leaves: a CLI call gets in again. The round trip on a held connection
    // (still served) comes after the daemon has seen the hang-up, which it read
    // no later than this request.
    drop(held.pop());
    assert_eq!(ask(&mut held[17], STATUS)["type"], "Status");
    assert_eq!(sb.proc_status("x")["state"], "running");
    let log = std::fs::read_to_string(sb.daemon_log()).unwrap_or_default();
    let cap = "refused a connection: 4096 connections are open";
    assert_eq!(log.matches(cap).count(), 1, "{log}");
    assert!(alive(daemon));
    drop(held);
}
