//! The config file: finding `agent-procs.yaml` and turning its YAML tree (`yaml.rs`)
//! into checked process definitions with defaults filled in. Every problem is
//! collected with its file, line, column and key path, so one run reports them all.
//! Nothing here starts a process; `up` works from `Config` and `start_order`.

use crate::error::describe_io;
use crate::paths;
use crate::yaml::{self, Key, Node, Value};
use serde::{Serialize, Serializer};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// The name `find_config` looks for.
pub const FILE_NAME: &str = "agent-procs.yaml";
/// How long `up` waits for a process to become ready, unless it says otherwise.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace period between the stop signal and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before an automatic restart.
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_millis(1000);
/// Longest span a config may give in seconds; keeps `Duration` arithmetic finite.
const MAX_SECONDS: f64 = 1e9;

const TOP_KEYS: &[&str] = &["session", "proxy", "proxy_port", "processes"];
const PROCESS_KEYS: &[&str] = &[
    "cmd",
    "cwd",
    "env",
    "env_file",
    "ready",
    "ready_timeout",
    "depends_on",
    "port",
    "autorestart",
    "max_restarts",
    "restart_delay",
    "watch",
    "watch_ignore",
    "stop_timeout",
    "stop_signal",
    "log_max_size",
    "log_max_files",
    "oneshot",
];
const READY_KEYS: &[&str] = &["log", "regex", "tcp", "http", "exit"];
const SIGNALS: &[&str] = &["TERM", "INT", "HUP", "QUIT", "KILL", "USR1", "USR2"];

/// One problem in a config file. `line` is None when the file could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigError {
    /// The file as the user named it; empty when there is none (no config found).
    #[serde(serialize_with = "empty_as_null")]
    pub file: String,
    pub line: Option<usize>,
    pub col: Option<usize>,
    /// Dotted key path such as `processes.api.port`; empty for syntax errors.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(line), Some(col)) = (self.line, self.col) {
            write!(f, ":{line}:{col}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A checked config: every process valid, every dependency known, no cycles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub file: PathBuf,
    pub session: Option<String>,
    pub proxy: bool,
    pub proxy_port: Option<u16>,
    /// In file order.
    pub processes: Vec<Process>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Process {
    pub name: String,
    pub cmd: String,
    /// Absolute; relative paths in the file are taken from the file's directory.
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub env_file: Option<PathBuf>,
    pub ready: Option<Ready>,
    #[serde(serialize_with = "as_seconds")]
    pub ready_timeout: Duration,
    pub depends_on: Vec<String>,
    pub port: Option<u16>,
    pub autorestart: Autorestart,
    pub max_restarts: Option<u32>,
    /// Shown in milliseconds, as it is written in the file.
    #[serde(serialize_with = "as_millis")]
    pub restart_delay: Duration,
    pub watch: Vec<String>,
    pub watch_ignore: Vec<String>,
    #[serde(serialize_with = "as_seconds")]
    pub stop_timeout: Duration,
    /// `SIGTERM`, `SIGINT`, ...
    pub stop_signal: String,
    pub log_max_size: u64,
    pub log_max_files: usize,
    /// A setup step that runs to completion: ready (for its dependents) when it
    /// exits with code 0, and `up` fails when it exits otherwise.
    pub oneshot: bool,
}

/// When a process counts as ready, so that its dependents may start.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Ready {
    /// A log line containing (or, with `regex`, matching) this text.
    Log { log: String, regex: bool },
    /// A TCP connect to 127.0.0.1 on this port succeeds.
    Tcp { tcp: u16 },
    /// A GET of this URL answers 2xx or 3xx.
    Http { http: String },
    /// The process exits with this code (a one-shot setup step).
    Exit { exit: i32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Autorestart {
    Always,
    OnFailure,
    Never,
}

fn empty_as_null<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    if text.is_empty() {
        s.serialize_none()
    } else {
        s.serialize_str(text)
    }
}

fn as_seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn as_millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis().min(u64::MAX as u128) as u64)
}

/// The nearest `agent-procs.yaml` in `start` or one of its parents.
pub fn find_config(start: &Path) -> Option<PathBuf> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidate = d.join(FILE_NAME);
        if candidate.is_file() {
            return Some(candidate);
        }
        dir = d.parent();
    }
    None
}

impl Config {
    /// Read and check the file at `path`; errors name it as `path` is written.
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let shown = path.display().to_string();
        let fail = |line, col, message: String| {
            vec![ConfigError {
                file: shown.clone(),
                line,
                col,
                path: String::new(),
                message,
            }]
        };
        let bytes = std::fs::read(path).map_err(|e| fail(None, None, describe_io(&e)))?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let good = String::from_utf8_lossy(good);
                let line = good.matches('\n').count() + 1;
                let col = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                return Err(fail(
                    Some(line),
                    Some(col),
                    "the file is not valid UTF-8; save it as UTF-8".into(),
                ));
            }
        };
        let file = std::path::absolute(path).map_err(|e| fail(None, None, describe_io(&e)))?;
        Config::parse(&text, &file, &shown)
    }

    /// Check `text` as the contents of `file` (an absolute path, whose directory
    /// relative paths are taken from); `shown` names the file in errors.
    pub fn parse(text: &str, file: &Path, shown: &str) -> Result<Config, Vec<ConfigError>> {
        let mut c = Checker {
            shown,
            errors: Vec::new(),
        };
        match yaml::parse(text) {
            Ok(root) => {
                let config = c.config(&root, file);
                match config {
                    Some(config) if c.errors.is_empty() => Ok(config),
                    _ => Err(c.errors),
                }
            }
            Err(e) => {
                c.at((e.line, e.col), "", e.msg);
                Err(c.errors)
            }
        }
        .map_err(|mut errors| {
            errors.sort_by_key(|e| (e.line, e.col));
            errors
        })
    }

    /// Processes in an order that starts each one after all of its dependencies;
    /// among those free to start, file order decides.
    pub fn start_order(&self) -> Vec<&Process> {
        let index: HashMap<&str, usize> = self
            .processes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let mut waiting_on = vec![0usize; self.processes.len()];
        let mut dependents = vec![Vec::new(); self.processes.len()];
        for (i, p) in self.processes.iter().enumerate() {
            for dep in &p.depends_on {
                if let Some(&d) = index.get(dep.as_str()) {
                    waiting_on[i] += 1;
                    dependents[d].push(i);
                }
            }
        }
        let mut free: BinaryHeap<Reverse<usize>> = (0..self.processes.len())
            .filter(|&i| waiting_on[i] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(self.processes.len());
        while let Some(Reverse(i)) = free.pop() {
            order.push(&self.processes[i]);
            for &j in &dependents[i] {
                waiting_on[j] -= 1;
                if waiting_on[j] == 0 {
                    free.push(Reverse(j));
                }
            }
        }
        order
    }
}

