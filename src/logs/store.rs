//! The daemon's side of a log: per process and stream, an append-only segment that
//! holds exactly the bytes the child wrote, its index, rotation (at every start and
//! by size, at a line boundary), and the line splitter that feeds waits and
//! followers. Rotation renames files; nothing is ever truncated.

use super::index::{IndexWriter, SeqClock, index_path};
use super::{Limits, MAX_LINE, segments};
use crate::paths::OwnDir;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A full disk is reported at most this often.
const ERROR_REPORT_EVERY: Duration = Duration::from_secs(60);
/// How often a writer checks that its file still has a name (log dir deleted?).
const UNLINK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Where completed lines go, when anyone wants them.
type LineSink<'a> = &'a mut dyn FnMut(&[u8]);

pub struct LogSink {
    pub path: PathBuf,
    /// The log dir as it was verified when the run began: every create, rename
    /// and removal happens relative to it, never through its path again.
    dir: Rc<OwnDir>,
    limits: Limits,
    file: File,
    index: IndexWriter,
    /// Bytes in the current segment.
    written: u64,
    /// The tail of the output that has no newline yet.
    partial: Vec<u8>,
    /// Size rotations since the run began: its older segments are `.1` … `.n`.
    run_rotations: usize,
    last_error_report: Option<Instant>,
    last_unlink_check: Instant,
    /// Bytes the disk refused since the last successful write, and why; said in
    /// the log (`[agent-procs] N bytes not logged: …`) once writing works again.
    lost: u64,
    lost_reason: String,
    /// The segment does not end with a newline, so a note needs one first.
    mid_line: bool,
    /// Something not ours took the deleted log dir's place: write nothing (not
    /// even an index record) until a directory is back.
    dir_taken: bool,
}

/// Open a log file for appending: 0600, never through a symlink, close-on-exec,
/// and only if it is a regular file of ours with one name (`paths::open_private`).
pub fn open_append(path: &Path) -> io::Result<File> {
    crate::paths::open_private(path, OpenOptions::new().append(true).create(true))
}

/// The file name of a path in the log dir, for the calls relative to it.
fn name_of(path: &Path) -> &OsStr {
    path.file_name().unwrap_or(path.as_os_str())
}

