"""The channel contract: one suite every adapter passes (the sandbox, Alipay, WeChat Pay, and the
shipped FakeChannel), each against its own channel (simulator or fake) on loopback.

What the core relies on, whatever the channel: a started payment waits for the buyer with a next
action; the channel's record is the truth a query answers; an unknown payment or refund is
NOT_FOUND (never failed, never closed); a paid payment cannot be closed; its notification verifies
and states the amount; a forged one is refused; refunds are idempotent on refund_no and never
exceed what was paid; amounts cross the wire exactly.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from piaohao.channels.alipay import AlipayChannel, AlipayConfig
from piaohao.channels.sandbox import SandboxChannel, SandboxNotifier, SandboxStore, create_sandbox_app, onboard
from piaohao.channels.sandbox.rsa import generate_key_pair
from piaohao.channels.spi import (
    Channel,
    CreatePayment,
    NextActionType,
    NotificationRejected,
    Outcome,
    RefundRequest,
)
from piaohao.channels.spi.fake import FakeChannel
from piaohao.channels.wechatpay import WechatPayChannel, WechatPayConfig
from simulators.alipay import AlipayFake, Notifier, create_app
from simulators.wechatpay import PlatformIdentity, WechatPayFake
from tests.support import patient
from tests.support.servers import ThreadedServer, free_port

KINDS = ["sandbox", "alipay", "wechatpay", "fake"]


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Inbox:
    """Where channels post notifications in these tests: (headers, body) per payment_no."""

    url: str = ""
    got: dict[str, list[tuple[dict, bytes]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: dict[str, tuple[int, bytes]] = field(default_factory=lambda: {
        "sandbox": (200, b'{"code":"SUCCESS"}'), "alipay": (200, b"success"), "wechatpay": (204, b"")})

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.got.setdefault(request.path_params["key"], []).append(
                ({k.lower(): v for k, v in request.headers.items()}, body))
        status, answer = self.answers[request.path_params["kind"]]
        return Response(answer, status_code=status)

    def last(self, payment_no: str) -> tuple[dict, bytes]:
        with self.lock:
            return self.got[payment_no][-1]


class Driver:
    """One channel and its counterpart: the buyer and the channel's back office."""

    kind: str
    product: str
    channel: Channel
    closers: list

    def notify_url(self, payment_no: str) -> str: ...
    def pay(self, payment_no: str, next_action: dict) -> None: ...
    def notification(self, payment_no: str) -> tuple[dict, bytes]: ...
    def finish_refund(self, refund_no: str) -> None: ...


def _keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode(),
            key.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode())


class SandboxDriver(Driver):
    kind, product = "sandbox", "sandbox"

    def __init__(self, inbox: Inbox, tmp):
        self.inbox = inbox
        self.store = SandboxStore(f"sqlite:///{tmp}/contract-sandbox.db")
        port = free_port()
        server = ThreadedServer(create_sandbox_app(self.store, public_base_url=f"http://127.0.0.1:{port}"), port)
        server.start()
        private, public = generate_key_pair()
        mch_id, channel_pem = onboard(self.store, public)
        self.http = patient.client()
        self.channel = SandboxChannel(server.url, mch_id, private, channel_pem, http_client=self.http)
        self.notifier = SandboxNotifier(self.store, patient.client())
        self.closers = [server.stop, self.http.close, self.notifier.close, self.store.dispose]

    def notify_url(self, payment_no):
        return f"{self.inbox.url}/sandbox/{payment_no}"

    def pay(self, payment_no, next_action):
        patient.post(next_action["url"] + "/succeed").raise_for_status()
        for _ in range(5):
            self.notifier.run_once()

    def notification(self, payment_no):
        return self.inbox.last(payment_no)

    def finish_refund(self, refund_no):
        for _ in range(5):
            self.notifier.run_once()


