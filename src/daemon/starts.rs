//! What a `run` (or an `up` entry) will start, decided over the table before
//! the loop spawns it: refused while the daemon shuts down or while the name
//! runs, the shell's environment shared with the processes that have it, the
//! port behind the proxy kept from the run it replaces (or chosen free), the
//! watch rooted where the process runs; and what follows a restart's start.
//! Pure but for `can_bind`, the probe the loop hands to the port choice.

use super::action::Action;
use super::ids::ClientId;
use super::procs::{ProcId, ProcTable};
use super::resources;
use super::spec::{Context, Planned, Spec};
use super::supervisor;
use super::watch;
use crate::paths::SessionPaths;
use crate::protocol::{Request, Response};
use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::Path;

/// A start the table allows, for the loop to carry out.
#[derive(Debug)]
pub struct Start {
    /// The entry a re-run replaces (None: a new name).
    pub existing: Option<ProcId>,
    pub name: Option<String>,
    pub spec: Spec,
    pub watch: Option<watch::Spec>,
    /// The port the request asked for, which the loop checks is free.
    pub asked_port: Option<u16>,
    /// Behind the proxy with no port asked or kept: a free one is chosen.
    pub choose_port: bool,
    /// The port chosen for a named process, for the loop to remember
    /// (`Persistence::choose_port`).
    pub chosen: Option<(String, u16)>,
    /// Who has the asked-for port, for the run answer's warning.
    pub taken: Option<String>,
}

/// What the daemon is doing when a start is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Now<'a> {
    pub shutting_down: bool,
    /// The proxy listens: a process without a port gets one chosen.
    pub behind_proxy: bool,
    /// The ports chosen before, by name (this daemon's or the last one's).
    pub chosen: &'a BTreeMap<String, u16>,
}

impl<'a> Now<'a> {
    pub fn new(shutting_down: bool, behind_proxy: bool, chosen: &'a BTreeMap<String, u16>) -> Self {
        Now {
            shutting_down,
            behind_proxy,
            chosen,
        }
    }
}

/// Check a `run` request and plan its start (relative and missing `cwd`s
/// resolve in `home_cwd`); refused while shutting down.
pub fn plan(
    request: Request,
    home_cwd: &Path,
    behind_proxy: bool,
    is_shutting_down: bool,
) -> Result<Planned, Box<Response>> {
    if is_shutting_down {
        return Err(Box::new(shutting_down()));
    }
    let ctx = Context {
        home_cwd,
        behind_proxy,
    };
    Spec::from_run(request, &ctx).map_err(|msg| Box::new(Response::error(msg)))
}

/// `prepare`, then a free port for a process behind the proxy that has none
/// (`free` probes a port: `can_bind` in the daemon), and who has the port
/// the request asked for.
pub fn admit(
    procs: &ProcTable,
    paths: &SessionPaths,
    planned: Planned,
    now: Now,
    free: impl FnMut(u16) -> io::Result<bool>,
) -> Result<Start, Box<Response>> {
    let mut start = prepare(procs, planned, now.shutting_down, now.behind_proxy)?;
    let (asked, existing) = (start.asked_port, start.existing);
    if start.choose_port {
        let taken: HashSet<u16> = procs.iter().filter_map(|p| p.spec.port).collect();
        let name = start.name.as_deref();
        let port = choose_port(&taken, now.chosen, name, free).map_err(Response::error)?;
        start.spec.port = Some(port);
        start.chosen = start.name.clone().map(|name| (name, port));
    }
    start.taken = resources::asked_port_taken(procs, paths, asked, existing);
    Ok(start)
}

