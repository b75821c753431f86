"""One-off HTTP calls from tests, with a patient read timeout.

httpx's default is 5 s. On a loaded CI machine a freshly started server has answered later than
that (`test_405_carries_allow` timed out in CI on a DELETE the router refuses without touching
the database), which made the result depend on the machine's speed. A real hang still fails,
just later.
"""

from __future__ import annotations

from typing import Any

import httpx

TIMEOUT_S = 60.0


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("timeout", TIMEOUT_S)
    return httpx.request(method, url, **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return request("POST", url, **kwargs)


def put(url: str, **kwargs: Any) -> httpx.Response:
    return request("PUT", url, **kwargs)


def patch(url: str, **kwargs: Any) -> httpx.Response:
    return request("PATCH", url, **kwargs)


def delete(url: str, **kwargs: Any) -> httpx.Response:
    return request("DELETE", url, **kwargs)


def client(**kwargs: Any) -> httpx.Client:
    kwargs.setdefault("timeout", TIMEOUT_S)
    return httpx.Client(**kwargs)
