//! agent-procs: the binary. Everything lives in the library (`src/lib.rs`).

// No Rust runtime start-up (stack-guard probing of /proc/self/maps, an alternate
// signal stack): a CLI call is dominated by process start, and this saves ~70 µs
// of it. std still works; arguments come from glibc's init hook. SIGPIPE keeps
// its default, so `agent-procs logs x | head` ends quietly like any Unix filter;
// the daemon ignores SIGPIPE itself.
// The unit-test build of this file keeps the harness's `main` (it has no tests,
// but `cargo test` runs it, and our `main` would parse the harness's arguments).
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    std::process::exit(agent_procs::main_entry())
}
