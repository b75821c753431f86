"""The fake Alipay is strict where Alipay is: it refuses what Alipay refuses, and its control
endpoints and background notifier work for demos and other test suites."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl, urlencode

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from simulators.alipay import signing
from tests.channels.alipay.conftest import new_out_trade_no
from tests.support import patient

POLL_DEADLINE_S = 10.0


def _signed(app_id: str, keys, method: str, biz: dict | str, /, **override: str) -> dict[str, str]:
    params = {"app_id": app_id, "method": method, "format": "JSON", "charset": "utf-8", "sign_type": "RSA2",
              "timestamp": "2026-11-20 10:00:00", "version": "1.0",
              "biz_content": biz if isinstance(biz, str) else json.dumps(biz, ensure_ascii=False)}
    params.update(override)
    key = load_pem_private_key(keys.private_pkcs8_pem.encode(), None)
    encoding = "gbk" if params["charset"].lower() == "gbk" else "utf-8"
    params["sign"] = signing.sign(key, signing.request_content(params).encode(encoding))
    return params


@pytest.fixture
def app_id(alipay, app_keys) -> str:
    return alipay.fake.register_app(app_keys.public_pem).app_id


def _page(alipay, app_id, keys, **biz_override):
    biz = {"out_trade_no": new_out_trade_no(), "total_amount": "1.00", "subject": "x",
           "product_code": "FAST_INSTANT_TRADE_PAY", **biz_override}
    return patient.get(f"{alipay.gateway_url}?{urlencode(_signed(app_id, keys, 'alipay.trade.page.pay', biz))}")


@pytest.mark.parametrize("amount", [1, 1.5, "1e3", "1.234", "-1", "0.00", "01.00", " 1", "100000000.01"])
def test_total_amount_must_be_a_yuan_string_with_at_most_two_decimals(alipay, app_id, app_keys, amount):
    page = _page(alipay, app_id, app_keys, total_amount=amount)
    assert page.status_code == 400 and "ACQ.INVALID_PARAMETER" in page.text


@pytest.mark.parametrize("biz", [{"product_code": "QUICK_WAP_WAY"}, {"subject": ""}, {"out_trade_no": "a-b"},
                                 {"time_expire": "2026/11/20"}])
def test_page_pay_business_fields_are_checked(alipay, app_id, app_keys, biz):
    assert _page(alipay, app_id, app_keys, **biz).status_code == 400


def test_page_pay_accepts_yuan_without_decimals_and_one_decimal(alipay, app_id, app_keys):
    for amount, fen in (("20", 2000), ("0.5", 50)):
        no = new_out_trade_no()
        assert _page(alipay, app_id, app_keys, total_amount=amount, out_trade_no=no).status_code == 200
        assert alipay.fake.find_trade(no).total_fen == fen


@pytest.mark.parametrize("override, sub_code", [
    ({"sign_type": "RSA"}, "isv.invalid-signature-type"),
    ({"timestamp": "2026-11-20T10:00:00"}, "isv.invalid-timestamp"),
    ({"charset": "latin-1"}, "isv.invalid-charset"),
    ({"version": "2.0"}, "isv.invalid-version"),
    ({"app_id": "2021999999999999"}, "isv.invalid-app-id"),
    ({"timestamp": ""}, "isv.missing-timestamp"),
])
def test_common_parameters_are_checked(alipay, app_id, app_keys, override, sub_code):
    params = _signed(app_id, app_keys, "alipay.trade.query", {"out_trade_no": "x"}, **override)
    answer = patient.post(alipay.gateway_url, content=urlencode(params),
                        headers={"content-type": "application/x-www-form-urlencoded"}).json()
    member = answer.get("alipay_trade_query_response") or answer["error_response"]
    assert member["sub_code"] == sub_code and "sign" in answer


def test_a_changed_parameter_breaks_the_signature(alipay, app_id, app_keys):
    params = _signed(app_id, app_keys, "alipay.trade.query", {"out_trade_no": "x"})
    params["biz_content"] = params["biz_content"].replace('"x"', '"y"')
    member = patient.get(f"{alipay.gateway_url}?{urlencode(params)}").json()["alipay_trade_query_response"]
    assert (member["code"], member["sub_code"]) == ("40002", "isv.invalid-signature")


def test_gbk_requests_are_verified_over_gbk_bytes(alipay, app_id, app_keys):
    params = _signed(app_id, app_keys, "alipay.trade.query", {"out_trade_no": "x", "memo": "中文"}, charset="GBK")
    raw = urlencode(params, encoding="gbk").encode()
    answer = patient.post(alipay.gateway_url, content=raw,
                          headers={"content-type": "application/x-www-form-urlencoded"})
    member = json.loads(answer.content.decode("gbk"))["alipay_trade_query_response"]
    assert member["sub_code"] == "ACQ.TRADE_NOT_EXIST"


def test_responses_are_compact_member_first_sign_last(alipay, app_id, app_keys):
    params = _signed(app_id, app_keys, "alipay.trade.query", {"out_trade_no": "x"})
    text = patient.get(f"{alipay.gateway_url}?{urlencode(params)}").text
    assert text.startswith('{"alipay_trade_query_response":{"code":"40004"') and '},"sign":"' in text
    assert text.endswith('"}') and ": " not in text


def test_trade_finished_is_notified_and_cannot_be_refunded(alipay, app_id, app_keys):
    key, url = alipay.receiver.new_path()
    no = new_out_trade_no()
    biz = {"out_trade_no": no, "total_amount": "3.00", "subject": "x", "product_code": "FAST_INSTANT_TRADE_PAY"}
    page = _signed(app_id, app_keys, "alipay.trade.page.pay", biz, notify_url=url)
    assert patient.get(f"{alipay.gateway_url}?{urlencode(page)}").status_code == 200
    alipay.fake.pay(no)
    alipay.fake.finish(no)
    alipay.drain()
    assert [dict(parse_qsl(d.body.decode()))["trade_status"] for d in alipay.receiver.got(key)] == [
        "TRADE_SUCCESS", "TRADE_FINISHED"]
    params = _signed(app_id, app_keys, "alipay.trade.refund", {"out_trade_no": no, "refund_amount": "1.00"})
    member = patient.get(f"{alipay.gateway_url}?{urlencode(params)}").json()["alipay_trade_refund_response"]
    assert member["sub_code"] == "ACQ.TRADE_HAS_FINISHED"


def test_control_endpoints_onboard_pay_and_arm_faults_over_http(alipay, app_keys):
    with patient.client(base_url=alipay.url) as http:
        onboarded = http.post("/fake/apps", json={"public_key": app_keys.public_pem}).json()
        assert onboarded["alipay_public_key"] == http.get("/fake/alipay_public_key").text
        app_id = onboarded["app_id"]
        no = new_out_trade_no()
        biz = {"out_trade_no": no, "total_amount": "9.99", "subject": "x", "product_code": "FAST_INSTANT_TRADE_PAY"}
        http.get(f"/gateway.do?{urlencode(_signed(app_id, app_keys, 'alipay.trade.page.pay', biz))}")
        paid = http.post(f"/fake/trades/{no}/pay", params={"app_id": app_id}).json()
        assert (paid["status"], paid["total_amount"]) == ("TRADE_SUCCESS", "9.99")
        assert http.post(f"/fake/trades/{no}/pay").status_code == 409  # paid already
        assert http.post("/fake/faults", json={"kind": "http_502", "out_trade_no": no}).status_code == 201
        assert http.post("/fake/faults", json={"kind": "nonsense"}).status_code == 400
        query = _signed(app_id, app_keys, "alipay.trade.query", {"out_trade_no": no})
        assert http.get(f"/gateway.do?{urlencode(query)}").status_code == 502
        assert http.delete("/fake/faults").status_code == 204
        assert http.get(f"/gateway.do?{urlencode(query)}").json()["alipay_trade_query_response"]["code"] == "10000"
        assert http.post("/fake/notifier/run_once").json()["attempted"] >= 0


def test_background_notifier_delivers_without_being_driven(alipay, app_id, app_keys):
    from simulators.alipay import Notifier

    key, url = alipay.receiver.new_path()
    no = new_out_trade_no()
    biz = {"out_trade_no": no, "total_amount": "1.00", "subject": "x", "product_code": "FAST_INSTANT_TRADE_PAY"}
    page = _signed(app_id, app_keys, "alipay.trade.page.pay", biz, notify_url=url)
    assert patient.get(f"{alipay.gateway_url}?{urlencode(page)}").status_code == 200
    background = Notifier(alipay.fake)
    background.start(interval_s=0.01)
    try:
        alipay.fake.pay(no)
        deadline = time.monotonic() + POLL_DEADLINE_S
        while not alipay.receiver.got(key) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        background.close()
    assert len(alipay.receiver.got(key)) == 1
