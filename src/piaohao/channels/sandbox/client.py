"""`SandboxChannel`: the platform's adapter for the sandbox channel (implements `channels.base.Channel`).

It translates the core's types to the sandbox's wire vocabulary and back, signs every request
with the platform's private key and verifies every answer with the channel's public key. It
never raises for network trouble: a timeout, a refused connection, a 5xx, an answer whose
signature does not verify or that cannot be read all become `Outcome.UNKNOWN` with `error`,
to be settled later by a query. A 4xx is a definite refusal (nothing happened) and maps to
FAILED, except where "nothing happened" is not certain (a 401, an idempotency-key conflict on
a refund or payout, or a refused query), which stays UNKNOWN.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import date, datetime
from typing import Any

import httpx
import orjson
import structlog

from piaohao.channels.spi import (
    BillRow,
    BindCard,
    CardResult,
    ChannelNotification,
    CreateMandate,
    CreatePayment,
    MandateResult,
    NextAction,
    NextActionType,
    NotificationAck,
    Outcome,
    PaymentResult,
    PayoutRequest,
    PayoutResult,
    Product,
    RefundRequest,
    RefundResult,
)
from piaohao.channels.spi import types as spi_types
from piaohao.kernel.clock import Clock, SystemClock

from . import rsa
from .bank import BANKS
from .notifications import parse_notification
from .wire import (
    HEADER_MCH_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    PAY_CLOSED,
    PAY_FAILED,
    PAY_SUCCESS,
    PAY_WAIT,
    dumps,
    request_canonical,
    response_canonical,
)

__all__ = ["SandboxChannel", "ChannelUnavailable", "onboard_remote"]

log = structlog.get_logger(__name__)

PAYMENT_OUTCOMES = {PAY_WAIT: Outcome.PENDING, PAY_SUCCESS: Outcome.SUCCEEDED, PAY_FAILED: Outcome.FAILED,
                    PAY_CLOSED: Outcome.CLOSED}
MONEY_OUTCOMES = {"PROCESSING": Outcome.PENDING, "SUCCESS": Outcome.SUCCEEDED, "FAIL": Outcome.FAILED}
BILL_TYPES = {"TRADE": "payment", "REFUND": "refund"}
# 4xx codes that mean "we don't know": the key already names something else, so it may have moved money.
UNCERTAIN_CODES = {"REFUND_CONFLICT", "PAYOUT_CONFLICT"}


class ChannelUnavailable(spi_types.BillUnavailable):
    """The bill could not be fetched or trusted (the one call whose result has no `Outcome`)."""


class _Answer:
    """A verified answer: HTTP status, the raw body, and the parsed JSON (None for CSV)."""

    def __init__(self, status: int, body: bytes, data: dict | None):
        self.status, self.body, self.data = status, body, data or {}

    @property
    def code(self) -> str:
        return str(self.data.get("code", ""))

    @property
    def error(self) -> str:
        return f"{self.status} {self.code}: {self.data.get('msg', '')}".strip()


class _Trouble(Exception):
    """Network trouble or an untrustworthy answer: the outcome is unknown."""


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


class SandboxChannel:
    """The sandbox channel as the core sees it. Thread-safe (an `httpx.Client` is)."""

    name = "sandbox"
    products = (Product("sandbox", title="Sandbox channel (test payments)"),
                Product("netbank", title="Online banking", banks=BANKS),
                Product("quick", title="Quick pay (bound card)", card=True),
                Product("agreement", title="Agreement pay (debit under a mandate)", mandate=True))

    def __init__(self, base_url: str, mch_id: str, private_key_pem: str, channel_public_key_pem: str, *,
                 timeout_s: float = 5.0, http_client: httpx.Client | None = None, clock: Clock | None = None):
        self.base_url = base_url.rstrip("/")
        self.mch_id = mch_id
        self._private_pem = private_key_pem
        self._channel_pem = channel_public_key_pem
        self.timeout_s = timeout_s
        self.http = http_client or httpx.Client(timeout=timeout_s)
        self.clock = clock or SystemClock()

    # --- transport --------------------------------------------------------------------------

    def _call(self, method: str, path_and_query: str, payload: dict | None = None, *,
              csv_answer: bool = False) -> _Answer:
        body = dumps(payload) if payload is not None else b""
        timestamp = str(int(self.clock.now().timestamp()))
        signature = rsa.sign(self._private_pem, request_canonical(method, path_and_query, timestamp, body))
        headers = {HEADER_MCH_ID: self.mch_id, HEADER_TIMESTAMP: timestamp, HEADER_SIGNATURE: signature}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self.http.request(method, self.base_url + path_and_query, content=body, headers=headers,
                                         timeout=self.timeout_s)
        except httpx.TimeoutException as e:
            raise _Trouble(f"timeout: {type(e).__name__}") from e
        except httpx.HTTPError as e:
            raise _Trouble(f"transport: {type(e).__name__}: {e}") from e
        if response.status_code >= 500:
            raise _Trouble(f"channel error: HTTP {response.status_code}")
        answer_ts = response.headers.get(HEADER_TIMESTAMP, "")
        if not rsa.verify(self._channel_pem, response_canonical(answer_ts, response.content),
                          response.headers.get(HEADER_SIGNATURE)):
            raise _Trouble(f"answer signature does not verify (HTTP {response.status_code})")
        if csv_answer and response.status_code == 200:
            return _Answer(200, response.content, None)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError as e:
            raise _Trouble("answer is not JSON") from e
        if not isinstance(data, dict):
            raise _Trouble("answer is not a JSON object")
        return _Answer(response.status_code, response.content, data)

    def _payment(self, data: dict, outcome: Outcome, error: str | None = None) -> PaymentResult:
        return PaymentResult(outcome=outcome, redirect_url=data.get("page_url") if outcome is Outcome.PENDING else None,
                             channel_txn_no=data.get("txn_no"), amount=_int(data.get("amount")),
                             currency=data.get("currency"), paid_at=_time(data.get("paid_at")), error=error)

    def _payment_answer(self, answer: _Answer, payment_no: str) -> PaymentResult:
        """Map a payment record; it must be about the payment we asked for."""
        data = answer.data
        if data.get("out_trade_no") != payment_no:
            return PaymentResult(Outcome.UNKNOWN, error="answer is about another payment")
        outcome = PAYMENT_OUTCOMES.get(data.get("status"))
        if outcome is None:
            return PaymentResult(Outcome.UNKNOWN, error=f"unknown status {data.get('status')!r}")
        if outcome is Outcome.SUCCEEDED and _int(data.get("amount")) is None:
            return PaymentResult(Outcome.UNKNOWN, error="paid without an amount")
        return self._payment(data, outcome)

    # --- payments ---------------------------------------------------------------------------

    def create_payment(self, req: CreatePayment) -> PaymentResult:
        payload = {"out_trade_no": req.payment_no, "amount": req.amount, "currency": req.currency,
                   "subject": req.subject, "notify_url": req.notify_url,
                   "expire_at": req.expires_at.isoformat(), "return_url": req.return_url}
        if req.bank is not None:
            payload["bank"] = req.bank
        if req.card_token is not None:
            payload["card_token"] = req.card_token
        if req.mandate_no is not None:
            payload["mandate_no"] = req.mandate_no
        try:
            answer = self._call("POST", "/api/pay", payload)
        except _Trouble as e:
            return PaymentResult(Outcome.UNKNOWN, error=str(e))
        if answer.status == 200:
            result = self._payment_answer(answer, req.payment_no)
            if req.card_token is not None or req.mandate_no is not None:  # no buyer page
                result = dataclasses.replace(result, redirect_url=None)
            elif result.outcome == Outcome.PENDING and result.redirect_url:
                result = dataclasses.replace(
                    result, next_action=NextAction(NextActionType.REDIRECT, url=result.redirect_url))
            return result
        if answer.status == 401:  # not even read: an earlier try may still have created it
            return PaymentResult(Outcome.UNKNOWN, error=answer.error)
        return PaymentResult(Outcome.FAILED, error=answer.error)  # refused: nothing was created

    def query_payment(self, payment_no: str) -> PaymentResult:
        try:
            answer = self._call("POST", "/api/query", {"out_trade_no": payment_no})
        except _Trouble as e:
            return PaymentResult(Outcome.UNKNOWN, error=str(e))
        if answer.status == 200:
            return self._payment_answer(answer, payment_no)
        if answer.status == 404 and answer.code == "TRADE_NOT_EXIST":
            return PaymentResult(Outcome.NOT_FOUND, error=answer.error)
        return PaymentResult(Outcome.UNKNOWN, error=answer.error)

    def close_payment(self, payment_no: str) -> PaymentResult:
        try:
            answer = self._call("POST", "/api/close", {"out_trade_no": payment_no})
        except _Trouble as e:
            return PaymentResult(Outcome.UNKNOWN, error=str(e))
        if answer.status == 200 or (answer.status == 409 and answer.code in ("TRADE_PAID",)):
            return self._payment_answer(answer, payment_no)
        if answer.status == 404 and answer.code == "TRADE_NOT_EXIST":
            return PaymentResult(Outcome.NOT_FOUND, error=answer.error)
        return PaymentResult(Outcome.UNKNOWN, error=answer.error)

    # --- bound cards (quick pay) -----------------------------------------------------------

    CARD_OUTCOMES = {"PENDING": Outcome.PENDING, "ACTIVE": Outcome.SUCCEEDED, "UNBOUND": Outcome.CLOSED}

    def _card(self, path: str, payload: dict) -> CardResult:
        try:
            answer = self._call("POST", path, payload)
        except _Trouble as e:
            return CardResult(Outcome.UNKNOWN, error=str(e))
        if answer.status == 200 and answer.data.get("status") in self.CARD_OUTCOMES:
            d = answer.data
            return CardResult(self.CARD_OUTCOMES[d["status"]], card_token=d.get("card_token"), bank=d.get("bank"),
                              last4=d.get("last4"))
        if 400 <= answer.status < 500 and answer.status != 401:
            return CardResult(Outcome.FAILED, error=answer.code or answer.error)
        return CardResult(Outcome.UNKNOWN, error=answer.error)

    def bind_card(self, req: BindCard) -> CardResult:
        return self._card("/api/card/bind", {"card_no": req.card_no, "holder_name": req.holder_name,
                                             "id_number": req.id_number, "phone": req.phone})

    def confirm_card(self, card_token: str, sms_code: str) -> CardResult:
        return self._card("/api/card/confirm", {"card_token": card_token, "sms_code": sms_code})

    def unbind_card(self, card_token: str) -> CardResult:
        return self._card("/api/card/unbind", {"card_token": card_token})

    # --- mandates (agreement pay) ----------------------------------------------------------

    MANDATE_OUTCOMES = {"WAIT_SIGN": Outcome.PENDING, "SIGNED": Outcome.SUCCEEDED, "REJECTED": Outcome.FAILED,
                        "TERMINATED": Outcome.CLOSED}

    def _mandate(self, path: str, payload: dict) -> MandateResult:
        try:
            answer = self._call("POST", path, payload)
        except _Trouble as e:
            return MandateResult(Outcome.UNKNOWN, error=str(e))
        d = answer.data
        if answer.status == 200 and d.get("status") in self.MANDATE_OUTCOMES \
                and d.get("out_mandate_no") == payload["out_mandate_no"]:
            return MandateResult(self.MANDATE_OUTCOMES[d["status"]], sign_url=d.get("sign_url"),
                                 channel_mandate_no=d.get("mandate_id"))
        if answer.status == 404 and answer.code == "MANDATE_NOT_EXIST":
            return MandateResult(Outcome.NOT_FOUND, error=answer.error)
        return MandateResult(Outcome.UNKNOWN, error=answer.error)

    def create_mandate(self, req: CreateMandate) -> MandateResult:
        return self._mandate("/api/mandate/create", {"out_mandate_no": req.mandate_no,
                                                     "max_amount": req.max_amount_per_debit,
                                                     "currency": req.currency})

    def query_mandate(self, mandate_no: str) -> MandateResult:
        return self._mandate("/api/mandate/query", {"out_mandate_no": mandate_no})

    def terminate_mandate(self, mandate_no: str) -> MandateResult:
        return self._mandate("/api/mandate/terminate", {"out_mandate_no": mandate_no})

    # --- refunds ----------------------------------------------------------------------------

    def _refund_answer(self, answer: _Answer, refund_no: str) -> RefundResult:
        data = answer.data
        outcome = MONEY_OUTCOMES.get(data.get("status"))
        if data.get("out_refund_no") != refund_no or outcome is None:
            return RefundResult(Outcome.UNKNOWN, error="answer is about another refund or unreadable")
        return RefundResult(outcome, channel_refund_no=data.get("refund_id"), amount=_int(data.get("amount")),
                            finished_at=_time(data.get("finished_at")), error=data.get("fail_reason"))

    def refund(self, req: RefundRequest) -> RefundResult:
        payload = {"out_trade_no": req.payment_no, "out_refund_no": req.refund_no, "amount": req.amount,
                   "currency": req.currency, "reason": req.reason, "notify_url": req.notify_url}
        try:
            answer = self._call("POST", "/api/refund", payload)
        except _Trouble as e:
            return RefundResult(Outcome.UNKNOWN, error=str(e))
        if answer.status == 200:
            return self._refund_answer(answer, req.refund_no)
        if answer.code in UNCERTAIN_CODES or answer.status == 401:
            return RefundResult(Outcome.UNKNOWN, error=answer.error)
        return RefundResult(Outcome.FAILED, error=answer.error)

    def query_refund(self, refund_no: str, payment_no: str = "") -> RefundResult:
        try:
            answer = self._call("POST", "/api/refund/query", {"out_refund_no": refund_no})
        except _Trouble as e:
            return RefundResult(Outcome.UNKNOWN, error=str(e))
        if answer.status == 200:
            return self._refund_answer(answer, refund_no)
        if answer.status == 404 and answer.code == "REFUND_NOT_EXIST":
            return RefundResult(Outcome.NOT_FOUND, error=answer.error)
        return RefundResult(Outcome.UNKNOWN, error=answer.error)

    # --- payouts ----------------------------------------------------------------------------

    def _payout_answer(self, answer: _Answer, payout_no: str) -> PayoutResult:
        data = answer.data
        outcome = MONEY_OUTCOMES.get(data.get("status"))
        if data.get("out_payout_no") != payout_no or outcome is None:
            return PayoutResult(Outcome.UNKNOWN, error="answer is about another payout or unreadable")
        return PayoutResult(outcome, channel_payout_no=data.get("payout_id"),
                            finished_at=_time(data.get("finished_at")), error=data.get("fail_reason"))

    def payout(self, req: PayoutRequest) -> PayoutResult:
        payload = {"out_payout_no": req.payout_no, "amount": req.amount, "currency": req.currency,
                   "bank_account": {"bank": req.bank, "number": req.account_number, "name": req.account_name}}
        try:
            answer = self._call("POST", "/api/payout", payload)
        except _Trouble as e:
            return PayoutResult(Outcome.UNKNOWN, error=str(e))
        if answer.status == 200:
            return self._payout_answer(answer, req.payout_no)
        if answer.code in UNCERTAIN_CODES or answer.status == 401:
            return PayoutResult(Outcome.UNKNOWN, error=answer.error)
        return PayoutResult(Outcome.FAILED, error=answer.error)

    def query_payout(self, payout_no: str) -> PayoutResult:
        try:
            answer = self._call("POST", "/api/payout/query", {"out_payout_no": payout_no})
        except _Trouble as e:
            return PayoutResult(Outcome.UNKNOWN, error=str(e))
        if answer.status == 200:
            return self._payout_answer(answer, payout_no)
        if answer.status == 404 and answer.code == "PAYOUT_NOT_EXIST":
            return PayoutResult(Outcome.NOT_FOUND, error=answer.error)
        return PayoutResult(Outcome.UNKNOWN, error=answer.error)

    # --- bill -------------------------------------------------------------------------------

    def download_bill(self, bill_date: date) -> list[BillRow]:
        """The day's bill; raises `ChannelUnavailable` when it cannot be fetched or trusted."""
        try:
            answer = self._call("GET", f"/api/bill?date={bill_date.isoformat()}", csv_answer=True)
        except _Trouble as e:
            raise ChannelUnavailable(str(e)) from e
        if answer.status != 200:
            raise ChannelUnavailable(answer.error)
        rows = []
        try:
            for line in csv.DictReader(io.StringIO(answer.body.decode("utf-8"))):
                finished_at = _time(line["finished_at"])
                if line["type"] not in BILL_TYPES or finished_at is None or not line["amount"].isdigit():
                    raise ChannelUnavailable(f"unreadable bill row: {line!r}")
                rows.append(BillRow(record_type=BILL_TYPES[line["type"]], payment_no=line["out_trade_no"],
                                    refund_no=line["out_refund_no"] or None, channel_txn_no=line["txn_no"],
                                    amount=int(line["amount"]), currency=line["currency"], finished_at=finished_at))
        except (KeyError, UnicodeDecodeError, csv.Error) as e:
            raise ChannelUnavailable(f"unreadable bill: {e}") from e
        return rows

    # --- notifications ----------------------------------------------------------------------

    def verify_notification(self, headers: dict[str, str], body: bytes) -> ChannelNotification:
        """Check the signature on the raw bytes, then parse; raises `NotificationRejected`."""
        return parse_notification(self._channel_pem, self.mch_id, headers, body, now=self.clock.now())

    def ack(self, accepted: bool) -> NotificationAck:
        if accepted:
            return NotificationAck(200, b'{"code":"SUCCESS"}')
        return NotificationAck(400, b'{"code":"FAIL"}')


def onboard_remote(base_url: str, platform_public_key_pem: str, *, reuse_existing: bool = False,
                   http_client: httpx.Client | None = None, timeout_s: float = 10.0) -> tuple[str, str]:
    """Register with a sandbox reachable over HTTP: returns (mch_id, channel_public_key_pem).
    Raises `httpx.HTTPError` when the sandbox cannot be reached or refuses the key."""
    client = http_client or httpx.Client(timeout=timeout_s)
    response = client.post(base_url.rstrip("/") + "/api/merchants",
                           json={"platform_public_key_pem": platform_public_key_pem,
                                 "reuse_existing": reuse_existing})
    response.raise_for_status()
    data = response.json()
    return data["mch_id"], data["channel_public_key_pem"]
