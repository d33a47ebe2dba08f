//! The command line: lexopt parsing into a `Command`, and the usage texts.
//! Every command accepts `--session NAME` and `--help` wherever it stands.

use crate::error::{Error, Result};
use lexopt::prelude::*;
use std::ffi::OsString;
use std::time::Duration;

pub const USAGE: &str = "\
usage: agent-procs [--session NAME] COMMAND [ARGS]

Run and supervise background processes for agents and CI, under a per-session daemon.

commands:
  run CMD [--name N] [--cwd DIR] [--env K=V]... [--port P] [--proxy]
                        start CMD in the background (the daemon starts on first use)
  stop NAME|ID [--timeout S]    stop a process and its whole process group
  stop-all [--timeout S]        stop every process of the session
  restart NAME|ID               stop, then start again with the same settings
  status [NAME] [--resources] [--json]
                        list processes and their states; one in full with NAME
  events [--since SEQ] [--json] stream state changes as they happen
  logs NAME [--tail N] [--stderr] [--follow]
  logs --all [--tail N] [--stderr] [--follow]
                        print a process's latest run (read from disk; --follow streams)
  wait NAME --until PAT [--regex] [--timeout S]
  wait NAME --exit [--timeout S]
  wait NAME --port P | --http URL [--timeout S]
                        block until a line matches, the process exits, or it serves
  up [--only N,...] [--config PATH] [--proxy] [--timeout S]
                        start agent-procs.yaml's processes in dependency order
  down [--config PATH]          stop everything and shut the daemon down
  ui                            watch and control processes in a terminal UI
  session list | session clean  list sessions, or remove stale ones
  config check [--config PATH] [--json]
  config show [--config PATH] --json
                        validate agent-procs.yaml, or print it resolved as JSON
  export systemd|procfile [--dir D [--force]] [--user] [--only N,...]
                        write systemd units or a Procfile from agent-procs.yaml
  completions bash|zsh|fish     print a shell completion script
  mcp                           serve the Model Context Protocol on stdin/stdout
                        (for coding agents; session default: auto)
  help [COMMAND]                this help, or what COMMAND --help prints

global options:
  --session NAME        session to act on (default: $AGENT_PROCS_SESSION, else default);
                        auto: one of the git worktree you are in
  -h, --help            show this help, or COMMAND --help for one command
  -V, --version         show the version

exit status: 0 ok, 1 error or timeout, 2 unknown process or no logs, 64 usage error.
See agent-procs(1).";

const RUN_USAGE: &str = "\
usage: agent-procs run CMD [--name N] [--cwd DIR] [--env K=V]... [--port P] [--proxy] [--oneshot]
                         [--autorestart always|on-failure|never [--max-restarts N]
                          [--restart-delay MS] [--backoff exponential]]
                         [--watch GLOB]... [--watch-ignore GLOB]... [--log-max-size SIZE]

Start CMD in the background under the session's daemon, starting the daemon if needed.
CMD runs with your current directory and environment. A command without shell syntax
is executed directly; anything else runs under sh -c. Several words after -- are
quoted and joined, so `run -- python3 -m http.server` works.

options:
  --name N        name of the process (default: its id, p1, p2, ...)
  --cwd DIR       working directory (default: the current directory)
  --env K=V       set a variable in the process's environment (repeatable)
  --port P        the port the process listens on; sets PORT=P and HOST=127.0.0.1;
                  if something listens there already, a warning names its pid
  --proxy         serve it at http://N.localhost:PORT through the session's reverse
                  proxy (127.0.0.1 and [::1], first free port from 9090); without
                  --port the process gets a free port from 4000-4999
  --oneshot       a setup step that runs to completion (status --json says
                  oneshot: true); `agent-procs wait` tells if it succeeded
  --autorestart MODE
                  restart it when it exits: always, on-failure (a non-zero exit or
                  a signal), or never (the default); a stop turns it off until restart
  --max-restarts N
                  give up after N automatic restarts (state failed); default no limit
  --restart-delay MS
                  wait this long before each automatic restart (default 1000)
  --backoff exponential
                  double the delay after each quick death, up to 30 s; reset after
                  30 s up
  --watch GLOB    restart it when a file under its directory that matches GLOB
                  changes (repeatable; * and ? within a path segment, ** across
                  segments, [a-z], {a,b}; a pattern without / matches file names
                  at any depth); .git, node_modules, target, __pycache__ are ignored
  --watch-ignore GLOB
                  leave out files (and directories) matching GLOB (repeatable)
  --log-max-size SIZE
                  rotate each log stream at SIZE bytes (512k, 10MB, 50MiB; default 50MiB)
  --json          print one JSON object, with schema: 1, instead of text
  -q, --quiet     print nothing on success (errors still go to stderr)
  --session NAME  session to use (default: default)

prints: NAME (id: ID, pid: PID), with the URL http://127.0.0.1:P added when --port is
given, or http://NAME.localhost:PORT behind the proxy";

const STOP_USAGE: &str = "\
usage: agent-procs stop NAME|ID [--timeout S]

Send SIGTERM to the process group, then SIGKILL after the grace period.
Returns when the process has exited, printing `stopped NAME`; a process that
had exited already gets `NAME was not running` (exit 0). Processes that left
the group with setsid and outlived the stop are named on stderr.

options:
  --timeout S     grace period in seconds before SIGKILL (default: 10)
  --json          print one JSON object, with schema: 1, instead of text:
                  message, name, state, exit_code, exit_signal (+ survivors)
  -q, --quiet     print nothing on success (errors still go to stderr)
  --session NAME  session to use (default: default)";

const STOP_ALL_USAGE: &str = "\
usage: agent-procs stop-all [--timeout S]

Stop every process of the session at once; returns when all have exited.

options:
  --timeout S     grace period in seconds before SIGKILL (default: 10)
  --json          print one JSON object, with schema: 1, instead of text
  -q, --quiet     print nothing on success (errors still go to stderr)
  --session NAME  session to use (default: default)";

const RESTART_USAGE: &str = "\
usage: agent-procs restart NAME|ID

Stop the process (if it is running) and start it again with the same command,
directory, environment and id. The old logs are rotated to NAME.stdout.1.

options:
  --json          print one JSON object, with schema: 1, instead of text:
                  name, id, pid, port, url, state, exit_code
  -q, --quiet     print nothing on success (errors still go to stderr)
  --session NAME  session to use (default: default)";

const STATUS_USAGE: &str = "\
usage: agent-procs status [NAME] [--resources] [--json]

List the session's processes with their pid, state, exit code and uptime.
With NAME, show that one process in full: command, cwd, the names of the
variables set for it (never their values), port and listening addresses,
process group, memory, CPU, the last exits and its log files.

options:
  -r, --resources add what each process group uses, read from /proc now:
                  PROCS (processes in the group), RSS (summed resident
                  memory), CPU (% of one CPU since the previous reading, or
                  since start) and LISTEN (TCP addresses it listens on)
  --json          print a JSON array of processes instead of a table
                  (with NAME, one object)
  --session NAME  session to use (default: default)";

const EVENTS_USAGE: &str = "\
usage: agent-procs events [--since SEQ] [--json]

Print each state change of the session's processes as it happens: started,
ready, exited, stopping, stopped, restarting, backoff, failed, watch_triggered. Each event
has a sequence number; --since SEQ first replays the events after SEQ that the
daemon still holds (the last 1024), so a reader that reconnects misses nothing.
Runs until interrupted or until the daemon exits.

options:
  --since SEQ     replay the held events after sequence number SEQ first (0: all)
  --json          print each event as one JSON object per line
  --session NAME  session to use (default: default)";

const LOGS_USAGE: &str = "\
usage: agent-procs logs NAME|--all [--stderr|--both] [--tail N] [--runs N|all] [--since WHEN]
                        [--after CURSOR] [--grep PAT [--regex] [--ignore-case] [--context N]]
                        [--timestamps] [--json] [--max-bytes B] [--cursor]
       agent-procs logs NAME|--all [--stderr|--both] [--tail N] [--runs N|all]
                        [--grep PAT [--regex] [--ignore-case]] --follow [--timeout S] [--lines N]

Print a process's captured output: its latest run (since it last started), unless
--runs, --since or --after reach back. Without --follow the log files are read
directly, so this works after the daemon is gone. Lines of several streams or
processes are interleaved in the order the daemon received them. When more than
one run is printed, a line marks each start:
  --- run 3 started 2026-12-07 16:40:01 UTC (pid 1234); previous run: exited 1 ---

options:
  -n, --tail N    show the last N lines, or with --grep the last N matches
                  (default: 100, or everything with --since, --after or --grep)
  --runs N|all    cover the last N runs of each process, or every run kept
                  (default: 1, or all with --since or --after)
  --stderr        show stderr instead of stdout
  --both          show stdout and stderr; stderr lines are marked err| or [name:err]
  --all           show every process of the running daemon (or of the last one),
                  lines prefixed with [name]
  --since WHEN    only output from WHEN on, across runs: 30s, 5m, 2h, 1d ago,
                  restart (the latest start of the process) or start (everything kept)
  --after CURSOR  only output after CURSOR (from --json or --cursor), across runs, so
                  a poller never reads a line twice or misses one
  --grep PAT      only lines containing PAT; exit 1 when no line matches, as
                  grep does
  --regex         PAT is a regular expression
  --ignore-case   match PAT regardless of case
  --context N     with --grep: N lines around each match; groups separated by --
  --timestamps    prefix each line with the time it arrived (RFC 3339, UTC)
  --json          JSON Lines: schema, process, stream, seq, time, line, cursor, run
                  (+ context); no run markers
  --max-bytes B   print at most B bytes, keeping the newest lines; says on stderr
                  what was left out
  --cursor        print the cursor after the last line on stderr (cursor: X)
  --follow        replay the tail of the latest run (or of --runs), then stream new
                  lines from the daemon; a run that starts meanwhile is marked
  --timeout S     with --follow: stop after S seconds (default: 30)
  --lines N       with --follow: stop after N new lines
  --session NAME  session to use (default: default)";

const WAIT_USAGE: &str = "\
usage: agent-procs wait NAME --until PAT [--regex] [--timeout S]
       agent-procs wait NAME --exit [--success] [--timeout S]
       agent-procs wait NAME --port P | --http URL [--timeout S]

