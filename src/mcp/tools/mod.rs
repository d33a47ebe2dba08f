//! The MCP tools: their schemas (`TOOLS`, served as is by `tools/list`), the
//! checks on their arguments (the same the command line makes), the daemon
//! request each becomes, and the result each reply makes. The loop in
//! `mcp/mod.rs` moves the bytes. Here: `args` (reading a call's arguments,
//! writing its JSON), `requests` (`start`, `up`, `wait`), `replies` (what the
//! daemon's answers mean) and `logs` (which reads the files, as the CLI does).

mod args;
mod logs;
mod replies;
mod requests;

use crate::paths::SessionPaths;
use crate::protocol::Request;
use args::Args;
use serde_json::{Map, Value};
use std::time::Duration;

pub use replies::{on_eof, on_reply, without_daemon};

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
        "start" => requests::start(&a),
        "up" => requests::up(&a),
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
        "logs" => logs::logs(&a, paths).map(Plan::Done),
        "wait" => requests::wait(&a),
        _ => Err(format!(
            "unknown tool '{name}': the tools are start, up, stop, restart, down, status, logs, wait"
        )),
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Response;

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

    /// Arguments the CLI refuses, and what the refusal says.
    const REFUSED: &[(&str, &str, &str)] = &[
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

    #[test]
    fn arguments_the_cli_refuses_are_refused() {
        for (tool, json, want) in REFUSED {
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
