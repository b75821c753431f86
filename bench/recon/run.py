"""Reconciliation at scale: N bill rows vs N platform rows, full exception rows out.

Three figures on the same Parquet files (0.1 % each of platform-only, channel-only, amount
mismatch and duplicate rows; the bill side shuffled):
  engine   piaohao.recon.matching.duckdb_exceptions (what `recon run` uses for large days)
  raw      a plain DuckDB full outer join of the same files, exception rows out (the baseline)
  python   piaohao.recon.matching.match_python over the same rows (the small-day engine)
Each runs in its own process, so peak memory (max RSS) is its own.

    .venv/bin/python bench/recon/run.py --rows 10000000 [--python-rows 2000000] [--dir /tmp/recon-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "src"))


def generate(folder: str, rows: int) -> tuple[str, str]:
    import duckdb
    bill, ours = os.path.join(folder, f"bill_{rows}.parquet"), os.path.join(folder, f"ours_{rows}.parquet")
    if os.path.exists(bill) and os.path.exists(ours):
        return bill, ours
    con = duckdb.connect()
    con.execute("SET memory_limit='6GB'")
    con.execute(f"""COPY (SELECT 'payment' AS kind, 'p' || lpad(i::VARCHAR, 10, '0') AS key,
                         (100 + i % 100000)::BIGINT AS amount, 'CNY' AS currency, 't' || i AS subject_id,
                         '2026-11-23T01:00:00+00:00' AS finished_at
                  FROM range({rows}) t(i) WHERE i % 1000 <> 1) TO '{ours}' (FORMAT parquet)""")
    con.execute(f"""COPY (SELECT kind, key, amount, currency, channel_txn_no, finished_at,
                                 row_number() OVER (ORDER BY hash(key, dup)) AS line_no FROM (
                  SELECT 'payment' AS kind, 'p' || lpad(i::VARCHAR, 10, '0') AS key,
                         (100 + i % 100000 - CASE WHEN i % 1000 = 3 THEN 1 ELSE 0 END)::BIGINT AS amount,
                         'CNY' AS currency, 'T' || i AS channel_txn_no, '2026-11-23T01:00:00+00:00' AS finished_at,
                         d.dup
                  FROM range({rows}) t(i), (SELECT 0 AS dup UNION ALL SELECT 1) d
                  WHERE i % 1000 <> 2 AND (d.dup = 0 OR i % 1000 = 4)
                  UNION ALL SELECT 'payment', 'x' || i, 5, 'CNY', 'X' || i, '2026-11-23T02:00:00+00:00', 0
                  FROM range({rows // 1000}) t(i))) TO '{bill}' (FORMAT parquet)""")
    con.close()
    return bill, ours


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(kind: str, bill: str, ours: str) -> dict:
    import duckdb

    from piaohao.recon.matching import BillLine, OurRecord, duckdb_exceptions, match_python
    con = duckdb.connect()
    con.execute("SET memory_limit='6GB'")
    t0, c0 = time.perf_counter(), _cpu_s()
    if kind == "engine":
        res = duckdb_exceptions(con, f"read_parquet('{bill}')", f"read_parquet('{ours}')")
        out = {"exceptions": len(res.mismatched) + len(res.duplicates) + len(res.bill_only) + len(res.ours_only),
               "matched": res.matched}
    elif kind == "raw":
        rows = con.execute(f"""SELECT b.*, o.* FROM read_parquet('{bill}') b FULL OUTER JOIN read_parquet('{ours}') o
                               ON b.kind = o.kind AND b.key = o.key
                               WHERE b.key IS NULL OR o.key IS NULL OR b.amount <> o.amount""").fetchall()
        out = {"exceptions": len(rows)}
    else:
        ol = con.execute(f"SELECT * FROM read_parquet('{ours}')").fetchall()
        bl = con.cursor().execute(f"SELECT * FROM read_parquet('{bill}')")
        ours_recs = [OurRecord(*r) for r in ol]
        del ol

        def bill_rows():
            while chunk := bl.fetchmany(100_000):
                for r in chunk:
                    yield BillLine(*r)
        t0, c0 = time.perf_counter(), _cpu_s()
        res = match_python(bill_rows(), ours_recs)
        out = {"exceptions": len(res.mismatched) + len(res.duplicates) + len(res.bill_only) + len(res.ours_only),
               "matched": res.matched}
    out.update(kind=kind, seconds=round(time.perf_counter() - t0, 3), cpu_seconds=round(_cpu_s() - c0, 3),
               peak_rss_mb=round(_maxrss_mb(), 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--python-rows", type=int, default=None, help="size for the plain-Python run (default --rows)")
    ap.add_argument("--dir", default="/tmp/piaohao-recon-bench")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(*a.one)))
        return
    os.makedirs(a.dir, exist_ok=True)
    bill, ours = generate(a.dir, a.rows)
    results = {}
    for kind in ("raw", "engine"):
        out = subprocess.run([sys.executable, __file__, "--one", kind, bill, ours], capture_output=True, text=True,
                             check=True).stdout
        results[kind] = json.loads(out.strip().splitlines()[-1])
    py_rows = a.python_rows or a.rows
    pbill, pours = (bill, ours) if py_rows == a.rows else generate(a.dir, py_rows)
    out = subprocess.run([sys.executable, __file__, "--one", "python", pbill, pours], capture_output=True, text=True,
                         check=True).stdout
    results["python"] = json.loads(out.strip().splitlines()[-1])
    e, r, p = results["engine"], results["raw"], results["python"]
    py_per_row = p["seconds"] / py_rows
    print(json.dumps({"rows": a.rows, "python_rows": py_rows, **results,
                      "engine_vs_raw": round(e["seconds"] / r["seconds"], 3),
                      "engine_vs_raw_cpu": round(e["cpu_seconds"] / r["cpu_seconds"], 3),
                      "python_vs_engine_extrapolated": round(py_per_row * a.rows / e["seconds"], 2),
                      "python_vs_engine_cpu_extrapolated": round(p["cpu_seconds"] / py_rows * a.rows
                                                                 / e["cpu_seconds"], 2)}, indent=2))


if __name__ == "__main__":
    main()
