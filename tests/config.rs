//! `config check` and `config show`, driven through the real binary: finding the
//! file, the verdict in text and JSON, every problem listed, and the resolved config.

mod common;
use common::*;
use std::path::{Path, PathBuf};

const STACK: &str = "\
session: ci
processes:
  db:
    cmd: postgres -D data
    ready: {tcp: 5432}
  api:
    cmd: ./api
    cwd: ./backend
    env: {PORT: 8080, DEBUG: true, RATIO: 1.5, NAME: api}
    depends_on: db
    ready: {http: \"http://127.0.0.1:8080/health\"}
    port: 8080
  web:
    cmd: npm run dev
    depends_on: [api]
    ready: compiled successfully
";

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("creating a directory");
    }
    std::fs::write(path, text).expect("writing a config file");
}

/// The sandbox root as the process sees it (the cwd is reported with symlinks resolved).
fn real_root(sb: &Sandbox) -> PathBuf {
    std::fs::canonicalize(&sb.root).expect("resolving the sandbox root")
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn check_accepts_a_valid_file_and_counts_its_processes() {
    let sb = Sandbox::new();
    write(&sb.root.join("agent-procs.yaml"), STACK);
    assert_eq!(
        sb.ok(&["config", "check"]),
        "agent-procs.yaml: ok (3 processes)\n"
    );
    let out = json(&sb.ok(&["config", "check", "--json"]));
    let file = real_root(&sb).join("agent-procs.yaml");
    assert_eq!(
        out,
        serde_json::json!({"schema": 1, "ok": true, "file": file, "processes": 3})
    );
    // Checking starts nothing: no daemon, no socket.
    assert!(!sb.socket().exists());
    assert!(sb.daemon_pid().is_none());
}

#[test]
fn check_lists_every_problem_with_file_line_column_and_key_path() {
    let sb = Sandbox::new();
    write(
        &sb.root.join("agent-procs.yaml"),
        "processes:
  api:
    cmd: ./api
    autorestart: sometimes
    depnds_on: [db]
    port: 70000
  web:
    cmd: x
    depends_on: [api, cache]
",
    );
    let stderr = sb.fails(&["config", "check"], 1);
    assert_eq!(
        stderr,
        "\
agent-procs: agent-procs.yaml:4:18: processes.api.autorestart: unknown value 'sometimes' (expected always, on-failure or never)
agent-procs: agent-procs.yaml:5:5: processes.api.depnds_on: unknown key; did you mean 'depends_on'?
agent-procs: agent-procs.yaml:6:11: processes.api.port: expected a port number from 1 to 65535, not 70000
agent-procs: agent-procs.yaml:9:23: processes.web.depends_on[1]: no process named 'cache'
"
    );
    let out = sb.run(&["config", "check", "--json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stderr, "");
    let verdict = json(&out.stdout);
    assert_eq!(verdict["schema"], 1);
    assert_eq!(verdict["ok"], false);
    let file = real_root(&sb).join("agent-procs.yaml");
    assert_eq!(
        verdict["errors"][0],
        serde_json::json!({
            "file": file,
            "line": 4,
            "col": 18,
            "path": "processes.api.autorestart",
            "message": "unknown value 'sometimes' (expected always, on-failure or never)",
        })
    );
    assert_eq!(verdict["errors"].as_array().map(Vec::len), Some(4));
}

#[test]
fn yaml_outside_the_subset_is_refused_with_its_position() {
    let sb = Sandbox::new();
    write(
        &sb.root.join("agent-procs.yaml"),
        "defaults: &d {cmd: x}\nprocesses:\n  a: *d\n",
    );
    assert_eq!(
        sb.fails(&["config", "check"], 1),
        "agent-procs: agent-procs.yaml:1:11: anchors ('&name') are not supported; repeat the value instead\n"
    );
    write(
        &sb.root.join("agent-procs.yaml"),
        "processes:\n  a:\n    cmd: x\n---\nprocesses: {}\n",
    );
    assert_eq!(
        sb.fails(&["config", "check"], 1),
        "agent-procs: agent-procs.yaml:4:1: a second document ('---') is not supported; keep one document per file\n"
    );
}

#[test]
fn the_file_is_found_in_a_parent_directory() {
    let sb = Sandbox::new();
    write(
        &sb.root.join("agent-procs.yaml"),
        "processes: {one: {cmd: x}}\n",
    );
    let deep = sb.root.join("src/app");
    std::fs::create_dir_all(&deep).expect("creating a subdirectory");
    let mut cmd = sb.command(&["config", "check"]);
    cmd.current_dir(&deep);
    let out = run_bounded(cmd, CALL_LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let file = real_root(&sb).join("agent-procs.yaml");
    assert_eq!(out.stdout, format!("{}: ok (1 process)\n", file.display()));
}

#[test]
fn no_file_anywhere_says_where_it_looked() {
    let sb = Sandbox::new();
    if Path::new("/tmp/agent-procs.yaml").exists() || Path::new("/agent-procs.yaml").exists() {
        return; // a stray file above the sandbox would be found, rightly
    }
    let stderr = sb.fails(&["config", "check"], 1);
    assert_eq!(
        stderr,
        format!(
            "agent-procs: no agent-procs.yaml in {} or any parent; pass --config PATH\n",
            real_root(&sb).display()
        )
    );
    let out = sb.run(&["config", "show", "--json"]);
    assert_eq!(out.code, 1);
    let verdict = json(&out.stdout);
    assert_eq!(verdict["ok"], false);
    assert_eq!(verdict["errors"][0]["file"], serde_json::Value::Null);
    assert!(
        verdict["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("no agent-procs.yaml in ")),
        "{verdict}"
    );
}

#[test]
fn config_names_a_file_anywhere() {
    let sb = Sandbox::new();
    write(
        &sb.root.join("conf/dev.yaml"),
        "processes: {one: {cmd: x}}\n",
    );
    assert_eq!(
        sb.ok(&["config", "check", "--config", "conf/dev.yaml"]),
        "conf/dev.yaml: ok (1 process)\n"
    );
    assert_eq!(
        sb.fails(&["config", "check", "--config", "missing.yaml"], 1),
        "agent-procs: missing.yaml: no such file or directory\n"
    );
    write(&sb.root.join("bad.yaml"), "processes:\n\tweb: {cmd: x}\n");
    assert_eq!(
        sb.fails(
            &["--session", "x", "config", "check", "--config", "bad.yaml"],
            1
        ),
        "agent-procs: bad.yaml:2:1: tab character in indentation; indent with spaces\n"
    );
}

#[test]
fn show_prints_the_resolved_config() {
    let sb = Sandbox::new();
    write(&sb.root.join("agent-procs.yaml"), STACK);
    let shown = json(&sb.ok(&["config", "show", "--json"]));
    let root = real_root(&sb);
    assert_eq!(shown["schema"], 1);
    assert_eq!(
        shown["file"],
        serde_json::json!(root.join("agent-procs.yaml"))
    );
    assert_eq!(shown["session"], "ci");
    assert_eq!(shown["proxy"], false);
    assert_eq!(shown["proxy_port"], serde_json::Value::Null);
    assert_eq!(
        shown["start_order"],
        serde_json::json!(["db", "api", "web"])
    );
    let api = &shown["processes"][1];
    assert_eq!(
        *api,
        serde_json::json!({
            "name": "api",
            "cmd": "./api",
            "cwd": root.join("backend"),
            "env": {"DEBUG": "true", "NAME": "api", "PORT": "8080", "RATIO": "1.5"},
            "env_file": null,
            "ready": {"http": "http://127.0.0.1:8080/health"},
            "ready_timeout": 30.0,
            "depends_on": ["db"],
            "port": 8080,
            "autorestart": "never",
            "max_restarts": null,
            "restart_delay": 1000,
            "watch": [],
            "watch_ignore": [],
            "stop_timeout": 10.0,
            "stop_signal": "SIGTERM",
            "log_max_size": 52428800,
            "log_max_files": 5,
            "oneshot": false,
        })
    );
    assert_eq!(shown["processes"][0]["cwd"], serde_json::json!(root));
    assert_eq!(
        shown["processes"][0]["ready"],
        serde_json::json!({"tcp": 5432})
    );
    assert_eq!(
        shown["processes"][2]["ready"],
        serde_json::json!({"log": "compiled successfully", "regex": false})
    );
}

#[test]
fn usage_errors_name_the_missing_piece() {
    let sb = Sandbox::new();
    let cases = [
        (&["config"][..], "config needs a subcommand: check or show"),
        (&["config", "frob"][..], "unknown config command 'frob'"),
        (
            &["config", "show"][..],
            "config show prints JSON only; add --json",
        ),
        (
            &["config", "check", "--config"][..],
            "missing argument for option '--config'",
        ),
    ];
    for (args, want) in cases {
        let stderr = sb.fails(args, 64);
        assert!(
            stderr.starts_with(&format!(
                "agent-procs: {want}\nusage: agent-procs config check"
            )),
            "{args:?}: {stderr}"
        );
    }
    // An unknown option gets one line that says where to look, not the usage.
    let stderr = sb.fails(&["config", "check", "--yaml"], 64);
    assert_eq!(
        stderr,
        "agent-procs: unknown option '--yaml' for config; see 'agent-procs config --help'\n"
    );
    let help = sb.ok(&["config", "--help"]);
    assert!(
        help.starts_with("usage: agent-procs config check [--config PATH] [--json]"),
        "{help}"
    );
}
