"""Operator commands (`piaohao ...`). Each acts on PIAOHAO_DATABASE_URL; `--json` prints JSON."""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import asdict
from datetime import datetime

import typer
import uvicorn
from uvicorn.supervisors import Multiprocess

from piaohao.bootstrap import assemble, open_database
from piaohao.channels.registry import KINDS
from piaohao.clearing.batches import statement_chunks
from piaohao.clearing.fees import add_rule, load_rules
from piaohao.clearing.payout_cycles import run_payout_cycles
from piaohao.cli import spread
from piaohao.cli.channels import app as channels_app
from piaohao.cli.common import _db, _fail, _platform, _print, _settings, root
from piaohao.cli.drill import app as drill_app
from piaohao.cli.ledger import app as ledger_app
from piaohao.cli.operators import app as operators_app
from piaohao.cli.ops import APPS as OPS_APPS
from piaohao.cli.progress import bar
from piaohao.cli.recon import app as recon_app
from piaohao.cli.serving import announce_when_ready
from piaohao.db import migrate
from piaohao.kernel.clock import SystemClock
from piaohao.kernel.errors import PiaohaoError
from piaohao.kernel.logs import configure, uvicorn_log_config
from piaohao.services import notifications, operations, payinfo
from piaohao.services.merchants import (
    create_app,
    create_merchant,
    list_merchants,
    rotate_secret,
    set_app_status,
    update_merchant,
)
from piaohao.services.settlement import get_batch, list_batches, run
from piaohao.services.sub_merchants import change_status

WORKER_HEALTHCHECK_S = 120  # serve --processes: how long a child may take to answer uvicorn's health check

