//! What the daemon runs: a `Spec`, built from a `run` request by a pure, checked
//! conversion (`Spec::from_run`). Wire types stop here; the lifecycle starts a
//! `Spec`. What needs the process table (an existing name, a chosen port, a
//! shared environment) is the loop's to add.

use super::signals;
use super::supervise::Policy;
use crate::glob::Glob;
use crate::logs;
use crate::protocol::{Request, WatchConfig};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// What to start; kept on the process so restarts start the same thing.
#[derive(Debug, Clone)]
pub struct Spec {
    pub command: String,
    pub cwd: PathBuf,
    /// The base environment (the caller's, or the daemon's for 0.6 clients);
    /// shared between processes started from the same environment.
    pub base_env: Option<Rc<HashMap<String, String>>>,
    /// Overrides from `--env`; they win over everything.
    pub env: HashMap<String, String>,
    pub port: Option<u16>,
    /// Segment size and number of old segments for this process's logs.
    pub log_limits: logs::Limits,
    /// Grace period between `stop_signal` and SIGKILL; None: the daemon's default.
    pub stop_timeout: Option<Duration>,
    pub stop_signal: i32,
    /// Names of the processes this one needs; it is stopped before them.
    pub depends_on: Vec<String>,
    /// A setup step that runs to completion.
    pub oneshot: bool,
    /// Start it again when it dies on its own (None: never).
    pub restart: Option<Policy>,
    /// What was asked for, minus the caller's environment: `up` leaves a running
    /// process alone when this is unchanged and restarts it when it differs.
    pub definition: String,
}

#[cfg(test)]
impl Spec {
    /// A plain spec for the daemon's unit tests: `command` in `/`, no port, no
    /// policy, the default logs and signal. Tests change what they are about.
    pub fn for_test(command: &str) -> Spec {
        Spec {
            command: command.into(),
            cwd: "/".into(),
            base_env: None,
            env: Default::default(),
            port: None,
            log_limits: Default::default(),
            stop_timeout: None,
            stop_signal: libc::SIGTERM,
            depends_on: Vec::new(),
            oneshot: false,
            restart: None,
            definition: String::new(),
        }
    }
}

/// The compiled `--watch` and `--watch-ignore` globs; the tree is the spec's cwd.
#[derive(Debug)]
pub struct Watch {
    pub patterns: Vec<Glob>,
    pub ignore: Vec<Glob>,
}

/// A checked run request: what to start, under which name, watching what.
#[derive(Debug)]
pub struct Planned {
    /// The name asked for (None: the daemon names it after its id).
    pub name: Option<String>,
    /// `port` is the one asked for; the loop may choose one behind the proxy.
    pub spec: Spec,
    pub watch: Option<Watch>,
}

/// What resolving a request needs to know of the daemon.
pub struct Context<'a> {
    /// Where relative and missing `cwd`s resolve: the daemon's start dir.
    pub home_cwd: &'a Path,
    /// Behind the proxy a name must be a DNS label.
    pub behind_proxy: bool,
}

