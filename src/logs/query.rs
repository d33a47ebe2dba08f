//! Queries over stored logs, for `logs` without `--follow`: the streams of one or
//! more processes, each line placed by its index record (sequence number, offset
//! in the record, arrival time), merged in arrival order, then filtered by the
//! pipeline since → after → grep → tail → context. Works on the files alone.

use super::index::{IndexReader, Record};
use super::read::{for_each_match, open_log, tail_located_from};
use super::{MAX_LINE, existing_segments};
use crate::protocol::Stream;
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Where a line starts, in a form that survives rotation and restarts: the
/// sequence number of its index record and its byte offset within that record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub seq: u64,
    pub delta: u64,
}

impl Position {
    /// A cursor as the user sees it: `SEQ.DELTA`.
    pub fn cursor(&self) -> String {
        format!("{}.{}", self.seq, self.delta)
    }

    pub fn parse(text: &str) -> Option<Position> {
        let (seq, delta) = text.split_once('.')?;
        Some(Position {
            seq: seq.parse().ok()?,
            delta: delta.parse().ok()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Which of the query's sources it came from.
    pub source: usize,
    pub pos: Position,
    pub time_ms: u64,
    pub bytes: Vec<u8>,
    /// Shown only as context around a match.
    pub context: bool,
    /// A `--` goes before it: it starts a new group of matches.
    pub group_start: bool,
}

/// One stream of one process, as stored: its segments, oldest first.
pub struct Source {
    pub process: String,
    pub stream: Stream,
    segments: Vec<Segment>,
    /// Read the newest segment only up to here (the daemon's last complete line).
    limit: Option<u64>,
    /// The runs of the process this query covers (set by the caller).
    pub floor: Floor,
}

/// Which runs of a process a query covers, as a place to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Floor {
    /// Everything kept.
    #[default]
    Everything,
    /// Lines from this sequence number on: the start of a run in the journal.
    Seq(u64),
    /// From the k-th newest segment that starts a run (k >= 1): logs of a
    /// version without the run journal, where the index flags run starts.
    Segments(usize),
}

struct Segment {
    data: PathBuf,
    index: IndexReader,
}

impl Source {
    /// The stream whose current segment is `path`. `NotFound` when it has no log.
    pub fn open(process: &str, stream: Stream, path: &Path) -> io::Result<Source> {
        Source::open_limited(process, stream, path, None)
    }

    /// `open`, reading the current segment only up to `limit` bytes.
    pub fn open_limited(
        process: &str,
        stream: Stream,
        path: &Path,
        limit: Option<u64>,
    ) -> io::Result<Source> {
        let mut segments: Vec<Segment> = Vec::new();
        for data in existing_segments(path) {
            // A segment we would refuse to open (a link, another user's file) is an
            // error naming it, not a silent gap in the history.
            match open_log(&data) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if data == path => return Err(e),
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{}: {}", data.display(), crate::error::describe_io(&e)),
                    ));
                }
            }
            segments.push(Segment {
                index: IndexReader::open(&data),
                data,
            });
        }
        if segments.is_empty() {
            return Err(io::ErrorKind::NotFound.into());
        }
        segments.reverse();
        Ok(Source {
            process: process.to_string(),
            stream,
            segments,
            limit,
            floor: Floor::Everything,
        })
    }

    /// Segment number (oldest first) and offset where lines with a sequence
    /// number of at least `seq` begin.
    fn start_at_seq(&self, seq: u64) -> (usize, u64) {
        for (i, seg) in self.segments.iter().enumerate() {
            let last = seg.index.get(seg.index.len().saturating_sub(1));
            if last.is_some_and(|r| r.seq >= seq) || i + 1 == self.segments.len() {
                let at = seg.index.last_where(|r| r.seq < seq).map_or(0, |k| k + 1);
                return match seg.index.get(at) {
                    Some(r) => (i, r.offset),
                    None => (i, u64::MAX), // nothing this recent: start past the end
                };
            }
        }
        (0, 0)
    }

    /// Where the `floor` of this source begins.
    fn start_of_floor(&self) -> (usize, u64) {
        match self.floor {
            Floor::Everything => (0, 0),
            Floor::Seq(seq) => self.start_at_seq(seq),
            Floor::Segments(k) => self
                .run_start_segments()
                .get(k.saturating_sub(1))
                .map_or((0, 0), |&i| (i, 0)),
        }
    }

    /// Segments (oldest-first numbers) that begin a run, newest first. A
    /// segment without an index is a whole run (nothing printed yet, or 0.6).
    fn run_start_segments(&self) -> Vec<usize> {
        (0..self.segments.len())
            .rev()
            .filter(|&i| self.segments[i].index.get(0).is_some_and(|r| r.run_start))
            .collect()
    }

    /// For each run-start segment, newest first: the sequence number and time of
    /// its first record, when it has an index.
    pub fn run_starts(&self) -> Vec<Option<(u64, u64)>> {
        self.run_start_segments()
            .into_iter()
            .map(|i| {
                let seg = &self.segments[i];
                seg.index
                    .get(0)
                    .filter(|_| seg.index.len() > 0 && seg.index.has_file())
                    .map(|r| (r.seq, r.time_ms))
            })
            .collect()
    }

    /// Segment number (oldest first) and offset where lines at or after `time_ms` begin.
    fn start_since(&self, time_ms: u64) -> (usize, u64) {
        for (i, seg) in self.segments.iter().enumerate() {
            let last = seg.index.get(seg.index.len().saturating_sub(1));
            if last.is_some_and(|r| r.time_ms >= time_ms) || i + 1 == self.segments.len() {
                let at = seg
                    .index
                    .last_where(|r| r.time_ms < time_ms)
                    .map_or(0, |k| k + 1);
                return match seg.index.get(at) {
                    Some(r) => (i, r.offset),
                    None => (i, u64::MAX), // nothing this recent: start past the end
                };
            }
        }
        (0, 0)
    }

    /// Where the newest run of the process began (its last run-start record).
    fn start_of_run(&self) -> (usize, u64) {
        for (i, seg) in self.segments.iter().enumerate().rev() {
            if let Some(k) = last_run_start(&seg.index) {
                return (i, seg.index.get(k).map_or(0, |r| r.offset));
            }
        }
        (0, 0)
    }

    /// Segment and byte where the lines before `pos` end in this source: at the
    /// line `pos` names when it is one of ours, else after the line that holds
    /// the first byte written after `pos`. None when all of it comes later.
    fn ceiling(&self, pos: Position) -> io::Result<Option<(usize, u64)>> {
        for (i, seg) in self.segments.iter().enumerate().rev() {
            if seg.index.get(0).is_none_or(|r| r.seq > pos.seq) {
                continue;
            }
            let k = seg.index.last_where(|r| r.seq <= pos.seq).unwrap_or(0);
            let Some(record) = seg.index.get(k) else {
                return Ok(None);
            };
            if record.seq == pos.seq {
                return Ok(Some((i, record.offset + pos.delta)));
            }
            let next = match seg.index.get(k + 1) {
                Some(r) => r.offset,
                None => return Ok(Some((i, u64::MAX))),
            };
            return Ok(Some((i, end_of_line_at(&seg.data, next)?)));
        }
        Ok(None)
    }

    /// Where lines after `cursor` may begin (lines at it are filtered out later).
    fn start_after(&self, cursor: Position) -> (usize, u64) {
        for (i, seg) in self.segments.iter().enumerate().rev() {
            if seg.index.get(0).is_some_and(|r| r.seq <= cursor.seq) {
                let k = seg.index.last_where(|r| r.seq <= cursor.seq).unwrap_or(0);
                return (i, seg.index.get(k).map_or(0, |r| r.offset));
            }
        }
        (0, 0)
    }
}

