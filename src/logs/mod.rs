//! Log files: `store` is what the daemon writes (raw bytes, split into lines for
//! waits and followers), `read` is what the CLI and the daemon read back (tails).

pub mod index;
pub mod literal;
pub mod pattern;
pub mod query;
pub mod read;
pub mod runs;
pub mod source;
pub mod store;

/// Lines longer than this are split for matching and streaming; files keep every byte.
pub const MAX_LINE: usize = 1024 * 1024;

/// Old segments kept per stream when a log rotates (`NAME.stdout.1` … `.5`).
pub const KEEP_SEGMENTS: usize = 5;

/// A segment is rotated once it reaches this size (at a line boundary).
pub const MAX_SEGMENT: u64 = 50 * 1024 * 1024;

/// Readers look for rotated segments up to this number (`log_max_files` is capped to it).
pub const MAX_SEGMENTS: usize = 100;

/// How big a stream's segments grow and how many old ones are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_size: u64,
    pub keep: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_size: MAX_SEGMENT,
            keep: KEEP_SEGMENTS,
        }
    }
}

use std::path::{Path, PathBuf};

/// Segment `n` of the stream at `path`: `x` for 0, else `x.n`.
pub fn segment(path: &Path, n: usize) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// `path` followed by its first `keep` rotated segments, newest first.
pub fn segments(path: &Path, keep: usize) -> Vec<PathBuf> {
    (0..=keep).map(|n| segment(path, n)).collect()
}

/// The segments of a stream that exist, newest first (the current one may be missing).
pub fn existing_segments(path: &Path) -> Vec<PathBuf> {
    let mut found = vec![path.to_path_buf()];
    for n in 1..=MAX_SEGMENTS {
        let seg = segment(path, n);
        if std::fs::symlink_metadata(&seg).is_err() {
            break;
        }
        found.push(seg);
    }
    found
}
