//! `agent-procs export systemd|procfile` on the CLI side: load the config as `up`
//! does, pick the processes, read their env files, let `export.rs` build the
//! files, then print them or write them into `--dir`, and say how to start them.

use crate::cli::{Args, Command, CommandSpec, ExportArgs, ExportFormat, Flag, common, other};
use crate::client::project;
use crate::config::{Config, Process};
use crate::error::{Context, Error, Result};
use crate::export::{self, Export, File, Proc, Stack, Warning};
use lexopt::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

pub static EXPORT: CommandSpec = CommandSpec {
    name: "export",
    about: "write systemd units or a Procfile from agent-procs.yaml",
    usage: EXPORT_USAGE,
    after: "",
    subcommands: &["systemd", "procfile"],
    flags: &[
        Flag::path(
            "dir",
            "D",
            "write the files into D (created if needed), mode 0644 (0600\n\
             for files holding values from an env_file)",
        ),
        Flag::switch("force", "replace files in D that exist with other contents"),
        Flag::switch(
            "user",
            "systemd: units for systemctl --user (WantedBy=default.target\n\
             instead of multi-user.target)",
        ),
        Flag::word(
            "prefix",
            "P",
            "systemd: name the units P-NAME.service and P.target",
        ),
        Flag::word(
            "only",
            "NAME,...",
            "export only these (and what they depend on)",
        ),
        Flag::path(
            "config",
            "PATH",
            "the config file to read instead of searching for agent-procs.yaml",
        ),
        Flag::switch(
            "json",
            "print {schema: 1, files: [{path, contents, mode}], warnings,\n\
             commands} as JSON instead",
        ),
        Flag::word(
            "session",
            "NAME",
            "session named in the units (default: the config's session,\n\
             else default)",
        ),
    ],
    takes_process: false,
    parse,
};

const EXPORT_USAGE: &str = "\
usage: agent-procs export systemd [--user] [--prefix P] [--dir D [--force]]
                                  [--only NAME,...] [--config PATH] [--json]
       agent-procs export procfile [--dir D [--force]] [--only NAME,...]
                                   [--config PATH] [--json]

Turn agent-procs.yaml (the nearest one in the current directory or a parent, or
PATH) into files for another supervisor, so the stack runs without agent-procs
and without rewriting its definition. Nothing is started; no daemon is involved.

systemd   one unit per process, PREFIX-NAME.service: After= and Requires= from
          depends_on, Restart= from autorestart, Environment=, WorkingDirectory=,
          KillSignal= and TimeoutStopSec=; ready: {exit: N} makes it Type=oneshot.
          PREFIX.target wants them all. PREFIX is agent-procs-SESSION.
procfile  a Procfile of NAME: COMMAND lines, for honcho, foreman or overmind

Without --dir the files go to stdout, each after a `# file: NAME` line, and the
commands to load and start them go to stderr. What the target cannot express
(readiness checks, watch, the proxy, ...) is written as a comment and reported
as a warning; a value it cannot carry is refused, naming the process and key.";

fn parse(a: &mut Args<'_>) -> Result<Command> {
    let mut format = None;
    let mut e = ExportArgs {
        format: ExportFormat::Systemd,
        config: None,
        only: Vec::new(),
        dir: None,
        force: false,
        user: false,
        prefix: None,
        json: false,
    };
    while let Some(arg) = a.next_arg()? {
        match arg {
            Long("dir") => e.dir = Some(a.path()?),
            Long("force") => e.force = true,
            Long("user") => e.user = true,
            Long("prefix") => e.prefix = Some(a.text("--prefix")?),
            Long("only") => a.only(&mut e.only)?,
            Long("config") => e.config = Some(a.path()?),
            Long("json") => e.json = true,
            Value(v) if format.is_none() => format = Some(a.word(v, "the format")?),
            _ => common(other(arg), a)?,
        }
    }
    e.format = match format.as_deref() {
        Some("systemd") => ExportFormat::Systemd,
        Some("procfile") => ExportFormat::Procfile,
        Some(other) => {
            return Err(a.error(format!(
                "unknown export format '{other}'; export writes systemd or procfile"
            )));
        }
        None => return Err(a.error("export needs a format: systemd or procfile")),
    };
    if e.format == ExportFormat::Procfile && (e.user || e.prefix.is_some()) {
        let flag = if e.user { "--user" } else { "--prefix" };
        return Err(a.error(format!("{flag} goes with export systemd")));
    }
    if e.force && e.dir.is_none() {
        return Err(a.error("--force goes with --dir"));
    }
    if let Some(prefix) = &e.prefix {
        export::check_prefix(prefix).map_err(|msg| a.error(msg))?;
    }
    Ok(Command::Export(e))
}

