"""Shared fixtures: every test that touches the database runs on SQLite and, when PostgreSQL is
reachable (or PIAOHAO_TEST_DATABASE_URL names it), on PostgreSQL too, through one fixture."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text

from piaohao.kernel.settings import Settings
from tests.support.merchant import MerchantClient, Receiver
from tests.support.servers import ThreadedServer, reserve_port

PG_ADMIN_URL = os.environ.get("PIAOHAO_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _pg_available() -> bool:
    if os.environ.get("PIAOHAO_TEST_BACKENDS", "").strip() == "sqlite":
        return False
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - unreachable means skip
        return False


PG_AVAILABLE = _pg_available()
if os.environ.get("PIAOHAO_REQUIRE_POSTGRES") == "1" and not PG_AVAILABLE:
    raise RuntimeError(f"PIAOHAO_REQUIRE_POSTGRES=1 but PostgreSQL is not reachable at {PG_ADMIN_URL}")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_AVAILABLE else [])
if os.environ.get("PIAOHAO_TEST_BACKENDS", "").strip() == "postgresql":
    BACKENDS = ["postgresql"]


def _fresh_pg_database(template: str | None = None) -> tuple[str, callable]:
    name = "piaohao_test_" + secrets.token_hex(6)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


class MigratedTemplates:
    """One database per backend migrated to the newest schema once per test process, copied for
    each test (a file copy on SQLite, CREATE DATABASE ... TEMPLATE on PostgreSQL): running every
    migration for each of ~1,400 tests cost minutes of CI. The migrations themselves stay tested
    (tests/unit/test_migrations.py, the sealing migration's test, `db upgrade` in the CLI tests)."""

    def __init__(self, folder):
        self.folder = folder
        self._sqlite: str | None = None
        self._pg: tuple[str, callable] | None = None

    def sqlite_copy(self, path) -> str:
        if self._sqlite is None:
            self._sqlite = str(self.folder / "template.db")
            self._migrate(f"sqlite:///{self._sqlite}")
        shutil.copyfile(self._sqlite, path)
        return f"sqlite:///{path}"

    def pg_copy(self) -> tuple[str, callable]:
        if self._pg is None:
            self._pg = _fresh_pg_database()
            self._migrate(self._pg[0])
        return _fresh_pg_database(template=self._pg[0].rsplit("/", 1)[1])

    @staticmethod
    def _migrate(url: str) -> None:
        from piaohao.db.database import Database
        from piaohao.db.migrate import upgrade

        db = Database(url)
        try:
            upgrade(db)
        finally:
            db.dispose()  # a template must have no session open when it is copied

    def close(self) -> None:
        if self._pg is not None:
            self._pg[1]()


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory) -> Iterator[MigratedTemplates]:
    templates = MigratedTemplates(tmp_path_factory.mktemp("templates"))
    yield templates
    templates.close()


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path, migrated_templates) -> Iterator[str]:
    """A fresh database at the newest schema, one per test."""
    if request.param == "sqlite":
        yield migrated_templates.sqlite_copy(tmp_path / "piaohao.db")
        return
    url, drop = migrated_templates.pg_copy()
    try:
        yield url
    finally:
        drop()


@pytest.fixture(params=BACKENDS)
def empty_database_url(request, tmp_path) -> Iterator[str]:
    """A fresh database with no schema at all, for tests of the migrations themselves."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/empty.db"
        return
    url, drop = _fresh_pg_database()
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def backend(database_url) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgresql"


@dataclass
class Running:
    """A platform served on a real loopback port, with its workers running."""

    assembly: object
    server: ThreadedServer
    settings: Settings

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def platform(self):
        return self.assembly.platform

    def merchant(self, name: str = "Test Shop") -> MerchantClient:
        from piaohao.services.merchants import create_merchant

        creds = create_merchant(self.platform, name)
        return MerchantClient(self.url, creds.app_id, creds.app_secret, creds.merchant_id)


# An ordinary channel call never takes this long, even on 2 busy cores; tests of timeouts set their own.
CHANNEL_TIMEOUT_S = 15.0  # seen: 6.9 s to bind a card at load average 16
TEST_SECRET_KEY = "tests-secret-key-0123456789abcdefghij"


def fast_settings(database_url: str, port: int, tmp_path, *, sandbox_url: str = "", **overrides) -> Settings:
    """Quick timings, the sandbox on (PostgreSQL too, as API.md's tests do) and a secret key."""
    base = Settings.from_env({})
    channel_env = {"PIAOHAO_SANDBOX": "on", "PIAOHAO_SANDBOX_DATABASE_URL": f"sqlite:///{tmp_path}/sandbox.db"}
    if sandbox_url:
        channel_env["PIAOHAO_SANDBOX_URL"] = sandbox_url
    values = dict(
        database_url=database_url, base_url=f"http://127.0.0.1:{port}", channel_env=channel_env,
        secret_key=TEST_SECRET_KEY, outbound_private="allow",  # tests post to their receivers on 127.0.0.1
        notify_retry_s=(0.2, 0.2, 0.2), notify_timeout_s=2.0, active_query_after_s=0.5,
        active_query_interval_max_s=1.0, channel_timeout_s=CHANNEL_TIMEOUT_S, worker_poll_s=0.05, rate_limit_per_s=0)
    values.update(overrides)
    return base.with_(**values)


@pytest.fixture
def make_platform(database_url, tmp_path):
    """Factory: make_platform(**setting_overrides, workers=True) -> Running."""
    from piaohao.bootstrap import assemble

    made: list[Running] = []

    def make(workers: bool = True, clock=None, **overrides) -> Running:
        sock = reserve_port()
        settings = fast_settings(database_url, sock.getsockname()[1], tmp_path, **overrides)
        assembly = assemble(settings, clock=clock, migrate_now=True)
        server = ThreadedServer(assembly.app, sock=sock).start()
        assembly.start_channel_simulators()
        if workers:
            assembly.start_workers()
        running = Running(assembly, server, settings)
        made.append(running)
        return running

    yield make
    for r in made:
        r.server.stop()
        r.assembly.close()


@pytest.fixture
def running(make_platform) -> Running:
    return make_platform()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
