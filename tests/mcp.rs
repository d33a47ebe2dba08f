//! `agent-procs mcp`: the protocol's edge cases as raw JSON lines, and a whole
//! session driven by the official MCP Python SDK (tests/mcp/client.py).
//!
//! The SDK test needs a Python with the `mcp` and `jsonschema` packages:
//! `AGENT_PROCS_MCP_PYTHON`, else target/mcp-venv/bin/python, which is created
//! (python3 -m venv, pip install mcp jsonschema) when missing and the package
//! registry is reachable; .ci/run creates it beforehand. Without one the test
//! is skipped with a notice, unless `AGENT_PROCS_REQUIRE_MCP_SDK=1` or
//! `AGENT_PROCS_REQUIRE_TOOLS=1` (both set by .ci/run), which make it fail instead.

mod common;

use common::{BIN, Sandbox, lines_of, wait_child};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `agent-procs mcp`, its stdout read line by line on a thread.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(sb: &Sandbox) -> Server {
        let mut cmd = Command::new(BIN);
        sb.isolate(cmd.args(["mcp", "--session", "default"]))
            .current_dir(&sb.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("starting agent-procs mcp");
        let stdout = child.stdout.take().expect("its stdout");
        let lines = lines_of(stdout);
        let stdin = child.stdin.take();
        Server {
            child,
            stdin,
            lines,
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("writing to the server");
    }

    /// The next message, within `limit`.
    fn next(&self, limit: Duration) -> Value {
        let line = self
            .lines
            .recv_timeout(limit)
            .unwrap_or_else(|e| panic!("no message from the server within {limit:?}: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Send a request and return its response, skipping notifications.
    fn ask(&mut self, request: Value) -> Value {
        self.send(&request.to_string());
        loop {
            let message = self.next(Duration::from_secs(30));
            if message.get("id") == request.get("id") {
                return message;
            }
            assert!(
                message.get("method").is_some(),
                "a stray response: {message}"
            );
        }
    }

    fn initialize(&mut self, version: &str) -> Value {
        let response = self.ask(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}));
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        response
    }

    fn call(&mut self, id: u64, tool: &str, arguments: Value) -> Value {
        self.ask(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}}))
    }

    /// Close stdin, and return every line the server wrote before it exited
    /// (0 is asserted), within `limit`.
    fn lines_until_exit(mut self, limit: Duration) -> Vec<String> {
        drop(self.stdin.take());
        let deadline = Instant::now() + limit;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the server outlived its stdin: {lines:?}")
                }
            }
        }
        let status = self.child.wait().expect("waiting for the server");
        assert_eq!(status.code(), Some(0), "{lines:?}");
        lines
    }

    /// Close stdin and wait for the exit status.
    fn close(mut self) -> i32 {
        drop(self.stdin.take());
        let status = wait_child(&mut self.child, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("the server outlived its stdin"));
        status.code().unwrap_or(-1)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn error_code(response: &Value) -> i64 {
    response["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {response}"))
}

