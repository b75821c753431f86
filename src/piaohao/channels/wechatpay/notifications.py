"""Incoming notifications [W7][W8]: the signature over `timestamp\\nnonce\\nbody\\n` with the platform
key of the named serial is checked on the raw bytes before anything is parsed, then the
timestamp (within 300 s of our clock), then the resource is decrypted (AEAD_AES_256_GCM, APIv3
key) and must be about our merchant (and app). Anything else raises `NotificationRejected`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from piaohao.channels.spi import ChannelNotification, NotificationRejected, Outcome
from piaohao.channels.spi.crypto import aes_gcm_decrypt

from .config import WechatPayConfig
from .transformers import parse_time, payment_from_transaction, refund_from_record
from .wire import check_signature

__all__ = ["NOTIFY_BODY_BYTES_MAX", "parse_notification"]

NOTIFY_BODY_BYTES_MAX = 64 * 1024
PAYMENT_EVENTS = {"TRANSACTION.SUCCESS"}
REFUND_EVENTS = {"REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED"}


def _decrypt(config: WechatPayConfig, envelope: Any) -> dict | None:
    if not isinstance(envelope, dict) or envelope.get("resource_type") != "encrypt-resource":
        return None
    resource = envelope.get("resource")
    if not isinstance(resource, dict) or resource.get("algorithm") != "AEAD_AES_256_GCM":
        return None
    fields = [resource.get(k) for k in ("nonce", "associated_data", "ciphertext")]
    if not all(isinstance(f, str) for f in (fields[0], fields[2])):
        return None
    plaintext = aes_gcm_decrypt(config.apiv3_key.encode(), fields[0], fields[1] or "", fields[2])
    if plaintext is None:
        return None
    try:
        data = json.loads(plaintext)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _claimed(config: WechatPayConfig, body: bytes) -> str | None:
    """What a refused notification says it is about: a hint to query early, never trusted."""
    try:
        data = _decrypt(config, json.loads(body))
    except (ValueError, UnicodeDecodeError):
        return None
    no = data.get("out_trade_no") if data else None
    return no if isinstance(no, str) else None


def parse_notification(config: WechatPayConfig, headers: Mapping[str, str], body: bytes,
                       now: datetime) -> ChannelNotification:
    if len(body) > NOTIFY_BODY_BYTES_MAX:
        raise NotificationRejected("notification body too large")
    lower = {k.lower(): v for k, v in headers.items()}
    why = check_signature(config, lower, body, now)
    if why is not None:
        raise NotificationRejected(why, _claimed(config, body))
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise NotificationRejected("notification is not JSON") from e
    data = _decrypt(config, envelope)
    if data is None:
        raise NotificationRejected("resource does not decrypt with our APIv3 key")
    event = envelope.get("event_type")
    claimed = data.get("out_trade_no") if isinstance(data.get("out_trade_no"), str) else None
    if data.get("mchid") != config.mchid:
        raise NotificationRejected("notification is for another merchant", claimed)
    if event in PAYMENT_EVENTS:
        return _payment(config, data, claimed)
    if event in REFUND_EVENTS:
        return _refund(data, event, claimed)
    raise NotificationRejected(f"unsupported event_type {str(event)[:40]!r}", claimed)


def _payment(config: WechatPayConfig, data: dict, claimed: str | None) -> ChannelNotification:
    if data.get("appid") != config.appid:
        raise NotificationRejected("notification is for another app", claimed)
    result = payment_from_transaction(config, data, claimed or "")
    if result.outcome is not Outcome.SUCCEEDED or result.amount is None or not result.currency:
        raise NotificationRejected(f"payment notification not a readable success: {result.error}", claimed)
    return ChannelNotification(kind="payment", payment_no=claimed, outcome=Outcome.SUCCEEDED, amount=result.amount,
                               currency=result.currency, channel_txn_no=result.channel_txn_no,
                               finished_at=result.paid_at, raw=data)


def _refund(data: dict, event: str, claimed: str | None) -> ChannelNotification:
    refund_no = data.get("out_refund_no") if isinstance(data.get("out_refund_no"), str) else ""
    result = refund_from_record(data, refund_no, status_field="refund_status")
    if result.outcome is Outcome.UNKNOWN or not refund_no or claimed is None:
        raise NotificationRejected(f"refund notification unreadable: {result.error}", claimed)
    if event != f"REFUND.{data.get('refund_status')}":
        raise NotificationRejected("event_type and refund_status disagree", claimed)
    return ChannelNotification(kind="refund", payment_no=claimed, outcome=result.outcome, amount=result.amount,
                               currency="CNY", channel_txn_no=data.get("transaction_id"), refund_no=refund_no,
                               finished_at=parse_time(data.get("success_time")), raw=data)
