//! The reverse proxy end to end in a real browser: headless Chromium loads
//! http://web.localhost:PORT/page through the proxy, the page opens a WebSocket to
//! its own origin (also through the proxy), and the echoed message must be in the
//! DOM that Chromium dumps. Needs Debian's `chromium` (.ci/run installs it);
//! skips itself with a notice without it, unless AGENT_PROCS_REQUIRE_TOOLS=1.

mod common;
use common::backend::*;
use common::*;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Chromium gets this long before its whole process group is killed.
const BROWSER_LIMIT: Duration = Duration::from_secs(90);

/// Run Chromium in a process group of its own, killing the group past the limit.
fn run_browser(mut cmd: Command) -> (Option<i32>, String, String) {
    let child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {CHROMIUM}: {e}"));
    let group = child.id() as i32;
    let (done, wait) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if wait.recv_timeout(BROWSER_LIMIT).is_err() {
            kill(-group, libc::SIGKILL);
        }
    });
    let output = child.wait_with_output().expect("waiting for chromium");
    let _ = done.send(());
    let _ = watchdog.join();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn chromium_loads_a_page_and_echoes_over_a_websocket_through_the_proxy() {
    // Skipped, with a notice, where Chromium is missing; never in CI, which
    // sets AGENT_PROCS_REQUIRE_TOOLS=1.
    if !need(
        &[CHROMIUM],
        "Debian's chromium package: apt-get install chromium",
    ) {
        return;
    }
    let sb = sandbox();
    let (pp, _) = serve(&sb, "web");

    let home = sb.root.join("home");
    let profile = sb.root.join("profile");
    for dir in [&home, &profile] {
        std::fs::create_dir_all(dir).expect("creating a browser directory");
    }
    let url = format!("http://web.localhost:{pp}/page");
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(["--virtual-time-budget=5000", "--dump-dom", &url])
    .env("HOME", &home)
    .env("XDG_CONFIG_HOME", home.join(".config"))
    .env("XDG_CACHE_HOME", home.join(".cache"))
    .current_dir(&sb.root);
    let (code, dom, stderr) = run_browser(cmd);
    let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(
        dom.contains("<p id=\"out\">echo: hello through the proxy</p>"),
        "chromium (exit {code:?}) did not see the WebSocket echo at {url}\n\
         dom:\n{dom}\nstderr (last lines):\n{tail}\ndaemon.log:\n{}",
        std::fs::read_to_string(sb.daemon_log()).unwrap_or_default()
    );
}
