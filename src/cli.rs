//! The command line's generic half: the types a parse produces (`Invocation`,
//! `Command` and each command's arguments), the shape of the command table
//! (`CommandSpec`), the lexopt helpers every command's parser uses (`Args`), the
//! top-level usage, and the did-you-mean suggestions. The table itself, and
//! each command's usage text and parser, live with the command in `cmd/`
//! (`cmd::COMMANDS`). Every command accepts `--session NAME` and `--help`
//! wherever it stands.

use crate::error::{Error, Result};
use lexopt::prelude::*;
use std::ffi::OsString;
use std::time::Duration;

pub const USAGE: &str = "\
usage: agent-procs [--session NAME] COMMAND [ARGS]

Run and supervise background processes for agents and CI, under a per-session daemon.

commands:
  run CMD [--name N] [--cwd DIR] [--env K=V]... [--port P] [--proxy]
                        start CMD in the background (the daemon starts on first use)
  stop NAME|ID [--timeout S]    stop a process and its whole process group
  stop-all [--timeout S]        stop every process of the session
  restart NAME|ID               stop, then start again with the same settings
  status [NAME] [--resources] [--json]
                        list processes and their states; one in full with NAME
  events [--since SEQ] [--json] stream state changes as they happen
  logs NAME [--tail N] [--stderr] [--follow]
  logs --all [--tail N] [--stderr] [--follow]
                        print a process's latest run (read from disk; --follow streams)
  wait NAME --until PAT [--regex] [--timeout S]
  wait NAME --exit [--timeout S]
  wait NAME --port P | --http URL [--timeout S]
                        block until a line matches, the process exits, or it serves
  up [--only N,...] [--config PATH] [--proxy] [--timeout S]
                        start agent-procs.yaml's processes in dependency order
  down [--config PATH]          stop everything and shut the daemon down
  ui                            watch and control processes in a terminal UI
  session list | session clean  list sessions, or remove stale ones
  config check [--config PATH] [--json]
  config show [--config PATH] --json
                        validate agent-procs.yaml, or print it resolved as JSON
  export systemd|procfile [--dir D [--force]] [--user] [--only N,...]
                        write systemd units or a Procfile from agent-procs.yaml
  completions bash|zsh|fish     print a shell completion script
  mcp                           serve the Model Context Protocol on stdin/stdout
                        (for coding agents; session default: auto)
  help [COMMAND]                this help, or what COMMAND --help prints

global options:
  --session NAME        session to act on (default: $AGENT_PROCS_SESSION, else default);
                        auto: one of the git worktree you are in
  -h, --help            show this help, or COMMAND --help for one command
  -V, --version         show the version

exit status: 0 ok, 1 error or timeout, 2 unknown process or no logs, 64 usage error.
See agent-procs(1).";

/// What a long flag takes after it, as completions need to know.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Takes {
    Nothing,
    /// A value with nothing to offer: a number, a pattern, a name.
    Word,
    /// A file or directory name.
    Path,
}

/// One flag of a command, as its table entry holds it: what the parser takes
/// (tests keep the two in step), what the completion scripts offer, and the
/// flag's lines in the options section of `--help`.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// The long name, without the `--`.
    pub name: &'static str,
    /// The one-letter form, as `q` for `-q, --quiet`.
    pub short: Option<char>,
    pub takes: Takes,
    /// What the options section calls the value (`N`, `PATH`); "" for none.
    pub value: &'static str,
    /// The help beside the flag; each `\n` starts a line under it.
    pub help: &'static str,
}

impl Flag {
    /// `--name`, taking nothing.
    pub const fn switch(name: &'static str, help: &'static str) -> Flag {
        Flag {
            name,
            short: None,
            takes: Takes::Nothing,
            value: "",
            help,
        }
    }

    /// `--name VALUE`, a value with nothing to offer.
    pub const fn word(name: &'static str, value: &'static str, help: &'static str) -> Flag {
        Flag {
            takes: Takes::Word,
            value,
            ..Flag::switch(name, help)
        }
    }

    /// `--name PATH`, a file or directory name.
    pub const fn path(name: &'static str, value: &'static str, help: &'static str) -> Flag {
        Flag {
            takes: Takes::Path,
            value,
            ..Flag::switch(name, help)
        }
    }

    /// The same flag, also taken as `-c`.
    pub const fn or_short(self, c: char) -> Flag {
        Flag {
            short: Some(c),
            ..self
        }
    }

    /// Its lines in the options section: `  -q, --quiet     print …`, the help
    /// indented by 18 columns, and under the flag when the flag is too wide.
    fn write_option(&self, out: &mut String) {
        const COLUMN: usize = 16;
        let indent = " ".repeat(COLUMN + 2);
        let start = out.len();
        out.push_str("  ");
        if let Some(c) = self.short {
            out.extend(['-', c, ',', ' ']);
        }
        out.push_str("--");
        out.push_str(self.name);
        if !self.value.is_empty() {
            out.push(' ');
            out.push_str(self.value);
        }
        let width = out.len() - start - 2;
        if width < COLUMN {
            out.extend(std::iter::repeat_n(' ', COLUMN - width));
        } else {
            out.push('\n');
            out.push_str(&indent);
        }
        out.push_str(&self.help.replace('\n', &format!("\n{indent}")));
    }
}

/// `--session NAME` as most commands show it.
pub const SESSION_FLAG: Flag = Flag::word("session", "NAME", "session to use (default: default)");
/// `-q, --quiet`, for the commands that print a result.
pub const QUIET_FLAG: Flag = Flag::switch(
    "quiet",
    "print nothing on success (errors still go to stderr)",
)
.or_short('q');
/// `--json` for the commands whose result is one object.
pub const JSON_FLAG: Flag = Flag::switch(
    "json",
    "print one JSON object, with schema: 1, instead of text",
);

