//! `stop` and `stop-all`: the daemon's answer on stdout, what outlived the stop
//! on stderr.

use crate::client::{Conn, Output, millis, one_status, unexpected, warn_survivors};
use crate::error::Result;
use crate::paths::SessionPaths;
use crate::protocol::{Request, Response};
use std::time::Duration;

/// `stop`: the daemon's first line on stdout (`stopped NAME`, `NAME was not
/// running`), what outlived the stop on stderr; the JSON adds the process's name,
/// state and exit code, and the survivors.
pub fn stop(
    paths: &SessionPaths,
    target: String,
    timeout: Option<Duration>,
    out: Output,
) -> Result<i32> {
    let request = Request::Stop {
        target: target.clone(),
        timeout_ms: timeout.map(millis),
    };
    let mut conn = Conn::open(paths, false)?;
    let message = match conn.ask(&request, timeout.unwrap_or(Duration::from_secs(10)))? {
        Response::Ok { message } => message,
        other => return unexpected(other),
    };
    let headline = warn_survivors(&message);
    if !out.json {
        out.say(headline, serde_json::Value::Null)?;
        return Ok(0);
    }
    let mut json = serde_json::json!({"message": headline});
    if let (Some(p), Some(object)) = (one_status(&mut conn, &target)?, json.as_object_mut()) {
        object.insert("name".into(), p.name.into());
        object.insert("state".into(), p.state.into());
        object.insert("exit_code".into(), p.exit_code.into());
        object.insert("exit_signal".into(), p.exit_signal.into());
        if let Some(survivors) = p.survivors.filter(|s| !s.is_empty()) {
            let list = serde_json::to_value(survivors).unwrap_or_default();
            object.insert("survivors".into(), list);
        }
    }
    out.say("", json)?;
    Ok(0)
}

/// `stop-all`: every process, with one grace period.
pub fn stop_all(paths: &SessionPaths, timeout: Option<Duration>, out: Output) -> Result<i32> {
    let request = Request::StopAll {
        timeout_ms: timeout.map(millis),
    };
    print_message(
        paths,
        &request,
        timeout.unwrap_or(Duration::from_secs(10)),
        out,
    )
}

fn print_message(
    paths: &SessionPaths,
    request: &Request,
    grace: Duration,
    out: Output,
) -> Result<i32> {
    let mut conn = Conn::open(paths, false)?;
    match conn.ask(request, grace)? {
        Response::Ok { message } => {
            let headline = warn_survivors(&message);
            out.say(headline, serde_json::json!({"message": headline}))?;
            Ok(0)
        }
        other => unexpected(other),
    }
}
