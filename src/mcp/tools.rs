//! The MCP tools: their schemas (`TOOLS`, served as is by `tools/list`), the
//! checks on their arguments (the same the command line makes), the daemon
//! request each becomes, and the result each reply makes. The loop in `mod.rs`
//! moves the bytes; `logs` reads the files here, as the CLI does.

use crate::cli::LogsArgs;
use crate::client;
use crate::logs::query::Position;
use crate::paths::{self, SessionPaths};
use crate::protocol::{Request, Response, RestartPolicy};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::time::Duration;

/// The longest `wait` an agent may ask for.
pub const MAX_WAIT_SECS: u64 = 300;

/// The `tools/list` result, one line: short descriptions with examples, small defaults.
pub const TOOLS: &str = concat!(
    r#"{"tools":["#,
    r#"{"name":"start","description":"Start a long-running process in the background; it keeps running after you disconnect. Returns at once: call wait to know it is ready. Example: {\"name\":\"web\",\"command\":\"npm run dev\",\"port\":3000}","#,
    r#""inputSchema":{"type":"object","properties":{"#,
    r#""command":{"type":"string","description":"shell command line (sh -c)"},"#,
    r#""name":{"type":"string","description":"name to refer to it by: letters, digits, . _ - (default p1, p2, ...)"},"#,
    r#""cwd":{"type":"string","description":"working directory (default: the server's)"},"#,
    r#""env":{"type":"object","additionalProperties":{"type":"string"},"description":"extra environment variables"},"#,
    r#""port":{"type":"integer","minimum":1,"maximum":65535,"description":"port it listens on: sets PORT and HOST=127.0.0.1 for it"},"#,
    r#""autorestart":{"type":"string","enum":["never","on-failure","always"],"description":"restart it when it exits (default never)"},"#,
    r#""max_restarts":{"type":"integer","minimum":0,"description":"with autorestart: give up after this many"},"#,
    r#""restart_delay_ms":{"type":"integer","minimum":0,"description":"with autorestart: pause before each restart (default 1000)"}},"#,
    r#""required":["command"],"additionalProperties":false},"#,
    r#""outputSchema":{"type":"object","properties":{"name":{"type":"string"},"id":{"type":"string"},"pid":{"type":"integer"},"port":{"type":["integer","null"]},"url":{"type":["string","null"]},"warning":{"type":"string"}},"required":["name","id","pid"]}},"#,
    r#"{"name":"up","description":"Start the processes of agent-procs.yaml (nearest in the server's directory or above) in dependency order; running ones with the same definition are left alone. Example: {\"only\":[\"api\"]}","#,
    r#""inputSchema":{"type":"object","properties":{"#,
    r#""only":{"type":"array","items":{"type":"string"},"description":"start only these (and their dependencies)"},"#,
    r#""config":{"type":"string","description":"config file (default: the nearest agent-procs.yaml)"},"#,
    r#""timeout_s":{"type":"number","exclusiveMinimum":0,"maximum":3600,"description":"fail after this many seconds"}},"#,
    r#""additionalProperties":false},"#,
    r#""outputSchema":{"type":"object","properties":{"steps":{"type":"array","items":{"type":"object","properties":{"event":{"type":"string"},"name":{"type":"string"},"pid":{"type":"integer"},"url":{"type":["string","null"]}},"required":["event","name"]}}},"required":["steps"]}},"#,
    r#"{"name":"stop","description":"Stop a process and its process group (SIGTERM, then SIGKILL after the grace period). Example: {\"name\":\"web\"}","#,
    r#""inputSchema":{"type":"object","properties":{"#,
    r#""name":{"type":"string","description":"process name or id"},"#,
    r#""timeout_s":{"type":"number","minimum":0,"maximum":3600,"description":"grace period before SIGKILL (default 10)"}},"#,
    r#""required":["name"],"additionalProperties":false},"#,
    r#""outputSchema":{"type":"object","properties":{"message":{"type":"string"}},"required":["message"]}},"#,
    r#"{"name":"restart","description":"Stop a process if it runs, then start it again with the same command, directory and environment. Example: {\"name\":\"web\"}","#,
    r#""inputSchema":{"type":"object","properties":{"name":{"type":"string","description":"process name or id"}},"required":["name"],"additionalProperties":false},"#,
    r#""outputSchema":{"type":"object","properties":{"name":{"type":"string"},"id":{"type":"string"},"pid":{"type":"integer"},"port":{"type":["integer","null"]},"url":{"type":["string","null"]},"warning":{"type":"string"}},"required":["name","id","pid"]}},"#,
    r#"{"name":"down","description":"Stop every process of the session and shut its daemon down. The only tool that ends processes you did not name. Example: {}","#,
    r#""inputSchema":{"type":"object","properties":{},"additionalProperties":false},"#,
    r#""outputSchema":{"type":"object","properties":{"message":{"type":"string"},"stopped":{"type":"boolean"}},"required":["message","stopped"]}},"#,
    r#"{"name":"status","description":"List the processes with state, pid, exit code and uptime. With name: that one in full, with memory, CPU, listening ports, last exits and log files. Example: {} or {\"name\":\"web\"}","#,
    r#""inputSchema":{"type":"object","properties":{"#,
    r#""name":{"type":"string","description":"one process, in full"},"#,
    r#""resources":{"type":"boolean","description":"add memory, CPU and ports for every process"}},"#,
    r#""additionalProperties":false},"#,
    r#""outputSchema":{"type":"object","properties":{"processes":{"type":"array","items":{"type":"object","properties":{"name":{"type":"string"},"state":{"type":"string"}},"required":["name","state"]}},"notes":{"type":"array","items":{"type":"string"}}},"required":["processes"]}},"#,
    r#"{"name":"logs","description":"Read a process's output (stdout and stderr, stderr lines marked err|): the newest lines of its latest run by default (since: \"start\" for every run). Pass the returned cursor as after next time to get only new lines, oldest first; more: true means call again. Example: {\"name\":\"web\",\"grep\":\"error\",\"ignore_case\":true}","#,
    r#""inputSchema":{"type":"object","properties":{"#,
    r#""name":{"type":"string","description":"process name or id (default: every process, lines marked [name])"},"#,
    r#""stream":{"type":"string","enum":["both","stdout","stderr"],"description":"default both"},"#,
    r#""tail":{"type":"integer","minimum":1,"maximum":10000,"description":"at most this many lines (default 50)"},"#,
    r#""grep":{"type":"string","description":"only lines containing this"},"#,
    r#""regex":{"type":"boolean","description":"grep is a regular expression"},"#,
    r#""ignore_case":{"type":"boolean"},"#,
    r#""context":{"type":"integer","minimum":0,"maximum":100,"description":"with grep: lines around each match"},"#,
    r#""since":{"type":"string","description":"30s, 5m, 2h, 1d ago, restart (the latest start) or start (everything kept)"},"#,
    r#""after":{"type":"string","description":"cursor from an earlier call: only lines after it"},"#,
    r#""max_bytes":{"type":"integer","minimum":1,"maximum":1000000,"description":"at most this much text (default 8000)"}},"#,
    r#""additionalProperties":false},"#,
    r#""outputSchema":{"type":"object","properties":{"output":{"type":"string"},"lines":{"type":"integer"},"cursor":{"type":"string"},"more":{"type":"boolean"},"omitted_lines":{"type":"integer"}},"required":["output","lines","cursor","more"]}},"#,
    r#"{"name":"wait","description":"Block until a process prints a matching line (until), exits (exit), accepts connections on a port (port) or answers an http:// URL with 2xx/3xx (http): exactly one, and a timeout. Output since its last start counts. Example: {\"name\":\"web\",\"port\":3000,\"timeout_s\":30}","#,
    r#""inputSchema":{"type":"object","properties":{"#,
    r#""name":{"type":"string","description":"process name or id"},"#,
    r#""until":{"type":"string","description":"text of a line to wait for"},"#,
    r#""regex":{"type":"boolean","description":"until is a regular expression"},"#,
    r#""exit":{"type":"boolean"},"#,
    r#""port":{"type":"integer","minimum":1,"maximum":65535,"description":"127.0.0.1:port accepts connections"},"#,
    r#""http":{"type":"string","description":"a GET answers 2xx/3xx (host: localhost or a loopback IP)"},"#,
    r#""timeout_s":{"type":"number","exclusiveMinimum":0,"maximum":300,"description":"give up after this many seconds"}},"#,
    r#""required":["name","timeout_s"],"additionalProperties":false},"#,
    r#""outputSchema":{"type":"object","properties":{"event":{"type":"string","enum":["match","exit"]},"line":{"type":"string"},"exit_code":{"type":["integer","null"]},"exit_signal":{"type":["string","null"]}},"required":["event"]}}"#,
    r#"]}"#,
);

