"""One typed settings object, read from `PIAOHAO_*` environment variables (see the README table)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from zoneinfo import ZoneInfo

from piaohao.kernel.sealing import SECRET_KEY_CHARS_MIN, Sealer, load_or_create_key_file

DEFAULT_NOTIFY_RETRY_S = (15.0, 60.0, 300.0, 900.0, 3600.0, 7200.0, 21600.0, 54000.0)
RATE_LIMIT_SCOPES = ("shared", "process")


class SettingsError(ValueError):
    """A setting could not be parsed; the message names it."""


def _float_list(name: str, raw: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError as e:
        raise SettingsError(f"{name}: expected comma separated seconds, got {raw!r}") from e
    if any(v < 0 for v in values):
        raise SettingsError(f"{name}: seconds must not be negative")
    return values


def _num(name: str, raw: str, kind=float):
    try:
        return kind(raw)
    except ValueError as e:
        raise SettingsError(f"{name}: expected a number, got {raw!r}") from e


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///piaohao.db"
    base_url: str = ""  # filled by `serve` from host and port when unset
    business_tz: str = "Asia/Shanghai"
    notify_retry_s: tuple[float, ...] = DEFAULT_NOTIFY_RETRY_S
    notify_timeout_s: float = 10.0
    active_query_after_s: float = 30.0
    active_query_interval_max_s: float = 600.0
    rate_limit_per_s: float = 100.0
    # PIAOHAO_RATE_LIMIT_SCOPE: "shared" (one limit per merchant across every API process, kept in the
    # database) or "process" (each process counts alone, in memory: N processes allow N times the rate)
    rate_limit_scope: str = "shared"
    password_lock_s: float = 900.0
    split_receivers_max: int = 20000
    split_ratio_max_pct: int = 30
    marketing_daily_cap: int | None = None
    trade_timeout_default_s: int = 7200
    trade_timeout_max_s: int = 30 * 86400
    channel_timeout_s: float = 5.0
    # Settings a channel kind reads for itself (PIAOHAO_SANDBOX, PIAOHAO_SANDBOX_URL, ...): every
    # PIAOHAO_* variable, passed through; the channel packages document their own.
    channel_env: dict = field(default_factory=dict)
    secret_key: str = ""  # PIAOHAO_SECRET_KEY; see `sealer()`
    outbound_private: str = ""  # PIAOHAO_OUTBOUND_PRIVATE: "allow" | "deny"; empty: allow on the embedded default
    metrics_token: str = ""  # PIAOHAO_METRICS_TOKEN: /metrics needs "Authorization: Bearer <it>"; empty: not served
    worker_poll_s: float = 0.2
    workers_in_process: bool = True
    log_level: str = "INFO"
    recon_interval_s: float = 60.0  # PIAOHAO_RECON_INTERVAL_S: near-real-time reconciliation
    recon_grace_s: float = 86400.0  # PIAOHAO_RECON_GRACE_S: in-flight records wait this long
    extra: dict = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.business_tz)

    @property
    def embedded(self) -> bool:
        """The embedded default: SQLite, everything in one process (see API.md "Security settings")."""
        return self.database_url.startswith("sqlite")

    @property
    def outbound_private_allowed(self) -> bool:
        """May the platform call private addresses (PIAOHAO_OUTBOUND_PRIVATE; see kernel/outbound.py)?"""
        if self.outbound_private:
            return self.outbound_private == "allow"
        return self.embedded

    def sqlite_path(self) -> Path | None:
        url = self.database_url
        if url.startswith("sqlite:///") and url not in ("sqlite:///:memory:", "sqlite://"):
            return Path(url[len("sqlite:///"):])
        return None

    def sealer(self) -> Sealer:
        """What seals secrets at rest. PIAOHAO_SECRET_KEY when set; on the embedded default a key
        generated once into `<db name>.key` beside the SQLite file (mode 0600); otherwise an error
        naming the setting: outside the embedded default secrets are never stored unsealed."""
        if self.secret_key:
            if len(self.secret_key) < SECRET_KEY_CHARS_MIN:
                raise SettingsError(f"PIAOHAO_SECRET_KEY must be at least {SECRET_KEY_CHARS_MIN} characters")
            return Sealer(self.secret_key)
        if self.embedded:
            path = self.sqlite_path()
            if path is None:
                return Sealer(secrets.token_urlsafe(48))  # in-memory database: in-memory key
            return Sealer(load_or_create_key_file(path.with_name(path.stem + ".key")))
        raise SettingsError("PIAOHAO_SECRET_KEY is required outside the embedded default "
                            f"(a string of at least {SECRET_KEY_CHARS_MIN} characters)")

    def with_(self, **changes) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        s = cls()
        get = env.get
        changes: dict = {}
        if v := get("PIAOHAO_DATABASE_URL"):
            changes["database_url"] = v
        if v := get("PIAOHAO_BASE_URL"):
            changes["base_url"] = v.rstrip("/")
        if v := get("PIAOHAO_BUSINESS_TZ"):
            try:
                ZoneInfo(v)
            except Exception as e:  # noqa: BLE001 - any lookup failure is a bad setting
                raise SettingsError(f"PIAOHAO_BUSINESS_TZ: unknown time zone {v!r}") from e
            changes["business_tz"] = v
        if (v := get("PIAOHAO_NOTIFY_RETRY_S")) is not None and v.strip():
            changes["notify_retry_s"] = _float_list("PIAOHAO_NOTIFY_RETRY_S", v)
        for key, attr, kind in (
            ("PIAOHAO_NOTIFY_TIMEOUT_S", "notify_timeout_s", float),
            ("PIAOHAO_ACTIVE_QUERY_AFTER_S", "active_query_after_s", float),
            ("PIAOHAO_ACTIVE_QUERY_INTERVAL_MAX_S", "active_query_interval_max_s", float),
            ("PIAOHAO_RATE_LIMIT_PER_S", "rate_limit_per_s", float),
            ("PIAOHAO_PASSWORD_LOCK_S", "password_lock_s", float),
            ("PIAOHAO_SPLIT_RECEIVERS_MAX", "split_receivers_max", int),
            ("PIAOHAO_SPLIT_RATIO_MAX_PCT", "split_ratio_max_pct", int),
            ("PIAOHAO_TRADE_TIMEOUT_DEFAULT_S", "trade_timeout_default_s", int),
            ("PIAOHAO_CHANNEL_TIMEOUT_S", "channel_timeout_s", float),
            ("PIAOHAO_WORKER_POLL_S", "worker_poll_s", float),
            ("PIAOHAO_RECON_INTERVAL_S", "recon_interval_s", float),
            ("PIAOHAO_RECON_GRACE_S", "recon_grace_s", float),
        ):
            if (v := get(key)) is not None and v.strip():
                changes[attr] = _num(key, v, kind)
        if (v := get("PIAOHAO_MARKETING_DAILY_CAP")) is not None and v.strip():
            changes["marketing_daily_cap"] = _num("PIAOHAO_MARKETING_DAILY_CAP", v, int)
        if v := get("PIAOHAO_SECRET_KEY"):
            changes["secret_key"] = v
        if (v := get("PIAOHAO_OUTBOUND_PRIVATE")) is not None and v.strip():
            if v.strip().lower() not in ("allow", "deny"):
                raise SettingsError(f"PIAOHAO_OUTBOUND_PRIVATE: expected allow or deny, got {v!r}")
            changes["outbound_private"] = v.strip().lower()
        if (v := get("PIAOHAO_RATE_LIMIT_SCOPE")) is not None and v.strip():
            if v.strip().lower() not in RATE_LIMIT_SCOPES:
                raise SettingsError(f"PIAOHAO_RATE_LIMIT_SCOPE: expected shared or process, got {v!r}")
            changes["rate_limit_scope"] = v.strip().lower()
        if v := get("PIAOHAO_METRICS_TOKEN"):
            changes["metrics_token"] = v
        changes["channel_env"] = {k: v for k, v in env.items() if k.startswith("PIAOHAO_")}
        if v := get("PIAOHAO_LOG_LEVEL"):
            changes["log_level"] = v.upper()
        return replace(s, **changes)
