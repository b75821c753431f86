"""How a channel package plugs into the platform without the platform naming it.

Each channel package exports one `ChannelKind`; `piaohao.channels.registry` lists them. The core
stores a channel account's configuration (public fields in clear, `secret_fields` sealed), and
asks the kind to `build` a `Channel` from it. A kind that runs something of its own (the sandbox:
a simulated company mounted in-process) also has `provision`, which the composition root calls
once at start with what it stored last time; it answers the configuration to store, and the
ASGI apps, loops and closers to run. Nothing here imports the core.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from piaohao.channels.spi.types import Channel, Product

__all__ = ["ChannelContext", "ChannelKind", "ConfigError", "Provisioned", "SimulatorLoop"]


class ConfigError(ValueError):
    """A channel account's configuration that does not hold (a key that does not parse, a public
    key of the wrong kind, a missing field). The message is safe to show: it has no key material."""


@dataclass(frozen=True)
class ChannelContext:
    """What the platform hands a channel kind: its clock, an HTTP client factory, its own settings."""

    now: Callable[[], datetime]
    timeout_s: float
    base_url: str  # the platform's public base URL
    database_url: str  # the platform's database (a simulator may keep its own storage beside it)
    business_tz: str
    worker_poll_s: float
    env: Mapping[str, str] = field(default_factory=dict)  # PIAOHAO_* variables
    embedded: bool = True  # the embedded default (SQLite, one process)

    def http_client(self) -> httpx.Client:
        return httpx.Client(timeout=self.timeout_s, trust_env=False)


@dataclass(frozen=True)
class SimulatorLoop:
    name: str
    run_once: Callable[[], Any]
    interval_s: float


@dataclass
class Provisioned:
    """What a self-provisioning kind answers at start."""

    config: dict[str, str]  # the platform account's configuration (stored, secrets sealed)
    mounts: dict[str, Any] = field(default_factory=dict)  # path -> ASGI app, served by the platform
    loops: list[SimulatorLoop] = field(default_factory=list)  # run wherever the mounts are served
    closers: list[Callable[[], Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)  # handles for tests and operators


@dataclass(frozen=True)
class ChannelKind:
    name: str
    products: tuple[Product, ...]
    secret_fields: frozenset[str]
    build: Callable[[Mapping[str, str], ChannelContext], Channel]  # raises ConfigError
    describe: Callable[[Mapping[str, str]], str]  # the id an operator recognises (app id, mch id)
    provision: Callable[[Mapping[str, str] | None, ChannelContext], Provisioned | None] | None = None
    cli: Any = None  # a Typer app of the kind's own operator commands (`piaohao <name> ...`)
