"""Alerts: things a human must look at (the manual-handling queue). Written in the caller's
transaction when they belong to a state change, or on their own otherwise.

Two limits keep the queue readable whatever strangers send (API.md "Operations"):
- deduplication: the same fact again (kind, subject, source) while its alert is open only counts
  it (`occurrences`, `last_seen_at`); nothing new is stored;
- a rate limit per source: a source (`app:<id>`, `notify:<channel>:<address>`, ...) raises at most
  `SOURCE_ALERTS_MAX` alerts per `SOURCE_WINDOW_S`; past that its alerts are counted on one
  `alert_flood` alert for the source. A flood from one source therefore never hides an alert of
  another kind or source, and listing filters by severity and kind.
Alerts without a source (the platform's own findings: money in suspense, stuck refunds) are
deduplicated but never rate-limited.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson
import structlog
from prometheus_client import Counter
from sqlalchemy import Connection, func, insert, select, update

from piaohao.db.database import Database
from piaohao.db.schema import alerts

log = structlog.get_logger("piaohao.alerts")
ALERTS_RAISED = Counter("piaohao_alerts_total", "Alerts raised, by kind", ["kind"])
ALERTS_SUPPRESSED = Counter("piaohao_alerts_suppressed_total", "Alerts only counted (duplicate or flood), by kind",
                            ["kind", "why"])

CRITICAL, WARNING = "critical", "warning"
SEVERITIES = (CRITICAL, WARNING)
OPEN, RESOLVED = "open", "resolved"
SOURCE_ALERTS_MAX = 20
SOURCE_WINDOW_S = 600
LIST_LIMIT_MAX = 1000
MESSAGE_CHARS_MAX = 1024
DETAILS_BYTES_MAX = 4096
FLOOD_KIND = "alert_flood"


def _dedupe_key(kind: str, subject_type: str | None, subject_id: str | None, source: str | None) -> str:
    return f"{kind}|{subject_type or ''}|{subject_id or ''}|{source or ''}"[:200]


def _count_again(conn: Connection, dedupe_key: str, now: datetime) -> bool:
    """Count one more occurrence on the open alert with this key; False when there is none."""
    found = conn.execute(select(alerts.c.id).where(alerts.c.dedupe_key == dedupe_key, alerts.c.status == OPEN)
                         .order_by(alerts.c.id.desc()).limit(1)).scalar()
    if found is None:
        return False
    conn.execute(update(alerts).where(alerts.c.id == found).values(
        occurrences=alerts.c.occurrences + 1, last_seen_at=now))
    return True


def raise_alert(conn: Connection, *, now: datetime, kind: str, message: str, severity: str = CRITICAL,
                subject_type: str | None = None, subject_id: str | None = None, details: dict | None = None,
                source: str | None = None) -> str:
    """Raise (or count) an alert. Returns "raised", "duplicate" or "flood"."""
    subject_id = subject_id[:64] if subject_id else subject_id
    source = source[:128] if source else None
    key = _dedupe_key(kind, subject_type, subject_id, source)
    if _count_again(conn, key, now):
        ALERTS_SUPPRESSED.labels(kind, "duplicate").inc()
        return "duplicate"
    if source is not None:
        recent = conn.execute(select(func.count()).select_from(alerts).where(
            alerts.c.source == source, alerts.c.created_at > now - timedelta(seconds=SOURCE_WINDOW_S),
            alerts.c.kind != FLOOD_KIND)).scalar_one()
        if recent >= SOURCE_ALERTS_MAX:
            ALERTS_SUPPRESSED.labels(kind, "flood").inc()
            flood_key = _dedupe_key(FLOOD_KIND, "source", source, source)
            if not _count_again(conn, flood_key, now):
                _insert(conn, now=now, kind=FLOOD_KIND, severity=WARNING, subject_type="source",
                        subject_id=source[:64], source=source, dedupe_key=flood_key, details={"first_kind": kind},
                        message=f"more than {SOURCE_ALERTS_MAX} alerts in {SOURCE_WINDOW_S} s from {source}: "
                                "further ones from it are only counted here")
            return "flood"
    _insert(conn, now=now, kind=kind, severity=severity, subject_type=subject_type, subject_id=subject_id,
            source=source, dedupe_key=key, details=details, message=message)
    return "raised"


def _insert(conn: Connection, *, now: datetime, kind: str, severity: str, subject_type: str | None,
            subject_id: str | None, source: str | None, dedupe_key: str, details: dict | None, message: str) -> None:
    details_json = orjson.dumps(details or {}).decode()
    if len(details_json) > DETAILS_BYTES_MAX:
        details_json = orjson.dumps({"truncated": details_json[:DETAILS_BYTES_MAX]}).decode()
    conn.execute(insert(alerts).values(
        kind=kind, severity=severity, subject_type=subject_type, subject_id=subject_id,
        message=message[:MESSAGE_CHARS_MAX], details=details_json, status=OPEN, created_at=now, last_seen_at=now,
        source=source, dedupe_key=dedupe_key, occurrences=1))
    ALERTS_RAISED.labels(kind).inc()
    log.warning("alert", kind=kind, severity=severity, subject_type=subject_type, subject_id=subject_id,
                source=source, message=message[:MESSAGE_CHARS_MAX])


def raise_alert_now(db: Database, **kwargs) -> str:
    return db.write(lambda conn: raise_alert(conn, **kwargs))


def alert_view(row) -> dict:
    return {
        "alert_id": str(row["id"]), "kind": row["kind"], "severity": row["severity"],
        "subject_type": row["subject_type"], "subject_id": row["subject_id"], "message": row["message"],
        "status": row["status"], "created_at": row["created_at"], "source": row["source"],
        "occurrences": row["occurrences"], "last_seen_at": row["last_seen_at"], "resolved_at": row["resolved_at"],
        "resolved_by": row["resolved_by"], "resolution_note": row["resolution_note"],
        "details": orjson.loads(row["details"] or "{}"),
    }


def list_alerts(db: Database, *, status: str | None = OPEN, kind: str | None = None, severity: str | None = None,
                limit: int = 200, before_id: int | None = None) -> list[dict]:
    """Newest first; `before_id` pages on (the last `alert_id` of the previous page)."""
    limit = max(1, min(int(limit), LIST_LIMIT_MAX))
    q = select(alerts).order_by(alerts.c.id.desc()).limit(limit)
    if status:
        q = q.where(alerts.c.status == status)
    if kind:
        q = q.where(alerts.c.kind == kind)
    if severity:
        q = q.where(alerts.c.severity == severity)
    if before_id is not None:
        q = q.where(alerts.c.id < before_id)
    with db.read() as conn:
        rows = conn.execute(q).mappings().all()
    return [alert_view(r) for r in rows]
