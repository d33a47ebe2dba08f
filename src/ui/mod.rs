//! `agent-procs ui`: a terminal UI on raw termios and ANSI escapes, with a mio
//! loop of its own in the CLI process. Sources: stdin, self-pipes for SIGWINCH,
//! SIGTERM, SIGINT and SIGHUP, and daemon connections (status, the event stream,
//! the follow stream of all output, one per command sent). Frames are coalesced
//! to at most one per `FRAME`; pure modules decide what to show and do.

mod conn;
mod history;
mod input;
mod label;
mod model;
mod render;
mod sanitize;
mod screen;
mod style;
mod term;

use crate::client::Conn;
use crate::error::{Context, Error, Result};
use crate::paths::SessionPaths;
use crate::protocol::{Request, Response};
use conn::LineConn;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use model::{Action, Fetch, Link, Model};
use std::collections::HashMap;
use std::io::{self, Read};
use std::time::{Duration, Instant};

const STDIN: Token = Token(0);
const WINCH: Token = Token(1);
const SIGTERM: Token = Token(2);
const SIGINT: Token = Token(3);
const SIGHUP: Token = Token(4);
const STATUS: Token = Token(5);
const EVENTS: Token = Token(6);
const FOLLOW: Token = Token(7);
/// Command connections count up from here, never reused.
const FIRST_REQUEST: usize = 16;

/// At most one frame per this span; a burst of output makes one redraw.
const FRAME: Duration = Duration::from_millis(33);
/// How long an ESC waits for the rest of a sequence before it is the Esc key.
const ESC_WAIT: Duration = Duration::from_millis(30);
/// At most one Status request per this span, however fast events come.
const STATUS_GAP: Duration = Duration::from_millis(100);
/// Status poll period when the daemon has no event stream (older daemons).
const POLL: Duration = Duration::from_secs(1);
const RECONNECT: Duration = Duration::from_millis(500);
/// How long the daemon may stay unreachable before the UI gives up.
const GIVE_UP: Duration = Duration::from_secs(5);
/// Output bytes taken per loop turn, so keys stay responsive under a torrent.
const FOLLOW_BUDGET: usize = 1 << 20;

pub const NOT_A_TTY: &str = "ui needs a terminal (stdin and stdout must be a TTY); \
use 'agent-procs status' or 'agent-procs logs --follow' instead";

/// How the loop ended.
enum Exit {
    Quit,
    Shutdown,
    Signal(i32),
}

pub fn run(session: &str) -> Result<i32> {
    if !term::is_tty(libc::STDIN_FILENO) || !term::is_tty(libc::STDOUT_FILENO) {
        eprintln!("agent-procs: {NOT_A_TTY}");
        return Err(Error::Silent(64));
    }
    let paths = SessionPaths::new(session)?;
    // The UI reads log files itself: the checks `logs` makes first.
    crate::paths::check_state_dirs(&paths)?;
    // Fail before touching the terminal when there is no daemon, and have the
    // processes for the first frame.
    let mut conn = Conn::open(&paths, false)?;
    conn.send(&crate::client::plain_status())?;
    let processes = match conn.recv(Some(Duration::from_secs(10)))? {
        Response::Status { processes, .. } => processes,
        Response::Error { code, message } => {
            return Err(crate::client::daemon_error(code, message));
        }
        other => return crate::client::unexpected(other),
    };
    drop(conn);
    let mut ui = Ui::new(paths)?;
    let actions = ui.model.set_status(processes);
    ui.act(actions)?;
    let guard = term::Guard::enter().context(|| "setting up the terminal".into())?;
    let result = ui.run();
    drop(guard);
    match result? {
        Exit::Quit => Ok(0),
        Exit::Signal(sig) => Ok(128 + sig),
        Exit::Shutdown => {
            let mut conn = Conn::open(&ui.paths, false)?;
            conn.send(&Request::Shutdown)?;
            match conn.recv(Some(Duration::from_secs(60)))? {
                Response::Error { code, message } => {
                    Err(crate::client::daemon_error(code, message))
                }
                _ => Ok(0),
            }
        }
    }
}

