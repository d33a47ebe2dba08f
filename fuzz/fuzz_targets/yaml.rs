//! The YAML subset on arbitrary text: never panics (nesting is capped, so no
//! stack overflow), and every position it reports, of a node, a key or an
//! error, is a line:col inside the input.
#![no_main]

use agent_procs::yaml::{self, Node, Value};
use libfuzzer_sys::fuzz_target;

/// Characters on each line of the text as the parser sees it (1-based lines).
fn line_widths(text: &str) -> Vec<usize> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.split('\n').map(|l| l.chars().count()).collect()
}

fn assert_within(widths: &[usize], line: usize, col: usize, what: &str) {
    assert!(
        line >= 1 && line <= widths.len(),
        "{what} at line {line} of {}",
        widths.len()
    );
    assert!(
        col >= 1 && col <= widths[line - 1] + 1,
        "{what} at {line}:{col}, line has {} characters",
        widths[line - 1]
    );
}

fn check_tree(widths: &[usize], node: &Node, depth: usize) {
    assert!(
        depth <= yaml::MAX_DEPTH + 1,
        "nesting {depth} passed the cap"
    );
    assert_within(widths, node.line, node.col, "node");
    match &node.value {
        Value::List(items) => items.iter().for_each(|n| check_tree(widths, n, depth + 1)),
        Value::Map(entries) => {
            for (key, value) in entries {
                assert_within(widths, key.line, key.col, "key");
                check_tree(widths, value, depth + 1);
            }
            let mut names: Vec<&str> = entries.iter().map(|(k, _)| k.name.as_str()).collect();
            names.sort_unstable();
            let count = names.len();
            names.dedup();
            assert_eq!(names.len(), count, "map keys are unique");
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let widths = line_widths(text);
    match yaml::parse(text) {
        Ok(root) => check_tree(&widths, &root, 0),
        Err(e) => {
            assert!(!e.msg.is_empty());
            assert_within(&widths, e.line, e.col, &format!("error {e}"));
        }
    }
});
