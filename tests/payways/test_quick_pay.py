"""Quick pay (快捷支付): binding cards with the SMS code, paying with a bound card through the
channel with no redirect, alone and in components; refunds to the card; statements; numbers masked."""

from __future__ import annotations

from sqlalchemy import select

from piaohao.db.schema_payways import member_cards
from tests.e2e.test_member_payments import fund_balance
from tests.e2e.test_payments import assert_books_balance
from tests.payways.helpers import (
    CARD_DECLINED,
    CARD_OK,
    CARD_SLOW,
    ID_NUMBER,
    PASSWORD,
    PHONE,
    active_card,
    bind,
    confirm,
    member_trade,
    new_member,
    pay,
    trade_of,
    wait_trade,
)
from tests.support import patient
from tests.support.merchant import wait_until


def test_binding_a_card_needs_the_sms_code_and_shows_only_last4(running):
    m = running.merchant()
    member = new_member(m)
    r = bind(m, member)
    assert r.status_code == 201, r.text
    card = r.json()
    assert card["status"] == "pending" and card["last4"] == "8888" and card["bank"] == "ICBC"
    assert CARD_OK not in r.text and ID_NUMBER not in r.text and PHONE not in r.text
    r = confirm(m, member, card["card_id"], "000000")
    assert r.status_code == 400 and r.json()["code"] == "INVALID_SMS_CODE"
    r = confirm(m, member, card["card_id"])
    assert r.status_code == 200 and r.json()["status"] == "active"
    listed = m.call("GET", f"/v1/members/{member}/cards")
    assert listed.status_code == 200 and [c["card_id"] for c in listed.json()] == [card["card_id"]]
    assert CARD_OK not in listed.text


def test_the_third_wrong_sms_code_fails_the_card(running):
    m = running.merchant()
    member = new_member(m)
    card_id = bind(m, member).json()["card_id"]
    for _ in range(3):
        r = confirm(m, member, card_id, "123456")
        assert r.status_code == 400 and r.json()["code"] == "INVALID_SMS_CODE"
    assert m.call("GET", f"/v1/members/{member}/cards").json()[0]["status"] == "failed"
    r = confirm(m, member, card_id)
    assert r.status_code == 409 and r.json()["code"] == "CARD_NOT_ACTIVE"


def test_card_requests_are_checked_and_scoped_to_the_merchant(running):
    m, other = running.merchant(), running.merchant("Other")
    member = new_member(m)
    r = m.call("POST", f"/v1/members/{member}/cards", {"card_no": "12ab", "holder_name": "Li Lei",
                                                       "id_number": ID_NUMBER, "phone": PHONE})
    assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST" and "12ab" not in r.text
    assert bind(other, member).status_code == 404
    card_id = active_card(m, member)
    assert other.call("GET", f"/v1/members/{member}/cards").json()["code"] == "MEMBER_NOT_FOUND"
    assert confirm(other, member, card_id).json()["code"] == "CARD_NOT_FOUND"
    assert other.call("DELETE", f"/v1/members/{member}/cards/{card_id}").status_code == 404


def test_card_numbers_are_sealed_at_rest_and_absent_from_logs(running, capfd):
    m = running.merchant()
    member = new_member(m)
    capfd.readouterr()
    card_id = active_card(m, member)
    trade = member_trade(m, None, member, 300)
    assert pay(trade, {"method": "quick", "card_id": card_id, "payment_password": PASSWORD}).status_code == 200
    out, err = capfd.readouterr()
    logged = out + err
    assert "card.bound" in logged and "8888" in logged  # the logs are captured, and carry last4 only
    with running.platform.db.read() as conn:
        row = conn.execute(select(member_cards).where(member_cards.c.card_id == card_id)).mappings().one()
    stored = " ".join(str(v) for v in row.values())
    assert CARD_OK not in stored and ID_NUMBER not in stored and PHONE not in stored
    assert running.platform.sealer().open(row["card_no_sealed"], purpose="card_no") == CARD_OK
    assert CARD_OK not in logged and ID_NUMBER not in logged and PHONE not in logged


