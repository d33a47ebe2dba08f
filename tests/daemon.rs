//! The daemon itself: start-up races, stale sockets, crash recovery, hostile
//! input on the socket, other users, signals, and resource hygiene.

mod common;

use common::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn garbage_on_the_socket_gets_errors_and_the_connection_stays_usable() {
    let sb = Sandbox::new();
    sb.start("x", "sleep 30");
    let mut s = sb.connect();
    let nested = format!("{}\n", "[".repeat(100_000));
    let huge = format!(
        "{{\"type\":\"Status\",\"pad\":\"{}\"}}\n",
        "a".repeat(2 * 1024 * 1024)
    );
    let cases: Vec<(&[u8], &str)> = vec![
        (b"not json\n", "invalid request"),
        (b"{\"type\":\"Run\"\n", "invalid request"),
        (b"\x00\xff\xfe\x01\n", "invalid request"),
        (b"{\"type\":\"Stop\"}\n", "invalid request"),
        (b"{\"type\":\"Teleport\"}\n", "unknown request type"),
        (nested.as_bytes(), "invalid request"),
        (huge.as_bytes(), "request longer than"),
    ];
    for (garbage, want) in cases {
        let reply = ask(&mut s, garbage);
        assert_eq!(reply["type"], "Error", "{reply}");
        assert!(reply["message"].as_str().unwrap().contains(want), "{reply}");
        let status = ask(&mut s, b"{\"type\":\"Status\"}\n");
        assert_eq!(status["type"], "Status", "{status}");
    }
    assert_eq!(
        ask(&mut s, b"{\"type\":\"Hello\",\"version\":1}\n")["version"],
        1
    );
    // A truncated request followed by a hang-up harms nobody.
    let mut t = sb.connect();
    t.write_all(b"{\"type\":\"Sta").unwrap();
    drop(t);
    assert_eq!(sb.proc_status("x")["state"], "running");
}

#[test]
fn many_idle_connections_do_not_block_a_cli_call() {
    let sb = Sandbox::new();
    sb.start("x", "sleep 30");
    let idle: Vec<_> = (0..100).map(|_| sb.connect()).collect();
    sb.ok(&["status"]);
    sb.start("y", "sleep 30");
    drop(idle);
    sb.ok(&["stop", "y"]);
}

