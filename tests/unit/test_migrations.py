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