Block until the process prints a line containing PAT (stdout or stderr, output
since its last start included), until it exits, or until it serves: a TCP port
on 127.0.0.1 accepts connections, or a URL answers 2xx or 3xx (tried every 250 ms).

options:
  --until PAT     wait for a line containing PAT
  --regex         treat PAT as a regular expression
  --exit          wait for the process to exit
  --success       with --exit: exit 1 unless the process exited with code 0
  --port P        wait until 127.0.0.1:P accepts a TCP connection
  --http URL      wait until a GET of URL (http://, host localhost, 127.x.y.z
                  or [::1]: loopback only) answers 2xx or 3xx
  --timeout S     give up after S seconds and exit 1 (default: 30)
  --json          print one JSON object, with schema: 1, instead of text
  -q, --quiet     print nothing on success (errors still go to stderr)
  --session NAME  session to use (default: default)

prints: the matching line, `exited with code N`, `exited by SIGNAL`, or
        `port P is ready (accepting connections)`, `URL is ready (HTTP 200)`";

const UP_USAGE: &str = "\
usage: agent-procs up [--only NAME,...] [--config PATH] [--proxy] [--timeout S]

Start the processes of agent-procs.yaml (the nearest one in the current directory
or a parent, or PATH). Each starts as soon as everything in its depends_on is
ready; progress is printed as it happens. Processes already running with the same
definition are left alone; changed ones are restarted. If a process exits before
it is ready, or is not ready in time (its ready_timeout, default 30 s), up exits 1
naming it, the reason and its last 20 log lines; what did start keeps running.

options:
  --only NAME,... start only these (and what they depend on)
  --config PATH   the config file to use instead of searching for agent-procs.yaml
  --proxy         serve every process through the reverse proxy, as proxy: true does
  --timeout S     fail if the whole stack is not ready within S seconds
  --json          print JSON Lines, one object (with schema: 1) per step
  -q, --quiet     print nothing on success (errors still go to stderr)
  --session NAME  session to use (default: the config's session, else default)

prints: started NAME (id: ID, pid: PID[, URL]), NAME is ready, ...,
        all processes started";

const DOWN_USAGE: &str = "\
usage: agent-procs down [--config PATH]

Stop every process of the session (dependents before what they depend on, each
with its stop_timeout) and shut its daemon down; its socket, pid and lock files
go, its logs stay. Processes that left their group with setsid and outlived
the stops are named on stderr. With no daemon running there is nothing to do,
and down says so and exits 0.

options:
  --config PATH   read the session name from this config file
  --json          print one JSON object, with schema: 1, instead of text
  -q, --quiet     print nothing on success (errors still go to stderr)
  --session NAME  session to use (default: the config's session, else default)";

const UI_USAGE: &str = "\
usage: agent-procs ui

A terminal UI for the session: the processes with their state, restarts, watch
mark and port, beside the selected process's output (its whole history, read
from the log files), live as it comes. Needs a terminal on stdin and stdout.

keys:
  j/k, Up/Down    select a process (or click it; the wheel scrolls)
  e               show stdout, stderr, or both (stderr in its own colour)
  u/d, PgUp/PgDn  scroll half a page, a page; g/G top, bottom; L live
  Space           pause or resume following
  /               filter lines (Tab makes it a regex); Esc clears it
  r, s, x, X      restart, start, stop the selected process; stop all
  ?               help
  q, Q            quit; quit and shut the daemon down (like down)

options:
  --session NAME  session to watch (default: default)";

const SESSION_USAGE: &str = "\
usage: agent-procs session list
       agent-procs session clean

list    show every session with a pid file, and whether its daemon is running
clean   for each session whose daemon is verifiably gone, remove its socket, pid
        file, lock file and state directory (logs included), naming each; links
        are not followed, files not owned by you are left

options:
  --json          list: print {schema: 1, sessions: [{name, running}]} as JSON";

const CONFIG_USAGE: &str = "\
usage: agent-procs config check [--config PATH] [--json]
       agent-procs config show [--config PATH] --json

Read agent-procs.yaml (the nearest one in the current directory or a parent, or
PATH) and check it without starting anything: YAML syntax, keys, types, values,
process names and dependencies. Each problem is printed on stderr as
FILE:LINE:COL: KEY.PATH: MESSAGE, all of them in one run.

check   exit 0 and print FILE: ok (N processes), or exit 1 listing every problem
show    print the resolved config as JSON: cwd absolute, env values as strings,
        depends_on as lists, defaults filled in, and the start order

options:
  --config PATH   the config file to read instead of searching for agent-procs.yaml
  --json          print the verdict (or, for show, the config) as JSON on stdout;
                  show prints nothing but JSON, so it needs --json
  --session NAME  session to use (default: default)";

const EXPORT_USAGE: &str = "\
usage: agent-procs export systemd [--user] [--prefix P] [--dir D [--force]]
                                  [--only NAME,...] [--config PATH] [--json]
       agent-procs export procfile [--dir D [--force]] [--only NAME,...]
                                   [--config PATH] [--json]

Turn agent-procs.yaml (the nearest one in the current directory or a parent, or
PATH) into files for another supervisor, so the stack runs without agent-procs
and without rewriting its definition. Nothing is started; no daemon is involved.

systemd   one unit per process, PREFIX-NAME.service: After= and Requires= from
          depends_on, Restart= from autorestart, Environment=, WorkingDirectory=,
          KillSignal= and TimeoutStopSec=; ready: {exit: N} makes it Type=oneshot.
          PREFIX.target wants them all. PREFIX is agent-procs-SESSION.
procfile  a Procfile of NAME: COMMAND lines, for honcho, foreman or overmind

Without --dir the files go to stdout, each after a `# file: NAME` line, and the
commands to load and start them go to stderr. What the target cannot express
(readiness checks, watch, the proxy, ...) is written as a comment and reported
as a warning; a value it cannot carry is refused, naming the process and key.

options:
  --dir D         write the files into D (created if needed), mode 0644 (0600
                  for files holding values from an env_file)
  --force         replace files in D that exist with other contents
  --user          systemd: units for systemctl --user (WantedBy=default.target
                  instead of multi-user.target)
  --prefix P      systemd: name the units P-NAME.service and P.target
  --only NAME,... export only these (and what they depend on)
  --config PATH   the config file to read instead of searching for agent-procs.yaml
  --json          print {schema: 1, files: [{path, contents, mode}], warnings,
                  commands} as JSON instead
  --session NAME  session named in the units (default: the config's session,
                  else default)";

const COMPLETIONS_USAGE: &str = "\
usage: agent-procs completions bash|zsh|fish

Print a completion script for the shell on stdout. It completes commands, their
flags, and process names, which it asks the session's daemon for (with status)
each time.

bash    source it from ~/.bashrc, or install it as
        share/bash-completion/completions/agent-procs
zsh     install it as _agent-procs in a directory of $fpath
fish    install it as share/fish/vendor_completions.d/agent-procs.fish";

const MCP_USAGE: &str = "\
usage: agent-procs mcp [--session NAME]

Serve the Model Context Protocol over stdio (JSON-RPC, one message per line) for
coding agents, with the tools start, up, stop, restart, down, status, logs and
wait, as a client of the session's daemon. Processes keep running when the
agent disconnects; only the down tool stops them. Register it with, e.g.,
claude mcp add agent-procs -- agent-procs mcp

options:
  --session NAME  session to use (default: $AGENT_PROCS_SESSION, else auto:
                  one derived from the git worktree of the current directory)";

/// Every command name the parser knows, for the tests that keep help and man page in step.
#[cfg(test)]
pub const COMMANDS: &[&str] = &[
    "run",
    "stop",
    "stop-all",
    "restart",
    "status",
    "events",
    "logs",
    "wait",
    "up",
    "down",
    "ui",
    "session",
    "config",
    "export",
    "completions",
    "mcp",
];

/// What a long flag takes after it, as completions need to know.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Takes {
    Nothing,
    /// A value with nothing to offer: a number, a pattern, a name.
    Word,
    /// A file or directory name.
    Path,
}

/// One command as the shell completions see it. `parse` is the authority; unit
/// tests keep this table in step with it and with the usage texts.
pub struct CommandSpec {
    pub name: &'static str,
    /// One line for completion menus.
    pub about: &'static str,
    /// Words that may stand first after the command, as in `session list`.
    pub subcommands: &'static [&'static str],
    /// Long flags without the `--`, besides `COMMON_FLAGS`.
    pub flags: &'static [(&'static str, Takes)],
    /// The first plain argument names a process.
    pub takes_process: bool,
}

/// Flags every command takes, before or after it.
pub const COMMON_FLAGS: &[(&str, Takes)] = &[("session", Takes::Word), ("help", Takes::Nothing)];
/// Flags taken only before the command, besides `COMMON_FLAGS`.
pub const TOP_FLAGS: &[(&str, Takes)] = &[("version", Takes::Nothing)];

