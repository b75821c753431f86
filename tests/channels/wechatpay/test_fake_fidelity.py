"""The fake is faithful to WeChat Pay API v3 as the community SDK `wechatpayv3` (pinned in
pyproject) speaks it: the SDK's signed requests are accepted, the fake's signed answers pass the
SDK's own response verification (which raises on a bad signature), its notifications pass the
SDK's `callback()` (signature, then AES-256-GCM decryption), and its platform certificate
download decrypts and verifies in the SDK's certificate mode. The SDK has no endpoint setting,
so each client's gateway is pointed at the fake through its `_core._gate_way` attribute (the one
place the SDK builds URLs from; `download_bill` strips it off the download URL too)."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import timedelta

import pytest
from wechatpayv3 import WeChatPay, WeChatPayType

from simulators.wechatpay.state import wechat_time

from .conftest import Served, register
from .support import MerchantKeys, Receiver, out_no, poll


def sdk(served: Served, merchant, keys: MerchantKeys, notify_url: str, *, private_pem: str | None = None,
        wechatpay_type: WeChatPayType = WeChatPayType.NATIVE) -> WeChatPay:
    """The SDK in WeChat Pay public-key mode (no network at construction), aimed at the fake."""
    m, platform_serial = merchant
    client = WeChatPay(wechatpay_type=wechatpay_type, mchid=m.mchid, private_key=private_pem or keys.private_pem,
                       cert_serial_no=keys.serial_no, appid=m.appid, apiv3_key=m.apiv3_key, notify_url=notify_url,
                       public_key=served.fake.platform.public_key_pem, public_key_id=platform_serial, timeout=(5, 5))
    client._core._gate_way = served.url
    return client


@pytest.fixture
def client(served, merchant, mkeys, receiver):
    key, url = receiver.notify_url()
    return sdk(served, merchant, mkeys, url), key


def deliveries(served: Served, receiver: Receiver, key: str, count: int) -> list:
    assert poll(lambda: len(receiver.got(key)) >= count, served.fake.notifier.run_once)
    return receiver.got(key)


def test_native_prepay_is_accepted_and_its_signed_answer_verifies(client):
    wxpay, _ = client
    code, message = wxpay.pay(description="一杯茶", out_trade_no=out_no(), amount={"total": 1, "currency": "CNY"})
    assert code == 200, message
    assert json.loads(message)["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")


def test_h5_prepay_with_scene_info_is_accepted(client):
    wxpay, _ = client
    code, message = wxpay.pay(description="tea", out_trade_no=out_no(), amount={"total": 1999},
                              scene_info={"payer_client_ip": "203.0.113.9", "h5_info": {"type": "Wap"}},
                              pay_type=WeChatPayType.H5)
    assert code == 200, message
    assert json.loads(message)["h5_url"].startswith("https://wx.tenpay.com/")


def test_h5_prepay_without_client_ip_is_refused(client):
    wxpay, _ = client
    code, message = wxpay.pay(description="tea", out_trade_no=out_no(), amount={"total": 1},
                              scene_info={"h5_info": {"type": "Wap"}}, pay_type=WeChatPayType.H5)
    assert code == 400 and json.loads(message)["code"] == "PARAM_ERROR"


def test_jsapi_prepay_and_the_sdk_pay_sign(client):
    wxpay, _ = client
    code, message = wxpay.pay(description="tea", out_trade_no=out_no(), amount={"total": 100},
                              payer={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}, pay_type=WeChatPayType.JSAPI)
    assert code == 200, message
    assert json.loads(message)["prepay_id"].startswith("wx")


def test_jsapi_prepay_without_openid_is_refused(client):
    wxpay, _ = client
    code, message = wxpay.pay(description="tea", out_trade_no=out_no(), amount={"total": 100},
                              payer={"x": "y"}, pay_type=WeChatPayType.JSAPI)
    assert code == 400 and json.loads(message)["code"] == "PARAM_ERROR"


@pytest.mark.parametrize("total", [1.0, "100", 0, True])
def test_amounts_that_are_not_positive_integer_fen_are_refused(client, total):
    wxpay, _ = client
    code, message = wxpay.pay(description="tea", out_trade_no=out_no(), amount={"total": total})
    assert code == 400 and json.loads(message)["code"] == "PARAM_ERROR", message


def test_a_request_signed_with_another_key_is_refused_with_sign_error(served, merchant, mkeys, other_keys):
    wxpay = sdk(served, merchant, mkeys, "https://example.com/n", private_pem=other_keys.private_pem)
    code, message = wxpay.pay(description="tea", out_trade_no=out_no(), amount={"total": 1})
    assert code == 401 and json.loads(message)["code"] == "SIGN_ERROR"


def test_query_then_pay_then_query_with_verified_answers(served, client):
    wxpay, _ = client
    no = out_no()
    wxpay.pay(description="tea", out_trade_no=no, amount={"total": 1999})
    code, message = wxpay.query(out_trade_no=no)
    assert code == 200 and json.loads(message)["trade_state"] == "NOTPAY"
    served.fake.pay(no)
    code, message = wxpay.query(out_trade_no=no)
    paid = json.loads(message)
    assert paid["trade_state"] == "SUCCESS" and paid["amount"]["total"] == 1999 and paid["transaction_id"]
    code, message = wxpay.query(out_trade_no=out_no())
    assert code == 404 and json.loads(message)["code"] == "ORDER_NOT_EXIST"


def test_close_answers_a_signed_204_and_the_trade_is_closed(client):
    wxpay, _ = client
    no = out_no()
    wxpay.pay(description="tea", out_trade_no=no, amount={"total": 5})
    code, message = wxpay.close(out_trade_no=no)  # the SDK verifies the empty body's signature too
    assert code == 204 and message in ("", b"")
    assert json.loads(wxpay.query(out_trade_no=no)[1])["trade_state"] == "CLOSED"
    assert wxpay.close(out_trade_no=no)[0] == 204  # re-entrant


def test_refund_and_refund_query_with_verified_answers(served, client):
    wxpay, _ = client
    no = out_no()
    wxpay.pay(description="tea", out_trade_no=no, amount={"total": 1000})
    served.fake.pay(no)
    refund_no = out_no("R")
    code, message = wxpay.refund(out_refund_no=refund_no, out_trade_no=no,
                                 amount={"refund": 400, "total": 1000, "currency": "CNY"})
    assert code == 200 and json.loads(message)["status"] == "PROCESSING", message
    again = wxpay.refund(out_refund_no=refund_no, out_trade_no=no,
                         amount={"refund": 400, "total": 1000, "currency": "CNY"})
    assert again[0] == 200 and json.loads(again[1])["refund_id"] == json.loads(message)["refund_id"]
    over = wxpay.refund(out_refund_no=out_no("R"), out_trade_no=no,
                        amount={"refund": 601, "total": 1000, "currency": "CNY"})
    assert over[0] == 400 and json.loads(over[1])["code"] == "INVALID_REQUEST"
    served.fake.finish_refund(refund_no)
    code, message = wxpay.query_refund(out_refund_no=refund_no)
    record = json.loads(message)
    assert code == 200 and record["status"] == "SUCCESS" and record["amount"]["refund"] == 400


def test_trade_bill_and_its_gzip_file_match_the_sha1(served, client):
    wxpay, _ = client
    no = out_no()
    wxpay.pay(description="tea", out_trade_no=no, amount={"total": 1999})
    served.clock.advance(-86400)  # the buyer paid yesterday (the SDK signs with the real time, so move back)
    try:
        day = served.fake.pay(no)["success_time"][:10]
    finally:
        served.clock.advance(86400)
    code, message = wxpay.trade_bill(bill_date=day)
    assert code == 200, message
    answer = json.loads(message)
    assert answer["hash_type"] == "SHA1"
    code, content = wxpay.download_bill(answer["download_url"])
    assert code == 200
    text = gzip.decompress(content)
    assert hashlib.sha1(text).hexdigest() == answer["hash_value"]
    assert f"`{no}".encode() in text and b"`19.99" in text


def test_payment_notification_passes_the_sdk_callback(served, client, receiver):
    wxpay, key = client
    no = out_no()
    wxpay.pay(description="tea", out_trade_no=no, amount={"total": 1999})
    served.fake.pay(no)
    delivery = deliveries(served, receiver, key, 1)[0]
    result = wxpay.callback(delivery.headers, delivery.body)
    assert result is not None, "the SDK refused the fake's notification"
    assert result["event_type"] == "TRANSACTION.SUCCESS"
    assert result["resource"]["out_trade_no"] == no and result["resource"]["amount"]["total"] == 1999


def test_refund_notification_passes_the_sdk_callback(served, client, receiver):
    wxpay, key = client
    no = out_no()
    wxpay.pay(description="tea", out_trade_no=no, amount={"total": 300})
    served.fake.pay(no)
    refund_no = out_no("R")
    wxpay.refund(out_refund_no=refund_no, out_trade_no=no, amount={"refund": 300, "total": 300, "currency": "CNY"})
    got = deliveries(served, receiver, key, 2)
    result = wxpay.callback(got[1].headers, got[1].body)
    assert result["event_type"] == "REFUND.SUCCESS"
    assert result["resource"]["out_refund_no"] == refund_no and result["resource"]["refund_status"] == "SUCCESS"


@pytest.mark.parametrize("fault", ["tampered_notification", "wrong_key_notification"])
def test_faulty_notifications_are_refused_by_the_sdk_callback(served, client, receiver, fault):
    wxpay, key = client
    no = out_no()
    wxpay.pay(description="tea", out_trade_no=no, amount={"total": 10})
    served.fake.faults.set(fault, out_trade_no=no)
    served.fake.pay(no)
    delivery = deliveries(served, receiver, key, 1)[0]
    assert wxpay.callback(delivery.headers, delivery.body) is None


def test_certificate_mode_downloads_decrypts_and_verifies_the_platform_certificate(served, mkeys, receiver,
                                                                                     tmp_path, other_keys):
    """The SDK in platform-certificate mode: it starts from a stale certificate on disk, meets the
    fake's serial on the first answer, fetches `/v3/certificates`, decrypts it with the APIv3 key
    (AAD `certificate`) and verifies the answer with it."""
    from simulators.wechatpay import PlatformIdentity

    m, platform_serial = register(served, mkeys, key_mode="certificate")
    assert platform_serial == served.fake.platform.cert_serial
    stale = PlatformIdentity(served.clock(), key=served.fake.platform.key)  # same key, other serial
    (tmp_path / "stale.pem").write_text(stale.certificate_pem)
    _, url = receiver.notify_url()
    wxpay = WeChatPay(wechatpay_type=WeChatPayType.NATIVE, mchid=m.mchid, private_key=mkeys.private_pem,
                      cert_serial_no=mkeys.serial_no, appid=m.appid, apiv3_key=m.apiv3_key, notify_url=url,
                      cert_dir=str(tmp_path), timeout=(5, 5))
    wxpay._core._gate_way = served.url
    code, message = wxpay.pay(description="tea", out_trade_no=out_no(), amount={"total": 1})
    assert code == 200, message
    serials = {format(c.serial_number, "X") for c in wxpay._core._certificates}
    assert platform_serial in serials
    assert (tmp_path / f"{platform_serial}.pem").exists()


def test_notifications_are_retried_until_acknowledged(served, client, receiver):
    wxpay, key = client
    no = out_no()
    wxpay.pay(description="tea", out_trade_no=no, amount={"total": 10})
    receiver.status = 500
    served.fake.pay(no)
    deliveries(served, receiver, key, 1)
    assert served.fake.notifier.run_once() == 0  # next try only after 15 s on the fake's clock
    receiver.status = 200
    served.clock.advance(15)
    try:
        got = deliveries(served, receiver, key, 2)
    finally:
        served.clock.advance(-15)
    assert wxpay.callback(got[1].headers, got[1].body)["resource"]["out_trade_no"] == no
    assert served.fake.notifier.run_once() == 0


def test_the_time_expire_field_must_be_rfc3339(served, client):
    wxpay, _ = client
    bad = wxpay.pay(description="tea", out_trade_no=out_no(), amount={"total": 1}, time_expire="2030-01-01 10:00:00")
    assert bad[0] == 400
    good = wxpay.pay(description="tea", out_trade_no=out_no(), amount={"total": 1},
                     time_expire=wechat_time(served.clock() + timedelta(minutes=30)))
    assert good[0] == 200
