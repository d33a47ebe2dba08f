#!/usr/bin/env python3
"""1,000 managed processes (issue 8: status <= 10 ms, daemon RSS <= 8 MiB).

Starts 1,000 idle `sleep` processes under one daemon over one control
connection, then times `status` and `status --json` through the CLI (median of
50) and reads the daemon's RSS, threads and descriptors; `stop-all` timed at the
end. Usage: load_1000.py AP [N]. Standard library only; everything is stopped.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

import benchlib


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    ap = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    root, env = benchlib.sandbox("load-")
    try:
        subprocess.run([ap, "run", "sleep 3600", "--name", "s0"], env=env, check=True,
                       capture_output=True, timeout=30)
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(os.path.join(root, "run", "default.sock"))
        f = sock.makefile("rwb")
        t0 = time.perf_counter()
        for i in range(1, n):
            req = {"type": "Run", "command": "sleep 3600", "name": f"s{i}", "cwd": root}
            f.write((json.dumps(req) + "\n").encode())
            f.flush()
            reply = json.loads(f.readline())
            if reply.get("type") != "RunOk":
                raise SystemExit(f"run {i}: {reply}")
        started = time.perf_counter() - t0
        pid = int(open(os.path.join(root, "run", "default.pid")).read())
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        rss = benchlib.status_kib(pid, "VmRSS")
        threads = benchlib.status_kib(pid, "Threads")
        times = {}
        for args in (["status"], ["status", "--json"]):
            samples = []
            for _ in range(50):
                t = time.perf_counter()
                subprocess.run([ap, *args], env=env, check=True, capture_output=True, timeout=30)
                samples.append((time.perf_counter() - t) * 1000)
            times[" ".join(args)] = statistics.median(samples)
        t = time.perf_counter()
        subprocess.run([ap, "stop-all"], env=env, check=True, capture_output=True, timeout=120)
        stop_all = time.perf_counter() - t
        print(f"{n} managed processes (started in {started:.2f} s over one connection)")
        print(f"daemon: RSS {rss / 1024:.1f} MiB, {threads} thread(s), {fds} descriptors")
        for k, v in times.items():
            print(f"{k}: {v:.2f} ms (median of 50, whole CLI call)")
        print(f"stop-all: {stop_all * 1000:.0f} ms")
    finally:
        subprocess.run([ap, "down"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