/// One command: the entry of the command table (`cmd::COMMANDS`) that drives
/// `--help` and `help CMD`, the did-you-mean suggestions, the completion
/// scripts and the man-page check. Each command's file in `cmd/` declares its
/// own; unit tests keep `flags` in step with `parse` and with the man page.
pub struct CommandSpec {
    pub name: &'static str,
    /// One line for completion menus.
    pub about: &'static str,
    /// What `COMMAND --help` prints above its options; its first paragraph
    /// is the synopsis a usage error repeats.
    pub usage: &'static str,
    /// What `COMMAND --help` prints below its options ("" for nothing).
    pub after: &'static str,
    /// Words that may stand first after the command, as in `session list`.
    pub subcommands: &'static [&'static str],
    /// Its flags, in the order its options section lists them. `COMMON_FLAGS`
    /// not listed here are taken all the same, and not shown.
    pub flags: &'static [Flag],
    /// The first plain argument names a process.
    pub takes_process: bool,
    /// Reads the arguments after the command's name.
    pub parse: fn(&mut Args<'_>) -> Result<Command>,
}

impl CommandSpec {
    /// What `COMMAND --help` and `help COMMAND` print: the usage, the options
    /// section written from `flags`, and what comes after it.
    pub fn help(&self) -> String {
        let mut out = String::from(self.usage);
        if !self.flags.is_empty() {
            out.push_str("\n\noptions:");
            for flag in self.flags {
                out.push('\n');
                flag.write_option(&mut out);
            }
        }
        if !self.after.is_empty() {
            out.push_str("\n\n");
            out.push_str(self.after);
        }
        out
    }

    /// Its own flags, then the `COMMON_FLAGS` it does not list: every long
    /// flag it takes, for completions and suggestions.
    pub fn all_flags(&self) -> impl Iterator<Item = &'static Flag> {
        let own = self.flags;
        own.iter().chain(
            COMMON_FLAGS
                .iter()
                .filter(|c| !own.iter().any(|f| f.name == c.name)),
        )
    }
}

/// Flags every command takes, before or after it.
pub const COMMON_FLAGS: &[Flag] = &[
    SESSION_FLAG,
    Flag::switch("help", "show this help").or_short('h'),
];
/// Flags taken only before the command, besides `COMMON_FLAGS`.
pub const TOP_FLAGS: &[Flag] = &[Flag::switch("version", "show the version").or_short('V')];

#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub session: String,
    /// `--session` or `AGENT_PROCS_SESSION` was given; else `up` and `down`
    /// take the config's `session`.
    pub session_given: bool,
    /// For `--session auto`: the worktree root the name was derived from.
    pub session_root: Option<std::path::PathBuf>,
    /// `--json`: one JSON object (JSON Lines for `up`) with `"schema": 1` on stdout.
    pub json: bool,
    /// `--quiet`: nothing on stdout; errors still go to stderr.
    pub quiet: bool,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(RunArgs),
    Stop {
        target: String,
        timeout: Option<Duration>,
    },
    StopAll {
        timeout: Option<Duration>,
    },
    Restart {
        target: String,
    },
    Status {
        json: bool,
        /// One process in full.
        target: Option<String>,
        /// Add group size, memory, CPU and listening ports.
        resources: bool,
    },
    Events {
        since: Option<u64>,
        json: bool,
    },
    Logs(LogsArgs),
    Wait(WaitArgs),
    Up(UpArgs),
    Down {
        /// Where to read `session` from when `--session` is not given.
        config: Option<std::path::PathBuf>,
    },
    /// The terminal UI.
    Ui,
    SessionList,
    SessionClean,
    Config(ConfigArgs),
    Export(ExportArgs),
    Completions(Shell),
    Help(String),
    Version,
    /// `mcp`: the Model Context Protocol server on stdio.
    Mcp,
    /// Internal: `agent-procs __daemon SESSION [--ready-fd N]`, started by the CLI.
    Daemon {
        ready_fd: Option<i32>,
    },
}

/// The shell `completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// `config check` or, with `show`, `config show`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigArgs {
    pub show: bool,
    pub path: Option<std::path::PathBuf>,
    pub json: bool,
}

