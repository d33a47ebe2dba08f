//! `make build` links glibc statically by default (issue 19: a CLI call starts
//! without the dynamic loader) and keeps a dynamic build for packagers
//! (`LINK=dynamic`); anything else is refused with the two choices named.
//! The daemon executable is built beside the CLI either way, and stays dynamic.
//! Dry runs (`make -n`): nothing is built.

use std::process::Command;

fn make_dry_run(args: &[&str]) -> Option<(bool, String)> {
    let out = Command::new("make")
        .arg("-n")
        .arg("--no-print-directory")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("LINK")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

#[test]
fn make_build_links_statically_unless_asked_for_a_dynamic_build() {
    let Some((ok, text)) = make_dry_run(&["build"]) else {
        eprintln!("make is not installed; skipping");
        return;
    };
    assert!(ok, "{text}");
    assert!(
        text.contains("--bin agent-procs -- -C target-feature=+crt-static"),
        "the default build is not static: {text}"
    );
    assert!(text.contains("--release --locked"), "{text}");
    // The daemon executable is built too, dynamically (libc's pages shared).
    let daemon = text
        .lines()
        .find(|l| l.contains("--bin agent-procs-daemon"))
        .unwrap_or_else(|| panic!("the daemon executable is not built: {text}"));
    assert!(
        !daemon.contains("crt-static"),
        "the daemon is static: {daemon}"
    );

    let Some((ok, text)) = make_dry_run(&["build", "LINK=dynamic"]) else {
        return;
    };
    assert!(ok, "{text}");
    // `cargo build` without --bin: the CLI and the daemon executable.
    assert!(text.contains("build --release --locked"), "{text}");
    assert!(!text.contains("--bin"), "{text}");
    assert!(
        !text.contains("crt-static"),
        "LINK=dynamic is static: {text}"
    );

    let Some((ok, text)) = make_dry_run(&["build", "LINK=musl"]) else {
        return;
    };
    assert!(!ok, "LINK=musl was accepted: {text}");
    assert!(
        text.contains("LINK must be static or dynamic, not 'musl'"),
        "{text}"
    );
}
