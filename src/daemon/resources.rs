//! Resources and ports of the managed process groups, read from /proc only when
//! a request asks (`status` with `resources` or a target, a `run --port`, an
//! exit whose log says an address was in use): never on a timer. Parsing and
//! reading /proc is `crate::sys::procinfo`'s; this file decides what to say.
//! Plain functions over the table and the session's paths, called by the loop.

use super::procs::{CpuSample, ProcId, ProcTable, State};
use crate::paths::SessionPaths;
use crate::protocol::{ProcessInfo, Response, Stream};
use crate::sys::procinfo::{self, Holder};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// Readings closer together than this reuse the last percentage: CPU times
/// come in clock ticks (10 ms), too coarse to measure a shorter span.
const MIN_CPU_WINDOW: Duration = Duration::from_millis(250);

/// How many of the last lines of each stream are searched for "address in use".
const CONFLICT_LINES: usize = 20;

/// The rows of `status` (of `target` only, if given; None if it is gone):
/// `watching` says whose files are watched, and `resources` or a target adds
/// what /proc says.
pub(super) fn status_rows(
    procs: &mut ProcTable,
    paths: &SessionPaths,
    target: Option<ProcId>,
    proxy_port: Option<u16>,
    resources: bool,
    watching: impl Fn(ProcId) -> bool,
) -> Option<Vec<ProcessInfo>> {
    let mut rows = match target {
        None => procs.status(Instant::now(), proxy_port),
        Some(id) => vec![procs.get(id)?.info(Instant::now(), proxy_port)],
    };
    for row in &mut rows {
        if let Some(p) = procs.by_name(&row.name).and_then(|id| procs.get(id))
            && watching(p.id)
        {
            // A process stopped by hand is not restarted by changes.
            row.watched = Some(!p.sup.disabled);
        }
    }
    if resources || target.is_some() {
        add_resources(procs, paths, &mut rows, target.is_some());
    }
    Some(rows)
}

/// The answer to `status` (of `target` only, if given; `resources`: with what
/// /proc says, behind a proxy on `proxy_port`): the rows of `status_rows`, and
/// `notes`. The target was found by the request's routing, in the same turn.
pub(super) fn status(
    procs: &mut ProcTable,
    paths: &SessionPaths,
    (target, resources, proxy_port): (Option<ProcId>, bool, Option<u16>),
    watching: impl Fn(ProcId) -> bool,
    notes: &[String],
) -> Response {
    let rows = status_rows(procs, paths, target, proxy_port, resources, watching);
    let processes = rows.unwrap_or_default();
    let notes = notes.to_vec();
    Response::Status { processes, notes }
}

/// Fill in the /proc fields of `rows` (the live ones): members found from
/// the leaders down, the TCP tables read at most once; with `full`, also
/// what `status NAME` shows.
pub(super) fn add_resources(
    procs: &mut ProcTable,
    paths: &SessionPaths,
    rows: &mut [ProcessInfo],
    full: bool,
) {
    let now = Instant::now();
    let live: Vec<(usize, ProcId, i32)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, row)| {
            let id = procs.by_name(&row.name)?;
            let p = procs.get(id)?;
            (p.state.is_alive() && p.pgid > 0).then_some((i, id, p.pgid))
        })
        .collect();
    let pgids: Vec<i32> = live.iter().map(|&(_, _, g)| g).collect();
    // Down from each leader, and from the daemon's children that lead
    // nothing (members whose parent died are re-parented to us).
    let mut roots: Vec<i32> = procinfo::children(std::process::id() as i32)
        .into_iter()
        .filter(|&pid| !procs.is_leader(pid))
        .collect();
    roots.extend(&pgids);
    let groups = procinfo::group_members(&roots, &pgids);
    let used: Vec<procinfo::Usage> = live
        .iter()
        .map(|(_, _, pgid)| {
            procinfo::usage(groups.get(pgid).map(Vec::as_slice).unwrap_or_default())
        })
        .collect();
    // The TCP tables cost a few ms to read: only when some group has a socket.
    let listeners = if used.iter().any(|u| !u.sockets.is_empty()) {
        procinfo::listeners()
    } else {
        Vec::new()
    };
    let hz = crate::sys::clock_ticks() as f64;
    for ((i, id, pgid), used) in live.into_iter().zip(used) {
        let Some(p) = procs.get_mut(id) else {
            continue;
        };
        let started = match p.state {
            State::Running { since, .. } | State::Stopping { since, .. } => since,
            _ => now,
        };
        let sample = cpu_reading(p.cpu_sample, pgid, used.cpu_ticks, now, started, hz);
        p.cpu_sample = Some(sample);
        let percent = sample.percent;
        let row = &mut rows[i];
        row.pgid = Some(pgid);
        row.process_count = Some(used.processes);
        row.rss_bytes = Some(used.rss_bytes);
        row.cpu_percent = Some(percent);
        row.listening = Some(procinfo::listening(&used.sockets, &listeners));
    }
    if full {
        for row in rows.iter_mut() {
            add_details(procs, paths, row);
        }
    }
}