/// A port of 4000-4999 for process `name` that no process of the session has
/// (`taken`) and nobody listens on (`free`): the one chosen for that name
/// before while it is free, else one not chosen for another name, else any.
/// `free` fails when the daemon is out of descriptors: it is not asked again,
/// and if no port was found that is the error.
pub fn choose_port(
    taken: &HashSet<u16>,
    chosen: &BTreeMap<String, u16>,
    name: Option<&str>,
    mut free: impl FnMut(u16) -> io::Result<bool>,
) -> Result<u16, String> {
    let mut no_fds = None;
    let mut free = |p: u16| {
        if taken.contains(&p) || no_fds.is_some() {
            return false;
        }
        free(p).unwrap_or_else(|e| {
            no_fds = Some(e);
            false
        })
    };
    let before = name.and_then(|n| chosen.get(n).copied());
    let others: HashSet<u16> = (chosen.iter())
        .filter(|(n, _)| Some(n.as_str()) != name)
        .map(|(_, &p)| p)
        .collect();
    let ports = || crate::proxy::BACKEND_PORTS.clone();
    let port = before
        .filter(|&p| free(p))
        .or_else(|| ports().filter(|p| !others.contains(p)).find(|&p| free(p)))
        .or_else(|| ports().find(|&p| free(p)));
    match (port, no_fds) {
        (Some(port), _) => Ok(port),
        (None, Some(e)) => Err(format!(
            "cannot look for a free port for the process: the daemon is out of file \
             descriptors ({}); try again once some connections have closed, or give \
             it a port with --port",
            crate::error::describe_io(&e)
        )),
        (None, None) => {
            Err("no free port in 4000-4999 for the process; give it one with --port".into())
        }
    }
}

/// Whether nobody listens on loopback `port` (binding it tells). An error
/// only when the daemon is out of descriptors and cannot tell.
pub fn can_bind(port: u16) -> io::Result<bool> {
    match std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)) {
        Ok(_) => Ok(true),
        Err(e) if crate::sys::out_of_descriptors(&e) => Err(e),
        Err(_) => Ok(false),
    }
}

/// The answer to a start while the daemon shuts down.
pub fn shutting_down() -> Response {
    Response::error("the daemon is shutting down; run the command again once it has exited")
}

/// Check `planned` against the table and fill in what the table decides.
pub fn prepare(
    procs: &ProcTable,
    planned: Planned,
    is_shutting_down: bool,
    behind_proxy: bool,
) -> Result<Start, Box<Response>> {
    if is_shutting_down {
        return Err(Box::new(shutting_down()));
    }
    let Planned {
        name,
        mut spec,
        watch,
    } = planned;
    let existing = name.as_deref().and_then(|n| procs.by_name(n));
    if let Some(refused) = supervisor::refuse_running(procs, existing) {
        return Err(Box::new(refused));
    }
    supervisor::share_env(procs, &mut spec);
    let asked_port = spec.port;
    let mut choose_port = false;
    if asked_port.is_none() && behind_proxy {
        // A re-run keeps its port, so its URL keeps working.
        let kept = existing
            .and_then(|id| procs.get(id))
            .and_then(|p| p.spec.port);
        spec.port = kept;
        choose_port = kept.is_none();
    }
    let watch = watch.map(|w| watch::Spec {
        root: spec.cwd.clone(),
        patterns: w.patterns,
        ignore: w.ignore,
    });
    Ok(Start {
        existing,
        name,
        spec,
        watch,
        asked_port,
        choose_port,
        chosen: None,
        taken: None,
    })
}

/// A taken port is a warning on a started run, not a refusal (0.6 did not
/// look; the holder may be about to go). Returns the line for daemon.log.
pub fn warn_taken(response: &mut Response, taken: Option<String>) -> Option<String> {
    let (Some(taken), Response::RunOk { name, warning, .. }) = (taken, response) else {
        return None;
    };
    let line = format!("{name}: warning: {taken}");
    *warning = Some(taken);
    Some(line)
}

/// After a start: a new name whose start failed leaves no entry (it never
/// ran: no pipes, no logs), and a taken port is the answer's warning, and
/// a `Note` for daemon.log.
pub fn started(
    procs: &mut ProcTable,
    id: ProcId,
    start_existing: Option<ProcId>,
    response: &mut Response,
    taken: Option<String>,
) -> Vec<Action> {
    if start_existing.is_none() && matches!(response, Response::Error { .. }) {
        procs.remove_unstarted(id);
    }
    warn_taken(response, taken)
        .map(Action::Note)
        .into_iter()
        .collect()
}

