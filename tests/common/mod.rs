//! The integration-test sandbox: a private runtime dir and state dir per test,
//! the real binary run with bounded waits, and cleanup of everything it started.
#![allow(dead_code)]

pub mod backend;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_agent-procs");
/// No CLI call in a test may take longer than this; past it the call is killed.
pub const CALL_LIMIT: Duration = Duration::from_secs(60);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct Sandbox {
    pub root: PathBuf,
    pub runtime: PathBuf,
    pub state: PathBuf,
    pub session: String,
    /// Run the CLI (and so the daemon) as this uid, through `setpriv`.
    pub uid: Option<u32>,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub raw_stdout: Vec<u8>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        // Short, so the socket path stays well under the 107-byte limit.
        let root = PathBuf::from(format!("/tmp/apt-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("creating the sandbox");
        Sandbox {
            runtime: root.join("run"),
            state: root.join("state"),
            root,
            session: "default".into(),
            uid: None,
        }
    }

    /// A sandbox whose CLI, daemon and processes run as `uid` (root only): an
    /// unused uid, so per-user limits such as RLIMIT_NPROC count nobody else.
    pub fn as_uid(uid: u32) -> Sandbox {
        let mut sb = Sandbox::new();
        std::os::unix::fs::chown(&sb.root, Some(uid), Some(uid)).expect("handing the sandbox over");
        sb.uid = Some(uid);
        sb
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = match self.uid {
            Some(uid) => {
                let mut cmd = Command::new("setpriv");
                cmd.args(setpriv_args(uid)).arg("--").arg(BIN);
                cmd
            }
            None => Command::new(BIN),
        };
        self.isolate(cmd.args(args))
            .env_remove("NO_COLOR")
            .current_dir(&self.root)
            .stdin(Stdio::null());
        cmd
    }

    /// Point another program (a shell around the CLI) at this sandbox's dirs.
    pub fn isolate<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("AGENT_PROCS_RUNTIME_DIR", &self.runtime)
            .env("XDG_STATE_HOME", &self.state)
            // The session comes from --session in tests, never from the caller.
            .env_remove("AGENT_PROCS_SESSION")
    }

    /// Run the CLI and return what it did, killing it if it outlives CALL_LIMIT.
    pub fn run(&self, args: &[&str]) -> Out {
        run_bounded(self.command(args), CALL_LIMIT)
    }

    /// Run the CLI with at most `nofile` descriptors (soft and hard limit), so
    /// that a daemon it starts inherits the limit and cannot raise it.
    pub fn run_with_nofile(&self, nofile: u64, args: &[&str]) -> Out {
        use std::os::unix::process::CommandExt;
        let mut cmd = self.command(args);
        let lim = libc::rlimit {
            rlim_cur: nofile,
            rlim_max: nofile,
        };
        // SAFETY: between fork and exec the child only calls setrlimit, which is
        // async-signal-safe, on a struct it owns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            })
        };
        run_bounded(cmd, CALL_LIMIT)
    }

    /// Run the CLI and insist on exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        if out.code != 0 {
            panic!("{}", self.report(args, &out, "expected exit 0"));
        }
        out.stdout
    }

    /// Run the CLI and insist on a given exit code; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        if out.code != code {
            panic!(
                "{}",
                self.report(args, &out, &format!("expected exit {code}"))
            );
        }
        out.stderr
    }

    pub fn report(&self, args: &[&str], out: &Out, what: &str) -> String {
        format!(
            "{what}: agent-procs {}\nexit: {}\nstdout:\n{}\nstderr:\n{}\ndaemon.log:\n{}",
            args.join(" "),
            out.code,
            out.stdout,
            out.stderr,
            std::fs::read_to_string(self.daemon_log()).unwrap_or_default()
        )
    }

    pub fn session_dir(&self) -> PathBuf {
        self.state.join("agent-procs/sessions").join(&self.session)
    }

    pub fn log(&self, name: &str, stream: &str) -> PathBuf {
        self.session_dir()
            .join("logs")
            .join(format!("{name}.{stream}"))
    }

    pub fn daemon_log(&self) -> PathBuf {
        self.session_dir().join("daemon.log")
    }

    pub fn socket(&self) -> PathBuf {
        self.runtime.join(format!("{}.sock", self.session))
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        let text =
            std::fs::read_to_string(self.runtime.join(format!("{}.pid", self.session))).ok()?;
        text.trim().parse().ok()
    }

    /// Start a process and return its pid.
    pub fn start(&self, name: &str, command: &str) -> i32 {
        let out = self.ok(&["run", command, "--name", name]);
        parse_pid(&out)
    }

    /// `status --json` as a JSON value.
    pub fn status(&self) -> serde_json::Value {
        let text = self.ok(&["status", "--json"]);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {text}"))
    }

    pub fn proc_status(&self, name: &str) -> serde_json::Value {
        let all = self.status();
        all.as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no process {name} in status: {all}"))
    }

    /// A raw connection to the daemon's socket.
    pub fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(self.socket()).expect("connecting to the daemon");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("setting a read timeout");
        s
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let daemon = self.daemon_pid();
        let out = run_bounded(self.command(&["down"]), Duration::from_secs(30));
        if let Some(pid) = daemon
            && !wait_gone(pid, Duration::from_secs(15))
        {
            eprintln!(
                "sandbox: daemon {pid} survived down ({}); killing it",
                out.stderr
            );
            kill(pid, libc::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Send one request line on a raw connection and read one response line.
pub fn ask(stream: &mut UnixStream, line: &[u8]) -> serde_json::Value {
    stream.write_all(line).expect("writing a request");
    read_response(stream)
}

pub fn read_response(stream: &mut UnixStream) -> serde_json::Value {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => panic!(
                "the daemon closed the connection; got {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => buf.push(byte[0]),
            // A receive timeout makes recv(2) fail with EINTR after a stop/continue.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!(
                "reading a response: {e}; got {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    serde_json::from_slice(&buf).unwrap_or_else(|e| {
        panic!(
            "response is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&buf)
        )
    })
}

pub fn run_bounded(mut cmd: Command, limit: Duration) -> Out {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting agent-procs");
    let pid = child.id() as i32;
    let (done, wait) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if wait.recv_timeout(limit).is_err() {
            kill(pid, libc::SIGKILL);
        }
    });
    let output: Output = child.wait_with_output().expect("waiting for agent-procs");
    let _ = done.send(());
    let _ = watchdog.join();
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        raw_stdout: output.stdout,
    }
}

