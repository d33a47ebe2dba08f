//! `up` and `down` from agent-procs.yaml, driven through the real binary: the
//! dependency graph, readiness by log, TCP, HTTP and exit code, failures with
//! the log tail, idempotent re-`up`, `--only`, and `down` in reverse order.
//! Servers are small Python programs the test writes into its sandbox.

mod common;
use common::*;
use std::path::Path;

/// `server.py PORT DELAY STATUS`: after DELAY seconds, answer every GET with STATUS.
const SERVER: &str = r#"
import http.server, sys, time
port, delay, status = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
time.sleep(delay)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"hi")
    def log_message(self, *a):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), H)
print("serving", flush=True)
server.serve_forever()
"#;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("writing a test file");
}

fn sandbox_with(config: &str) -> Sandbox {
    let sb = Sandbox::new();
    write(&sb.root.join("agent-procs.yaml"), config);
    write(&sb.root.join("server.py"), SERVER);
    sb
}

fn pid_of(sb: &Sandbox, name: &str) -> i64 {
    sb.proc_status(name)["pid"].as_i64().unwrap_or(0)
}

/// stdout with the `(id: …, pid: …)` details cut off, for comparing sequences.
fn steps(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| l.split(" (id:").next().unwrap_or(l).to_string())
        .collect()
}

