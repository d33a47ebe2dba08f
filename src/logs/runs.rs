//! The run journal: `runs.jsonl` in the session's log directory, one JSON line
//! each time the daemon starts a process (name, run number, time, pid, and the
//! sequence number of the run's beginning, taken before its first byte) and each
//! time a run ends (how). Readers cut logs at run boundaries with it and mark them;
//! the daemon numbers runs from it. Logs from before it existed (0.8.0) are cut
//! where their index flags a run start, with no pid or end recorded.

use super::query::{Floor, Line, Source};
use crate::paths::OwnDir;
use crate::protocol::Stream;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The journal's file name in the log directory (no process log ends like this).
pub const JOURNAL: &str = "runs.jsonl";

/// The journal moves to `runs.jsonl.1` (replacing the older one) past this size.
const MAX_JOURNAL: u64 = 128 * 1024;

/// Readers take at most this much of each journal file (a planted huge file
/// must not cost a reader its memory).
const MAX_READ: u64 = 4 * MAX_JOURNAL;

/// One line of the journal: a start (with `start`, `seq`, `pid`) or an end
/// (with `end`, `how`) of run number `run` of process `p`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Entry {
    pub p: String,
    pub run: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub how: Option<String>,
}

pub fn journal_path(log_dir: &Path) -> PathBuf {
    log_dir.join(JOURNAL)
}

/// Append one entry to the journal in the log dir `dir` (0600, relative to the
/// dir's descriptor, never through a link); past `MAX_JOURNAL` the file is
/// moved to `.1` first, so the journal stays bounded.
pub fn append(dir: &OwnDir, entry: &Entry) -> io::Result<()> {
    let name = OsStr::new(JOURNAL);
    let older = format!("{JOURNAL}.1");
    let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut file = dir.open_read_append(name)?;
    let mut len = file.metadata()?.len();
    if len + line.len() as u64 > MAX_JOURNAL {
        drop(file);
        // Unlinked first: a rename over a file makes ext4 flush it (see store.rs).
        let _ = dir.remove(OsStr::new(&older));
        dir.rename(name, OsStr::new(&older))?;
        file = dir.open_read_append(name)?;
        len = 0;
    }
    // A line cut short (a crash mid-write, a full disk) must not swallow ours.
    let mut last = [b'\n'];
    if len > 0 {
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut last, len - 1)?;
    }
    if last[0] != b'\n' {
        line.insert(0, b'\n');
    }
    // One write of a whole line: a reader sees it whole or not at all.
    file.write_all(&line)
}

/// The entries of `process` (of every process when None), oldest first. A line
/// that does not parse (cut short by a crash, or planted) is skipped.
pub fn read(log_dir: &Path, process: Option<&str>) -> Vec<Entry> {
    let path = journal_path(log_dir);
    let needle = process.map(|p| format!("\"p\":{}", serde_json::json!(p)));
    let mut out = Vec::new();
    for file in [super::segment(&path, 1), path] {
        let Ok(f) = super::read::open_log(&file) else {
            continue;
        };
        let mut bytes = Vec::new();
        if f.take(MAX_READ).read_to_end(&mut bytes).is_err() {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        let mut parse = |line: &str| {
            if let Ok(entry) = serde_json::from_str::<Entry>(line)
                && process.is_none_or(|p| entry.p == p)
            {
                out.push(entry);
            }
        };
        match &needle {
            None => text.lines().for_each(parse),
            // Only the lines naming the process are parsed, found by the
            // standard library's string search (a reader of one process's logs
            // must not pay for the whole session's history).
            Some(n) => {
                let mut from = 0;
                while let Some(at) = text[from..].find(n.as_str()) {
                    let at = from + at;
                    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
                    parse(&text[start..end]);
                    from = end;
                }
            }
        }
    }
    out
}

/// The highest run number recorded for each process.
pub fn last_numbers(log_dir: &Path) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = HashMap::new();
    for entry in read(log_dir, None) {
        let n = out.entry(entry.p).or_default();
        *n = (*n).max(entry.run);
    }
    out
}

