#!/usr/bin/env python3
"""Compressed soak (`make soak`, not in CI): a day's churn in minutes, with the
daemon's memory and descriptors watched throughout.

One daemon runs, for SOAK_MINUTES (default 10):
- a crash loop (`exit 1` after 50 ms, --autorestart always, 50 ms delay),
- a chatty writer (bursts of 100 lines, ~2,000 a second) whose logs rotate at 64 KiB,
- a watched process restarted by a file the soak rewrites every 2 s,
- churn over one control connection: run, restart, stop of ten names in turn,
  status, and now and then a `logs --tail` and a `logs --follow` that is cut off.
Every 5 s it samples the daemon's RSS and descriptor count (after a Status round
trip, so no request is half done). It fails if, after the warm-up (the first
fifth, at least 30 s), RSS rises more than 1 MiB or 10 % above the warm-up's
highest sample, or the descriptor count's floor in the last quarter is above
the warm-up's ceiling. Usage: soak.py AP. Standard library only.
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


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    ap = sys.argv[1]
    minutes = float(os.environ.get("SOAK_MINUTES", "10"))
    root, env = benchlib.sandbox("soak-")
    watched = os.path.join(root, "w")
    os.mkdir(watched)

    def cli(*args, check=True, timeout=60):
        return subprocess.run([ap, *args], env=env, check=check, capture_output=True,
                              timeout=timeout, cwd=root)

    counts = dict(runs=0, restarts=0, stops=0, status=0, tails=0, follows=0, touches=0)
    try:
        cli("run", "sleep 0.05; exit 1", "--name", "crash", "--autorestart", "always",
            "--restart-delay", "50")
        cli("run", "i=0; while :; do i=$((i+1)); echo chatty line $i; "
            "[ $((i % 100)) = 0 ] && sleep 0.05; done",
            "--name", "chatty", "--log-max-size", "64KiB")
        cli("run", "sleep 3600", "--name", "watched", "--cwd", watched, "--watch", "*.txt")
        pid = int(open(os.path.join(root, "run", "default.pid")).read())
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(os.path.join(root, "run", "default.sock"))
        f = sock.makefile("rwb")

        def ask(req):
            f.write((json.dumps(req) + "\n").encode())
            f.flush()
            return json.loads(f.readline())

        start = time.monotonic()
        end = start + minutes * 60
        warm = start + max(30.0, minutes * 60 / 5)
        samples = []  # (seconds since start, rss KiB, fds)
        next_sample = start
        next_touch = start
        i = 0
        while time.monotonic() < end:
            now = time.monotonic()
            name = f"c{i % 10}"
            r = ask({"type": "Run", "command": "sleep 30", "name": name, "cwd": root})
            if r.get("type") != "RunOk":
                raise SystemExit(f"run {name}: {r}")
            counts["runs"] += 1
            r = ask({"type": "Restart", "target": name})
            if r.get("type") != "RunOk":
                raise SystemExit(f"restart {name}: {r}")
            counts["restarts"] += 1
            r = ask({"type": "Stop", "target": name})
            if r.get("type") == "Error":
                raise SystemExit(f"stop {name}: {r}")
            counts["stops"] += 1
            if ask({"type": "Status"}).get("type") != "Status":
                raise SystemExit("status failed")
            counts["status"] += 1
            if i % 50 == 0:
                cli("logs", "chatty", "--tail", "20")
                counts["tails"] += 1
            if i % 500 == 0:
                p = subprocess.Popen([ap, "logs", "chatty", "--follow"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.3)
                p.kill()
                p.wait(timeout=10)
                counts["follows"] += 1
            if now >= next_touch:
                with open(os.path.join(watched, "x.txt"), "w") as t:
                    t.write(str(i))
                counts["touches"] += 1
                next_touch = now + 2
            if now >= next_sample:
                ask({"type": "Status"})
                samples.append((now - start, benchlib.status_kib(pid), fds(pid)))
                next_sample = now + 5
            i += 1
            time.sleep(0.05)
        ask({"type": "Status"})
        samples.append((time.monotonic() - start, benchlib.status_kib(pid), fds(pid)))
        status = {p["name"]: p for p in ask({"type": "Status"}).get("processes", [])}
        elapsed = time.monotonic() - start
        log = open(os.path.join(root, "state", "agent-procs", "sessions", "default",
                                "daemon.log")).read()
        crash_restarts = log.count("crash restarted")
        watch_restarts = log.count("watched (p") - 1

        warm_s = warm - start
        warmup = [s for s in samples if s[0] <= warm_s]
        after = [s for s in samples if s[0] > warm_s]
        last_q = [s for s in samples if s[0] >= elapsed * 3 / 4]
        rss_base = max(s[1] for s in warmup)
        rss_max_after = max(s[1] for s in after) if after else rss_base
        slack = max(1024, rss_base // 10)
        fd_base = max(s[2] for s in warmup)
        fd_floor_end = min(s[2] for s in last_q) if last_q else fd_base
        print(f"soak: {elapsed / 60:.1f} min, {len(samples)} samples, "
              f"warm-up {warm_s:.0f} s")
        print("churn: " + ", ".join(f"{v} {k}" for k, v in counts.items())
              + f", crash-loop restarts {crash_restarts}, watch restarts "
              f"{watch_restarts}")
        print(f"RSS: warm-up max {rss_base / 1024:.2f} MiB, after warm-up max "
              f"{rss_max_after / 1024:.2f} MiB, end {samples[-1][1] / 1024:.2f} MiB "
              f"(slack {slack / 1024:.2f} MiB)")
        print(f"descriptors: warm-up max {fd_base}, last-quarter min {fd_floor_end}, "
              f"end {samples[-1][2]} (median {statistics.median(s[2] for s in samples)})")
        print("chatty is", status.get("chatty", {}).get("state"),
              "; watched is", status.get("watched", {}).get("state"))
        failed = []
        if rss_max_after > rss_base + slack:
            failed.append("RSS grew after the warm-up")
        if fd_floor_end > fd_base:
            failed.append("descriptors grew")
        if failed:
            raise SystemExit("FAIL: " + "; ".join(failed))
        print("PASS")
    finally:
        subprocess.run([ap, "down"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
