//! The log index: beside each log segment `NAME.stream[.N]`, a file
//! `NAME.stream[.N].idx` of fixed-size records, one per run of output the daemon
//! read without another stream writing in between, within one millisecond. A record
//! says where its bytes start in the segment, their daemon-wide sequence number and
//! when they arrived, which is enough to interleave streams in arrival order,
//! answer `--since`, and turn a line into a cursor that survives rotation.
//!
//! Format: an 8-byte magic, then records of 24 bytes, little-endian:
//! `offset: u64`, `seq: u64`, `time: u64` (Unix milliseconds; the top bit marks
//! the first record of a run of the process). Records are in file order, so
//! offsets, sequence numbers and times only grow.

use crate::paths::OwnDir;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

pub const MAGIC: &[u8; 8] = b"APIDX\0\0\x01";
pub const RECORD: u64 = 24;
const RUN_START: u64 = 1 << 63;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub seq: u64,
    pub time_ms: u64,
    /// The first record of a run: the process (re)started here.
    pub run_start: bool,
}

impl Record {
    pub fn encode(&self) -> [u8; RECORD as usize] {
        let mut out = [0u8; RECORD as usize];
        out[0..8].copy_from_slice(&self.offset.to_le_bytes());
        out[8..16].copy_from_slice(&self.seq.to_le_bytes());
        let time = self.time_ms | if self.run_start { RUN_START } else { 0 };
        out[16..24].copy_from_slice(&time.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Record> {
        let word = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
        let time = word(16)?;
        Some(Record {
            offset: word(0)?,
            seq: word(8)?,
            time_ms: time & !RUN_START,
            run_start: time & RUN_START != 0,
        })
    }
}

/// The index file of a log segment.
pub fn index_path(segment: &Path) -> PathBuf {
    let mut p = segment.as_os_str().to_owned();
    p.push(".idx");
    PathBuf::from(p)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Daemon-wide sequence numbers: strictly increasing, and never below the current
/// time in microseconds, so numbers from a later daemon sort after an earlier one's
/// without either having to remember anything.
#[derive(Debug, Default)]
pub struct SeqClock {
    last: u64,
}

impl SeqClock {
    pub fn tick(&mut self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.last = (self.last + 1).max(now);
        self.last
    }

    /// The last number handed out; a stream whose last record holds it was the last writer.
    pub fn last(&self) -> u64 {
        self.last
    }
}

/// Read access to one segment's index: records by position, found by binary search.
pub struct IndexReader {
    file: Option<File>,
    count: u64,
    /// Stand-in when there is no index (a log from agent-procs 0.6): one record.
    fallback: Record,
}

impl IndexReader {
    pub fn open(segment: &Path) -> IndexReader {
        // A segment without an index is one whole run: a log from agent-procs 0.6
        // (which rotated at every start), or a run that has not printed yet.
        let fallback = Record {
            offset: 0,
            seq: 0,
            time_ms: 0,
            run_start: true,
        };
        let opened = crate::logs::read::open_log(&index_path(segment))
            .ok()
            .and_then(|file| {
                let mut magic = [0u8; 8];
                file.read_exact_at(&mut magic, 0).ok()?;
                let len = file.metadata().ok()?.len();
                (&magic == MAGIC).then_some((file, (len - 8) / RECORD))
            });
        match opened {
            Some((file, count)) if count > 0 => IndexReader {
                file: Some(file),
                count,
                fallback,
            },
            _ => IndexReader {
                file: None,
                count: 1,
                fallback,
            },
        }
    }

    /// Records in the index. Never 0: a missing index reads as one record that
    /// covers the whole file, so there is no `is_empty`.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.count
    }

    /// The segment has an index file (else its one record is a stand-in).
    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }

    pub fn get(&self, i: u64) -> Option<Record> {
        match &self.file {
            None => (i == 0).then_some(self.fallback),
            Some(file) => {
                let mut buf = [0u8; RECORD as usize];
                file.read_exact_at(&mut buf, 8 + i * RECORD).ok()?;
                Record::decode(&buf)
            }
        }
    }

    /// Records `from..` in order, read in blocks.
    pub fn iter_from(&self, from: u64) -> RecordIter<'_> {
        RecordIter {
            index: self,
            next: from,
            buf: Vec::new(),
            buf_start: from,
        }
    }

