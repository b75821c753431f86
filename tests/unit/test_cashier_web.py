"""The cashier page's pure parts: the time left as a buyer reads it, the buyer's form as a pay
request, error codes in words, which state shows a pay button."""

from __future__ import annotations

import pytest

from piaohao.kernel.errors import CoinsCapExceeded, InvalidComponents, InvalidPaymentPassword, TradeNotPayable
from piaohao.web.cashier import cashier_page, clock_text, error_text, page_state, read_form


def _view(**over) -> dict:
    view = {"trade_no": "tr_1", "subject": "socks", "amount": 1999, "currency": "CNY", "status": "pending",
            "member_id": None, "expires_at": "", "pay_url": "http://x/cashier/tok", "token": "tok",
            "return_url": None, "seconds_left": 600, "coins_cap_minor": 0, "purpose": "sale",
            "methods": [{"method": "sandbox", "name": "Sandbox channel (test payments)", "kind": "channel"}]}
    return {**view, **over}


@pytest.mark.parametrize(("seconds", "shown"), [(899, "14:59"), (60, "01:00"), (3725, "1:02:05"), (0, "00:00"),
                                                (-5, "00:00")])
def test_time_left_reads_as_a_clock(seconds, shown):
    assert clock_text(seconds) == shown


@pytest.mark.parametrize(("status", "seconds_left", "state"), [
    ("pending", 10, "payable"), ("pending", 0, "expired"), ("succeeded", 10, "paid"),
    ("refunded", 10, "refunded"), ("closed", 10, "closed")])
def test_only_a_pending_unexpired_trade_is_payable(status, seconds_left, state):
    view = _view(status=status, seconds_left=seconds_left)
    assert page_state(view) == state
    assert ('class="pay"' in cashier_page(view)) == (state == "payable")


def test_the_combination_form_becomes_coins_plus_the_rest():
    asked = read_form({"form": "combo", "coins_amount": " 500 ", "rest_method": "balance",
                       "payment_password": " 246810"})
    assert asked.components == [("coins", 500), ("balance", None)] and asked.method is None
    assert asked.payment_password == " 246810"  # a password is taken as typed
    with pytest.raises(InvalidComponents):
        read_form({"form": "combo", "coins_amount": "5.5", "rest_method": "balance"})
    single = read_form({"form": "netbank", "method": "netbank", "bank": "CMB"})
    assert (single.method, single.bank, single.components) == ("netbank", "CMB", None)


def test_errors_read_as_sentences_with_the_coins_cap_in_money():
    assert error_text(CoinsCapExceeded("x"), _view(coins_cap_minor=999)) == "Coins can pay at most ¥9.99 of this order."
    assert "password is wrong" in error_text(InvalidPaymentPassword("x"))
    assert error_text(TradeNotPayable("the trade is closed")) == "This order can no longer be paid."
