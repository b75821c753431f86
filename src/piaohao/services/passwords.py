"""Payment passwords: a slow salted hash, and a lock after five wrong tries in a row.

Stored as `scrypt$n$r$p$salt_hex$hash_hex` (stdlib `hashlib.scrypt`, a random 16-byte salt per
member, parameters kept with the hash so they can be raised later without breaking old hashes).
The password itself is never stored, returned or logged.

`verify_payment_password` is what every call that spends a member's money runs first (cashier
payments with balance, coins or credit; transfers; withdrawals). Its failure counter is written
in its own short transaction, so it is committed even though the request then fails, and every
write is a conditional UPDATE on the member row, so concurrent tries cannot lose a count or
slip past a lock. The hash is computed outside any transaction (it is slow on purpose).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import datetime, timedelta

import structlog
from sqlalchemy import case, literal, or_, select, update

from piaohao.db.database import Database
from piaohao.db.schema_members import members
from piaohao.kernel.errors import InvalidPaymentPassword, InvalidRequest, MemberNotFound, PaymentPasswordLocked
from piaohao.kernel.settings import Settings

log = structlog.get_logger(__name__)

PASSWORD_MIN_CHARS, PASSWORD_MAX_CHARS = 6, 32
WRONG_TRIES_MAX = 5  # the fifth wrong try in a row locks the password
# Interactive-login scrypt cost (N=2^14, r=8, p=1: 16 MiB, ~80 ms). A payment password is a short
# PIN: what protects it is the lock, the hash only makes a stolen table expensive to use.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_MAXMEM = 256 * 1024 * 1024
SALT_BYTES, KEY_BYTES = 16, 32
DEFAULT_LOCK_S = 900.0


def validate_new_password(password: object) -> str:
    if not isinstance(password, str) or not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
        raise InvalidRequest(f"payment_password must be {PASSWORD_MIN_CHARS}-{PASSWORD_MAX_CHARS} characters")
    if not password.isprintable():
        raise InvalidRequest("payment_password must not contain control characters")
    return password


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM,
                          dklen=KEY_BYTES)


def hash_password(password: str) -> str:
    """The stored form of a new password (validated: 6-32 characters)."""
    validate_new_password(password)
    salt = os.urandom(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    """Constant-time comparison of `password` with a stored hash (any length: a wrong one is just wrong)."""
    try:
        scheme, n, r, p, salt_hex, hash_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = bytes.fromhex(hash_hex)
        # A control character (NUL included) is never part of a password: `X\0` never equals `X`.
        if (not isinstance(password, str) or not password or len(password) > 4 * PASSWORD_MAX_CHARS
                or not password.isprintable()):
            _scrypt("-", bytes.fromhex(salt_hex), int(n), int(r), int(p))  # same work either way
            return False
        actual = _scrypt(password, bytes.fromhex(salt_hex), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def _lock_seconds(target, lock_s: float | None) -> tuple[Database, float]:
    """(database, lock duration) from a Platform (its settings) or a Database (the environment)."""
    if isinstance(target, Database):
        if lock_s is None:
            lock_s = Settings.from_env().password_lock_s
        return target, float(lock_s)
    return target.db, float(target.settings.password_lock_s if lock_s is None else lock_s)


def verify_payment_password(db, member_id: str, password: str | None, now: datetime, *,
                            lock_s: float | None = None) -> None:
    """Check a member's payment password before spending; returns None when it is right.

    `db` is the Platform (preferred: the lock lasts `settings.password_lock_s`) or its Database
    (then the lock lasts `lock_s`, or `PIAOHAO_PASSWORD_LOCK_S` from the environment).
    Raises MemberNotFound (unknown member), PaymentPasswordLocked (423: locked now, whether the
    password is right or wrong), InvalidPaymentPassword (403: wrong; the fifth wrong try in a
    row, still 403, locks it). A right password resets the count. The caller must already know
    the member belongs to its merchant.
    """
    database, lock_seconds = _lock_seconds(db, lock_s)
    m = members.c
    with database.read() as conn:
        row = conn.execute(select(m.password_hash, m.password_failures, m.password_locked_until)
                           .where(m.member_id == member_id)).first()
    if row is None:
        raise MemberNotFound("no such member")
    if row.password_locked_until is not None and row.password_locked_until > now:
        raise PaymentPasswordLocked("the payment password is locked after too many wrong tries; try later")
    right = isinstance(password, str) and password_matches(password, row.password_hash)
    not_locked = or_(m.password_locked_until.is_(None), m.password_locked_until <= now)
    if right:
        if row.password_failures == 0 and row.password_locked_until is None:
            return  # nothing to reset (a lock taken meanwhile is ordered after this try)
        reset = database.write(lambda conn: conn.execute(update(members).where(m.member_id == member_id, not_locked)
                                                         .values(password_failures=0, password_locked_until=None,
                                                                 updated_at=now)).rowcount)
        if reset != 1:
            raise PaymentPasswordLocked("the payment password is locked after too many wrong tries; try later")
        return
    # Wrong. One conditional UPDATE: a lock that has run out starts the count again from one.
    failures = case((m.password_locked_until.is_not(None), 1), else_=m.password_failures + 1)
    until = literal(now + timedelta(seconds=lock_seconds), m.password_locked_until.type)

    def count_failure(conn):
        return conn.execute(update(members).where(m.member_id == member_id, not_locked).values(
            password_failures=failures,
            password_locked_until=case((failures >= WRONG_TRIES_MAX, until), else_=None),
            updated_at=now).returning(m.password_failures)).scalar_one_or_none()

    count = database.write(count_failure)
    if count is None:
        raise PaymentPasswordLocked("the payment password is locked after too many wrong tries; try later")
    log.info("member.password_wrong", member_id=member_id, failures=count, locked=count >= WRONG_TRIES_MAX)
    if count >= WRONG_TRIES_MAX:
        raise InvalidPaymentPassword(f"wrong payment password; it is now locked for {int(lock_seconds)} s")
    raise InvalidPaymentPassword(f"wrong payment password ({WRONG_TRIES_MAX - count} tries left before it locks)")
