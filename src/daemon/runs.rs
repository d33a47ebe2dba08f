//! A run's files: the log dir its sinks are created in (verified again for each
//! run, its descriptor shared while it is the same dir), its log sinks, its
//! number, and the run journal. It owns the run numbers and the held log dir;
//! it touches files only (never the poll). A failure to write the journal is a
//! note for daemon.log, returned as an action.

use super::action::{Action, Change};
use super::lifecycle::{self, Event};
use super::procs::{Output, ProcId, ProcTable, STREAMS};
use super::spec::Spec;
use crate::logs::{self, store::LogSink};
use crate::paths::{self, SessionPaths};
use crate::protocol::{Response, Stream};
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::time::{Instant, SystemTime};

/// A new run as the loop made it: the spawned leader, its outputs (pipes
/// registered, sinks open), its number and first sequence number, and what
/// failed on the way (a stream left out).
pub struct Launch {
    pub pid: u32,
    pub run: u64,
    pub run_seq: u64,
    pub outputs: [Option<Output>; 2],
    pub failure: Option<String>,
}

pub struct Runs {
    paths: SessionPaths,
    /// The last run number of each process name in the run journal, read at
    /// the first start (None until then).
    numbers: Option<HashMap<String, u64>>,
    /// The log dir as last verified, shared by the sinks of the runs it holds.
    log_dir: Option<Rc<paths::OwnDir>>,
}

impl Runs {
    pub fn new(paths: SessionPaths) -> Runs {
        Runs {
            paths,
            numbers: None,
            log_dir: None,
        }
    }

    /// The log dir for a new run, opened by its path again and verified (a link
    /// or a dir not privately ours there now is refused, never written through);
    /// while it is the same dir, its one descriptor is shared with earlier runs.
    pub fn own_log_dir(&mut self) -> io::Result<Rc<paths::OwnDir>> {
        let fresh = match paths::OwnDir::open(&self.paths.log_dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The log dir was deleted under us: make it again.
                let _ = paths::ensure_state_dirs(&self.paths);
                paths::OwnDir::open(&self.paths.log_dir)?
            }
            other => other?,
        };
        if let Some(held) = &self.log_dir
            && held.same_as(&fresh)
        {
            return Ok(held.clone());
        }
        let dir = Rc::new(fresh);
        self.log_dir = Some(dir.clone());
        Ok(dir)
    }

    /// The number the next run of `name` gets: one more than the journal's last,
    /// or than the runs in its logs when the journal has none (older logs).
    pub fn next_number(&mut self, name: &str) -> u64 {
        let paths = &self.paths;
        let numbers = self
            .numbers
            .get_or_insert_with(|| logs::runs::last_numbers(&paths.log_dir));
        let last = match numbers.get(name) {
            Some(&n) => n,
            None => {
                let streams = STREAMS.map(|s| (s, paths.log_file(name, s.name())));
                logs::runs::count_in_logs(name, &streams)
            }
        };
        // (A planted journal may say anything, u64::MAX included.)
        let next = last.saturating_add(1);
        numbers.insert(name.to_string(), next);
        next
    }

    /// Append to the run journal; a failure is a note in daemon.log, nothing more.
    /// Written relative to the log dir's descriptor, like the logs themselves.
    pub fn journal(&mut self, entry: logs::runs::Entry) -> Vec<Action> {
        let dir = match self.log_dir.clone() {
            Some(dir) => Ok(dir),
            None => self.own_log_dir(),
        };
        match dir.and_then(|dir| logs::runs::append(&dir, &entry)) {
            Ok(()) => Vec::new(),
            Err(e) => vec![Action::Note(format!(
                "writing {}: {}",
                logs::runs::journal_path(&self.paths.log_dir).display(),
                crate::error::describe_io(&e)
            ))],
        }
    }

    /// Process `id` was spawned as `launch`: it runs now. Returns the `run`
    /// answer, and the notes, the journal entry, the state written at once
    /// (before anyone hears of it: if we are killed right after answering, the
    /// next daemon must still find this group) and the start announced. A run
    /// without its logs would run blind: it is killed at once and failed.
    pub fn begin(
        &mut self,
        procs: &mut ProcTable,
        id: ProcId,
        launch: Launch,
        annotation: Option<&str>,
        proxy_port: Option<u16>,
    ) -> (Response, Vec<Action>) {
        let Launch {
            pid,
            run,
            run_seq,
            outputs,
            failure,
        } = launch;
        let Some(p) = procs.get_mut(id) else {
            return (Response::error("process vanished"), Vec::new());
        };
        p.outputs = outputs;
        p.pid = pid;
        p.pgid = pid as i32;
        p.started_wall = SystemTime::now();
        p.run = run;
        p.run_seq = run_seq;
        p.start_ticks = crate::sys::start_ticks(pid);
        p.port_conflict = None;
        p.cpu_sample = None;
        let (state, mut out) = lifecycle::on(
            p,
            Event::Started {
                pid,
                now: Instant::now(),
            },
        );
        p.state = state;
        let (name, command, port) = (p.name.clone(), p.spec.command.clone(), p.spec.port);
        let url = p.url(proxy_port);
        procs.set_pid(id, pid as i32);
        if let Some(msg) = failure {
            out.push(Action::KillGroup {
                pgid: pid as i32,
                signal: libc::SIGKILL,
            });
            out.push(Action::Note(format!("{name}: {msg}")));
            let change = Change::new("failed").pid(pid).detail(msg.clone());
            out.push(Action::Emit { proc: id, change });
            return (Response::error(msg), out);
        }
        out.push(Action::Note(format!(
            "{name} (p{id}) started, pid {pid}: {command}"
        )));
        out.extend(self.journal(logs::runs::Entry {
            p: name.clone(),
            run,
            start: Some(logs::index::now_ms()),
            seq: Some(run_seq),
            pid: Some(pid),
            ..Default::default()
        }));
        out.push(Action::SaveStateNow);
        out.push(Action::RunStarted {
            proc: id,
            pid,
            annotation: annotation.map(str::to_string),
        });
        let response = Response::RunOk {
            name,
            id: format!("p{id}"),
            pid,
            port,
            url,
            warning: None,
        };
        (response, out)
    }

    /// The stdout and stderr sinks of a new run of `name`, in the dir verified
    /// now; the annotation goes first in the stdout log (stamped by `clock`).
    /// A sink that cannot be opened is the error that says which and why.
    pub fn open_sinks(
        &mut self,
        name: &str,
        spec: &Spec,
        annotation: Option<&str>,
        clock: &mut logs::index::SeqClock,
    ) -> [Result<LogSink, String>; 2] {
        let log_dir = self.own_log_dir();
        STREAMS.map(|stream| {
            let path = self.paths.log_file(name, stream.name());
            let created = match &log_dir {
                Ok(dir) => LogSink::create_in(dir.clone(), path.clone(), spec.log_limits),
                Err(e) => Err(io::Error::new(
                    e.kind(),
                    format!(
                        "{}: {}",
                        self.paths.log_dir.display(),
                        crate::error::describe_io(e)
                    ),
                )),
            };
            let mut sink = created.map_err(|e| {
                format!(
                    "opening log {}: {}",
                    path.display(),
                    crate::error::describe_io(&e)
                )
            })?;
            // Before the child's first byte, which is still in the pipe.
            if let (Some(note), Stream::Stdout) = (annotation, stream) {
                sink.annotate(clock, note, |_| {});
                // Its index closes again until output flows.
                sink.release();
            }
            Ok(sink)
        })
    }
}