/// What a tool call ended with.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub text: String,
    /// JSON text matching the tool's output schema; none for errors.
    pub structured: Option<String>,
    pub is_error: bool,
}

impl Outcome {
    pub fn ok(text: String, structured: String) -> Outcome {
        Outcome {
            text,
            structured: Some(structured),
            is_error: false,
        }
    }

    pub fn error(text: String) -> Outcome {
        Outcome {
            text,
            structured: None,
            is_error: true,
        }
    }

    /// The `tools/call` result as JSON text.
    pub fn to_json(&self) -> String {
        let mut out = format!(
            "{{\"content\":[{{\"type\":\"text\",\"text\":{}}}]",
            super::jsonrpc::string(&self.text)
        );
        if let Some(structured) = &self.structured {
            out.push_str(",\"structuredContent\":");
            out.push_str(structured);
        }
        out.push_str(if self.is_error {
            ",\"isError\":true}"
        } else {
            ",\"isError\":false}"
        });
        out
    }
}

/// How the replies to a call's request are read.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    Started {
        verb: &'static str,
    },
    Stopped,
    Down,
    Status {
        one: bool,
    },
    Wait {
        target: String,
        what: String,
        timeout: Duration,
    },
    /// `proxy`: the reply to `EnableProxy` comes first.
    Up {
        steps: Vec<String>,
        proxy: bool,
    },
}

