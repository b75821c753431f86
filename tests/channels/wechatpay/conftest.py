"""Fixtures for the WeChat Pay tests: the fake served on a real loopback port with a clock the
tests move, a notification receiver, and keys generated once (2048-bit keygen is slow)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from piaohao.channels.wechatpay import WechatPayChannel, WechatPayConfig
from simulators.wechatpay import Merchant, PlatformIdentity, WechatPayFake
from tests.support import patient
from tests.support.servers import serving

from .support import Clock, MerchantKeys, Receiver, apiv3_key, merchant_keys, new_mchid


@dataclass
class Served:
    fake: WechatPayFake
    url: str
    clock: Clock


@pytest.fixture(scope="session")
def platform() -> PlatformIdentity:
    return PlatformIdentity(datetime.now(UTC))


@pytest.fixture(scope="session")
def mkeys() -> MerchantKeys:
    return merchant_keys()


@pytest.fixture(scope="session")
def other_keys() -> MerchantKeys:
    return merchant_keys()


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    with serving(receiver.app()) as server:
        receiver.url = server.url
        yield receiver


@pytest.fixture(scope="module")
def served(platform: PlatformIdentity) -> Iterator[Served]:
    clock = Clock()
    fake = WechatPayFake(clock, platform=platform)
    with serving(fake.app) as server:
        yield Served(fake, server.url, clock)
    fake.notifier.http.close()


@pytest.fixture(autouse=True)
def _calm(request) -> Iterator[None]:
    """Every test starts with no faults and a receiver that acknowledges."""
    if "served" in request.fixturenames:
        request.getfixturevalue("served").fake.faults.clear()
    if "receiver" in request.fixturenames:
        request.getfixturevalue("receiver").status = 204
    yield


def register(served: Served, keys: MerchantKeys, *, key_mode: str = "public_key") -> tuple[Merchant, str]:
    """A freshly onboarded merchant and the platform serial it knows the platform key by."""
    merchant = served.fake.register_merchant(new_mchid(), "wx" + new_mchid()[:8] + "abcdef00", keys.serial_no,
                                             keys.public_pem, apiv3_key(), key_mode=key_mode)
    return merchant, served.fake.platform_serial(merchant)


@pytest.fixture
def merchant(served: Served, mkeys: MerchantKeys) -> tuple[Merchant, str]:
    return register(served, mkeys)


@dataclass
class Account:
    """The adapter for one freshly onboarded merchant, and where its notifications arrive."""

    channel: WechatPayChannel
    merchant: Merchant
    config: WechatPayConfig
    notify_key: str
    notify_url: str


def make_channel(served: Served, keys: MerchantKeys, merchant: Merchant, platform_serial: str, http: httpx.Client,
                 *, now=None, timeout_s: float = 2.0, private_pem: str | None = None,
                 platform_pem: str | None = None) -> tuple[WechatPayChannel, WechatPayConfig]:
    config = WechatPayConfig(
        mchid=merchant.mchid, appid=merchant.appid, serial_no=keys.serial_no,
        private_key_pem=private_pem or keys.private_pem, apiv3_key=merchant.apiv3_key,
        platform_public_key_pem=platform_pem or served.fake.platform.public_key_pem,
        platform_serial=platform_serial, base_url=served.url)
    return WechatPayChannel(config, http=http, now=now or served.clock, timeout_s=timeout_s), config


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with patient.client() as client:
        yield client


@pytest.fixture
def account(served: Served, mkeys: MerchantKeys, receiver: Receiver, http: httpx.Client) -> Account:
    merchant, platform_serial = register(served, mkeys)
    channel, config = make_channel(served, mkeys, merchant, platform_serial, http)
    key, url = receiver.notify_url()
    return Account(channel, merchant, config, key, url)
