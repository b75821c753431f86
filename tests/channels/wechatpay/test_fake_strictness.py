"""The fake refuses what WeChat Pay refuses (hand-signed raw requests), and its control surface
(HTTP fault switch, buyer pays over HTTP, background notifier) works."""

from __future__ import annotations

import base64
import json
import secrets

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from tests.support import patient

from .conftest import Served, register
from .support import MerchantKeys, Receiver, out_no, poll


def signed(served: Served, keys: MerchantKeys, mchid: str, method: str, url: str, body: bytes = b"", *,
           skew_s: int = 0, headers: dict | None = None, serial: str | None = None) -> httpx.Response:
    key = serialization.load_pem_private_key(keys.private_pem.encode(), password=None)
    ts = str(int(served.clock().timestamp()) + skew_s)
    nonce = secrets.token_hex(16)
    message = f"{method}\n{url}\n{ts}\n{nonce}\n".encode() + body + b"\n"
    signature = base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    serial = serial or keys.serial_no
    auth = (f'WECHATPAY2-SHA256-RSA2048 signature="{signature}",timestamp="{ts}",serial_no="{serial}",'
            f'mchid="{mchid}",nonce_str="{nonce}"')  # any order of the pairs is fine
    base = {"Authorization": auth, "Accept": "application/json", "User-Agent": "t/1"}
    if body:
        base["Content-Type"] = "application/json"
    base.update(headers or {})
    return patient.request(method, served.url + url, content=body, headers=base,
                         timeout=5)


def native_body(m, **over) -> bytes:
    body = {"appid": m.appid, "mchid": m.mchid, "description": "tea", "out_trade_no": out_no(),
            "notify_url": "https://example.com/n", "amount": {"total": 1, "currency": "CNY"}}
    body.update(over)
    return json.dumps(body).encode()


@pytest.fixture
def m(served, mkeys):
    return register(served, mkeys)[0]


def test_a_well_signed_request_with_pairs_in_any_order_is_accepted(served, mkeys, m):
    response = signed(served, mkeys, m.mchid, "POST", "/v3/pay/transactions/native", native_body(m))
    assert response.status_code == 200, response.text
    assert response.headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert response.headers["Request-ID"]


@pytest.mark.parametrize(("kw", "status", "code"), [
    ({"skew_s": -300}, 401, "SIGN_ERROR"),
    ({"skew_s": 300}, 401, "SIGN_ERROR"),
    ({"serial": "ABCDEF"}, 401, "SIGN_ERROR"),
    ({"headers": {"Accept": "text/html"}}, 400, "PARAM_ERROR"),
    ({"headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 400, "PARAM_ERROR"),
    ({"headers": {"User-Agent": ""}}, 400, "PARAM_ERROR"),
    ({"headers": {"Authorization": "Bearer x"}}, 401, "SIGN_ERROR"),
])
def test_requests_off_the_protocol_are_refused(served, mkeys, m, kw, status, code):
    response = signed(served, mkeys, m.mchid, "POST", "/v3/pay/transactions/native", native_body(m), **kw)
    assert response.status_code == status and response.json()["code"] == code, response.text


@pytest.mark.parametrize("over", [
    {"amount": {"total": 1.5}}, {"amount": {"total": "1"}}, {"attach": None}, {"description": ""},
    {"out_trade_no": "has space"}, {"time_expire": "2030-01-01T10:00:00"}, {"mchid": "1900000000"},
])
def test_bodies_off_the_protocol_are_refused(served, mkeys, m, over):
    response = signed(served, mkeys, m.mchid, "POST", "/v3/pay/transactions/native", native_body(m, **over))
    assert response.status_code == 400 and response.json()["code"] == "PARAM_ERROR", response.text


def test_a_body_changed_after_signing_is_refused(served, mkeys, m):
    body = native_body(m)
    key = serialization.load_pem_private_key(mkeys.private_pem.encode(), password=None)
    ts, nonce = str(int(served.clock().timestamp())), "n" * 32
    sig = base64.b64encode(key.sign(f"POST\n/v3/pay/transactions/native\n{ts}\n{nonce}\n".encode() + body + b"\n",
                                    padding.PKCS1v15(), hashes.SHA256())).decode()
    auth = (f'WECHATPAY2-SHA256-RSA2048 mchid="{m.mchid}",nonce_str="{nonce}",signature="{sig}",timestamp="{ts}",'
            f'serial_no="{mkeys.serial_no}"')
    tampered = body.replace(b'"total": 1', b'"total": 2')
    response = patient.post(served.url + "/v3/pay/transactions/native", content=tampered,
                          headers={"Authorization": auth, "Accept": "application/json", "User-Agent": "t",
                                   "Content-Type": "application/json"})
    assert response.status_code == 401 and response.json()["code"] == "SIGN_ERROR"


def test_reordering_with_other_parameters_is_refused(served, mkeys, m):
    body = json.loads(native_body(m))
    assert signed(served, mkeys, m.mchid, "POST", "/v3/pay/transactions/native", json.dumps(body).encode()
                  ).status_code == 200
    body["amount"]["total"] = 2
    response = signed(served, mkeys, m.mchid, "POST", "/v3/pay/transactions/native", json.dumps(body).encode())
    assert response.status_code == 400 and response.json()["code"] == "INVALID_REQUEST"


def test_the_http_control_surface(served, mkeys, m, receiver: Receiver):
    key, url = receiver.notify_url()
    no = out_no()
    assert signed(served, mkeys, m.mchid, "POST", "/v3/pay/transactions/native",
                  native_body(m, out_trade_no=no, notify_url=url)).status_code == 200
    fault = {"kind": "system_error", "out_trade_no": no}
    assert patient.post(f"{served.url}/fake/faults", json=fault).status_code == 200
    assert signed(served, mkeys, m.mchid, "GET", f"/v3/pay/transactions/out-trade-no/{no}?mchid={m.mchid}"
                  ).status_code == 500
    assert patient.post(f"{served.url}/fake/faults", json={"kind": "nonsense"}).status_code == 400
    assert patient.delete(f"{served.url}/fake/faults").status_code == 204
    assert patient.post(f"{served.url}/fake/transactions/{no}/pay", json={}).json()["trade_state"] == "SUCCESS"
    assert patient.post(f"{served.url}/fake/notifications/run").json()["handled"] >= 1
    assert len(receiver.got(key)) == 1


def test_onboarding_over_http_hands_out_the_platform_key(served, mkeys):
    response = patient.post(f"{served.url}/fake/merchants", json={
        "mchid": "1999999999", "appid": "wx0000000000000001", "serial_no": mkeys.serial_no,
        "public_key_pem": mkeys.public_pem, "apiv3_key": "a" * 32})
    info = response.json()
    assert response.status_code == 200 and info["platform_serial"].startswith("PUB_KEY_ID_")
    assert "BEGIN PUBLIC KEY" in info["platform_public_key_pem"]
    bad = patient.post(f"{served.url}/fake/merchants", json={"mchid": "1", "apiv3_key": "short"})
    assert bad.status_code == 400


def test_the_background_notifier_delivers_on_its_own(served, mkeys, m, receiver: Receiver):
    key, url = receiver.notify_url()
    no = out_no()
    signed(served, mkeys, m.mchid, "POST", "/v3/pay/transactions/native", native_body(m, out_trade_no=no,
                                                                                      notify_url=url))
    served.fake.notifier.start(interval_s=0.01)
    try:
        served.fake.pay(no)
        assert poll(lambda: len(receiver.got(key)) == 1, lambda: None, passes_max=2000)
    finally:
        served.fake.notifier.stop()
