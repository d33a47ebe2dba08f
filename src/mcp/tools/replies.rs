//! What the daemon's replies to a call's requests mean: the call's result, or
//! progress while more replies are due.

use super::args::Obj;
use super::{Job, Outcome, Step};
use crate::client;
use crate::paths::SessionPaths;
use crate::protocol::Response;
use std::time::Duration;

/// Read one reply of the daemon for a call.
pub fn on_reply(job: &mut Job, paths: &SessionPaths, response: Response) -> Step {
    if let Response::Error { code, message } = response {
        return Step::Done(Outcome::error(if code == crate::protocol::CODE_NOT_FOUND {
            format!("{message}; the status tool lists the processes")
        } else {
            message
        }));
    }
    match (job, response) {
        (Job::Started { verb }, reply @ Response::RunOk { .. }) => Step::Done(started(verb, reply)),
        (Job::Stopped, Response::Ok { message }) => {
            let json = Obj::new().str("message", &message).end();
            Step::Done(Outcome::ok(message, json))
        }
        // The daemon closes the connection as it exits; `on_eof` finishes.
        (Job::Down, Response::Ok { .. }) => Step::More(None),
        (Job::Status { one }, reply @ Response::Status { .. }) => Step::Done(status(*one, reply)),
        (
            Job::Wait {
                target,
                what,
                timeout,
            },
            reply,
        ) => Step::Done(waited(target, what, *timeout, reply)),
        (Job::Up { steps, proxy }, reply) => up_step(steps, proxy, paths, reply),
        _ => Step::Done(unexpected()),
    }
}

fn unexpected() -> Outcome {
    Outcome::error("unexpected reply from the daemon".into())
}

/// `start` and `restart`: the process that runs now.
fn started(verb: &str, reply: Response) -> Outcome {
    let Response::RunOk {
        name,
        id,
        pid,
        port,
        url,
        warning,
    } = reply
    else {
        return unexpected();
    };
    let mut text = format!("{verb} {name} (id {id}, pid {pid}");
    if let Some(url) = &url {
        text.push_str(&format!(", {url}"));
    }
    text.push(')');
    let mut json = Obj::new()
        .str("name", &name)
        .str("id", &id)
        .num("pid", &pid)
        .opt("port", port.as_ref().map(|p| p as _))
        .opt_str("url", url.as_deref());
    if let Some(w) = warning {
        text.push_str(&format!("; warning: {w}"));
        json = json.str("warning", &w);
    }
    Outcome::ok(text, json.end())
}

/// `wait`: what happened first, the match, the exit or the timeout.
fn waited(target: &str, what: &str, timeout: Duration, reply: Response) -> Outcome {
    match reply {
        Response::WaitMatch { line } => {
            let json = Obj::new().str("event", "match").str("line", &line).end();
            Outcome::ok(line, json)
        }
        Response::WaitExited {
            exit_code,
            exit_signal,
        } => {
            let text = client::wait_exit_text(exit_code, exit_signal.as_deref());
            let json = Obj::new()
                .str("event", "exit")
                .opt("exit_code", exit_code.as_ref().map(|c| c as _))
                .opt_str("exit_signal", exit_signal.as_deref())
                .end();
            Outcome::ok(text, json)
        }
        Response::WaitTimeout => Outcome::error(format!(
            "timeout: {target} did not {what} within {}; read its logs to see why, or wait longer",
            crate::timefmt::seconds(timeout)
        )),
        _ => unexpected(),
    }
}

/// `up`: the proxy first (with `proxy: true`), then a step per process, then
/// the end of the graph or the process that failed.
fn up_step(
    steps: &mut Vec<String>,
    proxy: &mut bool,
    paths: &SessionPaths,
    reply: Response,
) -> Step {
    match reply {
        Response::Ok { message } if *proxy => {
            *proxy = false;
            Step::More(Some(message))
        }
        Response::UpProgress {
            event,
            name,
            pid,
            url,
            ..
        } => {
            // `db: started`, `db: ready`; `running` is one already running, and
            // `restarted` one whose definition changed.
            let text = format!("{name}: {event}");
            steps.push(
                Obj::new()
                    .str("event", &event)
                    .str("name", &name)
                    .num("pid", &pid)
                    .opt_str("url", url.as_deref())
                    .end(),
            );
            Step::More(Some(text))
        }
        Response::Ok { message } => {
            let json = format!("{{\"steps\":[{}]}}", steps.join(","));
            Step::Done(Outcome::ok(message, json))
        }
        Response::UpFailed { name, reason } => {
            let tail = client::tail_of_run(paths, &name, 20).unwrap_or_default();
            let mut text = format!(
                "up failed: {name} {reason}; the processes that started keep running (down stops them)"
            );
            if !tail.is_empty() {
                text.push_str(&format!(
                    "\nlast lines of {name}:\n{}",
                    String::from_utf8_lossy(&tail)
                ));
            }
            Step::Done(Outcome::error(text))
        }
        _ => Step::Done(unexpected()),
    }
}

/// The daemon closed the connection before the call was done.
pub fn on_eof(job: &Job) -> Outcome {
    match job {
        Job::Down => {
            let json = r#"{"message":"all processes stopped","stopped":true}"#;
            Outcome::ok("all processes stopped".into(), json.to_string())
        }
        _ => Outcome::error("the daemon closed the connection before answering; try again".into()),
    }
}

/// What `status` and `down` say when no daemon runs.
pub fn without_daemon(job: &Job, session: &str) -> Option<Outcome> {
    match job {
        Job::Status { one: false } => Some(Outcome::ok(
            format!(
                "no processes: no daemon runs for session '{session}' (start or up starts one)"
            ),
            r#"{"processes":[]}"#.to_string(),
        )),
        Job::Down => Some(Outcome::ok(
            format!("nothing to stop: no daemon runs for session '{session}'"),
            r#"{"message":"nothing to stop","stopped":false}"#.to_string(),
        )),
        _ => None,
    }
}

fn status(one: bool, reply: Response) -> Outcome {
    // The daemon's own reply, re-encoded as the daemon encodes it, without its
    // `"type":"Status",`: `{"processes":[...]}` plus `notes` when there are any.
    let mut line = Vec::new();
    crate::protocol::encode_response(&mut line, &reply);
    let Response::Status { processes, notes } = reply else {
        return Outcome::error("unexpected reply from the daemon".into());
    };
    let json = String::from_utf8_lossy(&line)
        .trim_end()
        .replacen("\"type\":\"Status\",", "", 1);
    let (processes, notes) = (&processes[..], &notes[..]);
    // The detail in full is in the structured form; this is its summary.
    let mut text = if processes.is_empty() {
        "no processes\n".to_string()
    } else {
        client::status_table(
            processes,
            one || processes.iter().any(|p| p.rss_bytes.is_some()),
        )
    };
    for note in notes {
        text.push_str("note: ");
        text.push_str(note);
        text.push('\n');
    }
    for p in processes {
        if let Some(conflict) = &p.port_conflict {
            text.push_str(&format!("note: {} could not listen: {conflict}\n", p.name));
        }
    }
    Outcome::ok(text, json)
}
