"""Console operators: who may sign in, with which role, and their sessions.

- `add_operator` makes an operator with a generated password, returned this once (only its scrypt
  hash is kept, as for payment passwords: `services.passwords`).
- `sign_in` checks name and password; five wrong passwords in a row lock the operator's sign-in
  for `SIGNIN_LOCK_S` (an unknown name costs the same hashing work and says the same thing). It
  returns a session token: random, given to the browser only, stored as its SHA-256.
- `session_operator` finds the operator of a token while its session lives: it ends after
  `SESSION_IDLE_S` without a request, and after `SESSION_ABSOLUTE_S` whatever happens.
- `csrf_token` is derived from the session token (HMAC), so a form's token needs no storage and
  cannot be guessed by a page that cannot read the HttpOnly cookie.
Every sign-in, failed sign-in of a known operator and sign-out is written to the audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from piaohao.db.schema_console import operator_sessions, operators
from piaohao.kernel.errors import InvalidRequest, OperatorExists, OperatorLocked, SignInRefused
from piaohao.platform import Platform
from piaohao.services.operations import audit
from piaohao.services.passwords import hash_password, password_matches

__all__ = ["ACTING_ROLES", "ROLES", "Operator", "add_operator", "csrf_matches", "csrf_token", "list_operators",
           "session_operator", "sign_in", "sign_out"]

ROLES = ("viewer", "operator", "admin")
ACTING_ROLES = frozenset({"operator", "admin"})  # a viewer sees everything and changes nothing
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
PASSWORD_BYTES = 18  # 24 URL-safe characters: within the 6-32 that services.passwords accepts
SIGNIN_FAILURES_MAX = 5
SIGNIN_LOCK_S = 900
SESSION_IDLE_S = 30 * 60
SESSION_ABSOLUTE_S = 12 * 3600
SESSION_TOUCH_S = 60  # last_seen_at is rewritten at most this often (not on every page)
_o, _s = operators.c, operator_sessions.c


@dataclass(frozen=True)
class Operator:
    name: str
    role: str

    @property
    def may_act(self) -> bool:
        return self.role in ACTING_ROLES

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@cache
def _dummy_hash() -> str:
    """A hash to check unknown names against: they cost the same scrypt work as wrong passwords."""
    return hash_password(secrets.token_urlsafe(PASSWORD_BYTES))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def csrf_token(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"piaohao-console-csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_token: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(csrf_token(session_token).encode(), str(given).encode())


def add_operator(p: Platform, name: str, role: str) -> dict:
    """{"name", "role", "password"}: the password is shown this once and never kept in clear."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidRequest("an operator name is 1-64 letters, digits, '_', '.', '@' or '-'")
    if role not in ROLES:
        raise InvalidRequest(f"--role must be one of {', '.join(ROLES)}")
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    stored = hash_password(password)
    now = p.clock.now()

    def tx(conn: Connection) -> None:
        conn.execute(insert(operators).values(name=name, role=role, password_hash=stored, created_at=now))
        audit(conn, now=now, operator=name, action="operator.add", object_type="operator", object_id=name,
              note=None, details={"role": role})

    try:
        p.db.write(tx)
    except IntegrityError:
        raise OperatorExists(f"an operator named {name!r} exists already") from None
    return {"name": name, "role": role, "password": password}


def list_operators(p: Platform) -> list[dict]:
    with p.db.read() as conn:
        rows = conn.execute(select(_o.name, _o.role, _o.status, _o.locked_until, _o.last_signin_at, _o.created_at)
                            .order_by(_o.name)).mappings().all()
    return [dict(r) for r in rows]


def sign_in(p: Platform, name: str, password: str) -> tuple[Operator, str]:
    """(operator, session token) for the right password; SignInRefused or OperatorLocked otherwise."""
    now = p.clock.now()
    name = (name or "").strip()[:64]
    with p.db.read() as conn:
        row = conn.execute(select(operators).where(_o.name == name)).mappings().first() if name else None
    if row is None or row["status"] != "active":
        password_matches(password or "-", _dummy_hash())  # the same work as a known name
        raise SignInRefused("wrong name or password")
    if row["locked_until"] is not None and row["locked_until"] > now:
        raise OperatorLocked("too many wrong passwords: sign-in is locked for a while; ask an admin or wait")
    if not password_matches(password or "", row["password_hash"]):
        _count_failure(p, name, now)
        raise SignInRefused("wrong name or password")
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(seconds=min(SESSION_IDLE_S, SESSION_ABSOLUTE_S))

    def tx(conn: Connection) -> None:
        conn.execute(update(operators).where(_o.name == name).values(
            failed_signins=0, locked_until=None, last_signin_at=now))
        conn.execute(delete(operator_sessions).where(_s.expires_at < now))  # expired sessions go
        conn.execute(insert(operator_sessions).values(session_hash=_token_hash(token), operator=name,
                                                      created_at=now, last_seen_at=now, expires_at=expires))
        audit(conn, now=now, operator=name, action="operator.sign_in", object_type="operator", object_id=name,
              note=None)

    p.db.write(tx)
    return Operator(name=name, role=row["role"]), token


def _count_failure(p: Platform, name: str, now: datetime) -> None:
    """One conditional UPDATE: concurrent wrong tries cannot lose a count."""
    lock_until = now + timedelta(seconds=SIGNIN_LOCK_S)

    def tx(conn: Connection) -> None:
        failures = conn.execute(update(operators).where(_o.name == name).values(
            failed_signins=_o.failed_signins + 1).returning(_o.failed_signins)).scalar_one()
        locked = failures >= SIGNIN_FAILURES_MAX
        if locked:
            conn.execute(update(operators).where(_o.name == name).values(failed_signins=0, locked_until=lock_until))
        audit(conn, now=now, operator=name, action="operator.sign_in_refused", object_type="operator",
              object_id=name, note="locked" if locked else None, details={"failures": failures})

    p.db.write(tx)


def session_operator(p: Platform, token: str | None) -> Operator | None:
    """The signed-in operator of a session token, or None (unknown, expired, or operator disabled)."""
    if not token or len(token) > 128:
        return None
    now = p.clock.now()
    key = _token_hash(token)
    with p.db.read() as conn:
        row = conn.execute(select(_s.created_at, _s.last_seen_at, _s.expires_at, _o.name, _o.role, _o.status)
                           .join(operators, _o.name == _s.operator).where(_s.session_hash == key)).first()
    if row is None or row.status != "active" or row.expires_at <= now:
        return None
    if (now - row.last_seen_at).total_seconds() >= SESSION_TOUCH_S:
        expires = min(now + timedelta(seconds=SESSION_IDLE_S), row.created_at + timedelta(seconds=SESSION_ABSOLUTE_S))
        p.db.write(lambda conn: conn.execute(update(operator_sessions).where(_s.session_hash == key).values(
            last_seen_at=now, expires_at=expires)))
    return Operator(name=row.name, role=row.role)


def sign_out(p: Platform, token: str | None) -> None:
    if not token:
        return
    now = p.clock.now()
    key = _token_hash(token)

    def tx(conn: Connection) -> None:
        name = conn.execute(select(_s.operator).where(_s.session_hash == key)).scalar_one_or_none()
        if name is None:
            return
        conn.execute(delete(operator_sessions).where(_s.session_hash == key))
        audit(conn, now=now, operator=name, action="operator.sign_out", object_type="operator", object_id=name,
              note=None)

    p.db.write(tx)
