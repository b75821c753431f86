"""The operator console's tables (migration 0012a): who may sign in, and their sessions.

A password is kept only as its scrypt hash (`services.passwords`); a session only as the SHA-256
of its token, so a copy of the table lets nobody sign in or ride a session.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, Integer, String, Table

from piaohao.db.metadata import metadata, timestamp_column

operators = Table(
    "operators", metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),  # viewer | operator | admin
    Column("password_hash", String(256), nullable=False),  # scrypt$...; never shown, returned or logged
    Column("status", String(16), nullable=False, server_default="active"),  # active | disabled
    # Wrong passwords in a row; the fifth locks sign-in until `locked_until` (services/operators.py).
    Column("failed_signins", Integer, nullable=False, server_default="0"),
    timestamp_column("locked_until"),
    timestamp_column("last_signin_at"),
    timestamp_column("created_at", False),
    CheckConstraint("role IN ('viewer', 'operator', 'admin')", name="ck_operators_role"),
)

operator_sessions = Table(
    "operator_sessions", metadata,
    Column("session_hash", String(64), primary_key=True),  # sha256 hex of the cookie's token
    Column("operator", String(64), ForeignKey("operators.name"), nullable=False),
    timestamp_column("created_at", False),
    timestamp_column("last_seen_at", False),
    timestamp_column("expires_at", False),
    Index("ix_operator_sessions_expires_at", "expires_at"),
)
