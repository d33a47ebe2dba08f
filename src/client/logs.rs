//! Reading a session's logs from the CLI side, straight from the files (no
//! daemon needed): what `logs`, `up`'s failure report and the MCP tools show.

use super::conn::{Conn, plain_status};
use crate::cli::{LogsArgs, Runs, SinceArg};
use crate::error::{Context, Error, Result};
use crate::logs;
use crate::logs::index::now_ms;
use crate::logs::pattern::Pattern;
use crate::logs::query::{Line, Position, Query, Since, Source};
use crate::paths::{self, SessionPaths};
use crate::protocol::{Response, Stream};
use std::collections::HashMap;
use std::io;
use std::time::Duration;

/// The last `n` lines of the current run of `name`, both streams in arrival
/// order, stderr lines marked `err| `.
pub fn tail_of_run(paths: &SessionPaths, name: &str, n: usize) -> Result<Vec<u8>> {
    paths::check_state_dirs(paths)?;
    let mut sources = Vec::new();
    for stream in [Stream::Stdout, Stream::Stderr] {
        let path = paths.log_file(name, stream.name());
        match Source::open(name, stream, &path) {
            Ok(source) => sources.push(source),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context(|| format!("reading {}", path.display())),
        }
    }
    let query = Query {
        tail: Some(n),
        since: Since::Run,
        after: None,
        grep: None,
        plain: None,
        context: 0,
    };
    let lines = logs::query::run(&sources, &query)
        .context(|| format!("reading {}", paths.log_dir.display()))?;
    let mut out = Vec::new();
    for line in &lines {
        if sources
            .get(line.source)
            .is_some_and(|s| s.stream == Stream::Stderr)
        {
            out.extend_from_slice(b"err| ");
        }
        out.extend_from_slice(&line.bytes);
        out.push(b'\n');
    }
    Ok(out)
}

/// The stored lines `logs` (without `--follow`) selects for `args`, and the
/// sources they came from; shared with the MCP server's `logs` tool.
pub fn read_logs(paths: &SessionPaths, args: &LogsArgs) -> Result<LogsRead> {
    // Read without a daemon: the same checks it makes, or we would print what
    // another user planted in a dir open to them.
    paths::check_state_dirs(paths)?;
    let streams: &[Stream] = match (args.both, args.stderr) {
        (true, _) => &[Stream::Stdout, Stream::Stderr],
        (false, true) => &[Stream::Stderr],
        (false, false) => &[Stream::Stdout],
    };
    let (names, mut sources) = open_sources(paths, args, streams)?;
    let histories = run_histories(paths, args, &names, &mut sources);
    if sources.is_empty() && !args.all {
        let shown = streams
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(" or ");
        let target = args.target.as_deref().unwrap_or_default();
        return Err(Error::NotFound(format!(
            "no logs for process '{target}' ({shown})"
        )));
    }

    let matcher = match &args.grep {
        Some(text) => {
            Some(Pattern::new(text, args.regex, args.ignore_case).map_err(Error::Failed)?)
        }
        None => None,
    };
    let grep = matcher.as_ref().map(|m| move |line: &[u8]| m.matches(line));
    let reading_a_range = args.since.is_some() || args.after.is_some() || args.grep.is_some();
    let since = match args.since {
        None | Some(SinceArg::Start) => Since::Everything,
        Some(SinceArg::Restart) => Since::Run,
        Some(SinceArg::Ago(span)) => Since::Time(now_ms().saturating_sub(span.as_millis() as u64)),
    };
    let query = Query {
        tail: (args.tail_given || !reading_a_range).then_some(args.tail),
        since,
        after: args.after.as_deref().and_then(Position::parse),
        grep: grep.as_ref().map(|g| g as &dyn Fn(&[u8]) -> bool),
        // Text every matching line contains, so blocks without it are skipped fast.
        plain: matcher.as_ref().and_then(Pattern::literal),
        context: args.context,
    };
    let lines = logs::query::run(&sources, &query)
        .context(|| format!("reading {}", paths.log_dir.display()))?;
    Ok(LogsRead {
        sources,
        lines,
        histories,
    })
}

