"""Findings: the reconciliation work queue. Raised once (a unique `dedupe_key`), listed, and
closed by an operator with `accept` (the decision only) or `adjust` (a correcting journal entry
through `piaohao.books.adjust`, never an edit); who, when and why are kept on the finding and in
the audit log (`recon resolve` and the console both come here).

Each new finding raises an alert of kind `recon.<class>` in the same transaction.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from sqlalchemy import Connection, select, update

from piaohao.alerts import WARNING, raise_alert
from piaohao.books import adjust as adjust_book
from piaohao.db.inserts import insert_if_absent
from piaohao.db.schema_recon import recon_findings
from piaohao.kernel.clock import rfc3339
from piaohao.kernel.errors import InvalidRequest, NotFound
from piaohao.kernel.ids import new_id
from piaohao.platform import Platform
from piaohao.services.operations import audit

__all__ = ["CLASSES", "Finding", "list_findings", "record", "report", "resolve", "view"]

CLASSES = ("platform_only", "channel_only", "amount_mismatch", "status_mismatch", "duplicate", "ledger_mismatch",
           "sum_mismatch", "sequence", "timeliness", "risk_limit", "custom")
ACTIONS = ("accept", "adjust")
NOTE_CHARS_MAX = 1024
_f = recon_findings.c


@dataclass(frozen=True)
class Finding:
    cls: str
    subject_type: str
    subject_id: str
    channel: str | None = None
    expected: object = None
    actual: object = None
    details: dict = field(default_factory=dict)
    business_date: str | None = None
    facet: str = ""  # what of the subject is broken, when one subject can break several ways

    @property
    def dedupe_key(self) -> str:
        return ":".join((self.cls, self.channel or "-", self.subject_type, self.subject_id, self.facet))[:255]


def record(conn: Connection, p: Platform, findings: list[Finding], *, run_id: str | None, now: datetime) -> list[str]:
    """Insert the findings not raised before; alert for each new one. Returns the new ids."""
    new: list[str] = []
    for f in findings:
        assert f.cls in CLASSES, f.cls
        fid = new_id("fnd")
        row = {"finding_id": fid, "dedupe_key": f.dedupe_key, "class": f.cls, "channel": f.channel,
               "subject_type": f.subject_type, "subject_id": f.subject_id[:64], "business_date": f.business_date,
               "expected": orjson.dumps(f.expected).decode(), "actual": orjson.dumps(f.actual).decode(),
               "details": orjson.dumps(f.details, default=str).decode(), "status": "open", "run_id": run_id,
               "detected_at": now}
        if insert_if_absent(conn, recon_findings, row, ["dedupe_key"]):
            new.append(fid)
            raise_alert(conn, now=now, kind=f"recon.{f.cls}", severity=WARNING if f.cls == "custom" else "critical",
                        subject_type=f.subject_type, subject_id=f.subject_id[:64],
                        message=f"reconciliation: {f.cls} on {f.subject_type} {f.subject_id}: expected "
                                f"{f.expected!r}, found {f.actual!r}", details={"finding_id": fid, **f.details})
    return new


def view(row, tz=None) -> dict:
    return {
        "finding_id": row["finding_id"], "class": row["class"], "channel": row["channel"],
        "subject_type": row["subject_type"], "subject_id": row["subject_id"],
        "expected": orjson.loads(row["expected"]) if row["expected"] else None,
        "actual": orjson.loads(row["actual"]) if row["actual"] else None,
        "status": row["status"], "detected_at": rfc3339(row["detected_at"], tz),
        "details": orjson.loads(row["details"] or "{}"), "business_date": row["business_date"],
        "resolution": None if row["status"] == "open" else {
            "action": row["resolution"], "operator": row["resolved_by"], "note": row["resolution_note"],
            "at": rfc3339(row["resolved_at"], tz),
            "adjustment": orjson.loads(row["adjustment"]) if row["adjustment"] else None},
    }


def list_findings(p: Platform, *, open_only: bool = False, cls: str | None = None, date: str | None = None,
                  limit: int = 10_000) -> list[dict]:
    q = select(recon_findings).order_by(_f.detected_at, _f.finding_id).limit(limit)
    if open_only:
        q = q.where(_f.status == "open")
    if cls:
        q = q.where(_f["class"] == cls)
    if date:
        q = q.where(_f.business_date == date)
    with p.db.read() as conn:
        return [view(r, p.settings.tz) for r in conn.execute(q).mappings()]


def resolve(p: Platform, finding_id: str, *, action: str, note: str, operator: str) -> dict:
    if action not in ACTIONS:
        raise InvalidRequest(f"action must be one of {', '.join(ACTIONS)}")
    if not note or not note.strip():
        raise InvalidRequest("a note saying why is required")
    now = p.clock.now()

    def work(conn: Connection) -> dict:
        row = conn.execute(select(recon_findings).where(_f.finding_id == finding_id).with_for_update()
                           ).mappings().first()
        if row is None:
            raise NotFound(f"no finding {finding_id}")
        if row["status"] != "open":
            raise InvalidRequest(f"finding {finding_id} is already resolved")
        adjustment = None
        if action == "adjust":
            adjustment = adjust_book.correct(conn, finding_id=finding_id, correction=adjustment_for(view(row)),
                                             note=note[:200], at=now)
        values = {"status": "resolved", "resolution": action, "resolved_by": operator[:64],
                  "resolution_note": note[:NOTE_CHARS_MAX], "resolved_at": now,
                  "adjustment": orjson.dumps(adjustment).decode() if adjustment else None}
        conn.execute(update(recon_findings).where(_f.finding_id == finding_id, _f.status == "open").values(**values))
        audit(conn, now=now, operator=operator, action=f"finding.{action}", object_type="finding",
              object_id=finding_id, note=note, details={"class": row["class"], "subject_id": row["subject_id"]})
        return view(dict(row, **values), p.settings.tz)

    return p.db.write(work)


def adjustment_for(finding: dict) -> adjust_book.Correction:
    """The correcting entry a finding names: the difference between what the channel (or the
    record) says and what the books hold, moved between the channel's clearing account and the
    platform's suspense account (a person then works it off from suspense)."""
    d = finding.get("details") or {}
    diff = d.get("adjust_amount")
    if not isinstance(diff, int) or diff == 0:
        raise InvalidRequest(f"finding {finding['finding_id']} ({finding['class']}) names no amount to adjust; "
                             "accept it, or correct it at its source")
    return adjust_book.Correction(channel=finding.get("channel") or d.get("channel") or "sandbox",
                                  currency=d.get("currency", "CNY"), amount=diff)


REPORT_COLUMNS = ("finding_id", "class", "channel", "subject_type", "subject_id", "expected", "actual", "status",
                  "detected_at", "business_date")


def report(p: Platform, date: str) -> dict:
    """The day's report: counts by class and status, and every finding of that day."""
    rows = list_findings(p, date=date)
    summary: dict[str, dict[str, int]] = {}
    for r in rows:
        summary.setdefault(r["class"], {"open": 0, "resolved": 0})[r["status"]] += 1
    return {"date": date, "total": len(rows), "open": sum(1 for r in rows if r["status"] == "open"),
            "summary": summary, "findings": rows}


def report_csv(rep: dict) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(REPORT_COLUMNS)
    for r in rep["findings"]:
        w.writerow([orjson.dumps(r[c]).decode() if c in ("expected", "actual") else r[c] for c in REPORT_COLUMNS])
    return out.getvalue()
