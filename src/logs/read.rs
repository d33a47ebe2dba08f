//! Reading logs back: the last N lines of a stream, read backwards from the end
//! (cost grows with N, not with the file size), crossing into rotated segments.

use super::existing_segments;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

const BLOCK: u64 = 64 * 1024;

/// Open a log for reading without following a symlink, and only if it is a
/// regular file of ours with one name (`paths::open_private`): never another
/// user's planted bytes.
pub fn open_log(path: &Path) -> io::Result<File> {
    crate::paths::open_private(path, std::fs::OpenOptions::new().read(true))
}

/// The last `n` lines of the stream at `path` (newest segment first, then `.1`…),
/// oldest line first, without their newlines, with where each line starts:
/// (segment number counted from the newest, 0 = current; byte offset in that
/// segment; the line). `limit` caps how much of the newest segment is read (the
/// daemon passes the length of its complete lines); reading stops at `floor`:
/// (segment number from the newest, offset). `NotFound` when not even the newest
/// segment exists.
pub fn tail_located_from(
    path: &Path,
    n: usize,
    limit: Option<u64>,
    floor: Option<(usize, u64)>,
) -> io::Result<Vec<(usize, u64, Vec<u8>)>> {
    let mut newest_first: Vec<Vec<(usize, u64, Vec<u8>)>> = Vec::new();
    let mut have = 0;
    for (i, segment) in existing_segments(path).iter().enumerate() {
        if floor.is_some_and(|(seg, _)| i > seg) {
            break;
        }
        if have >= n {
            break;
        }
        let mut file = match open_log(segment) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && i > 0 => break,
            Err(e) => return Err(e),
        };
        let lowest = match floor {
            Some((seg, offset)) if seg == i => offset,
            _ => 0,
        };
        let lines = tail_file_from(
            &mut file,
            n - have,
            if i == 0 { limit } else { None },
            lowest,
            BLOCK,
        )?;
        have += lines.len();
        newest_first.push(
            lines
                .into_iter()
                .map(|(offset, bytes)| (i, offset, bytes))
                .collect(),
        );
    }
    Ok(newest_first.into_iter().rev().flatten().collect())
}

/// The last `n` lines of the one file `path` that end before byte `limit`, with
/// their offsets (the lines before a match, for `--context`).
pub fn tail_located_in(path: &Path, n: usize, limit: u64) -> io::Result<Vec<(u64, Vec<u8>)>> {
    let mut file = open_log(path)?;
    tail_file(&mut file, n, Some(limit), BLOCK)
}

/// The last `n` lines of one file, reading blocks backwards from `limit` (or EOF).
fn tail_file(
    file: &mut File,
    n: usize,
    limit: Option<u64>,
    block: u64,
) -> io::Result<Vec<(u64, Vec<u8>)>> {
    tail_file_from(file, n, limit, 0, block)
}

/// `tail_file` that only takes lines starting at or after `floor` (a line cut
/// by the floor is left out).
fn tail_file_from(
    file: &mut File,
    n: usize,
    limit: Option<u64>,
    floor: u64,
    block: u64,
) -> io::Result<Vec<(u64, Vec<u8>)>> {
    let size = file.metadata()?.len();
    let end = limit.map_or(size, |l| l.min(size));
    if n == 0 || end <= floor {
        return Ok(Vec::new());
    }
    // Blocks read so far, last block first; `start` is where the wanted lines begin.
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut pos = end;
    let mut newlines = 0;
    let mut start = None;
    let mut first = true;
    while pos > floor && start.is_none() {
        let len = block.min(pos - floor);
        pos -= len;
        let mut block = vec![0; len as usize];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut block)?;
        // The newline that ends the last line does not start a new one.
        let scan_end = if first && block.last() == Some(&b'\n') {
            block.len() - 1
        } else {
            block.len()
        };
        first = false;
        for at in (0..scan_end).rev() {
            if block[at] == b'\n' {
                newlines += 1;
                if newlines == n {
                    start = Some(pos + at as u64 + 1);
                    break;
                }
            }
        }
        blocks.push(block);
    }
    let from = start.unwrap_or(floor);
    let mut bytes = Vec::with_capacity((end - from) as usize);
    for block in blocks.iter().rev() {
        bytes.extend_from_slice(block);
    }
    let skip = (from - pos) as usize;
    let mut wanted = &bytes[skip..];
    if wanted.last() == Some(&b'\n') {
        wanted = &wanted[..wanted.len() - 1];
    }
    let mut offset = from;
    let mut lines: Vec<(u64, Vec<u8>)> = wanted
        .split(|&b| b == b'\n')
        .map(|line| {
            let at = offset;
            offset += line.len() as u64 + 1;
            (at, line.to_vec())
        })
        .collect();
    if start.is_none() && floor > 0 && !lines.is_empty() {
        // Reached the floor: drop the line it cuts, unless a line starts right there.
        let mut before = [0u8; 1];
        file.seek(SeekFrom::Start(floor - 1))?;
        file.read_exact(&mut before)?;
        if before[0] != b'\n' {
            lines.remove(0);
        }
    }
    Ok(lines)
}

