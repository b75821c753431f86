"""Ledger benchmark on PostgreSQL: every figure beside a baseline measured in the same run.

    python bench/ledger/run.py [--database-url URL] [--seconds N] [--threads 8] [--batch-threads 1]

It creates a fresh database next to URL (default: the local server), runs each phase for N
seconds, prints the table and the command that reproduces it, checks the books, and drops the
database. Phases (1,000 member accounts, non-negative, funded; amounts 1..1000 minor units):

  raw_tx      baseline: raw psycopg, per transaction UPDATE a; UPDATE b; INSERT the 2 leg rows
  uniform     ledger.transfer between two random members, one per `Database.write` (the
              constrained path: lock both balance rows, check, insert entry and legs, update)
  hot16       payments: every entry debits ONE channel clearing account (16 shards) and credits a
              random member; same statements, same rows locked per entry (2), as `uniform`
  hot1        the same on an unsharded clearing account (1 row): what the sharding buys
  batch100    ledger.post_entries, 100 uniform transfers per transaction
  raw_insert  baseline: raw multi-row INSERT of the same 200 leg rows per transaction
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import threading
import time
from collections.abc import Callable

import psycopg
from sqlalchemy import create_engine, text

from piaohao.books.chart import channel_clearing, member_balance, platform_reserve
from piaohao.db import migrate
from piaohao.db.database import Database, normalise_url
from piaohao.ledger.accounts import get_or_create_account
from piaohao.ledger.model import Constraint, NormalSide
from piaohao.ledger.write import EntryKey, NewEntry, check, credit, debit, post_entries, transfer

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ACCOUNTS = 1_000
FUND_MINOR = 10**12
BATCH_ENTRIES = 100


def fresh_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    name = "piaohao_bench_ledger_" + secrets.token_hex(4)
    admin = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return normalise_url(admin_url).rsplit("/", 1)[0] + "/" + name, drop


def run_for(seconds: float, threads: int, work: Callable[[int, random.Random], int]) -> float:
    """Call work(thread, rng) -> entries done, in `threads` threads for `seconds`; entries per second."""
    done = [0] * threads
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)
    stop = threading.Event()

    def loop(t: int) -> None:
        rng = random.Random(t * 7919 + int(time.time()))
        barrier.wait()
        try:
            while not stop.is_set():
                done[t] += work(t, rng)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            stop.set()

    pool = [threading.Thread(target=loop, args=(t,), daemon=True) for t in range(threads)]
    for th in pool:
        th.start()
    barrier.wait()
    started = time.perf_counter()
    stop.wait(seconds)
    stop.set()
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return sum(done) / elapsed


def setup_ledger(db: Database) -> tuple[list[str], str, str]:
    def accounts(conn):
        src = platform_reserve(conn, "CNY")
        members = [member_balance(conn, f"bench{i}", "CNY").account_id for i in range(ACCOUNTS)]
        hot16 = channel_clearing(conn, "bench", "CNY").account_id
        hot1 = get_or_create_account(conn, "channel", "bench_unsharded", "clearing", "CNY",
                                     normal_side=NormalSide.DEBIT, constraint=Constraint.NONE).account_id
        post_entries(conn, [NewEntry(EntryKey("bench_fund", m, "x"), [debit(src.account_id, FUND_MINOR),
                                                                         credit(m, FUND_MINOR)]) for m in members])
        return members, hot16, hot1

    return db.write(accounts)


def setup_raw(url: str) -> str:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE raw_balances (account_id int PRIMARY KEY, posted bigint NOT NULL)")
        conn.execute("CREATE TABLE raw_legs (leg_id bigserial PRIMARY KEY, entry_id text NOT NULL, "
                     "account_id int NOT NULL, amount bigint NOT NULL, created_at timestamptz NOT NULL)")
        conn.execute("CREATE INDEX ON raw_legs (account_id, created_at)")
        conn.execute("INSERT INTO raw_balances SELECT g, %s FROM generate_series(0, %s) g", (FUND_MINOR, ACCOUNTS - 1))
    return dsn


class RawConnections:
    """One psycopg connection per thread (the baselines skip SQLAlchemy entirely)."""

    def __init__(self, dsn: str, threads: int):
        self.conns = [psycopg.connect(dsn) for _ in range(threads)]

    def close(self) -> None:
        for c in self.conns:
            c.close()


def phase_raw_tx(raw: RawConnections, seconds: float, threads: int) -> float:
    def work(t: int, rng: random.Random) -> int:
        a, b = sorted(rng.sample(range(ACCOUNTS), 2))
        amount, entry = rng.randint(1, 1000), secrets.token_hex(8)
        conn = raw.conns[t]
        with conn.transaction():
            conn.execute("UPDATE raw_balances SET posted = posted - %s WHERE account_id = %s", (amount, a))
            conn.execute("UPDATE raw_balances SET posted = posted + %s WHERE account_id = %s", (amount, b))
            conn.execute("INSERT INTO raw_legs (entry_id, account_id, amount, created_at) "
                         "VALUES (%s, %s, %s, now()), (%s, %s, %s, now())", (entry, a, -amount, entry, b, amount))
        return 1

    return run_for(seconds, threads, work)


def phase_raw_insert(raw: RawConnections, seconds: float, threads: int) -> float:
    rows = BATCH_ENTRIES * 2
    sql = ("INSERT INTO raw_legs (entry_id, account_id, amount, created_at) VALUES "
           + ", ".join(["(%s, %s, %s, now())"] * rows))

    def work(t: int, rng: random.Random) -> int:
        params: list = []
        for _ in range(BATCH_ENTRIES):
            a, b = rng.sample(range(ACCOUNTS), 2)
            amount, entry = rng.randint(1, 1000), secrets.token_hex(8)
            params += [entry, a, -amount, entry, b, amount]
        conn = raw.conns[t]
        with conn.transaction():
            conn.execute(sql, params)
        return BATCH_ENTRIES

    return run_for(seconds, threads, work)


def phase_transfers(db: Database, members: list[str], hot: str | None, seconds: float, threads: int,
                    tag: str) -> float:
    def work(t: int, rng: random.Random) -> int:
        if hot:  # a payment collected through the channel: debit its clearing account, credit a payee
            a, b = hot, rng.choice(members)
        else:
            a, b = rng.sample(members, 2)
        key = EntryKey("bench", f"{tag}-{t}-{secrets.token_hex(6)}", "x")
        db.write(lambda conn: transfer(conn, key, a, b, rng.randint(1, 1000)))
        return 1

    return run_for(seconds, threads, work)


def phase_batches(db: Database, members: list[str], seconds: float, threads: int) -> float:
    def work(t: int, rng: random.Random) -> int:
        batch = []
        for _ in range(BATCH_ENTRIES):
            a, b = rng.sample(members, 2)
            amount = rng.randint(1, 1000)
            batch.append(NewEntry(EntryKey("bench", f"batch-{t}-{secrets.token_hex(6)}", "x"),
                                  [debit(a, amount), credit(b, amount)]))
        db.write(lambda conn: post_entries(conn, batch))
        return BATCH_ENTRIES

    return run_for(seconds, threads, work)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default=os.environ.get("PIAOHAO_BENCH_DATABASE_URL", DEFAULT_URL),
                   help="a PostgreSQL server URL; a fresh database is created beside it and dropped")
    p.add_argument("--seconds", type=float, default=6.0, help="duration of each of the 6 phases")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--batch-threads", type=int, default=1, help="threads for the batched phases")
    args = p.parse_args(argv)
    url, drop = fresh_database(args.database_url)
    db = Database(url, pool_size=max(args.threads, args.batch_threads))
    raw: RawConnections | None = None
    try:
        migrate.upgrade(db)
        members, hot16, hot1 = setup_ledger(db)
        raw = RawConnections(setup_raw(url), max(args.threads, args.batch_threads))
        with db.read() as conn:
            version = conn.execute(text("SHOW server_version")).scalar_one()
            sync = conn.execute(text("SHOW synchronous_commit")).scalar_one()
        s, n, nb = args.seconds, args.threads, args.batch_threads
        r = {
            "raw_tx": phase_raw_tx(raw, s, n),
            "uniform": phase_transfers(db, members, None, s, n, "uniform"),
            "hot16": phase_transfers(db, members, hot16, s, n, "hot16"),
            "hot1": phase_transfers(db, members, hot1, s, n, "hot1"),
            "batch100": phase_batches(db, members, s, nb),
            "raw_insert": phase_raw_insert(raw, s, nb),
        }
        t0 = time.perf_counter()
        violations = check(db)
        check_s = time.perf_counter() - t0
    finally:
        if raw:
            raw.close()
        db.dispose()
        drop()
    rows = [
        (f"uniform transfers, 1/txn, {n} thr", r["uniform"], f"raw UPDATE;UPDATE;INSERT 1/txn, {n} thr", r["raw_tx"]),
        (f"batches of {BATCH_ENTRIES}, {nb} thr", r["batch100"], f"raw multi-row INSERT of the legs, {nb} thr",
         r["raw_insert"]),
        (f"hot account, 16 shards, {n} thr", r["hot16"], "uniform transfers (above)", r["uniform"]),
        (f"hot account, 1 row, {n} thr", r["hot1"], "uniform transfers (above)", r["uniform"]),
    ]
    print(f"ledger benchmark: PostgreSQL {version} (synchronous_commit={sync}), {ACCOUNTS} accounts, "
          f"{s:g} s per phase; figures are entries/s")
    print(f"{'figure':<38}{'entries/s':>10}   {'baseline':<42}{'entries/s':>10}{'ratio':>8}")
    for name, value, base_name, base in rows:
        print(f"{name:<38}{value:>10,.0f}   {base_name:<42}{base:>10,.0f}{value / base:>8.2f}")
    print(f"check after the run: {'clean' if not violations else f'{len(violations)} violation(s)'} "
          f"({check_s:.1f} s)")
    cmd = ["python", "bench/ledger/run.py", "--seconds", f"{s:g}", "--threads", str(n), "--batch-threads", str(nb)]
    if args.database_url != DEFAULT_URL:
        cmd += ["--database-url", args.database_url]
    print("reproduce:", " ".join(cmd))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
