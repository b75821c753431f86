"""The create-once idempotent insert, written once for every merchant key.

A merchant key (`out_request_no`, `out_member_id`, ...) is unique per merchant by a database
constraint; that constraint, not a check in Python, is what decides which of two concurrent
identical requests creates the record. `create_once` runs the usual dance:

1. read: a record under the key exists -> `replay(existing)` (which raises IdempotencyConflict
   when the parameters differ);
2. else run `create(conn)` in one write transaction; inside it, `insert_once` inserts the row with
   ON CONFLICT DO NOTHING and raises `Raced` when another request won;
3. on `Raced` the whole transaction rolled back (nothing of ours was written): read the winner
   and replay it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

from piaohao.db.database import Database

__all__ = ["Raced", "create_once", "dialect_insert", "insert_if_absent", "insert_once"]

V = TypeVar("V")


class Raced(Exception):
    """An identical request inserted the same key first: roll back ours and answer theirs."""


def dialect_insert(conn: Connection, table: Table):
    """INSERT with ON CONFLICT support on both backends."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def insert_if_absent(conn: Connection, table: Table, row: dict, key_columns: Sequence[str]) -> bool:
    """Insert `row` unless a row with the same `key_columns` exists; True when this call inserted it.
    `row` holds plain values (they go as parameters of a statement built once)."""
    stmt = _insert_if_absent_statement(conn.dialect.name, table, tuple(key_columns))
    return conn.execute(stmt, row).first() is not None


@functools.cache
def _insert_if_absent_statement(dialect_name: str, table: Table, key_columns: tuple[str, ...]):
    """Built once per table: building an INSERT with its values and its cache key on every call
    cost 1.6 ms for a trade's 23 columns, more than the database took to run it (docs/speed.md)."""
    first_pk = list(table.primary_key.columns)[0]
    make = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    return make(table).on_conflict_do_nothing(index_elements=list(key_columns)).returning(first_pk)


def insert_once(conn: Connection, table: Table, row: dict, key_columns: Sequence[str]) -> None:
    """Insert `row` unless its key exists; raise `Raced` (rolling the caller back) if it does."""
    if not insert_if_absent(conn, table, row, key_columns):
        raise Raced()


def create_once(db: Database, *, find: Callable[[Connection], Any], replay: Callable[[Any], V],
                create: Callable[[Connection], V]) -> tuple[V, bool]:
    """(view, created): the record under a merchant key, created at most once (see module doc)."""
    with db.read() as conn:
        existing = find(conn)
    if existing is not None:
        return replay(existing), False
    try:
        return db.write(create), True
    except Raced:
        with db.read() as conn:
            return replay(find(conn)), False
