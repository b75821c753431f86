"""`piaohao drill run all` passes on SQLite within bounded time: every fault class is absorbed
(books balanced, nothing open) or detected by its named check within its bound."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from piaohao.cli import app
from piaohao.drills.scenarios import SCENARIOS


def test_drill_list_names_every_scenario_and_its_check():
    out = CliRunner().invoke(app, ["drill", "list", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [r["scenario"] for r in rows] == [s.name for s in SCENARIOS]
    assert {r["check"] for r in rows if r["expects"] == "detected"} == {
        "platform_only", "channel_only", "amount_mismatch", "duplicate", "ledger_mismatch", "sum_mismatch"}


@pytest.mark.timeout(600)
def test_drill_run_all_passes_on_sqlite():
    out = CliRunner().invoke(app, ["drill", "run", "all", "--seed", "7", "--json"])
    lines = [ln for ln in out.output.splitlines() if ln.startswith("[")]
    results = json.loads(lines[-1])
    failed = [r for r in results if r["verdict"] != "pass"]
    assert not failed, failed
    assert out.exit_code == 0
    assert len(results) == len(SCENARIOS)
    for r in results:
        assert r["books_balanced"] is True
        if r["check"] != "-":
            assert r["check"] in r["detected_by"] and f"recon.{r['check']}" in r["detected_by"]
