"""Alipay's open-gateway wire format: common parameters, the RSA2 string to sign, signed answers,
wire times.

- A request is signed over every parameter except `sign`, empty values dropped, sorted by key,
  `k=v` joined by `&` with raw values, SHA256withRSA in the request charset.
- An answer `{"<method>_response":{...},"sign":"..."}` is signed over the exact bytes of the
  response object; we find them in the received bytes and never re-serialise.
- A notification is signed like a request but without `sign_type` either.
- Wire times are naive `yyyy-MM-dd HH:mm:ss` in Beijing time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone

__all__ = [
    "CHARSET", "SignedAnswer", "find_member", "from_wire_time", "member_key", "notification_content",
    "request_content", "to_wire_time",
]

CHARSET = "utf-8"
BEIJING = timezone(timedelta(hours=8))
WIRE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def to_wire_time(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("wire times need an aware datetime")
    return at.astimezone(BEIJING).strftime(WIRE_TIME_FORMAT)


def from_wire_time(text: str | None) -> datetime | None:
    """An aware UTC datetime from Alipay's Beijing wall time, or None if absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.strptime(text, WIRE_TIME_FORMAT).replace(tzinfo=BEIJING).astimezone(UTC)
    except ValueError:
        return None


def _content(params: Mapping[str, str], leave_out: frozenset[str]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in leave_out and v != "")


def request_content(params: Mapping[str, str]) -> str:
    return _content(params, frozenset({"sign"}))


def notification_content(params: Mapping[str, str]) -> str:
    return _content(params, frozenset({"sign", "sign_type"}))


def member_key(method: str) -> str:
    return method.replace(".", "_") + "_response"


class SignedAnswer:
    """The response object's exact bytes, its parsed form and the signature sent with it."""

    def __init__(self, signed_bytes: bytes, member: dict, sign: str | None):
        self.signed_bytes, self.member, self.sign = signed_bytes, member, sign


def _object_end(raw: bytes, start: int) -> int:
    """Index after the `}` closing the object that opens at `start`, or -1. Works on UTF-8 bytes:
    multi-byte characters never contain the ASCII bytes it looks for."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(raw)):
        c = raw[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == 0x5C:  # backslash
                escaped = True
            elif c == 0x22:  # quote
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c == 0x7B:  # {
            depth += 1
        elif c == 0x7D:  # }
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def find_member(raw: bytes, key: str) -> SignedAnswer | None:
    """The `key` response object of an answer, or None if the answer has no such object."""
    try:
        whole = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(whole, dict) or not isinstance(whole.get(key), dict):
        return None
    marker = raw.find(b'"' + key.encode() + b'"')
    start = raw.find(b"{", marker + len(key) + 2) if marker >= 0 else -1
    end = _object_end(raw, start) if start >= 0 else -1
    if end < 0:
        return None
    try:  # what we use is parsed from exactly the bytes the signature covers
        member = json.loads(raw[start:end])
    except ValueError:
        return None
    sign = whole.get("sign")
    return SignedAnswer(raw[start:end], member, sign if isinstance(sign, str) else None)