/// What the loop does for a tool call.
#[derive(Debug)]
pub enum Plan {
    /// Send these requests to the daemon (starting it first when `start`).
    Ask {
        requests: Vec<Request>,
        start: bool,
        job: Job,
    },
    /// Done already (logs, or a check that failed).
    Done(Outcome),
}

/// What one reply of the daemon means for the call.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// More replies are due; the string is progress to report, if any.
    More(Option<String>),
    Done(Outcome),
}

/// Turn a call's arguments into a plan; `Err` is an argument problem.
pub fn plan(name: &str, args: &Map<String, Value>, paths: &SessionPaths) -> Result<Plan, String> {
    let a = Args { tool: name, args };
    match name {
        "start" => start(&a),
        "up" => up(&a, paths),
        "stop" => {
            a.only("name timeout_s")?;
            let timeout = a.seconds("timeout_s", 3600)?;
            Ok(Plan::Ask {
                requests: vec![Request::Stop {
                    target: a.name()?,
                    timeout_ms: timeout.map(millis),
                }],
                start: false,
                job: Job::Stopped,
            })
        }
        "restart" => {
            a.only("name")?;
            Ok(Plan::Ask {
                requests: vec![Request::Restart { target: a.name()? }],
                start: false,
                job: Job::Started { verb: "restarted" },
            })
        }
        "down" => {
            a.only("")?;
            Ok(Plan::Ask {
                requests: vec![Request::Shutdown],
                start: false,
                job: Job::Down,
            })
        }
        "status" => {
            a.only("name resources")?;
            let target = a.string("name")?;
            Ok(Plan::Ask {
                job: Job::Status {
                    one: target.is_some(),
                },
                requests: vec![Request::Status {
                    target,
                    resources: a.flag("resources")?,
                }],
                start: false,
            })
        }
        "logs" => logs(&a, paths).map(Plan::Done),
        "wait" => wait(&a),
        _ => Err(format!(
            "unknown tool '{name}': the tools are start, up, stop, restart, down, status, logs, wait"
        )),
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// A JSON object written field by field: less code than `json!`, which
/// builds a tree of values first.
struct Obj(String);

impl Obj {
    fn new() -> Obj {
        Obj(String::from("{"))
    }

    fn raw(mut self, key: &str, json: &str) -> Obj {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(key);
        self.0.push_str("\":");
        self.0.push_str(json);
        self
    }

    fn str(self, key: &str, value: &str) -> Obj {
        self.raw(key, &super::jsonrpc::string(value))
    }

    fn opt_str(self, key: &str, value: Option<&str>) -> Obj {
        match value {
            Some(value) => self.str(key, value),
            None => self.raw(key, "null"),
        }
    }

    /// A number or a boolean (one copy of this for every type).
    fn num(self, key: &str, value: &dyn std::fmt::Display) -> Obj {
        self.raw(key, &value.to_string())
    }

    fn opt(self, key: &str, value: Option<&dyn std::fmt::Display>) -> Obj {
        match value {
            Some(value) => self.num(key, value),
            None => self.raw(key, "null"),
        }
    }

    fn end(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// A call's arguments, read with messages that name the tool and the argument.
struct Args<'a> {
    tool: &'a str,
    args: &'a Map<String, Value>,
}

impl Args<'_> {
    /// Refuse arguments the tool does not take; `known` names them, separated
    /// by spaces (one string: an array of `&str` costs a relocation each).
    fn only(&self, known: &str) -> Result<(), String> {
        let taken = |key: &str| known.split(' ').any(|k| !k.is_empty() && k == key);
        match self.args.keys().find(|k| !taken(k)) {
            Some(key) if known.is_empty() => {
                Err(format!("{} takes no arguments, not '{key}'", self.tool))
            }
            Some(key) => Err(format!(
                "{} has no argument '{key}'; it takes: {}",
                self.tool,
                known.replace(' ', ", ")
            )),
            None => Ok(()),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, String> {
        match self.args.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{}: {key} must be a string", self.tool)),
        }
    }

    fn name(&self) -> Result<String, String> {
        match self.string("name")? {
            Some(name) if !name.is_empty() => Ok(name),
            _ => Err(format!(
                "{} needs name: the process name or id, as status lists it",
                self.tool
            )),
        }
    }

    fn flag(&self, key: &str) -> Result<bool, String> {
        match self.args.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(format!("{}: {key} must be true or false", self.tool)),
        }
    }

    fn integer(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, String> {
        match self.args.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(format!(
                    "{}: {key} must be a whole number from {min} to {max}, not {v}",
                    self.tool
                )),
            },
        }
    }

    /// A positive number of seconds up to `max`.
    fn seconds(&self, key: &str, max: u64) -> Result<Option<Duration>, String> {
        match self.args.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_f64() {
                Some(s) if s > 0.0 && s <= max as f64 => Ok(Some(Duration::from_secs_f64(s))),
                _ => Err(format!(
                    "{}: {key} must be a number of seconds above 0 and at most {max}, not {v}",
                    self.tool
                )),
            },
        }
    }
}

