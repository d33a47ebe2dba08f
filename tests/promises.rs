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