impl Spec {
    /// Check a `run` request and build what it asks to start. The error is the
    /// answer to send, naming what is wrong and how to fix it.
    pub fn from_run(request: Request, ctx: &Context) -> Result<Planned, String> {
        let definition = definition(&request, ctx.home_cwd).unwrap_or_default();
        let Request::Run {
            command,
            name,
            cwd,
            env,
            port,
            restart,
            watch,
            base_env,
            log_max_size,
            log_max_files,
            stop_timeout_ms,
            stop_signal,
            depends_on,
            oneshot,
        } = request
        else {
            return Err("internal error: not a run request".into());
        };
        if oneshot && restart.as_ref().is_some_and(|r| r.mode == "always") {
            return Err(
                "a one-shot step runs to completion, so it cannot be restarted always; \
                 use on-failure to retry it until it succeeds"
                    .into(),
            );
        }
        let restart = match restart.as_ref().map(Policy::from_request) {
            None => None,
            Some(policy) => policy?,
        };
        let watch = watch.as_ref().map(watch_globs).transpose()?;
        check_command(&command)?;
        let env = env.unwrap_or_default();
        if let Some(msg) = bad_env(&env).or_else(|| base_env.as_ref().and_then(bad_env)) {
            return Err(msg);
        }
        let stop_signal = match stop_signal.as_deref() {
            None => libc::SIGTERM,
            Some(name) => signals::signal_number(name).ok_or_else(|| {
                format!("unknown stop signal '{name}' (try TERM, INT, HUP, QUIT or KILL)")
            })?,
        };
        if let Some(n) = &name {
            check_name(n, ctx.behind_proxy)?;
        }
        let defaults = logs::Limits::default();
        let spec = Spec {
            command,
            cwd: resolve_cwd(cwd, ctx.home_cwd),
            base_env: base_env.map(Rc::new),
            env,
            port,
            log_limits: logs::Limits {
                max_size: log_max_size.unwrap_or(defaults.max_size).max(1),
                keep: log_max_files
                    .unwrap_or(defaults.keep)
                    .min(logs::MAX_SEGMENTS),
            },
            stop_timeout: stop_timeout_ms.map(Duration::from_millis),
            stop_signal,
            depends_on,
            restart,
            definition,
            oneshot,
        };
        Ok(Planned { name, spec, watch })
    }
}

/// What a run request asks for, minus the caller's environment and name:
/// equal definitions start the same thing.
pub fn definition(request: &Request, home_cwd: &Path) -> Option<String> {
    let Request::Run {
        command,
        cwd,
        env,
        port,
        log_max_size,
        log_max_files,
        stop_timeout_ms,
        stop_signal,
        depends_on,
        restart,
        watch,
        oneshot,
        ..
    } = request
    else {
        return None;
    };
    let cwd = match cwd {
        Some(dir) => home_cwd.join(dir),
        None => home_cwd.to_path_buf(),
    };
    let env: Option<BTreeMap<&String, &String>> = env.as_ref().map(|e| e.iter().collect());
    let fields = (
        command,
        cwd,
        env.unwrap_or_default(),
        port,
        log_max_size,
        log_max_files,
        stop_timeout_ms,
        stop_signal.as_deref().and_then(signals::signal_number),
        depends_on,
        restart,
        watch,
        oneshot,
    );
    serde_json::to_string(&fields).ok()
}

fn resolve_cwd(cwd: Option<String>, home_cwd: &Path) -> PathBuf {
    match cwd {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => home_cwd.join(dir),
        None => home_cwd.to_path_buf(),
    }
}

fn check_command(command: &str) -> Result<(), String> {
    if command.trim().is_empty() {
        return Err("the command is empty".into());
    }
    if command.contains('\0') {
        return Err("the command contains a NUL byte".into());
    }
    Ok(())
}

/// A bad name and a bad value are told apart: the value is what to fix when
/// only it holds a NUL.
fn bad_env(map: &HashMap<String, String>) -> Option<String> {
    map.iter().find_map(|(k, v)| {
        if k.is_empty() || k.contains(['=', '\0']) {
            Some(format!("invalid environment variable name {k:?}"))
        } else if v.contains('\0') {
            Some(format!(
                "invalid value for environment variable {k:?}: it contains a NUL byte"
            ))
        } else {
            None
        }
    })
}

fn check_name(name: &str, behind_proxy: bool) -> Result<(), String> {
    crate::paths::check_process_name(name)?;
    let label = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if behind_proxy && !label {
        return Err(format!(
            "behind the proxy a process name becomes NAME.localhost, so it must be \
             a DNS label (lower-case letters, digits and '-'), not '{name}'"
        ));
    }
    Ok(())
}

