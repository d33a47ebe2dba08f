//! Reading stored logs: arrival order across streams and processes, rotation,
//! since / after / grep / context / tail, JSON and byte budgets.

mod common;
use common::*;
use std::io::Write;

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn all_and_both_interleave_in_arrival_order() {
    let sb = Sandbox::new();
    // Three processes pass a token around through files, so the order is known.
    let script = |me: u32| {
        format!(
            "for round in 0 1 2; do n=$((round * 3 + {me})); while [ ! -e t$n ]; do sleep 0.005; done; \
             if [ $((n % 2)) = 0 ]; then echo line $n; else echo line $n >&2; fi; touch t$((n + 1)); done"
        )
    };
    for (me, name) in ["a", "b", "c"].iter().enumerate() {
        sb.ok(&["run", &script(me as u32), "--name", name]);
    }
    std::fs::write(sb.root.join("t0"), "").unwrap();
    for name in ["a", "b", "c"] {
        sb.ok(&["wait", name, "--exit", "--timeout", "20"]);
    }
    let out = sb.ok(&["logs", "--all", "--both"]);
    let want = [
        "[a] line 0",
        "[b:err] line 1",
        "[c] line 2",
        "[a:err] line 3",
        "[b] line 4",
        "[c:err] line 5",
        "[a] line 6",
        "[b:err] line 7",
        "[c] line 8",
    ];
    assert_eq!(lines(&out), want);
    assert_eq!(
        lines(&sb.ok(&["logs", "b", "--both"])),
        ["err| line 1", "line 4", "err| line 7"]
    );
    assert_eq!(
        lines(&sb.ok(&["logs", "--all", "--tail", "2"])),
        ["[a] line 6", "[c] line 8"]
    );
}

#[test]
fn tail_is_exact_across_size_rotation() {
    let sb = Sandbox::new();
    sb.ok(&[
        "run",
        "seq 1 1000",
        "--name",
        "many",
        "--log-max-size",
        "1k",
    ]);
    sb.ok(&["wait", "many", "--exit", "--timeout", "20"]);
    assert!(
        sb.log("many", "stdout.3").exists(),
        "expected rotated segments"
    );
    let out = sb.ok(&["logs", "many", "--tail", "300"]);
    let want: Vec<String> = (701..=1000).map(|i| i.to_string()).collect();
    assert_eq!(lines(&out), want);
    // Five old segments are kept; what fell off is gone, what remains is contiguous.
    let all = sb.ok(&["logs", "many", "--since", "start"]);
    let numbers: Vec<u32> = all.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(numbers.last(), Some(&1000));
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "gap in {numbers:?}"
    );
    assert!(!sb.log("many", "stdout.6").exists());
}

#[test]
fn grep_since_context_tail_combinations() {
    let sb = Sandbox::new();
    sb.start("app", "for i in $(seq 1 30); do if [ $((i % 10)) = 0 ]; then echo ERROR at $i; else echo ok $i; fi; done");
    sb.ok(&["wait", "app", "--exit"]);
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--grep", "ERROR"],
            &["ERROR at 10", "ERROR at 20", "ERROR at 30"],
        ),
        (
            &["--grep", "error", "--ignore-case", "--tail", "1"],
            &["ERROR at 30"],
        ),
        (
            &["--grep", r"at [12]0$", "--regex"],
            &["ERROR at 10", "ERROR at 20"],
        ),
        (
            &["--grep", "ERROR", "--context", "1", "--tail", "2"],
            &[
                "ok 19",
                "ERROR at 20",
                "ok 21",
                "--",
                "ok 29",
                "ERROR at 30",
            ],
        ),
        (
            &["--grep", "ERROR", "--since", "1h", "--tail", "1"],
            &["ERROR at 30"],
        ),
        (&["--tail", "2"], &["ok 29", "ERROR at 30"]),
        (&["--since", "restart", "--tail", "1"], &["ERROR at 30"]),
    ];
    for (flags, want) in cases {
        let mut args = vec!["logs", "app"];
        args.extend_from_slice(flags);
        assert_eq!(lines(&sb.ok(&args)), *want, "{flags:?}");
    }
    // No match prints nothing and, as with grep, exits 1.
    let none = sb.run(&["logs", "app", "--grep", "nothing like this"]);
    assert_eq!(
        (none.code, none.stdout.as_str()),
        (1, ""),
        "{}",
        none.stderr
    );
    // Output from the future does not exist; output older than 1 ms ago does.
    assert_eq!(sb.ok(&["logs", "app", "--since", "0s"]), "");
}

