"""`piaohao recon ...`: reconciliation runs, the findings queue, the daily report, custom rules."""

from __future__ import annotations

import json
import os
from datetime import date

import typer

from piaohao.bootstrap import assemble
from piaohao.cli.common import _fail, _platform, _print, _settings
from piaohao.cli.progress import bar
from piaohao.kernel.errors import PiaohaoError
from piaohao.recon import findings as queue
from piaohao.recon import rules as custom
from piaohao.recon.run import realtime_pass, run_day

DEFAULT_SERVE_URL = "http://127.0.0.1:8000"

app = typer.Typer(help="Reconciliation (核對): bills vs records vs books, and the findings queue.",
                  no_args_is_help=True)
rules_app = typer.Typer(help="Custom read-only SQL rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        typer.echo(f"error: --date must be YYYY-MM-DD, not {value!r}", err=True)
        raise typer.Exit(2) from None


@app.command("run")
def run(day: str = typer.Option(..., "--date", help="business day YYYY-MM-DD"),
        channel: str | None = typer.Option(None, "--channel", help="sandbox, alipay or wechatpay"),
        bill_file: str | None = typer.Option(None, "--bill-file", help="read this bill instead (needs --channel)"),
        engine: str = typer.Option("auto", "--engine", help="auto | python | duckdb"),
        as_json: bool = typer.Option(False, "--json")):
    """Reconcile a day both ways; exit 0 when nothing is found, 1 otherwise."""
    if bill_file and not channel:
        typer.echo("error: --bill-file needs --channel", err=True)
        raise typer.Exit(2)
    if bill_file and not os.path.exists(bill_file):
        typer.echo(f"error: no such file {bill_file}", err=True)
        raise typer.Exit(2)
    settings = _settings()
    if not settings.base_url:  # the embedded sandbox answers where `serve` runs (its default address)
        settings = settings.with_(base_url=DEFAULT_SERVE_URL)
    assembly = assemble(settings, with_api=False)
    try:
        with bar() as progress:
            result = run_day(assembly.platform, _day(day), channel=channel, bill_file=bill_file, engine=engine,
                             progress=progress)
    except PiaohaoError as e:
        _fail(e)
    finally:
        assembly.close()
    out = result.as_dict()
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False))
    else:
        typer.echo(f"run {out['run_id']} {out['date']} channels={','.join(out['channels'])} matched={out['matched']} "
                   f"in_flight={out['in_flight']} findings={len(out['findings'])} {out['summary']}")
        for f in out["findings"]:
            typer.echo(f"  {f['finding_id']} {f['class']} {f['subject_type']} {f['subject_id']} "
                       f"expected={f['expected']} actual={f['actual']}")
        for e in out["errors"]:
            typer.echo(f"  error: {e}", err=True)
    if out["findings"] or out["errors"]:
        raise typer.Exit(1)


@app.command("check")
def check(as_json: bool = typer.Option(False, "--json")):
    """One near-real-time pass now (what the worker does every PIAOHAO_RECON_INTERVAL_S)."""
    result = realtime_pass(_platform()).as_dict()
    _print(result if as_json else {"open_findings": len(result["findings"]), "summary": result["summary"]}, as_json)
    if result["findings"]:
        raise typer.Exit(1)


@app.command("findings")
def findings_list(open_only: bool = typer.Option(False, "--open"), cls: str | None = typer.Option(None, "--class"),
                  day: str | None = typer.Option(None, "--date"), as_json: bool = typer.Option(False, "--json")):
    """Findings, oldest first."""
    if cls and cls not in queue.CLASSES:
        typer.echo(f"error: --class must be one of {', '.join(queue.CLASSES)}", err=True)
        raise typer.Exit(2)
    rows = queue.list_findings(_platform(), open_only=open_only, cls=cls, date=day)
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    for f in rows:
        typer.echo(f"{f['finding_id']}  {f['status']}  {f['class']}  {f['subject_type']} {f['subject_id']}  "
                   f"expected={f['expected']} actual={f['actual']}")


@app.command("resolve")
def resolve(finding_id: str, action: str = typer.Option(..., "--action", help="accept | adjust"),
            note: str = typer.Option(..., "--note"),
            operator: str = typer.Option(os.environ.get("USER", "operator"), "--operator"),
            as_json: bool = typer.Option(False, "--json")):
    """Close a finding: accept (record the decision) or adjust (post its correcting entry)."""
    try:
        row = queue.resolve(_platform(), finding_id, action=action, note=note, operator=operator)
    except PiaohaoError as e:
        _fail(e)
    _print(row, as_json)


@app.command("report")
def report(day: str = typer.Option(..., "--date"), fmt: str = typer.Option("json", "--format", help="json | csv")):
    """The day's findings report (JSON, or CSV rows)."""
    rep = queue.report(_platform(), _day(day).isoformat())
    typer.echo(queue.report_csv(rep) if fmt == "csv" else json.dumps(rep, ensure_ascii=False), nl=fmt != "csv")


@rules_app.command("add")
def rules_add(name: str = typer.Option(..., "--name"), sql_file: str = typer.Option(..., "--sql-file"),
              as_json: bool = typer.Option(False, "--json")):
    try:
        with open(sql_file, encoding="utf-8") as f:
            sql = f.read()
    except OSError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    try:
        _print(custom.add_rule(_platform(), name, sql), as_json)
    except PiaohaoError as e:
        _fail(e)


@rules_app.command("list")
def rules_list(as_json: bool = typer.Option(False, "--json")):
    _print(custom.list_rules(_platform()), as_json)


@rules_app.command("disable")
def rules_disable(name: str, as_json: bool = typer.Option(False, "--json")):
    try:
        _print(custom.disable_rule(_platform(), name), as_json)
    except PiaohaoError as e:
        _fail(e)
