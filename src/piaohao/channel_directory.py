"""The channels the platform can reach right now, by key: what `Platform.channel(key)` answers.

A key is a channel account's id (`ca_...`) or, for the platform's own self-provisioned account,
its kind's name (`sandbox`). Payments, refunds and payouts record the key of the account that
carried them, so a channel is found again by it to query, close or refund, even after the account
was disabled for new payments. Adapters are built lazily from the stored configuration (secrets
opened with the platform's sealer) and cached; they are thread-safe.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

from sqlalchemy import select

from piaohao.channels.registry import KINDS
from piaohao.channels.spi import Channel
from piaohao.channels.spi.plugin import ChannelContext
from piaohao.db.database import Database
from piaohao.db.schema_channels import channel_accounts
from piaohao.kernel.sealing import Sealer

__all__ = ["ChannelDirectory", "open_config", "SEALED_PURPOSE"]

SEALED_PURPOSE = "channel_accounts.config_sealed"


def open_config(row, sealer: Sealer) -> dict[str, str]:
    """A channel account row's whole configuration: public fields and opened secrets."""
    config = dict(json.loads(row.config_public))
    config.update(json.loads(sealer.open(row.config_sealed, purpose=f"{SEALED_PURPOSE}:{row.channel_account_id}")))
    return config


class ChannelDirectory:
    def __init__(self, db: Database, ctx: ChannelContext, sealer: Callable[[], Sealer]):
        self._db, self.ctx, self._sealer = db, ctx, sealer
        self._cache: dict[str, Channel] = {}
        self._lock = threading.Lock()

    def __getitem__(self, key: str) -> Channel:
        with self._lock:
            found = self._cache.get(key)
        if found is not None:
            return found
        with self._db.read() as conn:
            row = conn.execute(select(channel_accounts).where(channel_accounts.c.channel_account_id == key)).first()
        if row is None or row.kind not in KINDS:
            raise KeyError(key)
        channel = KINDS[row.kind].build(open_config(row, self._sealer()), self.ctx)
        with self._lock:
            return self._cache.setdefault(key, channel)

    def __setitem__(self, key: str, channel: Channel) -> None:
        """Put a built channel in place (the composition root's provisioned accounts; tests' wrappers)."""
        with self._lock:
            self._cache[key] = channel

    def __contains__(self, key: object) -> bool:
        try:
            self[str(key)]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._cache))

    def forget(self, key: str) -> None:
        """Drop a cached adapter (its account changed)."""
        with self._lock:
            self._cache.pop(key, None)
