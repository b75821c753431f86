"""The fake Alipay is faithful: Alipay's own client SDKs from PyPI talk to it unchanged.

- official `alipay-sdk-python` (`alipay.aop.api`): it builds, signs and sends every request
  (POST, common parameters in the query, `biz_content` in the form body) and checks every
  response signature itself (`DefaultAlipayClient.execute` raises on a bad one);
- community `python-alipay-sdk` (`AliPay`): GET with everything in the query, `biz_content`
  serialised differently (`\\uXXXX` escapes), its own response check, and `verify(data, sign)`
  for notifications.
Each test also shows the check is real: a wrong key on either side is refused.
"""

from __future__ import annotations

import io
import json
import zipfile
from urllib.parse import parse_qsl

import pytest

from tests.channels.alipay.conftest import new_out_trade_no
from tests.channels.alipay.sdks import community_version, load_community, official_transport
from tests.support import patient

SUBJECT = "测试商品 piaohao"


# --- official SDK ------------------------------------------------------------------------------

def _official_client(alipay, app_id: str, private_pkcs1_pem: str, alipay_public_pem: str):
    from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
    from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient

    config = AlipayClientConfig()
    config.server_url = alipay.gateway_url
    config.app_id = app_id
    config.app_private_key = private_pkcs1_pem
    config.alipay_public_key = alipay_public_pem
    return DefaultAlipayClient(alipay_client_config=config)


@pytest.fixture
def official(alipay, app_keys, monkeypatch):
    official_transport(monkeypatch)
    app = alipay.fake.register_app(app_keys.public_b64)
    return app, _official_client(alipay, app.app_id, app_keys.private_pkcs1_pem, alipay.fake.alipay_public_key_pem)


def _official_page_url(client, method: str, out_trade_no: str, amount: str, notify_url: str) -> str:
    from alipay.aop.api.domain.AlipayTradePagePayModel import AlipayTradePagePayModel
    from alipay.aop.api.domain.AlipayTradeWapPayModel import AlipayTradeWapPayModel
    from alipay.aop.api.request.AlipayTradePagePayRequest import AlipayTradePagePayRequest
    from alipay.aop.api.request.AlipayTradeWapPayRequest import AlipayTradeWapPayRequest

    page = method == "page"
    model = AlipayTradePagePayModel() if page else AlipayTradeWapPayModel()
    model.out_trade_no, model.total_amount, model.subject = out_trade_no, amount, SUBJECT
    model.product_code = "FAST_INSTANT_TRADE_PAY" if page else "QUICK_WAP_WAY"
    request = AlipayTradePagePayRequest(biz_model=model) if page else AlipayTradeWapPayRequest(biz_model=model)
    request.notify_url = notify_url
    request.return_url = "https://merchant.example/return"
    return client.page_execute(request, http_method="GET")


def _official_call(client, request_cls, model_cls, response_cls, **fields):
    model = model_cls()
    for name, value in fields.items():
        setattr(model, name, value)
    text = client.execute(request_cls(biz_model=model))  # raises unless the response signature verifies
    response = response_cls()
    response.parse_response_content(text)
    return response


def _official_query(client, out_trade_no: str):
    from alipay.aop.api.domain.AlipayTradeQueryModel import AlipayTradeQueryModel
    from alipay.aop.api.request.AlipayTradeQueryRequest import AlipayTradeQueryRequest
    from alipay.aop.api.response.AlipayTradeQueryResponse import AlipayTradeQueryResponse

    return _official_call(client, AlipayTradeQueryRequest, AlipayTradeQueryModel, AlipayTradeQueryResponse,
                          out_trade_no=out_trade_no)


def _official_close(client, out_trade_no: str):
    from alipay.aop.api.domain.AlipayTradeCloseModel import AlipayTradeCloseModel
    from alipay.aop.api.request.AlipayTradeCloseRequest import AlipayTradeCloseRequest
    from alipay.aop.api.response.AlipayTradeCloseResponse import AlipayTradeCloseResponse

    return _official_call(client, AlipayTradeCloseRequest, AlipayTradeCloseModel, AlipayTradeCloseResponse,
                          out_trade_no=out_trade_no)