/// `export systemd` or `export procfile`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportArgs {
    pub format: ExportFormat,
    pub config: Option<std::path::PathBuf>,
    pub only: Vec<String>,
    /// Write the files here instead of printing them.
    pub dir: Option<std::path::PathBuf>,
    /// Replace files in `dir` whose contents differ.
    pub force: bool,
    /// systemd: units for the user's manager.
    pub user: bool,
    /// systemd: the unit name stem instead of `agent-procs-SESSION`.
    pub prefix: Option<String>,
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExportFormat {
    Systemd,
    Procfile,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunArgs {
    pub command: String,
    pub name: Option<String>,
    pub cwd: Option<String>,
    pub env: Vec<(String, String)>,
    pub port: Option<u16>,
    pub log_max_size: Option<u64>,
    /// Reach it through the session's reverse proxy as http://NAME.localhost:PORT.
    pub proxy: bool,
    /// `--autorestart` with its settings; None when not given.
    pub restart: Option<RestartArgs>,
    /// `--watch GLOB` (repeatable): restart when a matching file changes.
    pub watch: Vec<String>,
    pub watch_ignore: Vec<String>,
    /// `--oneshot`: a setup step that runs to completion.
    pub oneshot: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RestartArgs {
    /// `always`, `on-failure` or `never`.
    pub mode: String,
    pub max_restarts: Option<u32>,
    pub delay_ms: Option<u64>,
    pub exponential: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogsArgs {
    pub target: Option<String>,
    pub tail: usize,
    /// --tail was given (it changes meaning with --since, --after and --grep).
    pub tail_given: bool,
    pub stderr: bool,
    pub both: bool,
    pub all: bool,
    pub follow: bool,
    pub timeout: Option<Duration>,
    pub lines: Option<usize>,
    pub since: Option<SinceArg>,
    pub after: Option<String>,
    pub grep: Option<String>,
    pub regex: bool,
    pub ignore_case: bool,
    pub context: usize,
    pub timestamps: bool,
    pub json: bool,
    pub max_bytes: Option<usize>,
    pub cursor: bool,
    /// `--runs N|all`: how many of the latest runs to cover (None: the latest
    /// one, or every run with --since or --after).
    pub runs: Option<Runs>,
}

/// `--runs`: the last N runs of each process, or all that are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    Last(usize),
    All,
}

/// `--since`: a span back from now, the latest start, or all that is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SinceArg {
    Ago(Duration),
    Restart,
    Start,
}

/// `30s`, `5m`, `2h`, `1d` (decimals allowed), `restart`, `start`.
pub fn parse_since(text: &str) -> Option<SinceArg> {
    match text {
        "restart" => return Some(SinceArg::Restart),
        "start" => return Some(SinceArg::Start),
        _ => {}
    }
    let unit_at = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(unit_at);
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    let secs = value * scale;
    (secs.is_finite() && (0.0..1e10).contains(&secs))
        .then(|| SinceArg::Ago(Duration::from_secs_f64(secs)))
}

#[derive(Debug, Clone, PartialEq)]
pub struct WaitArgs {
    pub target: String,
    pub until: Option<String>,
    pub regex: bool,
    pub exit: bool,
    /// `--success` with `--exit`: exit status 0 only for exit code 0.
    pub success: bool,
    /// `--port`: wait until 127.0.0.1:P accepts connections.
    pub port: Option<u16>,
    /// `--http`: wait until a GET of this URL answers 2xx or 3xx.
    pub http: Option<String>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpArgs {
    /// `--only a,b`: these and what they depend on.
    pub only: Vec<String>,
    pub config: Option<std::path::PathBuf>,
    pub proxy: bool,
    /// Fail when the whole stack is not ready within this.
    pub timeout: Option<Duration>,
}
pub fn usage_error(msg: impl Into<String>, usage: &'static str) -> Error {
    Error::Usage {
        msg: msg.into(),
        usage,
    }
}

/// lexopt's own errors, re-tagged with the usage of the command being parsed.
fn with_usage(usage: &'static str) -> impl Fn(lexopt::Error) -> Error {
    move |e| usage_error(e.to_string(), usage)
}

fn string(value: OsString, what: &str, usage: &'static str) -> Result<String> {
    value.into_string().map_err(|v| {
        usage_error(
            format!("{what} is not valid UTF-8: {}", v.to_string_lossy()),
            usage,
        )
    })
}

/// A parse error of the command line is a usage error with the top-level usage
/// text (a command's own parser names its usage with `usage_error` instead).
/// Here, not in `error.rs`, so the error type stays a leaf that knows no CLI.
impl From<lexopt::Error> for Error {
    fn from(err: lexopt::Error) -> Self {
        Error::Usage {
            msg: err.to_string(),
            usage: USAGE,
        }
    }
}

/// What `common` collects: the session and the output mode.
#[derive(Default)]
pub struct Globals {
    /// Empty until `--session` sets it (which refuses "").
    pub session: String,
    pub json: bool,
    pub quiet: bool,
}

/// The arguments after a command's name, as its parser (`CommandSpec::parse`)
/// reads them: lexopt's parser, the options every command shares, and the
/// command being parsed, whose usage every error carries.
pub struct Args<'a> {
    p: &'a mut lexopt::Parser,
    pub globals: &'a mut Globals,
    /// None for the hidden `__daemon`, whose errors show the top-level usage.
    spec: Option<&'static CommandSpec>,
    usage: &'static str,
}

impl Args<'_> {
    /// The next argument; lexopt's errors carry this command's usage.
    pub fn next_arg(&mut self) -> Result<Option<lexopt::Arg<'_>>> {
        self.p.next().map_err(with_usage(self.usage))
    }

    /// The value of the option just read.
    pub fn value(&mut self) -> Result<OsString> {
        self.p.value().map_err(with_usage(self.usage))
    }

    /// A usage error of this command.
    pub fn error(&self, msg: impl Into<String>) -> Error {
        usage_error(msg, self.usage)
    }

    /// A plain argument (`what`: the process name, the shell) as UTF-8.
    pub fn word(&self, value: OsString, what: &str) -> Result<String> {
        string(value, what, self.usage)
    }

    /// The value of `flag` as UTF-8.
    pub fn text(&mut self, flag: &str) -> Result<String> {
        let value = self.value()?;
        self.word(value, flag)
    }

    /// The value of the option just read, as a path taken as it is.
    pub fn path(&mut self) -> Result<std::path::PathBuf> {
        self.value().map(std::path::PathBuf::from)
    }

    /// The value of `flag`: a number of seconds (decimals allowed).
    pub fn seconds(&mut self, flag: &str) -> Result<Duration> {
        let text = self.text(flag)?;
        text.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 1e9)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| self.error(format!("{flag} takes a number of seconds, not '{text}'")))
    }

    /// The value of `flag` as a `T`, which the message calls `what`.
    pub fn number<T: std::str::FromStr>(&mut self, flag: &str, what: &str) -> Result<T> {
        let text = self.text(flag)?;
        text.parse::<T>()
            .map_err(|_| self.error(format!("{flag} takes {what}, not '{text}'")))
    }

    /// The value of `--port`: 1 to 65535.
    pub fn port(&mut self) -> Result<u16> {
        let port: u16 = self.number("--port", "a port number from 1 to 65535")?;
        if port == 0 {
            return Err(self.error("--port takes a port number from 1 to 65535, not '0'"));
        }
        Ok(port)
    }

    /// The value of `--only a,b`: names added to `list` once each.
    pub fn only(&mut self, list: &mut Vec<String>) -> Result<()> {
        let text = self.text("--only")?;
        for name in text.split(',').map(str::trim) {
            if name.is_empty() {
                return Err(self.error(format!(
                    "--only takes names separated by commas, not '{text}'"
                )));
            }
            if !list.iter().any(|n| n == name) {
                list.push(name.to_string());
            }
        }
        Ok(())
    }

    /// `unknown session command 'lsit'; did you mean 'list'?`: the nearest of the
    /// command's subcommands in the table, else the message and the usage.
    pub fn unknown_subcommand(&self, typed: &str) -> Error {
        let (name, subs) = self.spec.map_or(("", &[][..]), |s| (s.name, s.subcommands));
        let msg = format!("{name} command '{typed}'");
        match closest(typed, subs.iter().copied()) {
            Some(sub) => usage_error(format!("unknown {msg}; did you mean '{sub}'?"), ""),
            None => self.error(format!("unknown {msg}")),
        }
    }
}

