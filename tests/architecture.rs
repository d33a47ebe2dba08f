//! The shape of the house: the arrows between modules point one way.
//!
//! Reads every `src/**/*.rs`, collects the paths that name another module of the
//! crate (`use crate::a::…`, `crate::a::b::f()`, `super::x`, grouped imports),
//! and checks two rules (ARCHITECTURE.md, "Rules"):
//!
//! 1. No import cycle between top-level modules (`daemon`, `logs`, `paths`, …),
//!    nor between sibling submodules of one directory (`daemon/procs.rs` and
//!    `daemon/resources.rs`). A directory's `mod.rs` is its parent, not a
//!    sibling: it declares and drives its children, and they may use its types
//!    (`impl Daemon` is spread over the daemon's files), so edges to and from
//!    the parent are not counted among siblings.
//! 2. A leaf (`LEAVES`) never imports the daemon, the CLI or a command
//!    (`UPPER`): the parsers, the log store and the proxy must stay usable by
//!    the fuzz targets and by any front end without dragging the program in.
//! 3. Calls only one OS has (`OS_SPECIFIC`: /proc, inotify, prctl,
//!    SO_PEERCRED, …) appear only under `src/sys/`.
//!
//! Code under `#[cfg(test)]` is not counted: a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules at the bottom: they may import each other (without cycles) but
/// never anything in `UPPER`.
const LEAVES: &[&str] = &[
    "protocol", "yaml", "glob", "shell", "error", "timefmt", "sys", "logs", "proxy",
];

/// The daemon, the CLI and the commands: what a leaf must not import.
const UPPER: &[&str] = &["daemon", "cli", "client", "cmd", "ui", "completions", "mcp"];

/// The layers, bottom first (ARCHITECTURE.md, "The rooms"): a module imports
/// only modules of lower layers, or of its own layer without a cycle. Every
/// top-level module is in exactly one.
const LAYERS: &[&[&str]] = &[
    &[
        "protocol", "yaml", "glob", "timefmt", "shell", "spelling", "error",
    ],
    &["sys"],
    &["paths"],
    &["ratelimit", "probe", "session"],
    &["logs"],
    &["proxy"],
    &["config", "export"],
    &["daemon"],
    &["cli", "completions"],
    &["client"],
    &["cmd", "ui", "mcp"],
];

/// Import edges tolerated for now, each the back edge of a cycle that another
/// piece of work removes. The test fails when an entry no longer exists in the
/// code, so the list only shrinks. Empty since the commands moved into
/// `src/cmd/` and the connection into `src/client/` (issue 17): add an entry
/// only with the work that removes it.
const KNOWN: &[(&str, &str)] = &[];

/// Directories whose files are checked for cycles among themselves.
const SIBLING_DIRS: &[&str] = &[
    "daemon", "ui", "logs", "proxy", "sys", "cmd", "client", "mcp",
];

type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;
/// An import found wrong: from, to, and where (`src/x.rs:12`).
type Edge = (String, String, Vec<String>);

// ---------------------------------------------------------------------------
// Reading the source

