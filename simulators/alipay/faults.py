"""Faults on demand. A fault is armed globally or for one trade (`out_trade_no`), optionally for
one gateway method, for a number of uses (None: until cleared).

Gateway faults (`GATEWAY_KINDS`):
- `hang`: hold the answer until released (`release_hang`) or `hang_max_s`, so a client times out;
- `slow`: answer after `delay_s` seconds;
- `system_error`: answer `20000 isp.unknow-error`; with `apply=True` the call takes effect first
  (what makes the outcome truly unknown);
- `http_502`: a proxy error page instead of JSON;
- `unsigned_error`: an `error_response` without `sign`;
- `bad_response_signature`: a normal answer signed with the wrong key.
Notification faults (`NOTIFY_KINDS`): `notify_drop` (never sent), `notify_duplicate` (each attempt
twice), `notify_bad_signature` (signed with a key that is not Alipay's), `notify_tamper_amount`
(`total_amount` changed after signing), `notify_amount_delta` (correctly signed, amount off by
`delta_fen`).
Bill faults (`BILL_KINDS`): `bill_missing_row`, `bill_extra_row`, `bill_changed_amount` (`delta_fen`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["BILL_KINDS", "Fault", "FaultBook", "GATEWAY_KINDS", "KINDS", "NOTIFY_KINDS"]

GATEWAY_KINDS = frozenset({"hang", "slow", "system_error", "http_502", "unsigned_error", "bad_response_signature"})
NOTIFY_KINDS = frozenset({"notify_drop", "notify_duplicate", "notify_bad_signature", "notify_tamper_amount",
                          "notify_amount_delta"})
BILL_KINDS = frozenset({"bill_missing_row", "bill_extra_row", "bill_changed_amount"})
KINDS = GATEWAY_KINDS | NOTIFY_KINDS | BILL_KINDS


@dataclass
class Fault:
    kind: str
    out_trade_no: str | None = None  # None: every trade
    method: str | None = None  # gateway faults: None means every method
    times: int | None = None  # uses left; None: until cleared
    delay_s: float = 0.0
    apply: bool = False
    delta_fen: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")


class FaultBook:
    """Armed faults, thread-safe. `take` consumes one use of the first matching fault. A `hang`
    holds answers until `release_hang()` or `clear()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.released = threading.Event()
        self.released.set()

    def arm(self, fault: Fault) -> Fault:
        with self._lock:
            if fault.kind == "hang":
                self.released.clear()
            self._faults.append(fault)
        return fault

    def release_hang(self) -> None:
        self.released.set()

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
        self.released.set()

    def take(self, kinds: frozenset[str], out_trade_no: str | None, method: str | None = None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind not in kinds:
                    continue
                if fault.out_trade_no is not None and fault.out_trade_no != out_trade_no:
                    continue
                if fault.method is not None and fault.method != method:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def active(self, kind: str, out_trade_no: str | None) -> list[Fault]:
        """Every armed fault of `kind` for this trade, without consuming (bill faults apply to a whole file)."""
        with self._lock:
            return [f for f in self._faults if f.kind == kind and f.out_trade_no in (None, out_trade_no)]
