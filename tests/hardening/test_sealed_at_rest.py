"""Secrets at rest: app secrets (current and previous) and bank / id numbers are stored sealed.

A raw SELECT of the tables finds none of them; signing, notifications and payouts still work with
them; `keys rotate` re-seals them and everything still verifies; a wrong key is a clear error.
The 0012b migration seals rows an older version stored in clear (and its downgrade opens them).
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from piaohao.bootstrap import assemble
from piaohao.db import migrate
from piaohao.db.database import Database
from piaohao.db.sealed import open_column, purpose
from piaohao.kernel.clock import SystemClock
from piaohao.kernel.sealing import Sealer, SealError
from piaohao.kernel.settings import Settings, SettingsError
from piaohao.platform import Platform
from piaohao.services import keys
from piaohao.services.merchants import load_app_auth, rotate_secret
from tests.conftest import TEST_SECRET_KEY
from tests.settlement.helpers import BANK, create_trade, pay, receiver_id, seller
from tests.support.merchant import MerchantClient, wait_until

NEW_KEY = "the-new-secret-key-for-rotation-0123456789"
ID_NUMBER = "11010519491231002X"
TABLES = ("apps", "sub_merchants", "split_receivers", "disbursements")


def _raw_dump(db: Database) -> str:
    """Every row of the tables that hold these secrets, as the database gives them."""
    with db.engine.connect() as conn:
        return "\n".join(repr(tuple(row)) for t in TABLES for row in conn.execute(text(f"SELECT * FROM {t}")))


def _money_for_a_payout(running, m) -> tuple[str, str]:
    """A seller with settled money, a receiver, and a payout of it to the seller's registered account."""
    sid, rcv = seller(running, m), receiver_id(m)
    orders = [{"out_order_no": "O1", "sub_merchant_id": sid, "amount": 5000, "subsidy_amount": 0,
               "splits": [{"receiver_id": rcv, "amount": 500}]}]
    trade = pay(m, create_trade(m, 5000, orders).json())
    r = m.call("POST", f"/v1/trades/{trade['trade_no']}/settle", {"out_request_no": "S1", "out_order_nos": ["O1"]})
    assert r.status_code == 200, r.text
    po = m.call("POST", "/v1/payouts", {"out_request_no": "P1", "amount": 4500, "sub_merchant_id": sid})
    assert po.status_code == 201, po.text
    return sid, po.json()["payout_no"]


def test_nothing_in_clear_and_everything_still_works(running, tmp_path):
    p = running.platform
    m = running.merchant()
    old_secret = m.secret
    new_secret = rotate_secret(p, m.app_id, grace_s=3600).app_secret  # the old one stays as previous
    m = MerchantClient(running.url, m.app_id, new_secret, m.merchant_id)
    sid, payout_no = _money_for_a_payout(running, m)
    assert wait_until(lambda: m.call("GET", f"/v1/payouts/{payout_no}").json()["status"] == "succeeded")

    dump = _raw_dump(p.db)
    for clear in (old_secret, new_secret, BANK["number"], ID_NUMBER):
        assert clear not in dump
    assert "v1." in dump and "***************0001" in dump  # sealed values and the masked copies

    # What the API shows is unchanged: masked numbers only.
    sub = m.call("GET", f"/v1/sub-merchants/{sid}").json()
    assert sub["kyc"]["id_number"] == "110***********002X"
    assert sub["bank_account"]["number"] == "***************0001"
    assert m.call("GET", f"/v1/payouts/{payout_no}").json()["bank_account"]["number"] == "***************0001"
    # The old secret still signs within its grace period (opened from previous_secret_sealed).
    assert MerchantClient(running.url, m.app_id, old_secret, m.merchant_id).call(
        "GET", f"/v1/sub-merchants/{sid}").status_code == 200
    # The bank was paid the full number, opened from the seal by the executor.
    sandbox = create_engine(f"sqlite:///{tmp_path}/sandbox.db")
    with sandbox.connect() as conn:
        numbers = {r[0] for r in conn.execute(text("SELECT account_number FROM sandbox_payouts"))}
    sandbox.dispose()
    assert numbers == {BANK["number"]}


def test_a_sealed_value_moved_to_another_row_does_not_open(running):
    p = running.platform
    a, b = running.merchant("A"), running.merchant("B")
    with p.db.read() as conn:
        sealed_a = conn.execute(text("SELECT secret_sealed FROM apps WHERE app_id = :a"), {"a": a.app_id}).scalar()
    with pytest.raises(SealError):
        open_column(p.sealer(), "apps", "secret_sealed", b.app_id, sealed_a)
    assert open_column(p.sealer(), "apps", "secret_sealed", a.app_id, sealed_a) == a.secret


