"""Quick pay (快捷支付): binding a member's card at the channel, confirming it with the SMS code,
listing and unbinding, and finding the card a cashier payment names.

Card, id and phone numbers (and the holder's name) cross to the channel once, at binding, and are
stored only sealed; views, logs and errors carry `bank` and `last4`, never a full number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import structlog
from sqlalchemy import Connection, insert, select, update

from piaohao.channels.spi import BindCard, Outcome
from piaohao.db.schema_payways import member_cards
from piaohao.domain import cards as card_states
from piaohao.domain.cards import CARD_STATES, SMS_FAILURES_MAX
from piaohao.kernel.clock import rfc3339
from piaohao.kernel.errors import (
    CardNotActive,
    CardNotFound,
    ChannelUnavailable,
    InvalidRequest,
    InvalidSmsCode,
    MethodNotAvailable,
)
from piaohao.kernel.ids import new_id
from piaohao.platform import Platform
from piaohao.services import methods
from piaohao.services.members import load_member

__all__ = ["NewCard", "bind_card", "confirm_card", "list_cards", "unbind_card", "card_for_payment"]

log = structlog.get_logger(__name__)

CARD_RE = re.compile(r"^[0-9]{12,19}$")
ID_RE = re.compile(r"^[0-9]{15}$|^[0-9]{17}[0-9Xx]$")
PHONE_RE = re.compile(r"^1[0-9]{10}$")
SMS_CODE_RE = re.compile(r"^[0-9]{4,8}$")


@dataclass(frozen=True)
class NewCard:
    card_no: str
    holder_name: str
    id_number: str
    phone: str

    def __repr__(self) -> str:  # never the numbers, even in a traceback
        return f"NewCard(last4={self.card_no[-4:]!r})"


def card_view(p: Platform, row) -> dict:
    return {"card_id": row["card_id"], "member_id": row["member_id"], "bank": row["bank"], "last4": row["last4"],
            "status": row["status"], "created_at": rfc3339(row["created_at"], p.settings.tz)}


def _card_channel(p: Platform, merchant_id: str, currency: str):
    """The channel account that binds cards for this merchant (the one that offers quick pay)."""
    for m in methods.channel_methods(p, merchant_id, currency, 1):
        if m.product.card:
            return m.channel_key, p.channel(m.channel_key)
    raise MethodNotAvailable("no channel binds cards for this merchant")


def _validate(req: NewCard) -> None:
    # Messages never echo the values: they are card and id numbers.
    if not CARD_RE.match(req.card_no):
        raise InvalidRequest("card_no must be 12-19 digits")
    if not ID_RE.match(req.id_number):
        raise InvalidRequest("id_number must be a 15- or 18-character id number")
    if not PHONE_RE.match(req.phone):
        raise InvalidRequest("phone must be an 11-digit mobile number")
    if not req.holder_name.strip() or len(req.holder_name) > 128:
        raise InvalidRequest("holder_name must be 1-128 characters")


def bind_card(p: Platform, merchant_id: str, member_id: str, req: NewCard) -> dict:
    """Bind a card: the channel's bank sends an SMS; the card is `pending` until confirmed."""
    _validate(req)
    with p.db.read() as conn:
        member = load_member(conn, merchant_id, member_id)
    channel_key, channel = _card_channel(p, merchant_id, member["currency"])
    result = channel.bind_card(BindCard(card_no=req.card_no, holder_name=req.holder_name,
                                        id_number=req.id_number, phone=req.phone))
    if result.outcome is Outcome.FAILED:
        raise InvalidRequest(f"the bank refused the card: {result.error}")
    if result.outcome is not Outcome.PENDING or not result.card_token:
        log.warning("card.bind_unknown", member_id=member_id, last4=req.card_no[-4:], error=result.error)
        raise ChannelUnavailable("the bank did not answer; try again")
    sealer, now = p.sealer(), p.clock.now()
    row = {
        "card_id": new_id("card"), "merchant_id": merchant_id, "member_id": member_id, "channel": channel_key,
        "channel_card_token": result.card_token, "bank": result.bank, "last4": req.card_no[-4:],
        "card_no_sealed": sealer.seal(req.card_no, purpose="card_no"),
        "id_number_sealed": sealer.seal(req.id_number, purpose="id_number"),
        "phone_sealed": sealer.seal(req.phone, purpose="phone"),
        "holder_name_sealed": sealer.seal(req.holder_name, purpose="holder_name"),
        "status": card_states.PENDING, "sms_failures": 0, "created_at": now, "updated_at": now,
    }
    p.db.write(lambda conn: conn.execute(insert(member_cards).values(**row)))
    log.info("card.bound", card_id=row["card_id"], member_id=member_id, bank=result.bank, last4=row["last4"])
    return card_view(p, row)


