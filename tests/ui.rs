//! `agent-procs ui` end to end: the real binary in a tmux pane against a real
//! daemon; keys go in with `send-keys`, the screen comes back with `capture-pane`.
//! Each test has its own tmux server, killed on drop. Skipped without tmux.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long any expected screen may take to appear.
const PATIENCE: Duration = Duration::from_secs(15);

/// A tmux server of our own running one pane; killed on drop.
struct Pane {
    socket: String,
}

impl Pane {
    /// Run `script` (a sh script) in a 120x40 pane, with the sandbox's environment.
    fn start(sb: &Sandbox, tag: &str, script: &str) -> Pane {
        let socket = format!("apui-{}-{tag}", std::process::id());
        let command = format!(
            "env AGENT_PROCS_RUNTIME_DIR='{}' XDG_STATE_HOME='{}' PATH='{}:/usr/bin:/bin' sh -c '{}'",
            sb.runtime.display(),
            sb.state.display(),
            Path::new(BIN)
                .parent()
                .map_or(PathBuf::new(), Path::to_path_buf)
                .display(),
            script.replace('\'', r"'\''"),
        );
        let pane = Pane { socket };
        let status = pane
            .tmux()
            .args(["new-session", "-d", "-x", "120", "-y", "40", &command])
            .status()
            .expect("starting tmux");
        assert!(status.success(), "tmux new-session failed");
        pane
    }

