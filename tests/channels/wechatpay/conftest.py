"""Fixtures for the WeChat Pay tests: the fake served on a real loopback port with a clock the
tests move, a notification receiver, and keys generated once (2048-bit keygen is slow)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from simulators.wechatpay import Merchant, PlatformIdentity, WechatPayFake
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
