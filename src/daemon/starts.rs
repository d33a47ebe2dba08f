//! What a `run` (or an `up` entry) will start, decided over the table before
//! the loop spawns it: refused while the daemon shuts down or while the name
//! runs, the shell's environment shared with the processes that have it, the
//! port behind the proxy kept from the run it replaces (or left for the loop
//! to choose), the watch rooted where the process runs.

use super::procs::{ProcId, ProcTable};
use super::spec::{Planned, Spec};
use super::supervisor;
use super::watch;
use crate::protocol::Response;

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
    /// Behind the proxy with no port asked or kept: the loop picks a free one.
    pub choose_port: bool,
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
                p.pid = 900_000 + id;
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
}