/// Call `on_line` for each line of `path` up to `limit` bytes, until it returns true.
/// Used by `wait` to search the output of the current run. Returns the matched line.
pub fn find_line(
    path: &Path,
    limit: u64,
    mut matches: impl FnMut(&[u8]) -> bool,
) -> io::Result<Option<Vec<u8>>> {
    let mut file = open_log(path)?.take(limit);
    let mut buf = vec![0u8; BLOCK as usize];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut rest = &buf[..n];
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            let hit = if carry.is_empty() {
                matches(&rest[..at]).then(|| rest[..at].to_vec())
            } else {
                carry.extend_from_slice(&rest[..at]);
                let line = std::mem::take(&mut carry);
                matches(&line).then_some(line)
            };
            if hit.is_some() {
                return Ok(hit);
            }
            rest = &rest[at + 1..];
        }
        carry.extend_from_slice(rest);
        if carry.len() >= super::MAX_LINE {
            if matches(&carry) {
                return Ok(Some(carry));
            }
            carry.clear();
        }
    }
    Ok(if !carry.is_empty() && matches(&carry) {
        Some(carry)
    } else {
        None
    })
}

/// How much `find_substring` scans at once.
const SCAN_BLOCK: usize = 1024 * 1024;

/// The first line of `path` (up to `limit` bytes) that contains `needle`. Same
/// answer as `find_line` with a substring test, but it searches whole blocks
/// with the standard library's string search instead of line by line: the
/// daemon runs this before a `wait`, and a big log must not hold its loop.
pub fn find_substring(path: &Path, limit: u64, needle: &str) -> io::Result<Option<Vec<u8>>> {
    if needle.is_empty() || needle.contains('\n') {
        let bytes = needle.as_bytes();
        return find_line(path, limit, |line| {
            bytes.is_empty() || line.windows(bytes.len()).any(|w| w == bytes)
        });
    }
    let mut found = None;
    for_each_match(path, 0, limit, needle, |_, line| {
        found = Some(line.to_vec());
        false
    })?;
    Ok(found)
}

