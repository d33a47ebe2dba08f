//! `export`: a checked config turned into systemd units or a Procfile. Pure:
//! `cmd/export.rs` reads env files, resolves paths and writes the result. What a
//! target cannot express becomes a comment and a warning; what it cannot carry is
//! refused, naming the key.

use crate::config::{self, Autorestart, Process, Ready};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Component, Path};
use std::time::Duration;

/// The daemon never restarts sooner than this (`daemon/supervise.rs`), so a
/// crashing command cannot spin; the units keep the same floor.
const MIN_RESTART_DELAY: Duration = Duration::from_millis(20);
/// systemd counts starts within a window; agent-procs counts restarts since the
/// last start by hand. The window is this long, or longer when the delays alone
/// would not fit into it.
const START_LIMIT_WINDOW: Duration = Duration::from_secs(300);
/// Longest unit name systemd accepts.
const UNIT_NAME_MAX: usize = 255;

/// One process as it is exported: its definition and its environment, the
/// `env_file` (read by the caller) and `env` merged, `env` winning.
pub struct Proc<'c> {
    pub def: &'c Process,
    pub env: BTreeMap<String, String>,
    /// The values of an `env_file` are among `env`: the file holds them in the
    /// clear, so it should be private.
    pub from_env_file: bool,
}

/// What is exported: the chosen processes, in file order.
pub struct Stack<'c> {
    pub session: &'c str,
    /// The config file, absolute; named in the generated files.
    pub file: &'c Path,
    pub proxy: bool,
    pub processes: Vec<Proc<'c>>,
}

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub name: String,
    pub contents: String,
    /// Mode 0600 rather than 0644: it holds values read from an `env_file`.
    pub private: bool,
}

/// Something of the config the target does not carry over, or carries differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// None for settings of the whole file, such as `proxy`.
    pub process: Option<String>,
    pub key: &'static str,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.process {
            Some(name) => write!(f, "{name}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A value the target cannot carry: the key path as `config check` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, Default)]
pub struct Export {
    pub files: Vec<File>,
    pub warnings: Vec<Warning>,
}

/// How systemd units are named and installed.
pub struct Systemd<'a> {
    /// Units are `PREFIX-NAME.service` and `PREFIX.target`.
    pub prefix: &'a str,
    /// For the user's manager (`systemctl --user`): installed into default.target.
    pub user: bool,
}

/// `agent-procs-SESSION`, the prefix unless `--prefix` says otherwise.
pub fn default_prefix(session: &str) -> String {
    format!("agent-procs-{session}")
}

/// A prefix is a unit name stem: letters, digits, `.`, `_` and `-`, not starting
/// with `.` or `-` (systemd would accept more, but `@` and `\` mean something).
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let valid = !prefix.is_empty()
        && !prefix.starts_with(['.', '-'])
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "--prefix takes letters, digits, '.', '_' and '-', not starting with '.' or '-', not '{prefix}'"
        ))
    }
}

pub fn service_name(prefix: &str, process: &str) -> String {
    format!("{prefix}-{process}.service")
}

pub fn target_name(prefix: &str) -> String {
    format!("{prefix}.target")
}

