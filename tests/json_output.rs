//! `--json` and `--quiet` on the commands that report what they did: one JSON
//! object with `"schema": 1` (JSON Lines for `up`), or nothing at all.

mod common;
use common::*;
use serde_json::{Value, json};

fn one(text: &str) -> Value {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "expected one JSON line: {text}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn commands_print_one_schema_1_object() {
    let sb = Sandbox::new();
    let run = one(&sb.ok(&[
        "run",
        "sh -c 'echo hi; exec sleep 60'",
        "--name",
        "web",
        "--json",
    ]));
    assert_eq!(run["schema"], 1);
    assert_eq!(run["name"], "web");
    assert_eq!(run["id"], "p1");
    assert!(run["pid"].as_i64().is_some_and(|p| p > 0), "{run}");
    assert_eq!(run["url"], Value::Null);
    assert_eq!(
        sb.proc_status("web")["schema"],
        1,
        "status --json rows carry it too"
    );

    let wait = one(&sb.ok(&["wait", "web", "--until", "hi", "--json"]));
    assert_eq!(wait, json!({"schema": 1, "event": "match", "line": "hi"}));

    let restart = one(&sb.ok(&["restart", "web", "--json"]));
    assert_eq!(restart["name"], "web");
    assert_eq!(restart["state"], "running");
    assert_eq!(restart["exit_code"], Value::Null);
    assert_ne!(restart["pid"], run["pid"]);

    let stop = one(&sb.ok(&["stop", "web", "--json"]));
    assert_eq!(
        stop,
        json!({"schema": 1, "message": "stopped web", "name": "web", "state": "exited",
               "exit_code": null, "exit_signal": "SIGTERM"})
    );
    let exited = one(&sb.ok(&["wait", "web", "--exit", "--json"]));
    assert_eq!(exited["event"], "exit");
    assert_eq!(exited["exit_signal"], "SIGTERM");

    sb.ok(&["run", "sleep 60", "--name", "slow"]);
    let out = sb.run(&["wait", "slow", "--exit", "--timeout", "0.2", "--json"]);
    assert_eq!(out.code, 1);
    assert_eq!(one(&out.stdout), json!({"schema": 1, "event": "timeout"}));

    let all = one(&sb.ok(&["stop-all", "--json"]));
    assert_eq!(all["message"], "all processes stopped");
    let sessions = one(&sb.ok(&["session", "list", "--json"]));
    assert_eq!(
        sessions,
        json!({"schema": 1, "sessions": [
            {"name": "default", "running": true, "root": sb.root.display().to_string()}
        ]})
    );
    let down = one(&sb.ok(&["down", "--json"]));
    assert_eq!(
        down,
        json!({"schema": 1, "message": "all processes stopped", "stopped": true})
    );
    let again = one(&sb.ok(&["down", "--json"]));
    assert_eq!(again["stopped"], false);
}

#[test]
fn up_prints_json_lines_and_a_failure_with_its_log_tail() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.root.join("agent-procs.yaml"),
        "processes:\n  a: {cmd: sleep 60}\n  b:\n    cmd: sh -c 'echo oops; exit 2'\n    depends_on: a\n    ready: never\n",
    )
    .expect("writing the config");
    let out = sb.run(&["up", "--json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let events: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["started", "started", "failed"], "{}", out.stdout);
    assert!(events.iter().all(|e| e["schema"] == 1));
    let failed = &events[2];
    assert_eq!(failed["name"], "b");
    assert_eq!(failed["reason"], "exited with code 2 before it was ready");
    assert_eq!(failed["log_tail"], json!(["oops"]));
}

#[test]
fn quiet_prints_nothing_and_the_flags_are_checked() {
    let sb = Sandbox::new();
    assert_eq!(sb.ok(&["run", "sleep 60", "--name", "q", "--quiet"]), "");
    assert_eq!(sb.ok(&["stop", "q", "-q"]).len(), 0);
    let err = sb.fails(&["run", "sleep 1", "--json", "--quiet"], 64);
    assert!(
        err.contains("--json and --quiet do not go together"),
        "{err}"
    );
    let err = sb.fails(&["session", "clean", "--json"], 64);
    assert!(
        err.contains("--json does not go with this command"),
        "{err}"
    );
}
