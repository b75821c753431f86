"""Periodic settlement: settles every order (and own sale) whose settlement period ran out, then
pays out the sub-merchants whose payout cycle (`payout_every_days`) is due."""

from __future__ import annotations

from piaohao.clearing.batches import run_due
from piaohao.clearing.payout_cycles import run_payout_cycles
from piaohao.platform import Platform

SETTLEMENT_CHECK_EVERY_S = 5.0


class SettlementWorker:
    def __init__(self, p: Platform, chunk: int = 2000):
        self.p = p
        self.chunk = chunk

    def run_once(self, as_of=None) -> int:
        """Settles one chunk of due orders (as of `as_of`, default now), then creates the due
        payout-cycle payouts; returns how many orders and payouts."""
        as_of = as_of or self.p.clock.now()
        orders = run_due(self.p, as_of, chunk=self.chunk, max_chunks=1)["orders"]
        return orders + run_payout_cycles(self.p, as_of)["payouts"]
