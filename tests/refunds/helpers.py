"""Arrange paid trades and read the books, for the refund tests (real HTTP, real sandbox)."""

from __future__ import annotations

from sqlalchemy import func, select

from piaohao import ledger
from piaohao.books import chart
from piaohao.db.schema import alerts, outbox_events, payments
from piaohao.db.schema_refunds import refunds
from tests.api.test_gateway import trade_body
from tests.support import patient
from tests.support.merchant import wait_until


def create_trade(m, receiver, out_trade_no: str, amount: int) -> dict:
    r = m.call("POST", "/v1/trades", trade_body(out_trade_no, amount, notify_url=receiver.url))
    assert r.status_code == 201, r.text
    return r.json()


def start(trade) -> str:
    r = patient.post(trade["pay_url"] + "/pay", json={"method": "sandbox"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["redirect_url"]


def succeed(redirect_url: str, mode: str | None = None) -> None:
    r = patient.post(redirect_url + "/succeed", json={"notify": mode} if mode else None, timeout=30)
    assert r.status_code < 300, r.text


def trade_of(m, trade) -> dict:
    return m.call("GET", f"/v1/trades/{trade['trade_no']}").json()


def paid_trade(m, receiver, out_trade_no: str = "A1", amount: int = 100) -> dict:
    """A trade paid in full with the sandbox channel, and known paid here."""
    trade = create_trade(m, receiver, out_trade_no, amount)
    succeed(start(trade))
    assert wait_until(lambda: trade_of(m, trade)["status"] == "succeeded"), "the trade was not paid"
    return trade_of(m, trade)


def refund(m, trade, key: str, amount, **extra):
    body = {"trade_no": trade["trade_no"], "out_request_no": key, "amount": amount, **extra}
    return m.call("POST", "/v1/refunds", body)


def refund_status(m, refund_no: str) -> str:
    return m.call("GET", f"/v1/refunds/{refund_no}").json()["status"]


def wait_refund(m, refund_no: str, status: str, timeout_s: float = 30) -> bool:
    return bool(wait_until(lambda: refund_status(m, refund_no) == status, timeout_s))


def count(running, table, *where) -> int:
    with running.platform.db.read() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def books_balance(running) -> list:
    return ledger.check(running.platform.db)


def posted(running, name: str, owner_id: str, currency: str = "CNY") -> int:
    """The posted balance of a standard account (0 if it does not exist)."""
    with running.platform.db.read() as conn:
        account = chart.lookup(conn, name, owner_id, currency)
        return ledger.balance(conn, account.account_id).posted if account else 0


def available(running, name: str, owner_id: str, currency: str = "CNY") -> int:
    with running.platform.db.read() as conn:
        account = chart.lookup(conn, name, owner_id, currency)
        return ledger.balance(conn, account.account_id).available if account else 0


def refund_rows(running, *where) -> list:
    with running.platform.db.read() as conn:
        return conn.execute(select(refunds).where(*where)).mappings().all()


def alert_count(running, kind: str) -> int:
    return count(running, alerts, alerts.c.kind == kind)


def event_count(running, type_: str, subject_id: str) -> int:
    return count(running, outbox_events, outbox_events.c.type == type_, outbox_events.c.subject_id == subject_id)


def payment_of(running, trade) -> dict:
    with running.platform.db.read() as conn:
        return conn.execute(select(payments).where(payments.c.trade_no == trade["trade_no"])
                            .order_by(payments.c.created_at)).mappings().first()
