"""`piaohao channels add alipay|wechatpay`, `list`, `disable`: merchants' channel accounts.

Key files are read here and handed over as text; they are checked by building the channel before
anything is stored, sealed at rest, and never printed, listed or logged.
"""

from __future__ import annotations

from pathlib import Path

import typer

from piaohao.cli.common import _fail, _platform, _print
from piaohao.kernel.errors import InvalidRequest, PiaohaoError
from piaohao.services import channel_accounts

app = typer.Typer(help="Channel accounts: merchants' Alipay and WeChat Pay credentials.", no_args_is_help=True)
add_app = typer.Typer(help="Connect a merchant's account at a channel.", no_args_is_help=True)
app.add_typer(add_app, name="add")

KEY_FILE_BYTES_MAX = 64 * 1024


def _read(path: Path, what: str) -> str:
    try:
        if path.stat().st_size > KEY_FILE_BYTES_MAX:
            raise OSError("file too large for a key")
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        typer.echo(f"error: {what}: cannot read {path}: {type(e).__name__}", err=True)
        raise typer.Exit(2) from None


def _add(kind: str, merchant_id: str, config: dict, as_json: bool) -> None:
    try:
        view = channel_accounts.add_account(_platform(), kind, merchant_id, config)
    except InvalidRequest as e:
        typer.echo(f"error: {e.message}", err=True)
        raise typer.Exit(2) from None
    except PiaohaoError as e:
        _fail(e)
    _print({"channel_account_id": view["channel_account_id"]} if as_json else view, as_json)


@add_app.command("alipay")
def add_alipay(merchant: str = typer.Option(..., "--merchant", help="MERCHANT_ID"),
               app_id: str = typer.Option(..., "--app-id"),
               private_key_file: Path = typer.Option(..., "--private-key-file", help="the app's private key (PEM)"),
               alipay_public_key_file: Path = typer.Option(..., "--alipay-public-key-file"),
               gateway_url: str = typer.Option("", "--gateway-url", help="default: Alipay's production gateway"),
               as_json: bool = typer.Option(False, "--json")):
    """Connect a merchant's Alipay open-platform app (page and WAP pay)."""
    config = {"app_id": app_id, "private_key_pem": _read(private_key_file, "--private-key-file"),
              "alipay_public_key_pem": _read(alipay_public_key_file, "--alipay-public-key-file")}
    if gateway_url:
        config["gateway_url"] = gateway_url
    _add("alipay", merchant, config, as_json)


@add_app.command("wechatpay")
def add_wechatpay(merchant: str = typer.Option(..., "--merchant", help="MERCHANT_ID"),
                  mchid: str = typer.Option(..., "--mchid"), appid: str = typer.Option(..., "--appid"),
                  serial_no: str = typer.Option(..., "--serial-no", help="the API certificate's serial"),
                  private_key_file: Path = typer.Option(..., "--private-key-file", help="apiclient_key.pem"),
                  apiv3_key: str = typer.Option(..., "--apiv3-key", help="the 32-character APIv3 key"),
                  platform_public_key_file: Path = typer.Option(..., "--platform-public-key-file"),
                  platform_serial: str = typer.Option(..., "--platform-serial"),
                  base_url: str = typer.Option("", "--base-url", help="default: WeChat Pay's production API host"),
                  as_json: bool = typer.Option(False, "--json")):
    """Connect a merchant's WeChat Pay v3 merchant number (native, H5 and JSAPI)."""
    config = {"mchid": mchid, "appid": appid, "serial_no": serial_no,
              "private_key_pem": _read(private_key_file, "--private-key-file"), "apiv3_key": apiv3_key,
              "platform_public_key_pem": _read(platform_public_key_file, "--platform-public-key-file"),
              "platform_serial": platform_serial}
    if base_url:
        config["base_url"] = base_url
    _add("wechatpay", merchant, config, as_json)


@app.command("list")
def list_cmd(merchant: str | None = typer.Option(None, "--merchant", help="MERCHANT_ID"),
             as_json: bool = typer.Option(False, "--json")):
    """Ids, kinds, merchants, app/mch ids and status; never a key."""
    _print(channel_accounts.list_accounts(_platform(), merchant), as_json)


@app.command("disable")
def disable_cmd(channel_account_id: str, as_json: bool = typer.Option(False, "--json")):
    """No new payments through it; what it carries is still queried and refunded through it."""
    try:
        _print(channel_accounts.disable_account(_platform(), channel_account_id), as_json)
    except PiaohaoError as e:
        _fail(e)
