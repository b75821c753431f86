"""Helpers for the WeChat Pay tests: a settable clock, a notification receiver on a real port,
merchant credentials, and bounded polling (never wall-clock sleeps as assertions)."""

from __future__ import annotations

import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

POLL_PASSES_MAX = 200


class Clock:
    """A clock tests move by hand; starts at the real time so the SDK (which reads time.time()) agrees."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime.now(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


@dataclass
class Delivery:
    path_key: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Stands in for the platform's notify endpoint: records deliveries, answers `status` (204)."""

    url: str = ""
    status: int = 204
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def notify_url(self) -> tuple[str, str]:
        key = secrets.token_hex(6)
        return key, f"{self.url}/channels/wechatpay/notify/{key}"

    def got(self, key: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.path_key == key]

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.deliveries.append(Delivery(request.path_params["key"], dict(request.headers), body))
            status = self.status
        return Response(b"" if status == 204 else b'{"code":"FAIL","message":"busy"}', status_code=status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/channels/wechatpay/notify/{key}", self.endpoint, methods=["POST"])])


@dataclass(frozen=True)
class MerchantKeys:
    private_pem: str
    public_pem: str
    serial_no: str


def merchant_keys() -> MerchantKeys:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return MerchantKeys(private_pem, public_pem, secrets.token_hex(20).upper())


def apiv3_key() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))


def new_mchid() -> str:
    return "1" + "".join(secrets.choice(string.digits) for _ in range(9))


def out_no(prefix: str = "T") -> str:
    return f"{prefix}{secrets.token_hex(10)}"


def poll(until: Callable[[], bool], step: Callable[[], object], passes_max: int = POLL_PASSES_MAX) -> bool:
    """Call `step()` until `until()` holds, at most `passes_max` times (a bounded loop, no deadline)."""
    for _ in range(passes_max):
        if until():
            return True
        step()
        time.sleep(0.005)
    return until()


def payment_request(notify_url: str, amount: int, now: datetime, *, product: str = "wechatpay.native",
                    payment_no: str | None = None, openid: str | None = None, client_ip: str | None = None,
                    expires_in_s: float = 1800):
    from piaohao.channels.spi import CreatePayment

    return CreatePayment(payment_no=payment_no or out_no("P"), amount=amount, currency="CNY", subject="一杯茶 tea",
                         expires_at=now + timedelta(seconds=expires_in_s), notify_url=notify_url, product=product,
                         openid=openid, client_ip=client_ip)
