//! The glob matcher on an arbitrary pattern and path (split at the first NUL):
//! compiling never panics and an error points inside the pattern; matching
//! terminates quickly (libFuzzer's -timeout catches a hang); a pattern with no
//! special character matches exactly itself.
#![no_main]

use agent_procs::glob::{self, Glob};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (pattern, path) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let pattern = String::from_utf8_lossy(pattern);
    let path = String::from_utf8_lossy(path);
    glob::ignored_by_default(&path);
    match Glob::new(&pattern) {
        Err(e) => {
            assert!(
                e.pos <= pattern.len(),
                "error at {} of {}",
                e.pos,
                pattern.len()
            );
            assert!(!e.message.is_empty());
        }
        Ok(g) => {
            assert_eq!(g.as_str(), pattern);
            g.matches(&path);
            g.matches(&pattern);
            let special = |c: char| "*?[]{}\\".contains(c);
            if !pattern.contains(special) && !pattern.starts_with('/') && !pattern.ends_with('/') {
                assert!(g.matches(&pattern), "{pattern:?} does not match itself");
                if pattern != path {
                    let anchored = pattern.contains('/');
                    let name = path.rsplit('/').next().unwrap_or(&path);
                    assert!(
                        !g.matches(&path) || (!anchored && name == pattern),
                        "{pattern:?} matches {path:?}"
                    );
                }
            }
        }
    }
});
