"""The fake's records: merchants, trades, refunds and queued notifications."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["Merchant", "Notification", "Refund", "Trade"]


@dataclass
class Merchant:
    mchid: str
    appid: str
    api_serial_no: str  # the merchant API certificate's serial, upper-case hex
    api_public_key_pem: str  # its public key (or the certificate PEM)
    apiv3_key: str  # 32 ASCII characters
    key_mode: str = "public_key"  # "public_key" (PUB_KEY_ID_…) or "certificate" (platform certificate)
    fee_rate_ppm: int = 6000  # 0.60 %


@dataclass
class Trade:
    mchid: str
    appid: str
    out_trade_no: str
    trade_type: str  # NATIVE | MWEB (h5) | JSAPI
    description: str
    total_fen: int
    currency: str
    notify_url: str
    created_at: datetime
    time_expire: datetime | None
    request_fingerprint: str  # re-entry with other parameters is refused
    prepay: dict  # what the prepay call answered (code_url / h5_url / prepay_id)
    attach: str | None = None
    openid: str | None = None
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: datetime | None = None
    refunded_fen: int = 0


@dataclass
class Refund:
    mchid: str
    out_trade_no: str
    transaction_id: str
    out_refund_no: str
    refund_id: str
    refund_fen: int
    total_fen: int
    currency: str
    reason: str | None
    notify_url: str | None
    created_at: datetime
    status: str = "PROCESSING"  # then SUCCESS | CLOSED | ABNORMAL
    success_time: datetime | None = None


@dataclass
class Notification:
    id: str
    mchid: str
    url: str
    event_type: str  # TRANSACTION.SUCCESS | REFUND.SUCCESS | REFUND.ABNORMAL | REFUND.CLOSED
    original_type: str  # transaction | refund
    summary: str
    resource: dict  # the plaintext resource
    out_trade_no: str
    create_time: datetime
    next_at: datetime
    attempts: int = 0
    acked: bool = False
    given_up: bool = False
    extra_after_ack: bool = False  # duplicate fault: one more send after the ack
    answers: list[int] = field(default_factory=list)  # HTTP status per try (0: no answer)