/// One `.service` per process and a `.target` that wants them all.
pub fn systemd(stack: &Stack<'_>, opts: &Systemd<'_>) -> Result<Export, Vec<Refusal>> {
    let mut refusals = Vec::new();
    let mut export = Export::default();
    let install = if opts.user {
        "default.target"
    } else {
        "multi-user.target"
    };
    let target = target_name(opts.prefix);
    if target.len() > UNIT_NAME_MAX {
        refusals.push(Refusal {
            path: "--prefix".into(),
            message: format!("unit names are at most {UNIT_NAME_MAX} characters"),
        });
    }
    for p in &stack.processes {
        match service(stack, opts, p, &target, install) {
            Ok((file, warnings)) => {
                export.files.push(file);
                export.warnings.extend(warnings);
            }
            Err(mut r) => refusals.append(&mut r),
        }
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    let mut text = header("systemd", stack.file);
    let wide = file_warnings(stack);
    for w in &wide {
        let _ = writeln!(text, "# {}", w.message);
    }
    let wants: Vec<String> = stack
        .processes
        .iter()
        .map(|p| service_name(opts.prefix, &p.def.name))
        .collect();
    let _ = write!(
        text,
        "[Unit]\nDescription=agent-procs {}\nWants={}\n\n[Install]\nWantedBy={install}\n",
        stack.session,
        wants.join(" ")
    );
    export.warnings.splice(0..0, wide);
    export.files.push(File {
        name: target,
        contents: text,
        private: false,
    });
    Ok(export)
}

/// The first lines of every file: where it came from.
fn header(format: &str, file: &Path) -> String {
    format!(
        "# Generated by agent-procs export {format} from {}.\n\
         # Edit that file and export again rather than editing this one.\n",
        comment_text(&file.to_string_lossy())
    )
}

/// Warnings about settings of the whole file.
fn file_warnings(stack: &Stack<'_>) -> Vec<Warning> {
    let mut out = Vec::new();
    if stack.proxy {
        out.push(Warning {
            process: None,
            key: "proxy",
            message: "proxy is not carried over: NAME.localhost URLs are served by the \
                      agent-procs daemon only; reach each process on its own port"
                .into(),
        });
    }
    out
}

fn service(
    stack: &Stack<'_>,
    opts: &Systemd<'_>,
    p: &Proc<'_>,
    target: &str,
    install: &str,
) -> Result<(File, Vec<Warning>), Vec<Refusal>> {
    let def = p.def;
    let (name, cwd, env_lines) = unit_values(opts, p)?;
    let mut warnings = Vec::new();
    let mut warn = |key: &'static str, message: String| {
        warnings.push(Warning {
            process: Some(def.name.clone()),
            key,
            message,
        })
    };
    let (oneshot, restart) = carried_over(def, &mut warn);
    let mut text = header("systemd", stack.file);
    for w in &warnings {
        let _ = writeln!(text, "# {}", w.message);
    }
    if p.from_env_file {
        let shown = def.env_file.as_deref().unwrap_or(Path::new(""));
        let _ = writeln!(
            text,
            "# The variables of {} are copied below: keep this file private.",
            comment_text(&shown.to_string_lossy())
        );
    }
    let _ = writeln!(
        text,
        "# The command gets systemd's environment, not your shell's: \
         set PATH and the like under env: if it needs them."
    );
    unit_section(&mut text, stack, opts, def, target, restart);
    service_section(&mut text, opts, def, oneshot, restart, &cwd, env_lines);
    let _ = write!(text, "\n[Install]\nWantedBy={install}\n");
    let file = File {
        name,
        contents: text,
        private: p.from_env_file,
    };
    Ok((file, warnings))
}