/// Shift `x` → `x.1` → … → `x.keep` with their indexes (the oldest falls off),
/// within `dir` (where `path` is).
pub fn rotate(dir: &OwnDir, path: &Path, keep: usize) -> io::Result<()> {
    match dir.metadata(name_of(path)) {
        Err(_) => return Ok(()), // no current segment: nothing moves (a fresh name, the common case)
        // Not a log we wrote (a link, another user's file, one with a second
        // name): something planted, never followed nor kept as history.
        Ok(meta) => crate::paths::check_own_file(&meta)?,
    }
    let names = segments(path, keep);
    let remove = |p: &Path| dir.remove(name_of(p));
    if keep == 0 {
        let _ = remove(&index_path(path));
        return remove(path);
    }
    // The oldest falls off. Unlinked first, so that no rename replaces a file:
    // ext4 flushes a file renamed over another (auto_da_alloc), which under a
    // flood of output cost a rotation ~50 ms instead of ~30.
    if let Some(oldest) = names.last() {
        let _ = remove(oldest);
        let _ = remove(&index_path(oldest));
    }
    for pair in (0..names.len() - 1).rev() {
        for (from, to) in [
            (names[pair].clone(), names[pair + 1].clone()),
            (index_path(&names[pair]), index_path(&names[pair + 1])),
        ] {
            match dir.rename(name_of(&from), name_of(&to)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // An older segment without an index must not keep a newer one's.
                    if to.extension().is_some_and(|e| e == "idx") {
                        let _ = remove(&to);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

impl LogSink {
    /// Start a new run: rotate whatever was at `path` and open a fresh segment whose
    /// index begins with a run-start record.
    #[cfg(test)]
    pub fn create(path: PathBuf, limits: Limits) -> io::Result<LogSink> {
        let dir = OwnDir::open(path.parent().unwrap_or(Path::new(".")))?;
        LogSink::create_in(Rc::new(dir), path, limits)
    }

    /// `create` in the log dir `dir` the daemon verified (and shares between
    /// sinks); `path` names the file in it.
    pub fn create_in(dir: Rc<OwnDir>, path: PathBuf, limits: Limits) -> io::Result<LogSink> {
        rotate(&dir, &path, limits.keep)?;
        let (file, mut index) = open_segment(&dir, &path)?;
        index.mark_run_start();
        Ok(LogSink {
            path,
            dir,
            limits,
            file,
            index,
            written: 0,
            partial: Vec::new(),
            run_rotations: 0,
            last_error_report: None,
            last_unlink_check: Instant::now(),
            lost: 0,
            lost_reason: String::new(),
            mid_line: false,
            dir_taken: false,
        })
    }

    /// Someone waits for this stream's lines: create its index file ahead of
    /// them, and keep it open while they wait. Creating a file on ext4 costs
    /// about 0.3 ms, and reopening one an `openat` and two `statx`, which would
    /// otherwise be paid between the child's first line and the reply.
    pub fn prepare_index(&mut self) -> io::Result<()> {
        self.index.prepare()
    }

    /// A burst of output has been taken: let go of the index file until more
    /// comes, unless it is held for a waiter (`prepare_index`).
    pub fn release(&mut self) {
        self.index.release();
    }

    /// Nobody looks at this stream's lines any more: close its index file
    /// even if it was held.
    pub fn let_go(&mut self) {
        self.index.let_go();
    }

    /// Bytes of the current segment that form complete lines; readers that replay
    /// history stop here so the pending partial line is not delivered twice.
    pub fn complete_len(&self) -> u64 {
        self.written.saturating_sub(self.partial.len() as u64)
    }

    /// Append `bytes` to the log and hand every completed line to `on_line`.
    /// Returns an error to report (at most once a minute) when the disk refuses bytes.
    pub fn append(
        &mut self,
        clock: &mut SeqClock,
        bytes: &[u8],
        mut on_line: impl FnMut(&[u8]),
    ) -> Option<io::Error> {
        self.append_inner(clock, bytes, Some(&mut on_line))
    }

    /// `append` when nobody wants the lines: only the pending partial line is
    /// tracked, found from the end of each chunk instead of line by line.
    pub fn append_quiet(&mut self, clock: &mut SeqClock, bytes: &[u8]) -> Option<io::Error> {
        self.append_inner(clock, bytes, None)
    }

    fn append_inner(
        &mut self,
        clock: &mut SeqClock,
        bytes: &[u8],
        mut on_line: Option<LineSink<'_>>,
    ) -> Option<io::Error> {
        let mut failure = self.check_unlinked(false);
        let mut rest = bytes;
        while !rest.is_empty() {
            // Rotate by size, but only where a line ends, unless one line is enormous.
            let mut take = rest.len();
            let max = self.limits.max_size;
            if self.written >= max {
                if self.partial.is_empty() {
                    failure = failure.or(self.rotate_by_size());
                    if self.written == 0 {
                        continue; // a fresh segment: measure the room again
                    }
                } else if let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                    take = nl + 1;
                } else if self.written >= max + MAX_LINE as u64 {
                    failure = failure.or(self.rotate_by_size());
                }
            } else if (rest.len() as u64) > max - self.written {
                // This chunk crosses the limit: fill the segment up to the first line
                // end at or past it; the rest goes to the next segment.
                let room = (max - self.written) as usize;
                if let Some(nl) = rest[room.saturating_sub(1)..]
                    .iter()
                    .position(|&b| b == b'\n')
                {
                    take = room.saturating_sub(1) + nl + 1;
                }
            }
            let (chunk, tail) = rest.split_at(take);
            failure = failure.or(self.write_chunk(clock, chunk));
            match on_line.as_mut() {
                Some(f) => self.split_lines(chunk, &mut **f),
                None => self.track_partial(chunk),
            }
            rest = tail;
        }
        failure
    }

    /// Write `chunk`, or count it as lost. The child is never held up: a full disk
    /// costs output, which the log then owns up to, not the process.
    fn write_chunk(&mut self, clock: &mut SeqClock, chunk: &[u8]) -> Option<io::Error> {
        if self.dir_taken {
            self.lost += chunk.len() as u64;
            return None;
        }
        if self.lost > 0 {
            let mut note = Vec::new();
            if self.mid_line {
                note.push(b'\n');
            }
            let text = format!(
                "[agent-procs] {} bytes not logged: {}\n",
                self.lost, self.lost_reason
            );
            note.extend_from_slice(text.as_bytes());
            if let Err(e) = self.write_raw(clock, &note) {
                self.lost += chunk.len() as u64;
                return self.report(e);
            }
            self.lost = 0;
        }
        match self.write_raw(clock, chunk) {
            Ok(()) => None,
            Err(e) => {
                self.lost += chunk.len() as u64;
                if e.kind() == io::ErrorKind::NotFound {
                    // Nothing can be created in our dir: it was deleted. Say at
                    // once what is at its path now, rather than "not found".
                    if let Some(err) = self.check_unlinked(true) {
                        return Some(err);
                    }
                }
                self.lost_reason = crate::error::describe_io(&e);
                self.report(e)
            }
        }
    }

    fn write_raw(&mut self, clock: &mut SeqClock, bytes: &[u8]) -> io::Result<()> {
        self.index.note(clock, self.written, false)?;
        if let Err(e) = self.file.write_all(bytes) {
            // A write cut short (ENOSPC part-way) would shift every later offset
            // the index records: take its bytes back off.
            if self.file.metadata().is_ok_and(|m| m.len() > self.written) {
                let _ = self.file.set_len(self.written);
            }
            return Err(e);
        }
        self.written += bytes.len() as u64;
        self.mid_line = bytes.last() != Some(&b'\n');
        Ok(())
    }

    /// Keep `partial` as `split_lines` would leave it, without visiting every line.
    fn track_partial(&mut self, chunk: &[u8]) {
        match chunk.iter().rposition(|&b| b == b'\n') {
            Some(at) => {
                self.partial.clear();
                self.partial.extend_from_slice(&chunk[at + 1..]);
            }
            None => self.partial.extend_from_slice(chunk),
        }
        if self.partial.len() >= MAX_LINE {
            // Whole MAX_LINE pieces would have been handed out as lines.
            let cut = self.partial.len() / MAX_LINE * MAX_LINE;
            self.partial.drain(..cut);
        }
    }

    fn split_lines(&mut self, chunk: &[u8], on_line: &mut dyn FnMut(&[u8])) {
        let mut rest = chunk;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                on_line(&rest[..at]);
            } else {
                self.partial.extend_from_slice(&rest[..at]);
                on_line(&self.partial);
                self.partial.clear();
            }
            rest = &rest[at + 1..];
        }
        self.partial.extend_from_slice(rest);
        while self.partial.len() >= MAX_LINE {
            let tail = self.partial.split_off(MAX_LINE);
            on_line(&self.partial);
            self.partial = tail;
        }
    }

    fn rotate_by_size(&mut self) -> Option<io::Error> {
        let result = rotate(&self.dir, &self.path, self.limits.keep)
            .and_then(|()| open_segment(&self.dir, &self.path));
        match result {
            Ok((file, index)) => {
                self.file = file;
                self.index = index;
                self.written = 0;
                self.run_rotations += 1;
                None
            }
            Err(e) => self.report(e),
        }
    }

    /// The segments holding the current run's output, oldest first, with how
    /// much of each to read (the current one up to its last complete line).
    pub fn run_segments(&self) -> Vec<(PathBuf, u64)> {
        let older = self.run_rotations.min(self.limits.keep);
        let mut all: Vec<(PathBuf, u64)> = (1..=older)
            .rev()
            .map(|k| (super::segment(&self.path, k), u64::MAX))
            .collect();
        all.push((self.path.clone(), self.complete_len()));
        all
    }

    /// If the log dir was deleted under us, start a new segment where it belongs.
    fn check_unlinked(&mut self, now: bool) -> Option<io::Error> {
        if !now && self.last_unlink_check.elapsed() < UNLINK_CHECK_EVERY {
            return None;
        }
        self.last_unlink_check = Instant::now();
        if self.file.metadata().is_ok_and(|m| m.nlink() > 0) {
            return None;
        }
        // The dir we held was deleted: take the one at its path now, if it is a
        // private dir of ours. Whatever else took its place is not ours to write
        // through.
        let parent = self.path.parent().unwrap_or(Path::new("."));
        let _ = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent);
        match OwnDir::open(parent) {
            Ok(dir) => {
                self.dir_taken = false;
                self.dir = Rc::new(dir);
            }
            Err(err) => {
                self.dir_taken = true;
                self.lost_reason = crate::error::describe_io(&err);
                return self.report(err);
            }
        }
        match open_segment(&self.dir, &self.path) {
            Ok((file, index)) => {
                self.file = file;
                self.index = index;
                self.written = 0;
                None
            }
            Err(e) => self.report(e),
        }
    }

    fn report(&mut self, err: io::Error) -> Option<io::Error> {
        let due = self
            .last_error_report
            .is_none_or(|at| at.elapsed() >= ERROR_REPORT_EVERY);
        if due {
            self.last_error_report = Some(Instant::now());
            return Some(err);
        }
        None
    }

    /// End of the stream: a last line without a newline still counts as a line.
    pub fn finish(&mut self, mut on_line: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            on_line(&self.partial);
            self.partial.clear();
        }
    }

    /// Write a supervisor note (`[agent-procs] …`) as a line of its own.
    pub fn annotate(&mut self, clock: &mut SeqClock, note: &str, on_line: impl FnMut(&[u8])) {
        let mut line = Vec::with_capacity(note.len() + 2);
        if !self.partial.is_empty() {
            line.push(b'\n');
        }
        line.extend_from_slice(note.as_bytes());
        line.push(b'\n');
        self.append(clock, &line, on_line);
    }
}

