"""Bulk insert of many rows of one table in the caller's transaction.

PostgreSQL: `COPY ... FROM STDIN` on the caller's connection (same transaction), several times
faster than a pipelined executemany for thousands of rows. SQLite: one executemany INSERT.
Values go to the driver as they are (no SQLAlchemy type processing): pass timezone-aware
datetimes for timestamp columns and plain ints and strings otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Table, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY

__all__ = ["array_literal", "insert_rows", "pg_array"]


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict]) -> None:
    """Insert `rows` (dicts with the same keys) into `table`; nothing when empty."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), list(rows))
        return
    columns = list(rows[0])
    sql = f'COPY {table.name} ({", ".join(columns)}) FROM STDIN'
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(sql) as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


_NEEDS_QUOTES = frozenset('"{}\\ \t\n\r\v\f')


def array_literal(values: Sequence) -> str:
    """A PostgreSQL array literal ('{a,b}') of ints or strings (None -> NULL), for `CAST(:p AS T[])`.
    psycopg dumps a list element by element in Python (a regex per string): for a batch's ~20 arrays
    of hundreds of elements that was a quarter of the client's time. Our ids need no quoting: one
    scan of the joined text decides; anything else (free text, empty strings, NULLs) is quoted."""
    if not values:
        return "{}"
    if type(values[0]) is int:
        return "{" + ",".join(map(str, values)) + "}"
    if None not in values and "" not in values:
        joined = ",".join(values)
        if (joined.count(",") == len(values) - 1 and _NEEDS_QUOTES.isdisjoint(joined)
                and "null" not in joined.lower()):
            return "{" + joined + "}"
    return "{" + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


def pg_array(column, values: Sequence):
    """`column = ANY(:array)` (PostgreSQL): one fixed statement whatever the number of values, where
    an IN list of thousands of parameters is parsed, converted and planned anew each time. A real
    array parameter (psycopg dumps the list), not `array_literal`: the planner sees its values
    (a CAST of text is not folded at plan time) and estimates the join that follows from them;
    with a blind estimate it chose a nested loop over the settlement details (44 s for 20,000)."""
    return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
