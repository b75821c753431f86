"""Progress bars for long commands, on stderr and only on a terminal.

stdout carries the command's answer alone (`--json` must parse), and a bar in a captured or piped
stream is noise, so off a terminal nothing is drawn at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from piaohao.kernel.progress import SILENT
from piaohao.kernel.progress import Progress as Steps

__all__ = ["bar"]


class _Bar:
    def __init__(self, rich: Progress):
        self._rich = rich
        self._task = None

    def start(self, label: str, total: int) -> None:
        if self._task is not None:
            self._rich.update(self._task, visible=False)
        self._task = self._rich.add_task(label, total=max(total, 0), step="")

    def advance(self, step: str) -> None:
        if self._task is not None:
            self._rich.update(self._task, advance=1, step=step)


@contextmanager
def bar(console: Console | None = None) -> Iterator[Steps]:
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield SILENT
        return
    rich = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[step]}", style="dim"), console=console, transient=True)
    with rich:
        yield _Bar(rich)
