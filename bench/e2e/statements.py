"""SQL statements and transactions per end-to-end payment, by phase, counted in one process.

    python bench/e2e/statements.py                     # PostgreSQL at 127.0.0.1:5432, a scratch database
    python bench/e2e/statements.py --payments 5 --show # + every statement of the last payment, by transaction
    python bench/e2e/statements.py --sqlite            # the embedded default instead

The platform (`assemble`, as `piaohao serve` builds it, the sandbox mounted in-process) serves on
a loopback port; this script drives one payment at a time through real HTTP, phase by phase:

  create-trade      signed `POST /v1/trades`
  cashier /pay      `POST {pay_url}/pay {"method": "sandbox"}` (the platform calls the sandbox)
  buyer pays        `POST {redirect_url}/succeed` at the sandbox (its own database, not counted)
  channel notifies  the sandbox's notifier sends its notification: the platform verifies it,
                    applies the success (ledger, clearing, merchant event) and acknowledges
  merchant notified the outbox dispatcher's run: claim, signed POST to the receiver, record

The workers do not run on their own: the script runs the sandbox's notifier and the outbox
dispatcher itself, so every statement falls in its phase. Statements are counted with
SQLAlchemy's engine events on the platform's engine only (`before_cursor_execute`, `begin`,
`commit`, `rollback`); SQLite's own `BEGIN IMMEDIATE` is not counted as a statement. A
transaction is a "write" when it ran an INSERT, UPDATE or DELETE or took a row lock. Statements
sent on the driver's own cursor are not seen (COPY and array reads in settlement batches): none is
in a payment's path. The first
payment warms the caches (the gateway's app cache, the channel adapters); the table shows the
mean of the others. Then one idle round of every worker loop, which runs every `poll` seconds
whatever the traffic. No timing: counts only, so the figures do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import uvicorn
from sqlalchemy import create_engine, event, text

from piaohao.bootstrap import assemble
from piaohao.kernel import logs
from piaohao.kernel.settings import Settings
from piaohao.kernel.signing import sign
from piaohao.services.merchants import create_merchant

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BENCH_SECRET_KEY = "bench-e2e-secret-key-0123456789abcdef"  # scratch data only
PHASES = ("create-trade", "cashier /pay", "buyer pays", "channel notifies", "merchant notified")
WRITE_VERB = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
HTTP_TIMEOUT_S = 60.0
QUIET_S = 0.2  # after a phase's last answer, for anything the server still runs after answering


@dataclass
class Tx:
    statements: list[str] = field(default_factory=list)

    @property
    def writes(self) -> bool:
        return any(WRITE_VERB.match(s) or "FOR UPDATE" in s.upper() for s in self.statements)


class StatementCounter:
    """Every statement and transaction on one engine, grouped into the phase that is open."""

    def __init__(self, engine):
        self._lock = threading.Lock()
        self._open: dict[int, Tx] = {}
        self.phase = "setup"
        self.done: dict[str, list[Tx]] = defaultdict(list)
        self.outside: dict[str, int] = defaultdict(int)  # statements run with no transaction open
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._end)
        event.listen(engine, "rollback", self._end)

    def _begin(self, conn) -> None:
        with self._lock:
            self._open[id(conn)] = Tx()

    def _statement(self, conn, _cursor, statement, _params, _context, _executemany) -> None:
        if statement.lstrip().upper().startswith("BEGIN"):
            return  # SQLite's BEGIN IMMEDIATE, issued from the begin event itself
        with self._lock:
            tx = self._open.get(id(conn))
            if tx is None:
                self.outside[self.phase] += 1
            else:
                tx.statements.append(" ".join(statement.split()))

    def _end(self, conn) -> None:
        with self._lock:
            tx = self._open.pop(id(conn), None)
            if tx is not None:
                self.done[self.phase].append(tx)

    def start(self, phase: str) -> None:
        with self._lock:
            self.phase = phase

    def take(self, phase: str) -> list[Tx]:
        with self._lock:
            return self.done.pop(phase, [])


class Receiver(ThreadingHTTPServer):
    """The merchant's notify_url: acknowledges everything."""

    daemon_threads = True

    def __init__(self):
        self.bodies: list[bytes] = []

        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/notify"


def scratch_postgres(admin_url: str) -> tuple[str, callable]:
    name = "piaohao_statements_" + secrets.token_hex(4)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin_url.rsplit("/", 1)[0] + "/" + name, drop


def serve(app, sock: socket.socket) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the platform did not start")
        time.sleep(0.01)
    return server


def signed_post(http: httpx.Client, creds, path: str, payload: dict) -> httpx.Response:
    body = json.dumps(payload).encode()
    ts, nonce = str(int(time.time())), secrets.token_hex(12)
    return http.post(path, content=body, headers={
        "X-App-Id": creds.app_id, "X-Timestamp": ts, "X-Nonce": nonce,
        "X-Signature": sign(creds.app_secret, "POST", path, ts, nonce, body), "Content-Type": "application/json"})