/// A line of ours (a watch note, why a restart was skipped) in process `id`'s
/// stdout log, stamped by `clock`; its index closes again until output flows.
/// The loop delivers the same line to the followers and waits.
pub fn annotate(procs: &mut ProcTable, id: ProcId, clock: &mut logs::index::SeqClock, note: &str) {
    if let Some(out) = procs.get_mut(id).and_then(|p| p.output(Stream::Stdout)) {
        out.sink.annotate(clock, note, |_| {});
        out.sink.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    /// A private log dir of its own for each test, removed at the end.
    struct Dir(PathBuf);

    impl Dir {
        fn new(test: &str) -> Dir {
            let dir = std::env::temp_dir()
                .join(format!("agent-procs-runs-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            Dir(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn paths(log_dir: &Path) -> SessionPaths {
        SessionPaths {
            session: "test".into(),
            runtime_dir: log_dir.into(),
            socket: log_dir.join("s.sock"),
            pid_file: log_dir.join("pid"),
            lock_file: log_dir.join("lock"),
            state_dir: log_dir.into(),
            log_dir: log_dir.into(),
            root: None,
        }
    }

    fn spec() -> Spec {
        Spec::for_test("server")
    }

    fn started(name: &str, run: u64) -> logs::runs::Entry {
        logs::runs::Entry {
            p: name.into(),
            run,
            start: Some(1),
            ..Default::default()
        }
    }

    #[test]
    fn runs_are_numbered_per_name_and_a_new_daemon_goes_on_from_the_journal() {
        let dir = Dir::new("numbers");
        let mut runs = Runs::new(paths(&dir.0));
        assert_eq!(runs.next_number("web"), 1);
        assert!(runs.journal(started("web", 1)).is_empty());
        assert_eq!(runs.next_number("web"), 2);
        assert!(runs.journal(started("web", 2)).is_empty());
        assert_eq!(runs.next_number("db"), 1);

        let mut next_daemon = Runs::new(paths(&dir.0));
        assert_eq!(next_daemon.next_number("web"), 3);
    }

    #[test]
    fn a_journal_that_cannot_be_written_is_a_note_not_a_failure() {
        let dir = Dir::new("journal");
        // The "log dir" is a file: nothing can be written under it.
        let file = dir.0.join("not-a-dir");
        std::fs::write(&file, b"").unwrap();
        let mut runs = Runs::new(paths(&file));
        let actions = runs.journal(started("web", 1));
        assert!(
            matches!(&actions[..], [Action::Note(n)] if n.starts_with("writing ")),
            "{actions:?}"
        );
    }

    #[test]
    fn the_annotation_is_the_first_line_of_the_new_runs_stdout_log() {
        let dir = Dir::new("sinks");
        let mut runs = Runs::new(paths(&dir.0));
        let mut clock = logs::index::SeqClock::default();
        let note = "[agent-procs] Restarted (manual)";
        let [out, err] = runs.open_sinks("web", &spec(), Some(note), &mut clock);
        let (out, err) = (out.unwrap(), err.unwrap());
        drop((out, err));
        let stdout = std::fs::read_to_string(dir.0.join("web.stdout")).unwrap();
        assert_eq!(stdout.lines().next(), Some(note));
        let stderr = std::fs::read_to_string(dir.0.join("web.stderr")).unwrap();
        assert_eq!(stderr, "");
    }

    #[test]
    fn a_note_goes_into_the_current_runs_stdout_log_after_its_output() {
        let dir = Dir::new("annotate");
        let mut runs = Runs::new(paths(&dir.0));
        let mut clock = logs::index::SeqClock::default();
        let mut procs = ProcTable::default();
        let id = procs.allocate_id();
        let mut p = super::super::procs::Proc::new(id, "web".into(), spec());
        let [out, _] = runs.open_sinks("web", &spec(), Some("first"), &mut clock);
        p.outputs[0] = Some(Output {
            pipe: None,
            token: mio::Token(99),
            sink: out.unwrap(),
            grown: false,
        });
        procs.insert(p);
        annotate(&mut procs, id, &mut clock, "[agent-procs] watch: note");
        // A process without logs (or gone) takes no note and does not fail.
        annotate(&mut procs, id + 1, &mut clock, "lost");
        drop(procs);
        let stdout = std::fs::read_to_string(dir.0.join("web.stdout")).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines, ["first", "[agent-procs] watch: note"]);
    }

    #[test]
    fn a_log_dir_that_is_not_a_dir_fails_both_sinks_with_the_path() {
        let dir = Dir::new("baddir");
        let file = dir.0.join("not-a-dir");
        std::fs::write(&file, b"").unwrap();
        let mut runs = Runs::new(paths(&file));
        let mut clock = logs::index::SeqClock::default();
        for sink in runs.open_sinks("web", &spec(), None, &mut clock) {
            let Err(msg) = sink else {
                panic!("a sink opened under a file");
            };
            assert!(msg.starts_with("opening log "), "{msg}");
            assert!(msg.contains("not-a-dir"), "{msg}");
        }
    }

    fn launch(failure: Option<&str>) -> Launch {
        Launch {
            pid: 900_123,
            run: 4,
            run_seq: 10,
            outputs: [None, None],
            failure: failure.map(str::to_string),
        }
    }

    #[test]
    fn a_run_begins_recorded_and_announced_in_that_order() {
        let dir = Dir::new("begin");
        let mut runs = Runs::new(paths(&dir.0));
        let mut procs = ProcTable::default();
        let id = procs.allocate_id();
        procs.insert(super::super::procs::Proc::new(id, "web".into(), spec()));
        let (response, actions) = runs.begin(&mut procs, id, launch(None), Some("hi"), None);
        assert!(
            matches!(response, Response::RunOk { pid: 900_123, .. }),
            "{response:?}"
        );
        assert!(
            matches!(
                &actions[..],
                [Action::Note(_), Action::SaveStateNow, Action::RunStarted { annotation: Some(a), .. }]
                    if a == "hi"
            ),
            "{actions:?}"
        );
        let p = procs.get(id).unwrap();
        assert_eq!((p.run, p.run_seq, p.pgid), (4, 10, 900_123));
        assert!(p.state.is_alive());
        assert!(procs.is_leader(900_123));
        // The journal has the start, so the next daemon numbers on from it.
        assert_eq!(Runs::new(paths(&dir.0)).next_number("web"), 5);
    }

    #[test]
    fn a_run_without_its_logs_is_killed_and_failed_at_once() {
        let dir = Dir::new("blind");
        let mut runs = Runs::new(paths(&dir.0));
        let mut procs = ProcTable::default();
        let id = procs.allocate_id();
        procs.insert(super::super::procs::Proc::new(id, "web".into(), spec()));
        let (response, actions) = runs.begin(
            &mut procs,
            id,
            launch(Some("opening log x: denied")),
            None,
            None,
        );
        assert!(matches!(response, Response::Error { .. }), "{response:?}");
        assert!(matches!(
            actions[0],
            Action::KillGroup { pgid: 900_123, signal } if signal == libc::SIGKILL
        ));
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::Emit { change, .. } if change.event == "failed"
        )));
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::RunStarted { .. }))
        );
    }
}
