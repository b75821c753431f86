"""Channel accounts: an operator connects a merchant's Alipay app or WeChat Pay merchant number
(`piaohao channels add|list|disable`), and the platform provisions its own accounts (the sandbox).

A configuration is checked by building the channel from it before anything is stored (a key that
does not parse, or a public key of the wrong kind, is refused and nothing is written). Secrets
are sealed under the platform's key, bound to the account id; `list` never shows them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import structlog
from sqlalchemy import Connection, insert, select, update

from piaohao.channel_directory import SEALED_PURPOSE, open_config
from piaohao.channels.registry import KINDS
from piaohao.channels.spi.plugin import ConfigError
from piaohao.db.inserts import insert_if_absent
from piaohao.db.schema import channel_credentials, merchants
from piaohao.db.schema_channels import channel_accounts
from piaohao.kernel.clock import rfc3339
from piaohao.kernel.errors import ChannelAccountNotFound, InvalidRequest, MerchantNotFound
from piaohao.kernel.ids import new_id
from piaohao.platform import Platform

__all__ = ["ACTIVE", "DISABLED", "active_accounts", "add_account", "disable_account", "list_accounts",
           "provisioned_config", "read_active_accounts", "store_provisioned"]

log = structlog.get_logger(__name__)
ACTIVE, DISABLED = "active", "disabled"


def _split(kind: str, config: Mapping[str, str]) -> tuple[dict, dict]:
    secret_fields = KINDS[kind].secret_fields
    public = {k: v for k, v in config.items() if k not in secret_fields and v is not None}
    secret = {k: v for k, v in config.items() if k in secret_fields}
    return public, secret


def add_account(p: Platform, kind: str, merchant_id: str, config: Mapping[str, str]) -> dict:
    """Store a merchant's account at a channel kind. Raises InvalidRequest for an unknown kind or a
    configuration that does not build (ConfigError's message, which holds no key material)."""
    if kind not in KINDS or KINDS[kind].provision is not None:
        raise InvalidRequest(f"unknown channel kind {kind!r}: one of "
                             f"{', '.join(k for k, v in KINDS.items() if v.provision is None)}")
    try:
        KINDS[kind].build(config, p.channel_context())
    except ConfigError as e:
        raise InvalidRequest(str(e)) from None
    now = p.clock.now()
    account_id = new_id("ca")
    public, secret = _split(kind, config)
    sealed = p.sealer().seal(json.dumps(secret), purpose=f"{SEALED_PURPOSE}:{account_id}")

    def tx(conn):
        if conn.execute(select(merchants.c.merchant_id).where(merchants.c.merchant_id == merchant_id)).first() is None:
            raise MerchantNotFound(f"no merchant {merchant_id}")
        conn.execute(insert(channel_accounts).values(
            channel_account_id=account_id, kind=kind, merchant_id=merchant_id,
            display_id=KINDS[kind].describe(config)[:64], status=ACTIVE, config_public=json.dumps(public),
            config_sealed=sealed, created_at=now, updated_at=now))

    p.db.write(tx)
    log.info("channel_account.added", channel_account_id=account_id, kind=kind, merchant_id=merchant_id)
    return {"channel_account_id": account_id, "kind": kind, "merchant_id": merchant_id, "status": ACTIVE}


def _view(p: Platform, row) -> dict:
    return {"channel_account_id": row.channel_account_id, "kind": row.kind, "merchant_id": row.merchant_id,
            "display_id": row.display_id, "status": row.status,
            "created_at": rfc3339(row.created_at, p.settings.tz)}


def list_accounts(p: Platform, merchant_id: str | None = None) -> list[dict]:
    q = select(channel_accounts).order_by(channel_accounts.c.created_at, channel_accounts.c.channel_account_id)
    if merchant_id is not None:
        q = q.where(channel_accounts.c.merchant_id == merchant_id)
    with p.db.read() as conn:
        return [_view(p, r) for r in conn.execute(q)]


def disable_account(p: Platform, account_id: str) -> dict:
    """No new payments through it; what it already carries is still queried and refunded through it."""
    now = p.clock.now()

    def tx(conn):
        done = conn.execute(update(channel_accounts).where(channel_accounts.c.channel_account_id == account_id)
                            .values(status=DISABLED, updated_at=now)).rowcount
        if done != 1:
            raise ChannelAccountNotFound(f"no channel account {account_id}")
        return conn.execute(select(channel_accounts).where(
            channel_accounts.c.channel_account_id == account_id)).first()

    row = p.db.write(tx)
    log.info("channel_account.disabled", channel_account_id=account_id)
    return _view(p, row)


def active_accounts(p: Platform, merchant_id: str) -> list:
    """The merchant's active accounts and the platform's own, newest first."""
    with p.db.read() as conn:
        return read_active_accounts(conn, merchant_id)


def read_active_accounts(conn: Connection, merchant_id: str) -> list:
    """`active_accounts` in the caller's transaction (read with what else the request needs)."""
    c = channel_accounts.c
    return conn.execute(select(c.channel_account_id, c.kind, c.merchant_id).where(
        c.status == ACTIVE, (c.merchant_id == merchant_id) | c.merchant_id.is_(None))
        .order_by(c.created_at.desc(), c.channel_account_id)).all()


# --- the platform's own, self-provisioned accounts (keyed by their kind's name) ----------------

def provisioned_config(p: Platform, kind: str) -> dict | None:
    """What the platform stored for its own account at `kind` last time (or, from before channel
    accounts existed, its `channel_credentials` row), so a restart keeps its identity there."""
    with p.db.read() as conn:
        row = conn.execute(select(channel_accounts).where(channel_accounts.c.channel_account_id == kind)).first()
        if row is not None:
            return open_config(row, p.sealer())
        legacy = conn.execute(select(channel_credentials).where(channel_credentials.c.channel == kind)).first()
    if legacy is None:
        return None
    return {"mch_id": legacy.mch_id, "private_key_pem": legacy.private_key_pem,
            "channel_public_key_pem": legacy.channel_public_key_pem or ""}


def store_provisioned(p: Platform, kind: str, config: Mapping[str, str], *, create_only: bool = False) -> bool:
    """Keep the platform's own account at `kind` (key = the kind's name), sealed like any other.
    With `create_only`, False (nothing written) when another process stored one first."""
    now = p.clock.now()
    public, secret = _split(kind, config)
    sealed = p.sealer().seal(json.dumps(secret), purpose=f"{SEALED_PURPOSE}:{kind}")
    values = dict(kind=kind, merchant_id=None, display_id=KINDS[kind].describe(config)[:64], status=ACTIVE,
                  config_public=json.dumps(public), config_sealed=sealed, updated_at=now)

    def tx(conn) -> bool:
        if create_only:
            if not insert_if_absent(conn, channel_accounts, dict(values, channel_account_id=kind, created_at=now),
                                    ["channel_account_id"]):
                return False
        else:
            conn.execute(update(channel_accounts).where(channel_accounts.c.channel_account_id == kind)
                         .values(**values))
        # The key now lives sealed in channel_accounts: no clear copy stays behind.
        conn.execute(update(channel_credentials).where(channel_credentials.c.channel == kind).values(
            private_key_pem=""))
        return True

    return p.db.write(tx)