/// One `depends_on` entry, remembered with its place for the checks that need every name.
impl Process {
    /// A process with no settings given: every default.
    fn defaults(name: &str, dir: &Path) -> Process {
        Process {
            name: name.to_string(),
            cmd: String::new(),
            cwd: dir.to_path_buf(),
            env: BTreeMap::new(),
            env_file: None,
            ready: None,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            depends_on: Vec::new(),
            port: None,
            autorestart: Autorestart::Never,
            max_restarts: None,
            restart_delay: DEFAULT_RESTART_DELAY,
            watch: Vec::new(),
            watch_ignore: Vec::new(),
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            stop_signal: "SIGTERM".into(),
            log_max_size: crate::logs::MAX_SEGMENT,
            log_max_files: crate::logs::KEEP_SEGMENTS,
            oneshot: false,
        }
    }
}

struct Dep<'n> {
    from: usize,
    name: &'n str,
    at: (usize, usize),
    path: String,
}

/// Walks the tree, collecting errors; each check returns None after recording one.
struct Checker<'a> {
    shown: &'a str,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn at(&mut self, at: (usize, usize), path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.shown.to_string(),
            line: Some(at.0),
            col: Some(at.1),
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn node<T>(&mut self, node: &Node, path: &str, message: impl Into<String>) -> Option<T> {
        self.at((node.line, node.col), path, message);
        None
    }

    fn wrong_type<T>(&mut self, node: &Node, path: &str, expected: &str) -> Option<T> {
        let found = node.value.kind();
        self.node(node, path, format!("expected {expected}, found {found}"))
    }

    fn unknown_key(&mut self, key: &Key, parent: &str, known: &[&str]) {
        let path = join(parent, &key.name);
        let message = match suggest(&key.name, known.iter().copied()) {
            Some(near) => format!("unknown key; did you mean '{near}'?"),
            None => format!("unknown key (expected one of {})", known.join(", ")),
        };
        self.at((key.line, key.col), &path, message);
    }

    fn string<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n str> {
        match &node.value {
            Value::Str(s) if s.is_empty() => self.node(node, path, "must not be empty"),
            Value::Str(s) if s.contains('\0') => {
                self.node(node, path, "must not contain a NUL character")
            }
            Value::Str(s) => Some(s),
            _ => self.wrong_type(node, path, "a string"),
        }
    }

    fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s)
                if ["yes", "no", "on", "off", "y", "n"]
                    .contains(&s.to_ascii_lowercase().as_str()) =>
            {
                self.node(
                    node,
                    path,
                    format!(
                        "expected true or false, found '{s}' (YAML 1.2 reads yes/no/on/off as text)"
                    ),
                )
            }
            _ => self.wrong_type(node, path, "true or false"),
        }
    }

    fn int(&mut self, node: &Node, path: &str, min: i64, max: i64, what: &str) -> Option<i64> {
        match &node.value {
            Value::Int(i) if (min..=max).contains(i) => Some(*i),
            Value::Int(i) => self.node(
                node,
                path,
                format!("expected {what} from {min} to {max}, not {i}"),
            ),
            _ => self.wrong_type(node, path, what),
        }
    }

    fn port(&mut self, node: &Node, path: &str) -> Option<u16> {
        self.int(node, path, 1, 65535, "a port number")
            .and_then(|p| u16::try_from(p).ok())
    }

    fn seconds(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let secs = match &node.value {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            _ => return self.wrong_type(node, path, "a number of seconds"),
        };
        if secs.is_nan() || secs <= 0.0 {
            let shown = yaml_scalar(&node.value);
            return self.node(
                node,
                path,
                format!("must be more than 0 seconds, not {shown}"),
            );
        }
        if secs > MAX_SECONDS {
            return self.node(node, path, format!("must be at most {MAX_SECONDS} seconds"));
        }
        Some(Duration::from_secs_f64(secs))
    }

    /// One string or a list of strings.
    fn strings<'n>(&mut self, node: &'n Node, path: &str) -> Vec<(&'n str, &'n Node, String)> {
        match &node.value {
            Value::Str(_) => self
                .string(node, path)
                .map(|s| vec![(s, node, path.to_string())])
                .unwrap_or_default(),
            Value::List(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    if let Some(s) = self.string(item, &item_path) {
                        out.push((s, item, item_path));
                    }
                }
                out
            }
            _ => {
                self.wrong_type::<()>(node, path, "a string or a list of strings");
                Vec::new()
            }
        }
    }

    fn config(&mut self, root: &Node, file: &Path) -> Option<Config> {
        let dir = file.parent().unwrap_or(Path::new("/"));
        let entries = match &root.value {
            Value::Map(entries) => entries,
            Value::Null => {
                return self.node(
                    root,
                    "",
                    "the file is empty; it needs a 'processes:' map with at least one process",
                );
            }
            _ => return self.wrong_type(root, "", "a map of settings at the top level"),
        };
        let mut config = Config {
            file: file.to_path_buf(),
            session: None,
            proxy: false,
            proxy_port: None,
            processes: Vec::new(),
        };
        let mut processes = None;
        for (key, value) in entries {
            let path = key.name.as_str();
            if value.value == Value::Null && path != "processes" && TOP_KEYS.contains(&path) {
                continue; // an empty optional setting keeps its default
            }
            match path {
                "session" => {
                    config.session =
                        self.string(value, path)
                            .and_then(|s| match paths::check_session_name(s) {
                                Ok(()) => Some(s.to_string()),
                                Err(e) => self.node(value, path, e.to_string()),
                            })
                }
                "proxy" => config.proxy = self.boolean(value, path).unwrap_or(false),
                "proxy_port" => config.proxy_port = self.port(value, path),
                "processes" => processes = Some((key, value)),
                _ => self.unknown_key(key, "", TOP_KEYS),
            }
        }
        let Some((key, node)) = processes else {
            return self.node(
                root,
                "processes",
                "missing; add a 'processes:' map with at least one process",
            );
        };
        let defs = match &node.value {
            Value::Map(defs) if !defs.is_empty() => defs,
            Value::Map(_) | Value::Null => {
                self.at(
                    (key.line, key.col),
                    "processes",
                    "needs at least one process",
                );
                return None;
            }
            _ => return self.wrong_type(node, "processes", "a map of process names to settings"),
        };
        let names: Vec<&str> = defs.iter().map(|(k, _)| k.name.as_str()).collect();
        let mut deps = Vec::new();
        for (i, (name, def)) in defs.iter().enumerate() {
            if let Err(why) = paths::check_process_name(&name.name) {
                self.at((name.line, name.col), "processes", why);
            }
            if let Some(p) = self.process(i, name, def, dir, &mut deps) {
                config.processes.push(p);
            }
        }
        self.dependencies(&names, &deps);
        Some(config)
    }

    fn process<'n>(
        &mut self,
        index: usize,
        name: &Key,
        node: &'n Node,
        dir: &Path,
        deps: &mut Vec<Dep<'n>>,
    ) -> Option<Process> {
        let path = join("processes", &name.name);
        let Value::Map(entries) = &node.value else {
            return self.wrong_type(node, &path, "a map of settings with at least 'cmd'");
        };
        let before = self.errors.len();
        let mut p = Process::defaults(&name.name, dir);
        let mut cmd = None;
        let mut oneshot_at = None;
        for (key, value) in entries {
            let kp = join(&path, &key.name);
            let kp = kp.as_str();
            let known = PROCESS_KEYS.contains(&key.name.as_str());
            if value.value == Value::Null && known && key.name != "cmd" {
                continue; // an empty optional setting keeps its default
            }
            match key.name.as_str() {
                "cmd" => cmd = self.string(value, kp).map(str::to_string),
                "cwd" => {
                    if let Some(cwd) = self.string(value, kp) {
                        p.cwd = clean(&dir.join(cwd));
                    }
                }
                "env" => p.env = self.env(value, kp),
                "env_file" => p.env_file = self.string(value, kp).map(|f| clean(&dir.join(f))),
                "ready" => p.ready = self.ready(value, kp),
                "ready_timeout" => {
                    p.ready_timeout = self.seconds(value, kp).unwrap_or(p.ready_timeout)
                }
                "depends_on" => self.depends_on(value, kp, index, &mut p.depends_on, deps),
                "port" => p.port = self.port(value, kp),
                "oneshot" => {
                    p.oneshot = self.boolean(value, kp).unwrap_or(false);
                    oneshot_at = Some((value.line, value.col));
                }
                _ => self.lifecycle(&mut p, key, value, kp, &path),
            }
        }
        match cmd {
            Some(cmd) => p.cmd = cmd,
            None if !entries.iter().any(|(k, _)| k.name == "cmd") => {
                self.at(
                    (name.line, name.col),
                    &join(&path, "cmd"),
                    "missing; every process needs the command to run",
                );
            }
            None => {}
        }
        if let (true, Some(at)) = (p.oneshot, oneshot_at) {
            self.oneshot(&mut p, &path, at);
        }
        (self.errors.len() == before).then_some(p)
    }

    /// The settings of a process's life after it starts: restarts, watching,
    /// stopping and its logs. Anything else is an unknown key.
    fn lifecycle(&mut self, p: &mut Process, key: &Key, value: &Node, kp: &str, path: &str) {
        match key.name.as_str() {
            "autorestart" => p.autorestart = self.autorestart(value, kp).unwrap_or(p.autorestart),
            "max_restarts" => {
                p.max_restarts = self
                    .int(value, kp, 0, u32::MAX.into(), "a number of restarts")
                    .and_then(|n| u32::try_from(n).ok())
            }
            "restart_delay" => {
                if let Some(ms) = self.int(value, kp, 0, 86_400_000, "a number of milliseconds") {
                    p.restart_delay = Duration::from_millis(ms.unsigned_abs());
                }
            }
            "watch" => p.watch = self.pattern_list(value, kp),
            "watch_ignore" => p.watch_ignore = self.pattern_list(value, kp),
            "stop_timeout" => p.stop_timeout = self.seconds(value, kp).unwrap_or(p.stop_timeout),
            "stop_signal" => {
                if let Some(sig) = self.signal(value, kp) {
                    p.stop_signal = sig;
                }
            }
            "log_max_size" => {
                if let Some(size) = self.size(value, kp) {
                    p.log_max_size = size;
                }
            }
            "log_max_files" => {
                let max = crate::logs::MAX_SEGMENTS as i64;
                if let Some(n) = self.int(value, kp, 0, max, "a number of files") {
                    p.log_max_files = n.unsigned_abs() as usize;
                }
            }
            _ => self.unknown_key(key, path, PROCESS_KEYS),
        }
    }

    /// `depends_on`: names, each once; checked against the processes later.
    fn depends_on<'n>(
        &mut self,
        value: &'n Node,
        kp: &str,
        index: usize,
        depends_on: &mut Vec<String>,
        deps: &mut Vec<Dep<'n>>,
    ) {
        let mut listed = HashSet::new();
        for (dep, item, item_path) in self.strings(value, kp) {
            if !listed.insert(dep) {
                self.node::<()>(item, &item_path, format!("'{dep}' is listed twice"));
                continue;
            }
            depends_on.push(dep.to_string());
            deps.push(Dep {
                from: index,
                name: dep,
                at: (item.line, item.col),
                path: item_path,
            });
        }
    }

    fn autorestart(&mut self, value: &Node, kp: &str) -> Option<Autorestart> {
        match &value.value {
            Value::Str(s) if s == "always" => Some(Autorestart::Always),
            Value::Str(s) if s == "on-failure" => Some(Autorestart::OnFailure),
            Value::Str(s) if s == "never" => Some(Autorestart::Never),
            Value::Str(s) => {
                self.node::<()>(
                    value,
                    kp,
                    format!("unknown value '{s}' (expected always, on-failure or never)"),
                );
                None
            }
            _ => {
                self.wrong_type::<()>(value, kp, "always, on-failure or never");
                None
            }
        }
    }

    /// `oneshot: true`: ready when it exits with 0, so no other readiness and
    /// no `autorestart: always`.
    fn oneshot(&mut self, p: &mut Process, path: &str, at: (usize, usize)) {
        let kp = join(path, "oneshot");
        match (&p.ready, p.autorestart) {
            (_, Autorestart::Always) => self.at(
                at,
                &kp,
                "a one-shot step runs to completion, so it cannot have autorestart: always \
                 (on-failure retries it until it succeeds)",
            ),
            (None, _) => p.ready = Some(Ready::Exit { exit: 0 }),
            (Some(Ready::Exit { exit: 0 }), _) => {}
            (Some(_), _) => self.at(
                at,
                &kp,
                "a one-shot step is ready when it exits with code 0; remove its ready: \
                 (or drop oneshot: and use ready: {exit: N})",
            ),
        }
    }

    /// Glob patterns, each checked now rather than when `up` starts the process.
    fn pattern_list(&mut self, node: &Node, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (s, item, item_path) in self.strings(node, path) {
            match crate::glob::Glob::new(s) {
                Ok(_) => out.push(s.to_string()),
                Err(e) => {
                    self.node::<()>(item, &item_path, format!("invalid pattern: {e}"));
                }
            }
        }
        out
    }

    /// Variables: values are shown the way YAML 1.2 shows the scalar (`1`, `true`, `1.5`).
    fn env(&mut self, node: &Node, path: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let entries = match &node.value {
            Value::Map(entries) => entries,
            Value::Null => return env,
            _ => {
                self.wrong_type::<()>(node, path, "a map of variable names to values");
                return env;
            }
        };
        for (key, value) in entries {
            let kp = join(path, &key.name);
            if key.name.is_empty() || key.name.contains(['=', '\0']) {
                self.at(
                    (key.line, key.col),
                    &kp,
                    "invalid variable name; it must be non-empty, without '=' or NUL",
                );
                continue;
            }
            let text = match &value.value {
                Value::Null => {
                    self.node::<()>(
                        value,
                        &kp,
                        "expected a value, found null (write '' for an empty string)",
                    );
                    continue;
                }
                Value::List(_) | Value::Map(_) => {
                    self.wrong_type::<()>(value, &kp, "a string, number or boolean");
                    continue;
                }
                Value::Str(s) if s.contains('\0') => {
                    self.node::<()>(value, &kp, "must not contain a NUL character");
                    continue;
                }
                Value::Str(s) => s.clone(),
                scalar => yaml_scalar(scalar),
            };
            env.insert(key.name.clone(), text);
        }
        env
    }

    /// `ready: {http: URL}`: a URL the probe can reach.
    fn ready_http(&mut self, value: &Node, kp: &str) -> Option<Ready> {
        match &value.value {
            Value::Str(url) => match crate::probe::http_target(url) {
                Ok(_) => Some(Ready::Http { http: url.clone() }),
                Err(why) => self.node(
                    value,
                    kp,
                    format!("{why}; write it like http://127.0.0.1:8080/health"),
                ),
            },
            _ => self.wrong_type(value, kp, "a URL starting with http://"),
        }
    }

    /// `regex:` beside the readiness kind: only with `log`, whose pattern must
    /// then compile.
    fn with_regex(
        &mut self,
        mut kind: Ready,
        regex: Option<(&Key, bool)>,
        entries: &[(Key, Node)],
        node: &Node,
        path: &str,
    ) -> Option<Ready> {
        match (&mut kind, regex) {
            (Ready::Log { log, regex }, Some((_, true))) => {
                if let Err(e) = regex_lite::Regex::new(log) {
                    let at = entries
                        .iter()
                        .find(|(k, _)| k.name == "log")
                        .map_or((node.line, node.col), |(_, v)| (v.line, v.col));
                    self.at(
                        at,
                        &join(path, "log"),
                        format!("invalid regular expression: {e}"),
                    );
                    return None;
                }
                *regex = true;
            }
            (Ready::Log { .. }, _) | (_, None) => {}
            (_, Some((key, _))) => {
                self.at(
                    (key.line, key.col),
                    &join(path, "regex"),
                    "regex goes with log",
                );
                return None;
            }
        }
        Some(kind)
    }

    fn ready(&mut self, node: &Node, path: &str) -> Option<Ready> {
        let entries = match &node.value {
            Value::Str(_) => {
                return self.string(node, path).map(|s| Ready::Log {
                    log: s.to_string(),
                    regex: false,
                });
            }
            Value::Map(entries) => entries,
            _ => {
                return self.wrong_type(
                    node,
                    path,
                    "a log text or a map with one of log, tcp, http or exit",
                );
            }
        };
        let before = self.errors.len();
        let mut kinds: Vec<(&Key, Option<Ready>)> = Vec::new();
        let mut regex: Option<(&Key, bool)> = None;
        for (key, value) in entries {
            let kp = join(path, &key.name);
            let kp = kp.as_str();
            let kind = match key.name.as_str() {
                "log" => self.string(value, kp).map(|s| Ready::Log {
                    log: s.to_string(),
                    regex: false,
                }),
                "regex" => {
                    if let Some(b) = self.boolean(value, kp) {
                        regex = Some((key, b));
                    }
                    continue;
                }
                "tcp" => self.port(value, kp).map(|tcp| Ready::Tcp { tcp }),
                "http" => self.ready_http(value, kp),
                "exit" => self
                    .int(value, kp, 0, 255, "an exit code")
                    .map(|code| Ready::Exit { exit: code as i32 }),
                _ => {
                    self.unknown_key(key, path, READY_KEYS);
                    continue;
                }
            };
            kinds.push((key, kind));
        }
        if kinds.len() > 1 {
            let names: Vec<&str> = kinds.iter().map(|(k, _)| k.name.as_str()).collect();
            let (second, _) = kinds[1];
            self.at(
                (second.line, second.col),
                path,
                format!(
                    "give only one of log, tcp, http and exit, not both '{}' and '{}'",
                    names[0], names[1]
                ),
            );
            return None;
        }
        let Some((_, kind)) = kinds.pop() else {
            if self.errors.len() == before {
                return self.node(node, path, "expected one of log, tcp, http or exit");
            }
            return None;
        };
        let kind = self.with_regex(kind?, regex, entries, node, path)?;
        (self.errors.len() == before).then_some(kind)
    }

    fn signal(&mut self, node: &Node, path: &str) -> Option<String> {
        let Value::Str(s) = &node.value else {
            return self.wrong_type(node, path, "a signal name such as TERM");
        };
        let upper = s.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if SIGNALS.contains(&bare) {
            return Some(format!("SIG{bare}"));
        }
        self.node(
            node,
            path,
            format!("unknown signal '{s}' (expected TERM, INT, HUP, QUIT, KILL, USR1 or USR2)"),
        )
    }

    fn size(&mut self, node: &Node, path: &str) -> Option<u64> {
        let size = match &node.value {
            Value::Int(n) => u64::try_from(*n).ok(),
            Value::Str(s) => parse_size(s),
            _ => return self.wrong_type(node, path, "a size such as 50MiB"),
        };
        match size {
            Some(n) if n > 0 => Some(n),
            _ => self.node(
                node,
                path,
                format!(
                    "expected a size above 0 such as 50MiB, 10MB or 512k, not {}",
                    yaml_scalar(&node.value)
                ),
            ),
        }
    }

    /// Dependencies need every process name: unknown ones, self-references, cycles.
    fn dependencies(&mut self, names: &[&str], deps: &[Dep<'_>]) {
        let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let mut edges: Vec<Vec<(usize, usize)>> = vec![Vec::new(); names.len()];
        for (d, dep) in deps.iter().enumerate() {
            match index.get(dep.name) {
                Some(&to) if to == dep.from => self.at(
                    dep.at,
                    &dep.path,
                    format!("'{}' depends on itself", dep.name),
                ),
                Some(&to) => edges[dep.from].push((to, d)),
                None => {
                    let message = match suggest(dep.name, names.iter().copied()) {
                        Some(near) => {
                            format!("no process named '{}'; did you mean '{near}'?", dep.name)
                        }
                        None => format!("no process named '{}'", dep.name),
                    };
                    self.at(dep.at, &dep.path, message);
                }
            }
        }
        for cycle in find_cycles(&edges) {
            let shown: Vec<&str> = cycle.iter().map(|&(p, _)| names[p]).collect();
            let (_, first_edge) = cycle[0];
            let dep = &deps[first_edge];
            self.at(
                dep.at,
                &dep.path,
                format!("dependency cycle: {} -> {}", shown.join(" -> "), shown[0]),
            );
        }
    }
}

