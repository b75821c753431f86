"""Pull mode (反查模式): the buyer opens the cashier with only the order number, and the platform asks
the merchant's order system (its PayInfo URL) for the payment information, so buyer, seller and
goods details never travel through the browser.

One open of `/cashier/orders/{app_id}/{out_trade_no}`:
  1. the app's merchant must have a PayInfo URL (else 404); a trade for the order already exists
     → that trade, without asking again;
  2. POST `{"out_trade_no": ...}` to the PayInfo URL, signed as notifications are (outside any
     transaction, through `outbound_post`, with `PIAOHAO_NOTIFY_TIMEOUT_S`);
  3. the answer must be `200`, signed over `RESPONSE\\n<path>\\n<X-Timestamp>\\n<X-Nonce>\\n<body>`
     with the app's secret, timestamp within 300 s, and a `POST /v1/trades` body about the same
     order; then the trade is created by the same use case as `POST /v1/trades` (every rule,
     idempotent on `out_trade_no`, so concurrent first opens make exactly one trade).
Failures: 404 from the order system → ORDER_NOT_FOUND; timeout, transport error or 5xx →
PAYINFO_UNAVAILABLE (the buyer may retry); anything unsigned, wrongly signed, unreadable or against
a trade rule → PAYINFO_INVALID (alert); amount 0 → ZERO_AMOUNT.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import orjson
import structlog
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from piaohao.alerts import raise_alert
from piaohao.db.schema import merchants
from piaohao.db.schema_payways import merchant_payinfo
from piaohao.kernel import signing
from piaohao.kernel.errors import (
    Conflict,
    IdempotencyConflict,
    InvalidInput,
    InvalidRequest,
    MerchantNotFound,
    NotFound,
    OrderNotFound,
    PayinfoInvalid,
    PayinfoUnavailable,
    ZeroAmount,
)
from piaohao.platform import Platform
from piaohao.services import trade_store
from piaohao.services.merchants import load_app_auth
from piaohao.services.trades import NewTrade, create_trade

__all__ = ["check_url", "set_payinfo_url", "payinfo_url_of", "open_order", "outbound_post", "OutboundAnswer"]

log = structlog.get_logger(__name__)

URL_LEN_MAX = 1024
ANSWER_BYTES_MAX = 64 * 1024
TIMESTAMP_SKEW_S_MAX = 300


def check_url(url: str) -> str:
    """Only absolute http(s) URLs; the private-address policy is the outbound transport's."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise InvalidRequest("the PayInfo URL is not a valid URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host or len(url) > URL_LEN_MAX:
        raise InvalidRequest("the PayInfo URL must be an absolute http(s) URL")
    return url


def set_payinfo_url(p: Platform, merchant_id: str, url: str | None) -> str | None:
    """Turn pull mode on (a URL) or off (None or empty) for a merchant."""
    url = check_url(url) if url else None
    now = p.clock.now()
    insert = pg_insert if p.db.engine.dialect.name == "postgresql" else sqlite_insert

    def tx(conn):
        if conn.execute(select(merchants.c.merchant_id).where(merchants.c.merchant_id == merchant_id)).first() is None:
            raise MerchantNotFound(f"no merchant {merchant_id}")
        if url is None:
            conn.execute(delete(merchant_payinfo).where(merchant_payinfo.c.merchant_id == merchant_id))
            return None
        stmt = insert(merchant_payinfo).values(merchant_id=merchant_id, payinfo_url=url, updated_at=now)
        conn.execute(stmt.on_conflict_do_update(index_elements=["merchant_id"],
                                                set_={"payinfo_url": url, "updated_at": now}))
        return url

    return p.db.write(tx)


def payinfo_url_of(p: Platform, merchant_id: str) -> str | None:
    with p.db.read() as conn:
        return conn.execute(select(merchant_payinfo.c.payinfo_url).where(
            merchant_payinfo.c.merchant_id == merchant_id)).scalar_one_or_none()


# --- the outbound call --------------------------------------------------------------------------

@dataclass(frozen=True)
class OutboundAnswer:
    status_code: int
    headers: dict[str, str]
    body: bytes


class OutboundTimeout(Exception):
    """No (complete) answer in time, or the connection failed: the outcome is unknown."""


def outbound_post(url: str, headers: dict[str, str], body: bytes, timeout_s: float) -> OutboundAnswer:
    """One POST to a merchant's URL, no redirects, bounded answer size. The one place pull mode
    reaches the outside: swap this for the guarded transport (private-address policy) when it lands."""
    check_url(url)
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False) as client, \
                client.stream("POST", url, content=body, headers=headers) as resp:
            chunks, size = [], 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > ANSWER_BYTES_MAX:
                    break
                chunks.append(chunk)
            return OutboundAnswer(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, b"".join(chunks))
    except httpx.HTTPError as exc:
        raise OutboundTimeout(f"{type(exc).__name__}") from exc


