//! agent-procs: argv → `cli::parse` → the client, or the daemon; errors → exit codes.

mod cli;
mod client;
mod daemon;
mod error;
mod logs;
mod paths;
mod protocol;
mod sys;
mod timefmt;

use error::Error;

fn main() {
    let code = match cli::parse(std::env::args_os().skip(1)) {
        Ok(cli::Invocation {
            session,
            command: cli::Command::Daemon { ready_fd },
        }) => daemon::run(&session, ready_fd),
        Ok(invocation) => report(client::run(invocation)),
        Err(e) => report(Err(e)),
    };
    std::process::exit(code);
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