/// What `status NAME` adds: the variables set for the process (names
/// only) and its log files.
fn add_details(procs: &ProcTable, paths: &SessionPaths, row: &mut ProcessInfo) {
    let Some(p) = procs.by_name(&row.name).and_then(|id| procs.get(id)) else {
        return;
    };
    let mut keys: Vec<String> = p.spec.env.keys().cloned().collect();
    if p.spec.port.is_some() {
        for injected in ["PORT", "HOST"] {
            if !keys.iter().any(|k| k == injected) {
                keys.push(injected.to_string());
            }
        }
    }
    keys.sort_unstable();
    row.env_keys = Some(keys);
    row.log_files = Some(
        [Stream::Stdout, Stream::Stderr]
            .iter()
            .map(|s| paths.log_file(&p.name, s.name()).display().to_string())
            .collect(),
    );
    if row.pgid.is_none() && p.pgid > 0 {
        row.pgid = Some(p.pgid);
    }
}

/// 0.6 did not look; a taken port is a warning, not a refusal, because
/// the holder may be about to go, or the command may not use PORT at all.
/// A port we chose was free already; a bind tells in microseconds whether
/// an asked-for one is, and only a refusal costs reading the TCP tables.
pub(super) fn asked_port_taken(
    procs: &ProcTable,
    paths: &SessionPaths,
    asked: Option<u16>,
    existing: Option<ProcId>,
) -> Option<String> {
    asked
        .filter(|&port| TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).is_err())
        .and_then(|port| {
            let old_group = existing
                .and_then(|id| procs.get(id))
                .map(|p| p.pgid)
                .filter(|&g| g > 0);
            port_taken(procs, paths, port, old_group)
        })
}

/// `port 3000 is already in use: 127.0.0.1:3000 is held by pid 4242 (...)`,
/// when something other than the group `except_pgid` listens on `port`.
pub(super) fn port_taken(
    procs: &ProcTable,
    paths: &SessionPaths,
    port: u16,
    except_pgid: Option<i32>,
) -> Option<String> {
    let holders = procinfo::holders(port, except_pgid);
    if holders.is_empty() {
        return None;
    }
    let held: Vec<String> = holders
        .iter()
        .map(|h| describe_holder(procs, paths, h))
        .collect();
    Some(format!(
        "port {port} is already in use: {}",
        held.join("; ")
    ))
}

/// `127.0.0.1:3000 is held by pid 4242 (node server.js, session web, process api)`.
fn describe_holder(procs: &ProcTable, paths: &SessionPaths, h: &Holder) -> String {
    let Some(pid) = h.pid else {
        return if h.uid == crate::sys::euid() {
            format!(
                "{} is held by a process of ours that has gone or hides its descriptors",
                h.address
            )
        } else {
            format!(
                "{} is held by a process of uid {} (not ours to inspect)",
                h.address, h.uid
            )
        };
    };
    let mut about = vec![crate::sys::command_of(pid)];
    about.retain(|c| !c.is_empty());
    if let Some((session, name)) = h.pgid.and_then(|g| owner_of_group(procs, paths, g)) {
        about.push(format!("session {session}, process {name}"));
    }
    if about.is_empty() {
        format!("{} is held by pid {pid}", h.address)
    } else {
        format!("{} is held by pid {pid} ({})", h.address, about.join(", "))
    }
}