fn signal_pipe(signal: libc::c_int) -> io::Result<mio::net::UnixStream> {
    let (read, write) = std::os::unix::net::UnixStream::pair()?;
    read.set_nonblocking(true)?;
    signal_hook::low_level::pipe::register(signal, write)?;
    Ok(mio::net::UnixStream::from_std(read))
}

fn drain(pipe: &mut mio::net::UnixStream) {
    let mut buf = [0u8; 64];
    loop {
        match pipe.read(&mut buf) {
            Ok(n) if n > 0 => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}

fn line(request: &Request) -> Vec<u8> {
    let mut out = serde_json::to_vec(request).unwrap_or_default();
    out.push(b'\n');
    out
}

struct Ui {
    paths: SessionPaths,
    poll: Poll,
    model: Model,
    screen: screen::Screen,
    parser: input::Parser,
    signals: Vec<(Token, mio::net::UnixStream, i32)>,
    status: Option<LineConn>,
    /// A Status request is in flight; `status_again`: another is wanted after it.
    status_busy: bool,
    status_again: bool,
    /// When the last Status was sent, and when the next one may go.
    status_sent: Instant,
    status_due: Option<Instant>,
    events: Option<LineConn>,
    /// The daemon has no event stream: poll Status instead.
    polling: bool,
    follow: Option<LineConn>,
    /// The follow stream had more than one turn's budget waiting.
    follow_more: bool,
    requests: HashMap<Token, LineConn>,
    next_token: usize,
    dirty: bool,
    last_frame: Instant,
    esc_due: Option<Instant>,
    poll_due: Option<Instant>,
    reconnect_due: Option<Instant>,
    lost_at: Option<Instant>,
}

impl Ui {
    fn new(paths: SessionPaths) -> Result<Ui> {
        let poll = Poll::new().context(|| "creating the event loop".into())?;
        let (cols, rows) = term::size();
        let mut ui = Ui {
            paths,
            poll,
            model: Model::new(cols, rows),
            screen: screen::Screen::default(),
            parser: input::Parser::default(),
            signals: Vec::new(),
            status: None,
            status_busy: false,
            status_again: false,
            status_sent: Instant::now(),
            status_due: None,
            events: None,
            polling: false,
            follow: None,
            follow_more: false,
            requests: HashMap::new(),
            next_token: FIRST_REQUEST,
            dirty: true,
            last_frame: Instant::now(),
            esc_due: None,
            poll_due: None,
            reconnect_due: None,
            lost_at: None,
        };
        let registry = ui.poll.registry();
        registry
            .register(
                &mut SourceFd(&libc::STDIN_FILENO),
                STDIN,
                Interest::READABLE,
            )
            .context(|| "watching the terminal".into())?;
        for (token, sig) in [
            (WINCH, libc::SIGWINCH),
            (SIGTERM, libc::SIGTERM),
            (SIGINT, libc::SIGINT),
            (SIGHUP, libc::SIGHUP),
        ] {
            let mut pipe = signal_pipe(sig).context(|| "catching signals".into())?;
            registry
                .register(&mut pipe, token, Interest::READABLE)
                .context(|| "catching signals".into())?;
            ui.signals.push((token, pipe, sig));
        }
        ui.connect()
            .context(|| format!("connecting to {}", ui.paths.socket.display()))?;
        Ok(ui)
    }

    /// Open the status, event and follow connections.
    fn connect(&mut self) -> io::Result<()> {
        let mut status = LineConn::open(&self.paths, &line(&crate::client::plain_status()))?;
        let follow_request = Request::Logs {
            target: None,
            tail: 0,
            follow: true,
            stderr: false,
            all: true,
            timeout_secs: None,
            lines: None,
            both: true,
            grep: None,
            regex: false,
            ignore_case: false,
            chunked: true,
            runs: None,
        };
        let mut follow = LineConn::open(&self.paths, &line(&follow_request))?;
        let mut events = LineConn::open(&self.paths, b"{\"type\":\"Events\"}\n")?;
        let both = Interest::READABLE | Interest::WRITABLE;
        let registry = self.poll.registry();
        registry.register(&mut status.stream, STATUS, both)?;
        registry.register(&mut follow.stream, FOLLOW, both)?;
        registry.register(&mut events.stream, EVENTS, both)?;
        self.status = Some(status);
        self.status_busy = true;
        self.follow = Some(follow);
        self.events = Some(events);
        self.polling = false;
        self.poll_due = None;
        self.model.link = Link::Up;
        self.lost_at = None;
        self.reconnect_due = None;
        Ok(())
    }

    /// A daemon connection broke: drop them all and try again shortly.
    fn lost(&mut self) {
        for conn in [self.status.take(), self.events.take(), self.follow.take()]
            .into_iter()
            .flatten()
        {
            let mut conn = conn;
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        self.status_busy = false;
        self.follow_more = false;
        self.model.link = Link::Down;
        self.lost_at.get_or_insert_with(Instant::now);
        self.reconnect_due = Some(Instant::now() + RECONNECT);
        self.dirty = true;
    }

    fn run(&mut self) -> Result<Exit> {
        let mut events = Events::with_capacity(64);
        self.draw()?;
        // Debug builds only: lets tests/ui.rs check the terminal survives a panic.
        #[cfg(debug_assertions)]
        if std::env::var_os("AGENT_PROCS_UI_TEST_PANIC").is_some() {
            panic!("test panic requested by AGENT_PROCS_UI_TEST_PANIC");
        }
        loop {
            let now = Instant::now();
            let due = [
                self.esc_due,
                self.status_due,
                self.poll_due,
                self.reconnect_due,
                self.dirty.then_some(self.last_frame + FRAME),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = if self.follow_more {
                Some(Duration::ZERO)
            } else {
                due.map(|d| d.saturating_duration_since(now))
            };
            match self.poll.poll(&mut events, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other.context(|| "waiting for events".into())?,
            }
            for event in events.iter() {
                if let Some(exit) = self.dispatch(event.token())? {
                    return Ok(exit);
                }
            }
            if self.follow_more {
                self.follow_more = false;
                self.read_follow();
            }
            if let Some(exit) = self.timers()? {
                return Ok(exit);
            }
            if self.dirty && Instant::now() >= self.last_frame + FRAME {
                self.draw()?;
            }
        }
    }

    fn dispatch(&mut self, token: Token) -> Result<Option<Exit>> {
        match token {
            STDIN => {
                let mut bytes = Vec::new();
                let eof = term::read_stdin(&mut bytes).context(|| "reading the terminal".into())?;
                let inputs = self.parser.feed(&bytes);
                self.esc_due = self.parser.waiting().then(|| Instant::now() + ESC_WAIT);
                let exit = self.inputs(inputs)?;
                if eof {
                    return Ok(Some(Exit::Quit));
                }
                return Ok(exit);
            }
            WINCH => {
                self.drain_signal(WINCH);
                let (cols, rows) = term::size();
                let actions = self.model.resize(cols, rows);
                self.screen.invalidate();
                self.act(actions)?;
                self.draw()?; // at once, whatever the frame budget says
            }
            SIGTERM | SIGINT | SIGHUP => {
                let sig = self
                    .signals
                    .iter()
                    .find(|s| s.0 == token)
                    .map_or(libc::SIGTERM, |s| s.2);
                return Ok(Some(Exit::Signal(sig)));
            }
            STATUS => self.read_status(),
            EVENTS => self.read_events(),
            FOLLOW => self.read_follow(),
            token => self.read_reply(token),
        }
        Ok(None)
    }

    fn drain_signal(&mut self, token: Token) {
        if let Some((_, pipe, _)) = self.signals.iter_mut().find(|s| s.0 == token) {
            drain(pipe);
        }
    }

    fn inputs(&mut self, inputs: Vec<input::Input>) -> Result<Option<Exit>> {
        for input in inputs {
            let actions = self.model.input(input);
            if let Some(exit) = self.act(actions)? {
                return Ok(Some(exit));
            }
            self.dirty = true;
        }
        // Keys show at once; only output bursts wait for the frame budget.
        if self.dirty {
            self.draw()?;
        }
        Ok(None)
    }

    fn timers(&mut self) -> Result<Option<Exit>> {
        let now = Instant::now();
        if self.esc_due.is_some_and(|d| d <= now) {
            self.esc_due = None;
            let inputs = self.parser.flush();
            if let Some(exit) = self.inputs(inputs)? {
                return Ok(Some(exit));
            }
        }
        if self.status_due.is_some_and(|d| d <= now) {
            self.status_due = None;
            self.request_status();
        }
        if self.poll_due.is_some_and(|d| d <= now) {
            self.poll_due = Some(now + POLL);
            self.request_status();
        }
        if self.reconnect_due.is_some_and(|d| d <= now) {
            self.reconnect_due = None;
            if self.connect().is_err() {
                if self
                    .lost_at
                    .is_some_and(|t| now.duration_since(t) > GIVE_UP)
                {
                    return Err(Error::Failed(format!(
                        "the daemon of session '{}' went away",
                        self.paths.session
                    )));
                }
                self.reconnect_due = Some(now + RECONNECT);
            } else {
                let actions = self.model.resize(self.model.cols, self.model.rows);
                self.act(actions)?;
                self.dirty = true;
            }
        }
        Ok(None)
    }

    /// Carry out the model's actions.
    fn act(&mut self, actions: Vec<Action>) -> Result<Option<Exit>> {
        for action in actions {
            match action {
                Action::Fetch(fetch) => self.fetch(fetch),
                Action::Send(request) => self.send(&request),
                Action::Repaint => {
                    self.screen.invalidate();
                    self.dirty = true;
                }
                Action::Quit { shutdown: false } => return Ok(Some(Exit::Quit)),
                Action::Quit { shutdown: true } => return Ok(Some(Exit::Shutdown)),
            }
        }
        Ok(None)
    }

    fn fetch(&mut self, fetch: Fetch) {
        let Some(name) = self.model.selected_name().map(str::to_string) else {
            self.model.lines.clear();
            return;
        };
        let view = history::View {
            name: &name,
            mode: self.model.stream,
            filter: self.model.filter.as_ref().map(|f| &f.pattern),
        };
        let rows = self.model.pane_rows();
        match history::fetch(&self.paths, &view, fetch, rows) {
            Ok((page, end)) => self.model.fetched(fetch, page, end),
            Err(e) => {
                self.model.message = Some(format!(
                    "reading the logs of {name}: {}",
                    crate::error::describe_io(&e)
                ))
            }
        }
        self.dirty = true;
    }

    fn send(&mut self, request: &Request) {
        let token = Token(self.next_token);
        self.next_token += 1;
        match LineConn::open(&self.paths, &line(request)) {
            Ok(mut conn) => {
                let both = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .register(&mut conn.stream, token, both)
                    .is_ok()
                {
                    self.requests.insert(token, conn);
                }
            }
            Err(e) => {
                self.model.message = Some(format!(
                    "sending to the daemon: {}",
                    crate::error::describe_io(&e)
                ))
            }
        }
        self.dirty = true;
    }

    fn request_status(&mut self) {
        if self.status_busy {
            self.status_again = true;
            return;
        }
        let next = self.status_sent + STATUS_GAP;
        if Instant::now() < next {
            self.status_due = Some(next);
            return;
        }
        let Some(conn) = self.status.as_mut() else {
            return;
        };
        self.status_sent = Instant::now();
        conn.queue(&line(&crate::client::plain_status()));
        if conn.flush().is_err() {
            return self.lost();
        }
        self.status_busy = true;
        self.status_again = false;
    }

    fn read_status(&mut self) {
        let Some(conn) = self.status.as_mut() else {
            return;
        };
        let mut replies = Vec::new();
        let mut more = false;
        let result = conn.flush().and_then(|()| {
            conn.read_lines(usize::MAX, &mut more, |l| {
                replies.push(serde_json::from_slice::<Response>(l))
            })
        });
        for reply in replies {
            self.status_busy = false;
            if let Ok(Response::Status { processes, .. }) = reply {
                let actions = self.model.set_status(processes);
                let _ = self.act(actions);
                self.dirty = true;
            }
        }
        if !matches!(result, Ok(false)) {
            return self.lost();
        }
        if self.status_again {
            self.request_status();
        }
    }

    fn read_events(&mut self) {
        let Some(conn) = self.events.as_mut() else {
            return;
        };
        let mut changed = false;
        let mut refused = false;
        let mut more = false;
        let result = conn.flush().and_then(|()| {
            conn.read_lines(usize::MAX, &mut more, |l| {
                match serde_json::from_slice::<Response>(l) {
                    // An older daemon: no event stream.
                    Ok(Response::Error { .. }) => refused = true,
                    _ => changed = true,
                }
            })
        });
        if refused {
            if let Some(mut conn) = self.events.take() {
                let _ = self.poll.registry().deregister(&mut conn.stream);
            }
            self.polling = true;
            self.poll_due = Some(Instant::now() + POLL);
            return;
        }
        if changed {
            self.request_status();
        }
        if !matches!(result, Ok(false)) {
            self.lost();
        }
    }

    fn read_follow(&mut self) {
        let Some(conn) = self.follow.as_mut() else {
            return;
        };
        let model = &mut self.model;
        let mut ended = false;
        let mut more = false;
        let result = conn.flush().and_then(|()| {
            conn.read_lines(FOLLOW_BUDGET, &mut more, |l| {
                match serde_json::from_slice::<Response>(l) {
                    Ok(Response::LogChunk {
                        process,
                        stream,
                        lines,
                    }) => model.output(&process, stream, &lines),
                    Ok(Response::LogLine {
                        process,
                        stream,
                        line,
                    }) => model.output(&process, stream, &line),
                    Ok(Response::LogEnd) | Ok(Response::Error { .. }) => ended = true,
                    _ => {}
                }
            })
        });
        self.follow_more = more;
        if self.model.stale || self.model.unseen > 0 {
            self.dirty = true;
        }
        if ended || !matches!(result, Ok(false)) {
            self.lost();
        }
    }

    fn read_reply(&mut self, token: Token) {
        let Some(conn) = self.requests.get_mut(&token) else {
            return; // a late event for a closed request
        };
        let mut reply = None;
        let mut more = false;
        let result = conn.flush().and_then(|()| {
            conn.read_lines(usize::MAX, &mut more, |l| {
                reply.get_or_insert(serde_json::from_slice::<Response>(l));
            })
        });
        let done = reply.is_some() || !matches!(result, Ok(false));
        match reply {
            Some(Ok(Response::Error { message, .. })) => self.model.message = Some(message),
            Some(Ok(Response::Ok { message })) => self.model.message = Some(message),
            Some(Ok(Response::RunOk { name, pid, .. })) => {
                self.model.message = Some(format!("{name} started (pid {pid})"))
            }
            _ => {}
        }
        if done {
            if let Some(mut conn) = self.requests.remove(&token) {
                let _ = self.poll.registry().deregister(&mut conn.stream);
            }
            self.request_status();
            self.dirty = true;
        }
    }

    fn draw(&mut self) -> Result<()> {
        let actions = self.model.tick();
        self.act(actions)?;
        let frame = render::render(&self.model);
        let out = self.screen.update(&frame);
        if !out.is_empty() {
            term::write_out(out.as_bytes()).context(|| "writing to the terminal".into())?;
        }
        self.dirty = false;
        self.last_frame = Instant::now();
        Ok(())
    }
}