app = typer.Typer(help="piaohao: an aggregated payment platform.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
merchants_app = typer.Typer(help="Merchants.", no_args_is_help=True)
apps_app = typer.Typer(help="Merchant apps and their secrets.", no_args_is_help=True)
notifications_app = typer.Typer(help="Merchant notifications (the outbox).", no_args_is_help=True)

app.callback()(root)  # --version; logs to stderr only
for sub, name in ((ledger_app, "ledger"), (db_app, "db"), (merchants_app, "merchants"), (apps_app, "apps"),
                  (notifications_app, "notifications"), (channels_app, "channels"), (recon_app, "recon"),
                  (drill_app, "drill"), (operators_app, "operators"), *((sub, name) for name, sub in OPS_APPS.items())):
    app.add_typer(sub, name=name)
for _kind in KINDS.values():  # a channel kind's own commands (`piaohao sandbox serve`)
    if _kind.cli is not None:
        app.add_typer(_kind.cli, name=_kind.name)


# --- db -------------------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade():
    """Create or migrate the schema to the newest version."""
    db = _db(migrate_now=False)
    migrate.upgrade(db, sealer=_settings().sealer)
    typer.echo(f"database at revision {migrate.current(db)}")


@db_app.command("current")
def db_current():
    typer.echo(migrate.current(_db(migrate_now=False)) or "empty")


# --- merchants ------------------------------------------------------------------------------------
@merchants_app.command("create")
def merchants_create(name: str = typer.Option(..., "--name"), as_json: bool = typer.Option(False, "--json")):
    """Create a merchant with one app. The app secret is shown this once."""
    try:
        creds = create_merchant(_platform(), name)
    except PiaohaoError as e:
        _fail(e)
    out = {"merchant_id": creds.merchant_id, "app_id": creds.app_id, "app_secret": creds.app_secret}
    _print(out, as_json)


@merchants_app.command("list")
def merchants_list(as_json: bool = typer.Option(False, "--json")):
    _print(list_merchants(_db()), as_json)


@merchants_app.command("update")
def merchants_update(merchant_id: str, coins_cap_pct: int | None = typer.Option(None, "--coins-cap-pct"),
                     settle_after_days: int | None = typer.Option(None, "--settle-after-days"),
                     payinfo_url: str | None = typer.Option(None, "--payinfo-url", help="pull mode; '' turns it off"),
                     as_json: bool = typer.Option(False, "--json")):
    try:
        if payinfo_url:
            payinfo.check_url(payinfo_url)  # refused before anything changes
        row = update_merchant(_db(), merchant_id, coins_cap_pct=coins_cap_pct, settle_after_days=settle_after_days)
        if payinfo_url is not None:
            row["payinfo_url"] = payinfo.set_payinfo_url(_platform(), merchant_id, payinfo_url)
    except PiaohaoError as e:
        _fail(e)
    _print(row, as_json)


# --- apps -----------------------------------------------------------------------------------------
@apps_app.command("create")
def apps_create(merchant_id: str, as_json: bool = typer.Option(False, "--json")):
    """Another app for a merchant. Its secret is shown this once."""
    try:
        creds = create_app(_platform(), merchant_id)
    except PiaohaoError as e:
        _fail(e)
    _print({"merchant_id": creds.merchant_id, "app_id": creds.app_id, "app_secret": creds.app_secret}, as_json)


@apps_app.command("rotate")
def apps_rotate(app_id: str, grace_s: int = typer.Option(86400, "--grace-s", help="old secret stays valid this long"),
                as_json: bool = typer.Option(False, "--json")):
    """A new secret for an app, shown this once; the old one keeps working for --grace-s seconds."""
    try:
        creds = rotate_secret(_platform(), app_id, grace_s=grace_s)
    except PiaohaoError as e:
        _fail(e)
    _print({"merchant_id": creds.merchant_id, "app_id": creds.app_id, "app_secret": creds.app_secret}, as_json)


@apps_app.command("disable")
def apps_disable(app_id: str):
    """Refuse every request of an app (401 UNKNOWN_APP) from now on."""
    try:
        set_app_status(_db(), app_id, "disabled")
    except PiaohaoError as e:
        _fail(e)
    typer.echo(f"{app_id} disabled")


@apps_app.command("enable")
def apps_enable(app_id: str):
    try:
        set_app_status(_db(), app_id, "active")
    except PiaohaoError as e:
        _fail(e)
    typer.echo(f"{app_id} enabled")


# --- notifications --------------------------------------------------------------------------------
@notifications_app.command("list")
def notifications_list(parked: bool = typer.Option(False, "--parked", help="only parked events"),
                       status: str | None = typer.Option(None, "--status"),
                       as_json: bool = typer.Option(False, "--json")):
    """Merchant notification events (newest first)."""
    db = _db()
    rows = notifications.list_parked(db) if parked else notifications.list_events(db, status=status)
    _print(rows, as_json)


@notifications_app.command("resend")
def notifications_resend(event_id: str, as_json: bool = typer.Option(False, "--json")):
    """Deliver an event again, with the same id, on the retry schedule from the start."""
    try:
        row = operations.resend_notification(_platform(), event_id)
    except PiaohaoError as e:
        _fail(e)
    _print(row, as_json)


# --- serve ----------------------------------------------------------------------------------------
@app.command("serve")
def serve(host: str = typer.Option("127.0.0.1", "--host"), port: int = typer.Option(8000, "--port"),
          workers: bool = typer.Option(True, "--workers/--no-workers", help="run the workers in this process"),
          processes: int = typer.Option(1, "--processes", min=1, max=32,
                                        help="API processes sharing the port (each runs workers unless --no-workers)")):
    """Run the API, its workers and the built-in sandbox channel (migrating first)."""



    settings = _settings()
    if not settings.base_url:
        public_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        settings = settings.with_(base_url=f"http://{public_host}:{port}")
    configure(settings.log_level)
    if processes > 1:
        typer.echo(f"piaohao starting {processes} API processes on http://{host}:{port} ...", err=True)
        open_database(settings, migrate_now=True).dispose()
        os.environ["PIAOHAO_BASE_URL"] = settings.base_url
        os.environ["PIAOHAO_SERVE_WORKERS"] = "1" if workers else "0"
        # log_config: uvicorn's lines in the parent and in every child scrubbed from the first one.
        # The health check: a child answers it only once its imports are done (seconds on a busy
        # machine); uvicorn's 5 s default killed and restarted children that were merely slow.
        config = uvicorn.Config("piaohao.asgi:create", factory=True, host=host, port=port, workers=processes,
                                log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                                log_config=uvicorn_log_config("WARNING"),
                                timeout_worker_healthcheck=WORKER_HEALTHCHECK_S)
        # One accept queue shared by all (uvicorn's one socket) without SO_REUSEPORT (Windows) and
        # on SQLite: one file has one writer at a time, and connections spread over processes made
        # them queue for it across processes (the 2-process payment test: 148 s instead of 17 s).
        spreading = spread.supported() and not settings.database_url.startswith("sqlite")
        sock = spread.reserve(host, port) if spreading else config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
        return
    assembly = assemble(settings, migrate_now=True)
    assembly.start_channel_simulators()
    if workers:
        assembly.start_workers()
    server = uvicorn.Server(uvicorn.Config(assembly.app, host=host, port=port, log_level="warning",
                                           access_log=False, log_config=None, timeout_graceful_shutdown=5))
    announce_when_ready(server, settings, host, port, workers=[x.name for x in assembly.loops] if workers else [],
                        channels=sorted(assembly.platform.channels))
    try:
        server.run()
    finally:
        assembly.close()
        typer.echo("piaohao stopped", err=True)


@app.command("worker")
def worker():
    """Run only the workers (outbox, expiry, active query) against the database; stop with Ctrl-C."""


    settings = _settings()
    configure(settings.log_level)
    assembly = assemble(settings, with_api=False)
    assembly.start_workers()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        assembly.close()


def main() -> None:
    configure(os.environ.get("PIAOHAO_LOG_LEVEL", "INFO").upper())  # logs to stderr: --json output stays JSON
    try:
        app()
    except PiaohaoError as e:  # pragma: no cover - commands catch their own
        print(f"error: {e.code}: {e.message}", file=sys.stderr)
        sys.exit(1)


# --- sub-merchants and settlement ---------------------------------------------------------------
sub_merchants_app = typer.Typer(help="Sub-merchants (sellers): review and state.", no_args_is_help=True)
settlement_app = typer.Typer(help="Clearing and settlement: periodic run, batches, statements.", no_args_is_help=True)
fees_app = typer.Typer(help="Fee rules (計費).", no_args_is_help=True)
app.add_typer(sub_merchants_app, name="sub-merchants")
app.add_typer(settlement_app, name="settlement")
app.add_typer(fees_app, name="fees")


def _sub_merchant_event(sub_merchant_id: str, event: str, as_json: bool) -> None:
    try:
        view = change_status(_platform(), sub_merchant_id, event)
    except PiaohaoError as e:
        _fail(e)
    _print(view if as_json else {"sub_merchant_id": view["sub_merchant_id"], "status": view["status"]}, as_json)


@sub_merchants_app.command("approve")
def sub_merchants_approve(sub_merchant_id: str, as_json: bool = typer.Option(False, "--json")):
    """KYC reviewed: the sub-merchant becomes active (it may now sell)."""
    _sub_merchant_event(sub_merchant_id, "approve", as_json)


@sub_merchants_app.command("freeze")
def sub_merchants_freeze(sub_merchant_id: str, as_json: bool = typer.Option(False, "--json")):
    """No new orders and no payouts; its money keeps settling into its settled account."""
    _sub_merchant_event(sub_merchant_id, "freeze", as_json)


@sub_merchants_app.command("unfreeze")
def sub_merchants_unfreeze(sub_merchant_id: str, as_json: bool = typer.Option(False, "--json")):
    _sub_merchant_event(sub_merchant_id, "unfreeze", as_json)


@sub_merchants_app.command("close")
def sub_merchants_close(sub_merchant_id: str, as_json: bool = typer.Option(False, "--json")):
    """Final; refused while it still holds pending or settled money."""
    _sub_merchant_event(sub_merchant_id, "close", as_json)


def _instant(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        typer.echo(f"error: --as-of must be RFC 3339, not {value!r}", err=True)
        raise typer.Exit(2) from None
    if when.tzinfo is None:
        typer.echo("error: --as-of needs an offset (e.g. 2026-12-01T00:00:00+08:00)", err=True)
        raise typer.Exit(2)
    return when


@settlement_app.command("run")
def settlement_run(as_of: str | None = typer.Option(None, "--as-of", help="RFC 3339; default now"),
                   as_json: bool = typer.Option(False, "--json")):
    """Settle now every order whose settlement period has run out as of --as-of, then create the
    payouts of the sub-merchants whose payout cycle (payout_every_days) is due."""

    when = _instant(as_of)
    assembly = assemble(_settings(), with_api=False)  # the cycles' payouts need the payout channel
    try:
        with bar() as progress:
            summary = run(assembly.platform, when, progress=progress)
        summary["payout_cycles"] = run_payout_cycles(assembly.platform, when)
    except PiaohaoError as e:
        _fail(e)
    finally:
        assembly.close()
    _print(summary, as_json)


@settlement_app.command("batches")
def settlement_batches(merchant_id: str, seller_id: str | None = typer.Option(None, "--seller-id"),
                       as_json: bool = typer.Option(False, "--json")):
    _print(list_batches(_platform(), merchant_id, seller_id), as_json)


@settlement_app.command("verify")
def settlement_verify(batch_no: str, as_json: bool = typer.Option(False, "--json")):
    """Re-verify a batch (totals, exactly-once, ledger); exit 1 with the problems listed."""
    try:
        view = get_batch(_platform(), None, batch_no)
    except PiaohaoError as e:
        _fail(e)
    _print(view, as_json)
    if view["problems"]:
        raise typer.Exit(1)


@settlement_app.command("statement")
def settlement_statement(merchant_id: str, batch_no: str):
    """The seller's settlement statement of one batch, as CSV on stdout."""
    try:
        for piece in statement_chunks(_platform(), merchant_id, batch_no):
            typer.echo(piece, nl=False)
    except PiaohaoError as e:
        _fail(e)


@fees_app.command("list")
def fees_list(as_json: bool = typer.Option(False, "--json")):
    """Active fee rules, in the order they are tried (lowest priority first)."""


    with _db().read() as conn:
        rules = [dict(asdict(r), rate_bp=str(r.rate_bp)) for r in load_rules(conn)]
    _print(rules, as_json)


@fees_app.command("add")
def fees_add(priority: int = typer.Option(..., "--priority"), rate_bp: str = typer.Option("0", "--rate-bp"),
             fixed: int = typer.Option(0, "--fixed"), min_fee: int = typer.Option(0, "--min"),
             max_fee: int | None = typer.Option(None, "--max"), rounding: str = typer.Option("half_up", "--rounding"),
             bearer: str = typer.Option("seller", "--bearer"),
             merchant_id: str | None = typer.Option(None, "--merchant"),
             method: str | None = typer.Option(None, "--method"),
             business_type: str | None = typer.Option(None, "--business-type"),
             currency: str | None = typer.Option(None, "--currency"), as_json: bool = typer.Option(False, "--json")):
    """Add a fee rule (applies to settlements from now on)."""


    try:
        rule = _db().write(lambda conn: add_rule(
            conn, SystemClock().now(), priority=priority, rate_bp=rate_bp, fixed_amount=fixed, min_fee=min_fee,
            max_fee=max_fee, rounding=rounding, bearer=bearer, merchant_id=merchant_id, method=method,
            business_type=business_type, currency=currency))
    except PiaohaoError as e:
        _fail(e)
    _print(dict(asdict(rule), rate_bp=str(rule.rate_bp)), as_json)
