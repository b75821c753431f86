"""The sandbox channel's business rules, callable in-process (the HTTP app is a thin shell).

Each method is one unit of work in the sandbox's own database and answers a dict in the
channel's wire vocabulary, or raises `SandboxError`. Status changes are conditional updates on
the current status (`WHERE status = 'WAIT_PAY'`), so a buyer paying while the merchant closes
resolves to exactly one winner on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import secrets
from datetime import date, datetime
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from piaohao.kernel.clock import Clock, SystemClock

from . import bank as bank_mod
from . import bill as bill_mod
from . import mandates as mandate_mod
from . import money_ops, rsa
from .faults import Fault, FaultBook
from .outbox import enqueue_payment
from .store import SandboxStore
from .wire import (
    NOTIFY_MODES,
    PAY_CLOSED,
    PAY_FAILED,
    PAY_SUCCESS,
    PAY_WAIT,
    SandboxError,
    format_time,
    new_number,
    parse_time,
    require_amount,
    require_currency,
    require_key,
    require_text,
    require_url,
)

__all__ = ["SandboxService"]

log = structlog.get_logger(__name__)

NOTIFY_DELAY_S_MAX = 86_400.0
DEFAULT_TZ = "Asia/Shanghai"

# The payment state table: (status, event) -> new status. Nothing else changes a status.
PAYMENT_TRANSITIONS = {
    (PAY_WAIT, "pay"): PAY_SUCCESS,
    (PAY_WAIT, "fail"): PAY_FAILED,
    (PAY_WAIT, "close"): PAY_CLOSED,
    (PAY_WAIT, "expire"): PAY_CLOSED,
}


class SandboxService:
    """Everything the sandbox does. `public_base_url` is where its HTTP app is reachable (used for
    the buyer page URL); `tz` names the business day of its bills."""

    def __init__(self, store: SandboxStore, *, public_base_url: str, clock: Clock | None = None,
                 tz: str = DEFAULT_TZ):
        self.store = store
        self.t = store.t
        self.public_base_url = public_base_url.rstrip("/")
        self.clock = clock or SystemClock()
        self.tz = ZoneInfo(tz)
        self.faults = FaultBook(store)

    # --- onboarding -------------------------------------------------------------------------

    def onboard(self, platform_public_key_pem: str, *, reuse_existing: bool = False) -> dict:
        """Register a merchant by its public key (a channel console's "upload your key").
        `reuse_existing`: a key already registered gets its merchant back instead of a new one,
        so a platform that restarts with the same key pair keeps its `mch_id`."""
        if not isinstance(platform_public_key_pem, str):
            raise SandboxError(400, "INVALID_PARAM", "platform_public_key_pem must be a PEM string")
        try:
            rsa.load_public(platform_public_key_pem)
        except rsa.InvalidKey as e:
            raise SandboxError(400, "INVALID_KEY", str(e)) from e
        channel_pem = self.store.channel_keys().public_pem
        if reuse_existing:
            m = self.t.merchants
            with self.store.read() as conn:
                known = conn.execute(select(m.c.mch_id).where(m.c.public_key_pem == platform_public_key_pem)
                                     .order_by(m.c.created_at, m.c.mch_id).limit(1)).scalar_one_or_none()
            if known is not None:
                return {"mch_id": known, "channel_public_key_pem": channel_pem}
        now = self.clock.now()
        mch_id = f"M{secrets.randbelow(10**15):015d}"
        self.store.write(lambda conn: conn.execute(insert(self.t.merchants).values(
            mch_id=mch_id, public_key_pem=platform_public_key_pem, created_at=now)))
        log.info("sandbox.merchant.onboarded", mch_id=mch_id)
        return {"mch_id": mch_id, "channel_public_key_pem": channel_pem}

    # --- faults (operator only) -------------------------------------------------------------

    def set_fault(self, op: str, kind: str, *, delay_s: float = 0.0, count: int | None = None,
                  out_trade_no: str | None = None, out_trade_nos: list[str] | None = None) -> Fault:
        data = {"op": op, "kind": kind, "delay_s": delay_s, "count": count, "out_trade_no": out_trade_no}
        if out_trade_nos is not None:
            data["out_trade_nos"] = out_trade_nos
        return self.faults.add(data, self.clock.now())

    def list_faults(self) -> list[Fault]:
        return self.faults.list()

    def clear_faults(self) -> int:
        return self.faults.clear()

    # --- payments ---------------------------------------------------------------------------

    def page_url(self, txn_no: str) -> str:
        return f"{self.public_base_url}/pay/{txn_no}"

    def payment_json(self, p) -> dict:
        return {
            "txn_no": p.txn_no, "mch_id": p.mch_id, "out_trade_no": p.out_trade_no, "amount": p.amount,
            "currency": p.currency, "subject": p.subject, "status": p.status,
            "refunded_amount": p.refunded_amount, "created_at": format_time(p.created_at),
            "expire_at": format_time(p.expire_at), "paid_at": format_time(p.paid_at),
            "finished_at": format_time(p.finished_at), "page_url": self.page_url(p.txn_no),
        }

    def _with_means(self, conn: Connection, answer: dict) -> dict:
        means = bank_mod.means_of(self, conn, answer["txn_no"])
        if means is not None:
            answer = {**answer, "bank": means.bank, "card_token": means.card_token}
        return answer

    def _by_out_trade_no(self, conn: Connection, mch_id: str, out_trade_no: str):
        p = self.t.payments
        return conn.execute(select(p).where(p.c.mch_id == mch_id, p.c.out_trade_no == out_trade_no)).first()

    def _by_txn_no(self, conn: Connection, txn_no: str):
        return conn.execute(select(self.t.payments).where(self.t.payments.c.txn_no == txn_no)).first()

    def _transition(self, conn: Connection, row, event: str, now: datetime, **values) -> bool:
        """Apply one state-table transition if the payment is still where we saw it."""
        new = PAYMENT_TRANSITIONS.get((row.status, event))
        if new is None:
            return False
        p = self.t.payments
        changed = conn.execute(update(p).where(p.c.txn_no == row.txn_no, p.c.status == row.status)
                               .values(status=new, finished_at=values.pop("finished_at", now), **values)).rowcount
        return changed == 1

    def _fresh(self, conn: Connection, row, now: datetime):
        """The payment as of now: an unpaid one past its expiry is closed first (as real channels do)."""
        if row.status == PAY_WAIT and row.expire_at <= now:
            self._transition(conn, row, "expire", now, finished_at=row.expire_at)
            row = self._by_txn_no(conn, row.txn_no)
        return row

    def pay(self, mch_id: str, data: dict) -> dict:
        """Create a payment; the same `out_trade_no` again answers the same payment (idempotent)."""
        out_trade_no = require_key(data, "out_trade_no")
        amount, currency = require_amount(data), require_currency(data)
        subject = require_text(data, "subject")
        notify_url = require_url(data, "notify_url")
        return_url = require_url(data, "return_url", optional=True)
        expire_at = parse_time(data.get("expire_at"), "expire_at")
        bank = data.get("bank")
        if bank is not None and bank not in bank_mod.BANKS:
            raise SandboxError(400, "INVALID_PARAM", f"bank must be one of {', '.join(bank_mod.BANKS)}")
        card_token = data.get("card_token")
        card = bank_mod.card_for_payment(self, mch_id, card_token) if card_token is not None else None
        mandate_no = data.get("mandate_no")
        debit_ok = mandate_mod.debit_allowed(self, mch_id, mandate_no, amount) if mandate_no is not None else None
        now = self.clock.now()

        def existing(conn: Connection) -> dict | None:
            row = self._by_out_trade_no(conn, mch_id, out_trade_no)
            if row is None:
                return None
            if row.amount != amount or row.currency != currency:
                raise SandboxError(409, "OUT_TRADE_NO_CONFLICT", "out_trade_no already used with another amount")
            return self.payment_json(self._fresh(conn, row, now))

        def create(conn: Connection) -> dict:
            found = existing(conn)
            if found is not None:
                return found
            txn_no = new_number("T", now)
            conn.execute(insert(self.t.payments).values(
                txn_no=txn_no, mch_id=mch_id, out_trade_no=out_trade_no, amount=amount, refunded_amount=0,
                currency=currency, subject=subject, notify_url=notify_url, return_url=return_url,
                status=PAY_WAIT, created_at=now, expire_at=expire_at))
            bank_mod.record_means(self, conn, txn_no, bank=bank, card_token=card_token, mandate_no=mandate_no)
            log.info("sandbox.payment.created", mch_id=mch_id, out_trade_no=out_trade_no, amount=amount)
            return self.payment_json(self._fresh(conn, self._by_txn_no(conn, txn_no), now))

        try:
            answer = self.store.write(create)
        except IntegrityError:
            # A concurrent twin inserted first (PostgreSQL); answer what it made.
            answer = self.store.write(existing)
            assert answer is not None, "unique violation without a row"
        if card is not None and answer["status"] == PAY_WAIT and card.last4 != bank_mod.SLOW_LAST4:
            # A bound card needs no buyer page: the bank answers at once (declined or paid).
            settle = self.fail if card.last4 == bank_mod.DECLINED_LAST4 else self.succeed
            answer = settle(answer["txn_no"])
        if debit_ok is not None and answer["status"] == PAY_WAIT:  # a debit: no buyer, the channel decides now
            answer = (self.succeed if debit_ok else self.fail)(answer["txn_no"])
        return answer

    def query(self, mch_id: str, data: dict) -> dict:
        out_trade_no = require_key(data, "out_trade_no")
        now = self.clock.now()

        def work(conn: Connection) -> dict:
            row = self._by_out_trade_no(conn, mch_id, out_trade_no)
            if row is None:
                raise SandboxError(404, "TRADE_NOT_EXIST", "no such out_trade_no", {"out_trade_no": out_trade_no})
            return self.payment_json(self._fresh(conn, row, now))

        return self.store.write(work)

    def close(self, mch_id: str, data: dict) -> dict:
        """Close an unpaid payment. A paid one is refused with 409 TRADE_PAID and its record."""
        out_trade_no = require_key(data, "out_trade_no")
        now = self.clock.now()

        def work(conn: Connection) -> dict:
            row = self._by_out_trade_no(conn, mch_id, out_trade_no)
            if row is None:
                raise SandboxError(404, "TRADE_NOT_EXIST", "no such out_trade_no", {"out_trade_no": out_trade_no})
            row = self._fresh(conn, row, now)
            if self._transition(conn, row, "close", now):
                log.info("sandbox.payment.closed", mch_id=mch_id, out_trade_no=out_trade_no)
            row = self._by_txn_no(conn, row.txn_no)
            if row.status == PAY_SUCCESS:
                raise SandboxError(409, "TRADE_PAID", "the buyer has paid", self.payment_json(row))
            return self.payment_json(row)

        return self.store.write(work)

    # --- the buyer's side -------------------------------------------------------------------

    def page(self, txn_no: str) -> dict:
        now = self.clock.now()

        def work(conn: Connection) -> dict:
            row = self._by_txn_no(conn, txn_no)
            if row is None:
                raise SandboxError(404, "TRADE_NOT_EXIST", "no such payment")
            return self._with_means(conn, self.payment_json(self._fresh(conn, row, now)))

        return self.store.write(work)

    def return_url(self, txn_no: str) -> str | None:
        with self.store.read() as conn:
            row = self._by_txn_no(conn, txn_no)
        return None if row is None else row.return_url

    @staticmethod
    def _notify_options(data: dict) -> tuple[str, float]:
        mode = data.get("notify", "normal")
        if mode not in NOTIFY_MODES:
            raise SandboxError(400, "INVALID_PARAM", f"notify must be one of {', '.join(NOTIFY_MODES)}")
        delay_s = data.get("notify_delay_s", 0)
        if isinstance(delay_s, bool) or not isinstance(delay_s, int | float) or not 0 <= delay_s <= NOTIFY_DELAY_S_MAX:
            raise SandboxError(400, "INVALID_PARAM", f"notify_delay_s must be 0..{NOTIFY_DELAY_S_MAX}")
        return mode, float(delay_s)

    def succeed(self, txn_no: str, data: dict | None = None) -> dict:
        """The buyer pays. Again on a paid payment: the same answer, no new notification."""
        return self._settle(txn_no, "pay", data or {})

    def fail(self, txn_no: str, data: dict | None = None) -> dict:
        """The buyer's payment fails (final). Again on a failed payment: the same answer."""
        return self._settle(txn_no, "fail", data or {})

    def _settle(self, txn_no: str, event: str, data: dict) -> dict:
        mode, delay_s = self._notify_options(data)
        bill_mode = data.get("bill")
        if bill_mode is not None and bill_mode not in bill_mod.PAYMENT_BILL_FAULTS:
            raise SandboxError(400, "INVALID_PARAM", f"bill must be one of {', '.join(bill_mod.PAYMENT_BILL_FAULTS)}")
        target = PAY_SUCCESS if event == "pay" else PAY_FAILED
        now = self.clock.now()

        def work(conn: Connection) -> dict:
            row = self._by_txn_no(conn, txn_no)
            if row is None:
                raise SandboxError(404, "TRADE_NOT_EXIST", "no such payment")
            row = self._fresh(conn, row, now)
            extra = {"paid_at": now} if event == "pay" else {}
            if self._transition(conn, row, event, now, notify_mode=mode, notify_delay_s=delay_s, **extra):
                row = self._by_txn_no(conn, txn_no)
                enqueue_payment(conn, self.t, row, status=target, finished_at=row.finished_at, mode=mode,
                                delay_s=delay_s, now=now)
                if bill_mode is not None and event == "pay":
                    bill_mod.mark(conn, self, bill_mode, now, txn_no=txn_no)
                log.info("sandbox.payment.settled", txn_no=txn_no, status=target, notify=mode)
            else:
                row = self._by_txn_no(conn, txn_no)
            if row.status != target:
                raise SandboxError(409, "TRADE_STATUS_ERROR", f"payment is {row.status}", self.payment_json(row))
            return self.payment_json(row)

        return self.store.write(work)

    # --- refunds, payouts, bills (rules in their own modules) -------------------------------

    def refund(self, mch_id: str, data: dict) -> dict:
        return money_ops.refund(self, mch_id, data)

    def refund_query(self, mch_id: str, data: dict) -> dict:
        return money_ops.refund_query(self, mch_id, data)

    def payout(self, mch_id: str, data: dict) -> tuple[dict, bool]:
        """The payout's record, and whether this call created it (the `0003` account's first call)."""
        return money_ops.payout(self, mch_id, data)

    def payout_query(self, mch_id: str, data: dict) -> dict:
        return money_ops.payout_query(self, mch_id, data)

    def bind_card(self, mch_id: str, data: dict) -> dict:
        return bank_mod.bind(self, mch_id, data)

    def confirm_card(self, mch_id: str, data: dict) -> dict:
        return bank_mod.confirm(self, mch_id, data)

    def unbind_card(self, mch_id: str, data: dict) -> dict:
        return bank_mod.unbind(self, mch_id, data)

    def create_mandate(self, mch_id: str, data: dict) -> dict:
        return mandate_mod.create(self, mch_id, data)

    def query_mandate(self, mch_id: str, data: dict) -> dict:
        return mandate_mod.query(self, mch_id, data)

    def terminate_mandate(self, mch_id: str, data: dict) -> dict:
        return mandate_mod.terminate(self, mch_id, data)

    def bill(self, mch_id: str, bill_date: date) -> bytes:
        return bill_mod.render(self, mch_id, bill_date)

    def bill_extra(self, data: dict) -> dict:
        """Add a payment no merchant made to a day's bill (`POST /bill/extra`)."""
        try:
            bill_date = date.fromisoformat(str(data.get("date", "")))
        except ValueError as e:
            raise SandboxError(400, "INVALID_PARAM", "date must be YYYY-MM-DD") from e
        amount = require_amount(data)
        now = self.clock.now()
        return self.store.write(lambda conn: bill_mod.mark(conn, self, "extra", now, bill_date=bill_date,
                                                           amount=amount))
