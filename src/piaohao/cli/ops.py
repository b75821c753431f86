"""The manual-handling queue on the command line (API.md "Operations"): `alerts`, `refunds retry`,
`payouts retry`, `payments resolve`, `audit list`, `keys rotate`. Every command is a thin shell
over one use case in `services/operations.py` (the console calls the same ones)."""

from __future__ import annotations

import os

import typer

from piaohao.alerts import SEVERITIES
from piaohao.cli.common import _fail, _platform, _print, _settings
from piaohao.kernel.errors import PiaohaoError
from piaohao.services import keys, operations

alerts_app = typer.Typer(help="Alerts: the manual-handling queue.", no_args_is_help=True)
refunds_app = typer.Typer(help="Refunds the machines gave up on.", no_args_is_help=True)
payouts_app = typer.Typer(help="Withdrawals and payouts the machines gave up on.", no_args_is_help=True)
payments_app = typer.Typer(help="Payments whose outcome the channel never gave.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log of operator actions.", no_args_is_help=True)
keys_app = typer.Typer(help="PIAOHAO_SECRET_KEY: the key that seals secrets at rest.", no_args_is_help=True)

APPS = {"alerts": alerts_app, "refunds": refunds_app, "payouts": payouts_app, "payments": payments_app,
        "audit": audit_app, "keys": keys_app}

OPERATOR_HELP = "who acts (default: the OS user)"


@alerts_app.command("list")
def alerts_list(all_: bool = typer.Option(False, "--all", help="resolved ones too"),
                severity: str | None = typer.Option(None, "--severity", help="critical | warning"),
                kind: str | None = typer.Option(None, "--kind"),
                limit: int = typer.Option(200, "--limit", min=1, max=1000),
                before: int | None = typer.Option(None, "--before", help="page on: alerts older than this alert_id"),
                as_json: bool = typer.Option(False, "--json")):
    """Open alerts (all with --all), newest first."""
    if severity is not None and severity not in SEVERITIES:
        typer.echo(f"error: --severity must be one of {', '.join(SEVERITIES)}", err=True)
        raise typer.Exit(2)
    rows = operations.list_alerts(_platform(), include_resolved=all_, severity=severity, kind=kind, limit=limit,
                                  before_id=before)
    if not as_json:
        rows = [{k: r[k] for k in ("alert_id", "severity", "kind", "subject_type", "subject_id", "occurrences",
                                   "status", "created_at", "message")} for r in rows]
    _print(rows, as_json)


@alerts_app.command("resolve")
def alerts_resolve(alert_id: str, note: str = typer.Option(..., "--note"),
                   operator: str | None = typer.Option(None, "--operator", help=OPERATOR_HELP),
                   as_json: bool = typer.Option(False, "--json")):
    """Close an alert, with an audit record."""
    try:
        _print(operations.resolve_alert(_platform(), alert_id, note=note, operator=operator), as_json)
    except PiaohaoError as e:
        _fail(e)


@refunds_app.command("retry")
def refunds_retry(refund_no: str, note: str | None = typer.Option(None, "--note"),
                  operator: str | None = typer.Option(None, "--operator", help=OPERATOR_HELP),
                  as_json: bool = typer.Option(False, "--json")):
    """Re-drive a parked refund: due now, a fresh round of tries (the workers carry it on)."""
    try:
        _print(operations.retry_refund(_platform(), refund_no, note=note, operator=operator), as_json)
    except PiaohaoError as e:
        _fail(e)


@payouts_app.command("retry")
def payouts_retry(payout_no: str, note: str | None = typer.Option(None, "--note"),
                  operator: str | None = typer.Option(None, "--operator", help=OPERATOR_HELP),
                  as_json: bool = typer.Option(False, "--json")):
    """Re-drive a parked payout or withdrawal: due now, a fresh round of tries."""
    try:
        _print(operations.retry_payout(_platform(), payout_no, note=note, operator=operator), as_json)
    except PiaohaoError as e:
        _fail(e)


@payments_app.command("resolve")
def payments_resolve(payment_no: str, status: str = typer.Option(..., "--status", help="succeeded | failed"),
                     channel_txn_no: str | None = typer.Option(None, "--channel-txn-no"),
                     note: str = typer.Option(..., "--note"),
                     operator: str | None = typer.Option(None, "--operator", help=OPERATOR_HELP),
                     as_json: bool = typer.Option(False, "--json")):
    """Settle a payment after checking it at the channel (the same path as a channel answer)."""
    try:
        _print(operations.resolve_payment(_platform(), payment_no, status=status, channel_txn_no=channel_txn_no,
                                          note=note, operator=operator), as_json)
    except PiaohaoError as e:
        _fail(e)


@audit_app.command("list")
def audit_list(limit: int = typer.Option(200, "--limit", min=1, max=1000),
               object_id: str | None = typer.Option(None, "--object-id"),
               as_json: bool = typer.Option(False, "--json")):
    """Operator actions, newest first."""
    _print(operations.list_audit(_platform(), limit=limit, object_id=object_id), as_json)


@keys_app.command("rotate")
def keys_rotate(new_key_env: str = typer.Option(..., "--new-key-env",
                                                help="the environment variable that holds the new key"),
                operator: str | None = typer.Option(None, "--operator", help=OPERATOR_HELP),
                as_json: bool = typer.Option(False, "--json")):
    """Re-encrypt every sealed secret under the key in $NEW_KEY_ENV (the current key opens them).
    Then set PIAOHAO_SECRET_KEY to the new key (the embedded default's key file is rewritten)."""
    new_key = os.environ.get(new_key_env, "")
    try:
        summary = keys.rotate(_platform(), new_key, operator=operator, settings=_settings())
    except PiaohaoError as e:
        _fail(e)
    _print(summary, as_json)
