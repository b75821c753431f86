"""`piaohao drill list|run`: fund-loss drills (資損攻防) on a scratch platform."""

from __future__ import annotations

import json

import typer

from piaohao.cli.progress import bar
from piaohao.drills.scenarios import SCENARIOS, run_scenarios

app = typer.Typer(help="Fund-loss drills: inject a fault, prove it is absorbed or detected.", no_args_is_help=True)


@app.command("list")
def drill_list(as_json: bool = typer.Option(False, "--json")):
    rows = [{"scenario": s.name, "fault": s.fault, "expects": s.expects, "check": s.check} for s in SCENARIOS]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    for r in rows:
        typer.echo(f"{r['scenario']:28} {r['expects']:9} {r['check']:16} {r['fault']}")


@app.command("run")
def drill_run(names: list[str] = typer.Argument(..., help="scenario names, or all"),
              seed: int = typer.Option(1, "--seed"),
              database_url: str | None = typer.Option(None, "--database-url", help="default: a scratch SQLite"),
              keep: bool = typer.Option(False, "--keep", help="leave the scratch database for inspection"),
              as_json: bool = typer.Option(False, "--json")):
    """Run scenarios; exit 0 only when every verdict is pass."""
    try:
        with bar() as progress:
            results = run_scenarios(names, seed=seed, database_url=database_url, keep=keep, progress=progress)
    except KeyError as e:
        typer.echo(f"error: unknown scenario {e}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(results, ensure_ascii=False))
    else:
        for r in results:
            typer.echo(f"{r['verdict'].upper():4} {r['scenario']:28} detected_by={','.join(r['detected_by']) or '-'} "
                       f"ttd={r['time_to_detect_s']} ttr={r['time_to_recover_s']} books={r['books_balanced']}"
                       + (f" error={r['error']}" if r.get("error") else ""))
    if any(r["verdict"] != "pass" for r in results):
        raise typer.Exit(1)
