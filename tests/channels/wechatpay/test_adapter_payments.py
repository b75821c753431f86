"""The adapter against the fake on a real loopback port: prepay for each product, query, close,
exact amounts, and every kind of trouble reading as UNKNOWN (never as failure)."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from piaohao.channels.spi import NextActionType, Outcome

from .conftest import Account, Served, make_channel
from .support import payment_request, poll

AMOUNTS_FEN = [1, 10, 99, 100, 101, 1999, 10**12]


def pay(served: Served, account: Account, amount: int = 1999, **kw) -> str:
    req = payment_request(account.notify_url, amount, served.clock(), **kw)
    created = account.channel.create_payment(req)
    assert created.outcome is Outcome.PENDING, created
    served.fake.pay(req.payment_no, mchid=account.merchant.mchid)
    return req.payment_no


def test_native_prepay_gives_a_qr_code(served, account):
    result = account.channel.create_payment(payment_request(account.notify_url, 1999, served.clock()))
    assert result.outcome is Outcome.PENDING
    assert result.next_action.type is NextActionType.QR_CODE
    assert result.next_action.code_url.startswith("weixin://wxpay/bizpayurl?pr=")


def test_create_is_idempotent_on_the_payment_number(served, account):
    req = payment_request(account.notify_url, 500, served.clock())
    first = account.channel.create_payment(req)
    again = account.channel.create_payment(req)
    assert again.outcome is Outcome.PENDING and again.next_action == first.next_action


def test_time_expire_is_sent_as_rfc3339_in_beijing_time(served, account):
    req = payment_request(account.notify_url, 500, served.clock())
    account.channel.create_payment(req)
    trade = served.fake.state.trades[(account.merchant.mchid, req.payment_no)]
    assert '+08:00"' in trade.request_fingerprint
    assert trade.time_expire.utcoffset() == timedelta(hours=8)
    assert trade.time_expire == req.expires_at.replace(microsecond=0)


def test_h5_prepay_redirects_to_the_h5_url(served, account):
    result = account.channel.create_payment(payment_request(
        account.notify_url, 100, served.clock(), product="wechatpay.h5", client_ip="203.0.113.7"))
    assert result.outcome is Outcome.PENDING
    assert result.next_action.type is NextActionType.REDIRECT
    assert result.redirect_url == result.next_action.url and result.redirect_url.startswith("https://wx.tenpay.com/")


def test_h5_without_the_client_ip_fails_before_calling(served, account):
    result = account.channel.create_payment(payment_request(account.notify_url, 100, served.clock(),
                                                            product="wechatpay.h5"))
    assert result.outcome is Outcome.FAILED and "client_ip" in result.error


def test_jsapi_prepay_gives_signed_bridge_parameters(served, account, mkeys):
    result = account.channel.create_payment(payment_request(
        account.notify_url, 100, served.clock(), product="wechatpay.jsapi", openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"))
    assert result.outcome is Outcome.PENDING and result.next_action.type is NextActionType.JSAPI
    p = result.next_action.params
    assert set(p) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert p["appId"] == account.merchant.appid and p["signType"] == "RSA" and p["package"].startswith("prepay_id=wx")
    assert p["timeStamp"] == str(int(served.clock().timestamp()))
    message = f"{p['appId']}\n{p['timeStamp']}\n{p['nonceStr']}\n{p['package']}\n".encode()
    public = serialization.load_pem_public_key(mkeys.public_pem.encode())
    public.verify(base64.b64decode(p["paySign"]), message, padding.PKCS1v15(), hashes.SHA256())


def test_jsapi_without_openid_fails_before_calling(served, account):
    result = account.channel.create_payment(payment_request(account.notify_url, 100, served.clock(),
                                                            product="wechatpay.jsapi"))
    assert result.outcome is Outcome.FAILED


def test_query_pending_then_succeeded_after_the_buyer_pays(served, account):
    req = payment_request(account.notify_url, 1999, served.clock())
    account.channel.create_payment(req)
    assert account.channel.query_payment(req.payment_no).outcome is Outcome.PENDING
    served.fake.pay(req.payment_no, mchid=account.merchant.mchid)
    paid = account.channel.query_payment(req.payment_no)
    assert paid.outcome is Outcome.SUCCEEDED and paid.amount == 1999 and paid.currency == "CNY"
    assert paid.channel_txn_no.startswith("4200") and paid.paid_at is not None


def test_query_of_an_unknown_payment_is_not_found(account):
    assert account.channel.query_payment("NOSUCHPAYMENT01").outcome is Outcome.NOT_FOUND


@pytest.mark.parametrize("amount", AMOUNTS_FEN)
def test_amounts_round_trip_exactly(served, account, amount):
    no = pay(served, account, amount)
    paid = account.channel.query_payment(no)
    assert paid.outcome is Outcome.SUCCEEDED and paid.amount == amount and type(paid.amount) is int


def test_close_an_unpaid_payment_is_closed(served, account):
    req = payment_request(account.notify_url, 100, served.clock())
    account.channel.create_payment(req)
    assert account.channel.close_payment(req.payment_no).outcome is Outcome.CLOSED
    assert account.channel.close_payment(req.payment_no).outcome is Outcome.CLOSED  # re-entrant
    assert account.channel.query_payment(req.payment_no).outcome is Outcome.CLOSED


def test_close_a_paid_payment_says_succeeded(served, account):
    no = pay(served, account, 100)
    closed = account.channel.close_payment(no)
    assert closed.outcome is Outcome.SUCCEEDED and closed.amount == 100


def test_close_an_unknown_payment_is_not_found_never_closed(account):
    assert account.channel.close_payment("NOSUCHPAYMENT02").outcome is Outcome.NOT_FOUND


def test_a_timeout_is_unknown_and_the_order_exists_after_all(served, account, mkeys, http):
    fast, _ = make_channel(served, mkeys, account.merchant, account.config.platform_serial, http, timeout_s=0.3)
    req = payment_request(account.notify_url, 100, served.clock())
    served.fake.faults.set("slow", out_trade_no=req.payment_no, delay_s=1.5)
    assert fast.create_payment(req).outcome is Outcome.UNKNOWN
    assert fast.query_payment(req.payment_no).outcome is Outcome.UNKNOWN
    served.fake.faults.clear()
    assert poll(lambda: fast.query_payment(req.payment_no).outcome is Outcome.PENDING, lambda: None)


def test_a_system_error_is_unknown(served, account):
    req = payment_request(account.notify_url, 100, served.clock())
    served.fake.faults.set("system_error", out_trade_no=req.payment_no)
    result = account.channel.create_payment(req)
    assert result.outcome is Outcome.UNKNOWN and "500" in result.error
    assert account.channel.close_payment(req.payment_no).outcome is Outcome.UNKNOWN


def test_an_unreachable_channel_is_unknown(served, account, mkeys, http):
    import dataclasses

    channel, config = make_channel(served, mkeys, account.merchant, account.config.platform_serial, http)
    channel.wire.config = dataclasses.replace(config, base_url="http://127.0.0.1:9")
    result = channel.create_payment(payment_request(account.notify_url, 100, served.clock()))
    assert result.outcome is Outcome.UNKNOWN and "transport" in result.error


def test_an_answer_that_does_not_verify_is_unknown_never_failed(served, account, mkeys, other_keys, http):
    wrong_platform, _ = make_channel(served, mkeys, account.merchant, account.config.platform_serial, http,
                                     platform_pem=other_keys.public_pem)
    req = payment_request(account.notify_url, 100, served.clock())
    result = wrong_platform.create_payment(req)
    assert result.outcome is Outcome.UNKNOWN and "signature" in result.error
    bad = wrong_platform.create_payment(payment_request(account.notify_url, 0, served.clock()))
    assert bad.outcome is Outcome.UNKNOWN  # even a refusal is not believed unsigned-by-us
    assert wrong_platform.query_payment("NOSUCHPAYMENT03").outcome is Outcome.UNKNOWN


def test_a_request_signed_with_the_wrong_key_is_unknown(served, account, mkeys, other_keys, http):
    wrong_key, _ = make_channel(served, mkeys, account.merchant, account.config.platform_serial, http,
                                private_pem=other_keys.private_pem)
    result = wrong_key.create_payment(payment_request(account.notify_url, 100, served.clock()))
    assert result.outcome is Outcome.UNKNOWN and "SIGN_ERROR" in result.error


def test_a_refused_parameter_is_failed(served, account):
    result = account.channel.create_payment(payment_request(account.notify_url, 0, served.clock()))
    assert result.outcome is Outcome.FAILED and "PARAM_ERROR" in result.error


def test_creating_an_already_paid_payment_reports_it_paid(served, account):
    req = payment_request(account.notify_url, 300, served.clock())
    account.channel.create_payment(req)
    served.fake.pay(req.payment_no, mchid=account.merchant.mchid)
    again = account.channel.create_payment(req)
    assert again.outcome is Outcome.SUCCEEDED and again.amount == 300


def test_products_and_caps(account):
    names = [p.name for p in account.channel.products]
    assert names == ["wechatpay.native", "wechatpay.h5", "wechatpay.jsapi"]
    assert [p.needs_openid for p in account.channel.products] == [False, False, True]
    assert all(p.amount_max_minor == 10**10 for p in account.channel.products)
