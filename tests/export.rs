//! `export systemd` and `export procfile`, driven through the real binary: the
//! units of a small stack, the JSON shape, `--dir` and its refusal to clobber,
//! hostile values, systemd-analyze as an oracle when it is installed, and a
//! Procfile line that runs what `up` runs.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Three processes: a database with a readiness check systemd cannot express, a
/// one-shot migration, and an api with a port, a restart policy and awkward values.
const STACK: &str = r#"
session: shop
processes:
  db:
    cmd: sleep 600
    ready: {tcp: 5432}
    stop_signal: INT
  migrate:
    cmd: |
      echo "migrating $DATABASE_URL"
      printf '%s\n' "100% done"
    ready: {exit: 0}
    depends_on: db
  api:
    cmd: echo "it's $GREETING" \ and 50% done; exec sleep 600
    cwd: ./backend
    env:
      GREETING: hello "world" $HOME 100%
      SPACED: "  a  b  "
      BACKSLASH: 'C:\dir\'
      MULTI: "one\ntwo"
    depends_on: [db, migrate]
    port: 8080
    autorestart: on-failure
    max_restarts: 3
    restart_delay: 250
    stop_timeout: 2.5
"#;

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("creating a directory");
    }
    std::fs::write(path, text).expect("writing a file");
}

fn sandbox_with(config: &str) -> Sandbox {
    let sb = Sandbox::new();
    write(&sb.root.join("agent-procs.yaml"), config);
    std::fs::create_dir_all(sb.root.join("backend")).expect("creating backend/");
    sb
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The files of `export` without `--dir`: each after a `# file: NAME` line.
fn files(stdout: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in stdout.split_inclusive('\n') {
        if let Some(name) = line.strip_prefix("# file: ") {
            // The blank line before a header separates files; it is not content.
            if let Some((_, text)) = out.last_mut()
                && text.ends_with("\n\n")
            {
                text.pop();
            }
            out.push((name.trim_end().to_string(), String::new()));
        } else {
            let (_, text) = out.last_mut().expect("output starts with a # file: line");
            text.push_str(line);
        }
    }
    out
}

fn lines_of<'t>(text: &'t str, key: &str) -> Vec<&'t str> {
    text.lines().filter(|l| l.starts_with(key)).collect()
}

#[test]
fn systemd_units_carry_dependencies_restarts_env_and_the_port() {
    let sb = sandbox_with(STACK);
    let out = sb.run(&["export", "systemd"]);
    assert_eq!(out.code, 0, "{}", sb.report(&["export"], &out, "exit 0"));
    let units = files(&out.stdout);
    let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "agent-procs-shop-db.service",
            "agent-procs-shop-migrate.service",
            "agent-procs-shop-api.service",
            "agent-procs-shop.target",
        ]
    );
    let (db, migrate, api, target) = (&units[0].1, &units[1].1, &units[2].1, &units[3].1);

    assert!(
        db.contains("\n# ready (tcp 5432) is not carried over: "),
        "{db}"
    );
    assert_eq!(lines_of(db, "Type="), ["Type=simple"]);
    assert_eq!(lines_of(db, "KillSignal="), ["KillSignal=SIGINT"]);
    assert_eq!(lines_of(db, "Restart="), ["Restart=no"]);

    assert_eq!(
        lines_of(migrate, "Requires="),
        ["Requires=agent-procs-shop-db.service"]
    );
    assert_eq!(
        lines_of(migrate, "Type=")
            .into_iter()
            .chain(lines_of(migrate, "RemainAfterExit="))
            .collect::<Vec<_>>(),
        ["Type=oneshot", "RemainAfterExit=yes"]
    );
    assert_eq!(
        lines_of(migrate, "ExecStart="),
        [
            r#"ExecStart=/bin/sh -c "echo \"migrating $$DATABASE_URL\"\nprintf '%%s\\n' \"100%% done\"\n""#
        ]
    );

    let root = sb.root.display();
    let want = [
        "After=agent-procs-shop-db.service agent-procs-shop-migrate.service".to_string(),
        "Requires=agent-procs-shop-db.service agent-procs-shop-migrate.service".into(),
        "PartOf=agent-procs-shop.target".into(),
        "StartLimitIntervalSec=300s".into(),
        "StartLimitBurst=4".into(),
        r#"ExecStart=/bin/sh -c "echo \"it's $$GREETING\" \\ and 50%% done; exec sleep 600""#
            .into(),
        format!("WorkingDirectory={root}/backend"),
        r#"Environment="BACKSLASH=C:\\dir\\""#.into(),
        r#"Environment="GREETING=hello \"world\" $HOME 100%%""#.into(),
        r#"Environment="HOST=127.0.0.1""#.into(),
        r#"Environment="MULTI=one\ntwo""#.into(),
        r#"Environment="PORT=8080""#.into(),
        r#"Environment="SPACED=  a  b  ""#.into(),
        "Restart=on-failure".into(),
        "RestartSec=250ms".into(),
        "KillMode=control-group".into(),
        "KillSignal=SIGTERM".into(),
        "TimeoutStopSec=2500ms".into(),
        "WantedBy=multi-user.target".into(),
    ];
    let settings: Vec<&str> = api
        .lines()
        .filter(|l| !l.starts_with(['#', '[']) && !l.is_empty())
        .filter(|l| !l.starts_with("Description=") && !l.starts_with("Type="))
        .collect();
    assert_eq!(settings, want, "{api}");

    assert_eq!(
        lines_of(target, "Wants="),
        [
            "Wants=agent-procs-shop-db.service agent-procs-shop-migrate.service agent-procs-shop-api.service"
        ]
    );
    assert_eq!(
        lines_of(target, "WantedBy="),
        ["WantedBy=multi-user.target"]
    );

    // The warning and the commands to start the stack go to stderr.
    assert!(
        out.stderr
            .contains("agent-procs: warning: db: ready (tcp 5432) is not carried over"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "  sudo systemctl daemon-reload\n  sudo systemctl start agent-procs-shop.target\n"
        ),
        "{}",
        out.stderr
    );
    // Exporting starts nothing.
    assert!(sb.daemon_pid().is_none());
}