# Tests and the hardening work may replace this (same signature).
TRANSPORT: Callable[[str, dict[str, str], bytes, float], OutboundAnswer] = outbound_post


# --- opening an order ---------------------------------------------------------------------------

def _path(url: str) -> str:
    return httpx.URL(url).raw_path.decode("ascii")


def _ask(p: Platform, url: str, app_id: str, secret: str, out_trade_no: str) -> OutboundAnswer:
    body = orjson.dumps({"out_trade_no": out_trade_no})
    timestamp, nonce = str(int(p.clock.now().timestamp())), secrets.token_hex(16)
    headers = {"Content-Type": "application/json", "X-App-Id": app_id, "X-Timestamp": timestamp, "X-Nonce": nonce,
               "X-Signature": signing.sign(secret, "POST", _path(url), timestamp, nonce, body)}
    try:
        return TRANSPORT(url, headers, body, p.settings.notify_timeout_s)
    except OutboundTimeout as exc:
        log.warning("payinfo.unavailable", app_id=app_id, out_trade_no=out_trade_no, error=str(exc))
        raise PayinfoUnavailable("the order system did not answer in time; try again") from exc


def _verified(p: Platform, url: str, secrets_: tuple[str, ...], answer: OutboundAnswer) -> dict:
    ts, nonce = answer.headers.get("x-timestamp", ""), answer.headers.get("x-nonce", "")
    signature = answer.headers.get("x-signature", "")
    if not signature or not ts.isdigit() or not nonce:
        raise PayinfoInvalid("the order system's answer is not signed")
    if abs(p.clock.now().timestamp() - int(ts)) > TIMESTAMP_SKEW_S_MAX:
        raise PayinfoInvalid("the order system's answer is too old or from the future")
    if not any(signing.verify(s, signature, "RESPONSE", _path(url), ts, nonce, answer.body) for s in secrets_):
        raise PayinfoInvalid("the order system's answer signature does not verify")
    try:
        data = orjson.loads(answer.body)
    except orjson.JSONDecodeError as exc:
        raise PayinfoInvalid("the order system's answer is not JSON") from exc
    if not isinstance(data, dict):
        raise PayinfoInvalid("the order system's answer is not a JSON object")
    return data


def open_order(p: Platform, app_id: str, out_trade_no: str, parse: Callable[[dict], NewTrade]):
    """The trade row for a pull-mode order, created from the order system's PayInfo on first open.
    `parse` turns the answer (a `POST /v1/trades` body) into a `NewTrade`, raising ValueError."""
    auth = load_app_auth(p, app_id, p.clock.now())
    if auth is None or not auth.active:
        raise OrderNotFound("no such order")
    url = payinfo_url_of(p, auth.merchant_id)
    if url is None:
        raise OrderNotFound("this merchant does not use pull mode")
    existing = trade_store.find_by_out_trade_no(p, auth.merchant_id, out_trade_no)
    if existing is not None:
        return existing
    answer = _ask(p, url, app_id, auth.secrets[0], out_trade_no)
    if answer.status_code == 404:
        raise OrderNotFound("the order system has no such order")
    if answer.status_code >= 500:
        raise PayinfoUnavailable(f"the order system answered {answer.status_code}; try again")
    try:
        if answer.status_code != 200:
            raise PayinfoInvalid(f"the order system answered {answer.status_code}")
        data = _verified(p, url, auth.secrets, answer)
        if data.setdefault("out_trade_no", out_trade_no) != out_trade_no:
            raise PayinfoInvalid("the order system answered about another order")
        try:
            req = parse(data)
        except ValueError as exc:
            raise PayinfoInvalid(f"the order system's answer is not a valid trade: {str(exc)[:300]}") from exc
        try:
            create_trade(p, auth.merchant_id, app_id, req)
        except (ZeroAmount, IdempotencyConflict):
            raise
        except (InvalidInput, Conflict, NotFound) as exc:  # TRADE_EXPIRED, INVALID_ORDERS, MEMBER_NOT_FOUND...
            raise PayinfoInvalid(f"the order system's answer breaks a trade rule: {exc.code}: {exc.message}") from exc
    except PayinfoInvalid as exc:
        _alert(p, auth.merchant_id, app_id, out_trade_no, exc.message)
        raise
    except IdempotencyConflict:
        pass  # a concurrent open created the trade from another answer: that trade stands
    row = trade_store.find_by_out_trade_no(p, auth.merchant_id, out_trade_no)
    assert row is not None, "the trade was just created"
    return row


def _alert(p: Platform, merchant_id: str, app_id: str, out_trade_no: str, message: str) -> None:
    now = p.clock.now()
    p.db.write(lambda conn: raise_alert(conn, now=now, kind="payinfo_invalid", subject_type="order",
                                        subject_id=f"{app_id}/{out_trade_no}", message=message[:500],
                                        details={"merchant_id": merchant_id}))
    log.warning("payinfo.invalid", merchant_id=merchant_id, out_trade_no=out_trade_no, reason=message[:200])