def _load(conn: Connection, merchant_id: str, member_id: str, card_id: str, *, lock: bool = False):
    q = select(member_cards).where(member_cards.c.card_id == card_id, member_cards.c.member_id == member_id,
                                   member_cards.c.merchant_id == merchant_id)
    row = conn.execute(q.with_for_update() if lock else q).mappings().first()
    if row is None:
        raise CardNotFound("no such card")
    return row


def confirm_card(p: Platform, merchant_id: str, member_id: str, card_id: str, sms_code: object) -> dict:
    """The buyer types the SMS code: right → `active`; wrong → INVALID_SMS_CODE, the third → `failed`."""
    with p.db.read() as conn:
        card = _load(conn, merchant_id, member_id, card_id)
    if card["status"] == card_states.ACTIVE:
        return card_view(p, card)
    if card["status"] != card_states.PENDING:
        raise CardNotActive(f"the card is {card['status']}")
    if not isinstance(sms_code, str) or not SMS_CODE_RE.match(sms_code):
        result_outcome = Outcome.FAILED  # malformed: a wrong code, without asking the bank
    else:
        result_outcome = p.channel(card["channel"]).confirm_card(card["channel_card_token"], sms_code).outcome
    if result_outcome not in (Outcome.SUCCEEDED, Outcome.FAILED):
        raise ChannelUnavailable("the bank did not answer; try again")
    now = p.clock.now()

    def tx(conn: Connection) -> dict:
        row = _load(conn, merchant_id, member_id, card_id, lock=True)
        if row["status"] != card_states.PENDING:
            return dict(row)
        if result_outcome is Outcome.SUCCEEDED:
            values = {"status": CARD_STATES.next(row["status"], "confirm")}
        else:
            failures = row["sms_failures"] + 1
            values = {"sms_failures": failures}
            if failures >= SMS_FAILURES_MAX:
                values["status"] = CARD_STATES.next(row["status"], "fail")
        conn.execute(update(member_cards).where(member_cards.c.card_id == card_id,
                                                member_cards.c.status == row["status"]).values(
            updated_at=now, **values))
        return {**row, **values, "updated_at": now}

    after = p.db.write(tx)
    log.info("card.confirm", card_id=card_id, outcome=str(result_outcome), status=after["status"])
    if result_outcome is Outcome.FAILED:
        raise InvalidSmsCode("wrong verification code" + (f"; the card is {after['status']}"
                                                           if after["status"] != card_states.PENDING else ""),
                             card_status=after["status"])
    return card_view(p, after)


def list_cards(p: Platform, merchant_id: str, member_id: str) -> list[dict]:
    with p.db.read() as conn:
        load_member(conn, merchant_id, member_id)
        rows = conn.execute(select(member_cards).where(member_cards.c.member_id == member_id,
                                                       member_cards.c.merchant_id == merchant_id)
                            .order_by(member_cards.c.created_at, member_cards.c.card_id)).mappings().all()
    return [card_view(p, r) for r in rows]


def unbind_card(p: Platform, merchant_id: str, member_id: str, card_id: str) -> dict:
    """Unbind: the card never pays again (ours is final at once; the bank is told, best effort)."""
    now = p.clock.now()

    def tx(conn: Connection) -> dict:
        row = _load(conn, merchant_id, member_id, card_id, lock=True)
        if not CARD_STATES.allows(row["status"], "unbind"):
            return dict(row)
        status = CARD_STATES.next(row["status"], "unbind")
        conn.execute(update(member_cards).where(member_cards.c.card_id == card_id).values(
            status=status, updated_at=now))
        return {**row, "status": status, "updated_at": now}

    row = p.db.write(tx)
    if row["channel_card_token"]:
        result = p.channel(row["channel"]).unbind_card(row["channel_card_token"])
        log.info("card.unbound", card_id=card_id, channel_outcome=str(result.outcome))
    return card_view(p, row)


def card_for_payment(p: Platform, trade, card_id: object) -> str:
    """The channel token of the trade's member's active card `card_id` (quick pay)."""
    if not isinstance(card_id, str) or not card_id:
        raise InvalidRequest("quick pay needs card_id")
    if not trade["member_id"]:
        raise MethodNotAvailable("this trade names no member: quick pay needs the member's bound card")
    with p.db.read() as conn:
        card = _load(conn, trade["merchant_id"], trade["member_id"], card_id)
    if card["status"] != card_states.ACTIVE:
        raise CardNotActive(f"the card is {card['status']}")
    return card["channel_card_token"]


def active_cards(p: Platform, merchant_id: str, member_id: str) -> list[dict]:
    return [c for c in list_cards(p, merchant_id, member_id) if c["status"] == card_states.ACTIVE]
