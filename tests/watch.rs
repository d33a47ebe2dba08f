//! `run --watch`: a change of a matching file restarts the process after the
//! debounce; reads, ignored paths and stopped processes do not; new directories
//! join the watch; a failed process is revived; nothing leaks across restarts.

mod common;
use common::*;
use std::path::Path;
use std::time::Duration;

/// Long enough for the 500 ms debounce and a restart, with room for a slow machine.
const RESTART_WITHIN: Duration = Duration::from_secs(10);
/// How long a change that must not restart anything is given to do so anyway.
const QUIET_FOR: Duration = Duration::from_millis(1500);

fn watched(sb: &Sandbox, extra: &[&str]) -> String {
    std::fs::create_dir_all(sb.root.join("src")).expect("making src");
    std::fs::write(sb.root.join("src/app.txt"), "v1").expect("writing a source");
    let mut args = vec![
        "run",
        "sh -c 'echo up; exec sleep 60'",
        "--name",
        "app",
        "--watch",
        "src/**/*.txt",
    ];
    args.extend_from_slice(extra);
    let out = sb.ok(&args);
    sb.ok(&["wait", "app", "--until", "up"]);
    out
}

fn pid(sb: &Sandbox) -> i64 {
    sb.proc_status("app")["pid"].as_i64().unwrap_or(0)
}

/// Wait until `app` runs with a pid other than `old`; the restarts it took.
fn wait_restarted(sb: &Sandbox, old: i64) {
    eventually(RESTART_WITHIN, "app to restart", || {
        let p = sb.proc_status("app");
        done_or(p["state"] == "running" && p["pid"].as_i64() != Some(old), p)
    });
}

/// Nothing to await for a restart that must not come: watch for QUIET_FOR,
/// which outlasts the 500 ms debounce.
fn assert_not_restarted(sb: &Sandbox, old: i64) {
    holds_for(QUIET_FOR, "app running without a restart", || {
        let now = pid(sb);
        done_or(
            now == old,
            format!("app restarted without a matching change: pid {now}, was {old}"),
        )
    });
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("making a directory");
    }
    std::fs::write(path, text).expect("writing a file");
}

#[test]
fn a_write_restarts_with_an_annotation_and_a_read_does_not() {
    let sb = Sandbox::new();
    watched(&sb, &[]);
    let first = pid(&sb);
    assert_eq!(sb.proc_status("app")["watched"], true);
    // Reading, and writing files the patterns do not name, restart nothing.
    let _ = std::fs::read(sb.root.join("src/app.txt")).expect("reading");
    write(&sb.root.join("src/other.md"), "x");
    write(&sb.root.join("notes.txt"), "x");
    assert_not_restarted(&sb, first);

    write(&sb.root.join("src/app.txt"), "v2");
    wait_restarted(&sb, first);
    // Running is not yet printed: the new run's line may still be on its way.
    sb.ok(&["wait", "app", "--until", "up"]);
    // The latest run, which begins with the note; with the one before, the
    // start of the new run is marked with how the last one ended.
    let logs = sb.ok(&["logs", "app", "--tail", "10"]);
    assert_eq!(logs, "[agent-procs] File changed, restarted\nup\n");
    let logs = sb.ok(&["logs", "app", "--tail", "10", "--runs", "2"]);
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.len(), 5, "{logs}");
    assert!(lines[0].starts_with("--- run 1 started "), "{logs}");
    assert!(
        lines[2].starts_with("--- run 2 started ")
            && lines[2]
                .ends_with("; previous run: restarted after file change (killed by SIGTERM) ---"),
        "{logs}"
    );
    assert_eq!(
        [lines[1], lines[3], lines[4]],
        ["up", "[agent-procs] File changed, restarted", "up"],
        "{logs}"
    );
    let exits = &sb.proc_status("app")["last_exits"];
    assert_eq!(exits[0]["reason"], "watch", "{exits}");
}

