"""What one Alipay app needs to talk to Alipay: its app id, its private key, Alipay's public key
and the gateway (production by default; tests point it at the fake)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PRODUCTION_GATEWAY_URL", "SANDBOX_GATEWAY_URL", "AlipayConfig"]

PRODUCTION_GATEWAY_URL = "https://openapi.alipay.com/gateway.do"
SANDBOX_GATEWAY_URL = "https://openapi-sandbox.dl.alipaydev.com/gateway.do"
APP_ID_CHARS_MAX = 32


@dataclass(frozen=True)
class AlipayConfig:
    """Keys are PEM (PKCS#1 or PKCS#8 for the private key, SubjectPublicKeyInfo for Alipay's) or
    the bare base64 the Alipay console shows. `repr` never shows the private key."""

    app_id: str
    private_key_pem: str = field(repr=False)
    alipay_public_key_pem: str
    gateway_url: str = PRODUCTION_GATEWAY_URL

    def __post_init__(self) -> None:
        if not self.app_id or len(self.app_id) > APP_ID_CHARS_MAX or not self.app_id.isdigit():
            raise ValueError(f"Alipay app_id must be 1-{APP_ID_CHARS_MAX} digits")
        if not self.gateway_url.startswith(("https://", "http://")):
            raise ValueError("gateway_url must be an http(s) URL")
