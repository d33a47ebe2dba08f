//! The wire protocol between the CLI and the daemon: one JSON object per line,
//! `type`-tagged, with the shapes of agent-procs 0.6. Fields are only ever added
//! (with defaults), and unknown fields and request types are tolerated.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashMap;

/// Largest request line the daemon accepts; longer lines get an Error and are skipped.
pub const MAX_REQUEST: usize = 1024 * 1024;

/// Bumped only for breaking changes, which we do not make.
pub const PROTOCOL_VERSION: u32 = 1;

/// Error codes carried by `Response::Error`; they double as the CLI's exit codes.
pub const CODE_GENERAL: i32 = 1;
pub const CODE_NOT_FOUND: i32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub mode: String,
    #[serde(default)]
    pub max_restarts: Option<u32>,
    /// Default 1000 ms, as the command line's.
    #[serde(default = "default_restart_delay")]
    pub restart_delay_ms: u64,
    /// New: `exponential` doubles the delay after each quick death (capped at 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
}

fn default_restart_delay() -> u64 {
    1000
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchConfig {
    pub paths: Vec<String>,
    #[serde(default)]
    pub ignore: Option<Vec<String>>,
}

// Requests are decoded one at a time and never stored in bulk, so the size of
// the `Run` variant costs nothing worth a Box.
//
// Encoding is derived; decoding is by hand (see `RawRequest`), because serde's
// derived decoder of an internally tagged enum buffers each message and carries
// a second decoder of every field per variant, tens of KB of machine code. The
// `#[serde(default)]` attributes below therefore only document which fields are
// optional; `RawRequest` and `Request::deserialize` are what apply them.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum Request {
    Run {
        command: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        cwd: Option<String>,
        #[serde(default)]
        env: Option<HashMap<String, String>>,
        #[serde(default)]
        port: Option<u16>,
        #[serde(default)]
        restart: Option<RestartPolicy>,
        #[serde(default)]
        watch: Option<WatchConfig>,
        /// New: the caller's environment, used instead of the daemon's as the base
        /// that `PORT`/`HOST` and then `env` are applied on.
        #[serde(default)]
        base_env: Option<HashMap<String, String>>,
        /// New: rotate this process's logs at this many bytes (default 50 MiB).
        #[serde(default)]
        log_max_size: Option<u64>,
        /// New: old log segments to keep (default 5).
        #[serde(default)]
        log_max_files: Option<usize>,
        /// New: grace period between the stop signal and SIGKILL (default 10 s).
        #[serde(default)]
        stop_timeout_ms: Option<u64>,
        /// New: the signal that asks the process to stop, `SIGTERM` by default.
        #[serde(default)]
        stop_signal: Option<String>,
        /// New: names of processes this one depends on; `down` stops it first.
        #[serde(default)]
        depends_on: Vec<String>,
        /// New: a setup step that runs to completion (`run --oneshot`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        oneshot: bool,
    },
    /// New: start a dependency graph (`up`). The daemon starts each process as soon
    /// as its dependencies are ready and answers with a stream of `UpProgress`,
    /// then `Ok`, or `UpFailed`.
    Up {
        processes: Vec<UpProcess>,
        #[serde(default)]
        base_env: Option<HashMap<String, String>>,
        /// Give up when the whole graph is not ready within this time.
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    Stop {
        target: String,
        /// New: grace period before SIGKILL (default 10 s).
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    StopAll {
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    Restart {
        target: String,
    },
    /// 0.6 sends no fields. New: `target` asks for one process only (an
    /// unknown one is an error), `resources` adds what each process group
    /// uses, read from /proc for this request (one process is always read).
    Status {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        resources: bool,
    },
    Logs {
        #[serde(default)]
        target: Option<String>,
        #[serde(default)]
        tail: usize,
        #[serde(default)]
        follow: bool,
        #[serde(default)]
        stderr: bool,
        #[serde(default)]
        all: bool,
        #[serde(default)]
        timeout_secs: Option<u64>,
        #[serde(default)]
        lines: Option<usize>,
        /// New: stdout and stderr together.
        #[serde(default)]
        both: bool,
        /// New: only lines containing this (a regex with `regex`).
        #[serde(default)]
        grep: Option<String>,
        #[serde(default)]
        regex: bool,
        #[serde(default)]
        ignore_case: bool,
        /// New: the client takes live lines in batches (`LogChunk`).
        #[serde(default)]
        chunked: bool,
        /// New: replay from the start of the last N runs (0: every run kept);
        /// absent: the latest run. Run starts in the replay are marked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        runs: Option<u64>,
    },
    Wait {
        target: String,
        #[serde(default)]
        until: Option<String>,
        #[serde(default)]
        regex: bool,
        #[serde(default)]
        exit: bool,
        #[serde(default)]
        timeout_secs: Option<u64>,
        /// New: millisecond precision; wins over `timeout_secs`.
        #[serde(default)]
        timeout_ms: Option<u64>,
        /// New: wait until 127.0.0.1:port accepts a TCP connection.
        #[serde(default)]
        port: Option<u16>,
        /// New: wait until a GET of this http:// URL answers 2xx or 3xx.
        #[serde(default)]
        http: Option<String>,
    },
    Shutdown,
    EnableProxy {
        #[serde(default)]
        proxy_port: Option<u16>,
    },
    Hello {
        #[serde(default)]
        version: u32,
    },
    /// New: stream state changes (`Event`) until the client hangs up. With
    /// `since`, first replay the events still held whose `seq` is greater.
    Events {
        #[serde(default)]
        since: Option<u64>,
    },
    #[serde(other)]
    Unknown,
}

/// One process of an `Up` request, as the config file defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpProcess {
    pub name: String,
    pub command: String,
    /// Absolute.
    pub cwd: String,
    #[serde(default)]
    pub env: HashMap<String, String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub ready: Option<ReadyCheck>,
    #[serde(default)]
    pub ready_timeout_ms: Option<u64>,
    #[serde(default)]
    pub stop_timeout_ms: Option<u64>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub log_max_size: Option<u64>,
    #[serde(default)]
    pub log_max_files: Option<usize>,
    #[serde(default)]
    pub restart: Option<RestartPolicy>,
    #[serde(default)]
    pub watch: Option<WatchConfig>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oneshot: bool,
}

/// When a process of `up` counts as ready; exactly one field is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReadyCheck {
    /// A line of output containing this (a regex with `regex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub regex: bool,
    /// 127.0.0.1:tcp accepts a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<u16>,
    /// A GET of this URL answers 2xx or 3xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// The process exits with this code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Encoded by derive, decoded by hand through `RawResponse`, as `Request` is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum Response {
    Ok {
        message: String,
    },
    RunOk {
        name: String,
        id: String,
        pid: u32,
        #[serde(default)]
        port: Option<u16>,
        #[serde(default)]
        url: Option<String>,
        /// New: something the process will likely trip over, such as its
        /// `--port` already being listened on by another process.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warning: Option<String>,
    },
    Status {
        processes: Vec<ProcessInfo>,
        /// New: what the daemon wants the user to know about the session as a
        /// whole, such as what it did about a previous daemon that was killed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        notes: Vec<String>,
    },
    LogLine {
        process: String,
        stream: Stream,
        line: String,
    },
    /// New: several live lines of one process and stream, joined by newlines,
    /// for a follower that asked for `chunked` (one message per burst, not per line).
    LogChunk {
        process: String,
        stream: Stream,
        lines: String,
    },
    LogEnd,
    WaitMatch {
        line: String,
    },
    WaitExited {
        exit_code: Option<i32>,
        /// New: `SIGKILL` and friends when the process died by a signal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_signal: Option<String>,
    },
    WaitTimeout,
    /// New: one step of an `up`: `started`, `running` (already, unchanged),
    /// `restarted` (its definition changed) or `ready`.
    UpProgress {
        event: String,
        name: String,
        id: String,
        pid: u32,
        #[serde(default)]
        url: Option<String>,
        /// New: as `RunOk`'s, for `started` and `restarted`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warning: Option<String>,
    },
    /// New: `up` failed because of this process; the others keep running.
    UpFailed {
        name: String,
        reason: String,
    },
    Error {
        code: i32,
        message: String,
    },
    Hello {
        version: u32,
    },
    /// New: one state change of a process, streamed to an `Events` client.
    /// `event` is one of `started`, `ready`, `exited`, `stopping`, `stopped`,
    /// `restarting`, `backoff`, `failed`, `watch_triggered`, or `lost` (the client read too
    /// slowly and `detail` says how many events it missed).
    Event {
        seq: u64,
        /// Milliseconds since the Unix epoch.
        at_ms: u64,
        name: String,
        id: String,
        event: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_signal: Option<String>,
        /// For `backoff`: how long until the restart.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delay_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    #[serde(other)]
    Unknown,
}

impl Response {
    pub fn error(message: impl Into<String>) -> Response {
        Response::Error {
            code: CODE_GENERAL,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Response {
        Response::Error {
            code: CODE_NOT_FOUND,
            message: message.into(),
        }
    }
}

/// One row of `status`, with 0.6's fields first and ours added after.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Set by the CLI for `status --json` (the version of this shape); never sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<u32>,
    pub name: String,
    pub id: String,
    pub pid: u32,
    /// `running`, `stopping`, `exited` or `failed`.
    pub state: String,
    pub exit_code: Option<i32>,
    pub uptime_secs: Option<u64>,
    pub command: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub restart_count: Option<u32>,
    #[serde(default)]
    pub max_restarts: Option<u32>,
    #[serde(default)]
    pub restart_policy: Option<String>,
    #[serde(default)]
    pub watched: Option<bool>,
    /// New: the signal that ended the process, e.g. `SIGKILL`.
    #[serde(default)]
    pub exit_signal: Option<String>,
    /// New: the working directory the process was started in.
    #[serde(default)]
    pub cwd: Option<String>,
    /// New: when the current or last run started and ended (RFC 3339, UTC).
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub exited_at: Option<String>,
    /// New: the last exits, oldest first (at most 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exits: Option<Vec<ExitInfo>>,
    /// New: in state `backoff`, how long until the next automatic restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_restart_in_ms: Option<u64>,
    /// New: deaths the process did not ask for in the last 60 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crashes_last_minute: Option<u32>,
    /// New: processes that outlived the last stop because they left the process
    /// group (setsid), while they are still running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survivors: Option<Vec<SurvivorInfo>>,
    /// New: started as a one-shot step (`run --oneshot`, `oneshot: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oneshot: Option<bool>,
    /// New: why the last run failed to listen, naming who holds its port, e.g.
    /// `port 3000 is already in use: 127.0.0.1:3000 is held by pid 4242 (...)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_conflict: Option<String>,
    /// New, with `resources` (or `target`): the process group's size, summed
    /// resident memory, CPU use and listening TCP addresses, read from /proc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Percent of one CPU since the previous resource reading of this run
    /// (at least 0.25 s before), or since it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// `127.0.0.1:3000`, `[::]:3000`, sorted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listening: Option<Vec<String>>,
    /// New, with `target`: the names of the variables set for the process
    /// (`--env`, config `env`, and `PORT`/`HOST`), never their values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_keys: Option<Vec<String>>,
    /// New, with `target`: the current stdout and stderr log files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_files: Option<Vec<String>>,
}

/// A process that outlived a stop, for `survivors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurvivorInfo {
    pub pid: i32,
    pub command: String,
}

/// One exit of a process, for `last_exits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<String>,
    pub time: String,
    /// `crashed`, `stopped`, `restarted` or `killed-after-timeout`.
    pub reason: String,
}

/// Declares a flat message struct and its decoder, which takes a JSON object
/// only (not the array form that derived struct decoders also accept, so one
/// copy of each field's decoding): `type` is required, every other field falls
/// back to its `Default`, unknown fields are skipped and a repeated field is an
/// error, as derived decoders do.
macro_rules! flat_message {
    ($raw:ident, $field:ident, $expecting:literal, { $($name:ident: $ty:ty,)* }) => {
        #[derive(Default)]
        struct $raw {
            kind: String,
            $($name: $ty,)*
        }

        #[derive(Deserialize, Clone, Copy, PartialEq)]
        #[serde(field_identifier)]
        #[allow(non_camel_case_types)]
        enum $field {
            #[serde(rename = "type")]
            r#type,
            $($name,)*
            #[serde(other)]
            other,
        }

        impl<'de> Deserialize<'de> for $raw {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_map(FlatVisitor::<$raw>(std::marker::PhantomData))
            }
        }

        impl<'de> serde::de::Visitor<'de> for FlatVisitor<$raw> {
            type Value = $raw;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str($expecting)
            }

            fn visit_map<A>(self, mut map: A) -> Result<$raw, A::Error>
            where
                A: serde::de::MapAccess<'de>,
            {
                const NAMES: &[&str] = &["type", $(stringify!($name),)*];
                const _: () = assert!(NAMES.len() <= 64, "fields are counted in a u64");
                let mut raw = $raw::default();
                let mut kind = None;
                let mut seen = 0u64;
                while let Some(key) = map.next_key::<$field>()? {
                    if key != $field::other {
                        let bit = 1u64 << (key as u32);
                        if seen & bit != 0 {
                            let name = NAMES.get(key as usize).copied().unwrap_or("?");
                            return Err(serde::de::Error::duplicate_field(name));
                        }
                        seen |= bit;
                    }
                    match key {
                        $field::r#type => kind = Some(map.next_value()?),
                        $($field::$name => raw.$name = map.next_value()?,)*
                        $field::other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                raw.kind = kind.ok_or_else(|| serde::de::Error::missing_field("type"))?;
                Ok(raw)
            }
        }
    };
}

/// The decoder of a `flat_message!` struct `T`.
struct FlatVisitor<T>(std::marker::PhantomData<T>);

// Every field of every `Request` variant, each name once with one type: one
// flat decoder instead of one per variant. A field that is optional in every
// variant that has it keeps its default here; the others are `Option` and
// `Request::deserialize` reports them missing. A name that several variants
// use must have the same type in all of them, and a new variant or field must
// keep to that, older daemons and clients included: every field named here is
// checked against its type in every message, even one whose type does not use
// it or is unknown, so a field of the wrong type is an error, not ignored.
flat_message!(RawRequest, RequestField, "internally tagged enum Request", {
    command: Option<String>,
    name: Option<String>,
    cwd: Option<String>,
    env: Option<HashMap<String, String>>,
    port: Option<u16>,
    restart: Option<RestartPolicy>,
    watch: Option<WatchConfig>,
    base_env: Option<HashMap<String, String>>,
    log_max_size: Option<u64>,
    log_max_files: Option<usize>,
    stop_timeout_ms: Option<u64>,
    stop_signal: Option<String>,
    depends_on: Vec<String>,
    processes: Option<Vec<UpProcess>>,
    timeout_ms: Option<u64>,
    target: Option<String>,
    tail: usize,
    follow: bool,
    stderr: bool,
    all: bool,
    timeout_secs: Option<u64>,
    lines: Option<usize>,
    both: bool,
    grep: Option<String>,
    regex: bool,
    ignore_case: bool,
    chunked: bool,
    runs: Option<u64>,
    until: Option<String>,
    exit: bool,
    http: Option<String>,
    proxy_port: Option<u16>,
    version: u32,
    since: Option<u64>,
    oneshot: bool,
    resources: bool,
});

/// A required field's value, or serde's "missing field" error naming it.
fn required<T, E: serde::de::Error>(value: Option<T>, field: &'static str) -> Result<T, E> {
    value.ok_or_else(|| E::missing_field(field))
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let r = RawRequest::deserialize(deserializer)?;
        Ok(match r.kind.as_str() {
            "Run" => Request::Run {
                command: required(r.command, "command")?,
                name: r.name,
                cwd: r.cwd,
                env: r.env,
                port: r.port,
                restart: r.restart,
                watch: r.watch,
                base_env: r.base_env,
                log_max_size: r.log_max_size,
                log_max_files: r.log_max_files,
                stop_timeout_ms: r.stop_timeout_ms,
                stop_signal: r.stop_signal,
                depends_on: r.depends_on,
                oneshot: r.oneshot,
            },
            "Up" => Request::Up {
                processes: required(r.processes, "processes")?,
                base_env: r.base_env,
                timeout_ms: r.timeout_ms,
            },
            "Stop" => Request::Stop {
                target: required(r.target, "target")?,
                timeout_ms: r.timeout_ms,
            },
            "StopAll" => Request::StopAll {
                timeout_ms: r.timeout_ms,
            },
            "Restart" => Request::Restart {
                target: required(r.target, "target")?,
            },
            "Status" => Request::Status {
                target: r.target,
                resources: r.resources,
            },
            "Logs" => Request::Logs {
                target: r.target,
                tail: r.tail,
                follow: r.follow,
                stderr: r.stderr,
                all: r.all,
                timeout_secs: r.timeout_secs,
                lines: r.lines,
                both: r.both,
                grep: r.grep,
                regex: r.regex,
                ignore_case: r.ignore_case,
                chunked: r.chunked,
                runs: r.runs,
            },
            "Wait" => Request::Wait {
                target: required(r.target, "target")?,
                until: r.until,
                regex: r.regex,
                exit: r.exit,
                timeout_secs: r.timeout_secs,
                timeout_ms: r.timeout_ms,
                port: r.port,
                http: r.http,
            },
            "Shutdown" => Request::Shutdown,
            "EnableProxy" => Request::EnableProxy {
                proxy_port: r.proxy_port,
            },
            "Hello" => Request::Hello { version: r.version },
            "Events" => Request::Events { since: r.since },
            _ => Request::Unknown,
        })
    }
}