#[test]
fn user_units_a_prefix_and_only_change_names_and_install_target() {
    let sb = sandbox_with(STACK);
    let out = sb.run(&[
        "--session",
        "dev",
        "export",
        "systemd",
        "--user",
        "--only",
        "migrate",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let units = files(&out.stdout);
    let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
    // --only pulls in what migrate depends on.
    assert_eq!(
        names,
        [
            "agent-procs-dev-db.service",
            "agent-procs-dev-migrate.service",
            "agent-procs-dev.target"
        ]
    );
    for (name, text) in &units {
        assert_eq!(
            lines_of(text, "WantedBy="),
            ["WantedBy=default.target"],
            "{name}"
        );
    }
    assert!(
        out.stderr
            .contains("  systemctl --user start agent-procs-dev.target\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("~/.config/systemd/user"),
        "{}",
        out.stderr
    );

    let out = sb.ok(&["export", "systemd", "--prefix", "shop", "--only", "db"]);
    let names: Vec<String> = files(&out).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["shop-db.service", "shop.target"]);

    let stderr = sb.fails(&["export", "systemd", "--only", "nope"], 2);
    assert!(stderr.contains("defines no process 'nope'"), "{stderr}");
    // The session goes into file names, so it must be a valid one.
    let stderr = sb.fails(&["--session", "../etc", "export", "systemd"], 64);
    assert!(stderr.contains("invalid session name '../etc'"), "{stderr}");

    // Written where the user's manager reads units, there is nothing to copy.
    let config_home = sb.root.join("config");
    let units = config_home.join("systemd/user");
    let mut cmd = sb.command(&["export", "systemd", "--user", "--json", "--dir"]);
    cmd.arg(&units).env("XDG_CONFIG_HOME", &config_home);
    let out = run_bounded(cmd, CALL_LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        json(&out.stdout)["commands"],
        serde_json::json!([
            "systemctl --user daemon-reload",
            "systemctl --user start agent-procs-shop.target"
        ])
    );
    assert!(units.join("agent-procs-shop.target").is_file());
}

#[test]
fn json_lists_files_warnings_and_commands() {
    let sb = sandbox_with(STACK);
    let out = json(&sb.ok(&["export", "systemd", "--json"]));
    assert_eq!(out["schema"], 1);
    let files = out["files"].as_array().expect("files is a list");
    assert_eq!(files.len(), 4);
    for f in files {
        assert_eq!(f["mode"], "0644");
        assert!(
            f["contents"]
                .as_str()
                .is_some_and(|c| c.starts_with("# Generated by agent-procs export systemd"))
        );
        assert!(f.get("status").is_none(), "{f}");
    }
    assert_eq!(files[0]["path"], "agent-procs-shop-db.service");
    assert_eq!(
        out["warnings"],
        serde_json::json!([{
            "process": "db",
            "key": "ready",
            "message": "ready (tcp 5432) is not carried over: systemd counts the unit as started \
                        once its command runs, so units after it may start before it is ready"
        }])
    );
    assert_eq!(
        out["commands"],
        serde_json::json!([
            "sudo systemctl daemon-reload",
            "sudo systemctl start agent-procs-shop.target"
        ])
    );

    let out = json(&sb.ok(&["export", "procfile", "--json", "--only", "db"]));
    assert_eq!(out["files"][0]["path"], "Procfile");
    let keys: Vec<&str> = out["warnings"]
        .as_array()
        .expect("warnings is a list")
        .iter()
        .filter_map(|w| w["key"].as_str())
        .collect();
    assert_eq!(keys, ["ready", "stop_signal"]);
}

#[test]
fn dir_writes_files_0644_and_refuses_to_clobber_a_changed_one() {
    let sb = sandbox_with(STACK);
    let out = sb.ok(&["export", "systemd", "--dir", "units/nested"]);
    let dir = sb.root.join("units/nested");
    let names = [
        "agent-procs-shop-db.service",
        "agent-procs-shop-migrate.service",
        "agent-procs-shop-api.service",
        "agent-procs-shop.target",
    ];
    for name in names {
        assert!(
            out.contains(&format!("wrote units/nested/{name}\n")),
            "{out}"
        );
        let meta = std::fs::metadata(dir.join(name)).expect("the file was written");
        assert_eq!(meta.permissions().mode() & 0o777, 0o644, "{name}");
    }
    assert!(
        out.contains("  sudo cp units/nested/agent-procs-shop-db.service "),
        "{out}"
    );
    // The same files again: nothing to do.
    let out = sb.ok(&["export", "systemd", "--dir", "units/nested"]);
    assert!(
        out.contains("unchanged units/nested/agent-procs-shop.target\n"),
        "{out}"
    );

    // An edited unit is not replaced, and nothing else is written either.
    let db = dir.join(names[0]);
    let original = std::fs::read_to_string(&db).expect("reading the unit");
    std::fs::write(&db, format!("{original}# edited by hand\n")).expect("editing the unit");
    std::fs::remove_file(dir.join(names[3])).expect("removing the target");
    let stderr = sb.fails(&["export", "systemd", "--dir", "units/nested"], 1);
    assert!(
        stderr.contains(
            "agent-procs: units/nested/agent-procs-shop-db.service exists with other contents; \
             nothing was written (pass --force to replace it)"
        ),
        "{stderr}"
    );
    assert!(!dir.join(names[3]).exists(), "a file was written after all");
    let json_out = json(&sb.ok(&[
        "export",
        "systemd",
        "--dir",
        "units/nested",
        "--force",
        "--json",
    ]));
    let status: Vec<&str> = json_out["files"]
        .as_array()
        .expect("files is a list")
        .iter()
        .filter_map(|f| f["status"].as_str())
        .collect();
    assert_eq!(status, ["replaced", "unchanged", "unchanged", "created"]);
    assert_eq!(
        json_out["files"][0]["path"],
        "units/nested/agent-procs-shop-db.service"
    );
    assert_eq!(
        std::fs::read_to_string(&db).expect("reading the unit"),
        original
    );

    // Values from an env_file are copied into the unit, which is then private.
    write(&sb.root.join(".env"), "SECRET=hunter2\n");
    write(
        &sb.root.join("agent-procs.yaml"),
        "processes:\n  app:\n    cmd: run-app\n    env_file: .env\n",
    );
    sb.ok(&["export", "systemd", "--dir", "private"]);
    let unit = sb.root.join("private/agent-procs-default-app.service");
    let meta = std::fs::metadata(&unit).expect("the unit was written");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&unit).expect("reading the unit");
    assert!(
        text.contains("\nEnvironment=\"SECRET=hunter2\"\n"),
        "{text}"
    );
    let procfile = sb.ok(&["export", "procfile", "--dir", "private"]);
    assert!(
        procfile.starts_with("wrote private/Procfile\n"),
        "{procfile}"
    );
    let meta =
        std::fs::metadata(sb.root.join("private/Procfile")).expect("the Procfile was written");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[test]
fn hostile_values_are_refused_naming_the_process_and_key() {
    let sb = sandbox_with(
        "processes:\n  api:\n    cmd: x\n    env:\n      MY-VAR: 1\n      COLOR: \"\\e[31m\"\n  web.1:\n    cmd: y\n",
    );
    let out = sb.run(&["export", "systemd"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr,
        "agent-procs: agent-procs.yaml: processes.api.env.COLOR: the value holds the control \
         character '\\u{1b}', which a unit cannot carry\n\
         agent-procs: agent-procs.yaml: processes.api.env.MY-VAR: systemd takes variable names \
         of letters, digits and '_', not starting with a digit\n\
         agent-procs: nothing exported: systemd units cannot carry the values above\n"
            .replace(
                "agent-procs.yaml:",
                &format!("{}:", sb.root.join("agent-procs.yaml").display())
            )
    );
    let stderr = sb.fails(&["export", "procfile", "--only", "web.1"], 1);
    assert!(
        stderr.contains(
            "processes.web.1: a Procfile names processes with letters, digits, '_' and '-' only"
        ),
        "{stderr}"
    );
    // Nothing was written or started.
    assert!(sb.daemon_pid().is_none());
}

/// Whether `systemd-analyze verify` works here: installed, and able to verify a
/// unit that is certainly fine.
fn systemd_analyze(sb: &Sandbox) -> bool {
    let probe = sb.root.join("probe/probe.service");
    write(
        &probe,
        "[Unit]\nDescription=probe\n\n[Service]\nExecStart=/bin/true\n",
    );
    let works = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&probe)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        skip_notice("systemd-analyze verify is not available here (it comes with systemd)");
    }
    works
}

/// A `Command Line:` of systemd's unit dump, back to the words it runs: systemd
/// shows each word C-escaped, in double quotes when needed, with `$` as `\$`;
/// `$$` then stands for one `$` when the command runs.
fn dumped_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
        }
        let mut word = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted => break,
                ' ' if !quoted => break,
                '\\' => match chars.next() {
                    Some('n') => word.push('\n'),
                    Some('t') => word.push('\t'),
                    Some(other) => word.push(other),
                    None => {}
                },
                c => word.push(c),
            }
        }
        words.push(word.replace("$$", "$"));
    }
    words
}

