//! The UI's state machine: keys, mouse, daemon replies and fetched log pages go
//! in, the new state and the actions for the loop (read a page, send a request,
//! quit) come out. Pure: no terminal, no sockets, no files.

use super::input::{Input, Key};
use crate::logs::pattern::Pattern;
use crate::logs::query::Position;
use crate::protocol::{ProcessInfo, Request, Stream};

/// Which of the selected process's streams the output pane shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    Stdout,
    Stderr,
    Both,
}

impl StreamMode {
    pub fn name(self) -> &'static str {
        match self {
            StreamMode::Stdout => "stdout",
            StreamMode::Stderr => "stderr",
            StreamMode::Both => "both",
        }
    }

    pub fn wants(self, stream: Stream) -> bool {
        match self {
            StreamMode::Both => true,
            StreamMode::Stdout => stream == Stream::Stdout,
            StreamMode::Stderr => stream == Stream::Stderr,
        }
    }

    pub fn streams(self) -> &'static [Stream] {
        match self {
            StreamMode::Stdout => &[Stream::Stdout],
            StreamMode::Stderr => &[Stream::Stderr],
            StreamMode::Both => &[Stream::Stdout, Stream::Stderr],
        }
    }
}

/// One line of the output pane: sanitized text (SGR only) and where it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PaneLine {
    pub stream: Stream,
    pub text: String,
    pub pos: Position,
}

/// A page of lines the loop should read from the log files for the selection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fetch {
    /// The last lines (live view).
    Tail,
    /// Matching lines after a position, the newest of them (live view with a filter).
    Newer(Position),
    Before(Position, usize),
    After(Option<Position>, usize),
}

/// What the loop must do after an update. Actions are few and short-lived, so
/// the size of `Send` costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Fetch(Fetch),
    Send(Request),
    /// Write every cell again (something else drew on the terminal).
    Repaint,
    Quit {
        shutdown: bool,
    },
}

/// The output pane's filter, as typed and compiled.
pub struct Filter {
    pub text: String,
    pub regex: bool,
    pub pattern: Pattern,
}

/// What keys are going to.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    /// Typing a filter.
    Filter {
        text: String,
        regex: bool,
    },
    Help,
}

/// The daemon connection as the status bar reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Link {
    Up,
    /// Lost; reconnecting.
    Down,
}

pub struct Model {
    pub procs: Vec<ProcessInfo>,
    pub selected: usize,
    /// First process shown in the list; moved only as far as keeps the selection visible.
    pub list_top: usize,
    pub stream: StreamMode,
    pub filter: Option<Filter>,
    pub mode: Mode,
    /// The output pane's lines, oldest first; at most `pane_rows()`.
    pub lines: Vec<PaneLine>,
    /// Following new output (else paused, scrolled back).
    pub live: bool,
    /// With a filter, live: the newest position searched so far.
    pub searched_to: Option<Position>,
    /// Lines that arrived for the selection while paused.
    pub unseen: u64,
    /// Live output arrived for the selection; the loop refreshes at the next frame.
    pub stale: bool,
    pub message: Option<String>,
    pub link: Link,
    pub cols: u16,
    pub rows: u16,
}

/// Lines one wheel notch scrolls.
const WHEEL: usize = 3;

impl Model {
    pub fn new(cols: u16, rows: u16) -> Model {
        Model {
            procs: Vec::new(),
            selected: 0,
            list_top: 0,
            stream: StreamMode::Stdout,
            filter: None,
            mode: Mode::Normal,
            lines: Vec::new(),
            live: true,
            searched_to: None,
            unseen: 0,
            stale: false,
            message: None,
            link: Link::Up,
            cols,
            rows,
        }
    }

    /// Rows of the output pane (and the process list): all but header and status bar.
    pub fn pane_rows(&self) -> usize {
        (self.rows as usize).saturating_sub(2).max(1)
    }

    pub fn selected_name(&self) -> Option<&str> {
        self.procs.get(self.selected).map(|p| p.name.as_str())
    }

    /// Width of the process list, separator excluded.
    pub fn list_width(&self) -> usize {
        let widest = self
            .procs
            .iter()
            .map(|p| super::label::proc_label(p).chars().count() + 2)
            .max()
            .unwrap_or(0);
        widest.clamp(16, (self.cols as usize / 2).max(16))
    }