// Every field of every `Response` variant, as `RawRequest` is for requests.
flat_message!(RawResponse, ResponseField, "internally tagged enum Response", {
    message: Option<String>,
    name: Option<String>,
    id: Option<String>,
    pid: Option<u32>,
    port: Option<u16>,
    url: Option<String>,
    processes: Option<Vec<ProcessInfo>>,
    notes: Vec<String>,
    process: Option<String>,
    stream: Option<Stream>,
    line: Option<String>,
    lines: Option<String>,
    exit_code: Option<i32>,
    exit_signal: Option<String>,
    event: Option<String>,
    reason: Option<String>,
    code: Option<i32>,
    version: Option<u32>,
    seq: Option<u64>,
    at_ms: Option<u64>,
    delay_ms: Option<u64>,
    detail: Option<String>,
    warning: Option<String>,
});

impl<'de> Deserialize<'de> for Response {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let r = RawResponse::deserialize(deserializer)?;
        Ok(match r.kind.as_str() {
            "Ok" => Response::Ok {
                message: required(r.message, "message")?,
            },
            "RunOk" => Response::RunOk {
                name: required(r.name, "name")?,
                id: required(r.id, "id")?,
                pid: required(r.pid, "pid")?,
                port: r.port,
                url: r.url,
                warning: r.warning,
            },
            "Status" => Response::Status {
                processes: required(r.processes, "processes")?,
                notes: r.notes,
            },
            "LogLine" => Response::LogLine {
                process: required(r.process, "process")?,
                stream: required(r.stream, "stream")?,
                line: required(r.line, "line")?,
            },
            "LogChunk" => Response::LogChunk {
                process: required(r.process, "process")?,
                stream: required(r.stream, "stream")?,
                lines: required(r.lines, "lines")?,
            },
            "LogEnd" => Response::LogEnd,
            "WaitMatch" => Response::WaitMatch {
                line: required(r.line, "line")?,
            },
            // `exit_code` has no default but is an Option: absent reads as None.
            "WaitExited" => Response::WaitExited {
                exit_code: r.exit_code,
                exit_signal: r.exit_signal,
            },
            "WaitTimeout" => Response::WaitTimeout,
            "UpProgress" => Response::UpProgress {
                event: required(r.event, "event")?,
                name: required(r.name, "name")?,
                id: required(r.id, "id")?,
                pid: required(r.pid, "pid")?,
                url: r.url,
                warning: r.warning,
            },
            "UpFailed" => Response::UpFailed {
                name: required(r.name, "name")?,
                reason: required(r.reason, "reason")?,
            },
            "Error" => Response::Error {
                code: required(r.code, "code")?,
                message: required(r.message, "message")?,
            },
            "Hello" => Response::Hello {
                version: required(r.version, "version")?,
            },
            "Event" => Response::Event {
                seq: required(r.seq, "seq")?,
                at_ms: required(r.at_ms, "at_ms")?,
                name: required(r.name, "name")?,
                id: required(r.id, "id")?,
                event: required(r.event, "event")?,
                pid: r.pid,
                exit_code: r.exit_code,
                exit_signal: r.exit_signal,
                delay_ms: r.delay_ms,
                detail: r.detail,
            },
            _ => Response::Unknown,
        })
    }
}

