//! What users of cargo, git and grep expect of a command line, driven through the
//! real binary: `help CMD`, did-you-mean for typos, `-n`, names refused before any
//! daemon starts, grep's exit status, quiet second stops, one `ready` per run,
//! no files left behind by `down`, `session clean`, escapees named on stderr, and
//! man pages that lint clean.

mod common;

use common::*;
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Files in the sandbox's runtime dir, sorted (none when it does not exist).
fn runtime_files(sb: &Sandbox) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(&sb.runtime) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

#[test]
fn help_cmd_prints_what_cmd_help_prints() {
    let sb = Sandbox::new();
    for cmd in ["logs", "stop", "session", "up"] {
        let via_help = sb.ok(&["help", cmd]);
        assert_eq!(via_help, sb.ok(&[cmd, "--help"]), "help {cmd}");
        assert!(
            via_help.starts_with(&format!("usage: agent-procs {cmd}")),
            "{via_help}"
        );
    }
    assert_eq!(sb.ok(&["help"]), sb.ok(&["--help"]));
    let err = sb.fails(&["help", "lgos"], 64);
    assert_eq!(
        err,
        "agent-procs: unknown command 'lgos'; did you mean 'logs'?\n"
    );
}

#[test]
fn typos_get_one_line_with_the_nearest_command_or_flag_and_exit_64() {
    let sb = Sandbox::new();
    let cases: [(&[&str], &str); 7] = [
        (
            &["stauts"],
            "unknown command 'stauts'; did you mean 'status'?",
        ),
        (
            &["frobnicate"],
            "unknown command 'frobnicate'; see 'agent-procs --help'",
        ),
        (
            &["logs", "web", "--tial", "3"],
            "unknown option '--tial' for logs; did you mean '--tail'?",
        ),
        (
            &["status", "--jsno"],
            "unknown option '--jsno' for status; did you mean '--json'?",
        ),
        (
            &["stop", "web", "--follow"],
            "unknown option '--follow' for stop; see 'agent-procs stop --help'",
        ),
        (
            &["session", "lsit"],
            "unknown session command 'lsit'; did you mean 'list'?",
        ),
        (
            &["--sesion", "x", "status"],
            "unknown option '--sesion'; did you mean '--session'?",
        ),
    ];
    for (args, want) in cases {
        let err = sb.fails(args, 64);
        // One line: the hint, not a usage dump.
        assert_eq!(err, format!("agent-procs: {want}\n"), "{args:?}");
    }
    assert!(runtime_files(&sb).is_empty(), "{:?}", runtime_files(&sb));
}

#[test]
fn logs_n_is_tail() {
    let sb = Sandbox::new();
    sb.start("count", "seq 1 5");
    sb.ok(&["wait", "count", "--exit", "--timeout", "20"]);
    assert_eq!(sb.ok(&["logs", "count", "-n", "2"]), "4\n5\n");
    assert_eq!(sb.ok(&["logs", "count", "-n2"]), "4\n5\n");
    assert_eq!(
        sb.ok(&["logs", "count", "-n", "2"]),
        sb.ok(&["logs", "count", "--tail", "2"])
    );
}

#[test]
fn an_invalid_name_or_session_exits_64_before_any_daemon_starts() {
    let sb = Sandbox::new();
    let cases: [&[&str]; 4] = [
        &["run", "sleep 30", "--name", "a/b"],
        &["run", "sleep 30", "--name", "-x"],
        &["--session", "x y", "run", "sleep 30"],
        &["run", "sleep 30", "--session", "../up"],
    ];
    for args in cases {
        let err = sb.fails(args, 64);
        assert!(err.contains("invalid"), "{args:?}: {err}");
    }
    let mut cmd = sb.command(&["run", "sleep 30"]);
    cmd.env("AGENT_PROCS_SESSION", "no/slash");
    let out = run_bounded(cmd, CALL_LIMIT);
    assert_eq!(out.code, 64, "{}", out.stderr);
    assert!(
        out.stderr.contains("invalid session name 'no/slash'")
            && out.stderr.contains("AGENT_PROCS_SESSION"),
        "{}",
        out.stderr
    );
    // No socket, pid file or lock, no state, no daemon.
    assert!(runtime_files(&sb).is_empty(), "{:?}", runtime_files(&sb));
    assert!(!sb.state.exists(), "a state dir was made");
    assert_eq!(sb.daemon_pid(), None);
}

