"""Trouble on the way to Alipay is UNKNOWN, never failure: timeouts, proxies, system errors,
unsigned or wrongly signed answers, a wrong Alipay public key, nobody listening."""

from __future__ import annotations

from datetime import timedelta

import pytest

from piaohao.channels.spi import CreatePayment, Outcome, RefundRequest
from simulators.alipay import Fault
from tests.channels.alipay.conftest import make_channel, new_out_trade_no
from tests.support import patient
from tests.support.servers import free_port

TIMEOUT_S = 0.3  # the fake holds its answer until released, so this always expires


def _opened(merchant, alipay, amount: int = 1000) -> str:
    req = CreatePayment(new_out_trade_no(), amount, "CNY", "x", alipay.clock() + timedelta(minutes=30), "")
    assert patient.get(merchant.channel.create_payment(req).redirect_url).status_code == 200
    return req.payment_no


@pytest.fixture
def impatient(alipay, app_keys):
    m = make_channel(alipay, app_keys, timeout_s=TIMEOUT_S)
    yield m
    alipay.fake.faults.release_hang()
    m.http.close()


def test_timeouts_are_unknown_for_every_call(impatient, alipay):
    payment_no = _opened(impatient, alipay)
    alipay.fake.pay(payment_no, impatient.app_id)
    alipay.fake.faults.arm(Fault("hang"))
    channel = impatient.channel
    results = [channel.query_payment(payment_no), channel.close_payment(payment_no),
               channel.refund(RefundRequest(payment_no, "rf_t", 1, "CNY")), channel.query_refund("rf_t", payment_no)]
    assert [r.outcome for r in results] == [Outcome.UNKNOWN] * 4
    assert all("Timeout" in r.error for r in results)
    alipay.fake.faults.clear()
    assert channel.query_payment(payment_no).outcome is Outcome.SUCCEEDED


@pytest.mark.parametrize("kind", ["http_502", "unsigned_error", "bad_response_signature", "system_error"])
def test_untrustworthy_answers_are_unknown(merchant, alipay, kind):
    payment_no = _opened(merchant, alipay)
    alipay.fake.faults.arm(Fault(kind, out_trade_no=payment_no))
    assert merchant.channel.query_payment(payment_no).outcome is Outcome.UNKNOWN
    assert merchant.channel.close_payment(payment_no).outcome is Outcome.UNKNOWN
    alipay.fake.faults.clear()
    # A wrongly signed answer is refused even though the close took effect: UNKNOWN was right, query tells.
    applied = kind == "bad_response_signature"
    assert merchant.channel.query_payment(payment_no).outcome is (Outcome.CLOSED if applied else Outcome.PENDING)


def test_close_with_system_error_after_applying_is_unknown_and_query_tells(merchant, alipay):
    payment_no = _opened(merchant, alipay)
    alipay.fake.faults.arm(Fault("system_error", method="alipay.trade.close", apply=True, times=1))
    assert merchant.channel.close_payment(payment_no).outcome is Outcome.UNKNOWN
    assert merchant.channel.query_payment(payment_no).outcome is Outcome.CLOSED


def test_slow_answer_within_the_timeout_is_fine(merchant, alipay):
    payment_no = _opened(merchant, alipay)
    alipay.fake.faults.arm(Fault("slow", delay_s=0.05, times=1))
    assert merchant.channel.query_payment(payment_no).outcome is Outcome.PENDING


def test_wrong_alipay_public_key_makes_every_answer_unknown(alipay, app_keys, stranger_keys):
    m = make_channel(alipay, app_keys, alipay_public_key_pem=stranger_keys.public_pem)
    result = m.channel.query_payment(new_out_trade_no())
    assert result.outcome is Outcome.UNKNOWN and "signature" in result.error
    m.http.close()


def test_nobody_listening_is_unknown(alipay, app_keys):
    m = make_channel(alipay, app_keys, gateway_url=f"http://127.0.0.1:{free_port()}/gateway.do")
    assert m.channel.query_payment(new_out_trade_no()).outcome is Outcome.UNKNOWN
    assert m.channel.refund(RefundRequest(new_out_trade_no(), "rf", 1, "CNY")).outcome is Outcome.UNKNOWN
    m.http.close()


def test_keys_in_every_accepted_form_work(alipay, app_keys):
    """PKCS#1 or PKCS#8 PEM, or the bare base64 the Alipay console shows."""
    bare = "".join(ln for ln in app_keys.private_pkcs1_pem.splitlines() if not ln.startswith("-----"))
    alipay_bare = "".join(ln for ln in alipay.fake.alipay_public_key_pem.splitlines() if not ln.startswith("-----"))
    for private in (app_keys.private_pkcs1_pem, bare):
        from piaohao.channels.alipay import AlipayChannel, AlipayConfig

        app = alipay.fake.register_app(app_keys.public_b64)
        with patient.client() as http:
            channel = AlipayChannel(AlipayConfig(app.app_id, private, alipay_bare, alipay.gateway_url), http=http,
                                    now=alipay.clock)
            assert channel.query_payment(new_out_trade_no()).outcome is Outcome.NOT_FOUND
