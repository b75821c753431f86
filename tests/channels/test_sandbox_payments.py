"""The sandbox's merchant API for payments, its signatures both ways, and the buyer page."""

from __future__ import annotations

import orjson

from piaohao.channels.sandbox import SandboxChannel, onboard_remote, rsa
from piaohao.channels.sandbox.wire import response_canonical
from piaohao.channels.spi import Outcome
from tests.support import patient

from .conftest import CLIENT_TIMEOUT_S
from .helpers import buyer, create_payment, key, paid_payment, signed_request


def test_onboarding_over_http_then_a_signed_round_trip(sandbox, platform_keys):
    mch_id, channel_pem = onboard_remote(sandbox.base_url, platform_keys[1])
    assert channel_pem == sandbox.store.channel_keys().public_pem
    channel = SandboxChannel(sandbox.base_url, mch_id, platform_keys[0], channel_pem, timeout_s=CLIENT_TIMEOUT_S)
    payment_no, created = create_payment(channel, sandbox.receiver.url + "/notify/x", amount=1234)
    assert created.outcome is Outcome.PENDING
    assert created.redirect_url.startswith(f"{sandbox.base_url}/pay/")
    assert created.channel_txn_no and created.amount == 1234 and created.currency == "CNY"
    queried = channel.query_payment(payment_no)
    assert queried.outcome is Outcome.PENDING and queried.channel_txn_no == created.channel_txn_no


def test_answers_are_signed_by_the_channel_key(sandbox, merchant, platform_keys):
    response = signed_request(sandbox.base_url, merchant[0], platform_keys[0], "POST", "/api/query",
                              b'{"out_trade_no":"nothing-here"}')
    assert response.status_code == 404 and response.json()["code"] == "TRADE_NOT_EXIST"
    signed = response_canonical(response.headers["Sandbox-Timestamp"], response.content)
    assert rsa.verify(merchant[1], signed, response.headers["Sandbox-Signature"])


def test_a_request_with_a_bad_signature_is_refused(sandbox, merchant, platform_keys):
    other_private, _ = rsa.generate_key_pair()
    body = b'{"out_trade_no":"abc"}'
    forged = signed_request(sandbox.base_url, merchant[0], other_private, "POST", "/api/query", body)
    assert forged.status_code == 401 and forged.json()["code"] == "INVALID_SIGNATURE"
    missing = signed_request(sandbox.base_url, merchant[0], platform_keys[0], "POST", "/api/query", body, signature="")
    assert missing.status_code == 401
    stale = signed_request(sandbox.base_url, merchant[0], platform_keys[0], "POST", "/api/query", body,
                           timestamp=1_000_000_000)
    assert stale.status_code == 401 and stale.json()["code"] == "TIMESTAMP_EXPIRED"
    stranger = signed_request(sandbox.base_url, "M000", platform_keys[0], "POST", "/api/query", body)
    assert stranger.status_code == 401 and stranger.json()["code"] == "UNKNOWN_MERCHANT"


def test_the_adapter_says_unknown_when_its_own_key_is_refused(sandbox, merchant):
    wrong_private, _ = rsa.generate_key_pair()
    channel = SandboxChannel(sandbox.base_url, merchant[0], wrong_private, merchant[1], timeout_s=CLIENT_TIMEOUT_S)
    assert channel.query_payment("whatever").outcome is Outcome.UNKNOWN
    _, created = create_payment(channel, sandbox.receiver.url + "/notify/x")
    assert created.outcome is Outcome.UNKNOWN and "401" in created.error


def test_an_answer_whose_signature_does_not_verify_is_unknown(sandbox, merchant, platform_keys):
    _, stranger_public = rsa.generate_key_pair()
    channel = SandboxChannel(sandbox.base_url, merchant[0], platform_keys[0], stranger_public,
                             timeout_s=CLIENT_TIMEOUT_S)
    _, created = create_payment(channel, sandbox.receiver.url + "/notify/x")
    assert created.outcome is Outcome.UNKNOWN and "signature" in created.error


def test_pay_is_idempotent_on_out_trade_no(channel, sandbox):
    payment_no, first = create_payment(channel, sandbox.receiver.url + "/notify/x", amount=500)
    _, again = create_payment(channel, sandbox.receiver.url + "/notify/x", amount=500, payment_no=payment_no)
    assert again.outcome is Outcome.PENDING
    assert (again.channel_txn_no, again.redirect_url) == (first.channel_txn_no, first.redirect_url)
    _, other_amount = create_payment(channel, sandbox.receiver.url + "/notify/x", amount=501, payment_no=payment_no)
    assert other_amount.outcome is Outcome.FAILED and "OUT_TRADE_NO_CONFLICT" in other_amount.error


