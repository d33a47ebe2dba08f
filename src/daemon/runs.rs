//! A run's start and its files: spawning it from its spec, the log dir its
//! sinks are created in (verified again for each run, its descriptor shared
//! while it is the same dir), its log sinks, its number, and the run journal.
//! It owns the run numbers, the held log dir and the start in progress; it
//! spawns and touches files (never the poll: the loop registers the pipes it
//! puts in the table, and deregisters the ones it retires). A failure to write
//! the journal is a note for daemon.log, returned as an action.

use super::action::{Action, Change};
use super::lifecycle::{self, Event};
use super::procs::{Output, ProcId, ProcTable, STREAMS, UNWATCHED};
use super::spawn;
use super::spec::Spec;
use crate::logs::{self, store::LogSink};
use crate::paths::{self, SessionPaths};
use crate::protocol::{Response, Stream};
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::time::{Instant, SystemTime};

/// A run being started: its spawned leader, its number and first sequence
/// number, and what failed on the way for each stream (left out).
struct Launch {
    pub pid: u32,
    pub run: u64,
    pub run_seq: u64,
    pub failures: [Option<String>; 2],
}

pub struct Runs {
    paths: SessionPaths,
    /// The last run number of each process name in the run journal, read at
    /// the first start (None until then).
    numbers: Option<HashMap<String, u64>>,
    /// The log dir as last verified, shared by the sinks of the runs it holds.
    log_dir: Option<Rc<paths::OwnDir>>,
    /// The start in progress, from `launch` to `begin` (the spawn's error if
    /// it failed; None: no such process).
    launching: Option<Result<Launch, String>>,
}

