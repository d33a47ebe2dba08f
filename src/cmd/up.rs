//! `agent-procs up` on the CLI side: load and check the config, pick the
//! processes (`--only` and what they depend on), read `env_file`s, hand the whole
//! graph to the daemon, and print its progress. On failure, print why and the
//! last lines the failed process wrote.

use crate::cli::{Args, Command, CommandSpec, Flag, QUIET_FLAG, UpArgs, common, other};
use crate::client::{self, Conn, Output, project};
use crate::error::{Error, Result};
use crate::paths::SessionPaths;
use crate::protocol::{Request, Response};
use lexopt::prelude::*;

pub static UP: CommandSpec = CommandSpec {
    name: "up",
    about: "start the processes of agent-procs.yaml in dependency order",
    usage: UP_USAGE,
    after: UP_PRINTS,
    subcommands: &[],
    flags: &[
        Flag::word(
            "only",
            "NAME,...",
            "start only these (and what they depend on)",
        ),
        Flag::path(
            "config",
            "PATH",
            "the config file to use instead of searching for agent-procs.yaml",
        ),
        Flag::switch(
            "proxy",
            "serve every process through the reverse proxy, as proxy: true does",
        ),
        Flag::word(
            "timeout",
            "S",
            "fail if the whole stack is not ready within S seconds",
        ),
        Flag::switch(
            "json",
            "print JSON Lines, one object (with schema: 1) per step",
        ),
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

const UP_USAGE: &str = "\
usage: agent-procs up [--only NAME,...] [--config PATH] [--proxy] [--timeout S]

Start the processes of agent-procs.yaml (the nearest one in the current directory
or a parent, or PATH). Each starts as soon as everything in its depends_on is
ready; progress is printed as it happens. Processes already running with the same
definition are left alone; changed ones are restarted. If a process exits before
it is ready, or is not ready in time (its ready_timeout, default 30 s), up exits 1
naming it, the reason and its last 20 log lines; what did start keeps running.";

/// Below the options of `up --help`.
const UP_PRINTS: &str = "\
prints: started NAME (id: ID, pid: PID[, URL]), NAME is ready, ...,
        all processes started";

fn parse(a: &mut Args<'_>) -> Result<Command> {
    let mut up = UpArgs::default();
    while let Some(arg) = a.next_arg()? {
        match arg {
            Long("only") => a.only(&mut up.only)?,
            Long("config") => up.config = Some(a.path()?),
            Long("proxy") => up.proxy = true,
            Long("timeout") => up.timeout = Some(a.seconds("--timeout")?),
            _ => common(other(arg), a)?,
        }
    }
    Ok(Command::Up(up))
}

/// Log lines shown with a failure.
const TAIL_LINES: usize = 20;

pub fn run(
    session: Option<&str>,
    root: Option<std::path::PathBuf>,
    args: UpArgs,
    out: Output,
) -> Result<i32> {
    let path = project::locate(args.config.clone())?;
    let config = project::load(&path)?;
    let (session, root) = match (session, &config.session) {
        (Some(given), _) => (given.to_string(), root),
        (None, Some(named)) => project::config_session(named, &path)?,
        (None, None) => ("default".to_string(), None),
    };
    let paths = SessionPaths::new(&session)?.with_root(root);
    let chosen = project::select(&config, &args.only)?;
    let mut processes = Vec::with_capacity(chosen.len());
    for p in chosen {
        processes.push(project::up_process(p)?);
    }
    let base_env = client::caller_env();
    let request = Request::Up {
        processes,
        base_env: Some(base_env),
        timeout_ms: args
            .timeout
            .map(|t| t.as_millis().min(u64::MAX as u128) as u64),
    };
    let mut conn = Conn::open(&paths, true)?;
    if args.proxy || config.proxy {
        client::enable_proxy(&mut conn, config.proxy_port)?;
    }
    conn.send(&request)?;
    loop {
        // Each step has its own deadline in the daemon; this only guards against a hang.
        match conn.recv(None)? {
            Response::UpProgress {
                event,
                name,
                id,
                pid,
                url,
                warning,
            } => say_progress(out, &event, &name, &id, pid, url, warning)?,
            Response::Ok { message } => {
                out.say(&message, serde_json::json!({"event": "done"}))?;
                return Ok(0);
            }
            Response::UpFailed { name, reason } => {
                return report_failure(&paths, &session, out, &name, &reason);
            }
            Response::Error { code, message } => return Err(client::daemon_error(code, message)),
            other => return client::unexpected(other),
        }
    }
}

/// One step of `up` as it happens: a line, or a JSON object.
fn say_progress(
    out: Output,
    event: &str,
    name: &str,
    id: &str,
    pid: u32,
    url: Option<String>,
    warning: Option<String>,
) -> Result<()> {
    // On stderr, so progress lines and JSON keep their shape.
    if let Some(w) = &warning {
        eprintln!("agent-procs: warning: {name}: {w}");
    }
    let at = match &url {
        Some(url) => format!("(id: {id}, pid: {pid}, {url})"),
        None => format!("(id: {id}, pid: {pid})"),
    };
    let mut json =
        serde_json::json!({"event": event, "name": name, "id": id, "pid": pid, "url": url});
    if let (Some(w), Some(object)) = (warning, json.as_object_mut()) {
        object.insert("warning".into(), w.into());
    }
    let line = match event {
        "started" => format!("started {name} {at}"),
        "restarted" => format!("restarted {name} {at}: its definition changed"),
        "running" => format!("{name} is already running {at}"),
        "ready" => format!("{name} is ready"),
        other => format!("{name}: {other}"),
    };
    out.say(&line, json)?;
    Ok(())
}

/// Why `up` failed, the failed process's last lines, and how to stop the rest.
fn report_failure(
    paths: &SessionPaths,
    session: &str,
    out: Output,
    name: &str,
    reason: &str,
) -> Result<i32> {
    eprintln!("agent-procs: up failed: {name} {reason}");
    let started = !reason.starts_with("could not start");
    if started {
        print_tail(paths, name);
    }
    if out.json {
        let tail = if started {
            client::tail_of_run(paths, name, TAIL_LINES).unwrap_or_default()
        } else {
            Vec::new()
        };
        let lines: Vec<String> = String::from_utf8_lossy(&tail)
            .lines()
            .map(str::to_string)
            .collect();
        let json = serde_json::json!({"event": "failed", "name": name, "reason": reason, "log_tail": lines});
        out.say("", json)?;
    }
    eprintln!(
        "agent-procs: processes that started keep running; `agent-procs{} down` stops them",
        if session == "default" {
            String::new()
        } else {
            format!(" --session {session}")
        }
    );
    Err(Error::Silent(1))
}

/// The last lines of the failed process's current run, both streams, on stderr.
fn print_tail(paths: &SessionPaths, name: &str) {
    match client::tail_of_run(paths, name, TAIL_LINES) {
        Ok(text) if text.is_empty() => eprintln!("agent-procs: {name} wrote nothing"),
        Ok(text) => {
            eprintln!("agent-procs: last lines of {name} (stderr marked err|):");
            let mut err = std::io::stderr().lock();
            let _ = std::io::Write::write_all(&mut err, &text);
        }
        Err(e) => eprintln!("agent-procs: reading the logs of {name}: {e}"),
    }
}