fn start(a: &Args) -> Result<Plan, String> {
    a.only("command name cwd env port autorestart max_restarts restart_delay_ms")?;
    let command = a.string("command")?.unwrap_or_default();
    if command.trim().is_empty() {
        return Err("start needs command: a shell command line, e.g. \"npm run dev\"".into());
    }
    let name = a.string("name")?;
    if let Some(name) = &name {
        paths::check_process_name(name)?;
    }
    let here =
        std::env::current_dir().map_err(|e| format!("finding the current directory: {e}"))?;
    let cwd = match a.string("cwd")? {
        Some(dir) => here.join(dir),
        None => here,
    };
    let cwd = cwd
        .into_os_string()
        .into_string()
        .map_err(|p| format!("the directory {} is not valid UTF-8", p.to_string_lossy()))?;
    let mut env = HashMap::new();
    match a.args.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(vars)) => {
            for (key, value) in vars {
                let Some(value) = value.as_str() else {
                    return Err(format!("start: env {key} must be a string, not {value}"));
                };
                // As `run --env K=V` takes them.
                if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                    return Err(format!(
                        "start: env name '{key}' must be non-empty, without = or NUL (and values without NUL)"
                    ));
                }
                env.insert(key.clone(), value.to_string());
            }
        }
        Some(_) => return Err("start: env must be an object of names to strings".into()),
    }
    let port = a.integer("port", 1, 65535)?.map(|p| p as u16);
    let mode = a.string("autorestart")?;
    let max_restarts = a.integer("max_restarts", 0, u64::from(u32::MAX))?;
    let delay = a.integer("restart_delay_ms", 0, u64::MAX)?;
    let restart = match mode.as_deref() {
        None | Some("never") if max_restarts.is_some() || delay.is_some() => {
            return Err(
                "start: max_restarts and restart_delay_ms go with autorestart always or on-failure"
                    .into(),
            );
        }
        None => None,
        Some(mode @ ("never" | "always" | "on-failure")) => Some(RestartPolicy {
            mode: mode.to_string(),
            max_restarts: max_restarts.map(|m| m as u32),
            restart_delay_ms: delay.unwrap_or(1000),
            backoff: None,
        }),
        Some(other) => {
            return Err(format!(
                "start: autorestart takes always, on-failure or never, not '{other}'"
            ));
        }
    };
    // The server's environment is the base, as the CLI's is for `run`.
    let base_env = client::caller_env();
    Ok(Plan::Ask {
        requests: vec![Request::Run {
            command,
            name,
            cwd: Some(cwd),
            env: (!env.is_empty()).then_some(env),
            port,
            restart,
            watch: None,
            base_env: Some(base_env),
            log_max_size: None,
            log_max_files: None,
            stop_timeout_ms: None,
            stop_signal: None,
            depends_on: Vec::new(),
            oneshot: false,
        }],
        start: true,
        job: Job::Started { verb: "started" },
    })
}

const ONLY_NAMES: &str = "up: only must be a list of process names";

fn up(a: &Args, _paths: &SessionPaths) -> Result<Plan, String> {
    a.only("only config timeout_s")?;
    let only: Vec<String> = match a.args.get("only") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(names)) => {
            let mut only = Vec::new();
            for name in names {
                only.push(name.as_str().ok_or(ONLY_NAMES)?.to_string());
            }
            only
        }
        Some(_) => return Err(ONLY_NAMES.into()),
    };
    let timeout = a.seconds("timeout_s", 3600)?;
    let file =
        client::project::locate(a.string("config")?.map(Into::into)).map_err(|e| e.to_string())?;
    let config = crate::config::Config::load(&file).map_err(|errors| {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        all.join("\n")
    })?;
    let chosen = client::project::select(&config, &only).map_err(|e| e.to_string())?;
    let mut processes = Vec::with_capacity(chosen.len());
    for p in chosen {
        processes.push(client::project::up_process(p).map_err(|e| e.to_string())?);
    }
    let base_env = client::caller_env();
    let mut requests = Vec::new();
    if config.proxy {
        requests.push(Request::EnableProxy {
            proxy_port: config.proxy_port,
        });
    }
    requests.push(Request::Up {
        processes,
        base_env: Some(base_env),
        timeout_ms: timeout.map(millis),
    });
    Ok(Plan::Ask {
        requests,
        start: true,
        job: Job::Up {
            steps: Vec::new(),
            proxy: config.proxy,
        },
    })
}