def _official_sdk_verifies_notification(params: dict[str, str], alipay_public_pem: str) -> bool:
    """The official SDK has no notification helper; its own primitives do it as Alipay documents."""
    from alipay.aop.api.util.SignatureUtils import get_sign_content, verify_with_rsa

    rest = {k: v for k, v in params.items() if k not in ("sign", "sign_type")}
    try:
        return verify_with_rsa(alipay_public_pem, get_sign_content(rest).encode("utf-8"), params["sign"])
    except Exception:  # the rsa package raises VerificationError on a bad signature
        return False


def test_official_sdk_page_and_wap_pay_urls_open_the_cashier_and_create_the_trade(alipay, official):
    app, client = official
    for method in ("page", "wap"):
        out_trade_no = new_out_trade_no()
        url = _official_page_url(client, method, out_trade_no, "19.99", f"{alipay.receiver.url}/notify/x")
        page = patient.get(url)
        assert page.status_code == 200, page.text
        assert "19.99" in page.text and SUBJECT in page.text
        trade = alipay.fake.find_trade(out_trade_no, app.app_id)
        assert (trade.total_fen, trade.status) == (1999, "WAIT_BUYER_PAY")


def test_official_sdk_auto_submit_form_posts_to_the_cashier(alipay, official):
    """The SDK's default for page pay: an HTML form POSTing common params in the URL, biz_content in the body."""
    from html.parser import HTMLParser

    from alipay.aop.api.domain.AlipayTradePagePayModel import AlipayTradePagePayModel
    from alipay.aop.api.request.AlipayTradePagePayRequest import AlipayTradePagePayRequest

    class Form(HTMLParser):
        def __init__(self):
            super().__init__()
            self.action, self.fields = "", {}

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "form":
                self.action = a["action"]
            elif tag == "input" and a.get("type") == "hidden":
                self.fields[a["name"]] = a["value"]

    app, client = official
    model = AlipayTradePagePayModel()
    model.out_trade_no, model.total_amount, model.subject = new_out_trade_no(), "0.01", 'say "hi"'
    model.product_code = "FAST_INSTANT_TRADE_PAY"
    form = Form()
    form.feed(client.page_execute(AlipayTradePagePayRequest(biz_model=model)))
    assert set(form.fields) == {"biz_content"} and "sign=" in form.action
    page = patient.post(form.action, data=form.fields)
    assert page.status_code == 200, page.text
    assert alipay.fake.find_trade(model.out_trade_no, app.app_id).subject == 'say "hi"'


def test_official_sdk_full_cycle_query_refund_refund_query_close(alipay, official):
    from alipay.aop.api.domain.AlipayTradeFastpayRefundQueryModel import AlipayTradeFastpayRefundQueryModel
    from alipay.aop.api.domain.AlipayTradeRefundModel import AlipayTradeRefundModel
    from alipay.aop.api.request.AlipayTradeFastpayRefundQueryRequest import AlipayTradeFastpayRefundQueryRequest
    from alipay.aop.api.request.AlipayTradeRefundRequest import AlipayTradeRefundRequest
    from alipay.aop.api.response.AlipayTradeFastpayRefundQueryResponse import AlipayTradeFastpayRefundQueryResponse
    from alipay.aop.api.response.AlipayTradeRefundResponse import AlipayTradeRefundResponse

    app, client = official
    out_trade_no = new_out_trade_no()
    # Before the buyer opens the page the trade does not exist at Alipay.
    closed = _official_close(client, out_trade_no)
    assert (closed.code, closed.sub_code) == ("40004", "ACQ.TRADE_NOT_EXIST")

    key, notify_url = alipay.receiver.new_path()
    assert patient.get(_official_page_url(client, "page", out_trade_no, "100.00", notify_url)).status_code == 200
    assert _official_query(client, out_trade_no).trade_status == "WAIT_BUYER_PAY"
    alipay.fake.pay(out_trade_no, app.app_id)
    paid = _official_query(client, out_trade_no)
    assert (paid.code, paid.trade_status, paid.total_amount) == ("10000", "TRADE_SUCCESS", "100.00")

    refund = _official_call(client, AlipayTradeRefundRequest, AlipayTradeRefundModel, AlipayTradeRefundResponse,
                            out_trade_no=out_trade_no, refund_amount="30.01", out_request_no="rf_1")
    assert (refund.code, refund.fund_change, refund.refund_fee) == ("10000", "Y", "30.01")
    again = _official_call(client, AlipayTradeRefundRequest, AlipayTradeRefundModel, AlipayTradeRefundResponse,
                           out_trade_no=out_trade_no, refund_amount="30.01", out_request_no="rf_1")
    assert (again.code, again.fund_change, again.refund_fee) == ("10000", "N", "30.01")
    query = _official_call(client, AlipayTradeFastpayRefundQueryRequest, AlipayTradeFastpayRefundQueryModel,
                           AlipayTradeFastpayRefundQueryResponse, out_trade_no=out_trade_no, out_request_no="rf_1")
    assert (query.refund_status, query.refund_amount) == ("REFUND_SUCCESS", "30.01")
    assert _official_close(client, out_trade_no).sub_code == "ACQ.TRADE_STATUS_ERROR"

    alipay.drain()
    notes = [dict(parse_qsl(d.body.decode())) for d in alipay.receiver.got(key)]
    assert [n["trade_status"] for n in notes] == ["TRADE_SUCCESS", "TRADE_SUCCESS"]
    assert notes[1]["out_biz_no"] == "rf_1" and notes[1]["refund_fee"] == "30.01"
    assert all(_official_sdk_verifies_notification(n, alipay.fake.alipay_public_key_pem) for n in notes)