def test_rotation_reseals_every_new_column_and_everything_still_verifies(make_platform):
    running = make_platform(workers=False)
    p = running.platform
    m = running.merchant()
    rotate_secret(p, m.app_id, grace_s=3600)
    old_creds = m
    m = MerchantClient(running.url, m.app_id, rotate_secret(p, m.app_id, grace_s=3600).app_secret, m.merchant_id)
    sid = seller(running, m)
    receiver_id(m)
    before = _raw_dump(p.db)

    summary = keys.rotate(p, NEW_KEY, operator="ops")["resealed"]
    for column in ("apps.secret_sealed", "apps.previous_secret_sealed", "sub_merchants.id_number_sealed",
                   "sub_merchants.account_number_sealed", "split_receivers.account_number_sealed"):
        assert summary[column] >= 1, column
    assert _raw_dump(p.db) != before

    # A platform started with the new key opens everything; one with the old key is refused at start.
    rotated = make_platform(workers=False, secret_key=NEW_KEY)
    m_new = MerchantClient(rotated.url, m.app_id, m.secret, m.merchant_id)
    sub = m_new.call("GET", f"/v1/sub-merchants/{sid}")
    assert sub.status_code == 200 and sub.json()["bank_account"]["number"] == "***************0001"
    assert MerchantClient(rotated.url, m.app_id, old_creds.secret, m.merchant_id).call(
        "GET", f"/v1/sub-merchants/{sid}").status_code == 401  # rotated twice: the first secret is gone
    with rotated.platform.db.read() as conn:
        row = conn.execute(text("SELECT * FROM sub_merchants WHERE sub_merchant_id = :s"), {"s": sid}).mappings().one()
    assert open_column(Sealer(NEW_KEY), "sub_merchants", "account_number_sealed", sid,
                       row["account_number_sealed"]) == BANK["number"]
    with pytest.raises(SettingsError, match="PIAOHAO_SECRET_KEY .* does not open"):
        keys.check_key(Platform(settings=running.settings, db=p.db, clock=SystemClock()))


def test_a_wrong_key_is_a_clear_error_not_garbage(make_platform):
    running = make_platform(workers=False)
    m = running.merchant()
    wrong = running.settings.with_(secret_key="a-wrong-key-that-is-long-enough-0123456789")
    with pytest.raises(SettingsError, match="PIAOHAO_SECRET_KEY .* does not open the secrets stored"):
        assemble(wrong)
    with pytest.raises(SealError, match="unknown key"):
        load_app_auth(Platform(settings=wrong, db=running.platform.db, clock=SystemClock()), m.app_id,
                      SystemClock().now())


def test_migration_seals_rows_stored_in_clear_and_downgrade_opens_them(empty_database_url):
    db = Database(empty_database_url)
    sealer = Sealer(TEST_SECRET_KEY)
    migrate.upgrade(db, "0011")
    now = SystemClock().now()
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO merchants (merchant_id, name, status, created_at) "
                          "VALUES ('mch_1', 'Old', 'active', :now)"), {"now": now.replace(tzinfo=None)})
        conn.execute(text("INSERT INTO apps (app_id, merchant_id, secret, previous_secret, status, created_at) "
                          "VALUES ('app_1', 'mch_1', 'current-secret-in-clear', 'previous-secret-in-clear', "
                          "'active', :now), ('app_2', 'mch_1', 'another-secret-in-clear', NULL, 'active', :now)"),
                     {"now": now.replace(tzinfo=None)})
        conn.execute(text(
            "INSERT INTO sub_merchants (sub_merchant_id, merchant_id, out_sub_merchant_id, name, kyc_type, legal_name, "
            "id_number, bank, account_number, account_name, settle_after_days, status, request_hash, created_at, "
            "updated_at) VALUES ('sub_1', 'mch_1', 'S1', 'Seller', 'individual', 'Li Lei', :idn, 'ICBC', :acc, "
            "'Li Lei', 1, 'active', 'h', :now, :now)"),
            {"idn": ID_NUMBER, "acc": BANK["number"], "now": now.replace(tzinfo=None)})
        conn.execute(text(
            "INSERT INTO split_receivers (receiver_id, merchant_id, out_receiver_id, name, bank, account_number, "
            "account_name, request_hash, created_at) VALUES ('rcv_1', 'mch_1', 'R1', 'Ref', 'ICBC', :acc, 'Ref', 'h', "
            ":now)"), {"acc": "6222000011112222", "now": now.replace(tzinfo=None)})
    migrate.upgrade(db, sealer=lambda: sealer)

    dump = _raw_dump(db)
    for clear in ("current-secret-in-clear", "previous-secret-in-clear", "another-secret-in-clear", ID_NUMBER,
                  BANK["number"], "6222000011112222"):
        assert clear not in dump
    with db.engine.connect() as conn:
        apps = {r.app_id: r for r in conn.execute(text("SELECT * FROM apps"))}
        sub = conn.execute(text("SELECT * FROM sub_merchants")).mappings().one()
        rcv = conn.execute(text("SELECT * FROM split_receivers")).mappings().one()
    assert sealer.open(apps["app_1"].secret_sealed, purpose=purpose("apps", "secret_sealed", "app_1")) \
        == "current-secret-in-clear"
    assert sealer.open(apps["app_1"].previous_secret_sealed,
                       purpose=purpose("apps", "previous_secret_sealed", "app_1")) == "previous-secret-in-clear"
    assert apps["app_2"].previous_secret_sealed is None
    assert sub["id_number_masked"] == "110***********002X" and sub["account_number_masked"] == "***************0001"
    assert sealer.open(sub["account_number_sealed"], purpose=purpose("sub_merchants", "account_number_sealed",
                                                                      "sub_1")) == BANK["number"]
    assert rcv["account_number_masked"] == "************2222"
    settings = Settings(database_url=empty_database_url, secret_key=TEST_SECRET_KEY)
    p = Platform(settings=settings, db=db, clock=SystemClock())
    assert load_app_auth(p, "app_2", now).secrets == ("another-secret-in-clear",)

    migrate.downgrade(db, "0011", sealer=lambda: sealer)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT secret FROM apps WHERE app_id = 'app_1'")).scalar() \
            == "current-secret-in-clear"
        assert conn.execute(text("SELECT account_number FROM sub_merchants")).scalar() == BANK["number"]
    db.dispose()

