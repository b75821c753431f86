"""Alembic environment: runs on the connection `piaohao.db.migrate` hands over."""

from alembic import context
from sqlalchemy import create_engine

import piaohao.db  # noqa: F401  (registers every table on the shared metadata)
from piaohao.db.database import normalise_url
from piaohao.db.metadata import metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
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
