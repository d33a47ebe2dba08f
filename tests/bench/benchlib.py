"""What every bench script here needs: a private runtime and state dir for the
daemon under test, and readings of a process from /proc."""
import os
import tempfile


def sandbox(prefix):
    """A fresh directory under /tmp and the environment that points agent-procs
    at its run/ and state/ subdirectories."""
    root = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    env = dict(os.environ, AGENT_PROCS_RUNTIME_DIR=os.path.join(root, "run"),
               XDG_STATE_HOME=os.path.join(root, "state"))
    return root, env


def status_kib(pid, key="VmRSS"):
    """A kB field of /proc/PID/status (VmRSS by default), 0 if absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0
