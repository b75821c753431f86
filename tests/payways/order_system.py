"""A merchant's order system answering pull mode's PayInfo calls (a real loopback HTTP server).

It checks our signed request, then answers what `orders[out_trade_no]` says: a trade body (signed),
or a behaviour: "404", "500", "hang" (until `release` is set), "unsigned", "forged" (signed with
another secret), "tampered" (body changed after signing)."""

from __future__ import annotations

import http.server
import json
import secrets
import threading
import time
from urllib.parse import urlsplit

from piaohao.kernel import signing


class OrderSystem(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app_id: str, app_secret: str):
        self.app_id, self.secret = app_id, app_secret
        self.orders: dict[str, object] = {}
        self.calls: list[str] = []
        self.bad_requests = 0
        self.release = threading.Event()
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = signing.verify(outer.secret, self.headers.get("X-Signature", ""), "POST", self.path,
                                    self.headers.get("X-Timestamp", ""), self.headers.get("X-Nonce", ""), body)
                if not ok or self.headers.get("X-App-Id") != outer.app_id:
                    with outer.lock:
                        outer.bad_requests += 1
                    return self._answer(401, b"{}", sign=False)
                out_trade_no = json.loads(body)["out_trade_no"]
                with outer.lock:
                    outer.calls.append(out_trade_no)
                    what = outer.orders.get(out_trade_no, "404")
                if what == "hang":
                    outer.release.wait(30)
                    return self._answer(503, b"{}", sign=False)
                if what in ("404", "500"):
                    return self._answer(int(what), b"{}", sign=False)
                if isinstance(what, tuple):
                    mode, order = what
                else:
                    mode, order = "ok", what
                payload = json.dumps(order).encode()
                self._answer(200, payload, sign=mode != "unsigned", secret="forged-secret" if mode == "forged" else
                             outer.secret, tamper=mode == "tampered")

            def _answer(self, status, payload, *, sign, secret=None, tamper=False):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if sign:
                    ts, nonce = str(int(time.time())), secrets.token_hex(12)
                    self.send_header("X-Timestamp", ts)
                    self.send_header("X-Nonce", nonce)
                    self.send_header("X-Signature", signing.sign(secret, "RESPONSE", urlsplit(self.path).path,
                                                                 ts, nonce, payload))
                if tamper:
                    payload = payload.replace(b'"amount": ', b'"amount": 1')
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/payinfo"

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()
