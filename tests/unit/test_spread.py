"""`serve --processes N` gives each process a listening socket of its own (cli/spread.py)."""

from __future__ import annotations

import io
import select
import socket
from multiprocessing.reduction import ForkingPickler

import pytest

from piaohao.cli import spread

pytestmark = pytest.mark.skipif(not spread.supported(), reason="no SO_REUSEPORT on this system")


def _as_a_child_gets_it(sock: socket.socket) -> socket.socket:
    """What multiprocessing's spawn does to the socket it hands a child: pickle, unpickle."""
    buf = io.BytesIO()
    ForkingPickler(buf).dump(sock)
    return ForkingPickler.loads(buf.getvalue())


def test_each_child_listens_on_a_socket_of_its_own_and_connections_reach_both():
    reserved = spread.reserve("127.0.0.1", 0)
    port = reserved.getsockname()[1]
    a, b = _as_a_child_gets_it(reserved), _as_a_child_gets_it(reserved)
    clients = []
    try:
        assert a.fileno() != b.fileno() and a.getsockname()[1] == b.getsockname()[1] == port
        for s in (a, b):
            s.listen(64)
            s.setblocking(False)
        for _ in range(32):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        accepted = {"a": 0, "b": 0}
        by_fd = {a.fileno(): ("a", a), b.fileno(): ("b", b)}
        while sum(accepted.values()) < 32:  # bounded: a missing connection fails the select below
            ready, _, _ = select.select(list(by_fd), [], [], 30)
            assert ready, accepted
            for fd in ready:
                name, s = by_fd[fd]
                conn, _ = s.accept()
                conn.close()
                accepted[name] += 1
        # Every connection was queued on one of the two (the reserving socket never listens), and
        # the kernel spread them: all 32 on one socket would happen with probability 2^-31.
        assert accepted["a"] + accepted["b"] == 32
        assert accepted["a"] > 0 and accepted["b"] > 0, accepted
    finally:
        for c in clients:
            c.close()
        for s in (a, b, reserved):
            s.close()


def test_the_reserved_port_is_not_taken_by_a_plain_bind():
    reserved = spread.reserve("127.0.0.1", 0)
    try:
        other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with pytest.raises(OSError):
            other.bind(("127.0.0.1", reserved.getsockname()[1]))
        other.close()
    finally:
        reserved.close()
