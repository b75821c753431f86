"""Bills in: each channel's daily bill, fetched (or read from a file), kept as it came (a canonical
CSV of the rows, gzip, with its SHA-256) and as normalised rows (integer minor units, fee, the
channel's numbers and ours). Streaming end to end: rows go to a temporary file while they are
hashed, then into the database in batches; no bill is ever a list in memory.

The same bill fetched twice (same channel, day and hash) is stored once. A bill that cannot be
had (`spi.BillUnavailable`) is reported, not guessed at.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, insert, select

from piaohao.channels.spi import BillRow
from piaohao.db.schema_recon import recon_bill_rows, recon_bills
from piaohao.kernel.clock import to_utc
from piaohao.kernel.errors import InvalidRequest
from piaohao.kernel.ids import new_id
from piaohao.platform import Platform

__all__ = ["CANONICAL_COLUMNS", "StoredBill", "bill_rows", "read_bill_file", "store_bill"]

CANONICAL_COLUMNS = ("record_type", "payment_no", "refund_no", "channel_txn_no", "channel_refund_no", "amount", "fee",
                     "currency", "finished_at")
SANDBOX_COLUMNS = ("type", "txn_no", "out_trade_no", "out_refund_no", "amount", "currency", "finished_at")
INSERT_BATCH_ROWS = 2000
RAW_KEEP_BYTES_MAX = 64 * 1024 * 1024  # larger raw bills keep their hash and rows, not the gzip


@dataclass(frozen=True)
class StoredBill:
    bill_id: str
    channel: str
    business_date: str
    sha256: str
    row_count: int
    new: bool


def _canonical(r: BillRow) -> list:
    return [r.record_type, r.payment_no, r.refund_no or "", r.channel_txn_no, r.channel_refund_no or "", int(r.amount),
            int(r.fee or 0), r.currency, to_utc(r.finished_at).isoformat()]


def store_bill(p: Platform, channel: str, business_date: date, rows: Iterable[BillRow], *,
               source: str = "download") -> StoredBill:
    """Hash and keep one bill (see module doc)."""
    day = business_date.isoformat()
    digest = hashlib.sha256()
    count = 0
    with tempfile.TemporaryFile("w+", newline="", encoding="utf-8") as spool:
        w = csv.writer(spool, lineterminator="\n")
        w.writerow(CANONICAL_COLUMNS)
        for r in rows:
            if r.record_type not in ("payment", "refund") or type(r.amount) is not int or r.amount < 0:
                raise InvalidRequest(f"unreadable bill row: {r!r}")
            w.writerow(_canonical(r))
            count += 1
        spool.flush()
        spool.seek(0)
        size = 0
        for chunk in iter(lambda: spool.read(1 << 20), ""):
            data = chunk.encode()
            digest.update(data)
            size += len(data)
        sha = digest.hexdigest()
        with p.db.read() as conn:
            known = conn.execute(select(recon_bills.c.bill_id, recon_bills.c.row_count).where(
                recon_bills.c.channel == channel, recon_bills.c.business_date == day,
                recon_bills.c.sha256 == sha)).first()
        if known is not None:
            return StoredBill(known.bill_id, channel, day, sha, known.row_count, False)
        raw = None
        if size <= RAW_KEEP_BYTES_MAX:
            spool.seek(0)
            raw = gzip.compress(spool.read().encode())
        bill_id = new_id("bill")
        now = p.clock.now()

        def work(conn: Connection) -> None:
            conn.execute(insert(recon_bills).values(bill_id=bill_id, channel=channel, business_date=day, sha256=sha,
                                                    row_count=count, raw_gzip=raw, source=source, fetched_at=now))
            spool.seek(0)
            reader = csv.reader(spool)
            next(reader)
            batch: list[dict] = []
            for line_no, rec in enumerate(reader, start=1):
                batch.append({"bill_id": bill_id, "line_no": line_no, "record_type": rec[0], "payment_no": rec[1],
                              "refund_no": rec[2] or None, "channel_txn_no": rec[3],
                              "channel_refund_no": rec[4] or None, "amount": int(rec[5]), "fee": int(rec[6]),
                              "currency": rec[7], "finished_at": datetime.fromisoformat(rec[8])})
                if len(batch) >= INSERT_BATCH_ROWS:
                    conn.execute(insert(recon_bill_rows), batch)
                    batch = []
            if batch:
                conn.execute(insert(recon_bill_rows), batch)

        p.db.write(work)
        return StoredBill(bill_id, channel, day, sha, count, True)


def bill_rows(p: Platform, bill_id: str, batch_rows: int = 10_000) -> Iterator:
    """A stored bill's rows in line order, read by keyed ranges of line numbers."""
    last = 0
    c = recon_bill_rows.c
    while True:
        with p.db.read() as conn:
            rows = conn.execute(select(recon_bill_rows).where(c.bill_id == bill_id, c.line_no > last)
                                .order_by(c.line_no).limit(batch_rows)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].line_no


def read_bill_file(path: str) -> Iterator[BillRow]:
    """A bill from a file: the canonical CSV (`CANONICAL_COLUMNS`) or the sandbox's own bill CSV."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = tuple(reader.fieldnames or ())
        for line in reader:
            try:
                if set(CANONICAL_COLUMNS) <= set(header):
                    yield BillRow(record_type=line["record_type"], payment_no=line["payment_no"],
                                  refund_no=line["refund_no"] or None, channel_txn_no=line["channel_txn_no"],
                                  amount=int(line["amount"]), currency=line["currency"],
                                  finished_at=datetime.fromisoformat(line["finished_at"]),
                                  fee=int(line["fee"] or 0), channel_refund_no=line["channel_refund_no"] or None)
                elif set(SANDBOX_COLUMNS) <= set(header):
                    yield BillRow(record_type={"TRADE": "payment", "REFUND": "refund"}[line["type"]],
                                  payment_no=line["out_trade_no"], refund_no=line["out_refund_no"] or None,
                                  channel_txn_no=line["txn_no"], amount=int(line["amount"]), currency=line["currency"],
                                  finished_at=datetime.fromisoformat(line["finished_at"]))
                else:
                    raise InvalidRequest(f"{path}: unknown bill columns {header}")
            except (KeyError, ValueError) as e:
                raise InvalidRequest(f"{path}: unreadable bill row {reader.line_num}: {e}") from None


def raw_text(p: Platform, bill_id: str) -> str | None:
    with p.db.read() as conn:
        raw = conn.execute(select(recon_bills.c.raw_gzip).where(recon_bills.c.bill_id == bill_id)).scalar_one_or_none()
    return None if raw is None else io.TextIOWrapper(io.BytesIO(gzip.decompress(raw)), encoding="utf-8").read()