/// The unit's name, working directory and `Environment=` lines, or why a unit
/// cannot hold them.
fn unit_values(
    opts: &Systemd<'_>,
    p: &Proc<'_>,
) -> Result<(String, String, Vec<String>), Vec<Refusal>> {
    let def = p.def;
    let base = format!("processes.{}", def.name);
    let mut refusals = Vec::new();
    let name = service_name(opts.prefix, &def.name);
    if name.len() > UNIT_NAME_MAX {
        refusals.push(Refusal {
            path: base.clone(),
            message: format!("the unit name {name} is longer than {UNIT_NAME_MAX} characters"),
        });
    }
    let cwd = match unit_path(&def.cwd) {
        Ok(cwd) => cwd,
        Err(why) => {
            refusals.push(Refusal {
                path: format!("{base}.cwd"),
                message: format!("{why}, which WorkingDirectory= cannot hold"),
            });
            String::new()
        }
    };
    let mut env_lines = Vec::new();
    for (key, value) in full_env(p) {
        let path = format!("{base}.env.{key}");
        if !is_portable_name(&key) {
            refusals.push(Refusal {
                path,
                message: "systemd takes variable names of letters, digits and '_', \
                          not starting with a digit"
                    .into(),
            });
            continue;
        }
        match env_word(&key, &value) {
            Ok(word) => env_lines.push(format!("Environment={word}\n")),
            Err(c) => refusals.push(Refusal {
                path,
                message: format!(
                    "the value holds the control character {c:?}, which a unit cannot carry"
                ),
            }),
        }
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    Ok((name, cwd, env_lines))
}

/// How readiness and restarts map onto systemd (`Type=oneshot` with its
/// success code, `Restart=`), with a warning for each setting that does not.
fn carried_over(
    def: &Process,
    warn: &mut impl FnMut(&'static str, String),
) -> (Option<i32>, &'static str) {
    let oneshot = match &def.ready {
        Some(Ready::Exit { exit }) => {
            if *exit != 0 {
                warn(
                    "ready",
                    format!(
                        "ready (exit {exit}) becomes SuccessExitStatus={exit}; \
                         systemd counts exit 0 as success too"
                    ),
                );
            }
            Some(*exit)
        }
        Some(other) => {
            warn(
                "ready",
                format!(
                    "ready ({}) is not carried over: systemd counts the unit as started \
                     once its command runs, so units after it may start before it is ready",
                    describe_ready(other)
                ),
            );
            None
        }
        None => None,
    };
    let mut restart = match def.autorestart {
        Autorestart::Always => "always",
        Autorestart::OnFailure => "on-failure",
        Autorestart::Never => "no",
    };
    if oneshot.is_some() && restart == "always" {
        restart = "on-failure";
        warn(
            "autorestart",
            "autorestart: always becomes Restart=on-failure: systemd restarts \
             a one-shot unit only when it fails"
                .into(),
        );
    }
    if !def.watch.is_empty() {
        warn(
            "watch",
            "watch is not carried over: systemd does not restart a unit when files change".into(),
        );
    }
    log_warnings(def, warn);
    (oneshot, restart)
}

/// `[Unit]`: the description, dependencies, the target and the start limit.
fn unit_section(
    text: &mut String,
    stack: &Stack<'_>,
    opts: &Systemd<'_>,
    def: &Process,
    target: &str,
    restart: &str,
) {
    let _ = writeln!(text, "[Unit]");
    let _ = writeln!(
        text,
        "Description=agent-procs {}: {}",
        stack.session, def.name
    );
    if !def.depends_on.is_empty() {
        let deps: Vec<String> = def
            .depends_on
            .iter()
            .map(|d| service_name(opts.prefix, d))
            .collect();
        let deps = deps.join(" ");
        let _ = writeln!(text, "After={deps}\nRequires={deps}");
    }
    let _ = writeln!(text, "PartOf={target}");
    if restart != "no" {
        match def.max_restarts {
            None => {
                let _ = writeln!(text, "StartLimitIntervalSec=0");
            }
            Some(n) => {
                let starts = u64::from(n) + 1;
                let delay = restart_delay(def).as_millis();
                let needed = delay.saturating_mul(u128::from(starts) * 2);
                let window = Duration::from_millis(needed.min(u64::MAX.into()) as u64)
                    .max(START_LIMIT_WINDOW);
                let _ = writeln!(
                    text,
                    "# max_restarts: {n} allows {starts} starts in this window \
                     (agent-procs counts restarts since the last start by hand)\n\
                     StartLimitIntervalSec={}\nStartLimitBurst={starts}",
                    span(window)
                );
            }
        }
    }
}

/// `[Service]`: how to run, restart and stop the command.
fn service_section(
    text: &mut String,
    opts: &Systemd<'_>,
    def: &Process,
    oneshot: Option<i32>,
    restart: &str,
    cwd: &str,
    env_lines: Vec<String>,
) {
    let _ = writeln!(text, "\n[Service]");
    match oneshot {
        Some(code) => {
            let _ = writeln!(text, "Type=oneshot\nRemainAfterExit=yes");
            if code != 0 {
                let _ = writeln!(text, "SuccessExitStatus={code}");
            }
            let _ = writeln!(text, "TimeoutStartSec={}", span(def.ready_timeout));
        }
        None => {
            let _ = writeln!(text, "Type=simple");
        }
    }
    let _ = writeln!(text, "ExecStart=/bin/sh -c {}", exec_word(&def.cmd));
    let _ = writeln!(text, "WorkingDirectory={cwd}");
    for line in env_lines {
        text.push_str(&line);
    }
    let _ = writeln!(text, "Restart={restart}");
    if restart != "no" {
        let _ = writeln!(text, "RestartSec={}", span(restart_delay(def)));
    }
    let _ = writeln!(
        text,
        "# The stop signal goes to every process of the unit, as agent-procs signals the process group.\n\
         KillMode=control-group\nKillSignal={}\nTimeoutStopSec={}",
        def.stop_signal,
        span(def.stop_timeout)
    );
    if !opts.user {
        let _ = writeln!(
            text,
            "# A system unit runs as root unless you add User= (and Group=)."
        );
    }
}

fn restart_delay(def: &Process) -> Duration {
    def.restart_delay.max(MIN_RESTART_DELAY)
}

/// The environment as the process gets it under agent-procs: its own variables,
/// plus `PORT` and `HOST` when it has a port and does not set them itself.
fn full_env(p: &Proc<'_>) -> BTreeMap<String, String> {
    let mut env = p.env.clone();
    if let Some(port) = p.def.port {
        env.entry("PORT".into()).or_insert_with(|| port.to_string());
        env.entry("HOST".into())
            .or_insert_with(|| "127.0.0.1".into());
    }
    env
}

/// Settings about agent-procs's own log files, which neither target has.
fn log_warnings(def: &Process, warn: &mut impl FnMut(&'static str, String)) {
    if def.log_max_size != crate::logs::MAX_SEGMENT {
        warn(
            "log_max_size",
            "log_max_size is not carried over: the output goes to the supervisor's logs".into(),
        );
    }
    if def.log_max_files != crate::logs::KEEP_SEGMENTS {
        warn(
            "log_max_files",
            "log_max_files is not carried over: the output goes to the supervisor's logs".into(),
        );
    }
}

fn describe_ready(ready: &Ready) -> String {
    match ready {
        Ready::Log { log, regex: false } => format!("log line {}", comment_text(log)),
        Ready::Log { log, regex: true } => format!("log regex {}", comment_text(log)),
        Ready::Tcp { tcp } => format!("tcp {tcp}"),
        Ready::Http { http } => format!("http {}", comment_text(http)),
        Ready::Exit { exit } => format!("exit {exit}"),
    }
}

/// User text inside a comment line: quoted with every control character escaped,
/// so it cannot end the line or end in a backslash (a continuation in unit files).
fn comment_text(text: &str) -> String {
    format!("{text:?}")
}

/// `NAME` as systemd and a POSIX shell both take it.
fn is_portable_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One argument of `ExecStart=` in double quotes. systemd removes the quotes and
/// C escapes first, then expands specifiers (`%`) and, when it runs the command,
/// variables (`$`); `%%` and `$$` stand for themselves.
fn exec_word(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One `"NAME=VALUE"` of `Environment=`: specifiers are expanded there too, but
/// `$` means nothing. Control characters other than newline and tab are refused:
/// not every systemd version takes them in a value.
fn env_word(key: &str, value: &str) -> Result<String, char> {
    let mut out = String::with_capacity(key.len() + value.len() + 3);
    out.push('"');
    out.push_str(key);
    out.push('=');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => return Err(c),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// `WorkingDirectory=` takes the rest of the line as it stands, specifiers aside:
/// no quotes or escapes, so what it cannot hold is refused.
fn unit_path(path: &Path) -> Result<String, String> {
    let Some(text) = path.to_str() else {
        return Err(format!("{} is not valid UTF-8", path.display()));
    };
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("{text} has a '..' component"));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!("{text:?} holds the control character {c:?}"));
    }
    if text.trim() != text || text.ends_with('\\') {
        return Err(format!(
            "{text:?} begins or ends with a space or ends with a backslash"
        ));
    }
    Ok(text.replace('%', "%%"))
}

/// A systemd time span: `10s`, `500ms`, `250us`, or `0`.
fn span(d: Duration) -> String {
    if d.is_zero() {
        "0".into()
    } else if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}us", d.as_nanos().div_ceil(1000))
    }
}

