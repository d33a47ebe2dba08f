//! The log index reader, and the queries built on it, over arbitrary log and
//! index files (the index may lie: offsets past the end, going backwards, a
//! short last record, no magic): opening never fails, every record below `len`
//! reads and none past it, and every query (tail, since, after, grep, context)
//! answers without an error, with lines no longer than `MAX_LINE`, no more than
//! `--tail` asks for, and no more than the bytes could hold.
#![no_main]

use agent_procs::logs::MAX_LINE;
use agent_procs::logs::index::{IndexReader, MAGIC, RECORD, index_path};
use agent_procs::logs::query::{self, Position, Query, Since, Source};
use agent_procs::protocol::Stream;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[derive(Debug, Arbitrary)]
struct Segment {
    log: Vec<u8>,
    /// Written after `MAGIC` when `magic`, else as is.
    index: Vec<u8>,
    magic: bool,
}

#[derive(Debug, Arbitrary)]
enum SinceIn {
    Everything,
    Time(u64),
    Run,
}

#[derive(Debug, Arbitrary)]
struct Input {
    current: Segment,
    rotated: Option<Segment>,
    /// Read the current segment only this far, as the daemon does.
    limit: Option<u16>,
    tail: Option<u8>,
    since: SinceIn,
    after: Option<(u64, u64)>,
    grep: Option<String>,
    regex_like: bool,
    context: u8,
}

/// The stream's path in a directory of this process, under $TMPDIR (run.sh
/// points that at fuzz/target and removes it afterwards).
fn stream_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("agent-procs-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the scratch directory");
        dir.join("p.stdout")
    })
}

fn write(path: &Path, segment: &Segment) {
    std::fs::write(path, &segment.log).expect("writing a log segment");
    let mut index = Vec::with_capacity(8 + segment.index.len());
    if segment.magic {
        index.extend_from_slice(MAGIC);
    }
    index.extend_from_slice(&segment.index);
    std::fs::write(index_path(path), index).expect("writing an index");
}

/// The reader's own promises, whatever the file holds.
fn check_reader(segment: &Path, written: &Segment) {
    let index = IndexReader::open(segment);
    let len = index.len();
    assert!(len >= 1);
    let records = written.index.len() as u64 / RECORD;
    if written.magic && records > 0 {
        assert_eq!(
            len,
            records,
            "records of a {}-byte index",
            written.index.len()
        );
    } else {
        assert_eq!(len, 1, "a missing or empty index stands for one whole run");
    }
    for i in [0, len / 2, len - 1] {
        assert!(index.get(i).is_some(), "record {i} of {len}");
    }
    assert!(index.get(len).is_none());
    assert!(index.get(u64::MAX / RECORD).is_none());
    assert_eq!(index.iter_from(0).count() as u64, len);
    assert_eq!(index.iter_from(len / 2).count() as u64, len - len / 2);
    for offset in [0, written.log.len() as u64, u64::MAX] {
        let (i, _) = index.at_offset(offset);
        assert!(i < len);
    }
}

fuzz_target!(|input: Input| {
    let path = stream_path();
    let rotated = agent_procs::logs::segment(path, 1);
    write(path, &input.current);
    check_reader(path, &input.current);
    match &input.rotated {
        Some(segment) => {
            write(&rotated, segment);
            check_reader(&rotated, segment);
        }
        None => {
            let _ = std::fs::remove_file(&rotated);
            let _ = std::fs::remove_file(index_path(&rotated));
        }
    }

    let limit = input.limit.map(u64::from);
    let source = Source::open_limited("p", Stream::Stdout, path, limit).expect("the log exists");
    let grep = input.grep.as_deref().filter(|g| !g.is_empty());
    let filter = |line: &[u8]| grep.is_none_or(|g| query::contains(line, g.as_bytes()));
    let q = Query {
        tail: input.tail.map(usize::from),
        since: match input.since {
            SinceIn::Everything => Since::Everything,
            SinceIn::Time(t) => Since::Time(t),
            SinceIn::Run => Since::Run,
        },
        after: input.after.map(|(seq, delta)| Position { seq, delta }),
        grep: grep.map(|_| &filter as query::LineFilter<'_>),
        // A regex's literal is only part of the pattern; plain text is all of it.
        plain: if input.regex_like { None } else { grep },
        context: usize::from(input.context % 4),
    };
    let lines = match query::run(std::slice::from_ref(&source), &q) {
        Ok(lines) => lines,
        Err(e) => panic!(
            "query {:?} failed: {e}",
            (q.tail, q.since, q.after, grep, q.context)
        ),
    };
    let bytes = input.current.log.len() + input.rotated.as_ref().map_or(0, |s| s.log.len());
    assert!(
        lines.len() <= bytes + 2,
        "{} lines from {bytes} bytes",
        lines.len()
    );
    if let Some(n) = q.tail {
        let matched = lines.iter().filter(|l| !l.context).count();
        assert!(matched <= n, "{matched} lines for --tail {n}");
    }
    for line in &lines {
        assert!(line.bytes.len() <= MAX_LINE);
        assert!(line.bytes.len() <= bytes);
        if let (Some(g), false) = (grep, line.context) {
            assert!(
                query::contains(&line.bytes, g.as_bytes()),
                "a line without {g:?}"
            );
        }
        if let Some(after) = q.after {
            assert!(
                line.pos > after,
                "a line at {:?} not after {after:?}",
                line.pos
            );
        }
    }
});