class AlipayDriver(Driver):
    kind, product = "alipay", "alipay.page"

    def __init__(self, inbox: Inbox, tmp):
        self.inbox = inbox
        self.fake = AlipayFake(now=now)
        self.http = patient.client()
        self.notifier = Notifier(self.fake, self.http)
        server = ThreadedServer(create_app(self.fake, self.notifier)).start()
        private, public = _keys()
        app = self.fake.register_app(public)
        self.channel = AlipayChannel(AlipayConfig(app.app_id, private, self.fake.alipay_public_key_pem,
                                                  f"{server.url}/gateway.do"), http=self.http, now=now)
        self.closers = [server.stop, self.http.close]

    def notify_url(self, payment_no):
        return f"{self.inbox.url}/alipay/{payment_no}"

    def pay(self, payment_no, next_action):
        patient.get(next_action["url"]).raise_for_status()  # the buyer opens the cashier
        self.fake.pay(payment_no)
        self.notifier.run_once()

    def notification(self, payment_no):
        return self.inbox.last(payment_no)

    def finish_refund(self, refund_no):
        self.notifier.run_once()


class WechatPayDriver(Driver):
    kind, product = "wechatpay", "wechatpay.native"

    def __init__(self, inbox: Inbox, tmp):
        self.inbox = inbox
        self.fake = WechatPayFake(now, platform=PlatformIdentity(now()))
        server = ThreadedServer(self.fake.app).start()
        private, public = _keys()
        self.mchid, apiv3 = "1" + "".join(secrets.choice("0123456789") for _ in range(9)), secrets.token_hex(16)
        merchant = self.fake.register_merchant(self.mchid, "wx" + secrets.token_hex(8), secrets.token_hex(20).upper(),
                                               public, apiv3)
        info = self.fake.platform_info(merchant)
        self.http = patient.client()
        self.channel = WechatPayChannel(WechatPayConfig(
            self.mchid, merchant.appid, merchant.api_serial_no, private, apiv3, info["platform_public_key_pem"],
            info["platform_serial"], base_url=server.url), http=self.http, now=now)
        self.closers = [server.stop, self.http.close, self.fake.notifier.http.close]

    def notify_url(self, payment_no):
        return f"{self.inbox.url}/wechatpay/{payment_no}"

    def pay(self, payment_no, next_action):
        self.fake.pay(payment_no, mchid=self.mchid)
        self.fake.notifier.run_once()

    def notification(self, payment_no):
        return self.inbox.last(payment_no)

    def finish_refund(self, refund_no):
        self.fake.finish_refund(refund_no, mchid=self.mchid)
        self.fake.notifier.run_once()


class FakeDriver(Driver):
    kind, product = "fake", "fake"

    def __init__(self, inbox: Inbox, tmp):
        self.channel = FakeChannel()
        self.closers = []

    def notify_url(self, payment_no):
        return "http://fake.invalid/notify"

    def pay(self, payment_no, next_action):
        self.channel.pay(payment_no)

    def notification(self, payment_no):
        return self.channel.notification(payment_no)

    def finish_refund(self, refund_no):
        pass


DRIVERS = {"sandbox": SandboxDriver, "alipay": AlipayDriver, "wechatpay": WechatPayDriver, "fake": FakeDriver}


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    box = Inbox()
    server = ThreadedServer(Starlette(routes=[Route("/{kind}/{key}", box.endpoint, methods=["POST"])])).start()
    box.url = server.url
    yield box
    server.stop()


@pytest.fixture(scope="module", params=KINDS)
def driver(request, inbox, tmp_path_factory) -> Iterator[Driver]:
    d = DRIVERS[request.param](inbox, tmp_path_factory.mktemp(request.param))
    yield d
    for close in d.closers:
        close()


def _start(d: Driver, amount: int = 1999) -> tuple[str, dict]:
    payment_no = "pay" + secrets.token_hex(8)
    result = d.channel.create_payment(CreatePayment(
        payment_no=payment_no, amount=amount, currency="CNY", subject="a cup of tea",
        expires_at=now() + timedelta(minutes=30), notify_url=d.notify_url(payment_no), product=d.product))
    assert result.outcome is Outcome.PENDING, result
    action = result.next_action
    assert action is not None and action.type in (NextActionType.REDIRECT, NextActionType.QR_CODE), result
    if action.type == NextActionType.REDIRECT:
        assert result.redirect_url == action.url
    return payment_no, action.as_dict()