#[test]
fn broken_and_early_messages_get_the_json_rpc_error_codes() {
    let sb = Sandbox::new();
    let mut server = Server::start(&sb);
    // Before initialize: tools are refused, ping works.
    let early = server.call(1, "status", json!({}));
    assert_eq!(error_code(&early), -32600, "{early}");
    assert!(
        early["error"]["message"]
            .as_str()
            .unwrap()
            .contains("initialize")
    );
    let pong = server.ask(json!({"jsonrpc": "2.0", "id": "p", "method": "ping"}));
    assert_eq!(pong["result"], json!({}), "{pong}");

    server.send("{not json");
    let parse = server.next(Duration::from_secs(10));
    assert_eq!(
        (error_code(&parse), &parse["id"]),
        (-32700, &Value::Null),
        "{parse}"
    );
    server.send(r#"[{"jsonrpc":"2.0","id":5,"method":"ping"}]"#);
    let batch = server.next(Duration::from_secs(10));
    assert_eq!(error_code(&batch), -32600, "{batch}");
    let missing =
        server.ask(json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {}}));
    assert_eq!(error_code(&missing), -32602, "{missing}");

    // 2025-06-18: arguments that fail their checks are invalid params.
    let init = server.initialize("2025-06-18");
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );
    let unknown = server.ask(json!({"jsonrpc": "2.0", "id": 3, "method": "resources/list"}));
    assert_eq!(error_code(&unknown), -32601, "{unknown}");
    let again = server.initialize("2025-06-18");
    assert_eq!(error_code(&again), -32600, "{again}");
    let no_name =
        server.ask(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {}}));
    assert_eq!(error_code(&no_name), -32602, "{no_name}");
    let no_tool = server.call(5, "format_disk", json!({}));
    assert_eq!(error_code(&no_tool), -32602, "{no_tool}");
    let bad = server.call(6, "start", json!({"command": "sleep 1", "port": 0}));
    assert_eq!(error_code(&bad), -32602, "{bad}");
    assert_eq!(server.close(), 0);

    // 2025-11-25: the same mistake is a tool error the model can read.
    let mut server = Server::start(&sb);
    let init = server.initialize("2099-01-01");
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    let bad = server.call(6, "start", json!({"command": "sleep 1", "port": 0}));
    assert_eq!(bad["result"]["isError"], true, "{bad}");
    let text = bad["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("port must be a whole number from 1 to 65535"),
        "{text}"
    );
    // A process that does not exist: an error that says which.
    let missing = server.call(
        7,
        "wait",
        json!({"name": "ghost", "exit": true, "timeout_s": 5}),
    );
    assert_eq!(missing["result"]["isError"], true, "{missing}");
    // Nothing was started, so no daemon either.
    assert_eq!(sb.daemon_pid(), None);
    assert_eq!(server.close(), 0);
}

#[test]
fn the_2026_07_28_envelope_needs_no_handshake_and_is_checked_per_request() {
    let sb = Sandbox::new();
    let meta = |version: &str| {
        json!({"io.modelcontextprotocol/protocolVersion": version,
               "io.modelcontextprotocol/clientCapabilities": {}})
    };
    let mut server = Server::start(&sb);
    // A revision we do not speak: -32022, naming the one we do.
    let old = server.ask(
        json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover",
        "params": {"_meta": meta("2099-01-01")}}),
    );
    assert_eq!(error_code(&old), -32022, "{old}");
    assert_eq!(
        old["error"]["data"]["supported"],
        json!(["2026-07-28"]),
        "{old}"
    );
    let discover = server.ask(
        json!({"jsonrpc": "2.0", "id": 2, "method": "server/discover",
        "params": {"_meta": meta("2026-07-28")}}),
    );
    assert_eq!(
        discover["result"]["supportedVersions"],
        json!(["2026-07-28"]),
        "{discover}"
    );
    assert_eq!(discover["result"]["resultType"], "complete", "{discover}");
    // Tools without initialize, every result tagged.
    let call = server.ask(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "status", "arguments": {}, "_meta": meta("2026-07-28")}}));
    assert_eq!(
        call["result"]["structuredContent"],
        json!({"processes": []}),
        "{call}"
    );
    assert_eq!(call["result"]["resultType"], "complete", "{call}");
    // On this connection: no initialize, and no request without its envelope.
    let init = server.initialize("2025-11-25");
    assert_eq!(error_code(&init), -32022, "{init}");
    let bare = server.ask(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}));
    assert_eq!(error_code(&bare), -32602, "{bare}");
    assert_eq!(server.close(), 0);

    // A connection that began with initialize takes no envelopes.
    let mut server = Server::start(&sb);
    server.initialize("2025-11-25");
    let mixed = server.ask(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list",
        "params": {"_meta": meta("2026-07-28")}}));
    assert_eq!(error_code(&mixed), -32600, "{mixed}");
    let list = server.ask(json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list"}));
    assert!(list["result"].get("resultType").is_none(), "{list}");
    assert_eq!(server.close(), 0);
}