def test_amounts_must_be_positive_integers(sandbox, merchant, platform_keys):
    base = {"out_trade_no": key(), "currency": "CNY", "subject": "s", "notify_url": "http://x/n",
            "expire_at": "2099-01-01T00:00:00+08:00"}
    for bad in (10.5, "100", True, -1, 0, 10**16, None):
        body = orjson.dumps({**base, "amount": bad})
        response = signed_request(sandbox.base_url, merchant[0], platform_keys[0], "POST", "/api/pay", body)
        assert response.status_code == 400 and response.json()["code"] == "INVALID_AMOUNT", bad


def test_buyer_page_in_html_and_json(channel, sandbox):
    _, created = create_payment(channel, sandbox.receiver.url + "/notify/x", amount=777)
    html = patient.get(created.redirect_url)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"] and "777" in html.text
    data = patient.get(created.redirect_url, headers={"Accept": "application/json"}).json()
    assert data["status"] == "WAIT_PAY" and data["amount"] == 777
    assert data["succeed_url"] == created.redirect_url + "/succeed"
    assert patient.get(f"{sandbox.base_url}/pay/T-nope").status_code == 404


def test_the_page_form_settles_with_a_chosen_mode(channel, sandbox):
    payment_no, created = create_payment(channel, sandbox.receiver.url + "/notify/x")
    form = patient.post(created.redirect_url + "/succeed", data={"notify": "never"})
    assert form.status_code == 200 and "SUCCESS" in form.text
    assert channel.query_payment(payment_no).outcome is Outcome.SUCCEEDED


def test_succeed_is_idempotent_and_paid_details_come_from_the_channel(channel, sandbox):
    payment_no, created = paid_payment(channel, sandbox.receiver.url + "/notify/x", amount=4321)
    assert buyer(created.redirect_url, "succeed").status_code == 200
    paid = channel.query_payment(payment_no)
    assert paid.outcome is Outcome.SUCCEEDED
    assert (paid.amount, paid.currency, paid.channel_txn_no) == (4321, "CNY", created.channel_txn_no)
    assert paid.paid_at is not None and paid.paid_at.tzinfo is not None
    assert buyer(created.redirect_url, "fail").status_code == 409


def test_fail_makes_the_payment_failed(channel, sandbox):
    payment_no, created = create_payment(channel, sandbox.receiver.url + "/notify/x")
    assert buyer(created.redirect_url, "fail").status_code == 200
    assert buyer(created.redirect_url, "fail").status_code == 200
    assert channel.query_payment(payment_no).outcome is Outcome.FAILED
    assert buyer(created.redirect_url, "succeed").status_code == 409


def test_close_of_an_unpaid_payment_closes_it(channel, sandbox):
    payment_no, created = create_payment(channel, sandbox.receiver.url + "/notify/x")
    assert channel.close_payment(payment_no).outcome is Outcome.CLOSED
    assert channel.close_payment(payment_no).outcome is Outcome.CLOSED
    assert channel.query_payment(payment_no).outcome is Outcome.CLOSED
    assert buyer(created.redirect_url, "succeed").status_code == 409


def test_close_of_a_paid_payment_says_it_is_paid(channel, sandbox):
    payment_no, created = paid_payment(channel, sandbox.receiver.url + "/notify/x", amount=999)
    closed = channel.close_payment(payment_no)
    assert closed.outcome is Outcome.SUCCEEDED
    assert (closed.amount, closed.channel_txn_no) == (999, created.channel_txn_no) and closed.paid_at


def test_unknown_orders_are_not_found(channel):
    assert channel.query_payment(key()).outcome is Outcome.NOT_FOUND
    assert channel.close_payment(key()).outcome is Outcome.NOT_FOUND


def test_an_expired_payment_is_closed_and_cannot_be_paid(channel, sandbox):
    payment_no, created = create_payment(channel, sandbox.receiver.url + "/notify/x", expires_in_s=-1)
    assert created.outcome is Outcome.CLOSED
    assert buyer(f"{sandbox.base_url}/pay/{created.channel_txn_no}", "succeed").status_code == 409
    assert channel.query_payment(payment_no).outcome is Outcome.CLOSED


def test_onboarding_can_reuse_the_merchant_of_a_known_key(sandbox):
    from piaohao.channels.sandbox import onboard

    _, public_pem = rsa.generate_key_pair()
    first, _ = onboard(sandbox.store, public_pem, reuse_existing=True)
    assert onboard(sandbox.store, public_pem, reuse_existing=True)[0] == first
    assert onboard_remote(sandbox.base_url, public_pem, reuse_existing=True)[0] == first
    assert onboard(sandbox.store, public_pem)[0] != first
    refused = patient.post(f"{sandbox.base_url}/api/merchants", json={"platform_public_key_pem": "nope"})
    assert refused.status_code == 400 and refused.json()["code"] == "INVALID_KEY"
