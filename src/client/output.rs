//! Printing shared by the commands: the `--json`/`--quiet` switch, whole
//! writes to stdout, the status table and a log line as shown.

use crate::cli::LogsArgs;
use crate::error::{Context, Error, Result};
use crate::logs;
use crate::logs::query::{Line, Source};
use crate::protocol::{ProcessInfo, Stream};
use std::fmt::Write as _;
use std::io::{self, Write};

/// How a command reports what it did: text, one JSON object, or nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
}

impl Output {
    /// Print `text` (a line), or `json` with `"schema": 1` first; nothing when quiet.
    pub fn say(self, text: &str, json: serde_json::Value) -> Result<()> {
        if self.quiet {
            return Ok(());
        }
        if self.json {
            let mut object = serde_json::Map::new();
            object.insert("schema".into(), 1.into());
            if let serde_json::Value::Object(fields) = json {
                object.extend(fields);
            }
            let line = serde_json::Value::Object(object).to_string();
            return print_line(&line);
        }
        print_line(text)
    }
}

/// A stop's answer is one line, then a sentence per process that left something
/// running outside its group: those go to stderr, where a person sees them even
/// when stdout is parsed. Returns the first line.
pub fn warn_survivors(message: &str) -> &str {
    let mut lines = message.lines();
    let headline = lines.next().unwrap_or_default();
    for line in lines.filter(|l| !l.is_empty()) {
        eprintln!("agent-procs: warning: {line}");
    }
    headline
}

/// The table of 0.6: NAME PID STATE EXIT [URL] UPTIME; with `resources`,
/// PROCS RSS CPU LISTEN after it, so the 0.6 columns stay where they were.
pub fn status_table(processes: &[ProcessInfo], resources: bool) -> String {
    let has_urls = processes.iter().any(|p| p.url.is_some());
    // 0.6's columns; RESTARTS only when some process has a policy.
    let has_restarts = processes
        .iter()
        .any(|p| p.restart_policy.is_some() || p.restart_count.is_some());
    let has_watch = processes.iter().any(|p| p.watched == Some(true));
    let exit_text = |p: &ProcessInfo| match (&p.exit_code, &p.exit_signal) {
        (Some(code), _) => code.to_string(),
        (None, Some(sig)) => sig.clone(),
        (None, None) => "-".into(),
    };
    // 0.6's width, widened when a signal name (SIGTERM) would not fit.
    let ew = processes
        .iter()
        .map(|p| exit_text(p).len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!(
        "{:<12} {:<8} {:<10} {:<ew$}",
        "NAME", "PID", "STATE", "EXIT"
    );
    if has_restarts {
        let _ = write!(out, " {:<10}", "RESTARTS");
    }
    if has_watch {
        let _ = write!(out, " {:<6}", "WATCH");
    }
    if has_urls {
        let _ = write!(out, " {:<30}", "URL");
    }
    if resources {
        out.push_str(" UPTIME   PROCS RSS      CPU    LISTEN\n");
    } else {
        out.push_str(" UPTIME\n");
    }
    for p in processes {
        let state = if p.state == "failed" {
            "FAILED"
        } else {
            p.state.as_str()
        };
        let exit = exit_text(p);
        let _ = write!(
            out,
            "{:<12} {:<8} {:<10} {:<ew$}",
            p.name, p.pid, state, exit
        );
        if has_restarts {
            let restarts = match (p.restart_count, p.max_restarts) {
                (Some(c), Some(m)) => format!("{c}/{m}"),
                (Some(c), None) => c.to_string(),
                _ => "-".into(),
            };
            let _ = write!(out, " {restarts:<10}");
        }
        if has_watch {
            let watch = if p.watched == Some(true) { "*" } else { "-" };
            let _ = write!(out, " {watch:<6}");
        }
        if has_urls {
            let _ = write!(out, " {:<30}", p.url.as_deref().unwrap_or("-"));
        }
        let uptime = p.uptime_secs.map_or("-".to_string(), format_uptime);
        if resources {
            let procs = p.process_count.map_or("-".into(), |n| n.to_string());
            let rss = p.rss_bytes.map_or("-".into(), format_bytes);
            let cpu = p.cpu_percent.map_or("-".into(), |c| format!("{c:.1}%"));
            let listen = match &p.listening {
                Some(l) if !l.is_empty() => l.join(","),
                _ => "-".into(),
            };
            let _ = writeln!(out, " {uptime:<8} {procs:<5} {rss:<8} {cpu:<6} {listen}");
        } else {
            let _ = writeln!(out, " {uptime}");
        }
    }
    out
}

/// `812K`, `23.4M`, `1.2G`: resident memory, as ps and top print it.
/// How a waited-for process ended, as `wait --exit` says it (and the MCP `wait`).
pub fn wait_exit_text(exit_code: Option<i32>, exit_signal: Option<&str>) -> String {
    match (exit_code, exit_signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("exited by {signal}"),
        (None, None) => "exited by signal".to_string(),
    }
}

pub fn format_bytes(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if b < K * K {
        format!("{}K", (b / K).round() as u64)
    } else if b < K * K * K {
        format!("{:.1}M", b / K / K)
    } else {
        format!("{:.1}G", b / K / K / K)
    }
}

pub fn format_uptime(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{}s", secs / 60, secs % 60),
        _ => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
    }
}