/// Outcome of decoding one request line: the request, or an error to answer with.
pub fn decode_request(line: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(line).map_err(|e| format!("invalid request: {e}"))
}

/// Serialize one response as a line, ready for the socket.
pub fn encode_response(out: &mut Vec<u8>, response: &Response) {
    // Serializing our own plain types into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, response).is_err() {
        out.extend_from_slice(br#"{"type":"Error","code":1,"message":"internal encoding error"}"#);
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_of_agent_procs_0_6_decode() {
        let cases: &[&[u8]] = &[
            br#"{"type":"Status"}"#,
            br#"{"type":"StopAll"}"#,
            br#"{"type":"Shutdown"}"#,
            br#"{"type":"Stop","target":"web"}"#,
            br#"{"type":"Restart","target":"p1"}"#,
            br#"{"type":"Hello","version":1}"#,
            br#"{"type":"Run","command":"sleep 1","name":null,"cwd":null,"env":null,"port":null,"restart":null,"watch":null}"#,
            br#"{"type":"Logs","target":"web","tail":10,"follow":true,"stderr":false,"all":false,"timeout_secs":30,"lines":null}"#,
            br#"{"type":"Wait","target":"web","until":"ready","regex":false,"exit":false,"timeout_secs":60}"#,
        ];
        for case in cases {
            let req = decode_request(case);
            assert!(req.is_ok(), "{}: {req:?}", String::from_utf8_lossy(case));
        }
    }

    #[test]
    fn unknown_request_types_and_fields_are_tolerated() {
        assert_eq!(
            decode_request(br#"{"type":"Teleport","x":1}"#),
            Ok(Request::Unknown)
        );
        assert_eq!(
            decode_request(br#"{"type":"Status","future":true}"#),
            Ok(Request::Status {
                target: None,
                resources: false
            })
        );
    }

    #[test]
    fn malformed_requests_give_a_message_not_a_panic() {
        for case in [
            &b"{"[..],
            b"null",
            b"[]",
            b"\xff\xfe",
            b"{\"type\":5}",
            b"{\"type\":\"Stop\"}",
        ] {
            let err = decode_request(case).expect_err("must not decode");
            assert!(err.starts_with("invalid request: "), "{err}");
        }
        let deep = "[".repeat(10_000);
        assert!(decode_request(deep.as_bytes()).is_err());
    }

    #[test]
    fn responses_keep_the_0_6_shapes() {
        let mut out = Vec::new();
        encode_response(
            &mut out,
            &Response::RunOk {
                name: "web".into(),
                id: "p1".into(),
                pid: 42,
                port: None,
                url: None,
                warning: None,
            },
        );
        assert_eq!(out, b"{\"type\":\"RunOk\",\"name\":\"web\",\"id\":\"p1\",\"pid\":42,\"port\":null,\"url\":null}\n");
        out.clear();
        encode_response(&mut out, &Response::not_found("process not found: x"));
        assert_eq!(
            out,
            b"{\"type\":\"Error\",\"code\":2,\"message\":\"process not found: x\"}\n"
        );
        out.clear();
        encode_response(
            &mut out,
            &Response::WaitExited {
                exit_code: Some(0),
                exit_signal: None,
            },
        );
        assert_eq!(out, b"{\"type\":\"WaitExited\",\"exit_code\":0}\n");
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// One request of every type with every field away from its default, and for
    /// each the fields that must be present.
    fn every_request() -> Vec<(Request, &'static [&'static str])> {
        let mut all = requests_that_start_processes();
        all.extend(requests_about_running_processes());
        all
    }

    /// Two definitions for `Up`: one with every field set, one with few.
    fn up_processes(restart: RestartPolicy, watch: WatchConfig) -> Vec<UpProcess> {
        vec![
            UpProcess {
                name: "db".into(),
                command: "postgres".into(),
                cwd: "/srv".into(),
                env: env(&[("PGDATA", "/tmp/pg")]),
                port: Some(5432),
                depends_on: vec![],
                ready: Some(ReadyCheck {
                    tcp: Some(5432),
                    ..ReadyCheck::default()
                }),
                ready_timeout_ms: Some(30_000),
                stop_timeout_ms: Some(5_000),
                stop_signal: Some("SIGINT".into()),
                log_max_size: Some(4096),
                log_max_files: Some(1),
                restart: Some(restart),
                watch: Some(watch),
                oneshot: false,
            },
            UpProcess {
                name: "web".into(),
                command: "serve".into(),
                cwd: "/srv/web".into(),
                env: HashMap::new(),
                port: None,
                depends_on: strings(&["db"]),
                ready: Some(ReadyCheck {
                    log: Some("listening on \\d+".into()),
                    regex: true,
                    ..ReadyCheck::default()
                }),
                ready_timeout_ms: None,
                stop_timeout_ms: None,
                stop_signal: None,
                log_max_size: None,
                log_max_files: None,
                restart: None,
                watch: None,
                oneshot: true,
            },
        ]
    }

    /// `Run` and `Up`, with every field of a process definition set.
    fn requests_that_start_processes() -> Vec<(Request, &'static [&'static str])> {
        let restart = RestartPolicy {
            mode: "on-failure".into(),
            max_restarts: Some(3),
            restart_delay_ms: 250,
            backoff: None,
        };
        let watch = WatchConfig {
            paths: strings(&["src", "Cargo.toml"]),
            ignore: Some(strings(&["target"])),
        };
        vec![
            (
                Request::Run {
                    command: "npm run dev".into(),
                    name: Some("web".into()),
                    cwd: Some("/srv/app".into()),
                    env: Some(env(&[("A", "1"), ("B", "two")])),
                    port: Some(3000),
                    restart: Some(restart.clone()),
                    watch: Some(watch.clone()),
                    base_env: Some(env(&[("PATH", "/bin")])),
                    log_max_size: Some(1 << 20),
                    log_max_files: Some(2),
                    stop_timeout_ms: Some(1500),
                    stop_signal: Some("SIGINT".into()),
                    depends_on: strings(&["db", "cache"]),
                    oneshot: true,
                },
                &["command"],
            ),
            (
                Request::Up {
                    processes: up_processes(restart, watch),
                    base_env: Some(env(&[("HOME", "/root")])),
                    timeout_ms: Some(60_000),
                },
                &["processes"],
            ),
        ]
    }

    /// The requests that act on what runs, and the session's own.
    fn requests_about_running_processes() -> Vec<(Request, &'static [&'static str])> {
        vec![
            (
                Request::Stop {
                    target: "web".into(),
                    timeout_ms: Some(2_000),
                },
                &["target"],
            ),
            (
                Request::StopAll {
                    timeout_ms: Some(3_000),
                },
                &[],
            ),
            (
                Request::Restart {
                    target: "p7".into(),
                },
                &["target"],
            ),
            (
                Request::Status {
                    target: Some("web".into()),
                    resources: true,
                },
                &[],
            ),
            (
                Request::Logs {
                    target: Some("web".into()),
                    tail: 25,
                    follow: true,
                    stderr: true,
                    all: true,
                    timeout_secs: Some(9),
                    lines: Some(100),
                    both: true,
                    grep: Some("error|warn".into()),
                    regex: true,
                    ignore_case: true,
                    chunked: true,
                    runs: Some(3),
                },
                &[],
            ),
            (
                Request::Wait {
                    target: "web".into(),
                    until: Some("ready".into()),
                    regex: true,
                    exit: true,
                    timeout_secs: Some(30),
                    timeout_ms: Some(30_500),
                    port: Some(8080),
                    http: Some("http://127.0.0.1:8080/health".into()),
                },
                &["target"],
            ),
            (Request::Shutdown, &[]),
            (
                Request::EnableProxy {
                    proxy_port: Some(9090),
                },
                &[],
            ),
            (Request::Hello { version: 7 }, &[]),
            (Request::Unknown, &[]),
        ]
    }

    /// One response of every type with every field set, and the fields each needs.
    fn every_response() -> Vec<(Response, &'static [&'static str])> {
        let mut all = answers_to_commands();
        all.extend(streamed_responses());
        all
    }

    /// What `run`, `stop`, `status` and the like are answered with.
    fn answers_to_commands() -> Vec<(Response, &'static [&'static str])> {
        vec![
            (
                Response::Ok {
                    message: "stopped web".into(),
                },
                &["message"],
            ),
            (
                Response::RunOk {
                    name: "web".into(),
                    id: "p1".into(),
                    pid: 4242,
                    port: Some(3000),
                    url: Some("http://127.0.0.1:3000".into()),
                    warning: Some("port 3000 is already in use".into()),
                },
                &["name", "id", "pid"],
            ),
            (
                Response::Status {
                    processes: vec![ProcessInfo {
                        name: "web".into(),
                        id: "p1".into(),
                        pid: 4242,
                        state: "exited".into(),
                        exit_code: Some(-1),
                        uptime_secs: Some(61),
                        command: "serve".into(),
                        port: Some(3000),
                        url: Some("http://127.0.0.1:3000".into()),
                        restart_count: Some(2),
                        max_restarts: Some(5),
                        restart_policy: Some("always".into()),
                        watched: Some(true),
                        exit_signal: Some("SIGKILL".into()),
                        cwd: Some("/srv".into()),
                        port_conflict: Some("port 3000 is already in use".into()),
                        pgid: Some(4242),
                        process_count: Some(2),
                        rss_bytes: Some(1 << 20),
                        cpu_percent: Some(12.5),
                        listening: Some(strings(&["127.0.0.1:3000", "[::]:3000"])),
                        env_keys: Some(strings(&["PORT"])),
                        log_files: Some(strings(&["/s/web.stdout"])),
                        ..ProcessInfo::default()
                    }],
                    notes: vec![],
                },
                &["processes"],
            ),
        ]
    }

    /// What logs, waits and `up` stream, errors, and the handshake.
    fn streamed_responses() -> Vec<(Response, &'static [&'static str])> {
        vec![
            (
                Response::LogLine {
                    process: "web".into(),
                    stream: Stream::Stderr,
                    line: "oops \"quoted\" \u{e9}".into(),
                },
                &["process", "stream", "line"],
            ),
            (
                Response::LogChunk {
                    process: "web".into(),
                    stream: Stream::Stdout,
                    lines: "a\nb\nc".into(),
                },
                &["process", "stream", "lines"],
            ),
            (Response::LogEnd, &[]),
            (
                Response::WaitMatch {
                    line: "ready on :3000".into(),
                },
                &["line"],
            ),
            (
                Response::WaitExited {
                    exit_code: Some(3),
                    exit_signal: Some("SIGTERM".into()),
                },
                &[],
            ),
            (Response::WaitTimeout, &[]),
            (
                Response::UpProgress {
                    event: "ready".into(),
                    name: "db".into(),
                    id: "p2".into(),
                    pid: 99,
                    url: Some("http://127.0.0.1:5432".into()),
                    warning: Some("port 5432 is already in use".into()),
                },
                &["event", "name", "id", "pid"],
            ),
            (
                Response::UpFailed {
                    name: "db".into(),
                    reason: "exited with code 1".into(),
                },
                &["name", "reason"],
            ),
            (
                Response::Error {
                    code: CODE_NOT_FOUND,
                    message: "process not found: x".into(),
                },
                &["code", "message"],
            ),
            (Response::Hello { version: 1 }, &["version"]),
            (Response::Unknown, &[]),
        ]
    }

    fn decode_response(line: &[u8]) -> Result<Response, String> {
        serde_json::from_slice(line).map_err(|e| e.to_string())
    }

    /// The message as a JSON object, to take fields out of or put fields in.
    fn as_object<T: Serialize>(message: &T) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(message) {
            Ok(serde_json::Value::Object(map)) => map,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn every_request_decodes_to_what_was_encoded() {
        for (request, _) in every_request() {
            let line = serde_json::to_vec(&request).expect("encodes");
            assert_eq!(
                decode_request(&line),
                Ok(request),
                "{}",
                String::from_utf8_lossy(&line)
            );
        }
    }

    #[test]
    fn every_response_decodes_to_what_was_encoded() {
        for (response, _) in every_response() {
            let mut line = Vec::new();
            encode_response(&mut line, &response);
            assert_eq!(
                decode_response(&line),
                Ok(response),
                "{}",
                String::from_utf8_lossy(&line)
            );
        }
    }

    /// Takes each field out of `object` in turn: a required one (or `type`) must
    /// give an error naming it, any other must still decode.
    fn check_each_field_missing(
        object: &serde_json::Map<String, serde_json::Value>,
        required: &[&str],
        decode: fn(&[u8]) -> Result<(), String>,
    ) {
        for field in object.keys() {
            let mut without = object.clone();
            without.remove(field);
            let line = serde_json::to_vec(&without).expect("encodes");
            let shown = String::from_utf8_lossy(&line);
            let outcome = decode(&line);
            if field == "type" || required.contains(&field.as_str()) {
                let err = outcome.expect_err(&shown);
                assert!(
                    err.contains(&format!("missing field `{field}`")),
                    "{shown}: {err}"
                );
            } else {
                assert_eq!(outcome, Ok(()), "{shown}");
            }
        }
        for field in required {
            assert!(object.contains_key(*field), "{object:?} has no {field}");
        }
    }

    #[test]
    fn a_missing_required_field_is_named_and_the_others_are_optional() {
        for (request, required) in every_request() {
            check_each_field_missing(&as_object(&request), required, |line| {
                decode_request(line).map(drop)
            });
        }
        for (response, required) in every_response() {
            check_each_field_missing(&as_object(&response), required, |line| {
                decode_response(line).map(drop)
            });
        }
    }

    #[test]
    fn optional_fields_take_their_defaults() {
        assert_eq!(
            decode_request(br#"{"type":"Logs"}"#),
            Ok(Request::Logs {
                target: None,
                tail: 0,
                follow: false,
                stderr: false,
                all: false,
                timeout_secs: None,
                lines: None,
                both: false,
                grep: None,
                regex: false,
                ignore_case: false,
                chunked: false,
                runs: None,
            })
        );
        assert_eq!(
            decode_request(br#"{"type":"Hello"}"#),
            Ok(Request::Hello { version: 0 })
        );
        assert_eq!(
            decode_request(br#"{"type":"Wait","target":"w"}"#),
            Ok(Request::Wait {
                target: "w".into(),
                until: None,
                regex: false,
                exit: false,
                timeout_secs: None,
                timeout_ms: None,
                port: None,
                http: None,
            })
        );
        assert_eq!(
            decode_request(br#"{"type":"Up","processes":[]}"#),
            Ok(Request::Up {
                processes: vec![],
                base_env: None,
                timeout_ms: None,
            })
        );
        // A process killed by a signal has no exit code: null or absent.
        for line in [
            &br#"{"type":"WaitExited","exit_code":null,"exit_signal":"SIGKILL"}"#[..],
            br#"{"type":"WaitExited","exit_signal":"SIGKILL"}"#,
        ] {
            assert_eq!(
                decode_response(line),
                Ok(Response::WaitExited {
                    exit_code: None,
                    exit_signal: Some("SIGKILL".into()),
                })
            );
        }
    }

    #[test]
    fn unknown_types_decode_as_unknown_and_unknown_fields_are_ignored() {
        assert_eq!(
            decode_request(br#"{"zone":{"a":[1,2]},"type":"Teleport","to":"mars"}"#),
            Ok(Request::Unknown)
        );
        assert_eq!(
            decode_response(br#"{"type":"Postcard","from":"mars","pictures":[{}]}"#),
            Ok(Response::Unknown)
        );
        let extra = serde_json::json!({"n": 1, "list": [null, {"deep": true}], "s": "x"});
        for (request, _) in every_request() {
            let mut object = as_object(&request);
            object.insert("from_the_future".into(), extra.clone());
            object.insert("also_new".into(), serde_json::Value::Null);
            let line = serde_json::to_vec(&object).expect("encodes");
            assert_eq!(decode_request(&line), Ok(request));
        }
        for (response, _) in every_response() {
            let mut object = as_object(&response);
            object.insert("from_the_future".into(), extra.clone());
            let line = serde_json::to_vec(&object).expect("encodes");
            assert_eq!(decode_response(&line), Ok(response));
        }
    }

    /// Requests of 0.6 with few fields.
    fn plain_requests_of_0_6() -> Vec<(&'static [u8], Request)> {
        vec![
            (
                br#"{"type":"Status"}"#,
                Request::Status {
                    target: None,
                    resources: false,
                },
            ),
            (
                br#"{"type":"StopAll"}"#,
                Request::StopAll { timeout_ms: None },
            ),
            (br#"{"type":"Shutdown"}"#, Request::Shutdown),
            (
                br#"{"type":"Stop","target":"web"}"#,
                Request::Stop {
                    target: "web".into(),
                    timeout_ms: None,
                },
            ),
            (
                br#"{"type":"Restart","target":"p1"}"#,
                Request::Restart {
                    target: "p1".into(),
                },
            ),
            (
                br#"{"type":"Hello","version":1}"#,
                Request::Hello { version: 1 },
            ),
            (
                br#"{"type":"EnableProxy","proxy_port":null}"#,
                Request::EnableProxy { proxy_port: None },
            ),
        ]
    }

    /// `Run` as 0.6 sent it, with and without its optional fields.
    fn runs_of_0_6() -> Vec<(&'static [u8], Request)> {
        vec![
            (
                br#"{"type":"Run","command":"sleep 1","name":null,"cwd":null,"env":null,"port":null,"restart":null,"watch":null}"#,
                Request::Run {
                    command: "sleep 1".into(),
                    name: None,
                    cwd: None,
                    env: None,
                    port: None,
                    restart: None,
                    watch: None,
                    base_env: None,
                    log_max_size: None,
                    log_max_files: None,
                    stop_timeout_ms: None,
                    stop_signal: None,
                    depends_on: vec![],
                    oneshot: false,
                },
            ),
            (
                br#"{"type":"Run","command":"serve","name":"web","cwd":"/srv","env":{"A":"1"},"port":3000,"restart":{"mode":"always","max_restarts":null,"restart_delay_ms":100},"watch":{"paths":["src"],"ignore":null}}"#,
                Request::Run {
                    command: "serve".into(),
                    name: Some("web".into()),
                    cwd: Some("/srv".into()),
                    env: Some(env(&[("A", "1")])),
                    port: Some(3000),
                    restart: Some(RestartPolicy {
                        mode: "always".into(),
                        max_restarts: None,
                        restart_delay_ms: 100,
                        backoff: None,
                    }),
                    watch: Some(WatchConfig {
                        paths: strings(&["src"]),
                        ignore: None,
                    }),
                    base_env: None,
                    log_max_size: None,
                    log_max_files: None,
                    stop_timeout_ms: None,
                    stop_signal: None,
                    depends_on: vec![],
                    oneshot: false,
                },
            ),
        ]
    }

    /// `Logs` and `Wait` as 0.6 sent them.
    fn logs_and_waits_of_0_6() -> Vec<(&'static [u8], Request)> {
        vec![
            (
                br#"{"type":"Logs","target":"web","tail":10,"follow":true,"stderr":false,"all":false,"timeout_secs":30,"lines":null}"#,
                Request::Logs {
                    target: Some("web".into()),
                    tail: 10,
                    follow: true,
                    stderr: false,
                    all: false,
                    timeout_secs: Some(30),
                    lines: None,
                    both: false,
                    grep: None,
                    regex: false,
                    ignore_case: false,
                    chunked: false,
                    runs: None,
                },
            ),
            (
                br#"{"type":"Wait","target":"web","until":"ready","regex":false,"exit":false,"timeout_secs":60}"#,
                Request::Wait {
                    target: "web".into(),
                    until: Some("ready".into()),
                    regex: false,
                    exit: false,
                    timeout_secs: Some(60),
                    timeout_ms: None,
                    port: None,
                    http: None,
                },
            ),
        ]
    }

    #[test]
    fn requests_of_agent_procs_0_6_decode_to_these_values() {
        let cases = [
            plain_requests_of_0_6(),
            runs_of_0_6(),
            logs_and_waits_of_0_6(),
        ]
        .concat();
        for (line, expected) in &cases {
            assert_eq!(
                decode_request(line).as_ref(),
                Ok(expected),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn wrongly_typed_fields_are_errors() {
        for line in [
            &br#"{"type":"Stop","target":5}"#[..],
            br#"{"type":"Stop","target":null}"#,
            br#"{"type":"Wait","target":"w","port":70000}"#,
            br#"{"type":"Logs","follow":null}"#,
            br#"{"type":"Logs","tail":-1}"#,
            br#"{"type":"Hello","version":"1"}"#,
            br#"{"type":"Run","command":"x","depends_on":null}"#,
            br#"{"type":"Stop","target":"a","target":"b"}"#,
            br#"{"type":null}"#,
        ] {
            let err = decode_request(line).expect_err(&String::from_utf8_lossy(line));
            assert!(err.starts_with("invalid request: "), "{err}");
        }
        let err = decode_response(br#"{"type":"LogLine","process":"a","stream":"x","line":""}"#)
            .expect_err("bad stream");
        assert!(err.contains("unknown variant `x`"), "{err}");
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(&bytes);
        }

        #[test]
        fn every_encoded_response_is_one_line(message in ".*", line in ".*") {
            let mut out = Vec::new();
            encode_response(&mut out, &Response::error(message));
            encode_response(&mut out, &Response::LogLine { process: "p".into(), stream: Stream::Stderr, line });
            prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 2);
            prop_assert_eq!(out.last(), Some(&b'\n'));
        }
    }
}