pub const COMMAND_TABLE: &[CommandSpec] = &[
    CommandSpec {
        name: "run",
        about: "start a command in the background",
        subcommands: &[],
        flags: &[
            ("name", Takes::Word),
            ("cwd", Takes::Path),
            ("env", Takes::Word),
            ("port", Takes::Word),
            ("log-max-size", Takes::Word),
            ("proxy", Takes::Nothing),
            ("oneshot", Takes::Nothing),
            ("autorestart", Takes::Word),
            ("watch", Takes::Word),
            ("watch-ignore", Takes::Word),
            ("max-restarts", Takes::Word),
            ("restart-delay", Takes::Word),
            ("backoff", Takes::Word),
            ("json", Takes::Nothing),
            ("quiet", Takes::Nothing),
        ],
        takes_process: false,
    },
    CommandSpec {
        name: "stop",
        about: "stop a process and its process group",
        subcommands: &[],
        flags: &[
            ("timeout", Takes::Word),
            ("json", Takes::Nothing),
            ("quiet", Takes::Nothing),
        ],
        takes_process: true,
    },
    CommandSpec {
        name: "stop-all",
        about: "stop every process of the session",
        subcommands: &[],
        flags: &[
            ("timeout", Takes::Word),
            ("json", Takes::Nothing),
            ("quiet", Takes::Nothing),
        ],
        takes_process: false,
    },
    CommandSpec {
        name: "restart",
        about: "stop, then start again with the same settings",
        subcommands: &[],
        flags: &[("json", Takes::Nothing), ("quiet", Takes::Nothing)],
        takes_process: true,
    },
    CommandSpec {
        name: "status",
        about: "list processes and their states",
        subcommands: &[],
        flags: &[("resources", Takes::Nothing), ("json", Takes::Nothing)],
        takes_process: true,
    },
    CommandSpec {
        name: "events",
        about: "stream state changes as they happen",
        subcommands: &[],
        flags: &[("since", Takes::Word), ("json", Takes::Nothing)],
        takes_process: false,
    },
    CommandSpec {
        name: "logs",
        about: "print the output of a process",
        subcommands: &[],
        flags: &[
            ("tail", Takes::Word),
            ("stderr", Takes::Nothing),
            ("both", Takes::Nothing),
            ("all", Takes::Nothing),
            ("follow", Takes::Nothing),
            ("timeout", Takes::Word),
            ("lines", Takes::Word),
            ("since", Takes::Word),
            ("after", Takes::Word),
            ("grep", Takes::Word),
            ("regex", Takes::Nothing),
            ("ignore-case", Takes::Nothing),
            ("context", Takes::Word),
            ("timestamps", Takes::Nothing),
            ("json", Takes::Nothing),
            ("max-bytes", Takes::Word),
            ("cursor", Takes::Nothing),
            ("runs", Takes::Word),
        ],
        takes_process: true,
    },
    CommandSpec {
        name: "wait",
        about: "block until a line matches, the process exits, or it serves",
        subcommands: &[],
        flags: &[
            ("until", Takes::Word),
            ("regex", Takes::Nothing),
            ("exit", Takes::Nothing),
            ("success", Takes::Nothing),
            ("port", Takes::Word),
            ("http", Takes::Word),
            ("timeout", Takes::Word),
            ("json", Takes::Nothing),
            ("quiet", Takes::Nothing),
        ],
        takes_process: true,
    },
    CommandSpec {
        name: "up",
        about: "start the processes of agent-procs.yaml in dependency order",
        subcommands: &[],
        flags: &[
            ("only", Takes::Word),
            ("config", Takes::Path),
            ("proxy", Takes::Nothing),
            ("timeout", Takes::Word),
            ("json", Takes::Nothing),
            ("quiet", Takes::Nothing),
        ],
        takes_process: false,
    },
    CommandSpec {
        name: "down",
        about: "stop everything and shut the daemon down",
        subcommands: &[],
        flags: &[
            ("config", Takes::Path),
            ("json", Takes::Nothing),
            ("quiet", Takes::Nothing),
        ],
        takes_process: false,
    },
    CommandSpec {
        name: "ui",
        about: "watch and control processes in a terminal UI",
        subcommands: &[],
        flags: &[],
        takes_process: false,
    },
    CommandSpec {
        name: "session",
        about: "list sessions, or remove stale ones",
        subcommands: &["list", "clean"],
        flags: &[("json", Takes::Nothing)],
        takes_process: false,
    },
    CommandSpec {
        name: "config",
        about: "validate agent-procs.yaml, or print it as JSON",
        subcommands: &["check", "show"],
        flags: &[("config", Takes::Path), ("json", Takes::Nothing)],
        takes_process: false,
    },
    CommandSpec {
        name: "export",
        about: "write systemd units or a Procfile from agent-procs.yaml",
        subcommands: &["systemd", "procfile"],
        flags: &[
            ("dir", Takes::Path),
            ("force", Takes::Nothing),
            ("user", Takes::Nothing),
            ("prefix", Takes::Word),
            ("only", Takes::Word),
            ("config", Takes::Path),
            ("json", Takes::Nothing),
        ],
        takes_process: false,
    },
    CommandSpec {
        name: "completions",
        about: "print a shell completion script",
        subcommands: &["bash", "zsh", "fish"],
        flags: &[],
        takes_process: false,
    },
    CommandSpec {
        name: "mcp",
        about: "serve the Model Context Protocol on stdin/stdout",
        subcommands: &[],
        flags: &[],
        takes_process: false,
    },
];

#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub session: String,
    /// `--session` or `AGENT_PROCS_SESSION` was given; else `up` and `down`
    /// take the config's `session`.
    pub session_given: bool,
    /// For `--session auto`: the worktree root the name was derived from.
    pub session_root: Option<std::path::PathBuf>,
    /// `--json`: one JSON object (JSON Lines for `up`) with `"schema": 1` on stdout.
    pub json: bool,
    /// `--quiet`: nothing on stdout; errors still go to stderr.
    pub quiet: bool,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(RunArgs),
    Stop {
        target: String,
        timeout: Option<Duration>,
    },
    StopAll {
        timeout: Option<Duration>,
    },
    Restart {
        target: String,
    },
    Status {
        json: bool,
        /// One process in full.
        target: Option<String>,
        /// Add group size, memory, CPU and listening ports.
        resources: bool,
    },
    Events {
        since: Option<u64>,
        json: bool,
    },
    Logs(LogsArgs),
    Wait(WaitArgs),
    Up(UpArgs),
    Down {
        /// Where to read `session` from when `--session` is not given.
        config: Option<std::path::PathBuf>,
    },
    /// The terminal UI.
    Ui,
    SessionList,
    SessionClean,
    Config(ConfigArgs),
    Export(ExportArgs),
    Completions(Shell),
    Help(&'static str),
    Version,
    /// `mcp`: the Model Context Protocol server on stdio.
    Mcp,
    /// Internal: `agent-procs __daemon SESSION [--ready-fd N]`, started by the CLI.
    Daemon {
        ready_fd: Option<i32>,
    },
}

/// The shell `completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// `config check` or, with `show`, `config show`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigArgs {
    pub show: bool,
    pub path: Option<std::path::PathBuf>,
    pub json: bool,
}

/// `export systemd` or `export procfile`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportArgs {
    pub format: ExportFormat,
    pub config: Option<std::path::PathBuf>,
    pub only: Vec<String>,
    /// Write the files here instead of printing them.
    pub dir: Option<std::path::PathBuf>,
    /// Replace files in `dir` whose contents differ.
    pub force: bool,
    /// systemd: units for the user's manager.
    pub user: bool,
    /// systemd: the unit name stem instead of `agent-procs-SESSION`.
    pub prefix: Option<String>,
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExportFormat {
    Systemd,
    Procfile,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunArgs {
    pub command: String,
    pub name: Option<String>,
    pub cwd: Option<String>,
    pub env: Vec<(String, String)>,
    pub port: Option<u16>,
    pub log_max_size: Option<u64>,
    /// Reach it through the session's reverse proxy as http://NAME.localhost:PORT.
    pub proxy: bool,
    /// `--autorestart` with its settings; None when not given.
    pub restart: Option<RestartArgs>,
    /// `--watch GLOB` (repeatable): restart when a matching file changes.
    pub watch: Vec<String>,
    pub watch_ignore: Vec<String>,
    /// `--oneshot`: a setup step that runs to completion.
    pub oneshot: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RestartArgs {
    /// `always`, `on-failure` or `never`.
    pub mode: String,
    pub max_restarts: Option<u32>,
    pub delay_ms: Option<u64>,
    pub exponential: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogsArgs {
    pub target: Option<String>,
    pub tail: usize,
    /// --tail was given (it changes meaning with --since, --after and --grep).
    pub tail_given: bool,
    pub stderr: bool,
    pub both: bool,
    pub all: bool,
    pub follow: bool,
    pub timeout: Option<Duration>,
    pub lines: Option<usize>,
    pub since: Option<SinceArg>,
    pub after: Option<String>,
    pub grep: Option<String>,
    pub regex: bool,
    pub ignore_case: bool,
    pub context: usize,
    pub timestamps: bool,
    pub json: bool,
    pub max_bytes: Option<usize>,
    pub cursor: bool,
    /// `--runs N|all`: how many of the latest runs to cover (None: the latest
    /// one, or every run with --since or --after).
    pub runs: Option<Runs>,
}

/// `--runs`: the last N runs of each process, or all that are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    Last(usize),
    All,
}

/// `--since`: a span back from now, the latest start, or all that is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SinceArg {
    Ago(Duration),
    Restart,
    Start,
}

/// `30s`, `5m`, `2h`, `1d` (decimals allowed), `restart`, `start`.
pub fn parse_since(text: &str) -> Option<SinceArg> {
    match text {
        "restart" => return Some(SinceArg::Restart),
        "start" => return Some(SinceArg::Start),
        _ => {}
    }
    let unit_at = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(unit_at);
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    let secs = value * scale;
    (secs.is_finite() && (0.0..1e10).contains(&secs))
        .then(|| SinceArg::Ago(Duration::from_secs_f64(secs)))
}

#[derive(Debug, Clone, PartialEq)]
pub struct WaitArgs {
    pub target: String,
    pub until: Option<String>,
    pub regex: bool,
    pub exit: bool,
    /// `--success` with `--exit`: exit status 0 only for exit code 0.
    pub success: bool,
    /// `--port`: wait until 127.0.0.1:P accepts connections.
    pub port: Option<u16>,
    /// `--http`: wait until a GET of this URL answers 2xx or 3xx.
    pub http: Option<String>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpArgs {
    /// `--only a,b`: these and what they depend on.
    pub only: Vec<String>,
    pub config: Option<std::path::PathBuf>,
    pub proxy: bool,
    /// Fail when the whole stack is not ready within this.
    pub timeout: Option<Duration>,
}

fn usage_error(msg: impl Into<String>, usage: &'static str) -> Error {
    Error::Usage {
        msg: msg.into(),
        usage,
    }
}

/// lexopt's own errors, re-tagged with the usage of the command being parsed.
fn with_usage(usage: &'static str) -> impl Fn(lexopt::Error) -> Error {
    move |e| usage_error(e.to_string(), usage)
}

fn string(value: OsString, what: &str, usage: &'static str) -> Result<String> {
    value.into_string().map_err(|v| {
        usage_error(
            format!("{what} is not valid UTF-8: {}", v.to_string_lossy()),
            usage,
        )
    })
}

fn seconds(value: OsString, flag: &str, usage: &'static str) -> Result<Duration> {
    let text = string(value, flag, usage)?;
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            usage_error(
                format!("{flag} takes a number of seconds, not '{text}'"),
                usage,
            )
        })
}

