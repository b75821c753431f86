"""Bring a database to the newest schema with Alembic (`piaohao db upgrade`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from piaohao.db.database import Database
from piaohao.kernel.sealing import Sealer

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
PG_MIGRATION_LOCK_ID = 0x70_69_61_6F  # "piao": one migrator at a time when several processes start


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(db: Database, revision: str = "heads", *, sealer: Callable[[], Sealer] | None = None) -> None:
    """`sealer` (called only if a migration has rows to seal, e.g. 0012b): the application's; when
    not given, migrations read the settings from the environment as the application does."""
    cfg = alembic_config(db.url)
    if sealer is not None:
        cfg.attributes["sealer"] = sealer
    with db.engine.connect() as conn:
        if not db.is_sqlite:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_MIGRATION_LOCK_ID})
            conn.commit()
        try:
            cfg.attributes["connection"] = conn
            if db.is_sqlite:
                with db._write_lock:
                    command.upgrade(cfg, revision)
            else:
                command.upgrade(cfg, revision)
            conn.commit()
        finally:
            if not db.is_sqlite:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_MIGRATION_LOCK_ID})
                conn.commit()


def downgrade(db: Database, revision: str, *, sealer: Callable[[], Sealer] | None = None) -> None:
    """Back to `revision` (an operator's way out of a release; tests prove each migration reverses)."""
    cfg = alembic_config(db.url)
    if sealer is not None:
        cfg.attributes["sealer"] = sealer
    with db.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
        conn.commit()


def current(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    return ",".join(sorted(heads)) or None