/// A `Procfile` for honcho, foreman or overmind: `NAME: COMMAND`, run by `sh -c`
/// in the Procfile's directory `base`. Each line runs the command as agent-procs
/// does: in its cwd, with its environment, under `sh -c`.
pub fn procfile(stack: &Stack<'_>, base: &Path) -> Result<Export, Vec<Refusal>> {
    let mut refusals = Vec::new();
    let mut export = Export {
        warnings: file_warnings(stack),
        ..Export::default()
    };
    let mut text = header("procfile", stack.file);
    let _ = writeln!(
        text,
        "# Each line runs from the directory of this Procfile, {}.",
        comment_text(&base.to_string_lossy())
    );
    for w in &export.warnings {
        let _ = writeln!(text, "# {}", w.message);
    }
    let mut private = false;
    for p in &stack.processes {
        match procfile_line(p, base) {
            Ok((line, warnings)) => {
                for w in &warnings {
                    let _ = writeln!(text, "# {w}");
                }
                text.push_str(&line);
                text.push('\n');
                export.warnings.extend(warnings);
                private |= p.from_env_file;
            }
            Err(mut r) => refusals.append(&mut r),
        }
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    export.files.push(File {
        name: "Procfile".into(),
        contents: text,
        private,
    });
    Ok(export)
}

fn procfile_line(p: &Proc<'_>, base: &Path) -> Result<(String, Vec<Warning>), Vec<Refusal>> {
    let def = p.def;
    let (dir, assignments) = procfile_values(p, base)?;
    // Lines start with a program, never a shell builtin: foreman hands the line
    // to a runner that execs its first word. The cd happens inside `sh -c`,
    // before the command, so a failed cd runs nothing, as under agent-procs.
    let one_line = !def.cmd.chars().any(|c| c.is_control() && c != '\t');
    let line = if dir.is_none() && assignments.is_empty() && one_line {
        def.cmd.clone()
    } else {
        let script = match &dir {
            Some(dir) => format!("cd {} || exit; {}", crate::shell::quote(dir), def.cmd),
            None => def.cmd.clone(),
        };
        let mut line = String::new();
        if !assignments.is_empty() {
            let _ = write!(line, "env {} ", assignments.join(" "));
        }
        let _ = write!(line, "sh -c {}", sh_script(&script));
        line
    };

    let mut warnings = Vec::new();
    let mut warn = |key: &'static str, message: String| {
        warnings.push(Warning {
            process: Some(def.name.clone()),
            key,
            message,
        })
    };
    procfile_warnings(def, &mut warn);
    Ok((format!("{}: {line}", def.name), warnings))
}