def one_payment(counter: StatementCounter, assembly, http: httpx.Client, creds, receiver: Receiver,
                n: int) -> dict[str, list[Tx]]:
    def phase(name: str, fn):
        counter.start(name)
        out = fn()
        time.sleep(QUIET_S)
        return out

    def create():
        r = signed_post(http, creds, "/v1/trades", {
            "out_trade_no": f"S{n}", "amount": 1999, "currency": "CNY", "subject": "statements",
            "notify_url": receiver.url, "order_timeout_s": 3600})
        assert r.status_code == 201, r.text
        return r.json()

    def pay():
        r = http.post(trade["pay_url"] + "/pay", json={"method": "sandbox"})
        assert r.status_code == 200, r.text
        return r.json()["redirect_url"]

    def buyer_pays():
        r = http.post(redirect_url + "/succeed")
        assert r.status_code < 300, r.text

    def channel_notifies():
        deadline = time.monotonic() + HTTP_TIMEOUT_S
        while not assembly.sandbox_notifier.run_once():
            assert time.monotonic() < deadline, "the sandbox sent no notification"
            time.sleep(0.02)

    def merchant_notified():
        seen = len(receiver.bodies)
        assert dispatcher.run_once() == 1
        assert len(receiver.bodies) == seen + 1 and json.loads(receiver.bodies[-1])["type"] == "trade.succeeded"

    dispatcher = next(loop for loop in assembly.loops if loop.name == "outbox").run_once.__self__
    trade = phase("create-trade", create)
    redirect_url = phase("cashier /pay", pay)
    phase("buyer pays", buyer_pays)
    phase("channel notifies", channel_notifies)
    phase("merchant notified", merchant_notified)
    counter.start("between")
    return {name: counter.take(name) for name in PHASES}


def figures(txs: list[Tx]) -> tuple[int, int, int]:
    return sum(len(t.statements) for t in txs), len(txs), sum(t.writes for t in txs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--payments", type=int, default=3, help="payments, one after another (the first warms up)")
    ap.add_argument("--database-url", default=ADMIN_URL, help="PostgreSQL server (a scratch database is made on it)")
    ap.add_argument("--sqlite", action="store_true", help="the embedded default (a scratch SQLite file) instead")
    ap.add_argument("--show", action="store_true", help="print every statement of the last payment")
    args = ap.parse_args()
    if args.payments < 2:
        ap.error("--payments must be at least 2 (the first one warms up)")

    logs.configure("WARNING")  # the counts are the output
    scratch = tempfile.TemporaryDirectory(prefix="piaohao-statements-")
    if args.sqlite:
        url, drop = f"sqlite:///{scratch.name}/piaohao.db", (lambda: None)
    else:
        url, drop = scratch_postgres(args.database_url)
    receiver = Receiver()
    assembly = server = None
    try:
        settings = Settings.from_env({}).with_(
            database_url=url, secret_key=BENCH_SECRET_KEY, outbound_private="allow", rate_limit_per_s=0,
            channel_env={"PIAOHAO_SANDBOX": "on", "PIAOHAO_SANDBOX_DATABASE_URL": f"sqlite:///{scratch.name}/sb.db"})
        # The port is held from the moment it is chosen: the platform's URLs (pay_url, the
        # sandbox's notify and page URLs) are built from it while assembling.
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        assembly = assemble(settings.with_(base_url=base_url), migrate_now=True)
        server = serve(assembly.app, sock)
        creds = create_merchant(assembly.platform, "Statements Shop")
        counter = StatementCounter(assembly.platform.db.engine)
        runs = []
        with httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT_S, trust_env=False) as http:
            for n in range(args.payments):
                runs.append(one_payment(counter, assembly, http, creds, receiver, n))
        counter.start("idle round")
        idle = {}
        for loop in assembly.loops:
            before = len(counter.done["idle round"])
            loop.run_once()
            idle[loop.name] = (loop.idle_s, counter.done["idle round"][before:])
        counter.start("end")
    finally:
        if server is not None:
            server.should_exit = True
        if assembly is not None:
            assembly.close()
        receiver.shutdown()
        drop()
        scratch.cleanup()

    measured = runs[1:]
    backend = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"SQL per end-to-end payment on {backend}: mean of {len(measured)} payment(s) after 1 warm-up. "
          "Round trips: the statements, and a BEGIN and a COMMIT per transaction")
    print(f"{'phase':<20}{'statements':>11}{'transactions':>14}{'of them write':>15}{'round trips':>13}")
    total = [0.0, 0.0, 0.0]
    for name in PHASES:
        per = [figures(run[name]) for run in measured]
        mean = [sum(x[i] for x in per) / len(per) for i in range(3)]
        total = [a + b for a, b in zip(total, mean, strict=True)]
        print(f"{name:<20}{mean[0]:>11.1f}{mean[1]:>14.1f}{mean[2]:>15.1f}{mean[0] + 2 * mean[1]:>13.1f}")
    print(f"{'payment':<20}{total[0]:>11.1f}{total[1]:>14.1f}{total[2]:>15.1f}{total[0] + 2 * total[1]:>13.1f}")
    if any(counter.outside.values()):
        print(f"statements outside a transaction: {dict(counter.outside)}")
    print("\nOne idle round of each worker loop (runs every `interval` seconds, traffic or not):")
    print(f"{'loop':<20}{'interval s':>11}{'statements':>11}{'transactions':>14}")
    for name, (interval, txs) in idle.items():
        s, t, _w = figures(txs)
        print(f"{name:<20}{interval:>11.2f}{s:>11}{t:>14}")
    if args.show:
        print("\nThe last payment's statements, by transaction:")
        for name in PHASES:
            print(f"\n[{name}]")
            for i, tx in enumerate(runs[-1][name], 1):
                print(f"  tx {i} ({'write' if tx.writes else 'read'}):")
                for s in tx.statements:
                    print(f"    {s[:160]}")
    print(f"\ncommand: python {' '.join(sys.argv)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