impl Runs {
    pub fn new(paths: SessionPaths) -> Runs {
        Runs {
            paths,
            numbers: None,
            log_dir: None,
            launching: None,
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

    /// Start (or start again) process `id` from its spec, `grow`ing its pipes
    /// if the budget allows: spawn it, retire the last run's pipes, number the
    /// run, open its sinks (`annotation` first in the stdout log) and put its
    /// outputs in the table with their pipes, for the loop to register. Returns
    /// `UnwatchPipe` for each retired pipe and `WatchOutputs`, or the failed
    /// spawn's step; then the loop calls `begin`.
    pub fn launch(
        &mut self,
        procs: &mut ProcTable,
        id: ProcId,
        annotation: Option<&str>,
        grow: bool,
        clock: &mut logs::index::SeqClock,
    ) -> Vec<Action> {
        self.launching = None;
        let Some(p) = procs.get_mut(id) else {
            return Vec::new();
        };
        let spawned = match spawn::spawn(&p.spec, &p.name, grow) {
            Ok(s) => s,
            Err(msg) => {
                let (state, actions) = lifecycle::on(
                    p,
                    Event::SpawnFailed {
                        reason: msg.clone(),
                    },
                );
                p.state = state;
                self.launching = Some(Err(msg));
                return actions;
            }
        };
        // Retire the previous run's pipes (a setsid'd escapee may still hold them).
        let mut out: Vec<Action> = (p.outputs.iter_mut().flatten())
            .map(|o| Action::UnwatchPipe {
                pipe: o.pipe.take(),
                token: o.token,
                grown: std::mem::take(&mut o.grown),
            })
            .collect();
        // The run begins here: every byte of it gets a later sequence number.
        let run = self.next_number(&p.name);
        let run_seq = clock.tick();
        let sinks = self.open_sinks(&p.name, &p.spec, annotation, clock);
        let mut outputs: [Option<Output>; 2] = [None, None];
        let mut failures: [Option<String>; 2] = [None, None];
        let pipes = [spawned.stdout, spawned.stderr];
        for (i, (sink, pipe)) in sinks.into_iter().zip(pipes).enumerate() {
            match sink {
                Ok(sink) => {
                    outputs[i] = Some(Output {
                        pipe: Some(pipe),
                        token: UNWATCHED,
                        sink,
                        grown: spawned.grown,
                    })
                }
                Err(msg) => failures[i] = Some(msg),
            }
        }
        // The last run's sinks close only now, after the new ones are open.
        p.outputs = outputs;
        out.push(Action::WatchOutputs { proc: id });
        let pid = spawned.pid;
        self.launching = Some(Ok(Launch {
            pid,
            run,
            run_seq,
            failures,
        }));
        out
    }

    /// The loop could not register the pipe of `stream` of the run being
    /// started: that stream is left out, and the run fails in `begin`.
    pub fn unwatchable(
        &mut self,
        procs: &mut ProcTable,
        id: ProcId,
        stream: Stream,
        e: &io::Error,
    ) {
        let Some(p) = procs.get_mut(id) else {
            return;
        };
        let i = super::procs::stream_index(stream);
        p.outputs[i] = None;
        if let Some(Ok(launch)) = &mut self.launching {
            launch.failures[i] = Some(format!("watching the output of {}: {e}", p.name));
        }
    }

    /// Process `id` was launched: it runs now. Returns the `run` answer, and
    /// the notes, the journal entry, the state written at once (before anyone
    /// hears of it: if we are killed right after answering, the next daemon
    /// must still find this group) and the start announced. A run without
    /// its logs would run blind: it is killed at once and failed.
    pub fn begin(
        &mut self,
        procs: &mut ProcTable,
        id: ProcId,
        annotation: Option<&str>,
        proxy_port: Option<u16>,
    ) -> (Response, Vec<Action>) {
        let launch = match self.launching.take() {
            Some(Ok(launch)) => launch,
            Some(Err(msg)) => return (Response::error(msg), Vec::new()),
            None => return (Response::error("process vanished"), Vec::new()),
        };
        let Some(p) = procs.get_mut(id) else {
            return (Response::error("process vanished"), Vec::new());
        };
        let mut out = running(p, &launch);
        let Launch {
            pid,
            run,
            run_seq,
            failures: [out_failure, err_failure],
        } = launch;
        let (name, command, port) = (p.name.clone(), p.spec.command.clone(), p.spec.port);
        let url = p.url(proxy_port);
        procs.set_pid(id, pid as i32);
        // The last stream's failure is the one told (stderr's, then stdout's).
        if let Some(msg) = err_failure.or(out_failure) {
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
        let started = Change::new("started").pid(pid);
        let change = match annotation {
            Some(note) => started.detail(note.trim_start_matches("[agent-procs] ")),
            None => started,
        };
        out.push(Action::Emit { proc: id, change });
        out.push(Action::RunStarted {
            proc: id,
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

/// `p` runs `launch` now: its pid, group, run and start time, and the
/// lifecycle's step to running.
fn running(p: &mut super::procs::Proc, launch: &Launch) -> Vec<Action> {
    let pid = launch.pid;
    p.pid = pid;
    p.pgid = pid as i32;
    p.started_wall = SystemTime::now();
    p.run = launch.run;
    p.run_seq = launch.run_seq;
    p.start_ticks = crate::sys::start_ticks(pid);
    p.port_conflict = None;
    p.cpu_sample = None;
    let now = Instant::now();
    let (state, out) = lifecycle::on(p, Event::Started { pid, now });
    p.state = state;
    out
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
    use crate::daemon::procs::State;
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
        annotate(&mut procs, ProcId(id.0 + 1), &mut clock, "lost");
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

    /// `web` in a table, and `runs` as `launch` leaves it for `begin`: pid
    /// 900123, run 4 from sequence 10, and `failure` on stdout if any.
    fn launched(runs: &mut Runs, failure: Option<&str>) -> (ProcTable, ProcId) {
        let mut procs = ProcTable::default();
        let id = procs.allocate_id();
        procs.insert(super::super::procs::Proc::new(id, "web".into(), spec()));
        runs.launching = Some(Ok(Launch {
            pid: 900_123,
            run: 4,
            run_seq: 10,
            failures: [failure.map(str::to_string), None],
        }));
        (procs, id)
    }

    #[test]
    fn a_run_begins_recorded_and_announced_in_that_order() {
        let dir = Dir::new("begin");
        let mut runs = Runs::new(paths(&dir.0));
        let (mut procs, id) = launched(&mut runs, None);
        let note = "[agent-procs] Restarted (manual)";
        let (response, actions) = runs.begin(&mut procs, id, Some(note), None);
        assert!(
            matches!(response, Response::RunOk { pid: 900_123, .. }),
            "{response:?}"
        );
        assert!(
            matches!(
                &actions[..],
                [
                    Action::Note(_),
                    Action::SaveStateNow,
                    Action::Emit { change, .. },
                    Action::RunStarted { annotation: Some(a), .. },
                ] if a == note
                    && change.event == "started"
                    && change.pid == Some(900_123)
                    && change.detail.as_deref() == Some("Restarted (manual)")
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
        let (mut procs, id) = launched(&mut runs, Some("opening log x: denied"));
        let (response, actions) = runs.begin(&mut procs, id, None, None);
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

    #[test]
    fn a_pipe_the_loop_cannot_watch_leaves_its_stream_out_and_fails_the_run() {
        let dir = Dir::new("unwatchable");
        let mut runs = Runs::new(paths(&dir.0));
        // stdout's sink failed to open, then stderr's pipe could not be watched:
        // the last stream's failure is the one told, as when both were one loop.
        let (mut procs, id) = launched(&mut runs, Some("opening log x: denied"));
        let [_, err] = runs.open_sinks("web", &spec(), None, &mut Default::default());
        procs.get_mut(id).unwrap().outputs[1] = Some(Output {
            pipe: None,
            token: UNWATCHED,
            sink: err.unwrap(),
            grown: false,
        });
        let full = io::Error::from_raw_os_error(libc::ENOSPC);
        runs.unwatchable(&mut procs, id, Stream::Stderr, &full);
        assert!(procs.get(id).unwrap().outputs[1].is_none(), "left out");
        let (response, actions) = runs.begin(&mut procs, id, None, None);
        let Response::Error { message, .. } = response else {
            panic!("the run should fail: {response:?}");
        };
        assert!(
            message.starts_with("watching the output of web: "),
            "{message}"
        );
        assert!(matches!(
            actions[0],
            Action::KillGroup { pgid: 900_123, .. }
        ));
    }

    #[test]
    fn a_start_that_could_not_spawn_or_find_its_process_is_an_error() {
        let dir = Dir::new("nospawn");
        let mut runs = Runs::new(paths(&dir.0));
        let mut procs = ProcTable::default();
        let id = procs.allocate_id();
        let spec = Spec {
            cwd: dir.0.join("gone"),
            ..spec()
        };
        procs.insert(super::super::procs::Proc::new(id, "web".into(), spec));
        let mut clock = logs::index::SeqClock::default();
        let actions = runs.launch(&mut procs, id, None, false, &mut clock);
        // The lifecycle's step for a failed spawn: noted and a `failed` event.
        assert!(
            matches!(&actions[..], [Action::Note(_), Action::Emit { change, .. }] if change.event == "failed"),
            "{actions:?}"
        );
        assert!(matches!(procs.get(id).unwrap().state, State::Failed { .. }));
        let (response, after) = runs.begin(&mut procs, id, None, None);
        assert!(matches!(response, Response::Error { .. }), "{response:?}");
        assert!(after.is_empty());
        // No such process: nothing is launched and `begin` says so.
        assert!(
            runs.launch(&mut procs, ProcId(id.0 + 1), None, false, &mut clock)
                .is_empty()
        );
        let (response, _) = runs.begin(&mut procs, ProcId(id.0 + 1), None, None);
        assert!(
            matches!(response, Response::Error { message, .. } if message.contains("vanished"))
        );
    }
}