#[test]
fn a_cancelled_wait_ends_at_once_and_eof_leaves_processes_running() {
    let sb = Sandbox::new();
    let mut server = Server::start(&sb);
    server.initialize("2025-11-25");
    let started = server.call(
        1,
        "start",
        json!({"name": "sleeper", "command": "sleep 300"}),
    );
    assert_eq!(started["result"]["isError"], false, "{started}");
    let pid = started["result"]["structuredContent"]["pid"]
        .as_i64()
        .unwrap() as i32;

    server.send(
        &json!({"jsonrpc": "2.0", "id": "w", "method": "tools/call", "params": {
        "name": "wait", "arguments": {"name": "sleeper", "until": "never", "timeout_s": 120},
        "_meta": {"progressToken": "tok"}}})
        .to_string(),
    );
    // Progress while it waits.
    let progress = server.next(Duration::from_secs(20));
    assert_eq!(progress["method"], "notifications/progress", "{progress}");
    assert_eq!(progress["params"]["progressToken"], "tok", "{progress}");
    assert_eq!(progress["params"]["total"], 120.0, "{progress}");
    // A status meanwhile is not held up by the wait.
    let status = server.call(2, "status", json!({}));
    assert_eq!(
        status["result"]["structuredContent"]["processes"][0]["name"],
        "sleeper"
    );

    let cancelled = Instant::now();
    server.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"w","reason":"user"}}"#);
    let pong = server.ask(json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}));
    assert_eq!(pong["result"], json!({}));
    assert!(
        cancelled.elapsed() < Duration::from_secs(5),
        "{:?}",
        cancelled.elapsed()
    );
    // No answer to the cancelled call and no more progress for it.
    assert!(
        server
            .lines
            .recv_timeout(Duration::from_millis(1500))
            .is_err(),
        "a message after the cancel"
    );

    // End of input: exit 0, and the process keeps running.
    assert_eq!(server.close(), 0);
    assert!(common::alive(pid), "sleeper died with the MCP server");
    assert_eq!(sb.proc_status("sleeper")["state"], "running");
}

