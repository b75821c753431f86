"""The sandbox's wire vocabulary, shared by its server side and its client adapter.

The sandbox pretends to be a third-party channel, so it has its own names (`out_trade_no`,
`txn_no`, `WAIT_PAY`, ...) and its own signature scheme. Everything both sides must agree on
lives here: header names, the bytes that get signed, JSON encoding, time format, limits, and
the input checks that turn a bad request into a `SandboxError` (an HTTP status plus a code).
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

import orjson

from piaohao.kernel.money import AMOUNT_MAX, CURRENCY_RE

__all__ = [
    "HEADER_MCH_ID", "HEADER_TIMESTAMP", "HEADER_SIGNATURE", "TIMESTAMP_SKEW_S_MAX",
    "PAY_WAIT", "PAY_SUCCESS", "PAY_FAILED", "PAY_CLOSED",
    "REFUND_PROCESSING", "REFUND_SUCCESS", "REFUND_FAIL",
    "PAYOUT_PROCESSING", "PAYOUT_SUCCESS", "PAYOUT_FAIL",
    "NOTIFY_MODES", "SandboxError", "request_canonical", "response_canonical",
    "dumps", "loads_object", "format_time", "parse_time", "new_number",
    "require_key", "require_amount", "require_currency", "require_text", "optional_text", "require_url",
]

# Header names on every signed merchant API request, every response, and every notification.
HEADER_MCH_ID = "Sandbox-Mch-Id"
HEADER_TIMESTAMP = "Sandbox-Timestamp"
HEADER_SIGNATURE = "Sandbox-Signature"
TIMESTAMP_SKEW_S_MAX = 300

# Payment statuses (the channel's own words).
PAY_WAIT = "WAIT_PAY"
PAY_SUCCESS = "SUCCESS"
PAY_FAILED = "FAILED"
PAY_CLOSED = "CLOSED"

REFUND_PROCESSING = "PROCESSING"
REFUND_SUCCESS = "SUCCESS"
REFUND_FAIL = "FAIL"

PAYOUT_PROCESSING = "PROCESSING"
PAYOUT_SUCCESS = "SUCCESS"
PAYOUT_FAIL = "FAIL"

NOTIFY_MODES = ("normal", "duplicate", "never", "bad_signature", "amount_mismatch")

KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TEXT_LEN_MAX = 256
URL_LEN_MAX = 2048
BODY_BYTES_MAX = 64 * 1024


class SandboxError(Exception):
    """A request the sandbox refuses: `status` is the HTTP status, `code` the channel's error code.
    `extra` is merged into the (signed) error body, e.g. the paid payment on a refused close."""

    def __init__(self, status: int, code: str, message: str = "", extra: dict | None = None):
        super().__init__(f"{code}: {message}" if message else code)
        self.status = status
        self.code = code
        self.message = message or code.replace("_", " ").lower()
        self.extra = extra or {}

    def body(self) -> dict:
        return {**self.extra, "code": self.code, "msg": self.message}


def new_number(prefix: str, now: datetime) -> str:
    """A channel-style number: a letter, the UTC date, 16 random digits (`T2026112312345...`)."""
    return f"{prefix}{now.astimezone(UTC):%Y%m%d}{secrets.randbelow(10**16):016d}"


def request_canonical(method: str, path_and_query: str, timestamp: str, body: bytes) -> bytes:
    """What a merchant signs: `METHOD\\nPATH_AND_QUERY\\nTIMESTAMP\\nBODY`. The path is relative to
    the sandbox's base URL (`/api/pay`, `/api/bill?date=2026-11-23`), so the signature does not
    depend on where the sandbox is mounted."""
    return b"\n".join([method.upper().encode(), path_and_query.encode(), timestamp.encode(), body])


def response_canonical(timestamp: str, body: bytes) -> bytes:
    """What the sandbox signs on its answers and its notifications: `TIMESTAMP\\nBODY`."""
    return timestamp.encode() + b"\n" + body


def dumps(obj: dict) -> bytes:
    """Deterministic JSON bytes (sorted keys), so a stored notification body is re-sent byte for byte."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def loads_object(body: bytes) -> dict:
    """Parse a JSON object or refuse with 400 (an empty body is an empty object)."""
    if not body.strip():
        return {}
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise SandboxError(400, "INVALID_JSON", "body is not valid JSON") from e
    if not isinstance(value, dict):
        raise SandboxError(400, "INVALID_JSON", "body must be a JSON object")
    return value


def format_time(value: datetime | None, tz=UTC) -> str | None:
    if value is None:
        return None
    return value.astimezone(tz).isoformat(timespec="seconds")


def parse_time(value: object, field: str) -> datetime:
    """RFC 3339 with an offset; a naive time is refused because it is ambiguous."""
    if not isinstance(value, str):
        raise SandboxError(400, "INVALID_PARAM", f"{field} must be an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise SandboxError(400, "INVALID_PARAM", f"{field} is not an RFC 3339 time") from e
    if parsed.tzinfo is None:
        raise SandboxError(400, "INVALID_PARAM", f"{field} needs a UTC offset")
    return parsed.astimezone(UTC)


def require_key(data: dict, field: str) -> str:
    """A merchant-side key (`out_trade_no`, ...): 1-64 chars of `[A-Za-z0-9_-]`."""
    value = data.get(field)
    if not isinstance(value, str) or not KEY_RE.match(value):
        raise SandboxError(400, "INVALID_PARAM", f"{field} must be 1-64 chars of [A-Za-z0-9_-]")
    return value


def require_amount(data: dict, field: str = "amount") -> int:
    """A positive int of minor units. Floats, bools, strings and negatives are refused."""
    value = data.get(field)
    if type(value) is not int or not 1 <= value <= AMOUNT_MAX:
        raise SandboxError(400, "INVALID_AMOUNT", f"{field} must be an integer of minor units, 1..{AMOUNT_MAX}")
    return value


def require_currency(data: dict, field: str = "currency") -> str:
    value = data.get(field)
    if not isinstance(value, str) or not CURRENCY_RE.match(value):
        raise SandboxError(400, "INVALID_PARAM", f"{field} must be an ISO 4217 code")
    return value


def require_text(data: dict, field: str, length_max: int = TEXT_LEN_MAX) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value.strip() or len(value) > length_max:
        raise SandboxError(400, "INVALID_PARAM", f"{field} must be a non-empty string of at most {length_max} chars")
    return value


def optional_text(data: dict, field: str, length_max: int = TEXT_LEN_MAX) -> str | None:
    if data.get(field) is None:
        return None
    return require_text(data, field, length_max)


def require_url(data: dict, field: str, *, optional: bool = False) -> str | None:
    value = data.get(field)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > URL_LEN_MAX or not value.startswith(("http://", "https://")):
        raise SandboxError(400, "INVALID_PARAM", f"{field} must be an http(s) URL")
    return value
