"""Closes trades whose payment time is over, at the channel first and then here."""

from __future__ import annotations

import time

import structlog
from sqlalchemy import select

from piaohao.db.schema import trades
from piaohao.domain import trades as trade_states
from piaohao.platform import Platform
from piaohao.services.closing import close_pending_trade

log = structlog.get_logger(__name__)
RETRY_AFTER_S = 5.0  # a channel that could not confirm a close is asked again after this long


class ExpiryWorker:
    def __init__(self, p: Platform, batch_size: int = 100):
        self.p = p
        self.batch_size = batch_size
        self._deferred: dict[str, float] = {}

    def run_once(self) -> int:
        now = self.p.clock.now()
        with self.p.db.read() as conn:
            due = conn.execute(select(trades.c.trade_no).where(
                trades.c.status == trade_states.PENDING, trades.c.expires_at <= now
            ).order_by(trades.c.expires_at).limit(self.batch_size)).scalars().all()
        mono = time.monotonic()
        worked = 0
        for trade_no in due:
            if self._deferred.get(trade_no, 0) > mono:
                continue
            worked += 1
            outcome = close_pending_trade(self.p, trade_no, reason=trade_states.CLOSE_REASON_EXPIRED)
            if outcome == "in_progress":
                self._deferred[trade_no] = mono + RETRY_AFTER_S
            else:
                self._deferred.pop(trade_no, None)
        if len(self._deferred) > 10 * self.batch_size:
            self._deferred = {k: v for k, v in self._deferred.items() if v > mono}
        return worked
