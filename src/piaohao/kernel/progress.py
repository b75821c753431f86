"""How a long operation reports its steps, without knowing who watches (a terminal bar, a log, nobody).

Use cases take `progress: Progress = SILENT`; the CLI passes a bar drawn on stderr (cli/progress.py).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Progress", "SILENT"]


class Progress(Protocol):
    def start(self, label: str, total: int) -> None:
        """A new phase of `total` steps begins."""

    def advance(self, step: str) -> None:
        """One step of the current phase is done; `step` names it (a channel, a scenario, a page)."""


class _Silent:
    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, step: str) -> None:
        pass


SILENT: Progress = _Silent()
