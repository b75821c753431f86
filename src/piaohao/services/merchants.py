"""Merchants and their apps: provisioning, secret rotation, disabling, and the lookups auth needs.

App secrets are stored sealed (`db.sealed`: bound to the app and the column) and opened in the
one place they are loaded for auth (`load_app_auth`; the gateway caches its answer per app) and in
the notification dispatcher, which signs with them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from piaohao.db.database import Database
from piaohao.db.schema import apps, merchants
from piaohao.db.sealed import open_column, seal_column
from piaohao.kernel.errors import AppNotFound, InvalidRequest, MerchantNotFound
from piaohao.kernel.ids import new_id, new_secret
from piaohao.kernel.sealing import Sealer
from piaohao.platform import Platform

SECRET_ROTATION_GRACE_S = 24 * 3600  # the old secret keeps working this long after a rotation
NAME_LEN_MAX = 200


@dataclass(frozen=True)
class AppCredentials:
    merchant_id: str
    app_id: str
    app_secret: str


@dataclass(frozen=True)
class AppAuth:
    """What the gateway needs to authenticate one app's requests."""

    app_id: str
    merchant_id: str
    secrets: tuple[str, ...]  # current first, then a previous one still in its grace period
    active: bool


def seal_secret(sealer: Sealer, app_id: str, secret: str, column: str = "secret_sealed") -> str:
    return seal_column(sealer, "apps", column, app_id, secret)


def open_secret(sealer: Sealer, app_id: str, sealed: str, column: str = "secret_sealed") -> str:
    return open_column(sealer, "apps", column, app_id, sealed)


def create_merchant(p: Platform, name: str, now: datetime | None = None) -> AppCredentials:
    name = name.strip()
    if not name or len(name) > NAME_LEN_MAX:
        raise InvalidRequest(f"merchant name must be 1-{NAME_LEN_MAX} characters")
    now = now or p.clock.now()
    merchant_id, app_id, secret = new_id("mch"), new_id("app"), new_secret()
    sealed = seal_secret(p.sealer(), app_id, secret)

    def tx(conn):
        conn.execute(insert(merchants).values(merchant_id=merchant_id, name=name, status="active", created_at=now))
        conn.execute(insert(apps).values(app_id=app_id, merchant_id=merchant_id, secret_sealed=sealed,
                                         status="active", created_at=now))

    p.db.write(tx)
    return AppCredentials(merchant_id, app_id, secret)


def create_app(p: Platform, merchant_id: str, now: datetime | None = None) -> AppCredentials:
    now = now or p.clock.now()
    app_id, secret = new_id("app"), new_secret()
    sealed = seal_secret(p.sealer(), app_id, secret)

    def tx(conn):
        if conn.execute(select(merchants.c.merchant_id).where(merchants.c.merchant_id == merchant_id)).first() is None:
            raise MerchantNotFound(f"no merchant {merchant_id}")
        conn.execute(insert(apps).values(app_id=app_id, merchant_id=merchant_id, secret_sealed=sealed,
                                         status="active", created_at=now))

    p.db.write(tx)
    return AppCredentials(merchant_id, app_id, secret)


def rotate_secret(p: Platform, app_id: str, now: datetime | None = None,
                  grace_s: int = SECRET_ROTATION_GRACE_S) -> AppCredentials:
    """A new secret, shown once; the old one stays valid for `grace_s` so callers can switch over."""
    now = now or p.clock.now()
    sealer, secret = p.sealer(), new_secret()
    sealed = seal_secret(sealer, app_id, secret)

    def tx(conn):
        row = conn.execute(select(apps).where(apps.c.app_id == app_id).with_for_update()).mappings().first()
        if row is None:
            raise AppNotFound(f"no app {app_id}")
        old = open_secret(sealer, app_id, row["secret_sealed"])  # re-sealed: each column has its own purpose
        conn.execute(update(apps).where(apps.c.app_id == app_id).values(
            secret_sealed=sealed, previous_secret_sealed=seal_secret(sealer, app_id, old, "previous_secret_sealed"),
            previous_secret_expires_at=now + timedelta(seconds=grace_s), rotated_at=now))
        return row["merchant_id"]

    merchant_id = p.db.write(tx)
    return AppCredentials(merchant_id, app_id, secret)


def set_app_status(db: Database, app_id: str, status: str) -> None:
    if status not in ("active", "disabled"):
        raise InvalidRequest("status must be active or disabled")

    def tx(conn):
        done = conn.execute(update(apps).where(apps.c.app_id == app_id).values(status=status)).rowcount
        if not done:
            raise AppNotFound(f"no app {app_id}")

    db.write(tx)


def update_merchant(db: Database, merchant_id: str, *, coins_cap_pct: int | None = None,
                    settle_after_days: int | None = None) -> dict:
    values: dict = {}
    if coins_cap_pct is not None:
        if not 0 <= coins_cap_pct <= 100:
            raise InvalidRequest("coins cap must be 0-100 %")
        values["coins_cap_pct"] = coins_cap_pct
    if settle_after_days is not None:
        if not 0 <= settle_after_days <= 365:
            raise InvalidRequest("settle-after-days must be 0-365")
        values["settle_after_days"] = settle_after_days

    def tx(conn):
        if values:
            conn.execute(update(merchants).where(merchants.c.merchant_id == merchant_id).values(**values))
        row = conn.execute(select(merchants).where(merchants.c.merchant_id == merchant_id)).mappings().first()
        if row is None:
            raise MerchantNotFound(f"no merchant {merchant_id}")
        return dict(row)

    return db.write(tx)


def list_merchants(db: Database) -> list[dict]:
    with db.read() as conn:
        rows = conn.execute(select(merchants.c.merchant_id, merchants.c.name, merchants.c.status,
                                   merchants.c.created_at).order_by(merchants.c.created_at)).mappings().all()
        app_rows = conn.execute(select(apps.c.app_id, apps.c.merchant_id, apps.c.status)).mappings().all()
    by_merchant: dict[str, list] = {}
    for a in app_rows:
        by_merchant.setdefault(a["merchant_id"], []).append({"app_id": a["app_id"], "status": a["status"]})
    return [dict(r, apps=by_merchant.get(r["merchant_id"], [])) for r in rows]


def load_app_auth(p: Platform, app_id: str, now: datetime) -> AppAuth | None:
    """The one place an app's secrets are loaded for auth: opened here (~10 µs each), cached by the gateway."""
    with p.db.read() as conn:
        row = conn.execute(
            select(apps.c.app_id, apps.c.merchant_id, apps.c.secret_sealed, apps.c.previous_secret_sealed,
                   apps.c.previous_secret_expires_at, apps.c.status, merchants.c.status.label("merchant_status"))
            .join(merchants, merchants.c.merchant_id == apps.c.merchant_id)
            .where(apps.c.app_id == app_id)
        ).mappings().first()
    if row is None:
        return None
    sealer = p.sealer()
    keys = [open_secret(sealer, app_id, row["secret_sealed"])]
    previous, until = row["previous_secret_sealed"], row["previous_secret_expires_at"]
    if previous and until and until > now:
        keys.append(open_secret(sealer, app_id, previous, "previous_secret_sealed"))
    active = row["status"] == "active" and row["merchant_status"] == "active"
    return AppAuth(row["app_id"], row["merchant_id"], tuple(keys), active)
