//! Running out of things: disk space for the logs, processes, descriptors, CPU
//! time against a flood of output. In each case the daemon carries on, keeps its
//! children running, says what happened once, and recovers when the resource is back.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[test]
fn a_full_log_disk_loses_output_but_neither_the_process_nor_the_daemon() {
    if !is_root() {
        skip_notice("needs root to mount a tiny tmpfs in a private mount namespace");
        return;
    }
    if !need(&["unshare", "nsenter"], "util-linux") {
        return;
    }
    let sb = Sandbox::new();
    // The log directory gets a 128 KiB tmpfs of its own, seen only by the daemon and
    // its children (a private mount namespace), half filled by a ballast file.
    let logs = sb.session_dir().join("logs");
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(&logs)
        .expect("making the log dir");
    let progress = sb.root.join("progress");
    // 1 KiB lines; every 100 lines the child says how far it got, outside the tmpfs.
    let child = format!(
        "i=0; while :; do i=$((i+1)); printf '%s %01000d\\n' $i 0; \
         [ $((i % 100)) = 0 ] && echo $i > {}; done",
        progress.display()
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o size=128k,mode=0700 ap-enospc \"$0\" || exit 99; \
             head -c 65536 /dev/zero > \"$0/ballast\"; exec \"$@\"",
        )
        .arg(&logs)
        .args([BIN, "run", &child, "--name", "w"])
        .current_dir(&sb.root);
    sb.isolate(&mut cmd);
    let out = run_bounded(cmd, CALL_LIMIT);
    if out.code == 99 || out.stderr.contains("unshare failed") {
        skip_notice(&format!("cannot mount a tmpfs here: {}", out.stderr));
        return;
    }
    assert_eq!(out.code, 0, "{}", out.stderr);
    let daemon = sb.daemon_pid().expect("a daemon");
    // The daemon's view of the log dir, through its mount namespace.
    let seen = PathBuf::from(format!("/proc/{daemon}/root")).join(logs.strip_prefix("/").unwrap());
    let log = seen.join("w.stdout");
    let full = "no space left on device";
    eventually(Duration::from_secs(30), "the full disk reported", || {
        let text = std::fs::read_to_string(sb.daemon_log()).unwrap_or_default();
        done_or(text.contains(full), format!("daemon.log:\n{text}"))
    });
    // The daemon keeps draining the pipe: the child writes on, 4 MiB past a full
    // disk (four times what the pipe holds), without being blocked.
    let at = |p: &Path| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let start = at(&progress);
    eventually(Duration::from_secs(60), "the child's progress", || {
        let now = at(&progress);
        done_or(
            now > start + 4000,
            format!("stuck at line {now} (from {start})"),
        )
    });
    assert_eq!(sb.proc_status("w")["state"], "running");
    // Said once, not once per write.
    let log_text = std::fs::read_to_string(sb.daemon_log()).unwrap_or_default();
    assert_eq!(log_text.matches(full).count(), 1, "{log_text}");
    assert!(log_text.contains("(output is being lost)"), "{log_text}");
    // Space comes back: logging resumes, and the log says how much it lost.
    let stuck = file_len(&log);
    std::fs::remove_file(seen.join("ballast")).expect("removing the ballast");
    eventually(Duration::from_secs(30), "logging to resume", || {
        let now = file_len(&log);
        done_or(now > stuck + 4096, format!("{now} bytes, was {stuck}"))
    });
    let text = std::fs::read(&log).expect("reading the log");
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("bytes not logged: no space left on device\n"),
        "no note of the loss in the log"
    );
    // Lines are torn only where the log says output was lost: a write cut short by
    // the full disk was undone, so nothing else is garbled.
    let lines: Vec<&str> = text.lines().collect();
    let note = |i: usize| {
        lines
            .get(i)
            .is_some_and(|l| l.starts_with("[agent-procs] "))
    };
    for (i, line) in lines.iter().enumerate() {
        let whole = note(i)
            || line
                .split_once(' ')
                .is_some_and(|(n, zeros)| n.parse::<u64>().is_ok() && zeros.len() == 1000);
        let beside_a_note = note(i + 1) || (i > 0 && note(i - 1));
        assert!(whole || beside_a_note, "line {i} is torn: {:.80}", line);
    }
    // The index still agrees with the log: `logs` (run where the daemon sees the
    // tmpfs) reads it through the index, across the gap, and `--since start` gets
    // back exactly the lines of the file.
    let logs_inside = |args: &[&str]| {
        let mut cmd = std::process::Command::new("nsenter");
        cmd.arg(format!("--target={daemon}"))
            .arg("--mount")
            .arg(BIN)
            .args(args)
            .current_dir(&sb.root);
        sb.isolate(&mut cmd);
        let out = run_bounded(cmd, CALL_LIMIT);
        assert_eq!(out.code, 0, "logs {args:?}: {}", out.stderr);
        out.stdout
    };
    sb.ok(&["stop", "w"]);
    let file = String::from_utf8_lossy(&std::fs::read(&log).expect("reading the log")).into_owned();
    let since = logs_inside(&["logs", "w", "--since", "start"]);
    // (A last line cut short by a second full disk is printed with a newline.)
    assert_eq!(
        since.trim_end_matches('\n'),
        file.trim_end_matches('\n'),
        "logs --since start differs from the file"
    );
    let tail = logs_inside(&["logs", "w", "--tail", "3"]);
    let last3: Vec<&str> = file
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert_eq!(tail.lines().collect::<Vec<_>>(), last3);
}