    /// Scroll the list as little as keeps the selection in view and the list full.
    fn keep_visible(&mut self) {
        let rows = self.pane_rows();
        let last_top = self.procs.len().saturating_sub(rows);
        self.list_top = self
            .list_top
            .min(self.selected)
            .max((self.selected + 1).saturating_sub(rows))
            .min(last_top);
    }

    pub fn resize(&mut self, cols: u16, rows: u16) -> Vec<Action> {
        self.cols = cols;
        self.rows = rows;
        self.keep_visible();
        let rows = self.pane_rows();
        if self.live {
            return self.go_live();
        }
        match self.lines.first() {
            // Keep the top line where it is and fill the new height.
            Some(first) => {
                let before = Position {
                    seq: first.pos.seq,
                    delta: first.pos.delta,
                };
                self.lines.truncate(rows);
                let last = self.lines.last().map(|l| l.pos).unwrap_or(before);
                vec![Action::Fetch(Fetch::After(
                    Some(last),
                    rows - self.lines.len(),
                ))]
            }
            None => self.go_live(),
        }
    }

    /// New process table from a `Status` reply; the selection follows its name.
    pub fn set_status(&mut self, mut procs: Vec<ProcessInfo>) -> Vec<Action> {
        let before = self.selected_name().map(str::to_string);
        procs.sort_by(|a, b| id_order(&a.id).cmp(&id_order(&b.id)));
        self.procs = procs;
        let found = before
            .as_deref()
            .and_then(|name| self.procs.iter().position(|p| p.name == name));
        match found {
            Some(i) => {
                self.selected = i;
                self.keep_visible();
                Vec::new()
            }
            None => {
                self.selected = self.selected.min(self.procs.len().saturating_sub(1));
                self.select(self.selected, true)
            }
        }
    }

    /// Output arrived (from the daemon's follow stream).
    pub fn output(&mut self, process: &str, stream: Stream, lines: &str) {
        if self.selected_name() != Some(process) || !self.stream.wants(stream) {
            return;
        }
        if self.live {
            self.stale = true;
            return;
        }
        let count = match &self.filter {
            None => lines.split('\n').count(),
            Some(f) => lines
                .split('\n')
                .filter(|l| f.pattern.matches(l.as_bytes()))
                .count(),
        };
        self.unseen += count as u64;
    }

    /// The frame is about to be drawn: refresh the live view if output came.
    pub fn tick(&mut self) -> Vec<Action> {
        if !(self.stale && self.live) {
            return Vec::new();
        }
        self.stale = false;
        match (&self.filter, self.searched_to) {
            (Some(_), Some(pos)) => vec![Action::Fetch(Fetch::Newer(pos))],
            _ => vec![Action::Fetch(Fetch::Tail)],
        }
    }

