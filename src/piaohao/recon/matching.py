"""Two-way matching of a channel's bill against our final records: pure, no database.

Both sides are streams of small tuples keyed by (kind, key): kind "payment" keyed by our
payment_no, kind "refund" by our refund_no (the numbers we gave the channel). Two engines give
the same `MatchResult`:

- `match_python`: a dict of our side, the bill streamed through it. Enough up to ~1M rows a day.
- `match_duckdb`: both sides written to CSV files (streamed, never a list), then one DuckDB query
  (a grouped scan of the bill for duplicated keys, and a full outer join) that returns only the
  exception rows. For large days (research/recon.md F2: ~14x the dict at 5M rows on 2 cores).

The result holds exceptions only (with everything needed to classify them) and the count of
bill rows matched; classifying needs the database (grace, keyed look-ups) and lives in `run`.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["BillLine", "MatchResult", "OurRecord", "match", "match_duckdb", "match_python", "write_csv_sides",
           "duckdb_exceptions", "DUCKDB_FROM_ROWS"]

DUCKDB_FROM_ROWS = 200_000  # `match` picks DuckDB for bills at least this long
DUCKDB_MEMORY_LIMIT = "4GB"


@dataclass(frozen=True)
class BillLine:
    kind: str  # payment | refund
    key: str  # our payment_no / refund_no
    amount: int
    currency: str
    channel_txn_no: str
    finished_at: datetime | str
    line_no: int = 0


@dataclass(frozen=True)
class OurRecord:
    kind: str
    key: str
    amount: int
    currency: str
    subject_id: str  # trade_no for payments, refund_no for refunds
    finished_at: datetime | str


@dataclass
class MatchResult:
    engine: str
    matched: int = 0
    mismatched: list[tuple[BillLine, OurRecord]] = field(default_factory=list)  # amount or currency differ
    duplicates: list[tuple[BillLine, int]] = field(default_factory=list)  # (first line, times on the bill)
    bill_only: list[BillLine] = field(default_factory=list)
    ours_only: list[OurRecord] = field(default_factory=list)

    def signature(self) -> tuple:
        """Engine-independent form, to prove both engines agree."""
        return (self.matched, sorted((b.kind, b.key, b.amount, o.amount) for b, o in self.mismatched),
                sorted((b.kind, b.key, n) for b, n in self.duplicates),
                sorted((b.kind, b.key, b.amount) for b in self.bill_only),
                sorted((o.kind, o.key, o.amount) for o in self.ours_only))


def match_python(bill: Iterable[BillLine], ours: Iterable[OurRecord]) -> MatchResult:
    res = MatchResult("python")
    mine = {(o.kind, o.key): o for o in ours}
    seen: dict[tuple[str, str], list] = {}
    for b in bill:
        k = (b.kind, b.key)
        s = seen.get(k)
        if s is not None:
            s[1] += 1
            continue
        seen[k] = [b, 1]
        o = mine.get(k)
        if o is None:
            res.bill_only.append(b)
        elif o.amount != b.amount or o.currency != b.currency:
            res.mismatched.append((b, o))
        else:
            res.matched += 1
    res.duplicates = [(b, n) for b, n in seen.values() if n > 1]
    res.ours_only = [o for k, o in mine.items() if k not in seen]
    return res


BILL_COLUMNS = ("kind", "key", "amount", "currency", "channel_txn_no", "finished_at", "line_no")
OURS_COLUMNS = ("kind", "key", "amount", "currency", "subject_id", "finished_at")


def _iso(v) -> str:
    return v.isoformat() if isinstance(v, datetime) else str(v)


def write_csv_sides(bill: Iterable[BillLine], ours: Iterable[OurRecord], folder: str) -> tuple[str, str]:
    bill_path, ours_path = os.path.join(folder, "bill.csv"), os.path.join(folder, "ours.csv")
    with open(bill_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(BILL_COLUMNS)
        w.writerows((b.kind, b.key, b.amount, b.currency, b.channel_txn_no, _iso(b.finished_at), b.line_no)
                    for b in bill)
    with open(ours_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(OURS_COLUMNS)
        w.writerows((o.kind, o.key, o.amount, o.currency, o.subject_id, _iso(o.finished_at)) for o in ours)
    return bill_path, ours_path


_TYPES_BILL = ("{'kind': 'VARCHAR', 'key': 'VARCHAR', 'amount': 'BIGINT', 'currency': 'VARCHAR', "
               "'channel_txn_no': 'VARCHAR', 'finished_at': 'VARCHAR', 'line_no': 'BIGINT'}")
_TYPES_OURS = ("{'kind': 'VARCHAR', 'key': 'VARCHAR', 'amount': 'BIGINT', 'currency': 'VARCHAR', "
               "'subject_id': 'VARCHAR', 'finished_at': 'VARCHAR'}")


def _source(path: str, types: str) -> str:
    if path.endswith(".parquet"):
        return f"read_parquet('{path}')"
    return f"read_csv('{path}', header=true, columns={types})"


def duckdb_exceptions(con, bill_src: str, ours_src: str) -> MatchResult:
    """The DuckDB query over two sources (file readers or table names): the bill's duplicated keys
    (a grouped scan that keeps only keys seen twice), then one full outer join of the two sides
    that returns only exception rows: one-sided keys, amount or currency differences, and the
    lines of duplicated keys. `matched` is our record count less our exceptions (our keys are
    unique), so no further pass over the data is needed."""
    res = MatchResult("duckdb")
    rows = con.execute(f"""
        WITH d AS (SELECT kind, key, count(*) AS n FROM {bill_src} GROUP BY kind, key HAVING count(*) > 1)
        SELECT b.kind, b.key, b.amount, b.currency, b.channel_txn_no, b.finished_at, b.line_no,
               o.kind, o.key, o.amount, o.currency, o.subject_id, o.finished_at, d.n
        FROM {bill_src} b FULL OUTER JOIN {ours_src} o ON b.kind = o.kind AND b.key = o.key
        LEFT JOIN d ON d.kind = b.kind AND d.key = b.key
        WHERE b.key IS NULL OR o.key IS NULL OR b.amount <> o.amount OR b.currency <> o.currency
              OR d.n IS NOT NULL
    """).fetchall()
    first: dict[tuple[str, str], tuple] = {}  # (kind, key) -> the row of the key's first bill line
    for r in rows:
        k = (r[0], r[1]) if r[1] is not None else (r[7], r[8])
        if k not in first or (r[6] is not None and first[k][6] is not None and r[6] < first[k][6]):
            first[k] = r
    ours_exceptions = 0
    for (kind, key), r in first.items():
        bl = None if r[1] is None else BillLine(kind, key, int(r[2]), r[3], r[4], r[5], int(r[6]))
        orec = None if r[8] is None else OurRecord(kind, key, int(r[9]), r[10], r[11], r[12])
        if bl is not None and r[13] is not None:
            res.duplicates.append((bl, int(r[13])))
        if orec is None:
            res.bill_only.append(bl)
        elif bl is None:
            res.ours_only.append(orec)
            ours_exceptions += 1
        elif orec.amount != bl.amount or orec.currency != bl.currency:
            res.mismatched.append((bl, orec))
            ours_exceptions += 1
    res.matched = int(con.execute(f"SELECT count(*) FROM {ours_src}").fetchone()[0]) - ours_exceptions
    return res


def match_duckdb(bill: Iterable[BillLine], ours: Iterable[OurRecord], *, workdir: str | None = None) -> MatchResult:
    import duckdb  # a large day's engine; imported only when used

    with tempfile.TemporaryDirectory(dir=workdir, prefix="piaohao-recon-") as folder:
        bill_path, ours_path = write_csv_sides(bill, ours, folder)
        con = duckdb.connect()
        try:
            con.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
            con.execute(f"SET temp_directory = '{folder}'")
            return duckdb_exceptions(con, _source(bill_path, _TYPES_BILL), _source(ours_path, _TYPES_OURS))
        finally:
            con.close()


def match(bill: Iterable[BillLine], ours: Iterable[OurRecord], *, engine: str = "auto",
          expected_rows: int = 0) -> MatchResult:
    if engine == "duckdb" or (engine == "auto" and expected_rows >= DUCKDB_FROM_ROWS):
        return match_duckdb(bill, ours)
    return match_python(bill, ours)