/// The compiled `--watch` and `--watch-ignore` globs of a run request.
fn watch_globs(w: &WatchConfig) -> Result<Watch, String> {
    let compile = |flag: &str, list: &[String]| {
        list.iter()
            .map(|p| Glob::new(p).map_err(|e| format!("{flag} '{p}': {e}")))
            .collect::<Result<Vec<_>, String>>()
    };
    if w.paths.is_empty() {
        return Err("--watch needs at least one pattern".into());
    }
    let patterns = compile("--watch", &w.paths)?;
    let ignore = compile("--watch-ignore", w.ignore.as_deref().unwrap_or_default())?;
    Ok(Watch { patterns, ignore })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::RestartPolicy;

    fn run(command: &str) -> Request {
        Request::Run {
            command: command.into(),
            name: None,
            cwd: None,
            env: None,
            port: None,
            restart: None,
            watch: None,
            base_env: None,
            log_max_size: None,
            log_max_files: None,
            stop_timeout_ms: None,
            stop_signal: None,
            depends_on: Vec::new(),
            oneshot: false,
        }
    }

    /// `run("x")` with one field changed by `edit`.
    fn with(edit: impl FnOnce(&mut Request)) -> Request {
        let mut r = run("server --port 1");
        edit(&mut r);
        r
    }

    fn plan(request: Request) -> Result<Planned, String> {
        let ctx = Context {
            home_cwd: Path::new("/home/me/app"),
            behind_proxy: false,
        };
        Spec::from_run(request, &ctx)
    }

    fn policy(mode: &str) -> Option<RestartPolicy> {
        Some(RestartPolicy {
            mode: mode.into(),
            max_restarts: Some(3),
            restart_delay_ms: 500,
            backoff: None,
        })
    }

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    macro_rules! set {
        ($field:ident = $value:expr) => {{
            let value = $value;
            with(|r| {
                if let Request::Run { $field, .. } = r {
                    *$field = value;
                }
            })
        }};
    }

    #[test]
    fn bad_requests_are_refused_with_what_to_fix() {
        let table: Vec<(Request, &str)> = vec![
            (run(""), "the command is empty"),
            (run("  \t"), "the command is empty"),
            (run("echo \0"), "the command contains a NUL byte"),
            (
                set!(restart = policy("sometimes")),
                "unknown restart mode 'sometimes'",
            ),
            (
                with(|r| {
                    if let Request::Run {
                        restart, oneshot, ..
                    } = r
                    {
                        *restart = policy("always");
                        *oneshot = true;
                    }
                }),
                "a one-shot step runs to completion",
            ),
            (
                set!(env = env(&[("A=B", "1")])),
                "invalid environment variable name \"A=B\"",
            ),
            (
                set!(env = env(&[("", "1")])),
                "invalid environment variable name \"\"",
            ),
            (
                set!(env = env(&[("A", "x\0y")])),
                "invalid value for environment variable \"A\": it contains a NUL byte",
            ),
            (
                set!(base_env = env(&[("B\0", "1")])),
                "invalid environment variable name",
            ),
            (
                set!(stop_signal = Some("NOPE".into())),
                "unknown stop signal 'NOPE' (try TERM",
            ),
            (
                set!(name = Some(".hidden".into())),
                "invalid process name '.hidden'",
            ),
        ];
        assert_refused(table);
        assert!(plan(Request::Shutdown).is_err());
    }

    #[test]
    fn bad_watch_patterns_are_refused_with_what_to_fix() {
        let table: Vec<(Request, &str)> = vec![
            (
                set!(
                    watch = Some(WatchConfig {
                        paths: vec![],
                        ignore: None
                    })
                ),
                "--watch needs at least one pattern",
            ),
            (
                set!(
                    watch = Some(WatchConfig {
                        paths: vec!["[".into()],
                        ignore: None
                    })
                ),
                "--watch '['",
            ),
            (
                set!(
                    watch = Some(WatchConfig {
                        paths: vec!["*.rs".into()],
                        ignore: Some(vec!["[".into()])
                    })
                ),
                "--watch-ignore '['",
            ),
        ];
        assert_refused(table);
    }

    /// Each request is refused with an error that starts as expected.
    fn assert_refused(table: Vec<(Request, &str)>) {
        for (request, expected) in table {
            match plan(request) {
                Ok(_) => panic!("accepted; expected an error starting {expected:?}"),
                Err(msg) => assert!(msg.starts_with(expected), "{msg:?} vs {expected:?}"),
            }
        }
    }

    #[test]
    fn cwd_resolves_against_the_daemons_start_dir() {
        let table = [
            (None, "/home/me/app"),
            (Some("web"), "/home/me/app/web"),
            (Some("../lib"), "/home/me/app/../lib"),
            (Some("/srv/www"), "/srv/www"),
        ];
        for (cwd, expected) in table {
            let planned = plan(set!(cwd = cwd.map(String::from))).expect("valid");
            assert_eq!(planned.spec.cwd, PathBuf::from(expected), "{cwd:?}");
        }
    }

    #[test]
    fn fields_carry_over_with_their_defaults() {
        let planned = plan(run("server")).expect("valid");
        let spec = planned.spec;
        assert_eq!(spec.stop_signal, libc::SIGTERM);
        assert_eq!(spec.log_limits, logs::Limits::default());
        assert!(spec.restart.is_none() && spec.port.is_none() && spec.stop_timeout.is_none());
        assert!(planned.name.is_none() && planned.watch.is_none());

        let planned = plan(with(|r| {
            if let Request::Run {
                name,
                port,
                stop_signal,
                stop_timeout_ms,
                log_max_size,
                log_max_files,
                restart,
                env: e,
                watch,
                ..
            } = r
            {
                *name = Some("web".into());
                *port = Some(3000);
                *stop_signal = Some("SIGINT".into());
                *stop_timeout_ms = Some(2500);
                *log_max_size = Some(0);
                *log_max_files = Some(usize::MAX);
                *restart = policy("on-failure");
                *e = env(&[("A", "1")]);
                *watch = Some(WatchConfig {
                    paths: vec!["src/**".into()],
                    ignore: None,
                });
            }
        }))
        .expect("valid");
        let spec = &planned.spec;
        assert_eq!(planned.name.as_deref(), Some("web"));
        assert_eq!(spec.port, Some(3000));
        assert_eq!(spec.stop_signal, libc::SIGINT);
        assert_eq!(spec.stop_timeout, Some(Duration::from_millis(2500)));
        // A zero size would rotate at every byte; too many segments are capped.
        assert_eq!(spec.log_limits.max_size, 1);
        assert_eq!(spec.log_limits.keep, logs::MAX_SEGMENTS);
        let restart = spec.restart.as_ref().expect("a policy");
        assert_eq!((restart.mode_name(), restart.max), ("on-failure", Some(3)));
        assert_eq!(spec.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(planned.watch.map(|w| w.patterns.len()), Some(1));
    }

    #[test]
    fn behind_the_proxy_a_name_must_be_a_dns_label() {
        let ctx = |behind_proxy| Context {
            home_cwd: Path::new("/"),
            behind_proxy,
        };
        let named = |n: &str| set!(name = Some(n.into()));
        assert!(Spec::from_run(named("Web_1"), &ctx(false)).is_ok());
        let err = Spec::from_run(named("Web_1"), &ctx(true))
            .err()
            .unwrap_or_default();
        assert!(err.contains("must be a DNS label"), "{err}");
        assert!(Spec::from_run(named("web-1"), &ctx(true)).is_ok());
    }

    #[test]
    fn a_definition_ignores_the_name_and_the_callers_environment() {
        let home = Path::new("/home/me/app");
        let a = definition(&set!(name = Some("a".into())), home);
        let b = definition(&set!(base_env = env(&[("X", "1")])), home);
        assert!(a.is_some());
        assert_eq!(a, b);
        // Relative and absolute spellings of one dir are one definition.
        let rel = definition(&set!(cwd = Some("web".into())), home);
        let abs = definition(&set!(cwd = Some("/home/me/app/web".into())), home);
        assert_eq!(rel, abs);
        // SIGTERM and TERM are one signal.
        let long = definition(&set!(stop_signal = Some("SIGTERM".into())), home);
        let short = definition(&set!(stop_signal = Some("TERM".into())), home);
        assert_eq!(long, short);
        assert_ne!(definition(&set!(port = Some(1)), home), a);
        assert_eq!(definition(&Request::Shutdown, home), None);
        // The definition travels on the spec.
        let planned = plan(set!(name = Some("a".into()))).expect("valid");
        assert_eq!(Some(planned.spec.definition), a);
    }
}
