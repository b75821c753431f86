"""Notifications the sandbox owes its merchants, written in the same transaction as the fact
they report (so a payment can never succeed without its notification being queued), and sent
later by `SandboxNotifier`.

A body is stored as the exact bytes that will be sent, so every retry and every duplicate copy
carries an identical body; only the timestamp and signature headers are made per attempt.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert

from .store import SandboxTables
from .wire import PAY_SUCCESS, dumps, format_time

__all__ = ["DUPLICATE_COPIES", "new_notify_id", "enqueue", "enqueue_payment", "payment_body", "refund_body",
           "payout_body"]

DUPLICATE_COPIES = 5


def new_notify_id() -> str:
    return "ntf_" + secrets.token_hex(10)


def payment_body(notify_id: str, p, *, status: str, finished_at: datetime | None, amount: int,
                 now: datetime) -> dict:
    """A payment notification. `amount` is passed in so the `amount_mismatch` fault can lie."""
    return {
        "notify_id": notify_id, "notify_time": format_time(now), "kind": "payment",
        "mch_id": p.mch_id, "out_trade_no": p.out_trade_no, "txn_no": p.txn_no,
        "amount": amount, "currency": p.currency, "status": status,
        "finished_at": format_time(finished_at),
    }


def refund_body(notify_id: str, r, *, status: str, finished_at: datetime | None, now: datetime) -> dict:
    return {
        "notify_id": notify_id, "notify_time": format_time(now), "kind": "refund",
        "mch_id": r["mch_id"], "out_trade_no": r["out_trade_no"], "txn_no": r["txn_no"],
        "out_refund_no": r["out_refund_no"], "refund_id": r["refund_id"],
        "amount": r["amount"], "currency": r["currency"], "status": status,
        "finished_at": format_time(finished_at), "fail_reason": r.get("fail_reason"),
    }


def payout_body(notify_id: str, r, *, now: datetime) -> dict:
    return {
        "notify_id": notify_id, "notify_time": format_time(now), "kind": "payout",
        "mch_id": r["mch_id"], "out_payout_no": r["out_payout_no"], "payout_id": r["payout_id"],
        "amount": r["amount"], "currency": r["currency"], "status": r["status"],
        "finished_at": format_time(r.get("finished_at")), "fail_reason": r.get("fail_reason"),
    }


def enqueue(conn: Connection, t: SandboxTables, *, body: dict, url: str, out_trade_no: str | None,
            now: datetime, delay_s: float = 0.0, copies: int = 1, sign_mode: str = "valid") -> None:
    """Queue `copies` deliveries of one notification, first due `delay_s` from now."""
    assert 1 <= copies <= DUPLICATE_COPIES, "copies out of range"
    assert sign_mode in ("valid", "bad"), "unknown sign mode"
    raw = dumps(body).decode()
    next_at = now + timedelta(seconds=delay_s)
    conn.execute(insert(t.notifications), [
        {"id": "nd_" + secrets.token_hex(10), "notify_id": body["notify_id"], "mch_id": body["mch_id"],
         "kind": body["kind"], "out_trade_no": out_trade_no, "url": url, "body": raw, "sign_mode": sign_mode,
         "status": "pending", "attempts": 0, "next_at": next_at, "created_at": now}
        for _ in range(copies)
    ])


def enqueue_payment(conn: Connection, t: SandboxTables, p, *, status: str, finished_at: datetime | None,
                    mode: str, delay_s: float, now: datetime) -> None:
    """Queue a payment's notification the way its notify `mode` says (see API.md, Sandbox faults)."""
    if mode == "never":
        return
    amount = p.amount - 1 if mode == "amount_mismatch" and status == PAY_SUCCESS else p.amount
    body = payment_body(new_notify_id(), p, status=status, finished_at=finished_at, amount=amount, now=now)
    enqueue(conn, t, body=body, url=p.notify_url, out_trade_no=p.out_trade_no, now=now, delay_s=delay_s,
            copies=DUPLICATE_COPIES if mode == "duplicate" else 1,
            sign_mode="bad" if mode == "bad_signature" else "valid")
