"""Faults on demand: the sandbox misbehaves the way real channels do, when a test asks it to.

A fault names an operation (`op`) and a `kind`, optionally one payment (`out_trade_no`; for
payout operations it matches `out_payout_no`) and a `count` of calls it affects before it is
gone (none: until cleared). A fault for one payment wins over a global one. Faults are rows in
the sandbox's database, so they work across threads and processes, and taking one is atomic
(a conditional decrement), so a `count` of 1 affects exactly one call.

Kinds on the merchant API (every op but `notify` and the bill-only kinds):
- `slow`: sleep `delay_s`, then act normally.
- `timeout`: act (the effect happens), then sleep `delay_s` before answering, so the caller
  times out: a real channel whose answer is lost.
- `error`: answer HTTP 500 without doing anything.
- `bad_signature`: act, then answer with a signature that does not verify.
On `notify` (per delivery attempt): `slow` postpones the attempt by `delay_s`; `error` skips it
(counted as a failed try); `timeout` delivers it but ignores the answer (counted as failed).
On `refund`: `processing` keeps the refund PROCESSING for `delay_s`, then it settles; `fail`
makes it FAIL. On `bill`: `missing_rows` omits the rows of `out_trade_nos`; `extra_rows` adds
`count` fabricated rows (here `count` is a number of rows). Bill-row faults stay until cleared.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from datetime import datetime

import orjson
from sqlalchemy import Connection, delete, insert, select, update

from .store import SandboxStore
from .wire import KEY_RE, SandboxError

__all__ = ["OPS", "WIRE_KINDS", "NOTIFY_KINDS", "REFUND_KINDS", "Fault", "FaultBook"]

OPS = ("pay", "query", "close", "refund", "refund_query", "payout", "payout_query", "bill", "notify")
WIRE_KINDS = ("slow", "timeout", "error", "bad_signature")
NOTIFY_KINDS = ("slow", "timeout", "error")
REFUND_KINDS = ("processing", "fail")
BILL_ROW_KINDS = ("missing_rows", "extra_rows")
DELAY_S_MAX = 3600.0
COUNT_MAX = 1_000_000
BILL_EXTRA_ROWS_MAX = 10_000
BILL_MISSING_KEYS_MAX = 10_000


@dataclass(frozen=True)
class Fault:
    id: str
    op: str
    kind: str
    delay_s: float
    remaining: int | None
    out_trade_no: str | None
    out_trade_nos: tuple[str, ...] = ()

    def to_json(self) -> dict:
        data = asdict(self)
        data["count"] = data.pop("remaining")
        data["out_trade_nos"] = list(self.out_trade_nos)
        return data


def _allowed_kinds(op: str) -> tuple[str, ...]:
    if op == "notify":
        return NOTIFY_KINDS
    if op == "refund":
        return WIRE_KINDS + REFUND_KINDS
    if op == "bill":
        return WIRE_KINDS + BILL_ROW_KINDS
    return WIRE_KINDS


def _validated(data: dict) -> dict:
    """Check a fault request (the `POST /faults` body) and return the row to store."""
    op, kind = data.get("op"), data.get("kind")
    if op not in OPS:
        raise SandboxError(400, "INVALID_FAULT", f"op must be one of {', '.join(OPS)}")
    if kind not in _allowed_kinds(op):
        raise SandboxError(400, "INVALID_FAULT", f"kind for {op} must be one of {', '.join(_allowed_kinds(op))}")
    delay_s = data.get("delay_s", 0)
    if isinstance(delay_s, bool) or not isinstance(delay_s, int | float) or not 0 <= delay_s <= DELAY_S_MAX:
        raise SandboxError(400, "INVALID_FAULT", f"delay_s must be a number of seconds, 0..{DELAY_S_MAX}")
    count = data.get("count")
    if count is not None and (type(count) is not int or not 1 <= count <= COUNT_MAX):
        raise SandboxError(400, "INVALID_FAULT", "count must be a positive integer")
    out_trade_no = data.get("out_trade_no")
    if out_trade_no is not None and (not isinstance(out_trade_no, str) or not KEY_RE.match(out_trade_no)):
        raise SandboxError(400, "INVALID_FAULT", "out_trade_no must be a merchant key")
    params: dict = {}
    if kind == "missing_rows":
        keys = data.get("out_trade_nos")
        if (not isinstance(keys, list) or not 1 <= len(keys) <= BILL_MISSING_KEYS_MAX
                or not all(isinstance(k, str) and KEY_RE.match(k) for k in keys)):
            raise SandboxError(400, "INVALID_FAULT", "missing_rows needs out_trade_nos: a list of merchant keys")
        params["out_trade_nos"], count = keys, None
    if kind == "extra_rows":
        if count is None or count > BILL_EXTRA_ROWS_MAX:
            raise SandboxError(400, "INVALID_FAULT", f"extra_rows needs count: 1..{BILL_EXTRA_ROWS_MAX} rows")
        params["rows"], count = count, None
    return {"op": op, "kind": kind, "delay_s": float(delay_s), "remaining": count, "out_trade_no": out_trade_no,
            "params": orjson.dumps(params).decode() if params else None}


class FaultBook:
    """Set, list, clear and take faults in a `SandboxStore`."""

    def __init__(self, store: SandboxStore):
        self.store = store
        self.t = store.t.faults

    def add(self, data: dict, now: datetime) -> Fault:
        row = {"id": "flt_" + secrets.token_hex(8), **_validated(data), "created_at": now}
        self.store.write(lambda conn: conn.execute(insert(self.t).values(**row)))
        return self._to_fault(row)

    def list(self) -> list[Fault]:
        with self.store.read() as conn:
            rows = conn.execute(select(self.t).order_by(self.t.c.created_at, self.t.c.id)).mappings().all()
        return [self._to_fault(r) for r in rows]

    def clear(self) -> int:
        return self.store.write(lambda conn: conn.execute(delete(self.t)).rowcount)

    def take(self, op: str, key: str | None, kinds: tuple[str, ...], conn: Connection | None = None) -> Fault | None:
        """Consume one call's worth of the best matching fault (per-payment first), or None.
        Pass `conn` to take it inside a unit of work already open (it then rolls back with it)."""
        def work(conn: Connection) -> Fault | None:
            query = select(self.t).where(self.t.c.op == op, self.t.c.kind.in_(kinds))
            query = query.where((self.t.c.out_trade_no.is_(None)) | (self.t.c.out_trade_no == key))
            rows = conn.execute(query.order_by(self.t.c.created_at, self.t.c.id)).mappings().all()
            rows = sorted(rows, key=lambda r: r["out_trade_no"] is None)  # stable: specific first
            for r in rows:
                if r["remaining"] is None:
                    return self._to_fault(r)
                taken = conn.execute(update(self.t).where(self.t.c.id == r["id"], self.t.c.remaining > 0)
                                     .values(remaining=self.t.c.remaining - 1)).rowcount
                conn.execute(delete(self.t).where(self.t.c.id == r["id"], self.t.c.remaining <= 0))
                if taken:
                    return self._to_fault(r)
            return None
        if conn is not None:
            return work(conn)
        if not self._any(op, kinds):
            return None  # the common case: no write transaction for a call without faults
        return self.store.write(work)

    def _any(self, op: str, kinds: tuple[str, ...]) -> bool:
        with self.store.read() as conn:
            found = conn.execute(select(self.t.c.id).where(self.t.c.op == op, self.t.c.kind.in_(kinds)).limit(1))
            return found.first() is not None

    def bill_row_faults(self) -> list[Fault]:
        """Every bill-row fault in force (they are not consumed by a call)."""
        return [f for f in self.list() if f.op == "bill" and f.kind in BILL_ROW_KINDS]

    @staticmethod
    def _to_fault(r) -> Fault:
        params = orjson.loads(r["params"]) if r["params"] else {}
        remaining = r["remaining"]
        if r["kind"] == "extra_rows":
            remaining = params.get("rows")
        return Fault(id=r["id"], op=r["op"], kind=r["kind"], delay_s=float(r["delay_s"]), remaining=remaining,
                     out_trade_no=r["out_trade_no"], out_trade_nos=tuple(params.get("out_trade_nos", ())))
