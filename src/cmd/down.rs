//! `down`: stop every process and the daemon, and return once it is gone.

use crate::client::{Conn, Output, project, unexpected, warn_survivors};
use crate::error::{Error, Result};
use crate::paths::SessionPaths;
use crate::protocol::{Request, Response};
use std::path::PathBuf;
use std::time::Duration;

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
