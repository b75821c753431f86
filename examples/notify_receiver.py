"""A merchant's notification receiver: verifies each notification the platform POSTs and prints it.

    python examples/notify_receiver.py --creds creds.json [--port 8765]

Listens on http://127.0.0.1:PORT/notify. A verified event is printed and acknowledged (200); a
repeated event id is acknowledged again but not acted on twice; anything not provably from the
platform gets 401 and is retried by nobody but an attacker. Only the standard library and
`piaohao.client` (a file you can copy) are used.
"""

from __future__ import annotations

import argparse
import http.server
import json
import sys
import threading

from piaohao.client import InvalidNotification, verify_notification


def make_server(app_id: str, app_secret: str, port: int = 0, *, out=sys.stdout) -> http.server.ThreadingHTTPServer:
    """A receiver on 127.0.0.1:port (0: any free port). Verified events land in `server.events`."""
    seen: set[str] = set()
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                event = verify_notification(app_secret, dict(self.headers.items()), body, self.path, app_id=app_id)
            except InvalidNotification as e:
                print(f"REFUSED notification: {e}", file=out, flush=True)
                self._answer(401)
                return
            with lock:
                first = event["id"] not in seen
                seen.add(event["id"])
                if first:
                    server.events.append(event)
            if first:  # act on an event once; a retry keeps its id
                data = event.get("data", {})
                subject = data.get("trade_no") or data.get("refund_no") or ""
                print(f"verified {event['type']} {event['id']} {subject} status={data.get('status')} "
                      f"amount={data.get('amount')}", file=out, flush=True)
            self._answer(200)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.events = []  # type: ignore[attr-defined]
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creds", default="creds.json", help="output of `piaohao merchants create --json`")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    with open(args.creds) as f:
        creds = json.load(f)
    server = make_server(creds["app_id"], creds["app_secret"], args.port)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}/notify (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
