//! The daemon's side of a log: one append-only file per process and stream that
//! holds exactly the bytes the child wrote, and the line splitter that feeds waits
//! and followers. Rotation renames files; nothing is ever truncated.

use super::{MAX_LINE, segments};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct LogSink {
    pub path: PathBuf,
    file: File,
    /// Bytes written to the current file since it was opened.
    written: u64,
    /// The tail of the output that has no newline yet.
    partial: Vec<u8>,
    /// Set after the first failed write, so a full disk is reported once.
    write_failed: bool,
}

/// Open a log file for appending: 0600, never through a symlink, close-on-exec.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Shift `x` → `x.1` → … → `x.5` (the oldest falls off). Missing segments are fine.
pub fn rotate(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(()); // no current segment: nothing moves (a fresh name, the common case)
    }
    let names = segments(path);
    for pair in (0..names.len() - 1).rev() {
        match fs::rename(&names[pair], &names[pair + 1]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl LogSink {
    /// Start a fresh segment at `path`, rotating whatever was there.
    pub fn create(path: PathBuf) -> io::Result<LogSink> {
        rotate(&path)?;
        let file = open_append(&path)?;
        Ok(LogSink {
            path,
            file,
            written: 0,
            partial: Vec::new(),
            write_failed: false,
        })
    }

    /// Bytes of the current segment that form complete lines; readers that replay
    /// history stop here so the pending partial line is not delivered twice.
    pub fn complete_len(&self) -> u64 {
        self.written.saturating_sub(self.partial.len() as u64)
    }

    /// Append `bytes` to the file and hand every completed line to `on_line`.
    /// Returns the write error the first time the disk refuses bytes.
    pub fn append(&mut self, bytes: &[u8], mut on_line: impl FnMut(&[u8])) -> Option<io::Error> {
        let mut failure = None;
        match self.file.write_all(bytes) {
            Ok(()) => self.written += bytes.len() as u64,
            Err(e) if !self.write_failed => {
                self.write_failed = true;
                failure = Some(e);
            }
            Err(_) => {}
        }
        let mut rest = bytes;
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
        failure
    }

    /// End of the stream: a last line without a newline still counts as a line.
    pub fn finish(&mut self, mut on_line: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            on_line(&self.partial);
            self.partial.clear();
        }
    }

    /// Write a supervisor note (`[agent-procs] …`) as a line of its own.
    pub fn annotate(&mut self, note: &str, on_line: impl FnMut(&[u8])) {
        let mut line = Vec::with_capacity(note.len() + 2);
        if !self.partial.is_empty() {
            line.push(b'\n');
        }
        line.extend_from_slice(note.as_bytes());
        line.push(b'\n');
        self.append(&line, on_line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ap-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn lines_are_split_across_chunks_and_bytes_kept_exactly() {
        let dir = temp_dir("split");
        let path = dir.join("a.stdout");
        let mut sink = LogSink::create(path.clone()).unwrap();
        let mut lines = Vec::new();
        for chunk in [&b"hel"[..], b"lo\nwor", b"ld\n\xff\xfe\n", b"tail"] {
            sink.append(chunk, |l| lines.push(l.to_vec()));
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
    fn overlong_lines_are_split_for_matching() {
        let dir = temp_dir("long");
        let mut sink = LogSink::create(dir.join("a.stdout")).unwrap();
        let mut lens = Vec::new();
        sink.append(&vec![b'x'; MAX_LINE * 2 + 10], |l| lens.push(l.len()));
        assert_eq!(lens, vec![MAX_LINE, MAX_LINE]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rotation_keeps_five_old_segments() {
        let dir = temp_dir("rotate");
        let path = dir.join("a.stdout");
        for run in 0..8 {
            let mut sink = LogSink::create(path.clone()).unwrap();
            sink.append(format!("run {run}\n").as_bytes(), |_| {});
        }
        assert_eq!(fs::read(&path).unwrap(), b"run 7\n");
        assert_eq!(fs::read(dir.join("a.stdout.1")).unwrap(), b"run 6\n");
        assert_eq!(fs::read(dir.join("a.stdout.5")).unwrap(), b"run 2\n");
        assert!(!dir.join("a.stdout.6").exists());
        fs::remove_dir_all(dir).unwrap();
    }
}
