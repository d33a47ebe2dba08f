//! One stream of one process as stored (`Source`: its segments and their
//! indexes), where a line is in it (`Position`, the cursor users see), and
//! reading its lines forward from a place (`Forward`). `query` runs queries
//! over sources.

use super::index::{IndexReader, Record};
use super::read::open_log;
use super::{MAX_LINE, existing_segments};
use crate::protocol::Stream;
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
    pub(super) segments: Vec<Segment>,
    /// Read the newest segment only up to here (the daemon's last complete line).
    pub(super) limit: Option<u64>,
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

pub(super) struct Segment {
    pub(super) data: PathBuf,
    pub(super) index: IndexReader,
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
    pub(super) fn start_at_seq(&self, seq: u64) -> (usize, u64) {
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
    pub(super) fn start_of_floor(&self) -> (usize, u64) {
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
    pub(super) fn start_since(&self, time_ms: u64) -> (usize, u64) {
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
    pub(super) fn start_of_run(&self) -> (usize, u64) {
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
    pub(super) fn ceiling(&self, pos: Position) -> io::Result<Option<(usize, u64)>> {
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
    pub(super) fn start_after(&self, cursor: Position) -> (usize, u64) {
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
pub(super) struct Forward<'a> {
    source: &'a Source,
    source_no: usize,
    seg_no: usize,
    reader: Option<BufReader<io::Take<std::fs::File>>>,
    offset: u64,
    records: Vec<Record>,
    record_at: usize,
    /// Segment and offset where the line last returned begins.
    pub(super) last_start: (usize, u64),
}

impl<'a> Forward<'a> {
    pub(super) fn new(
        source: &'a Source,
        source_no: usize,
        (seg_no, offset): (usize, u64),
    ) -> Forward<'a> {
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

    pub(super) fn next_line(&mut self) -> io::Result<Option<Line>> {
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
