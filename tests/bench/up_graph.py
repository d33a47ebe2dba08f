#!/usr/bin/env python3
"""Benchmarks for `up` (issue 4), from the outside, as `make bench` runs them.

1. A 50-process graph, 10 levels of 5, each process depending on every process of
   the level above and ready on a log line. Each process prints its own clock with
   its ready line; we report how long after the last ready line `up` returned
   (target: 50 ms), and the whole `up` wall time.
2. `config check` of a 1,000-process file (target: parse <= 20 ms; the figure
   includes starting the program).

Usage: up_graph.py AP [AP_B]  (a second binary is measured in turn, A B A B ...).
Standard library only; every process is stopped with `down`, every wait bounded.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib

RUNS = int(os.environ.get("RUNS", "10"))
LEVELS, WIDTH = 10, 5


def graph_config():
    lines = ["processes:"]
    for level in range(LEVELS):
        for i in range(WIDTH):
            name = f"l{level}p{i}"
            lines.append(f"  {name}:")
            lines.append(
                "    cmd: sh -c 'echo ready $(date +%s.%N); exec sleep 120'"
            )
            lines.append("    ready: ready")
            if level:
                deps = ", ".join(f"l{level - 1}p{j}" for j in range(WIDTH))
                lines.append(f"    depends_on: [{deps}]")
    return "\n".join(lines) + "\n"


def big_config(n=1000):
    lines = ["processes:"]
    for i in range(n):
        lines.append(f"  p{i}:")
        lines.append(f"    cmd: ./server --port {3000 + i}")
        lines.append("    env: {MODE: dev, WORKERS: 2}")
        lines.append("    ready: {log: listening}")
        if i:
            lines.append(f"    depends_on: [p{i - 1}]")
    return "\n".join(lines) + "\n"


def one_up(ap, cfg_dir, n):
    root, env = benchlib.sandbox(f"upb{n}-")
    try:
        t0 = time.time()
        out = subprocess.run(
            [ap, "up", "--config", os.path.join(cfg_dir, "agent-procs.yaml"),
             "--session", f"b{n}"],
            env=env, cwd=cfg_dir, capture_output=True, text=True, timeout=120,
        )
        t1 = time.time()
        if out.returncode != 0:
            raise SystemExit(f"up failed: {out.stderr}")
        logs = os.path.join(root, "state", "agent-procs", "sessions", f"b{n}", "logs")
        last = 0.0
        for f in os.listdir(logs):
            if f.endswith(".stdout"):
                with open(os.path.join(logs, f)) as fh:
                    for line in fh:
                        if line.startswith("ready "):
                            last = max(last, float(line.split()[1]))
        return (t1 - last) * 1000, (t1 - t0) * 1000
    finally:
        subprocess.run([ap, "down", "--session", f"b{n}"], env=env,
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def config_check(ap, path, runs=20):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([ap, "config", "check", "--config", path],
                             capture_output=True, timeout=30)
        times.append((time.perf_counter() - t0) * 1000)
        if out.returncode != 0:
            return None  # agent-procs 0.6 has no `config check`
    return statistics.median(times)


def main():
    aps = sys.argv[1:]
    if not aps:
        raise SystemExit(__doc__)
    cfg_dir = tempfile.mkdtemp(prefix="upcfg-", dir="/tmp")
    try:
        with open(os.path.join(cfg_dir, "agent-procs.yaml"), "w") as fh:
            fh.write(graph_config())
        big = os.path.join(cfg_dir, "big.yaml")
        with open(big, "w") as fh:
            fh.write(big_config())
        after, total = {ap: [] for ap in aps}, {ap: [] for ap in aps}
        n = 0
        for _ in range(RUNS):
            for ap in aps:
                n += 1
                a, t = one_up(ap, cfg_dir, n)
                after[ap].append(a)
                total[ap].append(t)
        print(f"up of {LEVELS * WIDTH} processes ({LEVELS} levels, log readiness), "
              f"median of {RUNS}:")
        for ap in aps:
            print(f"  {ap}: {statistics.median(after[ap]):.1f} ms after the last "
                  f"ready line; whole up {statistics.median(total[ap]):.0f} ms")
        print("config check of 1,000 processes (whole program), median of 20:")
        for ap in aps:
            ms = config_check(ap, big)
            print(f"  {ap}: " + ("not supported" if ms is None else f"{ms:.1f} ms"))
    finally:
        shutil.rmtree(cfg_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
