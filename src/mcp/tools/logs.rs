//! `logs`: the CLI's query over the files, with a budget and a cursor for
//! paging. No daemon request: the files are read here, as the CLI reads them.

use super::Outcome;
use super::args::{Args, Obj};
use crate::cli::LogsArgs;
use crate::client;
use crate::logs::query::Position;
use crate::paths::SessionPaths;

/// What the call asked for beyond the query itself.
struct Ask {
    args: LogsArgs,
    tail: usize,
    budget: usize,
    /// After a cursor: every later line is read, and the oldest shown first.
    paging: bool,
}

pub(super) fn logs(a: &Args, paths: &SessionPaths) -> Result<Outcome, String> {
    let ask = ask(a)?;
    let mut read = match client::read_logs(paths, &ask.args) {
        Ok(read) => read,
        Err(e) => return Ok(Outcome::error(e.to_string())),
    };
    let mut more = ask.paging && read.lines.len() > ask.tail;
    read.lines.truncate(ask.tail);
    let marks = read.marks();
    let (sources, lines) = (&read.sources, &read.lines);
    let rendered: Vec<Vec<u8>> = lines
        .iter()
        .zip(&marks)
        .map(|(l, mark)| client::render_line(l, sources, &ask.args, mark))
        .collect();
    let (keep, omitted) = within_budget(&rendered, ask.budget, ask.paging, &mut more);
    // Paging: after the last line shown. Else after the newest line, shown or not.
    let last = if ask.paging {
        lines[keep.clone()].last()
    } else {
        lines.last()
    };
    let cursor = match last {
        Some(line) => line.pos.cursor(),
        None => (ask.args.after.clone()).unwrap_or_else(|| Position::default().cursor()),
    };
    let output = String::from_utf8_lossy(&rendered[keep.clone()].concat()).into_owned();
    Ok(result(
        output,
        keep.len(),
        omitted,
        &cursor,
        more,
        ask.budget,
    ))
}

/// The call's arguments, checked, as the query the CLI would make.
fn ask(a: &Args) -> Result<Ask, String> {
    a.only("name stream tail grep regex ignore_case context since after max_bytes")?;
    let (stderr, both) = match a.string("stream")?.as_deref() {
        None | Some("both") => (false, true),
        Some("stdout") => (false, false),
        Some("stderr") => (true, false),
        Some(other) => {
            return Err(format!(
                "logs: stream takes both, stdout or stderr, not '{other}'"
            ));
        }
    };
    let tail = a.integer("tail", 1, 10_000)?.unwrap_or(50) as usize;
    let budget = a.integer("max_bytes", 1, 1_000_000)?.unwrap_or(8000) as usize;
    let context = a.integer("context", 0, 100)?.unwrap_or(0) as usize;
    let grep = a.string("grep")?;
    let (regex, ignore_case) = (a.flag("regex")?, a.flag("ignore_case")?);
    if grep.is_none() && (regex || ignore_case || context > 0) {
        return Err("logs: regex, ignore_case and context go with grep".into());
    }
    let since = match a.string("since")? {
        None => None,
        Some(text) => Some(crate::cli::parse_since(&text).ok_or_else(|| {
            format!("logs: since takes 30s, 5m, 2h, 1d, restart or start, not '{text}'")
        })?),
    };
    let after = a.string("after")?;
    if let Some(c) = after.as_deref()
        && Position::parse(c).is_none()
    {
        return Err(format!(
            "logs: after takes a cursor returned by an earlier logs call (like 1795642245123456.0), not '{c}'"
        ));
    }
    let target = a.string("name")?;
    // After a cursor every later line is read, and the oldest ones are shown
    // first, so nothing is skipped between two calls; else the newest `tail`.
    let paging = after.is_some();
    let args = LogsArgs {
        all: target.is_none(),
        target,
        tail,
        tail_given: !paging,
        stderr,
        both,
        follow: false,
        timeout: None,
        lines: None,
        since,
        after,
        grep,
        regex,
        ignore_case,
        context,
        timestamps: false,
        json: false,
        max_bytes: None,
        cursor: false,
        // The latest run, as `logs` shows; after a cursor, every run from there.
        runs: None,
    };
    Ok(Ask {
        args,
        tail,
        budget,
        paging,
    })
}

/// Which of the rendered lines fit in `budget` bytes: the oldest when paging
/// forward, else the newest; and how many older ones were left out.
fn within_budget(
    rendered: &[Vec<u8>],
    budget: usize,
    paging: bool,
    more: &mut bool,
) -> (std::ops::Range<usize>, usize) {
    let mut total = 0;
    let fits = |r: &&Vec<u8>| {
        total += r.len();
        total <= budget
    };
    if paging {
        // At least one line, however long, so that paging always moves on.
        let kept = rendered
            .iter()
            .take_while(fits)
            .count()
            .max(1)
            .min(rendered.len());
        *more |= kept < rendered.len();
        (0..kept, 0)
    } else {
        let kept = rendered.iter().rev().take_while(fits).count();
        (rendered.len() - kept..rendered.len(), rendered.len() - kept)
    }
}

/// The lines shown, as text for the model and as the structured result.
fn result(
    output: String,
    count: usize,
    omitted: usize,
    cursor: &str,
    more: bool,
    budget: usize,
) -> Outcome {
    let mut json = Obj::new()
        .str("output", &output)
        .num("lines", &count)
        .str("cursor", cursor)
        .num("more", &more);
    let mut text = output;
    if omitted > 0 {
        json = json.num("omitted_lines", &omitted);
        text.insert_str(
            0,
            &format!("[{omitted} older lines left out to stay within max_bytes {budget}]\n"),
        );
    }
    if count == 0 {
        text.push_str("(no new lines)\n");
    }
    text.push_str("cursor: ");
    text.push_str(cursor);
    if more {
        text.push_str(" (more: call again with this cursor)");
    }
    Outcome::ok(text, json.end())
}
