"""The running platform's collaborators, handed to every use case."""

from __future__ import annotations

from dataclasses import dataclass, field

from piaohao.channel_directory import ChannelDirectory
from piaohao.channels.spi import Channel
from piaohao.channels.spi.plugin import ChannelContext
from piaohao.db.database import Database
from piaohao.kernel.clock import Clock
from piaohao.kernel.errors import MethodNotAvailable
from piaohao.kernel.sealing import Sealer
from piaohao.kernel.settings import Settings


@dataclass
class Platform:
    settings: Settings
    db: Database
    clock: Clock
    channels: ChannelDirectory = field(default=None)  # type: ignore[assignment]  (made in __post_init__)
    _sealer: Sealer | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.channels is None:
            self.channels = ChannelDirectory(self.db, self.channel_context(), self.sealer)

    def sealer(self) -> Sealer:
        """Seals secrets at rest; made on first use (it needs PIAOHAO_SECRET_KEY outside the embedded default)."""
        if self._sealer is None:
            self._sealer = self.settings.sealer()
        return self._sealer

    def channel_context(self) -> ChannelContext:
        s = self.settings
        return ChannelContext(now=self.clock.now, timeout_s=s.channel_timeout_s, base_url=self.base_url,
                              database_url=s.database_url, business_tz=s.business_tz,
                              worker_poll_s=s.worker_poll_s, env=dict(s.channel_env), embedded=s.embedded)

    def channel(self, key: str) -> Channel:
        try:
            return self.channels[key]
        except KeyError:
            raise MethodNotAvailable(f"payment channel {key!r} is not configured") from None

    @property
    def base_url(self) -> str:
        return self.settings.base_url.rstrip("/")

    def channel_notify_url(self, channel: str) -> str:
        return f"{self.base_url}/channels/{channel}/notify"

    def pay_url(self, cashier_token: str) -> str:
        return f"{self.base_url}/cashier/{cashier_token}"
