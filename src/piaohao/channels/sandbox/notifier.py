"""Sends the sandbox's queued notifications to merchants, retrying until they acknowledge.

`run_once()` claims the due rows with a lease (so two runners, threads or processes, never
send the same row at once, and a runner that dies mid-send only delays a row until its lease
runs out), sends them concurrently outside any transaction, and records each answer: a 2xx
acknowledges the row for good (an acknowledged row is never claimed again); anything else
schedules the next try from the retry schedule, and after the last try the row is given up.
Nothing here sleeps: the caller loops (`run_forever`) or a test calls `run_once()` directly.
"""

from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import httpx
import structlog
from sqlalchemy import select, update

from piaohao.kernel.clock import Clock, SystemClock

from . import rsa
from .faults import NOTIFY_KINDS, FaultBook
from .store import SandboxStore
from .wire import HEADER_SIGNATURE, HEADER_TIMESTAMP, response_canonical

__all__ = ["SandboxNotifier", "DEFAULT_RETRY_S", "run_forever"]

log = structlog.get_logger(__name__)

DEFAULT_RETRY_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
LEASE_S_DEFAULT = 60.0
BATCH_MAX = 50
SEND_WORKERS_MAX = 16
ERROR_LEN_MAX = 500


@dataclass(frozen=True)
class _Claimed:
    id: str
    url: str
    body: str
    sign_mode: str
    attempts: int
    out_trade_no: str | None
    token: str


class SandboxNotifier:
    """`retry_s[i]` is the wait after failed try i+1; there are `len(retry_s) + 1` tries in all.
    `lease_s` must exceed the HTTP client's timeout."""

    def __init__(self, store: SandboxStore, http_client: httpx.Client, clock: Clock | None = None, *,
                 retry_s: tuple[float, ...] | list[float] = DEFAULT_RETRY_S, lease_s: float = LEASE_S_DEFAULT,
                 batch_max: int = BATCH_MAX):
        assert all(s >= 0 for s in retry_s), "retry delays must not be negative"
        assert 1 <= batch_max <= 1000, "batch_max out of range"
        self.store = store
        self.t = store.t.notifications
        self.http = http_client
        self.clock = clock or SystemClock()
        self.retry_s = tuple(float(s) for s in retry_s)
        self.lease_s = lease_s
        self.batch_max = batch_max
        self.faults = FaultBook(store)
        self._pool = ThreadPoolExecutor(max_workers=SEND_WORKERS_MAX, thread_name_prefix="sandbox-notify")

    @property
    def tries_max(self) -> int:
        return len(self.retry_s) + 1

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def run_once(self) -> int:
        """Send every due notification once; returns how many were handled."""
        claimed = self._claim()
        if not claimed:
            return 0
        results = list(self._pool.map(self._deliver, claimed))
        self._record(list(zip(claimed, results, strict=True)))
        return len(claimed)

    def _claim(self) -> list[_Claimed]:
        now = self.clock.now()
        token = secrets.token_hex(8)
        t = self.t

        def work(conn) -> list[_Claimed]:
            due = (select(t).where(t.c.status == "pending", t.c.next_at <= now,
                                   (t.c.lease_until.is_(None)) | (t.c.lease_until <= now))
                   .order_by(t.c.next_at, t.c.id).limit(self.batch_max))
            if not self.store.db.is_sqlite:
                due = due.with_for_update(skip_locked=True)
            rows = conn.execute(due).all()
            claimed = []
            for r in rows:
                got = conn.execute(update(t).where(t.c.id == r.id, t.c.status == "pending")
                                   .values(lease_until=now + timedelta(seconds=self.lease_s), lease_token=token,
                                           attempts=t.c.attempts + 1)).rowcount
                if got:
                    claimed.append(_Claimed(r.id, r.url, r.body, r.sign_mode, r.attempts + 1, r.out_trade_no, token))
            return claimed

        return self.store.write(work)

    def _deliver(self, row: _Claimed) -> tuple[bool, str | None, float | None]:
        """One try: (acknowledged, error, retry in seconds instead of the schedule's). Never raises:
        an unexpected error is a failed try like any other."""
        try:
            return self._try(row)
        except Exception as e:  # noqa: BLE001 - one bad row must not strand the batch's leases
            log.exception("sandbox.notify.try_failed", id=row.id)
            return False, f"internal: {type(e).__name__}"[:ERROR_LEN_MAX], None

    def _try(self, row: _Claimed) -> tuple[bool, str | None, float | None]:
        fault = self.faults.take("notify", row.out_trade_no, NOTIFY_KINDS)
        if fault is not None and fault.kind == "slow":
            return False, "fault: postponed", fault.delay_s
        if fault is not None and fault.kind == "error":
            return False, "fault: not sent", None
        body = row.body.encode()
        timestamp = str(int(self.clock.now().timestamp()))
        signed = response_canonical(timestamp, body)
        if row.sign_mode == "bad":
            signed = b"tampered" + signed
        signature = rsa.sign(self.store.channel_keys().private_pem, signed)
        headers = {"Content-Type": "application/json", HEADER_TIMESTAMP: timestamp, HEADER_SIGNATURE: signature}
        try:
            response = self.http.post(row.url, content=body, headers=headers)
        except httpx.HTTPError as e:
            return False, f"{type(e).__name__}: {e}"[:ERROR_LEN_MAX], None
        if fault is not None and fault.kind == "timeout":
            return False, "fault: answer ignored", None
        if 200 <= response.status_code < 300:
            return True, None, None
        return False, f"HTTP {response.status_code}: {response.text[:200]}", None

    def _record(self, outcomes: list[tuple[_Claimed, tuple[bool, str | None, float | None]]]) -> None:
        """Write every try's result in one transaction, each only if our lease still holds."""
        now = self.clock.now()
        t = self.t
        updates = []
        for row, (acked, error, retry_in_s) in outcomes:
            if acked:
                values = {"status": "acked", "acked_at": now, "lease_until": None, "last_error": None}
            elif retry_in_s is not None:  # postponed by a fault: this try does not count
                values = {"next_at": now + timedelta(seconds=retry_in_s), "lease_until": None,
                          "attempts": t.c.attempts - 1, "last_error": error}
            elif row.attempts >= self.tries_max:
                values = {"status": "given_up", "lease_until": None, "last_error": error}
            else:
                values = {"next_at": now + timedelta(seconds=self.retry_s[row.attempts - 1]), "lease_until": None,
                          "last_error": error}
            updates.append((row, values))
            log.info("sandbox.notify", id=row.id, attempt=row.attempts, acked=acked,
                     given_up=values.get("status") == "given_up", error=error)

        def work(conn) -> None:
            for row, values in updates:
                conn.execute(update(t).where(t.c.id == row.id, t.c.lease_token == row.token, t.c.status == "pending")
                             .values(**values))

        self.store.write(work)


def run_forever(notifier: SandboxNotifier, stop: threading.Event, poll_s: float = 0.2) -> None:
    """Loop `run_once` until `stop` is set; errors are logged and the loop goes on."""
    while not stop.is_set():
        try:
            handled = notifier.run_once()
        except Exception:  # noqa: BLE001 - a runner thread must survive a bad pass
            log.exception("sandbox.notify.pass_failed")
            handled = 0
        if not handled:
            stop.wait(poll_s)