/// The source with comments, string and char literals blanked (newlines kept,
/// so positions still map to lines), and `#[cfg(test)]` items removed.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if (c == b'r' || c == b'b')
            && !prev_is_ident(b, i)
            && raw_string_start(b, i).is_some()
        {
            let (hashes, body) = raw_string_start(b, i).unwrap_or((0, i));
            out.resize(out.len() + (body - i), b' ');
            i = body;
            let mut close = vec![b'"'];
            close.resize(1 + hashes, b'#');
            while i < b.len() && !b[i..].starts_with(&close) {
                blank(&mut out, b[i]);
                i += 1;
            }
            out.resize(out.len() + close.len().min(b.len() - i), b' ');
            i += close.len();
        } else if c == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
                blank(&mut out, b[i]);
                i += 1;
            }
            out.push(b' ');
            i += 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}', 'é'), or a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                b.get(i + 3..)
                    .and_then(|rest| rest.iter().position(|&x| x == b'\''))
                    .map(|p| i + 3 + p)
            } else {
                let ch_len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch_len) == Some(&b'\'')).then_some(i + 1 + ch_len)
            };
            match end {
                Some(e) => {
                    out.resize(out.len() + (e + 1 - i), b' ');
                    i = e + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    drop_cfg_test(&text)
}

fn prev_is_ident(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// At `r"`, `r#"`, `br"`…: the number of hashes and where the body starts.
fn raw_string_start(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if b[j] == b'b' {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&x| x == b'#').count();
    j += hashes;
    (b.get(j) == Some(&b'"')).then_some((hashes, j + 1))
}

/// Blank every item under `#[cfg(test)]` (up to its matching `}` or `;`).
fn drop_cfg_test(text: &str) -> String {
    let mut b = text.as_bytes().to_vec();
    let mut from = 0;
    while let Some(p) = find(&b, b"#[cfg(test)]", from) {
        let mut i = p;
        let mut depth = 0usize;
        while i < b.len() {
            match b[i] {
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                b';' if depth == 0 => break,
                _ => {}
            }
            i += 1;
        }
        let end = (i + 1).min(b.len());
        for x in &mut b[p..end] {
            if *x != b'\n' {
                *x = b' ';
            }
        }
        from = end;
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// One module path that the code names, resolved to absolute segments
/// (`["daemon", "procs", "ProcId"]`), with the line it is on.
#[derive(Debug, PartialEq)]
struct Ref {
    path: Vec<String>,
    line: usize,
}

/// Every `crate::…` and `super::…` path in the stripped source of the module
/// `module` (its own path, e.g. `["daemon", "procs"]`; `daemon/mod.rs` is
/// `["daemon"]`, so its `super` is the crate root).
fn refs(stripped: &str, module: &[String]) -> Vec<Ref> {
    let b = stripped.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if prev_is_ident(b, i) || (i > 0 && b[i - 1] == b':') {
            i += 1;
            continue;
        }
        let base: Option<(Vec<String>, usize)> = if b[i..].starts_with(b"crate::") {
            Some((Vec::new(), i + 7))
        } else if b[i..].starts_with(b"super::") {
            let mut j = i;
            let mut ups = 0;
            while b[j..].starts_with(b"super::") {
                ups += 1;
                j += 7;
            }
            // A plain file `a/b.rs` is module a::b and its `super` is `a`; the
            // code in `a/mod.rs` is module `a` too, and its `super` is the root.
            let keep = module.len().saturating_sub(ups);
            Some((module[..keep].to_vec(), j))
        } else {
            None
        };
        let Some((prefix, start)) = base else {
            i += 1;
            continue;
        };
        let line = 1 + b[..i].iter().filter(|&&c| c == b'\n').count();
        let mut tails = Vec::new();
        let end = parse_tree(b, start, Vec::new(), &mut tails);
        for tail in tails {
            let mut path = prefix.clone();
            path.extend(tail);
            if !path.is_empty() {
                out.push(Ref { path, line });
            }
        }
        i = end.max(i + 1);
    }
    out
}

/// Parse `a::b::{c, d::e}` from `i`; push every full path found. Returns where
/// it stopped.
fn parse_tree(b: &[u8], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) == Some(&b'{') {
            i += 1;
            loop {
                i = parse_tree(b, i, path.clone(), out);
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                match b.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => return i + 1,
                    _ => return i,
                }
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                if b.get(i) == Some(&b'}') {
                    return i + 1;
                }
            }
        }
        let s = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if i == s {
            // `*` or nothing: the path so far.
            out.push(path);
            return i;
        }
        let seg = String::from_utf8_lossy(&b[s..i]).into_owned();
        if seg != "self" {
            path.push(seg);
        }
        if b[i..].starts_with(b"::") {
            i += 2;
        } else {
            out.push(path);
            return i;
        }
    }
}

// ---------------------------------------------------------------------------
// The graph

/// The modules of the crate: each file's module path, and whether it is a
/// directory's `mod.rs`.
fn module_of(src_dir: &Path, file: &Path) -> Option<(Vec<String>, bool)> {
    let rel = file.strip_prefix(src_dir).ok()?;
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    let is_dir_root = stem == "mod";
    // The crate roots: the library and the two executables' shims.
    if parts.is_empty() && matches!(stem, "lib" | "main" | "daemon_main") {
        return Some((Vec::new(), true));
    }
    if !is_dir_root {
        parts.push(stem.to_string());
    }
    Some((parts, is_dir_root))
}

