//! Logs (byte-exact files, tails, streams, follow) and waits (history, live, exit,
//! regex, timeout), through the real binary.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn logs_are_byte_exact_and_tails_are_right() {
    let sb = Sandbox::new();
    sb.start(
        "bytes",
        r"printf 'one\ntwo\n\377\376 not utf8\nno newline at end'; printf 'err line\n' >&2",
    );
    sb.ok(&["wait", "bytes", "--exit", "--timeout", "10"]);
    assert_eq!(
        read(&sb.log("bytes", "stdout")),
        b"one\ntwo\n\xff\xfe not utf8\nno newline at end"
    );
    assert_eq!(read(&sb.log("bytes", "stderr")), b"err line\n");
    let out = sb.run(&["logs", "bytes", "--tail", "2"]);
    assert_eq!(out.raw_stdout, b"\xff\xfe not utf8\nno newline at end\n");
    assert_eq!(sb.ok(&["logs", "bytes", "--stderr"]), "err line\n");
    assert_eq!(sb.ok(&["logs", "p1", "--tail", "1"]), "no newline at end\n");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(sb.log("bytes", "stdout"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn logs_all_prefixes_every_line_with_its_process() {
    let sb = Sandbox::new();
    sb.start("a", "echo from-a");
    sb.start("b", "echo from-b");
    sb.ok(&["wait", "a", "--exit"]);
    sb.ok(&["wait", "b", "--exit"]);
    assert_eq!(sb.ok(&["logs", "--all"]), "[a] from-a\n[b] from-b\n");
}

#[test]
fn logs_work_after_the_daemon_is_gone() {
    let sb = Sandbox::new();
    sb.start("gone", "seq 1 1000");
    sb.ok(&["wait", "gone", "--exit"]);
    sb.ok(&["down"]);
    assert_eq!(sb.ok(&["logs", "gone", "--tail", "3"]), "998\n999\n1000\n");
}

#[test]
fn tail_on_a_big_log_reads_from_the_end() {
    let sb = Sandbox::new();
    sb.start("big", "seq 1 2000000");
    sb.ok(&["wait", "big", "--exit", "--timeout", "30"]);
    let began = Instant::now();
    assert_eq!(sb.ok(&["logs", "big", "--tail", "2"]), "1999999\n2000000\n");
    assert!(began.elapsed() < Duration::from_secs(2));
}

#[test]
fn wait_sees_history_on_both_streams_and_then_live_lines() {
    let sb = Sandbox::new();
    sb.start(
        "svc",
        "echo 'booting' >&2; echo ready-1; read never < /dev/stdin; sleep 30",
    );
    // Both lines are already in the logs: found in the history.
    assert_eq!(
        sb.ok(&["wait", "svc", "--until", "booting", "--timeout", "10"]),
        "booting\n"
    );
    assert_eq!(
        sb.ok(&["wait", "svc", "--until", "ready-1", "--timeout", "10"]),
        "ready-1\n"
    );
    sb.start(
        "later",
        "sleep 0.3; echo 'listening on port 8123'; sleep 30",
    );
    let line = sb.ok(&[
        "wait",
        "later",
        "--until",
        r"port \d+",
        "--regex",
        "--timeout",
        "10",
    ]);
    assert_eq!(line, "listening on port 8123\n");
}

#[test]
fn wait_exit_reports_codes_and_signal_names() {
    let sb = Sandbox::new();
    sb.start("fails", "exit 3");
    assert_eq!(
        sb.ok(&["wait", "fails", "--exit", "--timeout", "10"]),
        "exited with code 3\n"
    );
    let pid = sb.start("killed", "sleep 300");
    kill(pid, libc::SIGKILL);
    assert_eq!(
        sb.ok(&["wait", "killed", "--exit", "--timeout", "10"]),
        "exited by SIGKILL\n"
    );
    assert_eq!(sb.proc_status("killed")["exit_signal"], "SIGKILL");
}

#[test]
fn wait_times_out_with_exit_1() {
    let sb = Sandbox::new();
    sb.start("quiet", "sleep 300");
    let began = Instant::now();
    let err = sb.fails(
        &["wait", "quiet", "--until", "never", "--timeout", "0.3"],
        1,
    );
    assert!(began.elapsed() >= Duration::from_millis(300));
    assert!(err.contains("timeout"), "{err}");
}

#[test]
fn wait_fails_at_once_when_the_process_exited_without_matching() {
    let sb = Sandbox::new();
    sb.start("short", "echo something else");
    sb.ok(&["wait", "short", "--exit"]);
    let began = Instant::now();
    let err = sb.fails(&["wait", "short", "--until", "ready", "--timeout", "20"], 1);
    assert!(began.elapsed() < Duration::from_secs(5));
    assert!(
        err.contains("short has exited (exit code 0) and its output never matched 'ready'"),
        "{err}"
    );
}

#[test]
fn an_invalid_regex_is_exit_1_with_the_regex_message() {
    let sb = Sandbox::new();
    sb.start("svc", "sleep 30");
    let err = sb.fails(&["wait", "svc", "--until", "(unclosed", "--regex"], 1);
    assert!(err.contains("invalid regex"), "{err}");
}

#[test]
fn wait_exit_returns_while_a_grandchild_holds_the_pipe() {
    let sb = Sandbox::new();
    sb.start("leaky", "sleep 300 & echo leader done");
    assert_eq!(
        sb.ok(&["wait", "leaky", "--exit", "--timeout", "10"]),
        "exited with code 0\n"
    );
    assert_eq!(sb.ok(&["logs", "leaky"]), "leader done\n");
    // The lingering group member is still ours to stop.
    assert_eq!(
        sb.ok(&["stop", "leaky", "--timeout", "2"]),
        "stopped leaky\n"
    );
}

#[test]
fn a_child_that_closes_stdout_early_keeps_running() {
    let sb = Sandbox::new();
    sb.start(
        "closer",
        "echo bye; exec 1>&-; echo still here >&2; sleep 300",
    );
    sb.ok(&["wait", "closer", "--until", "still here", "--timeout", "10"]);
    assert_eq!(sb.proc_status("closer")["state"], "running");
    assert_eq!(sb.ok(&["logs", "closer"]), "bye\n");
}

#[test]
fn follow_streams_live_lines_after_the_tail_without_gaps() {
    let sb = Sandbox::new();
    // 200 ticks (2 s and more): the follow must find 40 still to come after
    // its tail even when a loaded machine starts it late.
    sb.start(
        "ticker",
        "i=0; while [ $i -lt 200 ]; do i=$((i+1)); echo tick $i; sleep 0.01; done; sleep 30",
    );
    sb.ok(&["wait", "ticker", "--until", "tick 5", "--timeout", "10"]);
    let out = sb.ok(&[
        "logs",
        "ticker",
        "--follow",
        "--tail",
        "3",
        "--lines",
        "40",
        "--timeout",
        "20",
    ]);
    let numbers: Vec<u32> = out
        .lines()
        .map(|l| l.trim_start_matches("tick ").parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), 43, "{out}");
    for pair in numbers.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "gap or duplicate in {numbers:?}");
    }
}

