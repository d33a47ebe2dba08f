//! Restart policies, driven through the real binary: `run --autorestart` and the
//! config's `autorestart`, max restarts, backoff, what `stop` and `restart` do to a
//! policy, the exit history in `status --json`, and the RESTARTS column.
//! State changes are observed by polling `status --json` against a deadline.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long any awaited state change may take.
const SETTLE: Duration = Duration::from_secs(15);
/// Between two polls of `status --json`.
const POLL: Duration = Duration::from_millis(20);

/// A shell line that counts its runs in `NAME.n` (in the sandbox), prints
/// `run N`, then does `tail` with `$n` set to this run's number.
fn counted(name: &str, tail: &str) -> String {
    format!(
        "n=$(( $(cat {name}.n 2>/dev/null || echo 0) + 1 )); echo $n > {name}.n; echo run $n; {tail}"
    )
}

fn daemon_log(sb: &Sandbox) -> String {
    std::fs::read_to_string(sb.daemon_log()).unwrap_or_default()
}

/// Poll the whole status until `done` holds for it; panic with the last one past SETTLE.
/// Every POLL, not backing off: some states awaited last only a moment.
fn await_status(sb: &Sandbox, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually_every(POLL, SETTLE, what, || {
        let all = sb.status();
        if done(&all) {
            Ok(all)
        } else {
            Err(format!("{all:#}\ndaemon.log:\n{}", daemon_log(sb)))
        }
    })
}

/// Poll one process's status until `done` holds for it.
fn await_proc(sb: &Sandbox, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let all = await_status(sb, &format!("{name} {what}"), |all| {
        find(all, name).is_some_and(&done)
    });
    find(&all, name).cloned().expect("the process just seen")
}

fn find<'a>(all: &'a Value, name: &str) -> Option<&'a Value> {
    all.as_array()?.iter().find(|p| p["name"] == name)
}

/// Poll for `window` and insist that `steady` holds on every look: for what must
/// NOT happen (a restart), there is no event to wait for.
fn holds_for_status(sb: &Sandbox, window: Duration, what: &str, steady: impl Fn(&Value) -> bool) {
    holds_for(window, what, || {
        let all = sb.status();
        if steady(&all) {
            Ok(())
        } else {
            Err(format!("{all:#}\ndaemon.log:\n{}", daemon_log(sb)))
        }
    });
}

