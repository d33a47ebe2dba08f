//! The CLI side's shared services, below the commands (`src/cmd/`): the
//! connection to a session's daemon (starting it when a command creates
//! processes), the printing the commands share, reading logs straight from the
//! files, and the project file. Nothing here knows which command is running.

mod conn;
mod logs;
mod output;
pub mod project;

pub use conn::{
    Conn, caller_env, daemon_error, enable_proxy, millis, one_status, plain_status, unexpected,
};
pub use logs::{LogsRead, read_logs, tail_of_run};
#[cfg(test)]
pub(crate) use output::tests::row as test_process_row;
pub use output::{
    Output, format_bytes, format_uptime, print_line, render_line, status_table, wait_exit_text,
    warn_survivors, write_stdout,
};
