"""Long commands show a progress bar on a terminal, and nothing at all off one (stdout stays the answer)."""

from __future__ import annotations

import io

from rich.console import Console

from piaohao.cli.progress import bar
from piaohao.drills.scenarios import run_scenarios
from piaohao.kernel.progress import SILENT
from tests.support.steps import StepRecorder


def test_a_terminal_gets_a_bar_with_steps_and_counts():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with bar(console) as progress:
        progress.start("recon 2026-11-26", 2)
        progress.advance("alipay")
        progress.advance("wechatpay")
    drawn = out.getvalue()
    assert "recon 2026-11-26" in drawn and "2/2" in drawn


def test_off_a_terminal_nothing_is_drawn():
    out = io.StringIO()
    with bar(Console(file=out, force_terminal=False)) as progress:
        assert progress is SILENT
        progress.start("x", 1)
        progress.advance("y")
    assert out.getvalue() == ""


def test_drills_report_each_scenario_as_a_step(tmp_path):
    seen = StepRecorder()
    results = run_scenarios(["notify-duplicate"], database_url=f"sqlite:///{tmp_path}/d.db", progress=seen)
    assert seen.calls[0] == ("start", "drills", 1)
    assert seen.calls[1] == ("advance", f"notify-duplicate: {results[0]['verdict']}")
