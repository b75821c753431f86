"""Strict request-body checks, as WeChat Pay applies them: required fields, types, lengths,
integer-fen amounts (never floats or strings), RFC 3339 times, no JSON `null`."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from .errors import param_error

__all__ = [
    "OUT_REFUND_NO", "OUT_TRADE_NO", "amount_fen", "currency", "no_nulls", "obj", "rfc3339", "text",
]

OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-*]{6,32}")
OUT_REFUND_NO = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?([+-]\d\d:\d\d|Z)")
AMOUNT_FEN_MAX = 10**15  # far above any real order; int64-safe


def no_nulls(value: Any, path: str = "") -> None:
    """WeChat Pay rejects JSON null anywhere ("omit the key instead")."""
    if value is None:
        raise param_error("字段不能为null", path or "body")
    if isinstance(value, dict):
        for k, v in value.items():
            no_nulls(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            no_nulls(v, f"{path}[{i}]")


def obj(body: dict, name: str, *, required: bool = True) -> dict:
    value = body.get(name)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise param_error(f"{name}字段缺失或格式错误", name, value)
    return value


def text(body: dict, name: str, *, max_len: int, pattern: re.Pattern | None = None, required: bool = True,
         path: str | None = None) -> str | None:
    value = body.get(name)
    field = path or name
    if value is None:
        if required:
            raise param_error(f"输入源“/body/{field}”映射到字段“{name}”必填性规则校验失败，此字段为必填项", field)
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise param_error(f"{field}字段类型或长度不正确", field, value if isinstance(value, str) else str(value))
    if pattern is not None and not pattern.fullmatch(value):
        raise param_error(f"{field}字段格式不正确", field, value)
    return value


def amount_fen(body: dict, name: str, path: str, *, minimum: int = 1) -> int:
    """An integer number of fen. `True`, `1.0` and `"1"` are all refused."""
    value = body.get(name)
    if value is None:
        raise param_error(f"{path}为必填项", path)
    if type(value) is not int:
        raise param_error(f"{path}字段类型错误，应为整数（单位：分）", path, str(value))
    if not minimum <= value <= AMOUNT_FEN_MAX:
        raise param_error(f"{path}取值超出范围", path, value)
    return value


def currency(body: dict, path: str) -> str:
    value = body.get("currency", "CNY")
    if value != "CNY":
        raise param_error("币种不支持", path, str(value))
    return value


def rfc3339(value: Any, path: str) -> datetime:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise param_error(f"{path}时间格式不正确，应为RFC3339", path, str(value))
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
