"""The per-merchant rate limit is one limit across every API process that shares the database.

Each `SharedRateLimiter` below stands for one API process: its own `Database` (its own connection
pool and, on SQLite, its own writer lock) on the same database. Time is a `FakeClock` moved by the
test; what is asserted is how many requests were let through, never how long anything took.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from piaohao.api.ratelimit import RateLimiter, SharedRateLimiter, make_limiter
from piaohao.db.database import Database
from piaohao.kernel.clock import FakeClock
from piaohao.kernel.settings import Settings, SettingsError
from tests.support.merchant import MerchantClient


@pytest.fixture
def processes(database_url):
    """make(n) -> n databases handles on the one test database, as n API processes would hold."""
    made: list[Database] = []

    def make(n: int) -> list[Database]:
        made.extend(Database(database_url) for _ in range(n))
        return made[-n:]

    yield make
    for db in made:
        db.dispose()


class CountingDatabase:
    """A database handle that counts write transactions (the limiter's draws)."""

    def __init__(self, db: Database):
        self._db, self.writes = db, 0
        self.is_sqlite = db.is_sqlite
        self._lock = threading.Lock()

    def write(self, fn):
        with self._lock:
            self.writes += 1
        return self._db.write(fn)


def grants(limiter, key: str, attempts: int) -> int:
    return sum(1 for _ in range(attempts) if limiter.acquire(key) == 0)


def test_two_processes_together_never_exceed_capacity_plus_rate_times_elapsed(processes):
    clock = FakeClock()
    rate_per_s, capacity = 50, 100
    a, b = (SharedRateLimiter(db, rate_per_s, clock, lease=5) for db in processes(2))
    granted, elapsed_s = 0, 0.0
    # Uneven steps and uneven demand: at every step both "processes" ask for more than the rate.
    for step in range(60):
        step_s = (0.01, 0.05, 0.13, 0.2, 0.5)[step % 5]
        clock.advance(step_s)
        elapsed_s += step_s
        granted += grants(a, "m_1", 40) + grants(b, "m_1", 25 + step % 7)
        assert granted <= capacity + rate_per_s * elapsed_s
    # Not stingy either: everything the bucket refilled was handed out, less at most what the two
    # processes still hold (a lease each) and one for the milli-token remainders of refills.
    assert granted >= capacity + rate_per_s * elapsed_s - 2 * 5 - 1
    # Each process alone in memory would have let through twice as much.
    assert granted < 2 * capacity + 2 * rate_per_s * elapsed_s - 200


def test_the_limit_is_per_merchant(processes):
    clock = FakeClock()
    a, b = (SharedRateLimiter(db, 10, clock) for db in processes(2))
    assert grants(a, "m_1", 30) + grants(b, "m_1", 30) == 20
    assert grants(b, "m_2", 30) == 20


def test_a_limiter_refills_as_time_advances(processes):
    clock = FakeClock()
    (db,) = processes(1)
    limiter = SharedRateLimiter(db, 10, clock, lease=1)
    assert grants(limiter, "m_1", 25) == 20  # a burst of twice the rate
    wait_s = limiter.acquire("m_1")
    assert 0 < wait_s <= 0.1
    assert RateLimiter.retry_after_header(wait_s) == "1"
    clock.advance(1)
    assert grants(limiter, "m_1", 25) == 10  # one second's worth
    clock.advance(0.5)
    assert grants(limiter, "m_1", 25) == 5
    clock.advance(365 * 86400)  # a year idle: full again, and no more than full
    assert grants(limiter, "m_1", 50) == 20


def test_a_process_whose_clock_lags_gets_no_extra_tokens(processes):
    ahead, behind = FakeClock(), FakeClock()
    ahead.advance(10)
    a = SharedRateLimiter(processes(1)[0], 10, ahead, lease=1)
    b = SharedRateLimiter(processes(1)[0], 10, behind, lease=1)
    assert grants(a, "m_1", 25) == 20
    behind.advance(5)  # still 5 s behind the time the bucket was last refilled at
    assert grants(b, "m_1", 25) == 0
    behind.advance(6)  # 1 s past it
    assert grants(b, "m_1", 25) == 10


def test_a_refused_process_waits_a_lease_before_asking_the_database_again(processes):
    clock = FakeClock()
    db = CountingDatabase(processes(1)[0])
    limiter = SharedRateLimiter(db, 100, clock)  # leases of 10
    assert grants(limiter, "m_1", 1000) == 200
    assert db.writes == 200 // 10 + 1  # one draw per lease, one refused draw, then memory
    clock.advance(0.05)  # half a lease refilled: still refused from memory
    assert grants(limiter, "m_1", 100) == 0 and db.writes == 21
    clock.advance(0.05)
    assert grants(limiter, "m_1", 100) == 10


def test_many_threads_in_two_processes_never_exceed_the_bound(processes):
    clock = FakeClock()
    rate_per_s, capacity, lease = 200, 400, 20
    steps, step_s = 50, 0.01
    dbs = [CountingDatabase(db) for db in processes(2)]
    limiters = [SharedRateLimiter(db, rate_per_s, clock, lease=lease) for db in dbs]
    granted, attempts = [0], [0]
    count_lock = threading.Lock()
    start, advanced = threading.Barrier(17), threading.Event()

    def ask(limiter):
        start.wait()
        tries, ok = 0, 0
        while not advanced.is_set() or tries < 400:  # asking all along, and a while after the last step
            tries += 1
            ok += limiter.acquire("m_1") == 0
        with count_lock:
            granted[0] += ok
            attempts[0] += tries

    def advance():
        start.wait()
        for _ in range(steps):
            clock.advance(step_s)
            time.sleep(0.002)  # let the askers run between steps (the assertions do not depend on it)
        advanced.set()

    threads = [threading.Thread(target=ask, args=(limiters[i % 2],)) for i in range(16)]
    threads.append(threading.Thread(target=advance))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bound = capacity + rate_per_s * steps * step_s
    assert granted[0] <= bound
    # Demand far over supply: everything went out but what the two processes still hold, and what
    # refilled after a process last asked (a lease's worth at most).
    assert granted[0] >= bound - 3 * lease
    # The database saw about a write per lease, not one per request.
    assert attempts[0] >= 16 * 400
    assert sum(db.writes for db in dbs) <= 100


def test_rate_limit_scope_chooses_shared_by_default_and_memory_on_request(processes):
    (db,) = processes(1)

    def limiter(env: dict):
        return make_limiter(SimpleNamespace(settings=Settings.from_env(env), db=db, clock=FakeClock()))

    assert isinstance(limiter({}), SharedRateLimiter)
    assert isinstance(limiter({"PIAOHAO_RATE_LIMIT_SCOPE": "Process"}), RateLimiter)
    with pytest.raises(SettingsError, match="PIAOHAO_RATE_LIMIT_SCOPE"):
        limiter({"PIAOHAO_RATE_LIMIT_SCOPE": "redis"})


def test_two_api_processes_answer_429_once_the_merchant_used_the_shared_limit(make_platform):
    clock = FakeClock(datetime.now(UTC))  # frozen: no refill while the test runs
    first = make_platform(workers=False, clock=clock, rate_limit_per_s=2)
    second = make_platform(workers=False, clock=clock, rate_limit_per_s=2)
    m = first.merchant()
    clients = [m, MerchantClient(second.url, m.app_id, m.secret, m.merchant_id)]
    answers = [clients[i % 2].call("GET", "/v1/trades?out_trade_no=A1") for i in range(8)]
    statuses = [r.status_code for r in answers]
    assert statuses.count(404) == 4, statuses  # a burst of twice the rate, across both processes
    assert statuses[4:] == [429] * 4, statuses
    assert answers[-1].json()["code"] == "RATE_LIMITED"
    assert int(answers[-1].headers["retry-after"]) >= 1


def test_the_event_loop_path_answers_from_the_lease_and_never_draws(processes):
    # The gateway asks `acquire_from_memory` on the event loop: it must spend only what this
    # process already holds, and say None (go to a thread) when a draw is needed.
    clock = FakeClock()
    (db,) = processes(1)
    counting = CountingDatabase(db)
    limiter = SharedRateLimiter(counting, 10, clock, lease=3)
    assert limiter.acquire_from_memory("m_1") is None and counting.writes == 0
    assert limiter.acquire("m_1") == 0 and counting.writes == 1  # drew a lease of 3, spent 1
    assert [limiter.acquire_from_memory("m_1") for _ in range(3)] == [0, 0, None]
    assert counting.writes == 1
    while limiter.acquire("m_1") == 0:  # empty the shared bucket (capacity 20)
        pass
    writes = counting.writes
    wait_s = limiter.acquire_from_memory("m_1")  # refused from memory, no write
    assert wait_s is not None and wait_s > 0 and counting.writes == writes
