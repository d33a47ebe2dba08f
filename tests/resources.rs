//! The resource view and port conflicts, driven through the real binary:
//! `status --resources` shows a group's size, memory, CPU and listening
//! addresses; `status NAME` shows one process in full (env keys, never values);
//! a taken `--port` and an EADDRINUSE death name who holds the port.

mod common;
use common::*;
use std::path::Path;

/// `listen.py PORT`: listen on 127.0.0.1:PORT, say so, and wait; dies with
/// `OSError: [Errno 98] Address already in use` when the port is taken.
const LISTENER: &str = r#"
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("serving", flush=True)
time.sleep(300)
"#;

/// The real interpreter behind `python3`, so that `exec` leaves no wrapper
/// process (version managers' shims fork) and group sizes are exact.
fn python() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("running python3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    std::fs::write(sb.root.join("listen.py"), LISTENER).expect("writing listen.py");
    sb
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Another session of the sandbox, brought down when the test ends.
struct OtherSession<'a>(&'a Sandbox, &'a str);

impl OtherSession<'_> {
    fn ok(&self, args: &[&str]) -> String {
        let mut all = vec!["--session", self.1];
        all.extend_from_slice(args);
        self.0.ok(&all)
    }
}

impl Drop for OtherSession<'_> {
    fn drop(&mut self) {
        run_bounded(
            self.0.command(&["--session", self.1, "down"]),
            std::time::Duration::from_secs(30),
        );
    }
}

fn start_listener(sb: &Sandbox, session: Option<&str>, name: &str, port: u16) -> i64 {
    let cmd = format!("sleep 300 & exec {} listen.py {port}", python());
    let p = port.to_string();
    let mut args = Vec::new();
    if let Some(s) = session {
        args.extend(["--session", s]);
    }
    // One string: the daemon runs it with sh -c, which execs python.
    args.extend(["run", &cmd, "--name", name, "--port", &p]);
    sb.ok(&args);
    let mut wait = Vec::new();
    if let Some(s) = session {
        wait.extend(["--session", s]);
    }
    wait.extend(["wait", name, "--port", &p, "--timeout", "20"]);
    sb.ok(&wait);
    let mut status = Vec::new();
    if let Some(s) = session {
        status.extend(["--session", s]);
    }
    status.extend(["status", name, "--json"]);
    json(&sb.ok(&status))["pid"].as_i64().expect("a pid")
}