/// Cycles found by a depth-first search, each as (process, edge to the next one)
/// pairs starting from the process the search reached first. Iterative, so a long
/// dependency chain cannot overflow the stack.
fn find_cycles(edges: &[Vec<(usize, usize)>]) -> Vec<Vec<(usize, usize)>> {
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; edges.len()];
    let mut cycles = Vec::new();
    for root in 0..edges.len() {
        if state[root] != NEW {
            continue;
        }
        state[root] = OPEN;
        // (process, index of its next edge to follow); the path from root.
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some(top) = stack.last_mut() {
            let (v, next) = *top;
            let Some(&(w, edge)) = edges[v].get(next) else {
                state[v] = DONE;
                stack.pop();
                continue;
            };
            top.1 += 1;
            match state[w] {
                NEW => {
                    state[w] = OPEN;
                    stack.push((w, 0));
                }
                OPEN => {
                    let from = stack.iter().position(|&(u, _)| u == w).unwrap_or(0);
                    let mut cycle: Vec<(usize, usize)> = stack[from..]
                        .iter()
                        .map(|&(u, i)| (u, edges[u].get(i.wrapping_sub(1)).map_or(0, |e| e.1)))
                        .collect();
                    if let Some(last) = cycle.last_mut() {
                        last.1 = edge;
                    }
                    cycles.push(cycle);
                }
                _ => {}
            }
        }
    }
    cycles
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The closest of `known` within edit distance 2 of `word`, ignoring case.
fn suggest<'k>(word: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    let word = word.to_ascii_lowercase();
    known
        .filter(|k| k.chars().count().abs_diff(word.chars().count()) <= 2)
        .map(|k| (crate::spelling::distance(&word, &k.to_ascii_lowercase()), k))
        .filter(|&(d, k)| d <= 2 && d < k.chars().count().max(2))
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// A scalar as YAML 1.2 shows it, for env values and messages.
fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => yaml::format_float(*f),
        Value::Str(s) => format!("'{s}'"),
        Value::List(_) => "a list".into(),
        Value::Map(_) => "a map".into(),
    }
}