fn last_run_start(index: &IndexReader) -> Option<u64> {
    let mut found = None;
    for (k, record) in index.iter_from(0).enumerate() {
        if record.run_start {
            found = Some(k as u64);
        }
    }
    found
}

/// Lines of one source from a starting point onward, with their positions.
struct Forward<'a> {
    source: &'a Source,
    source_no: usize,
    seg_no: usize,
    reader: Option<BufReader<io::Take<std::fs::File>>>,
    offset: u64,
    records: Vec<Record>,
    record_at: usize,
    /// Segment and offset where the line last returned begins.
    last_start: (usize, u64),
}

impl<'a> Forward<'a> {
    fn new(source: &'a Source, source_no: usize, (seg_no, offset): (usize, u64)) -> Forward<'a> {
        let mut f = Forward {
            source,
            source_no,
            seg_no,
            reader: None,
            offset,
            records: Vec::new(),
            record_at: 0,
            last_start: (seg_no, offset),
        };
        f.open_segment(offset);
        f
    }

    fn open_segment(&mut self, offset: u64) {
        self.reader = None;
        let Some(seg) = self.source.segments.get(self.seg_no) else {
            return;
        };
        let Ok(mut file) = open_log(&seg.data) else {
            return;
        };
        if file.seek(SeekFrom::Start(offset)).is_err() {
            return;
        }
        let (first, _) = seg.index.at_offset(offset);
        self.records = seg.index.iter_from(first).collect();
        self.record_at = 0;
        self.offset = offset;
        let newest = self.seg_no + 1 == self.source.segments.len();
        let len = match self.source.limit {
            Some(limit) if newest => limit.saturating_sub(offset),
            _ => u64::MAX,
        };
        let mut reader = BufReader::with_capacity(256 * 1024, io::Read::take(file, len));
        if offset > 0 && !starts_line(&seg.data, offset) {
            // Begun inside a line (a record starts mid-line): that line began earlier.
            let mut skipped = Vec::new();
            self.offset += read_line_capped(&mut reader, &mut skipped).unwrap_or(0) as u64;
        }
        self.reader = Some(reader);
    }

    fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            let Some(reader) = self.reader.as_mut() else {
                if self.seg_no + 1 >= self.source.segments.len() {
                    return Ok(None);
                }
                self.seg_no += 1;
                self.open_segment(0);
                continue;
            };
            let mut bytes = Vec::new();
            let n = read_line_capped(reader, &mut bytes)?;
            if n == 0 {
                self.reader = None;
                continue;
            }
            let start = self.offset;
            self.last_start = (self.seg_no, start);
            self.offset += n as u64;
            while self
                .records
                .get(self.record_at + 1)
                .is_some_and(|r| r.offset <= start)
            {
                self.record_at += 1;
            }
            let record = self.records.get(self.record_at).copied().unwrap_or(Record {
                offset: 0,
                seq: 0,
                time_ms: 0,
                run_start: false,
            });
            return Ok(Some(Line {
                source: self.source_no,
                pos: Position {
                    seq: record.seq,
                    delta: start.saturating_sub(record.offset),
                },
                time_ms: record.time_ms,
                bytes,
                context: false,
                group_start: false,
            }));
        }
    }
}