    /// A page the loop read for `fetch`; `end` is the newest position in the
    /// files when it read (for `Tail` and `Newer`).
    pub fn fetched(&mut self, fetch: Fetch, mut page: Vec<PaneLine>, end: Option<Position>) {
        let rows = self.pane_rows();
        match fetch {
            Fetch::Tail => {
                let skip = page.len().saturating_sub(rows);
                page.drain(..skip);
                self.lines = page;
                self.searched_to = end;
            }
            Fetch::Newer(_) => {
                self.searched_to = match (end, page.last().map(|l| l.pos)) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b).or(self.searched_to),
                };
                // The page starts at the last line searched: a line shown already
                // is replaced (it may have been completed), not shown twice.
                let shown = self.lines.last().map(|l| l.pos);
                for line in page {
                    match shown {
                        Some(pos) if line.pos < pos => {}
                        Some(pos) if line.pos == pos => {
                            if let Some(last) = self.lines.last_mut() {
                                *last = line;
                            }
                        }
                        _ => self.lines.push(line),
                    }
                }
                let skip = self.lines.len().saturating_sub(rows);
                self.lines.drain(..skip);
            }
            Fetch::Before(_, _) => {
                page.append(&mut self.lines);
                page.truncate(rows);
                self.lines = page;
            }
            Fetch::After(from, want) => {
                let short = page.len() < want;
                if from.is_none() {
                    self.lines.clear();
                }
                self.lines.append(&mut page);
                let skip = self.lines.len().saturating_sub(rows);
                self.lines.drain(..skip);
                // Scrolled into the newest lines (and the page is full): live again.
                if short && from.is_some() {
                    self.live = true;
                    self.unseen = 0;
                    self.stale = true;
                }
            }
        }
    }

    pub fn input(&mut self, input: Input) -> Vec<Action> {
        let rows = self.pane_rows();
        let list_cols = self.list_width() as u16;
        match input {
            Input::Key(key) => self.key(key),
            Input::WheelUp { col, .. } if col < list_cols => self.select_prev(),
            Input::WheelDown { col, .. } if col < list_cols => self.select_next(),
            Input::WheelUp { .. } => self.scroll_up(WHEEL),
            Input::WheelDown { .. } => self.scroll_down(WHEEL),
            Input::Click { col, row } if col < list_cols && row >= 1 => {
                let i = self.list_top + row as usize - 1;
                if (row as usize) <= rows && i < self.procs.len() {
                    self.select(i, false)
                } else {
                    Vec::new()
                }
            }
            Input::Click { .. } => Vec::new(),
        }
    }

    fn key(&mut self, key: Key) -> Vec<Action> {
        match &mut self.mode {
            Mode::Help => {
                self.mode = Mode::Normal;
                return match key {
                    Key::Char('q') => vec![Action::Quit { shutdown: false }],
                    _ => Vec::new(),
                };
            }
            Mode::Filter { .. } => return self.filter_key(key),
            Mode::Normal => {}
        }
        self.message = None;
        let rows = self.pane_rows();
        let half = (rows / 2).max(1);
        match key {
            Key::Char('j') | Key::Down => self.select_next(),
            Key::Char('k') | Key::Up => self.select_prev(),
            Key::Char('e') => {
                self.stream = match self.stream {
                    StreamMode::Stdout => StreamMode::Stderr,
                    StreamMode::Stderr => StreamMode::Both,
                    StreamMode::Both => StreamMode::Stdout,
                };
                self.go_live()
            }
            Key::Char(' ') if self.live => {
                self.live = false;
                self.unseen = 0;
                Vec::new()
            }
            Key::Char(' ') | Key::Char('L') | Key::Char('G') | Key::End => self.go_live(),
            Key::Char('u') => self.scroll_up(half),
            Key::Char('d') => self.scroll_down(half),
            Key::PageUp => self.scroll_up(rows),
            Key::PageDown => self.scroll_down(rows),
            Key::Char('g') | Key::Home => {
                self.live = false;
                self.unseen = 0;
                vec![Action::Fetch(Fetch::After(None, rows))]
            }
            Key::Char('/') => {
                let (text, regex) = self
                    .filter
                    .as_ref()
                    .map_or((String::new(), false), |f| (f.text.clone(), f.regex));
                self.mode = Mode::Filter { text, regex };
                Vec::new()
            }
            Key::Esc if self.filter.is_some() => {
                self.filter = None;
                self.go_live()
            }
            Key::Char('?') => {
                self.mode = Mode::Help;
                Vec::new()
            }
            Key::Char('r') => self.on_selected("restarting", |target| Request::Restart { target }),
            Key::Char('s') => self.start_selected(),
            Key::Char('x') => self.on_selected("stopping", |target| Request::Stop {
                target,
                timeout_ms: None,
            }),
            Key::Char('X') => {
                self.message = Some("stopping all processes".into());
                vec![Action::Send(Request::StopAll { timeout_ms: None })]
            }
            Key::Ctrl('l') => vec![Action::Repaint],
            Key::Char('q') | Key::Ctrl('c') => vec![Action::Quit { shutdown: false }],
            Key::Char('Q') => vec![Action::Quit { shutdown: true }],
            _ => Vec::new(),
        }
    }

    /// A key while the filter is being typed: edit it, switch regex, apply it
    /// (Enter) or leave it as it was (Esc).
    fn filter_key(&mut self, key: Key) -> Vec<Action> {
        let Mode::Filter { text, regex } = &mut self.mode else {
            return Vec::new();
        };
        match key {
            Key::Char(c) => text.push(c),
            Key::Backspace => {
                text.pop();
            }
            Key::Tab => *regex = !*regex,
            Key::Enter => {
                let (text, regex) = (text.clone(), *regex);
                return self.apply_filter(text, regex);
            }
            Key::Esc | Key::Ctrl('c') => self.mode = Mode::Normal,
            _ => {}
        }
        Vec::new()
    }

    fn apply_filter(&mut self, text: String, regex: bool) -> Vec<Action> {
        self.mode = Mode::Normal;
        if text.is_empty() {
            self.filter = None;
            return self.go_live();
        }
        match Pattern::new(&text, regex, false) {
            Ok(pattern) => {
                self.filter = Some(Filter {
                    text,
                    regex,
                    pattern,
                });
                self.go_live()
            }
            Err(e) => {
                self.message = Some(format!("bad filter: {e}"));
                Vec::new()
            }
        }
    }

    fn on_selected(&mut self, verb: &str, make: impl FnOnce(String) -> Request) -> Vec<Action> {
        let Some(name) = self.selected_name().map(str::to_string) else {
            return Vec::new();
        };
        self.message = Some(format!("{verb} {name}"));
        vec![Action::Send(make(name))]
    }

    /// `s`: start a process that is not running, with its own settings (a restart
    /// of a stopped process starts it).
    fn start_selected(&mut self) -> Vec<Action> {
        match self.procs.get(self.selected) {
            Some(p) if matches!(p.state.as_str(), "running" | "stopping") => {
                self.message = Some(format!("{} is already {}", p.name, p.state));
                Vec::new()
            }
            Some(_) => self.on_selected("starting", |target| Request::Restart { target }),
            None => Vec::new(),
        }
    }

    fn select_next(&mut self) -> Vec<Action> {
        if self.procs.is_empty() {
            return Vec::new();
        }
        self.select((self.selected + 1) % self.procs.len(), false)
    }

    fn select_prev(&mut self) -> Vec<Action> {
        if self.procs.is_empty() {
            return Vec::new();
        }
        let n = self.procs.len();
        self.select((self.selected + n - 1) % n, false)
    }

    fn select(&mut self, i: usize, force: bool) -> Vec<Action> {
        if i == self.selected && !force {
            return Vec::new();
        }
        self.selected = i;
        self.keep_visible();
        self.lines.clear();
        self.go_live()
    }

    fn go_live(&mut self) -> Vec<Action> {
        self.live = true;
        self.unseen = 0;
        self.stale = false;
        self.searched_to = None;
        vec![Action::Fetch(Fetch::Tail)]
    }

    fn scroll_up(&mut self, n: usize) -> Vec<Action> {
        let Some(first) = self.lines.first() else {
            return Vec::new();
        };
        if self.live {
            self.live = false;
            self.unseen = 0;
        }
        vec![Action::Fetch(Fetch::Before(first.pos, n))]
    }

    fn scroll_down(&mut self, n: usize) -> Vec<Action> {
        if self.live {
            return Vec::new();
        }
        match self.lines.last() {
            Some(last) => vec![Action::Fetch(Fetch::After(Some(last.pos), n))],
            None => self.go_live(),
        }
    }

    /// Counts for the status bar: running, exited, failed.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for p in &self.procs {
            match p.state.as_str() {
                "running" | "stopping" | "backoff" => c.0 += 1,
                "failed" => c.2 += 1,
                _ => c.1 += 1,
            }
        }
        c
    }
}

