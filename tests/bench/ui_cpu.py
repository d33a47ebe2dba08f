#!/usr/bin/env python3
"""Terminal UI cost (issue 9): `ui` in a 120x40 tmux pane over 200 processes, one
of them writing 10,000 lines/s. Reports the UI's CPU (utime+stime from
/proc/PID/stat over 10 s, as a share of one core) with the noisy process selected
(live view redrawn from the log files every frame), with a quiet one selected
(output only counted) and with a filter on the noisy one, and the noisy process's actual rate.

Usage: ui_cpu.py AP. Needs tmux. Standard library only; everything is stopped.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

NOISY = r"""
import sys, time
n = 0
t = time.time()
while True:
    out = []
    for _ in range(100):
        n += 1
        out.append("line %d: GET /api/items?page=%d 200 in 3ms user=alice\n" % (n, n % 50))
    sys.stdout.write("".join(out))
    sys.stdout.flush()
    t += 0.01
    d = t - time.time()
    if d > 0:
        time.sleep(d)
"""

SECONDS = 10


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])  # utime + stime


def lines_in(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def main():
    ap = os.path.abspath(sys.argv[1])
    if not shutil.which("tmux"):
        print("skipped: tmux not installed")
        return
    root = tempfile.mkdtemp(prefix="apui-", dir="/tmp")
    env = dict(os.environ, AGENT_PROCS_RUNTIME_DIR=f"{root}/run", XDG_STATE_HOME=f"{root}/state")
    sock = f"apui-bench-{os.getpid()}"
    hz = os.sysconf("SC_CLK_TCK")
    try:
        subprocess.run([ap, "run", "--name", "noisy", "--", "python3", "-c", NOISY], env=env, check=True, stdout=subprocess.DEVNULL)
        for i in range(199):
            subprocess.run([ap, "run", "--name", f"svc{i:03}", "exec sleep 600"], env=env, check=True, stdout=subprocess.DEVNULL)
        pid_file = f"{root}/ui.pid"
        inner = f"echo $$ > {pid_file}; exec {ap} ui"
        cmd = f"env AGENT_PROCS_RUNTIME_DIR={root}/run XDG_STATE_HOME={root}/state sh -c '{inner}'"
        subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "40", cmd], check=True)
        deadline = time.time() + 10
        while not os.path.exists(pid_file) or not open(pid_file).read().strip():
            if time.time() > deadline:
                raise SystemExit("the UI did not start")
            time.sleep(0.05)
        pid = int(open(pid_file).read())
        log = f"{root}/state/agent-procs/sessions/default/logs/noisy.stdout"
        phases = (
            ("noisy process selected", []),
            ("quiet process selected", ["j"]),
            ("noisy process filtered", ["k", "/", "-l", "page=7 ", "Enter"]),
        )
        for label, keys in phases:
            if "-l" in keys:  # a literal typed text between the other keys
                at = keys.index("-l")
                for part in (keys[:at], keys[at : at + 2], keys[at + 2 :]):
                    subprocess.run(["tmux", "-L", sock, "send-keys", "-t", "0", *part], check=True)
            elif keys:
                subprocess.run(["tmux", "-L", sock, "send-keys", "-t", "0", *keys], check=True)
            time.sleep(1)
            t0, c0, l0 = time.time(), cpu_ticks(pid), lines_in(log)
            time.sleep(SECONDS)
            t1, c1, l1 = time.time(), cpu_ticks(pid), lines_in(log)
            share = (c1 - c0) / hz / (t1 - t0) * 100
            rate = (l1 - l0) / (t1 - t0)
            print(f"ui, 200 processes, {label}: {share:.1f}% of a core ({rate:,.0f} lines/s written)")
            screen = subprocess.run(["tmux", "-L", sock, "capture-pane", "-p", "-t", "0"], capture_output=True, text=True).stdout.splitlines()
            # The header and the newest output line, to show the view was live.
            print("  " + (screen[0].strip() if screen else "(no screen)"))
            print("  " + (screen[-2].split("\u2502", 1)[-1].strip() if len(screen) > 1 else ""))
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], stderr=subprocess.DEVNULL)
        subprocess.run([ap, "down"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
