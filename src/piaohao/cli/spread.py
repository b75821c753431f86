"""Spread connections over `serve --processes N`: one listening socket per process, SO_REUSEPORT.

uvicorn's supervisor hands every child the one socket it bound, so the children share one accept
queue, and a burst of keep-alive connections can all be accepted by whichever child wakes first
(2 of 5 benchmark runs put all 16 on one process, docs/speed.md). Here the supervisor holds a
socket that is bound with SO_REUSEPORT but never listens (it keeps the port ours between
restarts), and what a child receives when it is started is not a copy of it: unpickling it in
the child binds a new SO_REUSEPORT socket to the same address. The kernel then hashes each new
connection onto one of the listening sockets, that is onto one process, and a child that dies
takes only its own queue with it.
"""

from __future__ import annotations

import socket


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bound(host: str, port: int, kind: type[socket.socket] = socket.socket) -> socket.socket:
    sock = kind(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class PortReservation(socket.socket):
    """The supervisor's socket. Pickled for a child (multiprocessing's spawn), it becomes a new
    socket of the child's own on the same address; the server listens on that one."""

    def __reduce__(self):
        host, port = self.getsockname()[:2]
        return _bound, (host, port)


def reserve(host: str, port: int) -> PortReservation:
    return _bound(host, port, PortReservation)


def supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")