/// The processes `args` asks about, and their log files that exist.
fn open_sources(
    paths: &SessionPaths,
    args: &LogsArgs,
    streams: &[Stream],
) -> Result<(Vec<String>, Vec<Source>)> {
    let names = match &args.target {
        Some(target) if !args.all => {
            let name = log_name(paths, target, streams[0].name());
            paths::check_process_name(&name).map_err(Error::Failed)?;
            vec![name]
        }
        _ => daemon_names(paths, streams)?,
    };
    let mut sources = Vec::new();
    for name in &names {
        for &stream in streams {
            let path = paths.log_file(name, stream.name());
            match Source::open(name, stream, &path) {
                Ok(source) => sources.push(source),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context(|| format!("reading {}", path.display())),
            }
        }
    }
    Ok((names, sources))
}

/// Each process's runs, with each source's floor set to the first run shown.
fn run_histories(
    paths: &SessionPaths,
    args: &LogsArgs,
    names: &[String],
    sources: &mut [Source],
) -> HashMap<String, logs::runs::History> {
    // The runs covered: the latest by default; every run from the position
    // that --since or --after names.
    let runs = match args.runs {
        Some(Runs::All) => None,
        Some(Runs::Last(n)) => Some(n),
        None if args.since.is_some() || args.after.is_some() => None,
        None => Some(1),
    };
    let mut histories: HashMap<String, logs::runs::History> = HashMap::new();
    for name in names {
        let mine: Vec<&Source> = sources.iter().filter(|s| &s.process == name).collect();
        if !mine.is_empty() {
            histories.insert(
                name.clone(),
                logs::runs::History::load(&paths.log_dir, name, &mine),
            );
        }
    }
    for source in sources.iter_mut() {
        if let Some(history) = histories.get(&source.process) {
            source.floor = history.floor(runs);
        }
    }
    histories
}

/// What `read_logs` found: the lines, the sources they came from, and each
/// process's runs (to mark where a run starts).
pub struct LogsRead {
    pub sources: Vec<Source>,
    pub lines: Vec<Line>,
    pub histories: HashMap<String, logs::runs::History>,
}

impl LogsRead {
    /// For each line, the run starts to mark before it (for `render_line`).
    pub fn marks(&self) -> Vec<logs::runs::RunMark<'_>> {
        logs::runs::marks(
            &self.lines,
            |i| self.sources.get(i).map(|s| s.process.as_str()),
            &self.histories,
        )
    }
}

/// The log file name for a target: the name itself, or, for an id like `p3` that
/// has no log of its own, the name the daemon knows it by.
fn log_name(paths: &SessionPaths, target: &str, stream: &str) -> String {
    let looks_like_id = target
        .strip_prefix('p')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !looks_like_id || paths.log_file(target, stream).exists() {
        return target.to_string();
    }
    let lookup = || -> Result<Option<String>> {
        let mut conn = Conn::open(paths, false)?;
        let Response::Status { processes, .. } =
            conn.ask(&plain_status(), Duration::from_secs(10))?
        else {
            return Ok(None);
        };
        Ok(processes
            .into_iter()
            .find(|p| p.id == target)
            .map(|p| p.name))
    };
    lookup()
        .ok()
        .flatten()
        .unwrap_or_else(|| target.to_string())
}

/// What `logs --all` covers: the processes of the running daemon, or of the
/// last one (as its state.json names them); when that is not recorded (a
/// daemon of an older version), every name with a log.
fn daemon_names(paths: &SessionPaths, streams: &[Stream]) -> Result<Vec<String>> {
    match logs::runs::daemon_names(&paths.state_file()) {
        Some(mut names) => {
            names.retain(|n| paths::check_process_name(n).is_ok());
            names.sort_unstable();
            names.dedup();
            Ok(names)
        }
        None => logged_names(paths, streams),
    }
}

/// Process names that have a current log for one of `streams`, sorted.
fn logged_names(paths: &SessionPaths, streams: &[Stream]) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(&paths.log_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NotFound(format!(
                "no logs for session '{}'",
                paths.session
            )));
        }
        Err(e) => return Err(e).context(|| format!("reading {}", paths.log_dir.display())),
    };
    let files: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let mut names: Vec<String> = files
        .iter()
        .filter_map(|f| {
            streams
                .iter()
                .find_map(|s| f.strip_suffix(&format!(".{}", s.name())))
        })
        .filter(|n| paths::check_process_name(n).is_ok())
        .map(str::to_string)
        .collect();
    names.sort_unstable();
    names.dedup();
    Ok(names)
}
