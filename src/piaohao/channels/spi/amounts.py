"""Amounts on the wire, converted exactly: Alipay speaks yuan strings with at most two decimals,
WeChat Pay integer fen. Never through a float (peers shipped that bug: medusa #12789, jeepay #67)."""

from __future__ import annotations

import re

__all__ = ["AmountFormatError", "fen_to_yuan", "yuan_to_fen"]

_YUAN = re.compile(r"(0|[1-9][0-9]{0,15})(?:\.([0-9]{1,2}))?")


class AmountFormatError(ValueError):
    """A channel amount that is not a plain non-negative decimal with at most two places."""


def yuan_to_fen(text: str) -> int:
    """'19.99' -> 1999, '0.01' -> 1, '10' -> 1000. Refuses '1e3', '-1', '1.234', ' 1', '01.00'."""
    if not isinstance(text, str):
        raise AmountFormatError(f"yuan amount must be a string, got {type(text).__name__}")
    m = _YUAN.fullmatch(text)
    if not m:
        raise AmountFormatError(f"not a yuan amount: {text[:32]!r}")
    return int(m.group(1)) * 100 + int((m.group(2) or "0").ljust(2, "0"))


def fen_to_yuan(fen: int) -> str:
    """1999 -> '19.99', 1 -> '0.01', 100 -> '1.00'."""
    if isinstance(fen, bool) or not isinstance(fen, int) or fen < 0:
        raise AmountFormatError(f"fen amount must be a non-negative int, got {fen!r}")
    return f"{fen // 100}.{fen % 100:02d}"
