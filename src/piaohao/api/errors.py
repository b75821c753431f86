"""Every error leaves as `{"code", "message", "request_id"}` with its HTTP status: mapped here only."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from piaohao.kernel import errors as e

log = structlog.get_logger(__name__)

_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"}


# The one place HTTP statuses are assigned: by class where API.md names one, else by category.
_STATUS_BY_CLASS: dict[type[e.PiaohaoError], int] = {
    e.IdempotencyConflict: 422,
    e.PaymentPasswordLocked: 423,
    e.PayinfoInvalid: 502,
}
_STATUS_BY_CATEGORY: tuple[tuple[type[e.PiaohaoError], int], ...] = (
    (e.InvalidInput, 400), (e.Unauthenticated, 401), (e.Forbidden, 403), (e.NotFound, 404),
    (e.Conflict, 409), (e.TooLarge, 413), (e.Locked, 423), (e.RateLimited, 429), (e.Unavailable, 503),
    (e.InternalFault, 500),
)


def status_of(exc: e.PiaohaoError) -> int:
    for cls in type(exc).__mro__:
        if cls in _STATUS_BY_CLASS:
            return _STATUS_BY_CLASS[cls]
    for category, status in _STATUS_BY_CATEGORY:
        if isinstance(exc, category):
            return status
    return 400


def request_id_of(request_or_scope) -> str:
    scope = request_or_scope.scope if hasattr(request_or_scope, "scope") else request_or_scope
    return scope.get("state", {}).get("request_id", "")


def error_body(code: str, message: str, request_id: str) -> dict:
    return {"code": code, "message": message, "request_id": request_id}


def error_response(status: int, code: str, message: str, request_id: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, request_id), status_code=status, headers=headers)


def _describe(errors: list) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    @app.exception_handler(e.PiaohaoError)
    async def _domain(request: Request, exc: e.PiaohaoError):
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, e.RateLimited) else None
        return error_response(status_of(exc), exc.code, exc.message, request_id_of(request), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return error_response(400, "INVALID_REQUEST", _describe(exc.errors()), request_id_of(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
        # Starlette's headers (e.g. `Allow` on a 405) go out with the error.
        return error_response(exc.status_code, code, str(exc.detail), request_id_of(request),
                              dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("http.unhandled", path=request.url.path)
        return error_response(500, "INTERNAL_ERROR", "internal error; nothing was changed unless a "
                              "later query shows otherwise", request_id_of(request))
