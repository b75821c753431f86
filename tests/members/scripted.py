"""The shipped fake channel, under the sandbox's key, for service-level tests of members' flows."""

from __future__ import annotations

import time

from piaohao.channels.spi import Product
from piaohao.channels.spi.fake import PAYOUT_SUFFIX as SUFFIX
from piaohao.channels.spi.fake import FakeChannel

__all__ = ["SUFFIX", "ScriptedChannel"]


class ScriptedChannel(FakeChannel):
    """`FakeChannel` named like the sandbox (the platform's payout channel), optionally slow to pay out."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(name="sandbox", products=(Product("sandbox"),))
        self.delay_s = delay_s

    @property
    def calls(self) -> dict[str, int]:
        return self.payout_calls

    def payout(self, req):
        time.sleep(self.delay_s)
        return super().payout(req)