/// Why a process starts again, and so what follows its start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Then {
    /// The restart policy or a watch (`counted`: an automatic restart, which
    /// counts against the policy's maximum and is noted).
    Policy { counted: bool },
    /// A `restart` (or a stop-then-restart): answer `reply` if a client asked;
    /// `settled`: it waited for a stop (the client is busy; a start is noted).
    Answer {
        reply: Option<ClientId>,
        settled: bool,
    },
}

/// Before a restart's start: an automatic one counts (even if it fails).
pub fn count_restart(procs: &mut ProcTable, id: ProcId, then: Then) {
    if then == (Then::Policy { counted: true })
        && let Some(p) = procs.get_mut(id)
    {
        p.sup.restarts += 1;
    }
}

/// After a restart's start (`response`, with `note` first in the log): the
/// note for daemon.log, then the answer, as `then` says.
pub fn restarted(
    procs: &ProcTable,
    id: ProcId,
    note: &str,
    then: Then,
    response: Response,
) -> Vec<Action> {
    let name = procs.get(id).map(|p| p.name.as_str()).unwrap_or_default();
    let mut out = Vec::new();
    let pid = match response {
        Response::RunOk { pid, .. } => Some(pid),
        _ => None,
    };
    match (then, pid) {
        (Then::Policy { counted: true }, Some(pid)) => {
            out.push(Action::Note(format!("{name} restarted, pid {pid}: {note}")));
        }
        (Then::Policy { .. }, _) => {}
        (Then::Answer { reply, settled }, _) => {
            if settled && pid.is_some() {
                out.push(Action::Note(format!("{name}: {note}")));
            }
            match reply {
                Some(client) if settled => out.push(Action::ReplyLater { client, response }),
                Some(client) => out.push(Action::Reply { client, response }),
                None => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::procs::{Proc, State};
    use crate::daemon::spec::Watch;
    use std::time::Instant;

    fn spec(port: Option<u16>) -> Spec {
        Spec {
            cwd: "/srv/app".into(),
            port,
            ..Spec::for_test("server")
        }
    }

    /// `api`, exited, which had port 4100; `web`, running.
    fn table() -> ProcTable {
        let mut t = ProcTable::default();
        for (name, running, port) in [("api", false, Some(4100)), ("web", true, None)] {
            let id = t.allocate_id();
            let mut p = Proc::new(id, name.into(), spec(port));
            if running {
                p.pid = 900_000 + id.0;
                p.pgid = p.pid as i32;
                p.state = State::Running {
                    pid: p.pid,
                    since: Instant::now(),
                };
            }
            t.insert(p);
        }
        t
    }

    fn planned(name: &str, port: Option<u16>) -> Planned {
        Planned {
            name: Some(name.into()),
            spec: spec(port),
            watch: None,
        }
    }

    fn refusal(result: Result<Start, Box<Response>>) -> String {
        match result.map_err(|e| *e) {
            Err(Response::Error { message, .. }) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn nothing_starts_while_shutting_down_or_while_the_name_runs() {
        let t = table();
        assert!(refusal(prepare(&t, planned("new", None), true, false)).contains("shutting down"));
        let running = refusal(prepare(&t, planned("web", None), false, false));
        assert!(running.contains("'web' is already running"), "{running}");
    }

    #[test]
    fn behind_the_proxy_a_rerun_keeps_its_port_and_a_new_name_gets_one_chosen() {
        let t = table();
        let rerun = prepare(&t, planned("api", None), false, true).expect("allowed");
        assert_eq!((rerun.spec.port, rerun.choose_port), (Some(4100), false));
        assert_eq!(rerun.existing, t.by_name("api"));
        let new = prepare(&t, planned("new", None), false, true).expect("allowed");
        assert_eq!(
            (new.spec.port, new.choose_port, new.existing),
            (None, true, None)
        );
        // An asked-for port is used as asked, and is the one the loop checks.
        let asked = prepare(&t, planned("api", Some(5000)), false, true).expect("allowed");
        assert_eq!(
            (asked.spec.port, asked.asked_port),
            (Some(5000), Some(5000))
        );
        assert!(!asked.choose_port);
        // Without the proxy nothing is kept or chosen.
        let plain = prepare(&t, planned("api", None), false, false).expect("allowed");
        assert_eq!((plain.spec.port, plain.choose_port), (None, false));
    }

    #[test]
    fn the_watch_is_rooted_where_the_process_runs() {
        let mut p = planned("new", None);
        p.watch = Some(Watch {
            patterns: Vec::new(),
            ignore: Vec::new(),
        });
        let start = prepare(&table(), p, false, false).expect("allowed");
        let root = start.watch.map(|w| w.root);
        assert_eq!(root, Some("/srv/app".into()));
    }

    #[test]
    fn a_taken_port_is_a_warning_on_a_started_run_only() {
        let mut ok = Response::RunOk {
            name: "api".into(),
            id: "p1".into(),
            pid: 42,
            port: Some(3000),
            url: None,
            warning: None,
        };
        let line = warn_taken(&mut ok, Some("port 3000 is already in use".into()));
        assert_eq!(
            line.as_deref(),
            Some("api: warning: port 3000 is already in use")
        );
        assert!(matches!(
            ok,
            Response::RunOk {
                warning: Some(_),
                ..
            }
        ));
        let mut refused = Response::error("no");
        assert_eq!(warn_taken(&mut refused, Some("taken".into())), None);
        assert_eq!(warn_taken(&mut ok, None), None);
    }

    fn ports(list: &[(&str, u16)]) -> BTreeMap<String, u16> {
        list.iter().map(|&(n, p)| (n.to_string(), p)).collect()
    }

    #[test]
    fn a_port_is_chosen_as_before_else_one_nobody_else_had_else_any() {
        let chosen = ports(&[("web", 4002), ("api", 4000)]);
        let none = HashSet::new();
        // (name, ports nobody listens on, taken by the session) -> port.
        type Row = (
            Option<&'static str>,
            &'static [u16],
            &'static [u16],
            Option<u16>,
        );
        let table: &[Row] = &[
            // Its own port again, while it is free.
            (Some("web"), &[4000, 4001, 4002], &[], Some(4002)),
            // Its port is busy: the first not chosen for another name.
            (Some("web"), &[4000, 4001], &[], Some(4001)),
            // A port of the session counts as busy, even if it binds.
            (Some("web"), &[4001, 4002, 4003], &[4002, 4001], Some(4003)),
            // Only ports others had are left: one of theirs.
            (Some("db"), &[4000], &[], Some(4000)),
            // No name: not its own, not another's.
            (None, &[4000, 4001], &[], Some(4001)),
            (Some("db"), &[], &[], None),
        ];
        for &(name, free, taken, want) in table {
            let taken: HashSet<u16> = taken.iter().copied().collect();
            let got = choose_port(&taken, &chosen, name, |p| Ok(free.contains(&p)));
            assert_eq!(
                got.as_ref().ok().copied(),
                want,
                "{name:?} {free:?}: {got:?}"
            );
            if want.is_none() {
                let msg = got.expect_err("no port");
                assert!(msg.starts_with("no free port in 4000-4999"), "{msg}");
            }
        }
        assert_eq!(
            choose_port(&none, &BTreeMap::new(), None, |_| Ok(true)),
            Ok(4000)
        );
    }

    #[test]
    fn out_of_descriptors_the_probe_stops_and_that_is_the_error() {
        let mut asked = Vec::new();
        let got = choose_port(&HashSet::new(), &BTreeMap::new(), Some("web"), |p| {
            asked.push(p);
            if p == 4000 {
                Ok(false)
            } else {
                Err(io::Error::from_raw_os_error(libc::EMFILE))
            }
        });
        let msg = got.expect_err("no descriptors");
        assert!(msg.contains("out of file descriptors"), "{msg}");
        assert!(msg.contains("--port"), "{msg}");
        assert_eq!(asked, [4000, 4001], "not asked again once it failed");
        // A port found before the failure is still the answer.
        let found = choose_port(
            &HashSet::new(),
            &ports(&[("web", 4500)]),
            Some("web"),
            |p| {
                if p == 4500 {
                    Ok(true)
                } else {
                    Err(io::Error::from_raw_os_error(libc::EMFILE))
                }
            },
        );
        assert_eq!(found, Ok(4500));
    }

    #[test]
    fn behind_the_proxy_a_new_name_gets_a_free_port_remembered_for_it() {
        let t = table();
        let paths = crate::paths::SessionPaths::new("starts-test").expect("paths");
        let chosen = ports(&[("new", 4007)]);
        let now = Now {
            shutting_down: false,
            behind_proxy: true,
            chosen: &chosen,
        };
        let start = admit(&t, &paths, planned("new", None), now, |p| Ok(p == 4007)).expect("ok");
        assert_eq!(start.spec.port, Some(4007));
        assert_eq!(start.chosen, Some(("new".to_string(), 4007)));
        // Nothing free: the refusal names the way out.
        let refused = admit(&t, &paths, planned("new", None), now, |_| Ok(false));
        assert!(refusal(refused).contains("give it one with --port"));
        // A re-run keeps its port; nothing is chosen or remembered.
        let rerun = admit(&t, &paths, planned("api", None), now, |_| Ok(true)).expect("ok");
        assert_eq!((rerun.spec.port, rerun.chosen), (Some(4100), None));
    }

    #[test]
    fn a_new_name_that_failed_to_start_leaves_no_entry_a_rerun_stays() {
        let mut t = table();
        let api = t.by_name("api").expect("api");
        let mut failed = Response::error("no such directory");
        assert!(started(&mut t, api, Some(api), &mut failed, None).is_empty());
        assert!(t.get(api).is_some(), "a re-run keeps its entry");
        let id = t.allocate_id();
        t.insert(Proc::new(id, "new".into(), spec(None)));
        assert!(started(&mut t, id, None, &mut failed, None).is_empty());
        assert!(t.by_name("new").is_none(), "a new name that never ran goes");
    }

    fn run_ok() -> Response {
        Response::RunOk {
            name: "api".into(),
            id: "p1".into(),
            pid: 42,
            port: None,
            url: None,
            warning: None,
        }
    }

    #[test]
    fn what_follows_a_restart_depends_on_why_and_how_it_went() {
        let t = table();
        let api = t.by_name("api").expect("api");
        let (c, policy) = (ClientId(7), |counted| Then::Policy { counted });
        let answer = |reply, settled| Then::Answer { reply, settled };
        // (why, started?) -> (the daemon.log line, the answer: `later` frees a busy client).
        type Row = (Then, bool, Option<&'static str>, Option<(bool, ClientId)>);
        let table: &[Row] = &[
            (policy(true), true, Some("api restarted, pid 42: n"), None),
            (policy(true), false, None, None),
            (policy(false), true, None, None),
            (answer(Some(c), false), true, None, Some((false, c))),
            (answer(Some(c), true), true, Some("api: n"), Some((true, c))),
            (answer(Some(c), true), false, None, Some((true, c))),
            (answer(None, true), true, Some("api: n"), None),
        ];
        for &(then, ok, line, reply) in table {
            let response = if ok { run_ok() } else { Response::error("no") };
            let actions = restarted(&t, api, "n", then, response);
            let got: Vec<_> = actions
                .iter()
                .map(|a| match a {
                    Action::Note(n) => (Some(n.as_str()), None),
                    Action::Reply { client, .. } => (None, Some((false, *client))),
                    Action::ReplyLater { client, .. } => (None, Some((true, *client))),
                    other => panic!("{other:?}"),
                })
                .collect();
            // The note first, then the answer.
            let want: Vec<_> = (line.map(|l| (Some(l), None)).into_iter())
                .chain(reply.map(|r| (None, Some(r))))
                .collect();
            assert_eq!(got, want, "{then:?} {ok}");
        }
    }

    #[test]
    fn only_an_automatic_restart_counts() {
        let mut t = table();
        let api = t.by_name("api").expect("api");
        count_restart(&mut t, api, Then::Policy { counted: false });
        let answer = Then::Answer {
            reply: None,
            settled: false,
        };
        count_restart(&mut t, api, answer);
        assert_eq!(t.get(api).map(|p| p.sup.restarts), Some(0));
        count_restart(&mut t, api, Then::Policy { counted: true });
        assert_eq!(t.get(api).map(|p| p.sup.restarts), Some(1));
    }
}
