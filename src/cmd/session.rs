//! `session list` and `session clean`: the sessions in the runtime directory.

use crate::cli::{Args, Command, CommandSpec, Flag, common, other};
use crate::client::{Conn, Output, write_stdout};
use crate::error::{Context, Result};
use crate::logs;
use crate::paths::{self, SessionPaths};
use lexopt::prelude::*;
use std::fmt::Write as _;
use std::io;

pub static SESSION: CommandSpec = CommandSpec {
    name: "session",
    about: "list sessions, or remove stale ones",
    usage: SESSION_USAGE,
    after: "",
    subcommands: &["list", "clean"],
    flags: &[
        Flag::switch(
            "json",
            "list: print {schema: 1, sessions: [{name, running}]} as JSON",
        ),
        Flag::switch("quiet", "list: print nothing (errors still go to stderr)").or_short('q'),
    ],
    takes_process: false,
    parse,
};

const SESSION_USAGE: &str = "\
usage: agent-procs session list
       agent-procs session clean

list    show every session with a pid file, and whether its daemon is running
clean   for each session whose daemon is verifiably gone, remove its socket, pid
        file, lock file and state directory (logs included), naming each; links
        are not followed, files not owned by you are left";

fn parse(a: &mut Args<'_>) -> Result<Command> {
    let mut sub = None;
    while let Some(arg) = a.next_arg()? {
        match arg {
            Value(v) if sub.is_none() => sub = Some(a.word(v, "the subcommand")?),
            _ => common(other(arg), a)?,
        }
    }
    match sub.as_deref() {
        Some("list") => Ok(Command::SessionList),
        Some("clean") => Ok(Command::SessionClean),
        Some(other) => Err(a.unknown_subcommand(other)),
        None => Err(a.error("session needs a subcommand: list or clean")),
    }
}

/// Sessions with a pid file in the runtime dir, sorted, with whether they answer.
fn sessions() -> Result<Vec<(String, bool)>> {
    let dir = paths::runtime_dir();
    if std::fs::symlink_metadata(&dir).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        return Ok(Vec::new());
    }
    // Checked before reading: a file or a link there gets the same refusal as elsewhere.
    paths::check_private_dir(&dir)?;
    let entries = std::fs::read_dir(&dir).context(|| format!("reading {}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".pid").map(str::to_string))
        .filter(|n| paths::check_session_name(n).is_ok())
        .collect();
    names.sort_unstable();
    Ok(names
        .into_iter()
        .map(|name| {
            let alive = SessionPaths::new(&name).is_ok_and(|p| Conn::connect(&p).is_ok());
            (name, alive)
        })
        .collect())
}

pub fn list(out: Output) -> Result<i32> {
    let sessions = sessions()?;
    let root_of = |name: &str| -> Option<String> {
        let paths = SessionPaths::new(name).ok()?;
        paths::check_state_dirs(&paths).ok()?;
        let mut text = Vec::new();
        io::Read::read_to_end(
            &mut logs::read::open_log(&paths.state_file()).ok()?,
            &mut text,
        )
        .ok()?;
        // The first value: a longer older table may trail it (see daemon/state.rs).
        let state = serde_json::Deserializer::from_slice(&text)
            .into_iter::<serde_json::Value>()
            .next()?
            .ok()?;
        state["root"].as_str().map(str::to_string)
    };
    if out.json || out.quiet {
        let list: Vec<serde_json::Value> = sessions
            .iter()
            .map(|(name, alive)| {
                serde_json::json!({"name": name, "running": alive, "root": root_of(name)})
            })
            .collect();
        out.say("", serde_json::json!({"sessions": list}))?;
        return Ok(0);
    }
    if sessions.is_empty() {
        println!("no active sessions");
        return Ok(0);
    }
    let mut out = format!("{:<20} {:<8} ROOT\n", "SESSION", "STATUS");
    for (name, alive) in sessions {
        let root = root_of(&name).unwrap_or_else(|| "-".into());
        let status = if alive { "running" } else { "stale" };
        let _ = writeln!(out, "{name:<20} {status:<8} {root}");
    }
    write_stdout(out.as_bytes())?;
    Ok(0)
}

/// Every session with a socket, pid file or lock file in the runtime dir whose
/// daemon is verifiably gone loses them and its state directory; each is named.
pub fn clean() -> Result<i32> {
    let dir = paths::runtime_dir();
    if std::fs::symlink_metadata(&dir).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        return Ok(0);
    }
    paths::check_private_dir(&dir)?;
    let entries = std::fs::read_dir(&dir).context(|| format!("reading {}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| {
            let (name, ext) = f.rsplit_once('.')?;
            ["pid", "sock", "lock"]
                .contains(&ext)
                .then(|| name.to_string())
        })
        .filter(|n| paths::check_session_name(n).is_ok())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut text = String::new();
    for name in names {
        let Ok(paths) = SessionPaths::new(&name) else {
            continue;
        };
        match crate::session::clean(&paths)? {
            crate::session::Cleaned::Running => {}
            crate::session::Cleaned::Starting => {
                eprintln!("agent-procs: note: session '{name}' is being started; left alone");
            }
            crate::session::Cleaned::Removed { removed, kept } => {
                let list: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
                if !list.is_empty() {
                    // 0.6's line, exactly, on stdout (its tests and scripts compare
                    // it); what went, on stderr.
                    let _ = writeln!(text, "cleaned stale session: {name}");
                    eprintln!(
                        "agent-procs: note: session '{name}': removed {}",
                        list.join(", ")
                    );
                }
                for what in kept {
                    eprintln!("agent-procs: note: session '{name}': left {what}");
                }
            }
        }
    }
    write_stdout(text.as_bytes())?;
    Ok(0)
}