/// An argument a command's own loop did not take, detached from the parser.
pub enum Other {
    Session,
    Help,
    Json,
    Quiet,
    Stray(String),
    /// An option the command does not know, as typed (`--jsn`, `-x`).
    Unknown(String),
}

pub fn other(arg: lexopt::Arg<'_>) -> Other {
    match arg {
        Long("session") => Other::Session,
        Short('h') | Long("help") => Other::Help,
        Long("json") => Other::Json,
        Short('q') | Long("quiet") => Other::Quiet,
        Value(v) => Other::Stray(format!("unexpected argument '{}'", v.to_string_lossy())),
        Long(flag) => Other::Unknown(format!("--{flag}")),
        Short(c) => Other::Unknown(format!("-{c}")),
    }
}

/// Options every command takes: `--session`, `--help`, and the output mode
/// `--json`/`--quiet` (checked against the command once it is parsed).
/// Anything else is an error.
pub fn common(arg: Other, a: &mut Args<'_>) -> Result<()> {
    match arg {
        Other::Session => {
            let value = a.value()?;
            a.globals.session = session_name(value, a.usage)?;
            Ok(())
        }
        Other::Json => {
            a.globals.json = true;
            Ok(())
        }
        Other::Quiet => {
            a.globals.quiet = true;
            Ok(())
        }
        Other::Help => Err(Error::Help(
            a.spec.map_or_else(|| a.usage.into(), CommandSpec::help),
        )),
        Other::Stray(msg) => Err(a.error(msg)),
        Other::Unknown(flag) => Err(unknown_option(&flag, a.spec)),
    }
}

/// Read a whole command line, with `commands` as the table of commands.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    commands: &'static [&'static CommandSpec],
) -> Result<Invocation> {
    let mut p = lexopt::Parser::from_args(args);
    let mut globals = Globals::default();
    let name = match before_command(&mut p, &mut globals)? {
        Ok(name) => name,
        Err(command) => return invocation(globals, command),
    };
    let spec = commands.iter().copied().find(|spec| spec.name == name);
    let mut args = Args {
        p: &mut p,
        globals: &mut globals,
        spec,
        usage: spec.map_or(USAGE, |s| s.usage),
    };
    let command = match (name.as_str(), spec) {
        (_, Some(spec)) => (spec.parse)(&mut args)?,
        ("help", None) => parse_help(&mut args, commands)?,
        ("__daemon", None) => parse_daemon(&mut args)?,
        (name, None) => return Err(unknown_command(name, commands)),
    };
    check_output_mode(&globals, &command)?;
    invocation(globals, command)
}

/// The options before the command, then its name; or, for `--help` and
/// `--version`, the whole command.
fn before_command(
    p: &mut lexopt::Parser,
    globals: &mut Globals,
) -> Result<std::result::Result<String, Command>> {
    loop {
        let Some(arg) = p.next()? else {
            return Err(usage_error("no command given", USAGE));
        };
        match arg {
            Long("session") => globals.session = session_name(p.value()?, USAGE)?,
            Short('h') | Long("help") => return Ok(Err(Command::Help(USAGE.into()))),
            Short('V') | Long("version") => return Ok(Err(Command::Version)),
            Value(cmd) => return Ok(Ok(string(cmd, "the command", USAGE)?)),
            Long(flag) => return Err(unknown_option(&format!("--{flag}"), None)),
            Short(c) => return Err(unknown_option(&format!("-{c}"), None)),
        }
    }
}

/// `--json` and `--quiet` go with the commands that print a result, one at a time.
fn check_output_mode(globals: &Globals, command: &Command) -> Result<()> {
    let takes_json = matches!(
        command,
        Command::Run(_)
            | Command::Stop { .. }
            | Command::StopAll { .. }
            | Command::Restart { .. }
            | Command::Wait(_)
            | Command::Up(_)
            | Command::Down { .. }
            | Command::SessionList
    );
    if (globals.json || globals.quiet) && !takes_json {
        let flag = if globals.json { "--json" } else { "--quiet" };
        return Err(usage_error(
            format!("{flag} does not go with this command"),
            USAGE,
        ));
    }
    if globals.json && globals.quiet {
        return Err(usage_error("--json and --quiet do not go together", USAGE));
    }
    Ok(())
}

fn invocation(g: Globals, command: Command) -> Result<Invocation> {
    let flag = (!g.session.is_empty()).then_some(g.session);
    let env = std::env::var(crate::session::ENV).ok();
    let chosen = crate::session::choose(flag, env, std::env::current_dir)?;
    // `--session` was checked as it was read; this catches the environment's, so a
    // bad name is a usage error before any daemon or file is touched.
    let uses_session = !matches!(
        command,
        Command::Help(_) | Command::Version | Command::Daemon { .. }
    );
    if uses_session && let Err(e) = crate::paths::check_session_name(&chosen.name) {
        let env = crate::session::ENV;
        return Err(usage_error(format!("{e} (from ${env})"), USAGE));
    }
    Ok(Invocation {
        session: chosen.name,
        session_given: chosen.given,
        session_root: chosen.root,
        json: g.json,
        quiet: g.quiet,
        command,
    })
}