#[test]
fn logs_grep_exits_1_when_nothing_matched_as_grep_does() {
    let sb = Sandbox::new();
    sb.start("words", "printf 'alpha\\nbeta\\n'");
    sb.ok(&["wait", "words", "--exit", "--timeout", "20"]);
    assert_eq!(sb.ok(&["logs", "words", "--grep", "beta"]), "beta\n");
    let nothing = sb.run(&["logs", "words", "--grep", "gamma"]);
    assert_eq!(
        (nothing.code, nothing.stdout.as_str()),
        (1, ""),
        "{}",
        nothing.stderr
    );
    assert_eq!(nothing.stderr, "", "no match is not an error message");
    // Only an unknown process is exit 2, with or without --grep.
    sb.fails(&["logs", "nosuch", "--grep", "x"], 2);
    // Without --grep an empty answer is still a success.
    sb.start("quiet", "true");
    sb.ok(&["wait", "quiet", "--exit", "--timeout", "20"]);
    // Following: 1 when the follow ends without a matching line.
    let follow = sb.run(&[
        "logs",
        "words",
        "--follow",
        "--grep",
        "gamma",
        "--timeout",
        "1",
    ]);
    assert_eq!(follow.code, 1, "{}", follow.stderr);
    let follow = sb.run(&[
        "logs",
        "words",
        "--follow",
        "--grep",
        "alpha",
        "--timeout",
        "1",
    ]);
    assert_eq!(
        (follow.code, follow.stdout.as_str()),
        (0, "alpha\n"),
        "{}",
        follow.stderr
    );
}

#[test]
fn a_second_stop_says_not_running_and_json_carries_name_state_and_exit_code() {
    let sb = Sandbox::new();
    sb.start("web", "sleep 300");
    let first: Value = serde_json::from_str(&sb.ok(&["stop", "web", "--json"])).unwrap();
    assert_eq!(first["message"], "stopped web", "{first}");
    assert_eq!(first["name"], "web", "{first}");
    assert_eq!(first["state"], "exited", "{first}");
    assert!(first.get("exit_code").is_some(), "{first}");
    assert_eq!(first["exit_signal"], "SIGTERM", "{first}");

    let again = sb.run(&["stop", "web"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stdout, "web was not running\n");
    // By id too, and it names the process.
    assert_eq!(sb.ok(&["stop", "p1"]), "web was not running\n");

    let restarted: Value = serde_json::from_str(&sb.ok(&["restart", "web", "--json"])).unwrap();
    assert_eq!(restarted["name"], "web", "{restarted}");
    assert_eq!(restarted["state"], "running", "{restarted}");
    assert!(restarted.get("exit_code").is_some(), "{restarted}");
    assert!(
        restarted["pid"].as_i64().is_some_and(|p| p > 0),
        "{restarted}"
    );

    sb.start("done", "exit 3");
    sb.ok(&["wait", "done", "--exit", "--timeout", "20"]);
    let stopped: Value = serde_json::from_str(&sb.ok(&["stop", "done", "--json"])).unwrap();
    assert_eq!(stopped["message"], "done was not running", "{stopped}");
    assert_eq!(stopped["exit_code"], 3, "{stopped}");
    assert_eq!(stopped["state"], "exited", "{stopped}");
}

#[test]
fn a_repeated_up_emits_no_new_ready_events_for_what_it_left_alone() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.root.join("agent-procs.yaml"),
        "processes:
  api:
    cmd: sh -c 'echo api up; exec sleep 300'
    ready: api up
  web:
    cmd: sh -c 'echo web up; exec sleep 300'
    depends_on: api
    ready: web up
",
    )
    .unwrap();
    sb.ok(&["up"]);
    let again = sb.ok(&["up"]);
    assert!(again.contains("all processes started"), "{again}");
    // A marker after the second up: once its start is seen, all before it was.
    sb.start("marker1", "sleep 300");
    let seen = events_until(&sb, "marker1");
    let count = |seen: &[Value], name: &str, what: &str| {
        seen.iter()
            .filter(|e| e["name"] == name && e["event"] == what)
            .count()
    };
    for name in ["api", "web"] {
        assert_eq!(count(&seen, name, "started"), 1, "{name}: {seen:#?}");
        assert_eq!(count(&seen, name, "ready"), 1, "{name}: {seen:#?}");
    }
    // A restart is a new run, whose readiness is news again.
    sb.ok(&["restart", "web"]);
    sb.ok(&["up"]);
    sb.start("marker2", "sleep 300");
    let seen = events_until(&sb, "marker2");
    assert_eq!(count(&seen, "web", "ready"), 2, "{seen:#?}");
    assert_eq!(count(&seen, "api", "ready"), 1, "{seen:#?}");
}