/// Call `on_match(offset, line)` for each line of `path` between `from` and
/// `limit` that contains `needle` (which must be non-empty and have no newline),
/// until it returns false. Blocks are searched whole; only matching lines are
/// split out, so a scan runs at the speed of the string search.
pub fn for_each_match(
    path: &Path,
    from: u64,
    limit: u64,
    needle: &str,
    mut on_match: impl FnMut(u64, &[u8]) -> bool,
) -> io::Result<()> {
    let mut file = open_log(path)?;
    // Nothing to search from past the end: `--since` later than every line
    // starts at u64::MAX, and lseek refuses offsets over i64::MAX (EINVAL).
    if from >= file.metadata()?.len() {
        return Ok(());
    }
    file.seek(SeekFrom::Start(from))?;
    let mut file = file.take(limit.saturating_sub(from));
    // Unread data is buf[start..end]; buf[..start] is done. Allocated once: no
    // zeroing or shifting of whole blocks per read.
    let mut buf = vec![0u8; SCAN_BLOCK];
    let (mut start, mut end) = (0usize, 0usize);
    // File offset of buf[0].
    let mut base = from;
    loop {
        if start > 0 {
            buf.copy_within(start..end, 0);
            base += start as u64;
            end -= start;
            start = 0;
        }
        if end == buf.len() {
            buf.resize(buf.len() * 2, 0); // one line longer than the buffer
        }
        let got = loop {
            match file.read(&mut buf[end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        end += got;
        let eof = got == 0;
        // Search complete lines only, unless this is the end or one line is huge.
        let stop_at = match buf[..end].iter().rposition(|&b| b == b'\n') {
            _ if eof => end,
            Some(at) => at + 1,
            None if end >= super::MAX_LINE => end,
            None => continue,
        };
        let mut at_from = start;
        while at_from < stop_at {
            let Some(found) = search(&buf[at_from..stop_at], needle) else {
                break;
            };
            let at = at_from + found;
            let line_start = buf[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            let line_end = buf[at..stop_at]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(stop_at, |p| at + p);
            if !on_match(base + line_start as u64, &buf[line_start..line_end]) {
                return Ok(());
            }
            at_from = line_end + 1;
        }
        if eof {
            return Ok(());
        }
        start = stop_at;
    }
}

/// Offset of `needle` in `hay`, which may hold invalid UTF-8: the valid runs are
/// searched as text (a needle, being text, never spans an invalid byte).
fn search(hay: &[u8], needle: &str) -> Option<usize> {
    let mut pos = 0;
    while pos < hay.len() {
        let (valid, skip) = match std::str::from_utf8(&hay[pos..]) {
            Ok(_) => (hay.len() - pos, 0),
            Err(e) => (
                e.valid_up_to(),
                e.error_len().unwrap_or(hay.len() - pos - e.valid_up_to()),
            ),
        };
        let text = std::str::from_utf8(&hay[pos..pos + valid]).unwrap_or_default();
        // `contains` has a SIMD fast path that `find` lacks: rule most blocks out
        // with it, and locate the match only where there is one.
        if text.contains(needle)
            && let Some(at) = text.find(needle)
        {
            return Some(pos + at);
        }
        if skip == 0 {
            return None;
        }
        pos += valid + skip;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fs;
    use std::path::PathBuf;

    fn temp_file(tag: &str, contents: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ap-read-{tag}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.stdout");
        fs::write(&path, contents).unwrap();
        path
    }

    fn naive_tail(contents: &[u8], n: usize) -> Vec<Vec<u8>> {
        let mut body = contents;
        if body.last() == Some(&b'\n') {
            body = &body[..body.len() - 1];
        }
        if contents.is_empty() {
            return Vec::new();
        }
        let lines: Vec<Vec<u8>> = body.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }

    /// Contents of a log, how many lines to ask for, the lines expected.
    type TailCase = (&'static [u8], usize, &'static [&'static [u8]]);

    fn tail(path: &Path, n: usize, limit: Option<u64>) -> io::Result<Vec<Vec<u8>>> {
        let lines = tail_located_from(path, n, limit, None)?;
        Ok(lines.into_iter().map(|(_, _, bytes)| bytes).collect())
    }

    #[test]
    fn tail_table() {
        let cases: &[TailCase] = &[
            (b"", 5, &[]),
            (b"a\nb\nc\n", 2, &[b"b", b"c"]),
            (b"a\nb\nc", 2, &[b"b", b"c"]),
            (b"a\nb\nc\n", 10, &[b"a", b"b", b"c"]),
            (b"\n\n", 5, &[b"", b""]),
            (b"only", 1, &[b"only"]),
            (b"a\nb\n", 0, &[]),
        ];
        for (contents, n, want) in cases {
            let path = temp_file("table", contents);
            let got = tail(&path, *n, None).unwrap();
            let want: Vec<Vec<u8>> = want.iter().map(|l| l.to_vec()).collect();
            assert_eq!(got, want, "{:?} n={n}", String::from_utf8_lossy(contents));
        }
    }

    #[test]
    fn tail_crosses_into_rotated_segments() {
        let path = temp_file("segments", b"new1\nnew2\n");
        fs::write(path.with_extension("stdout.1"), b"old1\nold2\n").unwrap();
        assert_eq!(
            tail(&path, 3, None).unwrap(),
            vec![b"old2".to_vec(), b"new1".to_vec(), b"new2".to_vec()]
        );
    }

    #[test]
    fn tail_reads_only_up_to_the_limit() {
        let path = temp_file("limit", b"a\nb\npartial");
        assert_eq!(
            tail(&path, 5, Some(4)).unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
    }

    #[test]
    fn missing_log_is_not_found() {
        let err = tail(Path::new("/nonexistent/x.stdout"), 5, None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn find_line_sees_lines_split_across_blocks() {
        let mut contents = vec![b'x'; BLOCK as usize - 3];
        contents.extend_from_slice(b"\nServing HTTP on 0.0.0.0\nafter\n");
        let path = temp_file("find", &contents);
        let hit = find_line(&path, u64::MAX, |l| l.windows(7).any(|w| w == b"Serving")).unwrap();
        assert_eq!(hit.as_deref(), Some(&b"Serving HTTP on 0.0.0.0"[..]));
        let none = find_line(&path, 10, |l| l.starts_with(b"Serving")).unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn substring_search_finds_the_whole_line_across_blocks_and_bad_bytes() {
        let mut contents = Vec::new();
        for i in 0..40_000 {
            contents.extend_from_slice(format!("line {i} ").as_bytes());
            contents.extend_from_slice(b"\xff\n");
        }
        contents.extend_from_slice(b"caf\xc3\xa9 Serving HTTP on 0.0.0.0 \xfe tail\nafter\n");
        let path = temp_file("substring", &contents);
        let hit = find_substring(&path, u64::MAX, "Serving HTTP").unwrap();
        assert_eq!(
            hit.as_deref(),
            Some(&b"caf\xc3\xa9 Serving HTTP on 0.0.0.0 \xfe tail"[..])
        );
        assert_eq!(
            find_substring(&path, u64::MAX, "line 39999 ")
                .unwrap()
                .as_deref(),
            Some(&b"line 39999 \xff"[..])
        );
        assert_eq!(find_substring(&path, u64::MAX, "absent").unwrap(), None);
        assert_eq!(find_substring(&path, 100, "Serving").unwrap(), None);
    }

    proptest! {
        /// The block search and the line-by-line search always agree.
        #[test]
        fn substring_search_agrees_with_line_search(
            lines in proptest::collection::vec(proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0xffu8), Just(0xc3u8), Just(0xa9u8)], 0..12), 0..40),
            needle in "[ab\u{e9}]{1,3}",
        ) {
            let contents = lines.join(&b'\n');
            let path = temp_file("agree", &contents);
            let slow = find_line(&path, u64::MAX, |l| l.windows(needle.len()).any(|w| w == needle.as_bytes())).unwrap();
            prop_assert_eq!(find_substring(&path, u64::MAX, &needle).unwrap(), slow);
        }

        /// Small blocks, so lines and newlines fall on every kind of block boundary.
        #[test]
        fn tail_agrees_with_a_naive_split(
            lines in proptest::collection::vec("[a-z\u{e9}]{0,30}", 0..60),
            n in 0usize..20,
            trailing in any::<bool>(),
            block in 1u64..40,
        ) {
            let mut contents = lines.join("\n").into_bytes();
            if trailing && !contents.is_empty() { contents.push(b'\n'); }
            let mut file = tempfile_with(&contents);
            let got: Vec<Vec<u8>> = tail_file(&mut file, n, None, block).unwrap().into_iter().map(|(_, l)| l).collect();
            prop_assert_eq!(got, naive_tail(&contents, n));
        }
    }

    /// An unnamed temporary file holding `contents`, rewound.
    fn tempfile_with(contents: &[u8]) -> File {
        use std::io::Write;
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "ap-read-prop-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file.write_all(contents).unwrap();
        file
    }
}
