//! `run` and `restart`: start a process (the daemon starts when none runs) or
//! start it again, and say where it runs.

use crate::cli::{
    Args, Command, CommandSpec, Flag, JSON_FLAG, QUIET_FLAG, RestartArgs, RunArgs, SESSION_FLAG,
    common, other,
};
use crate::client::{Conn, Output, caller_env, enable_proxy, one_status, unexpected};
use crate::error::{Context, Error, Result};
use crate::paths::SessionPaths;
use crate::protocol::{ProcessInfo, Request, Response};
use lexopt::prelude::*;
use std::collections::HashMap;
use std::time::Duration;

pub static RUN: CommandSpec = CommandSpec {
    name: "run",
    about: "start a command in the background",
    usage: RUN_USAGE,
    after: RUN_PRINTS,
    subcommands: &[],
    flags: &[
        Flag::word(
            "name",
            "N",
            "name of the process (default: its id, p1, p2, ...)",
        ),
        Flag::path(
            "cwd",
            "DIR",
            "working directory (default: the current directory)",
        ),
        Flag::word(
            "env",
            "K=V",
            "set a variable in the process's environment (repeatable)",
        ),
        Flag::word(
            "port",
            "P",
            "the port the process listens on; sets PORT=P and HOST=127.0.0.1;\n\
             if something listens there already, a warning names its pid",
        ),
        Flag::switch(
            "proxy",
            "serve it at http://N.localhost:PORT through the session's reverse\n\
             proxy (127.0.0.1 and [::1], first free port from 9090); without\n\
             --port the process gets a free port from 4000-4999",
        ),
        Flag::switch(
            "oneshot",
            "a setup step that runs to completion (status --json says\n\
             oneshot: true); `agent-procs wait` tells if it succeeded",
        ),
        Flag::word(
            "autorestart",
            "MODE",
            "restart it when it exits: always, on-failure (a non-zero exit or\n\
             a signal), or never (the default); a stop turns it off until restart",
        ),
        Flag::word(
            "max-restarts",
            "N",
            "give up after N automatic restarts (state failed); default no limit",
        ),
        Flag::word(
            "restart-delay",
            "MS",
            "wait this long before each automatic restart (default 1000)",
        ),
        Flag::word(
            "backoff",
            "exponential",
            "double the delay after each quick death, up to 30 s; reset after\n\
             30 s up",
        ),
        Flag::word(
            "watch",
            "GLOB",
            "restart it when a file under its directory that matches GLOB\n\
             changes (repeatable; * and ? within a path segment, ** across\n\
             segments, [a-z], {a,b}; a pattern without / matches file names\n\
             at any depth); .git, node_modules, target, __pycache__ are ignored",
        ),
        Flag::word(
            "watch-ignore",
            "GLOB",
            "leave out files (and directories) matching GLOB (repeatable)",
        ),
        Flag::word(
            "log-max-size",
            "SIZE",
            "rotate each log stream at SIZE bytes (512k, 10MB, 50MiB; default 50MiB)",
        ),
        JSON_FLAG,
        QUIET_FLAG,
        SESSION_FLAG,
    ],
    takes_process: false,
    parse,
};

pub static RESTART: CommandSpec = CommandSpec {
    name: "restart",
    about: "stop, then start again with the same settings",
    usage: RESTART_USAGE,
    after: "",
    subcommands: &[],
    flags: &[
        Flag::switch(
            "json",
            "print one JSON object, with schema: 1, instead of text:\n\
             name, id, pid, port, url, state, exit_code",
        ),
        QUIET_FLAG,
        SESSION_FLAG,
    ],
    takes_process: true,
    parse: parse_restart,
};

const RUN_USAGE: &str = "\
usage: agent-procs run CMD [--name N] [--cwd DIR] [--env K=V]... [--port P] [--proxy] [--oneshot]
                         [--autorestart always|on-failure|never [--max-restarts N]
                          [--restart-delay MS] [--backoff exponential]]
                         [--watch GLOB]... [--watch-ignore GLOB]... [--log-max-size SIZE]

Start CMD in the background under the session's daemon, starting the daemon if needed.
CMD runs with your current directory and environment. A command without shell syntax
is executed directly; anything else runs under sh -c. Several words after -- are
quoted and joined, so `run -- python3 -m http.server` works.";

/// Below the options of `run --help`.
const RUN_PRINTS: &str = "\
prints: NAME (id: ID, pid: PID), with the URL http://127.0.0.1:P added when --port is
given, or http://NAME.localhost:PORT behind the proxy";

const RESTART_USAGE: &str = "\
usage: agent-procs restart NAME|ID

Stop the process (if it is running) and start it again with the same command,
directory, environment and id. The old logs are rotated to NAME.stdout.1.";

/// `--autorestart` and the settings that go with it, as given.
#[derive(Default)]
struct Restart {
    mode: Option<String>,
    max_restarts: Option<u32>,
    delay_ms: Option<u64>,
    exponential: bool,
}