def test_quick_pay_succeeds_with_no_redirect_and_refunds_to_the_card(running, receiver):
    m = running.merchant()
    member = new_member(m)
    card_id = active_card(m, member)
    trade = member_trade(m, receiver, member, 1500)
    view = patient.get(trade["pay_url"], headers={"Accept": "application/json"}).json()
    quick = next(x for x in view["methods"] if x["method"] == "quick")
    assert quick["cards"] == [{"card_id": card_id, "bank": "ICBC", "last4": "8888"}]
    r = pay(trade, {"method": "quick", "card_id": card_id, "payment_password": "wrong-1"})
    assert r.status_code == 403 and r.json()["code"] == "INVALID_PAYMENT_PASSWORD"
    r = pay(trade, {"method": "quick", "card_id": card_id, "payment_password": PASSWORD})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    assert "redirect_url" not in r.json()
    paid = trade_of(m, trade)
    assert paid["status"] == "succeeded" and paid["components"][0]["method"] == "quick"
    assert wait_until(lambda: receiver.events("trade.succeeded"))
    r = m.call("POST", "/v1/refunds", {"trade_no": trade["trade_no"], "out_request_no": "R1", "amount": 1500})
    assert r.status_code == 201, r.text
    assert wait_until(lambda: m.call("GET", f"/v1/refunds/{r.json()['refund_no']}").json()["status"] == "succeeded")
    assert trade_of(m, trade)["status"] == "refunded"
    day = paid["paid_at"][:10]
    csv = m.call("GET", f"/v1/statements/{day}").text
    assert trade["trade_no"] in csv and csv.count(trade["trade_no"]) == 2  # the payment and its refund
    assert_books_balance(running)


def test_a_declined_card_is_payment_declined_and_holds_nothing(running, receiver):
    m = running.merchant()
    member = new_member(m)
    fund_balance(running, member, 1000)
    card_id = active_card(m, member, CARD_DECLINED)
    trade = member_trade(m, receiver, member, 1500)
    r = pay(trade, {"components": [{"method": "balance", "amount": 500}, {"method": "quick"}],
                    "card_id": card_id, "payment_password": PASSWORD})
    assert r.status_code == 409 and r.json()["code"] == "PAYMENT_DECLINED", r.text
    member_view = m.call("GET", f"/v1/members/{member}").json()
    assert member_view["accounts"]["balance"] == {"available": 1000, "frozen": 0}
    assert trade_of(m, trade)["status"] == "pending"
    assert_books_balance(running)


def test_quick_pay_as_the_channel_part_of_components(running, receiver):
    m = running.merchant()
    member = new_member(m)
    fund_balance(running, member, 1000)
    card_id = active_card(m, member)
    trade = member_trade(m, receiver, member, 1500)
    r = pay(trade, {"components": [{"method": "balance", "amount": 600}, {"method": "quick"}],
                    "card_id": card_id, "payment_password": PASSWORD})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    paid = trade_of(m, trade)
    assert {c["method"]: c["amount"] for c in paid["components"]} == {"balance": 600, "quick": 900}
    assert_books_balance(running)


def test_a_processing_card_payment_settles_by_the_banks_notification(running, receiver):
    m = running.merchant()
    member = new_member(m)
    card_id = active_card(m, member, CARD_SLOW)
    trade = member_trade(m, receiver, member, 700)
    r = pay(trade, {"method": "quick", "card_id": card_id, "payment_password": PASSWORD})
    assert r.status_code == 200 and r.json()["status"] == "processing", r.text
    again = pay(trade, {"method": "quick", "card_id": card_id, "payment_password": PASSWORD})
    assert again.json() == r.json()  # the same attempt, still processing
    assert trade_of(m, trade)["status"] == "pending"
    sandbox = running.assembly.sandbox_service
    with sandbox.store.read() as conn:
        txn_no = conn.execute(select(sandbox.t.payments.c.txn_no).where(
            sandbox.t.payments.c.out_trade_no == r.json()["payment_no"])).scalar_one()
    sandbox.succeed(txn_no)  # the bank settles it
    assert wait_trade(m, trade, "succeeded")
    assert_books_balance(running)


def test_unbound_and_foreign_cards_cannot_pay(running, receiver):
    m = running.merchant()
    member, stranger = new_member(m), new_member(m)
    card_id = active_card(m, member)
    trade = member_trade(m, receiver, stranger, 100)
    r = pay(trade, {"method": "quick", "card_id": card_id, "payment_password": PASSWORD})
    assert r.status_code == 404 and r.json()["code"] == "CARD_NOT_FOUND"
    assert m.call("DELETE", f"/v1/members/{member}/cards/{card_id}").json()["status"] == "unbound"
    trade = member_trade(m, receiver, member, 100)
    r = pay(trade, {"method": "quick", "card_id": card_id, "payment_password": PASSWORD})
    assert r.status_code == 409 and r.json()["code"] == "CARD_NOT_ACTIVE"
    r = pay(trade, {"method": "quick", "payment_password": PASSWORD})
    assert r.status_code == 400
    view = patient.get(trade["pay_url"], headers={"Accept": "application/json"}).json()
    assert "quick" not in {x["method"] for x in view["methods"]}
