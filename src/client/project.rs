//! The project file as the CLI reads it (`up`, `down`, `export`, the MCP
//! tools): find it, load and check it, the session it names, the processes
//! chosen with `--only`, and each as the daemon's `up` request carries it.

use super::conn::millis;
use crate::config::{self, Config, Process, Ready};
use crate::error::{Context, Error, Result};
use crate::protocol::{ReadyCheck, UpProcess};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The config file: `--config PATH`, else the nearest `agent-procs.yaml`.
pub fn locate(path: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = path {
        return Ok(path);
    }
    let cwd = std::env::current_dir().context(|| "finding the current directory".into())?;
    config::find_config(&cwd).ok_or_else(|| {
        Error::Failed(format!(
            "no {} in {} or any parent; pass --config PATH",
            config::FILE_NAME,
            cwd.display()
        ))
    })
}

/// Load and check the config, printing every problem.
pub fn load(path: &Path) -> Result<Config> {
    Config::load(path).map_err(|errors| {
        for e in &errors {
            eprintln!("agent-procs: {e}");
        }
        Error::Silent(1)
    })
}

/// The session a config's `session:` names; `auto` is derived from the
/// worktree the config file is in.
pub fn config_session(
    named: &str,
    config_path: &std::path::Path,
) -> Result<(String, Option<std::path::PathBuf>)> {
    let dir = config_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(std::env::current_dir, |d| Ok(d.to_path_buf()));
    let chosen = crate::session::choose(Some(named.to_string()), None, || dir)?;
    Ok((chosen.name, chosen.root))
}

/// The processes to start, in file order: all, or those named and what they need.
pub fn select<'c>(config: &'c Config, only: &[String]) -> Result<Vec<&'c Process>> {
    if only.is_empty() {
        return Ok(config.processes.iter().collect());
    }
    let by_name: HashMap<&str, &Process> = config
        .processes
        .iter()
        .map(|p| (p.name.as_str(), p))
        .collect();
    let mut wanted: HashSet<&str> = HashSet::new();
    let mut todo: Vec<&str> = Vec::new();
    for name in only {
        if !by_name.contains_key(name.as_str()) {
            let known: Vec<&str> = config.processes.iter().map(|p| p.name.as_str()).collect();
            return Err(Error::NotFound(format!(
                "--only: {} defines no process '{name}' (it has: {})",
                config.file.display(),
                known.join(", ")
            )));
        }
        todo.push(name);
    }
    while let Some(name) = todo.pop() {
        if wanted.insert(name)
            && let Some(p) = by_name.get(name)
        {
            todo.extend(p.depends_on.iter().map(String::as_str));
        }
    }
    Ok(config
        .processes
        .iter()
        .filter(|p| wanted.contains(p.name.as_str()))
        .collect())
}

pub fn up_process(p: &Process) -> Result<UpProcess> {
    let mut env = match &p.env_file {
        Some(file) => read_env_file(file)?,
        None => HashMap::new(),
    };
    env.extend(p.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let cwd = p.cwd.to_str().ok_or_else(|| {
        Error::Failed(format!(
            "{}: the directory {} is not valid UTF-8",
            p.name,
            p.cwd.display()
        ))
    })?;
    let ready = p.ready.as_ref().map(|r| match r {
        Ready::Log { log, regex } => ReadyCheck {
            log: Some(log.clone()),
            regex: *regex,
            ..ReadyCheck::default()
        },
        Ready::Tcp { tcp } => ReadyCheck {
            tcp: Some(*tcp),
            ..ReadyCheck::default()
        },
        Ready::Http { http } => ReadyCheck {
            http: Some(http.clone()),
            ..ReadyCheck::default()
        },
        Ready::Exit { exit } => ReadyCheck {
            exit: Some(*exit),
            ..ReadyCheck::default()
        },
    });
    let restart =
        (p.autorestart != config::Autorestart::Never).then(|| crate::protocol::RestartPolicy {
            mode: match p.autorestart {
                config::Autorestart::Always => "always".into(),
                _ => "on-failure".into(),
            },
            max_restarts: p.max_restarts,
            backoff: None,
            restart_delay_ms: millis(p.restart_delay),
        });
    let watch = (!p.watch.is_empty()).then(|| crate::protocol::WatchConfig {
        paths: p.watch.clone(),
        ignore: (!p.watch_ignore.is_empty()).then(|| p.watch_ignore.clone()),
    });
    Ok(UpProcess {
        name: p.name.clone(),
        command: p.cmd.clone(),
        cwd: cwd.to_string(),
        env,
        port: p.port,
        depends_on: p.depends_on.clone(),
        ready,
        ready_timeout_ms: Some(millis(p.ready_timeout)),
        stop_timeout_ms: Some(millis(p.stop_timeout)),
        stop_signal: Some(p.stop_signal.clone()),
        log_max_size: Some(p.log_max_size),
        log_max_files: Some(p.log_max_files),
        restart,
        watch,
        oneshot: p.oneshot,
    })
}

/// `KEY=VALUE` lines; blank lines and `#` comments are skipped, `export ` is
/// allowed, and one pair of matching quotes around the value is removed.
pub fn read_env_file(path: &Path) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).context(|| format!("reading {}", path.display()))?;
    parse_env(&text)
        .map_err(|(line, why)| Error::Failed(format!("{}:{line}: {why}", path.display())))
}

fn parse_env(text: &str) -> std::result::Result<HashMap<String, String>, (usize, String)> {
    let mut env = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            return Err((n + 1, "expected KEY=VALUE".into()));
        };
        let key = key.trim();
        let valid = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err((n + 1, format!("'{key}' is not a variable name")));
        }
        let value = value.trim();
        let unquoted = [('"', '"'), ('\'', '\'')]
            .iter()
            .find_map(|&(open, close)| {
                value.strip_prefix(open).and_then(|v| v.strip_suffix(close))
            });
        let value = unquoted.unwrap_or(value);
        if value.contains('\0') {
            return Err((n + 1, "the value contains a NUL byte".into()));
        }
        env.insert(key.to_string(), value.to_string());
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_read_like_dotenv() {
        let env = parse_env(
            "# comment\n\nA=1\nexport B = two words \nC=\"quoted # not a comment\"\nD='x'\nE=\n",
        )
        .unwrap();
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "two words");
        assert_eq!(env["C"], "quoted # not a comment");
        assert_eq!(env["D"], "x");
        assert_eq!(env["E"], "");
        assert_eq!(parse_env("A=1\nnope\n").unwrap_err().0, 2);
        assert!(parse_env("1A=x").unwrap_err().1.contains("not a variable"));
        assert!(parse_env("A B=x").is_err());
    }

    #[test]
    fn only_pulls_in_dependencies_in_file_order() {
        let text = "processes:\n  db: {cmd: a}\n  cache: {cmd: b}\n  migrate: {cmd: c, depends_on: db}\n  api: {cmd: d, depends_on: [migrate, cache]}\n  web: {cmd: e, depends_on: api}\n  other: {cmd: f}\n";
        let config =
            Config::parse(text, Path::new("/x/agent-procs.yaml"), "agent-procs.yaml").unwrap();
        let names = |only: &[&str]| -> Vec<String> {
            let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
            select(&config, &only)
                .unwrap()
                .iter()
                .map(|p| p.name.clone())
                .collect()
        };
        assert_eq!(names(&["api"]), ["db", "cache", "migrate", "api"]);
        assert_eq!(names(&["other", "migrate"]), ["db", "migrate", "other"]);
        assert_eq!(names(&[]).len(), 6);
        let only = vec!["nope".to_string()];
        assert!(select(&config, &only).is_err());
    }
}
