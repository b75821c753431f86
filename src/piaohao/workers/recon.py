"""The near-real-time reconciliation worker: every PIAOHAO_RECON_INTERVAL_S (by the platform's
clock, so tests move time instead of sleeping) it runs the record-to-ledger, sum, sequence,
timeliness and risk checks over what changed recently (`piaohao.recon.run.realtime_pass`). A
break is an open finding and a `recon.<class>` alert at the next pass: within one interval of
appearing, two at most."""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from piaohao.platform import Platform
from piaohao.recon.run import realtime_pass

log = structlog.get_logger(__name__)
__all__ = ["ReconWorker", "idle_s"]


def idle_s(p: Platform) -> float:
    """How often the loop looks at the clock: often enough to start each pass on time."""
    return max(0.05, min(p.settings.recon_interval_s / 4, 5.0))


class ReconWorker:
    def __init__(self, p: Platform):
        self.p = p
        self.next_at: datetime | None = None

    def run_once(self) -> int:
        now = self.p.clock.now()
        if self.next_at is not None and now < self.next_at:
            return 0
        self.next_at = now + timedelta(seconds=self.p.settings.recon_interval_s)
        result = realtime_pass(self.p)
        if result.findings:
            log.warning("recon.realtime", open_findings=len(result.findings), summary=result.summary)
        return 0
