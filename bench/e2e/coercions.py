"""Where the platform builds SQL statements per call: SQLAlchemy value coercions by piaohao call site.

    PYTHONPATH=src .venv/bin/python bench/e2e/coercions.py --payments 11 [--sqlite]

Runs `bench/e2e/statements.py` (same arguments) with `sqlalchemy.sql.coercions.expect` wrapped:
each call is one value or clause coerced into a statement being built, the work a statement
built once (executed with parameters) does not repeat. Prints the counts by the innermost piaohao
frame, over all the payments and the idle rounds: divide by the payments for a per-payment
figure. Counts, not time, so the figure does not depend on the machine's load.
"""

from __future__ import annotations

import collections
import os
import sys

from sqlalchemy.sql import coercions

HERE = os.path.dirname(os.path.abspath(__file__))
counts: collections.Counter = collections.Counter()
_expect = coercions.expect


def _counted(*args, **kwargs):
    frame = sys._getframe(1)
    while frame is not None and "/piaohao/" not in frame.f_code.co_filename:
        frame = frame.f_back
    if frame is not None:
        where = frame.f_code.co_filename.split("/piaohao/")[-1]
        counts[f"{where}:{frame.f_lineno} {frame.f_code.co_name}"] += 1
    return _expect(*args, **kwargs)


def main() -> int:
    coercions.expect = _counted  # modules call it as coercions.expect, so the wrap is seen everywhere
    sys.path.insert(0, HERE)
    import statements

    sys.argv = ["statements.py", *sys.argv[1:]]
    try:
        return statements.main() or 0
    finally:
        print("\nSQLAlchemy value coercions by piaohao call site (all payments and idle rounds):")
        for site, n in counts.most_common(40):
            print(f"{n:7d}  {site}")
        print(f"{sum(counts.values()):7d}  in all")


if __name__ == "__main__":
    sys.exit(main())
