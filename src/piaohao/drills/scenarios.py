"""The drill scenarios. Each injects one fault while payments, refunds and settlements run and
says what must happen:

- absorbed: the platform recovers by itself; passes when the money converged, the books balance
  and no finding is left open;
- detected: money changed behind our back or a channel's bill disagrees; passes only when the
  named check raises its finding (and alert) within its bound. The near-real-time checks have a
  bound of two PIAOHAO_RECON_INTERVAL_S; bill checks are the T+1 run, run by the drill itself.
Corrupted fields are put back afterwards (the drill's rollback), so scenarios can share a database.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from piaohao.drills.harness import Drill, drill_platform, wait_until
from piaohao.kernel.progress import SILENT, Progress
from piaohao.recon import findings as queue
from piaohao.services.settlement import run as settle_run

__all__ = ["SCENARIOS", "Scenario", "run_scenarios"]


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: str
    expects: str  # "absorbed" | "detected"
    check: str  # the finding class or check that must catch it ("-" when absorbed)
    act: Callable[[Drill, random.Random], dict]  # injects the fault and drives traffic; returns facts


def _traffic(d: Drill, rnd: random.Random, n: int = 2) -> list[dict]:
    """Background traffic: a few ordinary payments, one refunded in part."""
    trades = [d.pay(rnd.randint(100, 5000)) for _ in range(n)]
    rf = d.refund(trades[0], 50)
    wait_until(lambda: d.refund_status(rf["refund_no"]) == "succeeded")
    return trades


def _absorbed(notify: str) -> Callable[[Drill, random.Random], dict]:
    def act(d: Drill, rnd: random.Random) -> dict:
        _traffic(d, rnd, 1)
        t = d.pay(rnd.randint(100, 900), notify=notify)
        return {"recovered": d.status(t) == "succeeded"}
    return act


def _channel_timeout(op: str) -> Callable[[Drill, random.Random], dict]:
    def act(d: Drill, rnd: random.Random) -> dict:
        _traffic(d, rnd, 1)
        if op == "refund":
            t = d.pay(rnd.randint(200, 900))
            d.fault(op="refund", kind="timeout", delay_s=3.0, count=1)
            rf = d.refund(t, 100)
            ok = wait_until(lambda: d.refund_status(rf["refund_no"]) == "succeeded", 30)
            return {"recovered": bool(ok)}
        if op == "close":
            t = d.trade(rnd.randint(100, 900))
            d.start_pay(t)
            d.fault(op="close", kind="timeout", delay_s=3.0, count=1)
            first = d.call("POST", f"/v1/trades/{t['trade_no']}/close").status_code

            def closed() -> bool:  # the merchant asks again, as it must while the answer is unknown
                return d.call("POST", f"/v1/trades/{t['trade_no']}/close").status_code == 200 and \
                    d.status(t) == "closed"
            ok = wait_until(closed, 30, 0.3)
            return {"recovered": bool(ok), "close_answer": first}
        d.fault(op=op, kind="timeout", delay_s=3.0, count=1)
        t = d.pay(rnd.randint(100, 900), notify="never" if op == "query" else None)
        return {"recovered": d.status(t) == "succeeded"}
    return act


def _merchant_down(d: Drill, rnd: random.Random) -> dict:
    t = d.trade(rnd.randint(100, 900), notify_url="http://127.0.0.1:9/down")
    d.http.post(d.start_pay(t) + "/succeed")
    ok = wait_until(lambda: d.status(t) == "succeeded")
    parked = wait_until(lambda: d.scalar("SELECT count(*) FROM outbox_events WHERE status = 'parked'"), 20)
    return {"recovered": bool(ok) and bool(parked)}


def _killed(step: str) -> Callable[[Drill, random.Random], dict]:
    """Every worker is stopped in the middle of a step, then started again: the step must finish."""
    def act(d: Drill, rnd: random.Random) -> dict:
        if step == "dispatch":
            url, got, close = d.receiver()
            try:
                d.kill_workers()
                t = d.trade(rnd.randint(100, 900), notify_url=url)
                d.http.post(d.start_pay(t) + "/succeed")  # the channel's notice reaches the API, not the workers
                paid = wait_until(lambda: d.status(t) == "succeeded")
                d.restart_workers()
                delivered = wait_until(lambda: got, 20)
                return {"recovered": bool(paid) and bool(delivered)}
            finally:
                close()
        if step == "refund":
            t = d.pay(rnd.randint(200, 900))
            d.kill_workers()
            d.fault(op="refund", kind="timeout", delay_s=3.0, count=1)
            rf = d.refund(t, 100)  # the API's own try times out: unknown, left to the refund worker
            d.clear_faults()
            d.restart_workers()
            return {"recovered": bool(wait_until(lambda: d.refund_status(rf["refund_no"]) == "succeeded", 30))}
        # settlement: the workers die with orders due; the next run settles each exactly once

        _traffic(d, rnd, 2)
        d.kill_workers()
        d.restart_workers()
        settle_run(d.p, d.p.clock.now() + timedelta(days=3))
        again = settle_run(d.p, d.p.clock.now() + timedelta(days=3))
        twice = d.scalar("SELECT count(*) FROM (SELECT trade_no, out_order_no FROM settlement_details "
                         "GROUP BY trade_no, out_order_no HAVING count(*) > 1) x")
        return {"recovered": not twice and bool(again is not None)}
    return act


def _database_away(d: Drill, rnd: random.Random) -> dict:
    """The database goes away for a few seconds while a payment and a refund are in flight:
    SQLite is locked exclusively by another process' connection; PostgreSQL drops every session."""

    t = d.pay(rnd.randint(200, 900))
    away_s = 3.0
    if d.p.db.is_sqlite:
        path = d.p.settings.sqlite_path()

        def hold() -> None:
            c = sqlite3.connect(str(path), timeout=30, isolation_level=None)
            c.execute("BEGIN EXCLUSIVE")
            time.sleep(away_s)
            c.execute("COMMIT")
            c.close()
        th = threading.Thread(target=hold, daemon=True)
        th.start()
    else:
        with d.p.db.engine.connect() as c:
            c.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        th = None
    t2 = d.trade(rnd.randint(100, 900)) if th is None else None
    rf = d.refund(t, 100)
    if th is not None:
        th.join()
    ok = wait_until(lambda: d.refund_status(rf["refund_no"]) == "succeeded", 30)
    if t2 is not None:
        d.http.post(d.start_pay(t2) + "/succeed")
        ok = ok and wait_until(lambda: d.status(t2) == "succeeded", 30)
    return {"recovered": bool(ok)}


