"""Two-way matching of a channel's bill against our final records: pure, no database.

Both sides are streams of small tuples keyed by (kind, key): kind "payment" keyed by our
payment_no, kind "refund" by our refund_no (the numbers we gave the channel). Two engines give
the same `MatchResult`:

- `match_python`: a dict of our side, the bill streamed through it. Enough up to ~1M rows a day.
- `match_duckdb`: both sides written to CSV files (streamed, never a list), then one DuckDB query
  (a full outer join, and a grouped scan of the bill for duplicates) that returns only the
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
    """The DuckDB query over two sources (file readers or table names)."""
    res = MatchResult("duckdb")
    con.execute(f"CREATE OR REPLACE TEMP VIEW b AS SELECT * FROM {bill_src}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW o AS SELECT * FROM {ours_src}")
    rows = con.execute("""
        WITH bk AS (
            SELECT kind, key, count(*) AS n, arg_min(amount, line_no) AS amount,
                   arg_min(currency, line_no) AS currency, arg_min(channel_txn_no, line_no) AS txn,
                   arg_min(finished_at, line_no) AS fin, min(line_no) AS line_no
            FROM b GROUP BY kind, key)
        SELECT bk.kind, bk.key, bk.n, bk.amount, bk.currency, bk.txn, bk.fin, bk.line_no,
               o.kind, o.key, o.amount, o.currency, o.subject_id, o.finished_at
        FROM bk FULL OUTER JOIN o ON bk.kind = o.kind AND bk.key = o.key
        WHERE bk.key IS NULL OR o.key IS NULL OR bk.n > 1 OR bk.amount <> o.amount OR bk.currency <> o.currency
    """).fetchall()
    matched_keys = con.execute("""
        SELECT count(*) FROM (SELECT DISTINCT kind, key FROM b) bk JOIN o USING (kind, key)
    """).fetchone()[0]
    mism = 0
    for bkind, bkey, n, bamt, bcur, txn, fin, line, okind, okey, oamt, ocur, subj, ofin in rows:
        bl = None if bkey is None else BillLine(bkind, bkey, int(bamt), bcur, txn, fin, int(line))
        orec = None if okey is None else OurRecord(okind, okey, int(oamt), ocur, subj, ofin)
        if bl is not None and n > 1:
            res.duplicates.append((bl, int(n)))
        if orec is None:
            res.bill_only.append(bl)
        elif bl is None:
            res.ours_only.append(orec)
        elif orec.amount != bl.amount or orec.currency != bl.currency:
            res.mismatched.append((bl, orec))
            mism += 1
    res.matched = int(matched_keys) - mism
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
