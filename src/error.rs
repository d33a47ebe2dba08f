//! The one error type of agent-procs, its exit codes, and the `Context` trait that
//! turns an `io::Error` into a message naming what we were doing.

use std::fmt;
use std::io;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug)]
pub enum Error {
    /// What we were doing, and why it failed.
    Io { what: String, err: io::Error },
    /// A bad command line: the reason, followed by the usage text to print
    /// (empty when the message carries its own hint, as a did-you-mean does).
    Usage { msg: String, usage: &'static str },
    /// A process, log or session that does not exist (exit 2).
    NotFound(String),
    /// Anything else that went wrong, already worded for the user (exit 1).
    Failed(String),
    /// `--help` for a command: print this help on stdout and exit 0.
    Help(String),
    /// The message has been printed already; exit with this code.
    Silent(i32),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Io { .. } | Error::Failed(_) => 1,
            Error::NotFound(_) => 2,
            Error::Usage { .. } => 64,
            Error::Help(_) => 0,
            Error::Silent(code) => *code,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, err } => write!(f, "{what}: {}", describe_io(err)),
            Error::Usage { msg, .. } => f.write_str(msg),
            Error::NotFound(msg) | Error::Failed(msg) => f.write_str(msg),
            Error::Help(usage) => f.write_str(usage),
            Error::Silent(code) => write!(f, "exit {code}"),
        }
    }
}

impl std::error::Error for Error {}

/// `io::Error`'s Display appends "(os error N)"; users want the plain reason, lowercased.
pub fn describe_io(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => std::iter::once(first.to_ascii_lowercase())
            .chain(chars)
            .collect(),
        None => String::new(),
    }
}

/// Our own files are opened with `O_NOFOLLOW`, which fails with ELOOP at a
/// symbolic link: say that plainly rather than "too many levels of symbolic links".
pub fn not_following(err: io::Error) -> io::Error {
    if err.raw_os_error() == Some(libc::ELOOP) {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a symbolic link, which agent-procs never follows (remove it)",
        )
    } else {
        err
    }
}

pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|err| Error::Io { what: what(), err })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_as_plain_lowercase_reasons() {
        let err = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let e = Error::Io {
            what: "connecting to /tmp/x.sock".into(),
            err,
        };
        assert_eq!(
            e.to_string(),
            "connecting to /tmp/x.sock: connection refused"
        );
    }

    #[test]
    fn exit_codes_follow_the_documented_table() {
        assert_eq!(Error::Failed("x".into()).exit_code(), 1);
        assert_eq!(Error::NotFound("x".into()).exit_code(), 2);
        assert_eq!(
            Error::Usage {
                msg: "x".into(),
                usage: ""
            }
            .exit_code(),
            64
        );
    }
}
