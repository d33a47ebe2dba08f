//! `status`: the table of every process, or one process in full; notes on stderr.

use crate::cli::{Args, Command, CommandSpec, Flag, SESSION_FLAG, common, other};
use crate::client::{Conn, format_bytes, format_uptime, status_table, unexpected, write_stdout};
use crate::error::{Error, Result};
use crate::paths::SessionPaths;
use crate::protocol::{ProcessInfo, Request, Response};
use lexopt::prelude::*;
use std::fmt::Write as _;
use std::time::Duration;

pub static STATUS: CommandSpec = CommandSpec {
    name: "status",
    about: "list processes and their states",
    usage: STATUS_USAGE,
    after: "",
    subcommands: &[],
    flags: &[
        Flag::switch(
            "resources",
            "add what each process group uses, read from /proc now:\n\
             PROCS (processes in the group), RSS (summed resident\n\
             memory), CPU (% of one CPU since the previous reading, or\n\
             since start) and LISTEN (TCP addresses it listens on)",
        )
        .or_short('r'),
        Flag::switch(
            "json",
            "print a JSON array of processes instead of a table\n\
             (with NAME, one object)",
        ),
        SESSION_FLAG,
    ],
    takes_process: true,
    parse,
};

const STATUS_USAGE: &str = "\
usage: agent-procs status [NAME] [--resources] [--json]

List the session's processes with their pid, state, exit code and uptime.
With NAME, show that one process in full: command, cwd, the names of the
variables set for it (never their values), port and listening addresses,
process group, memory, CPU, the last exits and its log files.";

fn parse(a: &mut Args<'_>) -> Result<Command> {
    let (mut json, mut target, mut resources) = (false, None, false);
    while let Some(arg) = a.next_arg()? {
        match arg {
            Long("json") => json = true,
            Long("resources") | Short('r') => resources = true,
            Value(v) if target.is_none() => target = Some(a.word(v, "the process name")?),
            _ => common(other(arg), a)?,
        }
    }
    Ok(Command::Status {
        json,
        target,
        resources,
    })
}

pub fn run(
    paths: &SessionPaths,
    json: bool,
    target: Option<String>,
    resources: bool,
) -> Result<i32> {
    let mut conn = Conn::open(paths, false)?;
    let one = target.is_some();
    let request = Request::Status { target, resources };
    let (mut processes, notes) = match conn.ask(&request, Duration::from_secs(10))? {
        Response::Status { processes, notes } => (processes, notes),
        other => return unexpected(other),
    };
    if one {
        let Some(mut p) = processes.pop() else {
            return Err(Error::Failed("unexpected reply to status".into()));
        };
        let text = if json {
            p.schema = Some(1);
            let mut text =
                serde_json::to_string_pretty(&p).map_err(|e| Error::Failed(e.to_string()))?;
            text.push('\n');
            text
        } else {
            status_detail(&p)
        };
        write_stdout(text.as_bytes())?;
        return Ok(0);
    }
    let text = if json {
        for row in &mut processes {
            row.schema = Some(1);
        }
        let mut text =
            serde_json::to_string_pretty(&processes).map_err(|e| Error::Failed(e.to_string()))?;
        text.push('\n');
        text
    } else {
        status_table(&processes, resources)
    };
    write_stdout(text.as_bytes())?;
    // On stderr, so the table and the JSON stay as scripts parse them.
    for note in &notes {
        eprintln!("agent-procs: note: {note}");
    }
    for p in &processes {
        if let Some(conflict) = &p.port_conflict {
            eprintln!("agent-procs: note: {} could not listen: {conflict}", p.name);
        }
        if let Some(survivors) = &p.survivors {
            let list: Vec<String> = survivors
                .iter()
                .map(|s| format!("{} ({})", s.pid, s.command))
                .collect();
            let pids: Vec<String> = survivors.iter().map(|s| s.pid.to_string()).collect();
            eprintln!(
                "agent-procs: note: {} outlived its stop outside its process group: {}; end with: kill {}",
                p.name,
                list.join(", "),
                pids.join(" ")
            );
        }
    }
    Ok(0)
}

/// `status NAME`: one process in full, a field per line.
fn status_detail(p: &ProcessInfo) -> String {
    let mut fields = Vec::new();
    run_fields(p, &mut fields);
    setup_fields(p, &mut fields);
    history_fields(p, &mut fields);
    let mut out = String::new();
    for (key, value) in fields {
        let mut lines = value.lines();
        let _ = writeln!(out, "{key:<14}{}", lines.next().unwrap_or(""));
        for line in lines {
            let _ = writeln!(out, "{:<14}{line}", "");
        }
    }
    out
}

