#!/usr/bin/env bash
# `make compat`: run the black-box integration tests of agent-procs 0.6.3 (the
# original, as published in the crate registry with its tests/) against our
# release binary, or with --baseline against 0.6.3's own binary.
#
#   tests/compat/run.sh [--baseline] [BINARY]
#
# Cargo fetches the 0.6.3 package into its own cache (the first run needs the
# crate registry; later runs work offline), the package is copied to
# target/compat/agent-procs-0.6.3, and its tests are built once into
# target/compat/build. Each test file then runs on its own: a private /tmp
# (0.6.3's tests look for sockets in /tmp/agent-procs-<uid>) and a private pid
# namespace, so runs never meet each other or the user's sessions and nothing they
# start outlives them. The tests find the binary through CARGO_BIN_EXE_agent-procs.
#
# Prints a table (file, passed, failed) and exits 1 if a test failed that is not
# in tests/compat/known-failures (tests that fail on 0.6.3 itself).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
CARGO=${CARGO:-cargo}
version=0.6.3
work=$root/target/compat
src=$work/agent-procs-$version
known=$root/tests/compat/known-failures
# The files that drive the binary; the others test 0.6.3's library.
files=(e2e follow logs process_groups proxy restart run_stop session_mgmt tui_smoke up_down wait)

baseline=false
if [ "${1:-}" = --baseline ]; then
    baseline=true
    shift
fi
bin=${1:-$root/target/release/agent-procs}

say() { printf 'compat: %s\n' "$*" >&2; }
die() {
    say "$*"
    exit 1
}

for tool in python3 curl bash; do
    command -v "$tool" >/dev/null 2>&1 || die "0.6.3's tests need $tool; install it (apt-get install $tool)"
done

# 1. The package, through cargo: a throwaway manifest that depends on it.
if [ ! -f "$src/.complete" ]; then
    mkdir -p "$work/fetch/src"
    cat >"$work/fetch/Cargo.toml" <<EOF
# Written by tests/compat/run.sh: lets cargo fetch agent-procs $version.
[package]
name = "agent-procs-compat-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
agent-procs = "=$version"

[workspace]
EOF
    echo 'fn main() {}' >"$work/fetch/src/main.rs"
    say "fetching agent-procs $version with cargo"
    manifest=$($CARGO metadata --format-version 1 --manifest-path "$work/fetch/Cargo.toml" |
        python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "agent-procs" and p["version"] == sys.argv[1]:
        print(p["manifest_path"])
' "$version") || die "cargo could not fetch agent-procs $version (the first run needs the crate registry)"
    [ -n "$manifest" ] || die "cargo metadata did not list agent-procs $version"
    rm -rf "$src"
    cp -Rp "$(dirname "$manifest")" "$src"
    [ -d "$src/tests" ] || die "the agent-procs $version package has no tests/ directory"
    touch "$src/.complete"
fi

# 2. Its tests, built once (cargo rebuilds nothing when nothing changed).
started=$(date +%s)
say "building agent-procs $version and its tests (cached in target/compat/build)"
targets=()
for f in "${files[@]}"; do
    targets+=(--test "test_$f")
done
(cd "$src" && $CARGO test --locked --no-run "${targets[@]}" --message-format=json-render-diagnostics \
    --target-dir "$work/build") >"$work/build.json" ||
    die "building agent-procs $version's tests failed (see the output above)"
say "built in $(($(date +%s) - started)) s"
executables=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and "test" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])
' "$work/build.json")

if $baseline; then
    bin=$work/build/debug/agent-procs
    label="agent-procs $version's own binary"
else
    label="$bin"
fi
[ -x "$bin" ] || die "no binary at $bin; run 'make build' first"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

# 3. A private /tmp and pid namespace per file (as root, or in a user namespace).
sandbox=()
if unshare --mount --pid --fork --kill-child --mount-proc true 2>/dev/null; then
    sandbox=(unshare --mount --pid --fork --kill-child --mount-proc)
