"""The T+1 run (`piaohao recon run`) and the near-real-time pass (the worker).

T+1, per channel: fetch and keep the day's bill (`bills`), match it both ways against our final
payments and refunds of that day (`matching`), classify the exceptions (grace period, keyed
look-ups of bill rows that belong to another of our days), then run the record checks (`checks`)
and the custom rules (`rules`) over the day, record the findings (deduplicated) and the run.
"""

from __future__ import annotations

import time as _time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import orjson
import structlog
from sqlalchemy import Connection, insert, select, union

from piaohao.channels.spi import BillRow, BillUnavailable
from piaohao.db.schema import payments
from piaohao.db.schema_recon import recon_findings, recon_runs
from piaohao.db.schema_refunds import refunds
from piaohao.kernel.clock import to_utc
from piaohao.kernel.ids import new_id
from piaohao.kernel.progress import SILENT, Progress
from piaohao.platform import Platform
from piaohao.recon import bills as bill_store
from piaohao.recon import checks, findings, rules
from piaohao.recon.findings import Finding
from piaohao.recon.matching import BillLine, MatchResult, OurRecord, match

log = structlog.get_logger(__name__)
__all__ = ["RunResult", "day_bounds", "realtime_pass", "run_day"]

LOOKUP_CHUNK = 900
OPEN_PAYMENT = ("created", "processing")


@dataclass
class RunResult:
    run_id: str
    date: str
    channels: list[str]
    matched: int
    findings: list[dict]
    summary: dict[str, int]
    in_flight: int = 0
    errors: list[str] = field(default_factory=list)
    engine: str = "python"
    elapsed_s: float = 0.0

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "date": self.date, "channels": self.channels, "matched": self.matched,
                "findings": self.findings, "summary": self.summary, "in_flight": self.in_flight,
                "errors": self.errors, "engine": self.engine, "elapsed_s": round(self.elapsed_s, 3)}


def day_bounds(p: Platform, day: date) -> tuple[datetime, datetime]:
    tz = p.settings.tz
    return (datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC),
            datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC))


def day_channels(p: Platform, day: date) -> list[str]:
    """The channels that carried payments or refunds that business day."""
    start, end = day_bounds(p, day)
    q = union(select(payments.c.channel).where(payments.c.status == "succeeded", payments.c.paid_at >= start,
                                               payments.c.paid_at < end),
              select(refunds.c.channel).where(refunds.c.status == "succeeded", refunds.c.channel.is_not(None),
                                              refunds.c.finished_at >= start, refunds.c.finished_at < end))
    with p.db.read() as conn:
        return sorted({r[0] for r in conn.execute(q) if r[0]})


def our_records(p: Platform, channel: str, day: date, grace_s: float) -> Iterator[OurRecord]:
    """Our final records of the day at one channel: payments by when the channel says they were
    paid (read by the finished_at index over the day plus the grace), refunds by when they ended."""
    start, end = day_bounds(p, day)
    pc, rc = payments.c, refunds.c
    with p.db.read() as conn:
        for r in conn.execute(select(pc.payment_no, pc.trade_no, pc.amount, pc.currency, pc.paid_at).where(
                pc.channel == channel, pc.status == "succeeded", pc.finished_at >= start,
                pc.finished_at < end + timedelta(seconds=max(grace_s, 86400.0)))):
            paid = r.paid_at or start
            if start <= paid < end:
                yield OurRecord("payment", r.payment_no, r.amount, r.currency, r.trade_no, paid)
        for r in conn.execute(select(rc.refund_no, rc.channel_amount, rc.currency, rc.finished_at).where(
                rc.channel == channel, rc.status == "succeeded", rc.channel_amount > 0, rc.finished_at >= start,
                rc.finished_at < end)):
            yield OurRecord("refund", r.refund_no, r.channel_amount, r.currency, r.refund_no, r.finished_at)


def _bill_lines(p: Platform, bill_id: str) -> Iterator[BillLine]:
    for r in bill_store.bill_rows(p, bill_id):
        key = r.payment_no if r.record_type == "payment" else (r.refund_no or r.channel_refund_no or "")
        yield BillLine(r.record_type, key, r.amount, r.currency, r.channel_refund_no or r.channel_txn_no,
                       r.finished_at, r.line_no)


