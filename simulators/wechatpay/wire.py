"""API v3 on the wire, server side: the `Authorization` header a merchant must send, and the
`Wechatpay-*` headers every answer carries."""

from __future__ import annotations

import re
from datetime import datetime

from . import crypto
from .errors import ApiError
from .models import Merchant

__all__ = ["AUTH_SCHEME", "CLOCK_SKEW_S_MAX", "authenticate", "signed_headers"]

AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
CLOCK_SKEW_S_MAX = 300
_PAIR = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*')
_AUTH_FIELDS = ("mchid", "nonce_str", "signature", "timestamp", "serial_no")


def _sign_error(message: str) -> ApiError:
    return ApiError(401, "SIGN_ERROR", message)


def parse_authorization(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    if scheme != AUTH_SCHEME:
        raise _sign_error("Authorization 认证类型不正确")
    pairs: dict[str, str] = {}
    for part in rest.split(","):
        m = _PAIR.fullmatch(part)
        if not m:
            raise _sign_error("Authorization 格式不正确")
        pairs[m.group(1)] = m.group(2)
    missing = [f for f in _AUTH_FIELDS if not pairs.get(f)]
    if missing:
        raise _sign_error(f"Authorization 缺少 {','.join(missing)}")
    return pairs


def authenticate(merchants: dict[str, Merchant], method: str, url: str, body: bytes, authorization: str | None,
                 now: datetime) -> Merchant:
    """The merchant who signed this request, or a 401 SIGN_ERROR. `url` is path plus query, as sent."""
    if not authorization:
        raise _sign_error("缺少 Authorization 请求头")
    pairs = parse_authorization(authorization)
    merchant = merchants.get(pairs["mchid"])
    if merchant is None:
        raise _sign_error("商户号不存在或未开通 APIv3")
    if pairs["serial_no"] != merchant.api_serial_no:
        raise _sign_error("商户证书序列号有误")
    if not pairs["timestamp"].isdigit() or abs(int(now.timestamp()) - int(pairs["timestamp"])) >= CLOCK_SKEW_S_MAX:
        raise _sign_error("请求时间戳与服务器时间相差超过5分钟")
    message = f"{method}\n{url}\n{pairs['timestamp']}\n{pairs['nonce_str']}\n".encode() + body + b"\n"
    if not crypto.verify(crypto.load_public(merchant.api_public_key_pem), message, pairs["signature"]):
        raise _sign_error("签名错误")
    return merchant


def signed_headers(key, serial: str, body: bytes, now: datetime, request_id: str) -> dict[str, str]:
    timestamp = str(int(now.timestamp()))
    nonce = crypto.nonce(32)
    signature = crypto.sign(key, f"{timestamp}\n{nonce}\n".encode() + body + b"\n")
    return {"Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce, "Wechatpay-Signature": signature,
            "Wechatpay-Serial": serial, "Wechatpay-Signature-Type": AUTH_SCHEME, "Request-ID": request_id}
