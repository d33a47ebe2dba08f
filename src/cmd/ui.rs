//! `ui`: the terminal UI; its implementation is `crate::ui`.

use crate::cli::{Args, Command, CommandSpec, Flag, common, other};
use crate::error::Result;

pub static UI: CommandSpec = CommandSpec {
    name: "ui",
    about: "watch and control processes in a terminal UI",
    usage: UI_USAGE,
    after: "",
    subcommands: &[],
    flags: &[Flag::word(
        "session",
        "NAME",
        "session to watch (default: default)",
    )],
    takes_process: false,
    parse,
};

const UI_USAGE: &str = "\
usage: agent-procs ui

A terminal UI for the session: the processes with their state, restarts, watch
mark and port, beside the selected process's output (its whole history, read
from the log files), live as it comes. Needs a terminal on stdin and stdout.

keys:
  j/k, Up/Down    select a process (or click it; the wheel scrolls)
  e               show stdout, stderr, or both (stderr in its own colour)
  u/d, PgUp/PgDn  scroll half a page, a page; g/G top, bottom; L live
  Space           pause or resume following
  /               filter lines (Tab makes it a regex); Esc clears it
  r, s, x, X      restart, start, stop the selected process; stop all
  ?               help
  q, Q            quit; quit and shut the daemon down (like down)";

fn parse(a: &mut Args<'_>) -> Result<Command> {
    while let Some(arg) = a.next_arg()? {
        common(other(arg), a)?;
    }
    Ok(Command::Ui)
}

pub fn run(session: &str) -> Result<i32> {
    crate::ui::run(session)
}
