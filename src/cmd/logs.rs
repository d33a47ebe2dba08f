//! `logs`: print from the files (no daemon needed), or follow through the daemon.

use crate::cli::{
    Args, Command, CommandSpec, Flag, LogsArgs, Runs, SESSION_FLAG, SinceArg, common, other,
    parse_since,
};
use crate::client::{Conn, daemon_error, read_logs, render_line, unexpected, write_stdout};
use crate::error::Result;
use crate::logs::query::Position;
use crate::paths::SessionPaths;
use crate::protocol::{Request, Response, Stream};
use lexopt::prelude::*;
use std::time::Duration;

pub static LOGS: CommandSpec = CommandSpec {
    name: "logs",
    about: "print the output of a process",
    usage: LOGS_USAGE,
    after: "",
    subcommands: &[],
    flags: &[
        Flag::word(
            "tail",
            "N",
            "show the last N lines, or with --grep the last N matches\n\
             (default: 100, or everything with --since, --after or --grep)",
        )
        .or_short('n'),
        Flag::word(
            "runs",
            "N|all",
            "cover the last N runs of each process, or every run kept\n\
             (default: 1, or all with --since or --after)",
        ),
        Flag::switch("stderr", "show stderr instead of stdout"),
        Flag::switch(
            "both",
            "show stdout and stderr; stderr lines are marked err| or [name:err]",
        ),
        Flag::switch(
            "all",
            "show every process of the running daemon (or of the last one),\n\
             lines prefixed with [name]",
        ),
        Flag::word(
            "since",
            "WHEN",
            "only output from WHEN on, across runs: 30s, 5m, 2h, 1d ago,\n\
             restart (the latest start of the process) or start (everything kept)",
        ),
        Flag::word(
            "after",
            "CURSOR",
            "only output after CURSOR (from --json or --cursor), across runs, so\n\
             a poller never reads a line twice or misses one",
        ),
        Flag::word(
            "grep",
            "PAT",
            "only lines containing PAT; exit 1 when no line matches, as\n\
             grep does",
        ),
        Flag::switch("regex", "PAT is a regular expression"),
        Flag::switch("ignore-case", "match PAT regardless of case").or_short('i'),
        Flag::word(
            "context",
            "N",
            "with --grep: N lines around each match; groups separated by --",
        )
        .or_short('C'),
        Flag::switch(
            "timestamps",
            "prefix each line with the time it arrived (RFC 3339, UTC)",
        ),
        Flag::switch(
            "json",
            "JSON Lines: schema, process, stream, seq, time, line, cursor, run\n\
             (+ context); no run markers",
        ),
        Flag::word(
            "max-bytes",
            "B",
            "print at most B bytes, keeping the newest lines; says on stderr\n\
             what was left out",
        ),
        Flag::switch(
            "cursor",
            "print the cursor after the last line on stderr (cursor: X)",
        ),
        Flag::switch(
            "follow",
            "replay the tail of the latest run (or of --runs), then stream new\n\
             lines from the daemon; a run that starts meanwhile is marked",
        )
        .or_short('f'),
        Flag::word(
            "timeout",
            "S",
            "with --follow: stop after S seconds (default: 30)",
        ),
        Flag::word("lines", "N", "with --follow: stop after N new lines"),
        SESSION_FLAG,
    ],
    takes_process: true,
    parse,
};

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
  --- run 3 started 2026-12-07 16:40:01 UTC (pid 1234); previous run: exited 1 ---";

