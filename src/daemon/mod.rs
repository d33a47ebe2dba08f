//! The daemon: one thread, one `mio::Poll`. `event_loop.rs` is the loop (the
//! only file that touches the poll registry); the other files are the
//! components it routes between (ARCHITECTURE.md, "Daemon components").

mod action;
mod clients;
mod control;
mod event_loop;
mod events;
mod follow;
mod ids;
mod lifecycle;
mod lines;
mod output;
mod procs;
mod readiness;
mod resources;
mod runs;
mod signals;
mod spawn;
mod spec;
mod starts;
mod startup;
mod state;
mod stops;
mod supervise;
mod supervisor;
mod survivors;
mod timers;
mod up_run;
mod waits;
mod watch;

pub use event_loop::run;
/// For `agent-procs mcp`, which ends on the same signals through the same kind of pipe.
pub(crate) use signals::signal_pipe;

/// The daemon executable's whole program (`agent-procs-daemon __daemon SESSION
/// [--ready-fd N]`): no CLI parser, so the CLI's code stays out of that binary.
pub fn main_entry() -> i32 {
    match startup::parse_args(std::env::args_os().skip(1)) {
        Ok((session, ready_fd)) => run(&session, ready_fd),
        Err(e) => {
            eprintln!("agent-procs: {e}");
            64
        }
    }
}