/// The session's events from the first one held, up to the start of `marker`.
fn events_until(sb: &Sandbox, marker: &str) -> Vec<Value> {
    let mut events = sb
        .command(&["events", "--since", "0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting events");
    let stdout = events.stdout.take().expect("events stdout");
    let lines = lines_of(stdout);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen: Vec<Value> = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            break false;
        };
        let event: Value = serde_json::from_str(&line).unwrap();
        let end = event["name"] == marker && event["event"] == "started";
        seen.push(event);
        if end {
            break true;
        }
    };
    let _ = events.kill();
    let _ = events.wait();
    assert!(found, "no start of {marker} within 30 s; got {seen:#?}");
    seen
}

#[test]
fn down_leaves_no_lock_file_and_the_next_run_starts_a_daemon() {
    let sb = Sandbox::new();
    sb.start("web", "sleep 300");
    assert!(
        runtime_files(&sb).contains(&"default.lock".to_string()),
        "{:?}",
        runtime_files(&sb)
    );
    sb.ok(&["down"]);
    assert!(runtime_files(&sb).is_empty(), "{:?}", runtime_files(&sb));
    // The lock is made anew by the next start.
    sb.start("web", "sleep 300");
    assert!(sb.daemon_pid().is_some());
}

#[test]
fn session_clean_removes_what_a_dead_daemon_left_and_names_it() {
    let sb = Sandbox::new();
    let pid = sb.start("web", "sleep 300");
    let _guard = KillOnDrop(pid);
    let daemon = sb.daemon_pid().expect("a daemon pid");
    // A second, live session in the same runtime dir must be left alone.
    sb.ok(&["--session", "live", "run", "sleep 300", "--name", "x"]);
    let _live = DownOnDrop(&sb, "live");
    kill(daemon, libc::SIGKILL);
    assert!(
        wait_gone(daemon, Duration::from_secs(15)),
        "daemon survived SIGKILL"
    );
    assert!(runtime_files(&sb).contains(&"default.sock".to_string()));

    // Planted things the clean must not follow or take: a link named like a pid
    // file, pointing at a file of ours outside.
    let outside = sb.root.join("precious");
    std::fs::write(&outside, "keep me").unwrap();
    std::os::unix::fs::symlink(&outside, sb.runtime.join("planted.pid")).unwrap();

    let out = sb.run(&["session", "clean"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = sb.runtime.display().to_string();
    // 0.6's line on stdout, exactly; the paths removed on stderr.
    assert_eq!(
        out.stdout, "cleaned stale session: default\n",
        "{}",
        out.stderr
    );
    let note = format!(
        "agent-procs: note: session 'default': removed {run}/default.sock, {run}/default.pid, {run}/default.lock, {}\n",
        sb.session_dir().display()
    );
    assert!(out.stderr.contains(&note), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("planted.pid (not a regular file of yours)"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
    let left = runtime_files(&sb);
    assert!(left.iter().all(|f| !f.starts_with("default.")), "{left:?}");
    assert!(left.contains(&"live.sock".to_string()), "{left:?}");
    assert!(left.contains(&"planted.pid".to_string()), "{left:?}");
    assert!(!sb.session_dir().exists());
    // The live session still answers; a second clean has nothing left to do.
    sb.ok(&["--session", "live", "status"]);
    let again = sb.run(&["session", "clean"]);
    assert_eq!(again.stdout, "", "{}", again.stderr);
}

/// Shuts down a second session of a sandbox, which the sandbox does not know of.
struct DownOnDrop<'a>(&'a Sandbox, &'static str);

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        self.0.run(&["--session", self.1, "down"]);
    }
}

#[test]
fn session_clean_leaves_files_that_are_not_ours() {
    if !is_root() {
        return; // only root can make a file owned by someone else
    }
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.runtime).unwrap();
    std::fs::set_permissions(
        &sb.runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let foreign = sb.runtime.join("other.pid");
    std::fs::write(&foreign, "1\n").unwrap();
    std::os::unix::fs::chown(&foreign, Some(64_123), Some(64_123)).unwrap();
    let out = sb.run(&["session", "clean"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(foreign.exists(), "a file of another user was removed");
    assert!(
        out.stderr
            .contains("other.pid (not a regular file of yours)"),
        "{}",
        out.stderr
    );
}

struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill(self.0, libc::SIGKILL);
    }
}

/// Start `name` with a child that calls setsid, and return the child's pid once
/// it runs `sleep SECS` (before that its command line is setsid's).
fn start_with_escapee(sb: &Sandbox, name: &str, secs: &str) -> i32 {
    sb.start(
        name,
        &format!("setsid sleep {secs} & echo escapee $!; exec sleep 300"),
    );
    let line = sb.ok(&["wait", name, "--until", "escapee", "--timeout", "20"]);
    let pid: i32 = line
        .trim()
        .trim_start_matches("escapee")
        .trim()
        .parse()
        .unwrap();
    await_exec(pid, &format!("sleep {secs}"));
    pid
}

#[test]
fn stop_and_down_name_setsid_escapees_on_stderr() {
    if !need(&["setsid"], "util-linux") {
        return;
    }
    let sb = Sandbox::new();
    let first = start_with_escapee(&sb, "one", "311");
    let _g1 = KillOnDrop(first);
    let out = sb.run(&["stop", "one"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "stopped one\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("pid {first} (sleep 311)"))
            && out.stderr.contains(&format!("kill {first}")),
        "{}",
        out.stderr
    );
    let json: Value = serde_json::from_str(&sb.ok(&["stop", "one", "--json"])).unwrap();
    assert_eq!(
        json["survivors"],
        serde_json::json!([{"pid": first, "command": "sleep 311"}]),
        "{json}"
    );

    let second = start_with_escapee(&sb, "two", "312");
    let _g2 = KillOnDrop(second);
    let out = sb.run(&["down"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "all processes stopped\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("pid {second} (sleep 312)")),
        "{}",
        out.stderr
    );
    assert!(
        alive(second),
        "down is not supposed to kill what left the group"
    );
}

#[test]
fn man_pages_have_no_text_line_over_80_bytes_and_lint_clean_at_style_level() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/man/");
    let pages = ["agent-procs.1", "agent-procs.yaml.5"];
    for page in pages {
        let text = std::fs::read_to_string(format!("{dir}{page}")).unwrap();
        let mut no_fill = false;
        for (n, line) in text.lines().enumerate() {
            match line.split_whitespace().next() {
                Some(".nf" | ".EX") => no_fill = true,
                Some(".fi" | ".EE") => no_fill = false,
                _ => {}
            }
            // mandoc's style check is about filled text lines, not macro lines
            // or examples shown as they are.
            if !no_fill && !line.starts_with(['.', '\'']) {
                assert!(
                    line.len() <= 80,
                    "{page}:{}: {} bytes: {line}",
                    n + 1,
                    line.len()
                );
            }
        }
    }
    let lint = std::process::Command::new("mandoc")
        .args(["-T", "lint", "-W", "style"])
        .args(pages.map(|p| format!("{dir}{p}")))
        .output();
    match lint {
        Ok(out) => assert!(
            out.status.success() && out.stdout.is_empty(),
            "mandoc -T lint -W style:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("mandoc not run ({e}); the line-length check above stands in"),
    }
}