/// Version of the JSON shape printed here; bumped only for breaking changes.
const SCHEMA: u32 = 1;

/// What `--dir` did with one file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Written {
    Created,
    Replaced,
    Unchanged,
}

#[derive(Serialize)]
struct JsonFile<'a> {
    path: String,
    contents: &'a str,
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Written>,
}

#[derive(Serialize)]
struct JsonExport<'a> {
    schema: u32,
    files: Vec<JsonFile<'a>>,
    warnings: &'a [Warning],
    commands: &'a [String],
}

pub fn run(session: Option<&str>, args: ExportArgs) -> Result<i32> {
    let path = project::locate(args.config.clone())?;
    let config = project::load(&path)?;
    let session = match (session, &config.session) {
        (Some(given), _) => given.to_string(),
        // `session: auto` names the worktree's session, as `up` does.
        (None, Some(named)) => project::config_session(named, &path)?.0,
        (None, None) => "default".into(),
    };
    // It becomes part of file names; the config's own is checked when loaded.
    crate::paths::check_session_name(&session)?;
    let systemd = args.format == ExportFormat::Systemd;
    let resolved = resolve(&config, &args.only, systemd)?;
    let dir = match &args.dir {
        Some(dir) => {
            Some(std::path::absolute(dir).context(|| format!("resolving {}", dir.display()))?)
        }
        None => None,
    };
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| export::default_prefix(&session));
    let stack = Stack {
        session: &session,
        file: &config.file,
        proxy: config.proxy,
        processes: resolved
            .iter()
            .map(|(def, env)| Proc {
                def,
                env: env.clone(),
                from_env_file: def.env_file.is_some(),
            })
            .collect(),
    };
    let exported = build(&stack, &args, dir.as_deref(), &prefix, &path)?;
    let written = match (&args.dir, &dir) {
        (Some(shown), Some(dir)) => Some(write_files(shown, dir, &exported.files, args.force)?),
        _ => None,
    };
    let shown_dir = args.dir.as_deref();
    let commands = if systemd {
        systemd_commands(
            &exported.files,
            &prefix,
            args.user,
            shown_dir,
            dir.as_deref(),
        )
    } else {
        procfile_commands(shown_dir, &config.file)
    };
    let shown = Shown {
        exported: &exported,
        written: written.as_deref(),
        commands: &commands,
        dir: shown_dir,
    };
    if args.json {
        return shown.print_json();
    }
    shown.print_text(systemd, args.user, &prefix)
}

/// The chosen processes with their environments (env file, then `env`), their
/// directories normalized for systemd.
fn resolve(
    config: &Config,
    only: &[String],
    systemd: bool,
) -> Result<Vec<(Process, BTreeMap<String, String>)>> {
    let chosen = project::select(config, only)?;
    let mut resolved = Vec::with_capacity(chosen.len());
    for def in chosen {
        let mut env: BTreeMap<String, String> = match &def.env_file {
            Some(file) => project::read_env_file(file)?.into_iter().collect(),
            None => BTreeMap::new(),
        };
        env.extend(def.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut def = def.clone();
        // WorkingDirectory= must be normalized: resolve `..` where the directory exists.
        if systemd
            && def.cwd.components().any(|c| c == Component::ParentDir)
            && let Ok(real) = std::fs::canonicalize(&def.cwd)
        {
            def.cwd = real;
        }
        resolved.push((def, env));
    }
    Ok(resolved)
}

/// The files, or every value the format cannot carry (printed; exit 1).
fn build(
    stack: &Stack<'_>,
    args: &ExportArgs,
    dir: Option<&Path>,
    prefix: &str,
    path: &Path,
) -> Result<Export> {
    let systemd = args.format == ExportFormat::Systemd;
    let result = if systemd {
        let opts = export::Systemd {
            prefix,
            user: args.user,
        };
        export::systemd(stack, &opts)
    } else {
        let base = dir
            .map(Path::to_path_buf)
            .or_else(|| stack.file.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("/"));
        export::procfile(stack, &base)
    };
    result.map_err(|refusals| {
        let what = if systemd {
            "systemd units"
        } else {
            "a Procfile"
        };
        for r in &refusals {
            eprintln!("agent-procs: {}: {r}", path.display());
        }
        eprintln!("agent-procs: nothing exported: {what} cannot carry the values above");
        Error::Silent(1)
    })
}

/// What was exported and where it went, as printed.
struct Shown<'a> {
    exported: &'a Export,
    written: Option<&'a [Written]>,
    commands: &'a [String],
    /// `--dir` as given.
    dir: Option<&'a Path>,
}