#[test]
fn logs_page_forward_with_a_cursor_and_keep_within_max_bytes() {
    let sb = Sandbox::new();
    let mut server = Server::start(&sb);
    server.initialize("2025-11-25");
    let started = server.call(
        1,
        "start",
        json!({"name": "counter",
        "command": "i=1; while [ $i -le 120 ]; do echo line-$i; i=$((i+1)); done; echo done >&2"}),
    );
    assert_eq!(started["result"]["isError"], false, "{started}");
    let exited = server.call(
        2,
        "wait",
        json!({"name": "counter", "exit": true, "timeout_s": 30}),
    );
    assert_eq!(exited["result"]["isError"], false, "{exited}");
    let logs = |server: &mut Server, id: u64, args: Value| -> Value {
        let reply = server.call(id, "logs", args);
        assert_eq!(reply["result"]["isError"], false, "{reply}");
        reply["result"]["structuredContent"].clone()
    };

    // The newest 50 by default, both streams, stderr marked.
    let newest = logs(&mut server, 3, json!({"name": "counter"}));
    let output = newest["output"].as_str().unwrap();
    assert_eq!(newest["lines"], 50, "{newest}");
    assert!(
        output.starts_with("line-72\n") && output.ends_with("err| done\n"),
        "{output}"
    );
    // A byte budget keeps the newest lines and says how many it left out.
    let small = logs(
        &mut server,
        4,
        json!({"name": "counter", "stream": "stdout", "max_bytes": 30}),
    );
    assert_eq!(small["output"], "line-118\nline-119\nline-120\n", "{small}");
    assert_eq!(small["omitted_lines"], 47, "{small}");

    // Paging from the start: every line once, oldest first, `more` until the end.
    let mut cursor = "0.0".to_string();
    let mut seen = Vec::new();
    for id in 10.. {
        let page = logs(
            &mut server,
            id,
            json!({"name": "counter", "stream": "stdout", "after": cursor, "tail": 50}),
        );
        seen.extend(page["output"].as_str().unwrap().lines().map(str::to_string));
        cursor = page["cursor"].as_str().unwrap().to_string();
        if page["more"] == false {
            break;
        }
        assert!(id < 20, "paging does not end: {page}");
    }
    let want: Vec<String> = (1..=120).map(|i| format!("line-{i}")).collect();
    assert_eq!(seen, want);
    // Nothing new: no lines, the same cursor.
    let after = logs(
        &mut server,
        30,
        json!({"name": "counter", "stream": "stdout", "after": cursor}),
    );
    assert_eq!(
        (after["lines"].clone(), after["cursor"].clone()),
        (json!(0), json!(cursor))
    );

    // As `logs` does: the latest run by default, every run with since start.
    let again = server.call(40, "restart", json!({"name": "counter"}));
    assert_eq!(again["result"]["isError"], false, "{again}");
    let exited = server.call(
        41,
        "wait",
        json!({"name": "counter", "exit": true, "timeout_s": 30}),
    );
    assert_eq!(exited["result"]["isError"], false, "{exited}");
    let all = json!({"name": "counter", "stream": "stdout", "tail": 1000, "max_bytes": 100000});
    let latest = logs(&mut server, 42, all.clone());
    // The restart's annotation line, then the run's 120.
    assert_eq!(latest["lines"], 121, "{latest}");
    let text = latest["output"].as_str().unwrap();
    assert!(
        text.starts_with("[agent-procs] Restarted") && text.ends_with("\nline-120\n"),
        "{text}"
    );
    let mut every = all;
    every["since"] = json!("start");
    let every = logs(&mut server, 43, every);
    assert_eq!(every["lines"], 241, "{every}");
    assert_eq!(server.close(), 0);
}

#[test]
fn up_starts_the_config_in_order_with_progress() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.root.join("agent-procs.yaml"),
        "processes:\n  db:\n    cmd: echo db-ready; exec sleep 300\n    ready: {log: db-ready}\n  \
         api:\n    cmd: echo api-up; exec sleep 300\n    depends_on: db\n    ready: {log: api-up}\n  \
         extra:\n    cmd: exec sleep 300\n",
    )
    .expect("writing agent-procs.yaml");
    let mut server = Server::start(&sb);
    server.initialize("2025-11-25");
    server.send(
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "up", "arguments": {"only": ["api"], "timeout_s": 60},
        "_meta": {"progressToken": 7}}})
        .to_string(),
    );
    let mut progress = Vec::new();
    let reply = loop {
        let message = server.next(Duration::from_secs(60));
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], 7, "{message}");
            progress.push(message["params"]["message"].as_str().unwrap().to_string());
            continue;
        }
        break message;
    };
    assert_eq!(reply["result"]["isError"], false, "{reply}");
    let steps = reply["result"]["structuredContent"]["steps"]
        .as_array()
        .unwrap();
    let seen: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["event"].as_str().unwrap()))
        .collect();
    // db is ready before api starts; extra was not asked for.
    let at = |step| {
        seen.iter()
            .position(|s| *s == step)
            .unwrap_or_else(|| panic!("{seen:?}"))
    };
    assert!(at(("db", "ready")) < at(("api", "started")), "{seen:?}");
    assert!(seen.contains(&("api", "ready")), "{seen:?}");
    assert!(!seen.iter().any(|(name, _)| *name == "extra"), "{seen:?}");
    assert!(progress.iter().any(|p| p == "db: ready"), "{progress:?}");
    // A name the config does not have: an error naming what it has.
    let wrong = server.call(2, "up", json!({"only": ["nope"]}));
    assert_eq!(wrong["result"]["isError"], true, "{wrong}");
    let text = wrong["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("nope") && text.contains("db"), "{text}");
    assert_eq!(server.close(), 0);
}

