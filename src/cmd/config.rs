//! `agent-procs config check|show`: find and load the config file, then print the
//! verdict or the resolved config. No daemon is involved; the rules are in `config.rs`.

use crate::cli::ConfigArgs;
use crate::config::{self, Config, ConfigError, Process};
use crate::error::{Context, Error, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

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
