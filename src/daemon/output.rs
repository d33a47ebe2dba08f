//! The output component: reading a child's pipe into its log, a budget of
//! bytes per wake-up, splitting lines out only when someone wants them, and
//! the budget of pipes grown to `sys::PIPE_SIZE`. It owns the read buffer and
//! the pipe budget; the loop passes the pipe and the log it registered and
//! routes the lines (to waits, `up`, followers) and the end of file.

use super::procs::{Output, Proc, State};
use crate::logs::index::SeqClock;
use crate::logs::store::LogSink;
use std::io::{self, Read};

/// What one wake-up of a pipe did.
pub struct Taken {
    /// The pipe reached end of file (or failed): the loop deregisters it.
    pub eof: bool,
    /// The budget ran out before the pipe was drained: read on next turn.
    pub more: bool,
    /// The lines completed, when someone wanted them (empty otherwise).
    pub lines: Vec<Vec<u8>>,
    /// Writing the log failed: the output is being lost.
    pub write_error: Option<io::Error>,
}

/// The capture side of every child's output.
pub struct Capture {
    read_buf: Vec<u8>,
    /// Output pipes grown to sys::PIPE_SIZE, and how many may be.
    big_pipes: usize,
    big_pipe_budget: usize,
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
        }
    }

    /// Read up to `budget` bytes from `pipe` into `sink`. Lines are split out
    /// only when `wanted` (a wait, an `up` or a follower looks at them).
    pub fn on_readable(
        &mut self,
        pipe: &mut impl Read,
        sink: &mut LogSink,
        clock: &mut SeqClock,
        wanted: bool,
        budget: usize,
    ) -> Taken {
        let mut taken = 0;
        let mut eof = false;
        let mut lines: Vec<Vec<u8>> = Vec::new();
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
                    let err = if wanted {
                        sink.append(clock, &buf[..n], |line| lines.push(line.to_vec()))
                    } else {
                        sink.append_quiet(clock, &buf[..n])
                    };
                    write_error = write_error.or(err);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        sink.release();
        if eof {
            sink.finish(|line| {
                if wanted {
                    lines.push(line.to_vec());
                }
            });
        }
        Taken {
            eof,
            more: !eof && taken >= budget,
            lines,
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

/// Lines of `p` are awaited: its first line, which may be the one, should not
/// have to create the index files on its way to the waiter. (A stream nobody
/// waits on still gets its index only when it writes.)
pub fn prepare_indexes(p: &mut Proc) {
    for output in p.outputs.iter_mut().flatten() {
        if output.pipe.is_some() {
            // A failure here is met again, and reported, by the first write.
            let _ = output.sink.prepare_index();
        }
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
            taken.lines,
            vec![b"one".to_vec(), b"two".to_vec(), b"partial".to_vec()]
        );
        let mut pipe: &[u8] = b"three\n";
        let quiet = capture.on_readable(&mut pipe, &mut log, &mut clock, false, 1 << 20);
        assert!(quiet.lines.is_empty());
        assert!(quiet.write_error.is_none());
        let text = std::fs::read(dir.join("a.stdout")).unwrap_or_default();
        assert!(text.starts_with(b"one\ntwo\npartial"), "{text:?}");
        assert!(text.ends_with(b"three\n"), "{text:?}");
        let _ = std::fs::remove_dir_all(dir);
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
