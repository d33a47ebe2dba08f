//! Building and starting one child: its argv (exec'd directly when the command has
//! no shell syntax, else `sh -c`), environment, directory and process group, and
//! handing its output pipes over as non-blocking receivers. The loop registers them.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use super::spec::Spec;

pub struct Spawned {
    pub pid: u32,
    pub stdout: mio::unix::pipe::Receiver,
    pub stderr: mio::unix::pipe::Receiver,
    /// Whether the pipes were grown to `PIPE_SIZE` (they count against a budget).
    pub grown: bool,
}

/// Words of the shell's own that only `sh` can run.
const SHELL_WORDS: &[&str] = &[
    ".", ":", "alias", "bg", "break", "case", "cd", "command", "continue", "eval", "exec", "exit",
    "export", "false", "fg", "for", "getopts", "hash", "if", "jobs", "read", "readonly", "return",
    "set", "shift", "source", "test", "times", "trap", "true", "type", "ulimit", "umask",
    "unalias", "unset", "until", "wait", "while", "[",
];

/// The words of `command` when it is a plain `program arg arg` with nothing the
/// shell would interpret (quotes, variables, globs, redirections, `~`, `;`, …);
/// then we exec it in place and save an `sh` process. `None` means "use sh -c".
pub fn plain_words(command: &str) -> Option<Vec<&str>> {
    let plain = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '_' | '-' | '.' | '/' | ':' | '=' | '@' | '%' | '+' | ',')
    };
    if !command.chars().all(|c| plain(c) || c == ' ' || c == '\t') {
        return None;
    }
    let words: Vec<&str> = command
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect();
    let first = *words.first()?;
    // `A=1 prog` is an assignment, and builtins do not exist as programs.
    if first.contains('=') || SHELL_WORDS.contains(&first) {
        return None;
    }
    Some(words)
}

/// Find `program` the way `execvp` would, on the child's `PATH`.
fn resolve(program: &str, path_var: Option<&str>) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let search = path_var.unwrap_or("/usr/local/bin:/usr/bin:/bin");
    search
        .split(':')
        .map(|dir| {
            if dir.is_empty() {
                Path::new(".")
            } else {
                Path::new(dir)
            }
        })
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access reads the NUL-terminated path we own; no other memory is touched.
    let ok = unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0;
    ok && path.is_file()
}

/// Start the child in its own process group with stdin from /dev/null and both
/// output streams piped. Errors are worded for the `run` caller.
/// `grow`: try to give the output pipes `PIPE_SIZE` of room.
pub fn spawn(spec: &Spec, name: &str, grow: bool) -> Result<Spawned, String> {
    match std::fs::metadata(&spec.cwd) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "working directory {} is not a directory",
                spec.cwd.display()
            ));
        }
        Err(e) => {
            return Err(format!(
                "working directory {}: {}",
                spec.cwd.display(),
                crate::error::describe_io(&e)
            ));
        }
    }
    let mut env: HashMap<String, String> = match &spec.base_env {
        Some(base) => HashMap::clone(base),
        None => std::env::vars().collect(),
    };
    if let Some(port) = spec.port {
        env.insert("PORT".into(), port.to_string());
        env.insert("HOST".into(), "127.0.0.1".into());
    }
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    // Tells which process a child that leaves its group belongs to (survivors.rs).
    env.insert(super::survivors::MARKER.into(), name.into());

    let mut cmd = match plain_words(&spec.command) {
        Some(words) => {
            let program = resolve(words[0], env.get("PATH").map(String::as_str))
                .ok_or_else(|| format!("cannot start '{}': command not found", words[0]))?;
            let mut cmd = Command::new(program);
            cmd.arg0(words[0]).args(&words[1..]);
            cmd
        }
        None => {
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c").arg(OsStr::new(&spec.command));
            cmd
        }
    };
    cmd.env_clear()
        .envs(&env)
        .current_dir(&spec.cwd)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| spawn_error(&spec.command, &e))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err("internal error: the child's output pipes are missing".into());
    };
    let stdout = mio::unix::pipe::Receiver::from(stdout);
    let stderr = mio::unix::pipe::Receiver::from(stderr);
    stdout
        .set_nonblocking(true)
        .map_err(|e| spawn_error(&spec.command, &e))?;
    stderr
        .set_nonblocking(true)
        .map_err(|e| spawn_error(&spec.command, &e))?;
    let grown = grow
        && [&stdout, &stderr]
            .iter()
            .all(|pipe| crate::sys::grow_pipe(pipe.as_raw_fd()));
    // The reap loop owns exit statuses from here; dropping `Child` neither waits nor kills.
    Ok(Spawned {
        pid: child.id(),
        stdout,
        stderr,
        grown,
    })
}

fn spawn_error(command: &str, err: &io::Error) -> String {
    let reason = match err.raw_os_error() {
        Some(libc::EAGAIN) => {
            "the system refused to create a process (too many processes?)".to_string()
        }
        Some(libc::EMFILE) | Some(libc::ENFILE) => "out of file descriptors".to_string(),
        _ => crate::error::describe_io(err),
    };
    format!("cannot start '{command}': {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_commands_are_split_and_shell_syntax_is_not() {
        assert_eq!(
            plain_words("python3 -m http.server 8000"),
            Some(vec!["python3", "-m", "http.server", "8000"])
        );
        assert_eq!(plain_words("  sleep\t10 "), Some(vec!["sleep", "10"]));
        for shell in [
            "echo $HOME",
            "a && b",
            "a | b",
            "echo 'x'",
            "echo \"x\"",
            "ls *.rs",
            "cd /tmp",
            "A=1 prog",
            "x > f",
            "~/bin/x",
            "a;b",
            "(a)",
            "echo \\n",
            "exit 3",
            "",
            "   ",
            "prog\nother",
        ] {
            assert_eq!(plain_words(shell), None, "{shell:?}");
        }
    }

    #[test]
    fn programs_are_found_on_the_given_path() {
        assert_eq!(
            resolve("sh", Some("/nonexistent:/bin")),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            resolve("surely-not-a-program-xyz", Some("/bin:/usr/bin")),
            None
        );
        assert_eq!(resolve("./rel", None), Some(PathBuf::from("./rel")));
    }
}