/// The edges between modules, each with where it comes from
/// (`src/x.rs:12`): top-level modules, and siblings inside a directory
/// (named `dir::file`).
fn build(files: &[(PathBuf, Vec<String>, bool, String)]) -> Graph {
    let top: BTreeSet<&str> = files
        .iter()
        .filter_map(|(_, m, _, _)| m.first().map(String::as_str))
        .collect();
    let subs: BTreeSet<(String, String)> = files
        .iter()
        .filter(|(_, m, _, _)| m.len() >= 2)
        .map(|(_, m, _, _)| (m[0].clone(), m[1].clone()))
        .collect();
    let mut g = Graph::new();
    for (file, module, _, text) in files {
        if module.is_empty() {
            continue; // the crate root declares everything
        }
        let stripped = strip(text);
        for r in refs(&stripped, module) {
            let at = format!("{}:{}", file.display(), r.line);
            let (from, to) = (&module[0], &r.path[0]);
            if !top.contains(to.as_str()) {
                continue;
            }
            if from != to {
                add(&mut g, from, to, at);
                continue;
            }
            // Inside one directory: sibling files only.
            if module.len() >= 2 && r.path.len() >= 2 && module[1] != r.path[1] {
                let key = (r.path[0].clone(), r.path[1].clone());
                if subs.contains(&key) {
                    let a = format!("{}::{}", module[0], module[1]);
                    let b = format!("{}::{}", r.path[0], r.path[1]);
                    add(&mut g, &a, &b, at);
                }
            }
        }
    }
    g
}

fn add(g: &mut Graph, from: &str, to: &str, at: String) {
    let list = g
        .entry(from.to_string())
        .or_default()
        .entry(to.to_string())
        .or_default();
    if !list.contains(&at) {
        list.push(at);
    }
}

/// Every cycle: for each member of each strongly connected component of more
/// than one node, the shortest loop through it (each loop once).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    // Tarjan's algorithm, recursive: the graph has a few dozen nodes.
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        sccs: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        if let Some(out) = t.g.get(v) {
            for w in out.keys() {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w);
                if w == v {
                    break;
                }
            }
            t.sccs.push(scc);
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        sccs: Vec::new(),
    };
    let nodes: Vec<&str> = g.keys().map(String::as_str).collect();
    for v in nodes {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    let mut found = BTreeSet::new();
    for scc in t.sccs.into_iter().filter(|s| s.len() > 1) {
        let members: BTreeSet<&str> = scc.iter().copied().collect();
        for start in &members {
            let mut lp = shortest_loop(g, &members, start);
            // One loop, written from its smallest member: rotations are the same loop.
            lp.pop();
            let min = (0..lp.len()).min_by_key(|&i| &lp[i]).unwrap_or(0);
            lp.rotate_left(min);
            lp.push(lp[0].clone());
            found.insert(lp);
        }
    }
    found.into_iter().collect()
}

