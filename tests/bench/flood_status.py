#!/usr/bin/env python3
"""`status` latency while a child writes as fast as it can (issue 8: <= 50 ms).

Starts `yes` with 100-byte lines under a fresh daemon (it writes GB/s into its
pipe), then times `Status` round trips on a raw control connection (300, 10 ms
apart) and whole `agent-procs status` CLI calls (50), and how fast the daemon
drained the flood meanwhile (rchar of /proc/PID/io). Exits 1 when the p99 of
either is over the target. Usage: flood_status.py AP [SECONDS_OF_WARMUP].
Standard library only; everything is stopped at the end.
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

TARGET_MS = 50.0


def rchar(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return 0


def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    ap = sys.argv[1]
    warmup = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    root, env = benchlib.sandbox("flood-")
    try:
        subprocess.run([ap, "run", "yes " + "y" * 99, "--name", "flood"], env=env, check=True,
                       capture_output=True, timeout=30, cwd=root)
        pid = int(open(os.path.join(root, "run", "default.pid")).read())
        time.sleep(warmup)
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(os.path.join(root, "run", "default.sock"))
        f = sock.makefile("rwb")
        t_start, r_start = time.perf_counter(), rchar(pid)
        raw = []
        for _ in range(300):
            t = time.perf_counter()
            f.write(b'{"type":"Status"}\n')
            f.flush()
            reply = json.loads(f.readline())
            raw.append((time.perf_counter() - t) * 1000)
            if reply.get("type") != "Status":
                raise SystemExit(f"status: {reply}")
            time.sleep(0.01)
        cli = []
        for _ in range(50):
            t = time.perf_counter()
            subprocess.run([ap, "status"], env=env, check=True, capture_output=True, timeout=30)
            cli.append((time.perf_counter() - t) * 1000)
        elapsed = time.perf_counter() - t_start
        drained = rchar(pid) - r_start
        state = json.loads(subprocess.run([ap, "status", "--json"], env=env, check=True,
                                          capture_output=True, timeout=30).stdout)
        print(f"flood: 'yes' with 100-byte lines; daemon drained {drained / elapsed / 1e6:.0f} MB/s "
              f"({drained / 1e9:.1f} GB in {elapsed:.1f} s); flood is {state[0]['state']}")
        ok = True
        for what, samples in (("Status round trip (raw socket, 300)", raw),
                              ("agent-procs status (whole CLI call, 50)", cli)):
            med, p99 = statistics.median(samples), pct(samples, 99)
            print(f"{what}: median {med:.2f} ms, p99 {p99:.2f} ms, max {max(samples):.2f} ms "
                  f"(target <= {TARGET_MS:.0f} ms)")
            ok = ok and p99 <= TARGET_MS
        if not ok:
            raise SystemExit("FAIL: status slower than the target under a flood")
    finally:
        subprocess.run([ap, "down"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
