"""Run an ASGI app on a real loopback port in a background thread, for tests that need real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reserve_port() -> socket.socket:
    """A loopback socket bound to a free port, held until a server takes it. Picking a port and
    binding it seconds later (after the platform is assembled) let another process or an outgoing
    connection take it in between (seen in a full run: "address already in use")."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


class ThreadedServer:
    def __init__(self, app, port: int | None = None, *, sock: socket.socket | None = None):
        self.port = sock.getsockname()[1] if sock is not None else (port or free_port())
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        run_kwargs = {"sockets": [sock]} if sock is not None else {}
        self.thread = threading.Thread(target=self.server.run, kwargs=run_kwargs, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.time() + 60  # a loaded machine imports and starts slowly; a failure ends it sooner
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serving(app, port: int | None = None) -> Iterator[ThreadedServer]:
    server = ThreadedServer(app, port).start()
    try:
        yield server
    finally:
        server.stop()