/// The session and process that started process group `pgid`: ours, or
/// another session's as its state.json records it (with the leader's start
/// time checked when it still runs, so a reused pid is not misnamed).
fn owner_of_group(procs: &ProcTable, paths: &SessionPaths, pgid: i32) -> Option<(String, String)> {
    if let Some(p) = procs.iter().find(|p| p.pgid == pgid && p.state.is_alive()) {
        return Some((paths.session.clone(), p.name.clone()));
    }
    let sessions = paths.state_dir.parent()?;
    for entry in std::fs::read_dir(sessions).ok()?.flatten() {
        let Ok(session) = entry.file_name().into_string() else {
            continue;
        };
        if session == paths.session {
            continue;
        }
        // Only a table of ours: never through a link, never another user's file.
        let mut bytes = Vec::new();
        let read = crate::logs::read::open_log(&entry.path().join("state.json"))
            .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut bytes));
        if read.is_err() {
            continue;
        }
        let Some(Ok(saved)) = serde_json::Deserializer::from_slice(&bytes)
            .into_iter::<super::state::SavedState>()
            .next()
        else {
            continue;
        };
        let found = saved.processes.into_iter().find(|p| {
            p.pgid == pgid
                && match (p.start_ticks, crate::sys::start_ticks(p.pid)) {
                    (Some(want), Some(now)) => want == now,
                    _ => true, // the leader is gone; its group lives on
                }
        });
        if let Some(p) = found {
            return Some((session, p.name));
        }
    }
    None
}

/// When the last lines of process `id`'s current run say an address was
/// in use, who holds its port (or the port the line names).
pub(super) fn port_conflict(procs: &ProcTable, paths: &SessionPaths, id: ProcId) -> Option<String> {
    let p = procs.get(id)?;
    let mut said = None;
    for (i, out) in p.outputs.iter().enumerate() {
        let Some(out) = out else { continue };
        let path = paths.log_file(&p.name, super::procs::STREAMS[i].name());
        let limit = out.sink.complete_len();
        // Lines of this run only: the current segment up to its complete lines.
        let Ok(lines) =
            crate::logs::read::tail_located_from(&path, CONFLICT_LINES, Some(limit), Some((0, 0)))
        else {
            continue;
        };
        if let Some(line) = lines
            .iter()
            .rev()
            .map(|(_, _, l)| String::from_utf8_lossy(l))
            .find(|l| procinfo::says_address_in_use(l))
        {
            said = Some(line.into_owned());
            break;
        }
    }
    let line = said?;
    // The port the line names (an app may ignore PORT), else the one we gave it.
    let port = procinfo::port_in_line(&line).or(p.spec.port);
    let Some(port) = port else {
        return Some(
            "its output says an address was already in use (no port is known to look up)".into(),
        );
    };
    let except = (p.pgid > 0).then_some(p.pgid);
    Some(
        port_taken(procs, paths, port, except)
            .unwrap_or_else(|| format!("port {port} was in use, but nothing listens on it now")),
    )
}

/// The reading to report and keep for a group that has used `ticks` clock
/// ticks by `now`: measured against the previous reading of the same run, or
/// since `started` for the first; a previous reading too recent to measure
/// against is kept, with its figure.
fn cpu_reading(
    prev: Option<CpuSample>,
    pgid: i32,
    ticks: u64,
    now: Instant,
    started: Instant,
    hz: f64,
) -> CpuSample {
    let percent = match prev {
        Some(s) if s.pgid == pgid && now.saturating_duration_since(s.at) < MIN_CPU_WINDOW => {
            return s;
        }
        Some(s) if s.pgid == pgid => rate(
            ticks.saturating_sub(s.ticks),
            hz,
            now.saturating_duration_since(s.at),
        ),
        _ => rate(ticks, hz, now.saturating_duration_since(started)),
    };
    CpuSample {
        pgid,
        ticks,
        at: now,
        percent,
    }
}

