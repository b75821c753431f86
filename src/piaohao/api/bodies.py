"""Reading a request body once in an ASGI middleware, bounded, and handing it on to the app.

Both the limits middleware and the signing gateway must see the whole body before the app does
(to bound it, to verify its signature), and the app must then read the same bytes again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Receive = Callable[[], Awaitable[dict]]


async def read_bounded(receive: Receive, limit_bytes: int, too_large: Callable[[], Exception]) -> bytes:
    """The whole body; raises `too_large()` as soon as more than `limit_bytes` arrived."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit_bytes:
            raise too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that first gives the app the body already read, then whatever comes next
    (a disconnect)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
