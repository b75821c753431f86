"""A `kernel.progress.Progress` that records what a long operation reported, for asserting on it."""

from __future__ import annotations


class StepRecorder:
    def __init__(self):
        self.calls: list[tuple] = []

    def start(self, label: str, total: int) -> None:
        self.calls.append(("start", label, total))

    def advance(self, step: str) -> None:
        self.calls.append(("advance", step))
