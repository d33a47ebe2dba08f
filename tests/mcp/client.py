"""Drive `agent-procs mcp` with the official MCP Python SDK over stdio.

Run by tests/mcp.rs with a Python that has the `mcp` and `jsonschema` packages:
    python client.py BIN ROOT
ROOT holds the sandbox's runtime and state dirs (AGENT_PROCS_RUNTIME_DIR and
XDG_STATE_HOME are taken from the environment). Exits 0 when every check holds;
a failed check raises with what was seen.
"""

import asyncio
import os
import socket
import sys
import time
import urllib.error
import urllib.request

import jsonschema
from mcp import Client
from mcp.client.stdio import StdioServerParameters

TOOLS = {"start", "up", "stop", "restart", "down", "status", "logs", "wait"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> None:
    """A request the server logs (a 404 for a file it does not have)."""
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).close()
    except urllib.error.HTTPError as e:
        assert e.code == 404, e


class Checked:
    """Calls tools and checks each result against the tool's output schema."""

    def __init__(self, client: Client, schemas: dict):
        self.client = client
        self.schemas = schemas

    async def ok(self, name: str, args: dict, **kw) -> dict:
        result = await self.client.call_tool(name, args, **kw)
        text = result.content[0].text if result.content else ""
        assert not result.is_error, f"{name} {args} failed: {text}"
        assert text, f"{name} gave no text form"
        jsonschema.validate(result.structured_content, self.schemas[name])
        return result.structured_content

    async def error(self, name: str, args: dict) -> str:
        result = await self.client.call_tool(name, args)
        text = result.content[0].text
        assert result.is_error, f"{name} {args} should have failed: {result}"
        return text


async def main(bin_path: str, root: str) -> None:
    env = {k: os.environ[k] for k in ("AGENT_PROCS_RUNTIME_DIR", "XDG_STATE_HOME", "PATH")}
    params = StdioServerParameters(
        command=bin_path, args=["mcp", "--session", "default"], env=env, cwd=root
    )
    # The handshake era: initialize, at the newest revision it has.
    async with Client(params, read_timeout_seconds=60, mode="legacy") as client:
        assert client.protocol_version == "2025-11-25", client.protocol_version
        assert client.server_info.name == "agent-procs", client.server_info
        listed = await client.list_tools()
        assert {t.name for t in listed.tools} == TOOLS, listed
        rows = (await client.call_tool("status", {})).structured_content
        assert rows == {"processes": []}, rows

    # The SDK's default: server/discover, then 2026-07-28 envelopes on every request.
    async with Client(params, read_timeout_seconds=60) as client:
        assert client.protocol_version == "2026-07-28", client.protocol_version
        assert client.server_info.name == "agent-procs", client.server_info

        listed = await client.list_tools()
        names = {t.name for t in listed.tools}
        assert names == TOOLS, names
        schemas = {}
        for tool in listed.tools:
            jsonschema.Draft202012Validator.check_schema(tool.input_schema)
            jsonschema.Draft202012Validator.check_schema(tool.output_schema)
            assert tool.description and "Example" in tool.description, tool.name
            schemas[tool.name] = tool.output_schema
        call = Checked(client, schemas)

        port = free_port()
        command = f"python3 -u -m http.server {port} --bind 127.0.0.1"
        started = await call.ok("start", {"name": "web", "command": command, "port": port})
        assert started["name"] == "web" and started["pid"] > 0, started

        progress = []

        async def on_progress(done, total, message):
            progress.append((done, total, message))

        ready = await call.ok(
            "wait", {"name": "web", "port": port, "timeout_s": 30}, progress_callback=on_progress
        )
        assert ready["event"] == "match", ready

        # Two reads with a cursor: the second returns only what came after the first.
        get(port, "/first-request")
        first = await read_until(call, {"name": "web"}, "/first-request")
        get(port, "/second-request")
        second = await read_until(call, {"name": "web", "after": first["cursor"]}, "/second-request")
        assert "/first-request" not in second["output"], second
        assert "Serving HTTP" not in second["output"], second
        third = await call.ok("logs", {"name": "web", "after": second["cursor"]})
        assert third["lines"] == 0 and third["output"] == "", third
        assert third["cursor"] == second["cursor"], (second, third)

        rows = (await call.ok("status", {}))["processes"]
        assert [(p["name"], p["state"]) for p in rows] == [("web", "running")], rows
        full = (await call.ok("status", {"name": "web"}))["processes"][0]
        assert f"127.0.0.1:{port}" in full["listening"], full

        # Failures an agent can act on.
        text = await call.error("wait", {"name": "web", "until": "never printed", "timeout_s": 0.5})
        assert text.startswith("timeout: web did not"), text
        text = await call.error("stop", {"name": "nope"})
        assert "nope" in text, text
        text = await call.error("wait", {"name": "web", "timeout_s": 5})
        assert "exactly one of" in text, text

        restarted = await call.ok("restart", {"name": "web"})
        assert restarted["pid"] != started["pid"], (started, restarted)
        await call.ok("wait", {"name": "web", "port": port, "timeout_s": 30})

        # A slow wait reports progress while it runs.
        progress.clear()
        result = await client.call_tool(
            "wait",
            {"name": "web", "until": "never printed", "timeout_s": 2.5},
            progress_callback=on_progress,
        )
        assert result.is_error, result
        assert len(progress) >= 1, progress
        assert all(total == 3 for _, total, _ in progress), progress
        assert "waiting for web" in progress[0][2], progress

        stopped = await call.ok("stop", {"name": "web"})
        assert "web" in stopped["message"], stopped
        rows = (await call.ok("status", {}))["processes"]
        assert rows[0]["state"] != "running", rows

        down = await call.ok("down", {})
        assert down["stopped"] is True, down
        rows = (await call.ok("status", {}))["processes"]
        assert rows == [], rows


async def read_until(call: Checked, args: dict, text: str) -> dict:
    """The logs call whose output has `text`: a request line lands in the log
    a moment after the response, so retry briefly."""
    deadline = time.monotonic() + 20
    while True:
        got = await call.ok("logs", args)
        if text in got["output"]:
            return got
        assert time.monotonic() < deadline, f"{text} never appeared in the logs: {got}"
        await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
