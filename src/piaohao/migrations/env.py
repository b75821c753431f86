"""Alembic environment: runs on the connection `piaohao.adapters.migrate` hands over."""

from alembic import context

import piaohao.adapters.schema_clearing  # noqa: F401  (sub-merchants, orders, fee rules, settlement)
import piaohao.adapters.schema_members  # noqa: F401  (members, top-ups, transfers, withdrawals, payouts)
import piaohao.adapters.schema_refunds  # noqa: F401  (the refund tables)
import piaohao.ledger.schema  # noqa: F401  (registers the ledger tables on the shared metadata)
from piaohao.adapters.schema import metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from sqlalchemy import create_engine

        from piaohao.adapters.db import normalise_url

        engine = create_engine(normalise_url(config.get_main_option("sqlalchemy.url")))
        with engine.connect() as connection:
            _run(connection)
        return
    _run(connection)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
