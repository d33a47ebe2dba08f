//! run, status, stop, restart, re-run and down, driven through the real binary.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn quick_start_from_the_readme_works() {
    let sb = Sandbox::new();
    let out = sb.ok(&[
        "run",
        "python3 -m http.server 0 --bind 127.0.0.1",
        "--name",
        "web",
    ]);
    assert!(out.starts_with("web (id: p1, pid: "), "{out}");
    let line = sb.ok(&["wait", "web", "--until", "Serving HTTP", "--timeout", "10"]);
    assert!(line.contains("Serving HTTP on 127.0.0.1"), "{line}");
    let table = sb.ok(&["status"]);
    assert!(
        table.starts_with("NAME         PID      STATE      EXIT   UPTIME\nweb "),
        "{table}"
    );
    assert!(table.contains(" running "), "{table}");
    assert_eq!(sb.proc_status("web")["state"], "running");
    let logs = sb.ok(&["logs", "web", "--tail", "20"]);
    assert!(logs.contains("Serving HTTP"), "{logs}");
    let restarted = sb.ok(&["restart", "web"]);
    assert!(
        restarted.starts_with("restarted web (id: p1, pid: "),
        "{restarted}"
    );
    assert_eq!(sb.ok(&["stop", "web"]), "stopped web\n");
    assert_eq!(sb.proc_status("web")["state"], "exited");
    let daemon = sb.daemon_pid().expect("a daemon pid");
    assert_eq!(sb.ok(&["down"]), "all processes stopped\n");
    assert!(
        wait_gone(daemon, Duration::from_secs(10)),
        "daemon still alive after down"
    );
    assert!(!sb.socket().exists(), "socket left behind");
    assert!(sb.daemon_pid().is_none(), "pid file left behind");
}

#[test]
fn run_passes_cwd_environment_overrides_and_port() {
    let sb = Sandbox::new();
    let dir = sb.root.join("work dir");
    std::fs::create_dir(&dir).unwrap();
    let mut cmd = sb.command(&[
        "run",
        "echo \"cwd=$(pwd) inherited=$FROM_CALLER over=$OVER port=$PORT host=$HOST\"",
        "--name",
        "env",
        "--cwd",
        "work dir",
        "--env",
        "OVER=yes",
        "--port",
        "4567",
    ]);
    cmd.env("FROM_CALLER", "caller-value")
        .env("OVER", "no")
        .env("PORT", "1");
    let out = run_bounded(cmd, CALL_LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("http://127.0.0.1:4567"),
        "{}",
        out.stdout
    );
    sb.ok(&["wait", "env", "--exit", "--timeout", "10"]);
    let line = sb.ok(&["logs", "env"]);
    let want = format!(
        "cwd={} inherited=caller-value over=yes port=4567 host=127.0.0.1\n",
        dir.display()
    );
    assert_eq!(line, want);
    let st = sb.proc_status("env");
    assert_eq!(st["port"], 4567);
    assert_eq!(st["exit_code"], 0);
}

#[test]
fn status_json_keeps_the_0_6_fields() {
    let sb = Sandbox::new();
    let pid = sb.start("sleeper", "sleep 30");
    let st = sb.proc_status("sleeper");
    for field in [
        "name",
        "id",
        "pid",
        "state",
        "exit_code",
        "uptime_secs",
        "command",
        "port",
        "url",
        "restart_count",
        "max_restarts",
        "restart_policy",
        "watched",
    ] {
        assert!(st.get(field).is_some(), "missing {field} in {st}");
    }
    assert_eq!(st["id"], "p1");
    assert_eq!(st["pid"], pid);
    assert_eq!(st["command"], "sleep 30");
}

#[test]
fn a_plain_command_is_executed_without_a_shell() {
    let sb = Sandbox::new();
    let pid = sb.start("plain", "sleep 30");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");
    let pid = sb.start("shell", "sleep 30; true");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sh");
}

