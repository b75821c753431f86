"""The CLI a newcomer meets: --version, readable tables, "nothing found", ledger accounts, pure --json."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from piaohao import __version__
from piaohao.cli import app
from tests.conftest import TEST_SECRET_KEY


@pytest.fixture
def cli(database_url, monkeypatch):
    monkeypatch.setenv("PIAOHAO_DATABASE_URL", database_url)
    monkeypatch.setenv("PIAOHAO_SECRET_KEY", TEST_SECRET_KEY)  # required outside the embedded default
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result

    run("db", "upgrade")
    return run


def test_version_answers_without_a_database():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"piaohao {__version__}"


def test_empty_lists_say_nothing_found_and_json_stays_an_empty_list(cli):
    assert cli("merchants", "list").stdout.strip() == "nothing found"
    assert cli("alerts", "list").stdout.strip() == "nothing found"
    assert json.loads(cli("merchants", "list", "--json").stdout) == []


def test_plain_output_is_a_table_without_python_reprs(cli):
    creds = json.loads(cli("merchants", "create", "--name", "My Shop", "--json").stdout)
    shown = cli("merchants", "list").stdout
    assert shown.splitlines()[0].split() == ["merchant_id", "name", "status", "created_at", "apps"]
    assert creds["merchant_id"] in shown and creds["app_id"] in shown and "My Shop" in shown
    assert "None" not in shown and "{'" not in shown  # no Python reprs
    one = cli("merchants", "create", "--name", "Other").stdout
    assert [line.split()[0] for line in one.splitlines()] == ["merchant_id", "app_id", "app_secret"]


def test_ledger_accounts_lists_what_a_statement_needs(running, monkeypatch):
    from piaohao.channels.spi import Outcome, PaymentResult
    from piaohao.services import payments
    from tests.api.test_gateway import trade_body

    monkeypatch.setenv("PIAOHAO_DATABASE_URL", running.settings.database_url)
    m = running.merchant()
    trade = m.call("POST", "/v1/trades", trade_body()).json()
    payment_no = payments.start_payment(running.platform, trade["pay_url"].rsplit("/", 1)[1], "sandbox")["payment_no"]
    payments.apply_channel_result(running.platform, payment_no, PaymentResult(
        Outcome.SUCCEEDED, channel_txn_no="T1", amount=1999, currency="CNY"), source="notify")
    runner = CliRunner()
    mine = json.loads(runner.invoke(app, ["ledger", "accounts", "--owner", m.merchant_id, "--json"]).stdout)
    assert ("pending_settlement", 1999) in {(a["purpose"], a["posted"]) for a in mine}
    mine = [a for a in mine if a["purpose"] == "pending_settlement"]
    everything = json.loads(runner.invoke(app, ["ledger", "accounts", "--json"]).stdout)
    assert len(everything) > len(mine) and {a["owner_id"] for a in everything} >= {m.merchant_id}
    table = runner.invoke(app, ["ledger", "accounts", "--owner", m.merchant_id]).stdout
    assert mine[0]["account_id"] in table and "1999" in table
    statement = runner.invoke(app, ["ledger", "statement", mine[0]["account_id"], "--json"])
    assert json.loads(statement.stdout)["closing_balance"] == 1999
    assert runner.invoke(app, ["ledger", "accounts", "--owner", "nobody"]).stdout.strip() == "nothing found"
