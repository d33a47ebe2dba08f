//! The follow component: `logs --follow` clients, what each follows, the
//! replay of its tail from the files, live lines (one by one or gathered in
//! batches), run-start markers, and its end (line count, deadline, the
//! process gone for good). It owns the follows; it reads the process table
//! and the log files, and returns what to send as actions.

use super::action::Action;
use super::ids::ClientId;
use super::output;
use super::procs::{self, Proc, ProcId, ProcTable, STREAMS};
use super::supervise;
use super::timers::Timer;
use super::waits::Pattern;
use crate::logs;
use crate::protocol::{Request, Response, Stream};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// A `logs --follow` in progress on a client.
struct Follow {
    target: Option<ProcId>,
    stderr: bool,
    all: bool,
    remaining: Option<usize>,
    /// Both streams (`--both`), whatever `stderr` and `all` say.
    both: bool,
    /// Only lines that match (`--grep`).
    grep: Option<Pattern>,
    /// Tells this follow's deadline apart from an earlier follow's on the same client.
    generation: u64,
    /// The client takes live lines in batches; the batch being gathered.
    chunked: bool,
    batch: Option<Batch>,
    /// Runs the replay covers (0: all) and, when set, run starts are marked.
    runs: Option<u64>,
}

/// Live lines of one process and stream gathered for one `LogChunk`.
struct Batch {
    process: String,
    stream: Stream,
    text: String,
    lines: u64,
}

impl Batch {
    fn into_action(self, client: ClientId) -> Action {
        Action::FollowSend {
            client,
            lines: self.lines,
            response: Response::LogChunk {
                process: self.process,
                stream: self.stream,
                lines: self.text,
            },
        }
    }
}

/// Where a follow request's process stands, as the loop found it.
pub struct Found<'a> {
    /// The one process followed (None: all of them).
    pub target: Option<ProcId>,
    /// That process has exited for good and all its output is read.
    pub finished: bool,
    pub procs: &'a ProcTable,
    pub log_dir: &'a Path,
}

impl Found<'_> {
    /// What a follow of `target` (None: all) finds in `procs`.
    pub fn of<'a>(target: Option<ProcId>, procs: &'a ProcTable, log_dir: &'a Path) -> Found<'a> {
        let finished = target.is_some_and(|id| procs.get(id).is_some_and(output::finished));
        Found {
            target,
            finished,
            procs,
            log_dir,
        }
    }
}

/// The follows in progress, by client.
#[derive(Default)]
pub struct Followers {
    follows: HashMap<ClientId, Follow>,
    generation: u64,
}

impl Followers {
    pub fn is_empty(&self) -> bool {
        self.follows.is_empty()
    }

    /// Whether someone follows this stream of process `id` (its lines must be split out).
    pub fn wants(&self, id: ProcId, stream: Stream) -> bool {
        self.follows
            .values()
            .any(|f| f.target.is_none_or(|t| t == id) && follow_wants(f, stream))
    }

    /// `logs --follow`: replay the tail and go live in the same turn (no gap,
    /// no duplicate); end at once when nothing more can come.
    pub fn request(
        &mut self,
        client: ClientId,
        request: Request,
        found: &Found,
        now: Instant,
    ) -> Vec<Action> {
        let Request::Logs {
            tail,
            stderr,
            all,
            timeout_secs,
            lines,
            both,
            grep,
            regex,
            ignore_case,
            chunked,
            runs,
            ..
        } = request
        else {
            return Vec::new();
        };
        let grep = match grep
            .as_deref()
            .map(|g| Pattern::new(g, regex, ignore_case))
            .transpose()
        {
            Ok(g) => g,
            Err(msg) => {
                let response = Response::error(msg);
                return vec![Action::Reply { client, response }];
            }
        };
        self.generation += 1;
        let follow = Follow {
            target: found.target,
            stderr,
            both,
            all: all || found.target.is_none(),
            remaining: lines,
            generation: self.generation,
            grep,
            chunked,
            batch: None,
            runs,
        };
        let mut actions = Vec::new();
        if tail > 0 {
            replay(client, &follow, tail, found, &mut actions);
        }
        actions.push(Action::Busy { client });
        if let Some(secs) = timeout_secs {
            let generation = follow.generation;
            actions.push(Action::Arm {
                at: now + Duration::from_secs(secs),
                timer: Timer::FollowDeadline { client, generation },
            });
        }
        self.follows.insert(client, follow);
        if lines == Some(0) || found.finished {
            actions.extend(self.end(client));
        }
        actions
    }

