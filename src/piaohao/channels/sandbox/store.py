"""The sandbox channel's own storage: it is a different company's system, so it never shares
tables with the platform. Tables are created with `create_all` (a simulator needs no
migrations) and carry a name prefix (`sandbox_` by default) so the sandbox can even live in the
platform's own database without clashing; tests use a unique prefix per run.

Writes go through `piaohao.db.database.Database.write`, which on SQLite serialises writers under
one lock in WAL mode and on PostgreSQL retries serialization failures. Uniqueness that guards
money (one payment per `out_trade_no`, one refund per `out_refund_no`) is a database constraint.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from piaohao.db.database import Database
from piaohao.db.metadata import UTCDateTime

from . import rsa

__all__ = ["SandboxStore", "SandboxTables", "ChannelKeys"]

log = structlog.get_logger(__name__)

ID_LEN_MAX = 40
KEY_LEN_MAX = 64


def _ts(name: str, nullable: bool = True) -> Column:
    return Column(name, UTCDateTime(), nullable=nullable)


@dataclass(frozen=True)
class SandboxTables:
    metadata: MetaData
    merchants: Table
    keys: Table
    payments: Table
    refunds: Table
    payouts: Table
    notifications: Table
    faults: Table
    bill_marks: Table
    cards: Table
    payment_means: Table
    mandates: Table


def build_tables(prefix: str) -> SandboxTables:
    """The sandbox schema under one name prefix (a fresh MetaData each time)."""
    md = MetaData(naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    })
    p = prefix
    merchants = Table(
        f"{p}merchants", md,
        Column("mch_id", String(ID_LEN_MAX), primary_key=True),
        Column("public_key_pem", Text, nullable=False),
        _ts("created_at", False),
    )
    keys = Table(
        f"{p}keys", md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("private_pem", Text, nullable=False),
        Column("public_pem", Text, nullable=False),
        _ts("created_at", False),
    )
    payments = Table(
        f"{p}payments", md,
        Column("txn_no", String(ID_LEN_MAX), primary_key=True),
        Column("mch_id", String(ID_LEN_MAX), nullable=False),
        Column("out_trade_no", String(KEY_LEN_MAX), nullable=False),
        Column("amount", BigInteger, nullable=False),
        Column("refunded_amount", BigInteger, nullable=False, default=0),
        Column("currency", String(3), nullable=False),
        Column("subject", Text, nullable=False),
        Column("notify_url", Text, nullable=False),
        Column("return_url", Text),
        Column("status", String(16), nullable=False),
        _ts("created_at", False), _ts("expire_at", False), _ts("paid_at"), _ts("finished_at"),
        Column("notify_mode", String(32)),
        Column("notify_delay_s", Float),
        UniqueConstraint("mch_id", "out_trade_no"),
        Index(None, "paid_at"),
    )
    refunds = Table(
        f"{p}refunds", md,
        Column("refund_id", String(ID_LEN_MAX), primary_key=True),
        Column("mch_id", String(ID_LEN_MAX), nullable=False),
        Column("out_refund_no", String(KEY_LEN_MAX), nullable=False),
        Column("out_trade_no", String(KEY_LEN_MAX), nullable=False),
        Column("txn_no", String(ID_LEN_MAX), nullable=False),
        Column("amount", BigInteger, nullable=False),
        Column("currency", String(3), nullable=False),
        Column("reason", Text),
        Column("notify_url", Text),
        Column("status", String(16), nullable=False),
        Column("fail_reason", Text),
        _ts("created_at", False), _ts("settle_at"), _ts("finished_at"),
        UniqueConstraint("mch_id", "out_refund_no"),
        Index(None, "finished_at"),
    )
    payouts = Table(
        f"{p}payouts", md,
        Column("payout_id", String(ID_LEN_MAX), primary_key=True),
        Column("mch_id", String(ID_LEN_MAX), nullable=False),
        Column("out_payout_no", String(KEY_LEN_MAX), nullable=False),
        Column("amount", BigInteger, nullable=False),
        Column("currency", String(3), nullable=False),
        Column("bank", Text, nullable=False),
        Column("account_number", Text, nullable=False),
        Column("account_name", Text, nullable=False),
        Column("notify_url", Text),
        Column("status", String(16), nullable=False),
        Column("fail_reason", Text),
        _ts("created_at", False), _ts("finished_at"),
        UniqueConstraint("mch_id", "out_payout_no"),
    )
    notifications = Table(
        f"{p}notifications", md,
        Column("id", String(ID_LEN_MAX), primary_key=True),
        Column("notify_id", String(ID_LEN_MAX), nullable=False),  # shared by duplicate copies
        Column("mch_id", String(ID_LEN_MAX), nullable=False),
        Column("kind", String(16), nullable=False),
        Column("out_trade_no", String(KEY_LEN_MAX)),  # what per-payment notify faults match
        Column("url", Text, nullable=False),
        Column("body", Text, nullable=False),
        Column("sign_mode", String(16), nullable=False),  # "valid" | "bad"
        Column("status", String(16), nullable=False),  # "pending" | "acked" | "given_up"
        Column("attempts", Integer, nullable=False, default=0),
        _ts("next_at", False), _ts("lease_until"),
        Column("lease_token", String(ID_LEN_MAX)),
        Column("last_error", Text),
        _ts("created_at", False), _ts("acked_at"),
        Index(None, "status", "next_at"),
    )
    faults = Table(
        f"{p}faults", md,
        Column("id", String(ID_LEN_MAX), primary_key=True),
        Column("op", String(16), nullable=False),
        Column("kind", String(32), nullable=False),
        Column("delay_s", Float, nullable=False, default=0.0),
        Column("remaining", Integer),  # None: until cleared
        Column("out_trade_no", String(KEY_LEN_MAX)),  # None: every payment
        Column("params", Text),  # JSON: kind-specific extras (bill row lists)
        _ts("created_at", False),
    )
    # Bill faults (API.md "Reconciliation"): a paid payment's row omitted, 1 unit short or twice
    # (`txn_no`), or a payment no merchant made added to a day's bill (`extra`, `bill_date`).
    bill_marks = Table(
        f"{p}bill_marks", md,
        Column("id", String(ID_LEN_MAX), primary_key=True),
        Column("kind", String(16), nullable=False),  # omit | amount_off | duplicate | extra
        Column("txn_no", String(ID_LEN_MAX)),
        Column("bill_date", String(10)),
        Column("amount", BigInteger),
        _ts("created_at", False),
        Index(None, "txn_no"),
        Index(None, "bill_date"),
    )
    # The sandbox bank's bound cards (quick pay). The bank keeps only what it shows: bank and last4.
    cards = Table(
        f"{p}cards", md,
        Column("card_token", String(ID_LEN_MAX), primary_key=True),
        Column("mch_id", String(ID_LEN_MAX), nullable=False),
        Column("bank", String(16), nullable=False),
        Column("last4", String(4), nullable=False),
        Column("status", String(16), nullable=False),  # PENDING | ACTIVE | UNBOUND
        _ts("created_at", False), _ts("updated_at", False),
    )
    # How a payment is paid when it is not on the sandbox's own page: a bound card or a bank's page.
    payment_means = Table(
        f"{p}payment_means", md,
        Column("txn_no", String(ID_LEN_MAX), primary_key=True),
        Column("bank", String(16)),
        Column("card_token", String(ID_LEN_MAX)),
        Column("mandate_no", String(KEY_LEN_MAX)),
    )
    # Mandates (agreement pay): signed by the buyer on the sandbox's page; never notified.
    mandates = Table(
        f"{p}mandates", md,
        Column("mandate_id", String(ID_LEN_MAX), primary_key=True),
        Column("mch_id", String(ID_LEN_MAX), nullable=False),
        Column("out_mandate_no", String(KEY_LEN_MAX), nullable=False),
        Column("max_amount", BigInteger, nullable=False),
        Column("currency", String(3), nullable=False),
        Column("status", String(16), nullable=False),  # WAIT_SIGN | SIGNED | REJECTED | TERMINATED
        _ts("created_at", False), _ts("updated_at", False),
        UniqueConstraint("mch_id", "out_mandate_no"),
    )
    return SandboxTables(md, merchants, keys, payments, refunds, payouts, notifications, faults, bill_marks, cards,
                         payment_means, mandates)


@dataclass(frozen=True)
class ChannelKeys:
    private_pem: str
    public_pem: str


class SandboxStore:
    """The sandbox's database: a `Database` plus its tables.

    `url_or_db` is a SQLAlchemy URL (SQLite file, `sqlite://` for memory, or PostgreSQL) or an
    existing `Database` to share an engine. `create=True` creates missing tables at once.
    """

    def __init__(self, url_or_db: str | Database, *, table_prefix: str = "sandbox_", create: bool = True):
        self.db = url_or_db if isinstance(url_or_db, Database) else Database(url_or_db)
        self.t = build_tables(table_prefix)
        self._keys: ChannelKeys | None = None
        self._keys_lock = threading.Lock()
        self._merchant_keys: dict[str, str] = {}
        if create:
            self.create_all()

    def create_all(self) -> None:
        self.t.metadata.create_all(self.db.engine)

    def drop_all(self) -> None:
        self.t.metadata.drop_all(self.db.engine)

    def dispose(self) -> None:
        self.db.dispose()

    def channel_keys(self) -> ChannelKeys:
        """The channel's own key pair, made on first use (one row; a race is settled by the key)."""
        with self._keys_lock:
            if self._keys is None:
                self._keys = self._load_or_create_keys()
            return self._keys

    def _load_or_create_keys(self) -> ChannelKeys:
        with self.db.read() as conn:
            row = conn.execute(select(self.t.keys).where(self.t.keys.c.id == 1)).first()
        if row is None:
            private_pem, public_pem = rsa.generate_key_pair()
            try:
                self.db.write(lambda conn: conn.execute(insert(self.t.keys).values(
                    id=1, private_pem=private_pem, public_pem=public_pem, created_at=datetime.now(UTC))))
                log.info("sandbox.keys.created")
            except IntegrityError:
                pass  # another process made them first; theirs win
            with self.db.read() as conn:
                row = conn.execute(select(self.t.keys).where(self.t.keys.c.id == 1)).one()
        return ChannelKeys(private_pem=row.private_pem, public_pem=row.public_pem)

    def merchant_public_key(self, mch_id: str) -> str | None:
        """A merchant's registered public key (cached: merchants never change their key here)."""
        cached = self._merchant_keys.get(mch_id)
        if cached is not None:
            return cached
        with self.db.read() as conn:
            pem = conn.execute(
                select(self.t.merchants.c.public_key_pem).where(self.t.merchants.c.mch_id == mch_id)
            ).scalar_one_or_none()
        if pem is not None:
            self._merchant_keys[mch_id] = pem
        return pem

    def write(self, fn):
        """One write unit of work (see `Database.write`): no network calls inside."""
        return self.db.write(fn)

    def read(self):
        return self.db.read()