def _lookup(conn: Connection, kind: str, keys: list[str]) -> dict[str, dict]:
    table, col = (payments, payments.c.payment_no) if kind == "payment" else (refunds, refunds.c.refund_no)
    out: dict[str, dict] = {}
    for i in range(0, len(keys), LOOKUP_CHUNK):
        for r in conn.execute(select(table).where(col.in_(keys[i:i + LOOKUP_CHUNK]))).mappings():
            out[r[col.name]] = dict(r)
    return out


def _when(v) -> datetime:
    return to_utc(v if isinstance(v, datetime) else datetime.fromisoformat(str(v)))


def classify(p: Platform, channel: str, day: str, res: MatchResult, now: datetime) -> tuple[list[Finding], int, int]:
    """Findings from the engine's exceptions; returns (findings, extra matched, in flight)."""
    grace = timedelta(seconds=p.settings.recon_grace_s)
    out: list[Finding] = []
    matched = in_flight = 0

    def subject(kind: str, key: str, rec: dict | None) -> tuple[str, str]:
        if kind == "payment":
            return ("trade", rec["trade_no"]) if rec else ("channel_txn", key)
        return ("refund", key) if rec else ("channel_txn", key)

    with p.db.read() as conn:
        known = {k: _lookup(conn, k, sorted({b.key for b in res.bill_only + [d for d, _ in res.duplicates]
                                             if b.kind == k})) for k in ("payment", "refund")}
        trade_of = _lookup(conn, "payment", sorted({b.key for b, _ in res.mismatched if b.kind == "payment"}))
    for b, n in res.duplicates:
        rec = known[b.kind].get(b.key)
        st, sid = subject(b.kind, b.key, rec)
        if st == "channel_txn":
            sid = b.channel_txn_no
        out.append(Finding("duplicate", st, sid, channel, expected=1, actual=n, business_date=day,
                           facet=f"bill:{b.kind}", details={"kind": b.kind, "key": b.key, "amount": b.amount,
                                                              "channel_txn_no": b.channel_txn_no}))
    for b, o in res.mismatched:
        sid = trade_of.get(b.key, {}).get("trade_no", o.subject_id) if b.kind == "payment" else b.key
        diff = (b.amount - o.amount) if b.kind == "payment" else (o.amount - b.amount)
        out.append(Finding("amount_mismatch", "trade" if b.kind == "payment" else "refund", sid, channel,
                           expected=o.amount, actual=b.amount, business_date=day, facet=f"bill:{b.kind}",
                           details={"kind": b.kind, "key": b.key, "currency": o.currency, "bill_currency": b.currency,
                                    "channel_txn_no": b.channel_txn_no, "adjust_amount": diff if
                                    b.currency == o.currency else None}))
    for b in res.bill_only:
        rec = known[b.kind].get(b.key)
        details = {"kind": b.kind, "key": b.key, "amount": b.amount, "currency": b.currency,
                   "channel_txn_no": b.channel_txn_no, "bill_finished_at": _when(b.finished_at).isoformat()}
        if rec is not None and rec["status"] == "succeeded":  # ours, on another of our days
            ours = rec["amount"] if b.kind == "payment" else rec["channel_amount"]
            if ours == b.amount and rec["currency"] == b.currency:
                matched += 1
            else:
                st, sid = subject(b.kind, b.key, rec)
                out.append(Finding("amount_mismatch", st, sid, channel, expected=ours, actual=b.amount,
                                   business_date=day, facet=f"bill:{b.kind}",
                                   details={**details, "adjust_amount": (b.amount - ours) if b.kind == "payment"
                                            else (ours - b.amount)}))
            continue
        if _when(b.finished_at) + grace > now and (rec is None or rec["status"] in OPEN_PAYMENT + ("processing",)):
            in_flight += 1
            continue
        if rec is None:
            out.append(Finding("channel_only", "channel_txn", b.channel_txn_no, channel, expected=None,
                               actual=b.amount, business_date=day, facet=f"bill:{b.kind}",
                               details={**details, "adjust_amount": b.amount if b.kind == "payment" else -b.amount}))
        elif b.kind == "payment":
            out.append(Finding("channel_only", "trade", rec["trade_no"], channel, expected=rec["status"],
                               actual="paid", business_date=day, facet="bill:payment",
                               details={**details, "payment_no": b.key, "adjust_amount": b.amount}))
        else:
            out.append(Finding("status_mismatch", "refund", b.key, channel, expected=rec["status"], actual="succeeded",
                               business_date=day, facet="bill:refund", details=details))
    for o in res.ours_only:
        if _when(o.finished_at) + grace > now:
            in_flight += 1
            continue
        st = "trade" if o.kind == "payment" else "refund"
        out.append(Finding("platform_only", st, o.subject_id, channel, expected=o.amount, actual=None,
                           business_date=day, facet=f"bill:{o.kind}",
                           details={"kind": o.kind, "key": o.key, "currency": o.currency,
                                    "adjust_amount": -o.amount if o.kind == "payment" else o.amount}))
    return out, matched, in_flight