fn session_name(value: OsString, usage: &'static str) -> Result<String> {
    let name = string(value, "--session", usage)?;
    if name.is_empty() {
        return Err(usage_error("--session needs a name", usage));
    }
    if name != crate::session::AUTO {
        crate::paths::check_session_name(&name).map_err(|e| usage_error(e.to_string(), usage))?;
    }
    Ok(name)
}

/// `help [COMMAND]`: the usage of COMMAND, exactly as `COMMAND --help` gives it.
fn parse_help(a: &mut Args<'_>, commands: &'static [&'static CommandSpec]) -> Result<Command> {
    let mut topic = None;
    while let Some(arg) = a.p.next()? {
        match arg {
            Value(v) if topic.is_none() => topic = Some(v),
            Short('h') | Long("help") => {}
            _ => return Err(usage_error(other_message(arg), USAGE)),
        }
    }
    let Some(topic) = topic else {
        return Ok(Command::Help(USAGE.into()));
    };
    match parse([topic, OsString::from("--help")], commands) {
        Err(Error::Help(usage)) => Ok(Command::Help(usage)),
        Err(e) => Err(e),
        Ok(_) => Ok(Command::Help(USAGE.into())),
    }
}

/// What to say about an argument nothing takes.
fn other_message(arg: lexopt::Arg<'_>) -> String {
    match arg {
        Value(v) => format!("unexpected argument '{}'", v.to_string_lossy()),
        _ => arg.unexpected().to_string(),
    }
}

/// Internal: `__daemon SESSION [--ready-fd N]`, as the CLI starts the daemon.
fn parse_daemon(a: &mut Args<'_>) -> Result<Command> {
    let mut ready_fd = None;
    let mut named = None;
    while let Some(arg) = a.p.next()? {
        match arg {
            Long("ready-fd") => ready_fd = Some(a.number("--ready-fd", "a descriptor")?),
            Value(v) if named.is_none() => named = Some(string(v, "the session", USAGE)?),
            _ => common(other(arg), a)?,
        }
    }
    if let Some(named) = named {
        a.globals.session = named;
    }
    Ok(Command::Daemon { ready_fd })
}

/// `unknown option '--jsn' for status; did you mean '--json'?`, or, with nothing
/// close, where to look. One line, no usage dump: the hint is the useful part.
fn unknown_option(flag: &str, spec: Option<&CommandSpec>) -> Error {
    let own = spec.map_or(TOP_FLAGS, |s| s.flags);
    let close = flag.strip_prefix("--").and_then(|typed| {
        let flags = own.iter().chain(COMMON_FLAGS).map(|f| f.name);
        closest(typed, flags)
    });
    let (for_command, help) = match spec {
        Some(s) => (
            format!(" for {}", s.name),
            format!("agent-procs {} --help", s.name),
        ),
        None => (String::new(), "agent-procs --help".to_string()),
    };
    let msg = match close {
        Some(f) => format!("unknown option '{flag}'{for_command}; did you mean '--{f}'?"),
        None => format!("unknown option '{flag}'{for_command}; see '{help}'"),
    };
    usage_error(msg, "")
}

/// `unknown command 'stauts'; did you mean 'status'?`, or where to look.
fn unknown_command(typed: &str, commands: &[&CommandSpec]) -> Error {
    let names = commands.iter().map(|s| s.name).chain(["help"]);
    let msg = match closest(typed, names) {
        Some(name) => format!("unknown command '{typed}'; did you mean '{name}'?"),
        None => format!("unknown command '{typed}'; see 'agent-procs --help'"),
    };
    usage_error(msg, "")
}

/// The candidate nearest to `typed`, if near enough to be a slip of the keyboard:
/// an edit distance (with swaps of neighbours, as `stauts` for `status`) of at
/// most 1 for words of up to 3 letters, 2 up to 6, else 3. Of equally near ones a
/// word `typed` begins (`stat`: status, not stop) wins, then the first.
pub fn closest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let typed = typed.to_ascii_lowercase();
    let limit = match typed.chars().count() {
        0 => return None,
        1..=3 => 1,
        4..=6 => 2,
        _ => 3,
    };
    let mut best: Option<((usize, bool), &str)> = None;
    for candidate in candidates {
        let d = crate::spelling::distance(&typed, candidate);
        let rank = (d, !candidate.starts_with(&typed));
        if d <= limit && best.is_none_or(|(b, _)| rank < b) {
            best = Some((rank, candidate));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::COMMANDS as COMMAND_TABLE;

    /// Every command name, written out, to catch one dropped from the table.
    const COMMANDS: &[&str] = &[
        "run",
        "stop",
        "stop-all",
        "restart",
        "status",
        "events",
        "logs",
        "wait",
        "up",
        "down",
        "ui",
        "session",
        "config",
        "export",
        "completions",
        "mcp",
    ];

    fn parse_str(line: &str) -> Result<Invocation> {
        crate::cmd::parse(line.split_whitespace().map(OsString::from))
    }

    fn command(line: &str) -> Command {
        parse_str(line)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .command
    }

    #[test]
    fn session_is_accepted_before_and_after_the_command() {
        assert_eq!(parse_str("--session a status").unwrap().session, "a");
        assert_eq!(parse_str("status --session b").unwrap().session, "b");
        assert_eq!(parse_str("status").unwrap().session, "default");
    }

    #[test]
    fn usage_errors_name_the_problem() {
        let cases = [
            ("", "no command given"),
            (
                "frobnicate",
                "unknown command 'frobnicate'; see 'agent-procs --help'",
            ),
            ("run", "run needs a command"),
            (
                "run x --port 70000",
                "--port takes a port number from 1 to 65535, not '70000'",
            ),
            (
                "run x --env NOEQUALS",
                "--env takes KEY=VALUE, not 'NOEQUALS'",
            ),
            ("stop", "missing process name or id"),
            (
                "stop web --timeout soon",
                "--timeout takes a number of seconds, not 'soon'",
            ),
            (
                "wait web",
                "say what to wait for: --until PAT, --exit, --port P or --http URL",
            ),
            (
                "wait web --port 80 --exit",
                "--port and --http go alone, not with each other, --until or --exit",
            ),
            (
                "wait web --port 0",
                "--port takes a port number from 1 to 65535, not '0'",
            ),
            (
                "wait web --http https://x/",
                "invalid URL 'https://x/': only http:// URLs can be probed",
            ),
            (
                "up --only a,,b",
                "--only takes names separated by commas, not 'a,,b'",
            ),
            ("up web", "unexpected argument 'web'"),
            ("wait web --exit --regex", "--regex goes with --until"),
            ("logs", "missing process name (or --all for every process)"),
            ("logs web --all", "give a process name or --all, not both"),
            (
                "logs web --lines 3",
                "--timeout and --lines go with --follow",
            ),
            (
                "status --jsn",
                "unknown option '--jsn' for status; did you mean '--json'?",
            ),
            ("session", "session needs a subcommand: list or clean"),
        ];
        for (line, want) in cases {
            match parse_str(line) {
                Err(e @ Error::Usage { .. }) => assert_eq!(e.to_string(), want, "{line}"),
                other => panic!("{line}: expected a usage error, got {other:?}"),
            }
        }
        let empty = crate::cmd::parse(["--session", "", "status"].map(OsString::from));
        assert!(matches!(empty, Err(Error::Usage { msg, .. }) if msg == "--session needs a name"));
    }

    #[test]
    fn slips_of_the_keyboard_find_the_word_meant() {
        let commands = || COMMAND_TABLE.iter().map(|c| c.name);
        let cases = [
            ("stauts", Some("status")),
            ("stat", Some("status")),
            ("log", Some("logs")),
            ("Restart", Some("restart")),
            ("stop-al", Some("stop-all")),
            ("exprot", Some("export")),
            ("frobnicate", None),
            ("xy", None),
            ("", None),
        ];
        for (typed, want) in cases {
            assert_eq!(closest(typed, commands()), want, "{typed}");
        }
    }

    #[test]
    fn a_misspelled_flag_is_matched_against_that_commands_own_flags() {
        let cases = [
            (
                "logs web --tial 3",
                "unknown option '--tial' for logs; did you mean '--tail'?",
            ),
            (
                "logs web --folow",
                "unknown option '--folow' for logs; did you mean '--follow'?",
            ),
            (
                "run x --nmae a",
                "unknown option '--nmae' for run; did you mean '--name'?",
            ),
            (
                "status --sesion a",
                "unknown option '--sesion' for status; did you mean '--session'?",
            ),
            (
                "--verison",
                "unknown option '--verison'; did you mean '--version'?",
            ),
            // A flag of another command is not offered.
            (
                "stop web --follow",
                "unknown option '--follow' for stop; see 'agent-procs stop --help'",
            ),
            (
                "status -x",
                "unknown option '-x' for status; see 'agent-procs status --help'",
            ),
            ("stpo web", "unknown command 'stpo'; did you mean 'stop'?"),
            (
                "session lsit",
                "unknown session command 'lsit'; did you mean 'list'?",
            ),
            (
                "config chekc",
                "unknown config command 'chekc'; did you mean 'check'?",
            ),
            ("-x status", "unknown option '-x'; see 'agent-procs --help'"),
        ];
        for (line, want) in cases {
            match parse_str(line) {
                Err(Error::Usage { msg, usage: "" }) => assert_eq!(msg, want, "{line}"),
                other => panic!("{line}: expected a one-line usage error, got {other:?}"),
            }
        }
        // Every command's help is its own entry's usage, which names it first.
        for spec in COMMAND_TABLE {
            let Err(Error::Help(usage)) = parse_str(&format!("{} --help", spec.name)) else {
                panic!("{} --help gives no usage", spec.name)
            };
            assert_eq!(usage, spec.help(), "{}", spec.name);
            let name = usage
                .strip_prefix("usage: agent-procs ")
                .and_then(|rest| rest.split_whitespace().next());
            assert_eq!(
                name,
                Some(spec.name),
                "{}: its usage names another",
                spec.name
            );
        }
    }

    #[test]
    fn help_command_is_the_commands_own_help() {
        assert_eq!(command("help"), Command::Help(USAGE.into()));
        assert_eq!(command("help help"), Command::Help(USAGE.into()));
        for spec in COMMAND_TABLE {
            let Err(Error::Help(usage)) = parse_str(&format!("{} --help", spec.name)) else {
                panic!("{} --help gives no usage", spec.name)
            };
            assert_eq!(
                command(&format!("help {}", spec.name)),
                Command::Help(usage)
            );
        }
        assert!(matches!(
            parse_str("help stauts"),
            Err(Error::Usage { msg, .. }) if msg.contains("did you mean 'status'?")
        ));
    }

    #[test]
    fn names_are_checked_before_anything_runs() {
        let Command::Logs(l) = command("logs web -n 7") else {
            panic!()
        };
        assert_eq!((l.tail, l.tail_given), (7, true));
        for line in [
            "run x --name a/b",
            "run x --name .hidden",
            "--session a/b status",
            "status --session ../x",
        ] {
            assert!(
                matches!(parse_str(line), Err(Error::Usage { .. })),
                "{line} is not a usage error"
            );
        }
        assert_eq!(
            parse_str("--session auto-1 status").unwrap().session,
            "auto-1"
        );
    }

    #[test]
    fn help_and_version_are_commands_of_their_own() {
        assert_eq!(command("--help"), Command::Help(USAGE.into()));
        assert_eq!(command("-V"), Command::Version);
        assert!(matches!(
            parse_str("logs --help"),
            Err(Error::Help(u)) if u == crate::cmd::logs::LOGS.help()
        ));
    }

    #[test]
    fn wait_and_logs_defaults_match_0_6() {
        let Command::Logs(l) = command("logs web") else {
            panic!()
        };
        assert_eq!((l.tail, l.stderr, l.follow), (100, false, false));
        let Command::Wait(w) = command("wait web --until ready --timeout 0.5") else {
            panic!()
        };
        assert_eq!(w.timeout, Some(Duration::from_millis(500)));
    }

    #[test]
    fn every_command_has_a_parser() {
        for name in COMMANDS {
            let result = parse_str(&format!("{name} --help"));
            assert!(matches!(result, Err(Error::Help(_))), "{name}: {result:?}");
        }
    }

    /// Errors by which lexopt or `common` refuse a flag rather than its value.
    fn refuses_flag(result: &Result<Invocation>) -> bool {
        let refusals = ["unknown option", "unexpected argument", "missing argument"];
        matches!(result, Err(Error::Usage { msg, .. }) if refusals.iter().any(|r| msg.contains(r)))
    }

    /// The command with its first subcommand or a process name: where a flag
    /// of `spec` can stand.
    fn head_of(spec: &CommandSpec) -> String {
        let mut head = spec.name.to_string();
        if let Some(sub) = spec.subcommands.first() {
            head = format!("{head} {sub}");
        }
        if spec.takes_process {
            head = format!("{head} web");
        }
        head
    }

    #[test]
    fn completion_table_agrees_with_the_parser() {
        let names: Vec<&str> = COMMAND_TABLE.iter().map(|c| c.name).collect();
        assert_eq!(names, COMMANDS);
        for spec in COMMAND_TABLE {
            for sub in spec.subcommands {
                let line = format!("{} {sub}", spec.name);
                assert!(!refuses_flag(&parse_str(&line)), "{line} is refused");
            }
            let head = head_of(spec);
            for f in spec.flags.iter().chain(COMMON_FLAGS) {
                let flag = f.name;
                // Accepted, though the line may still fail a later check.
                let given = match f.takes {
                    Takes::Nothing => format!("{head} --{flag}"),
                    Takes::Word | Takes::Path => format!("{head} --{flag}=1"),
                };
                let result = parse_str(&given);
                assert!(!refuses_flag(&result), "{given}: {result:?}");
                if let Some(c) = f.short {
                    let short = given.replace(&format!("--{flag}"), &format!("-{c}"));
                    let same = parse_str(&short);
                    assert!(!refuses_flag(&same), "{short}: {same:?}");
                }
                // And it takes a value exactly when the table says so.
                let (wrong, want) = match f.takes {
                    Takes::Nothing if flag == "help" => continue, // ends parsing at once
                    Takes::Nothing => (format!("{head} --{flag}=1"), "unexpected argument for"),
                    Takes::Word | Takes::Path => (format!("{head} --{flag}"), "missing argument"),
                };
                match parse_str(&wrong) {
                    Err(Error::Usage { msg, .. }) if msg.contains(want) => {}
                    other => panic!("{wrong}: expected '{want}', got {other:?}"),
                }
            }
        }
        assert_eq!(command("--version"), Command::Version);
        assert_eq!(parse_str("--session=s status").unwrap().session, "s");
    }

    /// The flags an options section shows: each entry's long name, and its
    /// one-letter form as `-c`.
    fn options_shown(help: &str) -> std::collections::BTreeSet<String> {
        let section = help
            .split("\n\noptions:\n")
            .nth(1)
            .and_then(|s| s.split("\n\n").next())
            .unwrap_or_default();
        let mut shown = std::collections::BTreeSet::new();
        for line in section.lines().filter(|l| l.starts_with("  -")) {
            for word in line.split_whitespace().take(2) {
                let word = word.trim_end_matches(',');
                if let Some(long) = word.strip_prefix("--") {
                    shown.insert(long.to_string());
                } else if word.len() == 2 && word.starts_with('-') {
                    shown.insert(word.to_string());
                }
            }
        }
        shown
    }

    /// Whether the parser takes `flag` (`--long` or `-c`) after `head`: its
    /// value may be missing, but it is neither unknown nor refused for the command.
    fn parser_takes(head: &str, flag: &str) -> bool {
        let refusals = ["unknown option", "does not go with this command"];
        let result = parse_str(&format!("{head} {flag}"));
        !matches!(&result, Err(Error::Usage { msg, .. }) if refusals.iter().any(|r| msg.contains(r)))
    }

    /// Every flag the parser takes is in the command's options section, and
    /// every flag there is taken: the section is read back from `--help` as
    /// printed, and the parser is asked about every flag any command has and
    /// every letter. Only `--help` and `--session`, which every command takes
    /// and the top-level help lists, may be left out.
    #[test]
    fn options_section_shows_exactly_the_flags_the_parser_takes() {
        let mut candidates: std::collections::BTreeSet<String> = (b'a'..=b'z')
            .chain(b'A'..=b'Z')
            .map(|c| format!("-{}", c as char))
            .collect();
        for spec in COMMAND_TABLE {
            candidates.extend(spec.flags.iter().map(|f| format!("--{}", f.name)));
        }
        candidates.extend(TOP_FLAGS.iter().map(|f| format!("--{}", f.name)));
        let mut wrong = Vec::new();
        for spec in COMMAND_TABLE {
            let shown = options_shown(&spec.help());
            let head = head_of(spec);
            for flag in &candidates {
                let is_shown = shown.contains(flag.trim_start_matches("--"));
                let common = ["--help", "-h", "--session"].contains(&flag.as_str());
                let taken = parser_takes(&head, flag);
                if !(is_shown == taken || (common && taken)) {
                    wrong.push(format!(
                        "{}: the parser {} {flag}, its options section {}",
                        spec.name,
                        if taken { "takes" } else { "refuses" },
                        if is_shown { "shows it" } else { "does not" },
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn completion_table_has_every_flag_of_the_usage_texts() {
        let mut kinds = std::collections::BTreeMap::new();
        for f in COMMON_FLAGS.iter().chain(TOP_FLAGS) {
            kinds.insert(f.name, f.takes);
        }
        for spec in COMMAND_TABLE {
            let Err(Error::Help(help)) = parse_str(&format!("{} --help", spec.name)) else {
                panic!("{} --help gives no usage", spec.name)
            };
            let own: std::collections::BTreeSet<&str> = spec.flags.iter().map(|f| f.name).collect();
            // The synopsis and the prose name no flag the table lacks.
            for flag in &long_flags(&help, "-") {
                let known =
                    own.contains(flag.as_str()) || COMMON_FLAGS.iter().any(|f| f.name == flag);
                assert!(
                    known,
                    "{} --{flag} is in its usage, not in COMMAND_TABLE",
                    spec.name
                );
            }
            for f in spec.flags {
                // The scripts skip a flag's value by the flag's name alone.
                let first = *kinds.entry(f.name).or_insert(f.takes);
                assert_eq!(
                    first, f.takes,
                    "--{} takes different things in different commands",
                    f.name
                );
                // A value is named exactly when one is taken.
                assert_eq!(
                    f.value.is_empty(),
                    f.takes == Takes::Nothing,
                    "{} --{}",
                    spec.name,
                    f.name
                );
            }
            // Menus show these in single quotes.
            assert!(!spec.about.contains(['\'', '\\']), "{}", spec.about);
        }
        for flag in long_flags(USAGE, "-") {
            assert!(
                kinds.contains_key(flag.as_str()),
                "--{flag} is in USAGE, not in the table"
            );
        }
    }

    #[test]
    fn options_are_written_in_two_columns() {
        let mut out = String::new();
        Flag::word("tail", "N", "show the last N lines\nor more")
            .or_short('n')
            .write_option(&mut out);
        assert_eq!(
            out,
            "  -n, --tail N    show the last N lines\n                  or more"
        );
        // A flag as wide as the column puts its help under it.
        let mut out = String::new();
        Flag::word("max-restarts", "N", "give up").write_option(&mut out);
        assert_eq!(out, "  --max-restarts N\n                  give up");
        let mut out = String::new();
        Flag::switch("resources", "add")
            .or_short('r')
            .write_option(&mut out);
        assert_eq!(out, "  -r, --resources add");
    }

    /// The long options in `text`: `--word` with `dash` standing for one hyphen
    /// (`-` in usage texts, `\-` in roff). A bare `--` (end of options) is not one.
    fn long_flags(text: &str, dash: &str) -> std::collections::BTreeSet<String> {
        let lead = dash.repeat(2);
        let mut flags = std::collections::BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find(&lead) {
            rest = &rest[at + lead.len()..];
            let mut flag = String::new();
            loop {
                if let Some(c) = rest.chars().next().filter(char::is_ascii_alphanumeric) {
                    flag.push(c);
                    rest = &rest[1..];
                } else if !flag.is_empty()
                    && rest.starts_with(dash)
                    && rest[dash.len()..].starts_with(|c: char| c.is_ascii_alphanumeric())
                {
                    flag.push('-');
                    rest = &rest[dash.len()..];
                } else {
                    break;
                }
            }
            if !flag.is_empty() {
                flags.insert(flag);
            }
        }
        flags
    }

    #[test]
    fn man_page_documents_every_command_and_flag() {
        let page = include_str!("../man/agent-procs.1");
        // The top-level usage and every command's, from the table.
        let usages: Vec<String> = [USAGE.to_string()]
            .into_iter()
            .chain(COMMAND_TABLE.iter().map(|spec| spec.help()))
            .collect();

        // Every command is the tag of an entry in COMMANDS.
        let commands = page
            .split("\n.SH COMMANDS\n")
            .nth(1)
            .and_then(|s| s.split("\n.SH ").next())
            .expect("the page has a COMMANDS section");
        let tagged: Vec<String> = commands
            .lines()
            .zip(commands.lines().skip(1))
            .filter(|(line, _)| *line == ".TP")
            .filter_map(|(_, tag)| {
                let tag = tag.replace(r"\-", "-");
                let (_macro, args) = tag.split_once(' ')?;
                let word = args.trim_start_matches('"').split([' ', '"']).next()?;
                Some(word.to_string())
            })
            .collect();
        for name in COMMANDS {
            assert!(
                tagged.iter().any(|t| t == name),
                "agent-procs(1) has no COMMANDS entry for '{name}'"
            );
        }

        // Options are written \-\-flag in roff, never with plain hyphens.
        assert!(
            !page.replace(r"\-\-", "").contains("--"),
            "agent-procs(1) has a '--' that should be written '\\-\\-'"
        );
        let in_usage: std::collections::BTreeSet<String> =
            usages.iter().flat_map(|u| long_flags(u, "-")).collect();
        let in_page = long_flags(page, r"\-");
        for flag in &in_usage {
            assert!(
                in_page.contains(flag),
                "agent-procs(1) does not document --{flag}"
            );
        }
        // A one-letter form is tagged beside its long flag, as `.BR \-q ", " \-\-quiet`.
        for f in COMMAND_TABLE.iter().flat_map(|spec| spec.flags) {
            let Some(c) = f.short else { continue };
            let long = format!(r"\-\-{}", f.name.replace('-', r"\-"));
            let short = format!(r"\-{c}");
            assert!(
                page.lines()
                    .any(|line| line.contains(&long)
                        && line.split([' ', '"']).any(|word| word == short)),
                "agent-procs(1) does not give -{c} beside --{}",
                f.name
            );
        }
        // COMPATIBILITY names the 0.6 options this version does not have yet; they
        // must stay unknown to the parser until they are documented properly.
        let not_yet: [&str; 0] = [];
        for flag in &in_page {
            if not_yet.contains(&flag.as_str()) {
                assert!(!in_usage.contains(flag), "--{flag} is in a usage text now");
                let line = format!("run x --{flag}");
                assert!(
                    matches!(parse_str(&line), Err(Error::Usage { .. })),
                    "{line} parses, but agent-procs(1) says it does not exist"
                );
            } else {
                assert!(
                    in_usage.contains(flag),
                    "agent-procs(1) documents --{flag}, which no usage text mentions"
                );
            }
        }
    }
}