/// The pid in `run`'s answer: `NAME (id: pK, pid: PID)`.
pub fn parse_pid(out: &str) -> i32 {
    let at = out
        .find("pid: ")
        .unwrap_or_else(|| panic!("no pid in {out:?}"));
    out[at + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("a pid")
}

pub fn kill(pid: i32, signal: i32) {
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(pid, signal) };
}

pub fn alive(pid: i32) -> bool {
    // A zombie is not alive for our purposes.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Wait for `pid` to be gone, on a pidfd (an event, not a sleep loop).
pub fn wait_gone(pid: i32, limit: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return !alive(pid); // ESRCH: already gone
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on the one pollfd we own; a pidfd turns readable when the process exits.
    let n = unsafe { libc::poll(&mut pfd, 1, limit.as_millis() as i32) };
    // SAFETY: closing the descriptor we opened.
    unsafe { libc::close(fd) };
    n > 0 || !alive(pid)
}

/// Pids of the zombie children of `pid`.
pub fn zombie_children(pid: i32) -> Vec<i32> {
    let mut zombies = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return zombies;
    };
    for entry in entries.flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit(')').next() else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z")
            && fields.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(pid)
        {
            zombies.push(child);
        }
    }
    zombies
}

pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `setpriv` (util-linux) options that drop root for `uid`: real and effective
/// user and group ids, no supplementary groups (and so no capabilities).
pub fn setpriv_args(uid: u32) -> [String; 3] {
    [
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".to_string(),
    ]
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Set to 1 (as .ci/run does) to make every program a test needs mandatory: a
/// missing one fails the test instead of skipping it.
pub const REQUIRE_TOOLS: &str = "AGENT_PROCS_REQUIRE_TOOLS";

/// Say that the running test skips (all or part of itself) and why, where the
/// person running `cargo test` sees it: straight to the terminal's stderr,
/// past the test harness's capture of `eprintln!`.
pub fn skip_notice(why: &str) {
    let name = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let _ = writeln!(std::io::stderr(), "\nSKIPPED {name}: {why}");
}

/// Whether `program` is installed: an absolute path that exists, or a name
/// found in a directory of $PATH.
pub fn installed(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return runnable(Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| runnable(&dir.join(program))))
}

/// Whether every program in `programs` is installed. When one is missing the
/// test should return: this says so visibly (`skip_notice`), or, with
/// AGENT_PROCS_REQUIRE_TOOLS=1, fails the test with what to install.
pub fn need(programs: &[&str], install: &str) -> bool {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{} not installed (install {install}; .ci/run does)",
        missing.join(", ")
    );
    if std::env::var(REQUIRE_TOOLS).as_deref() == Ok("1") {
        panic!("{why}, and {REQUIRE_TOOLS}=1 makes it mandatory");
    }
    skip_notice(&why);
    false
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A port nobody listens on right now (ephemeral, so never one the daemon assigns).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
    l.local_addr().expect("local address").port()
}

/// The port in the first `localhost:PORT` of some CLI output.
pub fn proxy_port_in(text: &str) -> Option<u16> {
    let at = text.find("localhost:")? + "localhost:".len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// User plus system CPU time of `pid` so far.
pub fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading stat");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of proc_pid_stat(5); the list starts at field 3.
    let ticks: u64 =
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    // SAFETY: sysconf takes a constant and returns a number.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz.max(1))
}

