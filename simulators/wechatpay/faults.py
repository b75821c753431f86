"""Faults on demand, per trade (by `out_trade_no`) or global, so tests can drive every bad day a
real channel has. Thread-safe; the HTTP control endpoint and the Python API share one book."""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["ANSWER_KINDS", "BILL_KINDS", "FAULT_KINDS", "NOTIFY_KINDS", "Fault", "FaultBook"]

# How an API answer goes wrong. `slow` waits `delay_s` (after applying the call) so the client
# times out; `system_error` applies the call, then answers 500 SYSTEM_ERROR (outcome unknown).
ANSWER_KINDS = frozenset({"slow", "system_error"})
# How a notification goes wrong.
NOTIFY_KINDS = frozenset({
    "duplicate_notification",  # delivered once more after it was acknowledged
    "no_notification",  # never sent
    "tampered_notification",  # body changed after signing: the signature does not verify
    "amount_changed_notification",  # correctly signed and encrypted, but 1 fen less than paid
    "wrong_key_notification",  # resource encrypted under a key that is not the merchant's APIv3 key
})
# How the trade bill goes wrong (global only: a bill is per day, not per trade).
BILL_KINDS = frozenset({"bill_missing_row", "bill_extra_row", "bill_changed_amount", "bill_wrong_hash"})
FAULT_KINDS = ANSWER_KINDS | NOTIFY_KINDS | BILL_KINDS
DELAY_S_DEFAULT = 10.0


@dataclass(frozen=True)
class Fault:
    kind: str
    out_trade_no: str | None = None  # None: every trade
    delay_s: float = DELAY_S_DEFAULT  # `slow` only


class FaultBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[tuple[str, str | None], Fault] = {}

    def set(self, kind: str, *, out_trade_no: str | None = None, delay_s: float = DELAY_S_DEFAULT) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        if kind in BILL_KINDS and out_trade_no is not None:
            raise ValueError("bill faults are global")
        fault = Fault(kind, out_trade_no, float(delay_s))
        with self._lock:
            self._faults[(kind, out_trade_no)] = fault
        return fault

    def clear(self, kind: str | None = None, *, out_trade_no: str | None = None) -> None:
        with self._lock:
            if kind is None:
                self._faults.clear()
            else:
                self._faults.pop((kind, out_trade_no), None)

    def find(self, kind: str, out_trade_no: str | None = None) -> Fault | None:
        """The fault of this kind for this trade, or the global one."""
        with self._lock:
            return self._faults.get((kind, out_trade_no)) or self._faults.get((kind, None))

    def has(self, kind: str, out_trade_no: str | None = None) -> bool:
        return self.find(kind, out_trade_no) is not None

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults.values())
