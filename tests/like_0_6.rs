//! What agent-procs 0.6's own tests (`make compat`) and the scripts written for it
//! rely on, kept in our suite so a change cannot break it unseen.

mod common;

use common::*;

#[test]
fn session_clean_prints_0_6s_line_and_removes_a_stale_sessions_files() {
    // As 0.6.3's test_session_clean_removes_stale plants them: a pid file naming
    // a dead pid, a regular file where the socket was, and a state directory.
    let sb = Sandbox::new();
    let name = "stale";
    std::fs::create_dir_all(&sb.runtime).expect("making the runtime dir");
    let pid_file = sb.runtime.join(format!("{name}.pid"));
    let socket = sb.runtime.join(format!("{name}.sock"));
    std::fs::write(&pid_file, "99999999\n").expect("writing the pid file");
    std::fs::write(&socket, "stale socket sentinel").expect("writing the socket file");
    let state = sb.state.join("agent-procs/sessions").join(name);
    std::fs::create_dir_all(state.join("logs")).expect("making the state dir");
    std::fs::write(state.join("state.json"), "stale state sentinel").expect("state.json");

    let out = sb.run(&["session", "clean"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        format!("cleaned stale session: {name}\n"),
        "{}",
        out.stderr
    );
    assert!(!pid_file.exists(), "the pid file is still there");
    assert!(
        !socket.exists(),
        "the file at the socket's path is still there"
    );
    assert!(!state.exists(), "the state directory is still there");
}
