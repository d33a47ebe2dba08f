//! `down`: stop every process and the daemon, and return once it is gone.

use crate::cli::{Args, Command, CommandSpec, Flag, JSON_FLAG, QUIET_FLAG, common, other};
use crate::client::{Conn, Output, project, unexpected, warn_survivors};
use crate::error::{Error, Result};
use crate::paths::SessionPaths;
use crate::protocol::{Request, Response};
use lexopt::prelude::*;
use std::path::PathBuf;
use std::time::Duration;

pub static DOWN: CommandSpec = CommandSpec {
    name: "down",
    about: "stop everything and shut the daemon down",
    usage: DOWN_USAGE,
    after: "",
    subcommands: &[],
    flags: &[
        Flag::path(
            "config",
            "PATH",
            "read the session name from this config file",
        ),
        JSON_FLAG,
        QUIET_FLAG,
        Flag::word(
            "session",
            "NAME",
            "session to use (default: the config's session, else default)",
        ),
    ],
    takes_process: false,
    parse,
};

const DOWN_USAGE: &str = "\
usage: agent-procs down [--config PATH]

Stop every process of the session (dependents before what they depend on, each
with its stop_timeout) and shut its daemon down; its socket, pid and lock files
go, its logs stay. Processes that left their group with setsid and outlived
the stops are named on stderr. With no daemon running there is nothing to do,
and down says so and exits 0.";

fn parse(a: &mut Args<'_>) -> Result<Command> {
    let mut config = None;
    while let Some(arg) = a.next_arg()? {
        match arg {
            Long("config") => config = Some(a.path()?),
            _ => common(other(arg), a)?,
        }
    }
    Ok(Command::Down { config })
}

pub fn run(paths: &SessionPaths, out: Output) -> Result<i32> {
    let mut conn = match Conn::open(paths, false) {
        Ok(conn) => conn,
        Err(Error::Failed(msg)) if msg.starts_with("no daemon running") => {
            eprintln!("agent-procs: {msg}; nothing to stop");
            if out.json {
                let json = serde_json::json!({"message": "nothing to stop", "stopped": false});
                out.say("", json)?;
            }
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    match conn.ask(&Request::Shutdown, Duration::from_secs(10))? {
        Response::Ok { message } => {
            warn_survivors(&message);
        }
        other => return unexpected(other),
    }
    // Return only once the daemon is gone: it closes the connection as it exits.
    conn.wait_closed(Duration::from_secs(5));
    let json = serde_json::json!({"message": "all processes stopped", "stopped": true});
    out.say("all processes stopped", json)?;
    Ok(0)
}

/// `down` without `--session`: the session the config names, as `up` used; any
/// problem with the file leaves the default (0.6 does the same).
pub fn by_config(session: &str, config: Option<PathBuf>, out: Output) -> Result<i32> {
    let named = project::locate(config).ok().and_then(|path| {
        let named = crate::config::Config::load(&path).ok()?.session?;
        project::config_session(&named, &path).ok()
    });
    let session = named.map_or_else(|| session.to_string(), |(name, _)| name);
    run(&SessionPaths::new(&session)?, out)
}