elif unshare --user --map-root-user --mount --pid --fork --kill-child --mount-proc true 2>/dev/null; then
    sandbox=(unshare --user --map-root-user --mount --pid --fork --kill-child --mount-proc)
elif [ "${AGENT_PROCS_COMPAT_SHARED_TMP:-}" = 1 ]; then
    say "warning: no namespaces (unshare); running in the shared /tmp as asked"
else
    die "cannot make a private /tmp with unshare (util-linux; root or user namespaces needed); set AGENT_PROCS_COMPAT_SHARED_TMP=1 to run in the shared /tmp"
fi

# A tmpfs on /tmp would hide a checkout or a binary that lives under /tmp.
tmp_mode=shared
if [ ${#sandbox[@]} -gt 0 ]; then
    case "$root/ $bin" in
    /tmp/* | *" /tmp/"*)
        say "warning: the checkout or the binary is under /tmp, so /tmp stays shared (only the pid namespace is private)"
        ;;
    *) tmp_mode=private ;;
    esac
fi

logs=$work/logs/$($baseline && echo baseline || echo ours)
rm -rf "$logs"
mkdir -p "$logs"
say "running against $label"

results=$work/results.tsv
: >"$results"
for f in "${files[@]}"; do
    exe=$(printf '%s\n' "$executables" | awk -v n="test_$f" '$1 == n { print $2 }')
    [ -n "$exe" ] || die "no test binary test_$f was built"
    log=$logs/test_$f.log
    home=$work/home/$f
    rm -rf "$home"
    mkdir -p "$home"
    set +e
    (cd "$src" && timeout -k 10 600 "${sandbox[@]}" sh -c '
        if [ "$1" = private ]; then mount -t tmpfs -o mode=1777 tmpfs /tmp || exit 97; fi
        shift
        exec "$@"' sh "$tmp_mode" \
        env -u AGENT_PROCS_RUNTIME_DIR -u XDG_STATE_HOME -u AGENT_PROCS_SESSION \
        HOME="$home" TMPDIR=/tmp "CARGO_BIN_EXE_agent-procs=$bin" \
        "$exe" --test-threads="${COMPAT_TEST_THREADS:-4}") >"$log" 2>&1
    rc=$?
    set -e
    python3 - "$f" "$rc" "$log" "$known" "$baseline" >>"$results" <<'EOF'
import re, sys
f, rc, log, known, baseline = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
text = open(log, errors="replace").read()
passed = [m.group(1) for m in re.finditer(r"^test (\S+) \.\.\. ok$", text, re.M)]
failed = [m.group(1) for m in re.finditer(r"^test (\S+) \.\.\. FAILED$", text, re.M)]
allowed = set()
for line in open(known):
    line = line.split("#", 1)[0].split()
    if line:
        allowed.add(line[0])
if rc != 0 and not failed:
    failed = ["(the test binary exited %d without a result; see the log)" % rc]
unexpected = [t for t in failed if "test_%s::%s" % (f, t) not in allowed]
if baseline == "true":
    unexpected = failed
print("\t".join([f, str(len(passed)), str(len(failed)), " ".join(failed), " ".join(unexpected)]))
EOF
done

# 4. The table.
python3 - "$results" "$logs" "$baseline" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
baseline = sys.argv[3] == "true"
print("%-20s %7s %7s  %s" % ("file", "passed", "failed", "failing tests"))
bad = 0
tp = tf = 0
for f, p, n, failed, unexpected in rows:
    tp += int(p)
    tf += int(n)
    notes = []
    for t in failed.split(" ") if failed else []:
        notes.append(t if t in unexpected.split(" ") else t + " (known)")
    bad += len(unexpected.split(" ")) if unexpected else 0
    print("%-20s %7s %7s  %s" % ("test_" + f, p, n, ", ".join(notes)))
print("%-20s %7d %7d" % ("total", tp, tf))
print("logs: %s" % sys.argv[2])
if baseline:
    sys.exit(0)
if bad:
    print("compat: %d unexpected failure(s)" % bad, file=sys.stderr)
    sys.exit(1)
EOF
