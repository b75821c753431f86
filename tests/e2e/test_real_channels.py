"""End to end through the merchant API with a merchant's real channel account, against the
protocol-faithful fakes of Alipay and WeChat Pay (simulators/): connect the account, collect,
refund in parts, download the day's bill, and the ways a channel misbehaves. SQLite and PostgreSQL.

One clock drives the platform and the fake, starting at the real time (the merchant API checks
signed timestamps); tests move it to make things due instead of sleeping.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from piaohao.db.schema import alerts, payments
from piaohao.kernel.clock import FakeClock
from piaohao.ledger import check as ledger_check
from piaohao.services.channel_accounts import add_account, disable_account
from simulators.alipay import AlipayFake, Notifier, create_app
from simulators.wechatpay import PlatformIdentity, WechatPayFake
from tests.api.test_gateway import trade_body
from tests.support import patient
from tests.support.merchant import Receiver, wait_until
from tests.support.servers import ThreadedServer

BEIJING = ZoneInfo("Asia/Shanghai")
KINDS = ["alipay", "wechatpay"]
FIRST_PRODUCT = {"alipay": "alipay.page", "wechatpay": "wechatpay.native"}
ACTION = {"alipay": "redirect", "wechatpay": "qr_code"}


def _key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


@dataclass
class Connected:
    """A merchant's account at one fake channel, connected to the platform."""

    kind: str
    account_id: str
    fake: object
    follow: Callable[[dict], None]  # the buyer follows the payment's next action
    pay: Callable[[str], None]  # the buyer pays payment_no at the channel
    drain: Callable[[], int]  # the channel delivers the notifications due now
    finish_refund: Callable[[str], None]  # the channel's refund reaches its final state
    closers: list = field(default_factory=list)

    def deliver(self) -> None:
        for _ in range(5):
            if not self.drain():
                return


def connect_alipay(running, merchant_id: str, clock: FakeClock) -> Connected:
    fake = AlipayFake(now=clock.now)
    http = patient.client(trust_env=False)
    notifier = Notifier(fake, http)
    server = ThreadedServer(create_app(fake, notifier)).start()
    private, public = _key_pair()
    app = fake.register_app(public)
    account = add_account(running.platform, "alipay", merchant_id, {
        "app_id": app.app_id, "private_key_pem": private, "alipay_public_key_pem": fake.alipay_public_key_pem,
        "gateway_url": f"{server.url}/gateway.do"})
    return Connected(
        "alipay", account["channel_account_id"], fake,
        follow=lambda action: patient.get(action["url"], timeout=10, follow_redirects=False).raise_for_status(),
        pay=lambda payment_no: fake.pay(payment_no), drain=notifier.run_once,
        finish_refund=lambda refund_no: None,  # Alipay refunds are final in the call's answer
        closers=[server.stop, http.close])


def connect_wechatpay(running, merchant_id: str, clock: FakeClock) -> Connected:
    fake = WechatPayFake(clock.now, platform=PlatformIdentity(clock.now()))
    server = ThreadedServer(fake.app).start()
    private, public = _key_pair()
    mchid = "1" + "".join(secrets.choice("0123456789") for _ in range(9))
    apiv3 = secrets.token_hex(16)
    merchant = fake.register_merchant(mchid, "wx" + secrets.token_hex(8), secrets.token_hex(20).upper(), public,
                                      apiv3, key_mode="public_key")
    info = fake.platform_info(merchant)
    account = add_account(running.platform, "wechatpay", merchant_id, {
        "mchid": mchid, "appid": merchant.appid, "serial_no": merchant.api_serial_no, "private_key_pem": private,
        "apiv3_key": apiv3, "platform_public_key_pem": info["platform_public_key_pem"],
        "platform_serial": info["platform_serial"], "base_url": server.url})
    return Connected(
        "wechatpay", account["channel_account_id"], fake,
        follow=lambda action: None,  # the buyer scans the QR code
        pay=lambda payment_no: fake.pay(payment_no, mchid=mchid), drain=fake.notifier.run_once,
        finish_refund=lambda refund_no: fake.finish_refund(refund_no, mchid=mchid),
        closers=[server.stop, fake.notifier.http.close])


CONNECT = {"alipay": connect_alipay, "wechatpay": connect_wechatpay}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC))