#[test]
fn stop_kills_the_whole_group_including_grandchildren() {
    let sb = Sandbox::new();
    sb.start("tree", "sleep 300 & echo grandchild $!; wait");
    let line = sb.ok(&["wait", "tree", "--until", "grandchild", "--timeout", "10"]);
    let grandchild: i32 = line
        .trim()
        .trim_start_matches("grandchild ")
        .parse()
        .unwrap();
    assert!(alive(grandchild));
    assert_eq!(sb.ok(&["stop", "tree"]), "stopped tree\n");
    assert!(!alive(grandchild), "grandchild {grandchild} survived stop");
}

/// Kills a process the test made, however the test ends.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill(self.0, libc::SIGKILL);
    }
}

#[test]
fn a_process_that_left_the_group_is_reported_by_pid_and_command_after_the_stop() {
    if !need(&["setsid"], "util-linux") {
        return;
    }
    let sb = Sandbox::new();
    // A daemonizing child (its own session) and an ordinary one.
    sb.start(
        "tree",
        "setsid sleep 301 & echo escapee $!; sleep 302 & echo member $!; wait",
    );
    let pid_after = |word: &str| -> i32 {
        let line = sb.ok(&["wait", "tree", "--until", word, "--timeout", "10"]);
        line.trim().trim_start_matches(word).trim().parse().unwrap()
    };
    let escapee = pid_after("escapee");
    let _guard = KillOnDrop(escapee);
    let member = pid_after("member");
    // Until setsid has exec'd sleep, the escapee's command line is setsid's.
    await_exec(escapee, "sleep 301");

    // The answer on stdout stays one line; the escapee is named on stderr.
    let out = sb.run(&["stop", "tree"]);
    assert_eq!(out.stdout, "stopped tree\n", "{}", out.stderr);
    let err = &out.stderr;
    assert!(err.contains(&format!("pid {escapee} (sleep 301)")), "{err}");
    assert!(err.contains(&format!("kill {escapee}")), "{err}");
    assert!(
        !alive(member),
        "the group member {member} survived the stop"
    );
    assert!(alive(escapee), "the escapee was not supposed to be killed");

    let st = sb.proc_status("tree");
    assert_eq!(
        st["survivors"],
        serde_json::json!([{"pid": escapee, "command": "sleep 301"}]),
        "{st}"
    );
    let status = sb.run(&["status"]);
    assert!(
        status.stderr.contains(&format!(
            "tree outlived its stop outside its process group: {escapee} (sleep 301)"
        )),
        "{}",
        status.stderr
    );
    assert!(
        !status.stdout.contains("outlived"),
        "the table stays clean: {}",
        status.stdout
    );
    let log = std::fs::read_to_string(sb.daemon_log()).unwrap();
    assert!(log.contains(&format!("pid {escapee} (sleep 301)")), "{log}");

    // Once it is gone (reaped by the daemon, its subreaper), it is no longer reported.
    kill(escapee, libc::SIGKILL);
    assert!(wait_gone(escapee, Duration::from_secs(10)));
    let st = sb.proc_status("tree");
    assert!(st.get("survivors").is_none(), "{st}");
    // An ordinary stop says nothing more than before.
    sb.start("plain", "sleep 303 & wait");
    assert_eq!(sb.ok(&["stop", "plain"]), "stopped plain\n");
}

#[test]
fn a_child_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let sb = Sandbox::new();
    let pid = sb.start(
        "stubborn",
        "trap '' TERM; echo armed; while :; do sleep 1; done",
    );
    sb.ok(&["wait", "stubborn", "--until", "armed", "--timeout", "10"]);
    let began = std::time::Instant::now();
    assert_eq!(
        sb.ok(&["stop", "stubborn", "--timeout", "0.3"]),
        "stopped stubborn\n"
    );
    assert!(began.elapsed() < Duration::from_secs(5));
    assert!(!alive(pid));
    let st = sb.proc_status("stubborn");
    assert_eq!(st["exit_signal"], "SIGKILL", "{st}");
    let log = std::fs::read_to_string(sb.daemon_log()).unwrap();
    assert!(log.contains("sent SIGKILL"), "{log}");
}

