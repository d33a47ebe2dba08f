//! Runs in the logs: `logs NAME` covers the latest run (as 0.6, which truncated
//! at every start), `--runs N|all` reach back, `--since` and `--after` span runs
//! from the position they name, a line marks each start when several runs are
//! printed (`run` in JSON), and `logs --all` covers the last daemon's processes.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

fn is_marker(line: &str) -> bool {
    line.starts_with("--- run ") && line.ends_with(" ---")
}

fn markers(text: &str) -> Vec<&str> {
    text.lines().filter(|l| is_marker(l)).collect()
}

fn exited(sb: &Sandbox, name: &str) {
    sb.ok(&["wait", name, "--exit", "--timeout", "20"]);
}

/// The CI failure handler of the issue: a server run, `down`, the same name run
/// again; `logs web --tail 50` must show the new server only.
#[test]
fn after_down_and_a_new_run_tail_shows_only_the_new_server() {
    let sb = Sandbox::new();
    sb.ok(&[
        "run",
        "for i in $(seq 1 30); do echo old server line $i; done; echo old error >&2; sleep 60",
        "--name",
        "web",
    ]);
    sb.ok(&[
        "wait",
        "web",
        "--until",
        "old server line 30",
        "--timeout",
        "20",
    ]);
    sb.ok(&["down"]);
    sb.ok(&[
        "run",
        "echo new server ready; echo new error >&2; exit 1",
        "--name",
        "web",
    ]);
    exited(&sb, "web");
    assert_eq!(
        lines(&sb.ok(&["logs", "web", "--tail", "50"])),
        ["new server ready"]
    );
    let both = sb.ok(&["logs", "web", "--both", "--tail", "50"]);
    assert_eq!(
        lines(&both),
        ["new server ready", "err| new error"],
        "{both}"
    );
    assert_eq!(
        lines(&sb.ok(&["logs", "web", "--grep", "server"])),
        ["new server ready"]
    );
    assert_eq!(lines(&sb.ok(&["logs", "web", "--stderr"])), ["new error"]);
    // The earlier server is still there for whoever asks.
    let all = sb.ok(&["logs", "web", "--runs", "all", "--both"]);
    assert!(all.contains("old server line 1\n"), "{all}");
    assert!(all.contains("err| old error\n"), "{all}");
    let marks = markers(&all);
    assert_eq!(marks.len(), 2, "{all}");
    assert!(marks[0].starts_with("--- run 1 started "), "{all}");
    // `down` stopped it with SIGTERM.
    assert!(
        marks[1].starts_with("--- run 2 started ")
            && marks[1].ends_with("; previous run: stopped (killed by SIGTERM) ---"),
        "{all}"
    );
    sb.ok(&["down"]);
}

#[test]
fn automatic_restarts_are_runs_marked_with_pid_and_how_the_last_ended() {
    let sb = Sandbox::new();
    let out = sb.ok(&[
        "run",
        "echo attempt; exit 3",
        "--name",
        "flaky",
        "--autorestart",
        "on-failure",
        "--max-restarts",
        "2",
        "--restart-delay",
        "50",
    ]);
    let first_pid = parse_pid(&out);
    // `failed` comes with the last word in the log.
    eventually(Duration::from_secs(20), "flaky to fail", || {
        let st = sb.proc_status("flaky");
        done_or(st["state"] == "failed", st)
    });
    let all = sb.ok(&["logs", "flaky", "--runs", "all"]);
    let want_lines = [
        "attempt",
        "[agent-procs] Restarted (exit 3, attempt 1/2)",
        "attempt",
        "[agent-procs] Restarted (exit 3, attempt 2/2)",
        "attempt",
        "[agent-procs] Max restarts (2) exhausted",
    ];
    let body: Vec<&str> = all.lines().filter(|l| !is_marker(l)).collect();
    assert_eq!(body, want_lines, "{all}");
    let marks = markers(&all);
    assert_eq!(marks.len(), 3, "{all}");
    assert!(
        marks[0].starts_with("--- run 1 started ")
            && marks[0].ends_with(&format!(" (pid {first_pid}) ---")),
        "{all}"
    );
    for (i, mark) in marks.iter().enumerate().skip(1) {
        assert!(
            mark.starts_with(&format!("--- run {} started ", i + 1))
                && mark.contains(" (pid ")
                && mark.ends_with("; previous run: exited 3 ---"),
            "{all}"
        );
    }
    // Each marker comes right before its run's first line.
    assert!(is_marker(lines(&all)[0]), "{all}");
    // The latest run by default; the last two with --runs 2.
    assert_eq!(
        lines(&sb.ok(&["logs", "flaky"])),
        [
            "[agent-procs] Restarted (exit 3, attempt 2/2)",
            "attempt",
            "[agent-procs] Max restarts (2) exhausted"
        ]
    );
    let two = sb.ok(&["logs", "flaky", "--runs", "2"]);
    assert_eq!(markers(&two).len(), 2, "{two}");
    assert!(markers(&two)[0].starts_with("--- run 2 "), "{two}");
    assert_eq!(two.lines().filter(|l| *l == "attempt").count(), 2, "{two}");
    // --tail counts log lines, not markers, and the run of the first line shown
    // is named when more than one is printed.
    // (A restart's note is the first line of the new run.)
    let tail = sb.ok(&["logs", "flaky", "--runs", "all", "--tail", "4"]);
    assert_eq!(
        lines(&tail),
        [
            marks[1],
            "attempt",
            marks[2],
            "[agent-procs] Restarted (exit 3, attempt 2/2)",
            "attempt",
            "[agent-procs] Max restarts (2) exhausted"
        ],
        "{tail}"
    );
    let tail = sb.ok(&["logs", "flaky", "--runs", "all", "--tail", "3"]);
    assert!(markers(&tail).is_empty(), "one run printed: {tail}");
    sb.ok(&["down"]);
}

