//! Files another user planted in our runtime or state dirs while a dir was open
//! to them (issue 16): after the `chmod 700` a user might reach for, each one is
//! still refused, by name, with the fix (remove it), and nothing it says is acted
//! on or shown. The attacker is an unused uid reached with `setpriv` (root only).

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Uids nobody else uses, one per role, so parallel tests do not meet.
const ATTACKER: u32 = 64_160;
const VICTIM: u32 = 64_161;

/// Run `script` with `sh` as the attacker.
fn as_attacker(script: &str) {
    let out = std::process::Command::new("setpriv")
        .args(setpriv_args(ATTACKER))
        .args(["--", "sh", "-c", script])
        .output()
        .expect("running setpriv");
    assert!(
        out.status.success(),
        "the attacker's script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// The runtime dir and the state dir chain, open to everyone, as after a bad umask.
fn loose_dirs(sb: &Sandbox) -> Vec<PathBuf> {
    let dirs = vec![
        sb.runtime.clone(),
        sb.state.clone(),
        sb.state.join("agent-procs"),
        sb.state.join("agent-procs/sessions"),
        sb.session_dir(),
        sb.session_dir().join("logs"),
    ];
    for dir in &dirs {
        std::fs::create_dir_all(dir).expect("making a dir");
        chmod(dir, 0o777);
    }
    dirs
}

#[test]
fn files_planted_while_a_dir_was_open_are_refused_after_chmod() {
    if !is_root() {
        eprintln!("skipped: needs root to plant files as another uid");
        return;
    }
    let (mut victim, vpid, ticks) = bystander();
    let table = planted_state("w", vpid, ticks);
    // (planted file, what a `run` does, what is said and where)
    let cases = [
        ("state.json", true, "state.json: it is owned by uid 64160"),
        ("daemon.log", false, "daemon.log: it is owned by uid 64160"),
        ("logs/w.stdout", false, "w.stdout: it is owned by uid 64160"),
        ("LOCK", false, "default.lock: it is owned by uid 64160"),
    ];
    for (at, runs, says) in cases {
        let sb = Sandbox::new();
        let dirs = loose_dirs(&sb);
        let planted = match at {
            "LOCK" => sb.runtime.join("default.lock"),
            _ => sb.session_dir().join(at),
        };
        let content = if at == "state.json" {
            table.clone()
        } else {
            "planted\n".to_string()
        };
        // World-readable and writable: a descriptor the attacker keeps reads along.
        as_attacker(&format!(
            "printf '%s' '{content}' > '{p}' && chmod 666 '{p}'",
            p = planted.display()
        ));
        // What the old error told the user to do; it evicts nothing.
        for dir in &dirs {
            chmod(dir, 0o700);
        }
        let out = sb.run(&["run", "echo hi", "--name", "w"]);
        if runs {
            assert_eq!(out.code, 0, "{at}: {}", sb.report(&["run"], &out, "ran"));
            let log = std::fs::read_to_string(sb.daemon_log()).unwrap_or_default();
            assert!(log.contains(says), "{at}: {log}");
            assert!(log.contains("(remove it)"), "{at}: {log}");
        } else {
            assert_eq!(
                out.code,
                1,
                "{at}: {}",
                sb.report(&["run"], &out, "refused")
            );
            assert!(out.stderr.contains(says), "{at}: {}", out.stderr);
            assert!(out.stderr.contains("(remove it)"), "{at}: {}", out.stderr);
        }
        assert_eq!(
            std::fs::read_to_string(&planted).expect("the planted file"),
            content,
            "{at}: we wrote into the attacker's file"
        );
        assert!(
            alive(vpid as i32),
            "{at}: the daemon killed a process named by a planted file"
        );
    }
    kill(vpid as i32, libc::SIGKILL);
    let _ = victim.wait();
}

#[test]
fn logs_never_prints_bytes_another_user_planted() {
    if !is_root() {
        eprintln!("skipped: needs root to plant files as another uid");
        return;
    }
    let sb = Sandbox::new();
    let dirs = loose_dirs(&sb);
    let log = sb.log("w", "stdout");
    // An escape sequence that retitles the reader's terminal, in the current
    // segment and in a rotated one.
    as_attacker(&format!(
        "printf 'evil\\033]0;pwned\\007\\n' > '{p}' && printf 'old\\n' > '{p}.1'",
        p = log.display()
    ));
    // While the dirs are open, `logs` refuses them as the daemon would.
    let err = sb.fails(&["logs", "w"], 1);
    assert!(err.contains("open to other users"), "{err}");
    assert!(err.contains("rm -rf"), "{err}");
    for dir in &dirs {
        chmod(dir, 0o700);
    }
    // After chmod the files are still the attacker's: refused, never printed.
    for args in [
        &["logs", "w"][..],
        &["logs", "--all"],
        &["logs", "w", "--since", "start"],
    ] {
        let out = sb.run(args);
        assert_eq!(out.code, 1, "{}", sb.report(args, &out, "refused"));
        assert!(
            !out.raw_stdout.contains(&0x1b),
            "{args:?} printed {:?}",
            out.stdout
        );
        assert!(
            out.stderr.contains("w.stdout: it is owned by uid 64160")
                && out.stderr.contains("(remove it)"),
            "{args:?}: {}",
            out.stderr
        );
    }
    // A rotated segment of theirs behind a current one of ours: refused too.
    std::fs::remove_file(&log).expect("removing the planted segment");
    std::fs::write(&log, "ours\n").expect("writing our own segment");
    chmod(&log, 0o600);
    let err = sb.fails(&["logs", "w", "--since", "start"], 1);
    assert!(
        err.contains("w.stdout.1: it is owned by uid 64160"),
        "{err}"
    );
}

/// Removes the fallback state dir of a uid when dropped.
struct Fallback(PathBuf);
impl Drop for Fallback {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn logs_checks_the_fallback_state_dir_when_home_is_unset() {
    if !is_root() {
        eprintln!("skipped: needs root to act as two other uids");
        return;
    }
    // Without HOME and XDG_STATE_HOME, state goes under /tmp, where anyone may
    // have made the victim's dir first and put a log in it.
    let fallback = Fallback(PathBuf::from(format!("/tmp/agent-procs-state-{VICTIM}")));
    let _ = std::fs::remove_dir_all(&fallback.0);
    let logs = fallback.0.join("agent-procs/sessions/default/logs");
    as_attacker(&format!(
        "mkdir -p '{d}' && chmod -R 755 '{top}' && printf 'evil\\033[2J\\n' > '{d}/w.stdout' \
         && chmod 644 '{d}/w.stdout'",
        d = logs.display(),
        top = fallback.0.display()
    ));
    let sb = Sandbox::as_uid(VICTIM);
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(setpriv_args(VICTIM))
        .args(["--", BIN, "logs", "w"])
        .env("AGENT_PROCS_RUNTIME_DIR", &sb.runtime)
        .env_remove("XDG_STATE_HOME")
        .env_remove("HOME")
        .current_dir(&sb.root);
    let out = run_bounded(cmd, CALL_LIMIT);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.is_empty(), "printed {:?}", out.stdout);
    assert!(
        out.stderr.contains(&format!(
            "{} is owned by uid 64160, not by us (uid 64161); refusing to use it",
            fallback.0.display()
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn a_log_with_a_second_name_elsewhere_is_refused() {
    let sb = Sandbox::new();
    let logs = sb.session_dir().join("logs");
    std::fs::create_dir_all(&logs).expect("making the log dir");
    let mut dir = logs.as_path();
    while dir != sb.state {
        chmod(dir, 0o700);
        dir = dir.parent().expect("a parent");
    }
    // A hard link kept outside reads (or was) what we would write.
    let outside = sb.root.join("outside");
    std::fs::write(&outside, "kept\n").expect("writing the outside file");
    chmod(&outside, 0o600);
    std::fs::hard_link(&outside, logs.join("w.stdout")).expect("linking");
    let err = sb.fails(&["run", "echo hi", "--name", "w"], 1);
    assert!(
        err.contains("w.stdout: it has 2 hard links") && err.contains("(remove it)"),
        "{err}"
    );
    let err = sb.fails(&["logs", "w"], 1);
    assert!(err.contains("it has 2 hard links"), "{err}");
    assert_eq!(read(&outside), b"kept\n");
}

/// Put a link to a dir the attacker owns (and reads) where the log dir was; the
/// real one is set aside, as a `mv` would. Returns the attacker's dir.
fn swap_log_dir_for_a_link(sb: &Sandbox) -> PathBuf {
    let logs = sb.session_dir().join("logs");
    std::fs::rename(&logs, sb.session_dir().join("logs.old")).expect("moving the log dir");
    let outside = sb.root.join("outside");
    std::fs::create_dir(&outside).expect("making the attacker's dir");
    chmod(&outside, 0o777);
    std::os::unix::fs::chown(&outside, Some(ATTACKER), Some(ATTACKER)).expect("chown");
    std::os::unix::fs::symlink(&outside, &logs).expect("planting the link");
    outside
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("listing a dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_new_run_never_writes_through_a_link_that_replaced_the_log_dir() {
    let sb = Sandbox::new();
    sb.start("a", "sleep 60");
    let outside = swap_log_dir_for_a_link(&sb);
    let err = sb.fails(&["run", "echo secret", "--name", "v"], 1);
    assert!(
        err.contains("logs: it is a symbolic link, which agent-procs never follows (remove it)"),
        "{err}"
    );
    assert_eq!(names_in(&outside), Vec::<String>::new());
    // Once the link is gone and a private dir is back, runs log again.
    std::fs::remove_file(sb.session_dir().join("logs")).expect("removing the link");
    std::fs::rename(
        sb.session_dir().join("logs.old"),
        sb.session_dir().join("logs"),
    )
    .expect("putting the log dir back");
    sb.start("v", "echo back");
    sb.ok(&["wait", "v", "--exit"]);
    assert_eq!(sb.ok(&["logs", "v"]), "back\n");
}

#[test]
fn a_rotation_never_writes_through_a_link_that_replaced_the_log_dir() {
    let sb = Sandbox::new();
    sb.ok(&[
        "run",
        "while :; do echo tick-tick-tick-tick; sleep 0.01; done",
        "--name",
        "w",
        "--log-max-size",
        "1k",
    ]);
    sb.ok(&["wait", "w", "--until", "tick"]);
    use std::os::unix::fs::MetadataExt;
    let current = std::fs::metadata(sb.log("w", "stdout"))
        .expect("the log")
        .ino();
    let outside = swap_log_dir_for_a_link(&sb);
    // Rotations go on in the dir set aside (about one every 0.5 s): wait until
    // the segment current at the swap has moved twice.
    let old = sb.session_dir().join("logs.old");
    let moved_twice = || {
        (2..=5).any(|n| {
            std::fs::metadata(old.join(format!("w.stdout.{n}"))).is_ok_and(|m| m.ino() == current)
        })
    };
    eventually(
        std::time::Duration::from_secs(30),
        &format!("a rotation in {}", old.display()),
        || {
            let through = names_in(&outside);
            assert!(through.is_empty(), "written through the link: {through:?}");
            done_or(moved_twice(), format!("{:?}", names_in(&old)))
        },
    );
    assert_eq!(names_in(&outside), Vec::<String>::new());
    assert_eq!(sb.proc_status("w")["state"], "running");
}

#[test]
fn a_fifo_planted_among_the_logs_stalls_nobody() {
    let sb = Sandbox::new();
    sb.start("w", "echo hi");
    sb.ok(&["wait", "w", "--exit"]);
    // A rotated segment that is a FIFO: opening it to read would wait for a
    // writer for ever, in the CLI or in the daemon replaying history.
    let fifo = sb.session_dir().join("logs/w.stdout.1");
    let c = std::ffi::CString::new(fifo.to_str().expect("a UTF-8 path")).expect("no NUL");
    // SAFETY: mkfifo reads the NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let err = sb.fails(&["logs", "w", "--since", "start"], 1);
    assert!(
        err.contains("w.stdout.1: it is not a regular file; refusing to use it (remove it)"),
        "{err}"
    );
    // The daemon's replay for a follower is not held up either.
    let mut s = sb.connect();
    let status = ask(&mut s, b"{\"type\":\"Status\"}\n");
    assert_eq!(status["type"], "Status", "{status}");
    let out = run_bounded(
        sb.command(&["logs", "w", "--follow", "--timeout", "1"]),
        std::time::Duration::from_secs(20),
    );
    assert_ne!(out.code, -1, "logs --follow hung: {}", out.stderr);
    let status = ask(&mut s, b"{\"type\":\"Status\"}\n");
    assert_eq!(status["type"], "Status", "{status}");
}