def test_official_sdk_bill_download_url_serves_a_gbk_zip(alipay, official):
    from alipay.aop.api.domain.AlipayDataDataserviceBillDownloadurlQueryModel import (
        AlipayDataDataserviceBillDownloadurlQueryModel,
    )
    from alipay.aop.api.request.AlipayDataDataserviceBillDownloadurlQueryRequest import (
        AlipayDataDataserviceBillDownloadurlQueryRequest,
    )
    from alipay.aop.api.response.AlipayDataDataserviceBillDownloadurlQueryResponse import (
        AlipayDataDataserviceBillDownloadurlQueryResponse,
    )

    app, client = official
    bill_date = alipay.clock().date()
    out_trade_no = new_out_trade_no()
    assert patient.get(_official_page_url(client, "page", out_trade_no, "12.34", "")).status_code == 200
    alipay.fake.pay(out_trade_no, app.app_id)

    def ask():
        return _official_call(client, AlipayDataDataserviceBillDownloadurlQueryRequest,
                              AlipayDataDataserviceBillDownloadurlQueryModel,
                              AlipayDataDataserviceBillDownloadurlQueryResponse,
                              bill_type="trade", bill_date=bill_date.isoformat())

    assert ask().code == "40004"  # today's bill does not exist yet
    alipay.clock.advance(days=1)
    answer = ask()
    assert answer.code == "10000"
    data = patient.get(answer.bill_download_url).content
    with zipfile.ZipFile(io.BytesIO(data), metadata_encoding="gbk") as zf:
        names = zf.namelist()
        detail = next(n for n in names if n.endswith("业务明细.csv"))
        text = zf.read(detail).decode("gbk")
    assert text.startswith("#支付宝业务明细查询")
    assert f"{out_trade_no}\t,交易," in text and ",12.34,12.34," in text and ",-0.07," in text


def test_official_sdk_refuses_a_response_signed_by_someone_else(alipay, app_keys, stranger_keys, monkeypatch):
    from alipay.aop.api.exception.Exception import ResponseException

    official_transport(monkeypatch)
    app = alipay.fake.register_app(app_keys.public_b64)
    client = _official_client(alipay, app.app_id, app_keys.private_pkcs1_pem, stranger_keys.public_pem)
    with pytest.raises(ResponseException, match="sign verify failed"):
        _official_query(client, new_out_trade_no())


def test_fake_refuses_a_request_signed_with_a_key_it_does_not_know(alipay, app_keys, stranger_keys, monkeypatch):
    official_transport(monkeypatch)
    app = alipay.fake.register_app(app_keys.public_b64)
    client = _official_client(alipay, app.app_id, stranger_keys.private_pkcs1_pem, alipay.fake.alipay_public_key_pem)
    answer = _official_query(client, new_out_trade_no())
    assert (answer.code, answer.sub_code) == ("40002", "isv.invalid-signature")
    page = patient.get(_official_page_url(client, "page", new_out_trade_no(), "1.00", ""))
    assert page.status_code == 400 and "isv.invalid-signature" in page.text


# --- community SDK -----------------------------------------------------------------------------

@pytest.fixture
def community_module():
    module = load_community()
    if module is None:
        pytest.skip("python-alipay-sdk not installed: make installs it with pip --target (see tests/.../sdks.py)")
    return module