#[test]
fn runs_takes_a_positive_number_or_all() {
    let sb = Sandbox::new();
    for bad in ["0", "-1", "two", ""] {
        let err = sb.fails(&["logs", "web", "--runs", bad], 64);
        assert!(
            err.contains("--runs takes a number of runs (1 or more) or all"),
            "{bad}: {err}"
        );
    }
}

/// Three runs of `svc` printing `one`/`uno`, `two`, `three`; the JSON lines of all.
fn three_runs(sb: &Sandbox) -> Vec<Value> {
    for cmd in ["echo one; echo uno", "echo two", "echo three"] {
        sb.ok(&["run", cmd, "--name", "svc"]);
        exited(sb, "svc");
    }
    sb.ok(&["logs", "svc", "--runs", "all", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn json_lines_carry_their_run_and_no_markers() {
    let sb = Sandbox::new();
    let all = three_runs(&sb);
    let got: Vec<(String, u64)> = all
        .iter()
        .map(|v| {
            (
                v["line"].as_str().unwrap_or("?").to_string(),
                v["run"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let want = [("one", 1), ("uno", 1), ("two", 2), ("three", 3)];
    let want: Vec<(String, u64)> = want.iter().map(|(l, r)| (l.to_string(), *r)).collect();
    assert_eq!(got, want);
    let latest = sb.ok(&["logs", "svc", "--json"]);
    let v: Value = serde_json::from_str(latest.trim()).expect("one JSON line");
    assert_eq!(
        (v["line"].as_str(), v["run"].as_u64()),
        (Some("three"), Some(3))
    );
    sb.ok(&["down"]);
}

#[test]
fn after_a_cursor_and_since_a_time_cover_every_run_from_there() {
    let sb = Sandbox::new();
    let all = three_runs(&sb);
    // The cursor of `one`: what follows it spans runs 1 to 3.
    let cursor = all[0]["cursor"].as_str().expect("a cursor").to_string();
    let after = sb.ok(&["logs", "svc", "--after", &cursor]);
    let body: Vec<&str> = after.lines().filter(|l| !is_marker(l)).collect();
    assert_eq!(body, ["uno", "two", "three"], "{after}");
    let marks = markers(&after);
    assert_eq!(marks.len(), 3, "{after}");
    assert!(marks[0].starts_with("--- run 1 "), "{after}");
    assert!(
        marks[2].ends_with("; previous run: exited 0 ---"),
        "{after}"
    );
    // From the cursor of `two`: one run only, so nothing to mark.
    let cursor = all[2]["cursor"].as_str().expect("a cursor").to_string();
    assert_eq!(
        lines(&sb.ok(&["logs", "svc", "--after", &cursor])),
        ["three"]
    );
    // --since names a time: every run since then.
    let since = sb.ok(&["logs", "svc", "--since", "1h"]);
    let body: Vec<&str> = since.lines().filter(|l| !is_marker(l)).collect();
    assert_eq!(body, ["one", "uno", "two", "three"], "{since}");
    assert_eq!(markers(&since).len(), 3, "{since}");
    // --since restart is the latest run, as before; --runs narrows --since.
    assert_eq!(
        lines(&sb.ok(&["logs", "svc", "--since", "restart"])),
        ["three"]
    );
    assert_eq!(
        lines(&sb.ok(&["logs", "svc", "--since", "1h", "--runs", "1"])),
        ["three"]
    );
    sb.ok(&["down"]);
}

#[test]
fn follow_replays_the_latest_run_only() {
    let sb = Sandbox::new();
    sb.ok(&["run", "echo old line; exit 1", "--name", "web"]);
    exited(&sb, "web");
    sb.ok(&["run", "echo new line; sleep 60", "--name", "web"]);
    sb.ok(&["wait", "web", "--until", "new line", "--timeout", "20"]);
    let out = sb.ok(&[
        "logs",
        "web",
        "--follow",
        "--tail",
        "50",
        "--lines",
        "0",
        "--timeout",
        "10",
    ]);
    assert_eq!(lines(&out), ["new line"]);
    let out = sb.ok(&[
        "logs",
        "--all",
        "--follow",
        "--tail",
        "50",
        "--lines",
        "0",
        "--timeout",
        "10",
    ]);
    assert_eq!(lines(&out), ["[web] new line"]);
    sb.ok(&["down"]);
}

#[test]
fn follow_with_runs_replays_earlier_runs_marked() {
    let sb = Sandbox::new();
    sb.ok(&["run", "echo one; exit 1", "--name", "web"]);
    exited(&sb, "web");
    sb.ok(&["run", "echo two; sleep 60", "--name", "web"]);
    sb.ok(&["wait", "web", "--until", "two", "--timeout", "20"]);
    let out = sb.ok(&[
        "logs",
        "web",
        "--follow",
        "--runs",
        "all",
        "--tail",
        "50",
        "--lines",
        "0",
        "--timeout",
        "10",
    ]);
    let got = lines(&out);
    assert_eq!(got.len(), 4, "{out}");
    assert!(got[0].starts_with("--- run 1 started "), "{out}");
    assert_eq!(got[1], "one", "{out}");
    assert!(
        got[2].starts_with("--- run 2 started ") && got[2].ends_with("previous run: exited 1 ---"),
        "{out}"
    );
    assert_eq!(got[3], "two", "{out}");
    let out = sb.ok(&[
        "logs",
        "--all",
        "--follow",
        "--runs",
        "1",
        "--tail",
        "50",
        "--lines",
        "0",
        "--timeout",
        "10",
    ]);
    assert_eq!(lines(&out), ["[web] two"]);
    sb.ok(&["down"]);
}

/// A run that starts while a follow is going is marked in the live lines.
#[test]
fn a_restart_during_a_follow_is_marked() {
    use std::io::BufRead;
    let sb = Sandbox::new();
    sb.ok(&["run", "echo hi; sleep 60", "--name", "web"]);
    sb.ok(&["wait", "web", "--until", "hi", "--timeout", "20"]);
    let mut follower = sb
        .command(&[
            "logs",
            "web",
            "--follow",
            "--tail",
            "1",
            "--lines",
            "2",
            "--timeout",
            "30",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting the follower");
    let stdout = follower.stdout.take().expect("the follower's stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || rx.recv_timeout(Duration::from_secs(30)).ok();
    // The replayed line: the follower is registered.
    assert_eq!(next().as_deref(), Some("hi"));
    sb.ok(&["restart", "web"]);
    let marker = next().unwrap_or_default();
    assert!(
        marker.starts_with("--- run 2 started ")
            && marker.ends_with("; previous run: restarted (killed by SIGTERM) ---"),
        "{marker}"
    );
    assert_eq!(next().as_deref(), Some("[agent-procs] Restarted (manual)"));
    assert_eq!(next().as_deref(), Some("hi"));
    // --lines counts output lines, not markers: two, and the follow ends.
    assert_eq!(next(), None);
    let status = follower.wait().expect("waiting for the follower");
    assert!(status.success(), "{status}");
    sb.ok(&["down"]);
}

#[test]
fn logs_all_covers_the_last_daemons_processes_only() {
    let sb = Sandbox::new();
    sb.ok(&["run", "echo from an older daemon", "--name", "old"]);
    exited(&sb, "old");
    sb.ok(&["down"]);
    sb.ok(&["run", "echo api up", "--name", "api"]);
    sb.ok(&["run", "echo web up; sleep 60", "--name", "web"]);
    exited(&sb, "api");
    sb.ok(&["wait", "web", "--until", "web up", "--timeout", "20"]);
    // The current daemon's processes, exited or running.
    assert_eq!(
        lines(&sb.ok(&["logs", "--all"])),
        ["[api] api up", "[web] web up"]
    );
    sb.ok(&["down"]);
    assert!(sb.daemon_pid().is_none());
    // No daemon: the last one's processes.
    assert_eq!(
        lines(&sb.ok(&["logs", "--all"])),
        ["[api] api up", "[web] web up"]
    );
    // The older daemon's process is still there by name.
    assert_eq!(lines(&sb.ok(&["logs", "old"])), ["from an older daemon"]);
}

/// Logs written by 0.8.0 have no run journal: the index's run-start flags
/// still cut them into runs, and state.json without names means every name.
#[test]
fn logs_without_a_run_journal_still_read_by_run() {
    let sb = Sandbox::new();
    for cmd in ["echo first", "echo second; echo second again"] {
        sb.ok(&["run", cmd, "--name", "svc"]);
        exited(&sb, "svc");
    }
    sb.ok(&["run", "echo other", "--name", "other"]);
    exited(&sb, "other");
    sb.ok(&["down"]);
    let logs = sb.session_dir().join("logs");
    std::fs::remove_file(logs.join("runs.jsonl")).expect("removing the journal");
    let state = sb.session_dir().join("state.json");
    let mut saved: Value =
        serde_json::from_slice(&std::fs::read(&state).expect("reading state.json"))
            .expect("state.json is JSON");
    saved.as_object_mut().expect("an object").remove("names");
    std::fs::write(&state, saved.to_string()).expect("writing state.json");

    assert_eq!(lines(&sb.ok(&["logs", "svc"])), ["second", "second again"]);
    let all = sb.ok(&["logs", "svc", "--runs", "all"]);
    let marks = markers(&all);
    assert_eq!(marks.len(), 2, "{all}");
    assert!(
        marks[0].starts_with("--- run 1, first output ")
            && marks[1].starts_with("--- run 2, first output ")
            && marks[1].ends_with("; previous run: not recorded ---"),
        "{all}"
    );
    let body: Vec<&str> = all.lines().filter(|l| !is_marker(l)).collect();
    assert_eq!(body, ["first", "second", "second again"]);
    assert_eq!(
        lines(&sb.ok(&["logs", "--all"])),
        ["[svc] second", "[svc] second again", "[other] other"]
    );
    // A new daemon numbers on from the runs it finds in the logs.
    sb.ok(&["run", "echo third", "--name", "svc"]);
    exited(&sb, "svc");
    let json = sb.ok(&["logs", "svc", "--json"]);
    let v: Value = serde_json::from_str(json.trim()).expect("one JSON line");
    assert_eq!(
        (v["line"].as_str(), v["run"].as_u64()),
        (Some("third"), Some(3))
    );
    let all = sb.ok(&["logs", "svc", "--runs", "all"]);
    let marks = markers(&all);
    assert_eq!(marks.len(), 3, "{all}");
    assert!(marks[2].starts_with("--- run 3 started "), "{all}");
    assert!(
        marks[2].ends_with("; previous run: not recorded ---"),
        "{all}"
    );
    sb.ok(&["down"]);
}

#[test]
fn a_run_whose_daemon_was_killed_ended_unknown() {
    let sb = Sandbox::new();
    sb.ok(&["run", "echo before; sleep 60", "--name", "web"]);
    sb.ok(&["wait", "web", "--until", "before", "--timeout", "20"]);
    let daemon = sb.daemon_pid().expect("a daemon");
    kill(daemon, libc::SIGKILL);
    assert!(wait_gone(daemon, Duration::from_secs(10)));
    // The next daemon stops the orphan and starts the name again.
    sb.ok(&["run", "echo after; exit 0", "--name", "web"]);
    exited(&sb, "web");
    assert_eq!(lines(&sb.ok(&["logs", "web"])), ["after"]);
    let all = sb.ok(&["logs", "web", "--runs", "all"]);
    let marks = markers(&all);
    assert_eq!(marks.len(), 2, "{all}");
    assert!(
        marks[1].ends_with("; previous run: unknown (daemon gone) ---"),
        "{all}"
    );
    sb.ok(&["down"]);
}

/// The journal is ours, but a reader must survive whatever is in it.
#[test]
fn a_garbled_journal_neither_crashes_the_daemon_nor_the_reader() {
    let sb = Sandbox::new();
    sb.ok(&["run", "echo one", "--name", "web"]);
    exited(&sb, "web");
    sb.ok(&["down"]);
    let journal = sb.session_dir().join("logs/runs.jsonl");
    let max = u64::MAX;
    let mut junk = format!(
        "{{\"p\":\"web\",\"run\":{max},\"start\":{max},\"seq\":{max},\"pid\":4294967295}}\n\
         {{\"p\":\"web\",\"run\":{max},\"end\":{max},\"how\":\"\\u001b[2Jgone\"}}\n\
         not json at all\n{{\"p\":\"web\"\n"
    )
    .into_bytes();
    junk.extend_from_slice(b"\xff\xfe\n");
    junk.extend_from_slice(&[b'x'; 100_000]);
    std::fs::write(&journal, junk).expect("garbling the journal");
    sb.ok(&["run", "echo two", "--name", "web"]);
    exited(&sb, "web");
    assert_eq!(lines(&sb.ok(&["logs", "web"])), ["two"]);
    let all = sb.ok(&["logs", "web", "--runs", "all"]);
    let body: Vec<&str> = all.lines().filter(|l| !is_marker(l)).collect();
    assert_eq!(body, ["one", "two"], "{all}");
    sb.ok(&["logs", "web", "--runs", "all", "--json"]);
    sb.ok(&["down"]);
}