fn number<T: std::str::FromStr>(
    value: OsString,
    flag: &str,
    what: &str,
    usage: &'static str,
) -> Result<T> {
    let text = string(value, flag, usage)?;
    text.parse::<T>()
        .map_err(|_| usage_error(format!("{flag} takes {what}, not '{text}'"), usage))
}

fn port(value: OsString, usage: &'static str) -> Result<u16> {
    let port: u16 = number(value, "--port", "a port number from 1 to 65535", usage)?;
    if port == 0 {
        return Err(usage_error(
            "--port takes a port number from 1 to 65535, not '0'",
            usage,
        ));
    }
    Ok(port)
}

/// A parse error of the command line is a usage error with the top-level usage
/// text (a command's own parser names its usage with `usage_error` instead).
/// Here, not in `error.rs`, so the error type stays a leaf that knows no CLI.
impl From<lexopt::Error> for Error {
    fn from(err: lexopt::Error) -> Self {
        Error::Usage {
            msg: err.to_string(),
            usage: USAGE,
        }
    }
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation> {
    let mut p = lexopt::Parser::from_args(args);
    // The session stays empty until `--session` sets it (which refuses "").
    let mut session = Globals::default();
    let command = loop {
        let Some(arg) = p.next()? else {
            return Err(usage_error("no command given", USAGE));
        };
        match arg {
            Long("session") => session.session = session_name(p.value()?, USAGE)?,
            Short('h') | Long("help") => {
                return invocation(session, Command::Help(USAGE));
            }
            Short('V') | Long("version") => {
                return invocation(session, Command::Version);
            }
            Value(cmd) => break string(cmd, "the command", USAGE)?,
            Long(flag) => return Err(unknown_option(&format!("--{flag}"), USAGE)),
            Short(c) => return Err(unknown_option(&format!("-{c}"), USAGE)),
        }
    };
    let command = match command.as_str() {
        "run" => parse_run(&mut p, &mut session)?,
        "stop" => parse_stop(&mut p, &mut session)?,
        "stop-all" => {
            let mut timeout = None;
            while let Some(arg) = p.next().map_err(with_usage(STOP_ALL_USAGE))? {
                match arg {
                    Long("timeout") => {
                        timeout = Some(seconds(
                            p.value().map_err(with_usage(STOP_ALL_USAGE))?,
                            "--timeout",
                            STOP_ALL_USAGE,
                        )?)
                    }
                    _ => common(other(arg), &mut p, &mut session, STOP_ALL_USAGE)?,
                }
            }
            Command::StopAll { timeout }
        }
        "restart" => Command::Restart {
            target: parse_target_only(&mut p, &mut session, RESTART_USAGE)?,
        },
        "status" => {
            let (mut json, mut target, mut resources) = (false, None, false);
            let u = STATUS_USAGE;
            while let Some(arg) = p.next().map_err(with_usage(u))? {
                match arg {
                    Long("json") => json = true,
                    Long("resources") | Short('r') => resources = true,
                    Value(v) if target.is_none() => {
                        target = Some(string(v, "the process name", u)?)
                    }
                    _ => common(other(arg), &mut p, &mut session, u)?,
                }
            }
            Command::Status {
                json,
                target,
                resources,
            }
        }
        "events" => {
            let (mut since, mut json) = (None, false);
            let u = EVENTS_USAGE;
            while let Some(arg) = p.next().map_err(with_usage(u))? {
                match arg {
                    Long("json") => json = true,
                    Long("since") => {
                        let v = p.value().map_err(with_usage(u))?;
                        since = Some(number(v, "--since", "a sequence number", u)?)
                    }
                    _ => common(other(arg), &mut p, &mut session, u)?,
                }
            }
            Command::Events { since, json }
        }
        "logs" => parse_logs(&mut p, &mut session)?,
        "wait" => parse_wait(&mut p, &mut session)?,
        "up" => parse_up(&mut p, &mut session)?,
        "down" => {
            let mut config = None;
            while let Some(arg) = p.next().map_err(with_usage(DOWN_USAGE))? {
                match arg {
                    Long("config") => {
                        let value = p.value().map_err(with_usage(DOWN_USAGE))?;
                        config = Some(std::path::PathBuf::from(value));
                    }
                    _ => common(other(arg), &mut p, &mut session, DOWN_USAGE)?,
                }
            }
            Command::Down { config }
        }
        "ui" => {
            while let Some(arg) = p.next().map_err(with_usage(UI_USAGE))? {
                common(other(arg), &mut p, &mut session, UI_USAGE)?;
            }
            Command::Ui
        }
        "session" => parse_session(&mut p, &mut session)?,
        "config" => parse_config(&mut p, &mut session)?,
        "export" => parse_export(&mut p, &mut session)?,
        "completions" => parse_completions(&mut p, &mut session)?,
        "mcp" => {
            while let Some(arg) = p.next().map_err(with_usage(MCP_USAGE))? {
                common(other(arg), &mut p, &mut session, MCP_USAGE)?;
            }
            // Parallel agents in separate worktrees must never share a session.
            let from_env = std::env::var(crate::session::ENV).is_ok_and(|e| !e.is_empty());
            if session.session.is_empty() && !from_env {
                session.session = crate::session::AUTO.into();
            }
            Command::Mcp
        }
        "help" => parse_help(&mut p)?,
        "__daemon" => {
            let mut ready_fd = None;
            let mut named = None;
            while let Some(arg) = p.next()? {
                match arg {
                    Long("ready-fd") => {
                        ready_fd = Some(number(p.value()?, "--ready-fd", "a descriptor", USAGE)?)
                    }
                    Value(v) if named.is_none() => named = Some(string(v, "the session", USAGE)?),
                    _ => common(other(arg), &mut p, &mut session, USAGE)?,
                }
            }
            if let Some(named) = named {
                session.session = named;
            }
            Command::Daemon { ready_fd }
        }
        other => return Err(unknown_command(other)),
    };
    let takes_json = matches!(
        command,
        Command::Run(_)
            | Command::Stop { .. }
            | Command::StopAll { .. }
            | Command::Restart { .. }
            | Command::Wait(_)
            | Command::Up(_)
            | Command::Down { .. }
            | Command::SessionList
    );
    if (session.json || session.quiet) && !takes_json {
        let flag = if session.json { "--json" } else { "--quiet" };
        return Err(usage_error(
            format!("{flag} does not go with this command"),
            USAGE,
        ));
    }
    if session.json && session.quiet {
        return Err(usage_error("--json and --quiet do not go together", USAGE));
    }
    invocation(session, command)
}

fn invocation(g: Globals, command: Command) -> Result<Invocation> {
    let flag = (!g.session.is_empty()).then_some(g.session);
    let env = std::env::var(crate::session::ENV).ok();
    let chosen = crate::session::choose(flag, env, std::env::current_dir)?;
    // `--session` was checked as it was read; this catches the environment's, so a
    // bad name is a usage error before any daemon or file is touched.
    let uses_session = !matches!(
        command,
        Command::Help(_) | Command::Version | Command::Daemon { .. }
    );
    if uses_session && let Err(e) = crate::paths::check_session_name(&chosen.name) {
        let env = crate::session::ENV;
        return Err(usage_error(format!("{e} (from ${env})"), USAGE));
    }
    Ok(Invocation {
        session: chosen.name,
        session_given: chosen.given,
        session_root: chosen.root,
        json: g.json,
        quiet: g.quiet,
        command,
    })
}

fn session_name(value: OsString, usage: &'static str) -> Result<String> {
    let name = string(value, "--session", usage)?;
    if name.is_empty() {
        return Err(usage_error("--session needs a name", usage));
    }
    if name != crate::session::AUTO {
        crate::paths::check_session_name(&name).map_err(|e| usage_error(e.to_string(), usage))?;
    }
    Ok(name)
}

/// An argument a command's own loop did not take, detached from the parser.
enum Other {
    Session,
    Help,
    Json,
    Quiet,
    Stray(String),
    /// An option the command does not know, as typed (`--jsn`, `-x`).
    Unknown(String),
}

/// What `common` collects: the session and the output mode.
#[derive(Default)]
struct Globals {
    session: String,
    json: bool,
    quiet: bool,
}

fn other(arg: lexopt::Arg<'_>) -> Other {
    match arg {
        Long("session") => Other::Session,
        Short('h') | Long("help") => Other::Help,
        Long("json") => Other::Json,
        Short('q') | Long("quiet") => Other::Quiet,
        Value(v) => Other::Stray(format!("unexpected argument '{}'", v.to_string_lossy())),
        Long(flag) => Other::Unknown(format!("--{flag}")),
        Short(c) => Other::Unknown(format!("-{c}")),
    }
}

/// Options every command takes: `--session`, `--help`. Anything else is an error.
fn common(
    arg: Other,
    p: &mut lexopt::Parser,
    session: &mut Globals,
    usage: &'static str,
) -> Result<()> {
    match arg {
        Other::Session => {
            session.session = session_name(p.value().map_err(with_usage(usage))?, usage)?;
            Ok(())
        }
        Other::Json => {
            session.json = true;
            Ok(())
        }
        Other::Quiet => {
            session.quiet = true;
            Ok(())
        }
        Other::Help => Err(Error::Help(usage)),
        Other::Stray(msg) => Err(usage_error(msg, usage)),
        Other::Unknown(flag) => Err(unknown_option(&flag, usage)),
    }
}

/// The command table entry whose usage text is `usage`, found by the name after
/// `usage: agent-procs ` (None for the top-level usage).
fn spec_of_usage(usage: &str) -> Option<&'static CommandSpec> {
    let name = usage
        .strip_prefix("usage: agent-procs ")?
        .split_whitespace()
        .next()?;
    COMMAND_TABLE.iter().find(|spec| spec.name == name)
}

/// `unknown option '--jsn' for status; did you mean '--json'?`, or, with nothing
/// close, where to look. One line, no usage dump: the hint is the useful part.
fn unknown_option(flag: &str, usage: &'static str) -> Error {
    let spec = spec_of_usage(usage);
    let own: &[(&str, Takes)] = spec.map_or(TOP_FLAGS, |s| s.flags);
    let close = flag.strip_prefix("--").and_then(|typed| {
        let flags = own.iter().chain(COMMON_FLAGS).map(|(f, _)| *f);
        closest(typed, flags)
    });
    let (for_command, help) = match spec {
        Some(s) => (
            format!(" for {}", s.name),
            format!("agent-procs {} --help", s.name),
        ),
        None => (String::new(), "agent-procs --help".to_string()),
    };
    let msg = match close {
        Some(f) => format!("unknown option '{flag}'{for_command}; did you mean '--{f}'?"),
        None => format!("unknown option '{flag}'{for_command}; see '{help}'"),
    };
    usage_error(msg, "")
}

