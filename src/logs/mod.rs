//! Log files: `store` is what the daemon writes (raw bytes, split into lines for
//! waits and followers), `read` is what the CLI and the daemon read back (tails).

pub mod read;
pub mod store;

/// Lines longer than this are split for matching and streaming; files keep every byte.
pub const MAX_LINE: usize = 1024 * 1024;

/// Old segments kept per stream when a log rotates (`NAME.stdout.1` … `.5`).
pub const KEEP_SEGMENTS: usize = 5;

use std::path::{Path, PathBuf};

/// `path` followed by its rotated segments, newest first: `x`, `x.1`, … `x.5`.
pub fn segments(path: &Path) -> Vec<PathBuf> {
    let mut all = vec![path.to_path_buf()];
    for n in 1..=KEEP_SEGMENTS {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        all.push(PathBuf::from(p));
    }
    all
}
