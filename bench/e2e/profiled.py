"""Run a piaohao command (`serve`) under cProfile in every thread, timed by each thread's own CPU
clock, so the profile shows where the platform's CPU goes (not where it waits).

    python bench/e2e/profiled.py OUT_DIR serve --port 8000

py-spy is not installed. cProfile profiles one thread, and piaohao's work runs in the thread
pool of its sync endpoints and in its worker threads: a profiler is started in every thread
(by wrapping `Thread._bootstrap_inner`) and in the main one. On SIGUSR1 the process writes
OUT_DIR/snapshot-N.prof, the sum of every thread's stats so far (pstats format, calls still open
not included); the benchmark takes one at each phase edge and reports the differences.
"""

from __future__ import annotations

import cProfile
import marshal
import os
import signal
import sys
import threading
import time

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _new_profile() -> cProfile.Profile:
    prof = cProfile.Profile(time.thread_time)
    with _lock:
        _profiles.append(prof)
    return prof


_inner = threading.Thread._bootstrap_inner


def _profiled_inner(self):
    prof = _new_profile()
    prof.enable()
    try:
        _inner(self)
    finally:
        prof.disable()


def snapshot(path: str) -> None:
    """Every profile's stats so far, summed; read without disabling anything (`snapshot_stats`
    reads the profiler's table only)."""
    total: dict = {}
    with _lock:
        profiles = list(_profiles)
    for prof in profiles:
        prof.snapshot_stats()
        for func, (cc, nc, tt, ct, callers) in prof.stats.items():
            if func in total:
                cc0, nc0, tt0, ct0, callers0 = total[func]
                merged = dict(callers0)
                for caller, value in callers.items():
                    old = merged.get(caller)
                    merged[caller] = value if old is None else tuple(a + b for a, b in zip(old, value, strict=True))
                total[func] = (cc0 + cc, nc0 + nc, tt0 + tt, ct0 + ct, merged)
            else:
                total[func] = (cc, nc, tt, ct, dict(callers))
    with open(path + ".tmp", "wb") as f:
        marshal.dump(total, f)
    os.replace(path + ".tmp", path)


def main() -> None:
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    count = [0]

    def on_usr1(_signum, _frame):
        count[0] += 1
        snapshot(os.path.join(out_dir, f"snapshot-{count[0]}.prof"))

    signal.signal(signal.SIGUSR1, on_usr1)
    threading.Thread._bootstrap_inner = _profiled_inner
    sys.argv = ["piaohao", *sys.argv[2:]]
    from piaohao.cli import main as piaohao_main

    prof = _new_profile()
    prof.enable()
    piaohao_main()


if __name__ == "__main__":
    main()
