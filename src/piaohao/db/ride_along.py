"""Work that commits with the caller's next write transaction instead of in one of its own.

The signing gateway uses it for a request's nonce: a write request then costs one transaction,
not two (the nonce's own transaction was 15 % of create-trade's CPU, docs/speed.md). The work
runs first inside that transaction, so if it raises (a reused nonce), nothing of the request's
unit of work is written. Whoever attached the work finds out from `committed` whether some
write carried it, and otherwise runs it on its own (a request that failed before writing).

A context variable carries it: set on the event loop, it is copied into the thread that runs
the endpoint, and only that request's writes see it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import TypeVar

from sqlalchemy import Connection

T = TypeVar("T")


class RideAlong:
    def __init__(self, work: Callable[[Connection], None]):
        self._work = work
        self.committed = False
        self.withdrawn = False

    def withdraw(self) -> None:
        """No later write carries it: its owner is about to run it on its own."""
        self.withdrawn = True

    def wrap(self, fn: Callable[[Connection], T]) -> Callable[[Connection], T]:
        def both(conn: Connection) -> T:
            self._work(conn)
            return fn(conn)

        return both


_pending: ContextVar[RideAlong | None] = ContextVar("piaohao_ride_along", default=None)


def attach(ride: RideAlong) -> Token:
    return _pending.set(ride)


def detach(token: Token) -> None:
    _pending.reset(token)


def pending() -> RideAlong | None:
    """The work waiting for this context's next write transaction, if any."""
    ride = _pending.get()
    return None if ride is None or ride.committed or ride.withdrawn else ride