/// A Python with the official MCP SDK and jsonschema, or why there is none.
fn sdk_python() -> Result<PathBuf, String> {
    let works = |python: &PathBuf| {
        Command::new(python)
            .args(["-c", "import mcp, jsonschema"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Some(python) = std::env::var_os("AGENT_PROCS_MCP_PYTHON") {
        let python = PathBuf::from(python);
        return if works(&python) {
            Ok(python)
        } else {
            Err(format!(
                "AGENT_PROCS_MCP_PYTHON={} cannot import mcp and jsonschema",
                python.display()
            ))
        };
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/mcp-venv");
    let python = venv.join("bin/python");
    if works(&python) {
        return Ok(python);
    }
    let made = common::run_bounded(
        {
            let mut c = Command::new("python3");
            c.args(["-m", "venv"]).arg(&venv);
            c
        },
        Duration::from_secs(120),
    );
    if made.code != 0 {
        return Err(format!("python3 -m venv failed: {}", made.stderr));
    }
    let pip = common::run_bounded(
        {
            let mut c = Command::new(venv.join("bin/pip"));
            c.args(["install", "-q", "mcp", "jsonschema"]);
            c
        },
        Duration::from_secs(600),
    );
    if pip.code != 0 || !works(&python) {
        return Err(format!("pip install mcp jsonschema failed: {}", pip.stderr));
    }
    Ok(python)
}

#[test]
fn the_official_python_sdk_drives_a_real_session() {
    let python = match sdk_python() {
        Ok(python) => python,
        Err(why)
            if ["AGENT_PROCS_REQUIRE_MCP_SDK", common::REQUIRE_TOOLS]
                .iter()
                .any(|v| std::env::var(v).as_deref() == Ok("1")) =>
        {
            panic!(
                "the MCP Python SDK is required (AGENT_PROCS_REQUIRE_MCP_SDK=1 or {}=1): {why}",
                common::REQUIRE_TOOLS
            )
        }
        Err(why) => {
            common::skip_notice(&format!(
                "no MCP Python SDK ({why}); set AGENT_PROCS_MCP_PYTHON or run .ci/run"
            ));
            return;
        }
    };
    let sb = Sandbox::new();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/client.py");
    let mut cmd = Command::new(python);
    sb.isolate(cmd.arg(script).arg(BIN).arg(&sb.root))
        .current_dir(&sb.root)
        .stdin(Stdio::null());
    let out = common::run_bounded(cmd, Duration::from_secs(240));
    assert_eq!(
        out.code,
        0,
        "tests/mcp/client.py failed\nstdout:\n{}\nstderr:\n{}\ndaemon.log:\n{}",
        out.stdout,
        out.stderr,
        std::fs::read_to_string(sb.daemon_log()).unwrap_or_default()
    );
    // down stopped the daemon too.
    assert_eq!(sb.daemon_pid(), None);
}

#[test]
fn calls_sent_just_before_end_of_input_are_carried_out() {
    // A script that pipes its requests in and closes stdin at once: the start
    // and its answer are not lost, an observing wait is dropped, and the
    // server exits 0 leaving the process running.
    let sb = Sandbox::new();
    let mut server = Server::start(&sb);
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}});
    let start = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "start", "arguments": {"name": "piped", "command": "sleep 300"}}});
    let wait = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "wait", "arguments": {"name": "piped", "until": "never", "timeout_s": 300}}});
    server.send(&format!(
        "{init}\n{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}}\n{start}\n{wait}"
    ));
    let lines = server.lines_until_exit(Duration::from_secs(20));
    let answered: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let started = answered
        .iter()
        .find(|m| m["id"] == 1)
        .unwrap_or_else(|| panic!("the start was not answered: {lines:?}"));
    assert_eq!(started["result"]["isError"], false, "{started}");
    assert!(
        answered.iter().all(|m| m["id"] != 2),
        "the wait was answered after the end of input: {lines:?}"
    );
    assert_eq!(sb.proc_status("piped")["state"], "running");
}