#[test]
fn systemd_analyze_accepts_the_units_and_reads_back_the_commands_and_values() {
    let sb = sandbox_with(STACK);
    if !systemd_analyze(&sb) {
        return;
    }
    sb.ok(&["export", "systemd", "--dir", "units"]);
    let dir = sb.root.join("units");
    let mut cmd = Command::new("systemd-analyze");
    cmd.args(["verify", "--man=no"])
        .env("SYSTEMD_LOG_LEVEL", "debug")
        .stdin(Stdio::null());
    for name in [
        "agent-procs-shop-db.service",
        "agent-procs-shop-migrate.service",
        "agent-procs-shop-api.service",
        "agent-procs-shop.target",
    ] {
        cmd.arg(dir.join(name));
    }
    let out = run_bounded(cmd, CALL_LIMIT);
    let log = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code, 0, "{log}");
    // systemd names the file and line of every setting it ignores or doubts.
    let complaints: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with(&format!("{}/", dir.display())))
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");

    // The debug log dumps each unit as systemd understood it.
    let Some(api) = log.split("-> Unit agent-procs-shop-api.service:").nth(1) else {
        skip_notice("skipped the read-back: this systemd-analyze dumps no units");
        return;
    };
    let command = api
        .lines()
        .find_map(|l| l.trim().strip_prefix("Command Line: "))
        .expect("the api unit has a command line");
    assert_eq!(
        dumped_words(command),
        [
            "/bin/sh",
            "-c",
            r#"echo "it's $GREETING" \ and 50% done; exec sleep 600"#
        ]
    );
    let env: Vec<&str> = api
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Environment: "))
        .collect();
    assert_eq!(
        env,
        [
            r"BACKSLASH=C:\dir\",
            r#"GREETING=hello "world" $HOME 100%"#,
            "HOST=127.0.0.1",
            "MULTI=one",
            "PORT=8080",
            "SPACED=  a  b  ",
        ]
    );
    assert!(api.contains("MULTI=one\ntwo\n"), "{api}");
    let migrate = log
        .split("-> Unit agent-procs-shop-migrate.service:")
        .nth(1)
        .expect("the migrate unit is dumped too");
    let command = migrate
        .lines()
        .find_map(|l| l.trim().strip_prefix("Command Line: "))
        .expect("the migrate unit has a command line");
    assert_eq!(
        dumped_words(command),
        [
            "/bin/sh",
            "-c",
            "echo \"migrating $DATABASE_URL\"\nprintf '%s\\n' \"100% done\"\n"
        ]
    );
}