    /// Index of the last record satisfying `before` (a predicate that is true for a
    /// prefix of the records), or None when it holds for none.
    pub fn last_where(&self, before: impl Fn(&Record) -> bool) -> Option<u64> {
        let (mut lo, mut hi) = (0u64, self.count); // answer in lo-1 ..
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid) {
                Some(r) if before(&r) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo.checked_sub(1)
    }

    /// The record holding byte `offset` of the segment.
    pub fn at_offset(&self, offset: u64) -> (u64, Record) {
        let i = self.last_where(|r| r.offset <= offset).unwrap_or(0);
        (i, self.get(i).unwrap_or(self.fallback))
    }
}

pub struct RecordIter<'a> {
    index: &'a IndexReader,
    next: u64,
    buf: Vec<Record>,
    buf_start: u64,
}

impl Iterator for RecordIter<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.next >= self.index.count {
            return None;
        }
        let at = self.next - self.buf_start;
        if at as usize >= self.buf.len() {
            self.buf.clear();
            self.buf_start = self.next;
            match &self.index.file {
                None => self.buf.push(self.index.fallback),
                Some(file) => {
                    let n = (self.index.count - self.next).min(4096);
                    let mut bytes = vec![0u8; (n * RECORD) as usize];
                    file.read_exact_at(&mut bytes, 8 + self.next * RECORD)
                        .ok()?;
                    self.buf
                        .extend(bytes.chunks(RECORD as usize).filter_map(Record::decode));
                }
            }
        }
        let record = self.buf.get((self.next - self.buf_start) as usize).copied();
        self.next += 1;
        record
    }
}

/// Appends records for one segment, coalescing a stream's consecutive chunks.
/// The file is open only while its stream is writing: the daemon closes it when
/// a burst of output has been read (`release`), so an idle process holds no
/// descriptor for its indexes. An index someone waits on (`prepare`) stays
/// open until `let_go`, so an awaited line costs no reopen.
pub struct IndexWriter {
    path: PathBuf,
    /// The log dir, held open: the file is created relative to it.
    dir: Rc<OwnDir>,
    file: Option<File>,
    /// Prepared for an awaited line: `release` leaves the file open.
    held: bool,
    last_seq: u64,
    last_time: u64,
    /// The next record is the first of a run.
    run_start: bool,
}

impl IndexWriter {
    /// The index of `segment`. Nothing is created until the stream writes: a
    /// process that never prints on a stream costs no index file (creating files
    /// is the dearest part of starting a process on ext4).
    pub fn create(dir: Rc<OwnDir>, segment: &Path) -> IndexWriter {
        IndexWriter {
            path: index_path(segment),
            dir,
            file: None,
            held: false,
            last_seq: u64::MAX,
            last_time: 0,
            run_start: false,
        }
    }

    /// The next record begins a run of the process.
    pub fn mark_run_start(&mut self) {
        self.run_start = true;
    }

