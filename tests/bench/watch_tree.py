#!/usr/bin/env python3
"""File watching over a big tree (issue 6): 5,000 directories and 50,000 files.
Measures the `run --watch` that sets the watches up (target <= 1 s), the daemon's
RSS growth (target <= 2 MiB), CPU while nothing changes (target 0), and how long a
change takes to restart the process.

Usage: watch_tree.py AP. Standard library only; stops everything with `down`.
"""

import os
import shutil
import subprocess
import sys
import time

import benchlib


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    ap = sys.argv[1]
    root, env = benchlib.sandbox("wtree-")
    tree = os.path.join(root, "tree")
    try:
        for a in range(50):
            for b in range(100):
                d = os.path.join(tree, f"a{a}", f"b{b}")
                os.makedirs(d)
                for i in range(10):
                    open(os.path.join(d, f"f{i}.rs"), "w").close()
        def cli(*args):
            return subprocess.run([ap, *args], env=env, capture_output=True, text=True,
                                  timeout=60, cwd=tree)
        cli("run", "sleep 600", "--name", "idle")
        pid = int(open(os.path.join(root, "run", "default.pid")).read())
        before = benchlib.status_kib(pid)
        t0 = time.perf_counter()
        out = cli("run", "sh -c 'echo up; exec sleep 600'", "--name", "app",
                  "--watch", "**/*.rs")
        setup = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        after = benchlib.status_kib(pid)
        c0 = cpu_s(pid)
        time.sleep(5)
        idle_cpu = cpu_s(pid) - c0
        status = cli("status", "--json").stdout
        old_pid = [l for l in status.splitlines() if '"pid"' in l]
        t1 = time.perf_counter()
        with open(os.path.join(tree, "a7", "b42", "f3.rs"), "w") as f:
            f.write("changed")
        restarted = None
        while time.perf_counter() - t1 < 10:
            if [l for l in cli("status", "--json").stdout.splitlines() if '"pid"' in l] != old_pid:
                restarted = time.perf_counter() - t1
                break
            time.sleep(0.02)
        print("tree: 5,000 directories, 50,000 files")
        print(f"run --watch (sets up every watch): {setup * 1000:.0f} ms")
        print(f"daemon RSS: {before / 1024:.1f} -> {after / 1024:.1f} MiB "
              f"(+{(after - before) / 1024:.2f} MiB)")
        print(f"daemon CPU over 5 s with nothing changing: {idle_cpu:.3f} s")
        print("a change to a restarted process: " +
              (f"{restarted * 1000:.0f} ms (500 ms of it is the debounce)" if restarted else "no restart within 10 s"))
    finally:
        subprocess.run([ap, "down"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