#[test]
fn a_stack_comes_up_in_dependency_order_with_every_kind_of_readiness() {
    let (db, api) = (free_port(), free_port());
    let sb = sandbox_with(&format!(
        "processes:
  db:
    cmd: python3 server.py {db} 0.3 200
    ready: {{tcp: {db}}}
  migrate:
    cmd: sh -c 'echo migrating; sleep 0.2; echo migrated'
    depends_on: db
    ready: {{exit: 0}}
  api:
    cmd: python3 server.py {api} 0.3 204
    depends_on: migrate
    port: {api}
    ready: {{http: \"http://localhost:{api}/health\"}}
  web:
    cmd: sh -c 'sleep 0.1; echo compiled successfully; exec sleep 60'
    depends_on: [api]
    ready: {{log: \"compiled succ\\\\w+\", regex: true}}
"
    ));
    let out = sb.ok(&["up"]);
    assert_eq!(
        steps(&out),
        [
            "started db",
            "db is ready",
            "started migrate",
            "migrate is ready",
            "started api",
            "api is ready",
            "started web",
            "web is ready",
            "all processes started",
        ],
        "{out}"
    );
    assert!(
        out.contains("started api (id: p3, pid: ")
            && out.contains(&format!(", http://127.0.0.1:{api})")),
        "{out}"
    );
    let status = sb.status();
    let state = |n: &str| {
        status
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == n))
            .map(|p| p["state"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert_eq!(state("db"), "running");
    assert_eq!(state("migrate"), "exited");
    assert_eq!(state("api"), "running");
    assert_eq!(state("web"), "running");
}

#[test]
fn a_process_starts_as_soon_as_its_own_dependencies_are_ready() {
    // `slow` becomes ready only after `quick` has started. Level by level, `quick`
    // (same depth as `slow`) would wait for `slow`, and `up` would time out.
    let sb = sandbox_with(
        "processes:
  root: {cmd: sleep 60}
  fast:
    cmd: sh -c 'echo fast up; exec sleep 60'
    depends_on: root
    ready: fast up
  slow:
    cmd: sh -c 'while [ ! -e flag ]; do sleep 0.02; done; echo slow up; exec sleep 60'
    depends_on: root
    ready: slow up
    ready_timeout: 20
  quick:
    cmd: sh -c 'touch flag; exec sleep 60'
    depends_on: fast
  join:
    cmd: sleep 60
    depends_on: [slow, quick]
",
    );
    let out = sb.ok(&["up"]);
    let lines = steps(&out);
    let at = |l: &str| {
        lines
            .iter()
            .position(|x| x == l)
            .unwrap_or_else(|| panic!("no '{l}' in {out}"))
    };
    assert!(at("started quick") < at("slow is ready"), "{out}");
    assert!(at("slow is ready") < at("started join"), "{out}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("all processes started")
    );
}

#[test]
fn a_dependency_that_dies_fails_up_with_its_last_lines() {
    let sb = sandbox_with(
        "processes:
  other: {cmd: sleep 60}
  db:
    cmd: sh -c 'for i in $(seq 1 30); do echo line $i; done; echo broken >&2; exit 3'
    ready: accepting connections
  api:
    cmd: sleep 60
    depends_on: db
",
    );
    let out = sb.run(&["up"]);
    assert_eq!(
        out.code,
        1,
        "{}",
        sb.report(&["up"], &out, "expected exit 1")
    );
    assert!(
        out.stderr
            .contains("agent-procs: up failed: db exited with code 3 before it was ready\n"),
        "{}",
        out.stderr
    );
    // The last 20 lines, stderr marked, and nothing older.
    assert!(
        out.stderr.contains("line 30\nerr| broken\n"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("line 12\n"), "{}", out.stderr);
    assert!(!out.stderr.contains("line 11\n"), "{}", out.stderr);
    assert!(!out.stdout.contains("all processes started"));
    // What started keeps running; what depended on the failure never started.
    assert_eq!(sb.proc_status("other")["state"], "running");
    let names: Vec<String> = sb
        .status()
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(!names.contains(&"api".to_string()), "{names:?}");
}

#[test]
fn failures_name_the_signal_the_timeout_and_the_expected_code() {
    let port = free_port();
    let sb = sandbox_with(&format!(
        "processes:
  segv:
    cmd: kill -SEGV $$
    ready: never printed
  deaf:
    cmd: sleep 60
    ready: {{tcp: {port}}}
    ready_timeout: 0.5
  migrate:
    cmd: sh -c 'exit 2'
    ready: {{exit: 0}}
  nowhere:
    cmd: sleep 60
    cwd: does/not/exist
"
    ));
    let cases = [
        (
            "segv",
            "segv killed by SIGSEGV before it was ready".to_string(),
        ),
        (
            "deaf",
            "deaf not ready after 0.5s (last try: connection refused)".to_string(),
        ),
        (
            "migrate",
            "migrate exited with code 2 (expected exit code 0)".to_string(),
        ),
        (
            "nowhere",
            "nowhere could not start: working directory".to_string(),
        ),
    ];
    for (name, why) in cases {
        let err = sb.fails(&["up", "--only", name], 1);
        assert!(err.contains(&format!("up failed: {why}")), "{name}: {err}");
    }
    let err = sb.fails(&["up", "--only", "nowhere"], 1);
    assert!(
        err.contains("does/not/exist: no such file or directory"),
        "{err}"
    );
    assert!(!err.contains("wrote nothing"), "{err}");
}

#[test]
fn up_again_leaves_running_processes_alone_and_restarts_changed_ones() {
    let config = |greeting: &str| {
        format!(
            "processes:
  db:
    cmd: sh -c 'echo db ready; exec sleep 60'
    ready: db ready
  api:
    cmd: sh -c 'echo {greeting}; exec sleep 60'
    depends_on: db
    ready: {greeting}
"
        )
    };
    let sb = sandbox_with(&config("hello"));
    sb.ok(&["up"]);
    let (db, api) = (pid_of(&sb, "db"), pid_of(&sb, "api"));
    let out = sb.ok(&["up"]);
    assert_eq!(
        steps(&out),
        [
            "db is already running",
            "db is ready",
            "api is already running",
            "api is ready",
            "all processes started"
        ],
        "{out}"
    );
    assert_eq!((pid_of(&sb, "db"), pid_of(&sb, "api")), (db, api));

    write(&sb.root.join("agent-procs.yaml"), &config("bonjour"));
    let out = sb.ok(&["up"]);
    assert!(out.contains("restarted api (id: p2, pid: "), "{out}");
    assert!(out.contains("its definition changed"), "{out}");
    assert_eq!(pid_of(&sb, "db"), db);
    assert_ne!(pid_of(&sb, "api"), api);
    assert_eq!(sb.proc_status("api")["state"], "running");
}

#[test]
fn only_starts_the_named_processes_and_their_dependencies() {
    let sb = sandbox_with(
        "processes:
  db: {cmd: sleep 60}
  cache: {cmd: sleep 60}
  api: {cmd: sleep 60, depends_on: [db]}
  web: {cmd: sleep 60, depends_on: api}
",
    );
    let out = sb.ok(&["up", "--only", "api"]);
    assert_eq!(
        steps(&out),
        ["started db", "started api", "all processes started"],
        "{out}"
    );
    let err = sb.fails(&["up", "--only", "nope"], 2);
    assert!(
        err.contains("defines no process 'nope' (it has: db, cache, api, web)"),
        "{err}"
    );
}

#[test]
fn the_config_names_the_session_and_down_stops_dependents_first() {
    let mut sb = sandbox_with(
        "session: stack
processes:
  db:
    cmd: sh -c 'trap \"echo db >> order; exit 0\" TERM; echo up; while :; do sleep 0.02; done'
    ready: up
  api:
    cmd: sh -c 'trap \"echo api >> order; exit 0\" TERM; echo up; while :; do sleep 0.02; done'
    depends_on: db
    ready: up
  web:
    cmd: sh -c 'trap \"echo web >> order; exit 0\" TERM; echo up; while :; do sleep 0.02; done'
    depends_on: api
    ready: up
",
    );
    sb.session = "stack".into();
    sb.ok(&["up"]);
    assert!(sb.socket().exists(), "up did not use the config's session");
    assert_eq!(sb.ok(&["down"]), "all processes stopped\n");
    let order = std::fs::read_to_string(sb.root.join("order")).unwrap_or_default();
    assert_eq!(order, "web\napi\ndb\n");
    assert!(!sb.socket().exists());
    // With nothing running, down has nothing to do and says so.
    let out = sb.run(&["down"]);
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains("no daemon running for session 'stack'"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_stop_timeout_and_signal_from_the_config_are_used() {
    let sb = sandbox_with(
        "processes:
  stubborn:
    cmd: sh -c 'trap \"echo got INT\" INT; trap \"\" TERM; echo up; while :; do sleep 0.02; done'
    ready: up
    stop_signal: INT
    stop_timeout: 0.5
",
    );
    sb.ok(&["up"]);
    let started = std::time::Instant::now();
    sb.ok(&["stop", "stubborn"]);
    // INT was sent (and ignored but for the note), then SIGKILL after 0.5 s, not 10 s.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let log = String::from_utf8_lossy(&read(&sb.log("stubborn", "stdout"))).into_owned();
    assert!(log.contains("got INT"), "{log}");
    assert_eq!(sb.proc_status("stubborn")["exit_signal"], "SIGKILL");
}

#[test]
fn wait_probes_a_port_and_a_url() {
    let port = free_port();
    let sb = sandbox_with("processes: {}\n");
    sb.ok(&[
        "run",
        &format!("python3 server.py {port} 0.3 200"),
        "--name",
        "srv",
    ]);
    let out = sb.ok(&[
        "wait",
        "srv",
        "--port",
        &port.to_string(),
        "--timeout",
        "20",
    ]);
    assert_eq!(
        out,
        format!("port {port} is ready (accepting connections)\n")
    );
    let url = format!("http://127.0.0.1:{port}/x");
    let out = sb.ok(&["wait", "srv", "--http", &url, "--timeout", "20"]);
    assert_eq!(out, format!("{url} is ready (HTTP 200)\n"));

    let bad = free_port();
    sb.ok(&[
        "run",
        &format!("python3 server.py {bad} 0 500"),
        "--name",
        "bad",
    ]);
    sb.ok(&["wait", "bad", "--until", "serving"]);
    let url = format!("http://127.0.0.1:{bad}/");
    let err = sb.fails(&["wait", "bad", "--http", &url, "--timeout", "0.5"], 1);
    assert!(
        err.contains(&format!("bad did not answer {url} with 2xx or 3xx")),
        "{err}"
    );

    // A process that exits ends the wait at once, with the reason.
    sb.ok(&["run", "sh -c 'sleep 0.2; exit 4'", "--name", "quitter"]);
    let err = sb.fails(&["wait", "quitter", "--port", &free_port().to_string()], 1);
    assert!(
        err.contains("quitter has exited (exit code 4) before port"),
        "{err}"
    );
    let err = sb.fails(&["wait", "quitter", "--port", "1"], 1);
    assert!(err.contains("quitter is not running"), "{err}");
}

#[test]
fn a_broken_config_starts_nothing() {
    let sb = sandbox_with("processes:\n  a: {cmd: x, depends_on: b}\n  c: {cmd: y, prot: 3}\n");
    let err = sb.fails(&["up"], 1);
    assert!(err.contains("processes.a.depends_on"), "{err}");
    assert!(err.contains("did you mean 'port'?"), "{err}");
    assert!(!sb.socket().exists());
    std::fs::remove_file(sb.root.join("agent-procs.yaml")).expect("removing the config");
    let err = sb.fails(&["up"], 1);
    assert!(err.contains("no agent-procs.yaml in"), "{err}");
}

#[test]
fn hostile_up_requests_get_an_error_and_the_daemon_carries_on() {
    let sb = Sandbox::new();
    sb.start("keep", "sleep 60");
    let mut conn = sb.connect();
    // A long chain that names a missing process at its end, a cycle, bad forms.
    let mut chain: Vec<serde_json::Value> = (0..12_000)
        .map(|i| {
            serde_json::json!({"name": format!("c{i}"), "command": "true", "cwd": "/",
                "depends_on": if i == 0 { vec![] } else { vec![format!("c{}", i - 1)] }})
        })
        .collect();
    chain.push(serde_json::json!({"name": "end", "command": "true", "cwd": "/", "depends_on": ["missing"]}));
    let cases = [
        (
            serde_json::json!({"type": "Up", "processes": chain}),
            "end depends on 'missing', which is not among the processes to start",
        ),
        (
            serde_json::json!({"type": "Up", "processes": [
                {"name": "a", "command": "true", "cwd": "/", "depends_on": ["b"]},
                {"name": "b", "command": "true", "cwd": "/", "depends_on": ["a"]}]}),
            "the dependencies form a cycle among: a, b",
        ),
        (
            serde_json::json!({"type": "Up", "processes": [
                {"name": "a", "command": "true", "cwd": "/", "ready": {"tcp": 80, "exit": 0}}]}),
            "a: give exactly one of log, tcp, http and exit",
        ),
        (
            serde_json::json!({"type": "Up", "processes": [
                {"name": "a", "command": "true", "cwd": "/", "ready": {"http": "http://example.com/"}}]}),
            "the host must be localhost or a loopback address (127.0.0.0/8 or ::1)",
        ),
        (
            serde_json::json!({"type": "Up", "processes": [
                {"name": "a", "command": "true", "cwd": "/", "ready": {"http": "http://10.0.0.1:8080/"}}]}),
            "the host must be localhost or a loopback address (127.0.0.0/8 or ::1)",
        ),
        (
            serde_json::json!({"type": "Up", "processes": [
                {"name": "../x", "command": "true", "cwd": "/"}]}),
            "name",
        ),
    ];
    for (request, want) in cases {
        let mut line = serde_json::to_vec(&request).expect("encoding");
        line.push(b'\n');
        let answer = ask(&mut conn, &line);
        assert_eq!(answer["type"], "Error", "{answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(want), "{message}");
    }
    let status = ask(&mut conn, b"{\"type\":\"Status\"}\n");
    assert_eq!(status["processes"][0]["name"], "keep");
}

#[test]
fn a_graph_larger_than_one_loop_turn_comes_up_whole() {
    // More than the daemon starts per turn (32), in a chain and side by side.
    let mut config = String::from("processes:\n");
    for i in 0..45 {
        config.push_str(&format!("  s{i}: {{cmd: sleep 60}}\n"));
    }
    for i in 0..5 {
        let dep = if i == 0 {
            "s44".to_string()
        } else {
            format!("c{}", i - 1)
        };
        config.push_str(&format!("  c{i}: {{cmd: sleep 60, depends_on: {dep}}}\n"));
    }
    let sb = sandbox_with(&config);
    let out = sb.ok(&["up"]);
    assert_eq!(out.matches("started ").count(), 50, "{out}");
    assert!(out.ends_with("all processes started\n"), "{out}");
    let running = sb
        .status()
        .as_array()
        .map(|a| a.iter().filter(|p| p["state"] == "running").count())
        .unwrap_or(0);
    assert_eq!(running, 50);
}

#[test]
fn a_changed_process_without_readiness_is_restarted_and_up_finishes() {
    let sb =
        sandbox_with("processes:\n  a: {cmd: sleep 60}\n  b: {cmd: sleep 61, depends_on: a}\n");
    sb.ok(&["up"]);
    write(
        &sb.root.join("agent-procs.yaml"),
        "processes:\n  a: {cmd: sleep 62}\n  b: {cmd: sleep 61, depends_on: a}\n",
    );
    let out = sb.ok(&["up"]);
    assert_eq!(
        steps(&out),
        [
            "restarted a",
            "b is already running",
            "all processes started"
        ],
        "{out}"
    );
    let exits = &sb.proc_status("a")["last_exits"];
    assert_eq!(exits[0]["reason"], "restarted", "{exits}");
}

#[test]
fn bad_watch_patterns_are_found_by_config_check() {
    let sb = sandbox_with("processes:\n  a: {cmd: x, watch: ['src/[ab']}\n");
    let err = sb.fails(&["config", "check"], 1);
    assert!(
        err.contains("processes.a.watch[0]: invalid pattern: unclosed '['"),
        "{err}"
    );
}

#[test]
fn a_oneshot_step_gates_its_dependents_on_success_and_is_not_run_again() {
    let sb = sandbox_with(
        "processes:
  migrate:
    cmd: sh -c 'echo migrated >> migrations.log'
    oneshot: true
  api:
    cmd: sleep 60
    depends_on: migrate
",
    );
    let out = sb.ok(&["up"]);
    assert_eq!(
        steps(&out),
        [
            "started migrate",
            "migrate is ready",
            "started api",
            "all processes started"
        ],
        "{out}"
    );
    let migrate = sb.proc_status("migrate");
    assert_eq!(migrate["oneshot"], true, "{migrate}");
    assert_eq!(migrate["exit_code"], 0, "{migrate}");
    sb.ok(&["wait", "migrate", "--exit", "--success", "--timeout", "10"]);
    // Unchanged and successful: up leaves it alone.
    sb.ok(&["up"]);
    let log = std::fs::read_to_string(sb.root.join("migrations.log")).unwrap();
    assert_eq!(log, "migrated\n");
}

#[test]
fn a_failing_oneshot_step_fails_up_and_starts_none_of_its_dependents() {
    let sb = sandbox_with(
        "processes:
  migrate:
    cmd: sh -c 'echo no database >&2; exit 2'
    oneshot: true
  api:
    cmd: sleep 60
    depends_on: migrate
",
    );
    let out = sb.run(&["up"]);
    assert_eq!(
        out.code,
        1,
        "{}",
        sb.report(&["up"], &out, "expected exit 1")
    );
    assert!(
        out.stderr
            .contains("up failed: migrate exited with code 2 (expected exit code 0)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("err| no database"), "{}", out.stderr);
    assert!(
        sb.status()
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["name"] != "api")
    );
    let err = sb.fails(&["wait", "migrate", "--exit", "--success"], 1);
    assert!(
        err.contains("migrate did not succeed: it exited with code 2"),
        "{err}"
    );
}

#[test]
fn oneshot_with_another_readiness_or_restarting_always_is_a_config_error() {
    let sb = sandbox_with(
        "processes:
  a:
    cmd: make
    oneshot: true
    ready: built
  b:
    cmd: make
    oneshot: true
    autorestart: always
",
    );
    let out = sb.run(&["config", "check"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            ":4:14: processes.a.oneshot: a one-shot step is ready when it exits with code 0"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(":8:14: processes.b.oneshot: a one-shot step runs to completion"),
        "{}",
        out.stderr
    );
}