fn wait(a: &Args) -> Result<Plan, String> {
    a.only("name until regex exit port http timeout_s")?;
    let target = a.name()?;
    let Some(timeout) = a.seconds("timeout_s", MAX_WAIT_SECS)? else {
        return Err(format!(
            "wait needs timeout_s: how many seconds to wait, at most {MAX_WAIT_SECS}"
        ));
    };
    let until = a.string("until")?;
    let regex = a.flag("regex")?;
    let exit = a.flag("exit")?;
    let port = a.integer("port", 1, 65535)?.map(|p| p as u16);
    let http = a.string("http")?;
    if let Some(url) = &http {
        crate::probe::http_target(url)?;
    }
    let given = [until.is_some(), exit, port.is_some(), http.is_some()];
    if given.iter().filter(|&&g| g).count() != 1 {
        return Err("wait takes exactly one of until, exit, port or http".into());
    }
    if regex && until.is_none() {
        return Err("wait: regex goes with until".into());
    }
    let what = match (&until, &port, &http) {
        (Some(text), _, _) => format!("print a line matching '{text}'"),
        (_, Some(port), _) => format!("accept connections on port {port}"),
        (_, _, Some(url)) => format!("answer {url} with 2xx or 3xx"),
        _ => "exit".to_string(),
    };
    Ok(Plan::Ask {
        requests: vec![Request::Wait {
            target: target.clone(),
            until,
            regex,
            exit,
            timeout_secs: Some(timeout.as_secs_f64().ceil() as u64),
            timeout_ms: Some(millis(timeout)),
            port,
            http,
        }],
        start: false,
        job: Job::Wait {
            target,
            what,
            timeout,
        },
    })
}

/// Read one reply of the daemon for a call.
pub fn on_reply(job: &mut Job, paths: &SessionPaths, response: Response) -> Step {
    if let Response::Error { code, message } = response {
        return Step::Done(Outcome::error(if code == crate::protocol::CODE_NOT_FOUND {
            format!("{message}; the status tool lists the processes")
        } else {
            message
        }));
    }
    match (job, response) {
        (
            Job::Started { verb },
            Response::RunOk {
                name,
                id,
                pid,
                port,
                url,
                warning,
            },
        ) => {
            let mut text = format!("{verb} {name} (id {id}, pid {pid}");
            if let Some(url) = &url {
                text.push_str(&format!(", {url}"));
            }
            text.push(')');
            let mut json = Obj::new()
                .str("name", &name)
                .str("id", &id)
                .num("pid", &pid)
                .opt("port", port.as_ref().map(|p| p as _))
                .opt_str("url", url.as_deref());
            if let Some(w) = warning {
                text.push_str(&format!("; warning: {w}"));
                json = json.str("warning", &w);
            }
            Step::Done(Outcome::ok(text, json.end()))
        }
        (Job::Stopped, Response::Ok { message }) => {
            let json = Obj::new().str("message", &message).end();
            Step::Done(Outcome::ok(message, json))
        }
        // The daemon closes the connection as it exits; `on_eof` finishes.
        (Job::Down, Response::Ok { .. }) => Step::More(None),
        (Job::Status { one }, reply @ Response::Status { .. }) => Step::Done(status(*one, reply)),
        (Job::Wait { .. }, Response::WaitMatch { line }) => {
            let json = Obj::new().str("event", "match").str("line", &line).end();
            Step::Done(Outcome::ok(line, json))
        }
        (
            Job::Wait { .. },
            Response::WaitExited {
                exit_code,
                exit_signal,
            },
        ) => {
            let text = match (exit_code, &exit_signal) {
                (Some(code), _) => format!("exited with code {code}"),
                (None, Some(signal)) => format!("exited by {signal}"),
                (None, None) => "exited by a signal".to_string(),
            };
            let json = Obj::new()
                .str("event", "exit")
                .opt("exit_code", exit_code.as_ref().map(|c| c as _))
                .opt_str("exit_signal", exit_signal.as_deref())
                .end();
            Step::Done(Outcome::ok(text, json))
        }
        (
            Job::Wait {
                target,
                what,
                timeout,
            },
            Response::WaitTimeout,
        ) => Step::Done(Outcome::error(format!(
            "timeout: {target} did not {what} within {}; read its logs to see why, or wait longer",
            crate::timefmt::seconds(*timeout)
        ))),
        // The proxy came up (up with `proxy: true`); the graph follows.
        (
            Job::Up {
                proxy: proxy @ true,
                ..
            },
            Response::Ok { message },
        ) => {
            *proxy = false;
            Step::More(Some(message))
        }
        (
            Job::Up { steps, .. },
            Response::UpProgress {
                event,
                name,
                pid,
                url,
                ..
            },
        ) => {
            // `db: started`, `db: ready`; `running` is one already running, and
            // `restarted` one whose definition changed.
            let text = format!("{name}: {event}");
            steps.push(
                Obj::new()
                    .str("event", &event)
                    .str("name", &name)
                    .num("pid", &pid)
                    .opt_str("url", url.as_deref())
                    .end(),
            );
            Step::More(Some(text))
        }
        (Job::Up { steps, .. }, Response::Ok { message }) => {
            let json = format!("{{\"steps\":[{}]}}", steps.join(","));
            Step::Done(Outcome::ok(message, json))
        }
        (Job::Up { .. }, Response::UpFailed { name, reason }) => {
            let tail = client::tail_of_run(paths, &name, 20).unwrap_or_default();
            let mut text = format!(
                "up failed: {name} {reason}; the processes that started keep running (down stops them)"
            );
            if !tail.is_empty() {
                text.push_str(&format!(
                    "\nlast lines of {name}:\n{}",
                    String::from_utf8_lossy(&tail)
                ));
            }
            Step::Done(Outcome::error(text))
        }
        _ => Step::Done(Outcome::error("unexpected reply from the daemon".into())),
    }
}