/// `offset` when a line starts there, else just past the end of the line that
/// holds byte `offset - 1`.
fn end_of_line_at(path: &Path, offset: u64) -> io::Result<u64> {
    if offset == 0 || starts_line(path, offset) {
        return Ok(offset);
    }
    let mut file = open_log(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut skipped = Vec::new();
    Ok(offset + read_line_capped(&mut reader, &mut skipped)? as u64)
}

/// Whether a line begins at `offset` of the file (the byte before is a newline).
fn starts_line(path: &Path, offset: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let mut before = [0u8; 1];
    open_log(path)
        .and_then(|f| f.read_exact_at(&mut before, offset - 1))
        .is_ok_and(|()| before[0] == b'\n')
}

/// One line without its newline, at most MAX_LINE bytes (the rest is the next line,
/// as the daemon splits it). Returns the bytes consumed, 0 at the end.
fn read_line_capped(reader: &mut impl BufRead, out: &mut Vec<u8>) -> io::Result<usize> {
    let mut consumed = 0;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(consumed);
        }
        let room = MAX_LINE - out.len();
        match buf[..buf.len().min(room)].iter().position(|&b| b == b'\n') {
            Some(at) => {
                out.extend_from_slice(&buf[..at]);
                reader.consume(at + 1);
                return Ok(consumed + at + 1);
            }
            None => {
                let take = buf.len().min(room);
                out.extend_from_slice(&buf[..take]);
                reader.consume(take);
                consumed += take;
                if out.len() >= MAX_LINE {
                    return Ok(consumed);
                }
            }
        }
    }
}

/// Byte substring search: scan for the first byte, then compare.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut from = 0;
    while let Some(at) = haystack[from..].iter().position(|&b| b == first) {
        let start = from + at;
        if haystack[start + 1..].starts_with(rest) {
            return true;
        }
        from = start + 1;
    }
    false
}

/// Where to begin reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Since {
    Everything,
    Time(u64),
    /// The latest (re)start of the process.
    Run,
}

/// A line filter for `--grep`.
pub type LineFilter<'a> = &'a dyn Fn(&[u8]) -> bool;

pub struct Query<'a> {
    pub tail: Option<usize>,
    pub since: Since,
    pub after: Option<Position>,
    pub grep: Option<LineFilter<'a>>,
    /// Text every line that `grep` accepts must contain (the pattern itself, or a
    /// regex's literal): lets whole blocks be searched.
    pub plain: Option<&'a str>,
    pub context: usize,
}