/// The directory (relative to the Procfile's) and the `K=V` words of a
/// Procfile line, or why a line cannot hold them.
fn procfile_values(
    p: &Proc<'_>,
    base: &Path,
) -> Result<(Option<String>, Vec<String>), Vec<Refusal>> {
    let def = p.def;
    let path = format!("processes.{}", def.name);
    let mut refusals = Vec::new();
    if !def
        .name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    {
        refusals.push(Refusal {
            path: path.clone(),
            message: "a Procfile names processes with letters, digits, '_' and '-' only".into(),
        });
    }
    let dir = match relative_dir(&def.cwd, base) {
        Ok(dir) => dir,
        Err(why) => {
            refusals.push(Refusal {
                path: format!("{path}.cwd"),
                message: format!("{why}, which a Procfile line cannot hold"),
            });
            None
        }
    };
    let mut assignments = Vec::new();
    for (key, value) in full_env(p) {
        let kp = format!("{path}.env.{key}");
        if !is_portable_name(&key) {
            refusals.push(Refusal {
                path: kp,
                message: "a Procfile line takes variable names of letters, digits and '_', \
                          not starting with a digit"
                    .into(),
            });
        } else if let Some(c) = value.chars().find(|c| c.is_control() && *c != '\t') {
            refusals.push(Refusal {
                path: kp,
                message: format!(
                    "the value holds the control character {c:?}, which a Procfile line cannot carry"
                ),
            });
        } else {
            assignments.push(crate::shell::quote(&format!("{key}={value}")));
        }
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    Ok((dir, assignments))
}

/// A warning for each setting a Procfile runner has no way to honour.
fn procfile_warnings(def: &Process, warn: &mut impl FnMut(&'static str, String)) {
    if !def.depends_on.is_empty() {
        warn(
            "depends_on",
            format!(
                "depends_on ({}) is not carried over: a Procfile starts every process at once",
                def.depends_on.join(", ")
            ),
        );
    }
    match &def.ready {
        Some(Ready::Exit { exit }) => warn(
            "ready",
            format!(
                "ready (exit {exit}) is not carried over: honcho and foreman stop every \
                 process when one exits, so run this step before them"
            ),
        ),
        Some(other) => warn(
            "ready",
            format!(
                "ready ({}) is not carried over: a Procfile has no readiness checks",
                describe_ready(other)
            ),
        ),
        None => {}
    }
    if def.autorestart != Autorestart::Never {
        let policy = match def.autorestart {
            Autorestart::Always => "always",
            _ => "on-failure",
        };
        warn(
            "autorestart",
            format!(
                "autorestart: {policy} is not carried over: honcho and foreman do not \
                 restart a process; they stop every process when one exits"
            ),
        );
    }
    if def.stop_signal != "SIGTERM" {
        warn(
            "stop_signal",
            format!(
                "stop_signal: {} is not carried over: the runner sends SIGTERM",
                def.stop_signal
            ),
        );
    }
    if def.stop_timeout != config::DEFAULT_STOP_TIMEOUT {
        warn(
            "stop_timeout",
            "stop_timeout is not carried over: the runner's own grace period applies".into(),
        );
    }
    if !def.watch.is_empty() {
        warn(
            "watch",
            "watch is not carried over: a Procfile runner does not watch files".into(),
        );
    }
    log_warnings(def, warn);
}

/// Where a process runs, as `cd` in the Procfile needs it: None for the
/// Procfile's own directory, a relative path below it, else the absolute path.
fn relative_dir(cwd: &Path, base: &Path) -> Result<Option<String>, String> {
    let Some(text) = cwd.to_str() else {
        return Err(format!("{} is not valid UTF-8", cwd.display()));
    };
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!("{text:?} holds the control character {c:?}"));
    }
    match cwd.strip_prefix(base) {
        Ok(rel) if rel.as_os_str().is_empty() => Ok(None),
        Ok(rel) if !rel.components().any(|c| c == Component::ParentDir) => {
            let rel = rel.to_string_lossy();
            // `cd -x` would take it for an option.
            let dot = if rel.starts_with('-') { "./" } else { "" };
            Ok(Some(format!("{dot}{rel}")))
        }
        _ => Ok(Some(text.to_string())),
    }
}

/// The script for `sh -c` as one word on one line. A script of several lines is
/// rebuilt by `printf`, whose format turns `\n` back into a newline; only
/// trailing newlines are lost, which a script does not miss.
fn sh_script(script: &str) -> String {
    if !script.chars().any(|c| c.is_control() && c != '\t') {
        return crate::shell::quote(script);
    }
    let mut format = String::with_capacity(script.len() + 8);
    for c in script.chars() {
        match c {
            '\\' => format.push_str("\\\\"),
            '%' => format.push_str("%%"),
            '\n' => format.push_str("\\n"),
            c if c.is_control() && c != '\t' && c.is_ascii() => {
                let _ = write!(format, "\\{:03o}", c as u32);
            }
            c => format.push(c),
        }
    }
    format!("\"$(printf {})\"", crate::shell::quote(&format))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const FILE: &str = "/srv/app/agent-procs.yaml";

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new(FILE), "agent-procs.yaml").unwrap_or_else(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            panic!("{text}\n{}", lines.join("\n"))
        })
    }

    fn stack(config: &Config) -> Stack<'_> {
        Stack {
            session: "demo",
            file: &config.file,
            proxy: config.proxy,
            processes: config
                .processes
                .iter()
                .map(|def| Proc {
                    def,
                    env: def.env.clone(),
                    from_env_file: false,
                })
                .collect(),
        }
    }

    fn units(text: &str, user: bool) -> Export {
        let config = config(text);
        let opts = Systemd {
            prefix: "ap-demo",
            user,
        };
        systemd(&stack(&config), &opts).unwrap_or_else(|r| panic!("{r:?}"))
    }

    fn refusals(result: Result<Export, Vec<Refusal>>) -> Vec<String> {
        match result {
            Ok(export) => panic!("exported: {:?}", export.files),
            Err(r) => r.iter().map(ToString::to_string).collect(),
        }
    }

    const STACK: &str = r#"
