"""Loops each worker's `run_once()` on its own thread until told to stop.

A worker that raises is logged and backed off, never killed: the loop is the only thing keeping
payments moving. Every unit of work is a transaction, so stopping at any instant loses nothing.

An idle loop waits `idle_s` before its next round. A loop with a `wake` event waits on it instead
and runs as soon as it is set (work was committed, docs/operations.md "How workers wake"); the
event is cleared *before* each round, so a wake-up that arrives during a round is never lost: the
next wait returns at once. `idle_s` is then only the safety poll, for work nobody signalled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)
ERROR_BACKOFF_S_MAX = 10.0


@dataclass
class Loop:
    name: str
    run_once: Callable[[], int]
    idle_s: float
    wake: threading.Event | None = None  # set when there may be work: the idle wait ends at once


class Runner:
    def __init__(self, loops: list[Loop]):
        self.loops = loops
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> Runner:
        for loop in self.loops:
            t = threading.Thread(target=self._run, args=(loop,), name=f"worker-{loop.name}", daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def _run(self, loop: Loop) -> None:
        errors = 0
        idle = loop.wake or self.stop_event
        while not self.stop_event.is_set():
            if loop.wake is not None:
                loop.wake.clear()  # before the round: a wake-up during it makes the next wait return at once
            try:
                done = loop.run_once()
                errors = 0
            except Exception:  # noqa: BLE001 - log, back off, keep going
                errors += 1
                log.exception("worker.error", worker=loop.name, consecutive=errors)
                self.stop_event.wait(min(ERROR_BACKOFF_S_MAX, 0.1 * 2**errors))
                continue
            if not done:
                idle.wait(loop.idle_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stop_event.set()
        for loop in self.loops:
            if loop.wake is not None:
                loop.wake.set()  # ends its idle wait; the loop sees stop_event and returns
        for t in self.threads:
            t.join(timeout=timeout_s)
