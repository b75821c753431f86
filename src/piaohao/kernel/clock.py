"""Time comes from an injected clock so tests move time instead of sleeping."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that only moves when told to; safe to share between threads."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2026, 11, 23, 2, 0, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when


def to_utc(value: datetime) -> datetime:
    """Naive datetimes are refused upstream; this normalises aware ones (and DB-read naive ones) to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def rfc3339(value: datetime | None, tz=None) -> str | None:
    """Render an instant in RFC 3339 with offset, in the business time zone when given."""
    if value is None:
        return None
    value = to_utc(value)
    if tz is not None:
        value = value.astimezone(tz)
    return value.isoformat(timespec="seconds")
