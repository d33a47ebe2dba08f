//! The proxy tests' backend (tests/proxy/backend.py) and how they start it
//! behind the proxy: one copy for tests/proxy.rs, proxy_attacks.rs and
//! proxy_browser.rs.

use super::{CALL_LIMIT, Out, Sandbox, free_port, proxy_port_in, run_bounded};

pub const BACKEND: &str = include_str!("../proxy/backend.py");

/// A sandbox with the test backend in its root (the cwd of every process).
pub fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    std::fs::write(sb.root.join("backend.py"), BACKEND).expect("writing the backend");
    sb
}

/// `run COMMAND --name NAME [--port P] --proxy`; returns the output and the proxy port.
pub fn run_proxied(sb: &Sandbox, name: &str, command: &str, port: Option<u16>) -> (Out, u16) {
    let port = port.map(|p| p.to_string());
    let mut args = vec!["run", command, "--name", name];
    if let Some(p) = &port {
        args.extend(["--port", p]);
    }
    args.push("--proxy");
    let out = sb.run(&args);
    if out.code != 0 {
        panic!("{}", sb.report(&args, &out, "expected exit 0"));
    }
    let proxy = proxied_port(sb, &args, &out);
    (out, proxy)
}

/// `run_proxied` with more environment for the daemon it may start, which
/// reads the test knobs (`HOLD_VAR`, `HEAD_TIMEOUT_VAR`) when its proxy starts.
pub fn run_proxied_env(
    sb: &Sandbox,
    name: &str,
    command: &str,
    port: Option<u16>,
    env: &[(&str, &str)],
) -> (Out, u16) {
    let port = port.map(|p| p.to_string());
    let mut args = vec!["run", command, "--name", name];
    if let Some(p) = &port {
        args.extend(["--port", p]);
    }
    args.push("--proxy");
    let mut cmd = sb.command(&args);
    cmd.envs(env.iter().copied());
    let out = run_bounded(cmd, CALL_LIMIT);
    if out.code != 0 {
        panic!("{}", sb.report(&args, &out, "expected exit 0"));
    }
    let proxy = proxied_port(sb, &args, &out);
    (out, proxy)
}

/// The daemon's test knob for how long the proxy holds a request for a
/// process that is starting (5 s otherwise).
pub const HOLD_VAR: &str = "AGENT_PROCS_TEST_BACKEND_WAIT_MS";

/// The proxy port a `run --proxy` (or `up`) printed; panics with the call's report.
pub fn proxied_port(sb: &Sandbox, args: &[&str], out: &Out) -> u16 {
    let both = format!("{}{}", out.stdout, out.stderr);
    let Some(proxy) = proxy_port_in(&both) else {
        panic!(
            "{}",
            sb.report(args, out, "no localhost:PORT in the output")
        );
    };
    proxy
}

/// Start the backend NAME on a port of its own behind the proxy and wait until
/// it serves; returns (proxy port, backend port).
pub fn serve(sb: &Sandbox, name: &str) -> (u16, u16) {
    let port = free_port();
    let (_, proxy) = run_proxied(sb, name, &format!("python3 backend.py {name}"), Some(port));
    sb.ok(&["wait", name, "--until", "serving", "--timeout", "20"]);
    (proxy, port)
}

/// Like `serve`, but the first call, and so the daemon it starts, has at most
/// `nofile` descriptors; returns the proxy port.
pub fn serve_with_nofile(sb: &Sandbox, name: &str, nofile: u64) -> u16 {
    serve_via(sb, name, |args| sb.run_with_nofile(nofile, args))
}

/// Like `serve`, but the daemon the first call starts cuts off a request head
/// or body that has not arrived after `ms` milliseconds instead of 10 s
/// (AGENT_PROCS_TEST_HEAD_TIMEOUT_MS), so a test need not wait 10 s out.
pub fn serve_with_head_timeout(sb: &Sandbox, name: &str, ms: u64) -> u16 {
    serve_via(sb, name, |args| {
        let mut first = sb.command(args);
        first.env(HEAD_TIMEOUT_VAR, ms.to_string());
        run_bounded(first, CALL_LIMIT)
    })
}

/// The daemon's test knob for the proxy's request head and body timeouts.
pub const HEAD_TIMEOUT_VAR: &str = "AGENT_PROCS_TEST_HEAD_TIMEOUT_MS";

/// Start the backend NAME behind the proxy with `first` running the `run`
/// call (the one that starts the daemon), wait until it serves; returns the
/// proxy port.
fn serve_via(sb: &Sandbox, name: &str, first: impl FnOnce(&[&str]) -> Out) -> u16 {
    let port = free_port().to_string();
    let command = format!("python3 backend.py {name}");
    let args = ["run", &command, "--name", name, "--port", &port, "--proxy"];
    let out = first(&args);
    if out.code != 0 {
        panic!("{}", sb.report(&args, &out, "expected exit 0"));
    }
    let proxy = proxied_port(sb, &args, &out);
    sb.ok(&["wait", name, "--until", "serving", "--timeout", "20"]);
    proxy
}