/// `unknown command 'stauts'; did you mean 'status'?`, or where to look.
fn unknown_command(typed: &str) -> Error {
    let names = COMMAND_TABLE.iter().map(|s| s.name).chain(["help"]);
    let msg = match closest(typed, names) {
        Some(name) => format!("unknown command '{typed}'; did you mean '{name}'?"),
        None => format!("unknown command '{typed}'; see 'agent-procs --help'"),
    };
    usage_error(msg, "")
}

/// `unknown session command 'lsit'; did you mean 'list'?`: the nearest of the
/// command's subcommands in the table, else the message and the usage.
fn unknown_subcommand(command: &str, typed: &str, usage: &'static str) -> Error {
    let subs = COMMAND_TABLE
        .iter()
        .find(|spec| spec.name == command)
        .map_or(&[][..], |spec| spec.subcommands);
    let msg = format!("unknown {command} command '{typed}'");
    match closest(typed, subs.iter().copied()) {
        Some(sub) => usage_error(format!("{msg}; did you mean '{sub}'?"), ""),
        None => usage_error(msg, usage),
    }
}

/// The candidate nearest to `typed`, if near enough to be a slip of the keyboard:
/// an edit distance (with swaps of neighbours, as `stauts` for `status`) of at
/// most 1 for words of up to 3 letters, 2 up to 6, else 3. Of equally near ones a
/// word `typed` begins (`stat`: status, not stop) wins, then the first.
pub fn closest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let typed = typed.to_ascii_lowercase();
    let limit = match typed.chars().count() {
        0 => return None,
        1..=3 => 1,
        4..=6 => 2,
        _ => 3,
    };
    let mut best: Option<((usize, bool), &str)> = None;
    for candidate in candidates {
        let d = crate::spelling::distance(&typed, candidate);
        let rank = (d, !candidate.starts_with(&typed));
        if d <= limit && best.is_none_or(|(b, _)| rank < b) {
            best = Some((rank, candidate));
        }
    }
    best.map(|(_, c)| c)
}

fn parse_run(p: &mut lexopt::Parser, session: &mut Globals) -> Result<Command> {
    let u = RUN_USAGE;
    let mut args = RunArgs::default();
    let (mut autorestart, mut max_restarts, mut restart_delay, mut exponential) =
        (None::<String>, None, None, false);
    let mut words: Vec<String> = Vec::new();
    while let Some(arg) = p.next().map_err(with_usage(u))? {
        match arg {
            Long("name") => {
                let name = string(p.value().map_err(with_usage(u))?, "--name", u)?;
                crate::paths::check_process_name(&name).map_err(|why| usage_error(why, u))?;
                args.name = Some(name);
            }
            Long("cwd") => args.cwd = Some(string(p.value().map_err(with_usage(u))?, "--cwd", u)?),
            Long("env") => {
                let kv = string(p.value().map_err(with_usage(u))?, "--env", u)?;
                match kv.split_once('=') {
                    Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
                        args.env.push((k.to_string(), v.to_string()))
                    }
                    _ => return Err(usage_error(format!("--env takes KEY=VALUE, not '{kv}'"), u)),
                }
            }
            Long("port") => args.port = Some(port(p.value().map_err(with_usage(u))?, u)?),
            Long("proxy") => args.proxy = true,
            Long("oneshot") => args.oneshot = true,
            Long("autorestart") => {
                let mode = string(p.value().map_err(with_usage(u))?, "--autorestart", u)?;
                if !["always", "on-failure", "never"].contains(&mode.as_str()) {
                    return Err(usage_error(
                        format!("--autorestart takes always, on-failure or never, not '{mode}'"),
                        u,
                    ));
                }
                autorestart = Some(mode);
            }
            Long("max-restarts") => {
                max_restarts = Some(number(
                    p.value().map_err(with_usage(u))?,
                    "--max-restarts",
                    "a number of restarts",
                    u,
                )?)
            }
            Long("restart-delay") => {
                restart_delay = Some(number(
                    p.value().map_err(with_usage(u))?,
                    "--restart-delay",
                    "a number of milliseconds",
                    u,
                )?)
            }
            Long(flag @ ("watch" | "watch-ignore")) => {
                let is_watch = flag == "watch";
                let what = if is_watch {
                    "--watch"
                } else {
                    "--watch-ignore"
                };
                let pattern = string(p.value().map_err(with_usage(u))?, what, u)?;
                if let Err(e) = crate::glob::Glob::new(&pattern) {
                    return Err(usage_error(format!("{what} '{pattern}': {e}"), u));
                }
                if is_watch {
                    args.watch.push(pattern);
                } else {
                    args.watch_ignore.push(pattern);
                }
            }
            Long("backoff") => {
                let kind = string(p.value().map_err(with_usage(u))?, "--backoff", u)?;
                if kind != "exponential" {
                    return Err(usage_error(
                        format!("--backoff takes exponential, not '{kind}'"),
                        u,
                    ));
                }
                exponential = true;
            }
            Long("log-max-size") => {
                let text = string(p.value().map_err(with_usage(u))?, "--log-max-size", u)?;
                let size = crate::config::parse_size(&text)
                    .filter(|&s| s > 0)
                    .ok_or_else(|| {
                        usage_error(
                            format!(
                                "--log-max-size takes a size like 512k, 10MB or 50MiB, not '{text}'"
                            ),
                            u,
                        )
                    })?;
                args.log_max_size = Some(size);
            }
            Value(v) => words.push(string(v, "the command", u)?),
            _ => common(other(arg), p, session, u)?,
        }
    }
    args.command = match words.len() {
        0 => return Err(usage_error("run needs a command", u)),
        1 => words.remove(0),
        _ => words
            .iter()
            .map(|w| crate::shell::quote(w))
            .collect::<Vec<_>>()
            .join(" "),
    };
    if args.command.trim().is_empty() {
        return Err(usage_error("run needs a command, not an empty string", u));
    }
    if args.watch.is_empty() && !args.watch_ignore.is_empty() {
        return Err(usage_error("--watch-ignore goes with --watch", u));
    }
    if args.oneshot && autorestart.as_deref() == Some("always") {
        return Err(usage_error(
            "--oneshot runs to completion, so it does not go with --autorestart always \
             (on-failure retries it until it succeeds)",
            u,
        ));
    }
    match autorestart.as_deref() {
        Some("never") if max_restarts.is_none() && restart_delay.is_none() && !exponential => {
            args.restart = Some(RestartArgs {
                mode: "never".into(),
                ..RestartArgs::default()
            })
        }
        Some("always" | "on-failure") => {
            args.restart = Some(RestartArgs {
                mode: autorestart.unwrap_or_default(),
                max_restarts,
                delay_ms: restart_delay,
                exponential,
            })
        }
        _ if max_restarts.is_some() || restart_delay.is_some() || exponential => {
            return Err(usage_error(
                "--max-restarts, --restart-delay and --backoff go with --autorestart always or on-failure",
                u,
            ));
        }
        _ => {}
    }
    Ok(Command::Run(args))
}

/// `help [COMMAND]`: the usage of COMMAND, exactly as `COMMAND --help` gives it.
fn parse_help(p: &mut lexopt::Parser) -> Result<Command> {
    let mut topic = None;
    while let Some(arg) = p.next()? {
        match arg {
            Value(v) if topic.is_none() => topic = Some(v),
            Short('h') | Long("help") => {}
            _ => return Err(usage_error(other_message(arg), USAGE)),
        }
    }
    let Some(topic) = topic else {
        return Ok(Command::Help(USAGE));
    };
    match parse([topic, OsString::from("--help")]) {
        Err(Error::Help(usage)) => Ok(Command::Help(usage)),
        Err(e) => Err(e),
        Ok(_) => Ok(Command::Help(USAGE)),
    }
}

/// What to say about an argument nothing takes.
fn other_message(arg: lexopt::Arg<'_>) -> String {
    match arg {
        Value(v) => format!("unexpected argument '{}'", v.to_string_lossy()),
        _ => arg.unexpected().to_string(),
    }
}

fn parse_target_only(
    p: &mut lexopt::Parser,
    session: &mut Globals,
    usage: &'static str,
) -> Result<String> {
    let mut target = None;
    while let Some(arg) = p.next().map_err(with_usage(usage))? {
        match arg {
            Value(v) if target.is_none() => target = Some(string(v, "the process name", usage)?),
            _ => common(other(arg), p, session, usage)?,
        }
    }
    target.ok_or_else(|| usage_error("missing process name or id", usage))
}

fn parse_stop(p: &mut lexopt::Parser, session: &mut Globals) -> Result<Command> {
    let u = STOP_USAGE;
    let mut target = None;
    let mut timeout = None;
    while let Some(arg) = p.next().map_err(with_usage(u))? {
        match arg {
            Long("timeout") => {
                timeout = Some(seconds(p.value().map_err(with_usage(u))?, "--timeout", u)?)
            }
            Value(v) if target.is_none() => target = Some(string(v, "the process name", u)?),
            _ => common(other(arg), p, session, u)?,
        }
    }
    let target = target.ok_or_else(|| usage_error("missing process name or id", u))?;
    Ok(Command::Stop { target, timeout })
}

