"""Merchant notifications through a transactional outbox (API.md, "Notifications").

Everything a merchant must hear about is written to `outbox_events` by `enqueue`, called inside
the SAME transaction as the state change that causes it: the event exists if and only if the
change committed. `piaohao.workers.dispatcher.OutboxDispatcher` delivers it later.

Event statuses:
- `pending`   waiting for its next try (`next_attempt_at`); while a worker holds it, `lease_until`
              is set and `next_attempt_at` is pushed to the lease end so no one else picks it up.
- `delivered` a try was answered with 2xx (final until an operator resends it).
- `parked`    every try of the retry schedule failed; left for manual handling (`resend`).
- `skipped`   the trade/refund has no `notify_url`: recorded so it is visible, never sent.

The payload (`{"id", "type", "created_at", "data"}`) is frozen as JSON text at enqueue time, so
every try, and every operator resend, sends byte-identical bodies with the same event `id`
(receivers deduplicate on it).
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

import orjson
from sqlalchemy import Connection, Row, select, update
from sqlalchemy.dialects import postgresql, sqlite

from piaohao.db.database import Database, wake_after_commit
from piaohao.db.inserts import insert_if_absent
from piaohao.db.schema import notification_attempts, outbox_events
from piaohao.domain.states import StateMachine
from piaohao.kernel.clock import rfc3339
from piaohao.kernel.errors import EventNotFound
from piaohao.kernel.ids import new_id

PENDING, DELIVERED, PARKED, SKIPPED = "pending", "delivered", "parked", "skipped"
WAKE_TOPIC = "outbox"  # the dispatcher's wake-up: `Database.wakeup(WAKE_TOPIC)`, and the NOTIFY channel below
NOTIFY_CHANNEL = "piaohao_outbox"  # PostgreSQL: migration 0016's trigger notifies it when an event becomes pending
STATUSES = (PENDING, DELIVERED, PARKED, SKIPPED)

# "retry" keeps an event pending with a later next_attempt_at; "resend" is the operator's command.
EVENT_STATES = StateMachine(
    "outbox_event",
    {
        (PENDING, "deliver"): DELIVERED,
        (PENDING, "retry"): PENDING,
        (PENDING, "park"): PARKED,
        (PENDING, "resend"): PENDING,
        (DELIVERED, "resend"): PENDING,
        (PARKED, "resend"): PENDING,
        (SKIPPED, "resend"): PENDING,
    },
    final=set(),
)

LAST_ERROR_MAX = 500
_TYPE_MAX, _SUBJECT_MAX, _DEDUPE_MAX, _URL_MAX = 48, 40, 128, 1024


def _insert(conn: Connection):
    """The dialect's INSERT construct (both have `.on_conflict_do_nothing()`)."""
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(outbox_events)
    if name == "sqlite":
        return sqlite.insert(outbox_events)
    raise RuntimeError(f"outbox: unsupported database dialect {name!r}")


def build_payload(event_id: str, type: str, created_at: datetime, data: dict, tz: tzinfo | None = None) -> bytes:
    """The exact bytes POSTed to the merchant on every try."""
    return orjson.dumps({"id": event_id, "type": type, "created_at": rfc3339(created_at, tz), "data": data})


def enqueue(
    conn: Connection,
    *,
    now: datetime,
    merchant_id: str,
    app_id: str,
    type: str,
    subject_id: str,
    data: dict,
    notify_url: str | None,
    dedupe_key: str | None = None,
    tz: tzinfo | None = None,
) -> str | None:
    """Record a merchant notification inside the caller's transaction.

    Returns the new event id, or None when an event with the same `dedupe_key` (default
    `f"{type}:{subject_id}"`, i.e. one event per business fact) already exists; the duplicate is
    dropped with INSERT ... ON CONFLICT DO NOTHING, so the caller's transaction stays usable and
    commits normally. Without a `notify_url` the event is recorded with status `skipped`: visible,
    never sent. `created_at` in the payload is rendered in `tz` (pass `settings.tz` for the
    business time zone; UTC when None). `data` must be serialisable by orjson.
    """
    row = _event_row(now=now, merchant_id=merchant_id, app_id=app_id, type=type, subject_id=subject_id, data=data,
                     notify_url=notify_url, dedupe_key=dedupe_key, tz=tz)
    # insert_if_absent: one INSERT ... ON CONFLICT (dedupe_key) DO NOTHING, built once per dialect.
    event_id = row["event_id"] if insert_if_absent(conn, outbox_events, row, ("dedupe_key",)) else None
    if event_id is not None and row["status"] == PENDING:
        wake_after_commit(conn, WAKE_TOPIC)
    return event_id


def enqueue_many(conn: Connection, events: list[dict], *, now: datetime, tz: tzinfo | None = None) -> None:
    """`enqueue` for many events at once (one executemany), each a dict of enqueue's keyword
    arguments but `now` and `tz`; duplicates (same dedupe key) are dropped the same way."""
    if not events:
        return
    rows = [_event_row(now=now, tz=tz, **{"dedupe_key": None, **e}) for e in events]
    conn.execute(_insert(conn).on_conflict_do_nothing(index_elements=["dedupe_key"]), rows)
    if any(r["status"] == PENDING for r in rows):
        wake_after_commit(conn, WAKE_TOPIC)


