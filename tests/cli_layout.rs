//! The CLI side's layout (issue 17): one file per command under src/cmd/, the
//! shared services under src/client/, and the arrows pointing down: a command
//! may use the client, the UI and the MCP server; the client, the UI and the MCP
//! server never use a command, and the client never uses the UI or the MCP server.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/<dir>`, with its text.
fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    let mut todo = vec![src().join(dir)];
    let mut found = Vec::new();
    while let Some(dir) = todo.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                found.push((path, text));
            }
        }
    }
    assert!(!found.is_empty(), "no sources under src/{dir}");
    found
}

/// The file a command lives in: its own, or the one it shares with its sibling.
fn file_of(command: &str) -> &str {
    match command {
        "stop-all" => "stop",
        "restart" => "run",
        name => name,
    }
}

#[test]
fn every_command_has_its_file_in_src_cmd() {
    for spec in agent_procs::cmd::COMMANDS {
        let file = src().join("cmd").join(format!("{}.rs", file_of(spec.name)));
        assert!(
            file.is_file(),
            "`{}` has no file of its own: expected {}",
            spec.name,
            file.display()
        );
        let dispatch = std::fs::read_to_string(src().join("cmd/mod.rs")).expect("src/cmd/mod.rs");
        let module = format!("pub mod {};", file_of(spec.name));
        assert!(
            dispatch.contains(&module),
            "src/cmd/mod.rs lacks `{module}`"
        );
    }
}

/// A command's table entry, usage text and parser sit in its file, beside what
/// it does; `cli.rs` keeps only what every command shares.
#[test]
fn each_command_declares_its_arguments_in_its_file() {
    let cli = std::fs::read_to_string(src().join("cli.rs")).expect("src/cli.rs");
    for spec in agent_procs::cmd::COMMANDS {
        let path = src().join("cmd").join(format!("{}.rs", file_of(spec.name)));
        let text = std::fs::read_to_string(&path).expect("the command's file");
        let synopsis = spec.usage.lines().next().unwrap_or_default();
        for (what, needle) in [
            ("table entry", format!("    name: \"{}\",", spec.name)),
            ("usage text", synopsis.to_string()),
        ] {
            assert!(
                text.contains(&needle),
                "{}: its {what} is not in {}",
                spec.name,
                path.display()
            );
            assert!(
                !cli.contains(&needle),
                "{}: its {what} is in src/cli.rs",
                spec.name
            );
        }
    }
}

#[test]
fn arrows_point_down_from_the_commands() {
    let below: [(&str, &[&str]); 3] = [
        ("client", &["crate::cmd", "crate::ui", "crate::mcp"]),
        ("ui", &["crate::cmd"]),
        ("mcp", &["crate::cmd"]),
    ];
    for (dir, forbidden) in below {
        for (path, text) in sources(dir) {
            for word in forbidden {
                assert!(
                    !text.contains(word),
                    "{} uses `{word}`: src/{dir} sits below it",
                    path.display()
                );
            }
        }
    }
    // The old homes are gone: one place per thing.
    for old in ["client.rs", "up_cmd.rs", "export_cmd.rs", "config_cmd.rs"] {
        assert!(!src().join(old).exists(), "src/{old} is back");
    }
}

// ---------------------------------------------------------------------------
// Size limits (issue 17): no source file over 800 lines, no function over 80.

/// A file may hold this many non-blank lines, not counting its test module.
const FILE_LIMIT: usize = 800;
/// A function may span this many non-blank lines, its signature and closing
/// brace included.
const FN_LIMIT: usize = 80;

/// The pure parsers: long because their grammar is, and table-tested. Their
/// functions still have to stay under `FN_LIMIT`.
const PARSERS: &[&str] = &["yaml.rs", "config.rs", "protocol.rs", "proxy/http.rs"];

/// Files over `FILE_LIMIT` that other branches of issue 17 are splitting right
/// now. The test fails once an entry is no longer too long, so the list only
/// shrinks: the lead removes each entry as its branch lands.
const KNOWN_LONG_FILES: &[&str] = &[];

/// Functions over `FN_LIMIT` in files other branches own (src/daemon/,
/// src/proxy/, src/cli.rs, src/completions.rs, src/cmd/). Same rule as above:
/// an entry that no longer offends fails the test.
const KNOWN_LONG_FNS: &[(&str, &str)] = &[];