def _save(p: Platform, kind: str, day: str | None, channels: list[str], engine: str, matched: int,
          found: list[Finding], started: datetime) -> tuple[str, list[dict], dict]:
    run_id = new_id("rcn")
    now = p.clock.now()
    summary = dict(Counter(f.cls for f in found))

    def work(conn: Connection) -> list[dict]:
        findings.record(conn, p, found, run_id=run_id, now=now)
        conn.execute(insert(recon_runs).values(run_id=run_id, kind=kind, business_date=day,
                                               channels=orjson.dumps(channels).decode(), engine=engine,
                                               matched=matched, findings=len(found),
                                               summary=orjson.dumps(summary).decode(), started_at=started,
                                               finished_at=now))
        keys = sorted({f.dedupe_key for f in found})
        rows = []
        for i in range(0, len(keys), LOOKUP_CHUNK):
            rows += conn.execute(select(recon_findings).where(recon_findings.c.dedupe_key.in_(
                keys[i:i + LOOKUP_CHUNK]), recon_findings.c.status == "open")).mappings().all()
        return [findings.view(r, p.settings.tz) for r in sorted(rows, key=lambda r: r["finding_id"])]

    views = p.db.write(work)
    open_summary = dict(Counter(v["class"] for v in views))
    return run_id, views, open_summary


def run_day(p: Platform, day: date, *, channel: str | None = None, bill_file: str | None = None,
            engine: str = "auto", progress: Progress = SILENT) -> RunResult:
    """Reconcile one business day (see module doc)."""
    t0 = _time.perf_counter()
    started = p.clock.now()
    chans = [channel] if channel else day_channels(p, day)
    if bill_file and not channel:
        raise ValueError("--bill-file needs --channel")
    found: list[Finding] = []
    matched = in_flight = 0
    errors: list[str] = []
    used = "python"
    progress.start(f"recon {day.isoformat()}", len(chans) + 1)
    for ch in chans:
        progress.advance(ch)
        try:
            rows: Iterable[BillRow] = (bill_store.read_bill_file(bill_file) if bill_file
                                       else p.channel(ch).download_bill(day))
            stored = bill_store.store_bill(p, ch, day, rows, source="file" if bill_file else "download")
        except BillUnavailable as e:
            errors.append(f"{ch}: bill unavailable: {e}")
            log.warning("recon.bill_unavailable", channel=ch, date=day.isoformat(), error=str(e))
            continue
        res = match(_bill_lines(p, stored.bill_id), our_records(p, ch, day, p.settings.recon_grace_s),
                    engine=engine, expected_rows=stored.row_count)
        used = res.engine
        got, more, waiting = classify(p, ch, day.isoformat(), res, p.clock.now())
        found += got
        matched += res.matched + more
        in_flight += waiting
    progress.advance("record checks and rules")
    start, _end = day_bounds(p, day)
    found += [Finding(f.cls, f.subject_type, f.subject_id, f.channel, f.expected, f.actual, f.details,
                      f.business_date or day.isoformat(), f.facet)
              for f in checks.run_checks(p, start, p.clock.now()) + rules.run_rules(p)]
    run_id, views, summary = _save(p, "bill", day.isoformat(), chans, used, matched, found, started)
    if errors:
        views_err = errors
    else:
        views_err = []
    return RunResult(run_id, day.isoformat(), chans, matched, views, summary, in_flight, views_err, used,
                     _time.perf_counter() - t0)


REALTIME_LOOKBACK_S = 2 * 86400.0  # records that changed this recently are re-checked every pass


def realtime_pass(p: Platform) -> RunResult:
    """One near-real-time pass: the record checks over what changed recently, and custom rules."""
    t0 = _time.perf_counter()
    now = p.clock.now()
    found = checks.run_checks(p, now - timedelta(seconds=REALTIME_LOOKBACK_S), now) + rules.run_rules(p)
    run_id, views, summary = _save(p, "realtime", None, [], "-", 0, found, now)
    return RunResult(run_id, "", [], 0, views, summary, engine="-", elapsed_s=_time.perf_counter() - t0)