/// Processes the test started itself, killed and reaped however the test ends.
struct Children(Vec<std::process::Child>);

impl Children {
    fn end(&mut self) {
        for mut child in self.0.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.end();
    }
}

#[test]
fn out_of_descriptors_the_control_socket_neither_spins_nor_sticks_nor_floods_the_log() {
    raise_fd_limit(400);
    let sb = Sandbox::new();
    // The first call starts the daemon, which inherits the limit (hard too, so
    // raising its soft limit at start-up cannot undo it).
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "ulimit -n 64 && exec \"$0\" \"$@\"", BIN])
        .args(["run", "sleep 300", "--name", "x"])
        .current_dir(&sb.root)
        .stdin(std::process::Stdio::null());
    sb.isolate(&mut cmd);
    let out = run_bounded(cmd, CALL_LIMIT);
    assert_eq!(
        out.code,
        0,
        "{}",
        sb.report(&["run"], &out, "expected exit 0")
    );
    let daemon = sb.daemon_pid().expect("a daemon");
    let busy = "accepting a connection: too many open files";
    for episode in 0..2 {
        // 150 clients: more than the daemon has descriptors for, fewer than the
        // listen backlog holds, so every connect returns at once.
        let clients: Vec<_> = (0..150).map(|_| sb.connect()).collect();
        eventually(
            Duration::from_secs(20),
            &format!("episode {episode}: the clients to use up the daemon's 64 descriptors"),
            || {
                let held = fd_count(daemon);
                done_or(held >= 60, format!("the daemon holds {held}"))
            },
        );
        let before = cpu_time(daemon);
        // A measuring window: nothing to await, the CPU it spends in 2 s is the point.
        std::thread::sleep(Duration::from_secs(2));
        let spent = cpu_time(daemon) - before;
        eprintln!("episode {episode}: {spent:?} of CPU in 2 s out of descriptors");
        assert!(
            spent < Duration::from_millis(500),
            "episode {episode}: the daemon used {spent:?} of CPU in 2 s out of descriptors"
        );
        assert!(alive(daemon), "the daemon died out of descriptors");
        drop(clients);
        // Once they are gone it serves again (the CLI's connection waited in the backlog).
        assert_eq!(sb.proc_status("x")["state"], "running");
    }
    // Two episodes within a minute: one line.
    let log = std::fs::read_to_string(sb.daemon_log()).unwrap_or_default();
    assert_eq!(log.matches(busy).count(), 1, "{log}");
}