def _bill(mode: str) -> Callable[[Drill, random.Random], dict]:
    def act(d: Drill, rnd: random.Random) -> dict:
        _traffic(d, rnd, 1)
        if mode == "extra":
            r = d.http.post(d.url + "/sandbox/bill/extra", json={"date": d.today().isoformat(),
                                                                  "amount": rnd.randint(1, 999)})
            assert r.status_code == 201, r.text
        else:
            d.pay(rnd.randint(100, 900), bill=mode)
        d.day_run()
        return {"recovered": False}
    return act


def _corrupt(table: str) -> Callable[[Drill, random.Random], dict]:
    """Change a money field behind the platform's back; the worker must see it; then put it back."""
    def act(d: Drill, rnd: random.Random) -> dict:
        trades = _traffic(d, rnd, 2)
        if table == "payments":
            d.sql("UPDATE payments SET amount = amount + 1 WHERE trade_no = :t", t=trades[1]["trade_no"])
            undo = ("UPDATE payments SET amount = amount - 1 WHERE trade_no = :t", {"t": trades[1]["trade_no"]})
        elif table == "refunds":
            rn = d.scalar("SELECT refund_no FROM refunds WHERE status = 'succeeded' ORDER BY created_at DESC LIMIT 1")
            d.sql("UPDATE refunds SET amount = amount + 3 WHERE refund_no = :r", r=rn)
            undo = ("UPDATE refunds SET amount = amount - 3 WHERE refund_no = :r", {"r": rn})
        elif table == "ledger_legs":
            leg = d.scalar("SELECT l.leg_id FROM ledger_legs l JOIN ledger_entries e ON e.entry_id = l.entry_id "
                           "WHERE e.source_type = 'payment' AND e.source_id = (SELECT payment_no FROM payments "
                           "WHERE trade_no = :t) AND l.amount > 0", t=trades[1]["trade_no"])
            d.sql("UPDATE ledger_legs SET amount = amount + 1 WHERE leg_id = :l", l=leg)
            undo = ("UPDATE ledger_legs SET amount = amount - 1 WHERE leg_id = :l", {"l": leg})
        else:  # settlement_details
            settle_run(d.p, d.p.clock.now() + timedelta(days=3))
            key = d.scalar("SELECT batch_no FROM settlement_details ORDER BY created_at DESC LIMIT 1")
            assert key, "nothing was settled"
            d.sql("UPDATE settlement_details SET seller_amount = seller_amount + 1 WHERE batch_no = :b", b=key)
            undo = ("UPDATE settlement_details SET seller_amount = seller_amount - 1 WHERE batch_no = :b", {"b": key})
        return {"recovered": False, "undo": undo}
    return act


