"""A test backend for the reverse-proxy tests: `python3 backend.py NAME [DELAY]`.

Standard library only. Listens on 127.0.0.1:$PORT after DELAY seconds and prints
`serving NAME on PORT`. Every answer names the backend, so a test can tell which
process a request reached. Routes:

  /echo         any method: the request as received, as JSON (see `echo`)
  /status/N     status N; 204 and 304 without a body (304 with Content-Length: 5)
  /hop          a response carrying hop-by-hop headers the proxy must remove
  /chunked      a chunked body: chunk sizes from ?sizes=1,2,3 (bytes of 'a'..)
  /close        a body delimited by closing the connection (no length, not chunked);
                its tail and the FIN go in one segment (see `end_with`)
  /sse          one event, then waits for the file `sse-go` in the cwd, then another
  /ws           WebSocket handshake, then echoes every frame; a close frame is
                echoed with the FIN in one segment; end of file closes too
  /page         an HTML page whose script echoes a message over /ws (the browser test)
  /hold         answers once /ws has echoed a text frame (at most 10 s): the page
                loads it, so its load event, and Chromium's --dump-dom, wait for the echo
  /twice        a buggy handler: its answer, then 50 ms later a second response
                nobody asked for (X-Stale: twice), then a line in the file `twice-log`
  /nobody       answers without reading the request body, so a body that is a
                request is then served as one (the CL.0 class of dev servers)
  /stale        after 300 ms, an answer marked X-Stale: smuggled
  /slow-continue  like /echo, but its 100 Continue comes only after 1.5 s
  /pause        like /echo, answered only after ?ms=N milliseconds
  /bytes        ?n=N bytes with a Content-Length, byte i being i % 251
"""

import base64
import hashlib
import http.server
import json
import os
import socket
import sys
import threading
import time

NAME = sys.argv[1]
DELAY = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
PORT = int(os.environ["PORT"])
ECHOED = threading.Event()  # set once /ws has echoed a text frame
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

PAGE = b"""<!doctype html>
<html><head><title>waiting</title></head>
<body><p id="out">waiting</p>
<script>
const ws = new WebSocket("ws://" + location.host + "/ws");
ws.onopen = () => ws.send("hello through the proxy");
ws.onmessage = (e) => {
  document.title = "echo: " + e.data;
  document.getElementById("out").textContent = "echo: " + e.data;
  ws.close();
};
ws.onerror = () => { document.getElementById("out").textContent = "websocket error"; };
</script>
<script src="/hold"></script>
</body></html>
"""


def read_exact(f, n):
    data = b""
    while len(data) < n:
        more = f.read(n - len(data))
        if not more:
            raise EOFError("peer closed mid-frame")
        data += more
    return data


def read_frame(f):
    """One WebSocket frame: (opcode, payload), unmasked."""
    b0, b1 = read_exact(f, 2)
    opcode = b0 & 0x0F
    length = b1 & 0x7F
    if length == 126:
        length = int.from_bytes(read_exact(f, 2), "big")
    elif length == 127:
        length = int.from_bytes(read_exact(f, 8), "big")
    mask = read_exact(f, 4) if b1 & 0x80 else None
    payload = read_exact(f, length)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return opcode, payload


def frame(opcode, payload):
    """A server frame: FIN set, not masked."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
    return head + payload


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_expect_100(self):
        if self.path.startswith("/slow-continue"):
            time.sleep(1.5)
        return super().handle_expect_100()

    def body(self):
        """The request body, by Content-Length or chunked (decoded)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += read_exact(self.rfile, size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0") or "0")
        return read_exact(self.rfile, n) if n else b""

    def reply(self, status, body, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", NAME)
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def end_with(self, data):
        """Send the last bytes and the FIN in one segment (TCP_CORK holds the tail
        until shutdown), then close: the proxy gets data and end of file in one
        readiness event, and must not take its short read for "drained"."""
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        self.wfile.write(data)
        self.connection.shutdown(socket.SHUT_WR)
        self.close_connection = True

    def echo(self):
        body = self.body()
        info = {
            "name": NAME,
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_len": len(body),
            "body_head": body[:64].decode("latin-1"),
            "body_tail": body[-64:].decode("latin-1"),
            "peer_port": self.client_address[1],
            "env": {"PORT": os.environ.get("PORT"), "HOST": os.environ.get("HOST")},
        }
        self.reply(200, json.dumps(info).encode())

    def handle_one(self):
        path = self.path.split("?")[0]
        query = self.path.split("?")[1] if "?" in self.path else ""
        if path.startswith("/status/"):
            code = int(path[len("/status/"):])
            self.body()
            self.send_response(code)
            self.send_header("X-Backend", NAME)
            if code == 304:
                self.send_header("ETag", '"v1"')
                self.send_header("Content-Length", "5")
            self.end_headers()
        elif path == "/hop":
            self.body()
            self.reply(200, b"hop", "text/plain", [
                ("Connection", "X-Internal"),
                ("X-Internal", "secret"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"),
                ("X-Visible", "yes"),
            ])
        elif path == "/chunked":
            self.body()
            sizes = [int(s) for s in query.split("=", 1)[1].split(",")] if query else [5]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Backend", NAME)
            self.end_headers()
            for i, n in enumerate(sizes):
                self.wfile.write(b"%x\r\n" % n + bytes([97 + i % 26]) * n + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/close":
            self.body()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.end_with(b"z" * 100_000)
        elif path == "/sse":
            self.body()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            event = b"data: one\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            deadline = time.monotonic() + 20
            while not os.path.exists("sse-go") and time.monotonic() < deadline:
                time.sleep(0.01)
            event = b"data: two\n\n"
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(event), event))
        elif path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            key = self.headers.get("Sec-WebSocket-Key", "")
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            try:
                while True:
                    opcode, payload = read_frame(self.rfile)
                    if opcode == 8:
                        self.end_with(frame(opcode, payload))
                        return
                    self.wfile.write(frame(opcode, payload))
                    self.wfile.flush()
                    if opcode == 1:
                        ECHOED.set()
            except (EOFError, ConnectionError):
                pass
            self.close_connection = True
        elif path == "/hold":
            self.body()
            ECHOED.wait(10)
            self.reply(200, b"// held\n", "text/javascript")
        elif path == "/twice":
            self.body()
            self.reply(200, b"first answer", "text/plain")
            self.wfile.flush()
            time.sleep(0.05)
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: 13\r\nX-Stale: twice\r\n\r\nstale answer!")
            self.wfile.flush()
            with open("twice-log", "a") as log:
                log.write(query + "\n")
        elif path == "/nobody":
            self.reply(200, b"ignored your body", "text/plain")
        elif path == "/stale":
            time.sleep(0.3)
            self.reply(200, b"stale answer!", "text/plain", [("X-Stale", "smuggled")])
        elif path == "/pause":
            time.sleep(int(query.split("=", 1)[1]) / 1000 if query else 0.1)
            self.echo()
        elif path == "/bytes":
            self.body()
            n = int(query.split("=", 1)[1]) if query else 0
            self.reply(200, bytes(i % 251 for i in range(n)), "application/octet-stream")
        elif path == "/page":
            self.body()
            self.reply(200, PAGE, "text/html; charset=utf-8")
        else:
            self.echo()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = handle_one


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True


time.sleep(DELAY)
server = Server(("127.0.0.1", PORT), Handler)
print(f"serving {NAME} on {PORT}", flush=True)
server.serve_forever()
