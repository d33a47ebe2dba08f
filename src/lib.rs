//! agent-procs as a library: every module of the program, for the thin binary in
//! `main.rs`, the integration tests and the fuzz targets. The daemon and the CLI
//! are one binary; this boundary only lets other crates call the parsers and
//! the entry point without including files by path.

pub mod cli;
pub mod client;
pub mod cmd;
pub mod completions;
pub mod config;
pub mod daemon;
pub mod error;
pub mod export;
pub mod glob;
pub mod logs;
pub mod mcp;
pub mod paths;
pub mod probe;
pub mod protocol;
pub mod proxy;
pub mod ratelimit;
pub mod session;
pub mod shell;
pub mod spelling;
pub mod sys;
pub mod timefmt;
pub mod ui;
pub mod yaml;

use error::Error;

/// The whole program: argv -> `cmd::parse` (`cli` with the command table) -> a command, or the daemon; the
/// exit code it returns.
pub fn main_entry() -> i32 {
    match cmd::parse(std::env::args_os().skip(1)) {
        Ok(cli::Invocation {
            session,
            command: cli::Command::Daemon { ready_fd },
            ..
        }) => daemon::run(&session, ready_fd),
        Ok(invocation) => report(cmd::run(invocation)),
        Err(e) => report(Err(e)),
    }
}

/// Print an error the way every command does, and map it to its exit code.
fn report(result: error::Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(Error::Help(usage)) => {
            println!("{usage}");
            0
        }
        Err(Error::Usage { msg, usage }) => {
            if usage.is_empty() {
                // The message carries its own hint (a did-you-mean, where to look).
                eprintln!("agent-procs: {msg}");
                return 64;
            }
            // The reason, then the synopsis: the first paragraph of the usage text.
            let synopsis = usage.split("\n\n").next().unwrap_or(usage);
            eprintln!("agent-procs: {msg}\n{synopsis}\n(see agent-procs --help or agent-procs(1))");
            64
        }
        Err(Error::Silent(code)) => code,
        Err(e) => {
            eprintln!("agent-procs: {e}");
            e.exit_code()
        }
    }
}