/// The daemon closed the connection before the call was done.
pub fn on_eof(job: &Job) -> Outcome {
    match job {
        Job::Down => {
            let json = r#"{"message":"all processes stopped","stopped":true}"#;
            Outcome::ok("all processes stopped".into(), json.to_string())
        }
        _ => Outcome::error("the daemon closed the connection before answering; try again".into()),
    }
}

/// What `status` and `down` say when no daemon runs.
pub fn without_daemon(job: &Job, session: &str) -> Option<Outcome> {
    match job {
        Job::Status { one: false } => Some(Outcome::ok(
            format!(
                "no processes: no daemon runs for session '{session}' (start or up starts one)"
            ),
            r#"{"processes":[]}"#.to_string(),
        )),
        Job::Down => Some(Outcome::ok(
            format!("nothing to stop: no daemon runs for session '{session}'"),
            r#"{"message":"nothing to stop","stopped":false}"#.to_string(),
        )),
        _ => None,
    }
}

fn status(one: bool, reply: Response) -> Outcome {
    // The daemon's own reply, re-encoded as the daemon encodes it, without its
    // `"type":"Status",`: `{"processes":[...]}` plus `notes` when there are any.
    let mut line = Vec::new();
    crate::protocol::encode_response(&mut line, &reply);
    let Response::Status { processes, notes } = reply else {
        return Outcome::error("unexpected reply from the daemon".into());
    };
    let json = String::from_utf8_lossy(&line)
        .trim_end()
        .replacen("\"type\":\"Status\",", "", 1);
    let (processes, notes) = (&processes[..], &notes[..]);
    // The detail in full is in the structured form; this is its summary.
    let mut text = if processes.is_empty() {
        "no processes\n".to_string()
    } else {
        client::status_table(
            processes,
            one || processes.iter().any(|p| p.rss_bytes.is_some()),
        )
    };
    for note in notes {
        text.push_str("note: ");
        text.push_str(note);
        text.push('\n');
    }
    for p in processes {
        if let Some(conflict) = &p.port_conflict {
            text.push_str(&format!("note: {} could not listen: {conflict}\n", p.name));
        }
    }
    Outcome::ok(text, json)
}

