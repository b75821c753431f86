"""The Alembic migrations create exactly the tables the code declares."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from piaohao.db.database import Database
from piaohao.db.migrate import current, upgrade
from piaohao.db.schema import metadata


def test_migrations_match_the_schema(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/m.db")
    upgrade(db)
    upgrade(db)  # a second run is a no-op
    assert current(db) is not None
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
    db.dispose()


def test_the_outbox_notify_trigger_comes_and_goes_with_0016(empty_database_url):
    """0016 creates the NOTIFY trigger on PostgreSQL only; its downgrade removes it (SQLite: no-op both ways)."""
    from sqlalchemy import text

    from piaohao.db.migrate import downgrade

    db = Database(empty_database_url)

    def triggers() -> set[str]:
        if db.is_sqlite:
            return set()
        with db.engine.connect() as conn:
            return set(conn.execute(text(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'outbox_events'::regclass AND NOT tgisinternal"
            )).scalars())

    expected = set() if db.is_sqlite else {"outbox_events_notify_insert", "outbox_events_notify_update"}
    try:
        upgrade(db)
        assert triggers() == expected
        downgrade(db, "0015")
        assert current(db) == "0015"
        assert triggers() == set()
        upgrade(db)
        assert triggers() == expected
    finally:
        db.dispose()