#[test]
fn a_process_that_cannot_be_forked_is_a_clear_error_and_the_daemon_carries_on() {
    if !is_root() {
        skip_notice("needs root to run the daemon as an unused uid under RLIMIT_NPROC");
        return;
    }
    if !need(&["prlimit", "setpriv"], "util-linux") {
        return;
    }
    // Root ignores RLIMIT_NPROC, so the daemon runs as a uid nobody else uses,
    // started with a limit of 8 processes for that uid (which it never raises).
    let uid = 64_101;
    let sb = Sandbox::as_uid(uid);
    let mut first = std::process::Command::new("prlimit");
    first
        .arg("--nproc=8:8")
        .arg("setpriv")
        .args(setpriv_args(uid))
        .args(["--", BIN, "run", "sleep 300", "--name", "kept"])
        .current_dir(&sb.root)
        .stdin(std::process::Stdio::null());
    sb.isolate(&mut first);
    let out = run_bounded(first, CALL_LIMIT);
    assert_eq!(
        out.code,
        0,
        "{}",
        sb.report(&["run"], &out, "expected exit 0")
    );
    // Eight more processes of that uid: from now on no fork of the daemon succeeds.
    let mut padding = Children(
        (0..8)
            .map(|_| {
                std::process::Command::new("setpriv")
                    .args(setpriv_args(uid))
                    .args(["--", "sleep", "300"])
                    .spawn()
                    .expect("starting a process of that uid")
            })
            .collect(),
    );
    let refused = "the system refused to create a process (too many processes?)";
    let err = sb.fails(&["run", "sleep 1", "--name", "new"], 1);
    assert!(
        err.contains(&format!("cannot start 'sleep 1': {refused}")),
        "{err}"
    );
    // A `run` that never started keeps no row (DESIGN.md: `failed` is a respawn's).
    let names: Vec<_> = sb
        .status()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, ["kept"]);
    // A restart that cannot fork leaves the process `failed`, saying why.
    let err = sb.fails(&["restart", "kept"], 1);
    assert!(err.contains(refused), "{err}");
    assert_eq!(sb.proc_status("kept")["state"], "failed");
    let err = sb.fails(&["wait", "kept", "--exit"], 1);
    assert!(
        err.contains(&format!(
            "kept is not running: cannot start 'sleep 300': {refused}"
        )),
        "{err}"
    );
    let log = std::fs::read_to_string(sb.daemon_log()).unwrap_or_default();
    assert!(
        log.contains(&format!("kept: cannot start 'sleep 300': {refused}")),
        "{log}"
    );
    // Processes again: the daemon carries on as before.
    padding.end();
    sb.start("after", "sleep 300");
    sb.ok(&["restart", "kept"]);
    assert_eq!(sb.proc_status("kept")["state"], "running");
}

/// Bytes `pid` has read so far (`rchar` of /proc/PID/io: pipes included).
fn bytes_read(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_child_writing_as_fast_as_it_can_does_not_starve_the_control_socket() {
    let sb = Sandbox::new();
    // `yes` with 100-byte lines writes as fast as a pipe takes it (GB/s).
    let line = "y".repeat(99);
    sb.start("flood", &format!("yes {line}"));
    let daemon = sb.daemon_pid().expect("a daemon");
    let before = bytes_read(daemon);
    let mut took = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        sb.ok(&["status"]);
        took.push(t.elapsed());
    }
    let drained = bytes_read(daemon) - before;
    took.sort();
    let (median, worst) = (took[took.len() / 2], took[took.len() - 1]);
    eprintln!("status under a flood: median {median:?}, worst {worst:?}, {drained} bytes read");
    // Generous bounds: the machine is shared and this is a debug build.
    assert!(
        worst < Duration::from_secs(1),
        "a status took {worst:?}: {took:?}"
    );
    assert!(
        median < Duration::from_millis(200),
        "median {median:?}: {took:?}"
    );
    // And the flood was real: the daemon kept reading it meanwhile.
    assert!(drained > 20 << 20, "the daemon read only {drained} bytes");
    assert_eq!(sb.proc_status("flood")["state"], "running");
    sb.ok(&["stop", "flood"]);
}