/// The shortest loop from `start` back to itself inside a strongly connected
/// component (breadth-first), as `[start, …, start]`.
fn shortest_loop(g: &Graph, members: &BTreeSet<&str>, start: &str) -> Vec<String> {
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in g.get(v).into_iter().flat_map(|m| m.keys()) {
            let w = w.as_str();
            if !members.contains(w) {
                continue;
            }
            if w == start {
                let mut path = vec![start.to_string()];
                let mut at = v;
                while at != start {
                    path.push(at.to_string());
                    at = prev[at];
                }
                path.push(start.to_string());
                path.reverse();
                return path;
            }
            if !prev.contains_key(w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    vec![start.to_string(), start.to_string()]
}

/// A cycle as text, with where each of its imports is.
fn describe(g: &Graph, cycle: &[String]) -> String {
    let mut s = cycle.join(" -> ");
    for pair in cycle.windows(2) {
        let at = &g[&pair[0]][&pair[1]];
        s.push_str(&format!(
            "\n    {} -> {}: {}",
            pair[0],
            pair[1],
            at.join(", ")
        ));
    }
    s
}

/// Leaves importing something above them: `(leaf, upper, where)`.
fn upward(g: &Graph) -> Vec<Edge> {
    let mut out = Vec::new();
    for (from, tos) in g {
        let top = from.split("::").next().unwrap_or(from);
        if !LEAVES.contains(&top) {
            continue;
        }
        for (to, at) in tos {
            let to_top = to.split("::").next().unwrap_or(to);
            if UPPER.contains(&to_top) {
                out.push((from.clone(), to.clone(), at.clone()));
            }
        }
    }
    out
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            source_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

type File = (PathBuf, Vec<String>, bool, String);

/// Every source file: its path (relative to the crate), its module path,
/// whether it is a `mod.rs`, and its text.
fn crate_files() -> Vec<File> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut paths = Vec::new();
    source_files(&src, &mut paths);
    let files: Vec<File> = paths
        .into_iter()
        .filter_map(|p| {
            let (module, is_dir_root) = module_of(&src, &p)?;
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
            Some((rel, module, is_dir_root, text))
        })
        .collect();
    assert!(files.len() > 20, "found only {} source files", files.len());
    files
}

fn crate_graph() -> Graph {
    build(&crate_files())
}

/// The top-level modules of the crate.
fn top_modules() -> BTreeSet<String> {
    crate_files()
        .into_iter()
        .filter_map(|(_, m, _, _)| m.first().cloned())
        .collect()
}

/// Imports from a lower layer to a higher one: `(from, to, where)`; and the
/// modules in no layer.
fn against_the_layers(g: &Graph, modules: &BTreeSet<String>) -> (Vec<Edge>, Vec<String>) {
    let layer = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    let unplaced = modules
        .iter()
        .filter(|m| layer(m).is_none())
        .cloned()
        .collect();
    let mut up = Vec::new();
    for (from, tos) in g {
        for (to, at) in tos {
            let top = |x: &str| x.split("::").next().unwrap_or(x).to_string();
            if let (Some(a), Some(b)) = (layer(&top(from)), layer(&top(to)))
                && b > a
            {
                up.push((from.clone(), to.clone(), at.clone()));
            }
        }
    }
    (up, unplaced)
}

// ---------------------------------------------------------------------------
// The rules

#[test]
fn no_import_cycles() {
    let mut g = crate_graph();
    let modules = top_modules();
    let mut stale = Vec::new();
    for (from, to) in KNOWN {
        let gone = g.get_mut(*from).and_then(|m| m.remove(*to)).is_none();
        if gone && modules.contains(*from) {
            stale.push(format!("{from} -> {to}"));
        }
    }
    assert!(
        stale.is_empty(),
        "these KNOWN imports are gone from the code; remove them from KNOWN in \
         tests/architecture.rs: {}",
        stale.join(", ")
    );
    let found = cycles(&g);
    let text: Vec<String> = found.iter().map(|c| describe(&g, c)).collect();
    assert!(
        found.is_empty(),
        "import cycles between modules (ARCHITECTURE.md: arrows point one way; \
         move the shared piece down into the lower module or a small leaf):\n  {}",
        text.join("\n  ")
    );
}

#[test]
fn leaves_do_not_import_the_daemon_the_cli_or_a_command() {
    let g = crate_graph();
    let bad: Vec<String> = upward(&g)
        .into_iter()
        .map(|(from, to, at)| format!("{from} -> {to}: {}", at.join(", ")))
        .collect();
    assert!(
        bad.is_empty(),
        "a leaf imports the daemon, the CLI or a command (ARCHITECTURE.md: leaves \
         are {LEAVES:?}; pass what they need in, or move it down):\n  {}",
        bad.join("\n  ")
    );
}

/// Calls and paths only one OS has: they belong in `src/sys/<os>.rs`.
const OS_SPECIFIC: &[&str] = &[
    "\"/proc",
    "libc::inotify_",
    "libc::IN_",
    "libc::prctl",
    "PR_SET_",
    "SO_PEERCRED",
    "libc::ucred",
    "F_SETPIPE_SZ",
    "O_PATH",
    "malloc_trim",
    "pipe2",
];

/// The places outside `src/sys/` that name an OS-specific call or path.
fn os_specific_outside_sys(files: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files {
        if path.starts_with("src/sys/") {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for needle in OS_SPECIFIC {
                if line.contains(needle) {
                    found.push(format!("{path}:{}: {needle}", n + 1));
                }
            }
        }
    }
    found
}

#[test]
fn os_specific_calls_live_in_sys() {
    let files = src_texts();
    let found = os_specific_outside_sys(&files);
    assert!(
        found.is_empty(),
        "OS-specific calls outside src/sys/ (ARCHITECTURE.md: add a function to \
         src/sys/linux.rs and call it as crate::sys::name):\n  {}",
        found.join("\n  ")
    );
    // And the check itself sees one when it is there.
    let planted = [(
        "src/daemon/x.rs".to_string(),
        "// libc::prctl in a comment\nlet s = std::fs::read(\"/proc/self/stat\");".to_string(),
    )];
    assert_eq!(
        os_specific_outside_sys(&planted),
        vec!["src/daemon/x.rs:2: \"/proc".to_string()]
    );
}

#[test]
fn imports_point_down_the_layers() {
    let (up, unplaced) = against_the_layers(&crate_graph(), &top_modules());
    assert!(
        unplaced.is_empty(),
        "modules in no layer: {unplaced:?}; add each to LAYERS in tests/architecture.rs \
         and to the table in ARCHITECTURE.md"
    );
    let text: Vec<String> = up
        .into_iter()
        .map(|(from, to, at)| format!("{from} -> {to}: {}", at.join(", ")))
        .collect();
    assert!(
        text.is_empty(),
        "imports from a lower layer to a higher one (ARCHITECTURE.md, \"The rooms\"; \
         pass what is needed in, or move it down):\n  {}",
        text.join("\n  ")
    );
}

#[test]
fn every_directory_with_siblings_is_checked() {
    // A new directory of modules gets its siblings checked too, or is added here.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&src).expect("src/ is readable").flatten() {
        if entry.path().is_dir() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                SIBLING_DIRS.contains(&name.as_str()),
                "src/{name}/ is not in SIBLING_DIRS of tests/architecture.rs"
            );
        }
    }
}

