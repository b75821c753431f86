"""Fixtures for the sandbox channel tests: a real sandbox on a loopback port, a notification
receiver standing in for the platform, and one freshly onboarded merchant per test.

Every module runs on SQLite and, when PostgreSQL is reachable (`PIAOHAO_TEST_DATABASE_URL`, or
the local default), on PostgreSQL too; each run uses its own table prefix and drops its tables
at the end, so runs never collide.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from piaohao.channels.sandbox import SandboxChannel, SandboxNotifier, SandboxStore, create_sandbox_app, onboard
from piaohao.channels.sandbox.rsa import generate_key_pair
from piaohao.channels.sandbox.service import SandboxService
from tests.conftest import BACKENDS, PG_ADMIN_URL
from tests.support import patient
from tests.support.servers import ThreadedServer, free_port

CLIENT_TIMEOUT_S = 5.0  # an ordinary call never takes this long, even on 2 busy cores
BANK_TIMEOUT_DELAY_S = 8.0  # the lost first answer of a 0003 payout: well past CLIENT_TIMEOUT_S
TEST_RETRY_S = (0.0, 0.0, 0.0, 0.0)
PUMP_DEADLINE_S = 10.0
PG_URL = PG_ADMIN_URL


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """The platform's notify endpoint, as far as the sandbox can tell. Records every delivery per
    path key and answers 200 unless told to fail a number of times first."""

    url: str = ""
    deliveries: dict[str, list[Delivery]] = field(default_factory=dict)
    failures_left: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_path(self, fail_first: int = 0) -> tuple[str, str]:
        key = secrets.token_hex(6)
        with self.lock:
            self.deliveries[key] = []
            self.failures_left[key] = fail_first
        return key, f"{self.url}/notify/{key}"

    def got(self, key: str) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries.get(key, []))

    async def endpoint(self, request: Request) -> Response:
        key = request.path_params["key"]
        body = await request.body()
        with self.lock:
            self.deliveries.setdefault(key, []).append(Delivery(dict(request.headers), body))
            if self.failures_left.get(key, 0) > 0:
                self.failures_left[key] -= 1
                return Response(b'{"code":"FAIL"}', status_code=500, media_type="application/json")
        return Response(b'{"code":"SUCCESS"}', media_type="application/json")


class SteppingClock:
    """Real time plus an offset that a test moves forward (`advance`): the sandbox's delays
    ("processing for 60 s", "first notification in 60 s") end when the test says, never on their
    own under load, while timestamps stay close enough to real time for the signature checks."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset += timedelta(seconds=seconds)

    def reset(self) -> None:
        with self._lock:
            self.offset = timedelta(0)


@dataclass
class Sandbox:
    store: SandboxStore
    service: SandboxService
    base_url: str
    notifier: SandboxNotifier
    receiver: Receiver
    clock: SteppingClock

    def pump(self, until: Callable[[], bool], deadline_s: float = PUMP_DEADLINE_S) -> bool:
        """Drive the notifier until `until()` holds (or the deadline passes)."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if until():
                return True
            if not self.notifier.run_once():
                time.sleep(0.01)
        return until()

    def drain(self, passes: int = 5) -> None:
        """Run the notifier a few times so anything due now is handled."""
        for _ in range(passes):
            self.notifier.run_once()


@pytest.fixture(scope="session")
def platform_keys() -> tuple[str, str]:
    return generate_key_pair()


@pytest.fixture(scope="module", params=BACKENDS)
def sandbox_database_url(request, tmp_path_factory) -> str:
    """The sandbox's database for one test module (its tables get a unique prefix, dropped after)."""
    if request.param == "postgresql":
        return PG_URL
    return f"sqlite:///{tmp_path_factory.mktemp('sandbox')}/sandbox.db"


@pytest.fixture(scope="module")
def sandbox(sandbox_database_url: str) -> Iterator[Sandbox]:
    store = SandboxStore(sandbox_database_url, table_prefix=f"sbx{secrets.token_hex(4)}_")
    receiver = Receiver()
    receiver_server = ThreadedServer(Starlette(routes=[Route("/notify/{key}", receiver.endpoint, methods=["POST"])]))
    receiver.url = receiver_server.url
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    clock = SteppingClock()
    app = create_sandbox_app(store, public_base_url=base_url, clock=clock, bank_timeout_delay_s=BANK_TIMEOUT_DELAY_S)
    server = ThreadedServer(app, port)
    http = patient.client()
    notifier = SandboxNotifier(store, http, clock, retry_s=TEST_RETRY_S)
    receiver_server.start()
    server.start()
    try:
        yield Sandbox(store, app.state.sandbox, base_url, notifier, receiver, clock)
    finally:
        server.stop()
        receiver_server.stop()
        notifier.close()
        http.close()
        store.drop_all()
        store.dispose()


@pytest.fixture(autouse=True)
def _no_faults(request) -> Iterator[None]:
    if "sandbox" in request.fixturenames:
        sandbox = request.getfixturevalue("sandbox")
        sandbox.service.clear_faults()
        sandbox.clock.reset()
    yield


@pytest.fixture
def merchant(sandbox: Sandbox, platform_keys) -> tuple[str, str]:
    """A freshly onboarded merchant: (mch_id, channel_public_key_pem)."""
    return onboard(sandbox.store, platform_keys[1])


@pytest.fixture
def channel(sandbox: Sandbox, merchant, platform_keys) -> Iterator[SandboxChannel]:
    http = patient.client()
    yield SandboxChannel(sandbox.base_url, merchant[0], platform_keys[0], merchant[1], timeout_s=CLIENT_TIMEOUT_S,
                         http_client=http)
    http.close()
