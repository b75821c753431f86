"""The outbox dispatcher: delivers `outbox_events` to merchants' `notify_url` (API.md, "Notifications").

One `run_once()`:
1. claim  — one short transaction selects due events (`pending`, `next_attempt_at <= now`; on
   PostgreSQL `FOR UPDATE SKIP LOCKED`, so several worker processes can run side by side; on SQLite
   the single writer serialises claims), counts the try (`attempts + 1`) and sets a lease:
   `lease_until` and `next_attempt_at` both move to the lease end, so nobody else picks the event
   while it is in flight, and a worker that dies mid-delivery only delays it until the lease ends.
2. deliver — outside any transaction, on a small thread pool: POST the frozen payload bytes,
   signed with the app's current secret. Any 2xx acknowledges; anything else (non-2xx, redirect,
   timeout, refused connection, DNS failure, malformed or non-http(s) URL) is a failed try.
3. record — per event, one transaction: the try goes to `notification_attempts`; the event is
   updated only if the lease is still ours (`lease_until` unchanged and still `pending`): a
   worker that outlived its lease, or raced an operator's resend, cannot overwrite newer state,
   and a delivered event is never set back. After failed try k it waits `notify_retry_s[k-1]`;
   when the schedule has no k-th interval the event is `parked`.

Delivery is at-least-once with a stable event id; receivers deduplicate on `id`.
"""

from __future__ import annotations

import functools
import math
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy import Connection, bindparam, select, update

from piaohao.alerts import WARNING, raise_alert_now
from piaohao.db.database import Database
from piaohao.db.schema import apps, notification_attempts, outbox_events
from piaohao.kernel import signing
from piaohao.kernel.clock import Clock
from piaohao.kernel.outbound import OutboundRefused, guarded_client
from piaohao.kernel.sealing import Sealer
from piaohao.kernel.settings import Settings
from piaohao.services.merchants import open_secret
from piaohao.services.notifications import EVENT_STATES, PENDING, truncate_error

log = structlog.get_logger(__name__)

DELIVERIES = Counter(
    "piaohao_notification_deliveries_total", "Merchant notification tries, by outcome", ["outcome"]
)  # outcome: delivered | failed
PARKED = Counter("piaohao_notification_parked_total", "Merchant notification events parked after the last try")
STALE_RESULTS = Counter(
    "piaohao_notification_stale_results_total", "Try results dropped because the worker no longer held the lease"
)
DELIVERY_SECONDS = Histogram("piaohao_notification_delivery_seconds", "Duration of one merchant notification try")

# Lease = per "wave" of `concurrency` deliveries a generous bound on one try (httpx applies the
# timeout to connect, write and read separately), plus a margin for the database round trips.
LEASE_PER_WAVE_FACTOR = 2.0
LEASE_MARGIN_S = 30.0
USER_AGENT = "piaohao-notify/1"


@dataclass(frozen=True)
class Claim:
    """One event this worker holds a lease on, with what it needs to deliver it."""

    event_id: str
    type: str
    app_id: str
    notify_url: str | None
    payload: bytes
    attempt: int  # 1 = first try
    lease_until: datetime
    secret: str | None = field(default=None, repr=False)  # never in logs or reprs


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    started_at: datetime


class InvalidNotifyUrl(ValueError):
    pass


def path_and_query(url: httpx.URL) -> str:
    """What goes on the request line (and into the signature): path, plus `?query` when there is one."""
    return url.raw_path.decode("ascii")


