"""schemathesis against `/openapi.json`, every request signed as a merchant would: no 5xx, and every
response conforms to the schema. Examples per operation are bounded (SCHEMATHESIS_EXAMPLES) so the
whole run takes a couple of minutes; more can be asked for with PIAOHAO_SCHEMATHESIS_EXAMPLES."""

from __future__ import annotations

import os
import secrets
import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from piaohao.kernel.signing import sign
from tests.conftest import BACKENDS, _fresh_pg_database, fast_settings
from tests.support.servers import ThreadedServer, free_port

SCHEMATHESIS_EXAMPLES = int(os.environ.get("PIAOHAO_SCHEMATHESIS_EXAMPLES", "12"))


class Signed(requests.auth.AuthBase):
    """Signs the request exactly as sent: method, path and query, body bytes (API.md "Authentication")."""

    def __init__(self, app_id: str, secret: str):
        self.app_id, self.secret = app_id, secret

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        ts, nonce = str(int(time.time())), secrets.token_hex(12)
        r.headers.update({"X-App-Id": self.app_id, "X-Timestamp": ts, "X-Nonce": nonce,
                          "X-Signature": sign(self.secret, r.method, r.path_url, ts, nonce, body)})
        return r


@pytest.fixture(scope="module", params=BACKENDS)
def served(request, tmp_path_factory):
    from piaohao.bootstrap import assemble
    from piaohao.services.merchants import create_merchant

    tmp = tmp_path_factory.mktemp("schemathesis")
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp}/piaohao.db"
    else:
        url, drop = _fresh_pg_database()
    port = free_port()
    assembly = assemble(fast_settings(url, port, tmp), migrate_now=True)
    server = ThreadedServer(assembly.app, port).start()
    assembly.start_channel_simulators()
    assembly.start_workers()
    creds = create_merchant(assembly.platform, "Fuzz")
    session = requests.Session()
    session.auth = Signed(creds.app_id, creds.app_secret)
    try:
        yield server.url, session
    finally:
        session.close()
        server.stop()
        assembly.close()
        if drop:
            drop()


def _published_schema() -> dict:
    """What `/openapi.json` serves (it depends on no database)."""
    from piaohao.api.app import create_app
    from piaohao.db.database import Database
    from piaohao.kernel.clock import SystemClock
    from piaohao.kernel.settings import Settings
    from piaohao.platform import Platform

    db = Database("sqlite://")
    try:
        return create_app(Platform(settings=Settings(database_url="sqlite://"), db=db, clock=SystemClock())).openapi()
    finally:
        db.dispose()


schema = schemathesis.openapi.from_dict(_published_schema())


@schema.parametrize()
@settings(max_examples=SCHEMATHESIS_EXAMPLES, deadline=None,
          suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_answers_every_generated_request_without_a_server_error(case, served):
    base_url, session = served
    response = case.call(base_url=base_url, session=session, timeout=30)
    if case.path.startswith("/v1/"):
        assert response.status_code != 401, (response.text, case.path)  # the hook signed it as sent
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
