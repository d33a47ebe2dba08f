//! Reaching the backend: which process a request is for, a kept, pooled or
//! new connection to it, and what a refusal or a closed connection means
//! (wait for a starting process, 502, 503).

use super::super::Lookup;
use super::super::socket::{Socket, refusal};
use super::relay::{Body, Out};
use super::{Backend, Conn, Env, RETRY, Watch, span};
use std::time::Instant;

impl<S: Socket> Conn<S> {
    /// Connect to the process of the current exchange (or wait for it).
    pub(super) fn dial(&mut self, env: &mut Env<S>) {
        let Some(ex) = self.exchange.as_ref() else {
            return;
        };
        // 0.6's words first ("no running process named 'web'"), then ours.
        let (port, starting) = match env.backends.lookup(&ex.name) {
            Lookup::Up(port) => (port, false),
            Lookup::Starting(port) => (port, true),
            Lookup::Soon(why) => return self.wait_for_backend(why),
            Lookup::Down(why) => return self.no_such_process(env, &why),
            Lookup::Unknown => {
                return self
                    .no_such_process(env, "there is no process of that name in this session");
            }
        };
        let reuse = self
            .backend
            .as_ref()
            .is_some_and(|b| b.port == port && b.connected);
        if !reuse {
            self.drop_backend();
            let bodiless = self.exchange.as_ref().is_some_and(|e| e.bodiless);
            if let Some((id, stream)) = env.pool.lend(port, self.id, !bodiless) {
                // It stays registered (readable only) under its token, whose
                // events the proxy now routes here: no system call to take it.
                self.backend = Some(Backend {
                    stream,
                    token_id: id,
                    watch: Watch {
                        registered: Some(false),
                        writes: false,
                    },
                    port,
                    starting,
                    connected: true,
                    reused: true,
                    readable: false,
                    hup: false,
                    carried_body: false,
                });
            } else if !self.connect(port, starting) {
                return;
            }
        }
        if let (Some(ex), Some(b)) = (self.exchange.as_ref(), self.backend.as_mut()) {
            b.carried_body |= ex.carries_body;
            // The head goes first; body bytes follow as they come.
            if self.b_out.len() == 0 {
                self.b_out.push(&ex.head);
            }
        }
    }

    /// Start a new connection to `port`; false when that failed (and was answered).
    pub(super) fn connect(&mut self, port: u16, starting: bool) -> bool {
        let stream = match S::connect(port) {
            Ok(s) => s,
            Err(e) if crate::sys::out_of_descriptors(&e) => {
                // Not the backend's fault: say what is wrong, and do not wait.
                let why = format!(
                    "the proxy is out of file descriptors ({}); try again shortly\n",
                    crate::error::describe_io(&e)
                );
                self.fail_request(503, why);
                return false;
            }
            Err(e) => {
                let name = self.exchange_name();
                let why = format!(
                    "{name} is not accepting connections on 127.0.0.1:{port} ({})",
                    refusal(&e)
                );
                self.refused(starting, why);
                return false;
            }
        };
        self.backend = Some(Backend {
            stream,
            token_id: self.id,
            // Writable tells when the connect completed.
            watch: Watch {
                registered: None,
                writes: true,
            },
            port,
            starting,
            connected: false,
            reused: false,
            readable: true,
            hup: false,
            carried_body: false,
        });
        true
    }

    /// The name of the process the current request is for (for messages).
    pub(super) fn exchange_name(&self) -> String {
        self.exchange
            .as_ref()
            .map(|e| e.name.clone())
            .unwrap_or_default()
    }

    pub(super) fn no_such_process(&mut self, env: &mut Env<S>, why: &str) {
        let name = self.exchange_name();
        let body = format!(
            "no running process named '{name}': {why}\n\n{}",
            super::super::routes_page(&env.backends.routes(), env.proxy_port)
        );
        self.fail_request(502, body);
    }

    pub(super) fn wait_for_backend(&mut self, why: String) {
        let now = Instant::now();
        self.drop_backend();
        let hold = self.limits.hold;
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        if now >= ex.wait_until {
            return self.fail_request(503, format!("{why}; gave up after {}\n", span(hold)));
        }
        ex.why_waiting = why;
        ex.retry_at = Some((now + RETRY).min(ex.wait_until));
    }

    pub(super) fn connect_failed(&mut self, why: String) {
        let (name, port, starting) = match (self.exchange.as_ref(), self.backend.as_ref()) {
            (Some(ex), Some(b)) => (ex.name.clone(), b.port, b.starting),
            _ => {
                self.drop_backend();
                return;
            }
        };
        // Nothing was written: what waits in b_out goes to the next try.
        let why = format!("{name} is not accepting connections on 127.0.0.1:{port} ({why})");
        self.refused(starting, why);
    }

    /// The backend's port refused the connection. A process that is still
    /// starting is waited for (up to 5 s, then 503), and so is one this request
    /// already waits for; one that has been running a while gets 502 at once,
    /// as in 0.6 and nginx.
    pub(super) fn refused(&mut self, starting: bool, why: String) {
        let held = self
            .exchange
            .as_ref()
            .is_some_and(|e| !e.why_waiting.is_empty());
        if starting || held {
            self.wait_for_backend(why);
        } else {
            self.fail_request(502, format!("{why}\n"));
        }
    }

    /// The backend closed (or reset) its connection, or writing to it failed.
    pub(super) fn backend_eof(&mut self, env: &mut Env<S>) {
        let Some(ex) = self.exchange.as_mut() else {
            self.drop_backend();
            return;
        };
        let reused = self.backend.as_ref().is_some_and(|b| b.reused);
        if ex.awaiting_head && !ex.answered && self.b_in.is_empty() {
            if reused && ex.bodiless {
                // A kept connection the backend had closed: try once more on a new one.
                self.drop_backend();
                self.b_out = Out::default();
                self.dial(env);
                return;
            }
            let name = ex.name.clone();
            return self.bad_gateway(format!("{name} closed the connection without answering"));
        }
        if !ex.awaiting_head && matches!(ex.response, Body::UntilClose) {
            ex.response = Body::Done;
            ex.backend_keep_alive = false;
            self.finish_exchange();
            return;
        }
        // Cut off in the middle of a response: the client cannot be told otherwise.
        self.drop_backend();
        self.done = true;
    }
}
