"""What a drill runs on: its own platform instance (scratch SQLite unless a database is given),
served on a loopback port with its workers and in-process sandbox, a signed merchant client,
and the helpers every scenario needs (pay, refund, settle, check the books and the findings)."""

from __future__ import annotations

import http.server
import json
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import select, text

from piaohao import ledger
from piaohao.bootstrap import Assembly, assemble
from piaohao.db.schema import alerts
from piaohao.kernel.settings import Settings
from piaohao.kernel.signing import sign
from piaohao.recon import findings as queue
from piaohao.recon.run import realtime_pass, run_day
from piaohao.services.merchants import create_merchant
from piaohao.workers.runner import Loop

__all__ = ["Drill", "drill_platform"]

WAIT_S_MAX = 20.0
DRILL_SECRET_KEY = "drill-secret-key-0123456789abcdefghijkl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(fn: Callable[[], object], timeout_s: float = WAIT_S_MAX, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval_s)
    return None


@dataclass
class Drill:
    """A running platform for drills, and the traffic a scenario makes on it."""
    assembly: Assembly
    server: uvicorn.Server
    thread: threading.Thread
    url: str
    app_id: str
    secret: str
    folder: str | None
    seq: int = 0
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30, trust_env=False))

    @property
    def p(self):
        return self.assembly.platform

    def call(self, method: str, path: str, payload=None) -> httpx.Response:
        body = b"" if payload is None else json.dumps(payload).encode()
        ts, nonce = str(int(time.time())), secrets.token_hex(12)
        headers = {"X-App-Id": self.app_id, "X-Timestamp": ts, "X-Nonce": nonce, "Content-Type": "application/json",
                   "X-Signature": sign(self.secret, method, path, ts, nonce, body)}
        return self.http.request(method, self.url + path, content=body or None, headers=headers)

    def key(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}{self.seq}-{secrets.token_hex(3)}"

    def trade(self, amount: int, **extra) -> dict:
        r = self.call("POST", "/v1/trades", {"out_trade_no": self.key("D"), "amount": amount, "currency": "CNY",
                                             "subject": "drill", "order_timeout_s": 900, **extra})
        assert r.status_code == 201, r.text
        return r.json()

    def start_pay(self, trade: dict, tries: int = 5) -> str:
        for _ in range(tries):
            r = self.http.post(trade["pay_url"] + "/pay", json={"method": "sandbox"})
            if r.status_code == 200:
                return r.json()["redirect_url"]
            time.sleep(0.3)
        raise AssertionError(f"could not start paying: {r.status_code} {r.text}")

    def status(self, trade: dict) -> str:
        return self.call("GET", f"/v1/trades/{trade['trade_no']}").json()["status"]

    def pay(self, amount: int, *, notify: str | None = None, bill: str | None = None, wait: bool = True) -> dict:
        trade = self.trade(amount)
        body = {k: v for k, v in (("notify", notify), ("bill", bill)) if v}
        r = self.http.post(self.start_pay(trade) + "/succeed", json=body or None)
        assert r.status_code < 300, r.text
        if wait and not wait_until(lambda: self.status(trade) == "succeeded"):
            raise AssertionError(f"trade {trade['trade_no']} was not paid")
        return trade

    def refund(self, trade: dict, amount: int) -> dict:
        r = self.call("POST", "/v1/refunds", {"trade_no": trade["trade_no"], "out_request_no": self.key("R"),
                                              "amount": amount})
        assert r.status_code in (200, 201), r.text
        return r.json()

    def refund_status(self, refund_no: str) -> str:
        return self.call("GET", f"/v1/refunds/{refund_no}").json()["status"]

    def fault(self, **data) -> None:
        r = self.http.post(self.url + "/sandbox/faults", json=data)
        assert r.status_code == 201, r.text

    def clear_faults(self) -> None:
        self.http.delete(self.url + "/sandbox/faults")

    def sql(self, statement: str, **params) -> int:
        return self.p.db.write(lambda conn: conn.execute(text(statement), params).rowcount)

    def scalar(self, statement: str, **params):
        with self.p.db.read() as conn:
            return conn.execute(text(statement), params).scalar()

    def kill_workers(self) -> None:
        """Stop every worker loop at once, wherever it is (each unit of work is a transaction)."""
        if self.assembly.runner is not None:
            self.assembly.runner.stop()
            self.assembly.runner = None

    def restart_workers(self) -> None:
        self.assembly.loops = [Loop(x.name, x.run_once, x.idle_s) for x in self.assembly.loops]
        self.assembly.start_workers()

    def receiver(self) -> tuple[str, list, Callable[[], None]]:
        """A merchant endpoint that acknowledges every notification: (url, deliveries, close)."""
        got: list = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the stdlib's name
                got.append(self.rfile.read(int(self.headers.get("content-length") or 0)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"success")

            def log_message(self, *args):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{srv.server_address[1]}/notify", got, lambda: (srv.shutdown(), srv.server_close())

    def books_balanced(self) -> bool:
        return not ledger.check(self.p.db)

    def today(self):
        return self.p.clock.now().astimezone(self.p.settings.tz).date()

    def open_finding_ids(self) -> set[str]:
        return {f["finding_id"] for f in queue.list_findings(self.p, open_only=True)}

    def realtime(self) -> list[dict]:
        return realtime_pass(self.p).findings

    def day_run(self) -> list[dict]:
        return run_day(self.p, self.today()).findings

    def alerts_kinds(self) -> set[str]:
        with self.p.db.read() as conn:
            return {k for (k,) in conn.execute(select(alerts.c.kind).distinct())}

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.assembly.close()
        self.http.close()


def drill_platform(database_url: str | None = None, *, interval_s: float = 1.0) -> Drill:
    """A fresh platform with quick timings (grace 0: every break is a finding at once)."""
    folder = None
    if database_url is None:
        folder = tempfile.mkdtemp(prefix="piaohao-drill-")
        database_url = f"sqlite:///{Path(folder) / 'drill.db'}"
    port = _free_port()
    sandbox_db = f"sqlite:///{Path(folder or tempfile.mkdtemp(prefix='piaohao-drill-'))/'sandbox.db'}"
    settings = Settings.from_env({}).with_(
        database_url=database_url, base_url=f"http://127.0.0.1:{port}", secret_key=DRILL_SECRET_KEY,
        channel_env={"PIAOHAO_SANDBOX": "on", "PIAOHAO_SANDBOX_DATABASE_URL": sandbox_db},
        notify_retry_s=(0.2, 0.2, 0.2), notify_timeout_s=2.0, active_query_after_s=0.5,
        active_query_interval_max_s=1.0, channel_timeout_s=1.5, worker_poll_s=0.05, rate_limit_per_s=0,
        recon_interval_s=interval_s, recon_grace_s=0, log_level="WARNING",
        extra={"refund_retry_base_s": 0.3, "refund_retry_max_s": 1.0})
    assembly = assemble(settings, migrate_now=True)
    server = uvicorn.Server(uvicorn.Config(assembly.app, host="127.0.0.1", port=port, log_level="error",
                                           lifespan="on", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    if not wait_until(lambda: server.started, 15):
        raise RuntimeError("the drill platform did not start")
    assembly.start_channel_simulators()
    assembly.start_workers()
    creds = create_merchant(assembly.platform, "Drill Shop")
    return Drill(assembly, server, thread, f"http://127.0.0.1:{port}", creds.app_id, creds.app_secret, folder)