def _event_row(*, now: datetime, merchant_id: str, app_id: str, type: str, subject_id: str, data: dict,
               notify_url: str | None, dedupe_key: str | None, tz: tzinfo | None) -> dict:
    if not type or len(type) > _TYPE_MAX:
        raise ValueError(f"outbox: event type must be 1-{_TYPE_MAX} chars")
    if not subject_id or len(subject_id) > _SUBJECT_MAX:
        raise ValueError(f"outbox: subject_id must be 1-{_SUBJECT_MAX} chars")
    if dedupe_key is None:
        dedupe_key = f"{type}:{subject_id}"
    if len(dedupe_key) > _DEDUPE_MAX:
        raise ValueError(f"outbox: dedupe_key longer than {_DEDUPE_MAX} chars")
    notify_url = notify_url or None
    if notify_url is not None and len(notify_url) > _URL_MAX:
        raise ValueError(f"outbox: notify_url longer than {_URL_MAX} chars")
    event_id = new_id("evt")
    payload = build_payload(event_id, type, now, data, tz)
    return {"event_id": event_id, "merchant_id": merchant_id, "app_id": app_id, "type": type,
            "subject_id": subject_id, "dedupe_key": dedupe_key, "payload": payload.decode("utf-8"),
            "notify_url": notify_url, "status": PENDING if notify_url else SKIPPED, "attempts": 0,
            "next_attempt_at": now, "created_at": now}


# ---------------------------------------------------------------- reading (operators, CLI, API)

def _event_dict(row: Row) -> dict[str, Any]:
    return {
        "id": row.event_id,
        "type": row.type,
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "last_status_code": row.last_status_code,
        "merchant_id": row.merchant_id,
        "app_id": row.app_id,
        "subject_id": row.subject_id,
        "dedupe_key": row.dedupe_key,
        "notify_url": row.notify_url,
        "created_at": rfc3339(row.created_at),
        "next_attempt_at": rfc3339(row.next_attempt_at) if row.status == PENDING else None,
        "delivered_at": rfc3339(row.delivered_at),
        "parked_at": rfc3339(row.parked_at),
    }


_LIST_COLUMNS = [c for c in outbox_events.c if c.name != "payload"]


def list_events(db: Database, *, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Events, oldest first, optionally only those with `status`; times are RFC 3339 UTC strings."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown event status {status!r}")
    q = select(*_LIST_COLUMNS)
    if status is not None:
        q = q.where(outbox_events.c.status == status)
    order = outbox_events.c.parked_at if status == PARKED else outbox_events.c.created_at
    q = q.order_by(order, outbox_events.c.event_id).limit(max(0, int(limit)))
    with db.read() as conn:
        return [_event_dict(r) for r in conn.execute(q)]


def list_parked(db: Database, *, limit: int = 1000) -> list[dict[str, Any]]:
    """Parked events (each with `id`, `type`, `attempts`, `last_error`, ...), in the order they were parked."""
    return list_events(db, status=PARKED, limit=limit)


def _get(conn: Connection, event_id: str) -> dict[str, Any]:
    row = conn.execute(select(outbox_events).where(outbox_events.c.event_id == event_id)).first()
    if row is None:
        raise EventNotFound(f"no event {event_id!r}")
    out = _event_dict(row)
    out["payload"] = row.payload
    return out


def get_event(db: Database, event_id: str) -> dict[str, Any]:
    """One event, including the frozen `payload` text. Unknown id: `EventNotFound`."""
    with db.read() as conn:
        return _get(conn, event_id)


def list_attempts(db: Database, event_id: str) -> list[dict[str, Any]]:
    """Every recorded try of an event, in order (a resend starts `attempt_no` at 1 again)."""
    a = notification_attempts
    with db.read() as conn:
        rows = conn.execute(select(a).where(a.c.event_id == event_id).order_by(a.c.id)).all()
    return [
        {
            "attempt_no": r.attempt_no,
            "status_code": r.status_code,
            "error": r.error,
            "duration_ms": r.duration_ms,
            "started_at": rfc3339(r.started_at),
        }
        for r in rows
    ]


# ---------------------------------------------------------------- operator command

def resend(db: Database, event_id: str, now: datetime) -> dict[str, Any]:
    """Deliver an event (any status) again: same id, same payload, retry schedule from the start.

    The event becomes `pending` with `attempts = 0` and `next_attempt_at = now`. Its lease is
    cleared, so a worker still delivering the previous try cannot record over it. An event
    without a `notify_url` will fail its tries and end `parked` again. Unknown id: `EventNotFound`.
    """

    def fn(conn: Connection) -> dict[str, Any]:
        e = outbox_events
        result = conn.execute(
            update(e)
            .where(e.c.event_id == event_id, e.c.status.in_(EVENT_STATES.sources("resend")))
            .values(
                status=EVENT_STATES.next(PENDING, "resend"),
                attempts=0,
                next_attempt_at=now,
                lease_until=None,
                delivered_at=None,
                parked_at=None,
            )
        )
        if result.rowcount != 1:
            raise EventNotFound(f"no event {event_id!r}")
        wake_after_commit(conn, WAKE_TOPIC)
        return _get(conn, event_id)

    return db.write(fn)


def truncate_error(message: str | None) -> str | None:
    if message is None:
        return None
    return message if len(message) <= LAST_ERROR_MAX else message[: LAST_ERROR_MAX - 3] + "..."
