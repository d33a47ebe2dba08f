//! `completions bash|zsh|fish`: print the script (written by `crate::completions`
//! from the command table).

use crate::cli::{Args, Command, CommandSpec, Shell, common, other};
use crate::error::Result;
use lexopt::prelude::*;

pub static COMPLETIONS: CommandSpec = CommandSpec {
    name: "completions",
    about: "print a shell completion script",
    usage: COMPLETIONS_USAGE,
    after: "",
    subcommands: &["bash", "zsh", "fish"],
    flags: &[],
    takes_process: false,
    parse,
};

const COMPLETIONS_USAGE: &str = "\
usage: agent-procs completions bash|zsh|fish

Print a completion script for the shell on stdout. It completes commands, their
flags, and process names, which it asks the session's daemon for (with status)
each time.

bash    source it from ~/.bashrc, or install it as
        share/bash-completion/completions/agent-procs
zsh     install it as _agent-procs in a directory of $fpath
fish    install it as share/fish/vendor_completions.d/agent-procs.fish";

fn parse(a: &mut Args<'_>) -> Result<Command> {
    let mut shell = None;
    while let Some(arg) = a.next_arg()? {
        match arg {
            Value(v) if shell.is_none() => shell = Some(a.word(v, "the shell")?),
            _ => common(other(arg), a)?,
        }
    }
    match shell.as_deref() {
        Some("bash") => Ok(Command::Completions(Shell::Bash)),
        Some("zsh") => Ok(Command::Completions(Shell::Zsh)),
        Some("fish") => Ok(Command::Completions(Shell::Fish)),
        Some(other) => Err(a.error(format!(
            "unknown shell '{other}'; completions are for bash, zsh and fish"
        ))),
        None => Err(a.error("completions needs a shell: bash, zsh or fish")),
    }
}

pub fn run(shell: Shell) -> Result<i32> {
    print!("{}", crate::completions::script(shell, super::COMMANDS));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use crate::cli::{Command, Shell};
    use crate::cmd::testing::{command, parse_line};
    use crate::error::Error;

    #[test]
    fn completions_take_one_known_shell() {
        assert_eq!(
            command("completions fish"),
            Command::Completions(Shell::Fish)
        );
        let cases = [
            (
                "completions",
                "completions needs a shell: bash, zsh or fish",
            ),
            (
                "completions tcsh",
                "unknown shell 'tcsh'; completions are for bash, zsh and fish",
            ),
            ("completions bash zsh", "unexpected argument 'zsh'"),
        ];
        for (line, want) in cases {
            match parse_line(line) {
                Err(e @ Error::Usage { .. }) => assert_eq!(e.to_string(), want, "{line}"),
                other => panic!("{line}: expected a usage error, got {other:?}"),
            }
        }
    }
}
