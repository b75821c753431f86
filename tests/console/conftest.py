"""The console's HTTP tests: a platform without workers on a clock the test moves."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from piaohao.kernel.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    # Near real time: the merchant API refuses signed calls more than 300 s from the server's clock.
    return FakeClock(datetime.now(UTC))


@pytest.fixture
def console(make_platform, clock):
    return make_platform(workers=False, clock=clock)
