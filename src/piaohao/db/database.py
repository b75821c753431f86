"""The database: engine set-up, and the only two ways to run a unit of work (`read`, `write`).

SQLite: WAL mode, and every write transaction starts with BEGIN IMMEDIATE under one
process-wide lock, so concurrent requests queue for the writer instead of failing with
"database is locked"; other processes wait on `busy_timeout`.
PostgreSQL: READ COMMITTED with row locks / conditional updates; a unit of work that hits a
serialization failure or a deadlock is retried from the start, a bounded number of times.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import structlog
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import StaticPool

from piaohao.db import exact, ride_along

log = structlog.get_logger(__name__)
T = TypeVar("T")

WRITE_RETRIES_MAX = 8
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected
_WAKE_KEY = "piaohao_wake_after_commit"


def wake_after_commit(conn: Connection, topic: str) -> None:
    """Once the write transaction on `conn` commits, set this process's wake-up for `topic` (e.g.
    "outbox": the dispatcher's loop runs at once instead of at its next safety poll). Nothing is
    set if the transaction rolls back. Costs no statement; outside `Database.write` it is only a
    spurious wake-up at the next write on the same connection, which is harmless."""
    topics = conn.info.get(_WAKE_KEY)
    if topics is None:
        conn.info[_WAKE_KEY] = {topic}
    else:
        topics.add(topic)


def normalise_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _is_retryable(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate in PG_RETRYABLE_SQLSTATES:
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(exc)


def _forget_wakes(conn: Connection) -> None:
    """A failed unit of work wakes no one; never let this hide the failure (an invalidated
    connection has no info to clear: it is discarded with it)."""
    try:
        conn.info.pop(_WAKE_KEY, None)
    except Exception:  # noqa: BLE001
        pass


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False):
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self._write_lock = threading.RLock()
        self._wakeups: dict[str, threading.Event] = {}
        self.engine: Engine = self._make_engine(pool_size, echo)

    def _make_engine(self, pool_size: int, echo: bool) -> Engine:
        if not self.is_sqlite:
            # No pre-ping: it costs a round trip per checkout. Stale connections are recycled instead,
            # and a unit of work that meets a dropped connection fails cleanly (nothing committed).
            return create_engine(self.url, pool_size=pool_size, max_overflow=pool_size * 2,
                                 pool_recycle=1800, echo=echo, hide_parameters=True)
        memory = self.url in ("sqlite://", "sqlite:///:memory:")
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        if memory:
            # One shared connection, or every checkout would see its own empty database.
            engine = create_engine(self.url, echo=echo, connect_args=connect_args, poolclass=StaticPool,
                                   hide_parameters=True)
        else:
            engine = create_engine(self.url, echo=echo, connect_args=connect_args,
                                   pool_size=pool_size, max_overflow=pool_size * 2, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            # Take transaction control away from pysqlite so BEGIN is ours (SQLAlchemy's documented recipe).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
            exact.register_sqlite(dbapi_conn)  # exact money arithmetic in set-based SQL (db/exact.py)

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection):
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only unit of work (a consistent snapshot on both databases)."""
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    @contextmanager
    def _write_once(self) -> Iterator[Connection]:
        if self.is_sqlite:
            with self._write_lock:
                with self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
                    with conn.begin():
                        yield conn
        else:
            with self.engine.connect() as conn:
                with conn.begin():
                    yield conn

    def write(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(conn)` in one write transaction, committed once at the end.

        On a serialization failure or deadlock the whole unit is retried (so `fn` must not call
        out to the network: it may run more than once). Work attached with `db.ride_along`
        runs first in the same transaction and is marked committed with it. Wake-ups asked for
        with `wake_after_commit` are set after the commit, never for a rolled-back attempt.
        """
        ride = ride_along.pending()
        unit = ride.wrap(fn) if ride is not None else fn
        for attempt in range(1, WRITE_RETRIES_MAX + 1):
            try:
                with self._write_once() as conn:
                    try:
                        result = unit(conn)
                    except BaseException:
                        _forget_wakes(conn)
                        raise
                    topics = conn.info.pop(_WAKE_KEY, None)
                if ride is not None:
                    ride.committed = True
                if topics:
                    self._wake(topics)
                return result
            except DBAPIError as exc:
                if attempt == WRITE_RETRIES_MAX or not _is_retryable(exc):
                    raise
                log.info("db.retry", attempt=attempt, error=type(exc.orig).__name__)
                time.sleep(min(0.2, 0.005 * 2**attempt) * random.random())
        raise AssertionError("unreachable")

    def wakeup(self, topic: str) -> threading.Event:
        """The event set after every committed write that called `wake_after_commit(conn, topic)`
        (and by the PostgreSQL listener, `workers.wake`); a worker loop waits on it when idle."""
        return self._wakeups.setdefault(topic, threading.Event())  # atomic: one event per topic

    def _wake(self, topics: set[str]) -> None:
        for topic in topics:
            event = self._wakeups.get(topic)
            if event is not None:
                event.set()

    def dispose(self) -> None:
        self.engine.dispose()