#[test]
fn concurrent_first_calls_start_exactly_one_daemon() {
    let sb = Sandbox::new();
    let children: Vec<_> = (0..20)
        .map(|i| {
            let mut cmd = sb.command(&["run", "sleep 60", "--name", &format!("w{i}")]);
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(sb.status().as_array().unwrap().len(), 20);
    let log = std::fs::read_to_string(sb.daemon_log()).unwrap();
    assert_eq!(log.matches("started for session").count(), 1, "{log}");
}

#[test]
fn a_killed_daemon_is_replaced_and_its_orphans_are_stopped() {
    let sb = Sandbox::new();
    let orphan = sb.start("old", "sleep 300");
    let daemon = sb.daemon_pid().unwrap();
    kill(daemon, libc::SIGKILL);
    assert!(wait_gone(daemon, Duration::from_secs(10)));
    assert!(
        sb.socket().exists(),
        "the stale socket is the point of this test"
    );
    sb.fails(&["status"], 1);
    sb.start("new", "sleep 30");
    let replacement = sb.daemon_pid().unwrap();
    assert_ne!(replacement, daemon);
    assert!(
        wait_gone(orphan, Duration::from_secs(10)),
        "orphan {orphan} of the dead daemon survived"
    );
    let log = std::fs::read_to_string(sb.daemon_log()).unwrap();
    assert!(
        log.contains("previous daemon died without stopping old"),
        "{log}"
    );
    // `status` tells what was done, on stderr, leaving the table and JSON alone.
    for args in [&["status"][..], &["status", "--json"]] {
        let out = sb.run(args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(
            out.stderr.contains(&format!(
                "note: the previous daemon (pid {daemon}) was killed without stopping its processes"
            )) && out.stderr.contains(&format!("old (pid {orphan})")),
            "{}",
            out.stderr
        );
        assert!(!out.stdout.contains("previous daemon"), "{}", out.stdout);
    }
    let json: serde_json::Value = serde_json::from_str(&sb.ok(&["status", "--json"])).unwrap();
    assert!(json.is_array(), "status --json keeps its shape: {json}");
}

#[test]
fn a_recorded_pid_now_used_by_another_process_is_never_signalled() {
    let sb = Sandbox::new();
    sb.start("first", "sleep 30");
    sb.ok(&["down"]);
    // An unrelated process in a group of its own, and a state.json that says a
    // killed daemon left it running: same pid and group, another start time,
    // as when the pid was reused after the old process ended.
    let mut stranger = std::process::Command::new("sleep")
        .arg("300")
        .process_group(0)
        .spawn()
        .expect("starting sleep");
    let pid = stranger.id();
    let state = serde_json::json!({
        "daemon_pid": 999_999,
        "processes": [{"name": "old", "id": "p1", "pid": pid, "pgid": pid, "start_ticks": 1, "command": "sleep 300"}]
    });
    std::fs::write(sb.session_dir().join("state.json"), state.to_string()).unwrap();
    sb.start("new", "sleep 30");
    let alive_after = alive(pid as i32);
    let _ = stranger.kill();
    let _ = stranger.wait();
    assert!(
        alive_after,
        "the daemon signalled a process it did not start"
    );
    let out = sb.run(&["status"]);
    assert!(!out.stderr.contains("previous daemon"), "{}", out.stderr);
    let log = std::fs::read_to_string(sb.daemon_log()).unwrap();
    assert!(!log.contains("without stopping old"), "{log}");
}

#[test]
fn termination_signals_stop_everything_and_clean_up() {
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let sb = Sandbox::new();
        let child = sb.start("x", "sleep 300");
        let daemon = sb.daemon_pid().unwrap();
        kill(daemon, signal);
        assert!(
            wait_gone(daemon, Duration::from_secs(15)),
            "signal {signal}"
        );
        assert!(!alive(child), "signal {signal}: child survived");
        assert!(!sb.socket().exists(), "signal {signal}: socket left");
    }
}

#[test]
fn rapid_restarts_leave_no_zombies_and_no_descriptor_growth() {
    let sb = Sandbox::new();
    sb.start("churn", "sleep 300");
    let daemon = sb.daemon_pid().unwrap();
    // Everything over one connection, so no CLI connection is half-closed while counting.
    let mut s = sb.connect();
    let restart = b"{\"type\":\"Restart\",\"target\":\"churn\"}\n";
    assert_eq!(ask(&mut s, restart)["type"], "RunOk");
    // A Status round trip first: the daemon answers it only after finishing the turn
    // that answered the restart (it still writes state.json after replying).
    assert_eq!(ask(&mut s, b"{\"type\":\"Status\"}\n")["type"], "Status");
    let fds = fd_count(daemon);
    for _ in 0..200 {
        let reply = ask(&mut s, restart);
        assert_eq!(reply["type"], "RunOk", "{reply}");
    }
    assert_eq!(ask(&mut s, b"{\"type\":\"Status\"}\n")["type"], "Status");
    assert_eq!(fd_count(daemon), fds, "descriptor count grew");
    assert_eq!(zombie_children(daemon), Vec::<i32>::new());
}

#[test]
fn an_unsafe_runtime_dir_is_refused() {
    let sb = Sandbox::new();
    std::fs::create_dir(&sb.runtime).unwrap();
    std::fs::set_permissions(&sb.runtime, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = sb.fails(&["run", "sleep 1"], 1);
    assert!(
        err.contains("open to other users") && err.contains("rm -rf") && !err.contains("chmod"),
        "{err}"
    );
    std::fs::remove_dir(&sb.runtime).unwrap();
    std::os::unix::fs::symlink("/tmp", &sb.runtime).unwrap();
    let err = sb.fails(&["run", "sleep 1"], 1);
    assert!(err.contains("is a symbolic link"), "{err}");
    std::fs::remove_file(&sb.runtime).unwrap();
}

#[test]
fn a_runtime_dir_others_can_only_read_is_made_private() {
    // 0.6's own tests make /tmp/agent-procs-<uid> with a plain mkdir (755).
    let sb = Sandbox::new();
    std::fs::create_dir(&sb.runtime).unwrap();
    std::fs::set_permissions(&sb.runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mode =
        |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    sb.ok(&["session", "list"]);
    assert_eq!(mode(&sb.runtime), 0o700);
    std::fs::set_permissions(&sb.runtime, std::fs::Permissions::from_mode(0o750)).unwrap();
    sb.start("x", "sleep 30");
    assert_eq!(mode(&sb.runtime), 0o700);
    // One that others could write to stays refused: anything may be planted there.
    std::fs::set_permissions(&sb.runtime, std::fs::Permissions::from_mode(0o770)).unwrap();
    let err = sb.fails(&["status"], 1);
    assert!(err.contains("has mode 770, open to other users"), "{err}");
    std::fs::set_permissions(&sb.runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    sb.ok(&["down"]);
}

#[test]
fn files_are_private() {
    let sb = Sandbox::new();
    sb.start("x", "echo hi");
    let mode =
        |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sb.runtime), 0o700);
    assert_eq!(mode(&sb.socket()), 0o600);
    assert_eq!(mode(&sb.runtime.join("default.pid")), 0o600);
    assert_eq!(mode(&sb.session_dir()), 0o700);
    assert_eq!(mode(&sb.daemon_log()), 0o600);
    assert_eq!(mode(&sb.session_dir().join("state.json")), 0o600);
}

#[test]
fn another_uid_cannot_talk_to_the_daemon() {
    if !is_root() {
        skip_notice("needs root to act as another uid");
        return;
    }
    if !need(&["setpriv", "python3"], "util-linux and python3") {
        return;
    }
    let sb = Sandbox::new();
    sb.start("x", "sleep 30");
    // Open the doors that the modes normally keep shut, to reach the credential check.
    for (path, mode) in [
        (&sb.root, 0o755),
        (&sb.runtime, 0o755),
        (&sb.socket(), 0o666),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // Prints "refused" unless the daemon answers (a reset or a closed socket both count).
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.settimeout(10)\n\
         try:\n    s.connect({:?})\n    s.sendall(b'{{\"type\":\"Status\"}}\\n')\n    data = s.recv(4096)\n\
         except OSError:\n    data = b''\n\
         print('answered', data) if data else print('refused')",
        sb.socket().display().to_string()
    );
    // An unused uid, dropped to with setpriv (no groups, no capabilities left).
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(setpriv_args(64_102))
        .args(["--", python_for_anyone(), "-c", &script]);
    let out = cmd.output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "refused",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&sb.runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let log = std::fs::read_to_string(sb.daemon_log()).unwrap();
    assert!(log.contains("refused a connection from uid 64102"), "{log}");
    assert_eq!(sb.proc_status("x")["state"], "running");
}

#[test]
fn the_cli_refuses_a_socket_served_by_another_uid() {
    if !is_root() {
        skip_notice("needs root to act as another uid");
        return;
    }
    if !need(&["setpriv", "python3"], "util-linux and python3") {
        return;
    }
    let sb = Sandbox::new();
    std::fs::create_dir(&sb.runtime).unwrap();
    std::fs::set_permissions(&sb.runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    // An impostor, run as an unused uid (setpriv): binds where our socket belongs
    // and listens, so SO_PEERCRED reports its uid. It prints whatever it is sent.
    let script = format!(
        "import os, socket, sys\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.bind({:?})\n\
         s.listen(8)\n\
         print('listening', flush=True)\n\
         s.settimeout(20)\n\
         c, _ = s.accept()\n\
         c.settimeout(2)\n\
         try:\n    data = c.recv(65536)\n\
         except OSError:\n    data = b''\n\
         print('received', len(data), flush=True)",
        sb.socket().display().to_string()
    );
    // The runtime dir is opened only for the impostor to bind in, then closed again.
    std::fs::set_permissions(&sb.runtime, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut impostor = std::process::Command::new("setpriv")
        .args(setpriv_args(64_103))
        .args(["--", python_for_anyone(), "-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(impostor.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "listening\n");
    std::fs::set_permissions(&sb.runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = sb.fails(&["run", "echo secret-command", "--env", "TOKEN=secret"], 1);
    assert!(
        err.contains("served by uid 64103") && err.contains("refusing"),
        "{err}"
    );
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "received 0\n", "the impostor got bytes");
    let _ = impostor.wait();
}

#[test]
fn a_request_sent_just_before_hanging_up_is_still_carried_out() {
    let sb = Sandbox::new();
    let pid = sb.start("x", "sleep 300");
    let mut s = sb.connect();
    // Freeze the daemon so the request and the hang-up reach it as one event.
    let daemon = sb.daemon_pid().unwrap();
    kill(daemon, libc::SIGSTOP);
    s.write_all(b"{\"type\":\"StopAll\",\"timeout_ms\":5000}\n")
        .unwrap();
    drop(s);
    kill(daemon, libc::SIGCONT);
    assert!(
        wait_gone(pid, Duration::from_secs(10)),
        "the stop was lost with its connection"
    );
    assert_eq!(sb.ok(&["wait", "x", "--exit"]), "exited by SIGTERM\n");
}

#[test]
fn a_socket_path_too_long_for_sun_path_is_a_clear_error() {
    let sb = Sandbox::new();
    let deep = sb.root.join("d".repeat(120));
    let mut cmd = sb.command(&["run", "sleep 1"]);
    cmd.env("AGENT_PROCS_RUNTIME_DIR", &deep);
    let out = run_bounded(cmd, CALL_LIMIT);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("longer than the 107 a Unix socket path can hold"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("shorter session name or AGENT_PROCS_RUNTIME_DIR"),
        "{}",
        out.stderr
    );
}

const STATUS: &[u8] = b"{\"type\":\"Status\"}\n";

/// A daemon with one process whose first line was awaited, a connection to it
/// that has been answered once, and the daemon's descriptor count then.
fn settled_daemon(sb: &Sandbox) -> (i32, std::os::unix::net::UnixStream, usize) {
    sb.start("first", "echo hi; sleep 300");
    sb.ok(&["wait", "first", "--until", "hi"]);
    let daemon = sb.daemon_pid().unwrap();
    let mut s = sb.connect();
    assert_eq!(ask(&mut s, STATUS)["type"], "Status");
    let before = fd_count(daemon);
    (daemon, s, before)
}

#[test]
fn an_idle_process_costs_the_daemon_four_descriptors() {
    let sb = Sandbox::new();
    let (daemon, mut s, before) = settled_daemon(&sb);
    let status = STATUS;
    for i in 0..5 {
        let run = format!("{{\"type\":\"Run\",\"command\":\"sleep 300\",\"name\":\"s{i}\"}}\n");
        assert_eq!(ask(&mut s, run.as_bytes())["type"], "RunOk");
    }
    assert_eq!(ask(&mut s, status)["type"], "Status");
    // Two pipes and two log files each; indexes are open only while output flows.
    assert_eq!(fd_count(daemon) - before, 5 * 4);
}

#[test]
fn a_process_whose_wait_was_answered_costs_four_descriptors_again() {
    let sb = Sandbox::new();
    let (daemon, mut s, before) = settled_daemon(&sb);
    let status = STATUS;
    let run =
        b"{\"type\":\"Run\",\"command\":\"sleep 1; echo ready; sleep 300\",\"name\":\"late\"}\n";
    assert_eq!(ask(&mut s, run)["type"], "RunOk");
    // The wait holds the indexes open for the awaited line; its answer lets them go.
    sb.ok(&["wait", "late", "--until", "ready", "--timeout", "20"]);
    assert_eq!(ask(&mut s, status)["type"], "Status");
    assert_eq!(ask(&mut s, status)["type"], "Status");
    assert_eq!(fd_count(daemon) - before, 4);
}

/// The parent pid in /proc/PID/stat, or None once the process is reaped.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit(')').next()?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn an_orphaned_grandchild_is_adopted_and_reaped_by_the_daemon() {
    if !need(&["setsid"], "util-linux") {
        return;
    }
    let sb = Sandbox::new();
    // The inner shell exits at once and leaves its child (in a session of its
    // own, so the stop of `parent` is no help) without a parent.
    sb.start(
        "parent",
        "sh -c 'setsid sleep 2 & echo orphan $!'; sleep 300",
    );
    let line = sb.ok(&["wait", "parent", "--until", "orphan", "--timeout", "10"]);
    let orphan: i32 = line.trim().trim_start_matches("orphan ").parse().unwrap();
    let daemon = sb.daemon_pid().expect("the daemon's pid");
    // Adopted by the daemon (the subreaper), not by init.
    eventually(
        Duration::from_secs(10),
        &format!("the daemon {daemon} to adopt orphan {orphan}"),
        || match parent_of(orphan) {
            Some(p) if p == daemon => Ok(()),
            Some(p) => Err(format!("its parent is {p}")),
            None => panic!("orphan {orphan} ended before it was seen adopted"),
        },
    );
    // When it exits, the daemon reaps it: no zombie is left behind.
    assert!(wait_gone(orphan, Duration::from_secs(10)));
    eventually(
        Duration::from_secs(10),
        &format!("orphan {orphan} to be reaped"),
        || {
            done_or(
                parent_of(orphan).is_none(),
                format!("zombies of the daemon: {:?}", zombie_children(daemon)),
            )
        },
    );
    assert_eq!(zombie_children(daemon), Vec::<i32>::new());
}

/// A python3 that another uid can run (a user's pyenv shim under /root is not).
fn python_for_anyone() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// The soft and hard "Max open files" of a process.
fn fd_limits(pid: i32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut words = line["Max open files".len()..].split_whitespace();
    Some((words.next()?.to_string(), words.next()?.to_string()))
}

#[test]
fn the_daemon_raises_its_soft_descriptor_limit_to_the_hard_one() {
    let sb = Sandbox::new();
    // Soft 256, hard 4096 for the CLI, so for the daemon it starts.
    let mut cmd = std::process::Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -Sn 256 && ulimit -Hn 4096 && exec \"$0\" \"$@\"",
        BIN,
        "run",
        "sleep 30",
        "--name",
        "x",
    ])
    .current_dir(&sb.root)
    .stdin(std::process::Stdio::null());
    sb.isolate(&mut cmd);
    let out = run_bounded(cmd, CALL_LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let daemon = sb.daemon_pid().expect("the daemon's pid");
    assert_eq!(
        fd_limits(daemon),
        Some(("4096".to_string(), "4096".to_string())),
        "the daemon did not raise its soft limit to the hard one"
    );
}

/// Where `pid`'s executable is.
fn exe_of(pid: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).expect("reading the daemon's executable")
}

/// `session list --json` says the sandbox's session is running.
fn listed_as_running(sb: &Sandbox, cli: &Path) -> bool {
    let mut cmd = Command::new(cli);
    sb.isolate(cmd.args(["session", "list", "--json"]));
    let out = run_bounded(cmd, CALL_LIMIT);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("session list --json");
    v["sessions"].as_array().is_some_and(|s| {
        s.iter()
            .any(|s| s["name"] == sb.session.as_str() && s["running"] == true)
    })
}

#[test]
fn the_daemon_runs_from_its_own_executable_beside_the_cli() {
    // Issue 19: the daemon alone is a smaller program, so less private memory.
    let sb = Sandbox::new();
    sb.start("a", "sleep 100");
    let pid = sb.daemon_pid().expect("the daemon's pid");
    let exe = exe_of(pid);
    assert_eq!(
        exe.file_name().and_then(|n| n.to_str()),
        Some("agent-procs-daemon"),
        "the daemon runs {}",
        exe.display()
    );
    assert_eq!(exe.parent(), Path::new(BIN).parent());
    assert!(listed_as_running(&sb, Path::new(BIN)));
    assert_eq!(sb.proc_status("a")["state"], "running");
}

#[test]
fn without_the_daemon_executable_the_cli_runs_its_own_daemon_command() {
    // An older install, or a CLI copied alone: `agent-procs __daemon` as before.
    let sb = Sandbox::new();
    let dir = sb.root.join("bin");
    std::fs::create_dir(&dir).expect("creating a bin dir");
    let cli = dir.join("agent-procs");
    if std::fs::hard_link(BIN, &cli).is_err() {
        std::fs::copy(BIN, &cli).expect("copying the CLI");
    }
    let mut cmd = Command::new(&cli);
    sb.isolate(cmd.args(["run", "--name", "a", "sleep 100"]))
        .current_dir(&sb.root)
        .stdin(Stdio::null());
    let out = run_bounded(cmd, CALL_LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let pid = sb.daemon_pid().expect("the daemon's pid");
    assert_eq!(exe_of(pid), cli);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the daemon's cmdline");
    assert!(
        cmdline.windows(10).any(|w| w == b"\0__daemon\0"),
        "{}",
        String::from_utf8_lossy(&cmdline)
    );
    assert!(listed_as_running(&sb, &cli));
    assert_eq!(sb.proc_status("a")["state"], "running");
}

#[test]
fn the_daemon_executable_run_by_hand_says_who_starts_it() {
    for args in [
        &[][..],
        &["status"][..],
        &["__daemon"][..],
        &["__daemon", "s", "extra"][..],
    ] {
        let out = run_bounded(
            {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent-procs-daemon"));
                cmd.args(args).stdin(Stdio::null());
                cmd
            },
            CALL_LIMIT,
        );
        assert_eq!(out.code, 64, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("started by agent-procs")
                && out.stderr.contains("run agent-procs instead"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

/// Resident KiB of `pid`'s heap (`[heap]` in smaps).
fn heap_rss_kib(pid: i32) -> u64 {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("reading smaps");
    let mut in_heap = false;
    for line in smaps.lines() {
        // A mapping's header starts with its range, `start-end` in hex.
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_heap = line.trim_end().ends_with("[heap]");
        }
        if in_heap && let Some(kib) = line.strip_prefix("Rss:") {
            return kib
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0);
        }
    }
    0
}

#[test]
fn quiet_processes_leave_the_output_buffer_untouched() {
    // Issue 19: the daemon's private memory. The 128 KiB buffer pipes are read
    // into is mapped fresh, so an idle daemon whose processes print little has
    // only the pages it read into resident, not the whole buffer.
    let sb = Sandbox::new();
    for i in 0..10 {
        let out = run_bounded(
            {
                let mut cmd =
                    sb.command(&["run", "--name", &format!("s{i}"), "echo hi; exec sleep 100"]);
                cmd.env_clear().env("PATH", "/usr/bin:/bin");
                sb.isolate(&mut cmd);
                cmd
            },
            CALL_LIMIT,
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    sb.ok(&["status"]);
    let pid = sb.daemon_pid().expect("the daemon's pid");
    let heap = heap_rss_kib(pid);
    assert!(heap > 0, "no [heap] in smaps");
    assert!(heap < 128, "the daemon's heap has {heap} KiB resident");
}