impl Shown<'_> {
    fn path(&self, file: &File) -> String {
        match self.dir {
            Some(d) => d.join(&file.name).display().to_string(),
            None => file.name.clone(),
        }
    }

    fn print_json(&self) -> Result<i32> {
        let files = self
            .exported
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| JsonFile {
                path: self.path(f),
                contents: &f.contents,
                mode: if f.private { "0600" } else { "0644" },
                status: self.written.and_then(|w| w.get(i).copied()),
            })
            .collect();
        let out = JsonExport {
            schema: SCHEMA,
            files,
            warnings: &self.exported.warnings,
            commands: self.commands,
        };
        let text = serde_json::to_string(&out)
            .map_err(|e| Error::Failed(format!("encoding JSON: {e}")))?;
        crate::client::print_line(&text)?;
        Ok(0)
    }

    fn print_text(&self, systemd: bool, user: bool, prefix: &str) -> Result<i32> {
        for w in &self.exported.warnings {
            eprintln!("agent-procs: warning: {w}");
        }
        let mut hint = String::new();
        match self.written {
            Some(written) => {
                let mut out = String::new();
                for (f, w) in self.exported.files.iter().zip(written) {
                    let verb = match w {
                        Written::Created => "wrote",
                        Written::Replaced => "replaced",
                        Written::Unchanged => "unchanged",
                    };
                    out.push_str(&format!("{verb} {}\n", self.path(f)));
                }
                out.push_str(&next_steps(systemd, user, true, self.commands, prefix));
                print!("{out}");
            }
            None => {
                let mut out = String::new();
                for (i, f) in self.exported.files.iter().enumerate() {
                    if i > 0 {
                        out.push('\n');
                    }
                    out.push_str(&format!("# file: {}\n{}", f.name, f.contents));
                }
                print!("{out}");
                hint.push_str(&next_steps(systemd, user, false, self.commands, prefix));
            }
        }
        let _ = std::io::stdout().flush();
        eprint!("{hint}");
        Ok(0)
    }
}

/// The words around the commands: where the files go, then what to run.
fn next_steps(
    systemd: bool,
    user: bool,
    written: bool,
    commands: &[String],
    prefix: &str,
) -> String {
    let mut out = String::new();
    if systemd {
        if !written {
            out.push_str(&format!(
                "save each file under {} (or pass --dir), then run:\n",
                unit_dir_shown(user)
            ));
        } else {
            out.push_str("to load and start the stack under systemd, run:\n");
        }
    } else if !written {
        out.push_str("save it as Procfile (or pass --dir), then run one of honcho start, foreman start or overmind start beside it:\n");
    } else {
        out.push_str("to start the stack, run (or use foreman start or overmind start):\n");
    }
    for c in commands {
        out.push_str(&format!("  {c}\n"));
    }
    if systemd {
        let ctl = if user {
            "systemctl --user"
        } else {
            "sudo systemctl"
        };
        out.push_str(&format!(
            "to start it at boot: {ctl} enable {}; its output: journalctl{} -u '{prefix}-*'\n",
            export::target_name(prefix),
            if user { " --user" } else { "" }
        ));
        if user {
            out.push_str(
                "user units stop when you log out unless you run: loginctl enable-linger\n",
            );
        }
    }
    out
}

fn unit_dir_shown(user: bool) -> &'static str {
    if user {
        "~/.config/systemd/user"
    } else {
        "/etc/systemd/system"
    }
}

/// The directory systemd reads units from, for `--user` or the system manager.
fn unit_dir(user: bool) -> Option<PathBuf> {
    if !user {
        return Some(PathBuf::from("/etc/systemd/system"));
    }
    let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
    };
    Some(config.join("systemd/user"))
}

/// Copy (unless the files are written where systemd reads them), reload, start.
fn systemd_commands(
    files: &[File],
    prefix: &str,
    user: bool,
    shown_dir: Option<&Path>,
    dir: Option<&Path>,
) -> Vec<String> {
    let (sudo, ctl) = if user {
        ("", "systemctl --user")
    } else {
        ("sudo ", "systemctl")
    };
    let mut commands = Vec::new();
    if let (Some(shown), Some(dir)) = (shown_dir, dir) {
        let in_place = unit_dir(user).is_some_and(|u| same_dir(&u, dir));
        if !in_place {
            let names: Vec<String> = files
                .iter()
                .map(|f| sh_word(&shown.join(&f.name).to_string_lossy()))
                .collect();
            let target = if user {
                "~/.config/systemd/user/".to_string()
            } else {
                "/etc/systemd/system/".to_string()
            };
            if user {
                commands.push(format!("mkdir -p {target}"));
            }
            commands.push(format!("{sudo}cp {} {target}", names.join(" ")));
        }
    }
    commands.push(format!("{sudo}{ctl} daemon-reload"));
    commands.push(format!("{sudo}{ctl} start {}", export::target_name(prefix)));
    commands
}