#[test]
fn a_cursor_resumes_exactly_across_a_restart() {
    let sb = Sandbox::new();
    sb.start("svc", "echo first; echo second; sleep 300");
    sb.ok(&["wait", "svc", "--until", "second"]);
    let out = sb.run(&["logs", "svc", "--cursor"]);
    assert_eq!(out.stdout, "first\nsecond\n");
    let cursor = out
        .stderr
        .trim()
        .strip_prefix("cursor: ")
        .expect("a cursor line")
        .to_string();
    assert_eq!(
        sb.ok(&["logs", "svc", "--after", &cursor]),
        "",
        "nothing new yet"
    );
    sb.ok(&["restart", "svc"]);
    sb.ok(&["wait", "svc", "--until", "second"]);
    let after = sb.ok(&["logs", "svc", "--after", &cursor]);
    assert_eq!(after, "[agent-procs] Restarted (manual)\nfirst\nsecond\n");
    let json = sb.ok(&["logs", "svc", "--json", "--tail", "1"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let last = v["cursor"].as_str().unwrap().to_string();
    assert_eq!(sb.ok(&["logs", "svc", "--after", &last]), "");
}

#[test]
fn json_lines_carry_every_field_and_replace_invalid_utf8() {
    let sb = Sandbox::new();
    sb.start("j", r"printf 'good\n\377bad\n'; echo oops >&2");
    sb.ok(&["wait", "j", "--exit"]);
    let out = sb.ok(&["logs", "j", "--both", "--json"]);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["line"], "good");
    assert_eq!(rows[1]["line"], "\u{fffd}bad");
    assert_eq!(rows[2]["stream"], "stderr");
    for row in &rows {
        for key in ["process", "stream", "seq", "time", "line", "cursor"] {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
        assert!(row["time"].as_str().unwrap().ends_with('Z'));
    }
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("{\"schema\":1,\"process\":\"j\",\"stream\":\"stdout\",\"seq\":"),
        "{first}"
    );
}

#[test]
fn max_bytes_keeps_the_newest_lines_and_says_what_was_cut() {
    let sb = Sandbox::new();
    sb.start("big", "seq 1 100");
    sb.ok(&["wait", "big", "--exit"]);
    let out = sb.run(&["logs", "big", "--max-bytes", "8"]);
    assert_eq!(out.stdout, "99\n100\n");
    assert!(
        out.stderr.contains("left out the 98 oldest lines"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_since_and_cursor_values_are_usage_errors() {
    let sb = Sandbox::new();
    let err = sb.fails(&["logs", "x", "--since", "yesterday"], 64);
    assert!(
        err.contains("--since takes 30s, 5m, 2h, 1d, restart or start"),
        "{err}"
    );
    let err = sb.fails(&["logs", "x", "--after", "nonsense"], 64);
    assert!(err.contains("--after takes a cursor"), "{err}");
    let err = sb.fails(&["logs", "x", "--follow", "--since", "5m"], 64);
    assert!(err.contains("cannot be combined with --follow"), "{err}");
    sb.fails(&["logs", "x", "--stderr", "--both"], 64);
    sb.start("x", "echo hi");
    sb.ok(&["wait", "x", "--exit"]);
    let err = sb.fails(&["logs", "x", "--grep", "(unclosed", "--regex"], 1);
    assert!(err.contains("invalid regex"), "{err}");
}

#[test]
fn follow_with_both_and_grep_replays_and_streams_in_order() {
    let sb = Sandbox::new();
    sb.start(
        "mix",
        "echo out-1; echo err-1 >&2; echo out-2; echo ready; while [ ! -e go ]; do sleep 0.01; done; \
         echo out-3; echo err-2 >&2; echo out-4",
    );
    sb.ok(&["wait", "mix", "--until", "ready"]);
    let mut follow = sb.command(&[
        "logs", "mix", "--follow", "--both", "--tail", "3", "--lines", "3",
    ]);
    let mut child = follow.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    // The replay arrives first; only then let the process go on.
    let mut replay = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        replay.push(line.trim_end().to_string());
    }
    std::fs::write(sb.root.join("go"), "").unwrap();
    let mut live = String::new();
    std::io::Read::read_to_string(&mut reader, &mut live).unwrap();
    assert!(child.wait().unwrap().success());
    // Two pipes: the daemon may read one before the other, so only the order
    // within each stream is certain.
    assert!(replay.contains(&"ready".to_string()), "{replay:?}");
    assert!(
        replay
            .iter()
            .all(|l| ["out-1", "err| err-1", "out-2", "ready"].contains(&l.as_str())),
        "{replay:?}"
    );
    let live: Vec<&str> = live.lines().collect();
    let (err, out): (Vec<&str>, Vec<&str>) = live.iter().partition(|l| l.starts_with("err| "));
    assert_eq!(err, ["err| err-2"], "{live:?}");
    assert_eq!(out, ["out-3", "out-4"], "{live:?}");
    let grep = sb.ok(&[
        "logs",
        "mix",
        "--follow",
        "--both",
        "--grep",
        "err",
        "--tail",
        "10",
        "--timeout",
        "5",
    ]);
    assert_eq!(grep, "err| err-1\nerr| err-2\n");
}

#[test]
fn a_deleted_log_dir_is_recreated_and_logging_goes_on() {
    let sb = Sandbox::new();
    sb.start(
        "ticker",
        "i=0; while :; do if [ -e go ]; then i=$((i + 1)); echo after-delete-$i; else echo waiting; fi; sleep 0.05; done",
    );
    sb.ok(&["wait", "ticker", "--until", "waiting"]);
    let logs = sb.session_dir().join("logs");
    std::fs::remove_dir_all(&logs).unwrap();
    std::fs::write(sb.root.join("go"), "").unwrap();
    // The writer notices within a second; 30 lines take about 1.5 s.
    sb.ok(&[
        "wait",
        "ticker",
        "--until",
        "after-delete-30",
        "--timeout",
        "20",
    ]);
    let text = String::from_utf8_lossy(&read(&sb.log("ticker", "stdout"))).into_owned();
    assert!(text.contains("after-delete-30"), "{text}");
    assert_eq!(sb.proc_status("ticker")["state"], "running");
}

#[test]
fn carriage_returns_and_nul_bytes_are_kept_exactly() {
    let sb = Sandbox::new();
    sb.start("raw", r"printf 'a\r\nb\000c\n\r\n'");
    sb.ok(&["wait", "raw", "--exit"]);
    assert_eq!(read(&sb.log("raw", "stdout")), b"a\r\nb\0c\n\r\n");
    let out = sb.run(&["logs", "raw"]);
    assert_eq!(out.raw_stdout, b"a\r\nb\0c\n\r\n");
}

#[test]
fn a_follower_too_slow_to_keep_up_is_told_what_it_lost_and_blocks_nobody() {
    let sb = Sandbox::new();
    sb.start("idle", "echo ready; sleep 300");
    sb.ok(&["wait", "idle", "--until", "ready"]);
    sb.start("flood", "while [ ! -e go ]; do sleep 0.01; done; yes 'a line of output' | head -c 20000000; echo done");
    let mut slow = sb.connect();
    slow.write_all(
        b"{\"type\":\"Logs\",\"target\":\"flood\",\"follow\":true,\"timeout_secs\":60}\n",
    )
    .unwrap();
    std::fs::write(sb.root.join("go"), "").unwrap();
    // While the follower reads nothing, the daemon keeps answering.
    sb.ok(&["wait", "flood", "--until", "done", "--timeout", "30"]);
    sb.ok(&["status"]);
    // Now read it all: somewhere before the end comes the count of what was lost.
    let mut reader = std::io::BufReader::new(slow);
    let mut dropped = None;
    let mut line = String::new();
    loop {
        line.clear();
        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap() == 0 {
            break;
        }
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["type"] == "LogEnd" {
            break;
        }
        let text = v["line"].as_str().unwrap_or_default();
        if text.starts_with("[agent-procs] ") && text.contains("lines dropped") {
            dropped = Some(text.to_string());
        }
        if text == "done" {
            break;
        }
    }
    let dropped = dropped.expect("a dropped-lines notice");
    assert!(
        dropped.ends_with("lines dropped: this reader was too slow"),
        "{dropped}"
    );
}

#[test]
fn since_restart_shows_nothing_of_an_earlier_run_while_the_new_one_is_silent() {
    let sb = Sandbox::new();
    sb.start("svc", "echo old-run; sleep 300");
    sb.ok(&["wait", "svc", "--until", "old-run"]);
    sb.ok(&["run", "sleep 300", "--name", "other"]);
    // Re-run under the same name after stopping: the new run prints nothing.
    sb.ok(&["stop", "svc"]);
    sb.ok(&["run", "sleep 300", "--name", "svc"]);
    assert_eq!(sb.ok(&["logs", "svc", "--since", "restart"]), "");
    assert_eq!(sb.ok(&["logs", "svc", "--since", "start"]), "old-run\n");
}
