"""The platform's ASGI application."""

from __future__ import annotations

import hmac

from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.responses import JSONResponse, Response

from piaohao import __version__
from piaohao.api import agreements as agreements_api
from piaohao.api import business as business_api
from piaohao.api import cards as cards_api
from piaohao.api import cashier, channels, docs, errors, statements, trades
from piaohao.api import members as members_api
from piaohao.api import refunds as refunds_api
from piaohao.api import settlement as settlement_api
from piaohao.api.console import BASE as CONSOLE_PATH
from piaohao.api.console import create_console
from piaohao.api.gateway import GatewayMiddleware
from piaohao.api.limits import LimitsMiddleware
from piaohao.platform import Platform
from piaohao.web.assets import STATIC_PATH, static_files

DESCRIPTION = """The piaohao merchant API. Every `/v1` call is signed: headers `X-App-Id`, `X-Timestamp`
(Unix seconds), `X-Nonce` (16-64 chars, single use) and `X-Signature` =
base64(HMAC-SHA256(app_secret, METHOD + "\\n" + PATH_AND_QUERY + "\\n" + X-Timestamp + "\\n" + X-Nonce +
"\\n" + BODY)). Amounts are integers in minor units. Errors are `{code, message, request_id}`."""


def create_app(p: Platform, *, extra_mounts: dict | None = None) -> FastAPI:
    app = FastAPI(title="piaohao", version=__version__, description=DESCRIPTION, docs_url=None,
                  redoc_url=None)
    docs.install(app)  # /docs, /redoc and / from local assets; the signing scheme in /openapi.json
    app.state.platform = p
    errors.install(app)
    for router in (trades.router, statements.router, cashier.router, channels.router):
        app.include_router(router)
    app.include_router(members_api.router)
    app.include_router(cards_api.router)
    app.include_router(agreements_api.router)
    app.include_router(refunds_api.router)
    for router in business_api.routers:
        app.include_router(router)
    for router in settlement_api.routers:
        app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        try:
            with p.db.read() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request):
        # Not public: served only with PIAOHAO_METRICS_TOKEN, to "Authorization: Bearer <token>".
        token = p.settings.metrics_token
        given = request.headers.get("authorization", "")
        if not token or not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return JSONResponse({"code": "NOT_FOUND", "message": "not found",
                                 "request_id": request.scope.get("state", {}).get("request_id", "")},
                                status_code=404)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.mount(STATIC_PATH, static_files(), name="static")  # CSS, scripts, images: shipped, never a CDN
    app.mount(CONSOLE_PATH, create_console(p), name="console")  # operators' pages (docs/console.md)
    for path, sub in (extra_mounts or {}).items():
        app.mount(path, sub)
    app.add_middleware(LimitsMiddleware)  # inside the gateway: its refusals carry X-Request-Id and are logged
    app.add_middleware(GatewayMiddleware, platform=p)
    return app