fn procfile_commands(shown_dir: Option<&Path>, config: &Path) -> Vec<String> {
    let dir = match shown_dir {
        Some(d) => d.to_path_buf(),
        None => config.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    vec![format!(
        "cd {} && honcho start",
        sh_word(&dir.to_string_lossy())
    )]
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A word for the printed commands, quoted for `sh` when it needs it.
fn sh_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | '@' | '+' | ',')
        });
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Write `files` into `dir`: all or nothing, when one exists with other contents
/// and `force` is off. Each file is written beside its name and renamed over it.
fn write_files(shown: &Path, dir: &Path, files: &[File], force: bool) -> Result<Vec<Written>> {
    std::fs::create_dir_all(dir).context(|| format!("creating {}", shown.display()))?;
    let mut plan = Vec::with_capacity(files.len());
    let mut differ = Vec::new();
    for f in files {
        let path = dir.join(&f.name);
        let status = match std::fs::read(&path) {
            Ok(old) if old == f.contents.as_bytes() => Written::Unchanged,
            Ok(_) => {
                differ.push(shown.join(&f.name).display().to_string());
                Written::Replaced
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Written::Created,
            Err(err) => {
                return Err(Error::Io {
                    what: format!("reading {}", shown.join(&f.name).display()),
                    err,
                });
            }
        };
        plan.push(status);
    }
    if !differ.is_empty() && !force {
        let (noun, verb) = if differ.len() == 1 {
            ("it", "exists")
        } else {
            ("them", "exist")
        };
        return Err(Error::Failed(format!(
            "{} {verb} with other contents; nothing was written (pass --force to replace {noun})",
            differ.join(", ")
        )));
    }
    for (f, status) in files.iter().zip(&plan) {
        let path = dir.join(&f.name);
        let shown_path = shown.join(&f.name);
        let mode = if f.private { 0o600 } else { 0o644 };
        if *status == Written::Unchanged {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .context(|| format!("setting the mode of {}", shown_path.display()))?;
            continue;
        }
        let tmp = dir.join(format!(".{}.{}.tmp", f.name, std::process::id()));
        let written = (|| {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)?;
            out.write_all(f.contents.as_bytes())?;
            // The umask may have taken bits away; the mode is part of the promise.
            out.set_permissions(std::fs::Permissions::from_mode(mode))?;
            drop(out);
            std::fs::rename(&tmp, &path)
        })();
        if let Err(err) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::Io {
                what: format!("writing {}", shown_path.display()),
                err,
            });
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use crate::cli::{Command, ExportFormat};
    use crate::cmd::testing::{command, parse_line};
    use crate::error::Error;

    #[test]
    fn export_takes_a_format_and_its_flags() {
        let Command::Export(a) =
            command("export systemd --user --prefix shop --dir out --force --only api,web --json")
        else {
            panic!()
        };
        assert_eq!(a.format, ExportFormat::Systemd);
        assert!(a.user && a.force && a.json);
        assert_eq!(a.prefix.as_deref(), Some("shop"));
        assert_eq!(a.dir, Some("out".into()));
        assert_eq!(a.only, ["api", "web"]);
        let Command::Export(a) = command("export procfile --config x.yaml") else {
            panic!()
        };
        assert_eq!(a.format, ExportFormat::Procfile);
        assert_eq!(a.config, Some("x.yaml".into()));
        let cases = [
            ("export", "export needs a format: systemd or procfile"),
            (
                "export upstart",
                "unknown export format 'upstart'; export writes systemd or procfile",
            ),
            ("export procfile --user", "--user goes with export systemd"),
            (
                "export procfile --prefix p",
                "--prefix goes with export systemd",
            ),
            ("export systemd --force", "--force goes with --dir"),
            (
                "export systemd --prefix a@b",
                "--prefix takes letters, digits, '.', '_' and '-', not starting with '.' or '-', not 'a@b'",
            ),
            ("export systemd procfile", "unexpected argument 'procfile'"),
        ];
        for (line, want) in cases {
            match parse_line(line) {
                Err(e @ Error::Usage { .. }) => assert_eq!(e.to_string(), want, "{line}"),
                other => panic!("{line}: expected a usage error, got {other:?}"),
            }
        }
    }
}