def parse_notify_url(raw: str | None) -> httpx.URL:
    if not raw:
        raise InvalidNotifyUrl("no notify_url")
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise InvalidNotifyUrl(f"invalid notify_url: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidNotifyUrl("invalid notify_url: must be an absolute http(s) URL")
    if url.userinfo:
        raise InvalidNotifyUrl("invalid notify_url: credentials in URL are not allowed")
    return url



# Built once (the values go as parameters; an UPDATE without .values() sets the columns its
# parameters name, the WHERE clause's are named k_*): built per call they cost SQLAlchemy more
# than the database took to run them (docs/speed.md, "Statements built once").
_INSERT_ATTEMPT = notification_attempts.insert()
_LEASE = (update(outbox_events).where(outbox_events.c.event_id.in_(bindparam("k_ids", expanding=True)))
          .values(attempts=outbox_events.c.attempts + 1, lease_until=bindparam("v_lease"),
                  next_attempt_at=bindparam("v_lease")))


@functools.cache
def _claim_statement(batch_size: int, skip_locked: bool):
    e = outbox_events
    q = (select(e.c.event_id, e.c.type, e.c.app_id, e.c.notify_url, e.c.payload, e.c.attempts, apps.c.secret_sealed)
         .select_from(e.outerjoin(apps, apps.c.app_id == e.c.app_id))
         .where(e.c.status == PENDING, e.c.next_attempt_at <= bindparam("k_now", type_=e.c.next_attempt_at.type))
         .order_by(e.c.next_attempt_at, e.c.event_id)
         .limit(batch_size))
    return q.with_for_update(skip_locked=True, of=e) if skip_locked else q


@functools.cache
def _result_statement(event: str):
    """The try's outcome, applied only if the event is still in a state `event` leaves and the lease is ours."""
    e = outbox_events.c
    return update(outbox_events).where(e.event_id == bindparam("k_event_id"),
                                       e.status.in_(EVENT_STATES.sources(event)),
                                       e.lease_until == bindparam("k_lease_until"))


class OutboxDispatcher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        clock: Clock,
        http: httpx.Client | None = None,
        batch_size: int = 50,
        concurrency: int = 8,
        worker_id: str | None = None,
        sealer: Callable[[], Sealer] | None = None,  # the platform's (opens app secrets); else from `settings`
    ):
        if batch_size < 1 or concurrency < 1:
            raise ValueError("batch_size and concurrency must be at least 1")
        self.db = db
        self.settings = settings
        self.clock = clock
        self._sealer_of = sealer or settings.sealer
        self._sealer: Sealer | None = None
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.worker_id = worker_id or f"dispatcher-{secrets.token_hex(4)}"
        self._timeout = httpx.Timeout(settings.notify_timeout_s)
        self._own_http = http is None
        # The guarded outbound client (kernel/outbound.py): no proxy settings from the environment,
        # only public addresses unless PIAOHAO_OUTBOUND_PRIVATE=allow, checked after name resolution.
        # Redirects are never followed, on any client: a 3xx is a failed try.
        self.http = http or guarded_client(
            allow_private=settings.outbound_private_allowed, timeout_s=settings.notify_timeout_s,
            max_connections=max(concurrency * 2, 10), headers={"User-Agent": USER_AGENT})
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="outbox")
        self._closed = False
        self.log = log.bind(worker_id=self.worker_id)

    # ------------------------------------------------------------------ the loop

    def run_once(self) -> int:
        """Claim due events, deliver them concurrently, record the results; how many were tried.

        Never waits for work: with nothing due it returns 0 at once (a runner loops it).
        """
        claims = self.claim()
        if not claims:
            return 0
        futures = [self._pool.submit(self._process, c) for c in claims]
        for fut in futures:
            fut.result()
        return len(claims)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True)
        if self._own_http:
            self.http.close()

    def __enter__(self) -> OutboxDispatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the three steps

    def _lease_seconds(self, n: int) -> float:
        waves = math.ceil(n / self.concurrency)
        return waves * LEASE_PER_WAVE_FACTOR * self.settings.notify_timeout_s + LEASE_MARGIN_S

    def claim(self) -> list[Claim]:
        """Take a lease on up to `batch_size` due events and count their try (one transaction)."""
        now = self.clock.now()

        def fn(conn: Connection) -> list[Claim]:
            # The app's current secret is read with the claim (a rotation applies from the next
            # batch): joined, so the claim is one statement; only the events are locked.
            rows = conn.execute(_claim_statement(self.batch_size, not self.db.is_sqlite), {"k_now": now}).all()
            if not rows:
                return []
            # Random microseconds make the lease value this claim's own: the result update
            # matches on it, so a later claim of the same event can never be mistaken for ours.
            lease = now + timedelta(seconds=self._lease_seconds(len(rows)),
                                    microseconds=secrets.randbelow(1_000_000))
            ids = [r.event_id for r in rows]
            conn.execute(_LEASE, {"k_ids": ids, "v_lease": lease})
            sealer = self.sealer()
            sealed_by_app = {r.app_id: r.secret_sealed for r in rows if r.secret_sealed is not None}  # None: no app
            secrets_by_app = {app_id: open_secret(sealer, app_id, sealed) for app_id, sealed in sealed_by_app.items()}
            return [
                Claim(
                    event_id=r.event_id,
                    type=r.type,
                    app_id=r.app_id,
                    notify_url=r.notify_url,
                    payload=r.payload.encode("utf-8"),
                    attempt=r.attempts + 1,
                    lease_until=lease,
                    secret=secrets_by_app.get(r.app_id),
                )
                for r in rows
            ]

        return self.db.write(fn)

    def sealer(self) -> Sealer:
        if self._sealer is None:
            self._sealer = self._sealer_of()
        return self._sealer

    def _process(self, claim: Claim) -> None:
        try:
            outcome = self.deliver(claim)
            self.record(claim, outcome)
        except Exception:  # noqa: BLE001 - the lease runs out and the event is tried again
            self.log.exception("notify.process_failed", event_id=claim.event_id, attempt=claim.attempt)

    def deliver(self, claim: Claim) -> Outcome:
        """One signed POST of the frozen payload; never raises."""
        started_at = self.clock.now()
        t0 = time.monotonic()

        def done(ok: bool, status_code: int | None, error: str | None) -> Outcome:
            elapsed = time.monotonic() - t0
            DELIVERY_SECONDS.observe(elapsed)
            return Outcome(ok, status_code, truncate_error(error), int(elapsed * 1000), started_at)

        try:
            url = parse_notify_url(claim.notify_url)
        except InvalidNotifyUrl as exc:
            return done(False, None, str(exc))
        if claim.secret is None:
            return done(False, None, f"unknown app {claim.app_id}")

        timestamp = str(int(started_at.timestamp()))
        nonce = secrets.token_hex(16)
        headers = {
            "Content-Type": "application/json",
            "X-App-Id": claim.app_id,
            "X-Timestamp": timestamp,
            "X-Nonce": nonce,
            "X-Signature": signing.sign(claim.secret, "POST", path_and_query(url), timestamp, nonce, claim.payload),
        }
        try:
            # Only the status matters: the body is not read, so a huge or slow body cannot hold us.
            with self.http.stream("POST", url, content=claim.payload, headers=headers,
                                  timeout=self._timeout, follow_redirects=False) as resp:
                status = resp.status_code
        except OutboundRefused as exc:
            self._refused(claim, str(exc))
            return done(False, None, f"refused: {exc}")
        except httpx.TimeoutException as exc:
            return done(False, None, f"timeout after {self.settings.notify_timeout_s:g}s ({type(exc).__name__})")
        except Exception as exc:  # noqa: BLE001 - refused, DNS, TLS, protocol errors: all a failed try
            return done(False, None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if 200 <= status < 300:
            return done(True, status, None)
        return done(False, status, f"HTTP {status}")

    def _refused(self, claim: Claim, why: str) -> None:
        """A delivery to a non-public address (PIAOHAO_OUTBOUND_PRIVATE=deny): nothing was sent; an operator looks."""
        self.log.warning("notify.refused", event_id=claim.event_id, app_id=claim.app_id, error=why)
        try:
            raise_alert_now(self.db, now=self.clock.now(), kind="outbound_refused", severity=WARNING,
                            subject_type="event", subject_id=claim.event_id, source=f"app:{claim.app_id}",
                            message=f"notification not sent: {why}")
        except Exception:  # noqa: BLE001 - the failed try is recorded either way
            self.log.exception("notify.alert_failed", event_id=claim.event_id)

    def record(self, claim: Claim, outcome: Outcome) -> bool:
        """Log the try and move the event on, if the lease is still ours. True when the event was updated."""
        now = self.clock.now()
        schedule = self.settings.notify_retry_s
        if outcome.ok:
            event, values = "deliver", {"delivered_at": now}
        elif claim.attempt <= len(schedule):
            event = "retry"
            values = {"next_attempt_at": now + timedelta(seconds=schedule[claim.attempt - 1])}
        else:
            event, values = "park", {"parked_at": now}
        values.update(
            status=EVENT_STATES.next(PENDING, event),
            lease_until=None,
            last_status_code=outcome.status_code,
            last_error=outcome.error,
        )

        def fn(conn: Connection) -> bool:
            conn.execute(_INSERT_ATTEMPT, {
                "event_id": claim.event_id, "attempt_no": claim.attempt, "status_code": outcome.status_code,
                "error": outcome.error, "duration_ms": outcome.duration_ms, "started_at": outcome.started_at})
            result = conn.execute(_result_statement(event),
                                  {"k_event_id": claim.event_id, "k_lease_until": claim.lease_until, **values})
            return result.rowcount == 1

        applied = self.db.write(fn)
        fields = dict(event_id=claim.event_id, type=claim.type, attempt=claim.attempt,
                      status_code=outcome.status_code, duration_ms=outcome.duration_ms)
        DELIVERIES.labels(outcome="delivered" if outcome.ok else "failed").inc()
        if not applied:
            STALE_RESULTS.inc()
            self.log.warning("notify.lease_lost", ok=outcome.ok, **fields)
        elif outcome.ok:
            self.log.info("notify.delivered", **fields)
        elif event == "park":
            PARKED.inc()
            self.log.warning("notify.parked", error=outcome.error, **fields)
        else:
            self.log.info("notify.failed", error=outcome.error, next_attempt_at=values["next_attempt_at"].isoformat(),
                          **fields)
        return applied
