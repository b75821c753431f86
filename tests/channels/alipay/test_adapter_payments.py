"""AlipayChannel against the fake Alipay on a loopback port: pay, query, close, amounts."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from piaohao.channels.alipay import AMOUNT_FEN_MAX
from piaohao.channels.spi import CreatePayment, NextActionType, Outcome
from tests.channels.alipay.conftest import new_out_trade_no
from tests.support import patient

NOTIFY_URL = "https://piaohao.example/channels/alipay/notify"


def _create(merchant, alipay, amount: int = 1999, product: str = "alipay.page", **kw):
    req = CreatePayment(payment_no=kw.pop("payment_no", new_out_trade_no()), amount=amount, currency="CNY",
                        subject=kw.pop("subject", "会员充值"), expires_at=alipay.clock() + timedelta(minutes=30),
                        notify_url=kw.pop("notify_url", NOTIFY_URL), return_url="https://shop.example/done",
                        product=product, **kw)
    return req, merchant.channel.create_payment(req)


def _open(result) -> httpx.Response:
    """The buyer's browser follows the redirect to the cashier."""
    return patient.get(result.next_action.url)


def test_create_payment_is_a_signed_redirect_and_makes_no_call(merchant, alipay):
    req, result = _create(merchant, alipay)
    assert result.outcome is Outcome.PENDING
    assert result.next_action.type is NextActionType.REDIRECT and result.redirect_url == result.next_action.url
    query = parse_qs(urlsplit(result.redirect_url).query)
    assert query["method"] == ["alipay.trade.page.pay"] and query["sign_type"] == ["RSA2"]
    assert query["notify_url"] == [NOTIFY_URL]
    beijing = (req.expires_at + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")  # the clock is UTC
    assert f'"time_expire":"{beijing}"' in query["biz_content"][0]
    with pytest.raises(KeyError):
        alipay.fake.find_trade(req.payment_no)  # nothing at Alipay until the browser comes


def test_pay_then_query_succeeds_with_exact_amount(merchant, alipay):
    req, result = _create(merchant, alipay, amount=1999)
    assert merchant.channel.query_payment(req.payment_no).outcome is Outcome.NOT_FOUND
    assert _open(result).status_code == 200
    assert merchant.channel.query_payment(req.payment_no).outcome is Outcome.PENDING
    trade = alipay.fake.pay(req.payment_no, merchant.app_id)
    paid = merchant.channel.query_payment(req.payment_no)
    assert (paid.outcome, paid.amount, paid.currency, paid.channel_txn_no) == (
        Outcome.SUCCEEDED, 1999, "CNY", trade.trade_no)
    assert paid.paid_at == alipay.clock()


def test_wap_product_uses_the_wap_method(merchant, alipay):
    req, result = _create(merchant, alipay, product="alipay.wap")
    assert parse_qs(urlsplit(result.redirect_url).query)["method"] == ["alipay.trade.wap.pay"]
    assert _open(result).status_code == 200
    assert alipay.fake.find_trade(req.payment_no).product_code == "QUICK_WAP_WAY"


@pytest.mark.parametrize("amount", [1, 10, 99, 100, 101, 1999])
def test_amounts_round_trip_exactly(merchant, alipay, amount):
    req, result = _create(merchant, alipay, amount=amount)
    assert _open(result).status_code == 200
    assert alipay.fake.find_trade(req.payment_no).total_fen == amount
    alipay.fake.pay(req.payment_no, merchant.app_id)
    assert merchant.channel.query_payment(req.payment_no).amount == amount


def test_largest_amount_alipay_takes_round_trips_and_beyond_it_is_refused(merchant, alipay):
    req, result = _create(merchant, alipay, amount=AMOUNT_FEN_MAX)
    assert _open(result).status_code == 200
    alipay.fake.pay(req.payment_no, merchant.app_id)
    assert merchant.channel.query_payment(req.payment_no).amount == AMOUNT_FEN_MAX
    for too_big in (AMOUNT_FEN_MAX + 1, 10**12):
        _, refused = _create(merchant, alipay, amount=too_big)
        assert refused.outcome is Outcome.FAILED and refused.redirect_url is None
    assert all(p.amount_max_minor == AMOUNT_FEN_MAX for p in merchant.channel.products)


def test_unknown_product_and_currency_fail_without_a_call(merchant, alipay):
    assert _create(merchant, alipay, product="alipay.app")[1].outcome is Outcome.FAILED
    req = CreatePayment(new_out_trade_no(), 100, "USD", "x", alipay.clock() + timedelta(minutes=5), NOTIFY_URL)
    assert merchant.channel.create_payment(req).outcome is Outcome.FAILED


def test_close_before_the_buyer_opened_the_page_is_not_found(merchant, alipay):
    req, _ = _create(merchant, alipay)
    closed = merchant.channel.close_payment(req.payment_no)
    assert closed.outcome is Outcome.NOT_FOUND  # never CLOSED: Alipay knows nothing to close


def test_close_after_the_page_was_opened_is_closed_and_stays_closed(merchant, alipay):
    req, result = _create(merchant, alipay)
    _open(result)
    closed = merchant.channel.close_payment(req.payment_no)
    assert closed.outcome is Outcome.CLOSED and closed.channel_txn_no
    assert merchant.channel.query_payment(req.payment_no).outcome is Outcome.CLOSED
    assert merchant.channel.close_payment(req.payment_no).outcome is Outcome.CLOSED  # again: still closed
    assert _open(result).status_code == 400  # the buyer cannot pay a closed trade


def test_close_after_the_buyer_paid_answers_succeeded(merchant, alipay):
    req, result = _create(merchant, alipay, amount=501)
    _open(result)
    alipay.fake.pay(req.payment_no, merchant.app_id)
    closed = merchant.channel.close_payment(req.payment_no)
    assert (closed.outcome, closed.amount) == (Outcome.SUCCEEDED, 501)


def test_an_expired_trade_queries_closed(merchant, alipay):
    req, result = _create(merchant, alipay)
    _open(result)
    alipay.clock.advance(minutes=31)
    assert merchant.channel.query_payment(req.payment_no).outcome is Outcome.CLOSED


def test_a_url_opened_after_its_time_expire_cannot_be_paid(merchant, alipay):
    req, result = _create(merchant, alipay)
    alipay.clock.advance(minutes=31)
    assert _open(result).status_code == 400
    assert merchant.channel.query_payment(req.payment_no).outcome is Outcome.NOT_FOUND