    /// End the follow of `client`: what is gathered, then the end.
    pub fn end(&mut self, client: ClientId) -> Vec<Action> {
        let Some(mut follow) = self.follows.remove(&client) else {
            return Vec::new();
        };
        let mut actions = Vec::with_capacity(3);
        if let Some(batch) = follow.batch.take() {
            actions.push(batch.into_action(client));
        }
        actions.push(Action::NoteLost { client }); // before the end, not after it
        actions.push(Action::ReplyLater {
            client,
            response: Response::LogEnd,
        });
        actions
    }

    /// The follow deadline armed for `generation` on `client` passed.
    pub fn on_deadline(&mut self, client: ClientId, generation: u64) -> Vec<Action> {
        match self.follows.get(&client) {
            Some(f) if f.generation == generation => self.end(client),
            _ => Vec::new(),
        }
    }

    /// A line of `stream` of process `id` (named `name`): sent to each follower
    /// that wants it, or added to its batch. What to send goes into `out`, which
    /// the loop reuses for every line of one read.
    pub fn on_line(
        &mut self,
        id: ProcId,
        name: &str,
        stream: Stream,
        line: &[u8],
        out: &mut Vec<Action>,
    ) {
        let mut text: Option<String> = None;
        let mut finished = Vec::new();
        for (client, follow) in self.follows.iter_mut() {
            if follow.target.is_some_and(|t| t != id)
                || !follow_wants(follow, stream)
                || follow.grep.as_ref().is_some_and(|g| !g.matches(line))
            {
                continue;
            }
            if follow.chunked {
                let same = follow
                    .batch
                    .as_ref()
                    .is_some_and(|b| b.process == name && b.stream == stream);
                if !same && let Some(batch) = follow.batch.take() {
                    out.push(batch.into_action(*client));
                }
                let batch = follow.batch.get_or_insert_with(|| Batch {
                    process: name.to_string(),
                    stream,
                    text: String::new(),
                    lines: 0,
                });
                if batch.lines > 0 {
                    batch.text.push('\n');
                }
                batch.text.push_str(&String::from_utf8_lossy(line));
                batch.lines += 1;
            } else {
                let line = text
                    .get_or_insert_with(|| String::from_utf8_lossy(line).into_owned())
                    .clone();
                out.push(Action::FollowSend {
                    client: *client,
                    lines: 1,
                    response: Response::LogLine {
                        process: name.to_string(),
                        stream,
                        line,
                    },
                });
            }
            if let Some(left) = follow.remaining.as_mut() {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    finished.push(*client);
                }
            }
        }
        for client in finished {
            out.extend(self.end(client));
        }
    }

    /// Send the batches gathered and write out what followers were sent: once
    /// per burst of output, not per line.
    pub fn flush(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        for (client, follow) in self.follows.iter_mut() {
            if let Some(batch) = follow.batch.take() {
                actions.push(batch.into_action(*client));
            }
            actions.push(Action::Flush { client: *client });
        }
        actions
    }

    /// Whether a follower of process `id` asked for run markers.
    pub fn wants_marks(&self, id: ProcId) -> bool {
        self.follows.values().any(|f| marks(f, id))
    }

    /// A run of process `id` began: when a follower asked for run markers, it
    /// is told, with how the previous run ended (read from `procs`, or from the
    /// run journal in `log_dir` when that run was under an earlier daemon).
    pub fn on_run_began(&mut self, procs: &ProcTable, id: ProcId, log_dir: &Path) -> Vec<Action> {
        if !self.wants_marks(id) {
            return Vec::new();
        }
        let Some(p) = procs.get(id) else {
            return Vec::new();
        };
        let marker = run_marker(p, log_dir);
        self.on_run_start(id, &p.name, &marker)
    }

    /// A run of `name` began: followers that asked for run markers are told,
    /// after what came before.
    pub fn on_run_start(&mut self, id: ProcId, name: &str, marker: &str) -> Vec<Action> {
        let mut actions = Vec::new();
        for (client, follow) in self.follows.iter_mut() {
            if !marks(follow, id) {
                continue;
            }
            if let Some(batch) = follow.batch.take() {
                actions.push(batch.into_action(*client)); // what came before goes first
            }
            actions.push(Action::FollowSend {
                client: *client,
                lines: 1,
                response: Response::LogLine {
                    process: name.to_string(),
                    stream: marker_stream(follow),
                    line: marker.to_string(),
                },
            });
        }
        actions
    }

    /// Process `id` is gone for good and its output drained: its followers are done.
    pub fn on_output_finished(&mut self, id: ProcId) -> Vec<Action> {
        let followers: Vec<ClientId> = self
            .follows
            .iter()
            .filter(|(_, f)| f.target == Some(id))
            .map(|(c, _)| *c)
            .collect();
        followers.into_iter().flat_map(|c| self.end(c)).collect()
    }

    pub fn drop_client(&mut self, client: ClientId) {
        self.follows.remove(&client);
    }
}