#[test]
fn a_stubborn_stop_does_not_delay_other_clients() {
    let sb = Sandbox::new();
    sb.start(
        "stubborn",
        "trap '' TERM; echo armed; while :; do sleep 1; done",
    );
    sb.ok(&["wait", "stubborn", "--until", "armed", "--timeout", "10"]);
    let mut stopping = sb.command(&["stop", "stubborn", "--timeout", "5"]);
    let child = stopping
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While that stop waits out its grace period, the daemon keeps answering.
    sb.ok(&["wait", "stubborn", "--until", "armed", "--timeout", "10"]);
    let began = std::time::Instant::now();
    sb.ok(&["status"]);
    sb.start("other", "sleep 30");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "status/run took {:?}",
        began.elapsed()
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "stopped stubborn\n");
}

#[test]
fn restart_keeps_the_id_rotates_logs_and_annotates() {
    let sb = Sandbox::new();
    let first = sb.start("svc", "echo run; sleep 30");
    sb.ok(&["wait", "svc", "--until", "run", "--timeout", "10"]);
    let out = sb.ok(&["restart", "svc"]);
    let second = parse_pid(&out);
    assert_ne!(first, second);
    assert!(!alive(first));
    sb.ok(&["wait", "svc", "--until", "run", "--timeout", "10"]);
    assert_eq!(sb.proc_status("svc")["id"], "p1");
    assert_eq!(read(&sb.log("svc", "stdout.1")), b"run\n");
    assert_eq!(
        read(&sb.log("svc", "stdout")),
        b"[agent-procs] Restarted (manual)\nrun\n"
    );
    // An exited process restarts too.
    sb.ok(&["stop", "svc"]);
    sb.ok(&["restart", "p1"]);
    assert_eq!(sb.proc_status("svc")["state"], "running");
}

#[test]
fn rerunning_a_name_replaces_an_exited_process_but_not_a_running_one() {
    let sb = Sandbox::new();
    sb.start("job", "echo first");
    sb.ok(&["wait", "job", "--exit", "--timeout", "10"]);
    let out = sb.ok(&["run", "echo second; sleep 30", "--name", "job"]);
    assert!(out.starts_with("job (id: p1, "), "{out}");
    let err = sb.fails(&["run", "sleep 1", "--name", "job"], 1);
    assert!(err.contains("process 'job' is already running"), "{err}");
    sb.ok(&["wait", "job", "--until", "second", "--timeout", "10"]);
    assert_eq!(read(&sb.log("job", "stdout.1")), b"first\n");
}

#[test]
fn unknown_processes_exit_2_and_say_what_exists() {
    let sb = Sandbox::new();
    sb.start("real", "sleep 30");
    for args in [
        &["stop", "ghost"][..],
        &["restart", "ghost"],
        &["wait", "ghost", "--exit"],
    ] {
        let err = sb.fails(args, 2);
        assert!(
            err.contains("process not found: ghost") && err.contains("real"),
            "{err}"
        );
    }
    let err = sb.fails(&["logs", "ghost"], 2);
    assert!(err.contains("no logs for process 'ghost'"), "{err}");
}

#[test]
fn bad_runs_get_clear_errors_and_the_daemon_carries_on() {
    let sb = Sandbox::new();
    let err = sb.fails(&["run", "sleep 1", "--cwd", "/nonexistent/dir"], 1);
    assert!(
        err.contains("working directory /nonexistent/dir: no such file or directory"),
        "{err}"
    );
    let err = sb.fails(&["run", "no-such-program-here --flag"], 1);
    assert!(
        err.contains("cannot start 'no-such-program-here': command not found"),
        "{err}"
    );
    let err = sb.fails(&["run", "sleep 1", "--name", "../escape"], 64);
    assert!(err.contains("invalid process name '../escape'"), "{err}");
    let err = sb.fails(&["--session", "../x", "run", "sleep 1"], 64);
    assert!(err.contains("invalid session name"), "{err}");
    let status = sb.status();
    assert_eq!(status.as_array().map(Vec::len), Some(0), "{status}");
    sb.start("fine", "sleep 30");
}

