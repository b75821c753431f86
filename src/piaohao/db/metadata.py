"""The shared SQLAlchemy `metadata` every table module registers on, and the column types they share.

Table modules import this and nothing else of piaohao but the kernel, so no two of them import
each other; `piaohao.db` imports them all so that `metadata` is complete wherever it is used.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, TypeDecorator

from piaohao.kernel.clock import to_utc

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator):
    """Stores UTC instants; always returns timezone-aware UTC (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = to_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        return None if value is None else to_utc(value)


def timestamp_column(name: str, nullable: bool = True) -> Column:
    return Column(name, UTCDateTime(), nullable=nullable)