/// Percent of one CPU: `ticks` clock ticks over `span`.
fn rate(ticks: u64, hz: f64, span: Duration) -> f64 {
    let secs = span.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    let percent = ticks as f64 / hz / secs * 100.0;
    (percent * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::procs::Proc;
    use crate::daemon::spec::Spec;
    use std::path::PathBuf;

    fn paths(state_dir: PathBuf) -> SessionPaths {
        SessionPaths {
            session: "web".into(),
            runtime_dir: state_dir.join("run"),
            socket: state_dir.join("run/web.sock"),
            pid_file: state_dir.join("run/web.pid"),
            lock_file: state_dir.join("run/web.lock"),
            log_dir: state_dir.join("logs"),
            state_dir,
            root: None,
        }
    }

    /// One running process `api` (group 4242) with `FOO` set and a port.
    fn table() -> ProcTable {
        let mut t = ProcTable::default();
        let id = t.allocate_id();
        let spec = Spec {
            env: [("FOO".to_string(), "1".to_string())].into_iter().collect(),
            port: Some(3000),
            ..Spec::for_test("server")
        };
        let mut p = Proc::new(id, "api".into(), spec);
        p.pid = 4242;
        p.pgid = 4242;
        p.state = State::Running {
            pid: 4242,
            since: Instant::now(),
        };
        t.insert(p);
        t
    }

    #[test]
    fn details_name_the_variables_set_and_the_log_files() {
        let procs = table();
        let paths = paths(PathBuf::from("/nonexistent/sessions/web"));
        let mut row = ProcessInfo {
            name: "api".into(),
            ..Default::default()
        };
        add_details(&procs, &paths, &mut row);
        let keys = row.env_keys.unwrap_or_default();
        assert_eq!(keys, ["FOO", "HOST", "PORT"]);
        assert_eq!(
            row.log_files.unwrap_or_default(),
            [
                "/nonexistent/sessions/web/logs/api.stdout",
                "/nonexistent/sessions/web/logs/api.stderr"
            ]
        );
        assert_eq!(row.pgid, Some(4242));
    }

    #[test]
    fn status_marks_watched_processes_unless_stopped_by_hand() {
        let mut procs = table();
        let paths = paths(PathBuf::from("/nonexistent/sessions/web"));
        let rows = |procs: &mut ProcTable, watched: bool| {
            let rows = status_rows(procs, &paths, None, None, false, |_| watched);
            rows.unwrap_or_default()[0].watched
        };
        assert_eq!(rows(&mut procs, false), None);
        assert_eq!(rows(&mut procs, true), Some(true));
        let id = procs
            .by_name("api")
            .unwrap_or_else(|| panic!("api is in the table"));
        if let Some(p) = procs.get_mut(id) {
            p.sup.disabled = true;
        }
        assert_eq!(rows(&mut procs, true), Some(false));
        // A target gone since it was found: no table, the caller answers nothing.
        let gone = procs.allocate_id();
        assert!(status_rows(&mut procs, &paths, Some(gone), None, false, |_| true).is_none());
    }

    #[test]
    fn a_group_of_ours_is_named_without_reading_other_sessions() {
        let procs = table();
        let paths = paths(PathBuf::from("/nonexistent/sessions/web"));
        assert_eq!(
            owner_of_group(&procs, &paths, 4242),
            Some(("web".to_string(), "api".to_string()))
        );
        // Not ours, and no other session's table to read.
        assert_eq!(owner_of_group(&procs, &paths, 4243), None);
    }

    #[test]
    fn cpu_rates_are_percent_of_one_cpu_rounded() {
        assert_eq!(rate(50, 100.0, Duration::from_secs(1)), 50.0);
        assert_eq!(rate(200, 100.0, Duration::from_secs(1)), 200.0);
        assert_eq!(rate(1, 100.0, Duration::from_secs(3)), 0.3);
        assert_eq!(rate(5, 100.0, Duration::ZERO), 0.0);
    }

    #[test]
    fn cpu_is_measured_since_the_previous_reading_of_the_run() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // First reading: 50 ticks in the 1 s since start.
        let first = cpu_reading(None, 7, 50, at(1000), t0, 100.0);
        assert_eq!(first.percent, 50.0);
        // 100 ms later is too soon to measure: the same figure and baseline.
        let soon = cpu_reading(Some(first), 7, 60, at(1100), t0, 100.0);
        assert_eq!((soon.percent, soon.ticks), (50.0, 50));
        // 2 s after the first, 20 more ticks: 10%.
        let later = cpu_reading(Some(first), 7, 70, at(3000), t0, 100.0);
        assert_eq!((later.percent, later.ticks), (10.0, 70));
        // A new run (another group) starts over; a dead member never goes negative.
        assert_eq!(
            cpu_reading(Some(later), 8, 3, at(3000), at(2000), 100.0).percent,
            3.0
        );
        assert_eq!(
            cpu_reading(Some(later), 7, 10, at(4000), t0, 100.0).percent,
            0.0
        );
    }
}
