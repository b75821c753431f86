"""The running platform's collaborators, handed to every use case."""

from __future__ import annotations

from dataclasses import dataclass, field

from piaohao.channels.spi import Channel
from piaohao.db.database import Database
from piaohao.kernel.clock import Clock
from piaohao.kernel.errors import MethodNotAvailable
from piaohao.kernel.settings import Settings


@dataclass
class Platform:
    settings: Settings
    db: Database
    clock: Clock
    channels: dict[str, Channel] = field(default_factory=dict)

    def channel(self, name: str) -> Channel:
        try:
            return self.channels[name]
        except KeyError:
            raise MethodNotAvailable(f"payment channel {name!r} is not configured") from None

    @property
    def base_url(self) -> str:
        return self.settings.base_url.rstrip("/")

    def channel_notify_url(self, channel: str) -> str:
        return f"{self.base_url}/channels/{channel}/notify"

    def pay_url(self, cashier_token: str) -> str:
        return f"{self.base_url}/cashier/{cashier_token}"
