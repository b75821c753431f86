"""Cross-process wake-ups on PostgreSQL: LISTEN on a dedicated connection, set the loops' events.

An API process that commits a notification and the worker process that delivers it are not the
same process, so the in-process wake-up (`Database.wake_after_commit`) cannot reach the
dispatcher. Migration 0016's trigger on `outbox_events` calls `pg_notify('piaohao_outbox', '')`
when an event becomes pending; PostgreSQL delivers it at commit (never for a rollback), once per
transaction however many rows. This listener holds its own psycopg connection (not one of the
pool's: a LISTENing session must stay open and idle), waits for notifications and sets the event
of each channel it hears on.

Failures only cost latency, never work: the loops keep their safety poll. A dropped connection
is logged, and the listener connects again with a growing back-off (at most
`RECONNECT_BACKOFF_S_MAX`); after every (re)connection it sets all its events once, since a
notification sent while it was not listening is lost. TCP keepalives notice a silently dead
peer. Nothing here raises into the process; `stop()` ends the thread within `WAIT_S`.
"""

from __future__ import annotations

import threading

import psycopg
import structlog
from psycopg import sql
from sqlalchemy.engine import make_url

log = structlog.get_logger(__name__)

WAIT_S = 0.5  # longest wait for notifications before looking at the stop flag again
RECONNECT_BACKOFF_S_MAX = 10.0
CONNECT_TIMEOUT_S = 10


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (`postgresql+psycopg://...`) as libpq understands it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class WakeListener:
    def __init__(self, url: str, channels: dict[str, threading.Event], *, name: str = "wake-listener"):
        self._url = libpq_url(url)
        self.channels = dict(channels)
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection | None = None
        self.connects = 0  # successful (re)connections, for operators' logs and the tests
        self.listening = threading.Event()  # set while LISTENing, cleared when the connection is lost

    def start(self) -> WakeListener:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None

    @property
    def pid(self) -> int | None:
        """The server process of the listening connection (tests terminate it)."""
        conn = self._conn
        return conn.info.backend_pid if conn is not None and not conn.closed else None

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._listen()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - a lost listener costs latency, never the process
                failures = 1 if self.listening.is_set() else failures + 1  # it had been listening: start over
                log.warning("wake.listener_lost", listener=self.name, consecutive=failures,
                            error=f"{type(exc).__name__}: {exc}")
            finally:
                self.listening.clear()
                self._close()
            if failures:
                self._stop.wait(min(RECONNECT_BACKOFF_S_MAX, 0.1 * 2**failures))

    def _listen(self) -> None:
        conn = psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                               keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
        self._conn = conn
        for channel in self.channels:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self.connects += 1
        if self.connects > 1:
            log.info("wake.listener_reconnected", listener=self.name)
        self.listening.set()
        for event in self.channels.values():
            event.set()  # whatever was notified while we were not listening: one round finds it
        while not self._stop.is_set():
            for note in conn.notifies(timeout=WAIT_S):
                event = self.channels.get(note.channel)
                if event is not None:
                    event.set()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
