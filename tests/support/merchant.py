"""A merchant's signed HTTP client and a notification receiver, as a real integrator would have."""

from __future__ import annotations

import http.server
import json
import secrets
import threading
import time

import httpx

from piaohao.kernel.signing import sign
from tests.support import patient


class MerchantClient:
    def __init__(self, base_url: str, app_id: str, app_secret: str, merchant_id: str = ""):
        self.base_url, self.app_id, self.secret, self.merchant_id = base_url, app_id, app_secret, merchant_id
        self.http = patient.client(base_url=base_url)

    def headers(self, method: str, path: str, body: bytes, *, ts: str | None = None, nonce: str | None = None,
                secret: str | None = None) -> dict:
        ts = ts or str(int(time.time()))
        nonce = nonce or secrets.token_hex(12)
        return {"X-App-Id": self.app_id, "X-Timestamp": ts, "X-Nonce": nonce,
                "X-Signature": sign(secret or self.secret, method, path, ts, nonce, body),
                "Content-Type": "application/json"}

    def call(self, method: str, path: str, payload=None, **sign_opts) -> httpx.Response:
        body = b"" if payload is None else json.dumps(payload).encode()
        return self.http.request(method, path, content=body or None, headers=self.headers(method, path, body,
                                                                                          **sign_opts))

    def raw(self, method: str, path: str, body: bytes, headers: dict) -> httpx.Response:
        return self.http.request(method, path, content=body or None, headers=headers)


class Receiver(http.server.ThreadingHTTPServer):
    """A merchant's notify_url. `fail_times` answers 500 that many times first; `always_fail` forever."""

    daemon_threads = True

    def __init__(self, fail_times: int = 0, always_fail: bool = False):
        self.deliveries: list[dict] = []
        self.fail_times, self.always_fail = fail_times, always_fail
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.deliveries.append({"path": self.path, "body": body,
                                             "headers": {k.lower(): v for k, v in self.headers.items()}})
                    failing = outer.always_fail or outer.fail_times > 0
                    if outer.fail_times > 0:
                        outer.fail_times -= 1
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/notify"

    def events(self, type_: str | None = None) -> list[dict]:
        with self.lock:
            found = [json.loads(d["body"]) for d in self.deliveries]
        return [e for e in found if type_ is None or e.get("type") == type_]

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def wait_until(fn, timeout_s: float = 30.0, interval_s: float = 0.05):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval_s)
    return fn()
