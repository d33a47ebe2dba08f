//! The output component: reading a child's pipe into its log, a budget of
//! bytes per wake-up, splitting lines out only when someone wants them, and
//! the budget of pipes grown to `sys::PIPE_SIZE`. It owns the read buffer, the
//! lines of the last read and the pipe budget. Given a process and a stream, it
//! reads, retires the pipe at end of file and returns what the loop does next
//! (`UnwatchPipe`, `ReadAgain`, `Note`); the loop hands the lines it kept
//! (`lines`) to the router (`daemon/lines.rs`).

use super::action::{Action, OutputAction};
use super::procs::{Output, Proc, ProcId, ProcTable, State};
use crate::logs::index::SeqClock;
use crate::logs::store::LogSink;
use crate::protocol::Stream;
use std::io::{self, Read};

/// The lines buffer kept between reads is let go above this (a flood read
/// while someone wanted its lines leaves no high-water mark behind).
const KEEP_LINES: usize = 64 * 1024;

/// Reads within a wake's budget (the loop's `PIPE_BUDGET`) answer first: a
/// short read (the pipe was empty after it) that completed wanted lines ends
/// the read, so the loop answers a wait before the read that would find the
/// pipe empty, and reads on next turn (`ReadAgain`). A drain (the loop's read
/// at a leader's exit, with a larger budget) reads to the end at once.
const ANSWER_FIRST_WITHIN: usize = 256 * 1024;

/// What one wake-up of a pipe did.
struct Taken {
    /// The pipe reached end of file (or failed): the loop deregisters it.
    eof: bool,
    /// The budget ran out, or lines are to be answered first, before the pipe
    /// was found empty: read on next turn.
    more: bool,
    /// Writing the log failed: the output is being lost.
    write_error: Option<io::Error>,
}

/// The lines of one read, end to end in one buffer (no allocation per line).
#[derive(Default)]
struct Lines {
    bytes: Vec<u8>,
    /// Where each line ends in `bytes`.
    ends: Vec<usize>,
}

impl Lines {
    fn push(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.ends.push(self.bytes.len());
    }

    fn clear(&mut self) {
        if self.bytes.capacity() > KEEP_LINES {
            *self = Lines::default();
        }
        self.bytes.clear();
        self.ends.clear();
    }
}

/// The capture side of every child's output.
pub struct Capture {
    read_buf: Vec<u8>,
    /// Output pipes grown to sys::PIPE_SIZE, and how many may be.
    big_pipes: usize,
    big_pipe_budget: usize,
    /// The lines of the last read, when someone wanted them.
    lines: Lines,
    /// The last read reached end of file.
    ended: bool,
}

impl Capture {
    pub fn new(big_pipe_budget: usize) -> Capture {
        Capture {
            // 128 KiB is glibc's mmap threshold: the pages come fresh and only
            // those a read fills become resident (64 KiB from the heap stayed
            // resident, cleared, in every daemon); a flood takes half the reads.
            read_buf: vec![0; 128 * 1024],
            big_pipes: 0,
            big_pipe_budget,
            lines: Lines::default(),
            ended: false,
        }
    }

    /// One wake-up of `stream` of `p`: read up to `budget` bytes into its log,
    /// keeping the lines when `wanted` (a wait, an `up` or a follower looks at
    /// them). At end of file the pipe is retired: `UnwatchPipe`; a budget
    /// used up: `ReadAgain`; a log that refuses bytes: `Note`.
    pub fn read(
        &mut self,
        p: &mut Proc,
        stream: Stream,
        clock: &mut SeqClock,
        wanted: bool,
        budget: usize,
    ) -> Vec<Action> {
        self.lines.clear();
        self.ended = false;
        let mut actions = Vec::new();
        let Some(output) = p.output(stream) else {
            return actions;
        };
        let Some(pipe) = output.pipe.as_mut() else {
            return actions;
        };
        let taken = self.on_readable(pipe, &mut output.sink, clock, wanted, budget);
        if taken.eof {
            let pipe = self.retire(output);
            let token = output.token;
            // `retire` freed its place in the budget of grown pipes.
            let grown = false;
            actions.push(Action::UnwatchPipe { pipe, token, grown });
        } else if taken.more {
            let token = output.token;
            actions.push(Action::Output(OutputAction::ReadAgain { token }));
        }
        if let Some(e) = taken.write_error {
            actions.push(Action::Note(format!(
                "writing {}: {} (output is being lost)",
                output.sink.path.display(),
                crate::error::describe_io(&e)
            )));
        }
        self.ended = taken.eof;
        actions
    }