fn parse(a: &mut Args<'_>) -> Result<Command> {
    let mut args = RunArgs::default();
    let mut restart = Restart::default();
    let mut words: Vec<String> = Vec::new();
    while let Some(arg) = a.next_arg()? {
        match arg {
            Long("name") => {
                let name = a.text("--name")?;
                crate::paths::check_process_name(&name).map_err(|why| a.error(why))?;
                args.name = Some(name);
            }
            Long("cwd") => args.cwd = Some(a.text("--cwd")?),
            Long("env") => args.env.push(env(a)?),
            Long("port") => args.port = Some(a.port()?),
            Long("proxy") => args.proxy = true,
            Long("oneshot") => args.oneshot = true,
            Long("autorestart") => restart.mode = Some(autorestart(a)?),
            Long("max-restarts") => {
                restart.max_restarts = Some(a.number("--max-restarts", "a number of restarts")?)
            }
            Long("restart-delay") => {
                restart.delay_ms = Some(a.number("--restart-delay", "a number of milliseconds")?)
            }
            Long("watch") => args.watch.push(glob(a, "--watch")?),
            Long("watch-ignore") => args.watch_ignore.push(glob(a, "--watch-ignore")?),
            Long("backoff") => {
                let kind = a.text("--backoff")?;
                if kind != "exponential" {
                    return Err(a.error(format!("--backoff takes exponential, not '{kind}'")));
                }
                restart.exponential = true;
            }
            Long("log-max-size") => args.log_max_size = Some(log_max_size(a)?),
            Value(v) => words.push(a.word(v, "the command")?),
            _ => common(other(arg), a)?,
        }
    }
    args.command = command_line(a, words)?;
    if args.watch.is_empty() && !args.watch_ignore.is_empty() {
        return Err(a.error("--watch-ignore goes with --watch"));
    }
    if args.oneshot && restart.mode.as_deref() == Some("always") {
        return Err(a.error(
            "--oneshot runs to completion, so it does not go with --autorestart always \
             (on-failure retries it until it succeeds)",
        ));
    }
    args.restart = restart_policy(a, restart)?;
    Ok(Command::Run(args))
}

/// `--env K=V`.
fn env(a: &mut Args<'_>) -> Result<(String, String)> {
    let kv = a.text("--env")?;
    match kv.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(a.error(format!("--env takes KEY=VALUE, not '{kv}'"))),
    }
}

/// `--autorestart always|on-failure|never`.
fn autorestart(a: &mut Args<'_>) -> Result<String> {
    let mode = a.text("--autorestart")?;
    if !["always", "on-failure", "never"].contains(&mode.as_str()) {
        return Err(a.error(format!(
            "--autorestart takes always, on-failure or never, not '{mode}'"
        )));
    }
    Ok(mode)
}

/// The value of `--watch` or `--watch-ignore`, checked as a glob.
fn glob(a: &mut Args<'_>, flag: &str) -> Result<String> {
    let pattern = a.text(flag)?;
    if let Err(e) = crate::glob::Glob::new(&pattern) {
        return Err(a.error(format!("{flag} '{pattern}': {e}")));
    }
    Ok(pattern)
}

/// `--log-max-size 512k`.
fn log_max_size(a: &mut Args<'_>) -> Result<u64> {
    let text = a.text("--log-max-size")?;
    crate::config::parse_size(&text)
        .filter(|&s| s > 0)
        .ok_or_else(|| {
            a.error(format!(
                "--log-max-size takes a size like 512k, 10MB or 50MiB, not '{text}'"
            ))
        })
}

/// The command to run: one word as it is, several quoted and joined.
fn command_line(a: &Args<'_>, mut words: Vec<String>) -> Result<String> {
    let command = match words.len() {
        0 => return Err(a.error("run needs a command")),
        1 => words.remove(0),
        _ => words
            .iter()
            .map(|w| crate::shell::quote(w))
            .collect::<Vec<_>>()
            .join(" "),
    };
    if command.trim().is_empty() {
        return Err(a.error("run needs a command, not an empty string"));
    }
    Ok(command)
}

/// The restart policy `--autorestart` and its settings make, if they go together.
fn restart_policy(a: &Args<'_>, r: Restart) -> Result<Option<RestartArgs>> {
    let settings = r.max_restarts.is_some() || r.delay_ms.is_some() || r.exponential;
    match r.mode.as_deref() {
        Some("never") if !settings => Ok(Some(RestartArgs {
            mode: "never".into(),
            ..RestartArgs::default()
        })),
        Some("always" | "on-failure") => Ok(Some(RestartArgs {
            mode: r.mode.unwrap_or_default(),
            max_restarts: r.max_restarts,
            delay_ms: r.delay_ms,
            exponential: r.exponential,
        })),
        _ if settings => Err(a.error(
            "--max-restarts, --restart-delay and --backoff go with --autorestart always or on-failure",
        )),
        _ => Ok(None),
    }
}

fn parse_restart(a: &mut Args<'_>) -> Result<Command> {
    Ok(Command::Restart {
        target: target_only(a)?,
    })
}

/// The process name or id, and nothing else.
pub(super) fn target_only(a: &mut Args<'_>) -> Result<String> {
    let mut target = None;
    while let Some(arg) = a.next_arg()? {
        match arg {
            Value(v) if target.is_none() => target = Some(a.word(v, "the process name")?),
            _ => common(other(arg), a)?,
        }
    }
    target.ok_or_else(|| a.error("missing process name or id"))
}

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

#[cfg(test)]
mod tests {
    use crate::cli::Command;
    use crate::cmd::testing::command;

    #[test]
    fn run_takes_its_options_and_joins_words() {
        let Command::Run(r) =
            command("run sleep --name web --env A=1 --env B=x=y --port 8000 --cwd /tmp")
        else {
            panic!()
        };
        assert_eq!(r.command, "sleep");
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(
            r.env,
            vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(r.port, Some(8000));
        assert_eq!(r.cwd.as_deref(), Some("/tmp"));
        let Command::Run(r) = command("run -- echo it's --name") else {
            panic!()
        };
        assert_eq!(r.command, r"echo 'it'\''s' --name");
    }
}
