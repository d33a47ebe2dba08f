//! `logs`: print from the files (no daemon needed), or follow through the daemon.

use crate::cli::{LogsArgs, Runs};
use crate::client::{Conn, daemon_error, read_logs, render_line, unexpected, write_stdout};
use crate::error::Result;
use crate::logs::query::Position;
use crate::paths::SessionPaths;
use crate::protocol::{Request, Response, Stream};
use std::time::Duration;

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
