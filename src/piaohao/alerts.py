"""Alerts: things a human must look at (the manual-handling queue). Written in the caller's
transaction when they belong to a state change, or on their own otherwise."""

from __future__ import annotations

from datetime import datetime

import orjson
import structlog
from prometheus_client import Counter
from sqlalchemy import Connection, insert, select

from piaohao.db.database import Database
from piaohao.db.schema import alerts

log = structlog.get_logger("piaohao.alerts")
ALERTS_RAISED = Counter("piaohao_alerts_total", "Alerts raised, by kind", ["kind"])

CRITICAL, WARNING = "critical", "warning"


def raise_alert(conn: Connection, *, now: datetime, kind: str, message: str, severity: str = CRITICAL,
                subject_type: str | None = None, subject_id: str | None = None, details: dict | None = None) -> None:
    conn.execute(insert(alerts).values(
        kind=kind, severity=severity, subject_type=subject_type, subject_id=subject_id, message=message[:1024],
        details=orjson.dumps(details or {}).decode(), status="open", created_at=now))
    ALERTS_RAISED.labels(kind).inc()
    log.warning("alert", kind=kind, severity=severity, subject_type=subject_type, subject_id=subject_id,
                message=message)


def raise_alert_now(db: Database, **kwargs) -> None:
    db.write(lambda conn: raise_alert(conn, **kwargs))


def list_alerts(db: Database, *, status: str | None = "open", kind: str | None = None, limit: int = 200) -> list[dict]:
    q = select(alerts).order_by(alerts.c.id.desc()).limit(limit)
    if status:
        q = q.where(alerts.c.status == status)
    if kind:
        q = q.where(alerts.c.kind == kind)
    with db.read() as conn:
        rows = conn.execute(q).mappings().all()
    return [dict(r, details=orjson.loads(r["details"] or "{}")) for r in rows]