/// The processes of the running daemon, or of the last one: the `names` that
/// state.json records. None when it records none (a daemon of an older version,
/// or no state at all).
pub fn daemon_names(state_file: &Path) -> Option<Vec<String>> {
    let file = super::read::open_log(state_file).ok()?;
    let mut bytes = Vec::new();
    file.take(16 * 1024 * 1024).read_to_end(&mut bytes).ok()?;
    // The first value: a longer older table may trail it (see daemon/state.rs).
    let value = serde_json::Deserializer::from_slice(&bytes)
        .into_iter::<serde_json::Value>()
        .next()?
        .ok()?;
    let names = value.get("names")?.as_array()?;
    Some(
        names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect(),
    )
}

/// How the run before a run ended, as far as is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Previous {
    /// The first run recorded for the name.
    None,
    /// `exited 1`, `killed by SIGTERM`, `restarted after file change (...)`.
    Ended(String),
    /// It was started but its end was never recorded: its daemon was killed.
    DaemonGone,
    /// Not recorded (logs of an older version).
    Unknown,
}

/// One run of a process, as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Counted from 1 per process name across daemons; None when not known.
    pub number: Option<u64>,
    /// Lines whose sequence number is at least this belong to this run or a later one.
    pub seq: u64,
    /// When it started (for older logs: when its first output arrived).
    pub start_ms: Option<u64>,
    pub pid: Option<u32>,
    pub previous: Previous,
    /// Recorded in the journal (else found from a log index).
    pub journal: bool,
}

/// Runs from journal entries of one process, oldest first.
pub fn from_journal(entries: &[Entry]) -> Vec<Run> {
    let ends: HashMap<u64, &str> = entries
        .iter()
        .filter(|e| e.end.is_some())
        .map(|e| (e.run, e.how.as_deref().unwrap_or("unknown")))
        .collect();
    let mut runs: Vec<Run> = Vec::new();
    // In the order they were appended, newest last. Each run begins before the
    // next: walking back from the newest (the one to trust most), a start that
    // does not come before the one after it is dropped (a planted or garbled line).
    let mut starts: Vec<&Entry> = Vec::new();
    for e in entries.iter().rev() {
        let (Some(_), Some(seq)) = (e.start, e.seq) else {
            continue;
        };
        if starts
            .last()
            .is_none_or(|next| next.seq.is_some_and(|n| seq < n))
        {
            starts.push(e);
        }
    }
    starts.reverse();
    for (i, e) in starts.iter().enumerate() {
        let before = e.run.checked_sub(1).filter(|&n| n > 0);
        let previous = match before {
            None => Previous::None,
            Some(n) => match ends.get(&n) {
                Some(how) => Previous::Ended((*how).to_string()),
                None if i > 0 && starts[i - 1].run == n => Previous::DaemonGone,
                None => Previous::Unknown,
            },
        };
        runs.push(Run {
            number: Some(e.run),
            seq: e.seq.unwrap_or_default(),
            start_ms: e.start,
            pid: e.pid,
            previous,
            journal: true,
        });
    }
    runs
}

/// The runs of one process, oldest first: the journal's, after older ones
/// found through the log index (logs of a version without the journal).
#[derive(Debug, Default)]
pub struct History {
    pub runs: Vec<Run>,
    /// No journal entry at all: runs are told by segments alone.
    legacy_only: bool,
}

impl History {
    /// The history of `process`, whose streams are `sources`.
    pub fn load(log_dir: &Path, process: &str, sources: &[&Source]) -> History {
        History::build(&read(log_dir, Some(process)), sources)
    }

