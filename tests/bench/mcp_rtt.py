"""`agent-procs mcp`: tools/call status round trip, the server's RSS, and its
wake-ups while idle. Raw JSON-RPC lines over a pipe, no SDK, so the figure is
the server's and the daemon's, not a client library's.

    python3 tests/bench/mcp_rtt.py [BIN] [CALLS]

BIN defaults to target/release/agent-procs; CALLS (default 2000) status calls
are timed after 200 warm-up calls, with one process running in the session.
"""
import json
import os
import statistics
import subprocess
import sys
import time

from benchlib import sandbox, status_kib


def ctxt_switches(pid):
    """Voluntary plus involuntary context switches of a process so far."""
    total = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                total += int(line.split()[1])
    return total


def rollup_kib(pid):
    """Pss and private (USS) kB from /proc/PID/smaps_rollup."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1])
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return fields.get("Pss", 0), uss


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "../../target/release/agent-procs")
    binary = os.path.abspath(binary)
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    root, env = sandbox("ap-mcp-bench-")
    server = subprocess.Popen([binary, "mcp", "--session", "bench"], cwd=root, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    out = server.stdout

    def ask(message):
        server.stdin.write((json.dumps(message) + "\n").encode())
        while True:
            reply = json.loads(out.readline())
            if reply.get("id") == message["id"]:
                return reply

    try:
        ask({"jsonrpc": "2.0", "id": 0, "method": "initialize",
             "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                        "clientInfo": {"name": "bench", "version": "1"}}})
        server.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        started = ask({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "start", "arguments": {"name": "idle", "command": "sleep 600"}}})
        assert not started["result"]["isError"], started
        status = {"jsonrpc": "2.0", "method": "tools/call",
                  "params": {"name": "status", "arguments": {}}}
        for i in range(200):
            ask(dict(status, id=10 + i))
        times = []
        for i in range(calls):
            t = time.perf_counter()
            ask(dict(status, id=1000 + i))
            times.append(time.perf_counter() - t)
        times.sort()
        rss = status_kib(server.pid)
        pss, uss = rollup_kib(server.pid)
        time.sleep(1)  # let it finish the last reply and block in poll
        before = ctxt_switches(server.pid)
        time.sleep(10)
        idle = ctxt_switches(server.pid) - before
        print(json.dumps({
            "calls": calls,
            "status_rtt_p50_ms": round(statistics.median(times) * 1000, 3),
            "status_rtt_p90_ms": round(times[int(calls * 0.9)] * 1000, 3),
            "status_rtt_p99_ms": round(times[int(calls * 0.99)] * 1000, 3),
            "server_rss_kib": rss,
            "server_rss_anon_kib": status_kib(server.pid, "RssAnon"),
            "server_pss_kib": pss,
            "server_uss_kib": uss,
            "idle_wakeups_10s": idle,
        }))
        ask({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "down", "arguments": {}}})
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        subprocess.run(["rm", "-rf", root])


if __name__ == "__main__":
    main()