    fn open(&mut self) -> io::Result<&mut File> {
        use std::io::Write;
        if self.file.is_none() {
            // Opened for each burst, relative to the log dir as it was verified:
            // a link put in its place meanwhile is never written through.
            let name = self.path.file_name().unwrap_or(self.path.as_os_str());
            let mut file = self.dir.open_append(name)?;
            if file.metadata()?.len() == 0
                && let Err(e) = file.write_all(MAGIC)
            {
                // A magic cut short would pass for one: start the file again next time.
                let _ = file.set_len(0);
                return Err(e);
            }
            self.file = Some(file);
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    /// Create the file now (with its magic, no record yet) when it does not
    /// exist, and keep it open until `let_go`, so the awaited record costs
    /// neither a file creation nor a reopen. An index without records reads
    /// as no index at all.
    pub fn prepare(&mut self) -> io::Result<()> {
        self.open()?;
        self.held = true;
        Ok(())
    }

    /// Close the file until the next record, unless it is held (`prepare`).
    pub fn release(&mut self) {
        if !self.held {
            self.file = None;
        }
    }

    /// Nobody waits any more: close the file even if it was held.
    pub fn let_go(&mut self) {
        self.held = false;
        self.file = None;
    }

    /// Note that bytes starting at `offset` arrive now. A record is written unless
    /// this stream was also the last writer (no other record since ours) within
    /// the same millisecond; `force` always writes one (a new run).
    pub fn note(&mut self, clock: &mut SeqClock, offset: u64, run_start: bool) -> io::Result<()> {
        use std::io::Write;
        let run_start = run_start || std::mem::take(&mut self.run_start);
        let time_ms = now_ms();
        if !run_start && self.last_seq == clock.last() && self.last_time == time_ms {
            return Ok(());
        }
        let seq = clock.tick();
        self.last_seq = seq;
        self.last_time = time_ms;
        let record = Record {
            offset,
            seq,
            time_ms,
            run_start,
        };
        let file = self.open()?;
        let Err(e) = file.write_all(&record.encode()) else {
            return Ok(());
        };
        // A record cut short (a full disk) would misalign every later one: cut
        // the file back to whole records, and write a record next time.
        if let Ok(len) = file.metadata().map(|m| m.len()) {
            let head = MAGIC.len() as u64;
            let whole = if len < head {
                0
            } else {
                head + (len - head) / RECORD * RECORD
            };
            if whole < len {
                let _ = file.set_len(whole);
            }
            if whole == 0 {
                self.file = None;
            }
        }
        self.last_seq = u64::MAX;
        self.run_start |= run_start;
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_the_run_flag() {
        let r = Record {
            offset: 7,
            seq: 1 << 50,
            time_ms: 1_795_642_245_123,
            run_start: true,
        };
        assert_eq!(Record::decode(&r.encode()), Some(r));
        let r = Record {
            run_start: false,
            ..r
        };
        assert_eq!(Record::decode(&r.encode()), Some(r));
        assert_eq!(Record::decode(&[0u8; 10]), None);
    }

    #[test]
    fn the_clock_only_moves_forward() {
        let mut c = SeqClock::default();
        let a = c.tick();
        let b = c.tick();
        assert!(b > a && c.last() == b);
    }

    #[test]
    fn a_stream_writing_alone_within_a_millisecond_gets_one_record() {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!("ap-idx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let own = Rc::new(OwnDir::open(&dir).unwrap());
        let seg = dir.join("x.stdout");
        let mut clock = SeqClock::default();
        let mut w = IndexWriter::create(own.clone(), &seg);
        w.note(&mut clock, 0, true).unwrap();
        for off in 1..100 {
            w.note(&mut clock, off, false).unwrap();
        }
        let n = IndexReader::open(&seg).len();
        assert!(n < 10, "{n} records for one writer"); // one per millisecond at most
        let mut other = IndexWriter::create(own, &dir.join("y.stdout"));
        other.note(&mut clock, 0, false).unwrap();
        w.note(&mut clock, 100, false).unwrap(); // another stream wrote in between
        let r = IndexReader::open(&seg);
        assert_eq!(r.len(), n + 1);
        assert_eq!(r.at_offset(150).1.offset, 100);
        assert!(r.get(0).unwrap().run_start);
        let all: Vec<Record> = r.iter_from(0).collect();
        assert_eq!(all.len() as u64, r.len());
        assert!(
            all.windows(2)
                .all(|w| w[0].seq < w[1].seq && w[0].offset <= w[1].offset)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_prepared_index_is_written_without_reopening_until_let_go() {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!("ap-idx-held-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let own = Rc::new(OwnDir::open(&dir).unwrap());
        let seg = dir.join("x.stdout");
        let idx = index_path(&seg);
        let mut clock = SeqClock::default();
        let mut w = IndexWriter::create(own, &seg);
        w.prepare().unwrap();
        assert!(idx.exists(), "created ahead of the first record");
        // Its name goes: a writer that reopened would create it again.
        std::fs::remove_file(&idx).unwrap();
        w.note(&mut clock, 0, true).unwrap();
        w.release();
        w.note(&mut clock, 10, true).unwrap();
        assert!(!idx.exists(), "held open across records and a release");
        w.let_go();
        w.note(&mut clock, 20, true).unwrap();
        assert!(idx.exists(), "reopened (created) once let go");
        w.release();
        std::fs::remove_file(&idx).unwrap();
        w.note(&mut clock, 30, true).unwrap();
        assert!(idx.exists(), "an unheld index is closed by release");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