#[test]
fn status_with_resources_shows_the_group_its_memory_and_its_port() {
    let sb = sandbox();
    let port = free_port();
    start_listener(&sb, None, "api", port);
    let address = format!("127.0.0.1:{port}");

    // The default status reads nothing from /proc and keeps its shape.
    let plain = sb.proc_status("api");
    for field in ["rss_bytes", "process_count", "cpu_percent", "listening"] {
        assert!(
            plain.get(field).is_none(),
            "{field} in plain status: {plain}"
        );
    }

    let all = json(&sb.ok(&["status", "--resources", "--json"]));
    let api = &all[0];
    assert_eq!(api["name"], "api", "{all}");
    // sh became python; `sleep 300 &` is the second member of the group.
    assert_eq!(api["process_count"], 2, "{api}");
    let rss = api["rss_bytes"].as_u64().expect("rss_bytes");
    assert!(
        (1 << 20..1 << 30).contains(&rss),
        "implausible RSS {rss}: {api}"
    );
    assert!(
        api["cpu_percent"].as_f64().is_some_and(|c| c >= 0.0),
        "{api}"
    );
    assert_eq!(api["listening"], serde_json::json!([address]), "{api}");
    assert_eq!(api["pgid"], api["pid"], "{api}");

    let table = sb.ok(&["status", "-r"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.ends_with("UPTIME   PROCS RSS      CPU    LISTEN"),
        "{table}"
    );
    let row = lines.next().unwrap_or_default();
    assert!(row.starts_with("api "), "{table}");
    assert!(row.ends_with(&address), "{table}");
    let words: Vec<&str> = row.split_whitespace().collect();
    assert!(words.contains(&"2"), "{table}");
}

#[test]
fn status_of_one_process_shows_it_in_full_without_env_values() {
    let sb = sandbox();
    sb.ok(&[
        "run",
        "--name",
        "job",
        "--env",
        "SECRET_TOKEN=hunter2",
        "--",
        "sh",
        "-c",
        "echo hi; exit 3",
    ]);
    sb.ok(&["wait", "job", "--exit", "--timeout", "20"]);

    let text = sb.ok(&["status", "job"]);
    assert!(text.contains("SECRET_TOKEN"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "an env value was printed: {text}"
    );
    assert!(text.contains("exit code 3"), "{text}");
    assert!(text.contains("crashed"), "{text}");
    let stdout_log = sb.log("job", "stdout").display().to_string();
    assert!(text.contains(&stdout_log), "{text}");

    let one = json(&sb.ok(&["status", "job", "--json"]));
    assert!(one.is_object(), "status NAME --json is one object: {one}");
    assert_eq!(one["schema"], 1);
    assert_eq!(one["env_keys"], serde_json::json!(["SECRET_TOKEN"]));
    assert_eq!(one["log_files"][0], stdout_log.as_str());
    assert!(!one.to_string().contains("hunter2"), "{one}");
    assert_eq!(one["last_exits"][0]["code"], 3, "{one}");
    // By id too.
    assert_eq!(json(&sb.ok(&["status", "p1", "--json"]))["name"], "job");

    let err = sb.fails(&["status", "nosuch"], 2);
    assert!(err.contains("nosuch") && err.contains("job"), "{err}");
}

#[test]
fn a_run_on_a_held_port_is_warned_with_the_holder_and_its_death_explained() {
    let sb = sandbox();
    let other = OtherSession(&sb, "web");
    let port = free_port();
    let holder = start_listener(&sb, Some("web"), "api", port);
    let p = port.to_string();
    let expected =
        format!("port {port} is already in use: 127.0.0.1:{port} is held by pid {holder} (");

    let cmd = format!("{} listen.py {port}", python());
    let out = sb.run(&["run", &cmd, "--name", "second", "--port", &p]);
    assert_eq!(out.code, 0, "{}", sb.report(&[], &out, "run"));
    assert!(
        out.stderr
            .contains(&format!("agent-procs: warning: {expected}")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("listen.py") && out.stderr.contains("session web, process api)"),
        "{}",
        out.stderr
    );

    sb.ok(&["wait", "second", "--exit", "--timeout", "20"]);
    let second = json(&sb.ok(&["status", "second", "--json"]));
    let conflict = second["port_conflict"].as_str().unwrap_or_default();
    assert!(
        conflict.starts_with(&expected) && conflict.ends_with("session web, process api)"),
        "{second}"
    );
    // Plain status says it too, on stderr, so the table keeps its shape.
    let out = sb.run(&["status"]);
    assert!(
        out.stderr.contains(&format!(
            "agent-procs: note: second could not listen: {expected}"
        )),
        "{}",
        out.stderr
    );
    let log = std::fs::read_to_string(sb.daemon_log()).unwrap_or_default();
    assert!(
        log.contains(&format!("second exited (exit code 1); {expected}")),
        "{log}"
    );

    // The holder's own view of itself.
    let held = json(&other.ok(&["status", "api", "--json"]));
    assert_eq!(
        held["listening"],
        serde_json::json!([format!("127.0.0.1:{port}")])
    );
}

#[test]
fn a_port_named_only_in_the_log_is_looked_up_too() {
    let sb = sandbox();
    let port = free_port();
    start_listener(&sb, None, "api", port);
    // As node says it; the process was given no --port.
    let cmd = format!(
        "echo 'Error: listen EADDRINUSE: address already in use 127.0.0.1:{port}' >&2; exit 1"
    );
    sb.ok(&["run", "--name", "node", "--", "sh", "-c", &cmd]);
    let out = sb.run(&[
        "wait",
        "node",
        "--until",
        "never printed",
        "--timeout",
        "20",
    ]);
    assert_eq!(out.code, 1, "{}", sb.report(&[], &out, "wait"));
    assert!(
        out.stderr
            .contains(&format!("127.0.0.1:{port} is held by pid"))
            && out.stderr.contains("process api)"),
        "{}",
        out.stderr
    );
}

#[test]
fn up_whose_server_dies_with_eaddrinuse_names_the_holder() {
    let sb = sandbox();
    let port = free_port();
    let holder = start_listener(&sb, None, "holder", port);
    write(
        &sb.root.join("agent-procs.yaml"),
        &format!(
            "processes:\n  web:\n    cmd: {} listen.py {port}\n    port: {port}\n    ready: serving\n",
            python()
        ),
    );
    let err = sb.fails(&["up", "--timeout", "30"], 1);
    let warned = format!(
        "agent-procs: warning: web: port {port} is already in use: 127.0.0.1:{port} is held by pid {holder} ("
    );
    assert!(err.contains(&warned), "{err}");
    let expected = format!(
        "up failed: web exited with code 1 before it was ready; port {port} is already in use: \
         127.0.0.1:{port} is held by pid {holder} ("
    );
    assert!(err.contains(&expected), "{err}");
    assert!(err.contains("session default, process holder)"), "{err}");
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("writing a test file");
}
