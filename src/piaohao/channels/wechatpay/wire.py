"""API v3 on the wire, client side [W6][W7]: the `Authorization` header over
`METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n`, and the check of the `Wechatpay-*` headers over
`TIMESTAMP\\nNONCE\\nBODY\\n` that every answer and notification carries.

`WireClient.call` never raises for network trouble: it raises `Trouble`, which the channel
turns into `Outcome.UNKNOWN`. An answer whose signature does not verify is Trouble too: we
cannot tell what the channel said, so we must not read it as a refusal."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpx

from piaohao.channels.spi.crypto import rsa_sign, rsa_verify

from .config import WechatPayConfig

__all__ = ["AUTH_SCHEME", "Answer", "SIGNATURE_AGE_S_MAX", "Trouble", "WireClient", "check_signature", "dumps"]

AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
SIGNATURE_AGE_S_MAX = 300  # WeChat Pay and its SDKs refuse signatures 5 minutes off
NONCE_LEN = 32
USER_AGENT = "piaohao-wechatpay/1 (+https://github.com/piaohao)"
_NONCE_ALPHABET = string.ascii_uppercase + string.digits


class Trouble(Exception):
    """No trustworthy answer (timeout, transport error, 5xx, bad signature): outcome unknown."""


@dataclass(frozen=True)
class Answer:
    status: int
    data: dict  # {} for 204

    @property
    def code(self) -> str:
        return str(self.data.get("code", ""))

    @property
    def error(self) -> str:
        return f"{self.status} {self.code}: {self.data.get('message', '')}".strip()


def dumps(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def nonce() -> str:
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(NONCE_LEN))


def check_signature(config: WechatPayConfig, headers: Mapping[str, str], body: bytes, now: datetime) -> str | None:
    """None when the `Wechatpay-*` headers sign `body` with a platform key we hold and are fresh;
    otherwise why not. `headers` keys must be lower-case."""
    serial = headers.get("wechatpay-serial", "")
    signature = headers.get("wechatpay-signature", "")
    timestamp = headers.get("wechatpay-timestamp", "")
    nonce_text = headers.get("wechatpay-nonce", "")
    key = config.platform_keys.get(serial)
    if key is None:
        return f"unknown platform serial {serial[:64]!r}"
    if headers.get("wechatpay-signature-type", AUTH_SCHEME) != AUTH_SCHEME:
        return "unsupported signature type"
    if signature.startswith("WECHATPAY/SIGNTEST/"):
        return "signature probe"
    if not (timestamp.isdigit() and nonce_text):
        return "missing timestamp or nonce"
    if not rsa_verify(key, f"{timestamp}\n{nonce_text}\n".encode() + body + b"\n", signature):
        return "signature does not verify"
    if abs(now.timestamp() - int(timestamp)) > SIGNATURE_AGE_S_MAX:
        return "signature timestamp more than 300 s away"
    return None


class WireClient:
    def __init__(self, config: WechatPayConfig, http: httpx.Client, now: Callable[[], datetime], timeout_s: float):
        self.config, self.http, self.now, self.timeout_s = config, http, now, timeout_s

    def authorization(self, method: str, url: str, body: bytes) -> str:
        """`url` is what follows the host: path plus query, exactly as sent."""
        timestamp = str(int(self.now().timestamp()))
        nonce_text = nonce()
        message = f"{method}\n{url}\n{timestamp}\n{nonce_text}\n".encode() + body + b"\n"
        signature = rsa_sign(self.config.private_key, message)
        return (f'{AUTH_SCHEME} mchid="{self.config.mchid}",nonce_str="{nonce_text}",signature="{signature}",'
                f'timestamp="{timestamp}",serial_no="{self.config.serial_no}"')

    def headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        headers = {"Authorization": self.authorization(method, url, body), "Accept": "application/json",
                   "User-Agent": USER_AGENT, "Wechatpay-Serial": self.config.platform_serial}
        if body:
            headers["Content-Type"] = "application/json"
        return headers

    def call(self, method: str, url: str, payload: dict | None = None) -> Answer:
        body = dumps(payload) if payload is not None else b""
        try:
            response = self.http.request(method, self.config.base_url + url, content=body,
                                         headers=self.headers(method, url, body), timeout=self.timeout_s)
        except httpx.TimeoutException as e:
            raise Trouble(f"timeout: {type(e).__name__}") from e
        except httpx.HTTPError as e:
            raise Trouble(f"transport: {type(e).__name__}: {e}") from e
        if response.status_code >= 500:
            raise Trouble(f"channel error: HTTP {response.status_code} {response.text[:200]}")
        headers = {k.lower(): v for k, v in response.headers.items()}
        why = check_signature(self.config, headers, response.content, self.now())
        if why is not None:
            raise Trouble(f"answer not trusted (HTTP {response.status_code}): {why}")
        if response.status_code == 204:
            return Answer(204, {})
        try:
            data = json.loads(response.content)
        except (ValueError, UnicodeDecodeError) as e:
            raise Trouble("answer is not JSON") from e
        if not isinstance(data, dict):
            raise Trouble("answer is not a JSON object")
        return Answer(response.status_code, data)

    def open_download(self, download_url: str) -> httpx.Response:
        """Start the signed GET of a bill file; the caller streams and closes it. The file itself is
        unsigned [W7]: its integrity is the SHA1 the tradebill answer gave."""
        parts = urlsplit(download_url)
        url = parts.path + (f"?{parts.query}" if parts.query else "")
        request = self.http.build_request("GET", download_url, headers=self.headers("GET", url, b""),
                                          timeout=self.timeout_s)
        return self.http.send(request, stream=True)
