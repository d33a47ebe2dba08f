//! Which session a command acts on: `--session NAME`, else `AGENT_PROCS_SESSION`,
//! else (for `up` and `down`) the config's `session:`, else `default`. The name
//! `auto` stands for one derived from the git worktree the command runs in, so
//! agents working in two checkouts never share names, ports or proxy hostnames.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The environment variable that sets the default session.
pub const ENV: &str = "AGENT_PROCS_SESSION";
/// The session name that means "derive it from the worktree".
pub const AUTO: &str = "auto";

#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    pub name: String,
    /// By `--session` or the environment: it wins over the config's `session:`.
    pub given: bool,
    /// For an `auto` session, the worktree root it was derived from.
    pub root: Option<PathBuf>,
}

/// The session from the flag, else the environment variable, else `default`.
/// `cwd` is asked for only when the choice is `auto`.
pub fn choose(
    flag: Option<String>,
    env: Option<String>,
    cwd: impl FnOnce() -> std::io::Result<PathBuf>,
) -> Result<Chosen> {
    let Some(name) = flag.or(env.filter(|e| !e.is_empty())) else {
        return Ok(Chosen {
            name: "default".into(),
            given: false,
            root: None,
        });
    };
    if name != AUTO {
        return Ok(Chosen {
            name,
            given: true,
            root: None,
        });
    }
    let cwd = cwd().map_err(|e| {
        Error::Failed(format!(
            "--session auto: finding the current directory: {}",
            crate::error::describe_io(&e)
        ))
    })?;
    let root = worktree_root(&cwd);
    Ok(Chosen {
        name: auto_name(&root),
        given: true,
        root: Some(root),
    })
}

/// The nearest directory at or above `dir` with a `.git` (a directory in a
/// repository, a file in a worktree made by `git worktree add`); `dir` itself
/// when there is none, so a directory outside git is a session of its own.
pub fn worktree_root(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(dir)
        .to_path_buf()
}

/// `NAME-HASH`: the root's last component in the session alphabet, and eight
/// hex digits of a hash of the whole path, so two checkouts both called `app`
/// still differ.
pub fn auto_name(root: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = root.as_os_str().as_bytes();
    // FNV-1a: stable across builds and versions, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let base: String = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let base = base.trim_start_matches(['.', '-']);
    let base = if base.is_empty() { "root" } else { base };
    format!("{base}-{:08x}", (hash ^ (hash >> 32)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn no_cwd() -> std::io::Result<PathBuf> {
        Err(std::io::Error::other("not asked"))
    }

    #[test]
    fn the_flag_wins_then_the_environment_then_default() {
        let chosen = |flag: Option<&str>, env: Option<&str>| {
            choose(flag.map(Into::into), env.map(Into::into), no_cwd).ok()
        };
        let named = |name: &str, given| {
            Some(Chosen {
                name: name.into(),
                given,
                root: None,
            })
        };
        assert_eq!(chosen(None, None), named("default", false));
        assert_eq!(chosen(None, Some("")), named("default", false));
        assert_eq!(chosen(None, Some("ci")), named("ci", true));
        assert_eq!(chosen(Some("web"), Some("ci")), named("web", true));
        assert_eq!(chosen(Some("default"), None), named("default", true));
    }

    #[test]
    fn auto_derives_the_name_from_the_worktree_root() {
        let dir = std::env::temp_dir().join(format!("ap-session-{}", std::process::id()));
        let deep = dir.join("my app/src/deep");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(dir.join("my app/.git"), "gitdir: elsewhere\n").unwrap();
        let from_deep = choose(Some("auto".into()), None, || Ok(deep.clone())).unwrap();
        let from_top = choose(None, Some("auto".into()), || Ok(dir.join("my app"))).unwrap();
        let outside = choose(Some("auto".into()), None, || Ok(dir.clone())).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(from_deep, from_top);
        assert_eq!(from_deep.root, Some(dir.join("my app")));
        assert!(from_deep.given);
        assert!(from_deep.name.starts_with("my-app-"), "{}", from_deep.name);
        assert_eq!(outside.root, Some(dir.clone()));
        assert_ne!(outside.name, from_deep.name);
    }

    #[test]
    fn same_last_component_different_paths_differ() {
        let a = auto_name(Path::new("/home/a/app"));
        let b = auto_name(Path::new("/home/b/app"));
        assert!(a.starts_with("app-") && b.starts_with("app-"));
        assert_ne!(a, b);
        assert_eq!(a, auto_name(Path::new("/home/a/app")), "stable");
        assert_eq!(
            auto_name(Path::new("/")),
            format!("root-{}", &auto_name(Path::new("/"))[5..])
        );
    }

    proptest! {
        #[test]
        fn every_derived_name_is_a_valid_session_name(path in "/[ -~é]{0,80}") {
            let name = auto_name(Path::new(&path));
            prop_assert!(crate::paths::check_session_name(&name).is_ok(), "{name}");
        }
    }
}