processes:
  db:
    cmd: postgres -D data
    ready: {tcp: 5432}
    stop_signal: INT
  migrate:
    cmd: ./migrate up
    ready: {exit: 0}
    depends_on: db
    ready_timeout: 120
  api:
    cmd: ./api --port "$PORT" --rate 100%
    cwd: backend
    env: {GREETING: "it's \"fine\"", DEBUG: true}
    depends_on: [db, migrate]
    port: 8080
    autorestart: on-failure
    max_restarts: 5
    restart_delay: 500
    stop_timeout: 2.5
"#;

    const HEAD: &str = "# Generated by agent-procs export systemd from \"/srv/app/agent-procs.yaml\".\n\
                    # Edit that file and export again rather than editing this one.\n";
    const ENV_NOTE: &str = "# The command gets systemd's environment, not your shell's: set PATH and the like under env: if it needs them.\n";
    const KILL_NOTE: &str = "# The stop signal goes to every process of the unit, as agent-procs signals the process group.\n";
    const ROOT_NOTE: &str = "# A system unit runs as root unless you add User= (and Group=).\n";

    /// The unit of `db`: a readiness systemd cannot carry.
    fn db_unit() -> String {
        format!(
            "{HEAD}\
# ready (tcp 5432) is not carried over: systemd counts the unit as started once its command runs, so units after it may start before it is ready
{ENV_NOTE}[Unit]
Description=agent-procs demo: db
PartOf=ap-demo.target

[Service]
Type=simple
ExecStart=/bin/sh -c \"postgres -D data\"
WorkingDirectory=/srv/app
Restart=no
{KILL_NOTE}KillMode=control-group
KillSignal=SIGINT
TimeoutStopSec=10s
{ROOT_NOTE}
[Install]
WantedBy=multi-user.target
"
        )
    }

    /// The unit of `migrate`: a one-shot step after db.
    fn migrate_unit() -> String {
        format!(
            "{HEAD}{ENV_NOTE}[Unit]
Description=agent-procs demo: migrate
After=ap-demo-db.service
Requires=ap-demo-db.service
PartOf=ap-demo.target

[Service]
Type=oneshot
RemainAfterExit=yes
TimeoutStartSec=120s
ExecStart=/bin/sh -c \"./migrate up\"
WorkingDirectory=/srv/app
Restart=no
{KILL_NOTE}KillMode=control-group
KillSignal=SIGTERM
TimeoutStopSec=10s
{ROOT_NOTE}
[Install]
WantedBy=multi-user.target
"
        )
    }

    /// The unit of `api`: restarts, a start limit and its environment.
    fn api_unit() -> String {
        format!(
            "{HEAD}{ENV_NOTE}[Unit]
Description=agent-procs demo: api
After=ap-demo-db.service ap-demo-migrate.service
Requires=ap-demo-db.service ap-demo-migrate.service
PartOf=ap-demo.target
# max_restarts: 5 allows 6 starts in this window (agent-procs counts restarts since the last start by hand)
StartLimitIntervalSec=300s
StartLimitBurst=6

[Service]
Type=simple
ExecStart=/bin/sh -c \"./api --port \\\"$$PORT\\\" --rate 100%%\"
WorkingDirectory=/srv/app/backend
Environment=\"DEBUG=true\"
Environment=\"GREETING=it's \\\"fine\\\"\"
Environment=\"HOST=127.0.0.1\"
Environment=\"PORT=8080\"
Restart=on-failure
RestartSec=500ms
{KILL_NOTE}KillMode=control-group
KillSignal=SIGTERM
TimeoutStopSec=2500ms
{ROOT_NOTE}
[Install]
WantedBy=multi-user.target
"
        )
    }

    /// The target that pulls the stack in.
    fn target_unit() -> String {
        format!(
            "{HEAD}[Unit]
Description=agent-procs demo
Wants=ap-demo-db.service ap-demo-migrate.service ap-demo-api.service

[Install]
WantedBy=multi-user.target
"
        )
    }

    #[test]
    fn systemd_units_for_a_small_stack() {
        let export = units(STACK, false);
        let names: Vec<&str> = export.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ap-demo-db.service",
                "ap-demo-migrate.service",
                "ap-demo-api.service",
                "ap-demo.target"
            ]
        );
        let want = [db_unit(), migrate_unit(), api_unit(), target_unit()];
        for (file, want) in export.files.iter().zip(&want) {
            assert_eq!(file.contents, *want, "{}", file.name);
            assert!(!file.private);
        }
        assert_eq!(export.warnings.len(), 1);
        assert_eq!(export.warnings[0].process.as_deref(), Some("db"));
        assert_eq!(export.warnings[0].key, "ready");
    }

    #[test]
    fn user_units_install_into_default_target_and_omit_the_root_note() {
        let export = units("processes:\n  a: {cmd: x}\n", true);
        for file in &export.files {
            assert!(
                file.contents
                    .ends_with("[Install]\nWantedBy=default.target\n"),
                "{}",
                file.contents
            );
            assert!(!file.contents.contains("runs as root"));
        }
    }

    #[test]
    fn restart_policies_map_to_restart_and_start_limits() {
        let cases = [
            ("{cmd: x}", "Restart=no\n", None),
            (
                "{cmd: x, autorestart: always}",
                "Restart=always\nRestartSec=1s\n",
                Some("StartLimitIntervalSec=0\n"),
            ),
            (
                "{cmd: x, autorestart: on-failure, restart_delay: 0}",
                "Restart=on-failure\nRestartSec=20ms\n",
                Some("StartLimitIntervalSec=0\n"),
            ),
            (
                "{cmd: x, autorestart: always, max_restarts: 0}",
                "Restart=always\n",
                Some("StartLimitIntervalSec=300s\nStartLimitBurst=1\n"),
            ),
            (
                "{cmd: x, autorestart: always, max_restarts: 99, restart_delay: 60000}",
                "RestartSec=60s\n",
                Some("StartLimitIntervalSec=12000s\nStartLimitBurst=100\n"),
            ),
            // A one-shot unit may not have Restart=always.
            (
                "{cmd: x, autorestart: always, ready: {exit: 0}}",
                "Type=oneshot\nRemainAfterExit=yes\nTimeoutStartSec=30s\n",
                Some("Restart=on-failure\n"),
            ),
            ("{cmd: x, ready: {exit: 3}}", "SuccessExitStatus=3\n", None),
        ];
        for (def, want, also) in cases {
            let export = units(&format!("processes:\n  a: {def}\n"), false);
            let text = &export.files[0].contents;
            assert!(text.contains(want), "{def}: {want:?} not in\n{text}");
            if let Some(also) = also {
                assert!(text.contains(also), "{def}: {also:?} not in\n{text}");
            } else {
                assert!(!text.contains("StartLimit"), "{def}:\n{text}");
            }
        }
    }

    #[test]
    fn hostile_commands_and_values_are_escaped_for_systemd() {
        let cases = [
            ("echo $HOME", r#""echo $$HOME""#),
            ("printf '%s\\n' a", r#""printf '%%s\\n' a""#),
            (r#"echo "a b" \"c\""#, r#""echo \"a b\" \\\"c\\\"""#),
            ("a\nb\tc", r#""a\nb\tc""#),
            ("x\u{1b}[0m", r#""x\x1b[0m""#),
            ("ends with \\", r#""ends with \\""#),
            ("${A}%n%%", r#""$${A}%%n%%%%""#),
        ];
        for (cmd, want) in cases {
            assert_eq!(exec_word(cmd), want, "{cmd:?}");
        }
        let env = [
            ("a b", r#""K=a b""#),
            ("$HOME", r#""K=$HOME""#),
            ("100%", r#""K=100%%""#),
            ("it's \"q\" \\", r#""K=it's \"q\" \\""#),
            ("one\ntwo", r#""K=one\ntwo""#),
            ("", r#""K=""#),
        ];
        for (value, want) in env {
            assert_eq!(env_word("K", value), Ok(want.to_string()), "{value:?}");
        }
        assert_eq!(env_word("K", "a\rb"), Err('\r'));
    }

    #[test]
    fn what_a_unit_cannot_hold_is_refused_naming_the_key() {
        let text = "processes:\n  web:\n    cmd: x\n    cwd: ../up\n    env: {MY-VAR: 1, OK: \"a\\rb\", 9LIVES: x}\n";
        let config = config(text);
        let opts = Systemd {
            prefix: "p",
            user: false,
        };
        assert_eq!(
            refusals(systemd(&stack(&config), &opts)),
            [
                "processes.web.cwd: /srv/app/../up has a '..' component, which WorkingDirectory= cannot hold",
                "processes.web.env.9LIVES: systemd takes variable names of letters, digits and '_', not starting with a digit",
                "processes.web.env.MY-VAR: systemd takes variable names of letters, digits and '_', not starting with a digit",
                "processes.web.env.OK: the value holds the control character '\\r', which a unit cannot carry",
            ]
        );
        assert!(unit_path(Path::new("/srv/a b/%i")).is_ok_and(|p| p == "/srv/a b/%%i"));
        assert!(unit_path(Path::new("/srv/a\nb")).is_err());
        assert!(unit_path(Path::new("/srv/trailing ")).is_err());
        assert!(unit_path(Path::new("/srv/back\\")).is_err());
    }

    #[test]
    fn prefixes_are_unit_name_stems() {
        for good in ["agent-procs-default", "my_app.prod", "x"] {
            assert!(check_prefix(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", ".x", "a@b", "a b", "a/b", "a\\x2d"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spans_use_the_largest_exact_unit() {
        let cases = [
            (Duration::ZERO, "0"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_millis(2500), "2500ms"),
            (Duration::from_micros(1500), "1500us"),
            (Duration::from_nanos(1), "1us"),
        ];
        for (d, want) in cases {
            assert_eq!(span(d), want, "{d:?}");
        }
    }

    #[test]
    fn proxy_is_reported_and_noted_in_the_target() {
        let export = units(
            "proxy: true\nprocesses:\n  a: {cmd: x, port: 3000}\n",
            false,
        );
        assert_eq!(export.warnings[0].key, "proxy");
        assert_eq!(export.warnings[0].process, None);
        let target = &export.files[1].contents;
        assert!(target.contains("# proxy is not carried over"), "{target}");
    }

    fn procfile_of(text: &str, base: &str) -> Export {
        let config = config(text);
        procfile(&stack(&config), Path::new(base)).unwrap_or_else(|r| panic!("{r:?}"))
    }

    #[test]
    fn procfile_lines_run_the_command_where_and_with_what_agent_procs_would() {
        let export = procfile_of(STACK, "/srv/app");
        assert_eq!(export.files.len(), 1);
        assert_eq!(export.files[0].name, "Procfile");
        let want = r#"# Generated by agent-procs export procfile from "/srv/app/agent-procs.yaml".
# Edit that file and export again rather than editing this one.
# Each line runs from the directory of this Procfile, "/srv/app".
# db: ready (tcp 5432) is not carried over: a Procfile has no readiness checks
# db: stop_signal: SIGINT is not carried over: the runner sends SIGTERM
db: postgres -D data
# migrate: depends_on (db) is not carried over: a Procfile starts every process at once
# migrate: ready (exit 0) is not carried over: honcho and foreman stop every process when one exits, so run this step before them
migrate: ./migrate up
# api: depends_on (db, migrate) is not carried over: a Procfile starts every process at once
# api: autorestart: on-failure is not carried over: honcho and foreman do not restart a process; they stop every process when one exits
# api: stop_timeout is not carried over: the runner's own grace period applies
api: env DEBUG=true 'GREETING=it'\''s "fine"' HOST=127.0.0.1 PORT=8080 sh -c 'cd backend || exit; ./api --port "$PORT" --rate 100%'
"#;
        assert_eq!(export.files[0].contents, want);
        assert_eq!(export.warnings.len(), 7);
        // Elsewhere, the paths are absolute.
        let export = procfile_of(STACK, "/elsewhere");
        let text = &export.files[0].contents;
        assert!(
            text.contains("\ndb: sh -c 'cd /srv/app || exit; postgres -D data'\n"),
            "{text}"
        );
        assert!(
            text.contains(" sh -c 'cd /srv/app/backend || exit; ./api --port "),
            "{text}"
        );
        let export = procfile_of("processes:\n  a: {cmd: x, cwd: -odd}\n", "/srv/app");
        let text = &export.files[0].contents;
        assert!(
            text.ends_with("\na: sh -c 'cd ./-odd || exit; x'\n"),
            "{text}"
        );
    }

    #[test]
    fn procfile_scripts_of_several_lines_are_rebuilt_by_printf() {
        let cases = [
            ("echo hi", "'echo hi'"),
            ("a\nb\n", r#""$(printf 'a\nb\n')""#),
            (
                "printf '%s\\n' x\necho",
                r#""$(printf 'printf '\''%%s\\n'\'' x\necho')""#,
            ),
            ("a\rb", r#""$(printf 'a\015b')""#),
        ];
        for (script, want) in cases {
            assert_eq!(sh_script(script), want, "{script:?}");
        }
    }

    #[test]
    fn what_a_procfile_cannot_hold_is_refused_naming_the_key() {
        let text = "processes:\n  web.1:\n    cmd: x\n    env: {A: \"x\\ny\", B-C: 1}\n";
        let config = config(text);
        assert_eq!(
            refusals(procfile(&stack(&config), Path::new("/srv/app"))),
            [
                "processes.web.1: a Procfile names processes with letters, digits, '_' and '-' only",
                "processes.web.1.env.A: the value holds the control character '\\n', which a Procfile line cannot carry",
                "processes.web.1.env.B-C: a Procfile line takes variable names of letters, digits and '_', not starting with a digit",
            ]
        );
    }
}
