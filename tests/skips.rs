//! A test that needs a program the machine lacks skips itself with a notice the
//! person running `cargo test` sees, and fails instead under
//! AGENT_PROCS_REQUIRE_TOOLS=1 (as in CI), so nothing can be skipped unseen there.

mod common;

use common::*;
use std::process::Command;

/// Set for the child test process; without it the probe below does nothing.
const CHILD: &str = "AGENT_PROCS_SKIPS_CHILD";

/// Not a real test on its own: run by the test below in a child test process.
#[test]
fn needs_a_program_nobody_has() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    if !need(&["agent-procs-no-such-program"], "nothing; this is a test") {
        return;
    }
    panic!("a missing program was taken for installed");
}

/// Runs `needs_a_program_nobody_has` alone in a child test process.
fn child(require: bool) -> std::process::Output {
    let me = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(me);
    cmd.args(["--exact", "needs_a_program_nobody_has", "--test-threads=1"])
        .env(CHILD, "1");
    if require {
        cmd.env(REQUIRE_TOOLS, "1");
    } else {
        cmd.env_remove(REQUIRE_TOOLS);
    }
    cmd.output().expect("running the test binary")
}

#[test]
fn a_missing_program_skips_visibly_or_fails_when_required() {
    let out = child(false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "SKIPPED needs_a_program_nobody_has: agent-procs-no-such-program not installed"
        ),
        "no visible notice on stderr:\n{stderr}"
    );

    let out = child(true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "it passed although required:\n{stdout}"
    );
    assert!(
        stdout.contains("AGENT_PROCS_REQUIRE_TOOLS=1 makes it mandatory"),
        "{stdout}"
    );
}

#[test]
fn installed_programs_are_found_on_the_path_or_by_absolute_path() {
    assert!(installed("sh"));
    assert!(installed("/bin/sh"));
    assert!(!installed("/nonexistent/sh"));
    assert!(!installed("agent-procs-no-such-program"));
}