/// Resident memory of `pid`, in KiB (0 once it is gone).
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The first pause between two looks of `eventually` and `holds_for`; each
/// pause doubles up to `MAX_PAUSE`, so a quick change is seen at once and a
/// slow one costs few looks (a look is often a CLI call) on a loaded machine.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// The one polling helper: call `look` until it returns `Ok`, and return what
/// it found; past `limit`, panic naming `what` and the last thing `look` saw
/// (its `Err`). For state that has no event to await (a file's contents,
/// `status --json`, /proc, a tmux pane); where there is one (a pidfd, a pipe,
/// a channel, a socket), await it instead (`wait_gone`, `wait_child`).
pub fn eventually<T, S: std::fmt::Display>(
    limit: Duration,
    what: &str,
    look: impl FnMut() -> Result<T, S>,
) -> T {
    poll(limit, FIRST_PAUSE, what, look)
}

/// `eventually`, looking every `pause` (no backing off): for a state that
/// lasts only a moment (a backoff of 100 ms) and must not be missed.
pub fn eventually_every<T, S: std::fmt::Display>(
    pause: Duration,
    limit: Duration,
    what: &str,
    look: impl FnMut() -> Result<T, S>,
) -> T {
    poll(limit, pause, what, look)
}

fn poll<T, S: std::fmt::Display>(
    limit: Duration,
    first_pause: Duration,
    what: &str,
    mut look: impl FnMut() -> Result<T, S>,
) -> T {
    let end = Instant::now() + limit;
    let mut pause = first_pause;
    loop {
        let seen = match look() {
            Ok(found) => return found,
            Err(seen) => seen,
        };
        let now = Instant::now();
        if now >= end {
            panic!("timed out after {limit:?} waiting for {what}; last seen:\n{seen}");
        }
        // Polling: nothing to await (see `eventually`).
        std::thread::sleep(pause.min(end - now));
        pause = (pause * 2).min(MAX_PAUSE.max(first_pause));
    }
}

/// `Ok(())` when `done`, else `seen` (what was seen instead): the usual `look`
/// of `eventually` and `check` of `holds_for` for a condition.
pub fn done_or<S>(done: bool, seen: S) -> Result<(), S> {
    if done { Ok(()) } else { Err(seen) }
}

/// For what must NOT happen (a restart, a write): call `check` for the whole of
/// `window` and panic, naming `what` and what it saw, the first time it fails.
/// There is no event to await for something that does not happen.
pub fn holds_for<S: std::fmt::Display>(
    window: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<(), S>,
) {
    let end = Instant::now() + window;
    let mut pause = FIRST_PAUSE;
    loop {
        if let Err(seen) = check() {
            panic!("{what} stopped holding; seen:\n{seen}");
        }
        let now = Instant::now();
        if now >= end {
            return;
        }
        // Watching for something that must not happen: nothing to await.
        std::thread::sleep(pause.min(end - now));
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Wait (on a pidfd, not polling) up to `limit` for a child we started to
/// exit, and reap it; `None` if it is still running then.
pub fn wait_child(child: &mut std::process::Child, limit: Duration) -> Option<ExitStatus> {
    wait_gone(child.id() as i32, limit);
    child.try_wait().expect("waiting for a child")
}

/// Raise this test process's soft descriptor limit to at least `need` (up to
/// the hard limit, which must allow it), for tests that open many connections.
pub fn raise_fd_limit(need: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert!(
        lim.rlim_max >= need,
        "the hard descriptor limit {} is below the {need} this test needs",
        lim.rlim_max
    );
    if lim.rlim_cur < need {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct we pass.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
        assert_eq!(rc, 0, "raising the descriptor limit to {}", lim.rlim_max);
    }
}

/// The soft "Max open files" of a process.
pub fn fd_limit(pid: i32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The command line of `pid` as /proc shows it: arguments joined by spaces.
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Wait until `pid` runs `command` (its command line, arguments joined by
/// spaces): until it has exec'd, a forked child shows its parent's.
pub fn await_exec(pid: i32, command: &str) {
    eventually(
        Duration::from_secs(20),
        &format!("pid {pid} to run `{command}`"),
        || {
            let now = cmdline(pid);
            done_or(now == command, format!("its command line is `{now}`"))
        },
    );
}

/// A live process that belongs to nobody's session (for a planted state.json
/// to name), and its start time in clock ticks; the test kills it.
pub fn bystander() -> (std::process::Child, u32, u64) {
    use std::os::unix::process::CommandExt;
    // A group of its own, as a planted table names its pid as its group too.
    let child = Command::new("sleep")
        .arg("300")
        .process_group(0)
        .spawn()
        .expect("starting a bystander");
    let pid = child.id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("its stat");
    let ticks = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split(' ').nth(20))
        .and_then(|t| t.parse().ok())
        .expect("its start time");
    (child, pid, ticks)
}

/// A state.json of a dead daemon that names `pid`, started at `ticks`, as its
/// process `name`: what an attacker plants to have it killed.
pub fn planted_state(name: &str, pid: u32, ticks: u64) -> String {
    format!(
        "{{\"daemon_pid\":1,\"processes\":[{{\"name\":\"{name}\",\"id\":\"p1\",\"pid\":{pid},\
         \"pgid\":{pid},\"start_ticks\":{ticks},\"command\":\"sleep 300\"}}]}}"
    )
}

/// The lines `from` gives, read on a thread of their own, one message each:
/// something a test can await with `recv_timeout`. The channel disconnects
/// at the end of input (or at a read error).
pub fn lines_of(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}
