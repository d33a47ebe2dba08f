//! `events`: every state change of a process, numbered, streamed as it happens,
//! replayable with `--since`, and over when the daemon exits.

mod common;

use common::*;
use serde_json::Value;
use std::io::Write;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `events` client whose lines arrive on a channel.
struct Stream {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Stream {
    fn start(sb: &Sandbox, args: &[&str]) -> Stream {
        let mut child = sb
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting agent-procs events");
        let stdout = child.stdout.take().expect("events stdout");
        let lines = lines_of(stdout);
        Stream { child, lines }
    }

    /// Lines until one satisfies `done`, or panic after `limit`.
    fn until(&self, limit: Duration, done: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let last = done(&line);
                    seen.push(line);
                    if last {
                        return seen;
                    }
                }
                Err(_) => panic!("no matching event within {limit:?}; got {seen:#?}"),
            }
        }
    }

    /// The exit code once the client ends by itself, within `limit`.
    fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        wait_child(&mut self.child, limit).and_then(|status| status.code())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// The events of one process, as `event` names.
fn of(events: &[Value], name: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["name"] == name)
        .map(|e| e["event"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn every_state_change_is_streamed_numbered_and_the_stream_ends_with_the_daemon() {
    let sb = Sandbox::new();
    sb.start("svc", "sleep 30");
    // --since 0 replays from the first event, so nothing is lost to the race
    // between subscribing and the changes below.
    let mut stream = Stream::start(&sb, &["events", "--since", "0", "--json"]);
    sb.ok(&[
        "run",
        "sleep 0.2; exit 3",
        "--name",
        "crash",
        "--autorestart",
        "on-failure",
        "--max-restarts",
        "1",
        "--restart-delay",
        "100",
    ]);
    sb.ok(&["stop", "svc"]);
    let lines = stream.until(Duration::from_secs(20), |l| {
        l.contains(r#""name":"crash""#) && l.contains(r#""event":"failed""#)
    });
    let events: Vec<Value> = lines.iter().map(|l| json(l)).collect();
    // svc's stop may come after crash's failure; wait for it too.
    let mut events = events;
    if !of(&events, "svc").contains(&"stopped".to_string()) {
        let more = stream.until(Duration::from_secs(20), |l| {
            l.contains(r#""name":"svc""#) && l.contains(r#""event":"stopped""#)
        });
        events.extend(more.iter().map(|l| json(l)));
    }

    assert_eq!(
        of(&events, "crash"),
        [
            "started",
            "exited",
            "restarting",
            "started",
            "exited",
            "failed"
        ]
    );
    assert_eq!(of(&events, "svc"), ["started", "stopping", "stopped"]);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["type"], "Event", "{event}");
        assert_eq!(event["seq"], i as u64 + 1, "numbered without gaps: {event}");
        assert!(
            event["at_ms"]
                .as_u64()
                .is_some_and(|t| t > 1_700_000_000_000)
        );
    }
    let crash: Vec<&Value> = events.iter().filter(|e| e["name"] == "crash").collect();
    assert_eq!(crash[1]["exit_code"], 3, "{}", crash[1]);
    assert_eq!(crash[2]["delay_ms"], 100, "{}", crash[2]);
    assert!(
        crash[3]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Restarted")),
        "{}",
        crash[3]
    );
    assert!(
        crash[5]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("max restarts (1) exhausted")),
        "{}",
        crash[5]
    );
    let svc: Vec<&Value> = events.iter().filter(|e| e["name"] == "svc").collect();
    assert_eq!(svc[1]["detail"], "SIGTERM", "{}", svc[1]);
    assert_eq!(svc[2]["exit_signal"], "SIGTERM", "{}", svc[2]);
    assert_eq!(svc[0]["pid"], svc[2]["pid"]);

    // A reader that reconnects with the last seq it saw gets exactly the rest.
    let last = events.len() as u64;
    let mut socket = sb.connect();
    let request = format!("{{\"type\":\"Events\",\"since\":{}}}\n", last - 2);
    socket
        .write_all(request.as_bytes())
        .expect("asking for events");
    assert_eq!(read_response(&mut socket)["seq"], last - 1);
    assert_eq!(read_response(&mut socket)["seq"], last);
    // ... and then what happens next, live.
    sb.start("late", "sleep 30");
    let live = read_response(&mut socket);
    assert_eq!(
        (live["seq"].as_u64(), &live["event"]),
        (Some(last + 1), &Value::from("started"))
    );
    assert_eq!(live["name"], "late");
    // A restart by hand says so before the stop it begins with.
    sb.ok(&["restart", "late"]);
    let kinds: Vec<Value> = (0..4)
        .map(|_| read_response(&mut socket)["event"].clone())
        .collect();
    assert_eq!(kinds, ["restarting", "stopping", "stopped", "started"]);

    // The stream is over, with status 0, when the daemon exits.
    sb.ok(&["down"]);
    assert_eq!(stream.exit_code(Duration::from_secs(20)), Some(0));
}

#[test]
fn the_text_form_says_what_happened_in_one_line_each() {
    let sb = Sandbox::new();
    sb.start("svc", "exit 7");
    sb.ok(&["wait", "svc", "--exit", "--timeout", "10"]);
    let stream = Stream::start(&sb, &["events", "--since", "0"]);
    let lines = stream.until(Duration::from_secs(20), |l| l.contains("exited"));
    assert_eq!(lines.len(), 2, "{lines:?}");
    let pid = sb.proc_status("svc")["pid"].clone();
    // 2026-11-26T02:09:53.491Z 1 svc started pid 9539
    let started: Vec<&str> = lines[0].split(' ').collect();
    assert!(
        started[0].ends_with('Z') && started[0].len() == 24,
        "{}",
        lines[0]
    );
    assert_eq!(
        started[1..],
        ["1", "svc", "started", "pid", &pid.to_string()]
    );
    assert!(
        lines[1].ends_with(&format!(" 2 svc exited pid {pid} code 7")),
        "{}",
        lines[1]
    );
}

#[test]
fn events_without_a_daemon_or_with_a_bad_since_are_clear_errors() {
    let sb = Sandbox::new();
    let err = sb.fails(&["events"], 1);
    assert!(
        err.contains("no daemon running for session 'default'"),
        "{err}"
    );
    let err = sb.fails(&["events", "--since", "soon"], 64);
    assert!(err.contains("--since"), "{err}");
}