    fn tmux(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket, "-f", "/dev/null"]);
        cmd
    }

    fn keys(&self, keys: &[&str]) {
        let status = self
            .tmux()
            .args(["send-keys", "-t", "0"])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "0"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Poll the pane until `ok` holds, or fail showing the last screen.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        eventually(PATIENCE, what, || {
            let screen = self.screen();
            if ok(&screen) {
                Ok(screen)
            } else {
                Err(format!("the pane shows:\n{screen}"))
            }
        })
    }

    /// The screen with its scrollback, oldest line first.
    fn history(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "0", "-S", "-"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_text(&self, text: &str) -> String {
        self.wait_for(&format!("'{text}'"), |s| s.contains(text))
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}

/// The output pane's lines: what is right of the separator, rows 1 to 38.
fn output_lines(screen: &str) -> Vec<String> {
    screen
        .lines()
        .skip(1)
        .take(38)
        .filter_map(|l| l.split_once('│').map(|(_, r)| r.trim().to_string()))
        .filter(|l| !l.is_empty())
        .collect()
}

/// After the UI, the shell saves `stty -a` and says done; the terminal must be
/// back in cooked mode with echo.
fn after_ui(file: &Path) -> String {
    format!(
        "ui; echo \"exit=$?\"; stty -a > {}; echo done; sleep 60",
        file.display()
    )
}

fn assert_cooked(file: &Path) {
    let stty = String::from_utf8_lossy(&read(file)).into_owned();
    let words: Vec<&str> = stty.split([' ', ';', '\n']).collect();
    for flag in ["icanon", "echo", "isig", "icrnl", "opost"] {
        assert!(words.contains(&flag), "{flag} not restored:\n{stty}");
    }
}

fn setup() -> Option<Sandbox> {
    if !need(&["tmux"], "tmux") {
        return None;
    }
    let sb = Sandbox::new();
    setup_processes(&sb);
    Some(sb)
}

fn setup_processes(sb: &Sandbox) {
    sb.start(
        "api",
        "echo 'api says hello'; printf '\\033]0;EVIL\\007\\033[2Jtitle kept\\n'; echo 'api complains' >&2; exec sleep 600",
    );
    sb.start(
        "worker",
        "i=0; while [ $i -lt 30 ]; do i=$((i+1)); echo \"tick $i\"; done; exec sleep 600",
    );
}

#[test]
fn ui_selects_switches_streams_filters_restarts_and_quits() {
    let Some(sb) = setup() else { return };
    let stty = sb.root.join("stty");
    let pane = Pane::start(
        &sb,
        "main",
        &after_ui(&stty).replacen("ui", "agent-procs ui", 1),
    );

    // The first process is selected, its stdout shown; escape sequences other
    // than colours were dropped (no title, no clear). The footer's counts come
    // with the first status, which may be drawn after the first log lines.
    pane.wait_text("2 running");
    let screen = pane.wait_text("api says hello");
    assert!(screen.contains("api · stdout · live"), "{screen}");
    assert!(
        screen.contains("title kept") && !screen.contains("EVIL"),
        "{screen}"
    );
    assert!(screen.contains("2 running"), "{screen}");

    // Selection.
    pane.keys(&["j"]);
    let screen = pane.wait_text("worker · stdout");
    assert!(screen.contains("tick 30"), "{screen}");
    pane.keys(&["k"]);
    pane.wait_text("api · stdout");

    // Stream switching: stderr, then both.
    pane.keys(&["e"]);
    let screen = pane.wait_for("stderr only", |s| {
        s.contains("api · stderr") && s.contains("api complains") && !s.contains("api says hello")
    });
    assert!(
        !output_lines(&screen).iter().any(|l| l.contains("hello")),
        "{screen}"
    );
    pane.keys(&["e"]);
    pane.wait_for("both streams", |s| {
        s.contains("api · both") && s.contains("api complains") && s.contains("api says hello")
    });
    pane.keys(&["e"]);
    pane.wait_text("api · stdout");

    // Filter over the history: only the lines with "tick 1".
    pane.keys(&["j", "/"]);
    pane.keys(&["-l", "tick 1"]);
    pane.keys(&["Enter"]);
    let screen = pane.wait_text("filter 'tick 1'");
    let shown = output_lines(&screen);
    let want: Vec<String> = std::iter::once(1)
        .chain(10..=19)
        .map(|i| format!("tick {i}"))
        .collect();
    assert_eq!(shown, want, "{screen}");
    pane.keys(&["Escape"]);
    pane.wait_for("filter cleared", |s| {
        !s.contains("filter '") && output_lines(s).iter().any(|l| l == "tick 30")
    });

    // Restart: a new pid, an exit with reason "restarted", and the note in the pane.
    let before = sb.proc_status("worker");
    pane.keys(&["r"]);
    pane.wait_text("Restarted (manual)");
    let after = eventually(PATIENCE, "worker to restart", || {
        let now = sb.proc_status("worker");
        if now["pid"] != before["pid"] && now["state"] == "running" {
            Ok(now)
        } else {
            Err(now)
        }
    });
    let restarted = |p: &serde_json::Value| {
        p["last_exits"].as_array().map_or(0, |a| {
            a.iter().filter(|e| e["reason"] == "restarted").count()
        })
    };
    assert_eq!(restarted(&after), restarted(&before) + 1, "{after}");

    // Stop the selected process, then start it again with `s`.
    pane.keys(&["x"]);
    eventually(PATIENCE, "worker to stop", || {
        let now = sb.proc_status("worker");
        done_or(now["state"] != "running", now)
    });
    pane.wait_for("worker shown stopped", |s| s.contains("1 running"));
    pane.keys(&["s"]);
    pane.wait_for("worker shown running", |s| s.contains("2 running"));
    assert_eq!(sb.proc_status("worker")["state"], "running");

    // A mouse click on the first row of the list selects api (SGR report, 1-based).
    pane.keys(&["-H", "1b", "5b", "3c", "30", "3b", "33", "3b", "32", "4d"]);
    pane.wait_text("api · stdout");

    // A resize redraws at once, at the new size.
    let status = pane
        .tmux()
        .args(["resize-window", "-t", "0", "-x", "90", "-y", "20"])
        .status()
        .expect("tmux resize-window");
    assert!(status.success());
    pane.wait_for("the status bar on row 20", |s| {
        s.lines().nth(19).is_some_and(|l| l.contains("2 running"))
    });

    // Help, then quit: the processes keep running and the terminal is normal again.
    pane.keys(&["?"]);
    pane.wait_text("any key closes this help");
    pane.keys(&["Escape"]);
    pane.wait_for("help closed", |s| !s.contains("any key closes"));
    pane.keys(&["q"]);
    let screen = pane.wait_text("done");
    assert!(screen.contains("exit=0"), "{screen}");
    assert_cooked(&stty);
    assert_eq!(sb.proc_status("api")["state"], "running");
}

#[test]
fn ui_restores_the_terminal_on_signals_and_when_the_daemon_goes_away() {
    let Some(sb) = setup() else { return };
    for (tag, signal, code) in [("term", libc::SIGTERM, 143), ("hup", libc::SIGHUP, 129)] {
        let stty = sb.root.join(format!("stty-{tag}"));
        let pid_file = sb.root.join(format!("pid-{tag}"));
        // The inner shell writes its pid and becomes the UI.
        let script = after_ui(&stty).replacen(
            "ui",
            &format!(
                "sh -c \"echo \\$\\$ > {}; exec agent-procs ui\"",
                pid_file.display()
            ),
            1,
        );
        let pane = Pane::start(&sb, tag, &script);
        pane.wait_text("api says hello");
        let pid: i32 = String::from_utf8_lossy(&read(&pid_file))
            .trim()
            .parse()
            .expect("the UI's pid");
        kill(pid, signal);
        let screen = pane.wait_text("done");
        assert!(screen.contains(&format!("exit={code}")), "{screen}");
        assert_cooked(&stty);
    }

    // Q quits and shuts the daemon down.
    let stty = sb.root.join("stty-shutdown");
    let pane = Pane::start(
        &sb,
        "shut",
        &after_ui(&stty).replacen("ui", "agent-procs ui", 1),
    );
    pane.wait_text("api says hello");
    pane.keys(&["Q"]);
    let screen = pane.wait_text("done");
    assert!(screen.contains("exit=0"), "{screen}");
    assert_cooked(&stty);
    let out = sb.run(&["status"]);
    assert_eq!(out.code, 1, "the daemon is still there: {}", out.stdout);
    drop(pane);
    setup_processes(&sb);

    // The daemon shuts down under the UI: it gives up after a few seconds, says
    // why, and leaves the terminal as it found it.
    let stty = sb.root.join("stty-gone");
    let pane = Pane::start(
        &sb,
        "gone",
        &after_ui(&stty).replacen("ui", "agent-procs ui", 1),
    );
    pane.wait_text("api says hello");
    sb.ok(&["down"]);
    pane.wait_text("reconnecting");
    let screen = pane.wait_text("done");
    assert!(
        screen.contains("went away") && screen.contains("exit=1"),
        "{screen}"
    );
    assert_cooked(&stty);
}

#[test]
fn ui_restores_the_terminal_before_a_panic_message() {
    let Some(sb) = setup() else { return };
    let stty = sb.root.join("stty");
    let script = after_ui(&stty).replacen(
        "ui",
        "RUST_BACKTRACE=0 AGENT_PROCS_UI_TEST_PANIC=1 agent-procs ui",
        1,
    );
    let pane = Pane::start(&sb, "panic", &script);
    let screen = pane.wait_text("done");
    // Printed after the alternate screen was left, so it is still there to read
    // (above the backtrace of the abort: a panic cannot unwind out of `main`).
    let history = pane.history();
    assert!(history.contains("test panic requested"), "{history}");
    assert!(!screen.contains("exit=0"), "{screen}");
    assert_cooked(&stty);
}

#[test]
fn ui_without_a_terminal_refuses_with_exit_64() {
    let sb = Sandbox::new();
    let err = sb.fails(&["ui"], 64);
    assert!(err.contains("ui needs a terminal"), "{err}");
}
