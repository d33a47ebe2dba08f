//! Pages of a process's output for the output pane, read from the log files and
//! their index (not from memory): the tail, the lines newer than a position, or
//! a page before or after one, optionally filtered. The loop calls it for the
//! model's `Fetch` actions.

use super::model::{Fetch, PaneLine, StreamMode};
use super::sanitize::sanitize;
use crate::logs::pattern::Pattern;
use crate::logs::query::{self, Line, LineFilter, Position, Query, Since, Source};
use crate::paths::SessionPaths;
use std::io;

/// Bytes of a line kept for the screen: far more than the widest terminal shows,
/// even with colour sequences, so a 1 MiB line costs no more than a short one.
const SHOWN_BYTES: usize = 16 * 1024;

/// What to read: whose output, which streams, which lines.
pub struct View<'a> {
    pub name: &'a str,
    pub mode: StreamMode,
    pub filter: Option<&'a Pattern>,
}

/// The lines for `fetch`, and the newest position stored when it was read (for
/// the live views, so the next read starts there).
pub fn fetch(
    paths: &SessionPaths,
    view: &View<'_>,
    fetch: Fetch,
    rows: usize,
) -> io::Result<(Vec<PaneLine>, Option<Position>)> {
    let mut sources = Vec::new();
    for &stream in view.mode.streams() {
        match Source::open(view.name, stream, &paths.log_file(view.name, stream.name())) {
            Ok(source) => sources.push(source),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let test = view.filter.map(|p| move |line: &[u8]| p.matches(line));
    let grep = test.as_ref().map(|t| t as LineFilter<'_>);
    let literal = view.filter.and_then(Pattern::literal);
    let query = |tail, after, grep| make_query(tail, after, grep, literal);
    let newest = |sources: &[Source]| -> io::Result<Option<Position>> {
        Ok(query::run(sources, &query(1, None, None))?
            .last()
            .map(|l| l.pos))
    };
    let (lines, end) = match fetch {
        Fetch::Tail => {
            let end = match grep {
                Some(_) => newest(&sources)?,
                None => None,
            };
            (query::run(&sources, &query(rows, None, grep))?, end)
        }
        Fetch::Newer(after) => {
            let end = newest(&sources)?;
            // From the line at `after` itself: it may have been a partial line,
            // completed since (the model replaces it rather than adding it again).
            let from = match after.delta {
                0 => after.seq.checked_sub(1).map(|seq| Position {
                    seq,
                    delta: u64::MAX,
                }),
                d => Some(Position {
                    seq: after.seq,
                    delta: d - 1,
                }),
            };
            (query::run(&sources, &query(rows, from, grep))?, end)
        }
        Fetch::Before(pos, n) => (query::page_before(&sources, pos, n, grep)?, None),
        Fetch::After(pos, n) => (query::page_after(&sources, pos, n, grep)?, None),
    };
    Ok((lines.iter().map(|l| pane_line(&sources, l)).collect(), end))
}

fn make_query<'a>(
    tail: usize,
    after: Option<Position>,
    grep: Option<LineFilter<'a>>,
    literal: Option<&'a str>,
) -> Query<'a> {
    Query {
        tail: Some(tail),
        since: Since::Everything,
        after,
        grep,
        // Text every accepted line contains, so blocks without it are skipped.
        plain: grep.and(literal),
        context: 0,
    }
}

fn pane_line(sources: &[Source], line: &Line) -> PaneLine {
    PaneLine {
        stream: sources
            .get(line.source)
            .map_or(crate::protocol::Stream::Stdout, |s| s.stream),
        // Lines are not wrapped: what lies past any terminal's width is never shown.
        text: sanitize(&line.bytes[..line.bytes.len().min(SHOWN_BYTES)]),
        pos: line.pos,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::index::SeqClock;
    use crate::logs::store::LogSink;
    use crate::protocol::Stream;

    /// A session whose process `p` wrote `o1 e1 o2 e2 …` alternately on stdout
    /// and stderr, in small rotated segments.
    fn session(tag: &str, n: usize) -> (SessionPaths, LogSink, LogSink, SeqClock) {
        let dir = std::env::temp_dir().join(format!("ap-ui-hist-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::set_permissions(
            dir.join("logs"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let paths = SessionPaths {
            session: "t".into(),
            runtime_dir: dir.clone(),
            socket: dir.join("t.sock"),
            pid_file: dir.join("t.pid"),
            lock_file: dir.join("t.lock"),
            log_dir: dir.join("logs"),
            state_dir: dir,
            root: None,
        };
        let limits = crate::logs::Limits {
            max_size: 40,
            keep: 100,
        };
        let mut out = LogSink::create(paths.log_file("p", "stdout"), limits).unwrap();
        let mut err = LogSink::create(paths.log_file("p", "stderr"), limits).unwrap();
        let mut clock = SeqClock::default();
        for i in 1..=n {
            out.append(&mut clock, format!("o{i}\n").as_bytes(), |_| {});
            err.append(&mut clock, format!("e{i}\n").as_bytes(), |_| {});
        }
        (paths, out, err, clock)
    }

    fn texts(page: &[PaneLine]) -> Vec<String> {
        page.iter().map(|l| l.text.clone()).collect()
    }

    #[test]
    fn pages_from_the_files_table() {
        let (paths, ..) = session("table", 20);
        let both = View {
            name: "p",
            mode: StreamMode::Both,
            filter: None,
        };
        let (tail, _) = fetch(&paths, &both, Fetch::Tail, 4).unwrap();
        assert_eq!(texts(&tail), ["o19", "e19", "o20", "e20"]);
        assert_eq!(tail[1].stream, Stream::Stderr);
        let (before, _) = fetch(&paths, &both, Fetch::Before(tail[0].pos, 3), 4).unwrap();
        assert_eq!(texts(&before), ["e17", "o18", "e18"]);
        let (head, _) = fetch(&paths, &both, Fetch::After(None, 3), 4).unwrap();
        assert_eq!(texts(&head), ["o1", "e1", "o2"]);
        let (next, _) = fetch(&paths, &both, Fetch::After(Some(head[2].pos), 2), 4).unwrap();
        assert_eq!(texts(&next), ["e2", "o3"]);
        let stderr = View {
            mode: StreamMode::Stderr,
            ..both
        };
        let (tail, _) = fetch(&paths, &stderr, Fetch::Tail, 2).unwrap();
        assert_eq!(texts(&tail), ["e19", "e20"]);
        let missing = View {
            name: "nope",
            ..both
        };
        assert!(
            fetch(&paths, &missing, Fetch::Tail, 5)
                .unwrap()
                .0
                .is_empty()
        );
        let _ = std::fs::remove_dir_all(&paths.state_dir);
    }

    #[test]
    fn a_filtered_live_view_reads_only_what_is_new() {
        let (paths, mut out, mut err, mut clock) = session("filter", 12);
        let pattern = Pattern::new("1", false, false).unwrap();
        let view = View {
            name: "p",
            mode: StreamMode::Both,
            filter: Some(&pattern),
        };
        let (tail, end) = fetch(&paths, &view, Fetch::Tail, 3).unwrap();
        assert_eq!(texts(&tail), ["e11", "o12", "e12"]);
        let end = end.expect("the newest position");
        out.append(&mut clock, b"o13\nno match\n", |_| {});
        err.append(&mut clock, b"e13\n", |_| {});
        let (new, newest) = fetch(&paths, &view, Fetch::Newer(end), 3).unwrap();
        // From the last line searched (e12, seen already) on.
        assert_eq!(texts(&new), ["e12", "o13", "e13"]);
        assert!(newest > Some(end));
        // Nothing new: at most the newest line again (the model drops it as seen).
        let (again, _) = fetch(&paths, &view, Fetch::Newer(newest.unwrap()), 3).unwrap();
        assert!(again.iter().all(|l| l.pos >= newest.unwrap()), "{again:?}");
        assert!(again.len() <= 1);
        // A line written in two pieces: searched while partial, found once complete.
        let (_, end) = fetch(&paths, &view, Fetch::Tail, 3).unwrap();
        out.append(&mut clock, b"half", |_| {});
        let (_, end2) = fetch(&paths, &view, Fetch::Newer(end.unwrap()), 3).unwrap();
        out.append(&mut clock, b" 1 done\n", |_| {});
        let (done, _) = fetch(&paths, &view, Fetch::Newer(end2.unwrap()), 3).unwrap();
        assert_eq!(texts(&done), ["half 1 done"]);
        let _ = std::fs::remove_dir_all(&paths.state_dir);
    }
}
