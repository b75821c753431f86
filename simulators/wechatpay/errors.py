"""WeChat Pay v3 error answers: HTTP status plus `{"code", "message", "detail"?}`."""

from __future__ import annotations

__all__ = ["ApiError", "invalid_request", "param_error"]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, detail: dict | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.detail = status, code, message, detail

    def body(self) -> dict:
        out: dict = {"code": self.code, "message": self.message}
        if self.detail:
            out["detail"] = self.detail
        return out


def param_error(message: str, field: str | None = None, value: object = None) -> ApiError:
    detail = {"field": field, "value": value, "issue": message, "location": "body"} if field else None
    return ApiError(400, "PARAM_ERROR", message, detail)


def invalid_request(message: str) -> ApiError:
    return ApiError(400, "INVALID_REQUEST", message)