    pub fn build(entries: &[Entry], sources: &[&Source]) -> History {
        let journal = from_journal(entries);
        let starts: Vec<Vec<Option<(u64, u64)>>> = sources.iter().map(|s| s.run_starts()).collect();
        let count = starts.iter().map(Vec::len).max().unwrap_or(0);
        // Each start of a process begins a segment in each stream: the k-th
        // newest of each stream belong to the same run, which began with the
        // earliest of them.
        let zipped: Vec<Option<(u64, u64)>> = (0..count)
            .map(|k| {
                starts
                    .iter()
                    .filter_map(|s| s.get(k).copied().flatten())
                    .min()
            })
            .collect();
        let first_journal = journal.first().map(|r| (r.seq, r.number));
        let mut legacy: Vec<Run> = Vec::new(); // newest first
        for (k, start) in zipped.iter().enumerate() {
            let number = match first_journal {
                None => Some((count - k) as u64),
                Some((seq, number)) => {
                    if start.is_none_or(|(s, _)| s >= seq) {
                        continue; // a run the journal has, or unplaceable
                    }
                    number
                        .and_then(|n| n.checked_sub(1 + legacy.len() as u64))
                        .filter(|&n| n > 0)
                }
            };
            let Some((seq, time)) = start else { continue };
            legacy.push(Run {
                number,
                seq: *seq,
                start_ms: Some(*time),
                pid: None,
                previous: Previous::Unknown,
                journal: false,
            });
        }
        let legacy_only = journal.is_empty();
        legacy.reverse();
        legacy.extend(journal);
        History {
            runs: legacy,
            legacy_only,
        }
    }

    /// Where the last `n` runs begin (all of them when None).
    pub fn floor(&self, n: Option<usize>) -> Floor {
        let Some(n) = n else {
            return Floor::Everything;
        };
        if self.legacy_only {
            return Floor::Segments(n);
        }
        match self.runs.len().checked_sub(n) {
            Some(i) => Floor::Seq(self.runs[i].seq),
            None => Floor::Everything, // asked for more runs than are known
        }
    }

    /// The run that a line with sequence number `seq` belongs to, by index in `runs`.
    pub fn run_of(&self, seq: u64) -> Option<usize> {
        self.runs.partition_point(|r| r.seq <= seq).checked_sub(1)
    }
}

/// How many runs the logs at `paths` (a process's streams) hold, for numbering
/// the first run recorded in the journal after them.
pub fn count_in_logs(name: &str, paths: &[(Stream, PathBuf)]) -> u64 {
    paths
        .iter()
        .filter_map(|(stream, path)| Source::open(name, *stream, path).ok())
        .map(|s| s.run_starts().len() as u64)
        .max()
        .unwrap_or(0)
}

/// The run a printed line belongs to, and the runs whose start goes before it.
#[derive(Default)]
pub struct RunMark<'a> {
    /// Its run's number, when known (`run` in JSON).
    pub number: Option<u64>,
    /// Marker lines to print before it (text output only).
    pub starts: Vec<&'a Run>,
}

/// For each line, its run, and the run starts to mark before it. A process's
/// starts are marked only when its printed lines span more than one run: then
/// the run of its first line, and every run begun after it, even one that
/// printed nothing.
pub fn marks<'a, 's>(
    lines: &[Line],
    process_of: impl Fn(usize) -> Option<&'s str>,
    histories: &'a HashMap<String, History>,
) -> Vec<RunMark<'a>> {
    let which: Vec<Option<(&str, usize)>> = lines
        .iter()
        .map(|line| {
            let process = process_of(line.source)?;
            let run = histories.get(process)?.run_of(line.pos.seq)?;
            Some((process, run))
        })
        .collect();
    let mut span: HashMap<&str, (usize, usize)> = HashMap::new();
    for (process, run) in which.iter().flatten() {
        let e = span.entry(process).or_insert((*run, *run));
        e.0 = e.0.min(*run);
        e.1 = e.1.max(*run);
    }
    let mut shown: HashMap<&str, usize> = HashMap::new();
    which
        .iter()
        .map(|w| {
            let Some((process, run)) = *w else {
                return RunMark::default();
            };
            let Some(history) = histories.get(process) else {
                return RunMark::default();
            };
            let mut mark = RunMark {
                number: history.runs.get(run).and_then(|r| r.number),
                starts: Vec::new(),
            };
            let multi = span.get(process).is_some_and(|(lo, hi)| lo < hi);
            let from = match shown.get(process) {
                None => Some(run),
                Some(&last) if run > last => Some(last + 1),
                Some(_) => None,
            };
            if let Some(from) = from.filter(|_| multi) {
                mark.starts = history.runs[from..=run].iter().collect();
            }
            if shown.get(process).is_none_or(|&last| run > last) {
                shown.insert(process, run);
            }
            mark
        })
        .collect()
}

