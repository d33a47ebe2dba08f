//! `stop` and `stop-all`: the daemon's answer on stdout, what outlived the stop
//! on stderr.

use crate::cli::{
    Args, Command, CommandSpec, Flag, JSON_FLAG, QUIET_FLAG, SESSION_FLAG, common, other,
};
use crate::client::{Conn, Output, millis, one_status, unexpected, warn_survivors};
use crate::error::Result;
use crate::paths::SessionPaths;
use crate::protocol::{Request, Response};
use lexopt::prelude::*;
use std::time::Duration;

pub static STOP: CommandSpec = CommandSpec {
    name: "stop",
    about: "stop a process and its process group",
    usage: STOP_USAGE,
    after: "",
    subcommands: &[],
    flags: &[
        Flag::word(
            "timeout",
            "S",
            "grace period in seconds before SIGKILL (default: 10)",
        ),
        Flag::switch(
            "json",
            "print one JSON object, with schema: 1, instead of text:\n\
             message, name, state, exit_code, exit_signal (+ survivors)",
        ),
        QUIET_FLAG,
        SESSION_FLAG,
    ],
    takes_process: true,
    parse,
};

pub static STOP_ALL: CommandSpec = CommandSpec {
    name: "stop-all",
    about: "stop every process of the session",
    usage: STOP_ALL_USAGE,
    after: "",
    subcommands: &[],
    flags: &[
        Flag::word(
            "timeout",
            "S",
            "grace period in seconds before SIGKILL (default: 10)",
        ),
        JSON_FLAG,
        QUIET_FLAG,
        SESSION_FLAG,
    ],
    takes_process: false,
    parse: parse_all,
};

const STOP_USAGE: &str = "\
usage: agent-procs stop NAME|ID [--timeout S]

Send SIGTERM to the process group, then SIGKILL after the grace period.
Returns when the process has exited, printing `stopped NAME`; a process that
had exited already gets `NAME was not running` (exit 0). Processes that left
the group with setsid and outlived the stop are named on stderr.";

const STOP_ALL_USAGE: &str = "\
usage: agent-procs stop-all [--timeout S]

Stop every process of the session at once; returns when all have exited.";

fn parse(a: &mut Args<'_>) -> Result<Command> {
    let mut target = None;
    let mut timeout = None;
    while let Some(arg) = a.next_arg()? {
        match arg {
            Long("timeout") => timeout = Some(a.seconds("--timeout")?),
            Value(v) if target.is_none() => target = Some(a.word(v, "the process name")?),
            _ => common(other(arg), a)?,
        }
    }
    let target = target.ok_or_else(|| a.error("missing process name or id"))?;
    Ok(Command::Stop { target, timeout })
}

fn parse_all(a: &mut Args<'_>) -> Result<Command> {
    let mut timeout = None;
    while let Some(arg) = a.next_arg()? {
        match arg {
            Long("timeout") => timeout = Some(a.seconds("--timeout")?),
            _ => common(other(arg), a)?,
        }
    }
    Ok(Command::StopAll { timeout })
}

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
