"""seal at rest what was still stored in clear: app secrets (current and previous), sub-merchants'
id and bank numbers, split receivers' and disbursements' bank numbers (masked copies kept for display)

Existing rows are sealed here, with the key the application uses (PIAOHAO_SECRET_KEY, or the
embedded default's key file beside the SQLite database): `piaohao.db.migrate.upgrade` hands over
the settings' sealer; run by plain Alembic, the settings are read from the environment as the
application reads them. The sealer is made only when a row must be sealed, so a fresh database
needs no key. Purposes follow `piaohao.db.sealed` ("<table>.<column>:<row key>").

Revision ID: 0012b
Revises: 0011
"""
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from piaohao.db.sealed import purpose
from piaohao.domain.bank_accounts import mask, mask_id
from piaohao.kernel.sealing import Sealer
from piaohao.kernel.settings import Settings

revision = '0012b'
down_revision = '0011'
branch_labels = None
depends_on = None

BATCH_ROWS = 1000

# (table, row key, [(clear column, sealed column, masked column or None, mask, clear type, nullable)])
_COLUMNS = (
    ("apps", "app_id", [("secret", "secret_sealed", None, None, sa.String(128), False),
                        ("previous_secret", "previous_secret_sealed", None, None, sa.String(128), True)]),
    ("sub_merchants", "sub_merchant_id", [
        ("id_number", "id_number_sealed", "id_number_masked", mask_id, sa.String(64), False),
        ("account_number", "account_number_sealed", "account_number_masked", mask, sa.String(34), False)]),
    ("split_receivers", "receiver_id", [
        ("account_number", "account_number_sealed", "account_number_masked", mask, sa.String(34), False)]),
    ("disbursements", "disbursement_no", [
        ("account_number", "account_number_sealed", "account_number_masked", mask, sa.String(34), False)]),
)
_MASKED_TYPES = {"id_number_masked": sa.String(64), "account_number_masked": sa.String(34)}


def _sealer_source() -> Callable[[], Sealer]:
    given = op.get_context().config.attributes.get("sealer")
    if given is not None:
        return given
    url = op.get_bind().engine.url.render_as_string(hide_password=False)
    return lambda: Settings.from_env().with_(database_url=url).sealer()


class _LazySealer:
    def __init__(self):
        self._source, self._sealer = _sealer_source(), None

    def __call__(self) -> Sealer:
        if self._sealer is None:
            self._sealer = self._source()
        return self._sealer


def _convert(table: str, key: str, reads: list[str], writes: list[str], fn) -> None:
    """Rewrite every row in batches: `fn(key_value, row) -> {column: value}` for `writes`; a row is
    done once its first written column is set (so a batch is never redone)."""
    conn = op.get_bind()
    t = sa.table(table, *(sa.column(c) for c in {key, *reads, *writes}))
    done_marker = t.c[writes[0]]
    after = None
    while True:
        q = sa.select(t).where(done_marker.is_(None)).order_by(t.c[key]).limit(BATCH_ROWS)
        if after is not None:
            q = q.where(t.c[key] > after)
        rows = conn.execute(q).mappings().all()
        for row in rows:
            conn.execute(sa.update(t).where(t.c[key] == row[key]).values(fn(row[key], row)))
        if len(rows) < BATCH_ROWS:
            return
        after = rows[-1][key]


def upgrade() -> None:
    sealer = _LazySealer()
    for table, key, cols in _COLUMNS:
        with op.batch_alter_table(table) as batch:
            for _, sealed, masked, _, _, _ in cols:
                batch.add_column(sa.Column(sealed, sa.Text(), nullable=True))
                if masked:
                    batch.add_column(sa.Column(masked, _MASKED_TYPES[masked], nullable=True))

        def seal(k, row, cols=cols, table=table):
            out = {}
            for clear, sealed, masked, mask_fn, _, _ in cols:
                value = row[clear]
                out[sealed] = None if value is None else sealer().seal(value, purpose=purpose(table, sealed, k))
                if masked:
                    out[masked] = mask_fn(value)
            return out

        # The first column of every table is NOT NULL, so every row gets its done-marker.
        _convert(table, key, [c[0] for c in cols], [c[1] for c in cols] + [c[2] for c in cols if c[2]], seal)
        with op.batch_alter_table(table) as batch:
            for clear, sealed, masked, _, _, nullable in cols:
                if not nullable:
                    batch.alter_column(sealed, existing_type=sa.Text(), nullable=False)
                if masked:
                    batch.alter_column(masked, existing_type=_MASKED_TYPES[masked], nullable=False)
                batch.drop_column(clear)


def downgrade() -> None:
    sealer = _LazySealer()
    for table, key, cols in _COLUMNS:
        with op.batch_alter_table(table) as batch:
            for clear, _, _, _, clear_type, _ in cols:
                batch.add_column(sa.Column(clear, clear_type, nullable=True))

        def open_(k, row, cols=cols, table=table):
            return {clear: None if row[sealed] is None
                    else sealer().open(row[sealed], purpose=purpose(table, sealed, k))
                    for clear, sealed, _, _, _, _ in cols}

        _convert(table, key, [c[1] for c in cols], [c[0] for c in cols], open_)
        with op.batch_alter_table(table) as batch:
            for clear, sealed, masked, _, clear_type, nullable in cols:
                if not nullable:
                    batch.alter_column(clear, existing_type=clear_type, nullable=False)
                batch.drop_column(sealed)
                if masked:
                    batch.drop_column(masked)
