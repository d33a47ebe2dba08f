//! Promises kept to the letter (issue 16): the daemon connects to nothing off
//! this machine, whatever a config or a command line names; a `--watch` of a
//! huge tree does not stall the daemon; an environment value with a NUL is
//! called a bad value.

mod common;
use common::*;

const RULE: &str = "the host must be localhost or a loopback address (127.0.0.0/8 or ::1)";

#[test]
fn readiness_probes_reach_loopback_only() {
    let sb = Sandbox::new();
    sb.start("x", "sleep 30");
    // The command line: a usage error naming the rule, before anything connects.
    for url in [
        "http://10.0.0.1:8080/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:192.168.1.1]/",
        "http://0.0.0.0:80/",
    ] {
        let err = sb.fails(&["wait", "x", "--http", url, "--timeout", "1"], 64);
        assert!(err.contains(RULE), "{url}: {err}");
    }
    // Loopback in any spelling is fine (nothing listens: a timeout, exit 1).
    let port = free_port();
    for host in ["127.0.0.1", "127.9.9.9", "localhost", "[::1]"] {
        let url = format!("http://{host}:{port}/");
        let err = sb.fails(&["wait", "x", "--http", &url, "--timeout", "0.3"], 1);
        assert!(!err.contains(RULE), "{url}: {err}");
    }
    // A raw client gets the same rule from the daemon.
    let mut s = sb.connect();
    let reply = ask(
        &mut s,
        b"{\"type\":\"Wait\",\"target\":\"x\",\"http\":\"http://192.168.0.1/\"}\n",
    );
    assert_eq!(reply["type"], "Error", "{reply}");
    assert!(
        reply["message"].as_str().unwrap_or_default().contains(RULE),
        "{reply}"
    );
    // A config (a cloned repository's) cannot make `up` probe a network either:
    // the error points at the value.
    std::fs::write(
        sb.root.join("agent-procs.yaml"),
        "processes:\n  api:\n    cmd: sleep 30\n    ready: {http: \"http://10.1.2.3:8080/health\"}\n",
    )
    .expect("writing the config");
    let err = sb.fails(&["up"], 1);
    assert!(err.contains("agent-procs.yaml:4:19"), "{err}");
    assert!(err.contains(RULE), "{err}");
}

#[test]
fn a_nul_in_an_environment_value_is_reported_as_a_bad_value() {
    let sb = Sandbox::new();
    sb.start("x", "sleep 30");
    let mut s = sb.connect();
    // Only a raw client can send one: argv and environ cannot hold a NUL.
    let reply = ask(
        &mut s,
        b"{\"type\":\"Run\",\"command\":\"true\",\"name\":\"v\",\"env\":{\"GOOD_NAME\":\"a\\u0000b\"}}\n",
    );
    assert_eq!(reply["type"], "Error", "{reply}");
    assert_eq!(
        reply["message"],
        "invalid value for environment variable \"GOOD_NAME\": it contains a NUL byte",
        "{reply}"
    );
    let reply = ask(
        &mut s,
        b"{\"type\":\"Run\",\"command\":\"true\",\"name\":\"v\",\"env\":{\"A=B\":\"ok\"}}\n",
    );
    assert_eq!(
        reply["message"], "invalid environment variable name \"A=B\"",
        "{reply}"
    );
}

#[test]
fn status_answers_quickly_while_a_huge_tree_is_being_watched() {
    let sb = Sandbox::new();
    sb.start("idle", "sleep 60");
    let mut s = sb.connect();
    ask(&mut s, b"{\"type\":\"Status\"}\n");
    // /usr: some 15 000 directories, a watch each.
    let watching = |log: &str| log.contains("big: watching");
    let mut rtts = Vec::new();
    std::thread::scope(|scope| {
        let run = scope.spawn(|| {
            sb.run(&[
                "run", "sleep 60", "--name", "big", "--cwd", "/usr", "--watch", "**",
            ])
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let log = std::fs::read_to_string(sb.daemon_log()).unwrap_or_default();
            if watching(&log) && run.is_finished() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never done: {log}");
            let at = std::time::Instant::now();
            let reply = ask(&mut s, b"{\"type\":\"Status\"}\n");
            rtts.push(at.elapsed());
            assert_eq!(reply["type"], "Status", "{reply}");
        }
        let out = run.join().expect("the run thread");
        assert_eq!(out.code, 0, "{}", out.stderr);
    });
    let log = std::fs::read_to_string(sb.daemon_log()).unwrap_or_default();
    let dirs: usize = log
        .split("big: watching ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    rtts.sort();
    let max = rtts.last().copied().unwrap_or_default();
    let median = rtts.get(rtts.len() / 2).copied().unwrap_or_default();
    eprintln!(
        "watching {dirs} dirs: {} status round trips meanwhile, median {median:?}, max {max:?}",
        rtts.len()
    );
    assert!(dirs > 1000, "{log}");
    assert!(
        rtts.len() >= 3,
        "too few status calls overlapped the watching"
    );
    // 50 ms on a quiet machine (RELIABILITY.md); a loaded one gets room, but not
    // the whole add (seconds) that used to pass before the first answer.
    assert!(
        max < std::time::Duration::from_millis(250),
        "status took {max:?} while watching"
    );
    assert_eq!(sb.proc_status("big")["state"], "running");
}
