//! `agent-procs completions SHELL`: each installed shell loads the script and is
//! asked what completes a partial command line. A missing shell skips its test.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Write the script for `shell` into the sandbox and return its path.
fn script(sb: &Sandbox, shell: &str, file: &str) -> PathBuf {
    let text = sb.ok(&["completions", shell]);
    let path = sb.root.join(file);
    std::fs::write(&path, text).expect("writing the completion script");
    path
}

/// Run `shell` with `args` in the sandbox's environment, with the binary on PATH
/// under the name the scripts call, and insist on exit 0; returns stdout.
fn shell_ok(sb: &Sandbox, shell: &str, args: &[&str]) -> String {
    let bin_dir = Path::new(BIN).parent().expect("the binary has a directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(shell);
    cmd.args(args)
        .env("PATH", path)
        .env("XDG_CONFIG_HOME", sb.root.join("config"))
        .env("XDG_DATA_HOME", sb.root.join("data"))
        .current_dir(&sb.root)
        .stdin(Stdio::null());
    sb.isolate(&mut cmd);
    let out = run_bounded(cmd, CALL_LIMIT);
    if out.code != 0 {
        panic!(
            "{shell} {args:?} exited {}\nstdout:\n{}\nstderr:\n{}",
            out.code, out.stdout, out.stderr
        );
    }
    out.stdout
}

/// Non-empty lines up to any tab (fish appends descriptions), sorted.
fn offers(stdout: &str) -> Vec<String> {
    let mut words: Vec<String> = stdout
        .lines()
        .map(|l| l.split('\t').next().unwrap_or("").to_string())
        .filter(|w| !w.is_empty())
        .collect();
    words.sort();
    words
}

const BASH_COMPLETE: &str = r#"source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
_agent_procs
printf '%s\n' "${COMPREPLY[@]}""#;

/// What bash's completion function offers for `words`, the last being completed.
fn bash_offers(sb: &Sandbox, script: &Path, words: &[&str]) -> Vec<String> {
    let script = script.to_str().expect("a UTF-8 path");
    let mut args = vec!["--norc", "--noprofile", "-c", BASH_COMPLETE, "bash", script];
    args.extend(words);
    offers(&shell_ok(sb, "bash", &args))
}

/// zsh's completion system needs a terminal; this calls the function with the
/// variables it reads and a `compadd` that prints the matches for `PREFIX`.
const ZSH_COMPLETE: &str = r#"compdef() { registered="$*" }
compadd() {
    local w
    for w in "${@[$(( ${@[(i)--]} + 1 )),-1]}"; do
        [[ $w == ${PREFIX}* ]] && print -r -- $w
    done
    return 0
}
source "$1"; shift
(( $+functions[_agent-procs] )) || { print -u2 "no _agent-procs"; exit 1 }
[[ $registered == "_agent-procs agent-procs" ]] || { print -u2 "compdef: $registered"; exit 1 }
words=("$@"); CURRENT=$#; PREFIX=${words[CURRENT]}
_agent-procs"#;

fn zsh_offers(sb: &Sandbox, script: &Path, words: &[&str]) -> Vec<String> {
    let script = script.to_str().expect("a UTF-8 path");
    let mut args = vec!["-f", "-c", ZSH_COMPLETE, "zsh", script];
    args.extend(words);
    offers(&shell_ok(sb, "zsh", &args))
}

/// fish completes a command line without a terminal: `complete -C LINE`.
fn fish_offers(sb: &Sandbox, script: &Path, line: &str) -> Vec<String> {
    let script = script.to_str().expect("a UTF-8 path");
    let program = "source $argv[1]; complete -C $argv[2]";
    offers(&shell_ok(
        sb,
        "fish",
        &["--no-config", "-c", program, script, line],
    ))
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[test]
fn completions_refuses_an_unknown_shell() {
    let sb = Sandbox::new();
    let err = sb.fails(&["completions", "tcsh"], 64);
    assert!(err.contains("unknown shell 'tcsh'"), "{err}");
}

#[test]
fn bash_completes_commands_flags_and_subcommands() {
    if !need(&["bash"], "bash") {
        return;
    }
    let sb = Sandbox::new();
    let path = script(&sb, "bash", "agent-procs.bash");
    let registered = shell_ok(
        &sb,
        "bash",
        &[
            "--norc",
            "-c",
            r#"source "$1"; complete -p agent-procs"#,
            "bash",
            path.to_str().expect("a UTF-8 path"),
        ],
    );
    assert!(registered.contains("-F _agent_procs"), "{registered}");
    let cases: &[(&[&str], &[&str])] = &[
        (&["agent-procs", "st"], &["status", "stop", "stop-all"]),
        (
            &["agent-procs", "--session", "x", "st"],
            &["status", "stop", "stop-all"],
        ),
        (&["agent-procs", "session", ""], &["clean", "list"]),
        (&["agent-procs", "config", "--json", "s"], &["show"]),
        (&["agent-procs", "logs", "--fo"], &["--follow"]),
        (&["agent-procs", "wait", "web", "--ti"], &["--timeout"]),
        (&["agent-procs", "--v"], &["--version"]),
        (&["agent-procs", "logs", "--since", ""], &[]),
    ];
    for (words, want) in cases {
        assert_eq!(bash_offers(&sb, &path, words), strings(want), "{words:?}");
    }
}

#[test]
fn bash_completes_names_of_running_processes() {
    if !need(&["bash"], "bash") {
        return;
    }
    let sb = Sandbox::new();
    let path = script(&sb, "bash", "agent-procs.bash");
    sb.start("web", "sleep 600");
    sb.start("api", "sleep 600");
    let cases: &[(&[&str], &[&str])] = &[
        (&["agent-procs", "logs", ""], &["api", "web"]),
        (&["agent-procs", "stop", "w"], &["web"]),
        (&["agent-procs", "logs", "--tail", "5", "a"], &["api"]),
        // A process name is only the first argument.
        (&["agent-procs", "wait", "web", ""], &[]),
        // Another session has no daemon, so no names.
        (&["agent-procs", "--session", "other", "logs", ""], &[]),
    ];
    for (words, want) in cases {
        assert_eq!(bash_offers(&sb, &path, words), strings(want), "{words:?}");
    }
}

#[test]
fn zsh_script_parses_and_completes_commands_and_names() {
    if !need(&["zsh"], "zsh") {
        return;
    }
    let sb = Sandbox::new();
    let path = script(&sb, "zsh", "_agent-procs");
    let text = std::fs::read_to_string(&path).expect("reading the script");
    assert!(text.starts_with("#compdef agent-procs\n"), "{text}");
    shell_ok(&sb, "zsh", &["-n", path.to_str().unwrap()]);
    let st = zsh_offers(&sb, &path, &["agent-procs", "st"]);
    assert_eq!(st, strings(&["status", "stop", "stop-all"]));
    let sub = zsh_offers(&sb, &path, &["agent-procs", "session", ""]);
    assert_eq!(sub, strings(&["clean", "list"]));
    sb.start("web", "sleep 600");
    let names = zsh_offers(&sb, &path, &["agent-procs", "logs", ""]);
    assert_eq!(names, strings(&["web"]));
}

#[test]
fn fish_completes_commands_flags_and_names() {
    if !need(&["fish"], "fish") {
        return;
    }
    let sb = Sandbox::new();
    let path = script(&sb, "fish", "agent-procs.fish");
    let cases: &[(&str, &[&str])] = &[
        ("agent-procs st", &["status", "stop", "stop-all"]),
        (
            "agent-procs --session x st",
            &["status", "stop", "stop-all"],
        ),
        ("agent-procs session ", &["clean", "list"]),
        ("agent-procs logs --fo", &["--follow"]),
    ];
    for (line, want) in cases {
        assert_eq!(fish_offers(&sb, &path, line), strings(want), "{line}");
    }
    sb.start("web", "sleep 600");
    assert_eq!(
        fish_offers(&sb, &path, "agent-procs logs "),
        strings(&["web"])
    );
}