    /// The lines the last `read` kept, in order.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        let bytes = &self.lines.bytes;
        let starts = std::iter::once(0).chain(self.lines.ends.iter().copied());
        starts.zip(&self.lines.ends).map(|(a, &b)| &bytes[a..b])
    }

    /// Whether the last `read` reached the end of its pipe.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// As if the last read kept `lines` (and reached the end when `ended`).
    #[cfg(test)]
    pub fn keep_for_test(&mut self, lines: &[&[u8]], ended: bool) {
        self.lines.clear();
        lines.iter().for_each(|l| self.lines.push(l));
        self.ended = ended;
    }

    /// Read up to `budget` bytes from `pipe` into `sink`. Lines are split out
    /// only when `wanted`.
    fn on_readable(
        &mut self,
        pipe: &mut impl Read,
        sink: &mut LogSink,
        clock: &mut SeqClock,
        wanted: bool,
        budget: usize,
    ) -> Taken {
        let mut taken = 0;
        let mut eof = false;
        let mut answer_first = false;
        let lines = &mut self.lines;
        let mut write_error = None;
        let buf = &mut self.read_buf;
        while taken < budget {
            match pipe.read(buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    taken += n;
                    let kept = lines.ends.len();
                    let err = if wanted {
                        sink.append(clock, &buf[..n], |line| lines.push(line))
                    } else {
                        sink.append_quiet(clock, &buf[..n])
                    };
                    write_error = write_error.or(err);
                    answer_first =
                        budget <= ANSWER_FIRST_WITHIN && n < buf.len() && lines.ends.len() > kept;
                    if answer_first {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        // An index prepared for a waiter stays open while lines are wanted.
        if wanted && !eof {
            sink.release();
        } else {
            sink.let_go();
        }
        if eof {
            sink.finish(|line| {
                if wanted {
                    lines.push(line);
                }
            });
        }
        Taken {
            eof,
            more: !eof && (taken >= budget || answer_first),
            write_error,
        }
    }

    /// Whether the next run's two pipes may be grown.
    pub fn may_grow_pipes(&self) -> bool {
        self.big_pipes + 2 <= self.big_pipe_budget
    }

    /// A pipe was grown (it counts until it is released).
    pub fn pipe_grown(&mut self) {
        self.big_pipes += 1;
    }

    /// A grown pipe was closed.
    pub fn pipe_released(&mut self) {
        self.big_pipes = self.big_pipes.saturating_sub(1);
    }

    /// Retire one stream's pipe (at end of file, or when a new run replaces
    /// it): its place in the budget of grown pipes is freed, once, and the
    /// pipe, if still open, is handed back for the loop to deregister.
    pub fn retire(&mut self, output: &mut Output) -> Option<mio::unix::pipe::Receiver> {
        if std::mem::take(&mut output.grown) {
            self.pipe_released();
        }
        output.pipe.take()
    }
}

/// The process has exited for good and all its output has been read.
pub fn finished(p: &Proc) -> bool {
    matches!(p.state, State::Exited { .. } | State::Failed { .. }) && p.pipes_closed()
}

/// Lines of process `id` are awaited: its first line, which may be the one,
/// should not have to create the index files on its way to the waiter. (A
/// stream nobody waits on still gets its index only when it writes.)
pub fn prepare_indexes(procs: &mut ProcTable, id: ProcId) {
    let Some(p) = procs.get_mut(id) else {
        return;
    };
    for output in p.outputs.iter_mut().flatten() {
        if output.pipe.is_some() {
            // A failure here is met again, and reported, by the first write.
            let _ = output.sink.prepare_index();
        }
    }
}

/// Nobody waits on the lines of process `id` any more: its index files are
/// no longer held open (an idle process holds no index descriptor).
pub fn let_go(procs: &mut ProcTable, id: ProcId) {
    if let Some(p) = procs.get_mut(id) {
        p.outputs.iter_mut().flatten().for_each(|o| o.sink.let_go());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::Limits;
    use std::os::unix::fs::DirBuilderExt;

    fn sink(name: &str) -> (std::path::PathBuf, LogSink) {
        let dir = std::env::temp_dir().join(format!("ap-capture-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("a.stdout");
        let sink =
            LogSink::create(path.clone(), Limits::default()).unwrap_or_else(|e| panic!("{e}"));
        (dir, sink)
    }

    fn kept(capture: &Capture) -> Vec<Vec<u8>> {
        capture.lines().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn lines_are_split_out_only_when_wanted_and_everything_is_logged() {
        let (dir, mut log) = sink("wanted");
        let mut clock = SeqClock::default();
        let mut capture = Capture::new(0);
        let mut pipe: &[u8] = b"one\ntwo\npartial";
        let taken = capture.on_readable(&mut pipe, &mut log, &mut clock, true, 1 << 20);
        assert!(taken.eof, "a reader at its end is end of file");
        assert!(!taken.more);
        assert_eq!(
            kept(&capture),
            vec![b"one".to_vec(), b"two".to_vec(), b"partial".to_vec()]
        );
        capture.lines.clear();
        let mut pipe: &[u8] = b"three\n";
        let quiet = capture.on_readable(&mut pipe, &mut log, &mut clock, false, 1 << 20);
        assert!(kept(&capture).is_empty());
        assert!(quiet.write_error.is_none());
        let text = std::fs::read(dir.join("a.stdout")).unwrap_or_default();
        assert!(text.starts_with(b"one\ntwo\npartial"), "{text:?}");
        assert!(text.ends_with(b"three\n"), "{text:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A process whose stdout is a real pipe; the writing end is handed back.
    fn proc_with_pipe(name: &str, grown: bool) -> (std::path::PathBuf, Proc, std::fs::File) {
        let (dir, sink) = sink(name);
        let (sender, receiver) = mio::unix::pipe::new().unwrap_or_else(|e| panic!("{e}"));
        let mut p = Proc::new(
            ProcId(7),
            "web".into(),
            crate::daemon::spec::Spec::for_test("true"),
        );
        p.outputs[0] = Some(Output {
            pipe: Some(receiver),
            token: mio::Token(40),
            sink,
            grown,
        });
        let fd: std::os::fd::OwnedFd = sender.into();
        (dir, p, std::fs::File::from(fd))
    }

    fn write(to: &mut std::fs::File, bytes: &[u8]) {
        io::Write::write_all(to, bytes).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_pipe_read_to_its_end_is_retired_and_unwatched_with_its_last_line() {
        let (dir, mut p, mut sender) = proc_with_pipe("eof", true);
        write(&mut sender, b"a\nb");
        drop(sender);
        let mut capture = Capture::new(3);
        capture.pipe_grown();
        capture.pipe_grown();
        assert!(!capture.may_grow_pipes());
        let mut clock = SeqClock::default();
        let actions = capture.read(&mut p, Stream::Stdout, &mut clock, true, 1 << 20);
        assert!(
            matches!(
                actions.as_slice(),
                [Action::UnwatchPipe {
                    pipe: Some(_),
                    token: mio::Token(40),
                    grown: false
                }]
            ),
            "{actions:?}"
        );
        assert!(capture.ended());
        assert_eq!(kept(&capture), vec![b"a".to_vec(), b"b".to_vec()]);
        assert!(p.pipes_closed(), "the pipe left the process");
        assert!(capture.may_grow_pipes(), "its place in the budget is free");
        // Read again (a stale readiness): nothing happens, nothing is kept.
        let again = capture.read(&mut p, Stream::Stdout, &mut clock, true, 1 << 20);
        assert!(again.is_empty() && !capture.ended() && kept(&capture).is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_read_that_uses_its_budget_up_asks_to_be_read_again() {
        let (dir, mut p, mut sender) = proc_with_pipe("again", false);
        write(&mut sender, &[b'x'; 100]);
        let mut capture = Capture::new(0);
        let mut clock = SeqClock::default();
        let actions = capture.read(&mut p, Stream::Stdout, &mut clock, false, 10);
        assert!(
            matches!(
                actions.as_slice(),
                [Action::Output(OutputAction::ReadAgain {
                    token: mio::Token(40)
                })]
            ),
            "{actions:?}"
        );
        assert!(!capture.ended());
        assert!(!p.pipes_closed(), "the pipe stays");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_drained_pipe_asks_for_nothing_and_allocates_no_actions() {
        let (dir, mut p, mut sender) = proc_with_pipe("drained", false);
        write(&mut sender, b"ready\n");
        let mut capture = Capture::new(0);
        let mut clock = SeqClock::default();
        let actions = capture.read(&mut p, Stream::Stdout, &mut clock, true, 1 << 20);
        assert!(actions.is_empty());
        assert_eq!(
            actions.capacity(),
            0,
            "the capture path allocates no actions"
        );
        assert_eq!(kept(&capture), vec![b"ready".to_vec()]);
        // The stream nobody reads from (no stderr output here): nothing.
        let none = capture.read(&mut p, Stream::Stderr, &mut clock, true, 1 << 20);
        assert!(none.is_empty() && kept(&capture).is_empty());
        drop(sender);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn wanted_lines_are_answered_before_the_read_that_finds_the_pipe_empty() {
        let (dir, mut p, mut sender) = proc_with_pipe("first", false);
        write(&mut sender, b"ready\n");
        let mut capture = Capture::new(0);
        let mut clock = SeqClock::default();
        let wake = ANSWER_FIRST_WITHIN;
        let actions = capture.read(&mut p, Stream::Stdout, &mut clock, true, wake);
        assert!(
            matches!(
                actions.as_slice(),
                [Action::Output(OutputAction::ReadAgain {
                    token: mio::Token(40)
                })]
            ),
            "{actions:?}"
        );
        assert_eq!(kept(&capture), vec![b"ready".to_vec()]);
        // Next turn: the read that finds it empty, and nothing more to do.
        assert!(
            capture
                .read(&mut p, Stream::Stdout, &mut clock, true, wake)
                .is_empty()
        );
        // A partial line is not an answer; nor are lines nobody wants.
        write(&mut sender, b"par");
        assert!(
            capture
                .read(&mut p, Stream::Stdout, &mut clock, true, wake)
                .is_empty()
        );
        write(&mut sender, b"tial\n");
        assert!(
            capture
                .read(&mut p, Stream::Stdout, &mut clock, false, wake)
                .is_empty()
        );
        // At the end of the pipe, the line before it is kept and the end is seen.
        write(&mut sender, b"last\n");
        drop(sender);
        let end = capture.read(&mut p, Stream::Stdout, &mut clock, true, wake);
        assert!(!capture.ended() && end.len() == 1, "{end:?}");
        let end = capture.read(&mut p, Stream::Stdout, &mut clock, true, wake);
        assert!(capture.ended(), "{end:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_flood_of_wanted_lines_leaves_no_big_buffer_behind() {
        let mut lines = Lines::default();
        for _ in 0..2 * KEEP_LINES / 100 {
            lines.push(&[b'y'; 100]);
        }
        lines.clear();
        assert!(lines.bytes.capacity() <= KEEP_LINES && lines.ends.is_empty());
        lines.push(b"small");
        let cap = lines.bytes.capacity();
        lines.clear();
        assert_eq!(
            lines.bytes.capacity(),
            cap,
            "a small buffer is kept for the next read"
        );
    }

    /// Always has more to give, a byte at a time: only the budget stops it.
    struct Endless;
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[test]
    fn a_flood_stops_at_the_budget_and_asks_to_be_read_again() {
        let (dir, mut log) = sink("budget");
        let mut clock = SeqClock::default();
        let mut capture = Capture::new(0);
        let taken = capture.on_readable(&mut Endless, &mut log, &mut clock, false, 100);
        assert!(!taken.eof);
        assert!(taken.more);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn pipes_are_grown_two_at_a_time_within_the_budget() {
        let mut capture = Capture::new(3);
        assert!(capture.may_grow_pipes());
        capture.pipe_grown();
        capture.pipe_grown();
        assert!(!capture.may_grow_pipes(), "two more would be four");
        capture.pipe_released();
        assert!(capture.may_grow_pipes());
        assert!(!Capture::new(1).may_grow_pipes());
    }

    #[test]
    fn a_retired_grown_pipe_frees_its_place_once() {
        let (dir, sink) = sink("retire");
        let mut capture = Capture::new(2);
        capture.pipe_grown();
        capture.pipe_grown();
        assert!(!capture.may_grow_pipes());
        let mut output = Output {
            pipe: None,
            token: mio::Token(99),
            sink,
            grown: true,
        };
        assert!(capture.retire(&mut output).is_none(), "no pipe was open");
        assert!(!output.grown);
        // Retired again (end of file, then a new run): nothing more is freed.
        assert!(capture.retire(&mut output).is_none());
        capture.pipe_released();
        assert!(capture.may_grow_pipes(), "both places are free");
        capture.pipe_grown();
        assert!(
            !capture.may_grow_pipes(),
            "only one was freed by the retire"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
