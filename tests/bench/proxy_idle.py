#!/usr/bin/env python3
"""Daemon memory with many idle proxy connections (issue 5: 10,000 held with
RSS <= 64 MiB), measured from the outside as `make bench` runs it.

Two shapes: N connections that connected and sent nothing, and M keep-alive
connections that each made one request and wait for the next (the backend,
Python's HTTP/1.0 server, closes its side). RLIMIT_NOFILE must be above N.

Usage: proxy_idle.py AP [N] [M]. Standard library only; everything it starts is
stopped with `down`, every wait bounded.
"""

import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time

import benchlib


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    ap = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    m = int(sys.argv[3]) if len(sys.argv) > 3 else 4000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < n + 100:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is below {n + 100}")
    root, env = benchlib.sandbox("pxidle-")
    os.makedirs(os.path.join(root, "www"))
    with open(os.path.join(root, "www", "x"), "w") as f:
        f.write("x" * 100)
    socks = []
    try:
        out = subprocess.run(
            [ap, "run", "python3 -m http.server --bind 127.0.0.1 $PORT", "--name", "web",
             "--proxy", "--cwd", os.path.join(root, "www")],
            env=env, capture_output=True, text=True, timeout=30)
        port = int(re.search(r"localhost:(\d+)", out.stdout + out.stderr).group(1))
        backend = int(re.search(r'"port":\s*(\d+)', subprocess.run(
            [ap, "status", "--json"], env=env, capture_output=True, text=True,
            timeout=30).stdout).group(1))
        subprocess.run([ap, "wait", "web", "--port", str(backend), "--timeout", "20"],
                       env=env, check=True, capture_output=True, timeout=30)
        pid = int(open(os.path.join(root, "run", "default.pid")).read())
        base = benchlib.status_kib(pid)
        print(f"daemon {pid}: RSS {base / 1024:.1f} MiB with the proxy on, no connections")

        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
        time.sleep(1)  # let the daemon accept the backlog
        idle = benchlib.status_kib(pid)
        print(f"{n} idle connections (no request): RSS {idle / 1024:.1f} MiB, "
              f"PSS {pss_kib(pid) / 1024:.1f} MiB, {(idle - base) * 1024 / n:.0f} B each")
        for s in socks:
            s.close()
        socks = []
        time.sleep(1)

        req = b"GET /x HTTP/1.1\r\nHost: web.localhost\r\n\r\n"
        for i in range(m):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(req)
            got = b""
            while b"x" * 100 not in got:
                chunk = s.recv(65536)
                if not chunk:
                    raise SystemExit(f"connection {i} closed early: {got[:200]!r}")
                got += chunk
            socks.append(s)
        kept = benchlib.status_kib(pid)
        print(f"{m} keep-alive connections after one request each: RSS {kept / 1024:.1f} MiB, PSS {pss_kib(pid) / 1024:.1f} MiB, "
              f"{(kept - base) * 1024 / m:.0f} B each")
    finally:
        for s in socks:
            s.close()
        subprocess.run([ap, "down"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
