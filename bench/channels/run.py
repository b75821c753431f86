"""Platform-side cost of one payment per channel: CPU milliseconds the platform's thread spends in
the adapter (building and signing requests, verifying signed answers and notifications, parsing)
for create + notification + query, against the Alipay and WeChat Pay fakes on loopback.

The fakes run in server threads of this process; only the calling thread's CPU time
(`time.thread_time`) is counted, so their work is not. Same-run baseline: one bare RSA-2048
SHA256 signature and one verification, the floor of any RSA-signed protocol.

    .venv/bin/python bench/channels/run.py [--payments 200]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402

from piaohao.channels.alipay import AlipayChannel, AlipayConfig  # noqa: E402
from piaohao.channels.spi import CreatePayment  # noqa: E402
from piaohao.channels.wechatpay import WechatPayChannel, WechatPayConfig  # noqa: E402
from simulators.alipay import AlipayFake, Notifier, create_app, signing  # noqa: E402,F401
from simulators.wechatpay import PlatformIdentity, WechatPayFake  # noqa: E402
from tests.support.servers import ThreadedServer  # noqa: E402


def _keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode(),
            key.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode())


def _timed(fn) -> float:
    start = time.thread_time()
    fn()
    return (time.thread_time() - start) * 1000


def _request(no: str, product: str) -> CreatePayment:
    return CreatePayment(payment_no=no, amount=1999, currency="CNY", subject="2 pairs of socks",
                         expires_at=datetime.now(UTC) + timedelta(minutes=15),
                         notify_url="http://127.0.0.1:9/channels/x/notify", product=product)


def bench_alipay(n: int) -> dict[str, list[float]]:
    now = lambda: datetime.now(UTC)  # noqa: E731
    fake = AlipayFake(now=now)
    http = httpx.Client(timeout=10)
    server = ThreadedServer(create_app(fake, Notifier(fake, http))).start()
    private, public = _keys()
    app = fake.register_app(public)
    channel = AlipayChannel(AlipayConfig(app.app_id, private, fake.alipay_public_key_pem, f"{server.url}/gateway.do"),
                            http=httpx.Client(timeout=10), now=now)
    out: dict[str, list[float]] = {"create": [], "notify": [], "query": []}
    try:
        for _ in range(n):
            no = "pay" + secrets.token_hex(8)
            result = None

            def create(no=no):
                nonlocal result
                result = channel.create_payment(_request(no, "alipay.page"))
            out["create"].append(_timed(create))
            http.get(result.redirect_url).raise_for_status()  # the buyer opens the cashier (not timed)
            fake.pay(no)
            params = dict(fake.notifications_for(no)[-1].params)
            params["sign"] = signing.sign(fake.key, signing.notification_content(params).encode("utf-8"))
            body = urlencode(params).encode()
            headers = {"content-type": "application/x-www-form-urlencoded"}
            out["notify"].append(_timed(lambda h=headers, b=body: channel.verify_notification(h, b)))
            out["query"].append(_timed(lambda no=no: channel.query_payment(no)))
    finally:
        server.stop()
    return out


def bench_wechatpay(n: int) -> dict[str, list[float]]:
    now = lambda: datetime.now(UTC)  # noqa: E731
    fake = WechatPayFake(now, platform=PlatformIdentity(now()))
    server = ThreadedServer(fake.app).start()
    private, public = _keys()
    mchid, apiv3 = "1" + "".join(secrets.choice("0123456789") for _ in range(9)), secrets.token_hex(16)
    merchant = fake.register_merchant(mchid, "wx" + secrets.token_hex(8), secrets.token_hex(20).upper(), public, apiv3)
    info = fake.platform_info(merchant)
    channel = WechatPayChannel(WechatPayConfig(mchid, merchant.appid, merchant.api_serial_no, private, apiv3,
                                               info["platform_public_key_pem"], info["platform_serial"],
                                               base_url=server.url), http=httpx.Client(timeout=10), now=now)
    out: dict[str, list[float]] = {"create": [], "notify": [], "query": []}
    try:
        for _ in range(n):
            no = "pay" + secrets.token_hex(8)
            out["create"].append(_timed(lambda no=no: channel.create_payment(_request(no, "wechatpay.native"))))
            fake.pay(no, mchid=mchid)
            due = fake.state.due_notifications()
            headers, body = fake.notifier.build(due[-1])
            for note in due:
                fake.state.record_answer(note, 204)
            headers = {k.lower(): v for k, v in headers.items()}
            out["notify"].append(_timed(lambda h=headers, b=body: channel.verify_notification(h, b)))
            out["query"].append(_timed(lambda no=no: channel.query_payment(no)))
    finally:
        server.stop()
    return out


def baseline(n: int) -> float:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    msg = b"x" * 512

    def one():
        sig = key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
        key.public_key().verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())
    return statistics.median(_timed(one) for _ in range(n))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payments", type=int, default=200)
    n = parser.parse_args().payments
    floor = baseline(n)
    print(f"baseline: one RSA-2048 sign + verify = {floor:.3f} CPU ms (median of {n})")
    for name, run in (("alipay", bench_alipay), ("wechatpay", bench_wechatpay)):
        figures = run(n)
        parts = {k: statistics.median(v) for k, v in figures.items()}
        total = sum(parts.values())
        print(f"{name}: create {parts['create']:.3f} + notification {parts['notify']:.3f} + query "
              f"{parts['query']:.3f} = {total:.3f} CPU ms per payment (median of {n}) = {total / floor:.1f}x baseline")
    print(f"reproduce: .venv/bin/python bench/channels/run.py --payments {n}")


if __name__ == "__main__":
    main()