#[test]
fn follow_ends_when_the_process_has_exited_and_its_output_is_read() {
    let sb = Sandbox::new();
    sb.start("brief", "echo a; sleep 0.2; echo b");
    let out = sb.ok(&[
        "logs",
        "brief",
        "--follow",
        "--tail",
        "10",
        "--timeout",
        "20",
    ]);
    assert_eq!(out, "a\nb\n");
}

#[test]
fn non_utf8_output_and_huge_lines_do_not_break_waits() {
    let sb = Sandbox::new();
    sb.start(
        "noisy",
        "head -c 3000000 /dev/zero | tr '\\0' 'x'; printf '\\377\\n'; echo marker",
    );
    assert_eq!(
        sb.ok(&["wait", "noisy", "--until", "marker", "--timeout", "20"]),
        "marker\n"
    );
    let size = std::fs::metadata(sb.log("noisy", "stdout")).unwrap().len();
    assert_eq!(size, 3_000_000 + 2 + 7);
}

#[test]
fn wait_searches_every_segment_of_the_current_run() {
    let sb = Sandbox::new();
    sb.ok(&[
        "run",
        "echo early-marker; seq 1 1000; sleep 300",
        "--name",
        "rot",
        "--log-max-size",
        "2k",
    ]);
    sb.ok(&["wait", "rot", "--until", "1000", "--timeout", "20"]);
    assert!(
        sb.log("rot", "stdout.1").exists(),
        "expected several segments"
    );
    assert_eq!(
        sb.ok(&["wait", "rot", "--until", "early-marker", "--timeout", "5"]),
        "early-marker\n"
    );
}

/// A `wait --until` has the daemon create the process's index files up front
/// (issue 19): the line it waits for then costs a reopen, not a file creation,
/// between the child's print and the reply. An index with no record yet reads
/// as none: the logs and the timing of the first line are what they were.
#[test]
fn a_pattern_wait_creates_the_index_before_the_first_line() {
    let sb = Sandbox::new();
    sb.start("quiet", "sleep 30");
    let index = |name: &str, stream: &str| {
        let mut path = sb.log(name, stream).into_os_string();
        path.push(".idx");
        std::path::PathBuf::from(path)
    };
    assert!(
        !index("quiet", "stdout").exists(),
        "created before any wait"
    );
    sb.fails(
        &["wait", "quiet", "--until", "never", "--timeout", "0.3"],
        1,
    );
    for stream in ["stdout", "stderr"] {
        let bytes = read(&index("quiet", stream));
        assert_eq!(
            bytes, b"APIDX\0\0\x01",
            "{stream}: not an index without records"
        );
    }
    assert_eq!(sb.ok(&["logs", "quiet"]), "");
    assert_eq!(sb.ok(&["logs", "quiet", "--since", "1m"]), "");

    // The line that was awaited lands in the prepared index with its time.
    sb.start("late", "sleep 1; echo READY; echo after; sleep 30");
    assert_eq!(
        sb.ok(&["wait", "late", "--until", "READY", "--timeout", "20"]),
        "READY\n"
    );
    eventually(Duration::from_secs(10), "the late lines", || {
        let got = sb.ok(&["logs", "late", "--since", "1m"]);
        done_or(got == "READY\nafter\n", got)
    });
    assert!(
        read(&index("late", "stdout")).len() > 8,
        "no record was written"
    );
    assert_eq!(read(&index("late", "stderr")), b"APIDX\0\0\x01");
    sb.ok(&["down"]);
}