SCENARIOS: list[Scenario] = [
    Scenario("notify-duplicate", "the same notification 5 times at once", "absorbed", "-", _absorbed("duplicate")),
    Scenario("notify-lost", "no notification at all", "absorbed", "-", _absorbed("never")),
    Scenario("notify-forged", "notifications with an invalid signature", "absorbed", "-", _absorbed("bad_signature")),
    Scenario("notify-tampered", "signed notifications stating 1 unit less", "absorbed", "-",
             _absorbed("amount_mismatch")),
    Scenario("channel-timeout-pay", "the channel applies a pay call but the answer is lost", "absorbed", "-",
             _channel_timeout("pay")),
    Scenario("channel-timeout-query", "a lost notification and a query that times out", "absorbed", "-",
             _channel_timeout("query")),
    Scenario("channel-timeout-refund", "the channel applies a refund but the answer is lost", "absorbed", "-",
             _channel_timeout("refund")),
    Scenario("channel-timeout-close", "the channel applies a close but the answer is lost", "absorbed", "-",
             _channel_timeout("close")),
    Scenario("worker-killed-dispatch", "workers die with a merchant notification to send", "absorbed", "-",
             _killed("dispatch")),
    Scenario("worker-killed-refund", "workers die with a refund's outcome unknown", "absorbed", "-",
             _killed("refund")),
    Scenario("worker-killed-settlement", "workers die with orders due for settlement", "absorbed", "-",
             _killed("settlement")),
    Scenario("database-away", "the database is unavailable for 3 seconds mid-traffic", "absorbed", "-",
             _database_away),
    Scenario("merchant-down", "the merchant's endpoint never answers", "absorbed", "-", _merchant_down),
    Scenario("bill-row-removed", "a paid payment is missing from the bill", "detected", "platform_only",
             _bill("omit")),
    Scenario("bill-row-added", "the bill has a payment no merchant made", "detected", "channel_only", _bill("extra")),
    Scenario("bill-amount-off", "the bill states 1 unit less", "detected", "amount_mismatch", _bill("amount_off")),
    Scenario("bill-row-duplicated", "a payment appears twice on the bill", "detected", "duplicate",
             _bill("duplicate")),
    Scenario("corrupt-payment-amount", "payments.amount changed in the database", "detected", "ledger_mismatch",
             _corrupt("payments")),
    Scenario("corrupt-refund-amount", "refunds.amount changed in the database", "detected", "ledger_mismatch",
             _corrupt("refunds")),
    Scenario("corrupt-journal-leg", "a journal leg's amount changed in the database", "detected", "ledger_mismatch",
             _corrupt("ledger_legs")),
    Scenario("corrupt-settlement-detail", "a settlement detail changed in the database", "detected", "sum_mismatch",
             _corrupt("settlement_details")),
]


def _run_one(d: Drill, s: Scenario, seed: int) -> dict:
    rnd = random.Random(f"{seed}:{s.name}")
    before = d.open_finding_ids()
    d.clear_faults()
    t0 = time.monotonic()
    error = None
    try:
        facts = s.act(d, rnd)
    except AssertionError as e:
        facts, error = {"recovered": False}, str(e)
    t_injected = time.monotonic()
    d.clear_faults()
    bound_s = 2 * d.p.settings.recon_interval_s
    detected_by: list[str] = []
    time_to_detect = None
    if s.expects == "detected":
        def caught() -> list[str]:
            return sorted({f["class"] for f in __import__("piaohao.recon.findings", fromlist=["x"]).list_findings(
                d.p, open_only=True) if f["finding_id"] not in before})
        found = wait_until(lambda: s.check in caught(), bound_s + 1.0, 0.05)
        time_to_detect = round(time.monotonic() - t_injected, 3) if found else None
        detected_by = caught()
        if "undo" in facts:
            stmt, params = facts["undo"]
            d.sql(stmt, **params)
        if s.check in detected_by:
            kinds = d.alerts_kinds()
            detected_by += sorted(k for k in kinds if k == f"recon.{s.check}")
    else:
        d.realtime()
        d.day_run()
    new_open = d.open_finding_ids() - before
    if s.expects == "detected":
        for fid in new_open:  # the drill's own findings are closed once scored
            queue.resolve(d.p, fid, action="accept", note=f"drill {s.name}", operator="drill")
    balanced = d.books_balanced()
    recovered = bool(facts.get("recovered")) and balanced
    if s.expects == "absorbed":
        verdict = recovered and not new_open and error is None
    else:
        verdict = s.check in detected_by and time_to_detect is not None and (
            time_to_detect <= bound_s or s.check in ("platform_only", "channel_only", "amount_mismatch",
                                                      "duplicate"))
    out = {"scenario": s.name, "seed": seed, "fault": s.fault, "recovered": recovered,
           "detected": bool(detected_by), "detected_by": detected_by, "check": s.check,
           "time_to_detect_s": time_to_detect,
           "time_to_recover_s": round(t_injected - t0, 3) if s.expects == "absorbed" and recovered else None,
           "books_balanced": balanced, "verdict": "pass" if verdict else "fail"}
    if error:
        out["error"] = error[:300]
    if s.expects == "absorbed" and new_open:
        out["open_findings"] = sorted(new_open)
    return out


def run_scenarios(names: list[str], *, seed: int = 1, database_url: str | None = None, keep: bool = False,
                  progress: Progress = SILENT) -> list[dict]:
    chosen = SCENARIOS if names == ["all"] else [s for s in SCENARIOS if s.name in names]
    unknown = set(names) - {s.name for s in SCENARIOS} - {"all"}
    if unknown:
        raise KeyError(", ".join(sorted(unknown)))
    d = drill_platform(database_url)
    try:
        progress.start("drills", len(chosen))
        results = []
        for s in chosen:
            results.append(_run_one(d, s, seed))
            progress.advance(f"{s.name}: {results[-1]['verdict']}")
        return results
    finally:
        d.close()
        if d.folder and not keep:
            import shutil
            shutil.rmtree(d.folder, ignore_errors=True)
