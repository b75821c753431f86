"""Reconciliation tables (migration 0010b): bills as fetched (raw, hashed) and as normalised rows,
runs, findings (the work queue) and custom rules.

A finding is unique by its `dedupe_key` (class, channel, subject, facet): a rerun of the same day,
or the near-real-time worker seeing the same break again, cannot raise it twice, and a resolved
finding is never raised again. Money columns are BigInteger minor units.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, String, Table, Text, UniqueConstraint

from piaohao.db.metadata import metadata, timestamp_column

recon_bills = Table(
    "recon_bills", metadata,
    Column("bill_id", String(40), primary_key=True),
    Column("channel", String(32), nullable=False),
    Column("business_date", String(10), nullable=False),
    Column("sha256", String(64), nullable=False),  # of the raw canonical CSV below
    Column("row_count", Integer, nullable=False),
    Column("raw_gzip", LargeBinary, nullable=True),  # canonical CSV of the rows as fetched, gzip
    Column("source", String(16), nullable=False),  # download | file
    timestamp_column("fetched_at", False),
    UniqueConstraint("channel", "business_date", "sha256", name="uq_recon_bills_channel_date_sha256"),
)

recon_bill_rows = Table(
    "recon_bill_rows", metadata,
    Column("bill_id", String(40), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("record_type", String(16), nullable=False),  # payment | refund
    Column("payment_no", String(64), nullable=False),
    Column("refund_no", String(64), nullable=True),
    Column("channel_txn_no", String(64), nullable=False),
    Column("channel_refund_no", String(64), nullable=True),
    Column("amount", BigInteger, nullable=False),
    Column("fee", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    timestamp_column("finished_at", False),
)

recon_runs = Table(
    "recon_runs", metadata,
    Column("run_id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),  # bill | realtime
    Column("business_date", String(10), nullable=True),
    Column("channels", Text, nullable=False),  # JSON list
    Column("engine", String(16), nullable=False),  # python | duckdb | -
    Column("matched", Integer, nullable=False),
    Column("findings", Integer, nullable=False),
    Column("summary", Text, nullable=False),  # JSON {class: count}
    timestamp_column("started_at", False),
    timestamp_column("finished_at", False),
)

recon_findings = Table(
    "recon_findings", metadata,
    Column("finding_id", String(40), primary_key=True),
    Column("dedupe_key", String(255), nullable=False),
    Column("class", String(24), nullable=False),
    Column("channel", String(32), nullable=True),
    Column("subject_type", String(16), nullable=False),  # trade | refund | channel_txn | batch | order | rule
    Column("subject_id", String(64), nullable=False),
    Column("business_date", String(10), nullable=True),
    Column("expected", Text, nullable=True),  # JSON
    Column("actual", Text, nullable=True),  # JSON
    Column("details", Text, nullable=False),  # JSON
    Column("status", String(16), nullable=False),  # open | resolved
    Column("run_id", String(40), nullable=True),
    timestamp_column("detected_at", False),
    Column("resolution", String(16), nullable=True),  # accept | adjust
    Column("resolved_by", String(64), nullable=True),
    Column("resolution_note", String(1024), nullable=True),
    Column("adjustment", Text, nullable=True),  # JSON: the correcting entry's key and legs
    timestamp_column("resolved_at"),
    UniqueConstraint("dedupe_key", name="uq_recon_findings_dedupe_key"),
    Index("ix_recon_findings_status_class", "status", "class"),
    Index("ix_recon_findings_business_date", "business_date"),
)

recon_rules = Table(
    "recon_rules", metadata,
    Column("name", String(64), primary_key=True),
    Column("sql", Text, nullable=False),
    Column("status", String(16), nullable=False),  # active | disabled
    timestamp_column("created_at", False),
    timestamp_column("updated_at", False),
)