/// Run a query over `sources`, merged in arrival order.
pub fn run(sources: &[Source], q: &Query<'_>) -> io::Result<Vec<Line>> {
    if q.grep.is_none()
        && let Some(n) = q.tail
    {
        return tail_merged(sources, n, q);
    }
    if let Some(needle) = q.plain.filter(|n| !n.is_empty() && !n.contains('\n'))
        && (sources.len() == 1 || q.context == 0)
    {
        return grep_plain(sources, needle, q);
    }
    let mut heads: Vec<(Forward<'_>, Option<Line>)> = Vec::new();
    for (no, source) in sources.iter().enumerate() {
        let start = start_of(source, q);
        let mut forward = Forward::new(source, no, start);
        let first = forward.next_line()?;
        heads.push((forward, first));
    }
    let mut collector = Collector::new(q.tail, q.context, q.grep.is_some());
    // The head with the earliest position goes next.
    while let Some(pick) = heads
        .iter()
        .enumerate()
        .filter_map(|(i, (_, line))| line.as_ref().map(|l| (l.pos, i)))
        .min()
        .map(|(_, i)| i)
    {
        let (forward, slot) = &mut heads[pick];
        let next = forward.next_line()?;
        let Some(line) = std::mem::replace(slot, next) else {
            continue;
        };
        if q.after.is_some_and(|c| line.pos <= c) {
            continue;
        }
        let matched = q.grep.is_none_or(|g| g(&line.bytes));
        collector.push(line, matched);
    }
    Ok(collector.finish())
}

/// Up to `n` lines (that `grep` accepts) after `after`, or from the start of the
/// kept history, in arrival order: a page of scrollback read forward, stopping
/// as soon as the page is full.
pub fn page_after(
    sources: &[Source],
    after: Option<Position>,
    n: usize,
    grep: Option<LineFilter<'_>>,
) -> io::Result<Vec<Line>> {
    let mut heads: Vec<(Forward<'_>, Option<Line>)> = Vec::new();
    for (no, source) in sources.iter().enumerate() {
        let start = after.map_or((0, 0), |c| source.start_after(c));
        let mut forward = Forward::new(source, no, start);
        let first = forward.next_line()?;
        heads.push((forward, first));
    }
    let mut out = Vec::new();
    while out.len() < n {
        let Some(pick) = heads
            .iter()
            .enumerate()
            .filter_map(|(i, (_, line))| line.as_ref().map(|l| (l.pos, i)))
            .min()
            .map(|(_, i)| i)
        else {
            break;
        };
        let (forward, slot) = &mut heads[pick];
        let next = forward.next_line()?;
        let Some(line) = std::mem::replace(slot, next) else {
            continue;
        };
        if after.is_none_or(|c| line.pos > c) && grep.is_none_or(|g| g(&line.bytes)) {
            out.push(line);
        }
    }
    Ok(out)
}

/// The last `n` lines (that `grep` accepts) before `before`, in arrival order: a
/// page of scrollback read backward from where `before` lies in each source's
/// segments (found through the index), so its cost follows the page, not the file.
pub fn page_before(
    sources: &[Source],
    before: Position,
    n: usize,
    grep: Option<LineFilter<'_>>,
) -> io::Result<Vec<Line>> {
    let mut all = Vec::new();
    for (no, source) in sources.iter().enumerate() {
        let Some((mut seg_no, mut ceiling)) = source.ceiling(before)? else {
            continue;
        };
        let mut found: Vec<Line> = Vec::new();
        // Newest batch first; a grep may need many batches to find `n` lines.
        let batch = if grep.is_some() { n.max(4096) } else { n };
        loop {
            let data = &source.segments[seg_no].data;
            let lines = super::read::tail_located_in(data, batch, ceiling)?;
            let complete = lines.len() < batch;
            if let Some((first, _)) = lines.first() {
                ceiling = *first;
            }
            let mut kept = Vec::new();
            for (offset, bytes) in lines {
                if grep.is_some_and(|g| !g(&bytes)) {
                    continue;
                }
                let (pos, time_ms) = locate(source, seg_no, offset);
                kept.push(Line {
                    source: no,
                    pos,
                    time_ms,
                    bytes,
                    context: false,
                    group_start: false,
                });
            }
            kept.append(&mut found);
            found = kept;
            if found.len() >= n {
                break;
            }
            if complete || ceiling == 0 {
                if seg_no == 0 {
                    break;
                }
                seg_no -= 1;
                ceiling = u64::MAX;
            }
        }
        let skip = found.len().saturating_sub(n);
        all.extend(found.drain(skip..));
    }
    all.sort_by_key(|l| (l.pos, l.source));
    let skip = all.len().saturating_sub(n);
    Ok(all.split_off(skip))
}

/// Where reading of `source` begins for `q`: the later of --since and --after.
fn start_of(source: &Source, q: &Query<'_>) -> (usize, u64) {
    let since = match q.since {
        Since::Everything => (0, 0),
        Since::Time(t) => source.start_since(t),
        Since::Run => source.start_of_run(),
    };
    let since = since.max(source.start_of_floor());
    match q.after {
        Some(c) => since.max(source.start_after(c)),
        None => since,
    }
}

/// A line's place from where it starts in a segment.
fn locate(source: &Source, seg_no: usize, offset: u64) -> (Position, u64) {
    let Some(seg) = source.segments.get(seg_no) else {
        return (Position::default(), 0);
    };
    let (_, r) = seg.index.at_offset(offset);
    (
        Position {
            seq: r.seq,
            delta: offset.saturating_sub(r.offset),
        },
        r.time_ms,
    )
}

/// `--grep` with a plain substring: search whole blocks (see `for_each_match`),
/// keep the last `tail` matches per source, merge, then read the context around
/// them (one source only). Same result as the general path, much faster.
fn grep_plain(sources: &[Source], needle: &str, q: &Query<'_>) -> io::Result<Vec<Line>> {
    // (source, segment, offset, line) of each kept match.
    let mut found: Vec<(Position, u64, usize, usize, u64, Vec<u8>)> = Vec::new();
    for (no, source) in sources.iter().enumerate() {
        let (first_seg, first_offset) = start_of(source, q);
        let mut kept: VecDeque<(Position, u64, usize, usize, u64, Vec<u8>)> = VecDeque::new();
        for seg_no in first_seg..source.segments.len() {
            let from = if seg_no == first_seg { first_offset } else { 0 };
            let data = &source.segments[seg_no].data;
            let limit = if seg_no + 1 == source.segments.len() {
                source.limit.unwrap_or(u64::MAX)
            } else {
                u64::MAX
            };
            for_each_match(data, from, limit, needle, |offset, line| {
                // `needle` may be only part of the pattern (a regex's literal).
                if q.grep.is_some_and(|g| !g(line)) {
                    return true;
                }
                let (pos, time) = locate(source, seg_no, offset);
                if q.after.is_none_or(|c| pos > c) {
                    kept.push_back((pos, time, no, seg_no, offset, line.to_vec()));
                    if q.tail.is_some_and(|n| kept.len() > n) {
                        kept.pop_front();
                    }
                }
                true
            })?;
        }
        found.extend(kept);
    }
    found.sort_by_key(|m| (m.0, m.2));
    if let Some(n) = q.tail {
        let skip = found.len().saturating_sub(n);
        found.drain(..skip);
    }
    let plain =
        |(pos, time_ms, source, _, _, bytes): (Position, u64, usize, usize, u64, Vec<u8>)| Line {
            source,
            pos,
            time_ms,
            bytes,
            context: false,
            group_start: false,
        };
    if q.context == 0 {
        return Ok(found.into_iter().map(plain).collect());
    }
    // One source: add the lines around each match, windows merged.
    let Some(source) = sources.first() else {
        return Ok(Vec::new());
    };
    let mut lines: std::collections::BTreeMap<(usize, u64), (Vec<u8>, bool)> = Default::default();
    for (_, _, _, seg_no, offset, bytes) in &found {
        let end = offset + bytes.len() as u64 + 1;
        // Lines before, into older segments if this one begins too soon.
        let (mut seg, mut limit, mut need) = (*seg_no, *offset, q.context);
        loop {
            let data = &source.segments[seg].data;
            let before = super::read::tail_located_in(data, need, limit)?;
            need -= before.len();
            for (at, line) in before {
                lines.entry((seg, at)).or_insert((line, false));
            }
            if need == 0 || seg == 0 {
                break;
            }
            seg -= 1;
            limit = u64::MAX;
        }
        let mut forward = Forward::new(source, 0, (*seg_no, end));
        for _ in 0..q.context {
            let Some(line) = forward.next_line()? else {
                break;
            };
            lines
                .entry(forward.last_start)
                .or_insert((line.bytes, false));
        }
        lines.insert((*seg_no, *offset), (bytes.clone(), true));
    }
    let mut out = Vec::new();
    let mut next_expected: Option<(usize, u64)> = None;
    for ((seg_no, offset), (bytes, matched)) in lines {
        let (pos, time_ms) = locate(source, seg_no, offset);
        let segment_len =
            |s: usize| std::fs::metadata(&source.segments[s].data).map_or(0, |m| m.len());
        let adjacent = next_expected.is_none_or(|(s, o)| {
            (s == seg_no && o == offset) || (seg_no == s + 1 && offset == 0 && o >= segment_len(s))
        });
        next_expected = Some((seg_no, offset + bytes.len() as u64 + 1));
        if q.after.is_some_and(|c| pos <= c) {
            continue;
        }
        out.push(Line {
            source: 0,
            pos,
            time_ms,
            bytes,
            context: !matched,
            group_start: !adjacent && !out.is_empty(),
        });
    }
    Ok(out)
}

/// The last `n` lines of the merged sources (after --since/--after): the last
/// `n` of each, read backwards down to where the query starts, merged.
fn tail_merged(sources: &[Source], n: usize, q: &Query<'_>) -> io::Result<Vec<Line>> {
    let mut all: Vec<Line> = Vec::new();
    for (no, source) in sources.iter().enumerate() {
        let Some(newest) = source.segments.last() else {
            continue;
        };
        let count = source.segments.len();
        let floor = (q.since != Since::Everything
            || q.after.is_some()
            || source.floor != Floor::Everything)
            .then(|| {
                let (seg_no, offset) = start_of(source, q);
                (count - 1 - seg_no.min(count - 1), offset)
            });
        let located = tail_located_from(&newest.data, n, source.limit, floor)?;
        let mut cursor: Option<(usize, Vec<Record>, usize)> = None;
        for (from_newest, offset, bytes) in located {
            let seg_no = count - 1 - from_newest;
            let seg = &source.segments[seg_no];
            if cursor.as_ref().is_none_or(|(s, _, _)| *s != seg_no) {
                let (first, _) = seg.index.at_offset(offset);
                cursor = Some((seg_no, seg.index.iter_from(first).collect(), 0));
            }
            let Some((_, records, at)) = cursor.as_mut() else {
                continue;
            };
            while records.get(*at + 1).is_some_and(|r| r.offset <= offset) {
                *at += 1;
            }
            let record = records.get(*at).copied().unwrap_or(Record {
                offset: 0,
                seq: 0,
                time_ms: 0,
                run_start: false,
            });
            let pos = Position {
                seq: record.seq,
                delta: offset.saturating_sub(record.offset),
            };
            if q.after.is_some_and(|c| pos <= c) {
                continue;
            }
            all.push(Line {
                source: no,
                pos,
                time_ms: record.time_ms,
                bytes,
                context: false,
                group_start: false,
            });
        }
    }
    all.sort_by_key(|l| (l.pos, l.source));
    let skip = all.len().saturating_sub(n);
    Ok(all.split_off(skip))
}

/// grep → tail → context, in one pass with bounded memory: groups of lines around
/// the last `tail` matches, each group a match window merged with its neighbours.
struct Collector {
    tail: Option<usize>,
    context: usize,
    grep: bool,
    /// Lines seen since the last group ended (before-context candidates).
    before: VecDeque<Line>,
    groups: VecDeque<Vec<Line>>,
    matches: usize,
    /// Lines still to add after the latest match.
    after_left: usize,
    /// Lines since the last group's window ended.
    gap: usize,
}

impl Collector {
    fn new(tail: Option<usize>, context: usize, grep: bool) -> Collector {
        Collector {
            tail,
            context,
            grep,
            before: VecDeque::new(),
            groups: VecDeque::new(),
            matches: 0,
            after_left: 0,
            gap: 0,
        }
    }

    fn push(&mut self, mut line: Line, matched: bool) {
        if !self.grep {
            // Plain reading: keep the last `tail` lines.
            self.before.push_back(line);
            if self.tail.is_some_and(|n| self.before.len() > n) {
                self.before.pop_front();
            }
            return;
        }
        if matched {
            // Windows that touch or overlap merge into one group.
            let merge = !self.groups.is_empty() && self.gap <= self.context;
            let lead: Vec<Line> = self.before.drain(..).collect();
            if merge {
                if let Some(group) = self.groups.back_mut() {
                    group.extend(lead);
                }
            } else {
                self.groups.push_back(lead);
            }
            line.context = false;
            if let Some(group) = self.groups.back_mut() {
                group.push(line);
            }
            self.matches += 1;
            self.after_left = self.context;
            self.gap = 0;
            self.trim_to_tail();
        } else if self.after_left > 0 {
            self.after_left -= 1;
            line.context = true;
            if let Some(group) = self.groups.back_mut() {
                group.push(line);
            }
        } else {
            line.context = true;
            self.gap += 1;
            self.before.push_back(line);
            if self.before.len() > self.context {
                self.before.pop_front();
            }
        }
    }

    /// Drop the oldest matches beyond `tail`, with the context only they needed.
    fn trim_to_tail(&mut self) {
        let Some(limit) = self.tail else { return };
        while self.matches > limit {
            let Some(group) = self.groups.front_mut() else {
                return;
            };
            let Some(first) = group.iter().position(|l| !l.context) else {
                self.groups.pop_front();
                continue;
            };
            group[first].context = true;
            self.matches -= 1;
            match group.iter().position(|l| !l.context) {
                None => {
                    self.groups.pop_front();
                }
                Some(next) => {
                    // Keep at most `context` lines before the new first match.
                    let cut = next.saturating_sub(self.context);
                    group.drain(..cut);
                }
            }
        }
    }

    fn finish(mut self) -> Vec<Line> {
        if !self.grep {
            return self.before.into_iter().collect();
        }
        let mut out = Vec::new();
        let mut first_group = true;
        for group in self.groups.drain(..) {
            for (i, mut line) in group.into_iter().enumerate() {
                // Separators only make sense between windows of context.
                line.group_start = i == 0 && !first_group && self.context > 0;
                out.push(line);
            }
            first_group = false;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run the collector over lines `0..n` where `matched` lines match; render as
    /// `m7` (match), `c6` (context) and `--` separators.
    fn collect(n: u64, matched: &[u64], tail: Option<usize>, context: usize) -> String {
        let mut c = Collector::new(tail, context, true);
        for i in 0..n {
            let line = Line {
                source: 0,
                pos: Position { seq: i, delta: 0 },
                time_ms: 0,
                bytes: Vec::new(),
                context: false,
                group_start: false,
            };
            c.push(line, matched.contains(&i));
        }
        let mut out = Vec::new();
        for line in c.finish() {
            if line.group_start {
                out.push("--".to_string());
            }
            out.push(format!(
                "{}{}",
                if line.context { "c" } else { "m" },
                line.pos.seq
            ));
        }
        out.join(" ")
    }

    /// Lines, which of them match, --tail, --context, the expected rendering.
    type Case = (u64, &'static [u64], Option<usize>, usize, &'static str);

    #[test]
    fn grep_tail_context_pipeline_table() {
        let cases: &[Case] = &[
            (10, &[3], None, 0, "m3"),
            (10, &[3, 4, 7], None, 0, "m3 m4 m7"),
            (10, &[3], None, 2, "c1 c2 m3 c4 c5"),
            (10, &[0], None, 2, "m0 c1 c2"),
            (10, &[9], None, 2, "c7 c8 m9"),
            // Windows that overlap or touch merge; others get a separator.
            (20, &[3, 6], None, 2, "c1 c2 m3 c4 c5 m6 c7 c8"),
            (20, &[3, 8], None, 2, "c1 c2 m3 c4 c5 c6 c7 m8 c9 c10"),
            (20, &[3, 9], None, 2, "c1 c2 m3 c4 c5 -- c7 c8 m9 c10 c11"),
            // tail keeps the last N matches and only the context they need.
            (20, &[2, 9, 15], Some(2), 1, "c8 m9 c10 -- c14 m15 c16"),
            (20, &[2, 3, 4], Some(1), 1, "c3 m4 c5"),
            (20, &[2, 3, 4], Some(2), 0, "m3 m4"),
            (20, &[], Some(5), 3, ""),
        ];
        for (n, matched, tail, context, want) in cases {
            assert_eq!(
                collect(*n, matched, *tail, *context),
                *want,
                "{matched:?} tail {tail:?} context {context}"
            );
        }
    }

    use proptest::prelude::*;

    /// A one-stream log written the way the daemon writes it, size-rotated.
    fn write_log(dir: &Path, chunks: &[Vec<u8>]) -> Source {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let path = dir.join("p.stdout");
        let mut clock = crate::logs::index::SeqClock::default();
        let limits = crate::logs::Limits {
            max_size: 64,
            keep: 100,
        };
        let mut sink = crate::logs::store::LogSink::create(path.clone(), limits).unwrap();
        for chunk in chunks {
            sink.append(&mut clock, chunk, |_| {});
        }
        Source::open("p", Stream::Stdout, &path).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The block-search grep and the line-by-line grep give the same lines.
        #[test]
        fn plain_grep_agrees_with_the_general_pipeline(
            chunks in proptest::collection::vec(proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'\n'), Just(0xffu8)], 0..40), 0..12),
            needle in "[ab]{1,2}",
            tail in proptest::option::of(0usize..5),
            context in 0usize..3,
        ) {
            let dir = std::env::temp_dir().join(format!("ap-query-{}", std::process::id()));
            let source = write_log(&dir, &chunks);
            let sources = [source];
            let bytes = needle.as_bytes().to_vec();
            let filter = move |line: &[u8]| contains(line, &bytes);
            let general = Query { tail, since: Since::Everything, after: None, grep: Some(&filter), plain: None, context };
            let fast = Query { plain: Some(&needle), ..general };
            let a = run(&sources, &Query { grep: Some(&filter), ..general }).unwrap();
            let b = run(&sources, &fast).unwrap();
            let show = |lines: &[Line]| lines.iter().map(|l| (l.pos, l.bytes.clone(), l.context, l.group_start)).collect::<Vec<_>>();
            prop_assert_eq!(show(&a), show(&b));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// A regex searched through its literal gives what the line-by-line search gives.
        #[test]
        fn regex_grep_through_its_literal_agrees(
            chunks in proptest::collection::vec(proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'\n')], 0..40), 0..12),
            stem in "[ab]{2,3}",
            tail in proptest::option::of(0usize..5),
        ) {
            let dir = std::env::temp_dir().join(format!("ap-query-re-{}", std::process::id()));
            let sources = [write_log(&dir, &chunks)];
            let pattern = format!("{stem}b*$");
            let re = regex_lite::Regex::new(&pattern).unwrap();
            let literal = crate::logs::literal::required_literal(&pattern);
            prop_assert!(literal.is_some());
            let filter = move |line: &[u8]| re.is_match(&String::from_utf8_lossy(line));
            let general = Query { tail, since: Since::Everything, after: None, grep: Some(&filter), plain: None, context: 0 };
            let fast = Query { plain: literal.as_deref(), ..general };
            let show = |lines: &[Line]| lines.iter().map(|l| (l.pos, l.bytes.clone())).collect::<Vec<_>>();
            prop_assert_eq!(show(&run(&sources, &Query { grep: Some(&filter), ..general }).unwrap()), show(&run(&sources, &fast).unwrap()));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Pages read forward or backward from any line agree with reading everything.
        #[test]
        fn pages_agree_with_the_whole_history(
            chunks in proptest::collection::vec(proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'\n')], 0..40), 0..12),
            k in 0usize..6,
            grep in proptest::option::of("[ab]"),
        ) {
            let dir = std::env::temp_dir().join(format!("ap-query-page-{}", std::process::id()));
            let sources = [write_log(&dir, &chunks)];
            let needle = grep.clone().unwrap_or_default().into_bytes();
            let filter = move |line: &[u8]| contains(line, &needle);
            let g = grep.as_ref().map(|_| &filter as LineFilter<'_>);
            let everything = Query { tail: None, since: Since::Everything, after: None, grep: None, plain: None, context: 0 };
            let all = run(&sources, &everything).unwrap();
            let show = |lines: &[Line]| lines.iter().map(|l| (l.pos, l.bytes.clone())).collect::<Vec<_>>();
            let matching: Vec<Line> = all.iter().filter(|l| g.is_none_or(|g| g(&l.bytes))).cloned().collect();
            prop_assert_eq!(show(&page_after(&sources, None, k, g).unwrap()), show(&matching[..k.min(matching.len())]));
            for line in &all {
                let before: Vec<Line> = matching.iter().filter(|l| l.pos < line.pos).cloned().collect();
                let after: Vec<Line> = matching.iter().filter(|l| l.pos > line.pos).cloned().collect();
                let want_before = &before[before.len().saturating_sub(k)..];
                prop_assert_eq!(show(&page_before(&sources, line.pos, k, g).unwrap()), show(want_before), "before {:?}", line.pos);
                prop_assert_eq!(show(&page_after(&sources, Some(line.pos), k, g).unwrap()), show(&after[..k.min(after.len())]), "after {:?}", line.pos);
            }
        }
    }

    /// `--since` later than the last line (or an index offset past the end) with
    /// `--grep` used to seek to u64::MAX and fail with "invalid argument".
    #[test]
    fn a_since_later_than_every_line_finds_nothing_with_or_without_grep() {
        let dir = std::env::temp_dir().join(format!("ap-query-late-{}", std::process::id()));
        let sources = [write_log(
            &dir,
            &[b"ready\n".to_vec(), b"ready again\n".to_vec()],
        )];
        let filter = |line: &[u8]| contains(line, b"ready");
        let later = Since::Time(crate::logs::index::now_ms() + 3_600_000);
        for (tail, grep, plain) in [
            (None, None, None),
            (Some(5), None, None),
            (None, Some(&filter as LineFilter<'_>), None),
            (None, Some(&filter as LineFilter<'_>), Some("ready")),
            (Some(1), Some(&filter as LineFilter<'_>), Some("ready")),
        ] {
            let q = Query {
                tail,
                since: later,
                after: None,
                grep,
                plain,
                context: 0,
            };
            let lines = run(&sources, &q).map(|l| l.len());
            assert_eq!(lines.ok(), Some(0), "tail {tail:?} plain {plain:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cursors_round_trip_and_reject_junk() {
        let p = Position {
            seq: 1_795_642_245_123_456,
            delta: 42,
        };
        assert_eq!(Position::parse(&p.cursor()), Some(p));
        for junk in ["", "12", "a.b", "1.2.3", "-1.0", "1.", ".1"] {
            assert_eq!(Position::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn byte_substring_search_table() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"Serving HTTP on 0.0.0.0", b"Serving HTTP", true),
            (b"aaab", b"aab", true),
            (b"abc", b"", true),
            (b"", b"a", false),
            (b"ab", b"abc", false),
            (b"\xff\xferedy ready\xff", b"ready", true),
        ];
        for (hay, needle, want) in cases {
            assert_eq!(contains(hay, needle), *want, "{hay:?} {needle:?}");
        }
    }
}