/// The label and value of one line of `status NAME` (more lines when it has some).
type Fields = Vec<(&'static str, String)>;

fn field(fields: &mut Fields, key: &'static str, value: &str) {
    fields.push((key, value.to_string()));
}

/// Name, state, pid and uptime.
fn run_fields(p: &ProcessInfo, fields: &mut Fields) {
    field(fields, "name", &format!("{} ({})", p.name, p.id));
    let mut state = p.state.clone();
    match (&p.exit_code, &p.exit_signal) {
        (Some(code), _) => state.push_str(&format!(", exit code {code}")),
        (None, Some(sig)) => state.push_str(&format!(", killed by {sig}")),
        _ => {}
    }
    if let Some(ms) = p.next_restart_in_ms {
        state.push_str(&format!(
            ", restarting in {}",
            crate::timefmt::seconds(Duration::from_millis(ms))
        ));
    }
    field(fields, "state", &state);
    if p.pid != 0 {
        let mut pid = format!("{}", p.pid);
        if let Some(g) = p.pgid {
            pid.push_str(&format!(", process group {g}"));
        }
        if let Some(n) = p.process_count {
            let s = if n == 1 { "" } else { "es" };
            pid.push_str(&format!(" of {n} process{s}"));
        }
        field(fields, "pid", &pid);
    }
    if let Some(up) = p.uptime_secs {
        field(fields, "uptime", &format_uptime(up));
    }
}

/// What it runs, where, with what, and what it uses.
fn setup_fields(p: &ProcessInfo, fields: &mut Fields) {
    field(fields, "command", &p.command);
    if let Some(cwd) = &p.cwd {
        field(fields, "cwd", cwd);
    }
    if let Some(keys) = &p.env_keys {
        field(
            fields,
            "env",
            &if keys.is_empty() {
                "-".to_string()
            } else {
                keys.join(", ")
            },
        );
    }
    if let Some(port) = p.port {
        match &p.url {
            Some(url) => field(fields, "port", &format!("{port} ({url})")),
            None => field(fields, "port", &port.to_string()),
        }
    }
    if let Some(listening) = &p.listening {
        field(
            fields,
            "listening",
            &if listening.is_empty() {
                "-".to_string()
            } else {
                listening.join(", ")
            },
        );
    }
    if let Some(rss) = p.rss_bytes {
        field(fields, "memory", &format!("{} resident", format_bytes(rss)));
    }
    if let Some(cpu) = p.cpu_percent {
        field(fields, "cpu", &format!("{cpu:.1}%"));
    }
}

/// Restarts, past exits, conflicts, survivors and log files.
fn history_fields(p: &ProcessInfo, fields: &mut Fields) {
    if let Some(policy) = &p.restart_policy {
        let count = match (p.restart_count, p.max_restarts) {
            (Some(c), Some(m)) => format!(", {c}/{m} restarts"),
            (Some(c), None) => format!(", {c} restarts"),
            _ => String::new(),
        };
        field(fields, "restart", &format!("{policy}{count}"));
    }
    if let Some(exits) = p.last_exits.as_ref().filter(|e| !e.is_empty()) {
        let lines: Vec<String> = exits
            .iter()
            .map(|e| {
                let how = match (&e.code, &e.signal) {
                    (Some(c), _) => format!("exit code {c}"),
                    (None, Some(s)) => format!("killed by {s}"),
                    (None, None) => "-".into(),
                };
                format!("{}  {how}  {}", e.time, e.reason)
            })
            .collect();
        field(fields, "last exits", &lines.join("\n"));
    }
    if let Some(conflict) = &p.port_conflict {
        field(fields, "port conflict", conflict);
    }
    if let Some(s) = p.survivors.as_ref().filter(|s| !s.is_empty()) {
        let list: Vec<String> = s
            .iter()
            .map(|s| format!("{} ({})", s.pid, s.command))
            .collect();
        field(fields, "survivors", &list.join("\n"));
    }
    if let Some(files) = &p.log_files {
        field(fields, "logs", &files.join("\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::client::test_process_row as row;

    #[test]
    fn one_process_in_full_names_env_keys_only() {
        let mut p = row("api", "running", None, None);
        p.env_keys = Some(vec!["PORT".into(), "SECRET".into()]);
        p.log_files = Some(vec!["/s/api.stdout".into(), "/s/api.stderr".into()]);
        p.listening = Some(vec![]);
        let text = status_detail(&p);
        assert!(text.contains("env           PORT, SECRET\n"), "{text}");
        assert!(
            text.contains("logs          /s/api.stdout\n              /s/api.stderr\n"),
            "{text}"
        );
        assert!(text.contains("listening     -\n"), "{text}");
    }
}