/// Everything kept of a process's stdout, all runs, annotations included.
/// Every kept line of every run, without the lines that mark where runs start
/// (tests/logs_runs.rs checks those).
fn all_logs(sb: &Sandbox, name: &str) -> String {
    sb.ok(&["logs", name, "--since", "start"])
        .lines()
        .filter(|l| !(l.starts_with("--- run ") && l.ends_with(" ---")))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn reasons(st: &Value) -> Vec<String> {
    st["last_exits"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["reason"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn last_exit(st: &Value) -> Value {
    st["last_exits"]
        .as_array()
        .and_then(|a| a.last().cloned())
        .unwrap_or(Value::Null)
}

/// Seconds since the epoch of an RFC 3339 UTC time (`...Z` or `...+00:00`).
fn rfc3339_secs(text: &str) -> Option<f64> {
    let body = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let b = body.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = body.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let frac = match &body[19..] {
        "" => 0.0,
        f if f.len() > 1 && f.starts_with('.') && f[1..].bytes().all(|c| c.is_ascii_digit()) => {
            format!("0{f}").parse().ok()?
        }
        _ => return None,
    };
    // Days from the civil date (proleptic Gregorian), after Howard Hinnant.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss) as f64 + frac)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs_f64()
}

/// An RFC 3339 UTC time between `since` (epoch seconds) and now, a second of slack each way.
fn recent_time(value: &Value, since: f64, what: &str) -> f64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    let secs = rfc3339_secs(text).unwrap_or_else(|| panic!("{what} is not RFC 3339 UTC: {text:?}"));
    assert!(
        secs >= since - 1.0 && secs <= now_secs() + 1.0,
        "{what} {text:?} is not between the test's start and now"
    );
    secs
}

#[test]
fn the_rfc3339_checker_itself_works() {
    assert_eq!(rfc3339_secs("1970-01-01T00:00:00Z"), Some(0.0));
    assert_eq!(rfc3339_secs("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
    assert_eq!(
        rfc3339_secs("2024-02-29T12:00:00+00:00"),
        Some(1_709_208_000.0)
    );
    for bad in [
        "2024-02-29 12:00:00Z",
        "2024-02-29T12:00:00",
        "2024-02-29T12:00:00+01:00",
        "2024-13-01T00:00:00Z",
        "2024-02-29T12:00:00.Z",
    ] {
        assert_eq!(rfc3339_secs(bad), None, "{bad}");
    }
}

/// always / on-failure / never against exit 0, exit 1 and death by SIGKILL, all at
/// once in one session; every mismatch is collected, so one run shows the whole table.
#[test]
fn each_policy_restarts_exactly_the_deaths_it_should() {
    let sb = Sandbox::new();
    let endings = [
        ("ok", "exit 0", "exit 0", None),
        ("err", "exit 1", "exit 1", None),
        ("sig", "kill -KILL $$", "killed by SIGKILL", Some("SIGKILL")),
    ];
    let modes = ["always", "on-failure", "never"];
    struct Row {
        name: String,
        mode: &'static str,
        how: &'static str,
        code: Option<i64>,
        signal: Option<&'static str>,
        restarts: bool,
    }
    let mut rows = Vec::new();
    for mode in modes {
        for (tag, tail, how, signal) in endings {
            let name = format!("{}-{tag}", mode.replace("on-failure", "onf"));
            let command = counted(&name, tail);
            let mut args = vec![
                "run",
                command.as_str(),
                "--name",
                name.as_str(),
                "--autorestart",
                mode,
            ];
            if mode != "never" {
                args.extend(["--max-restarts", "2", "--restart-delay", "50"]);
            }
            sb.ok(&args);
            rows.push(Row {
                restarts: mode == "always" || (mode == "on-failure" && tag != "ok"),
                code: match tag {
                    "ok" => Some(0),
                    "err" => Some(1),
                    _ => None,
                },
                name,
                mode,
                how,
                signal,
            });
        }
    }
    let settled =
        |row: &Row, st: &Value| st["state"] == if row.restarts { "failed" } else { "exited" };
    let all = await_status(&sb, "every row to settle", |all| {
        rows.iter()
            .all(|r| find(all, &r.name).is_some_and(|st| settled(r, st)))
    });
    // Settled for good: nothing restarts later (a wrong restart under `never`
    // would come after the default delay of 1000 ms).
    holds_for_status(
        &sb,
        Duration::from_millis(1300),
        "the settled table",
        |now| {
            rows.iter().all(|r| {
                let (a, b) = (find(&all, &r.name), find(now, &r.name));
                b.is_some_and(|b| settled(r, b))
                    && a.map(|a| &a["restart_count"]) == b.map(|b| &b["restart_count"])
            })
        },
    );

    let mut problems = Vec::new();
    for row in &rows {
        let st = sb.proc_status(&row.name);
        let mut check = |ok: bool, what: String| {
            if !ok {
                problems.push(format!("{} ({} / {}): {what}", row.name, row.mode, row.how));
            }
        };
        let deaths = if row.restarts { 3 } else { 1 };
        // null while 0, as in 0.6.
        let want_count = if row.restarts {
            Value::from(2)
        } else {
            Value::Null
        };
        check(
            st["restart_count"] == want_count,
            format!("restart_count {} (want {want_count})", st["restart_count"]),
        );
        check(
            st["restart_policy"] == row.mode,
            format!("restart_policy {}", st["restart_policy"]),
        );
        let want_max = if row.mode == "never" {
            Value::Null
        } else {
            Value::from(2)
        };
        check(
            st["max_restarts"] == want_max,
            format!("max_restarts {} (want {want_max})", st["max_restarts"]),
        );
        check(
            st["crashes_last_minute"] == deaths,
            format!(
                "crashes_last_minute {} (want {deaths})",
                st["crashes_last_minute"]
            ),
        );
        let exits = st["last_exits"].as_array().cloned().unwrap_or_default();
        check(
            exits.len() == deaths
                && exits.iter().all(|e| {
                    e["reason"] == "crashed"
                        && e["code"] == row.code.map_or(Value::Null, Value::from)
                        && e["signal"] == row.signal.map_or(Value::Null, Value::from)
                }),
            format!("last_exits {}", st["last_exits"]),
        );
        let want_log = if row.restarts {
            format!(
                "run 1\n[agent-procs] Restarted ({how}, attempt 1/2)\nrun 2\n\
                 [agent-procs] Restarted ({how}, attempt 2/2)\nrun 3\n\
                 [agent-procs] Max restarts (2) exhausted\n",
                how = row.how
            )
        } else {
            "run 1\n".to_string()
        };
        let log = all_logs(&sb, &row.name);
        check(log == want_log, format!("log {log:?}, want {want_log:?}"));
    }
    assert!(
        problems.is_empty(),
        "{}\ndaemon.log:\n{}",
        problems.join("\n"),
        daemon_log(&sb)
    );
}

#[test]
fn exhausting_max_restarts_fails_the_process_with_a_last_word() {
    let sb = Sandbox::new();
    let command = counted("flaky", "echo oops >&2; exit 7");
    sb.ok(&[
        "run",
        &command,
        "--name",
        "flaky",
        "--autorestart",
        "on-failure",
        "--max-restarts",
        "3",
        "--restart-delay",
        "50",
    ]);
    // No restarts allowed at all: the first death is final.
    sb.ok(&[
        "run",
        "exit 1",
        "--name",
        "once",
        "--autorestart",
        "always",
        "--max-restarts",
        "0",
        "--restart-delay",
        "50",
    ]);
    // Killed by a signal: a failed process keeps that too.
    sb.ok(&[
        "run",
        "kill -KILL $$",
        "--name",
        "killed",
        "--autorestart",
        "always",
        "--max-restarts",
        "0",
    ]);
    let st = await_proc(&sb, "flaky", "to fail", |st| st["state"] == "failed");
    assert_eq!(st["restart_count"], 3, "{st}");
    assert_eq!(st["max_restarts"], 3, "{st}");
    assert_eq!(st["crashes_last_minute"], 4, "{st}");
    assert_eq!(last_exit(&st)["code"], 7, "{st}");
    // As in 0.6, a failed process keeps the code of its last exit.
    assert_eq!(st["exit_code"], 7, "{st}");
    assert_eq!(st["exit_signal"], Value::Null, "{st}");
    let log = all_logs(&sb, "flaky");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines,
        [
            "run 1",
            "[agent-procs] Restarted (exit 7, attempt 1/3)",
            "run 2",
            "[agent-procs] Restarted (exit 7, attempt 2/3)",
            "run 3",
            "[agent-procs] Restarted (exit 7, attempt 3/3)",
            "run 4",
            "[agent-procs] Max restarts (3) exhausted",
        ],
        "{log}"
    );

    let st = await_proc(&sb, "once", "to fail", |st| st["state"] == "failed");
    // null while 0, as in 0.6 (the key is there, its value null).
    assert_eq!(st.get("restart_count"), Some(&Value::Null), "{st}");
    assert_eq!(st["exit_code"], 1, "{st}");
    let st = await_proc(&sb, "killed", "to fail", |st| st["state"] == "failed");
    assert_eq!(st["exit_signal"], "SIGKILL", "{st}");
    assert_eq!(st["exit_code"], Value::Null, "{st}");
    assert_eq!(
        all_logs(&sb, "once"),
        "[agent-procs] Max restarts (0) exhausted\n"
    );
    let table = sb.ok(&["status"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("flaky "))
        .unwrap_or_else(|| panic!("no flaky row in\n{table}"));
    assert!(row.contains(" FAILED "), "{table}");
    // A failed process comes back with `restart`, its count reset: the same
    // three restarts happen again, numbered from 1.
    sb.ok(&["restart", "flaky"]);
    let runs = || std::fs::read_to_string(sb.root.join("flaky.n")).unwrap_or_default();
    let st = await_proc(&sb, "flaky", "to fail again", |st| {
        st["state"] == "failed" && runs().trim() == "8"
    });
    assert_eq!(st["restart_count"], 3, "{st}");
    let log = all_logs(&sb, "flaky");
    assert!(
        log.ends_with(
            "run 5\n[agent-procs] Restarted (exit 7, attempt 1/3)\n\
             run 6\n[agent-procs] Restarted (exit 7, attempt 2/3)\n\
             run 7\n[agent-procs] Restarted (exit 7, attempt 3/3)\n\
             run 8\n[agent-procs] Max restarts (3) exhausted\n"
        ),
        "{log}"
    );
}

#[test]
fn a_process_waiting_to_restart_is_in_backoff_with_a_countdown() {
    let sb = Sandbox::new();
    // Without --restart-delay the delay is 1000 ms.
    sb.ok(&[
        "run",
        "exit 1",
        "--name",
        "dflt",
        "--autorestart",
        "on-failure",
    ]);
    let dflt = await_proc(&sb, "dflt", "in backoff", |st| st["state"] == "backoff");
    let ms = dflt["next_restart_in_ms"].as_u64().unwrap_or(0);
    assert!((250..=1000).contains(&ms), "default delay: {dflt}");

    sb.ok(&[
        "run",
        "echo bye; exit 1",
        "--name",
        "slow",
        "--autorestart",
        "on-failure",
        "--max-restarts",
        "1",
        "--restart-delay",
        "1500",
    ]);
    sb.start("steady", "sleep 60");

    let began = Instant::now();
    let first = await_proc(&sb, "slow", "in backoff", |st| st["state"] == "backoff");
    let left = first["next_restart_in_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("next_restart_in_ms is not a number: {first}"));
    assert!((1..=1500).contains(&left), "{first}");
    assert_eq!(first["restart_count"], Value::Null, "{first}");
    let table = sb.ok(&["status"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("slow "))
        .unwrap_or_else(|| panic!("no slow row in\n{table}"));
    assert!(row.contains(" backoff "), "{table}");
    // It counts down.
    await_proc(&sb, "slow", "to count down", |st| {
        st["state"] == "backoff"
            && st["next_restart_in_ms"]
                .as_u64()
                .is_some_and(|ms| ms + 100 <= left)
    });
    // Only a process in backoff has a countdown.
    let steady = sb.proc_status("steady");
    assert!(!steady["next_restart_in_ms"].is_number(), "{steady}");

    // The restart comes when the countdown said, not before.
    let st = await_proc(&sb, "slow", "to restart", |st| st["restart_count"] == 1);
    assert!(
        began.elapsed() + Duration::from_millis(20) >= Duration::from_millis(left),
        "restarted after {:?}, but {left} ms were left: {st}",
        began.elapsed()
    );
    let st = await_proc(&sb, "slow", "to fail", |st| st["state"] == "failed");
    assert!(!st["next_restart_in_ms"].is_number(), "{st}");
}

#[test]
fn exponential_backoff_doubles_the_delay_between_restarts() {
    let sb = Sandbox::new();
    for (name, extra) in [
        ("exp", &["--backoff", "exponential"][..]),
        ("flat", &[][..]),
    ] {
        let mut args = vec![
            "run",
            "exit 1",
            "--name",
            name,
            "--autorestart",
            "on-failure",
            "--restart-delay",
            "100",
        ];
        args.extend(extra);
        sb.ok(&args);
    }
    // The largest countdown seen in backoff, by restart_count, for each process.
    let mut seen: BTreeMap<&str, BTreeMap<u64, u64>> = BTreeMap::new();
    let far_enough = |m: &BTreeMap<&str, BTreeMap<u64, u64>>, name: &str| -> bool {
        m.get(name).is_some_and(|c| c.keys().any(|&k| k >= 2))
    };
    // Every POLL: a backoff of 100 ms is easily missed.
    eventually_every(POLL, SETTLE, "both in backoff after two restarts", || {
        if far_enough(&seen, "exp") && far_enough(&seen, "flat") {
            return Ok(());
        }
        let all = sb.status();
        for name in ["exp", "flat"] {
            let Some(st) = find(&all, name) else { continue };
            if st["state"] != "backoff" {
                continue;
            }
            // restart_count is null while 0, as in 0.6.
            let count = match &st["restart_count"] {
                Value::Null => Some(0),
                n => n.as_u64(),
            };
            let (Some(count), Some(ms)) = (count, st["next_restart_in_ms"].as_u64()) else {
                panic!("backoff without restart_count and next_restart_in_ms: {st}");
            };
            let max = seen.entry(name).or_default().entry(count).or_insert(0);
            *max = (*max).max(ms);
        }
        Err(format!(
            "{seen:?}\nstatus: {all:#}\ndaemon.log:\n{}",
            daemon_log(&sb)
        ))
    });
    let exp = &seen["exp"];
    for (&count, &ms) in exp {
        // Before restart k+1 the delay is 100 ms * 2^k, capped at 30 s.
        let cap = (100u64 << count.min(20)).min(30_000);
        assert!(
            ms <= cap,
            "exp: {ms} ms at restart_count {count} ({seen:?})"
        );
    }
    let (&count, &ms) = exp
        .iter()
        .find(|(k, _)| **k >= 2)
        .expect("seen after two restarts");
    assert!(
        ms >= 150,
        "exp: only {ms} ms at restart_count {count}; it should have grown ({seen:?})"
    );
    for (&count, &ms) in &seen["flat"] {
        assert!(
            ms <= 100,
            "flat: {ms} ms at restart_count {count} ({seen:?})"
        );
    }
}

#[test]
fn stop_turns_auto_restart_off_and_restart_turns_it_back_on() {
    let sb = Sandbox::new();
    // Crashes twice, then stays up.
    let command = counted("svc", "[ $n -gt 2 ] && exec sleep 60; exit 1");
    sb.ok(&[
        "run",
        &command,
        "--name",
        "svc",
        "--autorestart",
        "always",
        "--restart-delay",
        "50",
    ]);
    let st = await_proc(&sb, "svc", "up after two restarts", |st| {
        st["restart_count"] == 2 && st["state"] == "running"
    });
    assert_eq!(st["max_restarts"], Value::Null, "{st}");
    // Stop run 3 only once it has counted itself: a stop in the middle of writing
    // svc.n would leave it empty and restart the count.
    sb.ok(&["wait", "svc", "--until", "run 3", "--timeout", "10"]);
    assert_eq!(sb.ok(&["stop", "svc"]), "stopped svc\n");
    let st = sb.proc_status("svc");
    assert_eq!(st["state"], "exited", "{st}");
    assert_eq!(last_exit(&st)["reason"], "stopped", "{st}");
    // `always` would restart any exit; after a stop it must not, over six delays.
    holds_for_status(
        &sb,
        Duration::from_millis(300),
        "svc staying stopped",
        |all| {
            find(all, "svc").is_some_and(|st| st["state"] == "exited" && st["restart_count"] == 2)
        },
    );

    let pid = parse_pid(&sb.ok(&["restart", "svc"]));
    let st = sb.proc_status("svc");
    assert_eq!(st["state"], "running", "{st}");
    assert_eq!(st["restart_count"], Value::Null, "{st}");
    assert_eq!(st["restart_policy"], "always", "{st}");
    // The policy is back: a crash is restarted again. (Kill only once run 4 has
    // counted itself, or the next run would find a half-written count.)
    sb.ok(&["wait", "svc", "--until", "run 4", "--timeout", "10"]);
    kill(pid, libc::SIGKILL);
    let st = await_proc(&sb, "svc", "restarted after the kill", |st| {
        st["restart_count"] == 1 && st["state"] == "running" && st["pid"] != pid
    });
    assert_eq!(last_exit(&st)["reason"], "crashed", "{st}");
    assert_eq!(last_exit(&st)["signal"], "SIGKILL", "{st}");
    // Running is said at the fork; the new run's first line may come a moment later.
    sb.ok(&["wait", "svc", "--until", "run 5", "--timeout", "10"]);
    let log = all_logs(&sb, "svc");
    assert!(
        log.ends_with("run 4\n[agent-procs] Restarted (killed by SIGKILL, attempt 1)\nrun 5\n"),
        "{log}"
    );
}

#[test]
fn last_exits_say_why_each_run_ended() {
    let began = now_secs();
    let sb = Sandbox::new();
    sb.start("crash", "echo hi; exit 3");
    sb.start("selfkill", "kill -KILL $$");
    sb.start("plain", "sleep 60");
    sb.start(
        "stubborn",
        "trap '' TERM; echo armed; while :; do sleep 0.05; done",
    );
    sb.start("other", "sleep 60");
    sb.start("seq", "sleep 60");
    sb.ok(&["wait", "crash", "--exit", "--timeout", "10"]);
    sb.ok(&["wait", "selfkill", "--exit", "--timeout", "10"]);
    sb.ok(&["wait", "stubborn", "--until", "armed", "--timeout", "10"]);

    // Never exited yet: times and an empty history, no policy.
    let st = sb.proc_status("plain");
    recent_time(&st["started_at"], began, "plain started_at");
    assert_eq!(st["exited_at"], Value::Null, "{st}");
    assert_eq!(st["last_exits"], serde_json::json!([]), "{st}");
    assert_eq!(st["crashes_last_minute"], 0, "{st}");
    assert_eq!(st["restart_policy"], Value::Null, "{st}");

    let st = sb.proc_status("crash");
    let started = recent_time(&st["started_at"], began, "crash started_at");
    let exited = recent_time(&st["exited_at"], began, "crash exited_at");
    assert!(started <= exited, "{st}");
    let exits = st["last_exits"].as_array().cloned().unwrap_or_default();
    assert_eq!(exits.len(), 1, "{st}");
    assert_eq!(exits[0]["code"], 3, "{st}");
    assert_eq!(exits[0]["signal"], Value::Null, "{st}");
    assert_eq!(exits[0]["reason"], "crashed", "{st}");
    recent_time(&exits[0]["time"], began, "crash last_exits time");
    assert_eq!(st["crashes_last_minute"], 1, "{st}");

    let st = sb.proc_status("selfkill");
    let e = last_exit(&st);
    assert_eq!(
        (&e["code"], &e["signal"], &e["reason"]),
        (
            &Value::Null,
            &Value::from("SIGKILL"),
            &Value::from("crashed")
        ),
        "{st}"
    );
    assert_eq!(st["crashes_last_minute"], 1, "{st}");

    sb.ok(&["stop", "plain"]);
    let st = sb.proc_status("plain");
    let e = last_exit(&st);
    assert_eq!(
        (&e["code"], &e["signal"], &e["reason"]),
        (
            &Value::Null,
            &Value::from("SIGTERM"),
            &Value::from("stopped")
        ),
        "{st}"
    );
    recent_time(&st["exited_at"], began, "plain exited_at");
    assert_eq!(st["crashes_last_minute"], 0, "{st}");

    sb.ok(&["stop", "stubborn", "--timeout", "0.2"]);
    let st = sb.proc_status("stubborn");
    let e = last_exit(&st);
    assert_eq!(
        (&e["signal"], &e["reason"]),
        (
            &Value::from("SIGKILL"),
            &Value::from("killed-after-timeout")
        ),
        "{st}"
    );
    assert_eq!(st["crashes_last_minute"], 0, "{st}");

    // One process through every kind of end, and more than five of them.
    let seq_pid = sb.proc_status("seq")["pid"].as_i64().unwrap_or(0) as i32;
    let seq_pid2 = parse_pid(&sb.ok(&["restart", "seq"]));
    assert!(!alive(seq_pid));
    kill(seq_pid2, libc::SIGKILL);
    await_proc(&sb, "seq", "to exit after the kill", |st| {
        st["state"] == "exited"
    });
    sb.ok(&["restart", "seq"]); // from exited: nothing ends
    sb.ok(&["stop", "seq"]);
    let st = sb.proc_status("seq");
    assert_eq!(reasons(&st), ["restarted", "crashed", "stopped"], "{st}");
    for _ in 0..4 {
        sb.ok(&["restart", "seq"]); // the first from exited: three more ends
    }
    let st = sb.proc_status("seq");
    assert_eq!(
        reasons(&st),
        ["crashed", "stopped", "restarted", "restarted", "restarted"],
        "oldest first, at most five: {st}"
    );
    let times: Vec<f64> = st["last_exits"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| recent_time(&e["time"], began, "seq last_exits time"))
                .collect()
        })
        .unwrap_or_default();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{st}");
    assert_eq!(st["crashes_last_minute"], 1, "{st}");

    sb.ok(&["stop-all"]);
    let st = sb.proc_status("other");
    assert_eq!(reasons(&st), ["stopped"], "{st}");
}

#[test]
fn the_status_table_shows_restarts_only_when_a_policy_exists() {
    let plain = Sandbox::new();
    plain.start("a", "sleep 60");
    let table = plain.ok(&["status"]);
    assert!(
        table.starts_with("NAME         PID      STATE      EXIT   UPTIME\na "),
        "{table}"
    );
    assert!(!table.contains("RESTARTS"), "{table}");

    let sb = Sandbox::new();
    sb.start("nopolicy", "sleep 60");
    for (name, max) in [("capped", Some("5")), ("open", None)] {
        let command = counted(name, "[ $n -gt 2 ] && exec sleep 60; exit 1");
        let mut args = vec![
            "run",
            command.as_str(),
            "--name",
            name,
            "--autorestart",
            "on-failure",
            "--restart-delay",
            "50",
        ];
        if let Some(max) = max {
            args.extend(["--max-restarts", max]);
        }
        sb.ok(&args);
    }
    let all = await_status(&sb, "both up after two restarts", |all| {
        ["capped", "open"].iter().all(|n| {
            find(all, n).is_some_and(|st| st["restart_count"] == 2 && st["state"] == "running")
        })
    });
    assert_eq!(
        find(&all, "capped").map(|s| &s["max_restarts"]),
        Some(&Value::from(5))
    );
    assert_eq!(
        find(&all, "open").map(|s| &s["max_restarts"]),
        Some(&Value::Null)
    );
    let table = sb.ok(&["status"]);
    let header = table.lines().next().unwrap_or_default();
    let column = header
        .find("RESTARTS")
        .unwrap_or_else(|| panic!("no RESTARTS column:\n{table}"));
    let cell = |name: &str| -> String {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} row in\n{table}"));
        row.get(column..)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(cell("capped"), "2/5", "{table}");
    assert_eq!(cell("open"), "2", "{table}");
    // Running is said at the fork; run 3's first line may come a moment later.
    sb.ok(&["wait", "open", "--until", "run 3", "--timeout", "10"]);
    let log = all_logs(&sb, "open");
    assert!(
        log.contains("[agent-procs] Restarted (exit 1, attempt 2)\nrun 3\n"),
        "{log}"
    );
}

#[test]
fn the_config_sets_the_policy_for_up() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.root.join("agent-procs.yaml"),
        "processes:
  flaky:
    cmd: sh -c 'echo run; sleep 0.1; exit 1'
    autorestart: on-failure
    max_restarts: 2
    restart_delay: 50
  ticker:
    cmd: sh -c 'echo tick; sleep 0.05'
    autorestart: always
    restart_delay: 50
  steady:
    cmd: sleep 60
",
    )
    .expect("writing the config");
    let out = sb.ok(&["up"]);
    assert!(out.ends_with("all processes started\n"), "{out}");
    let st = await_proc(&sb, "flaky", "to fail", |st| st["state"] == "failed");
    assert_eq!(st["restart_policy"], "on-failure", "{st}");
    assert_eq!(st["max_restarts"], 2, "{st}");
    assert_eq!(st["restart_count"], 2, "{st}");
    assert_eq!(
        all_logs(&sb, "flaky"),
        "run\n[agent-procs] Restarted (exit 1, attempt 1/2)\nrun\n\
         [agent-procs] Restarted (exit 1, attempt 2/2)\nrun\n\
         [agent-procs] Max restarts (2) exhausted\n"
    );
    // `always` restarts clean exits too, with no end.
    let st = await_proc(&sb, "ticker", "restarted twice", |st| {
        st["restart_count"].as_u64().is_some_and(|n| n >= 2)
    });
    assert_eq!(st["restart_policy"], "always", "{st}");
    assert_eq!(st["max_restarts"], Value::Null, "{st}");
    // Its oldest runs may have rotated away by now (it restarts every 0.1 s and
    // 5 old segments are kept), so look for a restart of a clean exit with no
    // limit in the attempt count, followed by the next run's output.
    let log = all_logs(&sb, "ticker");
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines.windows(2).any(|w| w[0]
            .strip_prefix("[agent-procs] Restarted (exit 0, attempt ")
            .and_then(|rest| rest.strip_suffix(')'))
            .is_some_and(|n| n.parse::<u64>().is_ok())
            && w[1] == "tick"),
        "{log}"
    );
    let st = sb.proc_status("steady");
    assert_eq!(st["restart_policy"], Value::Null, "{st}");
    assert_eq!(st["state"], "running", "{st}");
}

#[test]
fn bad_restart_flags_are_usage_errors() {
    let sb = Sandbox::new();
    let err = sb.fails(&["run", "true", "--autorestart", "x"], 64);
    assert!(
        err.contains("--autorestart takes always, on-failure or never, not 'x'"),
        "{err}"
    );
    for (flag, value) in [
        ("--max-restarts", "2"),
        ("--restart-delay", "50"),
        ("--backoff", "exponential"),
    ] {
        let err = sb.fails(&["run", "true", flag, value], 64);
        assert!(
            err.contains(flag) && err.contains("--autorestart"),
            "{flag} alone: {err}"
        );
        let err = sb.fails(&["run", "true", "--autorestart", "never", flag, value], 64);
        assert!(
            err.contains(flag) && err.contains("--autorestart"),
            "{flag} with never: {err}"
        );
    }
    let err = sb.fails(
        &[
            "run",
            "true",
            "--autorestart",
            "on-failure",
            "--backoff",
            "linear",
        ],
        64,
    );
    assert!(err.contains("--backoff"), "{err}");
    // Usage errors are caught before any daemon starts.
    assert!(!sb.socket().exists(), "a usage error started the daemon");

    // The order of the flags does not matter, and `never` alone is fine.
    sb.ok(&[
        "run",
        "true",
        "--name",
        "late",
        "--max-restarts",
        "1",
        "--restart-delay",
        "50",
        "--backoff",
        "exponential",
        "--autorestart",
        "on-failure",
    ]);
    sb.ok(&["run", "true", "--name", "nev", "--autorestart", "never"]);
    let st = sb.proc_status("late");
    assert_eq!(st["restart_policy"], "on-failure", "{st}");
    assert_eq!(st["max_restarts"], 1, "{st}");
    assert_eq!(sb.proc_status("nev")["restart_policy"], "never");
}

#[test]
fn waits_and_followers_see_the_supervisor_lines() {
    let sb = Sandbox::new();
    sb.ok(&[
        "run",
        "sh -c 'sleep 0.3; exit 1'",
        "--name",
        "flaky",
        "--autorestart",
        "on-failure",
        "--max-restarts",
        "1",
        "--restart-delay",
        "50",
    ]);
    // Asked before either line exists: both arrive live.
    let out = sb.ok(&[
        "wait",
        "flaky",
        "--until",
        "Restarted (exit 1",
        "--timeout",
        "10",
    ]);
    assert_eq!(out, "[agent-procs] Restarted (exit 1, attempt 1/1)\n");
    let out = sb.ok(&[
        "wait",
        "flaky",
        "--until",
        "Max restarts",
        "--timeout",
        "10",
    ]);
    assert_eq!(out, "[agent-procs] Max restarts (1) exhausted\n");
}