/// `logs`: the CLI's query over the files, with a budget and a cursor for paging.
fn logs(a: &Args, paths: &SessionPaths) -> Result<Outcome, String> {
    a.only("name stream tail grep regex ignore_case context since after max_bytes")?;
    let (stderr, both) = match a.string("stream")?.as_deref() {
        None | Some("both") => (false, true),
        Some("stdout") => (false, false),
        Some("stderr") => (true, false),
        Some(other) => {
            return Err(format!(
                "logs: stream takes both, stdout or stderr, not '{other}'"
            ));
        }
    };
    let tail = a.integer("tail", 1, 10_000)?.unwrap_or(50) as usize;
    let budget = a.integer("max_bytes", 1, 1_000_000)?.unwrap_or(8000) as usize;
    let context = a.integer("context", 0, 100)?.unwrap_or(0) as usize;
    let grep = a.string("grep")?;
    let (regex, ignore_case) = (a.flag("regex")?, a.flag("ignore_case")?);
    if grep.is_none() && (regex || ignore_case || context > 0) {
        return Err("logs: regex, ignore_case and context go with grep".into());
    }
    let since = match a.string("since")? {
        None => None,
        Some(text) => Some(crate::cli::parse_since(&text).ok_or_else(|| {
            format!("logs: since takes 30s, 5m, 2h, 1d, restart or start, not '{text}'")
        })?),
    };
    let after = a.string("after")?;
    if let Some(c) = after.as_deref()
        && Position::parse(c).is_none()
    {
        return Err(format!(
            "logs: after takes a cursor returned by an earlier logs call (like 1795642245123456.0), not '{c}'"
        ));
    }
    let target = a.string("name")?;
    // After a cursor every later line is read, and the oldest ones are shown
    // first, so nothing is skipped between two calls; else the newest `tail`.
    let paging = after.is_some();
    let args = LogsArgs {
        all: target.is_none(),
        target,
        tail,
        tail_given: !paging,
        stderr,
        both,
        follow: false,
        timeout: None,
        lines: None,
        since,
        after: after.clone(),
        grep,
        regex,
        ignore_case,
        context,
        timestamps: false,
        json: false,
        max_bytes: None,
        cursor: false,
        // The latest run, as `logs` shows; after a cursor, every run from there.
        runs: None,
    };
    let mut read = match client::read_logs(paths, &args) {
        Ok(read) => read,
        Err(e) => return Ok(Outcome::error(e.to_string())),
    };
    let mut more = paging && read.lines.len() > tail;
    read.lines.truncate(tail);
    let marks = read.marks();
    let (sources, lines) = (&read.sources, &read.lines);
    let rendered: Vec<Vec<u8>> = lines
        .iter()
        .zip(&marks)
        .map(|(l, mark)| client::render_line(l, sources, &args, mark))
        .collect();
    // Within the byte budget: the oldest lines when paging forward, else the newest.
    let mut total = 0;
    let fits = |r: &&Vec<u8>| {
        total += r.len();
        total <= budget
    };
    let (keep, omitted) = if paging {
        // At least one line, however long, so that paging always moves on.
        let kept = rendered
            .iter()
            .take_while(fits)
            .count()
            .max(1)
            .min(rendered.len());
        more |= kept < rendered.len();
        (0..kept, 0)
    } else {
        let kept = rendered.iter().rev().take_while(fits).count();
        (rendered.len() - kept..rendered.len(), rendered.len() - kept)
    };
    // Paging: after the last line shown. Else after the newest line, shown or not.
    let last = if paging {
        lines[keep.clone()].last()
    } else {
        lines.last()
    };
    let cursor = match last {
        Some(line) => line.pos.cursor(),
        None => after.unwrap_or_else(|| Position::default().cursor()),
    };
    let output = String::from_utf8_lossy(&rendered[keep.clone()].concat()).into_owned();
    let count = keep.len();
    let mut json = Obj::new()
        .str("output", &output)
        .num("lines", &count)
        .str("cursor", &cursor)
        .num("more", &more);
    let mut text = output;
    if omitted > 0 {
        json = json.num("omitted_lines", &omitted);
        text.insert_str(
            0,
            &format!("[{omitted} older lines left out to stay within max_bytes {budget}]\n"),
        );
    }
    if count == 0 {
        text.push_str("(no new lines)\n");
    }
    text.push_str("cursor: ");
    text.push_str(&cursor);
    if more {
        text.push_str(" (more: call again with this cursor)");
    }
    Ok(Outcome::ok(text, json.end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    fn paths() -> SessionPaths {
        SessionPaths::new("mcp-unit").unwrap()
    }

    fn problem(tool: &str, json: &str) -> String {
        match plan(tool, &args(json), &paths()) {
            Err(e) => e,
            Ok(p) => panic!("{tool} {json} was accepted: {p:?}"),
        }
    }

    #[test]
    fn the_tool_list_is_valid_json_with_a_schema_per_tool() {
        let tools: Value = serde_json::from_str(TOOLS).unwrap();
        let names: Vec<&str> = tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                assert_eq!(t["inputSchema"]["type"], "object", "{t}");
                assert_eq!(t["outputSchema"]["type"], "object", "{t}");
                assert!(
                    t["description"].as_str().unwrap().contains("Example"),
                    "{t}"
                );
                t["name"].as_str().unwrap()
            })
            .collect();
        assert_eq!(
            names,
            [
                "start", "up", "stop", "restart", "down", "status", "logs", "wait"
            ]
        );
    }

    #[test]
    fn arguments_the_cli_refuses_are_refused() {
        let cases: &[(&str, &str, &str)] = &[
            ("start", "{}", "start needs command"),
            ("start", r#"{"command":"  "}"#, "start needs command"),
            (
                "start",
                r#"{"command":"x","port":0}"#,
                "port must be a whole number from 1 to 65535",
            ),
            (
                "start",
                r#"{"command":"x","port":70000}"#,
                "from 1 to 65535",
            ),
            ("start", r#"{"command":"x","port":"80"}"#, "port must be"),
            (
                "start",
                r#"{"command":"x","name":"../etc"}"#,
                "invalid process name '../etc'",
            ),
            (
                "start",
                r#"{"command":"x","env":{"A=B":"1"}}"#,
                "without = or NUL",
            ),
            (
                "start",
                r#"{"command":"x","env":{"A":1}}"#,
                "env A must be a string",
            ),
            (
                "start",
                r#"{"command":"x","autorestart":"sometimes"}"#,
                "always, on-failure or never",
            ),
            (
                "start",
                r#"{"command":"x","max_restarts":3}"#,
                "go with autorestart",
            ),
            (
                "start",
                r#"{"command":"x","shell":"bash"}"#,
                "start has no argument 'shell'",
            ),
            ("stop", "{}", "stop needs name"),
            (
                "stop",
                r#"{"name":"web","timeout_s":-1}"#,
                "timeout_s must be a number of seconds",
            ),
            ("down", r#"{"all":true}"#, "down takes no arguments"),
            (
                "wait",
                r#"{"name":"web","until":"x"}"#,
                "wait needs timeout_s",
            ),
            (
                "wait",
                r#"{"name":"web","until":"x","timeout_s":301}"#,
                "at most 300",
            ),
            ("wait", r#"{"name":"web","timeout_s":5}"#, "exactly one of"),
            (
                "wait",
                r#"{"name":"web","exit":true,"port":80,"timeout_s":5}"#,
                "exactly one of",
            ),
            (
                "wait",
                r#"{"name":"web","http":"http://example.com/","timeout_s":5}"#,
                "invalid URL",
            ),
            (
                "wait",
                r#"{"name":"web","exit":true,"regex":true,"timeout_s":5}"#,
                "regex goes with until",
            ),
            (
                "logs",
                r#"{"name":"web","since":"yesterday"}"#,
                "since takes",
            ),
            (
                "logs",
                r#"{"name":"web","after":"nope"}"#,
                "after takes a cursor",
            ),
            ("logs", r#"{"name":"web","regex":true}"#, "go with grep"),
            ("logs", r#"{"name":"web","tail":0}"#, "tail must be"),
            ("logs", r#"{"name":"web","stream":"stdin"}"#, "stream takes"),
            ("nope", "{}", "unknown tool 'nope'"),
        ];
        for (tool, json, want) in cases {
            let got = problem(tool, json);
            assert!(got.contains(want), "{tool} {json}: {got}");
        }
    }

    #[test]
    fn an_unknown_argument_is_answered_with_the_ones_the_tool_takes() {
        assert_eq!(
            problem("stop", r#"{"name":"web","force":true}"#),
            "stop has no argument 'force'; it takes: name, timeout_s"
        );
        assert_eq!(
            problem("restart", r#"{"nam":"web"}"#),
            "restart has no argument 'nam'; it takes: name"
        );
        // A name is matched whole, not as a part of the list.
        assert!(problem("stop", r#"{"name":"web","time":1}"#).contains("no argument 'time'"));
    }

    #[test]
    fn arguments_become_the_requests_the_cli_sends() {
        let plan = plan(
            "wait",
            &args(r#"{"name":"web","port":8000,"timeout_s":2.5}"#),
            &paths(),
        )
        .unwrap();
        let Plan::Ask {
            requests,
            start,
            job,
        } = plan
        else {
            panic!("{plan:?}")
        };
        assert!(!start);
        assert!(matches!(job, Job::Wait { .. }));
        assert_eq!(
            requests,
            [Request::Wait {
                target: "web".into(),
                until: None,
                regex: false,
                exit: false,
                timeout_secs: Some(3),
                timeout_ms: Some(2500),
                port: Some(8000),
                http: None,
            }]
        );
        let Ok(Plan::Ask {
            requests, start, ..
        }) = super::plan(
            "start",
            &args(
                r#"{"command":"sleep 9","name":"s","autorestart":"on-failure","max_restarts":2,"env":{"A":"1"}}"#,
            ),
            &paths(),
        )
        else {
            panic!()
        };
        assert!(start);
        let [
            Request::Run {
                command,
                name,
                env,
                restart,
                base_env,
                ..
            },
        ] = &requests[..]
        else {
            panic!("{requests:?}")
        };
        assert_eq!((command.as_str(), name.as_deref()), ("sleep 9", Some("s")));
        assert_eq!(env.as_ref().unwrap()["A"], "1");
        assert_eq!(restart.as_ref().unwrap().max_restarts, Some(2));
        assert!(base_env.is_some());
    }

    #[test]
    fn results_carry_text_structure_and_the_error_flag() {
        let ok: Value =
            serde_json::from_str(&Outcome::ok("fine".into(), r#"{"a":1}"#.into()).to_json())
                .unwrap();
        assert_eq!(ok["content"][0]["text"], "fine");
        assert_eq!(ok["structuredContent"]["a"], 1);
        assert_eq!(ok["isError"], false);
        let bad: Value =
            serde_json::from_str(&Outcome::error("no such process".into()).to_json()).unwrap();
        assert_eq!(bad["isError"], true);
        assert!(bad.get("structuredContent").is_none());
    }

    #[test]
    fn a_wait_that_times_out_says_what_to_do() {
        let mut job = Job::Wait {
            target: "web".into(),
            what: "accept connections on port 8000".into(),
            timeout: Duration::from_secs(5),
        };
        let Step::Done(outcome) = on_reply(&mut job, &paths(), Response::WaitTimeout) else {
            panic!()
        };
        assert!(outcome.is_error);
        assert!(
            outcome
                .text
                .starts_with("timeout: web did not accept connections on port 8000 within 5"),
            "{}",
            outcome.text
        );
        let Step::Done(outcome) =
            on_reply(&mut job, &paths(), Response::not_found("no process 'web'"))
        else {
            panic!()
        };
        assert_eq!(
            outcome,
            Outcome::error("no process 'web'; the status tool lists the processes".into())
        );
    }
}