use std::os::unix::fs::DirBuilderExt;

fn open_segment(dir: &Rc<OwnDir>, path: &Path) -> io::Result<(File, IndexWriter)> {
    let file = dir.open_append(name_of(path))?;
    let index = IndexWriter::create(dir.clone(), path);
    Ok((file, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ap-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        dir
    }

    #[test]
    fn lines_are_split_across_chunks_and_bytes_kept_exactly() {
        let dir = temp_dir("split");
        let path = dir.join("a.stdout");
        let mut clock = SeqClock::default();
        let mut sink = LogSink::create(path.clone(), Limits::default()).unwrap();
        let mut lines = Vec::new();
        for chunk in [&b"hel"[..], b"lo\nwor", b"ld\n\xff\xfe\n", b"tail"] {
            sink.append(&mut clock, chunk, |l| lines.push(l.to_vec()));
        }
        assert_eq!(
            lines,
            vec![b"hello".to_vec(), b"world".to_vec(), b"\xff\xfe".to_vec()]
        );
        assert_eq!(sink.complete_len(), 15);
        sink.finish(|l| lines.push(l.to_vec()));
        assert_eq!(lines.last().unwrap(), b"tail");
        assert_eq!(fs::read(&path).unwrap(), b"hello\nworld\n\xff\xfe\ntail");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn quiet_appends_leave_the_same_partial_line_as_counted_ones() {
        let dir = temp_dir("quiet");
        let mut clock = SeqClock::default();
        let mut a = LogSink::create(dir.join("a.stdout"), Limits::default()).unwrap();
        let mut b = LogSink::create(dir.join("b.stdout"), Limits::default()).unwrap();
        let big = vec![b'y'; MAX_LINE + 7];
        for chunk in [&b"ab"[..], b"c\nde", b"", b"f\n\ng", &big, b"h\nij"] {
            a.append(&mut clock, chunk, |_| {});
            b.append_quiet(&mut clock, chunk);
            assert_eq!(
                a.complete_len(),
                b.complete_len(),
                "after {} bytes",
                chunk.len()
            );
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn overlong_lines_are_split_for_matching() {
        let dir = temp_dir("long");
        let mut clock = SeqClock::default();
        let mut sink = LogSink::create(dir.join("a.stdout"), Limits::default()).unwrap();
        let mut lens = Vec::new();
        sink.append(&mut clock, &vec![b'x'; MAX_LINE * 2 + 10], |l| {
            lens.push(l.len())
        });
        assert_eq!(lens, vec![MAX_LINE, MAX_LINE]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn every_run_rotates_and_keeps_the_configured_number_of_segments() {
        let dir = temp_dir("rotate");
        let path = dir.join("a.stdout");
        let mut clock = SeqClock::default();
        for run in 0..8 {
            let mut sink = LogSink::create(path.clone(), Limits::default()).unwrap();
            sink.append(&mut clock, format!("run {run}\n").as_bytes(), |_| {});
        }
        assert_eq!(fs::read(&path).unwrap(), b"run 7\n");
        assert_eq!(fs::read(dir.join("a.stdout.1")).unwrap(), b"run 6\n");
        assert_eq!(fs::read(dir.join("a.stdout.5")).unwrap(), b"run 2\n");
        assert!(dir.join("a.stdout.5.idx").exists());
        assert!(!dir.join("a.stdout.6").exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_link_planted_at_a_segment_is_refused_and_not_followed() {
        let dir = temp_dir("link");
        let outside = dir.join("outside");
        fs::write(&outside, b"precious").unwrap();
        let path = dir.join("a.stdout");
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        let Err(err) = LogSink::create(path.clone(), Limits::default()) else {
            panic!("a symbolic link was taken for a log");
        };
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert!(
            fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&outside).unwrap(), b"precious");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn size_rotation_happens_at_a_line_boundary() {
        let dir = temp_dir("size");
        let path = dir.join("a.stdout");
        let mut clock = SeqClock::default();
        let limits = Limits {
            max_size: 10,
            keep: 3,
        };
        let mut sink = LogSink::create(path.clone(), limits).unwrap();
        for chunk in [&b"0123456789ab"[..], b"cd\nef", b"gh\n", b"ij\n"] {
            sink.append(&mut clock, chunk, |_| {});
        }
        assert_eq!(
            fs::read(dir.join("a.stdout.1")).unwrap(),
            b"0123456789abcd\n"
        );
        assert_eq!(fs::read(&path).unwrap(), b"efgh\nij\n");
        assert!(!dir.join("a.stdout.2").exists());
        fs::remove_dir_all(dir).unwrap();
    }
}