/// The line that marks the start of `run` in text output:
/// `--- run 3 started 2026-12-07 16:40:01 UTC (pid 1234); previous run: exited 1 ---`.
pub fn marker(run: &Run) -> String {
    let number = run
        .number
        .map_or_else(|| "run".to_string(), |n| format!("run {n}"));
    // Up to the year 9999: a time past it (a planted journal) is not shown.
    let when = run
        .start_ms
        .filter(|&ms| ms < 253_402_300_800_000)
        .map(|ms| {
            let t = crate::timefmt::rfc3339_ms(ms);
            // 2026-12-07T16:40:01.123Z -> 2026-12-07 16:40:01 UTC
            format!("{} {} UTC", &t[..10], &t[11..19])
        });
    let mut text = match (&when, run.journal) {
        (Some(w), true) => format!("--- {number} started {w}"),
        (Some(w), false) => format!("--- {number}, first output {w}"),
        (None, _) => format!("--- {number} started"),
    };
    if let Some(pid) = run.pid {
        text.push_str(&format!(" (pid {pid})"));
    }
    match &run.previous {
        Previous::None => {}
        Previous::Ended(how) => text.push_str(&format!("; previous run: {how}")),
        Previous::DaemonGone => text.push_str("; previous run: unknown (daemon gone)"),
        Previous::Unknown => text.push_str("; previous run: not recorded"),
    }
    text.push_str(" ---");
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    /// A fresh private dir (as the log dir is), and its descriptor.
    fn own_dir(tag: &str) -> (PathBuf, OwnDir) {
        let dir = std::env::temp_dir().join(format!("ap-runs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let own = OwnDir::open(&dir).unwrap();
        (dir, own)
    }

    fn start(p: &str, run: u64, seq: u64) -> Entry {
        Entry {
            p: p.into(),
            run,
            start: Some(1_796_000_000_000u64.wrapping_add(run)),
            seq: Some(seq),
            pid: Some(100u32.wrapping_add(run as u32)),
            ..Entry::default()
        }
    }

    fn end(p: &str, run: u64, how: &str) -> Entry {
        Entry {
            p: p.into(),
            run,
            end: Some(1),
            how: Some(how.into()),
            ..Entry::default()
        }
    }

    #[test]
    fn entries_round_trip_and_junk_lines_are_skipped() {
        let (dir, own) = own_dir("trip");
        append(&own, &start("web", 1, 10)).unwrap();
        append(&own, &start("web2", 1, 11)).unwrap();
        let mut f = super::super::store::open_append(&journal_path(&dir)).unwrap();
        f.write_all(b"{\"p\":\"web\",\"ru\n{\"p\":\"web\",\"run\":7")
            .unwrap();
        // The line left unfinished is ended before the next entry.
        append(&own, &end("web", 1, "exited 1")).unwrap();
        assert_eq!(
            read(&dir, Some("web")),
            vec![start("web", 1, 10), end("web", 1, "exited 1")]
        );
        assert_eq!(read(&dir, None).len(), 3);
        assert_eq!(last_numbers(&dir).get("web2"), Some(&1));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_journal_stays_bounded() {
        let (dir, own) = own_dir("big");
        for run in 1..=5000 {
            append(&own, &start("web", run, run)).unwrap();
        }
        let size = |p: PathBuf| fs::metadata(p).map_or(0, |m| m.len());
        let path = journal_path(&dir);
        assert!(size(path.clone()) <= MAX_JOURNAL);
        assert!(size(super::super::segment(&path, 1)) <= MAX_JOURNAL);
        assert!(!super::super::segment(&path, 2).exists());
        assert_eq!(last_numbers(&dir).get("web"), Some(&5000));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn previous_runs_are_told_by_their_end_entries() {
        let entries = [
            start("web", 1, 10),
            end("web", 1, "exited 1"),
            start("web", 2, 20),
            // run 2's daemon was killed: no end
            start("web", 3, 30),
        ];
        let runs = from_journal(&entries);
        let prev: Vec<Previous> = runs.iter().map(|r| r.previous.clone()).collect();
        assert_eq!(
            prev,
            vec![
                Previous::None,
                Previous::Ended("exited 1".into()),
                Previous::DaemonGone
            ]
        );
        // The journal lost run 4's start (rotated away): unknown, not "daemon gone".
        let runs = from_journal(&[start("web", 5, 50)]);
        assert_eq!(runs[0].previous, Previous::Unknown);
    }

    /// Logs of `p` in `dir` written the way the daemon writes them: one
    /// `LogSink` per run and stream; the journal gets a start entry for the runs
    /// of `journaled` (as if an older version wrote the others).
    fn write_runs(tag: &str, runs: &[(&str, &str)], journaled: std::ops::Range<usize>) -> PathBuf {
        use crate::logs::index::SeqClock;
        use crate::logs::store::LogSink;
        let (dir, own) = own_dir(tag);
        let dir = &dir;
        let mut clock = SeqClock::default();
        for (i, (out, err)) in runs.iter().enumerate() {
            let seq = clock.tick();
            if journaled.contains(&i) {
                append(&own, &start("p", i as u64 + 1, seq)).unwrap();
            }
            let mut o = LogSink::create(dir.join("p.stdout"), Default::default()).unwrap();
            let mut e = LogSink::create(dir.join("p.stderr"), Default::default()).unwrap();
            if !err.is_empty() {
                e.append(&mut clock, err.as_bytes(), |_| {});
            }
            if !out.is_empty() {
                o.append(&mut clock, out.as_bytes(), |_| {});
            }
        }
        dir.clone()
    }

    /// What a query over both streams of `p` prints for the last `n` runs.
    fn read_runs(dir: &Path, n: Option<usize>) -> (Vec<String>, Vec<Option<u64>>) {
        use crate::logs::query::{self, Query, Since};
        let mut sources: Vec<Source> = [Stream::Stdout, Stream::Stderr]
            .iter()
            .filter_map(|&s| Source::open("p", s, &dir.join(format!("p.{}", s.name()))).ok())
            .collect();
        let history = History::load(dir, "p", &sources.iter().collect::<Vec<_>>());
        for s in &mut sources {
            s.floor = history.floor(n);
        }
        let q = Query {
            tail: None,
            since: Since::Everything,
            after: None,
            grep: None,
            plain: None,
            context: 0,
        };
        let lines = query::run(&sources, &q).unwrap();
        let text = lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
            .collect();
        let numbers = lines
            .iter()
            .map(|l| {
                history
                    .run_of(l.pos.seq)
                    .and_then(|i| history.runs[i].number)
            })
            .collect();
        (text, numbers)
    }

    #[test]
    fn runs_are_cut_with_or_without_a_journal() {
        let runs = [
            ("one\n", "one err\n"),
            ("", "two err\n"),
            ("", ""),
            ("four\n", ""),
        ];
        for (tag, journaled) in [("all", 0..4), ("none", 0..0), ("mixed", 2..4)] {
            let dir = write_runs(&format!("cut-{tag}"), &runs, journaled);
            assert_eq!(
                read_runs(&dir, Some(1)),
                (vec!["four".into()], vec![Some(4)]),
                "{tag}"
            );
            // Run 3 printed nothing: the last two runs are run 4's lines.
            assert_eq!(read_runs(&dir, Some(2)).0, ["four"], "{tag}");
            assert_eq!(read_runs(&dir, Some(3)).0, ["two err", "four"], "{tag}");
            let all = read_runs(&dir, None);
            assert_eq!(all.0, ["one err", "one", "two err", "four"], "{tag}");
            assert_eq!(all.1, [Some(1), Some(1), Some(2), Some(4)], "{tag}");
            assert_eq!(read_runs(&dir, Some(9)).0.len(), 4, "{tag}");
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    /// Logs of 0.6 have no index at all: each segment is one run.
    #[test]
    fn logs_without_an_index_are_one_run_per_segment() {
        let (dir, _) = own_dir("06");
        fs::write(dir.join("p.stdout.1"), "old\n").unwrap();
        fs::write(dir.join("p.stdout"), "new\n").unwrap();
        assert_eq!(read_runs(&dir, Some(1)).0, ["new"]);
        assert_eq!(read_runs(&dir, Some(2)).0, ["old", "new"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_start_out_of_order_is_dropped_and_the_newest_is_trusted() {
        let runs = from_journal(&[
            start("web", u64::MAX, u64::MAX), // planted
            start("web", 1, 10),              // not before the run after it: dropped
            start("web", 2, 5),
            start("web", 3, 30),
        ]);
        let seqs: Vec<u64> = runs.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [5, 30]);
    }

    /// Lines of processes a and b at the given sequence numbers; render the
    /// marks as `[p:N]` before a line, the line as `p@seq`.
    fn render_marks(lines: &[(usize, u64)], histories: &HashMap<String, History>) -> String {
        let lines: Vec<Line> = lines
            .iter()
            .map(|&(source, seq)| Line {
                source,
                pos: crate::logs::query::Position { seq, delta: 0 },
                time_ms: 0,
                bytes: Vec::new(),
                context: false,
                group_start: false,
            })
            .collect();
        let names = ["a", "b"];
        let marks = marks(&lines, |i| names.get(i).copied(), histories);
        let mut out = Vec::new();
        for (line, mark) in lines.iter().zip(&marks) {
            for run in &mark.starts {
                out.push(format!(
                    "[{}:{}]",
                    names[line.source],
                    run.number.unwrap_or(0)
                ));
            }
            out.push(format!("{}@{}", names[line.source], line.pos.seq));
        }
        out.join(" ")
    }

    #[test]
    fn marks_go_before_each_run_of_a_process_that_prints_several() {
        let history = |seqs: &[u64]| History {
            runs: from_journal(
                &seqs
                    .iter()
                    .enumerate()
                    .map(|(i, &seq)| start("x", i as u64 + 1, seq))
                    .collect::<Vec<_>>(),
            ),
            legacy_only: false,
        };
        let histories: HashMap<String, History> = [
            ("a".to_string(), history(&[10, 20, 30, 40])),
            ("b".to_string(), history(&[5])),
        ]
        .into();
        let cases: &[(&[(usize, u64)], &str)] = &[
            // One run printed: nothing to mark.
            (&[(0, 41), (0, 42)], "a@41 a@42"),
            // The first line's run is named; run 3 printed nothing and is marked too.
            (
                &[(0, 15), (1, 16), (0, 45)],
                "[a:1] a@15 b@16 [a:2] [a:3] [a:4] a@45",
            ),
            (&[(0, 21), (0, 31), (0, 32)], "[a:2] a@21 [a:3] a@31 a@32"),
            // A line before any known run start belongs to none.
            (&[(0, 1), (0, 11)], "a@1 a@11"),
        ];
        for (lines, want) in cases {
            assert_eq!(render_marks(lines, &histories), *want, "{lines:?}");
        }
    }

    #[test]
    fn marker_lines_read_well() {
        let run = Run {
            number: Some(3),
            seq: 1,
            start_ms: Some(1_796_661_601_123),
            pid: Some(1234),
            previous: Previous::Ended("exited 1".into()),
            journal: true,
        };
        assert_eq!(
            marker(&run),
            "--- run 3 started 2026-12-07 16:40:01 UTC (pid 1234); previous run: exited 1 ---"
        );
        let old = Run {
            pid: None,
            previous: Previous::Unknown,
            journal: false,
            number: Some(1),
            ..run
        };
        assert_eq!(
            marker(&old),
            "--- run 1, first output 2026-12-07 16:40:01 UTC; previous run: not recorded ---"
        );
        let planted = Run {
            start_ms: Some(u64::MAX),
            number: None,
            ..old
        };
        assert_eq!(
            marker(&planted),
            "--- run started; previous run: not recorded ---"
        );
    }
}
