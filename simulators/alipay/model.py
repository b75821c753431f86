"""What the fake Alipay remembers: apps, trades, refunds, queued notifications. Plain data; the
rules that change it live in `service.py`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "App", "BEIJING", "Notification", "Refund", "Trade", "beijing_text", "fen_text", "parse_beijing", "parse_yuan",
]

BEIJING = timezone(timedelta(hours=8))  # Alipay's wire times are naive Beijing times
WIRE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Alipay's amount grammar: yuan, at most two decimals, as a string ("0.01", "20", "100.5").
_YUAN = re.compile(r"(0|[1-9][0-9]{0,15})(?:\.([0-9]{1,2}))?")

WAIT_BUYER_PAY = "WAIT_BUYER_PAY"
TRADE_SUCCESS = "TRADE_SUCCESS"
TRADE_FINISHED = "TRADE_FINISHED"
TRADE_CLOSED = "TRADE_CLOSED"


def parse_yuan(value: object) -> int | None:
    """Fen from a yuan string, or None: numbers (JSON floats/ints), '1e3', '1.234', '-1' are refused."""
    if not isinstance(value, str):
        return None
    m = _YUAN.fullmatch(value)
    if not m:
        return None
    return int(m.group(1)) * 100 + int((m.group(2) or "0").ljust(2, "0"))


def fen_text(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def beijing_text(at: datetime) -> str:
    return at.astimezone(BEIJING).strftime(WIRE_TIME_FORMAT)


def parse_beijing(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, WIRE_TIME_FORMAT).replace(tzinfo=BEIJING)
    except (TypeError, ValueError):
        return None


@dataclass
class App:
    app_id: str
    public_key: rsa.RSAPublicKey
    pid: str  # the merchant's Alipay partner id (2088...), the seller_id of its trades
    seller_email: str


@dataclass
class Refund:
    out_request_no: str
    amount_fen: int
    fee_returned_fen: int
    refunded_at: datetime
    reason: str = ""


@dataclass
class Trade:
    app_id: str
    out_trade_no: str
    trade_no: str
    total_fen: int
    subject: str
    product_code: str
    notify_url: str
    created_at: datetime
    expires_at: datetime
    status: str = WAIT_BUYER_PAY
    paid_at: datetime | None = None
    closed_at: datetime | None = None
    fee_fen: int = 0
    buyer_id: str = "2088102177846880"
    buyer_logon_id: str = "buy***@example.com"
    refunds: dict[str, Refund] = field(default_factory=dict)

    @property
    def refunded_fen(self) -> int:
        return sum(r.amount_fen for r in self.refunds.values())


@dataclass
class Notification:
    """One asynchronous notification and its delivery state. `notify_id` stays the same across
    resends, as Alipay's does."""

    notify_id: str
    app_id: str
    out_trade_no: str
    url: str
    params: dict[str, str]
    due_at: datetime
    attempts: int = 0
    delivered: bool = False  # the receiver answered exactly `success`
    given_up: bool = False
    duplicate: bool = False  # deliver each attempt twice (fault)
    answers: list[str] = field(default_factory=list)
