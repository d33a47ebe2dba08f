//! The config schema on arbitrary text: never panics; a refused config has at
//! least one error, each at a line:col inside the input, sorted by position; an
//! accepted one has a start order that holds every process once, each after
//! what it depends on.
#![no_main]

use agent_procs::config::Config;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/fuzz/agent-procs.yaml");
    match Config::parse(text, file, "agent-procs.yaml") {
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason");
            let body = text.strip_prefix('\u{feff}').unwrap_or(text);
            let widths: Vec<usize> = body.split('\n').map(|l| l.chars().count()).collect();
            for e in &errors {
                assert!(!e.message.is_empty());
                let (Some(line), Some(col)) = (e.line, e.col) else {
                    panic!("an error without a position: {e}");
                };
                assert!(line >= 1 && line <= widths.len(), "{e}");
                assert!(col >= 1 && col <= widths[line - 1] + 1, "{e}");
            }
            assert!(errors.is_sorted_by_key(|e| (e.line, e.col)));
        }
        Ok(config) => {
            let order = config.start_order();
            assert_eq!(order.len(), config.processes.len());
            let mut at: HashMap<&str, usize> = HashMap::new();
            for (i, p) in order.iter().enumerate() {
                assert!(at.insert(p.name.as_str(), i).is_none(), "{} twice", p.name);
            }
            for p in &order {
                for dep in &p.depends_on {
                    assert!(
                        at[dep.as_str()] < at[p.name.as_str()],
                        "{} before {dep}",
                        p.name
                    );
                }
            }
        }
    }
});