/// `1048576`, `512k`, `50MiB`, `10MB`, `1 G`: k, M, G and KiB, MiB, GiB are powers of
/// 1024; kB, MB, GB powers of 1000.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let scale: u64 = match unit.trim_start() {
        "" | "B" => 1,
        "k" | "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// `dir/./a/` as `dir/a`: drop `.` components (`..` stays; symlinks make it unsafe to fold).
fn clean(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/proj/agent-procs.yaml";

    fn load(text: &str) -> Result<Config, Vec<ConfigError>> {
        Config::parse(text, Path::new(FILE), "agent-procs.yaml")
    }

    fn ok(text: &str) -> Config {
        load(text).unwrap_or_else(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            panic!("{text}\n{}", lines.join("\n"))
        })
    }

    fn errors(text: &str) -> Vec<String> {
        match load(text) {
            Ok(config) => panic!("{text}\nloaded: {config:?}"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn corpus() -> Vec<(PathBuf, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/valid");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{e}"));
                (p, text)
            })
            .collect()
    }

    #[test]
    fn every_valid_config_in_the_corpus_loads() {
        for (path, text) in corpus() {
            let loaded = Config::parse(&text, &path, "x");
            assert!(loaded.is_ok(), "{}: {:?}", path.display(), loaded.err());
        }
    }

    #[test]
    fn a_0_6_config_resolves_with_defaults_filled_in() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/configs/valid/02-agent-procs-0.6.yaml"),
        )
        .unwrap_or_default();
        let config = ok(&text);
        assert_eq!(config.session.as_deref(), Some("myapp"));
        assert!(config.proxy);
        assert_eq!(config.proxy_port, Some(9090));
        let names: Vec<&str> = config.processes.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["db", "api", "web"]);
        let api = &config.processes[1];
        assert_eq!(api.cmd, "./gradlew bootRun");
        assert_eq!(api.cwd, Path::new("/proj/backend"));
        assert_eq!(api.env["SERVER_PORT"], "8080");
        assert_eq!(api.env["SPRING_PROFILES_ACTIVE"], "dev");
        assert_eq!(
            api.ready,
            Some(Ready::Log {
                log: "Started Application".into(),
                regex: false
            })
        );
        assert_eq!(api.depends_on, ["db"]);
        assert_eq!(api.port, Some(8080));
        assert_eq!(api.autorestart, Autorestart::OnFailure);
        assert_eq!(api.max_restarts, Some(5));
        assert_eq!(api.restart_delay, Duration::from_millis(2000));
        let db = &config.processes[0];
        assert_eq!(db.cwd, Path::new("/proj"));
        assert_eq!(db.ready_timeout, DEFAULT_READY_TIMEOUT);
        assert_eq!(db.stop_timeout, DEFAULT_STOP_TIMEOUT);
        assert_eq!(db.stop_signal, "SIGTERM");
        assert_eq!(db.autorestart, Autorestart::Never);
        assert_eq!(db.restart_delay, DEFAULT_RESTART_DELAY);
        assert_eq!(db.log_max_size, crate::logs::MAX_SEGMENT);
        assert_eq!(db.log_max_files, crate::logs::KEEP_SEGMENTS);
        let web = &config.processes[2];
        assert_eq!(web.depends_on, ["api"]);
        assert_eq!(web.watch, ["src/**/*.ts", "src/**/*.tsx"]);
        assert_eq!(web.watch_ignore, ["**/*.test.ts"]);
    }

    /// Process `a` of `settings_take_every_documented_form`: a key of each kind.
    fn every_key_of_a(a: &Process) {
        assert_eq!(a.cwd, Path::new("/proj/sub/dir"));
        let env: Vec<(&str, &str)> = a
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("E", ""),
                ("EXP", "1000.0"),
                ("F", "false"),
                ("FLOAT", "1.5"),
                ("HEX", "16"),
                ("INF", ".inf"),
                ("INT", "1"),
                ("NEG", "-2"),
                ("S", "text"),
                ("T", "true"),
                ("WHOLE", "2.0"),
            ]
        );
        assert_eq!(a.env_file.as_deref(), Some(Path::new("/proj/../.env")));
        assert_eq!(
            a.ready,
            Some(Ready::Log {
                log: "ready on \\d+".into(),
                regex: true
            })
        );
        assert_eq!(a.ready_timeout, Duration::from_millis(2500));
        assert_eq!(a.depends_on, ["b"]);
        assert_eq!(a.stop_timeout, Duration::from_secs(1));
        assert_eq!(a.stop_signal, "SIGINT");
        assert_eq!(a.log_max_size, 50 << 20);
        assert_eq!(a.log_max_files, 100);
        assert_eq!(a.watch, ["src"]);
        assert_eq!(a.max_restarts, Some(0));
        assert_eq!(a.restart_delay, Duration::ZERO);
    }

    #[test]
    fn settings_take_every_documented_form() {
        let config = ok(r#"
processes:
  a:
    cmd: run
    cwd: ./sub/./dir/
    env: {INT: 1, NEG: -2, HEX: 0x10, FLOAT: 1.5, WHOLE: 2.0, EXP: 1e3, T: true, F: False, S: text, E: "", INF: .inf}
    env_file: ../.env
    ready: {log: "ready on \\d+", regex: true}
    ready_timeout: 2.5
    depends_on: b
    stop_timeout: 1
    stop_signal: sigint
    log_max_size: 50 MiB
    log_max_files: 100
    watch: src
    max_restarts: 0
    restart_delay: 0
  b:
    cmd: run
    cwd: /abs/path
    ready: {tcp: 5432}
    stop_signal: KILL
    log_max_size: 1048576
    log_max_files: 0
  c: {cmd: run, ready: {http: "http://127.0.0.1:8080/health"}, log_max_size: 10MB}
  d: {cmd: run, ready: {exit: 0}, log_max_size: 512k, autorestart: always}
  e: {cmd: run, ready: {log: plain, regex: false}, log_max_size: 1G, env: ~, watch: ~, port: ~}
"#);
        let p = |name: &str| {
            config
                .processes
                .iter()
                .find(|p| p.name == name)
                .unwrap_or_else(|| panic!("{name}"))
        };
        every_key_of_a(p("a"));
        let b = p("b");
        assert_eq!(b.cwd, Path::new("/abs/path"));
        assert_eq!(b.ready, Some(Ready::Tcp { tcp: 5432 }));
        assert_eq!(b.stop_signal, "SIGKILL");
        assert_eq!((b.log_max_size, b.log_max_files), (1 << 20, 0));
        assert_eq!(
            p("c").ready,
            Some(Ready::Http {
                http: "http://127.0.0.1:8080/health".into()
            })
        );
        assert_eq!(p("c").log_max_size, 10_000_000);
        assert_eq!(p("d").ready, Some(Ready::Exit { exit: 0 }));
        assert_eq!(p("d").log_max_size, 512 << 10);
        assert_eq!(p("d").autorestart, Autorestart::Always);
        assert_eq!(p("e").log_max_size, 1 << 30);
        assert!(p("e").env.is_empty() && p("e").watch.is_empty() && p("e").port.is_none());
    }

    /// Configs with problems, and every message each must give.
    const PROBLEMS: &[(&str, &[&str])] = &[
        (
            "processes:\n  api:\n    cmd: x\n    autorestart: sometimes\n",
            &[
                "agent-procs.yaml:4:18: processes.api.autorestart: unknown value 'sometimes' (expected always, on-failure or never)",
            ],
        ),
        (
            "processes:\n  api:\n    cmd: x\n    autorestart: true\n",
            &[
                "agent-procs.yaml:4:18: processes.api.autorestart: expected always, on-failure or never, found a boolean",
            ],
        ),
        (
            "processes:\n  api:\n    cmd: x\n    depend_on: [db]\n  db:\n    cmd: y\n",
            &[
                "agent-procs.yaml:4:5: processes.api.depend_on: unknown key; did you mean 'depends_on'?",
            ],
        ),
        (
            "processes:\n  api:\n    cmd: x\n    CMD: y\n    Port: 1\n    autostart: always\n",
            &[
                "agent-procs.yaml:4:5: processes.api.CMD: unknown key; did you mean 'cmd'?",
                "agent-procs.yaml:5:5: processes.api.Port: unknown key; did you mean 'port'?",
                "agent-procs.yaml:6:5: processes.api.autostart: unknown key; did you mean 'autorestart'?",
            ],
        ),
        (
            "processes:\n  api:\n    cmd: x\n    colour: red\n",
            &[
                "agent-procs.yaml:4:5: processes.api.colour: unknown key (expected one of cmd, cwd, env, env_file, ready, ready_timeout, depends_on, port, autorestart, max_restarts, restart_delay, watch, watch_ignore, stop_timeout, stop_signal, log_max_size, log_max_files, oneshot)",
            ],
        ),
        (
            "procesess:\n  api:\n    cmd: x\n",
            &[
                "agent-procs.yaml:1:1: procesess: unknown key; did you mean 'processes'?",
                "agent-procs.yaml:1:1: processes: missing; add a 'processes:' map with at least one process",
            ],
        ),
        (
            "timeout: 2\nprocesses: {a: {cmd: x}}\n",
            &[
                "agent-procs.yaml:1:1: timeout: unknown key (expected one of session, proxy, proxy_port, processes)",
            ],
        ),
        (
            "",
            &[
                "agent-procs.yaml:1:1: the file is empty; it needs a 'processes:' map with at least one process",
            ],
        ),
        (
            "- a\n- b\n",
            &["agent-procs.yaml:1:1: expected a map of settings at the top level, found a list"],
        ),
        (
            "processes:\n",
            &["agent-procs.yaml:1:1: processes: needs at least one process"],
        ),
        (
            "processes: {}\n",
            &["agent-procs.yaml:1:1: processes: needs at least one process"],
        ),
        (
            "processes: [a, b]\n",
            &[
                "agent-procs.yaml:1:12: processes: expected a map of process names to settings, found a list",
            ],
        ),
        (
            "processes:\n  api: npm start\n",
            &[
                "agent-procs.yaml:2:8: processes.api: expected a map of settings with at least 'cmd', found a string",
            ],
        ),
        (
            "processes:\n  api:\n    port: 80\n",
            &[
                "agent-procs.yaml:2:3: processes.api.cmd: missing; every process needs the command to run",
            ],
        ),
        (
            "processes:\n  api:\n    cmd:\n",
            &["agent-procs.yaml:3:9: processes.api.cmd: expected a string, found null"],
        ),
        (
            "processes:\n  api:\n    cmd: [npm, start]\n",
            &["agent-procs.yaml:3:10: processes.api.cmd: expected a string, found a list"],
        ),
        (
            "processes:\n  api:\n    cmd: ''\n",
            &["agent-procs.yaml:3:10: processes.api.cmd: must not be empty"],
        ),
        (
            "processes:\n  api:\n    cmd: \"a\\0b\"\n",
            &["agent-procs.yaml:3:10: processes.api.cmd: must not contain a NUL character"],
        ),
        (
            "processes:\n  \"a b\":\n    cmd: x\n  .hidden:\n    cmd: x\n",
            &[
                "agent-procs.yaml:2:3: processes: invalid process name 'a b': ' ' is not allowed; use letters, digits, '.', '_' and '-'",
                "agent-procs.yaml:4:3: processes: invalid process name '.hidden': it must not start with '.' or '-'",
            ],
        ),
        (
            "processes:\n  api:\n    cmd: x\n    port: 70000\n  web:\n    cmd: x\n    port: 0\n  db:\n    cmd: x\n    port: \"5432\"\n",
            &[
                "agent-procs.yaml:4:11: processes.api.port: expected a port number from 1 to 65535, not 70000",
                "agent-procs.yaml:7:11: processes.web.port: expected a port number from 1 to 65535, not 0",
                "agent-procs.yaml:10:11: processes.db.port: expected a port number, found a string",
            ],
        ),
        (
            "proxy: yes\nproxy_port: 99999\nsession: 'bad/name'\nprocesses: {a: {cmd: x}}\n",
            &[
                "agent-procs.yaml:1:8: proxy: expected true or false, found 'yes' (YAML 1.2 reads yes/no/on/off as text)",
                "agent-procs.yaml:2:13: proxy_port: expected a port number from 1 to 65535, not 99999",
                "agent-procs.yaml:3:10: session: invalid session name 'bad/name': '/' is not allowed; use letters, digits, '.', '_' and '-'",
            ],
        ),
        (
            "proxy: 1\nprocesses: {a: {cmd: x}}\n",
            &["agent-procs.yaml:1:8: proxy: expected true or false, found an integer"],
        ),
        (
            "processes:\n  api:\n    cmd: x\n    env:\n      EMPTY:\n      LIST: [1]\n      MAP: {a: 1}\n      \"A=B\": 1\n      \"\": 2\n      NUL: \"\\0\"\n",
            &[
                "agent-procs.yaml:5:13: processes.api.env.EMPTY: expected a value, found null (write '' for an empty string)",
                "agent-procs.yaml:6:13: processes.api.env.LIST: expected a string, number or boolean, found a list",
                "agent-procs.yaml:7:12: processes.api.env.MAP: expected a string, number or boolean, found a map",
                "agent-procs.yaml:8:7: processes.api.env.A=B: invalid variable name; it must be non-empty, without '=' or NUL",
                "agent-procs.yaml:9:7: processes.api.env.: invalid variable name; it must be non-empty, without '=' or NUL",
                "agent-procs.yaml:10:12: processes.api.env.NUL: must not contain a NUL character",
            ],
        ),
        (
            "processes:\n  api:\n    cmd: x\n    env: [A=1]\n",
            &[
                "agent-procs.yaml:4:10: processes.api.env: expected a map of variable names to values, found a list",
            ],
        ),
        (
            "processes:\n  a:\n    cmd: x\n    ready: {log: up, tcp: 80}\n",
            &[
                "agent-procs.yaml:4:22: processes.a.ready: give only one of log, tcp, http and exit, not both 'log' and 'tcp'",
            ],
        ),
        (
            "processes:\n  a:\n    cmd: x\n    ready: {regex: true}\n",
            &["agent-procs.yaml:4:12: processes.a.ready: expected one of log, tcp, http or exit"],
        ),
        (
            "processes:\n  a:\n    cmd: x\n    ready: {tcp: 80, regex: true}\n",
            &["agent-procs.yaml:4:22: processes.a.ready.regex: regex goes with log"],
        ),
        (
            "processes:\n  a:\n    cmd: x\n    ready:\n      log: \"(unclosed\"\n      regex: true\n",
            &[
                "agent-procs.yaml:5:12: processes.a.ready.log: invalid regular expression: found open group without closing ')'",
            ],
        ),
        (
            "processes:\n  a:\n    cmd: x\n    ready: {http: \"https://x/\"}\n  b:\n    cmd: x\n    ready: {exit: 300}\n  c:\n    cmd: x\n    ready: [up]\n  d:\n    cmd: x\n    ready: {lgo: up}\n  e:\n    cmd: x\n    ready: ''\n",
            &[
                "agent-procs.yaml:4:19: processes.a.ready.http: invalid URL 'https://x/': only http:// URLs can be probed; write it like http://127.0.0.1:8080/health",
                "agent-procs.yaml:7:19: processes.b.ready.exit: expected an exit code from 0 to 255, not 300",
                "agent-procs.yaml:10:12: processes.c.ready: expected a log text or a map with one of log, tcp, http or exit, found a list",
                "agent-procs.yaml:13:13: processes.d.ready.lgo: unknown key; did you mean 'log'?",
                "agent-procs.yaml:16:12: processes.e.ready: must not be empty",
            ],
        ),
        (
            "processes:\n  a:\n    cmd: x\n    ready_timeout: 0\n    stop_timeout: -1\n  b:\n    cmd: x\n    ready_timeout: soon\n    stop_timeout: .inf\n",
            &[
                "agent-procs.yaml:4:20: processes.a.ready_timeout: must be more than 0 seconds, not 0",
                "agent-procs.yaml:5:19: processes.a.stop_timeout: must be more than 0 seconds, not -1",
                "agent-procs.yaml:8:20: processes.b.ready_timeout: expected a number of seconds, found a string",
                "agent-procs.yaml:9:19: processes.b.stop_timeout: must be at most 1000000000 seconds",
            ],
        ),
        (
            "processes:\n  a:\n    cmd: x\n    stop_signal: TERMINATE\n    max_restarts: -1\n    restart_delay: 1s\n    log_max_size: lots\n    log_max_files: 101\n",
            &[
                "agent-procs.yaml:4:18: processes.a.stop_signal: unknown signal 'TERMINATE' (expected TERM, INT, HUP, QUIT, KILL, USR1 or USR2)",
                "agent-procs.yaml:5:19: processes.a.max_restarts: expected a number of restarts from 0 to 4294967295, not -1",
                "agent-procs.yaml:6:20: processes.a.restart_delay: expected a number of milliseconds, found a string",
                "agent-procs.yaml:7:19: processes.a.log_max_size: expected a size above 0 such as 50MiB, 10MB or 512k, not 'lots'",
                "agent-procs.yaml:8:20: processes.a.log_max_files: expected a number of files from 0 to 100, not 101",
            ],
        ),
        (
            "processes:\n  a:\n    cmd: x\n    log_max_size: 0\n    stop_signal: 15\n",
            &[
                "agent-procs.yaml:4:19: processes.a.log_max_size: expected a size above 0 such as 50MiB, 10MB or 512k, not 0",
                "agent-procs.yaml:5:18: processes.a.stop_signal: expected a signal name such as TERM, found an integer",
            ],
        ),
        (
            "processes:\n  a:\n    cmd: x\n    watch: {src: 1}\n    watch_ignore: [ok, 1]\n",
            &[
                "agent-procs.yaml:4:12: processes.a.watch: expected a string or a list of strings, found a map",
                "agent-procs.yaml:5:24: processes.a.watch_ignore[1]: expected a string, found an integer",
            ],
        ),
        (
            "processes:\n  db:\n    cmd: x\n  api:\n    cmd: x\n    depends_on: [dbb, api, db, db]\n  web:\n    cmd: x\n    depends_on: cache\n",
            &[
                "agent-procs.yaml:6:18: processes.api.depends_on[0]: no process named 'dbb'; did you mean 'db'?",
                "agent-procs.yaml:6:23: processes.api.depends_on[1]: 'api' depends on itself",
                "agent-procs.yaml:6:32: processes.api.depends_on[3]: 'db' is listed twice",
                "agent-procs.yaml:9:17: processes.web.depends_on: no process named 'cache'",
            ],
        ),
        (
            "processes:\n  a:\n    cmd: x\n    depends_on: b\n  b:\n    cmd: x\n    depends_on: [a]\n",
            &["agent-procs.yaml:4:17: processes.a.depends_on: dependency cycle: a -> b -> a"],
        ),
        (
            "processes:\n  web: {cmd: x, depends_on: [api]}\n  api: {cmd: x, depends_on: [db]}\n  db: {cmd: x, depends_on: [web]}\n  ok: {cmd: x, depends_on: [db]}\n",
            &[
                "agent-procs.yaml:2:30: processes.web.depends_on[0]: dependency cycle: web -> api -> db -> web",
            ],
        ),
        (
            "processes:\n  a:\n    cmd: x\n\tport: 1\n",
            &["agent-procs.yaml:4:1: tab character in indentation; indent with spaces"],
        ),
        (
            "processes:\n  a:\n    cmd: x\n  a:\n    cmd: y\n",
            &["agent-procs.yaml:4:3: duplicate key 'a' (first on line 2); remove one of them"],
        ),
    ];

    #[test]
    fn every_problem_is_reported_with_file_line_column_and_key_path() {
        for (text, want) in PROBLEMS {
            assert_eq!(errors(text), *want, "\n{text}");
        }
    }

    #[test]
    fn start_order_puts_dependencies_first_and_keeps_file_order_otherwise() {
        let config = ok("processes:
  web: {cmd: x, depends_on: [api, assets]}
  api: {cmd: x, depends_on: [db, cache]}
  assets: {cmd: x}
  cache: {cmd: x}
  db: {cmd: x, depends_on: [migrate-free]}
  migrate-free: {cmd: x}
  lone: {cmd: x}
");
        let order: Vec<&str> = config
            .start_order()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(
            order,
            [
                "assets",
                "cache",
                "migrate-free",
                "db",
                "api",
                "web",
                "lone"
            ]
        );
    }

    #[test]
    fn suggestions_allow_two_edits_and_swaps() {
        let known = ["depends_on", "cmd", "cwd", "env", "port"];
        assert_eq!(suggest("depend_on", known.into_iter()), Some("depends_on"));
        assert_eq!(suggest("dependson", known.into_iter()), Some("depends_on"));
        assert_eq!(suggest("depnedson", known.into_iter()), Some("depends_on"));
        assert_eq!(suggest("evn", known.into_iter()), Some("env"));
        assert_eq!(suggest("PORT", known.into_iter()), Some("port"));
        assert_eq!(suggest("colour", known.into_iter()), None);
        assert_eq!(suggest("x", known.into_iter()), None);
    }

    #[test]
    fn sizes_use_binary_and_decimal_units() {
        let cases = [
            ("1", Some(1)),
            ("512k", Some(512 << 10)),
            ("512K", Some(512 << 10)),
            ("2KiB", Some(2048)),
            ("3kB", Some(3000)),
            ("50MiB", Some(50 << 20)),
            ("50 M", Some(50 << 20)),
            ("10MB", Some(10_000_000)),
            ("1G", Some(1 << 30)),
            ("2GB", Some(2_000_000_000)),
            ("7B", Some(7)),
            ("", None),
            ("MB", None),
            ("1.5M", None),
            ("-1", None),
            ("10 mb", None),
            ("99999999999999999999", None),
            ("18446744073709551615G", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), want, "{text:?}");
        }
    }

    #[test]
    fn the_config_is_found_in_the_start_directory_or_above() {
        let root = std::env::temp_dir().join(format!("ap-find-{}", std::process::id()));
        let deep = root.join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join("a").join(FILE_NAME), "processes: {x: {cmd: y}}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(find_config(&deep), Some(root.join("a").join(FILE_NAME)));
        std::fs::write(deep.join(FILE_NAME), "").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(find_config(&deep), Some(deep.join(FILE_NAME)));
        // A directory of that name is not a config file.
        std::fs::create_dir_all(root.join("a/b").join(FILE_NAME)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            find_config(&root.join("a/b")),
            Some(root.join("a").join(FILE_NAME))
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn load_names_unreadable_and_non_utf8_files() {
        let dir = std::env::temp_dir().join(format!("ap-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let missing = dir.join("missing.yaml");
        let errs = Config::load(&missing).unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            format!("{}: no such file or directory", missing.display())
        );
        let latin1 = dir.join("latin1.yaml");
        std::fs::write(&latin1, b"processes:\n  a:\n    cmd: caf\xe9\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let errs = Config::load(&latin1).unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            format!(
                "{}:3:13: the file is not valid UTF-8; save it as UTF-8",
                latin1.display()
            )
        );
        let good = dir.join(FILE_NAME);
        std::fs::write(&good, "processes:\n  a:\n    cmd: x\n    cwd: sub\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let config = Config::load(&good).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(config.file, good);
        assert_eq!(config.processes[0].cwd, dir.join("sub"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_prefix_of_every_config_is_checked_without_panicking() {
        for (path, text) in corpus() {
            for (end, _) in text.char_indices() {
                let _ = Config::parse(&text[..end], &path, "x");
            }
        }
    }

    /// `cargo test --release -- --ignored --nocapture parse_time`: parse and check a
    /// generated config with 1,000 processes (the budget is 20 ms).
    #[test]
    #[ignore]
    fn parse_time_for_1000_processes() {
        let mut text = String::from("session: bench\nprocesses:\n");
        for i in 0..1000 {
            text.push_str(&format!(
                "  p{i}:\n    cmd: ./server --port {port} --name \"p{i}\" # comment\n    cwd: services/p{i}\n    env:\n      PORT: {port}\n      MODE: production\n      DEBUG: false\n    ready: {{log: \"listening on {port}\"}}\n    depends_on: [{deps}]\n    port: {port}\n    autorestart: on-failure\n    watch:\n      - src/**/*.rs\n      - Cargo.toml\n",
                port = 10_000 + i,
                deps = if i == 0 { String::new() } else { format!("p{}", i / 2) },
            ));
        }
        let runs = 20;
        let start = std::time::Instant::now();
        for _ in 0..runs {
            let tree = yaml::parse(&text);
            assert!(tree.is_ok());
        }
        let parse = start.elapsed() / runs;
        let start = std::time::Instant::now();
        for _ in 0..runs {
            let config = Config::parse(&text, Path::new(FILE), "bench");
            assert!(matches!(&config, Ok(c) if c.processes.len() == 1000));
        }
        let total = start.elapsed() / runs;
        eprintln!(
            "{} bytes, {} lines: yaml::parse {parse:?}, Config::parse (yaml + schema + graph) {total:?}",
            text.len(),
            text.lines().count()
        );
    }

    /// agent-procs.yaml(5) gives every key an item of its own: each top-level and
    /// process key heads a `.TP` item of its section, and each readiness key is in
    /// the tag of a `ready:` form under READINESS. The items of the two key
    /// sections name nothing but keys.
    #[test]
    fn man_page_documents_every_key() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/man/agent-procs.yaml.5");
        let page = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        // Each `.TP` tag as (section, words), without its macro, font escapes and
        // backslashes: `.BI "ready: {tcp: " port }` reads as ready, tcp, port.
        let mut tags: Vec<(&str, Vec<String>)> = Vec::new();
        let mut section = "";
        let mut lines = page.lines();
        while let Some(line) = lines.next() {
            if let Some(title) = line.strip_prefix(".SH ") {
                section = title.trim_matches('"');
            } else if line == ".TP" {
                let tag = lines.next().unwrap_or_default();
                let args = match tag.strip_prefix('.') {
                    Some(call) => call.split_once(' ').map_or("", |(_, args)| args),
                    None => tag,
                };
                let mut text = String::new();
                let mut chars = args.chars();
                while let Some(c) = chars.next() {
                    match c {
                        // `\fB`, `\fI`, `\fR`, `\fP` change the font.
                        '\\' if chars.as_str().starts_with('f') => {
                            chars.nth(1);
                        }
                        '\\' => {}
                        c => text.push(c),
                    }
                }
                let words = text
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| !w.is_empty())
                    .map(str::to_string)
                    .collect();
                tags.push((section, words));
            }
        }
        for (section, keys) in [("TOP-LEVEL KEYS", TOP_KEYS), ("PROCESS KEYS", PROCESS_KEYS)] {
            let items: Vec<&str> = tags
                .iter()
                .filter(|(s, _)| *s == section)
                .filter_map(|(_, words)| words.first().map(String::as_str))
                .collect();
            for key in keys {
                assert!(
                    items.contains(key),
                    "{file}: no item for '{key}' under {section}"
                );
            }
            for item in &items {
                assert!(
                    keys.contains(item),
                    "{file}: '{item}' under {section} is not a key"
                );
            }
        }
        for key in READY_KEYS {
            let found = tags.iter().any(|(s, words)| {
                *s == "READINESS"
                    && words.first().is_some_and(|w| w == "ready")
                    && words.iter().any(|w| w == key)
            });
            assert!(
                found,
                "{file}: no 'ready:' form with '{key}' under READINESS"
            );
        }
    }
}