/// The source with the insides of comments, strings, raw strings and char
/// literals blanked to spaces (newlines kept, so byte offsets and lines still
/// match), leaving only the code's own braces.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        let end = if b[i..].starts_with(b"//") {
            b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p)
        } else if b[i..].starts_with(b"/*") {
            block_comment_end(b, i)
        } else if let Some((hashes, body)) = raw_string_start(b, i) {
            let mut close = vec![b'"'];
            close.resize(1 + hashes, b'#');
            find(b, &close, body).map_or(b.len(), |p| p + close.len())
        } else if b[i] == b'"' {
            string_end(b, i + 1)
        } else if b[i] == b'\'' {
            match char_literal_end(src, i) {
                Some(end) => end,
                None => i + 1, // a lifetime or a label: code
            }
        } else {
            i + 1
        };
        if end > i + 1 {
            blank(&mut out, i, end);
        }
        i = end.max(i + 1);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn find(b: &[u8], what: &[u8], from: usize) -> Option<usize> {
    b.get(from..)?
        .windows(what.len())
        .position(|w| w == what)
        .map(|p| from + p)
}

/// `/* … */` nests in Rust.
fn block_comment_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        if b[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if b[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// From just inside `"`: the byte after the closing quote.
fn string_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// At `r"`, `r#"`, `br"`, `cr#"`…: the number of hashes and where the body
/// starts. Not inside an identifier (`for"` is no raw string).
fn raw_string_start(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return None;
    }
    let mut j = i;
    if matches!(b[j], b'b' | b'c') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
    j += hashes;
    (b.get(j) == Some(&b'"')).then_some((hashes, j + 1))
}

/// At `'`: the byte after a char literal (`'x'`, `'\''`, `'\u{7d}'`, `'é'`),
/// or None for a lifetime or a loop label (`'a`, `'outer:`).
fn char_literal_end(src: &str, i: usize) -> Option<usize> {
    let b = src.as_bytes();
    if b.get(i + 1) == Some(&b'\\') {
        // An escape: the closing quote comes after at least one more byte.
        return find(b, b"'", i + 3).map(|p| p + 1);
    }
    let c = src.get(i + 1..)?.chars().next()?;
    let close = i + 1 + c.len_utf8();
    (b.get(close) == Some(&b'\'')).then_some(close + 1)
}

/// One function found: its name, the line its `fn` is on (1-based), and how
/// many non-blank lines it spans up to its closing brace.
#[derive(Debug, PartialEq)]
struct Function {
    name: String,
    line: usize,
    lines: usize,
}

/// Every function with a body in `src`, nested ones and test functions too.
/// A declaration without a body (`fn f();` in a trait) and a pointer type
/// (`fn(u8) -> u8`) are not functions.
fn functions(src: &str) -> Vec<Function> {
    let code = code_only(src);
    let b = code.as_bytes();
    let line_of = |at: usize| b[..at].iter().filter(|&&c| c == b'\n').count();
    let lines: Vec<&str> = src.lines().collect();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = find(b, b"fn", from) {
        from = at + 2;
        let word_start = at == 0 || !is_ident(b[at - 1]);
        let name_at = from
            + b[from..]
                .iter()
                .take_while(|c| c.is_ascii_whitespace())
                .count();
        if !word_start || name_at == from || !b.get(name_at).is_some_and(|&c| is_ident(c)) {
            continue;
        }
        let name_len = b[name_at..].iter().take_while(|&&c| is_ident(c)).count();
        let name = code[name_at..name_at + name_len].to_string();
        let Some(open) = body_start(b, name_at + name_len) else {
            continue;
        };
        let close = matching_brace(b, open);
        let (first, last) = (line_of(at), line_of(close));
        let spanned = lines[first..=last.min(lines.len() - 1)]
            .iter()
            .filter(|l| !l.trim().is_empty())
            .count();
        found.push(Function {
            name,
            line: first + 1,
            lines: spanned,
        });
    }
    found
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// After a function's name: where its body's `{` is, or None if a `;` ends
/// the signature first. Brackets and parentheses are skipped, so a `;` in
/// `[u8; 4]` or a `{` in a const generic argument does not count.
fn body_start(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth = depth.saturating_sub(1),
            b'{' if depth == 0 => return Some(i),
            b';' if depth == 0 => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// At `{`: where its `}` is (the end of the text if it never closes).
fn matching_brace(b: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    b.len().saturating_sub(1)
}

/// The non-blank lines of a file, leaving out its top-level test modules
/// (`#[cfg(test)]` then `mod … {`, at the start of a line).
fn file_lines(src: &str) -> usize {
    let code = code_only(src);
    let b = code.as_bytes();
    let mut skipped = vec![false; src.lines().count()];
    let mut from = 0;
    while let Some(at) = find(b, b"#[cfg(test)]", from) {
        from = at + 1;
        let after = code[at + "#[cfg(test)]".len()..].trim_start();
        let at_line_start = at == 0 || b[at - 1] == b'\n';
        if !at_line_start || !after.starts_with("mod ") {
            continue;
        }
        let Some(open) = body_start(b, code.len() - after.len() + 4) else {
            continue; // `mod tests;`: a file of its own, measured on its own
        };
        let close = matching_brace(b, open);
        let first = b[..at].iter().filter(|&&c| c == b'\n').count();
        let last = b[..close].iter().filter(|&&c| c == b'\n').count();
        for s in skipped.iter_mut().take(last + 1).skip(first) {
            *s = true;
        }
    }
    src.lines()
        .zip(skipped)
        .filter(|(l, skip)| !skip && !l.trim().is_empty())
        .count()
}

/// Every `.rs` file under src/, as its path relative to src/ and its text.
fn all_sources() -> Vec<(String, String)> {
    let root = src();
    let mut found: Vec<(String, String)> = sources("")
        .into_iter()
        .map(|(path, text)| {
            let rel = path.strip_prefix(&root).unwrap_or(&path).to_string_lossy();
            (rel.trim_start_matches('/').to_string(), text)
        })
        .collect();
    found.sort();
    found
}

#[test]
fn no_file_is_over_800_lines_but_the_parsers() {
    let mut long = Vec::new();
    let mut stale = Vec::new();
    for (path, text) in all_sources() {
        let n = file_lines(&text);
        let offends = n > FILE_LIMIT && !PARSERS.contains(&path.as_str());
        let known = KNOWN_LONG_FILES.contains(&path.as_str());
        if offends && !known {
            long.push(format!("src/{path}: {n} non-blank lines"));
        } else if known && !offends {
            stale.push(format!("src/{path}"));
        }
    }
    assert!(
        stale.is_empty(),
        "these are no longer over {FILE_LIMIT} lines; remove them from KNOWN_LONG_FILES \
         in tests/cli_layout.rs: {stale:?}"
    );
    assert!(
        long.is_empty(),
        "files over {FILE_LIMIT} non-blank lines (tests not counted); split them by \
         concern into a folder (src/mcp/tools/, src/logs/): {long:#?}"
    );
}

#[test]
fn no_function_is_over_80_lines() {
    let mut long = Vec::new();
    let mut offenders = Vec::new();
    for (path, text) in all_sources() {
        for f in functions(&text) {
            if f.lines > FN_LIMIT {
                offenders.push((path.clone(), f.name.clone()));
                if !KNOWN_LONG_FNS.contains(&(path.as_str(), f.name.as_str())) {
                    long.push(format!(
                        "src/{path}:{} fn {} ({} lines)",
                        f.line, f.name, f.lines
                    ));
                }
            }
        }
    }
    let stale: Vec<_> = KNOWN_LONG_FNS
        .iter()
        .filter(|(p, n)| !offenders.iter().any(|(op, on)| op == p && on == n))
        .collect();
    assert!(
        stale.is_empty(),
        "these are no longer over {FN_LIMIT} lines; remove them from KNOWN_LONG_FNS in \
         tests/cli_layout.rs: {stale:?}"
    );
    assert!(
        long.is_empty(),
        "functions over {FN_LIMIT} non-blank lines; split them by meaning (a function \
         per decision, a table of cases with a short loop for a test): {long:#?}"
    );
}

#[test]
fn the_scan_sees_the_whole_tree() {
    // Not vacuous: the scan finds the functions and files we know are there.
    let sources = all_sources();
    let count: usize = sources.iter().map(|(_, t)| functions(t).len()).sum();
    assert!(count > 1000, "only {count} functions found under src/");
    for file in [
        "main.rs",
        "lib.rs",
        "yaml.rs",
        "daemon/mod.rs",
        "daemon/event_loop.rs",
        "cmd/mod.rs",
    ] {
        assert!(
            sources.iter().any(|(p, _)| p == file),
            "src/{file} not scanned"
        );
    }
    let (_, lib) = sources
        .iter()
        .find(|(p, _)| p == "lib.rs")
        .expect("src/lib.rs");
    assert!(functions(lib).iter().any(|f| f.name == "main_entry"));
}

/// The scanner's own cases: (source, the functions it must find as
/// (name, non-blank lines)).
const SCAN_CASES: &[(&str, &[(&str, usize)])] = &[
    ("fn a() {\n    x();\n}\n", &[("a", 3)]),
    ("fn a() {\n\n    x();\n\n}\n", &[("a", 3)]),
    // Braces in strings, raw strings, chars, byte chars and comments.
    (
        "fn a() {\n    let s = \"}\";\n}\nfn b() {}\n",
        &[("a", 3), ("b", 1)],
    ),
    ("fn a() {\n    let s = \"\\\"}\";\n}\n", &[("a", 3)]),
    ("fn a() {\n    let s = r#\"}\" }\"#;\n}\n", &[("a", 3)]),
    ("fn a() {\n    let s = br\"}\";\n}\n", &[("a", 3)]),
    (
        "fn a() {\n    let c = '}';\n    let d = b'{';\n}\n",
        &[("a", 4)],
    ),
    (
        "fn a() {\n    let c = '\\'';\n    let e = '\\u{7d}';\n}\n",
        &[("a", 4)],
    ),
    (
        "fn a() {\n    // }\n    /* } /* } */ } */\n}\n",
        &[("a", 4)],
    ),
    // Lifetimes and labels are not char literals.
    (
        "fn a<'x>(s: &'x str) {\n    'outer: loop {\n        break 'outer;\n    }\n}\n",
        &[("a", 5)],
    ),
    // Nested functions count on their own and inside their parent.
    (
        "fn a() {\n    fn b() {\n        x();\n    }\n}\n",
        &[("a", 5), ("b", 3)],
    ),
    // No body: a trait's declaration; a pointer type is no function.
    (
        "trait T {\n    fn a(&self);\n    fn b(&self) {}\n}\n",
        &[("b", 1)],
    ),
    (
        "fn a(f: fn(u8) -> u8, x: [u8; 4]) -> u8 {\n    f(x[0])\n}\n",
        &[("a", 3)],
    ),
    (
        "fn a<T>(t: T)\nwhere\n    T: Fn() -> u8,\n{\n    t();\n}\n",
        &[("a", 6)],
    ),
    // A quote inside a char or a string opens nothing.
    (
        "fn a() {\n    let q = '\"';\n    let s = \"'{\";\n}\n",
        &[("a", 4)],
    ),
    // `fn` inside a word, a string or a comment is none.
    (
        "fn a() {\n    let fnord = \"fn b() {\";\n    // fn c() {\n}\n",
        &[("a", 4)],
    ),
];

#[test]
fn the_scanner_finds_functions_and_their_length() {
    for (src, want) in SCAN_CASES {
        let got: Vec<(String, usize)> = functions(src)
            .into_iter()
            .map(|f| (f.name, f.lines))
            .collect();
        let want: Vec<(String, usize)> = want.iter().map(|(n, l)| (n.to_string(), *l)).collect();
        assert_eq!(got, want, "in {src:?}");
    }
}

#[test]
fn the_scanner_leaves_out_the_test_module_only() {
    const CASES: &[(&str, usize)] = &[
        (
            "fn a() {}\n\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\n",
            1,
        ),
        (
            "fn a() {}\n#[cfg(test)]\nmod tests {\n    const S: &str = \"}\";\n}\nfn b() {}\n",
            2,
        ),
        // A test-only item that is not a module still counts.
        ("#[cfg(test)]\nfn helper() {}\nfn a() {}\n", 3),
        // A test module in its own file: measured there.
        ("#[cfg(test)]\nmod tests;\nfn a() {}\n", 3),
        ("const S: &str = \"\n#[cfg(test)]\nmod tests {\n\";\n", 4),
    ];
    for (src, want) in CASES {
        assert_eq!(file_lines(src), *want, "in {src:?}");
    }
}

#[test]
fn a_function_of_80_lines_passes_and_one_of_81_does_not() {
    let of = |n: usize| format!("fn f() {{\n{}}}\n", "    x();\n".repeat(n - 2));
    let lines = |n| functions(&of(n)).first().map(|f| f.lines);
    assert_eq!(lines(80), Some(80));
    assert_eq!(lines(81), Some(81));
    assert_eq!(FN_LIMIT, 80, "the issue's limit");
    let file = "fn f() {}\n".repeat(801);
    assert_eq!(file_lines(&file), 801);
    assert_eq!(FILE_LIMIT, 800, "the issue's limit");
}
