//! `mcp`: the Model Context Protocol server on stdio; its implementation is
//! `crate::mcp`.

use crate::cli::{Args, Command, CommandSpec, Flag, common, other};
use crate::error::Result;
use std::path::PathBuf;

pub static MCP: CommandSpec = CommandSpec {
    name: "mcp",
    about: "serve the Model Context Protocol on stdin/stdout",
    usage: MCP_USAGE,
    after: "",
    subcommands: &[],
    flags: &[Flag::word(
        "session",
        "NAME",
        "session to use (default: $AGENT_PROCS_SESSION, else auto:\n\
             one derived from the git worktree of the current directory)",
    )],
    takes_process: false,
    parse,
};

const MCP_USAGE: &str = "\
usage: agent-procs mcp [--session NAME]

Serve the Model Context Protocol over stdio (JSON-RPC, one message per line) for
coding agents, with the tools start, up, stop, restart, down, status, logs and
wait, as a client of the session's daemon. Processes keep running when the
agent disconnects; only the down tool stops them. Register it with, e.g.,
claude mcp add agent-procs -- agent-procs mcp";

fn parse(a: &mut Args<'_>) -> Result<Command> {
    while let Some(arg) = a.next_arg()? {
        common(other(arg), a)?;
    }
    // Parallel agents in separate worktrees must never share a session.
    let from_env = std::env::var(crate::session::ENV).is_ok_and(|e| !e.is_empty());
    if a.globals.session.is_empty() && !from_env {
        a.globals.session = crate::session::AUTO.into();
    }
    Ok(Command::Mcp)
}

pub fn run(session: &str, root: Option<PathBuf>) -> Result<i32> {
    crate::mcp::run(session, root)
}

#[cfg(test)]
mod tests {
    use crate::cli::Command;
    use crate::cmd::testing::parse_line;

    #[test]
    fn mcp_defaults_to_the_worktree_session() {
        // `status` would be `default` here (the test below); `mcp` is `auto`.
        let inv = parse_line("mcp").unwrap();
        assert_eq!(inv.command, Command::Mcp);
        assert!(
            inv.session_root.is_some(),
            "derived from a worktree: {inv:?}"
        );
        assert_ne!(inv.session, "default");
        assert_eq!(parse_line("mcp --session a").unwrap().session, "a");
        assert!(parse_line("mcp --json").is_err());
        assert!(parse_line("mcp extra").is_err());
    }
}
