//! The commands, one file each (as cargo's `src/bin/cargo/commands/`): what a
//! command sends, waits for and prints. Below them, `client` holds the
//! connection and the shared printing; the terminal UI (`ui`) and the MCP
//! server (`mcp`) are the implementations of their commands.

pub mod completions;
pub mod config;
pub mod down;
pub mod events;
pub mod export;
pub mod logs;
pub mod mcp;
pub mod run;
pub mod session;
pub mod status;
pub mod stop;
pub mod ui;
pub mod up;
pub mod wait;

use crate::cli::{Command, CommandSpec, Invocation};
use crate::client::Output;
use crate::error::{Error, Result};
use crate::paths::SessionPaths;

/// The command table: every command, in the order `--help`, the completion
/// menus and the man page list them. Each entry lives in its command's file,
/// with its usage text and its parser; `cli` reads the command line with it,
/// and `completions` writes the scripts from it.
pub static COMMANDS: &[&CommandSpec] = &[
    &run::RUN,
    &stop::STOP,
    &stop::STOP_ALL,
    &run::RESTART,
    &status::STATUS,
    &events::EVENTS,
    &logs::LOGS,
    &wait::WAIT,
    &up::UP,
    &down::DOWN,
    &ui::UI,
    &session::SESSION,
    &config::CONFIG,
    &export::EXPORT,
    &completions::COMPLETIONS,
    &mcp::MCP,
];

/// Read a command line (without the program's name) against `COMMANDS`.
pub fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Invocation> {
    crate::cli::parse(args, COMMANDS)
}

/// Carry out one parsed command line (not the daemon's).
pub fn run(inv: Invocation) -> Result<i32> {
    let Invocation {
        session,
        session_given,
        session_root,
        json,
        quiet,
        command,
    } = inv;
    let out = Output { json, quiet };
    let given = session_given.then_some(session.as_str());
    // Commands that touch no session do not need a valid one.
    match command {
        Command::Config(args) => config::run(args),
        Command::Export(args) => export::run(given, args),
        Command::Completions(shell) => completions::run(shell),
        Command::SessionList => session::list(out),
        Command::SessionClean => session::clean(),
        Command::Ui => ui::run(&session),
        Command::Mcp => mcp::run(&session, session_root),
        Command::Help(usage) => {
            println!("{usage}");
            Ok(0)
        }
        Command::Version => {
            println!("agent-procs {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Command::Up(args) => up::run(given, session_root, args, out),
        Command::Down { config } if !session_given => down::by_config(&session, config, out),
        command => {
            let paths = SessionPaths::new(&session)?.with_root(session_root);
            in_session(&paths, command, out)
        }
    }
}

/// The commands that talk to (or read the files of) one valid session.
fn in_session(paths: &SessionPaths, command: Command, out: Output) -> Result<i32> {
    match command {
        Command::Run(args) => run::run(paths, args, out),
        Command::Stop { target, timeout } => stop::stop(paths, target, timeout, out),
        Command::StopAll { timeout } => stop::stop_all(paths, timeout, out),
        Command::Restart { target } => run::restart(paths, target, out),
        Command::Status {
            json,
            target,
            resources,
        } => status::run(paths, json, target, resources),
        Command::Events { since, json } => events::run(paths, since, json),
        Command::Logs(args) if args.follow => logs::follow(paths, args),
        Command::Logs(args) => logs::print(paths, &args),
        Command::Wait(args) => wait::run(paths, args, out),
        Command::Down { .. } => down::run(paths, out),
        Command::SessionList
        | Command::SessionClean
        | Command::Config(_)
        | Command::Export(_)
        | Command::Completions(_)
        | Command::Help(_)
        | Command::Version
        | Command::Up(_)
        | Command::Ui
        | Command::Mcp
        | Command::Daemon { .. } => Err(Error::Failed(
            "internal error: command reached the wrong handler".into(),
        )),
    }
}

/// Reading a command line in the commands' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use crate::cli::{Command, Invocation};
    use crate::error::Result;

    /// `line`, split at whitespace, read against the table.
    pub fn parse_line(line: &str) -> Result<Invocation> {
        super::parse(line.split_whitespace().map(std::ffi::OsString::from))
    }

    /// The command `line` parses to; a panic naming the error if it does not.
    pub fn command(line: &str) -> Command {
        parse_line(line)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .command
    }
}
