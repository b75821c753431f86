"""Request-scoped values the gateway put in `scope["state"]`."""

from __future__ import annotations

from fastapi import Request

from piaohao.platform import Platform


def platform(request: Request) -> Platform:
    return request.app.state.platform


def merchant_id(request: Request) -> str:
    return request.scope["state"]["merchant_id"]


def app_id(request: Request) -> str:
    return request.scope["state"]["app_id"]