/// `p2` before `p10`; other ids after, by text.
fn id_order(id: &str) -> (u64, &str) {
    let n = id.strip_prefix('p').and_then(|n| n.parse().ok());
    (n.unwrap_or(u64::MAX), id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(name: &str, id: &str, state: &str) -> ProcessInfo {
        ProcessInfo {
            name: name.into(),
            id: id.into(),
            state: state.into(),
            ..ProcessInfo::default()
        }
    }

    fn line(seq: u64, text: &str) -> PaneLine {
        PaneLine {
            stream: Stream::Stdout,
            text: text.into(),
            pos: Position { seq, delta: 0 },
        }
    }

    fn model() -> Model {
        let mut m = Model::new(80, 6); // 4 pane rows
        m.set_status(vec![
            proc("web", "p2", "running"),
            proc("api", "p1", "running"),
            proc("db", "p10", "exited"),
        ]);
        m
    }

    fn key(m: &mut Model, k: Key) -> Vec<Action> {
        m.input(Input::Key(k))
    }

    #[test]
    fn processes_are_listed_by_id_and_selection_follows_the_name() {
        let mut m = model();
        let names: Vec<&str> = m.procs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["api", "web", "db"]);
        key(&mut m, Key::Char('j'));
        assert_eq!(m.selected_name(), Some("web"));
        m.set_status(vec![
            proc("zz", "p0", "running"),
            proc("web", "p2", "running"),
        ]);
        assert_eq!(m.selected_name(), Some("web"));
    }

    #[test]
    fn keys_to_actions_table() {
        let cases: &[(&[Key], Vec<Action>)] = &[
            (&[Key::Char('j')], vec![Action::Fetch(Fetch::Tail)]),
            (&[Key::Up], vec![Action::Fetch(Fetch::Tail)]),
            (&[Key::Char('e')], vec![Action::Fetch(Fetch::Tail)]),
            (
                &[Key::Char('r')],
                vec![Action::Send(Request::Restart {
                    target: "api".into(),
                })],
            ),
            (&[Key::Char('s')], vec![]),
            (
                &[Key::Char('k'), Key::Char('s')],
                vec![Action::Send(Request::Restart {
                    target: "db".into(),
                })],
            ),
            (
                &[Key::Char('x')],
                vec![Action::Send(Request::Stop {
                    target: "api".into(),
                    timeout_ms: None,
                })],
            ),
            (
                &[Key::Char('X')],
                vec![Action::Send(Request::StopAll { timeout_ms: None })],
            ),
            (&[Key::Char('q')], vec![Action::Quit { shutdown: false }]),
            (&[Key::Ctrl('c')], vec![Action::Quit { shutdown: false }]),
            (&[Key::Char('Q')], vec![Action::Quit { shutdown: true }]),
            (&[Key::Ctrl('l')], vec![Action::Repaint]),
            (
                &[Key::Char('g')],
                vec![Action::Fetch(Fetch::After(None, 4))],
            ),
            (&[Key::Char('?'), Key::Char('j')], vec![]),
            (&[Key::Char('/'), Key::Char('q')], vec![]),
            (
                &[Key::Char('/'), Key::Char('x'), Key::Enter],
                vec![Action::Fetch(Fetch::Tail)],
            ),
            (
                &[Key::Char('/'), Key::Char('('), Key::Tab, Key::Enter],
                vec![],
            ),
        ];
        for (keys, want) in cases {
            let mut m = model();
            let mut got = Vec::new();
            for &k in *keys {
                got = key(&mut m, k);
            }
            assert_eq!(&got, want, "{keys:?}");
        }
    }

    #[test]
    fn stream_mode_cycles_stdout_stderr_both() {
        let mut m = model();
        let mut seen = vec![m.stream];
        for _ in 0..3 {
            key(&mut m, Key::Char('e'));
            seen.push(m.stream);
        }
        use StreamMode::*;
        assert_eq!(seen, [Stdout, Stderr, Both, Stdout]);
    }

    #[test]
    fn scrolling_back_pauses_and_scrolling_past_the_end_goes_live() {
        let mut m = model();
        m.fetched(Fetch::Tail, (10..16).map(|i| line(i, "x")).collect(), None);
        assert_eq!(m.lines.len(), 4);
        assert_eq!(m.lines[0].pos.seq, 12);
        let up = key(&mut m, Key::Char('u'));
        assert_eq!(
            up,
            vec![Action::Fetch(Fetch::Before(
                Position { seq: 12, delta: 0 },
                2
            ))]
        );
        assert!(!m.live);
        m.fetched(
            Fetch::Before(Position::default(), 2),
            vec![line(10, "a"), line(11, "b")],
            None,
        );
        let seqs: Vec<u64> = m.lines.iter().map(|l| l.pos.seq).collect();
        assert_eq!(seqs, [10, 11, 12, 13]);
        // Output while paused is counted, not shown.
        m.output("api", Stream::Stdout, "one\ntwo");
        assert_eq!(m.unseen, 2);
        assert!(m.tick().is_empty());
        let down = key(&mut m, Key::Char('d'));
        assert_eq!(
            down,
            vec![Action::Fetch(Fetch::After(
                Some(Position { seq: 13, delta: 0 }),
                2
            ))]
        );
        m.fetched(
            Fetch::After(Some(Position::default()), 2),
            vec![line(14, "c")],
            None,
        );
        assert!(m.live);
        assert_eq!(m.tick(), vec![Action::Fetch(Fetch::Tail)]);
    }

    #[test]
    fn live_output_for_the_selection_refreshes_once_per_frame() {
        let mut m = model();
        m.output("web", Stream::Stdout, "not selected");
        m.output("api", Stream::Stderr, "other stream");
        assert!(m.tick().is_empty());
        m.output("api", Stream::Stdout, "a");
        m.output("api", Stream::Stdout, "b");
        assert_eq!(m.tick(), vec![Action::Fetch(Fetch::Tail)]);
        assert!(m.tick().is_empty());
    }

    #[test]
    fn a_filtered_live_view_reads_only_newer_lines() {
        let mut m = model();
        key(&mut m, Key::Char('/'));
        key(&mut m, Key::Char('x'));
        key(&mut m, Key::Enter);
        m.fetched(
            Fetch::Tail,
            vec![line(3, "x1")],
            Some(Position { seq: 9, delta: 0 }),
        );
        m.output("api", Stream::Stdout, "x2");
        assert_eq!(
            m.tick(),
            vec![Action::Fetch(Fetch::Newer(Position { seq: 9, delta: 0 }))]
        );
        m.fetched(
            Fetch::Newer(Position::default()),
            vec![line(12, "x2")],
            Some(Position { seq: 11, delta: 0 }),
        );
        assert_eq!(m.searched_to, Some(Position { seq: 12, delta: 0 }));
        assert_eq!(m.lines.len(), 2);
        // The next page starts at the last line searched: replaced, not repeated.
        m.fetched(
            Fetch::Newer(Position::default()),
            vec![line(12, "x2 completed"), line(13, "x3")],
            None,
        );
        let texts: Vec<&str> = m.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["x1", "x2 completed", "x3"]);
        key(&mut m, Key::Esc);
        assert!(m.filter.is_none());
    }

    #[test]
    fn the_list_scrolls_only_as_far_as_the_selection_needs() {
        let mut m = Model::new(80, 6); // 4 rows
        m.set_status(
            (1..=10)
                .map(|i| proc(&format!("p{i}"), &format!("p{i}"), "running"))
                .collect(),
        );
        let mut tops = Vec::new();
        for k in ['j', 'j', 'j', 'j', 'j', 'k', 'k', 'k', 'k', 'k', 'k'] {
            key(&mut m, Key::Char(k));
            tops.push((m.selected, m.list_top));
        }
        assert_eq!(
            tops,
            [
                (1, 0),
                (2, 0),
                (3, 0),
                (4, 1),
                (5, 2),
                (4, 2),
                (3, 2),
                (2, 2),
                (1, 1),
                (0, 0),
                (9, 6)
            ]
        );
    }

    #[test]
    fn mouse_clicks_select_and_the_wheel_scrolls() {
        let mut m = model();
        assert_eq!(
            m.input(Input::Click { col: 2, row: 3 }),
            vec![Action::Fetch(Fetch::Tail)]
        );
        assert_eq!(m.selected_name(), Some("db"));
        assert!(m.input(Input::Click { col: 2, row: 5 }).is_empty());
        m.input(Input::WheelDown { col: 1, row: 1 });
        assert_eq!(m.selected_name(), Some("api"));
        m.fetched(Fetch::Tail, vec![line(1, "a")], None);
        let up = m.input(Input::WheelUp { col: 40, row: 2 });
        assert_eq!(
            up,
            vec![Action::Fetch(Fetch::Before(
                Position { seq: 1, delta: 0 },
                3
            ))]
        );
    }
}