/// Two one-shot processes whose output shows their directory and variables.
const SHOWN: &str = r#"
processes:
  greet:
    cmd: pwd; printf '%s|%s|%s\n' "it's" "$GREETING" "$PORT"
    cwd: ./backend
    env:
      GREETING: a "b" $c 100% \n 'q'
    port: 8080
    ready: {exit: 0}
  lines:
    cmd: |
      echo "one $WHO"
      printf '%s\n' 'two % \ three'
    env: {WHO: "it's me"}
    ready: {exit: 0}
  plain:
    cmd: echo "plain $HOME" | tr a-z A-Z
    ready: {exit: 0}
"#;

#[test]
fn a_procfile_line_runs_what_up_runs() {
    let sb = sandbox_with(SHOWN);
    let procfile = sb.ok(&["export", "procfile"]);
    let entries: Vec<(&str, &str)> = procfile
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(": "))
        .collect();
    let names: Vec<&str> = entries.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["greet", "lines", "plain"]);
    // A command that needs nothing else is copied as it is.
    assert_eq!(entries[2].1, r#"echo "plain $HOME" | tr a-z A-Z"#);

    sb.ok(&["up"]);
    for (name, line) in entries {
        let under_agent_procs = sb.ok(&["logs", name]);
        // Run the line the way honcho and foreman do: sh -c, beside the Procfile.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", line])
            .current_dir(&sb.root)
            .env_remove("GREETING")
            .env_remove("PORT")
            .env_remove("WHO")
            .stdin(Stdio::null());
        let out = run_bounded(cmd, CALL_LIMIT);
        assert_eq!(out.code, 0, "{name}: {line}\n{}", out.stderr);
        assert_eq!(out.stdout, under_agent_procs, "{name}: {line}");
    }
    let greet = sb.ok(&["logs", "greet"]);
    assert_eq!(
        greet,
        format!(
            "{}/backend\nit's|a \"b\" $c 100% \\n 'q'|8080\n",
            sb.root.display()
        )
    );
}

#[test]
fn a_cwd_with_dot_dot_is_resolved_or_refused_for_systemd() {
    let sb = sandbox_with("processes:\n  a: {cmd: x, cwd: backend/../backend}\n");
    let out = sb.ok(&["export", "systemd"]);
    let real = std::fs::canonicalize(sb.root.join("backend")).expect("resolving backend/");
    assert!(
        out.contains(&format!("\nWorkingDirectory={}\n", real.display())),
        "{out}"
    );
    // A Procfile's cd takes it as it is, absolute since it leaves and comes back.
    let out = sb.ok(&["export", "procfile"]);
    let line = format!(
        "\na: sh -c 'cd {}/backend/../backend || exit; x'\n",
        sb.root.display()
    );
    assert!(out.contains(&line), "{out}");

    write(
        &sb.root.join("agent-procs.yaml"),
        "processes:\n  a: {cmd: x, cwd: missing/../elsewhere}\n",
    );
    let stderr = sb.fails(&["export", "systemd"], 1);
    assert!(
        stderr.contains("processes.a.cwd: ") && stderr.contains("has a '..' component"),
        "{stderr}"
    );
}
