"""Sub-merchants, receivers, combined payment, splits and settlement through real HTTP (API.md)."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, insert, select

from piaohao.clearing.batches import run_due
from piaohao.db.schema_clearing import receiver_counters, settlement_details, split_receivers
from piaohao.db.sealed import seal_column
from piaohao.kernel.clock import FakeClock
from tests.settlement.helpers import (
    BANK,
    balances,
    books_balance,
    create_trade,
    pay,
    posted,
    receiver_id,
    seller,
)
from tests.support.merchant import wait_until
from tests.support.steps import StepRecorder


def test_smoke_flow_two_sellers_split_subsidy_settle_and_payout(running):
    m = running.merchant()
    s1, s2 = seller(running, m), seller(running, m)
    rcv = receiver_id(m)
    orders = [{"out_order_no": "O1", "sub_merchant_id": s1, "amount": 10000, "subsidy_amount": 0,
               "splits": [{"receiver_id": rcv, "amount": 1000}]},
              {"out_order_no": "O2", "sub_merchant_id": s2, "amount": 5000, "subsidy_amount": 1000, "splits": []}]
    r = create_trade(m, 15000, orders)
    assert r.status_code == 201, r.text
    trade = r.json()
    assert [o["status"] for o in trade["orders"]] == ["created", "created"]
    paid = pay(m, trade)
    assert {o["out_order_no"]: o["status"] for o in paid["orders"]} == {"O1": "pending_settlement",
                                                                         "O2": "pending_settlement"}
    assert balances(m, "sub-merchants", s1) == {"pending_settlement": 10000, "settled": 0}
    assert balances(m, "sub-merchants", s2) == {"pending_settlement": 5000, "settled": 0}
    assert posted(running, "merchant_pending_settlement", m.merchant_id) == 0
    body = {"out_request_no": "S1", "out_order_nos": ["O1", "O2"]}
    r = m.call("POST", f"/v1/trades/{trade['trade_no']}/settle", body)
    assert r.status_code == 200, r.text
    assert {o["out_order_no"]: o["status"] for o in r.json()["orders"]} == {"O1": "settled", "O2": "settled"}
    again = m.call("POST", f"/v1/trades/{trade['trade_no']}/settle", body)
    assert again.status_code == 200 and again.json()["orders"] == r.json()["orders"]
    other = m.call("POST", f"/v1/trades/{trade['trade_no']}/settle", {"out_request_no": "S1", "out_order_nos": ["O1"]})
    assert other.status_code == 422
    assert balances(m, "sub-merchants", s1) == {"pending_settlement": 0, "settled": 9000}
    assert balances(m, "sub-merchants", s2) == {"pending_settlement": 0, "settled": 6000}
    assert balances(m, "split-receivers", rcv) == {"settled": 1000}
    p = m.call("POST", "/v1/payouts", {"out_request_no": "P1", "amount": 9000, "sub_merchant_id": s1})
    assert p.status_code == 201, p.text
    assert p.json()["bank_account"]["number"].endswith("0001") and "6222" not in p.json()["bank_account"]["number"]
    assert wait_until(lambda: m.call("GET", f"/v1/payouts/{p.json()['payout_no']}").json()["status"] == "succeeded")
    assert balances(m, "sub-merchants", s1) == {"pending_settlement": 0, "settled": 0}
    too_much = m.call("POST", "/v1/payouts", {"out_request_no": "P2", "amount": 1, "sub_merchant_id": s1})
    assert too_much.status_code == 409 and too_much.json()["code"] == "INSUFFICIENT_BALANCE"
    csv_text = m.call("GET", f"/v1/settlement-batches/{r.json()['orders'][0]['settlement']['batch_no']}/statement")
    assert csv_text.status_code == 200 and csv_text.text.splitlines()[-1].split(",")[3] == "total"
    books_balance(running)


def test_sub_merchant_rules_idempotency_masking_and_scoping(running):
    m, other = running.merchant(), running.merchant("Other")
    body = {"out_sub_merchant_id": "SUB1", "name": "Seller", "bank_account": BANK,
            "kyc": {"type": "enterprise", "legal_name": "Li Co", "id_number": "91110000100000000X"}}
    r = m.call("POST", "/v1/sub-merchants", body)
    assert r.status_code == 201 and r.json()["status"] == "pending_review" and r.json()["settle_after_days"] == 365
    assert r.json()["kyc"]["id_number"] == "911***********000X"
    assert r.json()["bank_account"]["number"] == "***************0001"
    assert m.call("POST", "/v1/sub-merchants", body).status_code == 200
    assert m.call("POST", "/v1/sub-merchants", dict(body, name="Else")).status_code == 422
    assert m.call("POST", "/v1/sub-merchants", dict(body, out_sub_merchant_id="S2", settle_after_days=366)
                  ).status_code == 400
    sid = r.json()["sub_merchant_id"]
    gone = other.call("GET", f"/v1/sub-merchants/{sid}")
    assert gone.status_code == 404 and gone.json()["code"] == "SUB_MERCHANT_NOT_FOUND"
    # not yet active: no orders for it
    t = create_trade(m, 100, [{"out_order_no": "O1", "sub_merchant_id": sid, "amount": 100}])
    assert t.status_code == 409 and t.json()["code"] == "SUB_MERCHANT_NOT_ACTIVE"


def test_order_validation_codes(running):
    m = running.merchant()
    s1 = seller(running, m)
    rcv = receiver_id(m)
    bad_sum = create_trade(m, 1000, [{"out_order_no": "O1", "sub_merchant_id": s1, "amount": 999}])
    assert bad_sum.status_code == 400 and bad_sum.json()["code"] == "INVALID_ORDERS"
    over = create_trade(m, 1000, [{"out_order_no": "O1", "sub_merchant_id": s1, "amount": 1000,
                                   "splits": [{"receiver_id": rcv, "amount": 310}]}])
    assert over.status_code == 400 and over.json()["code"] == "SPLIT_RATIO_EXCEEDED"
    at_cap = create_trade(m, 1000, [{"out_order_no": "O1", "sub_merchant_id": s1, "amount": 1000,
                                     "splits": [{"receiver_id": rcv, "amount": 200},
                                                {"receiver_id": "platform", "amount": 100}]}])
    assert at_cap.status_code == 201, at_cap.text
    zero = create_trade(m, 1000, [{"out_order_no": "O1", "sub_merchant_id": s1, "amount": 1000,
                                   "splits": [{"receiver_id": rcv, "amount": 0}]}])
    assert zero.status_code == 400
    unknown = create_trade(m, 1000, [{"out_order_no": "O1", "sub_merchant_id": s1, "amount": 1000,
                                      "splits": [{"receiver_id": "rcv_nope", "amount": 10}]}])
    assert unknown.status_code == 404
    dup = create_trade(m, 1000, [{"out_order_no": "O1", "sub_merchant_id": s1, "amount": 500},
                                 {"out_order_no": "O1", "sub_merchant_id": s1, "amount": 500}])
    assert dup.status_code == 400 and dup.json()["code"] == "INVALID_ORDERS"
    # the fingerprint covers the orders
    body_orders = [{"out_order_no": "O1", "sub_merchant_id": s1, "amount": 1000}]
    from tests.api.test_gateway import trade_body

    body = trade_body("SAME", 1000, orders=body_orders)
    assert m.call("POST", "/v1/trades", body).status_code == 201
    assert m.call("POST", "/v1/trades", body).status_code == 200
    changed = dict(body, orders=[dict(body_orders[0], subsidy_amount=1)])
    assert m.call("POST", "/v1/trades", changed).status_code == 422


def test_unpaid_trade_is_not_settlable_and_plain_trade_settles_to_the_merchant(running):
    m = running.merchant()
    t = create_trade(m, 700, None)
    assert t.status_code == 201
    trade = t.json()
    r = m.call("POST", f"/v1/trades/{trade['trade_no']}/settle", {"out_request_no": "S1"})
    assert r.status_code == 409 and r.json()["code"] == "TRADE_NOT_SETTLABLE"
    pay(m, trade)
    assert m.call("GET", "/v1/balance").json()["balances"] == {"pending_settlement": 700, "settled": 0}
    r = m.call("POST", f"/v1/trades/{trade['trade_no']}/settle", {"out_request_no": "S2"})
    assert r.status_code == 200, r.text
    assert m.call("GET", "/v1/balance").json()["balances"] == {"pending_settlement": 0, "settled": 700}
    books_balance(running)


def test_platform_commission_reaches_the_merchant_balance(running):
    m = running.merchant()
    s1 = seller(running, m)
    trade = create_trade(m, 2000, [{"out_order_no": "O1", "sub_merchant_id": s1, "amount": 2000,
                                    "splits": [{"receiver_id": "platform", "amount": 300}]}]).json()
    pay(m, trade)
    assert m.call("POST", f"/v1/trades/{trade['trade_no']}/settle", {"out_request_no": "S"}).status_code == 200
    assert m.call("GET", "/v1/balance").json()["balances"] == {"pending_settlement": 0, "settled": 300}
    assert balances(m, "sub-merchants", s1) == {"pending_settlement": 0, "settled": 1700}


def test_receiver_limit_20000_accepted_then_refused_through_the_api(running, backend):
    m = running.merchant()
    now, sealer = running.platform.clock.now(), running.platform.sealer()
    with running.platform.db.engine.begin() as conn:
        rows = [{"receiver_id": f"rcv_bulk{i:06d}", "merchant_id": m.merchant_id, "out_receiver_id": f"B{i}",
                 "name": "r", "bank": "ICBC", "account_name": "r", "account_number_masked": "***************0001",
                 "account_number_sealed": seal_column(sealer, "split_receivers", "account_number_sealed",
                                                      f"rcv_bulk{i:06d}", "6222020200112230001"),
                 "request_hash": "x", "created_at": now} for i in range(19_999)]
        conn.execute(insert(split_receivers), rows)
        conn.execute(insert(receiver_counters).values(merchant_id=m.merchant_id, receivers=19_999))
    last = m.call("POST", "/v1/split-receivers", {"out_receiver_id": "LAST", "name": "r", "bank_account": BANK})
    assert last.status_code == 201, last.text
    refused = m.call("POST", "/v1/split-receivers", {"out_receiver_id": "OVER", "name": "r", "bank_account": BANK})
    assert refused.status_code == 409 and refused.json()["code"] == "RECEIVER_LIMIT_EXCEEDED"
    replay = m.call("POST", "/v1/split-receivers", {"out_receiver_id": "LAST", "name": "r", "bank_account": BANK})
    assert replay.status_code == 200
    with running.platform.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(split_receivers).where(
            split_receivers.c.merchant_id == m.merchant_id)).scalar_one() == 20_000


def test_receiver_limit_holds_under_concurrency(make_platform):
    running = make_platform(split_receivers_max=5)
    m = running.merchant()

    def one(i):
        return m.call("POST", "/v1/split-receivers", {"out_receiver_id": f"R{i}", "name": "r", "bank_account": BANK})

    with ThreadPoolExecutor(10) as pool:
        codes = [r.status_code for r in pool.map(one, range(20))]
    assert codes.count(201) == 5 and codes.count(409) == 15


def test_refund_after_settlement_recovers_seller_share_and_commission_in_proportion(running):
    m = running.merchant()
    s1, s2 = seller(running, m), seller(running, m)
    rcv = receiver_id(m)
    trade = create_trade(m, 13000, [
        {"out_order_no": "O1", "sub_merchant_id": s1, "amount": 10000,
         "splits": [{"receiver_id": rcv, "amount": 1000}, {"receiver_id": "platform", "amount": 2000}]},
        {"out_order_no": "O2", "sub_merchant_id": s2, "amount": 3000}]).json()
    pay(m, trade)
    # before settlement: comes out of the seller's pending settlement, splits cancelled in proportion
    no_order = m.call("POST", "/v1/refunds", {"trade_no": trade["trade_no"], "out_request_no": "R0", "amount": 100})
    assert no_order.status_code == 400
    r = m.call("POST", "/v1/refunds", {"trade_no": trade["trade_no"], "out_request_no": "R1", "amount": 1000,
                                       "out_order_no": "O1"})
    assert r.status_code == 201, r.text
    assert wait_until(lambda: m.call("GET", f"/v1/refunds/{r.json()['refund_no']}").json()["status"] == "succeeded")
    assert balances(m, "sub-merchants", s1)["pending_settlement"] == 9000
    assert m.call("POST", f"/v1/trades/{trade['trade_no']}/settle", {"out_request_no": "S"}).status_code == 200
    # 9000 left of 10000: seller 7000*0.9=6300, receiver 900, commission 1800
    assert balances(m, "sub-merchants", s1) == {"pending_settlement": 0, "settled": 6300}
    assert balances(m, "split-receivers", rcv) == {"settled": 900}
    assert m.call("GET", "/v1/balance").json()["balances"]["settled"] == 1800
    # after settlement: recovered from the seller's, the receiver's and the commission, same proportions
    r = m.call("POST", "/v1/refunds", {"trade_no": trade["trade_no"], "out_request_no": "R2", "amount": 5000,
                                       "out_order_no": "O1"})
    assert r.status_code == 201, r.text
    assert wait_until(lambda: m.call("GET", f"/v1/refunds/{r.json()['refund_no']}").json()["status"] == "succeeded")
    assert balances(m, "sub-merchants", s1) == {"pending_settlement": 0, "settled": 2800}  # 7000*0.4
    assert balances(m, "split-receivers", rcv) == {"settled": 400}
    assert m.call("GET", "/v1/balance").json()["balances"]["settled"] == 800
    over = m.call("POST", "/v1/refunds", {"trade_no": trade["trade_no"], "out_request_no": "R3", "amount": 4001,
                                          "out_order_no": "O1"})
    assert over.status_code == 409
    books_balance(running)


def test_unconfirmed_orders_settle_by_themselves_when_their_period_ends(make_platform):
    clock = FakeClock(dt.datetime.now(dt.UTC))
    running = make_platform(clock=clock)
    m = running.merchant()
    s1 = seller(running, m, days=7)
    trade = create_trade(m, 4000, [{"out_order_no": "O1", "sub_merchant_id": s1, "amount": 4000,
                                    "subsidy_amount": 500}]).json()
    pay(m, trade)
    p = running.platform
    assert run_due(p, clock.now() + dt.timedelta(days=6, hours=23))["orders"] == 0
    assert balances(m, "sub-merchants", s1) == {"pending_settlement": 4000, "settled": 0}
    summary = run_due(p, clock.now() + dt.timedelta(days=7, minutes=1))
    assert summary["orders"] == 1 and summary["batches"] == 1
    assert balances(m, "sub-merchants", s1) == {"pending_settlement": 0, "settled": 4500}
    assert m.call("GET", f"/v1/trades/{trade['trade_no']}").json()["orders"][0]["status"] == "settled"
    assert run_due(p, clock.now() + dt.timedelta(days=400))["orders"] == 0  # exactly once
    with p.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(settlement_details)).scalar_one() == 1
    books_balance(running)


def test_a_watched_run_reports_one_step_per_page(make_platform):
    clock = FakeClock(dt.datetime.now(dt.UTC))
    running = make_platform(clock=clock)
    m = running.merchant()
    s1 = seller(running, m, days=1)
    trade = create_trade(m, 3000, [{"out_order_no": f"O{i}", "sub_merchant_id": s1, "amount": 1000}
                                   for i in range(3)]).json()
    pay(m, trade)
    steps = StepRecorder()
    summary = run_due(running.platform, clock.now() + dt.timedelta(days=2), chunk=2, progress=steps)
    assert summary["orders"] == 3  # what `settlement run`'s bar shows: pages of 2, then the orders so far
    assert steps.calls == [("start", "settle due orders", 2), ("advance", "2 settled"), ("advance", "3 settled")]


def test_settlement_run_cli_settles_as_of_the_given_time(running, monkeypatch):
    from structlog.testing import capture_logs
    from typer.testing import CliRunner

    from piaohao.cli import app

    # As another test in the same worker may leave it (seen in CI): structlog configured in part by
    # capture_logs, with the default factory that prints to stdout. The answer stays pure JSON.
    with capture_logs():
        pass
    m = running.merchant()
    trade = create_trade(m, 900, None).json()
    pay(m, trade)
    monkeypatch.setenv("PIAOHAO_DATABASE_URL", running.settings.database_url)
    monkeypatch.setenv("PIAOHAO_SECRET_KEY", running.settings.secret_key)
    monkeypatch.setenv("PIAOHAO_SANDBOX", "on")
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=23)).isoformat()
    result = CliRunner().invoke(app, ["settlement", "run", "--as-of", tomorrow, "--json"])
    assert result.exit_code == 0, result.output
    assert '"orders": 0' in result.output  # the merchant's period is 1 day
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1, minutes=5)).isoformat()
    monkeypatch.setenv("PIAOHAO_LOG_LEVEL", "INFO")  # settling logs at INFO: on stderr, never in the answer
    result = CliRunner().invoke(app, ["settlement", "run", "--as-of", later, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["orders"] == 1  # stdout is the JSON answer and nothing else
    assert m.call("GET", "/v1/balance").json()["balances"] == {"pending_settlement": 0, "settled": 900}


def test_marketing_cap_refused_and_released_on_close(make_platform):
    running = make_platform(marketing_daily_cap=1000)
    m = running.merchant()
    s1 = seller(running, m)

    def with_subsidy(x):
        return create_trade(m, 500, [{"out_order_no": "O1", "sub_merchant_id": s1, "amount": 500,
                                      "subsidy_amount": x}])

    first = with_subsidy(800)
    assert first.status_code == 201
    refused = with_subsidy(300)
    assert refused.status_code == 409 and refused.json()["code"] == "MARKETING_CAP_EXCEEDED"
    closed = m.call("POST", f"/v1/trades/{first.json()['trade_no']}/close")
    assert closed.status_code == 200 and closed.json()["orders"][0]["status"] == "closed"
    assert with_subsidy(1000).status_code == 201
    assert with_subsidy(1).status_code == 409


def test_frozen_seller_refuses_orders_and_payouts(running):
    from piaohao.services.sub_merchants import change_status

    m = running.merchant()
    s1 = seller(running, m)
    change_status(running.platform, s1, "freeze")
    t = create_trade(m, 100, [{"out_order_no": "O1", "sub_merchant_id": s1, "amount": 100}])
    assert t.status_code == 409 and t.json()["code"] == "SUB_MERCHANT_NOT_ACTIVE"
    assert m.call("GET", f"/v1/sub-merchants/{s1}").json()["status"] == "frozen"
    change_status(running.platform, s1, "unfreeze")
    assert create_trade(m, 100, [{"out_order_no": "O1", "sub_merchant_id": s1, "amount": 100}]).status_code == 201
