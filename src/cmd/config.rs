//! `agent-procs config check|show`: find and load the config file, then print the
//! verdict or the resolved config. No daemon is involved; the rules are in `config.rs`.

use crate::cli::{Args, Command, CommandSpec, ConfigArgs, Flag, SESSION_FLAG, common, other};
use crate::config::{self, Config, ConfigError, Process};
use crate::error::{Context, Error, Result};
use lexopt::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

pub static CONFIG: CommandSpec = CommandSpec {
    name: "config",
    about: "validate agent-procs.yaml, or print it as JSON",
    usage: CONFIG_USAGE,
    after: "",
    subcommands: &["check", "show"],
    flags: &[
        Flag::path(
            "config",
            "PATH",
            "the config file to read instead of searching for agent-procs.yaml",
        ),
        Flag::switch(
            "json",
            "print the verdict (or, for show, the config) as JSON on stdout;\n\
             show prints nothing but JSON, so it needs --json",
        ),
        SESSION_FLAG,
    ],
    takes_process: false,
    parse,
};

const CONFIG_USAGE: &str = "\
usage: agent-procs config check [--config PATH] [--json]
       agent-procs config show [--config PATH] --json

Read agent-procs.yaml (the nearest one in the current directory or a parent, or
PATH) and check it without starting anything: YAML syntax, keys, types, values,
process names and dependencies. Each problem is printed on stderr as
FILE:LINE:COL: KEY.PATH: MESSAGE, all of them in one run.

check   exit 0 and print FILE: ok (N processes), or exit 1 listing every problem
show    print the resolved config as JSON: cwd absolute, env values as strings,
        depends_on as lists, defaults filled in, and the start order";

fn parse(a: &mut Args<'_>) -> Result<Command> {
    let mut sub = None;
    let mut path = None;
    let mut json = false;
    while let Some(arg) = a.next_arg()? {
        match arg {
            Long("config") => path = Some(a.path()?),
            Long("json") => json = true,
            Value(v) if sub.is_none() => sub = Some(a.word(v, "the subcommand")?),
            _ => common(other(arg), a)?,
        }
    }
    let show = match sub.as_deref() {
        Some("check") => false,
        Some("show") if json => true,
        Some("show") => return Err(a.error("config show prints JSON only; add --json")),
        Some(other) => return Err(a.unknown_subcommand(other)),
        None => return Err(a.error("config needs a subcommand: check or show")),
    };
    Ok(Command::Config(ConfigArgs { show, path, json }))
}

/// Version of the JSON shapes printed here; bumped only for breaking changes.
const SCHEMA: u32 = 1;

#[derive(Serialize)]
struct Verdict<'a> {
    schema: u32,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    processes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [ConfigError]>,
}

#[derive(Serialize)]
struct Shown<'a> {
    schema: u32,
    #[serde(flatten)]
    config: &'a Config,
    /// The order `up` starts processes in: each after all of its dependencies.
    start_order: Vec<&'a str>,
}

pub fn run(args: ConfigArgs) -> Result<i32> {
    let cwd = std::env::current_dir().context(|| "finding the current directory".into())?;
    let path = match args.path {
        Some(path) => path,
        None => match config::find_config(&cwd) {
            Some(found) if found.parent() == Some(cwd.as_path()) => {
                PathBuf::from(config::FILE_NAME)
            }
            Some(found) => found,
            None => {
                let message = format!(
                    "no {} in {} or any parent; pass --config PATH",
                    config::FILE_NAME,
                    cwd.display()
                );
                if !args.json {
                    return Err(Error::Failed(message));
                }
                let error = ConfigError {
                    file: String::new(),
                    line: None,
                    col: None,
                    path: String::new(),
                    message,
                };
                return refuse(true, &[error]);
            }
        },
    };
    // JSON names the file absolutely; people read it as they wrote it, or as found.
    let path = if args.json {
        std::path::absolute(&path).context(|| format!("resolving {}", path.display()))?
    } else {
        path
    };
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(errors) => return refuse(args.json, &errors),
    };
    if args.show {
        let shown = Shown {
            schema: SCHEMA,
            config: &config,
            start_order: config
                .start_order()
                .iter()
                .map(|p: &&Process| p.name.as_str())
                .collect(),
        };
        println!("{}", to_json(&shown, true)?);
        return Ok(0);
    }
    let n = config.processes.len();
    if args.json {
        let verdict = Verdict {
            schema: SCHEMA,
            ok: true,
            file: Some(&config.file),
            processes: Some(n),
            errors: None,
        };
        println!("{}", to_json(&verdict, false)?);
    } else {
        let noun = if n == 1 { "process" } else { "processes" };
        println!("{}: ok ({n} {noun})", path.display());
    }
    Ok(0)
}

/// Report every problem (on stdout as JSON, or one per line on stderr) and exit 1.
fn refuse(json: bool, errors: &[ConfigError]) -> Result<i32> {
    if json {
        let verdict = Verdict {
            schema: SCHEMA,
            ok: false,
            file: None,
            processes: None,
            errors: Some(errors),
        };
        println!("{}", to_json(&verdict, false)?);
    } else {
        for e in errors {
            eprintln!("agent-procs: {e}");
        }
    }
    Err(Error::Silent(1))
}

fn to_json(value: &impl Serialize, pretty: bool) -> Result<String> {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    text.map_err(|e| Error::Failed(format!("encoding JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use crate::cli::Command;
    use crate::cmd::testing::{command, parse_line};
    use crate::error::Error;

    #[test]
    fn config_takes_a_subcommand_a_path_and_json() {
        let parsed = |line| match command(line) {
            Command::Config(args) => (args.show, args.path, args.json),
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(parsed("config check"), (false, None, false));
        assert_eq!(
            parsed("config --json check --config a/b.yaml"),
            (false, Some("a/b.yaml".into()), true)
        );
        assert_eq!(parsed("config show --json"), (true, None, true));
        let cases = [
            ("config", "config needs a subcommand: check or show"),
            ("config show", "config show prints JSON only; add --json"),
            ("config up", "unknown config command 'up'"),
            ("config check extra", "unexpected argument 'extra'"),
        ];
        for (line, want) in cases {
            match parse_line(line) {
                Err(e @ Error::Usage { .. }) => assert_eq!(e.to_string(), want, "{line}"),
                other => panic!("{line}: expected a usage error, got {other:?}"),
            }
        }
    }
}