@pytest.fixture
def community(alipay, app_keys, community_module):
    app = alipay.fake.register_app(app_keys.public_pem)
    client = community_module.AliPay(appid=app.app_id, app_private_key_string=app_keys.private_pkcs8_pem,
                                     alipay_public_key_string=alipay.fake.alipay_public_key_pem, sign_type="RSA2")
    client._gateway = alipay.gateway_url  # the SDK's only knob for the host is `debug=True` (Alipay's sandbox)
    return app, client


def test_community_sdk_version_is_the_pinned_one(community_module):
    assert community_version() == "3.4.0"


def test_community_sdk_full_cycle_and_notification_verify(alipay, community):
    app, client = community
    out_trade_no = new_out_trade_no()
    assert client.api_alipay_trade_close(out_trade_no=out_trade_no)["sub_code"] == "ACQ.TRADE_NOT_EXIST"

    key, notify_url = alipay.receiver.new_path()
    query_string = client.api_alipay_trade_page_pay(SUBJECT, out_trade_no, "0.01", notify_url=notify_url,
                                                    return_url="https://merchant.example/return")
    assert patient.get(f"{alipay.gateway_url}?{query_string}").status_code == 200
    wap = client.api_alipay_trade_wap_pay(SUBJECT, new_out_trade_no(), "2.00", notify_url=notify_url)
    assert patient.get(f"{alipay.gateway_url}?{wap}").status_code == 200  # its QUICK_WAP_PAY is accepted too

    assert client.api_alipay_trade_query(out_trade_no=out_trade_no)["trade_status"] == "WAIT_BUYER_PAY"
    alipay.fake.pay(out_trade_no, app.app_id)
    paid = client.api_alipay_trade_query(out_trade_no=out_trade_no)
    assert (paid["trade_status"], paid["total_amount"]) == ("TRADE_SUCCESS", "0.01")

    refund = client.api_alipay_trade_refund("0.01", out_trade_no=out_trade_no, out_request_no="rf_all")
    assert (refund["fund_change"], refund["refund_fee"]) == ("Y", "0.01")
    query = client.api_alipay_trade_fastpay_refund_query("rf_all", out_trade_no=out_trade_no)
    assert query["refund_status"] == "REFUND_SUCCESS"
    assert "refund_status" not in client.api_alipay_trade_fastpay_refund_query("nope", out_trade_no=out_trade_no)
    assert client.api_alipay_trade_query(out_trade_no=out_trade_no)["trade_status"] == "TRADE_CLOSED"

    alipay.drain()
    deliveries = alipay.receiver.got(key)
    notes = [dict(parse_qsl(d.body.decode())) for d in deliveries]
    assert [n["trade_status"] for n in notes] == ["TRADE_SUCCESS", "TRADE_CLOSED"]
    for note in notes:
        signature = note.pop("sign")
        assert client.verify(dict(note), signature)
        note["total_amount"] = "100.00"
        assert not client.verify(note, signature)


def test_community_sdk_refuses_forged_and_unsigned_answers(alipay, app_keys, stranger_keys, community,
                                                           community_module):
    app, _ = community
    forger = community_module.AliPay(appid=app.app_id, app_private_key_string=app_keys.private_pkcs8_pem,
                                     alipay_public_key_string=stranger_keys.public_pem, sign_type="RSA2")
    forger._gateway = alipay.gateway_url
    with pytest.raises(community_module.AliPayValidationError):
        forger.api_alipay_trade_query(out_trade_no=new_out_trade_no())

    alipay.fake.faults.arm(_fault("unsigned_error"))
    _, client = community
    with pytest.raises(community_module.AliPayException):
        client.api_alipay_trade_query(out_trade_no=new_out_trade_no())


def test_community_sdk_biz_content_escapes_are_verified_over_the_received_text(alipay, community):
    """python-alipay-sdk sends `\\uXXXX` escapes and no spaces; the official SDK raw UTF-8: both verify."""
    _, client = community
    data = client.build_body("alipay.trade.query", {"out_trade_no": new_out_trade_no(), "note": "中文"})
    signed = client.sign_data(data)
    assert "%5Cu4e2d" in signed  # the escaped form went on the wire
    answer = json.loads(patient.get(f"{alipay.gateway_url}?{signed}").text)
    assert answer["alipay_trade_query_response"]["sub_code"] == "ACQ.TRADE_NOT_EXIST"


def _fault(kind: str, **kw):
    from simulators.alipay import Fault

    return Fault(kind, **kw)
