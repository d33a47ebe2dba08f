//! The wire protocol between the CLI and the daemon: one JSON object per line,
//! `type`-tagged, with the shapes of agent-procs 0.6. Fields are only ever added
//! (with defaults), and unknown fields and request types are tolerated.

use serde::{Deserialize, Serialize};
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
    #[serde(default)]
    pub restart_delay_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchConfig {
    pub paths: Vec<String>,
    #[serde(default)]
    pub ignore: Option<Vec<String>>,
}

// Requests are decoded one at a time and never stored in bulk, so the size of
// the `Run` variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    Status,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    },
    Status {
        processes: Vec<ProcessInfo>,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
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
            Ok(Request::Status)
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