/// Write to stdout; a reader that went away (`| head`) ends us quietly.
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Error::Silent(0)),
        Err(e) => Err(e).context(|| "writing to standard output".into()),
    }
}

/// One line on stdout; a closed stdout ends the program quietly.
pub fn print_line(text: &str) -> Result<()> {
    write_stdout(format!("{text}\n").as_bytes())
}

/// One output line: `[time ]` + the process/stream mark + the bytes, or JSON;
/// in text, the run starts it follows are marked first.
pub fn render_line(
    line: &Line,
    sources: &[Source],
    args: &LogsArgs,
    mark: &logs::runs::RunMark<'_>,
) -> Vec<u8> {
    let Some(source) = sources.get(line.source) else {
        return Vec::new();
    };
    let time = crate::timefmt::rfc3339_ms(line.time_ms);
    if args.json {
        let record = JsonLine {
            schema: 1,
            process: &source.process,
            stream: source.stream.name(),
            seq: line.pos.seq,
            time: &time,
            line: &String::from_utf8_lossy(&line.bytes),
            cursor: line.pos.cursor(),
            context: line.context.then_some(true),
            run: mark.number,
        };
        let mut out = serde_json::to_vec(&record).unwrap_or_default();
        out.push(b'\n');
        return out;
    }
    let mut out = Vec::with_capacity(line.bytes.len() + 48);
    if line.group_start {
        out.extend_from_slice(b"--\n");
    }
    for run in &mark.starts {
        if args.all {
            out.extend_from_slice(format!("[{}] ", source.process).as_bytes());
        }
        out.extend_from_slice(logs::runs::marker(run).as_bytes());
        out.push(b'\n');
    }
    if args.timestamps {
        out.extend_from_slice(time.as_bytes());
        out.push(b' ');
    }
    let err = args.both && source.stream == Stream::Stderr;
    match (args.all, err) {
        (true, true) => out.extend_from_slice(format!("[{}:err] ", source.process).as_bytes()),
        (true, false) => out.extend_from_slice(format!("[{}] ", source.process).as_bytes()),
        (false, true) => out.extend_from_slice(b"err| "),
        (false, false) => {}
    }
    out.extend_from_slice(&line.bytes);
    out.push(b'\n');
    out
}

/// One line of `logs --json`, fields in the documented order.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    schema: u32,
    process: &'a str,
    stream: &'a str,
    seq: u64,
    time: &'a str,
    line: &'a str,
    cursor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<bool>,
    /// The number of the run the line belongs to, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<u64>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A status row for tests of what prints one (here and in `cmd/status`).
    pub(crate) fn row(
        name: &str,
        state: &str,
        exit_code: Option<i32>,
        exit_signal: Option<&str>,
    ) -> ProcessInfo {
        ProcessInfo {
            name: name.into(),
            id: "p1".into(),
            pid: 42,
            state: state.into(),
            exit_code,
            uptime_secs: if state == "running" { Some(75) } else { None },
            command: "x".into(),
            port: None,
            url: None,
            restart_count: None,
            max_restarts: None,
            restart_policy: None,
            watched: None,
            exit_signal: exit_signal.map(str::to_string),
            cwd: None,
            ..ProcessInfo::default()
        }
    }

    #[test]
    fn status_table_has_the_0_6_columns() {
        let table = status_table(
            &[
                row("web", "running", None, None),
                row("job", "exited", Some(3), None),
            ],
            false,
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "NAME         PID      STATE      EXIT   UPTIME");
        assert_eq!(lines[1], "web          42       running    -      1m15s");
        assert_eq!(lines[2], "job          42       exited     3      -");
        // A signal name widens EXIT so that UPTIME stays in line.
        let table = status_table(
            &[
                row("web", "running", None, None),
                row("hung", "exited", None, Some("SIGKILL")),
            ],
            false,
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "NAME         PID      STATE      EXIT    UPTIME");
        assert_eq!(lines[1], "web          42       running    -       1m15s");
        assert_eq!(lines[2], "hung         42       exited     SIGKILL -");
    }

    #[test]
    fn resource_columns_follow_uptime() {
        let mut web = row("web", "running", None, None);
        web.process_count = Some(2);
        web.rss_bytes = Some(25 * 1024 * 1024 + 400 * 1024);
        web.cpu_percent = Some(1.5);
        web.listening = Some(vec!["127.0.0.1:3000".into(), "[::]:3000".into()]);
        let table = status_table(&[web, row("job", "exited", Some(3), None)], true);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "NAME         PID      STATE      EXIT   UPTIME   PROCS RSS      CPU    LISTEN"
        );
        assert_eq!(
            lines[1],
            "web          42       running    -      1m15s    2     25.4M    1.5%   127.0.0.1:3000,[::]:3000"
        );
        assert_eq!(
            lines[2],
            "job          42       exited     3      -        -     -        -      -"
        );
        assert_eq!(format_bytes(812 * 1024), "812K");
        assert_eq!(format_bytes(3 << 30), "3.0G");
    }

    #[test]
    fn uptimes_read_like_0_6() {
        assert_eq!(format_uptime(5), "5s");
        assert_eq!(format_uptime(125), "2m5s");
        assert_eq!(format_uptime(7260), "2h1m");
    }
}
