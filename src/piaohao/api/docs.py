"""The API describes itself: an OpenAPI document that says how `/v1` calls are signed (one
security scheme per signing header, all four required together), Swagger UI at `/docs` and ReDoc
at `/redoc` served from local assets (they work offline, no CDN), and a small home page at `/`."""

from __future__ import annotations

from html import escape
from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["ASSETS_PATH", "SIGNING_HEADERS", "install"]

ASSETS_PATH = "/_docs"  # Swagger UI and ReDoc bundles, shipped by the fastapi-offline package
CANONICAL = 'METHOD + "\\n" + PATH_AND_QUERY + "\\n" + X-Timestamp + "\\n" + X-Nonce + "\\n" + BODY'
SIGNING_HEADERS = {
    "AppId": ("X-App-Id", "The app's id (`app_...`), from `piaohao merchants create`."),
    "Timestamp": ("X-Timestamp", "Unix seconds; more than 300 s away from server time is refused."),
    "Nonce": ("X-Nonce", "16-64 characters, never reused by the app within 600 s."),
    "Signature": ("X-Signature", f"base64(HMAC-SHA256(app_secret, {CANONICAL})); BODY is the raw body, "
                                 "empty for GET. See docs/api.md and piaohao.client for code."),
}


def _openapi(app: FastAPI) -> dict:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    for name, (header, description) in SIGNING_HEADERS.items():
        schemes[name] = {"type": "apiKey", "in": "header", "name": header, "description": description}
    signed = [{name: [] for name in SIGNING_HEADERS}]  # one requirement object: all four headers at once
    for path, operations in schema.get("paths", {}).items():
        if path == "/v1" or path.startswith("/v1/"):
            for operation in operations.values():
                operation["security"] = signed
    schema["x-signature-canonical"] = CANONICAL
    app.openapi_schema = schema
    return schema


def _home(app: FastAPI) -> str:
    links = [("/docs", "API reference (Swagger UI)"), ("/redoc", "API reference (ReDoc)"),
             ("/openapi.json", "OpenAPI description"), ("/healthz", "health"), ("/metrics", "metrics")]
    items = "".join(f'<li><a href="{href}">{escape(text)}</a></li>' for href, text in links)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(app.title)}</title></head>"
            f"<body style='font-family:sans-serif;max-width:40em;margin:3em auto'>"
            f"<h1>piaohao 票號 <small>{escape(app.version)}</small></h1>"
            "<p>An aggregated payment platform. Merchants call the signed <code>/v1</code> API; buyers pay "
            "on the cashier page at each trade's <code>pay_url</code>.</p>"
            f"<ul>{items}</ul></body></html>")


def install(app: FastAPI) -> None:
    """Serve the docs locally and publish the signing scheme. Call on an app made with docs_url=None."""
    app.mount(ASSETS_PATH, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} API",
                                   swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS_PATH}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} API",
                              redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS_PATH}/favicon.png", with_google_fonts=False)

    @app.get("/", include_in_schema=False)
    def home() -> HTMLResponse:
        return HTMLResponse(_home(app))