fn parse(a: &mut Args<'_>) -> Result<Command> {
    let mut l = LogsArgs {
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
    while let Some(arg) = a.next_arg()? {
        match arg {
            Long("tail") | Short('n') => {
                l.tail = a.number("--tail", "a number of lines")?;
                l.tail_given = true;
            }
            Long("stderr") => l.stderr = true,
            Long("both") => l.both = true,
            Long("all") => l.all = true,
            Long("follow") | Short('f') => l.follow = true,
            Long("timeout") => l.timeout = Some(a.seconds("--timeout")?),
            Long("lines") => l.lines = Some(a.number("--lines", "a number of lines")?),
            Long("since") => l.since = Some(since(a)?),
            Long("after") => l.after = Some(a.text("--after")?),
            Long("grep") => l.grep = Some(a.text("--grep")?),
            Long("regex") => l.regex = true,
            Long("ignore-case") | Short('i') => l.ignore_case = true,
            Long("context") | Short('C') => {
                l.context = a.number("--context", "a number of lines")?
            }
            Long("timestamps") => l.timestamps = true,
            Long("json") => l.json = true,
            Long("max-bytes") => l.max_bytes = Some(a.number("--max-bytes", "a number of bytes")?),
            Long("cursor") => l.cursor = true,
            Long("runs") => l.runs = Some(runs(a)?),
            Value(v) if l.target.is_none() => l.target = Some(a.word(v, "the process name")?),
            _ => common(other(arg), a)?,
        }
    }
    check(a, &l)?;
    Ok(Command::Logs(l))
}

/// `--since 5m|restart|start`.
fn since(a: &mut Args<'_>) -> Result<SinceArg> {
    let text = a.text("--since")?;
    parse_since(&text).ok_or_else(|| {
        a.error(format!(
            "--since takes 30s, 5m, 2h, 1d, restart or start, not '{text}'"
        ))
    })
}

/// `--runs N|all`.
fn runs(a: &mut Args<'_>) -> Result<Runs> {
    let text = a.text("--runs")?;
    match text.parse::<usize>() {
        _ if text == "all" => Ok(Runs::All),
        Ok(n) if n > 0 => Ok(Runs::Last(n)),
        _ => Err(a.error(format!(
            "--runs takes a number of runs (1 or more) or all, not '{text}'"
        ))),
    }
}

/// The flags that do not go together.
fn check(a: &Args<'_>, l: &LogsArgs) -> Result<()> {
    if l.target.is_some() && l.all {
        return Err(a.error("give a process name or --all, not both"));
    }
    if l.target.is_none() && !l.all {
        return Err(a.error("missing process name (or --all for every process)"));
    }
    if l.stderr && l.both {
        return Err(a.error("--stderr and --both exclude each other"));
    }
    if !l.follow && (l.timeout.is_some() || l.lines.is_some()) {
        return Err(a.error("--timeout and --lines go with --follow"));
    }
    if l.grep.is_none() && (l.regex || l.ignore_case || l.context > 0) {
        return Err(a.error("--regex, --ignore-case and --context go with --grep"));
    }
    if let Some(c) = &l.after
        && Position::parse(c).is_none()
    {
        return Err(a.error(format!(
            "--after takes a cursor as printed by --json or --cursor (like 1795642245123456.0), not '{c}'"
        )));
    }
    if l.follow {
        let reading_only = [
            (l.since.is_some(), "--since"),
            (l.after.is_some(), "--after"),
            (l.context > 0, "--context"),
            (l.timestamps, "--timestamps"),
            (l.json, "--json"),
            (l.max_bytes.is_some(), "--max-bytes"),
            (l.cursor, "--cursor"),
        ];
        if let Some((_, flag)) = reading_only.iter().find(|(given, _)| *given) {
            return Err(a.error(format!(
                "{flag} reads the stored logs and cannot be combined with --follow in this version"
            )));
        }
    }
    Ok(())
}

/// `logs` without `--follow`: from the files.
pub fn print(paths: &SessionPaths, args: &LogsArgs) -> Result<i32> {
    let read = read_logs(paths, args)?;
    let marks = read.marks();
    let (sources, lines) = (&read.sources, &read.lines);
    let mut rendered: Vec<Vec<u8>> = lines
        .iter()
        .zip(&marks)
        .map(|(line, mark)| render_line(line, sources, args, mark))
        .collect();
    if let Some(budget) = args.max_bytes {
        let mut total = 0;
        let keep = rendered.iter().rev().take_while(|r| {
            total += r.len();
            total <= budget
        });
        let kept = keep.count();
        let cut = rendered.len() - kept;
        if cut > 0 {
            let bytes: usize = rendered[..cut].iter().map(Vec::len).sum();
            eprintln!(
                "agent-procs: --max-bytes {budget}: left out the {cut} oldest lines ({bytes} bytes); \
                 narrow with --tail, --since or --grep"
            );
            rendered.drain(..cut);
        }
    }
    let out: Vec<u8> = rendered.concat();
    write_stdout(&out)?;
    if args.cursor {
        let cursor = match lines.last() {
            Some(line) => line.pos.cursor(),
            None => args
                .after
                .clone()
                .unwrap_or_else(|| Position::default().cursor()),
        };
        eprintln!("cursor: {cursor}");
    }
    Ok(grep_status(args, lines.iter().any(|l| !l.context)))
}

/// The exit status of `logs`: with `--grep`, 1 when no line matched, as grep does.
fn grep_status(args: &LogsArgs, matched: bool) -> i32 {
    i32::from(args.grep.is_some() && !matched)
}

/// `logs --follow`: through the daemon.
pub fn follow(paths: &SessionPaths, args: LogsArgs) -> Result<i32> {
    let timeout = args.timeout.unwrap_or(Duration::from_secs(30));
    let request = Request::Logs {
        target: args.target.clone(),
        tail: args.tail,
        follow: true,
        stderr: args.stderr,
        all: args.all,
        timeout_secs: Some(timeout.as_secs_f64().ceil() as u64),
        lines: args.lines,
        both: args.both,
        grep: args.grep.clone(),
        regex: args.regex,
        ignore_case: args.ignore_case,
        chunked: true,
        // Also asks the daemon to mark run starts.
        runs: Some(match args.runs {
            None => 1,
            Some(Runs::Last(n)) => n as u64,
            Some(Runs::All) => 0,
        }),
    };
    let mut conn = Conn::open(paths, false)?;
    conn.send(&request)?;
    let mut matched = false;
    // Lines are gathered while more are already waiting in the socket buffer and
    // written out in one go: a line at a time would make the reader the bottleneck.
    let mut out = Vec::new();
    loop {
        let response = match conn.recv(Some(timeout)) {
            Ok(response) => response,
            Err(e) => {
                write_stdout(&out)?;
                return Err(e);
            }
        };
        match response {
            Response::LogLine {
                process,
                line,
                stream,
            } => {
                matched = true;
                push_followed(&mut out, &args, &process, stream, &line);
                // Nothing more waiting: show what we have before blocking again.
                if !conn.has_buffered() || out.len() > 1 << 20 {
                    write_stdout(&out)?;
                    out.clear();
                }
            }
            Response::LogChunk {
                process,
                lines,
                stream,
            } => {
                matched = true;
                for line in lines.split('\n') {
                    push_followed(&mut out, &args, &process, stream, line);
                }
                if !conn.has_buffered() || out.len() > 1 << 20 {
                    write_stdout(&out)?;
                    out.clear();
                }
            }
            Response::LogEnd => {
                write_stdout(&out)?;
                return Ok(grep_status(&args, matched));
            }
            Response::Error { code, message } => {
                write_stdout(&out)?;
                return Err(daemon_error(code, message));
            }
            other => {
                write_stdout(&out)?;
                return unexpected(other);
            }
        }
    }
}

/// One followed line as printed: marked by process and stream as asked.
fn push_followed(out: &mut Vec<u8>, args: &LogsArgs, process: &str, stream: Stream, line: &str) {
    let err = args.both && stream == Stream::Stderr;
    match (args.all, err) {
        (true, true) => out.extend_from_slice(format!("[{process}:err] ").as_bytes()),
        (true, false) => out.extend_from_slice(format!("[{process}] ").as_bytes()),
        (false, true) => out.extend_from_slice(b"err| "),
        (false, false) => {}
    }
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
}