/// The marker line for the run of `p` that just began.
pub fn run_marker(p: &Proc, log_dir: &Path) -> String {
    let previous = match p.sup.exits.back() {
        Some(exit) => logs::runs::Previous::Ended(supervise::ended(exit)),
        None if p.run <= 1 => logs::runs::Previous::None,
        // Its last run was under an earlier daemon: the journal knows.
        None => logs::runs::from_journal(&logs::runs::read(log_dir, Some(&p.name)))
            .pop()
            .map_or(logs::runs::Previous::Unknown, |r| r.previous),
    };
    let run = logs::runs::Run {
        number: Some(p.run),
        seq: p.run_seq,
        start_ms: Some(logs::index::now_ms()),
        pid: Some(p.pid),
        previous,
        journal: true,
    };
    logs::runs::marker(&run)
}

fn marks(follow: &Follow, id: ProcId) -> bool {
    follow.runs.is_some() && follow.target.is_none_or(|t| t == id)
}

/// The last `tail` lines (or matches) a follower asked for, from the files,
/// in arrival order and up to the last complete line of each stream.
fn replay(client: ClientId, follow: &Follow, tail: usize, found: &Found, out: &mut Vec<Action>) {
    let (sources, histories) = replay_sources(follow, found);
    let filter = |line: &[u8]| follow.grep.as_ref().is_none_or(|g| g.matches(line));
    let plain = follow.grep.as_ref().and_then(Pattern::literal);
    let query = logs::query::Query {
        tail: Some(tail),
        since: logs::query::Since::Everything,
        after: None,
        grep: follow
            .grep
            .as_ref()
            .map(|_| &filter as logs::query::LineFilter<'_>),
        plain,
        context: 0,
    };
    let lines = logs::query::run(&sources, &query).unwrap_or_default();
    let marks = logs::runs::marks(
        &lines,
        |i| sources.get(i).map(|s| s.process.as_str()),
        &histories,
    );
    for (line, mark) in lines.into_iter().zip(marks) {
        let Some(source) = sources.get(line.source) else {
            continue;
        };
        for run in mark.starts {
            out.push(Action::Reply {
                client,
                response: Response::LogLine {
                    process: source.process.clone(),
                    stream: marker_stream(follow),
                    line: logs::runs::marker(run),
                },
            });
        }
        out.push(Action::Reply {
            client,
            response: Response::LogLine {
                process: source.process.clone(),
                stream: source.stream,
                line: String::from_utf8_lossy(&line.bytes).into_owned(),
            },
        });
    }
}

/// The log files a replay reads, each with the floor of the runs it covers,
/// and the run histories of the processes whose earlier runs it covers.
fn replay_sources(
    follow: &Follow,
    found: &Found,
) -> (
    Vec<logs::query::Source>,
    HashMap<String, logs::runs::History>,
) {
    let ids = match follow.target {
        Some(id) => vec![id],
        None => found.procs.ids(),
    };
    let mut sources = Vec::new();
    let mut histories = HashMap::new();
    for id in ids {
        let Some(p) = found.procs.get(id) else {
            continue;
        };
        let first = sources.len();
        for stream in STREAMS {
            let Some(output) = &p.outputs[procs::stream_index(stream)] else {
                continue;
            };
            if !follow_wants(follow, stream) {
                continue;
            }
            let limit = Some(output.sink.complete_len());
            if let Ok(mut source) =
                logs::query::Source::open_limited(&p.name, stream, &output.sink.path, limit)
            {
                // The replay covers the current run, as `logs` does by default.
                source.floor = logs::query::Floor::Seq(p.run_seq);
                sources.push(source);
            }
        }
        // Earlier runs too: their starts come from the run journal.
        if let Some(n) = follow.runs.filter(|&n| n != 1) {
            let mine: Vec<&logs::query::Source> = sources[first..].iter().collect();
            let history = logs::runs::History::load(found.log_dir, &p.name, &mine);
            let floor = history.floor((n > 0).then_some(n as usize));
            for source in &mut sources[first..] {
                source.floor = floor;
            }
            histories.insert(p.name.clone(), history);
        }
    }
    (sources, histories)
}

/// The stream a run marker is sent as: one the follower shows, unmarked.
fn marker_stream(follow: &Follow) -> Stream {
    if follow_wants(follow, Stream::Stdout) {
        Stream::Stdout
    } else {
        Stream::Stderr
    }
}

fn follow_wants(follow: &Follow, stream: Stream) -> bool {
    if follow.both {
        return true;
    }
    // 0.6's rule: --stderr shows stderr; a single process shows stdout; --all shows both.
    match stream {
        Stream::Stderr => follow.stderr || (follow.all && follow.target.is_none()),
        Stream::Stdout => !follow.stderr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(lines: Option<usize>, chunked: bool) -> Request {
        Request::Logs {
            target: Some("api".into()),
            tail: 0,
            follow: true,
            stderr: false,
            all: false,
            timeout_secs: Some(5),
            lines,
            both: false,
            grep: None,
            regex: false,
            ignore_case: false,
            chunked,
            runs: None,
        }
    }

    fn follow(f: &mut Followers, client: usize, request: Request, finished: bool) -> Vec<Action> {
        let procs = ProcTable::default();
        let found = Found {
            target: Some(ProcId(7)),
            finished,
            procs: &procs,
            log_dir: Path::new("/nonexistent"),
        };
        f.request(ClientId(client), request, &found, Instant::now())
    }

    fn sent(actions: &[Action]) -> Vec<(usize, String)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::FollowSend {
                    client,
                    response: Response::LogLine { line, .. },
                    lines: 1,
                } => Some((client.0, line.clone())),
                Action::FollowSend {
                    client,
                    response: Response::LogChunk { lines, .. },
                    ..
                } => Some((client.0, format!("chunk:{lines}"))),
                _ => None,
            })
            .collect()
    }

    fn ended(actions: &[Action]) -> Vec<usize> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::ReplyLater {
                    client,
                    response: Response::LogEnd,
                } => Some(client.0),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_follower_gets_the_lines_of_its_process_and_stream_until_its_count() {
        let mut f = Followers::default();
        let actions = follow(&mut f, 1, logs(Some(2), false), false);
        assert!(matches!(
            actions[0],
            Action::Busy {
                client: ClientId(1)
            }
        ));
        assert!(matches!(
            actions[1],
            Action::Arm {
                timer: Timer::FollowDeadline {
                    client: ClientId(1),
                    ..
                },
                ..
            }
        ));
        assert!(f.wants(ProcId(7), Stream::Stdout));
        assert!(
            !f.wants(ProcId(7), Stream::Stderr),
            "one process: stdout only, as 0.6"
        );
        assert!(!f.wants(ProcId(8), Stream::Stdout));
        let mut out = Vec::new();
        f.on_line(ProcId(8), "db", Stream::Stdout, b"other", &mut out);
        f.on_line(ProcId(7), "api", Stream::Stderr, b"err", &mut out);
        assert!(out.is_empty());
        f.on_line(ProcId(7), "api", Stream::Stdout, b"one", &mut out);
        f.on_line(ProcId(7), "api", Stream::Stdout, b"two", &mut out);
        f.on_line(ProcId(7), "api", Stream::Stdout, b"three", &mut out);
        assert_eq!(sent(&out), vec![(1, "one".into()), (1, "two".into())]);
        assert_eq!(ended(&out), vec![1]);
        // The lost-lines note goes just before the end.
        let end = out.len() - 1;
        assert!(matches!(
            out[end - 1],
            Action::NoteLost {
                client: ClientId(1)
            }
        ));
        assert!(f.is_empty());
    }

    #[test]
    fn a_chunked_follower_gets_batches_when_the_burst_is_flushed() {
        let mut f = Followers::default();
        follow(&mut f, 2, logs(None, true), false);
        let mut out = Vec::new();
        for line in [&b"a"[..], b"b", b"c"] {
            f.on_line(ProcId(7), "api", Stream::Stdout, line, &mut out);
        }
        assert!(out.is_empty(), "gathered, not sent per line");
        let flushed = f.flush();
        assert_eq!(sent(&flushed), vec![(2, "chunk:a\nb\nc".into())]);
        assert!(matches!(
            flushed[1],
            Action::Flush {
                client: ClientId(2)
            }
        ));
        assert!(
            matches!(&f.flush()[..], [Action::Flush { .. }]),
            "nothing new"
        );
    }

    #[test]
    fn a_follow_ends_at_its_deadline_or_when_its_process_is_gone_or_at_once() {
        let mut f = Followers::default();
        let first = follow(&mut f, 1, logs(None, false), false);
        let Some(Action::Arm {
            timer: Timer::FollowDeadline { generation, .. },
            ..
        }) = first.get(1)
        else {
            panic!("{first:?}");
        };
        let generation = *generation;
        // A new follow on the same client: the old deadline is stale.
        f.end(ClientId(1));
        follow(&mut f, 1, logs(None, false), false);
        assert!(f.on_deadline(ClientId(1), generation).is_empty());
        assert_eq!(ended(&f.on_deadline(ClientId(1), generation + 1)), vec![1]);

        follow(&mut f, 3, logs(None, false), false);
        assert!(f.on_output_finished(ProcId(8)).is_empty());
        assert_eq!(ended(&f.on_output_finished(ProcId(7))), vec![3]);

        assert_eq!(ended(&follow(&mut f, 4, logs(None, false), true)), vec![4]);
        assert_eq!(
            ended(&follow(&mut f, 5, logs(Some(0), false), false)),
            vec![5]
        );
        assert!(f.is_empty());
    }

    #[test]
    fn run_markers_go_only_to_followers_that_asked_after_what_came_before() {
        let mut f = Followers::default();
        follow(&mut f, 1, logs(None, false), false);
        let mut marked = logs(None, true);
        if let Request::Logs { runs, .. } = &mut marked {
            *runs = Some(1);
        }
        follow(&mut f, 2, marked, false);
        assert!(f.wants_marks(ProcId(7)));
        assert!(!f.wants_marks(ProcId(8)));
        let mut out = Vec::new();
        f.on_line(ProcId(7), "api", Stream::Stdout, b"last words", &mut out);
        let actions = f.on_run_start(ProcId(7), "api", "--- run 2 ---");
        assert_eq!(
            sent(&actions),
            vec![(2, "chunk:last words".into()), (2, "--- run 2 ---".into())]
        );
    }

    #[test]
    fn a_run_start_is_marked_only_when_a_follower_asked_and_the_process_exists() {
        let mut f = Followers::default();
        let procs = ProcTable::default();
        let log_dir = Path::new("/nonexistent");
        follow(&mut f, 1, logs(None, false), false);
        assert!(f.on_run_began(&procs, ProcId(7), log_dir).is_empty());
        let mut marked = logs(None, true);
        if let Request::Logs { runs, .. } = &mut marked {
            *runs = Some(1);
        }
        follow(&mut f, 2, marked, false);
        // Asked for, but the process is gone from the table: nothing to mark.
        assert!(f.on_run_began(&procs, ProcId(7), log_dir).is_empty());
    }

    #[test]
    fn a_bad_grep_is_refused_and_nothing_is_followed() {
        let mut f = Followers::default();
        let mut bad = logs(None, false);
        if let Request::Logs { grep, regex, .. } = &mut bad {
            *grep = Some("(".into());
            *regex = true;
        }
        let actions = follow(&mut f, 1, bad, false);
        assert!(matches!(
            &actions[..],
            [Action::Reply {
                client: ClientId(1),
                response: Response::Error { .. }
            }]
        ));
        assert!(f.is_empty());
        f.drop_client(ClientId(1));
    }

    #[test]
    fn a_followed_process_is_finished_once_it_exited_and_its_pipes_are_read() {
        let mut procs = ProcTable::default();
        let id = procs.allocate_id();
        let spec = crate::daemon::spec::Spec::for_test("x");
        procs.insert(Proc::new(id, "api".into(), spec));
        let dir = Path::new("/nonexistent");
        if let Some(p) = procs.get_mut(id) {
            p.state = procs::State::Running {
                pid: 42,
                since: Instant::now(),
            };
        }
        assert!(!Found::of(Some(id), &procs, dir).finished, "running");
        if let Some(p) = procs.get_mut(id) {
            p.state = procs::State::Exited {
                exit: crate::daemon::signals::Exit::Code(0),
            };
        }
        assert!(Found::of(Some(id), &procs, dir).finished);
        // Following every process never ends on its own.
        let all = Found::of(None, &procs, dir);
        assert!(all.target.is_none() && !all.finished);
    }
}
