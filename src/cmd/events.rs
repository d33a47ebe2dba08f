//! `events`: stream the daemon's events, as text or JSON lines.

use crate::cli::{Args, Command, CommandSpec, Flag, SESSION_FLAG, common, other};
use crate::client::{Conn, daemon_error, unexpected, write_stdout};
use crate::error::{Error, Result};
use crate::paths::SessionPaths;
use crate::protocol::{Request, Response};
use lexopt::prelude::*;
use std::time::Duration;

pub static EVENTS: CommandSpec = CommandSpec {
    name: "events",
    about: "stream state changes as they happen",
    usage: EVENTS_USAGE,
    after: "",
    subcommands: &[],
    flags: &[
        Flag::word(
            "since",
            "SEQ",
            "replay the held events after sequence number SEQ first (0: all)",
        ),
        Flag::switch("json", "print each event as one JSON object per line"),
        SESSION_FLAG,
    ],
    takes_process: false,
    parse,
};

const EVENTS_USAGE: &str = "\
usage: agent-procs events [--since SEQ] [--json]

Print each state change of the session's processes as it happens: started,
ready, exited, stopping, stopped, restarting, backoff, failed, watch_triggered. Each event
has a sequence number; --since SEQ first replays the events after SEQ that the
daemon still holds (the last 1024), so a reader that reconnects misses nothing.
Runs until interrupted or until the daemon exits.";

fn parse(a: &mut Args<'_>) -> Result<Command> {
    let (mut since, mut json) = (None, false);
    while let Some(arg) = a.next_arg()? {
        match arg {
            Long("json") => json = true,
            Long("since") => since = Some(a.number("--since", "a sequence number")?),
            _ => common(other(arg), a)?,
        }
    }
    Ok(Command::Events { since, json })
}

/// Stream the daemon's events until it exits (or stdout closes).
pub fn run(paths: &SessionPaths, since: Option<u64>, json: bool) -> Result<i32> {
    let mut conn = Conn::open(paths, false)?;
    conn.send(&Request::Events { since })?;
    let mut out = Vec::new();
    loop {
        let response = match conn.recv(None) {
            Ok(response) => response,
            // The daemon exited: the stream is over, as for `tail -f` of a removed file.
            Err(_) if out.is_empty() && !conn.has_buffered() => return Ok(0),
            Err(e) => return Err(e),
        };
        match &response {
            Response::Event { .. } if json => {
                serde_json::to_writer(&mut out, &response)
                    .map_err(|e| Error::Failed(e.to_string()))?;
                out.push(b'\n');
            }
            Response::Event { .. } => {
                out.extend_from_slice(event_text(&response).as_bytes());
                out.push(b'\n');
            }
            Response::Error { code, message } => {
                return Err(daemon_error(*code, message.clone()));
            }
            _ => return unexpected(response),
        }
        if !conn.has_buffered() {
            write_stdout(&out)?;
            out.clear();
        }
    }
}

/// `2026-11-26T02:31:00.123Z 12 api exited code 1`, and what else the event says.
fn event_text(event: &Response) -> String {
    let Response::Event {
        seq,
        at_ms,
        name,
        event,
        pid,
        exit_code,
        exit_signal,
        delay_ms,
        detail,
        ..
    } = event
    else {
        return String::new();
    };
    let mut text = format!("{} {seq} ", crate::timefmt::rfc3339_ms(*at_ms));
    if !name.is_empty() {
        text.push_str(name);
        text.push(' ');
    }
    text.push_str(event);
    if let Some(pid) = pid {
        text.push_str(&format!(" pid {pid}"));
    }
    match (exit_code, exit_signal) {
        (Some(code), _) => text.push_str(&format!(" code {code}")),
        (None, Some(signal)) => text.push_str(&format!(" {signal}")),
        (None, None) => {}
    }
    if let Some(ms) = delay_ms {
        let delay = crate::timefmt::seconds(Duration::from_millis(*ms));
        text.push_str(&format!(" restart in {delay}"));
    }
    if let Some(detail) = detail {
        text.push_str(&format!(" ({detail})"));
    }
    text
}
