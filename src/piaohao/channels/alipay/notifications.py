"""Alipay's asynchronous notifications (`trade_status_sync`): verify, then read.

Order of checks, each a refusal (`NotificationRejected`) when it fails:
1. the form body parses in its declared charset;
2. `sign_type` is RSA2 and `sign` verifies with Alipay's public key over the received parameters
   without `sign` and `sign_type` (before any field is believed);
3. `app_id` is ours;
4. `trade_status`, `total_amount`, `notify_time` are readable, and `notify_time` is not older
   than `NOTIFY_AGE_MAX` (Alipay resends for about 25 hours) nor ahead of our clock by more than
   `NOTIFY_AHEAD_MAX`.
What the core must still check itself: that `payment_no` is a payment of this channel account
and that `amount` is that payment's amount.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric import rsa

from piaohao.channels.spi import ChannelNotification, NotificationRejected, Outcome
from piaohao.channels.spi.amounts import AmountFormatError, yuan_to_fen
from piaohao.channels.spi.crypto import rsa_verify

from .transformers import TRADE_OUTCOMES
from .wire import from_wire_time, notification_content

__all__ = ["NOTIFY_AGE_MAX", "NOTIFY_AHEAD_MAX", "NOTIFY_BODY_BYTES_MAX", "verify_notification"]

NOTIFY_AGE_MAX = timedelta(hours=48)  # generous: the last resend comes ~25 h after the first
NOTIFY_AHEAD_MAX = timedelta(minutes=10)  # clock skew we tolerate
NOTIFY_BODY_BYTES_MAX = 64 * 1024  # a real notification is a few KB
CHARSETS = {"utf-8": "utf-8", "gbk": "gbk", "gb2312": "gbk"}


def _parse(body: bytes) -> tuple[dict[str, str], str]:
    if len(body) > NOTIFY_BODY_BYTES_MAX:
        raise NotificationRejected("notification body too large")
    m = re.search(rb"(?:^|&)charset=([A-Za-z0-9_-]+)", body)
    charset = CHARSETS.get(m.group(1).decode().lower() if m else "utf-8")
    if charset is None:
        raise NotificationRejected("unsupported charset")
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True, encoding=charset,
                          errors="strict")
    except (UnicodeDecodeError, ValueError) as e:
        raise NotificationRejected(f"unreadable notification body: {type(e).__name__}") from None
    params = dict(pairs)
    if len(params) != len(pairs):
        raise NotificationRejected("a parameter appears twice")
    return params, charset


def verify_notification(body: bytes, *, alipay_public_key: rsa.RSAPublicKey, app_id: str,
                        now: datetime) -> ChannelNotification:
    params, charset = _parse(body)
    claimed = params.get("out_trade_no") or None
    if params.get("sign_type") != "RSA2":
        raise NotificationRejected("sign_type is not RSA2", claimed)
    if not rsa_verify(alipay_public_key, notification_content(params).encode(charset), params.get("sign")):
        raise NotificationRejected("signature does not verify with the Alipay public key", claimed)
    if params.get("app_id") != app_id:
        raise NotificationRejected("notification is for another app_id", claimed)
    if not claimed:
        raise NotificationRejected("no out_trade_no")
    status = params.get("trade_status", "")
    if status not in TRADE_OUTCOMES:
        raise NotificationRejected(f"unknown trade_status {status[:32]!r}", claimed)
    notify_time = from_wire_time(params.get("notify_time"))
    if notify_time is None:
        raise NotificationRejected("unreadable notify_time", claimed)
    # Not WeChat Pay's 300 s: Alipay resends a refused notification for ~25 h, and a resend may carry
    # the first sending's notify_time (the simulator models that), so only a replay older than any
    # resend, or a time from the future, is refused (the core raises a `notification_rejected` alert).
    age_s = int((now - notify_time).total_seconds())
    if notify_time < now - NOTIFY_AGE_MAX:
        raise NotificationRejected(f"notify_time is {age_s} s old, more than the {int(NOTIFY_AGE_MAX.total_seconds())}"
                                   " s a genuine resend can be", claimed)
    if notify_time > now + NOTIFY_AHEAD_MAX:
        raise NotificationRejected(f"notify_time is {-age_s} s ahead of our clock, more than the "
                                   f"{int(NOTIFY_AHEAD_MAX.total_seconds())} s skew allowed", claimed)
    refund_no = params.get("out_biz_no") or None
    try:
        # A refund notification carries `refund_fee`, the total refunded so far on the payment.
        amount = yuan_to_fen(params.get("refund_fee") if refund_no else params.get("total_amount"))
    except AmountFormatError as e:
        raise NotificationRejected(f"unreadable amount: {e}", claimed) from None
    raw = {k: v for k, v in params.items() if k != "sign"}
    if refund_no:
        # `refund_fee` is the payment's total refunded so far, not this refund's amount: not stated.
        return ChannelNotification(kind="refund", payment_no=claimed, outcome=Outcome.SUCCEEDED, amount=None,
                                   currency="CNY", channel_txn_no=params.get("trade_no"), refund_no=refund_no,
                                   finished_at=from_wire_time(params.get("gmt_refund")), raw=raw)
    outcome = TRADE_OUTCOMES[status]
    finished_at = from_wire_time(params.get("gmt_payment") if outcome is Outcome.SUCCEEDED
                                 else params.get("gmt_close"))
    return ChannelNotification(kind="payment", payment_no=claimed, outcome=outcome, amount=amount, currency="CNY",
                               channel_txn_no=params.get("trade_no"), finished_at=finished_at, raw=raw)
