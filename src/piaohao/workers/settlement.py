"""Periodic settlement: settles every order (and own sale) whose settlement period ran out."""

from __future__ import annotations

from piaohao.clearing.batches import run_due
from piaohao.platform import Platform

SETTLEMENT_CHECK_EVERY_S = 5.0


class SettlementWorker:
    def __init__(self, p: Platform, chunk: int = 2000):
        self.p = p
        self.chunk = chunk

    def run_once(self, as_of=None) -> int:
        """Settles one chunk of due orders (as of `as_of`, default now); returns how many."""
        return run_due(self.p, as_of, chunk=self.chunk, max_chunks=1)["orders"]
