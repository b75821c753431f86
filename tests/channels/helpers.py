"""Small factories for the sandbox channel tests."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import httpx

from piaohao.channels.sandbox import SandboxChannel
from piaohao.channels.spi import CreatePayment, Outcome, PaymentResult
from tests.support import patient


def key(prefix: str = "o") -> str:
    return f"{prefix}{secrets.token_hex(8)}"


def create_payment(channel: SandboxChannel, notify_url: str, *, amount: int = 1000, payment_no: str | None = None,
                   expires_in_s: float = 900) -> tuple[str, PaymentResult]:
    payment_no = payment_no or key("pay")
    result = channel.create_payment(CreatePayment(
        payment_no=payment_no, amount=amount, currency="CNY", subject="a cup of tea",
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in_s), notify_url=notify_url))
    return payment_no, result


def buyer(redirect_url: str, action: str = "succeed", body: dict | None = None) -> httpx.Response:
    """The buyer presses a button on the sandbox page (optionally choosing a notify mode)."""
    return patient.post(f"{redirect_url}/{action}", json=body) if body is not None else \
        patient.post(f"{redirect_url}/{action}")


def paid_payment(channel: SandboxChannel, notify_url: str, *, amount: int = 1000,
                 body: dict | None = None) -> tuple[str, PaymentResult]:
    payment_no, created = create_payment(channel, notify_url, amount=amount)
    assert created.outcome is Outcome.PENDING, created
    response = buyer(created.redirect_url, "succeed", body)
    assert response.status_code == 200, response.text
    return payment_no, created


def signed_request(base_url: str, mch_id: str, private_pem: str, method: str, path: str, body: bytes = b"", *,
                   timestamp: int | None = None, signature: str | None = None) -> httpx.Response:
    """A merchant API call signed by hand, to test what the sandbox accepts and refuses."""
    from piaohao.channels.sandbox import rsa
    from piaohao.channels.sandbox.wire import request_canonical

    ts = str(timestamp if timestamp is not None else int(datetime.now(UTC).timestamp()))
    sig = signature if signature is not None else rsa.sign(private_pem, request_canonical(method, path, ts, body))
    headers = {"Sandbox-Mch-Id": mch_id, "Sandbox-Timestamp": ts, "Sandbox-Signature": sig,
               "Content-Type": "application/json"}
    return patient.request(method, base_url + path, content=body, headers=headers)
