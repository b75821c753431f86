"""A small HTTP/1.1 keep-alive client on raw asyncio streams, the load generator of the create
phases and of the end-to-end phase.

Why not httpx: on a 2-core machine the client shares the cores with the server it measures, and
httpx spends several times more CPU per request than this; a bare endpoint driven by httpx
measures the client. wrk is not installed on the project's machines. Every phase that is
compared (bare endpoint, create-trade on 1 or 2 processes) is driven by this same client with the
same concurrency, so the client's cost is the same on both sides of each ratio.
"""

from __future__ import annotations

import asyncio
import re
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
CHUNKED = re.compile(rb"\r\ntransfer-encoding:\s*chunked", re.IGNORECASE)
CLOSE = re.compile(rb"\r\nconnection:\s*close", re.IGNORECASE)


def raw_request(method: str, url_or_path: str, headers: dict | None = None, body: bytes = b"",
                host: str = "127.0.0.1") -> bytes:
    """The bytes of one request; `url_or_path` may be absolute (only its path is used)."""
    parts = urlsplit(url_or_path)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc or host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


IDLE_REUSE_S = 3.0  # below uvicorn's 5 s keep-alive timeout: never send on a connection it may be closing


class Conn:
    """One keep-alive connection; reconnects when the server closed it or may be about to (idle
    too long: on a loaded machine a buyer's calls to the sandbox can be seconds apart)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last_used = 0.0

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is not None and time.monotonic() - self.last_used > IDLE_REUSE_S:
            self.close()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        if m := CONTENT_LENGTH.search(head):
            body = await self.reader.readexactly(int(m.group(1)))
        elif CHUNKED.search(head):
            body = await self._chunked()
        else:
            body = b""
        self.last_used = time.monotonic()
        if CLOSE.search(head):
            self.close()
        return status, body

    async def _chunked(self) -> bytes:
        out = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            out.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return b"".join(out)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def cpu_self_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def timed_phase(url: str, requests: Iterator[bytes], *, concurrency: int, warmup_s: float, seconds: float,
                      expect_status: int, max_requests: int | None = None,
                      on_window: Callable[[str], None] = lambda _: None) -> dict:
    """Drive `concurrency` connections, each sending the next request as soon as its previous
    answer is in, for `warmup_s + seconds` (or until `max_requests` were measured). Counted:
    requests started in the measured window (after the warm-up); `on_window("start" | "end")` is
    called at its edges (for CPU readings)."""
    parts = urlsplit(url)
    latencies: list[float] = []
    bad: list[tuple[int, bytes]] = []
    window = {"start": 0.0, "end": 0.0}
    started = time.perf_counter()
    window_start, window_end = started + warmup_s, started + warmup_s + seconds
    marks = {"start": False}
    exhausted = [False]
    counted = [0]

    async def one_connection() -> None:
        conn = Conn(parts.hostname, parts.port)
        try:
            while (now := time.perf_counter()) < window_end:
                if not marks["start"] and now >= window_start:
                    marks["start"] = True
                    window["cpu"] = cpu_self_s()
                    on_window("start")  # blocks the loop (it reads /proc): the window starts after it
                    window["start"] = time.perf_counter()
                measured = marks["start"]
                if measured:
                    if max_requests is not None and counted[0] >= max_requests:
                        return
                    counted[0] += 1
                try:
                    raw = next(requests)
                except StopIteration:
                    exhausted[0] = True
                    return
                t0 = time.perf_counter()
                status, body = await conn.request(raw)
                if measured:
                    latencies.append(time.perf_counter() - t0)
                if status != expect_status and len(bad) < 5:
                    bad.append((status, body[:300]))
        finally:
            conn.close()

    await asyncio.gather(*(one_connection() for _ in range(concurrency)))
    window["end"] = time.perf_counter()
    on_window("end")
    if bad:
        raise RuntimeError(f"{url}: unexpected answers (wanted {expect_status}): {bad}")
    if exhausted[0] or not latencies:
        raise RuntimeError(f"{url}: ran out of requests or measured none; raise the request cap")
    latencies.sort()
    elapsed = window["end"] - window["start"]
    return {"requests": len(latencies), "seconds": elapsed, "rps": len(latencies) / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000,
            "client_cpu_s": cpu_self_s() - window["cpu"]}


def run(coro):
    """uvloop when installed (it is a dependency of uvicorn[standard]): a cheaper client."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
