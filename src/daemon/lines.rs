//! Where a child's lines go: the router between the output component and the
//! three that take lines (`up` runs, waits, followers). It decides nothing of
//! its own: it borrows the takers and what they read (the `up` view, the lines
//! the capture kept) for one call, and returns their actions in the order the
//! loop carries them out. The loop builds it (`Daemon::router`) for each read.

use super::action::{Action, OutputAction};
use super::follow::Followers;
use super::output::{self, Capture};
use super::procs::ProcId;
use super::up_run::{Ups, View};
use super::waits::{Subject, Waits};
use crate::protocol::Stream;

/// The takers of lines, borrowed for one read.
pub struct Router<'a> {
    pub waits: &'a mut Waits,
    pub ups: &'a mut Ups,
    pub follow: &'a mut Followers,
    /// What `up` reads; its `procs` names a line's process for followers.
    pub view: View<'a>,
    pub capture: &'a Capture,
}

impl Router<'_> {
    /// Whether anyone looks at the lines of this stream (split them out).
    pub fn wanted(&self, id: ProcId, stream: Stream) -> bool {
        self.waits.any_pattern_for(id) || self.ups.wants_lines(id) || self.follow.wants(id, stream)
    }

    /// After a read: every line the capture kept, then the followers' flush
    /// (once per read), the indexes let go once the last waiter is answered,
    /// then, at end of file, whether the output is finished.
    /// `up` and waits answer line by line; what followers are sent comes after
    /// the last line.
    pub fn after_read(&mut self, id: ProcId, stream: Stream, out: &mut Vec<Action>) {
        let capture = self.capture;
        let waited = self.waits.any_pattern_for(id) || self.ups.wants_lines(id);
        let mut sends = Vec::new();
        let mut any = false;
        for line in capture.lines() {
            any = true;
            self.route(id, stream, line, out, &mut sends);
        }
        out.append(&mut sends);
        if any && !self.follow.is_empty() {
            out.push(Action::Output(OutputAction::FlushFollowers));
        }
        // The last waiter on this process was answered: its indexes close.
        if waited && !self.waits.any_pattern_for(id) && !self.ups.wants_lines(id) {
            out.push(Action::Output(OutputAction::LetGo { proc: id }));
        }
        if capture.ended() {
            out.push(Action::Output(OutputAction::Ended { proc: id }));
        }
    }

    /// One line of ours (a note in the log), delivered like the child's.
    pub fn line(&mut self, id: ProcId, stream: Stream, line: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        let mut sends = Vec::new();
        self.route(id, stream, line, &mut out, &mut sends);
        out.append(&mut sends);
        out
    }

    /// A line goes to `up` runs and waits (their answers into `out`), and to
    /// followers (into `sends`). Nothing is allocated unless someone takes it.
    fn route(
        &mut self,
        id: ProcId,
        stream: Stream,
        line: &[u8],
        out: &mut Vec<Action>,
        sends: &mut Vec<Action>,
    ) {
        if !self.ups.is_empty() {
            out.extend(self.ups.on_line(id, line, &mut self.view));
        }
        out.extend(self.waits.on_line(id, line));
        if self.follow.is_empty() {
            return;
        }
        let name = self.view.procs.get(id).map_or("", |p| p.name.as_str());
        self.follow.on_line(id, name, stream, line, sends);
    }

    /// When process `id` is gone for good and its pipes are drained, waits
    /// for its output can never match and its followers are done.
    pub fn output_finished(&mut self, id: ProcId) -> Vec<Action> {
        let Some(p) = self.view.procs.get(id).filter(|p| output::finished(p)) else {
            return Vec::new();
        };
        let mut actions = self.waits.on_output_finished(&Subject::of(p));
        actions.extend(self.follow.on_output_finished(id));
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::follow::Found;
    use crate::daemon::ids::ClientId;
    use crate::daemon::procs::{Proc, ProcTable, State};
    use crate::daemon::signals::Exit;
    use crate::daemon::spec::Spec;
    use crate::daemon::waits::Ask;
    use crate::protocol::{Request, Response};
    use std::path::Path;
    use std::time::{Duration, Instant};

    /// Process 7, `api`, in `state`, with no log (nothing in its history).
    fn table(state: State) -> ProcTable {
        let mut procs = ProcTable::default();
        let mut p = Proc::new(ProcId(7), "api".into(), Spec::for_test("true"));
        p.state = state;
        procs.insert(p);
        procs
    }

    fn running() -> State {
        State::Running {
            pid: 1,
            since: Instant::now(),
        }
    }

    /// Client 1 waits for `ready` from process 7.
    fn waiting(waits: &mut Waits, procs: &ProcTable) {
        let ask = Ask {
            until: Some("ready".into()),
            regex: false,
            exit: false,
            timeout: Duration::from_secs(5),
        };
        let p = procs
            .get(ProcId(7))
            .unwrap_or_else(|| panic!("no process 7"));
        waits.request(ClientId(1), &Subject::of(p), ask, Instant::now());
    }

    /// Client 2 follows process 7's stdout.
    fn following(follow: &mut Followers, procs: &ProcTable) {
        let request = Request::Logs {
            target: Some("api".into()),
            tail: 0,
            follow: true,
            stderr: false,
            all: false,
            timeout_secs: Some(5),
            lines: None,
            both: false,
            grep: None,
            regex: false,
            ignore_case: false,
            chunked: false,
            runs: None,
        };
        let found = Found {
            target: Some(ProcId(7)),
            finished: false,
            procs,
            log_dir: Path::new("/nonexistent"),
        };
        follow.request(ClientId(2), request, &found, Instant::now());
    }

    /// What `actions` do, in order, in short.
    fn said(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::ReplyLater {
                    client,
                    response: Response::WaitMatch { line },
                } => format!("{} matched {line}", client.0),
                Action::ReplyLater { client, response } => format!("{} end {response:?}", client.0),
                Action::FollowSend {
                    client,
                    response: Response::LogLine { line, .. },
                    ..
                } => format!("{} sent {line}", client.0),
                Action::Output(OutputAction::FlushFollowers) => "flush".into(),
                Action::Output(OutputAction::Ended { proc }) => format!("ended {proc}"),
                Action::Output(OutputAction::LetGo { proc }) => format!("let go {proc}"),
                Action::NoteLost { client } => format!("{} lost", client.0),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// The router over these takers, with an `up` view that asks nothing.
    fn router<'a>(
        waits: &'a mut Waits,
        ups: &'a mut Ups,
        follow: &'a mut Followers,
        procs: &'a mut ProcTable,
        capture: &'a Capture,
    ) -> Router<'a> {
        let view = View {
            procs,
            proxy_port: None,
            home_cwd: Path::new("/"),
            last_try: &|_| None,
            port_conflict: &|_, _| None,
        };
        Router {
            waits,
            ups,
            follow,
            view,
            capture,
        }
    }

    #[test]
    fn waits_answer_line_by_line_and_followers_get_the_read_then_one_flush() {
        let mut procs = table(running());
        let (mut waits, mut ups, mut follow) = Default::default();
        waiting(&mut waits, &procs);
        following(&mut follow, &procs);
        let mut capture = Capture::new(0);
        capture.keep_for_test(&[b"boot", b"ready", b"more"], true);
        let mut router = router(&mut waits, &mut ups, &mut follow, &mut procs, &capture);
        assert!(router.wanted(ProcId(7), Stream::Stdout));
        assert!(
            !router.wanted(ProcId(8), Stream::Stdout),
            "nobody looks at process 8"
        );
        let mut out = Vec::new();
        router.after_read(ProcId(7), Stream::Stdout, &mut out);
        assert_eq!(
            said(&out),
            [
                "1 matched ready",
                "2 sent boot",
                "2 sent ready",
                "2 sent more",
                "flush",
                "let go 7",
                "ended 7"
            ]
        );
        assert!(
            !router.wanted(ProcId(7), Stream::Stderr),
            "the follower takes stdout only"
        );
    }

    #[test]
    fn a_read_nobody_looks_at_costs_no_action() {
        let mut procs = table(running());
        let (mut waits, mut ups, mut follow) = Default::default();
        let mut capture = Capture::new(0);
        capture.keep_for_test(&[], false);
        let mut router = router(&mut waits, &mut ups, &mut follow, &mut procs, &capture);
        assert!(!router.wanted(ProcId(7), Stream::Stdout));
        let mut out = Vec::new();
        router.after_read(ProcId(7), Stream::Stdout, &mut out);
        assert_eq!(out.capacity(), 0, "nothing allocated");
        assert!(
            router
                .line(ProcId(7), Stream::Stdout, b"[agent-procs] note")
                .is_empty()
        );
        assert!(
            router.output_finished(ProcId(7)).is_empty(),
            "still running"
        );
    }

    #[test]
    fn a_finished_process_fails_its_waits_and_ends_its_followers() {
        let running = table(running());
        let (mut waits, mut ups, mut follow) = Default::default();
        waiting(&mut waits, &running);
        following(&mut follow, &running);
        let mut procs = table(State::Exited {
            exit: Exit::Code(1),
        });
        let capture = Capture::new(0);
        let mut router = router(&mut waits, &mut ups, &mut follow, &mut procs, &capture);
        let out = said(&router.output_finished(ProcId(7)));
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(
            out[0].starts_with("1 end") && out[0].contains("never matched 'ready'"),
            "{out:?}"
        );
        assert_eq!(out[1..], ["2 lost", "2 end LogEnd"]);
        assert!(router.output_finished(ProcId(7)).is_empty(), "told once");
    }
}
