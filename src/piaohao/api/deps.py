"""Request-scoped values the gateway put in `scope["state"]`.

`async def` on purpose: FastAPI runs a plain `def` dependency in the thread pool, and these only
read an attribute, so three thread hand-offs per request bought nothing (7 % of create-trade's CPU
in the bench/e2e profile, docs/speed.md)."""

from __future__ import annotations

from fastapi import Request

from piaohao.platform import Platform


async def platform(request: Request) -> Platform:
    return request.app.state.platform


async def merchant_id(request: Request) -> str:
    return request.scope["state"]["merchant_id"]


async def app_id(request: Request) -> str:
    return request.scope["state"]["app_id"]
