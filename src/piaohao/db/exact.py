"""Exact integer arithmetic in SQL, for money computed set-based (`clearing.settle`).

`a × b` of two amounts overflows a 64-bit integer (AMOUNT_MAX is 10^15), and SQLite then turns it
into a float. So the product never stays in a BIGINT:
- PostgreSQL computes in `numeric`, which is exact at any size, with `div` / `mod` (integer
  quotient and remainder) and casts the result, which always fits, back to BIGINT;
- SQLite calls `pz_muldiv` / `pz_mulmod`, registered on each connection (`register_sqlite`),
  which are `kernel.money.muldiv` on Python's integers.
Operands may be BIGINT columns or numeric text (a fee rule's rate as an exact fraction can
exceed 64 bits). Every operand is non-negative and every divisor positive, so a quotient
truncated towards zero is the floor.
"""

from __future__ import annotations

from piaohao.kernel.money import muldiv as _muldiv

__all__ = ["muldiv", "mulmod", "register_sqlite"]


def muldiv(dialect: str, a: str, b: str, c: str, rounding: str = "'floor'") -> str:
    """SQL for a × b / c rounded by `rounding` (an SQL expression naming floor, ceil or half_up),
    as BIGINT. An unknown rounding gives NULL, which no column that takes money accepts."""
    if dialect != "postgresql":
        return f"pz_muldiv({a}, {b}, {c}, {rounding})"
    ab, cn = f"(CAST({a} AS numeric) * CAST({b} AS numeric))", f"CAST({c} AS numeric)"
    return (f"CAST(CASE {rounding} WHEN 'floor' THEN div({ab}, {cn}) "
            f"WHEN 'ceil' THEN div({ab} + {cn} - 1, {cn}) "
            f"WHEN 'half_up' THEN div(2 * {ab} + {cn}, 2 * {cn}) END AS bigint)")


def mulmod(dialect: str, a: str, b: str, c: str) -> str:
    """SQL for (a × b) mod c as BIGINT (c itself fits in one)."""
    if dialect != "postgresql":
        return f"pz_mulmod({a}, {b}, {c})"
    return f"CAST(mod(CAST({a} AS numeric) * CAST({b} AS numeric), CAST({c} AS numeric)) AS bigint)"


def _sqlite_muldiv(a, b, c, rounding):
    if a is None or b is None or c is None:
        return None
    try:
        return _muldiv(int(a), int(b), int(c), rounding)
    except ValueError:
        return None  # NULL: the statement's NOT NULL or CHECK constraint refuses it


def _sqlite_mulmod(a, b, c):
    if a is None or b is None or c is None or int(c) <= 0:
        return None
    return int(a) * int(b) % int(c)


def register_sqlite(dbapi_conn) -> None:
    """Make `pz_muldiv` and `pz_mulmod` callable on a sqlite3 connection."""
    dbapi_conn.create_function("pz_muldiv", 4, _sqlite_muldiv, deterministic=True)
    dbapi_conn.create_function("pz_mulmod", 3, _sqlite_mulmod, deterministic=True)
