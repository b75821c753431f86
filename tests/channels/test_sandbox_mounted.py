"""The embedded default: the sandbox mounted inside another app at /sandbox, on one port."""

from __future__ import annotations

from datetime import date

from fastapi import FastAPI

from piaohao.channels.sandbox import SandboxChannel, SandboxStore, create_sandbox_app, onboard
from piaohao.channels.spi import Outcome
from tests.support import patient
from tests.support.servers import free_port, serving

from .conftest import CLIENT_TIMEOUT_S
from .helpers import create_payment


def test_mounted_at_a_prefix_signatures_and_page_urls_still_work(platform_keys):
    store = SandboxStore("sqlite://")
    port = free_port()
    base = f"http://127.0.0.1:{port}/sandbox"
    parent = FastAPI()
    parent.mount("/sandbox", create_sandbox_app(store, public_base_url=base))
    mch_id, channel_pem = onboard(store, platform_keys[1])
    with serving(parent, port):
        channel = SandboxChannel(base, mch_id, platform_keys[0], channel_pem, timeout_s=CLIENT_TIMEOUT_S)
        payment_no, created = create_payment(channel, "http://127.0.0.1:9/notify", amount=300)
        assert created.outcome is Outcome.PENDING and created.redirect_url.startswith(base + "/pay/")
        assert patient.post(created.redirect_url + "/succeed").status_code == 200
        assert channel.query_payment(payment_no).outcome is Outcome.SUCCEEDED
        assert channel.download_bill(date(2001, 1, 1)) == []  # a GET with a query string, signed
    store.dispose()
