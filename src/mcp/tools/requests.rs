//! The tools that become a daemon request after their checks: `start` (a
//! `Run`), `up` (the project's graph, read here as the CLI reads it) and
//! `wait`.

use super::args::Args;
use super::{Job, MAX_WAIT_SECS, Plan, millis};
use crate::client;
use crate::paths;
use crate::protocol::{Request, RestartPolicy};
use serde_json::Value;
use std::collections::HashMap;

pub(super) fn start(a: &Args) -> Result<Plan, String> {
    a.only("command name cwd env port autorestart max_restarts restart_delay_ms")?;
    let command = a.string("command")?.unwrap_or_default();
    if command.trim().is_empty() {
        return Err("start needs command: a shell command line, e.g. \"npm run dev\"".into());
    }
    let name = a.string("name")?;
    if let Some(name) = &name {
        paths::check_process_name(name)?;
    }
    let here =
        std::env::current_dir().map_err(|e| format!("finding the current directory: {e}"))?;
    let cwd = match a.string("cwd")? {
        Some(dir) => here.join(dir),
        None => here,
    };
    let cwd = cwd
        .into_os_string()
        .into_string()
        .map_err(|p| format!("the directory {} is not valid UTF-8", p.to_string_lossy()))?;
    let env = env(a)?;
    let port = a.integer("port", 1, 65535)?.map(|p| p as u16);
    let restart = restart_policy(a)?;
    // The server's environment is the base, as the CLI's is for `run`.
    let base_env = client::caller_env();
    Ok(Plan::Ask {
        requests: vec![Request::Run {
            command,
            name,
            cwd: Some(cwd),
            env: (!env.is_empty()).then_some(env),
            port,
            restart,
            watch: None,
            base_env: Some(base_env),
            log_max_size: None,
            log_max_files: None,
            stop_timeout_ms: None,
            stop_signal: None,
            depends_on: Vec::new(),
            oneshot: false,
        }],
        start: true,
        job: Job::Started { verb: "started" },
    })
}

/// `start`'s `env`: names to strings, checked as `run --env K=V` checks them.
fn env(a: &Args) -> Result<HashMap<String, String>, String> {
    let mut env = HashMap::new();
    match a.args.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(vars)) => {
            for (key, value) in vars {
                let Some(value) = value.as_str() else {
                    return Err(format!("start: env {key} must be a string, not {value}"));
                };
                if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                    return Err(format!(
                        "start: env name '{key}' must be non-empty, without = or NUL (and values without NUL)"
                    ));
                }
                env.insert(key.clone(), value.to_string());
            }
        }
        Some(_) => return Err("start: env must be an object of names to strings".into()),
    }
    Ok(env)
}

/// `start`'s `autorestart`, `max_restarts` and `restart_delay_ms`.
fn restart_policy(a: &Args) -> Result<Option<RestartPolicy>, String> {
    let mode = a.string("autorestart")?;
    let max_restarts = a.integer("max_restarts", 0, u64::from(u32::MAX))?;
    let delay = a.integer("restart_delay_ms", 0, u64::MAX)?;
    match mode.as_deref() {
        None | Some("never") if max_restarts.is_some() || delay.is_some() => Err(
            "start: max_restarts and restart_delay_ms go with autorestart always or on-failure"
                .into(),
        ),
        None => Ok(None),
        Some(mode @ ("never" | "always" | "on-failure")) => Ok(Some(RestartPolicy {
            mode: mode.to_string(),
            max_restarts: max_restarts.map(|m| m as u32),
            restart_delay_ms: delay.unwrap_or(1000),
            backoff: None,
        })),
        Some(other) => Err(format!(
            "start: autorestart takes always, on-failure or never, not '{other}'"
        )),
    }
}

const ONLY_NAMES: &str = "up: only must be a list of process names";

pub(super) fn up(a: &Args) -> Result<Plan, String> {
    a.only("only config timeout_s")?;
    let only: Vec<String> = match a.args.get("only") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(names)) => {
            let mut only = Vec::new();
            for name in names {
                only.push(name.as_str().ok_or(ONLY_NAMES)?.to_string());
            }
            only
        }
        Some(_) => return Err(ONLY_NAMES.into()),
    };
    let timeout = a.seconds("timeout_s", 3600)?;
    let file =
        client::project::locate(a.string("config")?.map(Into::into)).map_err(|e| e.to_string())?;
    let config = crate::config::Config::load(&file).map_err(|errors| {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        all.join("\n")
    })?;
    let chosen = client::project::select(&config, &only).map_err(|e| e.to_string())?;
    let mut processes = Vec::with_capacity(chosen.len());
    for p in chosen {
        processes.push(client::project::up_process(p).map_err(|e| e.to_string())?);
    }
    let base_env = client::caller_env();
    let mut requests = Vec::new();
    if config.proxy {
        requests.push(Request::EnableProxy {
            proxy_port: config.proxy_port,
        });
    }
    requests.push(Request::Up {
        processes,
        base_env: Some(base_env),
        timeout_ms: timeout.map(millis),
    });
    Ok(Plan::Ask {
        requests,
        start: true,
        job: Job::Up {
            steps: Vec::new(),
            proxy: config.proxy,
        },
    })
}

pub(super) fn wait(a: &Args) -> Result<Plan, String> {
    a.only("name until regex exit port http timeout_s")?;
    let target = a.name()?;
    let Some(timeout) = a.seconds("timeout_s", MAX_WAIT_SECS)? else {
        return Err(format!(
            "wait needs timeout_s: how many seconds to wait, at most {MAX_WAIT_SECS}"
        ));
    };
    let until = a.string("until")?;
    let regex = a.flag("regex")?;
    let exit = a.flag("exit")?;
    let port = a.integer("port", 1, 65535)?.map(|p| p as u16);
    let http = a.string("http")?;
    if let Some(url) = &http {
        crate::probe::http_target(url)?;
    }
    let given = [until.is_some(), exit, port.is_some(), http.is_some()];
    if given.iter().filter(|&&g| g).count() != 1 {
        return Err("wait takes exactly one of until, exit, port or http".into());
    }
    if regex && until.is_none() {
        return Err("wait: regex goes with until".into());
    }
    let what = match (&until, &port, &http) {
        (Some(text), _, _) => format!("print a line matching '{text}'"),
        (_, Some(port), _) => format!("accept connections on port {port}"),
        (_, _, Some(url)) => format!("answer {url} with 2xx or 3xx"),
        _ => "exit".to_string(),
    };
    Ok(Plan::Ask {
        requests: vec![Request::Wait {
            target: target.clone(),
            until,
            regex,
            exit,
            timeout_secs: Some(timeout.as_secs_f64().ceil() as u64),
            timeout_ms: Some(millis(timeout)),
            port,
            http,
        }],
        start: false,
        job: Job::Wait {
            target,
            what,
            timeout,
        },
    })
}
