"""Per-merchant token buckets: `rate_per_s` sustained, bursts of twice that.

Two limiters behind one shape, `acquire(key) -> wait_s` (0: the request may proceed; else the
seconds before a retry can succeed), chosen by `make_limiter` from PIAOHAO_RATE_LIMIT_SCOPE:

- `SharedRateLimiter`, the default: one bucket per merchant in the database (`rate_buckets`),
  shared by every API process that uses it, on one machine or on many. A process draws a *lease*
  of a few tokens (a tenth of a second's worth) with one conditional statement in a short
  transaction of its own, then spends them from memory: the database is written once per lease,
  not once per request, and no other service (no Redis) is needed.
- `RateLimiter` (`process`): in memory, each process on its own; with N API processes a merchant
  gets up to N times the rate.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, Connection, func, literal
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from piaohao.db.database import Database
from piaohao.db.schema import rate_buckets
from piaohao.kernel.clock import Clock
from piaohao.kernel.invariants import require
from piaohao.platform import Platform

__all__ = ["RateLimiter", "SharedRateLimiter", "make_limiter"]

MILLI = 1000  # the shared bucket counts milli-tokens: integers, so no float drift across processes
US_PER_S = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def make_limiter(p: Platform) -> RateLimiter | SharedRateLimiter:
    """The limiter PIAOHAO_RATE_LIMIT_SCOPE names: `shared` (default) or `process`."""
    s = p.settings
    if s.rate_limit_scope == "process":
        return RateLimiter(s.rate_limit_per_s)
    return SharedRateLimiter(p.db, s.rate_limit_per_s, p.clock)


def retry_after_header(wait_s: float) -> str:
    """`Retry-After` in whole seconds, at least 1 (a client that waits that long is not refused
    again by the process that answered, unless other requests spent the tokens first)."""
    return str(max(1, math.ceil(wait_s)))


class RateLimiter:
    """In memory, per process (PIAOHAO_RATE_LIMIT_SCOPE=process)."""

    BUCKETS_MAX = 100_000  # bound memory: a bucket that is full again carries no information

    def __init__(self, rate_per_s: float, burst_factor: float = 2.0, monotonic=time.monotonic):
        self.rate_per_s = rate_per_s
        self.capacity = max(1.0, rate_per_s * burst_factor)
        self._monotonic = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """0 when the request may proceed, else the seconds to wait before retrying."""
        if self.rate_per_s <= 0:
            return 0.0
        now = self._monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate_per_s)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > self.BUCKETS_MAX:
                self._buckets.clear()
            return (1.0 - tokens) / self.rate_per_s

    def acquire_from_memory(self, key: str) -> float | None:
        """`acquire` never waits on anything but a brief in-memory lock here."""
        return self.acquire(key)

    retry_after_header = staticmethod(retry_after_header)


@dataclass
class _Held:
    """What one process holds for one merchant: tokens of its latest lease not yet spent, and,
    after a refused draw, the instant before which it does not ask the database again."""

    tokens: int = 0
    ask_after_us: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class SharedRateLimiter:
    """One token bucket per merchant in `rate_buckets`, drawn on in leases by every process.

    A draw is one statement (`INSERT ... ON CONFLICT DO UPDATE ... RETURNING`, on SQLite and
    PostgreSQL alike) in its own transaction: refill the bucket for the time since `refilled_at_us`
    at `rate_per_s` (up to the capacity, twice the rate), take up to `lease` whole tokens, and read
    back how many it took. The row lock (PostgreSQL) or the single writer (SQLite) orders concurrent
    draws, so the bucket never goes below zero and, across all processes, the tokens drawn in any
    t seconds are at most `capacity + rate × t`. A process spends a lease before drawing again, so
    requests granted in any t seconds are at most that plus one lease per process.

    A refused draw (the bucket holds less than a token) makes this process refuse the merchant from
    memory until a lease's worth has refilled, and that is the wait returned: a merchant over its
    rate costs the database one write per process per lease time, not one per request.

    Time is the injected clock in microseconds. `refilled_at_us` only moves forward, so a process
    whose clock lags another's refills nothing until it catches up, and elapsed time is capped at
    what fills an empty bucket (no overflow after a long idle). Sub-milli-token remainders of a
    refill are dropped, which errs towards refusing. Tokens a process holds when it stops or when
    its table is cleared are lost, which errs the same way.

    Failure: if the database cannot be reached the draw raises, and the request fails as its nonce
    write would have.
    """

    BUCKETS_MAX = 100_000  # merchants held in memory; clearing drops unspent tokens (fewer grants, never more)
    LEASES_PER_S = 10  # a lease is a tenth of a second's worth of tokens (at least one)
    KEY_CHARS_MAX = 64  # rate_buckets.merchant_id

    def __init__(self, db: Database, rate_per_s: float, clock: Clock, *, lease: int | None = None,
                 burst_factor: float = 2.0):
        self.rate_per_s = rate_per_s
        self._db = db
        self._clock = clock
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        if rate_per_s <= 0:
            return
        self.rate_milli_per_s = max(1, round(rate_per_s * MILLI))
        self.capacity_milli = max(MILLI, round(rate_per_s * burst_factor * MILLI))
        capacity_tokens = self.capacity_milli // MILLI
        self.lease = min(capacity_tokens, lease or max(1, int(rate_per_s) // self.LEASES_PER_S))
        require(self.lease >= 1, "a rate-limit lease is at least one token", lease=lease)
        # An empty bucket is full again after this long: elapsed time beyond it adds nothing.
        self._fill_us = -(-self.capacity_milli * US_PER_S // self.rate_milli_per_s)
        # A lease's worth refills in this long: how long a refused process waits before asking again.
        self._lease_refill_us = -(-self.lease * MILLI * US_PER_S // self.rate_milli_per_s)

    def acquire(self, key: str) -> float:
        """0 when the request may proceed, else the seconds to wait before retrying."""
        if self.rate_per_s <= 0:
            return 0.0
        require(len(key) <= self.KEY_CHARS_MAX, "rate-limit key too long", chars=len(key))
        held = self._held_for(key)
        with held.lock:  # one draw at a time per merchant in this process; other merchants go on
            now_us = (self._clock.now() - EPOCH) // timedelta(microseconds=1)
            if held.tokens == 0:
                if now_us < held.ask_after_us:
                    return (held.ask_after_us - now_us) / US_PER_S
                granted, left_milli = self._draw(key, now_us)
                if granted == 0:
                    # The shared bucket holds left_milli < one token; ask again once a lease's worth is back.
                    held.ask_after_us = now_us + self._lease_refill_us - left_milli * US_PER_S // self.rate_milli_per_s
                    return (held.ask_after_us - now_us) / US_PER_S
                held.tokens = granted
            held.tokens -= 1
            return 0.0

    def acquire_from_memory(self, key: str) -> float | None:
        """`acquire` if it can be answered from this process's lease without waiting (no draw from
        the database, no other thread drawing for the merchant); else None, and nothing is spent.
        The gateway calls it on the event loop, which must never wait on the database."""
        if self.rate_per_s <= 0:
            return 0.0
        held = self._held.get(key)
        if held is None or not held.lock.acquire(blocking=False):
            return None
        try:
            if held.tokens > 0:
                held.tokens -= 1
                return 0.0
            now_us = (self._clock.now() - EPOCH) // timedelta(microseconds=1)
            if now_us < held.ask_after_us:
                return (held.ask_after_us - now_us) / US_PER_S
            return None
        finally:
            held.lock.release()

    retry_after_header = staticmethod(retry_after_header)

    def _held_for(self, key: str) -> _Held:
        with self._lock:
            held = self._held.get(key)
            if held is None:
                if len(self._held) >= self.BUCKETS_MAX:
                    self._held.clear()
                held = self._held[key] = _Held()
            return held

    def _draw(self, key: str, now_us: int) -> tuple[int, int]:
        """Take up to a lease from the shared bucket: (tokens granted, milli-tokens left in it)."""
        b = rate_buckets.c
        sqlite = self._db.is_sqlite
        least, greatest = (func.min, func.max) if sqlite else (func.least, func.greatest)
        now = _int(now_us)
        elapsed_us = least(greatest(now - b.refilled_at_us, _int(0)), _int(self._fill_us))
        refill_milli = _div(elapsed_us * _int(self.rate_milli_per_s), _int(US_PER_S))
        refilled_milli = least(_int(self.capacity_milli), b.tokens_milli + refill_milli)
        granted = least(_int(self.lease), _div(refilled_milli, _int(MILLI)))
        first = self.lease  # a merchant's first draw finds a full bucket (the lease is at most its capacity)
        statement = (sqlite_insert if sqlite else postgresql_insert)(rate_buckets).values(
            merchant_id=key, tokens_milli=self.capacity_milli - first * MILLI, refilled_at_us=now_us,
            last_lease=first,
        ).on_conflict_do_update(
            index_elements=[b.merchant_id],
            # Every SET expression reads the row as it was before this statement.
            set_={"tokens_milli": refilled_milli - granted * _int(MILLI), "last_lease": granted,
                  "refilled_at_us": greatest(b.refilled_at_us, now)},
        ).returning(b.last_lease, b.tokens_milli)

        def tx(conn: Connection) -> tuple[int, int]:
            if not sqlite:
                # A lease lost to a database crash hands its tokens out again once; not waiting for
                # the WAL flush keeps the draw as cheap as the nonce write beside it.
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            row = conn.execute(statement).one()
            return int(row.last_lease), int(row.tokens_milli)

        granted_tokens, left_milli = self._db.write(tx)
        require(0 <= granted_tokens <= self.lease and 0 <= left_milli <= self.capacity_milli,
                "a rate-limit draw stays within the bucket", granted=granted_tokens, left_milli=left_milli)
        return granted_tokens, left_milli


def _int(value: int):
    """A 64-bit integer parameter (PostgreSQL would otherwise guess a 32-bit one for small values)."""
    return literal(value, BigInteger())


def _div(dividend, divisor):
    """Integer division, truncating, on both databases (SQLAlchemy's `/` and `//` cast to numeric)."""
    return dividend.op("/")(divisor)
