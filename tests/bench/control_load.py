#!/usr/bin/env python3
"""Control-socket load (issue 8): 10,000 restarts with no zombies and no descriptor
growth; then 1,000 concurrent control connections, each asking `Status`, while 100
`logs --follow` clients are attached to a chatty process: every call answered.

Usage: control_load.py AP. Standard library only; everything is stopped.
"""

import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import time

import benchlib


def zombies_of(pid):
    n = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if rest[0] == "Z" and int(rest[1]) == pid:
            n += 1
    return n


def ask(f, req):
    f.write((json.dumps(req) + "\n").encode())
    f.flush()
    return json.loads(f.readline())


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    ap = sys.argv[1]
    root, env = benchlib.sandbox("ctl-")
    sock_path = os.path.join(root, "run", "default.sock")
    try:
        subprocess.run([ap, "run", "sleep 3600", "--name", "churn"], env=env, check=True,
                       capture_output=True, timeout=30)
        pid = int(open(os.path.join(root, "run", "default.pid")).read())
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock_path)
        f = s.makefile("rwb")
        ask(f, {"type": "Status"})
        fds_before = len(os.listdir(f"/proc/{pid}/fd"))
        t0 = time.perf_counter()
        for i in range(10000):
            reply = ask(f, {"type": "Restart", "target": "churn"})
            if reply.get("type") != "RunOk":
                raise SystemExit(f"restart {i}: {reply}")
        restarts = time.perf_counter() - t0
        ask(f, {"type": "Status"})
        fds_after = len(os.listdir(f"/proc/{pid}/fd"))
        zombies = zombies_of(pid)
        print(f"10,000 restarts over one connection: {restarts:.1f} s "
              f"({restarts / 10:.2f} ms each); descriptors {fds_before} -> {fds_after}; "
              f"zombies {zombies}")

        subprocess.run([ap, "run", "sh -c 'while :; do echo tick; sleep 0.01; done'",
                        "--name", "chatty"], env=env, check=True, capture_output=True, timeout=30)
        followers = []
        for _ in range(100):
            c = socket.socket(socket.AF_UNIX)
            c.connect(sock_path)
            c.sendall((json.dumps({"type": "Logs", "target": "chatty", "tail": 0,
                                   "follow": True, "stderr": False, "all": False,
                                   "timeout_secs": 60, "chunked": True}) + "\n").encode())
            c.setblocking(False)
            followers.append(c)
        sel = selectors.DefaultSelector()
        conns = []
        t0 = time.perf_counter()
        for i in range(1000):
            c = socket.socket(socket.AF_UNIX)
            c.connect(sock_path)
            c.sendall(b'{"type":"Status"}\n')
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ, [c, b""])
            conns.append(c)
        answered, errors = 0, 0
        deadline = time.time() + 60
        pending = len(conns)
        while pending and time.time() < deadline:
            for key, _ in sel.select(timeout=1):
                c, buf = key.data
                try:
                    chunk = c.recv(1 << 20)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    errors += 1
                    sel.unregister(c)
                    pending -= 1
                    continue
                key.data[1] = buf + chunk
                if b"\n" in key.data[1]:
                    line = key.data[1].split(b"\n", 1)[0]
                    if json.loads(line).get("type") == "Status":
                        answered += 1
                    else:
                        errors += 1
                    sel.unregister(c)
                    pending -= 1
            # Keep the followers drained, as real clients would.
            for c in followers:
                try:
                    while c.recv(1 << 20):
                        pass
                except (BlockingIOError, OSError):
                    pass
        took = time.perf_counter() - t0
        print(f"1,000 concurrent Status connections with 100 followers attached: "
              f"{answered} answered, {errors} dropped or wrong, {pending} unanswered, "
              f"in {took * 1000:.0f} ms")
        for c in conns + followers:
            c.close()
    finally:
        subprocess.run([ap, "down"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