fn parse_logs(p: &mut lexopt::Parser, session: &mut Globals) -> Result<Command> {
    let u = LOGS_USAGE;
    let mut a = LogsArgs {
        target: None,
        tail: 100,
        tail_given: false,
        stderr: false,
        both: false,
        all: false,
        follow: false,
        timeout: None,
        lines: None,
        since: None,
        after: None,
        grep: None,
        regex: false,
        ignore_case: false,
        context: 0,
        timestamps: false,
        json: false,
        max_bytes: None,
        cursor: false,
        runs: None,
    };
    while let Some(arg) = p.next().map_err(with_usage(u))? {
        let value = |p: &mut lexopt::Parser| p.value().map_err(with_usage(u));
        match arg {
            Long("tail") | Short('n') => {
                a.tail = number(value(p)?, "--tail", "a number of lines", u)?;
                a.tail_given = true;
            }
            Long("stderr") => a.stderr = true,
            Long("both") => a.both = true,
            Long("all") => a.all = true,
            Long("follow") | Short('f') => a.follow = true,
            Long("timeout") => a.timeout = Some(seconds(value(p)?, "--timeout", u)?),
            Long("lines") => a.lines = Some(number(value(p)?, "--lines", "a number of lines", u)?),
            Long("since") => {
                let text = string(value(p)?, "--since", u)?;
                a.since = Some(parse_since(&text).ok_or_else(|| {
                    usage_error(
                        format!("--since takes 30s, 5m, 2h, 1d, restart or start, not '{text}'"),
                        u,
                    )
                })?);
            }
            Long("after") => a.after = Some(string(value(p)?, "--after", u)?),
            Long("grep") => a.grep = Some(string(value(p)?, "--grep", u)?),
            Long("regex") => a.regex = true,
            Long("ignore-case") | Short('i') => a.ignore_case = true,
            Long("context") | Short('C') => {
                a.context = number(value(p)?, "--context", "a number of lines", u)?
            }
            Long("timestamps") => a.timestamps = true,
            Long("json") => a.json = true,
            Long("max-bytes") => {
                a.max_bytes = Some(number(value(p)?, "--max-bytes", "a number of bytes", u)?)
            }
            Long("cursor") => a.cursor = true,
            Long("runs") => {
                let text = string(value(p)?, "--runs", u)?;
                a.runs = Some(match text.parse::<usize>() {
                    _ if text == "all" => Runs::All,
                    Ok(n) if n > 0 => Runs::Last(n),
                    _ => {
                        return Err(usage_error(
                            format!(
                                "--runs takes a number of runs (1 or more) or all, not '{text}'"
                            ),
                            u,
                        ));
                    }
                });
            }
            Value(v) if a.target.is_none() => a.target = Some(string(v, "the process name", u)?),
            _ => common(other(arg), p, session, u)?,
        }
    }
    if a.target.is_some() && a.all {
        return Err(usage_error("give a process name or --all, not both", u));
    }
    if a.target.is_none() && !a.all {
        return Err(usage_error(
            "missing process name (or --all for every process)",
            u,
        ));
    }
    if a.stderr && a.both {
        return Err(usage_error("--stderr and --both exclude each other", u));
    }
    if !a.follow && (a.timeout.is_some() || a.lines.is_some()) {
        return Err(usage_error("--timeout and --lines go with --follow", u));
    }
    if a.grep.is_none() && (a.regex || a.ignore_case || a.context > 0) {
        return Err(usage_error(
            "--regex, --ignore-case and --context go with --grep",
            u,
        ));
    }
    if let Some(c) = &a.after
        && crate::logs::query::Position::parse(c).is_none()
    {
        return Err(usage_error(
            format!(
                "--after takes a cursor as printed by --json or --cursor (like 1795642245123456.0), not '{c}'"
            ),
            u,
        ));
    }
    if a.follow {
        let reading_only = [
            (a.since.is_some(), "--since"),
            (a.after.is_some(), "--after"),
            (a.context > 0, "--context"),
            (a.timestamps, "--timestamps"),
            (a.json, "--json"),
            (a.max_bytes.is_some(), "--max-bytes"),
            (a.cursor, "--cursor"),
        ];
        if let Some((_, flag)) = reading_only.iter().find(|(given, _)| *given) {
            return Err(usage_error(
                format!(
                    "{flag} reads the stored logs and cannot be combined with --follow in this version"
                ),
                u,
            ));
        }
    }
    Ok(Command::Logs(a))
}

fn parse_wait(p: &mut lexopt::Parser, session: &mut Globals) -> Result<Command> {
    let u = WAIT_USAGE;
    let mut a = WaitArgs {
        target: String::new(),
        until: None,
        regex: false,
        exit: false,
        success: false,
        port: None,
        http: None,
        timeout: None,
    };
    let mut target = None;
    while let Some(arg) = p.next().map_err(with_usage(u))? {
        match arg {
            Long("until") => {
                a.until = Some(string(p.value().map_err(with_usage(u))?, "--until", u)?)
            }
            Long("regex") => a.regex = true,
            Long("exit") => a.exit = true,
            Long("success") => a.success = true,
            Long("port") => a.port = Some(port(p.value().map_err(with_usage(u))?, u)?),
            Long("http") => {
                let url = string(p.value().map_err(with_usage(u))?, "--http", u)?;
                if let Err(why) = crate::probe::http_target(&url) {
                    return Err(usage_error(why, u));
                }
                a.http = Some(url);
            }
            Long("timeout") => {
                a.timeout = Some(seconds(p.value().map_err(with_usage(u))?, "--timeout", u)?)
            }
            Value(v) if target.is_none() => target = Some(string(v, "the process name", u)?),
            _ => common(other(arg), p, session, u)?,
        }
    }
    a.target = target.ok_or_else(|| usage_error("missing process name or id", u))?;
    let probes = usize::from(a.port.is_some()) + usize::from(a.http.is_some());
    if probes > 1 || (probes == 1 && (a.until.is_some() || a.exit)) {
        return Err(usage_error(
            "--port and --http go alone, not with each other, --until or --exit",
            u,
        ));
    }
    if a.success && !a.exit {
        return Err(usage_error("--success goes with --exit", u));
    }
    if a.until.is_none() && !a.exit && probes == 0 {
        return Err(usage_error(
            "say what to wait for: --until PAT, --exit, --port P or --http URL",
            u,
        ));
    }
    if a.regex && a.until.is_none() {
        return Err(usage_error("--regex goes with --until", u));
    }
    Ok(Command::Wait(a))
}

fn parse_up(p: &mut lexopt::Parser, session: &mut Globals) -> Result<Command> {
    let u = UP_USAGE;
    let mut a = UpArgs::default();
    while let Some(arg) = p.next().map_err(with_usage(u))? {
        match arg {
            Long("only") => only(p.value().map_err(with_usage(u))?, &mut a.only, u)?,
            Long("config") => {
                a.config = Some(std::path::PathBuf::from(p.value().map_err(with_usage(u))?))
            }
            Long("proxy") => a.proxy = true,
            Long("timeout") => {
                a.timeout = Some(seconds(p.value().map_err(with_usage(u))?, "--timeout", u)?)
            }
            _ => common(other(arg), p, session, u)?,
        }
    }
    Ok(Command::Up(a))
}

/// `--only a,b`: names added to `list` once each.
fn only(value: OsString, list: &mut Vec<String>, usage: &'static str) -> Result<()> {
    let text = string(value, "--only", usage)?;
    for name in text.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(usage_error(
                format!("--only takes names separated by commas, not '{text}'"),
                usage,
            ));
        }
        if !list.iter().any(|n| n == name) {
            list.push(name.to_string());
        }
    }
    Ok(())
}

fn parse_session(p: &mut lexopt::Parser, session: &mut Globals) -> Result<Command> {
    let u = SESSION_USAGE;
    let mut sub = None;
    while let Some(arg) = p.next().map_err(with_usage(u))? {
        match arg {
            Value(v) if sub.is_none() => sub = Some(string(v, "the subcommand", u)?),
            _ => common(other(arg), p, session, u)?,
        }
    }
    match sub.as_deref() {
        Some("list") => Ok(Command::SessionList),
        Some("clean") => Ok(Command::SessionClean),
        Some(other) => Err(unknown_subcommand("session", other, u)),
        None => Err(usage_error("session needs a subcommand: list or clean", u)),
    }
}

fn parse_completions(p: &mut lexopt::Parser, session: &mut Globals) -> Result<Command> {
    let u = COMPLETIONS_USAGE;
    let mut shell = None;
    while let Some(arg) = p.next().map_err(with_usage(u))? {
        match arg {
            Value(v) if shell.is_none() => shell = Some(string(v, "the shell", u)?),
            _ => common(other(arg), p, session, u)?,
        }
    }
    match shell.as_deref() {
        Some("bash") => Ok(Command::Completions(Shell::Bash)),
        Some("zsh") => Ok(Command::Completions(Shell::Zsh)),
        Some("fish") => Ok(Command::Completions(Shell::Fish)),
        Some(other) => Err(usage_error(
            format!("unknown shell '{other}'; completions are for bash, zsh and fish"),
            u,
        )),
        None => Err(usage_error(
            "completions needs a shell: bash, zsh or fish",
            u,
        )),
    }
}

fn parse_config(p: &mut lexopt::Parser, session: &mut Globals) -> Result<Command> {
    let u = CONFIG_USAGE;
    let mut sub = None;
    let mut path = None;
    let mut json = false;
    while let Some(arg) = p.next().map_err(with_usage(u))? {
        match arg {
            Long("config") => path = Some(p.value().map_err(with_usage(u))?.into()),
            Long("json") => json = true,
            Value(v) if sub.is_none() => sub = Some(string(v, "the subcommand", u)?),
            _ => common(other(arg), p, session, u)?,
        }
    }
    let show = match sub.as_deref() {
        Some("check") => false,
        Some("show") if json => true,
        Some("show") => {
            return Err(usage_error("config show prints JSON only; add --json", u));
        }
        Some(other) => return Err(unknown_subcommand("config", other, u)),
        None => return Err(usage_error("config needs a subcommand: check or show", u)),
    };
    Ok(Command::Config(ConfigArgs { show, path, json }))
}

