"""Fixtures for the Alipay tests: the fake Alipay on a real loopback port, a notification receiver
standing in for the platform, an injected clock, and keys generated once per session.

No database: these tests exercise the adapter and the fake only. No test waits on the wall
clock: the fake's clock is a `Clock` the test moves, and the notifier runs when the test says.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulators.alipay import AlipayFake, Notifier, create_app
from tests.support import patient
from tests.support.servers import ThreadedServer

START = datetime(2026, 11, 20, 2, 0, 0, tzinfo=UTC)  # 10:00 in Beijing


class Clock:
    """A clock the test moves by hand; shared by the fake and the adapter."""

    def __init__(self, at: datetime = START):
        self.at = at
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.at

    def advance(self, **delta: float) -> datetime:
        with self._lock:
            self.at += timedelta(**delta)
            return self.at


@dataclass(frozen=True)
class Keys:
    """The merchant app's key pair in the forms SDKs and consoles use."""

    private_pkcs8_pem: str
    private_pkcs1_pem: str
    public_pem: str

    @property
    def public_b64(self) -> str:
        return "".join(ln for ln in self.public_pem.splitlines() if not ln.startswith("-----"))


def _keys() -> Keys:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    nopw = serialization.NoEncryption()
    return Keys(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, nopw).decode(),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, nopw).decode(),
        key.public_key().public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo).decode())


@pytest.fixture(scope="session")
def app_keys() -> Keys:
    return _keys()


@pytest.fixture(scope="session")
def stranger_keys() -> Keys:
    """A key pair nobody registered: signs forgeries."""
    return _keys()


Handler = Callable[[dict[str, str], bytes], tuple[int, bytes]]


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    status: int
    answer: bytes


@dataclass
class Receiver:
    """The platform's notify endpoint as the fake sees it: records every delivery per path key and
    answers with the key's handler (default: exactly `success`)."""

    url: str = ""
    deliveries: dict[str, list[Delivery]] = field(default_factory=dict)
    handlers: dict[str, Handler] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_path(self, handler: Handler | None = None) -> tuple[str, str]:
        key = secrets.token_hex(6)
        with self.lock:
            self.deliveries[key] = []
            if handler is not None:
                self.handlers[key] = handler
        return key, f"{self.url}/notify/{key}"

    def got(self, key: str) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries.get(key, []))

    async def endpoint(self, request: Request) -> Response:
        key = request.path_params["key"]
        body = await request.body()
        headers = dict(request.headers)
        with self.lock:
            handler = self.handlers.get(key)
        status, answer = handler(headers, body) if handler else (200, b"success")
        with self.lock:
            self.deliveries.setdefault(key, []).append(Delivery(headers, body, status, answer))
        return Response(answer, status_code=status, media_type="text/plain")


@dataclass
class FakeAlipay:
    fake: AlipayFake
    notifier: Notifier
    url: str
    receiver: Receiver
    clock: Clock
    app: Starlette

    @property
    def gateway_url(self) -> str:
        return f"{self.url}/gateway.do"

    def drain(self, passes: int = 3) -> None:
        """Deliver everything due now (the notifier's HTTP calls are synchronous)."""
        for _ in range(passes):
            if not self.notifier.run_once():
                return


@pytest.fixture(scope="module")
def alipay() -> Iterator[FakeAlipay]:
    clock = Clock()
    fake = AlipayFake(now=clock)
    http = patient.client()
    notifier = Notifier(fake, http)
    app = create_app(fake, notifier)
    receiver = Receiver()
    receiver_server = ThreadedServer(Starlette(routes=[Route("/notify/{key}", receiver.endpoint, methods=["POST"])]))
    receiver.url = receiver_server.url
    server = ThreadedServer(app)
    receiver_server.start()
    server.start()
    try:
        yield FakeAlipay(fake, notifier, server.url, receiver, clock, app)
    finally:
        fake.faults.clear()
        server.stop()
        receiver_server.stop()
        notifier.close()
        http.close()


@pytest.fixture(autouse=True)
def _clean_faults(request) -> Iterator[None]:
    yield
    if "alipay" in request.fixturenames:
        request.getfixturevalue("alipay").fake.faults.clear()


def new_out_trade_no() -> str:
    return f"pay_{secrets.token_hex(8)}"


CHANNEL_TIMEOUT_S = 15.0  # generous: the suite runs in parallel on small, busy machines


@dataclass
class Merchant:
    app_id: str
    channel: object  # AlipayChannel
    http: httpx.Client


def make_channel(alipay: FakeAlipay, keys: Keys, *, timeout_s: float = CHANNEL_TIMEOUT_S,
                 alipay_public_key_pem: str | None = None, gateway_url: str | None = None) -> Merchant:
    from piaohao.channels.alipay import AlipayChannel, AlipayConfig

    app = alipay.fake.register_app(keys.public_pem)
    http = patient.client()
    config = AlipayConfig(app.app_id, keys.private_pkcs8_pem,
                          alipay_public_key_pem or alipay.fake.alipay_public_key_pem, gateway_url or alipay.gateway_url)
    return Merchant(app.app_id, AlipayChannel(config, http=http, now=alipay.clock, timeout_s=timeout_s), http)


@pytest.fixture
def merchant(alipay: FakeAlipay, app_keys: Keys) -> Iterator[Merchant]:
    m = make_channel(alipay, app_keys)
    yield m
    m.http.close()
