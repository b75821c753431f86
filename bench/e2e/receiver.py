"""A merchant's notify_url for the benchmark: acknowledges everything, counts trade.succeeded events.
Run as its own process so it does not compete with the load generator for the GIL."""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

seen: set[str] = set()
lock = threading.Lock()
last_at = [0.0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        event = json.loads(body)
        if event.get("type") == "trade.succeeded":
            with lock:
                seen.add(event["data"]["trade_no"])
                last_at[0] = time.time()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        with lock:
            out = json.dumps({"count": len(seen), "last_at": last_at[0]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()
