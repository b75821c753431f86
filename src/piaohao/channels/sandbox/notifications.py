"""Checking and reading a notification from the sandbox channel, for the platform's callback.

The signature is checked on the raw bytes before anything is parsed; only then is the body
trusted and translated to a `ChannelNotification`. Anything wrong raises `NotificationRejected`
with the payment number the body claims (unverified, a hint to query early). The channel signs
each delivery afresh (timestamp and signature are made per attempt), so a notification whose
timestamp is more than `NOTIFICATION_AGE_MAX_S` from our clock is refused: a replay of a captured
notification is worth nothing after that.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from piaohao.channels.spi import ChannelNotification, NotificationRejected, Outcome

from . import rsa
from .wire import HEADER_SIGNATURE, HEADER_TIMESTAMP, response_canonical

__all__ = ["NOTIFICATION_AGE_MAX_S", "parse_notification"]

NOTIFICATION_AGE_MAX_S = 300

KIND_OUTCOMES = {
    "payment": {"SUCCESS": Outcome.SUCCEEDED, "FAILED": Outcome.FAILED, "CLOSED": Outcome.CLOSED,
                "WAIT_PAY": Outcome.PENDING},
    "refund": {"SUCCESS": Outcome.SUCCEEDED, "FAIL": Outcome.FAILED, "PROCESSING": Outcome.PENDING},
    "payout": {"SUCCESS": Outcome.SUCCEEDED, "FAIL": Outcome.FAILED, "PROCESSING": Outcome.PENDING},
}


def _claimed_payment_no(body: bytes) -> str | None:
    """What an unverified body says its payment is; never trusted, only a hint."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    value = data.get("out_trade_no") if isinstance(data, dict) else None
    return value if isinstance(value, str) and len(value) <= 64 else None


def _optional_str(data: dict, field: str) -> str | None:
    value = data.get(field)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{field} must be a string")
    return value


def parse_notification(channel_public_pem: str, mch_id: str, headers: dict[str, str],
                       body: bytes, now: datetime | None = None) -> ChannelNotification:
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(HEADER_TIMESTAMP.lower(), "")
    signature = lowered.get(HEADER_SIGNATURE.lower())
    if not signature or not timestamp:
        raise NotificationRejected("missing signature headers", _claimed_payment_no(body))
    if not rsa.verify(channel_public_pem, response_canonical(timestamp, body), signature):
        raise NotificationRejected("signature does not verify", _claimed_payment_no(body))
    if now is not None and not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12
                                and abs(int(timestamp) - now.timestamp()) <= NOTIFICATION_AGE_MAX_S):
        raise NotificationRejected(f"timestamp more than {NOTIFICATION_AGE_MAX_S} s from our clock",
                                   _claimed_payment_no(body))
    try:
        data = orjson.loads(body)
        if not isinstance(data, dict):
            raise ValueError("body is not a JSON object")
        kind = data.get("kind")
        if kind not in KIND_OUTCOMES:
            raise ValueError(f"unknown kind {kind!r}")
        if data.get("mch_id") != mch_id:
            raise ValueError("notification is for another merchant")
        outcome = KIND_OUTCOMES[kind].get(data.get("status"))
        if outcome is None:
            raise ValueError(f"unknown status {data.get('status')!r}")
        amount = data.get("amount")
        if type(amount) is not int or amount < 0:
            raise ValueError("amount must be an integer of minor units")
        currency = data.get("currency")
        if not isinstance(currency, str):
            raise ValueError("currency must be a string")
        finished = _optional_str(data, "finished_at")
        return ChannelNotification(
            kind=kind, payment_no=_optional_str(data, "out_trade_no"), outcome=outcome, amount=amount,
            currency=currency, channel_txn_no=_optional_str(data, "txn_no"),
            refund_no=_optional_str(data, "out_refund_no"), payout_no=_optional_str(data, "out_payout_no"),
            finished_at=datetime.fromisoformat(finished) if finished else None, raw=data,
        )
    except (orjson.JSONDecodeError, ValueError) as e:
        raise NotificationRejected(f"unreadable notification: {e}", _claimed_payment_no(body)) from e
