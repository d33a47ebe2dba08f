//! skill/SKILL.md, the usage guide for coding agents, stays true: every ```sh
//! block in it runs under `sh -e` in a sandbox of its own and must exit 0 and
//! leave no daemon or process behind (the blocks clean up with `down`; the
//! sandbox's own `down` on drop is only a safety net).

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const SKILL: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/skill/SKILL.md"));

/// No block may run longer than this.
const BLOCK_LIMIT: Duration = Duration::from_secs(60);

/// A ```sh block: the line of its opening fence (1-based) and its text.
struct Block {
    line: usize,
    text: String,
}

/// Every ```sh block of `markdown`, in order; other fences are skipped.
fn sh_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut fence: Option<(bool, Block)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_end();
        match &mut fence {
            None if trimmed.starts_with("```") => {
                let is_sh = trimmed == "```sh";
                let block = Block {
                    line: i + 1,
                    text: String::new(),
                };
                fence = Some((is_sh, block));
            }
            None => {}
            Some(_) if trimmed == "```" => {
                if let Some((true, block)) = fence.take() {
                    blocks.push(block);
                }
            }
            Some((_, block)) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
        }
    }
    assert!(fence.is_none(), "SKILL.md ends inside a code fence");
    blocks
}

/// Pids of live processes whose environment names this sandbox's runtime dir:
/// the daemons and everything they started, since both inherit it.
fn leftovers(sb: &Sandbox) -> Vec<i32> {
    let needle = format!("AGENT_PROCS_RUNTIME_DIR={}\0", sb.runtime.display());
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me && alive(pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

/// Sessions that still have a pid file or socket in the runtime dir.
fn live_sessions(runtime: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(runtime) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".pid")
                .or_else(|| name.strip_suffix(".sock"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Run one block in a fresh sandbox; returns a description of what went wrong.
fn run_block(block: &Block) -> Result<(), String> {
    let sb = Sandbox::new();
    let script = sb.root.join("block.sh");
    std::fs::write(&script, &block.text).expect("writing the block");
    let work = sb.root.join("work");
    std::fs::create_dir_all(&work).expect("creating the work dir");

    let bin_dir = Path::new(BIN).parent().expect("the binary has a directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-e")
        .arg(&script)
        .env("PATH", path)
        .env("PORT_FREE", free_port().to_string())
        .env_remove("NO_COLOR")
        .current_dir(&work)
        .stdin(Stdio::null());
    sb.isolate(&mut cmd);
    let out = run_bounded(cmd, BLOCK_LIMIT);

    let mut problems = Vec::new();
    if out.code != 0 {
        problems.push(format!("exited {}", out.code));
    }
    // What the block left running, before the sandbox's safety net takes over.
    let sessions = live_sessions(&sb.runtime);
    if !sessions.is_empty() {
        problems.push(format!("left daemons for sessions {sessions:?}"));
    }
    let mut left = leftovers(&sb);
    if !left.is_empty() {
        // `down` returns once its processes are gone; allow a moment for reaping.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        for &pid in &left {
            wait_gone(
                pid,
                deadline.saturating_duration_since(std::time::Instant::now()),
            );
        }
        left = leftovers(&sb);
        if !left.is_empty() {
            problems.push(format!("left processes {left:?}"));
        }
    }
    // Safety net for sessions other than the one the sandbox downs on drop.
    for session in &sessions {
        run_bounded(
            sb.command(&["--session", session, "down"]),
            Duration::from_secs(30),
        );
    }
    for pid in leftovers(&sb) {
        kill(pid, libc::SIGKILL);
    }

    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "SKILL.md block at line {}: {}\n--- block\n{}--- stdout\n{}--- stderr\n{}",
        block.line,
        problems.join("; "),
        block.text,
        out.stdout,
        out.stderr
    ))
}

#[test]
fn skill_has_front_matter() {
    let mut lines = SKILL.lines();
    assert_eq!(
        lines.next(),
        Some("---"),
        "SKILL.md starts with front matter"
    );
    let front: Vec<&str> = lines.take_while(|l| *l != "---").collect();
    assert!(
        front.contains(&"name: agent-procs"),
        "front matter has name: agent-procs: {front:?}"
    );
    assert!(
        front.iter().any(|l| l
            .strip_prefix("description: ")
            .is_some_and(|d| d.len() > 40)),
        "front matter has a description: {front:?}"
    );
}

/// The rules the guide preaches hold in its own examples: every `wait` and
/// every `--follow` is bounded.
#[test]
fn skill_examples_bound_every_wait() {
    for block in sh_blocks(SKILL) {
        for (i, line) in block.text.lines().enumerate() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let waits = words
                .windows(2)
                .any(|w| (w[0] == "agent-procs" || w[0] == "ap") && w[1] == "wait")
                || words.contains(&"--follow");
            let bounded = words.contains(&"--timeout")
                || line.contains("--help")
                || (words.contains(&"--follow") && words.contains(&"--lines"));
            assert!(
                !waits || bounded,
                "SKILL.md line {}: a wait without --timeout: {line}",
                block.line + 1 + i
            );
        }
    }
}

#[test]
fn skill_examples_run() {
    let blocks = sh_blocks(SKILL);
    assert!(
        blocks.len() >= 5,
        "expected at least five ```sh recipes in SKILL.md, found {}",
        blocks.len()
    );
    let failures: Vec<String> = blocks.iter().filter_map(|b| run_block(b).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} SKILL.md blocks failed:\n\n{}",
        failures.len(),
        blocks.len(),
        failures.join("\n\n")
    );
}
