"""What the sandbox's bill and money operations need of its service: a small protocol, so those
modules do not import the service that imports them."""

from __future__ import annotations

from typing import Any, Protocol
from zoneinfo import ZoneInfo

from piaohao.kernel.clock import Clock

from .faults import FaultBook
from .store import SandboxStore


class ServiceParts(Protocol):
    store: SandboxStore
    clock: Clock
    tz: ZoneInfo
    faults: FaultBook
    t: Any  # the sandbox's tables
