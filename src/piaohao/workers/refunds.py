"""The refund worker: finds refunds due for a try and runs `services.refund_tries.execute_refund`."""

from __future__ import annotations

import structlog
from sqlalchemy import or_, select

from piaohao.db.schema_refunds import refunds
from piaohao.domain import refunds as rs
from piaohao.domain.refunds import RefundPolicy
from piaohao.platform import Platform
from piaohao.services.refund_tries import BATCH_SIZE_DEFAULT, execute_refund

log = structlog.get_logger(__name__)


class RefundWorker:
    """`run_once()`: one try for every refund that is due (see the module docstring)."""

    def __init__(self, p: Platform, policy: RefundPolicy | None = None, batch_size: int = BATCH_SIZE_DEFAULT):
        self.p = p
        self.policy = policy or RefundPolicy.from_settings(p.settings)
        self.batch_size = batch_size

    def run_once(self) -> int:
        now = self.p.clock.now()
        with self.p.db.read() as conn:
            due = conn.execute(select(refunds.c.refund_no).where(
                refunds.c.status == rs.PROCESSING, refunds.c.next_attempt_at <= now,
                or_(refunds.c.lease_until.is_(None), refunds.c.lease_until <= now))
                .order_by(refunds.c.next_attempt_at).limit(self.batch_size)).scalars().all()
        worked = 0
        for refund_no in due:
            try:
                if execute_refund(self.p, refund_no, self.policy) != "not_claimed":
                    worked += 1
            except Exception:  # noqa: BLE001 - one bad refund must not stop the others
                log.exception("refund.try_error", refund_no=refund_no)
        return worked
