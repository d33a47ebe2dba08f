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
            (query::run(&sources, &query(rows, Some(after), grep))?, end)
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
        text: sanitize(&line.bytes),
        pos: line.pos,
    }
}