def _paid(d: Driver, amount: int = 1999) -> str:
    payment_no, action = _start(d, amount)
    d.pay(payment_no, action)
    return payment_no


def test_a_started_payment_waits_for_the_buyer_and_the_query_says_so(driver):
    payment_no, _ = _start(driver)
    assert driver.channel.query_payment(payment_no).outcome in (Outcome.PENDING, Outcome.NOT_FOUND)


def test_an_unknown_payment_and_refund_are_not_found(driver):
    assert driver.channel.query_payment("pay" + secrets.token_hex(8)).outcome is Outcome.NOT_FOUND
    assert driver.channel.query_refund("rf" + secrets.token_hex(8), "pay" + secrets.token_hex(8)).outcome \
        is Outcome.NOT_FOUND


def test_a_paid_payment_is_the_truth_of_the_query_and_cannot_be_closed(driver):
    payment_no = _paid(driver)
    answer = driver.channel.query_payment(payment_no)
    assert (answer.outcome, answer.amount, answer.currency) == (Outcome.SUCCEEDED, 1999, "CNY")
    assert answer.channel_txn_no
    assert driver.channel.close_payment(payment_no).outcome is Outcome.SUCCEEDED


def test_an_unpaid_payment_closes_and_is_never_reported_paid(driver):
    payment_no, action = _start(driver)
    if driver.kind == "alipay":
        patient.get(action["url"])  # Alipay knows a trade once its cashier was opened
    assert driver.channel.close_payment(payment_no).outcome is Outcome.CLOSED
    assert driver.channel.query_payment(payment_no).outcome is Outcome.CLOSED


def test_the_payment_notification_verifies_and_states_the_amount(driver):
    payment_no = _paid(driver)
    headers, body = driver.notification(payment_no)
    note = driver.channel.verify_notification(headers, body)
    assert (note.kind, note.payment_no, note.outcome, note.amount, note.currency) == (
        "payment", payment_no, Outcome.SUCCEEDED, 1999, "CNY")
    ack = driver.channel.ack(True)
    assert 200 <= ack.status_code < 300


def test_a_tampered_notification_is_refused(driver):
    payment_no = _paid(driver)
    headers, body = driver.notification(payment_no)
    tampered = body.replace(b"19.99", b"99.99").replace(b"1999", b"9999")
    if tampered == body:
        tampered = body + b" "
    with pytest.raises(NotificationRejected):
        driver.channel.verify_notification(headers, tampered)
    assert driver.channel.ack(False).status_code != 204 or driver.kind != "wechatpay"


def test_refunds_are_idempotent_on_their_number_and_never_exceed_the_payment(driver):
    payment_no = _paid(driver)
    refund_no = "rf" + secrets.token_hex(8)
    req = RefundRequest(payment_no, refund_no, 500, "CNY", payment_amount=1999,
                        notify_url=driver.notify_url(payment_no))
    first = driver.channel.refund(req)
    assert first.outcome in (Outcome.SUCCEEDED, Outcome.PENDING), first
    driver.finish_refund(refund_no)
    assert driver.channel.query_refund(refund_no, payment_no).outcome is Outcome.SUCCEEDED
    again = driver.channel.refund(req)
    assert again.outcome in (Outcome.SUCCEEDED, Outcome.PENDING), again  # the same refund, not a second one
    too_much = driver.channel.refund(RefundRequest(payment_no, "rf" + secrets.token_hex(8), 1500, "CNY",
                                                   payment_amount=1999))
    assert too_much.outcome is not Outcome.SUCCEEDED


@pytest.mark.parametrize("amount", [1, 10, 99, 100, 101, 1999, 10**10])
def test_amounts_cross_the_wire_exactly(driver, amount):
    payment_no = _paid(driver, amount)
    answer = driver.channel.query_payment(payment_no)
    assert (answer.outcome, answer.amount) == (Outcome.SUCCEEDED, amount)