fn parse_export(p: &mut lexopt::Parser, session: &mut Globals) -> Result<Command> {
    let u = EXPORT_USAGE;
    let mut format = None;
    let mut a = ExportArgs {
        format: ExportFormat::Systemd,
        config: None,
        only: Vec::new(),
        dir: None,
        force: false,
        user: false,
        prefix: None,
        json: false,
    };
    while let Some(arg) = p.next().map_err(with_usage(u))? {
        match arg {
            Long("dir") => a.dir = Some(p.value().map_err(with_usage(u))?.into()),
            Long("force") => a.force = true,
            Long("user") => a.user = true,
            Long("prefix") => {
                a.prefix = Some(string(p.value().map_err(with_usage(u))?, "--prefix", u)?)
            }
            Long("only") => only(p.value().map_err(with_usage(u))?, &mut a.only, u)?,
            Long("config") => a.config = Some(p.value().map_err(with_usage(u))?.into()),
            Long("json") => a.json = true,
            Value(v) if format.is_none() => format = Some(string(v, "the format", u)?),
            _ => common(other(arg), p, session, u)?,
        }
    }
    a.format = match format.as_deref() {
        Some("systemd") => ExportFormat::Systemd,
        Some("procfile") => ExportFormat::Procfile,
        Some(other) => {
            return Err(usage_error(
                format!("unknown export format '{other}'; export writes systemd or procfile"),
                u,
            ));
        }
        None => return Err(usage_error("export needs a format: systemd or procfile", u)),
    };
    if a.format == ExportFormat::Procfile && (a.user || a.prefix.is_some()) {
        let flag = if a.user { "--user" } else { "--prefix" };
        return Err(usage_error(format!("{flag} goes with export systemd"), u));
    }
    if a.force && a.dir.is_none() {
        return Err(usage_error("--force goes with --dir", u));
    }
    if let Some(prefix) = &a.prefix {
        crate::export::check_prefix(prefix).map_err(|msg| usage_error(msg, u))?;
    }
    Ok(Command::Export(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Invocation> {
        parse(line.split_whitespace().map(OsString::from))
    }

    fn command(line: &str) -> Command {
        parse_str(line)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .command
    }

    #[test]
    fn session_is_accepted_before_and_after_the_command() {
        assert_eq!(parse_str("--session a status").unwrap().session, "a");
        assert_eq!(parse_str("status --session b").unwrap().session, "b");
        assert_eq!(parse_str("status").unwrap().session, "default");
    }

    #[test]
    fn mcp_defaults_to_the_worktree_session() {
        // `status` would be `default` here (the test below); `mcp` is `auto`.
        let inv = parse_str("mcp").unwrap();
        assert_eq!(inv.command, Command::Mcp);
        assert!(
            inv.session_root.is_some(),
            "derived from a worktree: {inv:?}"
        );
        assert_ne!(inv.session, "default");
        assert_eq!(parse_str("mcp --session a").unwrap().session, "a");
        assert!(parse_str("mcp --json").is_err());
        assert!(parse_str("mcp extra").is_err());
    }

    #[test]
    fn run_takes_its_options_and_joins_words() {
        let Command::Run(r) =
            command("run sleep --name web --env A=1 --env B=x=y --port 8000 --cwd /tmp")
        else {
            panic!()
        };
        assert_eq!(r.command, "sleep");
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(
            r.env,
            vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(r.port, Some(8000));
        assert_eq!(r.cwd.as_deref(), Some("/tmp"));
        let Command::Run(r) = command("run -- echo it's --name") else {
            panic!()
        };
        assert_eq!(r.command, r"echo 'it'\''s' --name");
    }

    #[test]
    fn usage_errors_name_the_problem() {
        let cases = [
            ("", "no command given"),
            (
                "frobnicate",
                "unknown command 'frobnicate'; see 'agent-procs --help'",
            ),
            ("run", "run needs a command"),
            (
                "run x --port 70000",
                "--port takes a port number from 1 to 65535, not '70000'",
            ),
            (
                "run x --env NOEQUALS",
                "--env takes KEY=VALUE, not 'NOEQUALS'",
            ),
            ("stop", "missing process name or id"),
            (
                "stop web --timeout soon",
                "--timeout takes a number of seconds, not 'soon'",
            ),
            (
                "wait web",
                "say what to wait for: --until PAT, --exit, --port P or --http URL",
            ),
            (
                "wait web --port 80 --exit",
                "--port and --http go alone, not with each other, --until or --exit",
            ),
            (
                "wait web --port 0",
                "--port takes a port number from 1 to 65535, not '0'",
            ),
            (
                "wait web --http https://x/",
                "invalid URL 'https://x/': only http:// URLs can be probed",
            ),
            (
                "up --only a,,b",
                "--only takes names separated by commas, not 'a,,b'",
            ),
            ("up web", "unexpected argument 'web'"),
            ("wait web --exit --regex", "--regex goes with --until"),
            ("logs", "missing process name (or --all for every process)"),
            ("logs web --all", "give a process name or --all, not both"),
            (
                "logs web --lines 3",
                "--timeout and --lines go with --follow",
            ),
            (
                "status --jsn",
                "unknown option '--jsn' for status; did you mean '--json'?",
            ),
            ("session", "session needs a subcommand: list or clean"),
        ];
        for (line, want) in cases {
            match parse_str(line) {
                Err(e @ Error::Usage { .. }) => assert_eq!(e.to_string(), want, "{line}"),
                other => panic!("{line}: expected a usage error, got {other:?}"),
            }
        }
        let empty = parse(["--session", "", "status"].map(OsString::from));
        assert!(matches!(empty, Err(Error::Usage { msg, .. }) if msg == "--session needs a name"));
    }

    #[test]
    fn slips_of_the_keyboard_find_the_word_meant() {
        let commands = || COMMAND_TABLE.iter().map(|c| c.name);
        let cases = [
            ("stauts", Some("status")),
            ("stat", Some("status")),
            ("log", Some("logs")),
            ("Restart", Some("restart")),
            ("stop-al", Some("stop-all")),
            ("exprot", Some("export")),
            ("frobnicate", None),
            ("xy", None),
            ("", None),
        ];
        for (typed, want) in cases {
            assert_eq!(closest(typed, commands()), want, "{typed}");
        }
    }

    #[test]
    fn a_misspelled_flag_is_matched_against_that_commands_own_flags() {
        let cases = [
            (
                "logs web --tial 3",
                "unknown option '--tial' for logs; did you mean '--tail'?",
            ),
            (
                "logs web --folow",
                "unknown option '--folow' for logs; did you mean '--follow'?",
            ),
            (
                "run x --nmae a",
                "unknown option '--nmae' for run; did you mean '--name'?",
            ),
            (
                "status --sesion a",
                "unknown option '--sesion' for status; did you mean '--session'?",
            ),
            (
                "--verison",
                "unknown option '--verison'; did you mean '--version'?",
            ),
            // A flag of another command is not offered.
            (
                "stop web --follow",
                "unknown option '--follow' for stop; see 'agent-procs stop --help'",
            ),
            (
                "status -x",
                "unknown option '-x' for status; see 'agent-procs status --help'",
            ),
            ("stpo web", "unknown command 'stpo'; did you mean 'stop'?"),
            (
                "session lsit",
                "unknown session command 'lsit'; did you mean 'list'?",
            ),
            (
                "config chekc",
                "unknown config command 'chekc'; did you mean 'check'?",
            ),
            ("-x status", "unknown option '-x'; see 'agent-procs --help'"),
        ];
        for (line, want) in cases {
            match parse_str(line) {
                Err(Error::Usage { msg, usage: "" }) => assert_eq!(msg, want, "{line}"),
                other => panic!("{line}: expected a one-line usage error, got {other:?}"),
            }
        }
        // Every command's usage leads back to its own entry, so its flags are offered.
        for spec in COMMAND_TABLE {
            let Err(Error::Help(usage)) = parse_str(&format!("{} --help", spec.name)) else {
                panic!("{} --help gives no usage", spec.name)
            };
            assert!(
                spec_of_usage(usage).is_some_and(|s| s.name == spec.name),
                "{}: its usage does not start with 'usage: agent-procs {}'",
                spec.name,
                spec.name
            );
        }
        assert!(spec_of_usage(USAGE).is_none());
    }

    #[test]
    fn help_command_is_the_commands_own_help() {
        assert_eq!(command("help"), Command::Help(USAGE));
        assert_eq!(command("help help"), Command::Help(USAGE));
        for spec in COMMAND_TABLE {
            let Err(Error::Help(usage)) = parse_str(&format!("{} --help", spec.name)) else {
                panic!("{} --help gives no usage", spec.name)
            };
            assert_eq!(
                command(&format!("help {}", spec.name)),
                Command::Help(usage)
            );
        }
        assert!(matches!(
            parse_str("help stauts"),
            Err(Error::Usage { msg, .. }) if msg.contains("did you mean 'status'?")
        ));
    }

    #[test]
    fn names_are_checked_before_anything_runs() {
        let Command::Logs(l) = command("logs web -n 7") else {
            panic!()
        };
        assert_eq!((l.tail, l.tail_given), (7, true));
        for line in [
            "run x --name a/b",
            "run x --name .hidden",
            "--session a/b status",
            "status --session ../x",
        ] {
            assert!(
                matches!(parse_str(line), Err(Error::Usage { .. })),
                "{line} is not a usage error"
            );
        }
        assert_eq!(
            parse_str("--session auto-1 status").unwrap().session,
            "auto-1"
        );
    }

    #[test]
    fn help_and_version_are_commands_of_their_own() {
        assert_eq!(command("--help"), Command::Help(USAGE));
        assert_eq!(command("-V"), Command::Version);
        assert!(matches!(
            parse_str("logs --help"),
            Err(Error::Help(LOGS_USAGE))
        ));
    }

    #[test]
    fn wait_and_logs_defaults_match_0_6() {
        let Command::Logs(l) = command("logs web") else {
            panic!()
        };
        assert_eq!((l.tail, l.stderr, l.follow), (100, false, false));
        let Command::Wait(w) = command("wait web --until ready --timeout 0.5") else {
            panic!()
        };
        assert_eq!(w.timeout, Some(Duration::from_millis(500)));
    }

    #[test]
    fn every_command_has_a_parser() {
        for name in COMMANDS {
            let result = parse_str(&format!("{name} --help"));
            assert!(matches!(result, Err(Error::Help(_))), "{name}: {result:?}");
        }
    }

    #[test]
    fn config_takes_a_subcommand_a_path_and_json() {
        let parsed = |line| match command(line) {
            Command::Config(args) => (args.show, args.path, args.json),
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(parsed("config check"), (false, None, false));
        assert_eq!(
            parsed("config --json check --config a/b.yaml"),
            (false, Some("a/b.yaml".into()), true)
        );
        assert_eq!(parsed("config show --json"), (true, None, true));
        let cases = [
            ("config", "config needs a subcommand: check or show"),
            ("config show", "config show prints JSON only; add --json"),
            ("config up", "unknown config command 'up'"),
            ("config check extra", "unexpected argument 'extra'"),
        ];
        for (line, want) in cases {
            match parse_str(line) {
                Err(e @ Error::Usage { .. }) => assert_eq!(e.to_string(), want, "{line}"),
                other => panic!("{line}: expected a usage error, got {other:?}"),
            }
        }
    }

    #[test]
    fn export_takes_a_format_and_its_flags() {
        let Command::Export(a) =
            command("export systemd --user --prefix shop --dir out --force --only api,web --json")
        else {
            panic!()
        };
        assert_eq!(a.format, ExportFormat::Systemd);
        assert!(a.user && a.force && a.json);
        assert_eq!(a.prefix.as_deref(), Some("shop"));
        assert_eq!(a.dir, Some("out".into()));
        assert_eq!(a.only, ["api", "web"]);
        let Command::Export(a) = command("export procfile --config x.yaml") else {
            panic!()
        };
        assert_eq!(a.format, ExportFormat::Procfile);
        assert_eq!(a.config, Some("x.yaml".into()));
        let cases = [
            ("export", "export needs a format: systemd or procfile"),
            (
                "export upstart",
                "unknown export format 'upstart'; export writes systemd or procfile",
            ),
            ("export procfile --user", "--user goes with export systemd"),
            (
                "export procfile --prefix p",
                "--prefix goes with export systemd",
            ),
            ("export systemd --force", "--force goes with --dir"),
            (
                "export systemd --prefix a@b",
                "--prefix takes letters, digits, '.', '_' and '-', not starting with '.' or '-', not 'a@b'",
            ),
            ("export systemd procfile", "unexpected argument 'procfile'"),
        ];
        for (line, want) in cases {
            match parse_str(line) {
                Err(e @ Error::Usage { .. }) => assert_eq!(e.to_string(), want, "{line}"),
                other => panic!("{line}: expected a usage error, got {other:?}"),
            }
        }
    }

    #[test]
    fn completions_take_one_known_shell() {
        assert_eq!(
            command("completions fish"),
            Command::Completions(Shell::Fish)
        );
        let cases = [
            (
                "completions",
                "completions needs a shell: bash, zsh or fish",
            ),
            (
                "completions tcsh",
                "unknown shell 'tcsh'; completions are for bash, zsh and fish",
            ),
            ("completions bash zsh", "unexpected argument 'zsh'"),
        ];
        for (line, want) in cases {
            match parse_str(line) {
                Err(e @ Error::Usage { .. }) => assert_eq!(e.to_string(), want, "{line}"),
                other => panic!("{line}: expected a usage error, got {other:?}"),
            }
        }
    }

    /// Errors by which lexopt or `common` refuse a flag rather than its value.
    fn refuses_flag(result: &Result<Invocation>) -> bool {
        let refusals = ["unknown option", "unexpected argument", "missing argument"];
        matches!(result, Err(Error::Usage { msg, .. }) if refusals.iter().any(|r| msg.contains(r)))
    }

    #[test]
    fn completion_table_agrees_with_the_parser() {
        let names: Vec<&str> = COMMAND_TABLE.iter().map(|c| c.name).collect();
        assert_eq!(names, COMMANDS);
        for spec in COMMAND_TABLE {
            for sub in spec.subcommands {
                let line = format!("{} {sub}", spec.name);
                assert!(!refuses_flag(&parse_str(&line)), "{line} is refused");
            }
            // The command with its first subcommand or a process name, then the flag.
            let mut head = spec.name.to_string();
            if let Some(sub) = spec.subcommands.first() {
                head = format!("{head} {sub}");
            }
            if spec.takes_process {
                head = format!("{head} web");
            }
            for &(flag, takes) in spec.flags.iter().chain(COMMON_FLAGS) {
                // Accepted, though the line may still fail a later check.
                let given = match takes {
                    Takes::Nothing => format!("{head} --{flag}"),
                    Takes::Word | Takes::Path => format!("{head} --{flag}=1"),
                };
                let result = parse_str(&given);
                assert!(!refuses_flag(&result), "{given}: {result:?}");
                // And it takes a value exactly when the table says so.
                let (wrong, want) = match takes {
                    Takes::Nothing if flag == "help" => continue, // ends parsing at once
                    Takes::Nothing => (format!("{head} --{flag}=1"), "unexpected argument for"),
                    Takes::Word | Takes::Path => (format!("{head} --{flag}"), "missing argument"),
                };
                match parse_str(&wrong) {
                    Err(Error::Usage { msg, .. }) if msg.contains(want) => {}
                    other => panic!("{wrong}: expected '{want}', got {other:?}"),
                }
            }
        }
        assert_eq!(command("--version"), Command::Version);
        assert_eq!(parse_str("--session=s status").unwrap().session, "s");
    }

    #[test]
    fn completion_table_has_every_flag_of_the_usage_texts() {
        let mut kinds = std::collections::BTreeMap::new();
        for &(flag, takes) in COMMON_FLAGS.iter().chain(TOP_FLAGS) {
            kinds.insert(flag, takes);
        }
        for spec in COMMAND_TABLE {
            let Err(Error::Help(usage)) = parse_str(&format!("{} --help", spec.name)) else {
                panic!("{} --help gives no usage", spec.name)
            };
            let own: std::collections::BTreeSet<&str> = spec.flags.iter().map(|f| f.0).collect();
            let in_usage = long_flags(usage, "-");
            for flag in &in_usage {
                let known =
                    own.contains(flag.as_str()) || COMMON_FLAGS.iter().any(|(f, _)| f == flag);
                assert!(
                    known,
                    "{} --{flag} is in its usage, not in COMMAND_TABLE",
                    spec.name
                );
            }
            for flag in &own {
                assert!(
                    in_usage.contains(*flag),
                    "{} --{flag} is in COMMAND_TABLE, not in its usage",
                    spec.name
                );
            }
            // The scripts skip a flag's value by the flag's name alone.
            for &(flag, takes) in spec.flags {
                let first = *kinds.entry(flag).or_insert(takes);
                assert_eq!(
                    first, takes,
                    "--{flag} takes different things in different commands"
                );
            }
            // Menus show these in single quotes.
            assert!(!spec.about.contains(['\'', '\\']), "{}", spec.about);
        }
        for flag in long_flags(USAGE, "-") {
            assert!(
                kinds.contains_key(flag.as_str()),
                "--{flag} is in USAGE, not in the table"
            );
        }
    }

    /// The long options in `text`: `--word` with `dash` standing for one hyphen
    /// (`-` in usage texts, `\-` in roff). A bare `--` (end of options) is not one.
    fn long_flags(text: &str, dash: &str) -> std::collections::BTreeSet<String> {
        let lead = dash.repeat(2);
        let mut flags = std::collections::BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find(&lead) {
            rest = &rest[at + lead.len()..];
            let mut flag = String::new();
            loop {
                if let Some(c) = rest.chars().next().filter(char::is_ascii_alphanumeric) {
                    flag.push(c);
                    rest = &rest[1..];
                } else if !flag.is_empty()
                    && rest.starts_with(dash)
                    && rest[dash.len()..].starts_with(|c: char| c.is_ascii_alphanumeric())
                {
                    flag.push('-');
                    rest = &rest[dash.len()..];
                } else {
                    break;
                }
            }
            if !flag.is_empty() {
                flags.insert(flag);
            }
        }
        flags
    }

    #[test]
    fn man_page_documents_every_command_and_flag() {
        let page = include_str!("../man/agent-procs.1");
        let usages = [
            USAGE,
            RUN_USAGE,
            STOP_USAGE,
            STOP_ALL_USAGE,
            RESTART_USAGE,
            STATUS_USAGE,
            EVENTS_USAGE,
            LOGS_USAGE,
            WAIT_USAGE,
            UP_USAGE,
            DOWN_USAGE,
            UI_USAGE,
            SESSION_USAGE,
            CONFIG_USAGE,
            EXPORT_USAGE,
            COMPLETIONS_USAGE,
            MCP_USAGE,
        ];
        // The list above must name every usage constant of this file.
        let declared = include_str!("cli.rs")
            .matches(["_USAGE", ": &str = "].concat().as_str())
            .count();
        assert_eq!(
            declared + 1,
            usages.len(),
            "a *_USAGE constant is missing here"
        );

        // Every command is the tag of an entry in COMMANDS.
        let commands = page
            .split("\n.SH COMMANDS\n")
            .nth(1)
            .and_then(|s| s.split("\n.SH ").next())
            .expect("the page has a COMMANDS section");
        let tagged: Vec<String> = commands
            .lines()
            .zip(commands.lines().skip(1))
            .filter(|(line, _)| *line == ".TP")
            .filter_map(|(_, tag)| {
                let tag = tag.replace(r"\-", "-");
                let (_macro, args) = tag.split_once(' ')?;
                let word = args.trim_start_matches('"').split([' ', '"']).next()?;
                Some(word.to_string())
            })
            .collect();
        for name in COMMANDS {
            assert!(
                tagged.iter().any(|t| t == name),
                "agent-procs(1) has no COMMANDS entry for '{name}'"
            );
        }

        // Options are written \-\-flag in roff, never with plain hyphens.
        assert!(
            !page.replace(r"\-\-", "").contains("--"),
            "agent-procs(1) has a '--' that should be written '\\-\\-'"
        );
        let in_usage: std::collections::BTreeSet<String> =
            usages.iter().flat_map(|u| long_flags(u, "-")).collect();
        let in_page = long_flags(page, r"\-");
        for flag in &in_usage {
            assert!(
                in_page.contains(flag),
                "agent-procs(1) does not document --{flag}"
            );
        }
        // COMPATIBILITY names the 0.6 options this version does not have yet; they
        // must stay unknown to the parser until they are documented properly.
        let not_yet: [&str; 0] = [];
        for flag in &in_page {
            if not_yet.contains(&flag.as_str()) {
                assert!(!in_usage.contains(flag), "--{flag} is in a usage text now");
                let line = format!("run x --{flag}");
                assert!(
                    matches!(parse_str(&line), Err(Error::Usage { .. })),
                    "{line} parses, but agent-procs(1) says it does not exist"
                );
            } else {
                assert!(
                    in_usage.contains(flag),
                    "agent-procs(1) documents --{flag}, which no usage text mentions"
                );
            }
        }
    }
}
