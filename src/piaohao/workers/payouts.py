"""The payout executor: pays withdrawals and payouts out through the channel, and finds out.

One `run_once()`:
1. claim  - for each due record (`processing`, `next_attempt_at <= now`), one conditional UPDATE
   (`attempts = seen`, still processing and due) counts the call and moves `next_attempt_at` past
   a lease, so two workers (threads or processes) never call the channel for the same record at
   once; a worker that dies mid-call only delays it until the lease ends.
2. call   - outside any transaction: the first claim pays (`channel.payout`, idempotent at the
   channel on `payout_no` = our record number); later claims query (`query_payout`). A query
   that says NOT_FOUND means the payout never reached the channel: it is sent again, which the
   channel's idempotency makes safe whatever happened to the first one.
3. record - `services.payouts.apply_payout_result`: final answers settle the record and its
   ledger entries; anything else schedules the next call at a growing interval, and after
   `PAYOUT_TRIES_MAX` calls parks it (alert `payout_unknown`, still processing).
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy import select, update

from piaohao.channels.spi import Outcome, PayoutRequest, PayoutResult
from piaohao.db.schema_members import disbursements
from piaohao.domain.business import DISBURSEMENT_STATES, PROCESSING
from piaohao.platform import Platform
from piaohao.services.payouts import apply_payout_result, disbursement_account_number

log = structlog.get_logger(__name__)
LEASE_MARGIN_S = 30.0
_d = disbursements.c


class PayoutExecutor:
    def __init__(self, p: Platform, batch_size: int = 20):
        self.p = p
        self.batch_size = batch_size

    @property
    def lease_s(self) -> float:
        # A payout and a query may each take the channel's timeout (a NOT_FOUND query pays again).
        return 3 * self.p.settings.channel_timeout_s + LEASE_MARGIN_S

    def run_once(self) -> int:
        now = self.p.clock.now()
        with self.p.db.read() as conn:
            due = conn.execute(select(_d.disbursement_no, _d.attempts).where(
                _d.status == PROCESSING, _d.next_attempt_at.is_not(None), _d.next_attempt_at <= now)
                .order_by(_d.next_attempt_at).limit(self.batch_size)).all()
        worked = 0
        for number, attempts in due:
            row = self._claim(number, attempts)
            if row is None:
                continue
            worked += 1
            try:
                result = self._call(row, attempts)
            except Exception as exc:  # noqa: BLE001 - a channel must not raise; if it does, the outcome is unknown
                log.exception("payout.call_error", number=number)
                result = PayoutResult(Outcome.UNKNOWN, error=f"{type(exc).__name__}: {exc}")
            apply_payout_result(self.p, number, result, claim=attempts + 1)
        return worked

    def _claim(self, number: str, attempts: int):
        now = self.p.clock.now()
        lease_end = now + timedelta(seconds=self.lease_s)

        def tx(conn):
            won = conn.execute(update(disbursements).where(
                _d.disbursement_no == number, _d.attempts == attempts,
                _d.status.in_(DISBURSEMENT_STATES.sources("retry")), _d.next_attempt_at <= now).values(
                attempts=attempts + 1, next_attempt_at=lease_end, updated_at=now)).rowcount
            if won != 1:
                return None
            return conn.execute(select(disbursements).where(_d.disbursement_no == number)).mappings().one()

        return self.p.db.write(tx)

    def _call(self, row, attempts: int) -> PayoutResult:
        channel = self.p.channel(row["channel"])
        request = PayoutRequest(payout_no=row["disbursement_no"], amount=row["amount"], currency=row["currency"],
                                bank=row["bank"], account_number=disbursement_account_number(self.p, row),
                                account_name=row["account_name"])
        if attempts == 0:
            log.info("payout.call", number=row["disbursement_no"], kind=row["kind"], amount=row["amount"],
                     account=row["account_number_masked"])
            return channel.payout(request)
        result = channel.query_payout(row["disbursement_no"])
        if result.outcome == Outcome.NOT_FOUND:
            log.info("payout.resend", number=row["disbursement_no"], account=row["account_number_masked"])
            return channel.payout(request)
        return result
