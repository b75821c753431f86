"""A channel that behaves like the sandbox without HTTP, for service-level tests."""

from __future__ import annotations

import threading
import time

from piaohao.channels.spi import Outcome, PaymentResult, PayoutResult

SUFFIX = {"paid": "0001", "refused": "0002", "timeout": "0003", "silent": "0009"}


class ScriptedChannel:
    """The sandbox's behaviour without HTTP: payments wait for the test; bank accounts ending in
    0001 are paid, 0002 refused, 0003 paid but the first answer is lost, 0009 never answered."""

    name = "sandbox"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.payouts: dict[str, tuple[int, str]] = {}
        self.calls: dict[str, int] = {}
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def create_payment(self, req):
        return PaymentResult(Outcome.PENDING, redirect_url=f"http://bank.test/{req.payment_no}",
                             channel_txn_no="T" + req.payment_no)

    def close_payment(self, payment_no):
        return PaymentResult(Outcome.CLOSED)

    def payout(self, req):
        with self.lock:
            self.calls[req.payout_no] = self.calls.get(req.payout_no, 0) + 1
            recorded = self.payouts.setdefault(req.payout_no, (req.amount, req.account_number))
        time.sleep(self.delay_s)
        assert recorded == (req.amount, req.account_number), "the same payout_no for another payout"
        if req.account_number.endswith(SUFFIX["timeout"]) and self.calls[req.payout_no] == 1:
            return PayoutResult(Outcome.UNKNOWN, error="timeout")
        return self.query_payout(req.payout_no)

    def query_payout(self, payout_no):
        if payout_no not in self.payouts:
            return PayoutResult(Outcome.NOT_FOUND)
        if self.payouts[payout_no][1].endswith(SUFFIX["silent"]):
            return PayoutResult(Outcome.UNKNOWN, error="timeout")
        if self.payouts[payout_no][1].endswith(SUFFIX["refused"]):
            return PayoutResult(Outcome.FAILED, error="ACCOUNT_INVALID")
        return PayoutResult(Outcome.SUCCEEDED, channel_payout_no="P" + payout_no)