#[test]
fn the_graph_sees_the_imports_it_should() {
    // Guards against a parser that finds nothing and so passes vacuously.
    let g = crate_graph();
    let has = |a: &str, b: &str| g.get(a).is_some_and(|m| m.contains_key(b));
    assert!(has("daemon", "protocol"), "daemon -> protocol not seen");
    assert!(has("daemon", "logs"), "daemon -> logs not seen");
    assert!(has("client", "cli"), "client -> cli not seen");
    let siblings = g.keys().filter(|k| k.starts_with("daemon::")).count();
    assert!(
        siblings >= 5,
        "only {siblings} daemon files with sibling imports"
    );
}

// ---------------------------------------------------------------------------
// The pieces, on small planted inputs

fn m(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn paths_in(src: &str, module: &[&str]) -> Vec<Vec<String>> {
    refs(&strip(src), &m(module))
        .into_iter()
        .map(|r| r.path)
        .collect()
}

#[test]
fn reads_plain_grouped_nested_and_inline_paths() {
    let src = "use crate::error::{Context, Error};\n\
               use crate::{paths::{self, SessionPaths}, sys};\n\
               fn f() { crate::logs::store::append(); }\n";
    assert_eq!(
        paths_in(src, &["daemon", "procs"]),
        vec![
            m(&["error", "Context"]),
            m(&["error", "Error"]),
            m(&["paths"]),
            m(&["paths", "SessionPaths"]),
            m(&["sys"]),
            m(&["logs", "store", "append"]),
        ]
    );
}

#[test]
fn resolves_super_from_the_file_it_is_in() {
    assert_eq!(
        paths_in("use super::signals::Exit;", &["daemon", "procs"]),
        vec![m(&["daemon", "signals", "Exit"])]
    );
    assert_eq!(
        paths_in("use super::super::glob::Glob;", &["daemon", "watch"]),
        vec![m(&["glob", "Glob"])]
    );
}

#[test]
fn ignores_comments_strings_and_test_code() {
    let src = "// use crate::daemon::X;\n\
               /* crate::cli::USAGE */\n\
               const S: &str = \"crate::client::run\";\n\
               const R: &str = r#\"super::ui\"#;\n\
               const C: char = '\"';\n\
               const Q: &str = \"'\\\\''\";\n\
               const E: char = '\\'';\n\
               fn f<'a>(x: &'a str) {}\n\
               #[cfg(test)]\n\
               mod tests { use crate::daemon::Daemon; }\n\
               use crate::protocol::Request;\n";
    assert_eq!(paths_in(src, &["glob"]), vec![m(&["protocol", "Request"])]);
}

fn planted(files: &[(&str, &str)]) -> Graph {
    let src = PathBuf::from("src");
    let files: Vec<_> = files
        .iter()
        .map(|(path, text)| {
            let p = src.join(path);
            let (module, dir_root) = module_of(&src, &p).expect("a module path");
            (p, module, dir_root, text.to_string())
        })
        .collect();
    build(&files)
}

#[test]
fn finds_a_planted_cycle_between_top_level_modules() {
    let g = planted(&[
        ("a.rs", "use crate::b::X;"),
        ("b.rs", "fn f() { crate::c::g(); }"),
        ("c.rs", "use crate::{a::Y, d};"),
        ("d.rs", ""),
    ]);
    let found = cycles(&g);
    assert_eq!(found, vec![m(&["a", "b", "c", "a"])]);
    let text = describe(&g, &found[0]);
    assert!(text.contains("c -> a: src/c.rs:1"), "{text}");
}

#[test]
fn finds_a_planted_cycle_between_siblings_but_not_through_the_parent() {
    let g = planted(&[
        ("daemon/mod.rs", "use self::procs::P; pub struct Daemon;"),
        (
            "daemon/procs.rs",
            "use super::Daemon;\nuse super::resources::R;",
        ),
        (
            "daemon/resources.rs",
            "use super::Daemon; use super::procs::P;",
        ),
        ("daemon/waits.rs", "use super::procs::P;"),
    ]);
    assert_eq!(
        cycles(&g),
        vec![m(&["daemon::procs", "daemon::resources", "daemon::procs"])]
    );
    let only_parent = planted(&[
        ("ui/mod.rs", "use model::M; pub struct Ui;"),
        ("ui/model.rs", "use super::Ui;"),
    ]);
    assert!(cycles(&only_parent).is_empty());
}

#[test]
fn finds_a_planted_upward_import_from_a_leaf() {
    let g = planted(&[
        ("error.rs", "use crate::cli::USAGE;"),
        ("cli.rs", "use crate::error::Error;"),
        ("logs/store.rs", "use crate::daemon::Daemon;"),
        ("daemon/mod.rs", "use crate::logs::store::Sink;"),
        ("glob.rs", "use crate::error::Error;"),
    ]);
    let up: Vec<(String, String)> = upward(&g).into_iter().map(|(a, b, _)| (a, b)).collect();
    assert_eq!(
        up,
        vec![
            ("error".to_string(), "cli".to_string()),
            ("logs".to_string(), "daemon".to_string()),
        ]
    );
}

#[test]
fn finds_a_planted_import_up_the_layers_and_an_unplaced_module() {
    let g = planted(&[
        ("config.rs", "use crate::daemon::Daemon;"),
        ("daemon/mod.rs", "use crate::config::Config;"),
        ("paths.rs", "use crate::sys::euid;"),
        ("newroom.rs", ""),
    ]);
    let modules: BTreeSet<String> = ["config", "daemon", "paths", "sys", "newroom"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (up, unplaced) = against_the_layers(&g, &modules);
    let up: Vec<(String, String)> = up.into_iter().map(|(a, b, _)| (a, b)).collect();
    assert_eq!(up, vec![("config".to_string(), "daemon".to_string())]);
    assert_eq!(unplaced, vec!["newroom".to_string()]);
}

/// Needles that mean "registers with or waits on the poll".
const POLL_NEEDLES: &[&str] = &[
    "Registry",
    "Poll::new",
    ".register(",
    ".reregister(",
    ".deregister(",
    "poll.poll(",
];

/// The places in the daemon and the proxy, other than the daemon's loop, that
/// touch the poll: the loop is the only one (issue 17).
/// The daemon's loop: the one file that registers with the poll.
const LOOP: &str = "src/daemon/event_loop.rs";

fn poll_outside_the_loop(files: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files {
        let in_daemon = path.starts_with("src/daemon/") || path.starts_with("src/proxy/");
        if !in_daemon || path == LOOP {
            continue;
        }
        for (n, line) in drop_cfg_test(text).lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for needle in POLL_NEEDLES {
                if line.contains(needle) {
                    found.push(format!("{path}:{}: {needle}", n + 1));
                }
            }
        }
    }
    found
}

/// `super::NAME` in a component (a file of daemon/ other than mod.rs and the
/// loop) where NAME is not a sibling module, or is the loop: the component
/// reaches into the loop.
fn components_reaching_into_the_loop(files: &[(String, String)]) -> Vec<String> {
    let siblings: BTreeSet<String> = files
        .iter()
        .filter_map(|(p, _)| p.strip_prefix("src/daemon/"))
        .filter_map(|f| f.strip_suffix(".rs"))
        .filter(|f| !f.contains('/') && *f != "mod" && *f != "event_loop")
        .map(str::to_string)
        .collect();
    let mut found = Vec::new();
    for (path, text) in files {
        let Some(file) = path.strip_prefix("src/daemon/") else {
            continue;
        };
        if file == "mod.rs" || file == "event_loop.rs" || file.contains('/') {
            continue;
        }
        let stripped = strip(&drop_cfg_test(text));
        let mut rest = stripped.as_str();
        while let Some(at) = rest.find("super::") {
            rest = &rest[at + "super::".len()..];
            let names: Vec<String> = if let Some(inner) = rest.strip_prefix('{') {
                let end = inner.find('}').unwrap_or(inner.len());
                inner[..end]
                    .split(',')
                    .map(|s| s.trim().split("::").next().unwrap_or("").trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                vec![rest[..end].to_string()]
            };
            for name in names {
                if !siblings.contains(&name) && name != "self" {
                    found.push(format!("{path}: super::{name}"));
                }
            }
        }
    }
    found
}

fn src_texts() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    source_files(&root.join("src"), &mut paths);
    paths
        .iter()
        .map(|p| {
            let rel = p
                .strip_prefix(root)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned();
            (rel, std::fs::read_to_string(p).unwrap_or_default())
        })
        .collect()
}

#[test]
fn only_the_daemon_loop_touches_the_poll() {
    let found = poll_outside_the_loop(&src_texts());
    assert!(
        found.is_empty(),
        "the poll touched outside src/daemon/event_loop.rs (ARCHITECTURE.md: a component \
         returns an action and the loop registers, re-arms or deregisters):\n  {}",
        found.join("\n  ")
    );
    let planted = [
        (
            "src/proxy/x.rs".to_string(),
            "// registry.register( in a comment\nfn f(r: &mio::Registry) {}".to_string(),
        ),
        // The loop's routing table is part of the loop, but not of its I/O.
        (
            "src/daemon/event_loop/route.rs".to_string(),
            "fn g(r: &mio::Registry) {}".to_string(),
        ),
    ];
    assert_eq!(
        poll_outside_the_loop(&planted),
        vec![
            "src/proxy/x.rs:2: Registry".to_string(),
            "src/daemon/event_loop/route.rs:1: Registry".to_string()
        ]
    );
}

#[test]
fn components_do_not_reach_into_the_loop() {
    let found = components_reaching_into_the_loop(&src_texts());
    assert!(
        found.is_empty(),
        "daemon components import the loop or what daemon/mod.rs defines (ARCHITECTURE.md: a \
         component takes its inputs as arguments and returns actions):\n  {}",
        found.join("\n  ")
    );
    let planted = [
        (
            "src/daemon/a.rs".to_string(),
            "use super::{b::X, Daemon};".to_string(),
        ),
        (
            "src/daemon/b.rs".to_string(),
            "use super::a::Y;".to_string(),
        ),
        (
            "src/daemon/c.rs".to_string(),
            "use super::event_loop::Daemon;".to_string(),
        ),
        (
            "src/daemon/event_loop.rs".to_string(),
            "use super::{a, b, c};".to_string(),
        ),
        (
            "src/daemon/mod.rs".to_string(),
            "mod a; mod b; mod c; mod event_loop;".to_string(),
        ),
    ];
    assert_eq!(
        components_reaching_into_the_loop(&planted),
        vec![
            "src/daemon/a.rs: super::Daemon".to_string(),
            "src/daemon/c.rs: super::event_loop".to_string()
        ]
    );
}
