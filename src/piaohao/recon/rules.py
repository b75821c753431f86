"""Custom rules: an operator's read-only `SELECT` whose rows become `custom` findings (columns
`subject_type`, `subject_id`, `details`). Anything but one SELECT (or WITH ... SELECT) is refused
when added, and every rule runs in a read-only transaction with a row cap.
"""

from __future__ import annotations

import re

import orjson
from sqlalchemy import Connection, insert, select, text, update

from piaohao.db.schema_recon import recon_rules
from piaohao.kernel.errors import InvalidRequest, NotFound
from piaohao.platform import Platform
from piaohao.recon.findings import Finding

__all__ = ["add_rule", "disable_rule", "list_rules", "run_rules", "validate_sql"]

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
SQL_CHARS_MAX = 20_000
ROWS_PER_RULE_MAX = 1000
_WRITE_WORDS = re.compile(r"\b(insert|update|delete|drop|alter|create|truncate|grant|revoke|attach|detach|pragma|"
                          r"vacuum|copy|call|do|lock|reindex|replace|merge|set|begin|commit|rollback)\b", re.I)
_r = recon_rules.c


def _strip_comments(sql: str) -> str:
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.S)
    return re.sub(r"--[^\n]*", " ", sql)


def validate_sql(sql: str) -> str:
    body = _strip_comments(sql).strip().rstrip(";").strip()
    if not body or len(sql) > SQL_CHARS_MAX:
        raise InvalidRequest("a rule is one SELECT statement")
    if ";" in body:
        raise InvalidRequest("a rule is one statement: no ';' inside")
    if not re.match(r"^(select|with)\b", body, re.I):
        raise InvalidRequest("a rule must be a SELECT")
    if m := _WRITE_WORDS.search(re.sub(r"'(?:[^']|'')*'", "''", body)):
        raise InvalidRequest(f"a rule may only read: {m.group(0).upper()} is refused")
    return body


def add_rule(p: Platform, name: str, sql: str) -> dict:
    if not NAME_RE.match(name or ""):
        raise InvalidRequest("rule names are lowercase letters, digits, '_', '.', '-' (at most 64)")
    body = validate_sql(sql)
    now = p.clock.now()
    with p.db.read() as conn:  # the query must run: try it once, read-only, before keeping it
        _select(conn, body, 1)

    def work(conn: Connection) -> None:
        if conn.execute(select(_r.name).where(_r.name == name)).first() is not None:
            conn.execute(update(recon_rules).where(_r.name == name).values(sql=body, status="active", updated_at=now))
        else:
            conn.execute(insert(recon_rules).values(name=name, sql=body, status="active", created_at=now,
                                                    updated_at=now))
    p.db.write(work)
    return {"name": name, "sql": body, "status": "active"}


def list_rules(p: Platform) -> list[dict]:
    with p.db.read() as conn:
        return [{"name": r.name, "sql": r.sql, "status": r.status}
                for r in conn.execute(select(recon_rules).order_by(_r.name))]


def disable_rule(p: Platform, name: str) -> dict:
    now = p.clock.now()
    done = p.db.write(lambda conn: conn.execute(update(recon_rules).where(_r.name == name).values(
        status="disabled", updated_at=now)).rowcount)
    if not done:
        raise NotFound(f"no rule {name}")
    return {"name": name, "status": "disabled"}


def _select(conn: Connection, sql: str, limit: int) -> list:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    else:
        conn.exec_driver_sql("PRAGMA query_only = ON")
    try:
        try:
            return conn.execute(text(sql)).mappings().fetchmany(limit)
        except Exception as e:  # noqa: BLE001 - any failure of an operator's SQL is a refusal
            raise InvalidRequest(f"the rule's query failed: {str(e).splitlines()[0][:300]}") from None
    finally:
        if conn.dialect.name != "postgresql":
            conn.exec_driver_sql("PRAGMA query_only = OFF")


def run_rules(p: Platform) -> list[Finding]:
    out: list[Finding] = []
    for rule in list_rules(p):
        if rule["status"] != "active":
            continue
        with p.db.read() as conn:
            try:
                rows = _select(conn, rule["sql"], ROWS_PER_RULE_MAX)
            except InvalidRequest as e:
                out.append(Finding("custom", "rule", rule["name"], expected="rule runs", actual=e.message,
                                   facet="broken"))
                continue
        for row in rows:
            details = row.get("details")
            if isinstance(details, str):
                try:
                    details = orjson.loads(details)
                except orjson.JSONDecodeError:
                    details = {"text": details}
            out.append(Finding("custom", str(row.get("subject_type") or "record")[:16],
                               str(row.get("subject_id") or "-")[:64], expected=None, actual=None,
                               facet=rule["name"], details={"rule": rule["name"], "row": details}))
    return out
