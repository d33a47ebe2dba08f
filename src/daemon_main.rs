//! agent-procs-daemon: the daemon alone, which the CLI starts when it finds this
//! executable next to itself (else it runs `agent-procs __daemon`, the same
//! program). Only `daemon::main_entry` is reachable from here, so the linker
//! leaves out the CLI, the terminal UI and the MCP server: the daemon's private
//! memory is mostly its own code, and this keeps that code small.

// As in main.rs: no Rust runtime start-up; the daemon sets its own signals.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    std::process::exit(agent_procs::daemon::main_entry())
}