@pytest.fixture
def world(make_platform, clock, receiver) -> Iterator[Callable[[str], tuple]]:
    made: list[Connected] = []

    def make(kind: str):
        running = make_platform(clock=clock)
        m = running.merchant()
        connected = CONNECT[kind](running, m.merchant_id, clock)
        made.append(connected)
        return running, m, connected

    yield make
    for c in made:
        for close in c.closers:
            close()


def _trade(m, receiver: Receiver, amount: int = 1999, **extra) -> dict:
    r = m.call("POST", "/v1/trades", trade_body(f"T{secrets.token_hex(6)}", amount, notify_url=receiver.url, **extra))
    assert r.status_code == 201, r.text
    return r.json()


def _start(trade: dict, method: str) -> dict:
    r = patient.post(trade["pay_url"] + "/pay", json={"method": method}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _status(m, trade) -> str:
    return m.call("GET", f"/v1/trades/{trade['trade_no']}").json()["status"]


def _alerts(running, kind: str) -> list:
    with running.platform.db.read() as conn:
        return conn.execute(select(alerts).where(alerts.c.kind == kind)).mappings().all()


@pytest.mark.parametrize("kind", KINDS)
def test_a_merchant_collects_refunds_in_parts_and_downloads_the_day_bill(world, kind, receiver, clock):
    running, m, ch = world(kind)
    trade = _trade(m, receiver)

    cashier = patient.get(trade["pay_url"], headers={"Accept": "application/json"}).json()
    offered = [x["method"] for x in cashier["methods"]]
    assert FIRST_PRODUCT[kind] in offered and "sandbox" in offered

    answer = _start(trade, FIRST_PRODUCT[kind])
    assert answer["next_action"]["type"] == ACTION[kind]
    assert _start(trade, FIRST_PRODUCT[kind]) == answer  # the same attempt again, not a second payment
    ch.follow(answer["next_action"])
    ch.pay(answer["payment_no"])
    ch.deliver()
    assert wait_until(lambda: _status(m, trade) == "succeeded")
    assert wait_until(lambda: receiver.events("trade.succeeded"))
    with running.platform.db.read() as conn:
        assert conn.execute(select(payments.c.channel).where(
            payments.c.payment_no == answer["payment_no"])).scalar_one() == ch.account_id

    refund_nos = []
    for part, amount in (("R1", 500), ("R2", 1499)):
        r = m.call("POST", "/v1/refunds", {"trade_no": trade["trade_no"], "out_request_no": part, "amount": amount})
        assert r.status_code in (200, 201), r.text
        refund_nos.append(r.json()["refund_no"])
        ch.finish_refund(r.json()["refund_no"])
        ch.deliver()
        clock.advance(5)  # a processing refund is queried by the worker when due
        assert wait_until(lambda rn=r.json()["refund_no"]: m.call("GET", f"/v1/refunds/{rn}").json()["status"]
                          == "succeeded"), m.call("GET", f"/v1/refunds/{r.json()['refund_no']}").text
    assert _status(m, trade) == "refunded"
    for noise in ("refund_amount_mismatch", "amount_mismatch", "notification_rejected", "notification_wrong_account"):
        assert not _alerts(running, noise), noise
    over = m.call("POST", "/v1/refunds", {"trade_no": trade["trade_no"], "out_request_no": "R3", "amount": 1})
    assert over.status_code == 409
    assert ledger_check(running.platform.db) == []

    day = clock.now().astimezone(BEIJING).date()
    clock.set(datetime.combine(day + timedelta(days=1), datetime.min.time(), BEIJING).astimezone(UTC)
              + timedelta(hours=10))
    rows = list(running.platform.channel(ch.account_id).download_bill(day))
    paid = [r for r in rows if r.record_type == "payment" and r.payment_no == answer["payment_no"]]
    refunded = sorted(abs(r.amount) for r in rows if r.record_type == "refund" and r.payment_no == answer["payment_no"])
    assert [r.amount for r in paid] == [1999] and refunded == [500, 1499]


@pytest.mark.parametrize("kind", KINDS)
def test_a_forged_notification_changes_nothing_and_raises_an_alert(world, kind, receiver):
    running, m, ch = world(kind)
    trade = _trade(m, receiver)
    answer = _start(trade, FIRST_PRODUCT[kind])
    url = f"{running.url}/channels/{ch.account_id}/notify"
    if kind == "alipay":
        body = urlencode({"notify_type": "trade_status_sync", "out_trade_no": answer["payment_no"],
                          "trade_status": "TRADE_SUCCESS", "total_amount": "19.99", "app_id": "2021000000000000",
                          "sign_type": "RSA2", "sign": "Zm9yZ2Vk"})
        r = patient.post(url, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.text == "fail"
    else:
        r = patient.post(url, content=b'{"id":"x","event_type":"TRANSACTION.SUCCESS","resource":{}}', headers={
            "Content-Type": "application/json", "Wechatpay-Timestamp": str(int(datetime.now(UTC).timestamp())),
            "Wechatpay-Nonce": "n", "Wechatpay-Signature": "Zm9yZ2Vk", "Wechatpay-Serial": "NOPE"})
        assert r.status_code >= 400
    assert _alerts(running, "notification_rejected")
    assert _status(m, trade) == "pending"
    assert not receiver.events("trade.succeeded")


@pytest.mark.parametrize("kind", KINDS)
def test_a_payment_whose_notification_never_comes_is_settled_by_the_active_query(world, kind, receiver, clock):
    running, m, ch = world(kind)
    trade = _trade(m, receiver)
    answer = _start(trade, FIRST_PRODUCT[kind])
    ch.follow(answer["next_action"])
    ch.pay(answer["payment_no"])  # the channel's notifications are never delivered in this test
    clock.advance(running.settings.active_query_after_s + 1)
    assert wait_until(lambda: _status(m, trade) == "succeeded")
    assert wait_until(lambda: len(receiver.events("trade.succeeded")) == 1)


@pytest.mark.parametrize("kind", KINDS)
def test_an_expired_trade_is_closed_at_the_channel_and_cannot_be_paid_there(world, kind, receiver, clock):
    running, m, ch = world(kind)
    trade = _trade(m, receiver, order_timeout_s=120)
    answer = _start(trade, FIRST_PRODUCT[kind])
    ch.follow(answer["next_action"])
    clock.advance(121)
    assert wait_until(lambda: _status(m, trade) == "closed")
    with pytest.raises(Exception):  # noqa: B017 - each fake refuses in its own words
        ch.pay(answer["payment_no"])
    assert wait_until(lambda: receiver.events("trade.closed"))


@pytest.mark.parametrize("kind", KINDS)
def test_a_disabled_account_offers_no_method_but_still_refunds_what_it_took(world, kind, receiver):
    running, m, ch = world(kind)
    trade = _trade(m, receiver)
    answer = _start(trade, FIRST_PRODUCT[kind])
    ch.follow(answer["next_action"])
    ch.pay(answer["payment_no"])
    ch.deliver()
    assert wait_until(lambda: _status(m, trade) == "succeeded")
    disable_account(running.platform, ch.account_id)

    other = _trade(m, receiver)
    offered = [x["method"] for x in patient.get(other["pay_url"], headers={"Accept": "application/json"}).json()[
        "methods"]]
    assert FIRST_PRODUCT[kind] not in offered
    refused = patient.post(other["pay_url"] + "/pay", json={"method": FIRST_PRODUCT[kind]})
    assert refused.status_code == 400 and refused.json()["code"] == "METHOD_NOT_AVAILABLE"

    r = m.call("POST", "/v1/refunds", {"trade_no": trade["trade_no"], "out_request_no": "R1", "amount": 1999})
    assert r.status_code in (200, 201), r.text
    ch.finish_refund(r.json()["refund_no"])
    ch.deliver()
    assert wait_until(lambda: m.call("GET", f"/v1/refunds/{r.json()['refund_no']}").json()["status"] == "succeeded")


def test_a_trade_above_a_channel_cap_does_not_offer_its_methods(world, receiver):
    running, m, ch = world("alipay")
    trade = _trade(m, receiver, amount=10**10 + 1)  # above Alipay's 100,000,000 yuan per payment
    offered = [x["method"] for x in patient.get(trade["pay_url"], headers={"Accept": "application/json"}).json()[
        "methods"]]
    assert "alipay.page" not in offered and "alipay.wap" not in offered
    refused = patient.post(trade["pay_url"] + "/pay", json={"method": "alipay.page"})
    assert refused.status_code == 400 and refused.json()["code"] == "METHOD_NOT_AVAILABLE"
