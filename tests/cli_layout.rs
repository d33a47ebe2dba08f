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

#[test]
fn no_function_on_the_cli_side_is_over_80_lines() {
    let mut long = Vec::new();
    let files = ["cli.rs", "completions.rs"].map(|f| {
        let path = src().join(f);
        let text = std::fs::read_to_string(&path).expect("a source file");
        (path, text)
    });
    for dir in ["cmd", "client"] {
        for (path, text) in sources(dir).into_iter().chain(files.clone()) {
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let trimmed = line.trim_start();
                let is_fn = ["fn ", "pub fn ", "pub(crate) fn ", "pub(super) fn "]
                    .iter()
                    .any(|p| trimmed.starts_with(p));
                if !is_fn || line.trim_end().ends_with(';') {
                    continue;
                }
                let close = format!("{}}}", &line[..line.len() - trimmed.len()]);
                let Some(end) = lines[i..].iter().position(|l| *l == close) else {
                    continue;
                };
                if end + 1 > 80 {
                    long.push(format!("{}:{} ({} lines)", path.display(), i + 1, end + 1));
                }
            }
        }
    }
    assert!(long.is_empty(), "functions over 80 lines: {long:#?}");
}

/// The CLI side's files stay readable: at most 800 non-blank lines each before
/// the test module.
#[test]
fn no_file_on_the_cli_side_is_over_800_lines() {
    let mut files: Vec<(PathBuf, String)> = ["cli.rs", "completions.rs"]
        .iter()
        .map(|f| {
            let path = src().join(f);
            let text = std::fs::read_to_string(&path).expect("a source file");
            (path, text)
        })
        .collect();
    files.extend(sources("cmd"));
    files.extend(sources("client"));
    for (path, text) in files {
        let code = text
            .split("\n#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or(&text);
        let lines = code.lines().filter(|l| !l.trim().is_empty()).count();
        assert!(
            lines <= 800,
            "{} has {lines} non-blank lines",
            path.display()
        );
    }
}
