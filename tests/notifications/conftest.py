"""Fixtures for the outbox and the merchant-notification dispatcher.

`db` runs each test on a fresh, migrated SQLite file; when `PIAOHAO_TEST_DATABASE_URL` is set
(e.g. `postgresql+psycopg://postgres@127.0.0.1:5432/postgres`) every test also runs on a
PostgreSQL database created for this test session (and dropped at its end).
Tests marked `postgres_only` are skipped on SQLite.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from dataclasses import dataclass

import orjson
import pytest
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from piaohao.db.database import Database, normalise_url
from piaohao.db.migrate import upgrade
from piaohao.db.schema import apps, merchants
from piaohao.kernel.clock import FakeClock
from piaohao.kernel.ids import new_id, new_secret
from piaohao.kernel.sealing import Sealer
from piaohao.kernel.settings import Settings
from piaohao.services.merchants import seal_secret
from piaohao.workers.dispatcher import OutboxDispatcher
from tests.conftest import BACKENDS, PG_ADMIN_URL, PG_AVAILABLE, TEST_SECRET_KEY
from tests.support.servers import ThreadedServer

PG_URL = PG_ADMIN_URL if PG_AVAILABLE else None
_PG_TABLES = ("notification_attempts", "outbox_events", "apps", "merchants")


@pytest.fixture(scope="session")
def pg_database_url():
    if not PG_URL:
        pytest.skip("PIAOHAO_TEST_DATABASE_URL is not set")
    base = make_url(normalise_url(PG_URL))
    name = f"piaohao_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    try:
        upgrade(db)
    finally:
        db.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    if request.param == "sqlite":
        if request.node.get_closest_marker("postgres_only"):
            pytest.skip("PostgreSQL only")
        url = f"sqlite:///{tmp_path / 'piaohao.db'}"
        db = Database(url)
        upgrade(db)
        db.dispose()
        return url
    url = request.getfixturevalue("pg_database_url")
    db = Database(url)
    with db.engine.begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(_PG_TABLES) + " CASCADE"))
    db.dispose()
    return url


@pytest.fixture
def db(db_url):
    db = Database(db_url)
    yield db
    db.dispose()


@pytest.fixture
def clock():
    return FakeClock()


@dataclass
class App:
    merchant_id: str
    app_id: str
    secret: str


@pytest.fixture
def app(db, clock):
    a = App(new_id("mch"), new_id("app"), new_secret())

    def fn(conn):
        conn.execute(insert(merchants).values(merchant_id=a.merchant_id, name="Socks Ltd", created_at=clock.now()))
        conn.execute(insert(apps).values(app_id=a.app_id, merchant_id=a.merchant_id,
                                         secret_sealed=seal_secret(Sealer(TEST_SECRET_KEY), a.app_id, a.secret),
                                         created_at=clock.now()))

    db.write(fn)
    return a


class Receiver:
    """A merchant's notify endpoint on a real loopback port: records every request, fails on demand."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()
        self.asgi = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    def reset(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.requests: list[dict] = []
            self.fail_next = 0  # answer this many requests with `fail_status`
            self.always_fail = False
            self.fail_status = 500
            self.delay_s = 0.0  # sleep this long before answering

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        qs = request.scope.get("query_string", b"").decode()
        record = {
            "path_and_query": request.scope["raw_path"].decode() + (f"?{qs}" if qs else ""),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body,
            "id": orjson.loads(body)["id"],
        }
        with self.lock:
            self.requests.append(record)
            fail = self.always_fail or self.fail_next > 0
            if self.fail_next > 0:
                self.fail_next -= 1
            status, delay = (self.fail_status if fail else 200), self.delay_s
        if delay:
            await asyncio.sleep(delay)
        return Response(b"" if status < 400 else b"nope", status_code=status,
                        headers={"Location": "http://127.0.0.1:1/elsewhere"} if 300 <= status < 400 else None)

    def counts(self) -> Counter:
        with self.lock:
            return Counter(r["id"] for r in self.requests)


@pytest.fixture(scope="session")
def _receiver_server():
    receiver = Receiver()
    server = ThreadedServer(receiver.asgi).start()
    receiver.url = server.url
    yield receiver
    server.stop()


@pytest.fixture
def receiver(_receiver_server):
    _receiver_server.reset()
    yield _receiver_server
    _receiver_server.reset()


@pytest.fixture
def settings():
    return Settings().with_(notify_retry_s=(1.0, 2.0, 3.0), notify_timeout_s=2.0, secret_key=TEST_SECRET_KEY)


@pytest.fixture
def make_dispatcher(db, clock, settings):
    made: list[OutboxDispatcher] = []

    def make(*, db_=None, settings_=None, **kw) -> OutboxDispatcher:
        d = OutboxDispatcher(db_ or db, settings_ or settings, clock, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()
