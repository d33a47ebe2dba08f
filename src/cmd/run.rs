//! `run` and `restart`: start a process (the daemon starts when none runs) or
//! start it again, and say where it runs.

use crate::cli::RunArgs;
use crate::client::{Conn, Output, caller_env, enable_proxy, one_status, unexpected};
use crate::error::{Context, Error, Result};
use crate::paths::SessionPaths;
use crate::protocol::{ProcessInfo, Request, Response};
use std::collections::HashMap;
use std::time::Duration;

/// `run`: start a process, starting the daemon when none runs.
pub fn run(paths: &SessionPaths, args: RunArgs, out: Output) -> Result<i32> {
    let here = std::env::current_dir().context(|| "finding the current directory".into())?;
    let cwd = match args.cwd {
        Some(dir) => here.join(dir),
        None => here,
    };
    let cwd = cwd.into_os_string().into_string().map_err(|p| {
        Error::Failed(format!(
            "the working directory {} is not valid UTF-8",
            p.to_string_lossy()
        ))
    })?;
    let base_env = caller_env();
    let overrides: HashMap<String, String> = args.env.into_iter().collect();
    let request = Request::Run {
        command: args.command,
        name: args.name,
        cwd: Some(cwd),
        env: (!overrides.is_empty()).then_some(overrides),
        port: args.port,
        restart: args.restart.map(|r| crate::protocol::RestartPolicy {
            mode: r.mode,
            max_restarts: r.max_restarts,
            restart_delay_ms: r.delay_ms.unwrap_or(1000),
            backoff: r.exponential.then(|| "exponential".to_string()),
        }),
        watch: (!args.watch.is_empty()).then(|| crate::protocol::WatchConfig {
            paths: args.watch,
            ignore: (!args.watch_ignore.is_empty()).then_some(args.watch_ignore),
        }),
        base_env: Some(base_env),
        oneshot: args.oneshot,
        log_max_size: args.log_max_size,
        log_max_files: None,
        stop_timeout_ms: None,
        stop_signal: None,
        depends_on: Vec::new(),
    };
    let mut conn = Conn::open(paths, true)?;
    if args.proxy {
        enable_proxy(&mut conn, None)?;
    }
    let response = conn.ask(&request, Duration::from_secs(10))?;
    say_started(out, "", true, response, None)
}

/// `restart`: stop and start a process again.
pub fn restart(paths: &SessionPaths, target: String, out: Output) -> Result<i32> {
    let mut conn = Conn::open(paths, false)?;
    let response = conn.ask(&Request::Restart { target }, Duration::from_secs(10))?;
    let now = match &response {
        Response::RunOk { name, .. } if out.json => one_status(&mut conn, name)?,
        _ => None,
    };
    say_started(out, "restarted ", false, response, now.as_ref())
}

/// Report the process `run` or `restart` started: `{verb}NAME (id: ID, pid: PID[, URL])`;
/// the JSON adds `state` and `exit_code` from `now`, the process's status.
fn say_started(
    out: Output,
    verb: &str,
    show_url: bool,
    response: Response,
    now: Option<&ProcessInfo>,
) -> Result<i32> {
    let Response::RunOk {
        name,
        id,
        pid,
        port,
        url,
        warning,
    } = response
    else {
        return unexpected(response);
    };
    // On stderr, so the line and the JSON stay as scripts parse them.
    if let Some(w) = &warning {
        eprintln!("agent-procs: warning: {w}");
    }
    let text = match (&url, show_url) {
        (Some(url), true) => format!("{verb}{name} (id: {id}, pid: {pid}, {url})"),
        _ => format!("{verb}{name} (id: {id}, pid: {pid})"),
    };
    let mut json =
        serde_json::json!({"name": name, "id": id, "pid": pid, "port": port, "url": url});
    if let (Some(w), Some(object)) = (warning, json.as_object_mut()) {
        object.insert("warning".into(), w.into());
    }
    if let (Some(p), Some(object)) = (now, json.as_object_mut()) {
        object.insert("state".into(), p.state.clone().into());
        object.insert("exit_code".into(), p.exit_code.into());
    }
    out.say(&text, json)?;
    Ok(0)
}
