"""`piaohao serve --processes 2`: the API runs in child processes started by uvicorn; their log
lines, uvicorn's own included (its "Exception in ASGI application" traceback), are scrubbed too.

The child is made to fail a request with an exception that quotes a card number and a secret: a
`sitecustomize` module (loaded by every Python process started with the test's PYTHONPATH,
uvicorn's spawned children included) adds one route to the app that raises it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import httpx
import pytest

from tests.e2e.test_serve_processes import stop
from tests.support import patient
from tests.support.merchant import wait_until
from tests.support.servers import free_port

CARD = "6222020200112234567"
SECRET_VALUE = "s3cr3t-value-for-the-log-test"

SITECUSTOMIZE = textwrap.dedent(f"""
    import os
    if os.environ.get("PIAOHAO_TEST_BOOM_ROUTE") == "1":
        import piaohao.api.app as _app

        _create = _app.create_app

        def create_app(*args, **kwargs):
            app = _create(*args, **kwargs)

            @app.get("/boom")
            def boom():
                raise RuntimeError("charging card {CARD} failed: app_secret={SECRET_VALUE}")

            return app

        _app.create_app = create_app
""")


@pytest.mark.timeout(600)
def test_child_processes_log_through_the_scrubber(tmp_path):
    exe = shutil.which("piaohao") or os.path.join(os.path.dirname(sys.executable), "piaohao")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    port = free_port()
    env = dict(os.environ, PIAOHAO_DATABASE_URL=f"sqlite:///{tmp_path}/p.db", PIAOHAO_LOG_LEVEL="INFO",
               PIAOHAO_SANDBOX="on", PIAOHAO_SANDBOX_DATABASE_URL=f"sqlite:///{tmp_path}/sandbox.db",
               PIAOHAO_TEST_BOOM_ROUTE="1",
               PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), *sys.path]))
    env.pop("PIAOHAO_BASE_URL", None)
    stderr_path = tmp_path / "stderr.log"
    with open(stderr_path, "wb") as stderr:
        server = subprocess.Popen([exe, "serve", "--port", str(port), "--processes", "2", "--no-workers"], env=env,
                                  cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            # Generous: two processes start (each assembles a platform) on a loaded machine.
            assert wait_until(lambda: _status(base + "/healthz") == 200, timeout_s=240), stderr_path.read_text()
            for _ in range(4):  # the kernel spreads connections over both children
                assert _status(base + "/boom") == 500
            assert wait_until(lambda: stderr_path.read_text().count("Exception in ASGI application") >= 1,
                              timeout_s=60), stderr_path.read_text()
        finally:
            stop(server)
    logs = stderr_path.read_text()
    assert "Traceback" in logs and "RuntimeError" in logs, logs  # the uvicorn traceback was written...
    assert CARD not in logs and SECRET_VALUE not in logs, logs  # ...scrubbed
    assert "****4567" in logs
    # uvicorn's lines come out in piaohao's format (JSON lines: level, logger, event), not uvicorn's own.
    uvicorn_lines = [line for line in logs.splitlines() if "Exception in ASGI application" in line]
    assert uvicorn_lines, logs
    for line in uvicorn_lines:
        parsed = json.loads(line)
        assert parsed["logger"] == "uvicorn.error" and parsed["level"] == "error", line


def _status(url: str) -> int:
    try:
        return patient.get(url, timeout=30).status_code
    except httpx.HTTPError:
        return 0