#[test]
fn ignored_paths_change_nothing_and_new_directories_are_watched() {
    let sb = Sandbox::new();
    watched(&sb, &["--watch-ignore", "src/gen/**"]);
    let first = pid(&sb);
    write(&sb.root.join("src/node_modules/x.txt"), "x");
    write(&sb.root.join("src/gen/out.txt"), "x");
    write(&sb.root.join("src/.git/x.txt"), "x");
    assert_not_restarted(&sb, first);

    // A directory made after the start is watched too. The daemon adds it when it
    // hears of it, so a write that came first may go unseen: write until one counts.
    std::fs::create_dir_all(sb.root.join("src/new/deeper")).expect("mkdir");
    let mut n = 0;
    eventually_every(
        Duration::from_millis(100),
        RESTART_WITHIN,
        "a write in a new directory to restart app",
        || {
            let now = pid(&sb);
            if now != first {
                return Ok(());
            }
            n += 1;
            write(&sb.root.join("src/new/deeper/a.txt"), &n.to_string());
            Err(format!("{n} writes, app still pid {now}"))
        },
    );
    wait_restarted(&sb, first);
}

#[test]
fn a_change_revives_a_failed_process_but_not_a_stopped_one() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.root.join("src")).expect("making src");
    sb.ok(&[
        "run",
        "sh -c 'test -e src/fixed || exit 3; echo up; exec sleep 60'",
        "--name",
        "app",
        "--watch",
        "src/*",
        "--autorestart",
        "on-failure",
        "--max-restarts",
        "1",
        "--restart-delay",
        "50",
    ]);
    eventually(RESTART_WITHIN, "app to fail", || {
        let app = sb.proc_status("app");
        done_or(app["state"] == "failed", app)
    });
    write(&sb.root.join("src/fixed"), "");
    let failed_pid = pid(&sb);
    wait_restarted(&sb, failed_pid);
    sb.ok(&["wait", "app", "--until", "up", "--timeout", "10"]);
    let app = sb.proc_status("app");
    assert_eq!(app["state"], "running", "{app}");
    assert_eq!(
        app["restart_count"],
        serde_json::Value::Null,
        "a watch restart resets the count: {app}"
    );

    sb.ok(&["stop", "app"]);
    assert_eq!(sb.proc_status("app")["watched"], false);
    write(&sb.root.join("src/more"), "");
    holds_for(QUIET_FOR, "a stopped app staying stopped", || {
        let app = sb.proc_status("app");
        done_or(app["state"] == "exited", app)
    });
}

#[test]
fn restarts_leak_no_descriptors() {
    let sb = Sandbox::new();
    watched(&sb, &[]);
    let daemon = sb.daemon_pid().expect("a daemon");
    // Count only when the daemon is idle. Counting raced with transients before
    // (off by one either way in 2 runs of 7): the index file open while a burst of
    // output is read, and the connection of a CLI call whose hang-up the daemon
    // had not handled yet. So: wait for the run's output (its index is released in
    // the turn that read it), then two Status round trips on one held connection;
    // the second is read only after the turn that answered the first, which had
    // the CLI's hang-up in hand, so every earlier connection is closed by then.
    let mut held = sb.connect();
    let mut idle_count = || {
        sb.ok(&["wait", "app", "--until", "up"]);
        for _ in 0..2 {
            assert_eq!(ask(&mut held, b"{\"type\":\"Status\"}\n")["type"], "Status");
        }
        fd_count(daemon)
    };
    let before = idle_count();
    for i in 0..8 {
        let old = pid(&sb);
        write(&sb.root.join("src/app.txt"), &format!("v{i}"));
        wait_restarted(&sb, old);
    }
    let after = idle_count();
    assert_eq!(
        after, before,
        "descriptors leaked across watch restarts: {before} -> {after}"
    );
}

#[test]
fn bad_patterns_are_usage_errors_with_the_position() {
    let sb = Sandbox::new();
    let err = sb.fails(&["run", "sleep 1", "--watch", "src/[ab"], 64);
    assert!(err.contains("--watch 'src/[ab'"), "{err}");
    assert!(err.contains('4'), "the error names the position: {err}");
    let err = sb.fails(&["run", "sleep 1", "--watch-ignore", "x"], 64);
    assert!(err.contains("--watch-ignore goes with --watch"), "{err}");
}
