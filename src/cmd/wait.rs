//! `wait`: until a process prints a line, exits, listens or answers HTTP.

use crate::cli::{
    Args, Command, CommandSpec, Flag, JSON_FLAG, QUIET_FLAG, SESSION_FLAG, WaitArgs, common, other,
};
use crate::client::{Conn, Output, millis, unexpected};
use crate::error::{Error, Result};
use crate::paths::SessionPaths;
use crate::protocol::{Request, Response};
use lexopt::prelude::*;
use std::time::Duration;

pub static WAIT: CommandSpec = CommandSpec {
    name: "wait",
    about: "block until a line matches, the process exits, or it serves",
    usage: WAIT_USAGE,
    after: WAIT_PRINTS,
    subcommands: &[],
    flags: &[
        Flag::word("until", "PAT", "wait for a line containing PAT"),
        Flag::switch("regex", "treat PAT as a regular expression"),
        Flag::switch("exit", "wait for the process to exit"),
        Flag::switch(
            "success",
            "with --exit: exit 1 unless the process exited with code 0",
        ),
        Flag::word(
            "port",
            "P",
            "wait until 127.0.0.1:P accepts a TCP connection",
        ),
        Flag::word(
            "http",
            "URL",
            "wait until a GET of URL (http://, host localhost, 127.x.y.z\n\
             or [::1]: loopback only) answers 2xx or 3xx",
        ),
        Flag::word(
            "timeout",
            "S",
            "give up after S seconds and exit 1 (default: 30)",
        ),
        JSON_FLAG,
        QUIET_FLAG,
        SESSION_FLAG,
    ],
    takes_process: true,
    parse,
};

const WAIT_USAGE: &str = "\
usage: agent-procs wait NAME --until PAT [--regex] [--timeout S]
       agent-procs wait NAME --exit [--success] [--timeout S]
       agent-procs wait NAME --port P | --http URL [--timeout S]

Block until the process prints a line containing PAT (stdout or stderr, output
since its last start included), until it exits, or until it serves: a TCP port
on 127.0.0.1 accepts connections, or a URL answers 2xx or 3xx (tried every 250 ms).";

/// Below the options of `wait --help`.
const WAIT_PRINTS: &str = "\
prints: the matching line, `exited with code N`, `exited by SIGNAL`, or
        `port P is ready (accepting connections)`, `URL is ready (HTTP 200)`";

fn parse(a: &mut Args<'_>) -> Result<Command> {
    let mut w = WaitArgs {
        target: String::new(),
        until: None,
        regex: false,
        exit: false,
        success: false,
        port: None,
        http: None,
        timeout: None,
    };
    let mut target = None;
    while let Some(arg) = a.next_arg()? {
        match arg {
            Long("until") => w.until = Some(a.text("--until")?),
            Long("regex") => w.regex = true,
            Long("exit") => w.exit = true,
            Long("success") => w.success = true,
            Long("port") => w.port = Some(a.port()?),
            Long("http") => {
                let url = a.text("--http")?;
                if let Err(why) = crate::probe::http_target(&url) {
                    return Err(a.error(why));
                }
                w.http = Some(url);
            }
            Long("timeout") => w.timeout = Some(a.seconds("--timeout")?),
            Value(v) if target.is_none() => target = Some(a.word(v, "the process name")?),
            _ => common(other(arg), a)?,
        }
    }
    w.target = target.ok_or_else(|| a.error("missing process name or id"))?;
    let probes = usize::from(w.port.is_some()) + usize::from(w.http.is_some());
    if probes > 1 || (probes == 1 && (w.until.is_some() || w.exit)) {
        return Err(a.error("--port and --http go alone, not with each other, --until or --exit"));
    }
    if w.success && !w.exit {
        return Err(a.error("--success goes with --exit"));
    }
    if w.until.is_none() && !w.exit && probes == 0 {
        return Err(a.error("say what to wait for: --until PAT, --exit, --port P or --http URL"));
    }
    if w.regex && w.until.is_none() {
        return Err(a.error("--regex goes with --until"));
    }
    Ok(Command::Wait(w))
}

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
            let text = crate::client::wait_exit_text(exit_code, exit_signal.as_deref());
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
