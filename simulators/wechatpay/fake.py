"""`WechatPayFake`: one fake WeChat Pay, wiring its state, platform identity, notifier and app."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx

from .crypto import PlatformIdentity
from .faults import FaultBook
from .models import Merchant
from .notifier import Notifier
from .state import FakeState

__all__ = ["WechatPayFake"]


class WechatPayFake:
    """Serve `fake.app` (ASGI). Tests drive notifications with `fake.notifier.run_once()`, make the
    buyer pay with `fake.pay(...)` and switch faults with `fake.faults.set(...)`."""

    def __init__(self, now: Callable[[], datetime] | None = None, *, platform: PlatformIdentity | None = None,
                 refund_settle_delay_s: float = 0.0, http: httpx.Client | None = None):
        from .app import create_app

        self.state = FakeState(now, refund_settle_delay_s=refund_settle_delay_s)
        self.platform = platform or PlatformIdentity(self.state.now())
        self.notifier = Notifier(self.state, self.platform, http)
        self.app = create_app(self)

    @property
    def faults(self) -> FaultBook:
        return self.state.faults

    def register_merchant(self, mchid: str, appid: str, serial_no: str, public_key_pem: str, apiv3_key: str, *,
                          key_mode: str = "public_key", fee_rate_ppm: int = 6000) -> Merchant:
        """Onboard a merchant: its API certificate serial and public key (or certificate PEM), its APIv3
        key, and how it knows the platform key (`public_key` id or platform `certificate`)."""
        if key_mode not in ("public_key", "certificate"):
            raise ValueError("key_mode is public_key or certificate")
        return self.state.register_merchant(Merchant(mchid, appid, serial_no, public_key_pem, apiv3_key,
                                                     key_mode, fee_rate_ppm))

    def platform_serial(self, merchant: Merchant) -> str:
        return self.platform.cert_serial if merchant.key_mode == "certificate" else self.platform.public_key_id

    def platform_info(self, merchant: Merchant) -> dict:
        """What the merchant console hands out: the platform public key (or certificate) and its serial."""
        return {"mchid": merchant.mchid, "platform_serial": self.platform_serial(merchant),
                "platform_public_key_pem": self.platform.public_key_pem,
                "platform_certificate_pem": self.platform.certificate_pem}

    def pay(self, out_trade_no: str, *, mchid: str | None = None, openid: str | None = None) -> dict:
        return self.state.pay(out_trade_no, mchid, openid)

    def finish_refund(self, out_refund_no: str, status: str = "SUCCESS", *, mchid: str | None = None) -> dict:
        return self.state.finish_refund(out_refund_no, status, mchid)
