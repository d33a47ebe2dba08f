//! What a hostile local setup cannot make the CLI or the daemon do: use a runtime
//! or state directory that is not privately ours, replace a file planted at the
//! socket path, trust a planted pid file, or act on a session name that escapes
//! the runtime directory. Each refusal names the problem and the fix.

mod common;
use common::*;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

#[test]
fn a_planted_pid_file_and_a_non_socket_at_the_socket_path_are_not_trusted() {
    let sb = Sandbox::new();
    std::fs::create_dir(&sb.runtime).expect("making the runtime dir");
    std::fs::set_permissions(&sb.runtime, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    // A pid file naming a live process that is not a daemon (pid 1) means nothing
    // without a socket that answers.
    std::fs::write(sb.runtime.join("default.pid"), "1\n").expect("planting a pid file");
    let err = sb.fails(&["status"], 1);
    assert!(
        err.contains("no daemon running for session 'default'"),
        "{err}"
    );
    // A regular file where the socket belongs is refused, never deleted.
    std::fs::write(sb.socket(), "not a socket").expect("planting a file");
    let err = sb.fails(&["run", "sleep 1"], 1);
    assert!(
        err.contains("exists and is not a socket; refusing to replace it (remove it)"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(sb.socket()).unwrap_or_default(),
        b"not a socket"
    );
    std::fs::remove_file(sb.socket()).expect("removing the planted file");
    // Once it is gone, a daemon starts and the planted pid file is replaced.
    sb.start("ok", "sleep 60");
    let pid = sb.daemon_pid().expect("the daemon's pid");
    assert_ne!(pid, 1);
}

#[test]
fn a_state_directory_open_to_others_is_refused_with_the_fix() {
    let sb = Sandbox::new();
    let dir = sb.state.join("agent-procs");
    std::fs::create_dir_all(&dir).expect("making the state dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = sb.fails(&["run", "sleep 1"], 1);
    assert!(err.contains("has mode 777, open to other users"), "{err}");
    // chmod would leave whatever was planted meanwhile: the fix is a new dir.
    assert!(
        err.contains(&format!("remove it with: rm -rf {}", dir.display())),
        "{err}"
    );
    assert!(!err.contains("chmod"), "{err}");
    assert!(sb.daemon_pid().is_none(), "a daemon started anyway");
}

#[test]
fn a_runtime_directory_owned_by_someone_else_is_refused() {
    if !is_root() {
        skip_notice("needs root to hand a directory to another uid");
        return;
    }
    let sb = Sandbox::new();
    std::fs::create_dir(&sb.runtime).expect("making the runtime dir");
    std::fs::set_permissions(&sb.runtime, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::chown(&sb.runtime, Some(64_104), None).expect("chown");
    let err = sb.fails(&["run", "sleep 1"], 1);
    assert!(
        err.contains("is owned by uid 64104, not by us (uid 0); refusing to use it"),
        "{err}"
    );
    assert!(!sb.socket().exists());
}

#[test]
fn session_names_cannot_escape_the_runtime_directory() {
    let sb = Sandbox::new();
    for (name, why) in [
        ("../x", "must not start with '.' or '-'"),
        ("a/b", "'/' is not allowed"),
        (".hidden", "must not start with '.' or '-'"),
        ("-rf", "must not start with '.' or '-'"),
    ] {
        // A usage error (64), found before any file is made.
        let err = sb.fails(&["--session", name, "run", "sleep 1"], 64);
        assert!(err.contains(why), "{name}: {err}");
    }
    let err = sb.fails(&["--session", "", "status"], 64);
    assert!(err.contains("--session needs a name"), "{err}");
    // Nothing was created outside (or inside) the runtime directory.
    assert!(!sb.root.join("x").exists());
    assert!(!sb.runtime.exists() || std::fs::read_dir(&sb.runtime).map_or(0, |d| d.count()) == 0);
}

#[test]
fn descriptors_the_caller_left_open_do_not_reach_the_daemon_or_its_children() {
    let sb = Sandbox::new();
    // The CLI inherits fds 7 and 8 (as from a CI runner or a shell); the daemon it
    // starts must not keep them, or a pipe's reader would wait for ever.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("exec 7</dev/null 8>&2; exec \"$0\" run 'ls /proc/self/fd' --name fds")
        .arg(BIN)
        .current_dir(&sb.root);
    sb.isolate(&mut cmd);
    let out = run_bounded(cmd, CALL_LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    sb.ok(&["wait", "fds", "--exit"]);
    // The child sees stdin, stdout, stderr and the directory ls itself opened.
    assert_eq!(sb.ok(&["logs", "fds"]), "0\n1\n2\n3\n");
    let daemon = sb.daemon_pid().expect("a daemon");
    let inherited: Vec<String> = std::fs::read_dir(format!("/proc/{daemon}/fd"))
        .expect("reading the daemon's descriptors")
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t == std::path::Path::new("/dev/null"))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // Only stdin and stdout point at /dev/null (the daemon's own redirection).
    assert_eq!(inherited.len(), 2, "the daemon kept {inherited:?}");
}

#[test]
fn a_runtime_dir_path_that_is_a_file_is_refused() {
    let sb = Sandbox::new();
    std::fs::write(&sb.runtime, "a file").expect("planting a file");
    for args in [&["run", "sleep 1"][..], &["status"], &["session", "list"]] {
        let err = sb.fails(args, 1);
        assert!(
            err.contains(&format!(
                "{} is not a directory; refusing to use it (remove it)",
                sb.runtime.display()
            )),
            "{args:?}: {err}"
        );
    }
    assert_eq!(read(&sb.runtime), b"a file");
}

/// Where a symbolic link is planted, and what a `run` then does.
enum Planted {
    /// The run is refused with an error naming the file.
    Refused,
    /// The run works; the link is replaced or set aside, never written through.
    Replaced,
}

#[test]
fn symbolic_links_planted_at_our_files_are_never_followed() {
    // A live process a planted state.json names as an orphan to kill.
    let (mut victim, vpid, ticks) = bystander();
    let table = planted_state("victim", vpid, ticks);
    let cases: [(&str, Planted, &str); 6] = [
        (
            "logs",
            Planted::Refused,
            "is a symbolic link; refusing to use it",
        ),
        (
            "logs/w.stdout",
            Planted::Refused,
            "w.stdout: it is a symbolic link",
        ),
        (
            "state.json",
            Planted::Replaced,
            "state.json: it is a symbolic link",
        ),
        (
            "daemon.log",
            Planted::Refused,
            "daemon.log: it is a symbolic link",
        ),
        ("PID", Planted::Replaced, ""),
        (
            "LOCK",
            Planted::Refused,
            "default.lock: it is a symbolic link",
        ),
    ];
    for (at, planted, says) in cases {
        let sb = Sandbox::new();
        let session = sb.session_dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(session.join("logs"))
            .expect("making the state dirs");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&sb.runtime)
            .expect("making the runtime dir");
        let link = match at {
            "PID" => sb.runtime.join("default.pid"),
            "LOCK" => sb.runtime.join("default.lock"),
            _ => session.join(at),
        };
        // The target outside: a directory for the log dir, else a file.
        let target = sb.root.join("outside");
        let content = if at == "state.json" {
            table.as_str()
        } else {
            "precious\n"
        };
        if at == "logs" {
            std::fs::remove_dir(&link).expect("making room for the link");
            std::fs::create_dir(&target).expect("making the outside dir");
        } else {
            std::fs::write(&target, content).expect("writing the outside file");
        }
        std::os::unix::fs::symlink(&target, &link).expect("planting the link");
        let out = sb.run(&["run", "echo hi", "--name", "w"]);
        match planted {
            Planted::Refused => {
                assert_eq!(
                    out.code,
                    1,
                    "{at}: {}",
                    sb.report(&["run"], &out, "refused")
                );
                assert!(out.stderr.contains(says), "{at}: {}", out.stderr);
            }
            Planted::Replaced => {
                assert_eq!(out.code, 0, "{at}: {}", sb.report(&["run"], &out, "ran"));
                sb.ok(&["wait", "w", "--exit"]);
                assert_eq!(sb.ok(&["logs", "w"]), "hi\n", "{at}");
                let log = std::fs::read_to_string(sb.daemon_log()).unwrap_or_default();
                assert!(log.contains(says), "{at}: {log}");
            }
        }
        if at == "logs" {
            assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "{at}");
        } else {
            assert_eq!(std::fs::read_to_string(&target).unwrap(), content, "{at}");
        }
        assert!(
            alive(vpid as i32),
            "{at}: the daemon killed a process named by a planted file"
        );
    }
    kill(vpid as i32, libc::SIGKILL);
    let _ = victim.wait();
}

#[test]
fn a_link_planted_where_a_deleted_log_dir_was_is_not_followed() {
    let sb = Sandbox::new();
    sb.start("w", "while :; do echo tick; sleep 0.05; done");
    sb.ok(&["wait", "w", "--until", "tick"]);
    let logs = sb.session_dir().join("logs");
    std::fs::remove_dir_all(&logs).expect("deleting the log dir");
    let outside = sb.root.join("outside");
    std::fs::create_dir(&outside).expect("making the outside dir");
    std::os::unix::fs::symlink(&outside, &logs).expect("planting the link");
    // A writer checks once a second that its file still has a name; then it
    // finds the link where the log dir was, and says so rather than follow it.
    let said = "w.stdout: it is a symbolic link, which agent-procs never follows";
    eventually(
        std::time::Duration::from_secs(20),
        "word of the link in daemon.log",
        || {
            let log = std::fs::read_to_string(sb.daemon_log()).unwrap_or_default();
            done_or(log.contains(said), log)
        },
    );
    let written: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(written.is_empty(), "written through the link: {written:?}");
    assert_eq!(sb.proc_status("w")["state"], "running");
}
