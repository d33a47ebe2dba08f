//! agent-procs: argv → `cli::parse` → the client, or the daemon; errors → exit codes.

// No Rust runtime start-up (stack-guard probing of /proc/self/maps, an alternate
// signal stack): a CLI call is dominated by process start, and this saves ~70 µs
// of it. std still works; arguments come from glibc's init hook. SIGPIPE keeps
// its default, so `agent-procs logs x | head` ends quietly like any Unix filter;
// the daemon ignores SIGPIPE itself.
#![cfg_attr(not(test), no_main)]

mod cli;
mod client;
mod completions;
mod config;
mod config_cmd;
mod daemon;
mod error;
mod export;
mod export_cmd;
mod glob;
mod logs;
mod paths;
mod probe;
mod procinfo;
mod protocol;
mod proxy;
mod ratelimit;
mod session;
mod sys;
mod timefmt;
mod ui;
mod up_cmd;
mod yaml;

use error::Error;

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    std::process::exit(agent_procs())
}

/// Unit tests have the test harness's `main`; this keeps the program reachable there.
#[cfg(test)]
const _: fn() -> i32 = agent_procs;

fn agent_procs() -> i32 {
    match cli::parse(std::env::args_os().skip(1)) {
        Ok(cli::Invocation {
            session,
            command: cli::Command::Daemon { ready_fd },
            ..
        }) => daemon::run(&session, ready_fd),
        Ok(invocation) => report(client::run(invocation)),
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
            // The reason, then the synopsis: the first paragraph of the usage text.
            if usage.is_empty() {
                // The message carries its own hint (a did-you-mean, where to look).
                eprintln!("agent-procs: {msg}");
                return 64;
            }
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
