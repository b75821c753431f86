"""Settlement benchmark (PostgreSQL): clear and settle N paid orders across 20,000 split receivers.

Creates a fresh database (and drops it afterwards), generates N paid trades of one order each
(every order split to one of 20,000 receivers, every 10th with a subsidy) with set-based SQL,
funds the sellers' pending settlement through the ledger, then measures, in the same run:

* baseline: the same rows aggregated by one SQL GROUP BY (per seller and per receiver): the floor
  any settlement must pay to read the data;
* write floor: the rows any settlement that keeps per-order details must write (batches, details,
  receiver rows, the orders' new state) by plain INSERT ... SELECT / UPDATE, no ledger, rolled back;
* piaohao: `piaohao.clearing.batches.run_due` settling every due order: fee-rule matching,
  largest-remainder allocation, verified batches per seller, details, one ledger entry per batch.

It prints seconds and peak memory (resident set growth, sampled every 5 ms) for both, their ratio,
`ledger.check` on the result, and the command that reproduces the figures.

    .venv/bin/python bench/settlement/run.py                    # N = 100,000
    .venv/bin/python bench/settlement/run.py --orders 1000000   # the full figure
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import secrets
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text

ADMIN_URL = os.environ.get("PIAOHAO_BENCH_ADMIN_URL",
                           os.environ.get("PIAOHAO_TEST_DATABASE_URL",
                                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakMemory:
    """Peak resident-set growth during a block, sampled on a thread (no tracing overhead)."""

    def __enter__(self):
        self.start = self.peak = rss()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, rss())
        self.growth = self.peak - self.start


_DUE = "o.status = 'pending_settlement' AND o.settle_due_at <= :now"
FLOOR_SQL = [
    f"""INSERT INTO settlement_batches (batch_no, merchant_id, seller_type, seller_id, currency, business_date,
        trigger, order_count, gross_amount, refunded_amount, subsidy_amount, split_amount, fee_amount,
        platform_fee_amount, seller_amount, status, created_at)
        SELECT 'floor_' || o.seller_id, o.merchant_id, o.seller_type, o.seller_id, o.currency, '2026-01-01', 'auto',
        count(*), sum(o.amount), 0, sum(o.subsidy_amount), sum(o.split_amount), 0, 0,
        sum(o.amount - o.split_amount + o.subsidy_amount), 'settled', :now
        FROM trade_orders o WHERE {_DUE} GROUP BY o.merchant_id, o.seller_type, o.seller_id, o.currency""",
    f"""INSERT INTO settlement_details (trade_no, out_order_no, batch_no, amount, refunded_amount, subsidy_amount,
        split_amount, fee_amount, platform_fee_amount, fee_rule_id, seller_amount, created_at)
        SELECT o.trade_no, o.out_order_no, 'floor_' || o.seller_id, o.amount, 0, o.subsidy_amount, o.split_amount,
        0, 0, 'default', o.amount - o.split_amount + o.subsidy_amount, :now FROM trade_orders o WHERE {_DUE}""",
    f"""INSERT INTO settlement_split_details (trade_no, out_order_no, receiver_id, batch_no, amount)
        SELECT s.trade_no, s.out_order_no, s.receiver_id, 'floor_' || o.seller_id, s.amount FROM order_splits s
        JOIN trade_orders o ON o.trade_no = s.trade_no AND o.out_order_no = s.out_order_no WHERE {_DUE}""",
    f"""UPDATE trade_orders o SET status = 'settled', settled_at = :now, batch_no = 'floor_' || o.seller_id,
        updated_at = :now WHERE {_DUE}""",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--receivers", type=int, default=20_000)
    ap.add_argument("--sellers", type=int, default=1_000)
    ap.add_argument("--chunk", type=int, default=5_000, help="orders per settlement transaction")
    ap.add_argument("--cold", action="store_true", help="measure as on a new database: statistics taken while "
                    "the ledger and settlement tables were empty, the setup's pooled connections (and their plans)")
    ap.add_argument("--profile", action="store_true", help="cProfile run_due; print the top functions by "
                    "cumulative time (wall time, so time waiting on PostgreSQL shows in the SQL calls)")
    args = ap.parse_args()

    from piaohao.books import chart
    from piaohao.clearing.batches import run_due
    from piaohao.db.database import Database
    from piaohao.db.migrate import upgrade
    from piaohao.kernel.clock import SystemClock
    from piaohao.kernel.settings import Settings
    from piaohao.ledger import write as ledger
    from piaohao.platform import Platform
    from piaohao.services.merchants import create_merchant

    name = "piaohao_bench_" + secrets.token_hex(4)
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    db = Database(url)
    try:
        upgrade(db)
        p = Platform(settings=Settings(database_url=url, secret_key=secrets.token_urlsafe(48)), db=db,
                     clock=SystemClock())
        now = datetime.now(UTC)
        creds = create_merchant(p, "Bench", now)
        t0 = time.perf_counter()
        n, r, s = args.orders, args.receivers, args.sellers
        with db.engine.begin() as c:
            params = {"m": creds.merchant_id, "a": creds.app_id, "n": n, "r": r, "s": s, "now": now,
                      "due": now - timedelta(days=1)}
            # The bank number is stored sealed (`db.sealed`); settlement never opens it, so the
            # bench writes a placeholder in its place rather than sealing 20,000 rows in Python.
            c.execute(text("""INSERT INTO split_receivers (receiver_id, merchant_id, out_receiver_id, name, bank,
                account_number_sealed, account_number_masked, account_name, request_hash, created_at)
                SELECT 'rcv' || g, :m, 'R' || g, 'r', 'ICBC', 'bench-not-sealed', '***************0001', 'r', 'x',
                :now FROM generate_series(0, :r - 1) g"""), params)
            c.execute(text("INSERT INTO receiver_counters VALUES (:m, :r)"), params)
            c.execute(text("""INSERT INTO trades (trade_no, merchant_id, app_id, out_trade_no, amount, currency,
                subject, purpose, status, refunded_amount, request_hash, cashier_token, expires_at, paid_at,
                created_at, updated_at)
                SELECT 'trb' || g, :m, :a, 'B' || g, 1000 + (g::bigint * 7919) % 9000, 'CNY', 'bench', 'sale',
                'succeeded', 0, 'x', 'ct' || g, :now, :now, :now, :now FROM generate_series(1, :n) g"""), params)
            c.execute(text("""INSERT INTO trade_orders (trade_no, out_order_no, merchant_id, kind, seller_type,
                seller_id, currency, amount, subsidy_amount, split_amount, position, status, paid_at, settle_due_at,
                created_at, updated_at)
                SELECT 'trb' || g, 'O1', :m, 'order', 'sub_merchant', 'sub' || (g % :s), 'CNY',
                1000 + (g::bigint * 7919) % 9000, CASE WHEN g % 10 = 0 THEN 100 ELSE 0 END,
                (1000 + (g::bigint * 7919) % 9000) / 10, 0, 'pending_settlement', :now, :due, :now, :now
                FROM generate_series(1, :n) g"""), params)
            c.execute(text("""INSERT INTO order_splits (trade_no, out_order_no, receiver_id, amount)
                SELECT 'trb' || g, 'O1', 'rcv' || (g % :r), (1000 + (g::bigint * 7919) % 9000) / 10
                FROM generate_series(1, :n) g"""), params)
            c.execute(text("ANALYZE"))
            pending = c.execute(text("SELECT seller_id, sum(amount) FROM trade_orders GROUP BY seller_id")).all()
        with db.engine.begin() as c:
            clearing = chart.channel_clearing(c, "sandbox", "CNY")
            entries = []
            for seller_id, amount in pending:
                acc = chart.standard_account(c, "sub_merchant_pending_settlement", seller_id, "CNY")
                entries.append(ledger.NewEntry(("bench", seller_id, "fund"),
                                               [ledger.debit(clearing.account_id, int(amount)),
                                                ledger.credit(acc.account_id, int(amount))]))
            ledger.post_entries(c, entries)
        # Second baseline, the write floor: the rows any settlement that keeps per-order details
        # must write (batches, details, receiver rows, the orders' state), as plain INSERT ...
        # SELECT / UPDATE with no computation and no ledger, rolled back.
        t = time.perf_counter()
        with db.engine.connect() as c, c.begin() as tx:
            for sql in FLOOR_SQL:
                c.execute(text(sql), {"now": now})
            tx.rollback()
        floor_s = time.perf_counter() - t
        # Steady state before measuring: statistics as autovacuum would keep them on a live
        # database, and a fresh pool as a worker process has (the setup's connections cached plans,
        # foreign-key checks included, made while the tables were empty).
        if not args.cold:
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("VACUUM ANALYZE"))
            db.engine.dispose()
        print(f"generated {n:,} paid orders for {s:,} sellers, {r:,} receivers in {time.perf_counter() - t0:.1f} s")

        with PeakMemory() as base_mem:
            t = time.perf_counter()
            with db.read() as c:
                per_seller = c.execute(text("""SELECT seller_id, currency, count(*), sum(amount), sum(subsidy_amount),
                    sum(split_amount) FROM trade_orders WHERE status = 'pending_settlement' AND settle_due_at <= :now
                    GROUP BY seller_id, currency"""), {"now": now}).all()
                per_receiver = c.execute(text("""SELECT s.receiver_id, sum(s.amount) FROM order_splits s
                    JOIN trade_orders o ON o.trade_no = s.trade_no AND o.out_order_no = s.out_order_no
                    WHERE o.status = 'pending_settlement' AND o.settle_due_at <= :now GROUP BY s.receiver_id"""),
                                         {"now": now}).all()
            base_s = time.perf_counter() - t
        with PeakMemory() as our_mem:
            t = time.perf_counter()
            if args.profile:
                prof = cProfile.Profile()
                summary = prof.runcall(run_due, p, now, chunk=args.chunk)
            else:
                summary = run_due(p, now, chunk=args.chunk)
            our_s = time.perf_counter() - t
        if args.profile:
            pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
        assert summary["orders"] == n, summary
        assert summary["split_amount"] == sum(int(x[1]) for x in per_receiver)
        t = time.perf_counter()
        problems = ledger.check(db)
        check_s = time.perf_counter() - t
        mib = 1024 * 1024
        print(f"baseline (GROUP BY per seller and per receiver): {base_s:8.2f} s"
              f"  peak +{base_mem.growth / mib:7.1f} MiB"
              f"  ({len(per_seller):,} sellers, {len(per_receiver):,} receivers)")
        print(f"piaohao settlement (run_due, chunk {args.chunk}): {our_s:8.2f} s"
              f"  peak +{our_mem.growth / mib:7.1f} MiB"
              f"  ({summary['batches']:,} verified batches, {n / our_s:,.0f} orders/s)")
        print(f"write floor (INSERT ... SELECT of batches, details, receiver rows; UPDATE of the orders; "
              f"no ledger, rolled back): {floor_s:8.2f} s")
        print(f"ratio piaohao / baseline: time {our_s / base_s:.1f}x, memory "
              f"{our_mem.growth / max(base_mem.growth, 1):.1f}x; piaohao / write floor {our_s / floor_s:.1f}x; "
              f"write floor / baseline {floor_s / base_s:.1f}x")
        print(f"ledger.check: {'clean' if not problems else problems[:3]} ({check_s:.1f} s)")
        print("reproduce: .venv/bin/python bench/settlement/run.py " + " ".join(sys.argv[1:]))
        return 0 if not problems else 1
    finally:
        db.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