#[test]
fn stop_all_and_down_leave_nothing_running() {
    let sb = Sandbox::new();
    let pids: Vec<i32> = (0..5)
        .map(|i| sb.start(&format!("w{i}"), "sleep 300"))
        .collect();
    assert_eq!(sb.ok(&["stop-all"]), "all processes stopped\n");
    assert!(pids.iter().all(|&p| !alive(p)));
    let pids: Vec<i32> = (0..3)
        .map(|i| sb.start(&format!("w{i}"), "sleep 300"))
        .collect();
    let daemon = sb.daemon_pid().unwrap();
    sb.ok(&["down"]);
    assert!(pids.iter().all(|&p| !alive(p)));
    assert!(wait_gone(daemon, Duration::from_secs(10)));
    // down with no daemon is a no-op that succeeds, so CI teardown can always call it.
    let out = sb.run(&["down"]);
    assert_eq!(out.code, 0);
    assert!(
        out.stderr
            .contains("no daemon running for session 'default'"),
        "{}",
        out.stderr
    );
}

#[test]
fn read_commands_without_a_daemon_say_so() {
    let sb = Sandbox::new();
    for args in [
        &["status"][..],
        &["stop", "x"],
        &["wait", "x", "--exit"],
        &["stop-all"],
    ] {
        let err = sb.fails(args, 1);
        assert!(
            err.contains("no daemon running for session 'default'"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn usage_errors_exit_64_with_the_reason() {
    let sb = Sandbox::new();
    let err = sb.fails(&["wait", "web"], 64);
    assert!(
        err.starts_with("agent-procs: say what to wait for"),
        "{err}"
    );
    assert!(err.contains("usage: agent-procs wait"), "{err}");
    sb.fails(&["frobnicate"], 64);
    sb.fails(&["status", "--bogus"], 64);
    let help = sb.ok(&["run", "--help"]);
    assert!(help.starts_with("usage: agent-procs run"), "{help}");
    let version = sb.ok(&["--version"]);
    assert!(version.starts_with("agent-procs "), "{version}");
}

#[test]
fn sessions_are_isolated_and_listed() {
    let sb = Sandbox::new();
    sb.start("a", "sleep 30");
    sb.ok(&["--session", "other", "run", "sleep 30", "--name", "b"]);
    assert_eq!(sb.status().as_array().unwrap().len(), 1);
    let list = sb.ok(&["session", "list"]);
    assert!(
        list.contains("default") && list.contains("other") && list.contains("running"),
        "{list}"
    );
    sb.ok(&["down", "--session", "other"]);
    let list = sb.ok(&["session", "list"]);
    assert!(!list.contains("other"), "{list}");
}

#[test]
fn agent_procs_session_sets_the_default_and_auto_follows_the_worktree() {
    let sb = Sandbox::new();
    // However the test ends, every session it made is shut down.
    struct DownAll<'a>(&'a Sandbox);
    impl Drop for DownAll<'_> {
        fn drop(&mut self) {
            for entry in std::fs::read_dir(&self.0.runtime)
                .into_iter()
                .flatten()
                .flatten()
            {
                let file = entry.file_name().to_string_lossy().into_owned();
                if let Some(session) = file.strip_suffix(".sock") {
                    self.0.run(&["down", "--session", session]);
                }
            }
        }
    }
    let _down_all = DownAll(&sb);
    let in_dir = |dir: &std::path::Path, env: Option<&str>, args: &[&str]| {
        let mut cmd = sb.command(args);
        cmd.current_dir(dir);
        if let Some(env) = env {
            cmd.env("AGENT_PROCS_SESSION", env);
        }
        let out = run_bounded(cmd, CALL_LIMIT);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        out.stdout
    };
    // The environment names the session; --session still wins.
    in_dir(&sb.root, Some("ci"), &["run", "sleep 30", "--name", "job"]);
    assert!(sb.ok(&["--session", "ci", "status"]).contains("job"));
    assert_eq!(sb.run(&["status"]).code, 1, "nothing runs in default");
    in_dir(
        &sb.root,
        Some("ci"),
        &["--session", "other", "run", "sleep 30", "--name", "x"],
    );
    let other: serde_json::Value =
        serde_json::from_str(&sb.ok(&["--session", "other", "status", "--json"])).unwrap();
    assert_eq!(other[0]["name"], "x", "{other}");

    // Two checkouts both called `app`: two sessions, the same from anywhere inside.
    let (one, two) = (sb.root.join("one/app"), sb.root.join("two/app"));
    for repo in [&one, &two] {
        std::fs::create_dir_all(repo.join("src/deep")).unwrap();
        std::fs::create_dir_all(repo.join(".git")).unwrap();
    }
    in_dir(
        &one.join("src/deep"),
        None,
        &["--session", "auto", "run", "sleep 30", "--name", "web"],
    );
    in_dir(&two, Some("auto"), &["run", "sleep 30", "--name", "web"]);
    let names = |dir: &std::path::Path, env| in_dir(dir, env, &["status"]);
    assert!(names(&one, Some("auto")).contains("web"));
    assert!(names(&two.join("src"), Some("auto")).contains("web"));
    let list: serde_json::Value =
        serde_json::from_str(&sb.ok(&["session", "list", "--json"])).unwrap();
    let autos: Vec<(String, String)> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"].as_str().is_some_and(|n| n.starts_with("app-")))
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["root"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(autos.len(), 2, "{list}");
    assert_ne!(autos[0].0, autos[1].0);
    let roots: Vec<&str> = autos.iter().map(|(_, r)| r.as_str()).collect();
    assert!(
        roots.contains(&one.to_str().unwrap()) && roots.contains(&two.to_str().unwrap()),
        "{list}"
    );
    let text = sb.ok(&["session", "list"]);
    assert!(text.contains(one.to_str().unwrap()), "{text}");
}

#[test]
fn relative_runtime_and_state_dirs_work_from_anywhere() {
    let sb = Sandbox::new();
    let run = |args: &[&str]| {
        let mut cmd = sb.command(args);
        cmd.env("AGENT_PROCS_RUNTIME_DIR", "run")
            .env("XDG_STATE_HOME", "state");
        run_bounded(cmd, CALL_LIMIT)
    };
    let out = run(&["run", "echo hi; sleep 30", "--name", "rel"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(run(&["wait", "rel", "--until", "hi"]).stdout, "hi\n");
    assert_eq!(run(&["down"]).code, 0);
    // The daemon left its start directory, yet it cleaned up where it should.
    assert!(!sb.root.join("run/default.sock").exists());
    assert!(!sb.root.join("run/default.pid").exists());
    assert_eq!(
        read(
            &sb.root
                .join("state/agent-procs/sessions/default/logs/rel.stdout")
        ),
        b"hi\n"
    );
}

#[test]
fn a_oneshot_run_is_marked_and_wait_success_tells_success_from_failure() {
    let sb = Sandbox::new();
    sb.ok(&["run", "--oneshot", "--name", "good", "true"]);
    sb.ok(&["run", "--oneshot", "--name", "bad", "sh -c 'exit 3'"]);
    let out = sb.ok(&["wait", "good", "--exit", "--success", "--timeout", "10"]);
    assert_eq!(out, "exited with code 0\n");
    let out = sb.run(&["wait", "bad", "--exit", "--success", "--timeout", "10"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stdout, "exited with code 3\n");
    assert!(
        out.stderr
            .contains("bad did not succeed: it exited with code 3"),
        "{}",
        out.stderr
    );
    // Without --success the exit is all that was asked about.
    sb.ok(&["wait", "bad", "--exit", "--timeout", "10"]);
    assert_eq!(sb.proc_status("good")["oneshot"], true);
    sb.start("plain", "sleep 30");
    assert!(sb.proc_status("plain").get("oneshot").is_none());
    let err = sb.fails(&["run", "--oneshot", "--autorestart", "always", "true"], 64);
    assert!(err.contains("--oneshot"), "{err}");
    let err = sb.fails(&["wait", "good", "--success"], 64);
    assert!(err.contains("--success goes with --exit"), "{err}");
}
