"""Invariants that guard money, checked in production and never switched off.

`assert` vanishes under `python -O`; `require` does not. A failed check raises
`InvariantViolated`, which rolls back the caller's transaction: the operation stops loudly and
writes nothing, rather than carrying on with books that do not add up (TigerBeetle's rule).
"""

from __future__ import annotations

from piaohao.kernel.errors import InvariantViolated

__all__ = ["require"]


def require(condition: object, message: str, **details) -> None:
    """Raise `InvariantViolated(message)` unless `condition` holds."""
    if not condition:
        raise InvariantViolated(message, **details)
