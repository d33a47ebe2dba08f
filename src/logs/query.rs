//! Queries over stored logs, for `logs` without `--follow`: the streams of one or
//! more processes, each line placed by its index record (sequence number, offset
//! in the record, arrival time), merged in arrival order, then filtered by the
//! pipeline since → after → grep → tail → context. Works on the files alone.
//! Where the lines are (`Source`, `Position`, reading forward) is `source.rs`.

use super::index::Record;
use super::read::{for_each_match, tail_located_from};
use super::source::Forward;
pub use super::source::{Floor, Line, Position, Source};
use std::collections::VecDeque;
use std::io;

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
    let mut found: Vec<Match> = Vec::new();
    for (no, source) in sources.iter().enumerate() {
        found.extend(matches_in(source, no, needle, q)?);
    }
    found.sort_by_key(|m| (m.pos, m.source));
    if let Some(n) = q.tail {
        let skip = found.len().saturating_sub(n);
        found.drain(..skip);
    }
    if q.context == 0 {
        return Ok(found.into_iter().map(Match::into_line).collect());
    }
    // One source: add the lines around each match, windows merged.
    match sources.first() {
        Some(source) => with_context(source, &found, q),
        None => Ok(Vec::new()),
    }
}

/// A line `grep_plain` kept, and where it lies in its source's segments.
struct Match {
    pos: Position,
    time_ms: u64,
    source: usize,
    seg_no: usize,
    offset: u64,
    bytes: Vec<u8>,
}

impl Match {
    fn into_line(self) -> Line {
        Line {
            source: self.source,
            pos: self.pos,
            time_ms: self.time_ms,
            bytes: self.bytes,
            context: false,
            group_start: false,
        }
    }
}

/// The last `tail` lines of one source (number `no`) that contain `needle`
/// and pass the query's filter, oldest first.
fn matches_in(
    source: &Source,
    no: usize,
    needle: &str,
    q: &Query<'_>,
) -> io::Result<VecDeque<Match>> {
    let (first_seg, first_offset) = start_of(source, q);
    let mut kept: VecDeque<Match> = VecDeque::new();
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
            let (pos, time_ms) = locate(source, seg_no, offset);
            if q.after.is_none_or(|c| pos > c) {
                kept.push_back(Match {
                    pos,
                    time_ms,
                    source: no,
                    seg_no,
                    offset,
                    bytes: line.to_vec(),
                });
                if q.tail.is_some_and(|n| kept.len() > n) {
                    kept.pop_front();
                }
            }
            true
        })?;
    }
    Ok(kept)
}

/// The matches of one source with `q.context` lines either side, windows that
/// touch merged, a `--` before each group that does not follow on.
fn with_context(source: &Source, found: &[Match], q: &Query<'_>) -> io::Result<Vec<Line>> {
    // (segment, offset) -> (line, whether it matched)
    let mut lines: std::collections::BTreeMap<(usize, u64), (Vec<u8>, bool)> = Default::default();
    for m in found {
        let end = m.offset + m.bytes.len() as u64 + 1;
        // Lines before, into older segments if this one begins too soon.
        let (mut seg, mut limit, mut need) = (m.seg_no, m.offset, q.context);
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
        let mut forward = Forward::new(source, 0, (m.seg_no, end));
        for _ in 0..q.context {
            let Some(line) = forward.next_line()? else {
                break;
            };
            lines
                .entry(forward.last_start)
                .or_insert((line.bytes, false));
        }
        lines.insert((m.seg_no, m.offset), (m.bytes.clone(), true));
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
    use crate::protocol::Stream;
    use std::path::Path;

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
