"""`piaohao keys rotate`: re-encrypt every secret sealed at rest under a new PIAOHAO_SECRET_KEY.

Every sealed column is listed once, in `SEALED_COLUMNS` (table, key column, sealed column, the
purpose it is bound to). A rotation opens each value with the current key (or the new one: a
rotation that stopped half-way can be run again) and seals it under the new key, one transaction
per table. On the embedded default the key file beside the SQLite database is replaced by the new
key once every table is done; elsewhere the operator then sets PIAOHAO_SECRET_KEY to the new key.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Column, Connection, Table, select, update

from piaohao.channel_directory import SEALED_PURPOSE as CHANNEL_PURPOSE
from piaohao.db.schema import apps
from piaohao.db.schema_channels import channel_accounts
from piaohao.db.schema_clearing import split_receivers, sub_merchants
from piaohao.db.schema_members import disbursements
from piaohao.db.schema_payways import member_cards
from piaohao.db.sealed import purpose
from piaohao.kernel.errors import InvalidRequest
from piaohao.kernel.sealing import SECRET_KEY_CHARS_MIN, Sealer, SealError
from piaohao.kernel.settings import Settings, SettingsError
from piaohao.platform import Platform
from piaohao.services.operations import _check_operator, audit  # (same layer; avoids a cycle at import)


@dataclass(frozen=True)
class SealedColumn:
    table: Table
    key: Column
    column: Column
    purpose: Callable[[str], str]  # row key -> purpose string


def _by_row(table: Table, key: Column, column: Column) -> SealedColumn:
    """A column sealed by the `db.sealed` rule (bound to table, column and row key)."""
    return SealedColumn(table, key, column, lambda k: purpose(table.name, column.name, k))


def _fixed(table: Table, key: Column, column: Column, fixed: str) -> SealedColumn:
    return SealedColumn(table, key, column, lambda _k: fixed)


SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    SealedColumn(channel_accounts, channel_accounts.c.channel_account_id, channel_accounts.c.config_sealed,
                 lambda k: f"{CHANNEL_PURPOSE}:{k}"),
    _by_row(apps, apps.c.app_id, apps.c.secret_sealed),
    _by_row(apps, apps.c.app_id, apps.c.previous_secret_sealed),
    _by_row(sub_merchants, sub_merchants.c.sub_merchant_id, sub_merchants.c.id_number_sealed),
    _by_row(sub_merchants, sub_merchants.c.sub_merchant_id, sub_merchants.c.account_number_sealed),
    _by_row(split_receivers, split_receivers.c.receiver_id, split_receivers.c.account_number_sealed),
    _by_row(disbursements, disbursements.c.disbursement_no, disbursements.c.account_number_sealed),
    # Bound cards (services/cards.py) seal under a fixed purpose per field.
    *(_fixed(member_cards, member_cards.c.card_id, member_cards.c[f"{name}_sealed"], name)
      for name in ("card_no", "id_number", "phone", "holder_name")),
)
BATCH_ROWS = 500


def check_key(p: Platform) -> None:
    """At startup: the key opens what is sealed here (one value per sealed column), or a
    SettingsError says so, rather than a failure at the first signed request or payout."""
    with p.db.read() as conn:
        samples = [(col, row) for col in SEALED_COLUMNS
                   if (row := conn.execute(select(col.key, col.column).where(col.column.is_not(None)).limit(1))
                       .first()) is not None]
    if not samples:
        return
    sealer = p.sealer()
    for col, (key, sealed) in samples:
        try:
            sealer.open(sealed, purpose=col.purpose(key))
        except SealError as exc:
            raise SettingsError(
                f"PIAOHAO_SECRET_KEY (key id {sealer.key_id}) does not open the secrets stored in this database "
                f"({col.table.name}.{col.column.name}: {exc}); give the key they were sealed with, or finish "
                "`piaohao keys rotate`") from None


def _rotate_column(p: Platform, col: SealedColumn, old: Sealer, new: Sealer) -> int:
    done = 0
    last = ""
    while True:
        def tx(conn: Connection, after=last) -> tuple[int, str | None]:
            rows = conn.execute(select(col.key, col.column).where(col.column.is_not(None), col.key > after)
                                .order_by(col.key).limit(BATCH_ROWS).with_for_update()).all()
            changed = 0
            for key, sealed in rows:
                if new.is_current(sealed):
                    continue
                plain = old.open(sealed, purpose=col.purpose(key))
                conn.execute(update(col.table).where(col.key == key, col.column == sealed).values(
                    {col.column.name: new.seal(plain, purpose=col.purpose(key))}))
                changed += 1
            return changed, (rows[-1][0] if len(rows) == BATCH_ROWS else None)

        changed, last = p.db.write(tx)
        done += changed
        if last is None:
            return done


def rotate(p: Platform, new_key: str, *, operator: str | None = None, settings: Settings | None = None) -> dict:
    operator = _check_operator(operator)
    settings = settings or p.settings
    if len(new_key) < SECRET_KEY_CHARS_MIN:
        raise InvalidRequest(f"the new key must be at least {SECRET_KEY_CHARS_MIN} characters")
    current = settings.secret_key or None
    old = p.sealer()
    if current is None and not settings.embedded:
        raise InvalidRequest("PIAOHAO_SECRET_KEY (the current key) is required")
    new = Sealer(new_key)
    opener = _Both(old, new)
    counts: dict[str, int] = {}
    try:
        for col in SEALED_COLUMNS:
            name = f"{col.table.name}.{col.column.name}"
            counts[name] = counts.get(name, 0) + _rotate_column(p, col, opener, new)
    except SealError as exc:
        raise InvalidRequest(f"a sealed value does not open with the current key: {exc}") from None
    key_file = None
    if not settings.secret_key and settings.embedded and (path := settings.sqlite_path()) is not None:
        key_path = path.with_name(path.stem + ".key")
        tmp = key_path.with_name(key_path.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(new_key + "\n")
        os.replace(tmp, key_path)
        key_file = str(key_path)
    p.db.write(lambda conn: audit(conn, now=p.clock.now(), operator=operator, action="keys.rotate",
                                  object_type="key", object_id=new.key_id, note=None,
                                  details={"from_key_id": old.key_id, "resealed": counts}))
    return {"key_id": new.key_id, "previous_key_id": old.key_id, "resealed": counts, "key_file": key_file,
            "next": "the key file was replaced" if key_file else "set PIAOHAO_SECRET_KEY to the new key now"}


class _Both:
    """Opens values sealed under the current key or the new one (a rotation run again)."""
    def __init__(self, old: Sealer, new: Sealer):
        self.old, self.new = old, new

    def open(self, sealed: str, *, purpose: str) -> str:
        opener = self.new if self.new.is_current(sealed) else self.old
        return opener.open(sealed, purpose=purpose)
