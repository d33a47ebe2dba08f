//! Everything the program asks of the operating system beyond std and plain
//! POSIX, behind one surface, one file per OS (`linux.rs` today). Callers write
//! `crate::sys::…` and never `/proc`, inotify, `prctl` or `SO_PEERCRED`
//! themselves; a port to another OS is a new file here that provides the same
//! names (ARCHITECTURE.md, "Porting", lists what each would be on macOS and the
//! BSDs).
//!
//! The surface, by who uses it:
//! - descriptors and files: `pipe`, `clear_cloexec`, `lock_exclusive`,
//!   `try_lock_exclusive`, `wait_readable`, `open_raw`, `open_at`, `rename_at`,
//!   `unlink_at`, `metadata_at`, `fd_limit`, `out_of_descriptors`,
//!   `open_descriptors`
//! - who is calling: `euid`, `peer_uid` (the uid at the other end of a Unix socket)
//! - the daemon's process model: `set_child_subreaper` (orphaned grandchildren
//!   come back to the daemon), `start_ticks` (a process's identity across pid
//!   reuse), `command_of`, `environ`, `cmdline`, `group_in_session`, and
//!   `procinfo` (resources, members of a group, listening ports, port holders)
//! - output pipes: `PIPE_SIZE`, `grow_pipe`, `big_pipe_budget`
//! - file watching: `DirWatch` (a watch per directory, change events read from
//!   one descriptor the loop polls), `watch_limit_error`
//! - memory and clocks: `trim_heap`, `page_size`, `clock_ticks`
//!
//! Plain POSIX calls (kill, waitpid, setsid, termios, signals) stay with the code
//! that uses them: every Unix has them alike.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(not(target_os = "linux"))]
compile_error!(
    "agent-procs runs on Linux only so far: src/sys/ has no file for this OS yet \
     (ARCHITECTURE.md, \"Porting\", says what one needs)"
);
