"""The sandbox's simulated banks: cards bound for quick pay, and online-banking pages.

Binding: `POST /api/card/bind` {card_no, holder_name, id_number, phone} answers a PENDING card and
"sends" an SMS whose code is always `111111`; `POST /api/card/confirm` {card_token, sms_code}
activates it (another code: 400 INVALID_SMS_CODE); `POST /api/card/unbind` {card_token}. The bank
keeps only the bank's name and the last four digits: full numbers are never stored or logged.

Paying with a card (`/api/pay` with `card_token`) needs no buyer page: a card ending in `0002` is
declined (the payment FAILED), one ending in `0003` stays WAIT_PAY until the bank settles it (the
page's `/succeed` or `/fail`, then a notification), any other is paid at once (and notified).
Online banking (`/api/pay` with `bank`) is the ordinary buyer page, naming the bank.
"""

from __future__ import annotations

import re

import structlog
from sqlalchemy import Connection, insert, select, update

from .wire import SandboxError, new_number, require_text

__all__ = ["BANKS", "SMS_CODE", "bind", "confirm", "unbind", "card_for_payment", "record_means", "means_of",
           "DECLINED_LAST4", "SLOW_LAST4"]

log = structlog.get_logger(__name__)

BANKS = ("ICBC", "CCB", "ABC", "BOC", "CMB")
SMS_CODE = "111111"
DECLINED_LAST4 = "0002"
SLOW_LAST4 = "0003"
BIN_BANKS = {"622202": "ICBC", "621700": "CCB", "622848": "ABC", "621661": "BOC", "622588": "CMB"}
CARD_RE = re.compile(r"^[0-9]{12,19}$")
ID_RE = re.compile(r"^[0-9]{15}$|^[0-9]{17}[0-9Xx]$")
PHONE_RE = re.compile(r"^[0-9]{11}$")
PENDING, ACTIVE, UNBOUND = "PENDING", "ACTIVE", "UNBOUND"


def _card_json(row) -> dict:
    return {"card_token": row.card_token, "bank": row.bank, "last4": row.last4, "status": row.status}


def _check(data: dict, field: str, pattern: re.Pattern) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not pattern.match(value):
        raise SandboxError(400, "INVALID_PARAM", f"{field} is not valid")  # never echo the value
    return value


def bind(svc, mch_id: str, data: dict) -> dict:
    card_no = _check(data, "card_no", CARD_RE)
    _check(data, "id_number", ID_RE)
    _check(data, "phone", PHONE_RE)
    require_text(data, "holder_name", 128)
    now = svc.clock.now()
    token = new_number("C", now)
    bank = BIN_BANKS.get(card_no[:6], "ICBC")

    def work(conn: Connection) -> dict:
        conn.execute(insert(svc.t.cards).values(card_token=token, mch_id=mch_id, bank=bank, last4=card_no[-4:],
                                                status=PENDING, created_at=now, updated_at=now))
        return _card_json(_card(svc, conn, mch_id, token))

    answer = svc.store.write(work)
    log.info("sandbox.card.bind", mch_id=mch_id, card_token=token, last4=card_no[-4:])
    return answer


def _find(svc, conn: Connection, mch_id: str, token: object):
    t = svc.t.cards
    return conn.execute(select(t).where(t.c.card_token == token, t.c.mch_id == mch_id)).first()


def _card(svc, conn: Connection, mch_id: str, token: object):
    row = _find(svc, conn, mch_id, token)
    if row is None:
        raise SandboxError(404, "CARD_NOT_EXIST", "no such card")
    return row


def confirm(svc, mch_id: str, data: dict) -> dict:
    token, code = data.get("card_token"), data.get("sms_code")
    now = svc.clock.now()

    def work(conn: Connection) -> dict:
        row = _card(svc, conn, mch_id, token)
        if row.status == ACTIVE:
            return _card_json(row)
        if row.status != PENDING:
            raise SandboxError(409, "CARD_STATUS_ERROR", f"card is {row.status}", _card_json(row))
        if code != SMS_CODE:
            raise SandboxError(400, "INVALID_SMS_CODE", "wrong verification code", _card_json(row))
        conn.execute(update(svc.t.cards).where(svc.t.cards.c.card_token == token,
                                               svc.t.cards.c.status == PENDING).values(status=ACTIVE, updated_at=now))
        return _card_json(_card(svc, conn, mch_id, token))

    return svc.store.write(work)


def unbind(svc, mch_id: str, data: dict) -> dict:
    token = data.get("card_token")
    now = svc.clock.now()

    def work(conn: Connection) -> dict:
        _card(svc, conn, mch_id, token)
        conn.execute(update(svc.t.cards).where(svc.t.cards.c.card_token == token).values(
            status=UNBOUND, updated_at=now))
        return _card_json(_card(svc, conn, mch_id, token))

    return svc.store.write(work)


def card_for_payment(svc, mch_id: str, token: object):
    """The active card a payment names, or 400 CARD_NOT_ACTIVE."""
    with svc.store.read() as conn:
        row = _find(svc, conn, mch_id, token)
    if row is None or row.status != ACTIVE:
        raise SandboxError(400, "CARD_NOT_ACTIVE", "the card is not bound and active")
    return row


def record_means(svc, conn: Connection, txn_no: str, *, bank: str | None, card_token: str | None,
                 mandate_no: str | None = None) -> None:
    if bank is None and card_token is None and mandate_no is None:
        return
    conn.execute(insert(svc.t.payment_means).values(txn_no=txn_no, bank=bank, card_token=card_token,
                                                    mandate_no=mandate_no))


def means_of(svc, conn: Connection, txn_no: str):
    return conn.execute(select(svc.t.payment_means).where(svc.t.payment_means.c.txn_no == txn_no)).first()
