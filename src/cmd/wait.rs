//! `wait`: until a process prints a line, exits, listens or answers HTTP.

use crate::cli::WaitArgs;
use crate::client::{Conn, Output, millis, unexpected};
use crate::error::{Error, Result};
use crate::paths::SessionPaths;
use crate::protocol::{Request, Response};
use std::time::Duration;

pub fn run(paths: &SessionPaths, args: WaitArgs, out: Output) -> Result<i32> {
    let timeout = args.timeout.unwrap_or(Duration::from_secs(30));
    let request = Request::Wait {
        target: args.target.clone(),
        until: args.until,
        regex: args.regex,
        exit: args.exit,
        timeout_secs: Some(timeout.as_secs_f64().ceil() as u64),
        timeout_ms: Some(millis(timeout)),
        port: args.port,
        http: args.http.clone(),
    };
    let mut conn = Conn::open(paths, false)?;
    match conn.ask(&request, timeout)? {
        Response::WaitMatch { line } => {
            out.say(&line, serde_json::json!({"event": "match", "line": line}))?;
            Ok(0)
        }
        Response::WaitExited {
            exit_code,
            exit_signal,
        } => {
            let text = match (exit_code, &exit_signal) {
                (Some(code), _) => format!("exited with code {code}"),
                (None, Some(signal)) => format!("exited by {signal}"),
                (None, None) => "exited by signal".to_string(),
            };
            let json = serde_json::json!({"event": "exit", "exit_code": exit_code, "exit_signal": exit_signal});
            if args.success && exit_code != Some(0) {
                // The exit is what was asked about, so it is said as usual; the
                // status says it was not a success.
                out.say(&text, json)?;
                return Err(Error::Failed(format!(
                    "{} did not succeed: it {text}",
                    args.target
                )));
            }
            out.say(&text, json)?;
            Ok(0)
        }
        Response::WaitTimeout => {
            let what = match (&args.port, &args.http) {
                (Some(port), _) => format!("accept connections on port {port}"),
                (_, Some(url)) => format!("answer {url} with 2xx or 3xx"),
                _ if args.exit => "exit".into(),
                _ => "print a matching line".into(),
            };
            if out.json {
                out.say("", serde_json::json!({"event": "timeout"}))?;
            }
            Err(Error::Failed(format!(
                "timeout: {} did not {what} within {}",
                args.target,
                crate::timefmt::seconds(timeout)
            )))
        }
        other => unexpected(other),
    }
}
